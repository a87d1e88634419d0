//! Events from the runtime into Emacs: the wake-up pipe and the drain that the pipe process'
//! filter calls on the main thread.

use super::convert::{self, payload_to_lisp, CallTimer};
use super::errors::guard;
use crate::events::{Event, BUS};
use crate::transport::connection;
use emacs::{defun, use_symbols, Env, IntoLisp, Result, Value};
use std::sync::atomic::Ordering;

use_symbols! {
    sym_message => "message"
    sym_connected => "connected"
    sym_disconnected => "disconnected"
    sym_error => "error"
    kw_max_call_us => ":max-call-us"
    kw_calls => ":calls"
    kw_events_pushed => ":events-pushed"
    kw_wakeups => ":wakeups"
    kw_events_waiting => ":events-waiting"
    kw_published => ":published"
    kw_received => ":received"
    kw_pending => ":pending"
    kw_connects => ":connects"
    kw_requeued => ":requeued"
}

/// Most events one drain returns, so that no call into the module takes long; the Elisp
/// side calls again while a drain comes back full.
const DRAIN_MAX: usize = 256;

/// Make PROCESS (a pipe process) the channel that wakes Emacs when events arrive.
///
/// Internal: `meta-log-federation--ensure-wakeup' creates the process.  Its
/// filter must call `meta-log-federation--drain-events'.
#[defun(name = "-set-wakeup-process")]
fn set_wakeup_process(env: &Env, process: Value<'_>) -> Result<()> {
    let _t = CallTimer::start();
    guard(env, || {
        let writer = env.open_channel(process)?;
        // The `emacs` crate hides the descriptor behind an opaque type; its Debug form names
        // it. Emacs dup()s the pipe without close-on-exec, so without this every child process
        // of Emacs would inherit our wake-up pipe.
        match crate::events::fd_from_debug(&format!("{writer:?}")) {
            Some(fd) => crate::events::make_cloexec_nonblocking(fd),
            None => {
                return super::errors::signal(
                    env,
                    super::errors::Kind::General,
                    "cannot find the wake-up pipe's descriptor (emacs crate changed?)",
                )
            }
        }
        BUS.set_waker(Box::new(writer));
        Ok(())
    })
}

/// Forget the wake-up channel (before its process is deleted).
#[defun(name = "-clear-wakeup")]
fn clear_wakeup() -> Result<()> {
    BUS.clear_waker();
    Ok(())
}

fn event_to_lisp<'e>(env: &'e Env, ev: Event) -> Result<Value<'e>> {
    match ev {
        Event::Message {
            topic,
            payload,
            retain,
            filters,
        } => {
            let ids: Vec<Value> = filters
                .into_iter()
                .map(|id| (id as i64).into_lisp(env))
                .collect::<Result<_>>()?;
            env.vector((
                sym_message,
                topic.as_str(),
                payload_to_lisp(env, &payload)?,
                retain,
                env.list(&ids[..])?,
            ))
        }
        Event::Connected { broker, reconnect } => {
            env.vector((sym_connected, broker.as_str(), reconnect))
        }
        Event::Disconnected { reason, will_retry } => {
            env.vector((sym_disconnected, reason.as_str(), will_retry))
        }
        Event::Error { context, message } => {
            env.vector((sym_error, context.as_str(), message.as_str()))
        }
    }
}

/// Return a vector of up to 256 pending events, oldest first (empty when none).
///
/// Internal: called by the wake-up process' filter and by
/// `meta-log-federation-wait-until'.  Each event is a vector:
/// [message TOPIC PAYLOAD RETAIN FILTER-IDS], [connected BROKER RECONNECT],
/// [disconnected REASON WILL-RETRY] or [error CONTEXT MESSAGE].
#[defun(name = "-drain-events")]
fn drain_events(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start();
    guard(env, || {
        let events = BUS.drain(DRAIN_MAX);
        let values: Vec<Value> = events
            .into_iter()
            .map(|e| event_to_lisp(env, e))
            .collect::<Result<_>>()?;
        env.vector(&values[..])
    })
}

pub fn stats_plist(env: &Env) -> Result<Value<'_>> {
    let c = &BUS.counters;
    let mut items: Vec<Value> = vec![
        kw_max_call_us.bind(env),
        (convert::max_call_us() as i64).into_lisp(env)?,
        kw_calls.bind(env),
        (convert::calls() as i64).into_lisp(env)?,
        kw_events_pushed.bind(env),
        (c.pushed.load(Ordering::Relaxed) as i64).into_lisp(env)?,
        kw_wakeups.bind(env),
        (c.wakeups.load(Ordering::Relaxed) as i64).into_lisp(env)?,
        kw_events_waiting.bind(env),
        (BUS.len() as i64).into_lisp(env)?,
    ];
    let client_stats = connection::with_client(|cl| {
        let s = &cl.stats;
        [
            s.published.load(Ordering::Relaxed) as i64,
            s.received.load(Ordering::Relaxed) as i64,
            s.pending.load(Ordering::Relaxed) as i64,
            s.connects.load(Ordering::Relaxed) as i64,
            s.requeued.load(Ordering::Relaxed) as i64,
        ]
    });
    if let Some(vals) = client_stats {
        let keys = [
            kw_published,
            kw_received,
            kw_pending,
            kw_connects,
            kw_requeued,
        ];
        for (k, v) in keys.iter().zip(vals) {
            items.push(k.bind(env));
            items.push(v.into_lisp(env)?);
        }
    }
    env.list(&items[..])
}
