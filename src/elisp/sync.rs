//! The CanvasL sync functions Elisp calls: one [`SyncEngine`] while
//! federation runs. The engine's publications are signed by the federation
//! node and published here; the other actions go back to Elisp as lists.

use std::path::PathBuf;
use std::sync::Mutex;

use super::convert::{counts_alist, plist, CallTimer};
use super::errors::{guard, raise, signal, Kind};
use super::federation::{publish_sync, tags_from_lisp};
use super::identity::now;
use crate::events::lock;
use crate::federation::SyncKind;
use crate::sync::{Action, SyncConfig, SyncEngine, SyncError};
use emacs::{defun, Env, IntoLisp, Result, Value};
use sha2::{Digest, Sha256};

pub(super) static ENGINE: Mutex<Option<SyncEngine>> = Mutex::new(None);

pub(super) fn with_engine<T>(
    env: &Env,
    f: impl FnOnce(&mut SyncEngine) -> std::result::Result<T, SyncError>,
) -> Result<T> {
    let mut g = lock(&ENGINE);
    match g.as_mut() {
        Some(e) => match f(e) {
            Ok(v) => Ok(v),
            Err(err) => {
                drop(g);
                raise(env, err)
            }
        },
        None => signal(
            env,
            Kind::NotRunning,
            "CanvasL sync is not running: call meta-log-federation-init first",
        ),
    }
}

/// [`with_engine`] for an operation that returns actions: the engine's notices (a damaged
/// state found and rebuilt, see `SyncEngine::take_notices`) follow them, so each is told once.
fn engine_actions(
    env: &Env,
    f: impl FnOnce(&mut SyncEngine) -> std::result::Result<Vec<Action>, SyncError>,
) -> Result<Vec<Action>> {
    with_engine(env, |e| {
        let mut a = f(e)?;
        a.extend(e.take_notices());
        Ok(a)
    })
}

fn kind_name(k: SyncKind) -> &'static str {
    match k {
        SyncKind::Change => "change",
        SyncKind::Request => "request",
        SyncKind::Response => "response",
    }
}

/// Publishes the engine's events and turns the other actions into Lisp:
/// `(updated URL FILE CREATED)`, `(refused REASON DETAIL)`,
/// `(warning URL-OR-NIL MESSAGE)`, `(write-failed URL FILE MESSAGE ATTEMPT)`.
/// A publication that fails (no connection, full queue) becomes a warning:
/// the change is in the merge state already and reaches the peers at the
/// next catch-up.
pub(super) fn run_actions<'e>(env: &'e Env, actions: Vec<Action>) -> Result<Value<'e>> {
    let mut out = Vec::new();
    let mut sent = Vec::new();
    super::members::subscribe_share_topics();
    for a in actions {
        match a {
            Action::Publish {
                kind,
                content,
                tags,
            } => {
                if let Err(e) = publish_sync(kind, &content, tags.clone()) {
                    out.push(env.list((
                        env.intern("warning")?,
                        env.intern("nil")?,
                        format!(
                            "a sync {} was not sent ({e}); it will go out at the next catch-up",
                            kind_name(kind)
                        ),
                    ))?);
                } else {
                    sent.push(content);
                }
            }
            Action::WriteFailed {
                share,
                path,
                message,
                attempt,
            } => out.push(env.list((
                env.intern("write-failed")?,
                share.url(),
                path.to_string_lossy().into_owned(),
                message,
                attempt as i64,
            ))?),
            Action::Updated {
                share,
                path,
                created,
                hunks,
            } => out.push(env.list((
                env.intern("updated")?,
                share.url(),
                path.to_string_lossy().into_owned(),
                created,
                super::sync_hunks::hunks_to_lisp(env, hunks.as_deref())?,
            ))?),
            Action::Refused { reason, detail } => {
                out.push(env.list((env.intern("refused")?, reason, detail))?)
            }
            Action::Warning { share, message } => out.push(env.list((
                env.intern("warning")?,
                match share {
                    Some(s) => s.url().into_lisp(env)?,
                    None => env.intern("nil")?,
                },
                message,
            ))?),
        }
    }
    if !sent.is_empty() {
        if let Some(e) = lock(&ENGINE).as_mut() {
            let now = now();
            for c in &sent {
                e.note_published(c, now);
            }
        }
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
        let Some(me) = super::federation::peer_id() else {
            return signal(
                env,
                Kind::NotRunning,
                "federation is not running: call meta-log-federation-init first",
            );
        };
        // The CRDT actor: stable for this peer, different for every peer.
        let mut actor = [0u8; 32];
        actor.copy_from_slice(&Sha256::digest(format!("meta-log-federation actor {me}")));
        let config = SyncConfig::for_event_limit(max_event_bytes.max(0) as usize);
        match SyncEngine::open_with(&sync_dir, &state_dir, &me, actor, config) {
            Ok(mut e) => {
                if let Err(err) = super::members::give_signer(&mut e) {
                    return raise(env, err);
                }
                *lock(&ENGINE) = Some(e);
                Ok(())
            }
            Err(e) => raise(env, e),
        }
    })
}

/// Close the sync engine; non-nil if it was open.
#[defun(name = "-sync-close")]
fn sync_close() -> Result<bool> {
    Ok(lock(&ENGINE).take().is_some())
}

/// Return non-nil while the sync engine is open.
#[defun(name = "-sync-running-p")]
fn sync_running_p() -> Result<bool> {
    Ok(lock(&ENGINE).is_some())
}

/// Load every share, take in offline edits, ask peers for what we missed.
///
/// Return the actions (see `meta-log-federation--sync-run-actions').
#[defun(name = "-sync-startup")]
fn sync_startup(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-startup");
    guard(env, || {
        let a = engine_actions(env, |e| e.startup(now()))?;
        run_actions(env, a)
    })
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
        let (url, actions) = with_engine(env, |e| {
            let mut actions = e.share(&path, name.as_deref(), now())?;
            actions.extend(e.take_notices());
            let url = e.resolve(&path.to_string_lossy())?.url();
            Ok((url, actions))
        })?;
        env.cons(url, run_actions(env, actions)?)
    })
}

/// Stop syncing SHARE (URL or file); return the actions.
#[defun(name = "-sync-unshare")]
fn sync_unshare(env: &Env, share: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-unshare");
    guard(env, || {
        let a = engine_actions(env, |e| e.unshare(&share))?;
        run_actions(env, a)
    })
}

/// Return the shares as plists (:url :path :local :active :lines :bytes
/// :state-bytes :conflicts).
#[defun(name = "-sync-shares")]
fn sync_shares(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-shares");
    guard(env, || {
        let shares = with_engine(env, |e| Ok(e.shares()))?;
        let mut v = Vec::new();
        for s in shares {
            v.push(plist(
                env,
                vec![
                    (":url", s.url.into_lisp(env)?),
                    (
                        ":path",
                        s.path.to_string_lossy().into_owned().into_lisp(env)?,
                    ),
                    (":local", s.local.into_lisp(env)?),
                    (":active", s.active.into_lisp(env)?),
                    (":lines", (s.lines as i64).into_lisp(env)?),
                    (":bytes", (s.bytes as i64).into_lisp(env)?),
                    (":state-bytes", (s.state_bytes as i64).into_lisp(env)?),
                    (":conflicts", (s.conflicts as i64).into_lisp(env)?),
                ],
            )?);
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
        let a = engine_actions(env, |e| e.local_file_changed(&share, now()))?;
        run_actions(env, a)
    })
}

/// Take in the save of SHARE (URL or file) from the lines that changed.
///
/// HEAD and TAIL bytes (whole lines) at the top and bottom of the buffer
/// did not change since it was last in step with the file; MIDDLE is the
/// text between them now (whole lines). BASE-MTIME is the file modification
/// time the buffer started from, as a string "SECONDS.NANOSECONDS" (see
/// `meta-log-federation--patch-mtime-string'), or nil. When the engine
/// cannot trust the lines it reads the whole file, as `--sync-file-changed'
/// does. Ends a hold. Return the actions.
#[defun(name = "-sync-file-changed-lines")]
fn sync_file_changed_lines<'e>(
    env: &'e Env,
    share: String,
    head: i64,
    tail: i64,
    middle: String,
    base_mtime: Value<'e>,
) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-file-changed-lines");
    guard(env, || {
        let base_mtime = if base_mtime.is_not_nil() {
            super::sync_hunks::parse_mtime(&base_mtime.into_rust::<String>()?)
        } else {
            None
        };
        let edit = crate::sync::LineEdit {
            head: usize::try_from(head).unwrap_or(usize::MAX),
            tail: usize::try_from(tail).unwrap_or(usize::MAX),
            middle: middle.into_bytes(),
            base_mtime,
        };
        let a = engine_actions(env, |e| e.local_lines_changed(&share, &edit, now()))?;
        run_actions(env, a)
    })
}

/// While HOLD is non-nil, remote changes to SHARE are merged but not written to its file.
///
/// Elisp holds a file while a buffer visiting it has unsaved edits, so that the
/// save is merged relative to the text the buffer started from. Releasing
/// (HOLD nil) writes what was held back. Return the actions.
#[defun(name = "-sync-hold")]
fn sync_hold<'e>(env: &'e Env, share: String, hold: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-hold");
    let hold = hold.is_not_nil();
    guard(env, || {
        let a = engine_actions(env, |e| e.hold_writes(&share, hold))?;
        run_actions(env, a)
    })
}

/// Hand a verified sync event (KIND FROM CONTENT TAGS) to the engine; return the actions.
#[defun(name = "-sync-handle")]
fn sync_handle<'e>(
    env: &'e Env,
    kind: Value<'e>,
    from: String,
    content: String,
    tags: Value<'e>,
) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-handle");
    let name: String = env.call("symbol-name", (kind,))?.into_rust()?;
    let kind = match name.as_str() {
        "sync-change" => SyncKind::Change,
        "sync-request" => SyncKind::Request,
        "sync-response" => SyncKind::Response,
        _ => return signal(env, Kind::General, format!("not a sync event kind: {name}")),
    };
    let tags = tags_from_lisp(env, tags)?;
    guard(env, || {
        let a = engine_actions(env, |e| {
            let now = now();
            let a = e.handle(&from, kind, &content, &tags, now)?;
            if !a.iter().any(|a| matches!(a, Action::Refused { .. })) {
                e.note_received(&content, now);
            }
            Ok(a)
        })?;
        run_actions(env, a)
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
        let a = engine_actions(env, |e| e.catch_up(share.as_deref(), now()))?;
        run_actions(env, a)
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
        let a = with_engine(env, |e| Ok(e.offer(&peer_id, now())))?;
        run_actions(env, a)
    })
}

/// Retry the writes that failed (a full disk, permissions); return the actions.
///
/// A write that fails again gives another `write-failed' action.
#[defun(name = "-sync-retry-writes")]
fn sync_retry_writes(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("sync-retry-writes");
    guard(env, || {
        let a = engine_actions(env, |e| Ok(e.retry_writes(now())))?;
        run_actions(env, a)
    })
}

/// Return how many shares have a failed write waiting to be retried (0 when sync is closed).
#[defun(name = "-sync-pending-writes")]
fn sync_pending_writes() -> Result<i64> {
    Ok(lock(&ENGINE)
        .as_ref()
        .map_or(0, |e| e.pending_writes() as i64))
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
        let (status, notices) = with_engine(env, |e| {
            let s = e.status();
            Ok((s, e.take_notices()))
        })?;
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
        env.cons(env.list(&v[..])?, run_actions(env, notices)?)
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
        let a = engine_actions(env, |e| e.ask(&share, &peer_id, now()))?;
        run_actions(env, a)
    })
}
