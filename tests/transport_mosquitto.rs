//! The MQTT client against a real mosquitto: routing to filter ids, QoS 1, and a broker that
//! dies and comes back with messages queued meanwhile.

mod common;

use common::{collect_messages, leak_bus, wait_event, Broker};
use meta_log_federation_module::events::Event;
use meta_log_federation_module::transport::client::{Client, ClientCallError};
use meta_log_federation_module::transport::options::ConnectOptions;
use meta_log_federation_module::transport::url;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn start_client(
    broker: &Broker,
    id: &str,
    rt: &tokio::runtime::Runtime,
    tweak: impl FnOnce(&mut ConnectOptions),
) -> (
    Client,
    &'static meta_log_federation_module::events::EventBus,
) {
    let bus = leak_bus();
    let mut opts = ConnectOptions::new(url::parse(&broker.url()).unwrap(), id);
    opts.max_backoff = Duration::from_millis(300);
    tweak(&mut opts);
    let (client, manager) = Client::new(opts, bus);
    rt.spawn(manager);
    wait_event(bus, 10, |e| matches!(e, Event::Connected { .. }));
    (client, bus)
}

fn runtime() -> tokio::runtime::Runtime {
    meta_log_federation_module::runtime::build().unwrap()
}

/// Publishes probes until one arrives, so the subscription is known to be active.
fn await_subscription(
    client: &Client,
    bus: &meta_log_federation_module::events::EventBus,
    topic: &str,
) {
    for _ in 0..50 {
        client.publish(topic, b"probe".to_vec(), 1, false).unwrap();
        if !collect_messages(bus, 1, 1).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            bus.drain(usize::MAX);
            return;
        }
    }
    panic!("subscription to {topic} never became active");
}

#[test]
fn messages_carry_the_ids_of_every_matching_filter() {
    let broker = Broker::start();
    let rt = runtime();
    let (c, bus) = start_client(&broker, "ids", &rt, |_| {});
    let all = c.subscribe("r/#", 0).unwrap();
    let plus = c.subscribe("r/+/x", 1).unwrap();
    assert_eq!(
        c.subscribe("r/#", 1).unwrap(),
        all,
        "same filter keeps its id"
    );
    await_subscription(&c, bus, "r/probe/x");
    c.publish("r/a/x", b"one".to_vec(), 0, false).unwrap();
    c.publish("r/a/y", b"two".to_vec(), 0, false).unwrap();
    let got = collect_messages(bus, 2, 5);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "r/a/x");
    let mut ids = got[0].2.clone();
    ids.sort();
    assert_eq!(ids, vec![all, plus]);
    assert_eq!(got[1].2, vec![all]);
    assert!(matches!(
        c.publish("bad/+", vec![], 0, false),
        Err(ClientCallError::BadTopic(_))
    ));
    assert!(matches!(
        c.publish("a", vec![], 3, false),
        Err(ClientCallError::BadQos(3))
    ));
}

#[test]
fn queued_qos1_messages_survive_a_broker_restart_in_order() {
    let mut broker = Broker::start();
    let rt = runtime();
    let (c, bus) = start_client(&broker, "restart", &rt, |_| {});
    c.subscribe("rs/t", 1).unwrap();
    await_subscription(&c, bus, "rs/t");
    broker.kill();
    wait_event(bus, 10, |e| {
        matches!(
            e,
            Event::Disconnected {
                will_retry: true,
                ..
            }
        )
    });
    assert!(!c.is_connected());
    for i in 0..200 {
        c.publish("rs/t", format!("m{i}").into_bytes(), 1, false)
            .unwrap();
    }
    assert_eq!(c.stats.pending.load(Ordering::SeqCst), 200);
    broker.restart();
    let got = collect_messages(bus, 200, 20);
    let payloads: Vec<String> = got
        .iter()
        .map(|(_, p, _)| String::from_utf8(p.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, want);
    assert!(c.is_connected());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.stats.pending.load(Ordering::SeqCst) != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.stats.pending.load(Ordering::SeqCst), 0);
}

#[test]
fn a_full_queue_refuses_instead_of_dropping() {
    let rt = runtime();
    let bus = leak_bus();
    // Nothing listens on port 1 of loopback.
    let mut opts = ConnectOptions::new(url::parse("mqtt://127.0.0.1:1").unwrap(), "full");
    opts.queue_limit = 3;
    let (c, manager) = Client::new(opts, bus);
    rt.spawn(manager);
    for i in 0..3 {
        c.publish("q", vec![i], 1, false).unwrap();
    }
    assert_eq!(
        c.publish("q", vec![9], 1, false),
        Err(ClientCallError::QueueFull(3))
    );
    wait_event(
        bus,
        10,
        |e| matches!(e, Event::Error { context, .. } if context == "connect"),
    );
}
