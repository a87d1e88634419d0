//! Events from the runtime into Emacs: the wake-up pipe and the drain that the pipe process'
//! filter calls on the main thread.

use super::convert::{self, payload_to_lisp, CallTimer};
use super::errors::guard;
use crate::events::{Event, BUS};
use crate::transport::connection;
use emacs::{defun, use_symbols, Env, IntoLisp, Result, Value, Vector};
use std::sync::atomic::Ordering;

use_symbols! {
    sym_message => "message"
    sym_connected => "connected"
    sym_disconnected => "disconnected"
    sym_error => "error"
    kw_max_call_us => ":max-call-us"
    kw_calls => ":calls"
    kw_max_call_function => ":max-call-function"
    kw_max_call_cpu_us => ":max-call-cpu-us"
    kw_events_pushed => ":events-pushed"
    kw_wakeups => ":wakeups"
    kw_events_waiting => ":events-waiting"
    kw_published => ":published"
    kw_received => ":received"
    kw_pending => ":pending"
    kw_connects => ":connects"
    kw_requeued => ":requeued"
}

/// Most events one drain takes, so that no call into the module takes long; the Elisp side
/// calls again while a drain comes back full. Its drain buffer has this many slots.
const DRAIN_SLOTS: usize = 64;

/// Make PROCESS (a pipe process) the channel that wakes Emacs when events arrive.
///
/// Internal: `meta-log-federation--ensure-wakeup' creates the process.  Its
/// filter must call `meta-log-federation-dispatch-pending'.
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

/// Writes `ev` into `slot`, a 5-element vector that the Elisp side allocated once and reuses.
///
/// Only the module API's own `vec_set`, `make_string` and `make_integer` are used: they never
/// run Emacs' garbage collector, whereas any funcall (even of `vector`) may, and a collection
/// inside a drain made single calls take several milliseconds in the benchmark. The one
/// exception is a message matching several subscriptions, whose ids need a fresh vector.
fn fill_slot<'e>(env: &'e Env, slot: &Vector<'e>, ev: Event) -> Result<()> {
    let nil = ().into_lisp(env)?;
    match ev {
        Event::Message {
            topic,
            payload,
            retain,
            filters,
        } => {
            slot.set(0, sym_message.bind(env))?;
            slot.set(1, topic.as_str())?;
            slot.set(2, payload_to_lisp(env, &payload)?)?;
            slot.set(3, retain)?;
            if let [one] = filters[..] {
                slot.set(4, one as i64)?;
            } else {
                let ids: Vec<Value> = filters
                    .into_iter()
                    .map(|id| (id as i64).into_lisp(env))
                    .collect::<Result<_>>()?;
                slot.set(4, env.vector(&ids[..])?)?;
            }
        }
        Event::Connected { broker, reconnect } => {
            slot.set(0, sym_connected.bind(env))?;
            slot.set(1, broker.as_str())?;
            slot.set(2, reconnect)?;
            slot.set(3, nil)?;
            slot.set(4, nil)?;
        }
        Event::Disconnected { reason, will_retry } => {
            slot.set(0, sym_disconnected.bind(env))?;
            slot.set(1, reason.as_str())?;
            slot.set(2, will_retry)?;
            slot.set(3, nil)?;
            slot.set(4, nil)?;
        }
        Event::Error { context, message } => {
            slot.set(0, sym_error.bind(env))?;
            slot.set(1, context.as_str())?;
            slot.set(2, message.as_str())?;
            slot.set(3, nil)?;
            slot.set(4, nil)?;
        }
    }
    Ok(())
}

/// Fill BUFFER with up to 64 pending events, oldest first; return how many.
///
/// Internal: called by the wake-up process' filter and by
/// `meta-log-federation-wait-until'.  BUFFER is a vector of 64 vectors
/// of 5 slots each, reused from call to call.  An event is
/// [message TOPIC PAYLOAD RETAIN IDS] (IDS a subscription id, or a vector
/// of them when several subscriptions match), [connected BROKER RECONNECT
/// nil nil], [disconnected REASON WILL-RETRY nil nil] or [error CONTEXT
/// MESSAGE nil nil].
#[defun(name = "-drain-events-into")]
fn drain_events_into<'e>(env: &'e Env, buffer: Vector<'e>) -> Result<usize> {
    let _t = CallTimer::start("drain_events_into");
    guard(env, || {
        let slots = buffer.len();
        if slots < DRAIN_SLOTS {
            return super::errors::signal(
                env,
                super::errors::Kind::General,
                format!("drain buffer needs {DRAIN_SLOTS} slots, has {slots}"),
            );
        }
        let events = BUS.drain(DRAIN_SLOTS);
        let n = events.len();
        for (i, ev) in events.into_iter().enumerate() {
            let slot: Vector = buffer.get(i)?;
            fill_slot(env, &slot, ev)?;
        }
        Ok(n)
    })
}

/// Return the number of slots `meta-log-federation--drain-events-into' fills at most.
#[defun(name = "-drain-slots")]
fn drain_slots() -> Result<usize> {
    Ok(DRAIN_SLOTS)
}

pub fn stats_plist(env: &Env) -> Result<Value<'_>> {
    let c = &BUS.counters;
    let mut items: Vec<Value> = vec![
        kw_max_call_us.bind(env),
        (convert::max_call_us() as i64).into_lisp(env)?,
        kw_max_call_cpu_us.bind(env),
        (convert::max_call_cpu_us() as i64).into_lisp(env)?,
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
