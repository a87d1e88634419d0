//! The core session against a real mosquitto: two peers, each a `Session` whose worker takes
//! the federation's messages straight from its MQTT client. What reaches the consumer (Emacs)
//! is finished events only; raw federation messages never do.

mod common;

use common::{leak_bus, Broker};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use meta_log_federation_module::events::{Event, EventBus};
use meta_log_federation_module::federation::{Config, LocalProfile, Node};
use meta_log_federation_module::identity::{Identity, DEFAULT_PATH};
use meta_log_federation_module::session::{
    system_clock, Offline, Session, SessionEvent, SyncValue,
};
use meta_log_federation_module::transport::client::Client;
use meta_log_federation_module::transport::options::ConnectOptions;
use meta_log_federation_module::transport::url;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALICE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const BOB: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

/// One peer: its session, its client (with the runtime that drives it), its events and the
/// bus where the client puts anything that is not the session's.
struct Peer {
    session: Session,
    client: Arc<Client>,
    events: Receiver<SessionEvent>,
    bus: &'static EventBus,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

fn peer(broker: &Broker, mnemonic: &str, name: &str) -> Peer {
    let id = Identity::from_mnemonic(mnemonic, "", DEFAULT_PATH).expect("identity");
    let profile = LocalProfile {
        name: name.into(),
        software: "session-test".into(),
        capabilities: vec!["canvasl-sync".into()],
    };
    let node = Node::new(id, Config::default(), profile, None, system_clock()).expect("node");
    let (tx, events) = crossbeam_channel::unbounded();
    let bus = leak_bus();
    // The session publishes through the client; the client is made after the session (it
    // needs the session's inbound sender), so the session gets a slot filled just after.
    let slot: Arc<std::sync::OnceLock<Arc<Client>>> = Arc::new(std::sync::OnceLock::new());
    let publisher = LatePublisher(slot.clone());
    let session = Session::start(
        node,
        Box::new(publisher),
        Box::new(move |ev| {
            let _ = tx.send(ev);
        }),
        system_clock,
    )
    .expect("session");
    let mut opts = ConnectOptions::new(
        url::parse(&broker.url()).expect("url"),
        session.with_node(|n| n.client_id()),
    );
    opts.initial_subscriptions = session.with_node(|n| n.subscriptions());
    opts.inbound = Some(session.inbound());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (client, manager) = Client::new(opts, bus);
    rt.spawn(manager);
    let client = Arc::new(client);
    let _ = slot.set(client.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_connected() {
        assert!(Instant::now() < deadline, "no connection to mosquitto");
        std::thread::sleep(Duration::from_millis(5));
    }
    Peer {
        session,
        client,
        events,
        bus,
        _rt: rt,
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

/// A publisher whose client is set after the session starts.
struct LatePublisher(Arc<std::sync::OnceLock<Arc<Client>>>);

impl meta_log_federation_module::session::Publisher for LatePublisher {
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), meta_log_federation_module::session::PublishError> {
        match self.0.get() {
            Some(c) => meta_log_federation_module::session::Publisher::publish(
                c.as_ref(),
                topic,
                payload,
                qos,
                retain,
            ),
            None => Err(meta_log_federation_module::session::PublishError::NotConnected),
        }
    }
    fn connected(&self) -> bool {
        self.0.get().is_some_and(|c| c.is_connected())
    }
}

impl Peer {
    fn id(&self) -> String {
        self.session.with_node(|n| n.peer_id().to_string())
    }

    fn announce(&self) {
        for p in self
            .session
            .with_node(|n| n.announce(system_clock()))
            .expect("announce")
        {
            self.session.publish(p).expect("publish");
        }
    }

    /// Waits for an event `want` accepts; returns it. Panics after 15 s.
    fn wait(&self, mut want: impl FnMut(&SessionEvent) -> bool) -> SessionEvent {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if want(&ev) => return ev,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for an event"),
                Err(RecvTimeoutError::Disconnected) => panic!("the session stopped"),
            }
        }
    }

    /// Raw federation messages that reached the consumer's bus (there must be none).
    fn raw_messages(&self) -> usize {
        self.bus
            .drain(usize::MAX)
            .iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count()
    }
}

#[test]
fn peers_meet_and_exchange_messages_as_finished_events_only() {
    let broker = Broker::start();
    let alice = peer(&broker, ALICE, "alice");
    let bob = peer(&broker, BOB, "bob");
    let (alice_id, bob_id) = (alice.id(), bob.id());
    alice.announce();
    bob.announce();
    let ev = alice.wait(|e| matches!(e, SessionEvent::PeerOnline { .. }));
    match ev {
        SessionEvent::PeerOnline {
            peer_id,
            name,
            address,
        } => {
            assert_eq!(peer_id, bob_id);
            assert_eq!(name, "bob");
            assert!(
                address.ends_with(&format!("{bob_id}/messages")),
                "{address}"
            );
        }
        other => panic!("{other:?}"),
    }
    bob.wait(|e| matches!(e, SessionEvent::PeerOnline { peer_id, .. } if *peer_id == alice_id));
    let id = alice
        .session
        .publish_with(|n, now| n.peer_message(&bob_id, "hello bob", now))
        .expect("send");
    match bob.wait(|e| matches!(e, SessionEvent::PeerMessage { .. })) {
        SessionEvent::PeerMessage {
            from,
            text,
            id: got,
            topic,
            ..
        } => {
            assert_eq!(from, alice_id);
            assert_eq!(text, "hello bob");
            assert_eq!(got, id);
            assert!(topic.ends_with("/messages"));
        }
        other => panic!("{other:?}"),
    }
    // Bob leaves: Alice is told he departed.
    let dep = bob
        .session
        .with_node(|n| n.departure("test over", system_clock()))
        .expect("departure");
    bob.session.publish(dep).expect("publish");
    alice.wait(|e| {
        matches!(e, SessionEvent::PeerOffline { peer_id, reason: Offline::Departed }
                 if *peer_id == bob_id)
    });
    // Everything above crossed as finished events: no raw message reached either bus.
    assert_eq!(alice.raw_messages(), 0);
    assert_eq!(bob.raw_messages(), 0);
    assert!(
        alice
            .session
            .stats()
            .inbound
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[test]
fn a_forged_message_is_dropped_with_its_reason_and_changes_nothing() {
    let broker = Broker::start();
    let alice = peer(&broker, ALICE, "alice");
    let before = alice.session.with_node(|n| n.peer_ids().len());
    // A raw client publishes junk and a tampered event on the announce topic.
    let bob = peer(&broker, BOB, "bob");
    let mut forged = bob
        .session
        .with_node(|n| n.announce(system_clock()))
        .expect("announce")
        .remove(0);
    let text = String::from_utf8(forged.payload.clone()).expect("utf-8");
    forged.payload = text.replacen(r#"\"bob\""#, r#"\"eve\""#, 1).into_bytes();
    assert!(forged.payload != text.as_bytes(), "the name was changed");
    bob.client
        .publish(&forged.topic, forged.payload, 1, false)
        .expect("publish");
    match alice.wait(|e| matches!(e, SessionEvent::Dropped { .. })) {
        SessionEvent::Dropped { reason, quiet, .. } => {
            assert!(
                ["id-mismatch", "bad-signature"].contains(&reason.as_str()),
                "{reason}"
            );
            assert!(!quiet);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.session.with_node(|n| n.peer_ids().len()), before);
    assert_eq!(alice.raw_messages(), 0);
}

/// Alice and Bob, each seeing the other online, with sync open.
fn two_peers_syncing(broker: &Broker) -> (Peer, Peer) {
    let alice = peer(broker, ALICE, "alice");
    let bob = peer(broker, BOB, "bob");
    alice.announce();
    bob.announce();
    alice.wait(|e| matches!(e, SessionEvent::PeerOnline { .. }));
    for p in [&alice, &bob] {
        p.session
            .open_sync(
                &p.dir.path().join("sync"),
                &p.dir.path().join("state"),
                65_536,
            )
            .expect("open sync");
    }
    (alice, bob)
}

/// A one-entry canvas in `p`'s directory: its path and text.
fn board(p: &Peer) -> (std::path::PathBuf, &'static str) {
    let file = p.dir.path().join("board.canvasl");
    let text = "@version 1.0\n{\"id\":\"a\",\"type\":\"text\",\"x\":1}\n";
    std::fs::write(&file, text).expect("write");
    (file, text)
}

/// Shares `file` on the caller's thread (`Session::engine_op`): its URL and the actions left.
fn share_on_caller(
    p: &Peer,
    file: &std::path::Path,
) -> (String, Vec<meta_log_federation_module::sync::Action>) {
    p.session
        .engine_op(|e, now| {
            let a = e.share(file, None, now)?;
            Ok((e.resolve(&file.to_string_lossy())?.url(), a))
        })
        .expect("sync open")
        .expect("share")
}

#[test]
fn a_shared_file_arrives_merged_and_written_by_the_worker() {
    let broker = Broker::start();
    let (alice, bob) = two_peers_syncing(&broker);
    let (file, text) = board(&alice);
    let (url, left) = share_on_caller(&alice, &file);
    assert!(left.is_empty(), "{left:?}");
    let update = bob.wait(|e| {
        matches!(
            e,
            SessionEvent::Sync {
                kind: "file-updated",
                ..
            }
        )
    });
    let SessionEvent::Sync { values, .. } = update else {
        unreachable!()
    };
    let [SyncValue::Text(share), SyncValue::Text(path), SyncValue::Flag(created), _] = &values[..]
    else {
        panic!("{values:?}")
    };
    let (share, path) = (share.clone(), path.clone());
    assert_eq!(share, url);
    assert!(created);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

    // While Bob holds the share (a buffer visits it), Alice's change is merged and reported,
    // but the file is left alone until the hold ends.
    bob.session
        .engine_op(|e, _| Ok(((), e.hold_writes(&url, true)?)))
        .expect("open")
        .expect("hold");
    let edited = text.replace("\"x\":1", "\"x\":2");
    std::fs::write(&file, &edited).expect("edit");
    alice
        .session
        .engine_op(|e, now| Ok(((), e.local_file_changed(&url, now)?)))
        .expect("open")
        .expect("save");
    // Offered to the buffer as hunks from the file's text.
    match bob.wait(|e| {
        matches!(
            e,
            SessionEvent::Sync {
                kind: "held-change",
                ..
            }
        )
    }) {
        SessionEvent::Sync { values, .. } => match &values[..] {
            [SyncValue::Text(share), SyncValue::Text(p), SyncValue::Int(_), SyncValue::Int(_), SyncValue::Hunks(Some(h))] =>
            {
                assert_eq!(share, &url);
                assert_eq!(p, &path);
                assert_eq!(h.len(), 1, "{h:?}");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    let ((), written) = bob
        .session
        .engine_op(|e, _| Ok(((), e.hold_writes(&url, false)?)))
        .expect("open")
        .expect("release");
    assert!(matches!(
        written[..],
        [meta_log_federation_module::sync::Action::Updated { .. }]
    ));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), edited);
    assert_eq!(bob.raw_messages(), 0);
}

/// How many shares' status figures (text length, conflicts) `p`'s worker left to count, once
/// it has finished what it was given; and the sizes `SyncEngine::shares` reports then.
fn figures_left(p: &Peer) -> (usize, Vec<(usize, usize, usize)>) {
    p.session.on_worker(|_| ()).expect("worker running");
    p.session
        .with_engine(|e| {
            let left = e.warm_figures();
            let sizes = e
                .shares()
                .iter()
                .map(|s| (s.lines, s.bytes, s.conflicts))
                .collect();
            Ok((left, sizes))
        })
        .expect("sync open")
        .expect("query")
}

#[test]
fn share_status_figures_are_counted_on_the_worker_not_by_the_caller() {
    let broker = Broker::start();
    let (alice, bob) = two_peers_syncing(&broker);
    let (file, text) = board(&alice);
    // Shared on the caller's thread: the figures it made stale are counted on the worker.
    let (url, _) = share_on_caller(&alice, &file);
    // The event of Bob's file once it holds `want` (an earlier update may still be queued).
    let bob_file = bob
        .dir
        .path()
        .join("sync")
        .join(alice.id())
        .join("board.canvasl");
    let updated_to = |want: &str| {
        bob.wait(|e| {
            matches!(
                e,
                SessionEvent::Sync {
                    kind: "file-updated",
                    ..
                }
            ) && std::fs::read_to_string(&bob_file).is_ok_and(|t| t == want)
        });
    };
    updated_to(text);
    // Received and merged on Bob's worker, which counted it after the merge.
    for p in [&alice, &bob] {
        assert_eq!(figures_left(p), (0, vec![(2, text.len(), 0)]));
    }
    // An edit: Alice takes it in on the caller's thread, Bob merges it on his worker.
    let edited = text.replace("\"x\":1", "\"x\":12345");
    std::fs::write(&file, &edited).expect("edit");
    alice
        .session
        .engine_op(|e, now| Ok(((), e.local_file_changed(&url, now)?)))
        .expect("open")
        .expect("save");
    updated_to(&edited);
    for p in [&alice, &bob] {
        assert_eq!(figures_left(p), (0, vec![(2, edited.len(), 0)]));
    }
}
