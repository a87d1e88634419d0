//! The signed hello (docs/PROTOCOL.md §16.4): each side's first frame on a new link names the
//! session and both certificate fingerprints, signed with its federation key. Together with the
//! signed signalling (which named the fingerprint beforehand) it binds the channel to the peer's
//! key: a channel whose certificate is not the one the peer signed for never carries an event.

use serde::{Deserialize, Serialize};

use super::signal::same_fingerprint;
use crate::federation::protocol::{
    tag_value, KIND_LINK_HELLO, PROTOCOL_VERSION, TAG_RECIPIENT, TAG_TOPIC, TAG_VERSION,
};
use crate::identity::event::{verify_json_with_limit, SignedEvent};

/// The value of the hello's `t` tag.
pub const HELLO_TOPIC_TAG: &str = "link";
/// Largest hello event accepted, in bytes.
const MAX_HELLO_BYTES: usize = 4_096;

/// The content of a hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloContent {
    /// The session id.
    pub session: String,
    /// The sender's own certificate fingerprint on this channel.
    pub fingerprint: String,
    /// The receiver's certificate fingerprint on this channel, as the sender saw it.
    pub peer_fingerprint: String,
}

/// The tags of a hello to `to`.
pub fn hello_tags(to: &str) -> Vec<Vec<String>> {
    vec![
        vec![TAG_VERSION.into(), PROTOCOL_VERSION.into()],
        vec![TAG_TOPIC.into(), HELLO_TOPIC_TAG.into()],
        vec![TAG_RECIPIENT.into(), to.into()],
    ]
}

/// The content JSON of our hello on a channel.
pub fn hello_content(session: &str, local_fp: &str, remote_fp: &str) -> String {
    serde_json::to_string(&HelloContent {
        session: session.into(),
        fingerprint: local_fp.into(),
        peer_fingerprint: remote_fp.into(),
    })
    .unwrap_or_default()
}

/// What a received hello must match.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The peer the session is with.
    pub peer: &'a str,
    /// Our peer id.
    pub me: &'a str,
    /// The current session id.
    pub session: &'a str,
    /// The fingerprint the transport saw for the peer's certificate.
    pub remote_fp: &'a str,
    /// The fingerprint the peer's signed signalling named.
    pub signalled_fp: &'a str,
    /// Our certificate's fingerprint on the channel.
    pub local_fp: &'a str,
    /// Now (Unix seconds) and the accepted age window.
    pub now: u64,
    /// Oldest accepted `created_at`, in seconds before now.
    pub max_age: u64,
    /// Latest accepted `created_at`, in seconds after now.
    pub max_future: u64,
}

/// Checks a received hello event (its JSON text); the error says which check failed.
pub fn verify_hello(event_json: &str, x: &Expected<'_>) -> Result<SignedEvent, String> {
    let ev = verify_json_with_limit(event_json, MAX_HELLO_BYTES)
        .map_err(|e| format!("hello: {}", e.reason()))?;
    if ev.pubkey != x.peer {
        return Err("hello: signed by another key than the session's peer".into());
    }
    if ev.kind != u32::from(KIND_LINK_HELLO) {
        return Err(format!("hello: kind {} is not {KIND_LINK_HELLO}", ev.kind));
    }
    if tag_value(&ev.tags, TAG_VERSION) != Some(PROTOCOL_VERSION)
        || tag_value(&ev.tags, TAG_TOPIC) != Some(HELLO_TOPIC_TAG)
        || tag_value(&ev.tags, TAG_RECIPIENT) != Some(x.me)
    {
        return Err("hello: v, t or p tag wrong (not a hello to us)".into());
    }
    if ev.created_at + x.max_age < x.now || ev.created_at > x.now + x.max_future {
        return Err("hello: created_at outside the accepted window".into());
    }
    let c: HelloContent =
        serde_json::from_str(&ev.content).map_err(|e| format!("hello: content: {e}"))?;
    if c.session != x.session {
        return Err("hello: names another session".into());
    }
    if !same_fingerprint(&c.fingerprint, x.remote_fp) {
        return Err("hello: the peer's fingerprint is not the one its certificate has".into());
    }
    if !same_fingerprint(&c.fingerprint, x.signalled_fp) {
        return Err("hello: the peer's fingerprint is not the one its signalling named".into());
    }
    if !same_fingerprint(&c.peer_fingerprint, x.local_fp) {
        return Err("hello: the peer saw another certificate than ours".into());
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::event::sign;

    fn fp(c: char) -> String {
        format!("sha-256 {}", vec![format!("{c}{c}"); 32].join(":"))
    }

    #[test]
    fn a_hello_verifies_only_with_every_binding_right() {
        let a = crate::links::test_ids::ident(0);
        let b = crate::links::test_ids::ident(1);
        let (pa, pb) = (a.peer_id(), b.peer_id());
        let session = "0123456789abcdef0123456789abcdef";
        let (fa, fb) = (fp('A'), fp('B'));
        let good = sign(
            &a,
            KIND_LINK_HELLO,
            &hello_content(session, &fa, &fb),
            hello_tags(&pb),
            1_000,
        );
        let x = Expected {
            peer: &pa,
            me: &pb,
            session,
            remote_fp: &fa,
            signalled_fp: &fa,
            local_fp: &fb,
            now: 1_000,
            max_age: 600,
            max_future: 900,
        };
        assert!(verify_hello(&good.to_json(), &x).is_ok());
        // The channel presented another certificate than the peer signed for.
        let wrong_cert = fp('C');
        let e = verify_hello(
            &good.to_json(),
            &Expected {
                remote_fp: &wrong_cert,
                ..x.clone()
            },
        )
        .unwrap_err();
        assert!(e.contains("certificate has"), "{e}");
        // The signalling named another one.
        let e = verify_hello(
            &good.to_json(),
            &Expected {
                signalled_fp: &wrong_cert,
                ..x.clone()
            },
        )
        .unwrap_err();
        assert!(e.contains("signalling"), "{e}");
        // Another session, another key, a hello for someone else, a stale hello, a forged one.
        assert!(verify_hello(
            &good.to_json(),
            &Expected {
                session: "ffffffffffffffffffffffffffffffff",
                ..x.clone()
            }
        )
        .is_err());
        assert!(verify_hello(
            &good.to_json(),
            &Expected {
                peer: &pb,
                ..x.clone()
            }
        )
        .is_err());
        assert!(verify_hello(
            &good.to_json(),
            &Expected {
                me: &pa,
                ..x.clone()
            }
        )
        .is_err());
        assert!(verify_hello(
            &good.to_json(),
            &Expected {
                now: 5_000,
                ..x.clone()
            }
        )
        .is_err());
        let forged = good.to_json().replace(&fb, &fp('D'));
        assert!(verify_hello(&forged, &x).is_err());
        // The peer saw another certificate than ours (a relay in the middle).
        let seen_other = sign(
            &a,
            KIND_LINK_HELLO,
            &hello_content(session, &fa, &fp('E')),
            hello_tags(&pb),
            1_000,
        );
        assert!(verify_hello(&seen_other.to_json(), &x).is_err());
    }
}
