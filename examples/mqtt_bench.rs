//! `cargo run --release --example mqtt_bench -- PORT`: bare Rust clients of our transport (no
//! Emacs) through the broker on 127.0.0.1:PORT, 10,000 messages of 200 bytes at QoS 0 and
//! QoS 1, each a round trip timed from the first publish until the last message is received:
//! "one client" publishes to itself on one connection, as `bench/mqtt-bench.el` does from
//! Emacs (`bin/bench` compares the two); "two clients" publishes from one to the other.

use meta_log_federation_module::events::{Event, EventBus};
use meta_log_federation_module::runtime;
use meta_log_federation_module::transport::client::Client;
use meta_log_federation_module::transport::options::ConnectOptions;
use meta_log_federation_module::transport::url;
use std::time::{Duration, Instant};

const N: usize = 10_000;

fn wait_for(bus: &EventBus, mut want: impl FnMut(&Event) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for ev in bus.drain(usize::MAX) {
            if want(&ev) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("timed out waiting for {what}");
}

fn client(port: u16, id: &str, bus: &'static EventBus, rt: &tokio::runtime::Runtime) -> Client {
    let url = url::parse(&format!("mqtt://127.0.0.1:{port}")).expect("url");
    let mut opts = ConnectOptions::new(url, id);
    opts.queue_limit = 2 * N;
    let (c, manager) = Client::new(opts, bus);
    rt.spawn(manager);
    wait_for(bus, |e| matches!(e, Event::Connected { .. }), "connect");
    c
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: mqtt_bench PORT");
    let rt = runtime::build().expect("runtime");
    let sub_bus: &'static EventBus = Box::leak(Box::new(EventBus::new()));
    let pub_bus: &'static EventBus = Box::leak(Box::new(EventBus::new()));
    let sub = client(port, "bench-rust-sub", sub_bus, &rt);
    let publ = client(port, "bench-rust-pub", pub_bus, &rt);
    for qos in [0i64, 1] {
        round_trip("one client", &sub, &sub, sub_bus, qos);
    }
    for qos in [0i64, 1] {
        round_trip("two clients", &publ, &sub, sub_bus, qos);
    }
    drop(sub);
    drop(publ);
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// Publishes N messages at `qos` from `publ`, received by `sub` (whose events reach `sub_bus`);
/// prints the messages received per second of the round trip.
fn round_trip(label: &str, publ: &Client, sub: &Client, sub_bus: &EventBus, qos: i64) {
    let payload = vec![b'x'; 200];
    {
        let topic = format!("bench/rust/{}/{qos}", label.replace(' ', "-"));
        sub.subscribe(&topic, qos).expect("subscribe");
        // Probe until the subscription is active.
        loop {
            publ.publish(&topic, b"probe".to_vec(), 1, false)
                .expect("probe");
            let deadline = Instant::now() + Duration::from_millis(200);
            let mut seen = false;
            while Instant::now() < deadline && !seen {
                seen = sub_bus
                    .drain(usize::MAX)
                    .iter()
                    .any(|e| matches!(e, Event::Message { .. }));
                std::thread::sleep(Duration::from_millis(1));
            }
            if seen {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        sub_bus.drain(usize::MAX);
        let start = Instant::now();
        for _ in 0..N {
            publ.publish(&topic, payload.clone(), qos, false)
                .expect("publish");
        }
        let mut got = 0;
        let deadline = start + Duration::from_secs(30);
        while got < N && Instant::now() < deadline {
            got += sub_bus
                .drain(usize::MAX)
                .iter()
                .filter(|e| matches!(e, Event::Message { .. }))
                .count();
            if got < N {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "mqtt: bare Rust round trip, {label}, QoS {qos}: {got} received of {N} sent, 200 B, in {:.3} s = {:.0} received/s",
            secs,
            got as f64 / secs
        );
        sub.unsubscribe(&topic);
    }
}
