//! The error type shared by the identity modules.
//!
//! Every message says what went wrong *and* what the user can do about it,
//! because these strings end up in the Emacs echo area.

use std::path::PathBuf;

/// Everything that can go wrong while creating, deriving, saving or loading
/// a peer identity.
///
/// Secrets (mnemonic words, passphrases, keys) never appear in these
/// messages.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The recovery phrase is not a valid BIP-39 English mnemonic.
    #[error("invalid recovery phrase: {0}; check the words against the BIP-39 English word list")]
    BadMnemonic(String),

    /// A mnemonic of an unsupported length was requested.
    #[error("cannot generate a {0}-word recovery phrase: use 12 or 24 words")]
    BadWordCount(usize),

    /// The BIP-32 derivation path could not be parsed.
    #[error(
        "invalid derivation path {path:?}: {reason}; use the form m/44'/1237'/0'/0/0 (the NIP-06 default)"
    )]
    BadPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },

    /// The identity file is encrypted and the passphrase is wrong or missing.
    #[error("{0}")]
    BadPassphrase(String),

    /// The identity file is damaged, truncated or not an identity file.
    #[error("identity file {path} is damaged or not an identity file: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The identity file's public fields do not match the key derived from
    /// its secret part (someone edited PEER_ID, PUBLIC_KEY or DERIVATION_PATH).
    #[error(
        "identity file {path}: {field} does not match the key derived from the secret part \
         (file says {in_file}, derived {derived}); the file was edited or damaged, restore it from a backup"
    )]
    KeyMismatch {
        /// The file.
        path: PathBuf,
        /// Which property disagreed (e.g. "PEER_ID").
        field: &'static str,
        /// The value written in the file.
        in_file: String,
        /// The value derived from the secret.
        derived: String,
    },

    /// Refused to replace an existing file.
    #[error(
        "{0} already exists; refusing to overwrite it (move it away or ask explicitly to overwrite)"
    )]
    Exists(PathBuf),

    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// A cryptographic primitive failed (random source, key derivation,
    /// encryption). Not expected in normal use.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, IdentityError>;
