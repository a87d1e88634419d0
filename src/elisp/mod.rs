//! The thin layer between Emacs and the core: registers the Elisp functions, converts values,
//! turns errors and panics into Elisp signals. Nothing outside this module touches `emacs::Env`.

mod blackboard;
mod canvasl;
mod convert;
mod delivery;
mod errors;
mod events;
mod federation;
mod files;
mod identity;
mod links;
mod members;
mod mqtt;
mod rules;
mod session;
mod sync;
mod sync_events;
mod sync_hunks;

pub use errors::*;

use emacs::{defun, Env, Result, Value};

emacs::plugin_is_GPL_compatible!();

#[emacs::module(
    name = "meta-log-federation-module",
    defun_prefix = "meta-log-federation",
    mod_in_name = false
)]
fn init(_: &Env) -> Result<()> {
    Ok(())
}

/// Return the version of the native module, such as "0.1.0".
///
/// The Elisp package compares it with its own version when it loads the module.
#[defun(name = "version")]
fn version() -> Result<&'static str> {
    let _t = convert::CallTimer::start("version");
    Ok(crate::VERSION)
}

/// Return the module's internal statistics as a plist.
///
/// Keys: :max-call-us (the longest time one call into the module took, in
/// microseconds of wall-clock time), :max-call-cpu-us (the same in CPU time
/// of Emacs' thread), :max-call-function, :calls, :events-pushed, :wakeups, :events-waiting,
/// and, while connected, :published, :received, :pending, :connects, :requeued.
#[defun(name = "-stats")]
fn stats(env: &Env) -> Result<Value<'_>> {
    let _t = convert::CallTimer::start("stats");
    events::stats_plist(env)
}

/// Note that Emacs has just collected garbage; GC-ELAPSED is `gc-elapsed'.
///
/// Internal: on `post-gc-hook', so that the CPU time of module calls
/// (`meta-log-federation--module-call-stats', :max-call-cpu-us) leaves
/// out the collections Emacs ran inside them.
#[defun(name = "-note-gc")]
fn note_gc(gc_elapsed: f64) -> Result<()> {
    if gc_elapsed.is_finite() && gc_elapsed > 0.0 {
        convert::note_gc((gc_elapsed * 1e9) as u64);
    }
    Ok(())
}

/// Reset the longest-call statistic (for benchmarks).
#[defun(name = "-reset-max-call")]
fn reset_max_call() -> Result<()> {
    let _t = convert::CallTimer::start("reset-max-call");
    convert::reset_max_call();
    Ok(())
}

/// Return the list of optional features this module was built with, such as ("tls").
#[defun(name = "-features")]
fn features(env: &Env) -> Result<Value<'_>> {
    let _t = convert::CallTimer::start("features");
    let mut names: Vec<Value> = Vec::new();
    if cfg!(feature = "tls") {
        names.push(env.intern("tls")?);
    }
    if cfg!(feature = "webrtc") {
        names.push(env.intern("webrtc")?);
    }
    env.list(&names[..])
}

/// Return how long the module's functions took, the longest first.
///
/// A list of (NAME CALLS MAX-US TOTAL-US MAX-CPU-US): NAME the function
/// (as the module's timer calls it), CALLS how often it was called,
/// MAX-US the longest single call and TOTAL-US all calls together, in
/// microseconds of wall-clock time, and MAX-CPU-US the most CPU time of
/// Emacs' thread one call took, garbage collections that Emacs ran
/// inside it left out (wall-clock time also counts those and the time
/// the system gave other processes), since the module was loaded or
/// `meta-log-federation--reset-max-call'.  Every call from Emacs' main
/// thread shows here, so the longest stall a module call caused is the
/// first MAX-US.
#[defun(name = "-module-call-stats")]
fn module_call_stats(env: &Env) -> Result<Value<'_>> {
    let _t = convert::CallTimer::start("module-call-stats");
    let rows = convert::per_function()
        .into_iter()
        .map(|(name, calls, max_ns, total_ns, cpu_ns)| {
            env.list((
                name,
                calls as i64,
                (max_ns / 1000) as i64,
                (total_ns / 1000) as i64,
                (cpu_ns / 1000) as i64,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    env.list(&rows[..])
}
