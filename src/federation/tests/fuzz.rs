//! Random and mutated payloads never panic.

use super::*;

#[test]
fn random_and_mutated_payloads_never_panic() {
    let a = outbound(alice(), "alice", T0);
    let mut alice_in = inbound(alice(), TrustPolicy::Open);
    assert!(feed(
        &mut alice_in,
        &outbound(bob(), "bob", T0).presence(T0).unwrap(),
        T0
    )
    .is_ok());
    let seeds = [
        a.presence(T0).unwrap(),
        a.will(T0).unwrap(),
        a.departure("bye", T0).unwrap(),
        a.announce(T0).unwrap(),
        a.sync(
            SyncKind::Request,
            "{\"want\":[1]}",
            vec![vec!["p".into(), bob().peer_id()]],
            T0,
        )
        .unwrap(),
        a.peer_message(alice_in.peer_table_mut(), &bob().peer_id(), "hi bob", T0)
            .unwrap(),
    ];
    let topics = Topics::default();
    let topic_pool = [
        topics.sync(),
        topics.announce(),
        topics.presence(&alice().peer_id()),
        topics.messages(&bob().peer_id()),
        "canvasl/peers//presence".to_string(),
        "".to_string(),
        "canvasl/peers/+/presence".to_string(),
    ];
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"{}[]\",:0123456789abcdefv1tpx-+.eE \\n\x00\xff\xc3";
    let mut accepted = 0;
    for round in 0..2500 {
        let seed = &seeds[(next() as usize) % seeds.len()];
        let mut m = seed.payload.clone();
        match round % 5 {
            0 => {
                // Pure noise.
                let len = (next() % 300) as usize;
                m = (0..len).map(|_| next() as u8).collect();
            }
            _ => {
                for _ in 0..(1 + next() % 4) {
                    if m.is_empty() {
                        break;
                    }
                    let i = (next() as usize) % m.len();
                    match next() % 3 {
                        0 => m[i] = alphabet[(next() as usize) % alphabet.len()],
                        1 => {
                            m.remove(i);
                        }
                        _ => m.insert(i, alphabet[(next() as usize) % alphabet.len()]),
                    }
                }
            }
        }
        let topic = if next() % 4 == 0 {
            &topic_pool[(next() as usize) % topic_pool.len()]
        } else {
            &seed.topic
        };
        let now = T0 + next() % 2000;
        if b.accept(topic, &m, now).is_ok() {
            accepted += 1;
        }
        if round % 100 == 0 {
            b.tick(now);
        }
    }
    // Structurally valid JSON with hostile values, e.g. a presence whose
    // content is deeply nested, or huge numbers.
    let ptopic = topics.presence(&alice().peer_id());
    for content in [
        "[".repeat(10_000),
        format!("{{\"since\":{}}}", "9".repeat(400)),
        "{\"peer_id\":null}".to_string(),
    ] {
        let e = raw(
            alice(),
            KIND_PRESENCE,
            &content,
            &[&["v", PROTOCOL_VERSION], &["t", "presence"]],
            T0,
        );
        assert_eq!(reason(b.accept(&ptopic, &e, T0)), "malformed");
    }
    let total: u64 = b.drop_counts().iter().map(|(_, n)| n).sum();
    assert_eq!(total + accepted, 2503);
    // Structural fuzzing: validly signed events with random kinds, tags,
    // contents, times and topics, so every later stage is exercised.
    let signers = [alice(), carol(), mallory(), bob()];
    let kinds = [
        KIND_PRESENCE,
        KIND_DEPARTURE,
        KIND_PEER_MESSAGE,
        KIND_SYNC_CHANGE,
        KIND_SYNC_REQUEST,
        KIND_SYNC_RESPONSE,
        1,
        65_535,
    ];
    let tag_pool: Vec<Vec<String>> = vec![
        vec!["v".into(), PROTOCOL_VERSION.into()],
        vec!["v".into(), OLD_VERSION.into()],
        vec!["v".into()],
        vec![],
        vec!["t".into(), "sync".into()],
        vec!["t".into(), "presence".into()],
        vec!["t".into(), "announce".into()],
        vec!["t".into(), "message".into()],
        vec!["p".into(), bob().peer_id()],
        vec!["p".into(), "zz".into()],
    ];
    let contents: Vec<String> = vec![
        String::new(),
        "{}".into(),
        String::from_utf8_lossy(&seeds[0].payload).into_owned(),
        parse(&seeds[0]).content,
        parse(&seeds[1]).content,
        parse(&seeds[2]).content,
        parse(&seeds[5]).content,
        "é\u{0}\n".into(),
    ];
    let mut topic_pool = topic_pool.to_vec();
    for s in &signers {
        topic_pool.push(topics.presence(&s.peer_id()));
        topic_pool.push(topics.messages(&s.peer_id()));
    }
    let mut accepted_structural = 0;
    for _ in 0..1500 {
        let who = signers[(next() as usize) % signers.len()];
        let kind = kinds[(next() as usize) % kinds.len()];
        let topic = &topic_pool[(next() as usize) % topic_pool.len()];
        let mut tags: Vec<Vec<String>> = Vec::new();
        if next() % 4 != 0 {
            tags.push(vec!["v".into(), PROTOCOL_VERSION.into()]);
        }
        if let (true, Some(route)) = (next() % 3 != 0, topics.parse(topic)) {
            tags.push(vec!["t".into(), route.kind().tag().into()]);
            if let Route::Messages(to) = route {
                tags.push(vec!["p".into(), to]);
            }
        }
        tags.extend((0..next() % 3).map(|_| tag_pool[(next() as usize) % tag_pool.len()].clone()));
        let content = &contents[(next() as usize) % contents.len()];
        let at = T0 - 1000 + next() % 3000;
        let ev = sign(who, kind, content, tags, at);
        if b.accept(topic, ev.to_json().as_bytes(), T0 + next() % 1000)
            .is_ok()
        {
            accepted_structural += 1;
        }
        if next() % 50 == 0 {
            b.tick(T0 + 2000);
            let _ = b.block_peer(&signers[(next() as usize) % 3].peer_id(), T0);
        }
    }
    let reached = b.drop_counts().iter().filter(|(_, n)| *n > 0).count();
    assert!(reached >= 10, "{:?}", b.drop_counts());
    assert!(accepted + accepted_structural > 0);
}
