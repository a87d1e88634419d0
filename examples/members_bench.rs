//! `cargo run --release --example members_bench -- PORT`: deliveries per edit with 10 peers
//! of which 2 hold the share. Ten real MQTT clients of our transport on the broker at
//! 127.0.0.1:PORT, each subscribed as a federation peer is (`Topics::subscriptions`), and the
//! two holders of a share with members also to its topic (`SyncEngine::share_tags`). The
//! origin's sync engine shares a file with one member, then makes one-entry edits; each
//! publication is signed (`Outbound::sync`) and published on the topic it names. Counted:
//! how many of the ten clients received each edit (the publisher's own copy included, as the
//! broker sends it back), for a share with members and for a share with the whole federation.

use std::time::{Duration, Instant};

use meta_log_federation_module::events::{Event, EventBus};
use meta_log_federation_module::federation::{Config, LocalProfile, Outbound, Topics};
use meta_log_federation_module::identity::{mnemonic, Identity, DEFAULT_PATH};
use meta_log_federation_module::runtime;
use meta_log_federation_module::sync::{Action, SyncEngine};
use meta_log_federation_module::transport::client::Client;
use meta_log_federation_module::transport::options::ConnectOptions;
use meta_log_federation_module::transport::url;

const PEERS: usize = 10;
const EDITS: usize = 20;

fn client(port: u16, id: &str, bus: &'static EventBus, rt: &tokio::runtime::Runtime) -> Client {
    let url = url::parse(&format!("mqtt://127.0.0.1:{port}")).expect("url");
    let (c, manager) = Client::new(ConnectOptions::new(url, id), bus);
    rt.spawn(manager);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if bus
            .drain(usize::MAX)
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
        {
            return c;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("client {id} did not connect");
}

/// Sync messages each bus received (topics under `prefix/sync`).
fn drain_sync(buses: &[&'static EventBus], prefix: &str) -> Vec<usize> {
    buses
        .iter()
        .map(|b| {
            b.drain(usize::MAX)
                .iter()
                .filter(|e| matches!(e, Event::Message { topic, .. } if topic.starts_with(prefix)))
                .count()
        })
        .collect()
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: members_bench PORT");
    let rt = runtime::build().expect("runtime");
    let prefix = format!("bench{}", std::process::id());
    let config = Config {
        prefix: prefix.clone(),
        ..Config::default()
    };
    let topics = Topics::new(&prefix).expect("prefix");
    let ids: Vec<Identity> = (0..PEERS)
        .map(|_| {
            Identity::from_mnemonic(&mnemonic::generate(12).expect("words"), "", DEFAULT_PATH)
                .expect("identity")
        })
        .collect();
    let buses: Vec<&'static EventBus> = (0..PEERS)
        .map(|_| &*Box::leak(Box::new(EventBus::new())))
        .collect();
    let clients: Vec<Client> = (0..PEERS)
        .map(|i| client(port, &format!("{prefix}-{i}"), buses[i], &rt))
        .collect();
    for (i, c) in clients.iter().enumerate() {
        for (filter, qos) in topics.subscriptions(&ids[i].peer_id()) {
            c.subscribe(&filter, i64::from(qos)).expect("subscribe");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut origin = SyncEngine::open(
        &dir.path().join("sync"),
        &dir.path().join("state"),
        &ids[0].peer_id(),
        [7; 32],
    )
    .expect("engine");
    origin.set_signer(ids[0].clone(), now()).expect("signer");
    let out = Outbound::new(
        ids[0].clone(),
        &config,
        LocalProfile {
            name: "bench".into(),
            software: "bench".into(),
            capabilities: Vec::new(),
        },
        now(),
    )
    .expect("outbound");
    let publish = |actions: Vec<Action>| {
        for a in actions {
            if let Action::Publish {
                kind,
                content,
                tags,
            } = a
            {
                let p = out.sync(kind, &content, tags, now()).expect("sign");
                clients[0]
                    .publish(&p.topic, p.payload, i64::from(p.qos), p.retain)
                    .expect("publish");
            }
        }
    };
    for (label, members) in [
        (
            "share with 1 member (2 holders)",
            Some(vec![ids[1].peer_id()]),
        ),
        ("share with the whole federation", None),
    ] {
        let path = dir
            .path()
            .join(format!("b{}.canvasl", members.is_some() as u8));
        let mut text = String::from("@version 1.0\n");
        for i in 0..1000 {
            text.push_str(&format!("{{\"id\":\"n{i}\",\"text\":\"node {i}\"}}\n"));
        }
        std::fs::write(&path, &text).expect("write");
        let actions = origin
            .share_with_members(&path, None, members.clone(), now())
            .expect("share");
        // The member follows the share's topic, as `meta-log-federation--members-update-topics'
        // makes it do once it has the key.
        for tag in origin.share_tags() {
            for c in &clients[..2] {
                c.subscribe(&topics.share_sync(&tag), 1).expect("subscribe");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        publish(actions);
        std::thread::sleep(Duration::from_millis(500));
        drain_sync(&buses, &format!("{prefix}/sync"));
        let mut per_edit = Vec::new();
        for e in 0..EDITS {
            text = text.replacen(&format!("node {e}\""), &format!("edited {e}\""), 1);
            std::fs::write(&path, &text).expect("write");
            let actions = origin
                .local_file_changed(&path.to_string_lossy(), now())
                .expect("edit");
            let events = actions
                .iter()
                .filter(|a| matches!(a, Action::Publish { .. }))
                .count();
            publish(actions);
            std::thread::sleep(Duration::from_millis(150));
            let got = drain_sync(&buses, &format!("{prefix}/sync"));
            let receivers = got.iter().filter(|n| **n > 0).count();
            per_edit.push((receivers, events));
        }
        per_edit.sort();
        let (median, events) = per_edit[per_edit.len() / 2];
        let target = if members.is_some() {
            if median <= 2 {
                "(target 2: met)"
            } else {
                "(target 2: MISSED)"
            }
        } else {
            "(for comparison)"
        };
        println!(
            "members: {PEERS} peers, {label}: one-entry edit ({events} event) delivered to {median} of {PEERS} peers (median of {EDITS}, the publisher's own copy included) {target}"
        );
    }
    drop(clients);
    rt.shutdown_timeout(Duration::from_secs(1));
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
