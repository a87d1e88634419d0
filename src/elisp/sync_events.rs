//! The edit path's session events (`SessionEvent::Sync`, see `crate::sync::save`) into a drain
//! slot: `[TYPE VALUE...]`, strings, integers, t/nil, "SECONDS.NANOSECONDS" times and hunks
//! (see `super::sync_hunks`), nil in the slots left.

use emacs::{Env, IntoLisp, Result, Value, Vector};

use crate::session::SyncValue;

/// Writes a `SessionEvent::Sync` of `kind` with `values` into `slot`.
pub(super) fn fill_sync_slot<'e>(
    env: &'e Env,
    slot: &Vector<'e>,
    kind: &str,
    values: Vec<SyncValue>,
) -> Result<()> {
    let nil = ().into_lisp(env)?;
    slot.set(0, env.intern(kind)?)?;
    let mut values = values.into_iter();
    for i in 1..slot.len() {
        let v = match values.next() {
            None => nil,
            Some(v) => value_to_lisp(env, v)?,
        };
        slot.set(i, v)?;
    }
    Ok(())
}

fn value_to_lisp(env: &Env, v: SyncValue) -> Result<Value<'_>> {
    match v {
        SyncValue::Text(s) => s.into_lisp(env),
        SyncValue::Int(n) => n.into_lisp(env),
        SyncValue::Flag(b) => b.into_lisp(env),
        SyncValue::Mtime(None) => ().into_lisp(env),
        SyncValue::Mtime(Some((secs, nanos))) => format!("{secs}.{nanos:09}").into_lisp(env),
        SyncValue::Hunks(h) => super::sync_hunks::hunks_to_lisp(env, h.as_deref()),
    }
}
