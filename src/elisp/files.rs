//! Private files written from Elisp (the Org blackboard) through the crate's one atomic
//! writer, [`crate::fsutil::write_atomic`].

use std::path::Path;

use emacs::{defun, Env, Result, Value};

use super::convert::CallTimer;
use super::errors::{signal, Kind};

/// Write TEXT to FILE atomically: an exclusive temporary file with mode 600 in the same
/// directory, synced to disk, then renamed over FILE (or, unless OVERWRITE, linked into
/// place so that an existing FILE is never replaced; that signals
/// `file-already-exists`).  TEXT is written as UTF-8.  Return FILE.
#[defun(name = "-write-file-atomic")]
fn write_file_atomic(
    env: &Env,
    file: String,
    text: String,
    overwrite: Value<'_>,
) -> Result<String> {
    let _t = CallTimer::start("write-file-atomic");
    match crate::fsutil::write_atomic(Path::new(&file), text.as_bytes(), overwrite.is_not_nil()) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => env.signal(
            env.intern("file-already-exists")?,
            ("File exists; not replaced", file.as_str()),
        ),
        Err(e) => signal(env, Kind::General, format!("cannot write {file}: {e}")),
    }
}

/// Return a warning if the identity FILE can be read by other users, else nil.
///
/// The warning says what to do (chmod 600).  Internal: the identity loader shows it.
#[defun(name = "-identity-file-exposure")]
fn identity_file_exposure(file: String) -> Result<Option<String>> {
    let _t = CallTimer::start("identity-file-exposure");
    Ok(crate::identity::file::exposure_warning(Path::new(&file)))
}
