//! The Elisp functions for share membership (see `crate::sync::members`): share with members,
//! change them, show them. Kept apart from `sync.rs` so each file has one job.

use super::convert::{plist, CallTimer};
use super::errors::{guard, signal, Kind};
use super::sync::{actions_to_lisp, engine_actions, engine_op, expand, with_engine};
use emacs::{defun, Env, IntoLisp, Result, Value};

/// MEMBERS from Lisp: the symbol `all` for the whole federation, else a list of peer ids.
fn members_arg(env: &Env, v: Value<'_>) -> Result<Option<Vec<String>>> {
    if v == env.intern("all")? {
        return Ok(None);
    }
    if !env.call("listp", (v,))?.is_not_nil() {
        return signal(
            env,
            Kind::Sync,
            "members must be `all' or a list of peer ids (64 lowercase hex characters)",
        );
    }
    let mut out = Vec::new();
    let mut rest = v;
    while rest.is_not_nil() {
        let id = env.call("car", (rest,))?;
        match id.into_rust::<String>() {
            Ok(s) => out.push(s),
            Err(_) => {
                return signal(
                    env,
                    Kind::Sync,
                    "each member must be a peer id string (64 lowercase hex characters)",
                )
            }
        }
        rest = env.call("cdr", (rest,))?;
    }
    Ok(Some(out))
}

/// Share FILE under NAME (nil: its file name) with MEMBERS; return (URL . ACTIONS).
///
/// MEMBERS is `all' (the whole federation) or a list of peer ids.
#[defun(name = "-sync-share-members")]
fn sync_share_members<'e>(
    env: &'e Env,
    file: Value<'e>,
    name: Value<'e>,
    members: Value<'e>,
) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-share-members");
    let path = expand(env, file)?;
    let name: Option<String> = if name.is_not_nil() {
        Some(name.into_rust()?)
    } else {
        None
    };
    let members = members_arg(env, members)?;
    guard(env, || {
        let (url, actions) = engine_op(env, |e, now| {
            let actions = e.share_with_members(&path, name.as_deref(), members, now)?;
            let url = e.resolve(&path.to_string_lossy())?.url();
            Ok((url, actions))
        })?;
        env.cons(url, actions_to_lisp(env, actions)?)
    })
}

/// Replace the members of our SHARE (URL or file) by MEMBERS; return the actions.
///
/// MEMBERS is `all' or a list of peer ids.  Only the share's origin can do this.
#[defun(name = "-sync-set-members")]
fn sync_set_members<'e>(env: &'e Env, share: String, members: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("sync-set-members");
    let members = members_arg(env, members)?;
    guard(env, || {
        engine_actions(env, |e, now| e.set_members(&share, members, now))
    })
}

/// Return the membership of SHARE (URL or file) as a plist, or nil if it has none.
///
/// Keys: :origin (peer id), :version, :members (`all' or a list of peer ids).
#[defun(name = "-sync-members")]
fn sync_members<'e>(env: &'e Env, share: String) -> Result<Value<'e>> {
    guard(env, || {
        let m = with_engine(env, |e| e.membership(&share))?;
        let Some(m) = m else {
            return env.intern("nil");
        };
        let members = match m.list() {
            None => env.intern("all")?,
            Some(list) => env.list(
                &list
                    .into_iter()
                    .map(|s| s.into_lisp(env))
                    .collect::<Result<Vec<_>>>()?[..],
            )?,
        };
        plist(
            env,
            vec![
                (":origin", m.share.origin().to_string().into_lisp(env)?),
                (":version", (m.version as i64).into_lisp(env)?),
                (":members", members),
            ],
        )
    })
}
