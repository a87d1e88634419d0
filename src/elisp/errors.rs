//! The package's error symbols, one root with specific children that Lisp code can
//! `condition-case` on, and the conversion of Rust errors and panics into signals.

use emacs::{define_errors, Env, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

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
}

/// Which error symbol a failure is signalled with.
#[derive(Debug, Clone, Copy)]
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
}

/// Signals `message` as an error of `kind`.
pub fn signal<T>(env: &Env, kind: Kind, message: impl AsRef<str>) -> Result<T> {
    let msg = message.as_ref();
    match kind {
        Kind::General => env.signal(meta_log_federation_error, (msg,)),
        Kind::Mqtt => env.signal(meta_log_federation_mqtt_error, (msg,)),
        Kind::BadUrl => env.signal(meta_log_federation_bad_url, (msg,)),
        Kind::BadTopic => env.signal(meta_log_federation_bad_topic, (msg,)),
        Kind::QueueFull => env.signal(meta_log_federation_queue_full, (msg,)),
        Kind::NotConnected => env.signal(meta_log_federation_not_connected, (msg,)),
        Kind::NotRunning => env.signal(meta_log_federation_not_running, (msg,)),
        Kind::UnknownPeer => env.signal(meta_log_federation_unknown_peer, (msg,)),
        Kind::TooLarge => env.signal(meta_log_federation_too_large, (msg,)),
        Kind::Trust => env.signal(meta_log_federation_trust_error, (msg,)),
        Kind::Sync => env.signal(meta_log_federation_sync_error, (msg,)),
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
