//! Trust policies, blocking and the TOFU name-collision warning.

use super::*;

#[test]
fn trust_policies() {
    let a = outbound(alice(), "alice", T0);
    let p = a.presence(T0).unwrap();
    let s = a.sync(SyncKind::Change, "x", vec![], T0).unwrap();
    let id = alice().peer_id();
    // Open: accepted; blocked wins.
    let mut b = inbound(bob(), TrustPolicy::Open);
    assert!(feed(&mut b, &p, T0).is_ok());
    assert_eq!(
        b.trust_store().state(&id),
        TrustState::Unknown,
        "open pins nothing"
    );
    b.block_peer(&id, T0).unwrap();
    assert_eq!(reason(feed(&mut b, &s, T0)), "blocked");
    assert_eq!(b.peer(&id).unwrap().trust, TrustState::Blocked);
    // Allowlist: unknown refused until trusted; block beats trust.
    let mut b = inbound(bob(), TrustPolicy::Allowlist);
    assert_eq!(reason(feed(&mut b, &p, T0)), "untrusted");
    assert_eq!(reason(feed(&mut b, &s, T0)), "untrusted");
    assert!(b.peers().is_empty());
    b.trust_peer(&id, T0).unwrap();
    assert!(feed(&mut b, &p, T0).is_ok());
    assert!(feed(&mut b, &s, T0).is_ok());
    b.untrust_peer(&id).unwrap();
    let s2 = a.sync(SyncKind::Change, "y", vec![], T0).unwrap();
    assert_eq!(reason(feed(&mut b, &s2, T0)), "untrusted");
    b.trust_peer(&id, T0).unwrap();
    b.block_peer(&id, T0).unwrap();
    assert_eq!(reason(feed(&mut b, &s2, T0)), "blocked");
    // TOFU: any signed event is accepted, but only a presence pins the
    // key (so keys that never announce themselves leave no trace); blocked
    // wins.
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    assert!(feed(&mut b, &s, T0).is_ok());
    assert_eq!(b.trust_store().state(&id), TrustState::Unknown);
    assert!(feed(&mut b, &p, T0).is_ok());
    assert_eq!(b.trust_store().state(&id), TrustState::Pinned);
    b.block_peer(&id, T0).unwrap();
    assert_eq!(
        reason(feed(&mut b, &a.presence(T0 + 1).unwrap(), T0)),
        "blocked"
    );
    assert!(b.trust_peer("not-an-id", T0).is_err());
    // Policy can change at run time.
    b.set_policy(TrustPolicy::Open);
    assert_eq!(b.config().policy, TrustPolicy::Open);
    // A full peer table makes room by dropping the least recently seen
    // peer nobody decided about; one of explicit decisions refuses.
    let config = Config {
        max_peers: 1,
        policy: TrustPolicy::Open,
        ..Config::default()
    };
    let mut c = Inbound::new(carol().clone(), config, TrustStore::new()).unwrap();
    assert!(feed(&mut c, &p, T0).is_ok());
    let m = outbound(mallory(), "mallory", T0).presence(T0).unwrap();
    assert!(feed(&mut c, &m, T0).is_ok());
    assert_eq!(c.peer_ids(), vec![mallory().peer_id()]);
    assert_eq!(c.peers_evicted(), 1);
    c.trust_peer(&mallory().peer_id(), T0).unwrap();
    let r = feed(&mut c, &a.presence(T0 + 2).unwrap(), T0 + 2).unwrap_err();
    assert_eq!(r.reason, DropReason::Untrusted);
    assert!(r.message.contains("full"));
    // Blocked still wins over "full".
    c.block_peer(&bob().peer_id(), T0).unwrap();
    let bp = outbound(bob(), "bob", T0).presence(T0).unwrap();
    assert_eq!(reason(feed(&mut c, &bp, T0)), "blocked");
    // Under TOFU a full store still warns about a name collision but does
    // not grow: many fresh keys claiming a known name cannot fill memory.
    let config = Config {
        max_peers: 1,
        ..Config::default()
    };
    let mut t = Inbound::new(bob().clone(), config, TrustStore::new()).unwrap();
    assert!(feed(&mut t, &p, T0).is_ok());
    let fake = outbound(mallory(), "alice", T0).presence(T0).unwrap();
    let d = feed(&mut t, &fake, T0).unwrap_err();
    assert_eq!(d.transitions[0].kind(), "key-conflict");
    assert_eq!(t.trust_store().len(), 1);
    assert_eq!(t.peer_table().len(), 1);
}

#[test]
fn tofu_name_collision_warns_and_holds_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.json");
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    let real = outbound(alice(), "Alice", T0);
    assert!(feed(&mut b, &real.presence(T0).unwrap(), T0).is_ok());
    // Mallory announces herself as "alice".
    let fake = outbound(mallory(), " alice", T0);
    let d = feed(&mut b, &fake.presence(T0).unwrap(), T0).unwrap_err();
    assert_eq!(d.reason, DropReason::Untrusted);
    assert!(d.message.starts_with("WARNING"), "{}", d.message);
    assert_eq!(
        d.transitions,
        vec![Transition::KeyConflict {
            name: "alice".into(),
            known_peer_id: alice().peer_id(),
            new_peer_id: mallory().peer_id(),
        }]
    );
    assert!(d.transitions[0].is_warning());
    assert!(b.peer(&mallory().peer_id()).is_none());
    // Nothing from the held key is accepted, with no repeated warning.
    let s = fake.sync(SyncKind::Change, "x", vec![], T0).unwrap();
    let d = feed(&mut b, &s, T0).unwrap_err();
    assert_eq!(d.reason, DropReason::Untrusted);
    assert!(d.transitions.is_empty());
    // The hold survives a restart.
    b.trust_store_mut().save(&path).unwrap();
    let store = TrustStore::load(&path).unwrap();
    assert_eq!(store.state(&mallory().peer_id()), TrustState::Conflict);
    let mut b2 = Inbound::new(bob().clone(), Config::default(), store).unwrap();
    assert_eq!(reason(feed(&mut b2, &s, T0)), "untrusted");
    // The user decides the new key is genuine: its events are accepted,
    // but trust covers the key, not the name, so its claim to the name is
    // refused (and warned about) while the old key still holds it…
    b2.trust_peer(&mallory().peer_id(), T0).unwrap();
    assert!(feed(&mut b2, &s, T0).is_ok());
    let d = feed(&mut b2, &fake.presence(T0).unwrap(), T0).unwrap_err();
    assert_eq!(d.transitions[0].kind(), "key-conflict");
    assert!(d.message.contains("forget the other key"), "{}", d.message);
    assert_eq!(
        b2.trust_store().state(&mallory().peer_id()),
        TrustState::Trusted
    );
    // …until the user forgets the old key.
    b2.untrust_peer(&alice().peer_id()).unwrap();
    assert!(feed(&mut b2, &fake.presence(T0 + 1).unwrap(), T0 + 1).is_ok());
    // A key pinned earlier without a name is held when it takes a known name.
    let mut c = inbound(carol(), TrustPolicy::Tofu);
    assert!(feed(&mut c, &real.presence(T0).unwrap(), T0).is_ok());
    assert!(feed(&mut c, &s, T0).is_ok());
    let d = feed(&mut c, &fake.presence(T0).unwrap(), T0).unwrap_err();
    assert_eq!(d.transitions[0].kind(), "key-conflict");
    // The real key renaming itself is fine.
    let renamed = outbound(alice(), "Alice B.", T0 + 1);
    assert!(feed(&mut c, &renamed.presence(T0 + 1).unwrap(), T0 + 1).is_ok());
    assert_eq!(
        c.trust_store()
            .entry(&alice().peer_id())
            .unwrap()
            .name
            .as_deref(),
        Some("Alice B.")
    );
}
