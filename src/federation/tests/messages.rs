//! NIP-44 encrypted peer messages.

use super::*;

#[test]
fn encrypted_messages_reach_only_their_recipient() {
    let a = outbound(alice(), "alice", T0);
    let bo = outbound(bob(), "bob", T0);
    let mut alice_in = inbound(alice(), TrustPolicy::Tofu);
    let mut b = inbound(bob(), TrustPolicy::Tofu);
    let mut c = inbound(carol(), TrustPolicy::Open);
    let secret = "the meeting is at noon, bring the CanvasL file";
    // Unknown recipient: refused.
    assert!(matches!(
        a.peer_message(alice_in.peer_table_mut(), &bob().peer_id(), secret, T0),
        Err(OutboundError::UnknownPeer(_))
    ));
    assert!(feed(&mut alice_in, &bo.presence(T0).unwrap(), T0).is_ok());
    let m = a
        .peer_message(alice_in.peer_table_mut(), &bob().peer_id(), secret, T0)
        .unwrap();
    assert_eq!(
        m.topic,
        format!("canvasl/peers/{}/messages", bob().peer_id())
    );
    assert!(!m.retain);
    assert_eq!(alice_in.peer(&bob().peer_id()).unwrap().messages_out, 1);
    // No plaintext on the wire.
    let wire = String::from_utf8(m.payload.clone()).unwrap();
    for word in ["meeting", "noon", "CanvasL", secret] {
        assert!(!wire.contains(word), "{word} leaked");
    }
    assert_eq!(
        tag_value(&parse(&m).tags, "p"),
        Some(bob().peer_id().as_str())
    );
    // Bob reads it.
    let acc = feed(&mut b, &m, T0).unwrap();
    assert_eq!(
        acc.body,
        Body::Message {
            plaintext: secret.into()
        }
    );
    assert_eq!(b.peer(&alice().peer_id()).unwrap().messages_in, 1);
    // Carol listening on bob's topic: not for her.
    assert_eq!(reason(feed(&mut c, &m, T0)), "not-for-us");
    // Republished on carol's own topic: the p tag says bob.
    let on_carol = c.topics().messages(&carol().peer_id());
    assert_eq!(reason(c.accept(&on_carol, &m.payload, T0)), "wrong-topic");
    // Addressed to carol but encrypted for bob: carol cannot read it.
    let key = nip44::conversation_key(alice().keypair(), &bob().peer_id()).unwrap();
    let ct = nip44::encrypt(&key, secret).unwrap();
    let cp = carol().peer_id();
    let ev = raw(
        alice(),
        KIND_PEER_MESSAGE,
        &ct,
        &[&["v", PROTOCOL_VERSION], &["t", "message"], &["p", &cp]],
        T0,
    );
    assert_eq!(reason(c.accept(&on_carol, &ev, T0)), "decrypt-failed");
    let ev = raw(
        alice(),
        KIND_PEER_MESSAGE,
        "not nip44",
        &[&["v", PROTOCOL_VERSION], &["t", "message"], &["p", &cp]],
        T0,
    );
    assert_eq!(reason(c.accept(&on_carol, &ev, T0)), "decrypt-failed");
    // Missing p tag.
    let ev = raw(
        alice(),
        KIND_PEER_MESSAGE,
        &ct,
        &[&["v", PROTOCOL_VERSION], &["t", "message"]],
        T0,
    );
    assert_eq!(reason(c.accept(&on_carol, &ev, T0)), "wrong-topic");
    // Too large or empty messages are refused by the builder.
    assert!(matches!(
        a.peer_message(
            alice_in.peer_table_mut(),
            &bob().peer_id(),
            &"x".repeat(60_000),
            T0
        ),
        Err(OutboundError::TooLarge { .. })
    ));
    assert!(matches!(
        a.peer_message(
            alice_in.peer_table_mut(),
            &bob().peer_id(),
            &"x".repeat(70_000),
            T0
        ),
        Err(OutboundError::TooLarge { .. })
    ));
    assert!(matches!(
        a.peer_message(alice_in.peer_table_mut(), &bob().peer_id(), "", T0),
        Err(OutboundError::Encrypt(_))
    ));
    assert_eq!(alice_in.peer(&bob().peer_id()).unwrap().messages_out, 1);
}
