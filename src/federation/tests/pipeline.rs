//! The inbound pipeline step by step: signatures, topics, time window, replays,
//! sizes, own events, every drop reason, configuration.

use super::*;

#[test]
fn presence_announce_and_sync_are_accepted() {
    let a = outbound(alice(), "alice", T0);
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    let p = a.presence(T0).unwrap();
    assert!(p.retain && p.qos == 1);
    assert_eq!(
        p.topic,
        format!("canvasl/peers/{}/presence", alice().peer_id())
    );
    let acc = feed(&mut b, &p, T0).unwrap();
    assert_eq!(acc.from(), alice().peer_id());
    assert_eq!(acc.route, Route::Presence(alice().peer_id()));
    assert!(matches!(&acc.body, Body::Presence(pr) if pr.name == "alice"
        && pr.status == AnnouncedStatus::Online
        && pr.capabilities.len() == 2));
    assert_eq!(
        acc.transitions,
        vec![Transition::CameOnline {
            peer_id: alice().peer_id(),
            name: "alice".into()
        }]
    );
    // The announce copy is a different event with the same presence state.
    let ann = a.announce(T0).unwrap();
    assert_eq!(ann.topic, "canvasl/peers/announce");
    assert!(!ann.retain);
    let acc = feed(&mut b, &ann, T0).unwrap();
    assert!(acc.transitions.is_empty());
    // Sync events, with caller tags.
    let s = a
        .sync(
            SyncKind::Change,
            "{\"id\":\"n1\"}",
            vec![vec!["e".into(), "x".into()]],
            T0 + 1,
        )
        .unwrap();
    assert_eq!(s.topic, "canvasl/sync");
    let acc = feed(&mut b, &s, T0 + 1).unwrap();
    assert_eq!(
        acc.body,
        Body::Sync {
            kind: SyncKind::Change,
            content: "{\"id\":\"n1\"}".into()
        }
    );
    assert_eq!(tag_value(&acc.event.tags, "e"), Some("x"));
    for k in [SyncKind::Request, SyncKind::Response] {
        let s = a.sync(k, "c", vec![], T0 + 2).unwrap();
        assert!(
            matches!(feed(&mut b, &s, T0 + 2).unwrap().body, Body::Sync { kind, .. } if kind == k)
        );
    }
    let peer = b.peer(&alice().peer_id()).unwrap();
    assert_eq!(peer.status, PeerStatus::Online);
    // Sync events are not peer messages: they are counted apart.
    assert_eq!(peer.messages_in, 0);
    assert_eq!(peer.sync_in, 3);
    assert_eq!(peer.trust, TrustState::Pinned);
    assert_eq!(peer.last_seen, T0 + 2);
    assert_eq!(b.peer_ids(), vec![alice().peer_id()]);
    assert_eq!(b.peers().len(), 1);
    assert!(b.trust_store().is_dirty());
    assert_eq!(b.counters().total(), 0);
    // Reserved or empty caller tags are refused.
    assert!(matches!(
        a.sync(
            SyncKind::Change,
            "c",
            vec![vec!["v".into(), "2".into()]],
            T0
        ),
        Err(OutboundError::BadTags(_))
    ));
    assert!(matches!(
        a.sync(SyncKind::Change, "c", vec![vec![]], T0),
        Err(OutboundError::BadTags(_))
    ));
}

#[test]
fn forged_and_tampered_events_are_dropped() {
    let a = outbound(alice(), "alice", T0);
    let mut b = inbound(bob(), TrustPolicy::Open);
    let p = a.sync(SyncKind::Change, "hello", vec![], T0).unwrap();
    // A signature by someone else.
    let mut ev = parse(&p);
    let other = parse(
        &outbound(mallory(), "m", T0)
            .sync(SyncKind::Change, "hello", vec![], T0)
            .unwrap(),
    );
    ev.sig = other.sig;
    assert_eq!(
        reason(b.accept(&p.topic, ev.to_json().as_bytes(), T0)),
        "bad-signature"
    );
    // Content changed, id left alone.
    let mut ev = parse(&p);
    ev.content = "HELLO".into();
    assert_eq!(
        reason(b.accept(&p.topic, ev.to_json().as_bytes(), T0)),
        "id-mismatch"
    );
    // Content changed and id recomputed: the signature no longer matches.
    reid(&mut ev);
    assert_eq!(
        reason(b.accept(&p.topic, ev.to_json().as_bytes(), T0)),
        "bad-signature"
    );
    // Claiming to be alice with mallory's key: signature fails.
    let mut ev = other_claiming(alice());
    reid(&mut ev);
    assert_eq!(
        reason(b.accept(&p.topic, ev.to_json().as_bytes(), T0)),
        "bad-signature"
    );
    // Forging our own pubkey is a bad signature, not a quiet own-event.
    let mut ev = other_claiming(bob());
    reid(&mut ev);
    assert_eq!(
        reason(b.accept(&p.topic, ev.to_json().as_bytes(), T0)),
        "bad-signature"
    );
    // The genuine one still goes through.
    assert!(feed(&mut b, &p, T0).is_ok());
    assert_eq!(b.counters().get(DropReason::BadSignature), 4);
}

fn other_claiming(victim: &Identity) -> SignedEvent {
    let mut ev = sign(
        mallory(),
        KIND_SYNC_CHANGE,
        "evil",
        vec![
            vec!["v".into(), PROTOCOL_VERSION.into()],
            vec!["t".into(), "sync".into()],
        ],
        T0,
    );
    ev.pubkey = victim.peer_id();
    ev
}

#[test]
fn signer_must_match_the_topic() {
    let mut b = inbound(bob(), TrustPolicy::Open);
    let a = outbound(alice(), "alice", T0);
    let p = a.presence(T0).unwrap();
    let topics = Topics::default();
    // Alice's presence put on mallory's presence topic.
    let r = b.accept(&topics.presence(&mallory().peer_id()), &p.payload, T0);
    assert_eq!(reason(r), "wrong-topic");
    // Alice's presence (t=presence) replayed on the announce topic.
    assert_eq!(
        reason(b.accept(&topics.announce(), &p.payload, T0)),
        "wrong-topic"
    );
    // A sync event on a presence topic; a presence on the sync topic.
    let s = a.sync(SyncKind::Change, "x", vec![], T0).unwrap();
    assert_eq!(
        reason(b.accept(&topics.presence(&alice().peer_id()), &s.payload, T0)),
        "wrong-topic"
    );
    assert_eq!(
        reason(b.accept(&topics.sync(), &p.payload, T0)),
        "wrong-topic"
    );
    // Not a federation topic at all, or another prefix.
    assert_eq!(
        reason(b.accept("elsewhere/sync", &s.payload, T0)),
        "wrong-topic"
    );
    assert_eq!(
        reason(b.accept("canvasl/peers/xyz/presence", &p.payload, T0)),
        "wrong-topic"
    );
    // Presence content naming another peer than its signer.
    let content = online_presence_json(carol().peer_id(), "carol");
    let forged = raw(
        alice(),
        KIND_PRESENCE,
        &content,
        &[&["v", PROTOCOL_VERSION], &["t", "presence"]],
        T0,
    );
    assert_eq!(
        reason(b.accept(&topics.presence(&alice().peer_id()), &forged, T0)),
        "malformed"
    );
    // Correct placement works, and nothing above was remembered as seen.
    assert!(feed(&mut b, &p, T0).is_ok());
    assert!(feed(&mut b, &s, T0).is_ok());
}

#[test]
fn replays_are_dropped_and_memory_is_bounded() {
    let a = outbound(alice(), "alice", T0);
    let c = outbound(carol(), "carol", T0);
    let config = Config {
        replay_capacity: 20,
        policy: TrustPolicy::Open,
        ..Config::default()
    };
    let mut b = Inbound::new(bob().clone(), config, TrustStore::new()).unwrap();
    let first = a.sync(SyncKind::Change, "0", vec![], T0).unwrap();
    assert!(feed(&mut b, &first, T0).is_ok());
    assert_eq!(reason(feed(&mut b, &first, T0)), "replay");
    // Retained presence delivered again after a reconnect: a replay too.
    let p = a.presence(T0).unwrap();
    assert!(feed(&mut b, &p, T0).is_ok());
    assert_eq!(reason(feed(&mut b, &p, T0 + 5)), "replay");
    // One sender may hold a tenth of the memory (2 ids): the rest of its
    // flood is refused and counted, never pushing out young ids.
    for n in 1..50 {
        let s = a
            .sync(SyncKind::Change, &n.to_string(), vec![], T0)
            .unwrap();
        assert_eq!(reason(feed(&mut b, &s, T0)), "flood");
    }
    // Others fill the rest; when full, new events are refused.
    let mut accepted = 0;
    for n in 0..50 {
        let s = c
            .sync(SyncKind::Change, &n.to_string(), vec![], T0)
            .unwrap();
        let _ = feed(&mut b, &s, T0).map(|_| accepted += 1);
        assert!(b.replay_len() <= 20);
    }
    assert_eq!(accepted, 2);
    assert_eq!(reason(feed(&mut b, &first, T0 + 599)), "replay");
    // Once older than the window, the age check refuses it and its id is
    // forgotten, making room.
    assert_eq!(reason(feed(&mut b, &first, T0 + 601)), "too-old");
    let later = a.sync(SyncKind::Change, "later", vec![], T0 + 601).unwrap();
    assert!(feed(&mut b, &later, T0 + 601).is_ok());
    assert_eq!(b.counters().get(DropReason::Replay), 3);
    assert_eq!(b.counters().get(DropReason::Flood), 49 + 48);
}

#[test]
fn created_at_window() {
    let a = outbound(alice(), "alice", T0);
    let mut b = inbound(bob(), TrustPolicy::Open);
    let now = T0 + 10_000;
    let at = |t: u64| a.sync(SyncKind::Change, &t.to_string(), vec![], t).unwrap();
    assert_eq!(reason(feed(&mut b, &at(now - 601), now)), "too-old");
    assert_eq!(reason(feed(&mut b, &at(now - 600), now)), "ok");
    assert_eq!(reason(feed(&mut b, &at(now + 900), now)), "ok");
    assert_eq!(reason(feed(&mut b, &at(now + 901), now)), "in-future");
    // Presence is exempt from the age limit, not from the future limit.
    let mut a2 = outbound(alice(), "alice", T0);
    assert_eq!(reason(feed(&mut b, &a2.presence(T0).unwrap(), now)), "ok");
    a2.new_session(now + 901);
    assert_eq!(
        reason(feed(&mut b, &a2.presence(now + 901).unwrap(), now)),
        "in-future"
    );
    // Configurable limits.
    let config = Config {
        max_age_secs: 5,
        max_future_secs: 0,
        policy: TrustPolicy::Open,
        ..Config::default()
    };
    let mut c = Inbound::new(carol().clone(), config, TrustStore::new()).unwrap();
    assert_eq!(reason(feed(&mut c, &at(now - 6), now)), "too-old");
    assert_eq!(reason(feed(&mut c, &at(now + 1), now)), "in-future");
    assert_eq!(reason(feed(&mut c, &at(now), now)), "ok");
}

#[test]
fn oversize_payloads_are_dropped() {
    let a = outbound(alice(), "alice", T0);
    let mut b = inbound(bob(), TrustPolicy::Open);
    let topic = Topics::default().sync();
    let huge = vec![b'{'; 65_537];
    assert_eq!(reason(b.accept(&topic, &huge, T0)), "too-large");
    // A real event just above the limit, and one just below.
    let big = raw(
        alice(),
        KIND_SYNC_CHANGE,
        &"x".repeat(65_536),
        &[&["v", PROTOCOL_VERSION], &["t", "sync"]],
        T0,
    );
    assert_eq!(reason(b.accept(&topic, &big, T0)), "too-large");
    let s = a
        .sync(SyncKind::Change, &"y".repeat(65_000), vec![], T0)
        .unwrap();
    assert!(s.payload.len() <= 65_536);
    assert!(feed(&mut b, &s, T0).is_ok());
    // The builder refuses to make an oversize event.
    assert!(matches!(
        a.sync(SyncKind::Change, &"z".repeat(65_536), vec![], T0),
        Err(OutboundError::TooLarge { .. })
    ));
    // A smaller configured limit.
    let config = Config {
        max_event_bytes: 2048,
        policy: TrustPolicy::Open,
        ..Config::default()
    };
    let mut c = Inbound::new(carol().clone(), config, TrustStore::new()).unwrap();
    let s = a
        .sync(SyncKind::Change, &"y".repeat(3000), vec![], T0)
        .unwrap();
    assert_eq!(reason(feed(&mut c, &s, T0)), "too-large");
}

#[test]
fn own_events_are_dropped_quietly() {
    let a = outbound(alice(), "alice", T0);
    let mut me = inbound(alice(), TrustPolicy::Tofu);
    for p in [
        a.presence(T0).unwrap(),
        a.will(T0).unwrap(),
        a.sync(SyncKind::Change, "x", vec![], T0).unwrap(),
    ] {
        let d = feed(&mut me, &p, T0).unwrap_err();
        assert_eq!(d.reason, DropReason::OwnEvent);
        assert!(d.is_quiet());
        assert_eq!(d.peer_id.as_deref(), Some(alice().peer_id().as_str()));
    }
    assert!(me.peers().is_empty());
    assert_eq!(me.counters().get(DropReason::OwnEvent), 3);
}

#[test]
fn unknown_kinds_versions_and_malformed_payloads() {
    let mut b = inbound(bob(), TrustPolicy::Open);
    let topic = Topics::default().sync();
    let e = raw(
        alice(),
        1,
        "hi",
        &[&["v", PROTOCOL_VERSION], &["t", "sync"]],
        T0,
    );
    assert_eq!(reason(b.accept(&topic, &e, T0)), "unknown-kind");
    let e = raw(alice(), KIND_SYNC_CHANGE, "hi", &[&["t", "sync"]], T0);
    assert_eq!(reason(b.accept(&topic, &e, T0)), "protocol-version");
    let e = raw(
        alice(),
        KIND_SYNC_CHANGE,
        "hi",
        &[&["v", OLD_VERSION], &["t", "sync"]],
        T0,
    );
    // An old peer's verified event: refused, naming its signer and which side to update.
    let d = b.accept(&topic, &e, T0).unwrap_err();
    assert_eq!(d.reason.as_str(), "protocol-version");
    assert_eq!(d.peer_id, Some(alice().peer_id()));
    assert!(d.message.contains("version 1, this peer speaks 2"), "{d}");
    assert!(
        d.message
            .contains("update meta-log-federation on that peer"),
        "{d}"
    );
    // A blocked peer stays blocked, whatever its version: no refusal names it.
    let mut blocked = inbound(bob(), TrustPolicy::Open);
    blocked.block_peer(&alice().peer_id(), T0).unwrap();
    assert_eq!(reason(blocked.accept(&topic, &e, T0)), "blocked");
    for bad in [&b""[..], b"not json", b"{}", b"[1,2]", b"\xff\xfe", b"null"] {
        assert_eq!(reason(b.accept(&topic, bad, T0)), "malformed");
    }
    let ptopic = Topics::default().presence(&alice().peer_id());
    let e = raw(
        alice(),
        KIND_PRESENCE,
        "{\"status\":1}",
        &[&["v", PROTOCOL_VERSION], &["t", "presence"]],
        T0,
    );
    assert_eq!(reason(b.accept(&ptopic, &e, T0)), "malformed");
    assert!(b.peers().is_empty());
}

/// Every `Dropped` reason, reached through the public pipeline: each call is dropped for the
/// reason it was built to trigger, and that reason's counter (and only it) goes up by one.
#[test]
fn every_drop_reason_is_reachable() {
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    let topics = Topics::default();
    let a = outbound(alice(), "alice", T0);
    let sync = topics.sync();
    let p = a.presence(T0).unwrap();
    let s = a.sync(SyncKind::Change, "x", vec![], T0).unwrap();
    let mut seen: Vec<&'static str> = Vec::new();
    // Checks that `result` was dropped for `want`, that the counter of `want` is now 1 and that
    // no other counter moved.
    let mut check = |b: &Inbound, result: Result<Accepted, Dropped>, want: &'static str| {
        assert_eq!(reason(result), want);
        seen.push(want);
        let counts = b.drop_counts();
        for (name, n) in &counts {
            let expected = u64::from(seen.contains(name));
            assert_eq!(*n, expected, "after {want}: {name}: {counts:?}");
        }
    };
    let r = b.accept(&sync, &vec![b' '; 70_000], T0);
    check(&b, r, "too-large");
    let r = b.accept(&sync, b"{", T0);
    check(&b, r, "malformed");
    let mut ev = parse(&s);
    ev.content = "y".into();
    let r = b.accept(&sync, ev.to_json().as_bytes(), T0);
    check(&b, r, "id-mismatch");
    reid(&mut ev);
    let r = b.accept(&sync, ev.to_json().as_bytes(), T0);
    check(&b, r, "bad-signature");
    let r = feed(&mut b, &s, T0 + 601);
    check(&b, r, "too-old");
    let r = feed(&mut b, &s, T0 - 901);
    check(&b, r, "in-future");
    assert_eq!(reason(feed(&mut b, &p, T0)), "ok");
    let r = feed(&mut b, &p, T0);
    check(&b, r, "replay");
    let r = b.accept(&topics.announce(), &s.payload, T0);
    check(&b, r, "wrong-topic");
    let fake = outbound(mallory(), "alice", T0);
    let r = feed(&mut b, &fake.presence(T0).unwrap(), T0);
    check(&b, r, "untrusted");
    let c = outbound(carol(), "carol", T0);
    b.block_peer(&carol().peer_id(), T0).unwrap();
    let r = feed(&mut b, &c.presence(T0).unwrap(), T0);
    check(&b, r, "blocked");
    let cp = bob().peer_id();
    let e = raw(
        alice(),
        KIND_PEER_MESSAGE,
        "zz",
        &[&["v", PROTOCOL_VERSION], &["t", "message"], &["p", &cp]],
        T0,
    );
    let r = b.accept(&topics.messages(&cp), &e, T0);
    check(&b, r, "decrypt-failed");
    let other = carol().peer_id();
    let e = raw(
        alice(),
        KIND_PEER_MESSAGE,
        "zz",
        &[&["v", PROTOCOL_VERSION], &["t", "message"], &["p", &other]],
        T0,
    );
    let r = b.accept(&topics.messages(&other), &e, T0);
    check(&b, r, "not-for-us");
    let mine = outbound(bob(), "bob", T0).presence(T0).unwrap();
    // Our own echo is counted apart (echoes), not as a drop: no drop counter moves.
    let before = b.drop_counts();
    assert_eq!(reason(feed(&mut b, &mine, T0)), "own-event");
    assert_eq!(b.counters().echoes(), 1);
    assert_eq!(b.drop_counts(), before);
    let e = raw(alice(), 1, "", &[&["v", PROTOCOL_VERSION]], T0);
    let r = b.accept(&sync, &e, T0);
    check(&b, r, "unknown-kind");
    let e = raw(alice(), 1, "", &[], T0);
    let r = b.accept(&sync, &e, T0);
    check(&b, r, "protocol-version");
    // A full replay memory refuses (and counts) instead of forgetting.
    let tiny = Config {
        replay_capacity: 1,
        ..Config::default()
    };
    let mut t = Inbound::new(bob().clone(), tiny, TrustStore::new()).unwrap();
    assert!(feed(&mut t, &p, T0).is_ok());
    assert_eq!(reason(feed(&mut t, &s, T0)), "flood");
    assert_eq!(t.counters().get(DropReason::Flood), 1);
    assert_eq!(t.counters().total(), 1);
    let counts = b.drop_counts();
    assert_eq!(counts.len(), 15, "{counts:?}");
    let names: HashSet<&str> = counts.iter().map(|(n, _)| *n).collect();
    let mut seen: HashSet<&str> = seen.into_iter().collect();
    seen.insert("flood");
    assert_eq!(names, seen);
}

#[test]
fn config_is_checked() {
    for bad in [
        Config {
            prefix: "a/+".into(),
            ..Config::default()
        },
        Config {
            prefix: "".into(),
            ..Config::default()
        },
        Config {
            max_event_bytes: 10,
            ..Config::default()
        },
        Config {
            replay_capacity: 0,
            ..Config::default()
        },
    ] {
        assert!(Inbound::new(bob().clone(), bad.clone(), TrustStore::new()).is_err());
        assert!(Outbound::new(bob().clone(), &bad, profile("b"), T0).is_err());
    }
    assert!(Outbound::new(
        bob().clone(),
        &Config::default(),
        profile(&"n".repeat(300)),
        T0
    )
    .is_err());
    // A custom prefix end to end.
    let config = Config {
        prefix: "lab/canvasl".into(),
        ..Config::default()
    };
    let a = Outbound::new(alice().clone(), &config, profile("alice"), T0).unwrap();
    let mut b = Inbound::new(bob().clone(), config, TrustStore::new()).unwrap();
    let p = a.presence(T0).unwrap();
    assert!(p.topic.starts_with("lab/canvasl/peers/"));
    assert_eq!(
        reason(b.accept(&p.topic.replacen("lab/", "", 1), &p.payload, T0)),
        "wrong-topic"
    );
    assert!(feed(&mut b, &p, T0).is_ok());
}
