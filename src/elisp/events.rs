//! Events from the runtime into Emacs: the wake-up pipe and the drain that the pipe process'
//! filter calls on the main thread.

use super::convert::{self, payload_to_lisp, CallTimer};
use super::errors::guard;
use crate::events::{Event, BUS};
use crate::session::SessionEvent;
use crate::transport::connection;
use emacs::{defun, use_symbols, Env, IntoLisp, Result, Value, Vector};
use std::sync::atomic::Ordering;

use_symbols! {
    sym_message => "message"
    sym_connected => "connected"
    sym_disconnected => "disconnected"
    sym_error => "error"
    sym_peer_online => "peer-online"
    sym_peer_offline => "peer-offline"
    sym_key_conflict => "key-conflict"
    sym_peer_message => "peer-message"
    sym_receipt => "receipt"
    sym_delivery => "delivery"
    sym_accepted => "accepted"
    sym_dropped => "dropped"
    sym_sync_refused => "sync-refused"
    sym_sync_warning => "sync-warning"
    sym_write_failed => "write-failed"
    kw_max_call_us => ":max-call-us"
    kw_calls => ":calls"
    kw_max_call_function => ":max-call-function"
    kw_max_call_cpu_function => ":max-call-cpu-function"
    kw_max_call_gc_us => ":max-call-gc-us"
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

/// Elements of one event vector: its type and up to five values.
const SLOT_WIDTH: usize = 6;

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
    let _t = super::convert::CallTimer::start("clear-wakeup");
    BUS.clear_waker();
    Ok(())
}

/// Writes the values of one event into `slot` after its type, nil in the slots it leaves.
fn set_all<'e>(env: &'e Env, slot: &Vector<'e>, ty: Value<'e>, vals: &[Value<'e>]) -> Result<()> {
    let nil = ().into_lisp(env)?;
    slot.set(0, ty)?;
    for i in 1..SLOT_WIDTH {
        slot.set(i, vals.get(i - 1).copied().unwrap_or(nil))?;
    }
    Ok(())
}

/// A session event into `slot`: `[TYPE VALUES...]`, see `-drain-events-into`.
fn fill_session_slot<'e>(env: &'e Env, slot: &Vector<'e>, ev: SessionEvent) -> Result<()> {
    let nil = ().into_lisp(env)?;
    let s = |x: &str| x.into_lisp(env);
    let opt = |x: Option<String>| match x {
        Some(x) => x.into_lisp(env),
        None => Ok(nil),
    };
    match ev {
        SessionEvent::PeerOnline {
            peer_id,
            name,
            address,
        } => set_all(
            env,
            slot,
            sym_peer_online.bind(env),
            &[s(&peer_id)?, s(&name)?, s(&address)?],
        ),
        SessionEvent::PeerOffline { peer_id, reason } => set_all(
            env,
            slot,
            sym_peer_offline.bind(env),
            &[s(&peer_id)?, env.intern(reason.as_str())?],
        ),
        SessionEvent::KeyConflict {
            new_peer_id,
            name,
            known_peer_id,
        } => set_all(
            env,
            slot,
            sym_key_conflict.bind(env),
            &[s(&new_peer_id)?, s(&name)?, s(&known_peer_id)?],
        ),
        SessionEvent::PeerMessage {
            from,
            text,
            id,
            sig,
            topic,
        } => set_all(
            env,
            slot,
            sym_peer_message.bind(env),
            &[s(&from)?, s(&text)?, s(&id)?, s(&sig)?, s(&topic)?],
        ),
        SessionEvent::Receipt { delivered } => {
            // Two strings of 64-character ids one after the other (event ids, and the peer of
            // each), not a list of pairs: strings are made without calling into Lisp, and a
            // call into Lisp (`list') lets Emacs collect garbage inside this module call.
            let (mut ids, mut peers) = (String::new(), String::new());
            for (id, peer) in &delivered {
                if id.len() == ID_CHARS && peer.len() == ID_CHARS {
                    ids.push_str(id);
                    peers.push_str(peer);
                }
            }
            set_all(env, slot, sym_receipt.bind(env), &[s(&ids)?, s(&peers)?])
        }
        SessionEvent::Delivery {
            failed,
            errors,
            waiting,
        } => {
            let failed = failed
                .iter()
                .map(|(id, peer, why)| env.list((id.as_str(), peer.as_str(), why.as_str())))
                .collect::<Result<Vec<_>>>()?;
            let errors = errors
                .iter()
                .map(|e| e.as_str().into_lisp(env))
                .collect::<Result<Vec<_>>>()?;
            let waiting = waiting
                .iter()
                .map(|(peer, n)| env.cons(peer.as_str(), *n as i64))
                .collect::<Result<Vec<_>>>()?;
            set_all(
                env,
                slot,
                sym_delivery.bind(env),
                &[
                    env.list(&failed[..])?,
                    env.list(&errors[..])?,
                    env.list(&waiting[..])?,
                ],
            )
        }
        SessionEvent::Accepted {
            topic,
            kind,
            content,
        } => set_all(
            env,
            slot,
            sym_accepted.bind(env),
            &[s(&topic)?, env.intern(kind)?, s(&content)?],
        ),
        SessionEvent::Dropped {
            reason,
            message,
            peer,
            quiet,
        } => set_all(
            env,
            slot,
            sym_dropped.bind(env),
            &[s(&reason)?, s(&message)?, opt(peer)?, quiet.into_lisp(env)?],
        ),
        SessionEvent::SyncRefused { reason, detail } => set_all(
            env,
            slot,
            sym_sync_refused.bind(env),
            &[s(&reason)?, s(&detail)?],
        ),
        SessionEvent::Warning { share, message } => set_all(
            env,
            slot,
            sym_sync_warning.bind(env),
            &[opt(share)?, s(&message)?],
        ),
        SessionEvent::Sync { kind, values } => {
            super::sync_events::fill_sync_slot(env, slot, kind, values)
        }
        SessionEvent::WriteFailed {
            share,
            path,
            message,
            attempt,
        } => set_all(
            env,
            slot,
            sym_write_failed.bind(env),
            &[
                s(&share)?,
                s(&path)?,
                s(&message)?,
                i64::from(attempt).into_lisp(env)?,
            ],
        ),
    }
}

/// Writes `ev` into `slot`, a 6-element vector that the Elisp side allocated once and reuses.
///
/// Only the module API's own `vec_set`, `make_string` and `make_integer` are used: they never
/// run Emacs' garbage collector, whereas any funcall (even of `vector`) may, and a collection
/// inside a drain made single calls take several milliseconds in the benchmark. The
/// exceptions ([`calls_into_lisp`]: a message matching several subscriptions, whose ids need
/// a fresh vector, and the delivery report's lists) each start a drain of their own.
fn fill_slot<'e>(env: &'e Env, slot: &Vector<'e>, ev: Event) -> Result<()> {
    let nil = ().into_lisp(env)?;
    match ev {
        Event::Session(ev) => return fill_session_slot(env, slot, ev),
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
/// of 6 slots each, reused from call to call.  An event is
/// [message TOPIC PAYLOAD RETAIN IDS] (IDS a subscription id, or a vector
/// of them when several subscriptions match), [connected BROKER RECONNECT
/// nil nil], [disconnected REASON WILL-RETRY nil nil], [error CONTEXT
/// MESSAGE nil nil], or a finished event of the federation session:
/// [peer-online PEER NAME ADDRESS], [peer-offline PEER REASON],
/// [key-conflict NEW-PEER NAME KNOWN-PEER], [peer-message FROM TEXT ID
/// SIG TOPIC], [receipt IDS PEERS] (IDS and PEERS: 64-character ids one after
/// the other, the Nth peer the addressee of the Nth id), [delivery ((ID PEER REASON)
/// ...) (ERROR ...) ((PEER . WAITING) ...)], [accepted TOPIC KIND CONTENT],
/// [dropped REASON MESSAGE PEER QUIET], [sync-refused REASON DETAIL],
/// [sync-warning URL-OR-NIL MESSAGE], [write-failed URL FILE MESSAGE
/// ATTEMPT], or one of the edit path's (file-updated, held-change, saved,
/// save-not-taken and offer-written: see `meta-log-federation--sync-on-event';
/// shared and share-failed: see meta-log-federation-sync.el).  Slots an event does not use may
/// hold anything.
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
        let events = take_events(DRAIN_SLOTS);
        let n = events.len();
        for (i, ev) in events.into_iter().enumerate() {
            let slot: Vector = buffer.get(i)?;
            if slot.len() < SLOT_WIDTH {
                return super::errors::signal(
                    env,
                    super::errors::Kind::General,
                    format!("drain buffer slots need {SLOT_WIDTH} elements"),
                );
            }
            fill_slot(env, &slot, ev)?;
        }
        Ok(n)
    })
}

/// Length of an event id and of a peer id (hex).
const ID_CHARS: usize = 64;

/// Most (ID PEER) pairs one `receipt` event carries into Emacs: a receipt for a burst of
/// thousands of messages would otherwise be converted in one module call (31 ms of CPU for
/// 5,000), so it is handed over in parts, in order, one part per slot.
const RECEIPT_PAIRS_PER_SLOT: usize = 64;

/// Events taken from the bus but not handed to Emacs yet (the parts of a split receipt and
/// what followed it), in order: they go before anything still on the bus.
static LEFTOVER: std::sync::Mutex<std::collections::VecDeque<Event>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Up to `max` events, in order, with large receipts split (see [`RECEIPT_PAIRS_PER_SLOT`]).
fn take_events(max: usize) -> Vec<Event> {
    let mut left = crate::events::lock(&LEFTOVER);
    if left.len() < max {
        let more = BUS.drain(max - left.len());
        left.extend(more);
    }
    let mut out: Vec<Event> = Vec::with_capacity(max);
    let mut bytes = 0;
    while out.len() < max && bytes < DRAIN_BYTES {
        // An event whose conversion calls into Lisp starts a drain of its own: a call into
        // Lisp may collect garbage, and after the strings of the events before it (a burst of
        // receipts) it very likely would, inside this module call.
        if !out.is_empty() && left.front().is_some_and(calls_into_lisp) {
            break;
        }
        match left.pop_front() {
            Some(Event::Session(SessionEvent::Receipt { mut delivered }))
                if delivered.len() > RECEIPT_PAIRS_PER_SLOT =>
            {
                let rest = delivered.split_off(RECEIPT_PAIRS_PER_SLOT);
                left.push_front(Event::Session(SessionEvent::Receipt { delivered: rest }));
                bytes += RECEIPT_PAIRS_PER_SLOT * 2 * ID_CHARS;
                out.push(Event::Session(SessionEvent::Receipt { delivered }));
            }
            Some(ev) => {
                bytes += text_bytes(&ev);
                out.push(ev)
            }
            None => break,
        }
    }
    out
}

/// Text one drain converts at most (after its first event): Emacs decodes every string the
/// module makes, about 1 ms for 500 KB here, so a burst is handed over in short calls.
const DRAIN_BYTES: usize = 64 * 1024;

/// About how many bytes of text converting `ev` makes.
fn text_bytes(ev: &Event) -> usize {
    match ev {
        Event::Message { topic, payload, .. } => topic.len() + payload.len(),
        Event::Session(SessionEvent::PeerMessage {
            from,
            text,
            id,
            sig,
            topic,
        }) => from.len() + text.len() + id.len() + sig.len() + topic.len(),
        Event::Session(SessionEvent::Receipt { delivered }) => delivered.len() * 2 * ID_CHARS,
        _ => 256,
    }
}

/// Whether converting `ev` calls a Lisp function (to make a list or a vector), see [`fill_slot`].
fn calls_into_lisp(ev: &Event) -> bool {
    match ev {
        Event::Message { filters, .. } => filters.len() != 1,
        Event::Session(SessionEvent::Delivery {
            failed,
            errors,
            waiting,
        }) => !(failed.is_empty() && errors.is_empty() && waiting.is_empty()),
        Event::Session(SessionEvent::Sync { values, .. }) => values
            .iter()
            .any(|v| matches!(v, crate::session::SyncValue::Hunks(Some(_)))),
        _ => false,
    }
}

/// Return the length of each event vector of the drain buffer.
#[defun(name = "-drain-slot-width")]
fn drain_slot_width() -> Result<usize> {
    let _t = super::convert::CallTimer::start("drain-slot-width");
    Ok(SLOT_WIDTH)
}

/// Return the number of slots `meta-log-federation--drain-events-into' fills at most.
#[defun(name = "-drain-slots")]
fn drain_slots() -> Result<usize> {
    let _t = super::convert::CallTimer::start("drain-slots");
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
        kw_max_call_cpu_function.bind(env),
        convert::max_call_cpu_name().into_lisp(env)?,
        kw_max_call_gc_us.bind(env),
        (convert::max_call_gc_us() as i64).into_lisp(env)?,
        kw_calls.bind(env),
        (convert::calls() as i64).into_lisp(env)?,
        kw_events_pushed.bind(env),
        (c.pushed.load(Ordering::Relaxed) as i64).into_lisp(env)?,
        kw_wakeups.bind(env),
        (c.wakeups.load(Ordering::Relaxed) as i64).into_lisp(env)?,
        kw_events_waiting.bind(env),
        ((BUS.len() + crate::events::lock(&LEFTOVER).len()) as i64).into_lisp(env)?,
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
