//! Private files written from Elisp (the Org blackboard) through the crate's one atomic
//! writer, [`crate::fsutil::write_atomic`].

use std::path::{Path, PathBuf};

use emacs::{defun, Env, Result, Value};

use super::convert::CallTimer;
use super::errors::{signal, Kind};
use super::session::current;

/// Write TEXT to FILE atomically: an exclusive temporary file with mode 600 in the same
/// directory, synced to disk, then renamed over FILE (or, unless OVERWRITE, linked into
/// place so that an existing FILE is never replaced; that signals
/// `file-already-exists`).  TEXT is written as UTF-8.  Return FILE.
///
/// While federation runs, the write is done by its worker after the writes queued before
/// with `meta-log-federation--write-file-atomic-queued' (so it lands after them), and this
/// waits for it.
#[defun(name = "-write-file-atomic")]
fn write_file_atomic(
    env: &Env,
    file: String,
    text: String,
    overwrite: Value<'_>,
) -> Result<String> {
    let _t = CallTimer::start("write-file-atomic");
    let overwrite = overwrite.is_not_nil();
    let path = PathBuf::from(&file);
    let written = current()
        .and_then(|s| s.write_file_waiting(path.clone(), text.clone().into_bytes(), overwrite))
        .unwrap_or_else(|| crate::fsutil::write_atomic(&path, text.as_bytes(), overwrite));
    match written {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => env.signal(
            env.intern("file-already-exists")?,
            ("File exists; not replaced", file.as_str()),
        ),
        Err(e) => signal(env, Kind::General, format!("cannot write {file}: {e}")),
    }
}

/// Have federation's worker write TEXT to FILE atomically, replacing it; return at once.
///
/// As `meta-log-federation--write-file-atomic' does, but Emacs does not wait for the disk: a
/// `file-written' event [file-written FILE TAG ERROR] follows (ERROR nil once FILE holds
/// TEXT, else why not).  Writes land in the order they were asked for.  Return non-nil if
/// the write was queued, nil when federation does not run (then nothing was written: write
/// it with `meta-log-federation--write-file-atomic').
#[defun(name = "-write-file-atomic-queued")]
fn write_file_atomic_queued(file: String, text: String, tag: i64) -> Result<bool> {
    let _t = CallTimer::start("write-file-atomic-queued");
    Ok(match current() {
        Some(s) => {
            s.write_file_queued(PathBuf::from(file), text.into_bytes(), tag);
            true
        }
        None => false,
    })
}

/// Return a warning if the identity FILE can be read by other users, else nil.
///
/// The warning says what to do (chmod 600).  Internal: the identity loader shows it.
#[defun(name = "-identity-file-exposure")]
fn identity_file_exposure(file: String) -> Result<Option<String>> {
    let _t = CallTimer::start("identity-file-exposure");
    Ok(crate::identity::file::exposure_warning(Path::new(&file)))
}
