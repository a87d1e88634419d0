//! Value conversions between Lisp and Rust, and the timing of calls into the module.

use emacs::{Env, IntoLisp, Result, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static MAX_CALL_NS: AtomicU64 = AtomicU64::new(0);
static MAX_CALL_CPU_NS: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
static MAX_CALL_NAME: Mutex<&'static str> = Mutex::new("");
static MAX_CALL_CPU_NAME: Mutex<&'static str> = Mutex::new("");
/// Emacs' garbage collections seen so far (`post-gc-hook` reports each, see [`note_gc`]):
/// their total time, and `gc-elapsed` at the last one.
static GC_NS: AtomicU64 = AtomicU64::new(0);
static GC_ELAPSED_LAST_NS: AtomicU64 = AtomicU64::new(0);
/// The longest collection Emacs ran inside a module call.
static MAX_CALL_GC_NS: AtomicU64 = AtomicU64::new(0);
/// Per function: (calls, longest wall-clock ns, total ns, longest CPU ns), for
/// `--module-call-stats`.
type CallTable = HashMap<&'static str, (u64, u64, u64, u64)>;
static PER_FUNCTION: Mutex<Option<CallTable>> = Mutex::new(None);

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Records how long a call into the module took, so benchmarks can show the longest one and
/// which function it was: in wall-clock time (what a user could notice, including any time
/// the OS gave other processes) and in CPU time of Emacs' thread (the module's own work).
/// The CPU time leaves out Emacs' garbage collections: any call into Lisp (even `list`) lets
/// Emacs collect when its allocations since the last collection call for it, so the call
/// that pays for it is chance, and the collection's cost is the size of Emacs' heap.
pub struct CallTimer(Instant, u64, &'static str, u64);

impl CallTimer {
    pub fn start(name: &'static str) -> Self {
        CallTimer(
            Instant::now(),
            thread_cpu_ns(),
            name,
            GC_NS.load(Ordering::Relaxed),
        )
    }
}

/// Notes a garbage collection that has just ended; `gc_elapsed_ns` is Emacs' `gc-elapsed`
/// (all collections' time) now.
pub fn note_gc(gc_elapsed_ns: u64) {
    let last = GC_ELAPSED_LAST_NS.swap(gc_elapsed_ns, Ordering::Relaxed);
    if last > 0 && gc_elapsed_ns > last {
        GC_NS.fetch_add(gc_elapsed_ns - last, Ordering::Relaxed);
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        let ns = self.0.elapsed().as_nanos() as u64;
        let gc = GC_NS.load(Ordering::Relaxed).saturating_sub(self.3);
        MAX_CALL_GC_NS.fetch_max(gc, Ordering::Relaxed);
        let cpu = thread_cpu_ns().saturating_sub(self.1).saturating_sub(gc);
        CALLS.fetch_add(1, Ordering::Relaxed);
        if MAX_CALL_CPU_NS.fetch_max(cpu, Ordering::Relaxed) < cpu {
            *crate::events::lock(&MAX_CALL_CPU_NAME) = self.2;
        }
        if MAX_CALL_NS.fetch_max(ns, Ordering::Relaxed) < ns {
            *crate::events::lock(&MAX_CALL_NAME) = self.2;
        }
        let mut g = crate::events::lock(&PER_FUNCTION);
        let e = g
            .get_or_insert_with(HashMap::new)
            .entry(self.2)
            .or_default();
        e.0 += 1;
        e.1 = e.1.max(ns);
        e.2 += ns;
        e.3 = e.3.max(cpu);
    }
}

/// Every instrumented function with (calls, longest ns, total ns, longest CPU ns), the
/// longest (wall-clock) first.
pub fn per_function() -> Vec<(&'static str, u64, u64, u64, u64)> {
    let g = crate::events::lock(&PER_FUNCTION);
    let mut v: Vec<_> = g
        .iter()
        .flatten()
        .map(|(k, (n, max, total, cpu))| (*k, *n, *max, *total, *cpu))
        .collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    v
}

/// The longest garbage collection Emacs ran inside a module call, in microseconds.
pub fn max_call_gc_us() -> u64 {
    MAX_CALL_GC_NS.load(Ordering::Relaxed) / 1000
}

pub fn max_call_cpu_us() -> u64 {
    MAX_CALL_CPU_NS.load(Ordering::Relaxed) / 1000
}

/// Name of the function that made the call with the most CPU time.
pub fn max_call_cpu_name() -> &'static str {
    *crate::events::lock(&MAX_CALL_CPU_NAME)
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
    MAX_CALL_CPU_NS.store(0, Ordering::Relaxed);
    MAX_CALL_GC_NS.store(0, Ordering::Relaxed);
    *crate::events::lock(&PER_FUNCTION) = None;
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

/// `((NAME . COUNT) ...)` from counters, for drop reasons and refusal reasons.
pub fn counts_alist<'e>(env: &'e Env, counts: &[(&'static str, u64)]) -> Result<Value<'e>> {
    let cells = counts
        .iter()
        .map(|(name, n)| env.cons(*name, i64::try_from(*n).unwrap_or(i64::MAX)))
        .collect::<Result<Vec<_>>>()?;
    env.list(&cells[..])
}

/// A plist `(:KEY VALUE ...)` from (keyword, value) pairs.
pub fn plist<'e>(env: &'e Env, pairs: Vec<(&str, Value<'e>)>) -> Result<Value<'e>> {
    let mut items = Vec::with_capacity(pairs.len() * 2);
    for (key, value) in pairs {
        items.push(env.intern(key)?);
        items.push(value);
    }
    env.list(&items[..])
}
