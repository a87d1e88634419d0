//! Presence, the last-will rule and peer table transitions.

use super::*;

#[test]
fn the_will_rule() {
    let mut a = outbound(alice(), "alice", T0);
    // Session 1: will signed at connect, then presence and heartbeats.
    let will1 = a.will(T0).unwrap();
    assert!(will1.retain);
    assert_eq!(will1.topic, a.topics().presence(&alice().peer_id()));
    let p1 = a.presence(T0).unwrap();
    let hb = a.presence(T0 + 60).unwrap();
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    assert!(feed(&mut b, &p1, T0).is_ok());
    assert!(feed(&mut b, &hb, T0 + 60).unwrap().transitions.is_empty());
    // Hours later the broker publishes the will: old, but accepted, and it
    // overrides the newer heartbeat of its own session.
    let later = T0 + 5 * 3600;
    let acc = feed(&mut b, &will1, later).unwrap();
    assert_eq!(
        acc.transitions,
        vec![Transition::WentOffline {
            peer_id: alice().peer_id(),
            graceful: false
        }]
    );
    assert_eq!(
        b.peer(&alice().peer_id()).unwrap().status,
        PeerStatus::Offline
    );
    // An old online (session 1) arriving after the will changes nothing.
    let mut c = inbound_knowing(carol(), TrustPolicy::Tofu, &[alice()]);
    assert!(feed(&mut c, &will1, later).is_ok());
    assert_eq!(reason(feed(&mut c, &p1, later)), "too-old");
    // Session 2 comes online; session 1's will can no longer take it down.
    a.new_session(later);
    let will2 = a.will(later).unwrap();
    let p2 = a.presence(later).unwrap();
    assert_eq!(
        feed(&mut c, &p2, later).unwrap().transitions[0].kind(),
        "came-online"
    );
    let mut d = inbound(mallory(), TrustPolicy::Tofu);
    assert!(feed(&mut d, &p2, later).is_ok());
    assert_eq!(reason(feed(&mut d, &will1, later + 1)), "too-old");
    assert_eq!(
        d.peer(&alice().peer_id()).unwrap().status,
        PeerStatus::Online
    );
    // Its own will does.
    assert_eq!(
        feed(&mut d, &will2, later + 9999).unwrap().transitions[0].kind(),
        "went-offline"
    );
    // Departure: graceful.
    let mut a3 = outbound(alice(), "alice", later + 10_000);
    let p3 = a3.presence(later + 10_000).unwrap();
    let dep = a3.departure("shutting down", later + 10_100).unwrap();
    assert!(feed(&mut d, &p3, later + 10_000).is_ok());
    let acc = feed(&mut d, &dep, later + 10_100).unwrap();
    assert!(
        matches!(&acc.body, Body::Departure(p) if p.reason.as_deref() == Some("shutting down"))
    );
    assert_eq!(
        acc.transitions,
        vec![Transition::WentOffline {
            peer_id: alice().peer_id(),
            graceful: true
        }]
    );
    // Reconnecting within the same second still orders sessions.
    let s1 = a3.session_since();
    assert_eq!(a3.new_session(s1), s1 + 1);
    let p4 = a3.presence(s1).unwrap();
    assert!(parse(&p4).created_at > s1, "created_at never before since");
    assert!(feed(&mut d, &p4, s1 + 1).is_ok());
    // A departure whose status is online is malformed.
    let bad = online_presence_json(alice().peer_id(), "alice");
    let ev = raw(
        alice(),
        KIND_DEPARTURE,
        &bad,
        &[&["v", PROTOCOL_VERSION], &["t", "presence"]],
        T0,
    );
    assert_eq!(reason(d.accept(&will1.topic, &ev, T0)), "malformed");
    let ev = raw(
        alice(),
        KIND_PRESENCE,
        &bad.replace(
            &format!("\"protocol\":\"{PROTOCOL_VERSION}\""),
            &format!("\"protocol\":\"{OLD_VERSION}\""),
        ),
        &[&["v", PROTOCOL_VERSION], &["t", "presence"]],
        T0,
    );
    assert_eq!(reason(d.accept(&will1.topic, &ev, T0)), "protocol-version");
}

#[test]
fn peer_table_online_stale_offline() {
    let a = outbound(alice(), "alice", T0);
    let will = a.will(T0).unwrap();
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    let tr = feed(&mut b, &a.presence(T0).unwrap(), T0)
        .unwrap()
        .transitions;
    assert_eq!(tr[0].kind(), "came-online");
    assert!(b.tick(T0 + 100).is_empty());
    let tr = b.tick(T0 + 121);
    assert_eq!(
        tr,
        vec![Transition::WentStale {
            peer_id: alice().peer_id()
        }]
    );
    assert_eq!(b.peers()[0].status, PeerStatus::Stale);
    // A heartbeat brings it back.
    let tr = feed(&mut b, &a.presence(T0 + 130).unwrap(), T0 + 130)
        .unwrap()
        .transitions;
    assert_eq!(tr[0].kind(), "came-online");
    b.tick(T0 + 400);
    assert_eq!(b.peers()[0].status, PeerStatus::Stale);
    let tr = feed(&mut b, &will, T0 + 500).unwrap().transitions;
    assert_eq!(tr[0].kind(), "went-offline");
    assert_eq!(b.peers()[0].status, PeerStatus::Offline);
    assert!(b.tick(T0 + 10_000).is_empty());
    // An old retained presence cannot introduce an unknown key…
    let mut fresh = inbound(carol(), TrustPolicy::Tofu);
    assert_eq!(
        reason(feed(&mut fresh, &a.presence(T0).unwrap(), T0 + 1000)),
        "too-old"
    );
    assert_eq!(fresh.trust_store().len(), 0);
    // …but of a known peer, a newcomer learns it as stale, at once.
    let mut c = inbound_knowing(carol(), TrustPolicy::Tofu, &[alice()]);
    let acc = feed(&mut c, &a.presence(T0).unwrap(), T0 + 1000).unwrap();
    assert!(acc.transitions.is_empty());
    assert_eq!(c.peers()[0].status, PeerStatus::Stale);
}

#[test]
fn a_presence_remembered_before_a_restart_still_introduces_the_peer() {
    let a = outbound(alice(), "alice", T0);
    let p = a.presence(T0).unwrap();
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    assert!(feed(&mut b, &p, T0).is_ok());
    // A restart: the replay memory comes back from the journal, the peer
    // table starts empty. The broker's retained presence arrives again.
    let remembered: Vec<_> = b.replay_set().iter().collect();
    let mut b2 = inbound_knowing(bob(), TrustPolicy::Tofu, &[alice()]);
    let window = b2.replay_set().window();
    for (id, sender, expires) in remembered {
        b2.replay_set_mut().remember(id, sender, expires - window);
    }
    assert!(b2.peer(&alice().peer_id()).is_none());
    let acc = feed(&mut b2, &p, T0 + 5).unwrap();
    assert!(!acc.transitions.is_empty(), "alice is known again");
    assert!(b2.peer(&alice().peer_id()).is_some());
    // Once the peer table holds its presence, the same event is a replay.
    assert_eq!(reason(feed(&mut b2, &p, T0 + 6)), "replay");
    // Any other event remembered before the restart stays refused.
    let m = a.sync(SyncKind::Change, "x", vec![], T0).unwrap();
    assert!(feed(&mut b, &m, T0).is_ok());
    let mut b3 = inbound_knowing(bob(), TrustPolicy::Tofu, &[alice()]);
    let window = b3.replay_set().window();
    for (id, sender, expires) in b.replay_set().iter() {
        b3.replay_set_mut().remember(id, sender, expires - window);
    }
    assert_eq!(reason(feed(&mut b3, &m, T0 + 7)), "replay");
}
