//! Direct peer links: a WebRTC data channel (ICE with host, STUN and TURN candidates) or, when
//! ICE fails, TLS 1.3 over TCP; the broker stays the path of last resort.
//!
//! [`channel`] holds the types every transport shares: the signalling messages a transport asks
//! the federation to carry, the ICE servers it may use, and the [`channel::Channel`] it yields
//! once open (an ordered, reliable message pipe to one peer, before the signed hello).

pub mod channel;

#[cfg(feature = "webrtc")]
pub mod webrtc;
