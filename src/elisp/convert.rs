//! Value conversions between Lisp and Rust, and the timing of calls into the module.

use emacs::{Env, IntoLisp, Result, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static MAX_CALL_NS: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
static MAX_CALL_NAME: Mutex<&'static str> = Mutex::new("");

/// Records how long a call into the module took, so benchmarks can show the longest one and
/// which function it was.
pub struct CallTimer(Instant, &'static str);

impl CallTimer {
    pub fn start(name: &'static str) -> Self {
        CallTimer(Instant::now(), name)
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        let ns = self.0.elapsed().as_nanos() as u64;
        CALLS.fetch_add(1, Ordering::Relaxed);
        if MAX_CALL_NS.fetch_max(ns, Ordering::Relaxed) < ns {
            *crate::events::lock(&MAX_CALL_NAME) = self.1;
        }
    }
}

/// Name of the function that made the longest call.
pub fn max_call_name() -> &'static str {
    *crate::events::lock(&MAX_CALL_NAME)
}

pub fn max_call_us() -> u64 {
    MAX_CALL_NS.load(Ordering::Relaxed) / 1000
}

pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

pub fn reset_max_call() {
    MAX_CALL_NS.store(0, Ordering::Relaxed);
}

/// A payload for Lisp: a multibyte string when it is UTF-8, else a unibyte string of the raw
/// bytes (binary payloads survive the trip unchanged).
pub fn payload_to_lisp<'e>(env: &'e Env, bytes: &[u8]) -> Result<Value<'e>> {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.into_lisp(env),
        Err(_) => bytes.into_lisp(env),
    }
}

/// A payload from Lisp: the bytes of a unibyte string as they are, or a multibyte string's text
/// as UTF-8.
pub fn payload_from_lisp(v: Value<'_>) -> Result<Vec<u8>> {
    // Emacs' module API encodes a unibyte string's bytes unchanged and a multibyte string as
    // UTF-8, so the raw contents are right in both cases.
    v.into_rust::<Vec<u8>>()
}

/// `nil` or a value converted from Lisp.
pub fn opt<'e, T: emacs::FromLisp<'e>>(v: Option<Value<'e>>) -> Result<Option<T>> {
    match v {
        Some(v) if v.is_not_nil() => Ok(Some(v.into_rust()?)),
        _ => Ok(None),
    }
}
