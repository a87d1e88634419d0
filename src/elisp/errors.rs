//! The package's error symbols and the one table that says which core error is signalled as
//! which: a root with specific children that Lisp code can `condition-case` on, one
//! [`ElispError`] mapping per core error type (it may add advice naming Emacs commands, which
//! the core's own messages never do), and the conversion of panics into signals.

use emacs::{define_errors, Env, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::federation::{NodeError, OutboundError, TrustError};
use crate::identity::IdentityError;
use crate::sync::{NameError, ShareIdError, SyncError};
use crate::transport::client::ClientCallError;
use crate::transport::connection::ConnectError;
use crate::transport::topic::TopicError;
use crate::transport::url::UrlError;

define_errors! {
    meta_log_federation_error "meta-log-federation error" (error)
    meta_log_federation_mqtt_error "MQTT error" (meta_log_federation_error)
    meta_log_federation_bad_url "Malformed broker URL" (meta_log_federation_mqtt_error meta_log_federation_error)
    meta_log_federation_bad_topic "Invalid MQTT topic" (meta_log_federation_mqtt_error meta_log_federation_error)
    meta_log_federation_queue_full "MQTT queue full" (meta_log_federation_mqtt_error meta_log_federation_error)
    meta_log_federation_not_connected "Not connected" (meta_log_federation_mqtt_error meta_log_federation_error)
    meta_log_federation_internal_error "Internal error in the native module" (meta_log_federation_error)
    meta_log_federation_not_running "Federation is not running" (meta_log_federation_error)
    meta_log_federation_unknown_peer "Unknown peer" (meta_log_federation_error)
    meta_log_federation_too_large "Payload too large" (meta_log_federation_error)
    meta_log_federation_trust_error "Trust store error" (meta_log_federation_error)
    meta_log_federation_sync_error "CanvasL sync error" (meta_log_federation_error)
    meta_log_federation_identity_error "meta-log-federation identity error" (meta_log_federation_error)
    meta_log_federation_bad_mnemonic "Invalid recovery phrase"
        (meta_log_federation_identity_error meta_log_federation_error)
    meta_log_federation_bad_derivation_path "Invalid derivation path"
        (meta_log_federation_identity_error meta_log_federation_error)
    meta_log_federation_bad_passphrase "Wrong or missing passphrase"
        (meta_log_federation_identity_error meta_log_federation_error)
    meta_log_federation_identity_exists "Identity file already exists"
        (meta_log_federation_identity_error meta_log_federation_error)
    meta_log_federation_corrupt_identity_file "Damaged identity file"
        (meta_log_federation_identity_error meta_log_federation_error)
}

/// Which error symbol a failure is signalled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    General,
    Mqtt,
    BadUrl,
    BadTopic,
    QueueFull,
    NotConnected,
    NotRunning,
    UnknownPeer,
    TooLarge,
    Trust,
    Sync,
    Identity,
    BadMnemonic,
    BadDerivationPath,
    BadPassphrase,
    IdentityExists,
    CorruptIdentityFile,
}

/// Signals `message` as an error of `kind`.
pub fn signal<T>(env: &Env, kind: Kind, message: impl AsRef<str>) -> Result<T> {
    let msg = message.as_ref();
    let symbol = match kind {
        Kind::General => meta_log_federation_error,
        Kind::Mqtt => meta_log_federation_mqtt_error,
        Kind::BadUrl => meta_log_federation_bad_url,
        Kind::BadTopic => meta_log_federation_bad_topic,
        Kind::QueueFull => meta_log_federation_queue_full,
        Kind::NotConnected => meta_log_federation_not_connected,
        Kind::NotRunning => meta_log_federation_not_running,
        Kind::UnknownPeer => meta_log_federation_unknown_peer,
        Kind::TooLarge => meta_log_federation_too_large,
        Kind::Trust => meta_log_federation_trust_error,
        Kind::Sync => meta_log_federation_sync_error,
        Kind::Identity => meta_log_federation_identity_error,
        Kind::BadMnemonic => meta_log_federation_bad_mnemonic,
        Kind::BadDerivationPath => meta_log_federation_bad_derivation_path,
        Kind::BadPassphrase => meta_log_federation_bad_passphrase,
        Kind::IdentityExists => meta_log_federation_identity_exists,
        Kind::CorruptIdentityFile => meta_log_federation_corrupt_identity_file,
    };
    env.signal(symbol, (msg,))
}

/// A core error as Elisp sees it: the symbol it is signalled with and its message (the core's,
/// plus advice for an Emacs user where it helps).
pub trait ElispError: std::fmt::Display {
    /// The error symbol.
    fn kind(&self) -> Kind;
    /// The message; by default the core's.
    fn message(&self) -> String {
        self.to_string()
    }
}

/// Signals the core error `e` as its [`ElispError`] mapping says.
pub fn raise<T>(env: &Env, e: impl ElispError) -> Result<T> {
    signal(env, e.kind(), e.message())
}

/// [`raise`] for the error of `r`, if any.
pub fn check<T, E: ElispError>(env: &Env, r: std::result::Result<T, E>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => raise(env, e),
    }
}

// The table: one mapping per core error type.

impl ElispError for UrlError {
    fn kind(&self) -> Kind {
        Kind::BadUrl
    }
}

impl ElispError for TopicError {
    fn kind(&self) -> Kind {
        Kind::BadTopic
    }
}

impl ElispError for ClientCallError {
    fn kind(&self) -> Kind {
        match self {
            ClientCallError::BadTopic(_) => Kind::BadTopic,
            ClientCallError::QueueFull(_) => Kind::QueueFull,
            ClientCallError::BadQos(_) | ClientCallError::TooLarge { .. } => Kind::General,
            ClientCallError::Closed => Kind::NotConnected,
        }
    }
}

impl ElispError for ConnectError {
    fn kind(&self) -> Kind {
        match self {
            ConnectError::BadOptions(_) => Kind::General,
            ConnectError::AlreadyConnected(_) | ConnectError::Runtime(_) => Kind::Mqtt,
        }
    }
    fn message(&self) -> String {
        match self {
            ConnectError::AlreadyConnected(_) => {
                format!("{self}; call `meta-log-federation-mqtt-disconnect' first")
            }
            _ => self.to_string(),
        }
    }
}

impl ElispError for OutboundError {
    fn kind(&self) -> Kind {
        match self {
            OutboundError::UnknownPeer(_) => Kind::UnknownPeer,
            OutboundError::TooLarge { .. } => Kind::TooLarge,
            OutboundError::OutboxFull(_) => Kind::QueueFull,
            _ => Kind::General,
        }
    }
}

impl ElispError for TrustError {
    fn kind(&self) -> Kind {
        Kind::Trust
    }
}

impl ElispError for NodeError {
    fn kind(&self) -> Kind {
        match self {
            NodeError::Trust(_) => Kind::Trust,
            _ => Kind::General,
        }
    }
    fn message(&self) -> String {
        match self {
            NodeError::BadDisplayName(_) => {
                format!("{self} (`meta-log-federation-display-name')")
            }
            _ => self.to_string(),
        }
    }
}

impl ElispError for SyncError {
    fn kind(&self) -> Kind {
        Kind::Sync
    }
    fn message(&self) -> String {
        match self {
            SyncError::Corrupt { .. } => {
                format!("{self} (M-x meta-log-federation-sync-status shows its state)")
            }
            _ => self.to_string(),
        }
    }
}

impl ElispError for ShareIdError {
    fn kind(&self) -> Kind {
        Kind::Sync
    }
}

impl ElispError for NameError {
    fn kind(&self) -> Kind {
        Kind::Sync
    }
}

impl ElispError for IdentityError {
    fn kind(&self) -> Kind {
        match self {
            IdentityError::BadMnemonic(_) => Kind::BadMnemonic,
            IdentityError::BadPath { .. } => Kind::BadDerivationPath,
            IdentityError::BadPassphrase(_) => Kind::BadPassphrase,
            IdentityError::Exists(_) => Kind::IdentityExists,
            IdentityError::CorruptFile { .. } | IdentityError::KeyMismatch { .. } => {
                Kind::CorruptIdentityFile
            }
            IdentityError::BadWordCount(_) | IdentityError::Io(_) | IdentityError::Crypto(_) => {
                Kind::Identity
            }
        }
    }
}

/// Runs `f`, turning a panic into a `meta-log-federation-internal-error` that carries the
/// panic's message (the `emacs` crate's own conversion loses it).
pub fn guard<T>(env: &Env, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            env.signal(
                meta_log_federation_internal_error,
                (format!("{what} (please report this bug)"),),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn each_core_error_maps_to_its_symbol() {
        assert_eq!(UrlError("x".into()).kind(), Kind::BadUrl);
        assert_eq!(TopicError("x".into()).kind(), Kind::BadTopic);
        assert_eq!(ClientCallError::QueueFull(3).kind(), Kind::QueueFull);
        assert_eq!(ClientCallError::Closed.kind(), Kind::NotConnected);
        assert_eq!(
            OutboundError::UnknownPeer("p".into()).kind(),
            Kind::UnknownPeer
        );
        assert_eq!(
            IdentityError::BadMnemonic("m".into()).kind(),
            Kind::BadMnemonic
        );
        assert_eq!(IdentityError::BadWordCount(5).kind(), Kind::Identity);
        assert_eq!(NameError::Dots.kind(), Kind::Sync);
        assert_eq!(ShareIdError::Origin.kind(), Kind::Sync);
    }

    #[test]
    fn the_emacs_layer_adds_the_advice_the_core_leaves_out() {
        let e = ConnectError::AlreadyConnected("mqtt://h:1883".into());
        assert!(!e.to_string().contains("meta-log-federation"), "{e}");
        assert!(e
            .message()
            .contains("`meta-log-federation-mqtt-disconnect'"));
        let e = SyncError::Corrupt {
            path: PathBuf::from("/s/x.automerge"),
            detail: "bad magic".into(),
        };
        assert!(!e.to_string().contains("M-x"), "{e}");
        assert!(e.message().contains("M-x meta-log-federation-sync-status"));
        let e = NodeError::BadDisplayName("display name: a control character".into());
        assert!(!e.to_string().contains("meta-log-federation"), "{e}");
        assert!(e.message().contains("`meta-log-federation-display-name'"));
    }

    /// Lines of Rust code (not comments) under `dir` that name an Emacs command or variable.
    fn emacs_names_in(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("elisp") {
                continue; // the Emacs layer: where advice naming commands belongs
            }
            if path.is_dir() {
                emacs_names_in(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if code.starts_with("//") || code.contains("-v1") {
                        continue; // comments, and file-format names such as `…-trust-v1`
                    }
                    if code.contains("M-x") || code.contains("meta-log-federation-") {
                        found.push(format!("{}:{}: {code}", path.display(), i + 1));
                    }
                }
            }
        }
    }

    #[test]
    fn core_messages_name_no_emacs_command() {
        let mut found = Vec::new();
        emacs_names_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "{found:#?}");
    }
}
