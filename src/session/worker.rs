//! The session's worker thread: the whole inbound pipeline, one message at a time, in the
//! order the broker delivered them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::events::lock;
use crate::federation::{Body, SyncKind, Transition};
use crate::sync::exec::execute_on;
use crate::sync::Action;

use super::{Offline, SessionEvent, SessionSink, Shared, Work};

pub(crate) fn run(shared: &Shared, rx: Receiver<Work>) {
    let mut upkeep = Upkeep::default();
    let mut housekeeping = Housekeeping::default();
    loop {
        // Wait for work, but no longer than the next delivery upkeep or housekeeping is due.
        let wait = match (upkeep.due_in(shared), housekeeping.due_in(shared)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let work = match wait {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        let work = match work {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                housekeeping.run(shared);
                break;
            }
        };
        if work.as_ref().is_some_and(|w| !matches!(w, Work::Op(_))) {
            housekeeping.run(shared);
        }
        match work {
            None => {}
            Some(Work::Inbound(..)) if shared.stopping.load(Ordering::Relaxed) => {}
            Some(Work::Inbound(topic, payload)) => {
                let started = Instant::now();
                shared.stats.inbound.fetch_add(1, Ordering::Relaxed);
                // A panic in one message's handling must not end the pipeline: it is reported
                // and the next message is handled.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handle(shared, &topic, &payload)
                }));
                if r.is_err() {
                    shared.stats.internal_errors.fetch_add(1, Ordering::Relaxed);
                    shared.emit(SessionEvent::Warning {
                        share: None,
                        message: format!(
                            "internal error while handling a message on {topic}; it was \
                             dropped (please report this)"
                        ),
                    });
                }
                let us = started.elapsed().as_micros() as u64;
                shared.stats.max_handle_us.fetch_max(us, Ordering::Relaxed);
            }
            Some(Work::Call(f) | Work::Op(f)) => {
                survive(shared, "an operation Emacs asked for", || f(shared))
            }
            Some(Work::Stop) => break,
        }
        // A flood of messages must not starve the receipts and resends, nor a run of
        // Emacs' operations the housekeeping.
        if housekeeping.due_in(shared) == Some(Duration::ZERO) {
            housekeeping.run(shared);
        }
        survive(shared, "the delivery upkeep", || upkeep.run_if_due(shared));
    }
}

/// Runs `f`; a panic in it is reported as a warning and the worker goes on. Without this, a
/// panic would end the worker thread: every later message, receipt and save would be dropped
/// with nothing said (Emacs would still run, its federation silently deaf).
fn survive(shared: &Shared, what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        shared.stats.internal_errors.fetch_add(1, Ordering::Relaxed);
        shared.emit(SessionEvent::Warning {
            share: None,
            message: format!(
                "internal error in {what}; it was abandoned and federation goes on \
                 (please report this)"
            ),
        });
    }
}

/// The delivery upkeep's schedule on the worker, and what it last told the consumer.
#[derive(Default)]
struct Upkeep {
    last: Option<Instant>,
    waiting_told: Vec<(String, usize)>,
}

impl Upkeep {
    /// How long until the next upkeep (`None`: the upkeep is off).
    fn due_in(&self, shared: &Shared) -> Option<Duration> {
        let every = shared.delivery_every()?;
        Some(match self.last {
            None => Duration::ZERO,
            Some(t) => every.saturating_sub(t.elapsed()),
        })
    }

    fn run_if_due(&mut self, shared: &Shared) {
        if self.due_in(shared) == Some(Duration::ZERO) {
            self.last = Some(Instant::now());
            if let Some(ev) = delivery_upkeep(shared, &mut self.waiting_told) {
                shared.emit(ev);
            }
        }
    }
}

/// One delivery upkeep (see `Node::delivery_tick`): the received log and the outbox saved,
/// receipts and due resends published. The event, if the consumer has something new to know.
pub(crate) fn delivery_upkeep(
    shared: &Shared,
    waiting_told: &mut Vec<(String, usize)>,
) -> Option<SessionEvent> {
    let now = (shared.clock)();
    let (tick, waiting) = {
        let mut node = lock(&shared.node);
        let t = node.delivery_tick(now);
        (t, node.outbox().waiting_per_peer())
    };
    let mut errors = tick.errors;
    for p in tick.publications {
        if let Err(e) = shared.publish_to(&p.topic, p.payload, p.qos, p.retain) {
            errors.push(format!("not published: {e}"));
        }
    }
    if tick.failed.is_empty() && errors.is_empty() && waiting == *waiting_told {
        return None;
    }
    *waiting_told = waiting.clone();
    Some(SessionEvent::Delivery {
        failed: tick.failed,
        errors,
        waiting,
    })
}

fn sync_kind_name(k: SyncKind) -> &'static str {
    match k {
        SyncKind::Change => "sync-change",
        SyncKind::Request => "sync-request",
        SyncKind::Response => "sync-response",
    }
}

/// One message: the node's checks, then what it carries.
fn handle(shared: &Shared, topic: &str, payload: &[u8]) {
    let now = (shared.clock)();
    // The signature check (tens of microseconds) without the node's lock: during a burst the
    // worker would otherwise hold it nearly all the time, and Emacs' queries of the node
    // (a peer's details, for the chat or the blackboard) waited up to 34 ms for it.
    let limit = lock(&shared.node).config().max_event_bytes;
    let verified = crate::federation::inbound::verify_payload(payload, limit);
    let (h, addresses) = {
        let mut node = lock(&shared.node);
        let h = node.handle_verified(topic, verified, now);
        let transitions = match &h.result {
            Ok(a) => &a.transitions,
            Err(d) => &d.transitions,
        };
        // The topic each peer that came online is reached on, while the node is at hand.
        let addresses: Vec<String> = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::CameOnline { peer_id, .. } => Some(node.messages_topic(peer_id)),
                _ => None,
            })
            .collect();
        (h, addresses)
    };
    let transitions = match h.result {
        Ok(a) => {
            let from = a.from().to_string();
            match a.body {
                Body::Message { plaintext } => shared.emit(SessionEvent::PeerMessage {
                    from,
                    text: plaintext,
                    id: a.event.id,
                    sig: a.event.sig,
                    topic: topic.to_string(),
                }),
                Body::LinkSignal { plaintext } => {
                    let links = lock(&shared.links).clone();
                    if let Some(m) = links {
                        m.on_signal(&from, &plaintext);
                    }
                }
                Body::Receipt { .. } => {
                    if !h.delivered.is_empty() {
                        shared.emit(SessionEvent::Receipt {
                            delivered: h.delivered,
                        })
                    }
                }
                Body::Presence(_) | Body::Departure(_) => {
                    if shared.report_accepted.load(Ordering::Relaxed) {
                        let kind = if matches!(a.body, Body::Presence(_)) {
                            "presence"
                        } else {
                            "departure"
                        };
                        shared.emit(SessionEvent::Accepted {
                            topic: topic.to_string(),
                            kind,
                            content: String::new(),
                        });
                    }
                }
                Body::Sync { kind, content } => {
                    sync_event(shared, &from, kind, &content, &a.event.tags, now);
                    if shared.report_accepted.load(Ordering::Relaxed) {
                        shared.emit(SessionEvent::Accepted {
                            topic: topic.to_string(),
                            kind: sync_kind_name(kind),
                            content,
                        });
                    }
                }
            }
            a.transitions
        }
        Err(d) => {
            // Our own events echoed back by the broker are normal: counted, not reported.
            if !d.is_quiet() {
                shared.emit(SessionEvent::Dropped {
                    reason: d.reason.as_str().to_string(),
                    message: d.message,
                    peer: d.peer_id,
                    quiet: false,
                });
            }
            d.transitions
        }
    };
    // A peer back online, or online with a new session (it reconnected), is sent at once what
    // waits for it: its broker may have lost what it kept for it (a restart from a state
    // saved a second or two earlier), and the resends' backoff would wait up to minutes.
    for t in &transitions {
        if let Transition::CameOnline { peer_id, .. } | Transition::Resumed { peer_id } = t {
            resend_waiting(shared, peer_id);
        }
    }
    let mut addresses = addresses.into_iter();
    for t in transitions {
        shared.emit(match t {
            // Nothing for the consumer to do: the resend above is the whole of it.
            Transition::Resumed { .. } => continue,
            Transition::CameOnline { peer_id, name } => SessionEvent::PeerOnline {
                peer_id,
                name,
                address: addresses.next().unwrap_or_default(),
            },
            Transition::WentOffline { peer_id, graceful } => SessionEvent::PeerOffline {
                peer_id,
                reason: if graceful {
                    Offline::Departed
                } else {
                    Offline::Vanished
                },
            },
            Transition::WentStale { peer_id } => SessionEvent::PeerOffline {
                peer_id,
                reason: Offline::Stale,
            },
            Transition::KeyConflict {
                name,
                known_peer_id,
                new_peer_id,
            } => SessionEvent::KeyConflict {
                new_peer_id,
                name,
                known_peer_id,
            },
        });
    }
}

/// Publishes again every message waiting for a receipt from `peer` (as it was: same id, so
/// the peer drops a copy it already has as a replay, and acknowledges it again).
fn resend_waiting(shared: &Shared, peer: &str) {
    let waiting = lock(&shared.node).outbox().waiting_for(peer);
    for p in waiting {
        if let Err(e) = shared.publish_to(&p.topic, p.payload, p.qos, p.retain) {
            shared.emit(SessionEvent::Warning {
                share: None,
                message: format!("resending to a peer back online: {e}"),
            });
            // The next publication would fail the same way; the timed resends retry.
            break;
        }
    }
}

/// A verified sync event: merged by the engine (state saved, file written), its actions
/// carried out by the one executor, its reports turned into events.
fn sync_event(
    shared: &Shared,
    from: &str,
    kind: SyncKind,
    content: &str,
    tags: &[Vec<String>],
    now: u64,
) {
    let mut g = lock(&shared.engine);
    // Sync closed (it failed to start, or federation is stopping): nothing to merge into.
    let Some(engine) = g.as_mut() else { return };
    let actions = match engine.handle(from, kind, content, tags, now) {
        Ok(mut a) => {
            if !a.iter().any(|a| matches!(a, Action::Refused { .. })) {
                engine.note_received(content, now);
            }
            a.extend(engine.take_notices());
            a
        }
        Err(e) => vec![Action::Warning {
            share: None,
            message: format!("taking in a peer's change: {e}"),
        }],
    };
    carry_out(shared, g, actions, now);
}

/// Carries out `actions` of the engine (held in `g`) with the one executor, then turns its
/// reports into events, and offers the merged text of held shares to their buffers.
pub(crate) fn carry_out(
    shared: &Shared,
    mut g: std::sync::MutexGuard<'_, Option<crate::sync::SyncEngine>>,
    actions: Vec<Action>,
    now: u64,
) {
    let Some(engine) = g.as_mut() else { return };
    let mut sink = SessionSink {
        shared,
        reports: Vec::new(),
    };
    execute_on(engine, actions, now, &mut sink);
    // Rendered here, off Emacs' thread: the merged text of each held share is offered to its
    // buffer as hunks, and written when the buffer shows it.
    let offers = engine.take_offers();
    drop(g);
    for a in sink.reports.into_iter().chain(offers) {
        shared.emit(report_event(a));
    }
    // Then the merge states of held shares (see `crate::sync::deferred`) and the figures:
    // after the buffer's answer to the offer if it comes soon (see `Housekeeping`).
    shared.housekeeping_due.store(true, Ordering::Relaxed);
}

/// The work left after events went to Emacs: the merge states the engine deferred, then the
/// share figures made stale. It waits for the operations Emacs queues in answer
/// ([`Work::Op`]: a buffer taking an offer writes its file after a state write that covers
/// the deferred one), but no longer than [`HOUSEKEEPING_GRACE`], and runs before any other
/// work, so nothing else sees the states unwritten.
#[derive(Default)]
struct Housekeeping {
    deadline: Option<Instant>,
}

/// How long the housekeeping waits for Emacs' answer to the events it was given.
const HOUSEKEEPING_GRACE: Duration = Duration::from_millis(20);

impl Housekeeping {
    /// How long until it must run (`None`: nothing is due).
    fn due_in(&mut self, shared: &Shared) -> Option<Duration> {
        if !shared.housekeeping_due.load(Ordering::Relaxed) {
            self.deadline = None;
            return None;
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + HOUSEKEEPING_GRACE);
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Runs it now if anything is due, whether or not the grace is over (a panic in it is
    /// reported and the worker goes on).
    fn run(&mut self, shared: &Shared) {
        if shared.housekeeping_due.swap(false, Ordering::Relaxed) {
            self.deadline = None;
            survive(shared, "writing merge states", || {
                write_deferred_states(shared, (shared.clock)());
                warm_figures(shared);
            });
        }
    }
}

/// Writes the merge states the engine deferred (see `crate::sync::deferred`), and reports
/// the writes that failed.
fn write_deferred_states(shared: &Shared, now: u64) {
    let mut g = lock(&shared.engine);
    let Some(engine) = g.as_mut() else { return };
    let due = engine.write_deferred_states();
    if due.is_empty() {
        return;
    }
    let mut sink = SessionSink {
        shared,
        reports: Vec::new(),
    };
    execute_on(engine, due, now, &mut sink);
    drop(g);
    for a in sink.reports {
        shared.emit(report_event(a));
    }
}

/// Computes the share status figures (text length, conflicts) of the documents changed since
/// they were last computed, here and not on Emacs' thread (see `SyncEngine::warm_figures`).
pub(crate) fn warm_figures(shared: &Shared) {
    if let Some(e) = lock(&shared.engine).as_ref() {
        e.warm_figures();
    }
}

/// The event for an action the executor reported.
pub(crate) fn report_event(a: Action) -> SessionEvent {
    use super::event::SyncValue::{Flag, Hunks, Int, Mtime, Text};
    match a {
        Action::Updated {
            share,
            path,
            created,
            hunks,
        } => SessionEvent::Sync {
            kind: "file-updated",
            values: vec![
                Text(share.url()),
                Text(path.to_string_lossy().into_owned()),
                Flag(created),
                Hunks(hunks),
            ],
        },
        Action::Saved {
            share,
            path,
            seq,
            version,
            mtime,
        } => SessionEvent::Sync {
            kind: "saved",
            values: vec![
                Text(share.url()),
                Text(path.to_string_lossy().into_owned()),
                Int(seq as i64),
                Int(version as i64),
                Mtime(mtime),
            ],
        },
        Action::SaveNotTaken {
            share,
            path,
            seq,
            reason,
            failed,
        } => SessionEvent::Sync {
            kind: "save-not-taken",
            values: vec![
                Text(share.url()),
                Text(path.to_string_lossy().into_owned()),
                Int(seq as i64),
                Text(reason),
                Flag(failed),
            ],
        },
        Action::Offered {
            share,
            path,
            from,
            version,
            hunks,
        } => SessionEvent::Sync {
            kind: "held-change",
            values: vec![
                Text(share.url()),
                Text(path.to_string_lossy().into_owned()),
                Int(from as i64),
                Int(version as i64),
                Hunks(hunks),
            ],
        },
        Action::OfferWritten {
            share,
            path,
            version,
            mtime,
        } => SessionEvent::Sync {
            kind: "offer-written",
            values: vec![
                Text(share.url()),
                Text(path.to_string_lossy().into_owned()),
                Int(version as i64),
                Mtime(mtime),
            ],
        },
        Action::Refused { reason, detail } => SessionEvent::SyncRefused {
            reason: reason.to_string(),
            detail,
        },
        Action::Warning { share, message } => SessionEvent::Warning {
            share: share.map(|s| s.url()),
            message,
        },
        Action::WriteFailed {
            share,
            path,
            message,
            attempt,
        } => SessionEvent::WriteFailed {
            share: share.url(),
            path: path.to_string_lossy().into_owned(),
            message,
            attempt,
        },
        // The executor publishes these itself; one reaching here is a bug, said as a warning.
        Action::Publish { kind, .. } => SessionEvent::Warning {
            share: None,
            message: format!("a sync {kind:?} was not published (internal error)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support::test_session;

    #[test]
    fn a_panic_in_queued_work_is_reported_and_the_worker_goes_on() {
        let (session, events) = test_session();
        session.node_op_queued("a failing operation", |_| panic!("a bug in an operation"));
        // The worker still takes work after it: this waits for a write queued later.
        let dir = tempfile::tempdir().unwrap();
        let written = session.write_file_waiting(dir.path().join("after"), b"x".to_vec(), true);
        assert!(matches!(written, Some(Ok(()))));
        assert_eq!(session.stats().internal_errors.load(Ordering::Relaxed), 1);
        assert!(events()
            .iter()
            .any(|e| matches!(e, SessionEvent::Warning { message, .. }
            if message.contains("internal error") && message.contains("please report"))));
    }
}
