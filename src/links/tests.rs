//! The link manager end to end in one process: two federation nodes, each with a link manager,
//! whose "broker" is a direct hand-over of the published events (the MQTT path is tested with
//! mosquitto and batch Emacs peers in test/meta-log-federation-direct-test.el). The TCP
//! fallback runs on real loopback sockets with real TLS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::manager::{AutoLinks, LinkHost, LinkState, Manager, Settings};
use super::test_ids::ident;
use crate::events::lock;
use crate::federation::protocol::KIND_LINK_HELLO;
use crate::federation::{
    Body, Config, DropReason, LocalProfile, Node, Publication, SyncKind, TrustPolicy,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Two nodes and their managers; `broker[i]` lists what node i published through the broker.
#[derive(Default)]
struct Net {
    nodes: Vec<Mutex<Node>>,
    managers: Mutex<Vec<Arc<Manager>>>,
    broker: Mutex<Vec<Vec<Publication>>>,
    /// Plaintexts of peer messages node i accepted.
    received: Mutex<Vec<Vec<String>>>,
    /// Drops by node i.
    dropped: Mutex<Vec<Vec<DropReason>>>,
    /// Make node i's hello name a wrong fingerprint.
    lying_hello: Mutex<Vec<bool>>,
}

struct Host {
    net: Arc<Net>,
    me: usize,
}

impl Net {
    /// Hands a publication of node `from` to the other node, as the broker would.
    fn publish(&self, from: usize, p: Publication) {
        lock(&self.broker)[from].push(p.clone());
        self.handle(1 - from, &p.topic, &p.payload);
    }

    fn handle(&self, at: usize, topic: &str, payload: &[u8]) {
        let h = lock(&self.nodes[at]).handle(topic, payload, now());
        match h.result {
            Ok(a) => match a.body {
                Body::Message { plaintext } => lock(&self.received)[at].push(plaintext),
                Body::LinkSignal { plaintext } => {
                    let m = lock(&self.managers)[at].clone();
                    m.on_signal(&a.event.pubkey, &plaintext);
                }
                _ => {}
            },
            Err(d) => lock(&self.dropped)[at].push(d.reason),
        }
        // Receipts are due at once here (the node batches them per tick).
        let t = lock(&self.nodes[at]).delivery_tick(now());
        for p in t.publications {
            self.send(at, p);
        }
    }

    /// Sends a publication of node `from`: over the link if the manager carries it.
    fn send(&self, from: usize, p: Publication) {
        let m = lock(&self.managers)[from].clone();
        if !m.carry(&p.topic, &p.payload) {
            self.publish(from, p);
        }
    }
}

impl LinkHost for Host {
    fn send_signal(&self, to: &str, plaintext: &str) -> Result<(), String> {
        let p = lock(&self.net.nodes[self.me])
            .link_signal(to, plaintext, now())
            .map_err(|e| e.to_string())?;
        self.net.publish(self.me, p);
        Ok(())
    }

    fn sign_hello(&self, to: &str, content: &str) -> Result<String, String> {
        let mut content = content.to_string();
        if lock(&self.net.lying_hello)[self.me] {
            let v: serde_json::Value = serde_json::from_str(&content).unwrap();
            let fp = format!("sha-256 {}", vec!["AB"; 32].join(":"));
            content = serde_json::json!({"session": v["session"], "fingerprint": fp,
                                          "peer_fingerprint": v["peer_fingerprint"]})
            .to_string();
        }
        let ev = lock(&self.net.nodes[self.me]).sign_unpublished(
            KIND_LINK_HELLO,
            &content,
            super::hello::hello_tags(to),
            now(),
        );
        Ok(ev.to_json())
    }

    fn deliver(&self, _from: &str, topic: &str, payload: &[u8]) {
        self.net.handle(self.me, topic, payload);
    }

    fn link_down(&self, peer: &str) {
        let waiting = lock(&self.net.nodes[self.me]).outbox().waiting_for(peer);
        for p in waiting {
            self.net.publish(self.me, p);
        }
    }
}

fn node(i: usize, policy: TrustPolicy) -> Node {
    let config = Config {
        policy,
        ..Config::default()
    };
    let profile = LocalProfile {
        name: format!("peer{i}"),
        software: "test/0".into(),
        capabilities: vec![],
    };
    Node::new(ident(i), config, profile, None, now()).unwrap()
}

/// Two nodes that know each other; node `listener` listens for TCP.
fn net(policy_b: TrustPolicy, listens: [bool; 2]) -> Arc<Net> {
    net_with(policy_b, listens, AutoLinks::Off)
}

/// [`net`] with links opening by themselves as `auto` says.
fn net_with(policy_b: TrustPolicy, listens: [bool; 2], auto: AutoLinks) -> Arc<Net> {
    let net = Arc::new(Net {
        nodes: vec![
            Mutex::new(node(0, TrustPolicy::Tofu)),
            Mutex::new(node(1, policy_b)),
        ],
        broker: Mutex::new(vec![vec![], vec![]]),
        received: Mutex::new(vec![vec![], vec![]]),
        dropped: Mutex::new(vec![vec![], vec![]]),
        lying_hello: Mutex::new(vec![false, false]),
        ..Default::default()
    });
    for i in 0..2 {
        let ps = lock(&net.nodes[i]).announce(now()).unwrap();
        for p in ps {
            let _ = lock(&net.nodes[1 - i]).receive(&p.topic, &p.payload, now());
        }
    }
    for (i, listen) in listens.into_iter().enumerate() {
        let me = lock(&net.nodes[i]).peer_id().to_string();
        let topics = lock(&net.nodes[i]).config().topics().unwrap();
        let mut s = Settings::new(&me, topics);
        s.tcp_listen = listen.then(|| "127.0.0.1:0".parse().unwrap());
        s.setup_timeout = Duration::from_secs(5);
        // These tests are about the manager and the TCP fallback; WebRTC has its own
        // (tests/webrtc_link.rs, and an Emacs-level one in test/).
        s.webrtc = false;
        s.auto = auto;
        let host = Arc::new(Host {
            net: net.clone(),
            me: i,
        });
        lock(&net.managers).push(Arc::new(Manager::start(host, s).unwrap()));
    }
    net
}

fn peer_id(net: &Net, i: usize) -> String {
    lock(&net.nodes[i]).peer_id().to_string()
}

fn manager(net: &Net, i: usize) -> Arc<Manager> {
    lock(&net.managers)[i].clone()
}

/// Waits (up to 10 s) until `f` holds; false if it never did.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn message_count(net: &Net, from: usize) -> usize {
    lock(&net.broker)[from]
        .iter()
        .filter(|p| String::from_utf8_lossy(&p.payload).contains("\"kind\":4770"))
        .count()
}

#[test]
fn messages_travel_over_a_tcp_link_and_fall_back_to_the_broker_when_it_drops() {
    for listens in [[true, false], [false, true], [true, true]] {
        let net = net(TrustPolicy::Tofu, listens);
        let (a, b) = (peer_id(&net, 0), peer_id(&net, 1));
        // Either side may ask: the larger id asks the smaller to offer.
        let asker = if listens == [true, false] { 1 } else { 0 };
        manager(&net, asker).connect(if asker == 0 { &b } else { &a });
        assert!(
            eventually(|| manager(&net, 0)
                .link(&b)
                .is_some_and(|l| l.state == LinkState::Up)
                && manager(&net, 1)
                    .link(&a)
                    .is_some_and(|l| l.state == LinkState::Up)),
            "link up ({listens:?}): {:?} {:?}",
            manager(&net, 0).links(),
            manager(&net, 1).links()
        );
        for i in 0..20 {
            let p = lock(&net.nodes[0])
                .peer_message(&b, &format!("m{i}"), now())
                .unwrap();
            net.send(0, p);
        }
        assert!(eventually(|| lock(&net.received)[1].len() == 20));
        assert_eq!(
            message_count(&net, 0),
            0,
            "no message went through the broker"
        );
        // The receipts came back over the link too.
        assert!(eventually(|| lock(&net.nodes[0])
            .outbox()
            .pending()
            .is_empty()));
        let l = manager(&net, 0).link(&b).unwrap();
        assert!(l.bytes_out > 0 && l.bytes_in > 0);
        // A sync event addressed to b takes the link; an unaddressed one the broker.
        let before = manager(&net, 1).counters().received;
        let tags = vec![vec!["p".to_string(), b.clone()]];
        let addressed = lock(&net.nodes[0])
            .sync(SyncKind::Request, "{}", tags, now())
            .unwrap();
        assert!(manager(&net, 0).carry(&addressed.topic, &addressed.payload));
        assert!(eventually(
            || manager(&net, 1).counters().received == before + 1
        ));
        let everyone = lock(&net.nodes[0])
            .sync(SyncKind::Request, "{}", vec![], now())
            .unwrap();
        assert!(!manager(&net, 0).carry(&everyone.topic, &everyone.payload));
        assert_eq!(l.path.map(|p| p.as_str()), Some("tcp"));

        // The link drops: the next messages go through the broker, none lost or twice.
        manager(&net, 1).close(&a);
        assert!(eventually(|| manager(&net, 0)
            .link(&b)
            .is_some_and(|l| l.state != LinkState::Up)));
        for i in 20..30 {
            let p = lock(&net.nodes[0])
                .peer_message(&b, &format!("m{i}"), now())
                .unwrap();
            net.send(0, p);
        }
        let got = lock(&net.received)[1].clone();
        let want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
        assert_eq!(got, want);
        assert_eq!(message_count(&net, 0), 10);
    }
}

#[test]
fn a_hello_naming_another_certificate_never_carries_a_message() {
    let net = net(TrustPolicy::Tofu, [true, true]);
    let b = peer_id(&net, 1);
    lock(&net.lying_hello)[1] = true;
    manager(&net, 0).connect(&b);
    assert!(eventually(|| manager(&net, 0).counters().bad_hello >= 1));
    assert!(eventually(|| manager(&net, 0)
        .link(&b)
        .is_some_and(|l| l.state == LinkState::Failed)));
    let p = lock(&net.nodes[0])
        .peer_message(&b, "not over the link", now())
        .unwrap();
    net.send(0, p);
    assert_eq!(message_count(&net, 0), 1, "it went through the broker");
    assert_eq!(manager(&net, 0).counters().carried, 0);
}

#[test]
fn signals_from_a_peer_the_trust_policy_refuses_open_nothing() {
    // b trusts only an allowlist, empty: a's signals are dropped by b's node.
    let net = net(TrustPolicy::Allowlist, [true, true]);
    let (a, b) = (peer_id(&net, 0), peer_id(&net, 1));
    let offerer = if a < b { 0 } else { 1 };
    manager(&net, 0).connect(&b);
    if offerer == 0 {
        assert!(eventually(
            || lock(&net.dropped)[1].contains(&DropReason::Untrusted)
        ));
    }
    assert!(eventually(|| manager(&net, 0)
        .link(&b)
        .is_some_and(|l| l.state == LinkState::Failed)));
    assert!(manager(&net, 1)
        .link(&a)
        .is_none_or(|l| l.state != LinkState::Up));
}

#[test]
fn glare_stale_sessions_malformed_and_flooding_signals_are_counted_and_ignored() {
    let net = net(TrustPolicy::Tofu, [false, false]);
    let (a, b) = (peer_id(&net, 0), peer_id(&net, 1));
    let (small, large) = if a < b { (0, 1) } else { (1, 0) };
    let (small_id, large_id) = (peer_id(&net, small), peer_id(&net, large));
    let m_small = manager(&net, small);
    let fp = format!("sha-256 {}", vec!["AB"; 32].join(":"));
    let offer = format!(
        r#"{{"session":"0123456789abcdef0123456789abcdef","type":"tcp-offer","fingerprint":"{fp}","addr":null}}"#
    );
    // An offer from the larger id: glare.
    m_small.on_signal(&large_id, &offer);
    assert_eq!(m_small.counters().glare, 1);
    assert!(m_small.link(&large_id).is_none());
    // An answer for a session that does not exist.
    let answer = offer.replace("tcp-offer", "tcp-answer");
    m_small.on_signal(&large_id, &answer);
    assert_eq!(m_small.counters().stale_session, 1);
    // Not a signal.
    m_small.on_signal(&large_id, "{\"type\":\"offer\"}");
    assert_eq!(m_small.counters().malformed_signals, 1);
    // A flood: the budget runs out.
    for _ in 0..200 {
        m_small.on_signal(&large_id, "{}");
    }
    assert!(m_small.counters().rate_limited >= 100);
    // The larger side refuses answers sent by the smaller one.
    manager(&net, large).on_signal(&small_id, &answer);
    assert_eq!(manager(&net, large).counters().glare, 1);
}

#[test]
fn on_demand_a_message_to_a_peer_without_a_link_opens_one_and_the_next_take_it() {
    let net = net_with(TrustPolicy::Tofu, [true, true], AutoLinks::OnDemand);
    let (a, b) = (peer_id(&net, 0), peer_id(&net, 1));
    let first = lock(&net.nodes[0])
        .peer_message(&b, "first", now())
        .unwrap();
    net.send(0, first);
    assert_eq!(
        message_count(&net, 0),
        1,
        "the first goes through the broker"
    );
    assert!(eventually(|| manager(&net, 0)
        .link(&b)
        .is_some_and(|l| l.state == LinkState::Up)
        && manager(&net, 1)
            .link(&a)
            .is_some_and(|l| l.state == LinkState::Up)));
    let second = lock(&net.nodes[0])
        .peer_message(&b, "second", now())
        .unwrap();
    net.send(0, second);
    assert!(eventually(|| lock(&net.received)[1].len() == 2));
    assert_eq!(message_count(&net, 0), 1, "the second took the link");
}
