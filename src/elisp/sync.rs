//! The CanvasL sync functions Elisp calls. The session (`crate::session`) owns the
//! [`SyncEngine`]: remote changes are merged and written on its worker; these functions run
//! the person's own operations (share, save, hold, ...) on the engine, whose publications the
//! one executor (`crate::sync::exec`) signs and publishes, and return the other actions to
//! Elisp as lists.

use std::path::PathBuf;

use super::convert::{counts_alist, plist, CallTimer};
use super::errors::{guard, raise, signal, Kind};

use super::session::current;
use crate::sync::{Action, SyncEngine, SyncError};
use emacs::{defun, Env, IntoLisp, Result, Value};

/// Queues `op` on a share for the session's worker (see `Session::engine_op_queued`; a share
/// no longer synced is said nowhere) and returns nil at once, or says sync is not running.
fn queue_on_share(
    env: &Env,
    what: &'static str,
    op: impl FnOnce(&mut crate::sync::SyncEngine, u64) -> std::result::Result<Vec<Action>, SyncError>
        + Send
        + 'static,
) -> Result<()> {
    match current() {
        Some(s) if s.sync_open_p() => {
            s.engine_op_queued(what, |e| matches!(e, SyncError::UnknownShare(_)), op);
            Ok(())
        }
        _ => not_running(env),
    }
}

fn not_running<T>(env: &Env) -> Result<T> {
    signal(
        env,
        Kind::NotRunning,
        "CanvasL sync is not running: call meta-log-federation-init first",
    )
}

/// Runs a query on the engine.
pub(super) fn with_engine<T>(
    env: &Env,
    f: impl FnOnce(&mut SyncEngine) -> std::result::Result<T, SyncError>,
) -> Result<T> {
    match current().and_then(|s| s.with_engine(f)) {
        None => not_running(env),
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => raise(env, e),
    }
}

/// Runs an operation on the engine through the session's executor; returns its value and the
/// actions left for Elisp.
pub(super) fn engine_op<T>(
    env: &Env,
    f: impl FnOnce(&mut SyncEngine, u64) -> std::result::Result<(T, Vec<Action>), SyncError>,
) -> Result<(T, Vec<Action>)> {
    match current().and_then(|s| s.engine_op(f)) {
        None => not_running(env),
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => raise(env, e),
    }
}

/// [`engine_op`] for an operation that only returns actions; the actions as Lisp.
pub(super) fn engine_actions<'e>(
    env: &'e Env,
    f: impl FnOnce(&mut SyncEngine, u64) -> std::result::Result<Vec<Action>, SyncError>,
) -> Result<Value<'e>> {
    let ((), actions) = engine_op(env, |e, now| Ok(((), f(e, now)?)))?;
    actions_to_lisp(env, actions)
}

/// The actions the executor left for Elisp, as lists:
/// `(updated URL FILE CREATED)`, `(refused REASON DETAIL)`,
/// `(warning URL-OR-NIL MESSAGE)`, `(write-failed URL FILE MESSAGE ATTEMPT)`.
pub(super) fn actions_to_lisp(env: &Env, actions: Vec<Action>) -> Result<Value<'_>> {
    let mut out = Vec::new();
    for a in actions {
        out.push(match a {
            Action::WriteFailed {
                share,
                path,
                message,
                attempt,
            } => env.list((
                env.intern("write-failed")?,
                share.url(),
                path.to_string_lossy().into_owned(),
                message,
                attempt as i64,
            ))?,
            Action::Updated {
                share,
                path,
                created,
                hunks,
            } => env.list((
                env.intern("updated")?,
                share.url(),
                path.to_string_lossy().into_owned(),
                created,
                super::sync_hunks::hunks_to_lisp(env, hunks.as_deref())?,
            ))?,
            Action::Refused { reason, detail } => {
                env.list((env.intern("refused")?, reason, detail))?
            }
            Action::Warning { share, message } => env.list((
                env.intern("warning")?,
                match share {
                    Some(s) => s.url().into_lisp(env)?,
                    None => env.intern("nil")?,
                },
                message,
            ))?,
            // The executor publishes these; none reaches here.
            Action::Publish { .. } => continue,
            // Only the worker's queued operations make these: they arrive as events.
            Action::Saved { .. }
            | Action::SaveNotTaken { .. }
            | Action::Offered { .. }
            | Action::OfferWritten { .. } => continue,
        });
    }
    env.list(&out[..])
}

pub(super) fn expand(env: &Env, v: Value<'_>) -> Result<PathBuf> {
    Ok(PathBuf::from(
        env.call("expand-file-name", (v,))?.into_rust::<String>()?,
    ))
}

/// Open the sync engine in SYNC-DIR (received files) and STATE-DIR (merge
/// states) for the running federation peer, for events of at most
/// MAX-EVENT-BYTES.
///
/// Internal: federation opens it when it starts.
#[defun(name = "-sync-open")]
fn sync_open<'e>(
    env: &'e Env,
    sync_dir: Value<'e>,
    state_dir: Value<'e>,
    max_event_bytes: i64,
) -> Result<()> {
    let _t = CallTimer::start("sync-open");
    let sync_dir = expand(env, sync_dir)?;
    let state_dir = expand(env, state_dir)?;
    guard(env, || {
        let Some(s) = current() else {
            return signal(
                env,
                Kind::NotRunning,
                "federation is not running: call meta-log-federation-init first",
            );
        };
        match s.open_sync(&sync_dir, &state_dir, max_event_bytes.max(0) as usize) {
            Ok(()) => Ok(()),
            Err(e) => raise(env, e),
        }
    })
}

/// Close the sync engine; non-nil if it was open.
#[defun(name = "-sync-close")]
fn sync_close() -> Result<bool> {
    let _t = super::convert::CallTimer::start("sync-close");
    Ok(current().is_some_and(|s| s.close_sync()))
}

/// Return non-nil while the sync engine is open.
#[defun(name = "-sync-running-p")]
fn sync_running_p() -> Result<bool> {
    let _t = super::convert::CallTimer::start("sync-running-p");
    Ok(current().is_some_and(|s| s.sync_open_p()))
}

/// Load every share, take in offline edits, ask peers for what we missed.
///
/// Return the actions (see `meta-log-federation--sync-run-actions').
#[defun(name = "-sync-startup")]
fn sync_startup(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-startup");
    guard(env, || engine_actions(env, |e, now| e.startup(now)))
}

/// Share FILE under NAME (nil: its file name); return (URL . ACTIONS).
#[defun(name = "-sync-share")]
fn sync_share<'e>(env: &'e Env, file: Value<'e>, name: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-share");
    let path = expand(env, file)?;
    let name: Option<String> = if name.is_not_nil() {
        Some(name.into_rust()?)
    } else {
        None
    };
    guard(env, || {
        let (url, actions) = engine_op(env, |e, now| {
            let actions = e.share(&path, name.as_deref(), now)?;
            let url = e.resolve(&path.to_string_lossy())?.url();
            Ok((url, actions))
        })?;
        env.cons(url, actions_to_lisp(env, actions)?)
    })
}

/// Stop syncing SHARE (URL or file); return the actions.
#[defun(name = "-sync-unshare")]
fn sync_unshare(env: &Env, share: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-unshare");
    guard(env, || engine_actions(env, |e, _| e.unshare(&share)))
}

/// The plist of one share: :url :path :local :active, then `sizes`.
fn share_plist<'e>(
    env: &'e Env,
    s: &crate::sync::engine::ShareBrief,
    sizes: Vec<(&str, Value<'e>)>,
) -> Result<Value<'e>> {
    let mut props = vec![
        (":url", s.url.as_str().into_lisp(env)?),
        (
            ":path",
            s.path.to_string_lossy().into_owned().into_lisp(env)?,
        ),
        (":local", s.local.into_lisp(env)?),
        (":active", s.active.into_lisp(env)?),
    ];
    props.extend(sizes);
    plist(env, props)
}

/// Return the shares as plists (:url :path :local :active), cheaply.
///
/// Nothing is loaded and no text is looked at: for callers that need no
/// sizes.  `meta-log-federation--sync-shares' adds them.
#[defun(name = "-sync-share-list")]
fn sync_share_list(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-share-list");
    guard(env, || {
        let shares = with_engine(env, |e| Ok(e.share_list()))?;
        let v = shares
            .into_iter()
            .map(|s| share_plist(env, &s, Vec::new()))
            .collect::<Result<Vec<_>>>()?;
        env.list(&v[..])
    })
}

/// Return the shares as plists (:url :path :local :active :lines :bytes
/// :state-bytes :conflicts).
///
/// Loads shares not loaded yet.  The sizes are kept by the engine and
/// brought up to date on the session's worker after each change; callers
/// that need no sizes use `meta-log-federation--sync-share-list'.
#[defun(name = "-sync-shares")]
fn sync_shares(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-shares");
    guard(env, || {
        let shares = with_engine(env, |e| Ok(e.shares()))?;
        let mut v = Vec::new();
        for s in shares {
            let sizes = vec![
                (":lines", (s.lines as i64).into_lisp(env)?),
                (":bytes", (s.bytes as i64).into_lisp(env)?),
                (":state-bytes", (s.state_bytes as i64).into_lisp(env)?),
                (":conflicts", (s.conflicts as i64).into_lisp(env)?),
            ];
            v.push(share_plist(env, &s.brief, sizes)?);
        }
        env.list(&v[..])
    })
}

/// Take in the file of SHARE (URL or file) after it was saved or changed on disk.
///
/// Ends a hold (see `--sync-hold'). Return the actions.
#[defun(name = "-sync-file-changed")]
fn sync_file_changed(env: &Env, share: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-file-changed");
    guard(env, || {
        engine_actions(env, |e, now| e.local_file_changed(&share, now))
    })
}

/// Write what was held back of SHARE and hold it again, in one step.
///
/// For a buffer without unsaved edits that visits the file: the file is
/// written with the changes merged meanwhile (the buffer is then
/// reverted by the `updated' action) and stays held. Return the actions.
#[defun(name = "-sync-write-held")]
fn sync_write_held(env: &Env, share: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-write-held");
    guard(env, || {
        engine_actions(env, |e, _| {
            let mut a = e.hold_writes(&share, false)?;
            if let Err(err) = e.hold_writes(&share, true) {
                a.push(Action::Warning {
                    share: None,
                    message: format!("{share}: the file could not be held again: {err}"),
                });
            }
            Ok(a)
        })
    })
}

/// While HOLD is non-nil, remote changes to SHARE are merged but not written to its file.
///
/// Elisp holds a file while a buffer visits it, so that the file never
/// changes under the buffer and a save is merged relative to the text the
/// buffer started from.  Releasing (HOLD nil) writes what was held back.
/// Return nil at once: the session's worker applies the hold after every
/// message and operation queued before it, and what it writes arrives as
/// events.  A share no longer synced has nothing to hold: said nowhere.
#[defun(name = "-sync-hold")]
fn sync_hold<'e>(env: &'e Env, share: String, hold: Value<'e>) -> Result<()> {
    let _t = CallTimer::start("sync-hold");
    let hold = hold.is_not_nil();
    guard(env, || {
        queue_on_share(env, "holding a shared file", move |e, _| {
            e.hold_writes(&share, hold)
        })
    })
}

/// Ask peers for what we miss of SHARE (nil: every share); return the actions.
#[defun(name = "-sync-catch-up")]
fn sync_catch_up<'e>(env: &'e Env, share: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-catch-up");
    let share: Option<String> = if share.is_not_nil() {
        Some(share.into_rust()?)
    } else {
        None
    };
    guard(env, || {
        engine_actions(env, |e, now| e.catch_up(share.as_deref(), now))
    })
}

/// Return the conflicts of SHARE as plists (:line :id :field :winner :losers).
#[defun(name = "-sync-conflicts")]
fn sync_conflicts(env: &Env, share: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-conflicts");
    guard(env, || {
        let cs = with_engine(env, |e| e.conflicts(&share))?;
        let json = |v: &Option<serde_json::Value>| match v {
            Some(v) => v.to_string(),
            None => "(removed)".to_string(),
        };
        let mut out = Vec::new();
        for c in cs {
            let losers = c
                .losers
                .iter()
                .map(|l| json(l).into_lisp(env))
                .collect::<Result<Vec<_>>>()?;
            out.push(plist(
                env,
                vec![
                    (":line", (c.line as i64).into_lisp(env)?),
                    (
                        ":id",
                        match &c.entry_key {
                            Some(k) => k.id.clone().into_lisp(env)?,
                            None => env.intern("nil")?,
                        },
                    ),
                    (
                        ":field",
                        match &c.field {
                            Some(f) => f.as_str().into_lisp(env)?,
                            None => env.intern("nil")?,
                        },
                    ),
                    (":winner", json(&c.winner).into_lisp(env)?),
                    (":losers", env.list(&losers[..])?),
                ],
            )?);
        }
        env.list(&out[..])
    })
}

/// Return the counts of refused sync messages as an alist (REASON . COUNT).
#[defun(name = "-sync-refusals")]
fn sync_refusals(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-refusals");
    guard(env, || {
        let r: Vec<(&'static str, u64)> = with_engine(env, |e| Ok(e.refusals().iter().collect()))?;
        counts_alist(env, &r)
    })
}

/// Tell PEER-ID, which just came online, about the shares we started; return the actions.
#[defun(name = "-sync-offer")]
fn sync_offer(env: &Env, peer_id: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-offer");
    guard(env, || {
        engine_actions(env, |e, now| Ok(e.offer(&peer_id, now)))
    })
}

/// Retry the writes that failed (a full disk, permissions); return the actions.
///
/// A write that fails again gives another `write-failed' action.
#[defun(name = "-sync-retry-writes")]
fn sync_retry_writes(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-retry-writes");
    guard(env, || {
        engine_actions(env, |e, now| Ok(e.retry_writes(now)))
    })
}

/// Return how many shares have a failed write waiting to be retried (0 when sync is closed).
#[defun(name = "-sync-pending-writes")]
fn sync_pending_writes() -> Result<i64> {
    let _t = super::convert::CallTimer::start("sync-pending-writes");
    Ok(current()
        .and_then(|s| s.with_engine(|e| Ok(e.pending_writes() as i64)))
        .and_then(|r| r.ok())
        .unwrap_or(0))
}

/// Return how every share is doing, as plists.
///
/// Each has :url :path :state (healthy, rebuilding, rebuilt or unshared)
/// :kept-aside (where a damaged state was kept, or nil) :last-sent
/// :last-received (Unix times or nil) :pending-write (the file and error
/// of a write being retried, or nil) :write-attempts and :errors (the
/// last few, oldest first).  Also returns the notices raised by loading:
/// (STATUS . ACTIONS).
#[defun(name = "-sync-status")]
fn sync_status(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-status");
    guard(env, || {
        let (status, notices) = engine_op(env, |e, _| Ok((e.status(), Vec::new())))?;
        let opt_time = |t: Option<u64>| -> Result<Value<'_>> {
            match t {
                Some(t) => (t as i64).into_lisp(env),
                None => env.intern("nil"),
            }
        };
        let mut v = Vec::new();
        for s in status {
            let errors = s
                .errors
                .into_iter()
                .map(|m| m.into_lisp(env))
                .collect::<Result<Vec<_>>>()?;
            v.push(plist(
                env,
                vec![
                    (":url", s.share.url().into_lisp(env)?),
                    (
                        ":path",
                        s.path.to_string_lossy().into_owned().into_lisp(env)?,
                    ),
                    (":state", env.intern(s.state.as_str())?),
                    (
                        ":kept-aside",
                        match s.kept_aside {
                            Some(p) => p.to_string_lossy().into_owned().into_lisp(env)?,
                            None => env.intern("nil")?,
                        },
                    ),
                    (":last-sent", opt_time(s.last_sent)?),
                    (":last-received", opt_time(s.last_received)?),
                    (
                        ":pending-write",
                        match s.pending_write {
                            Some((p, m)) => env.list((p.to_string_lossy().into_owned(), m))?,
                            None => env.intern("nil")?,
                        },
                    ),
                    (":write-attempts", (s.write_attempts as i64).into_lisp(env)?),
                    (":errors", env.list(&errors[..])?),
                ],
            )?);
        }
        env.cons(env.list(&v[..])?, actions_to_lisp(env, notices)?)
    })
}

/// Ask PEER-ID for SHARE (a canvasl:// URL) now, held or not; return the actions.
///
/// For a share we hold, the request carries our heads (a catch-up with that
/// peer); for one we do not, PEER-ID answers with the whole document, from
/// which the share is created.  Used by `meta-log-federation-sync-blackboard'.
#[defun(name = "-sync-ask")]
fn sync_ask(env: &Env, share: String, peer_id: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-ask");
    guard(env, || {
        engine_actions(env, |e, now| e.ask(&share, &peer_id, now))
    })
}

/// Hand the save of a buffer visiting SHARE's file to the session's worker; return nil at once.
///
/// HEAD and TAIL bytes (whole lines) at the top and bottom of the buffer
/// did not change since the text it started from; MIDDLE is the text
/// between them now (whole lines). The buffer started from the text of
/// version BASE-VERSION, or of the save numbered BASE-SEQ, or (both nil)
/// of the file whose modification time is BASE-MTIME ("SECONDS.NANOSECONDS").
/// SEQ numbers this save. The worker writes the buffer's text to the file
/// and takes the edit in; its outcome arrives as a `saved' or
/// `save-not-taken' event carrying SEQ.
#[allow(clippy::too_many_arguments)]
#[defun(name = "-sync-save-lines")]
fn sync_save_lines<'e>(
    env: &'e Env,
    share: String,
    head: i64,
    tail: i64,
    middle: String,
    base_mtime: Value<'e>,
    base_version: Value<'e>,
    base_seq: Value<'e>,
    seq: i64,
) -> Result<()> {
    let _t = CallTimer::start("sync-save-lines");
    let opt_u64 = |v: Value<'e>| -> Result<Option<u64>> {
        Ok(if v.is_not_nil() {
            u64::try_from(v.into_rust::<i64>()?).ok()
        } else {
            None
        })
    };
    let base_mtime = if base_mtime.is_not_nil() {
        super::sync_hunks::parse_mtime(&base_mtime.into_rust::<String>()?)
    } else {
        None
    };
    let save = crate::sync::BufferSave {
        edit: crate::sync::LineEdit {
            head: usize::try_from(head).unwrap_or(usize::MAX),
            tail: usize::try_from(tail).unwrap_or(usize::MAX),
            middle: middle.into_bytes(),
            base_mtime,
        },
        base_version: opt_u64(base_version)?,
        base_seq: opt_u64(base_seq)?,
        seq: u64::try_from(seq).unwrap_or(0),
    };
    guard(env, || match current() {
        Some(s) if s.sync_open_p() => {
            s.queue_save(share, crate::session::QueuedSave::Lines(save));
            Ok(())
        }
        _ => not_running(env),
    })
}

/// Write the offered text VERSION of the held SHARE, which its buffer now shows; return nil.
///
/// Queued on the session's worker; an `offer-written' event follows once the
/// file holds it.  Nothing happens when the offer is gone (a save came first).
#[defun(name = "-sync-write-offered")]
fn sync_write_offered(env: &Env, share: String, version: i64) -> Result<()> {
    let _t = CallTimer::start("sync-write-offered");
    let version = u64::try_from(version).unwrap_or(0);
    guard(env, || {
        queue_on_share(env, "writing a shared file", move |e, _| {
            e.write_offered(&share, version)
        })
    })
}

/// Offer the changes merged into the held SHARE again, to the buffer now showing its file; nil.
///
/// Queued on the session's worker: a `held-change' event follows if the
/// merged text differs from the file's.  For a buffer reverted or visited
/// after it left an offer (it had unsaved edits then).
#[defun(name = "-sync-reoffer")]
fn sync_reoffer(env: &Env, share: String) -> Result<()> {
    let _t = CallTimer::start("sync-reoffer");
    guard(env, || {
        queue_on_share(env, "offering held changes", move |e, _| e.reoffer(&share))
    })
}

/// Queue the take-in of SHARE's file, just saved by Emacs as save number SEQ; return nil.
///
/// For a buffer that still visits the file: merged relative to the text the
/// file had, on the session's worker; the file keeps the buffer's text and
/// the merged text, if it differs, is offered (`held-change').  A `saved'
/// event with SEQ (or `save-not-taken') follows.
#[defun(name = "-sync-saved-file")]
fn sync_saved_file(env: &Env, share: String, seq: i64) -> Result<()> {
    let _t = CallTimer::start("sync-saved-file");
    let seq = u64::try_from(seq).unwrap_or(0);
    guard(env, || match current() {
        Some(s) if s.sync_open_p() => {
            s.queue_save(share, crate::session::QueuedSave::File(seq));
            Ok(())
        }
        _ => not_running(env),
    })
}

/// Take in SHARE's file, changed on disk, on the session's worker; return nil at once.
///
/// Nothing happens when the file is the one the engine last wrote or read
/// (its own writes are notified too).  With HOLD non-nil a buffer visits
/// the file: the share is held again after.  What it writes arrives as
/// `file-updated' events.
#[defun(name = "-sync-file-touched")]
fn sync_file_touched<'e>(env: &'e Env, share: String, hold: Value<'e>) -> Result<()> {
    let _t = CallTimer::start("sync-file-touched");
    let hold = hold.is_not_nil();
    guard(env, || {
        queue_on_share(
            env,
            "taking in a shared file changed on disk",
            move |e, now| e.file_touched(&share, hold, now),
        )
    })
}

/// Share FILE under NAME (nil: its file name) on the session's worker; return its URL at once.
///
/// What can be checked at once is: FILE must be a regular file and the
/// name a valid share name (else an error now).  Reading the file and
/// building its merge state run on the worker; a `shared' event (URL
/// asked for, URL, file) follows, or `share-failed' (URL asked for,
/// file, why).
#[defun(name = "-sync-share-background")]
fn sync_share_background<'e>(env: &'e Env, file: Value<'e>, name: Value<'e>) -> Result<String> {
    let _t = CallTimer::start("sync-share-background");
    let path = expand(env, file)?;
    let name: Option<String> = if name.is_not_nil() {
        Some(name.into_rust()?)
    } else {
        None
    };
    guard(env, || {
        let s = match current() {
            Some(s) if s.sync_open_p() => s,
            _ => return not_running(env),
        };
        match std::fs::metadata(&path) {
            Err(e) => return raise(env, SyncError::io("open", &path, e)),
            Ok(m) if !m.is_file() => {
                return raise(
                    env,
                    SyncError::UnsafePath {
                        path: path.clone(),
                        detail: "only regular files can be shared".into(),
                    },
                )
            }
            Ok(_) => {}
        }
        let shown = name.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        // The URL follows from the share-name rules (the engine's), without the engine.
        let url = match crate::sync::ShareId::new(s.peer_id(), &shown) {
            Ok(id) => id.url(),
            Err(e) => return raise(env, SyncError::from(e)),
        };
        s.queue_share(path, name, url.clone());
        Ok(url)
    })
}
