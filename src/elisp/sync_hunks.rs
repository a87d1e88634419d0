//! The changed lines of an `updated` sync action, as Elisp receives them: nil (unknown:
//! revert the buffer) or a vector of hunks, each `[START DELETE INSERT DELETED START-BYTE]` —
//! START the 0-based first old line, DELETE how many old lines go, INSERT the new text and
//! DELETED the old text of those lines (line endings included), START-BYTE where the first of
//! them starts in the old file (bytes from its beginning). Ordered by START; apply them bottom-up (see
//! `crate::sync::hunk` and `lisp/meta-log-federation-patch.el`).

use emacs::{Env, IntoLisp, Result, Value};

use crate::sync::Hunk;

/// `hunks` as the Elisp value described in the module documentation.
pub(crate) fn hunks_to_lisp<'e>(env: &'e Env, hunks: Option<&[Hunk]>) -> Result<Value<'e>> {
    let Some(hunks) = hunks else {
        return env.intern("nil");
    };
    let mut items = Vec::with_capacity(hunks.len());
    for h in hunks {
        let fields = [
            (h.start_line as i64).into_lisp(env)?,
            (h.delete as i64).into_lisp(env)?,
            h.insert.concat().into_lisp(env)?,
            h.deleted.concat().into_lisp(env)?,
            (h.start_byte as i64).into_lisp(env)?,
        ];
        items.push(env.call("vector", &fields[..])?);
    }
    env.call("vector", &items[..])
}

/// "SECONDS.NANOSECONDS" (nanoseconds padded to 9 digits, as `format-time-string' "%s.%N"
/// gives them) as a pair; `None` if it is not that.
pub(crate) fn parse_mtime(s: &str) -> Option<(i64, u32)> {
    let (secs, nanos) = s.split_once('.')?;
    if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((secs.parse().ok()?, nanos.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mtime_strings() {
        assert_eq!(
            super::parse_mtime("1764316800.000000042"),
            Some((1_764_316_800, 42))
        );
        assert_eq!(super::parse_mtime("1764316800.42"), None);
        assert_eq!(super::parse_mtime("x.000000042"), None);
        assert_eq!(super::parse_mtime("1764316800"), None);
    }
}
