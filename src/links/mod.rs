//! Direct peer links: a WebRTC data channel (ICE with host, STUN and TURN candidates) or, when
//! ICE fails, TLS 1.3 over TCP; the broker stays the path of last resort.
//!
//! [`channel`] holds the types every transport shares: the signalling messages a transport asks
//! the federation to carry, the ICE servers it may use, and the [`channel::Channel`] it yields
//! once open (an ordered, reliable message pipe to one peer, before the signed hello).
//!
//! * [`signal`]: the signalling JSON (link signal events, kind 4774), glare, rate limit.
//! * [`hello`]: the signed first frame that binds a channel to the peer's key.
//! * [`frame`]: what travels over a link, and TCP's length-prefixed framing.
//! * [`tcp`]: the TLS-over-TCP fallback (per-session certificates, fingerprint verifiers).
//! * [`ice`]: ICE server settings, coturn's time-limited REST credentials.
//! * [`manager`]: per-peer link state, retries, and the choice of path for each event.
//!
//! docs/PROTOCOL.md §16 specifies the wire format.

pub mod channel;
pub mod frame;
pub mod hello;
pub mod ice;
pub mod manager;
pub mod signal;
#[cfg(feature = "tls")]
pub mod tcp;
#[cfg(feature = "webrtc")]
pub mod webrtc;

#[cfg(test)]
pub(crate) mod test_ids {
    //! Fixed identities for the links tests (BIP-39 test vectors; signing keys only).
    use crate::identity::{Identity, DEFAULT_PATH};
    use std::sync::OnceLock;

    /// Identity number `slot` (0 to 2).
    pub fn ident(slot: usize) -> Identity {
        static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
        IDS.get_or_init(|| {
            [
                "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
                "legal winner thank year wave sausage worth useful legal winner thank yellow",
                "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
            ]
            .iter()
            .map(|m| Identity::from_mnemonic(m, "", DEFAULT_PATH).unwrap())
            .collect()
        })[slot]
            .clone()
    }
}
#[cfg(test)]
mod tests;
