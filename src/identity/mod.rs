//! Peer identity and signed events for meta-log-federation.
//!
//! * [`mnemonic`](mod@mnemonic) — BIP-39 recovery phrases (English).
//! * [`keys`](mod@keys) — [`Identity`], a secp256k1 key pair derived along a BIP-32
//!   path (NIP-06 by default).
//! * [`event`](mod@event) — Nostr NIP-01 events: canonical serialisation, signing and
//!   (batch) verification of untrusted JSON.
//! * [`file`](mod@file) — identity files (Org), optionally encrypted with
//!   Argon2id + XChaCha20-Poly1305.
//! * [`nip44`](mod@nip44) — NIP-44 v2 encrypted payloads between peers.
//! * [`bench`](mod@bench) — [`bench::bench_report`], a self-timing benchmark.
//! * [`error`](mod@error) — [`IdentityError`].
//!
//! Dependencies beyond the ones named in the design brief:
//! * `base64ct`: constant-time Base64 (already pulled in by `argon2`), used
//!   for the encrypted secret in identity files and NIP-44 payloads; no
//!   separate `base64` crate.
//!
//! Version notes: `argon2` 0.6 and `chacha20poly1305` 0.11 belong to the
//! RustCrypto generation built on `digest` 0.11, so `hkdf` 0.13, `hmac` 0.13,
//! `sha2` 0.11 and `chacha20` 0.10 are used to share one copy of each
//! building block. secp256k1 is only used through `bitcoin::secp256k1`
//! (0.29). SHA-256 for event ids comes from `bitcoin::hashes`.

pub mod bench;
pub mod error;
pub mod event;
pub mod file;
pub mod keys;
pub mod mnemonic;
pub mod nip44;

pub use error::{IdentityError, Result};
pub use event::{SignedEvent, VerifyError};
pub use keys::{Identity, DEFAULT_PATH};
