//! Atomic file writes, shared by identity files, the trust store and synced files: a reader
//! (or a crash) sees the old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a 0600 temporary file in the same directory, fsync, then
/// rename. Without `overwrite`, the file is put in place with a hard link, so an existing file
/// is never replaced even in a race; that case fails with `ErrorKind::AlreadyExists`.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    Prepared::write(path, bytes)?.commit(overwrite)
}

/// The first half of [`write_atomic`]: the temporary file, written and synced, that
/// [`Prepared::commit`] puts in place. Dropped without a commit, it is removed. Lets a caller
/// do the slow half (the data and its fsync) before it knows the file may be replaced.
#[derive(Debug)]
pub struct Prepared {
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    done: bool,
}

impl Prepared {
    /// Writes `bytes` to a new 0600 temporary file beside `path` and syncs it.
    pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<Prepared> {
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            )
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", hex::encode(suffix)));
        let tmp = dir.join(tmp_name);

        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        // From here on, dropping `prepared` removes the temporary file.
        let prepared = Prepared {
            tmp,
            path: path.to_path_buf(),
            dir,
            done: false,
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(prepared)
    }

    /// Puts the temporary file in place (see [`write_atomic`] for `overwrite`).
    pub fn commit(mut self, overwrite: bool) -> std::io::Result<()> {
        let (tmp, path) = (&self.tmp, &self.path);
        let exists = || {
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                path.display().to_string(),
            )
        };
        if overwrite {
            fs::rename(tmp, path)?;
        } else {
            match fs::hard_link(tmp, path) {
                Ok(()) => {
                    let _ = fs::remove_file(tmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
                Err(_) => {
                    // File systems without hard links: check, then rename.
                    if fs::symlink_metadata(path).is_ok() {
                        return Err(exists());
                    }
                    fs::rename(tmp, path)?;
                }
            }
        }
        self.done = true;
        // Make the rename itself durable (best effort).
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Renames a damaged file to `NAME.damaged-STAMP` beside it (with `-2`, `-3`, … added if that
/// name is taken), so that nothing is thrown away; returns the new path, or `None` if there was
/// no file. The one way state files of every kind (sync state, outbox, received log) are kept
/// aside.
pub fn keep_aside(path: &Path, stamp: &str) -> std::io::Result<Option<PathBuf>> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = path.with_file_name(format!("{name}.damaged-{stamp}"));
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        n += 1;
        target = path.with_file_name(format!("{name}.damaged-{stamp}-{n}"));
    }
    fs::rename(path, &target)?;
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replaces_or_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_atomic(&p, b"two", false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
