//! Why an inbound message was dropped, and counters per reason.

use std::fmt;

use super::peers::Transition;

/// The stable short reason an inbound message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Payload above the size limit.
    TooLarge,
    /// Not UTF-8, not JSON, not a NIP-01 event, or bad content.
    Malformed,
    /// The Schnorr signature does not verify.
    BadSignature,
    /// The id is not the hash of the event.
    IdMismatch,
    /// `created_at` older than the maximum age (or, for presence, not newer
    /// than the last presence seen from that peer).
    TooOld,
    /// `created_at` too far in the future.
    InFuture,
    /// An event id already accepted.
    Replay,
    /// Topic, kind, `t` tag, `p` tag and signer do not agree.
    WrongTopic,
    /// Not trusted under the policy (or a TOFU key conflict).
    Untrusted,
    /// The signer is blocked.
    Blocked,
    /// A message for us that does not decrypt with our key.
    DecryptFailed,
    /// A message addressed to another peer.
    NotForUs,
    /// Our own event, echoed by the broker (quiet).
    OwnEvent,
    /// A kind this protocol version does not define.
    UnknownKind,
    /// Missing or different protocol version.
    ProtocolVersion,
    /// Refused to bound memory: the replay memory is full of young ids, or
    /// the sender holds its share of it (a flood).
    Flood,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 16] = [
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::BadSignature,
        DropReason::IdMismatch,
        DropReason::TooOld,
        DropReason::InFuture,
        DropReason::Replay,
        DropReason::WrongTopic,
        DropReason::Untrusted,
        DropReason::Blocked,
        DropReason::DecryptFailed,
        DropReason::NotForUs,
        DropReason::OwnEvent,
        DropReason::UnknownKind,
        DropReason::ProtocolVersion,
        DropReason::Flood,
    ];

    /// The stable short name, e.g. `bad-signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooLarge => "too-large",
            DropReason::Malformed => "malformed",
            DropReason::BadSignature => "bad-signature",
            DropReason::IdMismatch => "id-mismatch",
            DropReason::TooOld => "too-old",
            DropReason::InFuture => "in-future",
            DropReason::Replay => "replay",
            DropReason::WrongTopic => "wrong-topic",
            DropReason::Untrusted => "untrusted",
            DropReason::Blocked => "blocked",
            DropReason::DecryptFailed => "decrypt-failed",
            DropReason::NotForUs => "not-for-us",
            DropReason::OwnEvent => "own-event",
            DropReason::UnknownKind => "unknown-kind",
            DropReason::ProtocolVersion => "protocol-version",
            DropReason::Flood => "flood",
        }
    }

    /// Whether the drop is routine and should not be logged as a warning
    /// (only `own-event`).
    pub fn is_quiet(self) -> bool {
        self == DropReason::OwnEvent
    }

    fn index(self) -> usize {
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dropped inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Stable short reason.
    pub reason: DropReason,
    /// A sentence for humans (never quotes more than a short piece of input).
    pub message: String,
    /// The event id, when the payload got far enough to have a verified one.
    pub event_id: Option<String>,
    /// The signer, when verified.
    pub peer_id: Option<String>,
    /// Warnings raised while dropping (a TOFU [`Transition::KeyConflict`]).
    pub transitions: Vec<Transition>,
}

impl Dropped {
    pub(crate) fn new(reason: DropReason, message: impl Into<String>) -> Dropped {
        Dropped {
            reason,
            message: message.into(),
            event_id: None,
            peer_id: None,
            transitions: Vec::new(),
        }
    }

    /// Whether this drop is routine (see [`DropReason::is_quiet`]).
    pub fn is_quiet(&self) -> bool {
        self.reason.is_quiet()
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Dropped {}

/// Drop counts per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; 16],
}

impl DropCounters {
    /// Counts one drop.
    pub fn count(&mut self, reason: DropReason) {
        let c = &mut self.counts[reason.index()];
        *c = c.saturating_add(1);
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Every reason a check drops for, with its count (zeros included), in a
    /// fixed order. Our own echoes are not in it: they are not drops but
    /// normal MQTT traffic, counted apart ([`DropCounters::echoes`]).
    pub fn list(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .filter(|r| !r.is_quiet())
            .map(|r| (r.as_str(), self.get(*r)))
            .collect()
    }

    /// Our own events echoed back by the broker.
    pub fn echoes(&self) -> u64 {
        self.get(DropReason::OwnEvent)
    }

    /// Total drops by a check (echoes not included).
    pub fn total(&self) -> u64 {
        DropReason::ALL
            .iter()
            .filter(|r| !r.is_quiet())
            .fold(0u64, |a, r| a.saturating_add(self.get(*r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_distinct() {
        let names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        let mut d = names.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 16);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut c = DropCounters::default();
        c.count(DropReason::Replay);
        c.count(DropReason::Replay);
        assert_eq!(c.get(DropReason::Replay), 2);
        assert_eq!(c.total(), 2);
        assert!(c.list().contains(&("replay", 2)));
        assert_eq!(c.list().len(), 15);
        c.count(DropReason::OwnEvent);
        assert_eq!(c.echoes(), 1);
        assert_eq!(c.total(), 2);
        assert!(!c.list().iter().any(|(n, _)| *n == "own-event"));
        let d = Dropped::new(DropReason::OwnEvent, "ours");
        assert!(d.is_quiet());
        assert_eq!(d.to_string(), "own-event: ours");
    }
}
