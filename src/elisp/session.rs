//! The one handle this layer keeps: the running [`Session`].
//!
//! Why a static and not a `user-ptr` held by Elisp: every Elisp function of the federation and
//! sync API that other code calls (`meta-log-federation--federation-peers`,
//! `--sync-share`, ...) takes no handle, and the MQTT client asks for a signed last will before
//! each connection attempt from its own thread, through a plain `fn` pointer, where no Elisp
//! value can reach. This slot holds the handle and nothing else: the program's state lives in
//! the session (`crate::session`), which can be stopped and started again.

use std::sync::{Arc, Mutex};

use super::convert::{plist, CallTimer};
use super::errors::{guard, signal, Kind};
use crate::events::{lock, Event, BUS};
use crate::federation::Node;
use crate::session::{PublishError, SendError, Session};
use crate::transport::client::ClientCallError;
use crate::transport::options::Will;
use emacs::{defun, Env, IntoLisp, Result, Value};

/// The running session; `None` while federation is off.
static SESSION: Mutex<Option<Arc<Session>>> = Mutex::new(None);

/// The running session, if any.
pub(super) fn current() -> Option<Arc<Session>> {
    lock(&SESSION).clone()
}

/// Whether a session runs.
pub(super) fn running() -> bool {
    lock(&SESSION).is_some()
}

/// Starts the session of `node`, its events going to the Emacs event bus.
pub(super) fn start(node: Node) -> std::io::Result<()> {
    let s = Session::start(
        node,
        Box::new(crate::session::GlobalConnection),
        Box::new(|ev| BUS.push(Event::Session(ev))),
        crate::session::system_clock,
    )?;
    *lock(&SESSION) = Some(Arc::new(s));
    Ok(())
}

/// Stops the session (after the messages already queued); true if there was one.
pub(super) fn stop() -> bool {
    let s = lock(&SESSION).take();
    match s {
        Some(s) => {
            s.stop();
            true
        }
        None => false,
    }
}

/// Runs `f` with the session, or signals that federation is not running.
pub(super) fn with_session<T>(env: &Env, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
    match current() {
        Some(s) => f(&s),
        None => signal(
            env,
            Kind::NotRunning,
            "federation is not running: call meta-log-federation-init first",
        ),
    }
}

/// Runs `f` with the node, or signals that federation is not running.
pub(super) fn with_node<T>(env: &Env, f: impl FnOnce(&mut Node) -> Result<T>) -> Result<T> {
    with_session(env, |s| s.with_node(f))
}

/// The MQTT client's will provider: a new session and its signed will,
/// before every connection attempt (runs on the runtime's thread).
pub fn will_for_new_session() -> Option<Will> {
    let s = current()?;
    let p = s.with_node(|n| n.begin_session(s.now()).ok())?;
    Some(Will {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
    })
}

/// Signals a failed send with the error symbol its cause calls for.
pub(super) fn send_error<T>(env: &Env, e: SendError) -> Result<T> {
    use crate::federation::OutboundError;
    let kind = match &e {
        SendError::Build(OutboundError::UnknownPeer(_)) => Kind::UnknownPeer,
        SendError::Build(OutboundError::TooLarge { .. }) => Kind::TooLarge,
        SendError::Build(OutboundError::OutboxFull(_)) => Kind::QueueFull,
        SendError::Build(_) => Kind::General,
        SendError::Publish(PublishError::NotConnected) => Kind::NotConnected,
        SendError::Publish(PublishError::Client(c)) => match c {
            ClientCallError::BadTopic(_) => Kind::BadTopic,
            ClientCallError::QueueFull(_) => Kind::QueueFull,
            ClientCallError::Closed => Kind::NotConnected,
            _ => Kind::General,
        },
    };
    signal(env, kind, e.to_string())
}

/// Send the prototype's `meta-log-mqtt-message-received-hook' events when ON is non-nil.
///
/// Internal: a variable watcher on that hook calls it, so that the
/// content of sync events crosses into Emacs only while a function
/// wants it.
#[defun(name = "-session-report-accepted")]
fn session_report_accepted(env: &Env, on: Value<'_>) -> Result<()> {
    let _t = CallTimer::start("session-report-accepted");
    guard(env, || {
        if let Some(s) = current() {
            s.set_report_accepted(on.is_not_nil());
        }
        Ok(())
    })
}

/// Wait until the session's worker has handled every message queued so far.
///
/// Return non-nil if a session runs.  For tests and benchmarks; the
/// wait lasts as long as the messages already received take.
#[defun(name = "-session-flush")]
fn session_flush(env: &Env) -> Result<bool> {
    let _t = super::convert::CallTimer::start("session-flush");
    guard(env, || {
        Ok(current().and_then(|s| s.on_worker(|_| ())).is_some())
    })
}

/// Return the session's statistics as a plist, or nil when federation is off.
///
/// Keys: :inbound (messages the worker took from the broker), :events
/// (finished events handed to Emacs), :max-handle-us (the longest the
/// worker spent on one message, in microseconds; Emacs does not wait for it),
/// :internal-errors (panics the worker caught and reported as warnings).
#[defun(name = "-session-stats")]
fn session_stats(env: &Env) -> Result<Value<'_>> {
    let _t = super::convert::CallTimer::start("session-stats");
    use std::sync::atomic::Ordering::Relaxed;
    guard(env, || match current() {
        None => env.intern("nil"),
        Some(s) => {
            let st = s.stats();
            plist(
                env,
                vec![
                    (
                        ":inbound",
                        (st.inbound.load(Relaxed) as i64).into_lisp(env)?,
                    ),
                    (":events", (st.events.load(Relaxed) as i64).into_lisp(env)?),
                    (
                        ":max-handle-us",
                        (st.max_handle_us.load(Relaxed) as i64).into_lisp(env)?,
                    ),
                    (
                        ":internal-errors",
                        (st.internal_errors.load(Relaxed) as i64).into_lisp(env)?,
                    ),
                ],
            )
        }
    })
}

/// Hand PAYLOAD, received on TOPIC outside the session's subscriptions, to the session.
///
/// Return at once: the session's worker checks it as it checks its own
/// subscriptions' messages (size, signature, id, time window, replay,
/// trust, decryption), and its outcome arrives as a finished event
/// (`peer-message', `dropped', ...).  For a message that reached Emacs
/// by another route, such as a plain subscription that watches a topic.
#[defun(name = "-session-receive")]
fn session_receive(env: &Env, topic: String, payload: Value<'_>) -> Result<()> {
    let _t = CallTimer::start("session-receive");
    let bytes = super::convert::payload_from_lisp(payload)?;
    with_session(env, |s| {
        s.receive(&topic, &bytes);
        Ok(())
    })
}
