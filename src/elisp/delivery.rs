//! The delivery functions Elisp calls: the outbox of unacknowledged peer
//! messages and the receipts for messages we accepted (see
//! [`crate::federation::receipts`] and [`crate::federation::outbox`]).

use std::path::PathBuf;

use super::convert::{plist, CallTimer};
use super::errors::{guard, signal, Kind};
use super::federation::{natnum, with_node};
use super::identity::now;
use super::mqtt::plist_get;
use super::session::{current, with_session};
use crate::federation::{DeliveryPaths, OutboxSettings, Publication};
use emacs::{defun, Env, IntoLisp, Result, Value};

fn file_arg(env: &Env, plist: Value<'_>, key: &str) -> Result<Option<PathBuf>> {
    match plist_get(env, plist, key)? {
        Some(v) => Ok(Some(PathBuf::from(
            env.call("expand-file-name", (v,))?.into_rust::<String>()?,
        ))),
        None => Ok(None),
    }
}

fn strings<'e>(env: &'e Env, v: &[String]) -> Result<Value<'e>> {
    let items = v
        .iter()
        .map(|s| s.as_str().into_lisp(env))
        .collect::<Result<Vec<_>>>()?;
    env.list(&items[..])
}

/// Publishes each of `pubs`; returns how many went to the client and the
/// errors of the others (they are resent later, or acknowledged again).
fn publish_all(pubs: Vec<Publication>) -> (usize, Vec<String>) {
    let mut sent = 0;
    let mut errors = Vec::new();
    let Some(s) = current() else {
        return (0, vec!["not published: federation is not running".into()]);
    };
    for p in pubs {
        match s.publish(p) {
            Ok(_) => sent += 1,
            Err(e) => errors.push(format!("not published: {e}")),
        }
    }
    (sent, errors)
}

/// Keep the outbox and the received-message log in the files of PLIST.
///
/// Keys: :outbox-file, :received-file (nil: memory only), :expiry,
/// :resend-after, :resend-max (seconds), :capacity.  Load what a previous
/// run left there.  Return a list of warnings (a damaged file is moved
/// aside and said here).
///
/// Internal: `meta-log-federation-init' calls it.
#[defun(name = "-federation-open-delivery")]
fn federation_open_delivery<'e>(env: &'e Env, plist: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("federation-open-delivery");
    let d = OutboxSettings::default();
    let settings = OutboxSettings {
        expiry: natnum(env, plist, ":expiry", 1, d.expiry)?,
        resend_after: natnum(env, plist, ":resend-after", 1, d.resend_after)?,
        resend_max: natnum(env, plist, ":resend-max", 1, d.resend_max)?,
        capacity: natnum(env, plist, ":capacity", 1, d.capacity as u64)? as usize,
    };
    let paths = DeliveryPaths {
        outbox: file_arg(env, plist, ":outbox-file")?,
        received: file_arg(env, plist, ":received-file")?,
        settings,
    };
    guard(env, || {
        let warnings = with_node(env, |n| Ok(n.open_delivery(&paths, now())))?;
        strings(env, &warnings)
    })
}

/// Return the MQTT client id of this peer (stable: derived from its id).
#[defun(name = "-federation-client-id")]
fn federation_client_id(env: &Env) -> Result<String> {
    let _t = super::convert::CallTimer::start("federation-client-id");
    guard(env, || with_node(env, |n| Ok(n.client_id())))
}

/// Run the delivery upkeep on the session's worker every SECONDS (nil: stop it).
///
/// The upkeep saves the log of accepted messages, then sends their
/// receipts; gives up messages older than the expiry; resends those whose
/// backoff ran out; saves the outbox.  None of it runs on Emacs' thread:
/// when something changed, a [delivery FAILED ERRORS WAITING] event says
/// what.
///
/// Internal: `meta-log-federation-init' calls it.
#[defun(name = "-session-run-delivery")]
fn session_run_delivery(env: &Env, seconds: Value<'_>) -> Result<()> {
    let _t = CallTimer::start("session-run-delivery");
    let every = if seconds.is_not_nil() {
        let s: f64 = env.call("float", (seconds,))?.into_rust()?;
        if !(s > 0.0 && s.is_finite()) {
            return signal(
                env,
                Kind::General,
                format!("the delivery interval must be a positive number of seconds, not {s}"),
            );
        }
        Some(std::time::Duration::from_secs_f64(s))
    } else {
        None
    };
    guard(env, || {
        with_session(env, |s| {
            s.run_delivery_every(every);
            Ok(())
        })
    })
}

/// Run the delivery upkeep once more now, on the session's worker, and wait for it.
///
/// For shutting down: receipts due go out before the connection closes.
/// Return non-nil if a session ran it.
#[defun(name = "-session-delivery-now")]
fn session_delivery_now(env: &Env) -> Result<bool> {
    let _t = CallTimer::start("session-delivery-now");
    guard(env, || {
        Ok(current().is_some_and(|s| s.delivery_upkeep_now()))
    })
}

/// Publish every unacknowledged message again (after a reconnection).
///
/// Return how many were handed to the MQTT client.
#[defun(name = "-federation-outbox-resend")]
fn federation_outbox_resend(env: &Env) -> Result<i64> {
    let _t = CallTimer::start("federation-outbox-resend");
    guard(env, || {
        let pubs = with_node(env, |n| Ok(n.resend_all(now())))?;
        Ok(publish_all(pubs).0 as i64)
    })
}

/// Return the unacknowledged messages, oldest first, as plists.
///
/// Keys: :id :peer :first-sent (Unix time) :attempts :next-resend.
#[defun(name = "-federation-outbox")]
fn federation_outbox(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-outbox");
    guard(env, || {
        let pending = with_node(env, |n| Ok(n.outbox().pending().to_vec()))?;
        let items = pending
            .iter()
            .map(|p| {
                plist(
                    env,
                    vec![
                        (":id", p.id.as_str().into_lisp(env)?),
                        (":peer", p.peer.as_str().into_lisp(env)?),
                        (":first-sent", (p.first_sent as i64).into_lisp(env)?),
                        (":attempts", i64::from(p.attempts).into_lisp(env)?),
                        (":next-resend", (p.next_at as i64).into_lisp(env)?),
                    ],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        env.list(&items[..])
    })
}

/// Save the outbox and the received-message log now.
///
/// Signal `meta-log-federation-error' with the reason when a file cannot
/// be written.
#[defun(name = "-federation-save-delivery")]
fn federation_save_delivery(env: &Env) -> Result<()> {
    let _t = CallTimer::start("federation-save-delivery");
    guard(env, || {
        let r = with_node(env, |n| Ok(n.save_delivery()))?;
        match r {
            Ok(()) => Ok(()),
            Err(e) => signal(
                env,
                Kind::General,
                format!("the outbox or the received-message log cannot be saved: {e}"),
            ),
        }
    })
}
