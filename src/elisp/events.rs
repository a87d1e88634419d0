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
    kw_max_call_function => ":max-call-function"
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
const DRAIN_MAX: usize = 64;

/// Make PROCESS (a pipe process) the channel that wakes Emacs when events arrive.
///
/// Internal: `meta-log-federation--ensure-wakeup' creates the process.  Its
/// filter must call `meta-log-federation--drain-events'.
#[defun(name = "-set-wakeup-process")]
fn set_wakeup_process(env: &Env, process: Value<'_>) -> Result<()> {
    let _t = CallTimer::start("set_wakeup_process");
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

/// Builds a Lisp vector with the module API's own `make_vector`/`vec_set`: unlike a funcall of
/// `vector`, these never run Emacs' garbage collector inside our call, which kept single drains
/// under a millisecond in the benchmark.
fn lisp_vector<'e>(env: &'e Env, items: &[Value<'e>]) -> Result<Value<'e>> {
    let v = env.make_vector(items.len(), ())?;
    for (i, item) in items.iter().enumerate() {
        v.set(i, *item)?;
    }
    Ok(v.value())
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
            lisp_vector(
                env,
                &[
                    sym_message.bind(env),
                    topic.as_str().into_lisp(env)?,
                    payload_to_lisp(env, &payload)?,
                    retain.into_lisp(env)?,
                    lisp_vector(env, &ids)?,
                ],
            )
        }
        Event::Connected { broker, reconnect } => lisp_vector(
            env,
            &[
                sym_connected.bind(env),
                broker.as_str().into_lisp(env)?,
                reconnect.into_lisp(env)?,
            ],
        ),
        Event::Disconnected { reason, will_retry } => lisp_vector(
            env,
            &[
                sym_disconnected.bind(env),
                reason.as_str().into_lisp(env)?,
                will_retry.into_lisp(env)?,
            ],
        ),
        Event::Error { context, message } => lisp_vector(
            env,
            &[
                sym_error.bind(env),
                context.as_str().into_lisp(env)?,
                message.as_str().into_lisp(env)?,
            ],
        ),
    }
}

/// Return a vector of up to 64 pending events, oldest first (empty when none).
///
/// Internal: called by the wake-up process' filter and by
/// `meta-log-federation-wait-until'.  Each event is a vector:
/// [message TOPIC PAYLOAD RETAIN FILTER-IDS] (FILTER-IDS a vector), [connected BROKER RECONNECT],
/// [disconnected REASON WILL-RETRY] or [error CONTEXT MESSAGE].
#[defun(name = "-drain-events")]
fn drain_events(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("drain_events");
    guard(env, || {
        let events = BUS.drain(DRAIN_MAX);
        let values: Vec<Value> = events
            .into_iter()
            .map(|e| event_to_lisp(env, e))
            .collect::<Result<_>>()?;
        lisp_vector(env, &values)
    })
}

pub fn stats_plist(env: &Env) -> Result<Value<'_>> {
    let c = &BUS.counters;
    let mut items: Vec<Value> = vec![
        kw_max_call_us.bind(env),
        (convert::max_call_us() as i64).into_lisp(env)?,
        kw_max_call_function.bind(env),
        convert::max_call_name().into_lisp(env)?,
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
