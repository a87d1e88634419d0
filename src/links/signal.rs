//! Link signalling (docs/PROTOCOL.md §16.1): the JSON carried, NIP-44-encrypted, in link signal
//! events (kind 4774), and the checks a received signal passes before the link manager acts on
//! it: shape, session id, glare (the smaller peer id offers) and a per-peer rate limit.
//!
//! The event around it is built and verified by the federation core like a peer message
//! ([`crate::federation::Node::link_signal`], [`crate::federation::Body::LinkSignal`]): the
//! signature, age, replay and trust checks are the ones every event passes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::channel::Role;

/// Longest SDP or candidate string accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 16_384;
/// Longest address, fingerprint or reason, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Signals one peer may send at once (a burst: an offer and its candidates).
pub const RATE_BURST: f64 = 64.0;
/// Signals per second a peer's budget refills with.
pub const RATE_PER_SEC: f64 = 2.0;
/// Peers whose signal budget is remembered; beyond that, the fullest budgets are forgotten.
const MAX_TRACKED_PEERS: usize = 10_000;

/// What one signal says (the `type` field and its own fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SignalBody {
    /// The larger peer id asks the smaller one to open a link.
    Request,
    /// A WebRTC offer.
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// A WebRTC answer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// One trickled ICE candidate.
    Candidate {
        /// The `candidate:...` line.
        candidate: String,
        /// `sdpMid`.
        #[serde(default)]
        sdp_mid: Option<String>,
        /// `sdpMLineIndex`.
        #[serde(default)]
        sdp_mline_index: Option<u16>,
    },
    /// No more candidates.
    EndOfCandidates,
    /// The offerer's TCP fallback: its certificate and, if it listens, its address.
    TcpOffer {
        /// `sha-256 AB:CD:...` of its per-session certificate.
        fingerprint: String,
        /// `HOST:PORT` it accepts this session on, or none.
        #[serde(default)]
        addr: Option<String>,
    },
    /// The answerer's TCP fallback: the same.
    TcpAnswer {
        /// `sha-256 AB:CD:...` of its per-session certificate.
        fingerprint: String,
        /// `HOST:PORT` it accepts this session on, or none.
        #[serde(default)]
        addr: Option<String>,
    },
    /// The session is over.
    Close {
        /// Why.
        #[serde(default)]
        reason: String,
    },
}

/// One signal: a session id and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalMsg {
    /// 32 lowercase hex characters, chosen by the offerer.
    pub session: String,
    /// The signal itself.
    #[serde(flatten)]
    pub body: SignalBody,
}

impl SignalMsg {
    /// The JSON plaintext to encrypt into a link signal event.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a decrypted signal; the error says what is wrong with it.
    pub fn parse(plaintext: &str) -> Result<SignalMsg, String> {
        let m: SignalMsg =
            serde_json::from_str(plaintext).map_err(|e| format!("link signal: {e}"))?;
        if !is_session_id(&m.session) {
            return Err("link signal: session is not 32 lowercase hex characters".into());
        }
        let too_long = |s: &str, max: usize| s.len() > max;
        let bad = match &m.body {
            SignalBody::Offer { sdp } | SignalBody::Answer { sdp } => {
                too_long(sdp, MAX_SDP_BYTES) || sdp_fingerprint(sdp).is_none()
            }
            SignalBody::Candidate {
                candidate, sdp_mid, ..
            } => {
                too_long(candidate, MAX_SDP_BYTES)
                    || sdp_mid
                        .as_deref()
                        .is_some_and(|s| too_long(s, MAX_FIELD_BYTES))
            }
            SignalBody::TcpOffer { fingerprint, addr }
            | SignalBody::TcpAnswer { fingerprint, addr } => {
                !is_fingerprint(fingerprint)
                    || addr.as_deref().is_some_and(|a| {
                        too_long(a, MAX_FIELD_BYTES) || a.parse::<std::net::SocketAddr>().is_err()
                    })
            }
            SignalBody::Close { reason } => too_long(reason, MAX_FIELD_BYTES),
            SignalBody::Request | SignalBody::EndOfCandidates => false,
        };
        if bad {
            return Err(format!(
                "link signal `{}`: a field is too long or malformed (SDP without a fingerprint, \
                 bad fingerprint or address)",
                m.kind_name()
            ));
        }
        Ok(m)
    }

    /// The `type` name, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.body {
            SignalBody::Request => "request",
            SignalBody::Offer { .. } => "offer",
            SignalBody::Answer { .. } => "answer",
            SignalBody::Candidate { .. } => "candidate",
            SignalBody::EndOfCandidates => "end-of-candidates",
            SignalBody::TcpOffer { .. } => "tcp-offer",
            SignalBody::TcpAnswer { .. } => "tcp-answer",
            SignalBody::Close { .. } => "close",
        }
    }

    /// Whether only the offerer may send this signal (an offer from the larger id is glare).
    pub fn offerer_only(&self) -> bool {
        matches!(
            self.body,
            SignalBody::Offer { .. } | SignalBody::TcpOffer { .. }
        )
    }

    /// Whether only the answerer may send this signal.
    pub fn answerer_only(&self) -> bool {
        matches!(
            self.body,
            SignalBody::Answer { .. } | SignalBody::TcpAnswer { .. } | SignalBody::Request
        )
    }
}

/// Whether `s` is a session id: 32 lowercase hex characters.
pub fn is_session_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh random session id (16 bytes from the OS, as hex).
pub fn new_session_id() -> String {
    let mut b = [0u8; 16];
    // The OS random source failing would leave zeros: a predictable id only names a session,
    // it protects nothing (the signatures and fingerprints do).
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

/// The role this peer plays with `peer`: the smaller peer id offers (glare resolved the same
/// way on both sides).
pub fn role_with(me: &str, peer: &str) -> Role {
    if me < peer {
        Role::Offerer
    } else {
        Role::Answerer
    }
}

/// The fingerprint of a DER certificate as SDP writes it: `sha-256 AB:CD:...`.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(der);
    let hexes: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha-256 {}", hexes.join(":"))
}

/// Whether `s` is a fingerprint as [`fingerprint_of_der`] writes it (any case).
pub fn is_fingerprint(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("sha-256 ")
        .or_else(|| s.strip_prefix("SHA-256 "))
    else {
        return false;
    };
    rest.len() == 95
        && rest.split(':').count() == 32
        && rest
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether two fingerprints name the same certificate (compared case-insensitively).
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    is_fingerprint(a) && is_fingerprint(b) && a.eq_ignore_ascii_case(b)
}

/// The `a=fingerprint:` of an SDP (the first one), normalised to `sha-256 AB:...`.
pub fn sdp_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| {
        let v = l.trim().strip_prefix("a=fingerprint:")?;
        let (alg, fp) = v.split_once(' ')?;
        let f = format!(
            "{} {}",
            alg.to_ascii_lowercase(),
            fp.trim().to_ascii_uppercase()
        );
        is_fingerprint(&f).then_some(f)
    })
}

/// Per-peer signal budgets: a token bucket of [`RATE_BURST`] refilled at [`RATE_PER_SEC`].
#[derive(Debug, Default)]
pub struct RateLimit {
    /// Peer -> (tokens, last refill in ms).
    buckets: HashMap<String, (f64, u64)>,
}

impl RateLimit {
    /// Whether `peer` may send one more signal at `now_ms` (and spends it if so).
    pub fn allow(&mut self, peer: &str, now_ms: u64) -> bool {
        if self.buckets.len() >= MAX_TRACKED_PEERS && !self.buckets.contains_key(peer) {
            // Forget the peers whose budgets are full again: they lose nothing.
            self.buckets.retain(|_, (t, last)| {
                *t + (now_ms.saturating_sub(*last) as f64 / 1000.0) * RATE_PER_SEC < RATE_BURST
            });
        }
        let (tokens, last) = self
            .buckets
            .entry(peer.to_string())
            .or_insert((RATE_BURST, now_ms));
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * RATE_PER_SEC).min(RATE_BURST);
        *last = now_ms.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha-256 3A:0B:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE";

    #[test]
    fn signals_round_trip_and_match_the_documented_json() {
        let m = SignalMsg {
            session: "0123456789abcdef0123456789abcdef".into(),
            body: SignalBody::TcpOffer {
                fingerprint: FP.into(),
                addr: Some("127.0.0.1:4000".into()),
            },
        };
        let j = m.to_json();
        assert_eq!(
            j,
            format!(
                r#"{{"session":"0123456789abcdef0123456789abcdef","type":"tcp-offer","fingerprint":"{FP}","addr":"127.0.0.1:4000"}}"#
            )
        );
        assert_eq!(SignalMsg::parse(&j).unwrap(), m);
        let c = SignalMsg::parse(
            r#"{"session":"0123456789abcdef0123456789abcdef","type":"candidate","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdp_mid":"0","sdp_mline_index":0}"#,
        )
        .unwrap();
        assert!(matches!(
            c.body,
            SignalBody::Candidate {
                sdp_mline_index: Some(0),
                ..
            }
        ));
        let e = SignalMsg::parse(
            r#"{"session":"0123456789abcdef0123456789abcdef","type":"end-of-candidates"}"#,
        )
        .unwrap();
        assert_eq!(e.body, SignalBody::EndOfCandidates);
    }

    #[test]
    fn malformed_signals_are_refused() {
        for bad in [
            r#"{"session":"xyz","type":"request"}"#,
            r#"{"session":"0123456789ABCDEF0123456789abcdef","type":"request"}"#,
            r#"{"session":"0123456789abcdef0123456789abcdef","type":"launch"}"#,
            r#"{"session":"0123456789abcdef0123456789abcdef","type":"tcp-offer","fingerprint":"md5 AB"}"#,
            r#"{"session":"0123456789abcdef0123456789abcdef","type":"offer","sdp":"v=0\r\n"}"#,
            r#"[1,2]"#,
        ] {
            assert!(SignalMsg::parse(bad).is_err(), "{bad}");
        }
        let addr = format!(
            r#"{{"session":"0123456789abcdef0123456789abcdef","type":"tcp-answer","fingerprint":"{FP}","addr":"not an address"}}"#
        );
        assert!(SignalMsg::parse(&addr).is_err());
    }

    #[test]
    fn glare_the_smaller_id_offers_on_both_sides() {
        let a = "1".repeat(64);
        let b = "f".repeat(64);
        assert_eq!(role_with(&a, &b), Role::Offerer);
        assert_eq!(role_with(&b, &a), Role::Answerer);
    }

    #[test]
    fn the_sdp_fingerprint_is_found_and_normalised() {
        let sdp = format!(
            "v=0\r\na=setup:actpass\r\na=fingerprint:SHA-256 {}\r\n",
            FP.trim_start_matches("sha-256 ").to_ascii_lowercase()
        );
        let f = sdp_fingerprint(&sdp).unwrap();
        assert!(same_fingerprint(&f, FP));
        assert!(!same_fingerprint(&f, &FP.replace("3A", "3B")));
        assert_eq!(sdp_fingerprint("v=0\r\n"), None);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_refill_rate() {
        let mut r = RateLimit::default();
        let p = "a".repeat(64);
        let allowed = (0..100).filter(|_| r.allow(&p, 1_000)).count();
        assert_eq!(allowed, RATE_BURST as usize);
        // Another peer has its own budget.
        assert!(r.allow(&"b".repeat(64), 1_000));
        // One second later: two more.
        let later = (0..10).filter(|_| r.allow(&p, 2_000)).count();
        assert_eq!(later, RATE_PER_SEC as usize);
    }
}
