//! A hostile publisher: floods of events and keys, replays across a
//! flood and across a restart.

use super::*;

/// A throwaway key, `n` > 0.
fn throwaway(n: u64) -> Identity {
    let mut secret = [0u8; 32];
    secret[0] = 0x42;
    secret[24..].copy_from_slice(&n.to_be_bytes());
    Identity::from_secret_for_tests(secret)
}

fn node(id: &Identity, dir: &std::path::Path, now: u64) -> Node {
    Node::new(
        id.clone(),
        Config::default(),
        profile("bob"),
        Some(dir.join("trust.json")),
        now,
    )
    .unwrap()
}

#[test]
fn a_replay_after_a_100000_event_flood_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = node(bob(), dir.path(), T0);
    let a = outbound(alice(), "alice", T0);
    let p = a.presence(T0).unwrap();
    b.receive(&p.topic, &p.payload, T0).unwrap();
    let mut table = PeerTable::new(120, 10);
    let me = outbound(bob(), "bob", T0).presence(T0).unwrap();
    let ev = parse(&me);
    let content = Presence::parse(&ev.content, ev.created_at).unwrap();
    let _ = table.apply_presence(&content, T0, T0, false, TrustState::Pinned);
    let captured = a
        .peer_message(&mut table, &bob().peer_id(), "pay 10", T0)
        .unwrap();
    assert!(b.receive(&captured.topic, &captured.payload, T0).is_ok());
    // One new key sends 100,000 valid events within the window.
    let flood = throwaway(1);
    let sync = Topics::default().sync();
    let mut accepted = 0u32;
    for n in 0..100_000u64 {
        let e = raw(
            &flood,
            KIND_SYNC_CHANGE,
            &n.to_string(),
            &[&["v", PROTOCOL_VERSION], &["t", "sync"]],
            T0 + n / 1000,
        );
        if b.receive(&sync, &e, T0 + n / 1000).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted as usize, Config::default().replay_per_sender());
    let floods = b
        .drop_counts()
        .into_iter()
        .find(|(r, _)| *r == "flood")
        .unwrap()
        .1;
    assert_eq!(floods, 100_000 - u64::from(accepted));
    // The captured message is still refused as a replay.
    let d = b
        .receive(&captured.topic, &captured.payload, T0 + 100)
        .unwrap_err();
    assert_eq!(d.reason, DropReason::Replay);
}

#[test]
fn a_replay_after_a_restart_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = outbound(alice(), "alice", T0);
    let s = a.sync(SyncKind::Change, "edit", vec![], T0).unwrap();
    {
        let mut b = node(bob(), dir.path(), T0);
        assert!(b.receive(&s.topic, &s.payload, T0).is_ok());
        // Dropped without saving anything: as after kill -9.
    }
    let mut b = node(bob(), dir.path(), T0 + 30);
    let d = b.receive(&s.topic, &s.payload, T0 + 30).unwrap_err();
    assert_eq!(d.reason, DropReason::Replay);
    // After a clean save too, and the journal stays small.
    b.save_trust().unwrap();
    let mut b = node(bob(), dir.path(), T0 + 60);
    assert_eq!(
        b.receive(&s.topic, &s.payload, T0 + 60).unwrap_err().reason,
        DropReason::Replay
    );
    // A year-old presence cannot pin its key after a restart.
    let mut old = outbound(carol(), "carol", T0 - 365 * 86_400);
    let p = old.presence(T0 - 365 * 86_400).unwrap();
    old.new_session(T0 - 365 * 86_400);
    let d = b.receive(&p.topic, &p.payload, T0 + 60).unwrap_err();
    assert_eq!(d.reason, DropReason::TooOld);
    assert!(b.peer(&carol().peer_id()).is_none());
}

#[test]
fn a_flood_of_keys_leaves_the_trust_file_alone_and_a_newcomer_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.json");
    let mut b = node(bob(), dir.path(), T0);
    let a = outbound(alice(), "alice", T0);
    let p = a.presence(T0).unwrap();
    b.receive(&p.topic, &p.payload, T0).unwrap();
    b.save_trust().unwrap();
    let before = std::fs::read(&path).unwrap();
    // 3,000 throwaway keys each send one valid signed sync event.
    let sync = Topics::default().sync();
    for n in 1..=3_000u64 {
        let e = raw(
            &throwaway(n),
            KIND_SYNC_CHANGE,
            "x",
            &[&["v", PROTOCOL_VERSION], &["t", "sync"]],
            T0,
        );
        let _ = b.receive(&sync, &e, T0);
    }
    b.save_trust().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before, "trust.json grew");
    // Then 3,000 keys announce themselves: pins are rate limited, so the
    // file grows by a bounded amount…
    let announce = Topics::default().announce();
    for n in 3_001..=6_000u64 {
        let id = throwaway(n);
        let e = raw(
            &id,
            KIND_PRESENCE,
            &online_presence_json(id.peer_id(), &format!("x{n}")).replace(
                &format!("\"since\":{T0}"),
                &format!("\"since\":{}", T0 + 10),
            ),
            &[&["v", PROTOCOL_VERSION], &["t", "announce"]],
            T0 + 10,
        );
        let _ = b.receive(&announce, &e, T0 + 10);
    }
    b.save_trust().unwrap();
    let store = TrustStore::load(&path).unwrap();
    assert!(
        store.len() <= 2 + crate::federation::trust::PIN_BURST as usize,
        "{}",
        store.len()
    );
    // …and a genuine newcomer a little later is accepted and pinned.
    let c = outbound(carol(), "carol", T0 + 20);
    let cp = c.announce(T0 + 20).unwrap();
    assert!(b.receive(&cp.topic, &cp.payload, T0 + 20).is_ok());
    b.save_trust().unwrap();
    let store = TrustStore::load(&path).unwrap();
    assert_eq!(store.state(&carol().peer_id()), TrustState::Pinned);
    assert_eq!(store.state(&alice().peer_id()), TrustState::Pinned);
}
