//! The text offered to a buffer, written and synced beside its file on a thread of its own
//! while the person's Emacs patches the buffer, so that writing the offer
//! ([`super::SyncEngine::write_offered`]) costs a rename instead of the write and fsync of the
//! whole file (about 17 ms for a 12 MB file here, on the path from a peer's save to this file).
//!
//! The order of [`super::save`] is kept: the temporary file is only put in place once the
//! merge state describing it is on disk. An offer the buffer does not take (it has unsaved
//! edits) leaves no file behind: the temporary file is removed after [`KEEP`], or once its
//! write is done if the offer was dropped meanwhile. (A crash in that window leaves it, as a
//! crash during any atomic write does.)

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::action::SyncError;
use super::store::commit_synced_file;

/// How long a written temporary file waits for its commit before it is removed. Emacs
/// answers an offer it takes within milliseconds; one it leaves may wait for minutes.
const KEEP: Duration = Duration::from_secs(5);

type Reply = mpsc::Sender<Result<(), SyncError>>;

/// A text being written beside its file; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct PreparedText {
    path: PathBuf,
    commit: mpsc::Sender<Reply>,
}

impl PreparedText {
    /// Starts writing `text` beside `path`; `None` if no thread could be started.
    pub(crate) fn start(path: PathBuf, text: Arc<Vec<u8>>) -> Option<PreparedText> {
        let (tx, rx) = mpsc::channel::<Reply>();
        let file = path.clone();
        std::thread::Builder::new()
            .name("mlf-file-prepare".into())
            .spawn(move || {
                let prepared = crate::fsutil::Prepared::write(&path, &text)
                    .map_err(|e| SyncError::io("write", &path, e));
                // The text is not needed any more: its owner can take it back without a copy.
                drop(text);
                // An error is said at the commit too; a timeout or a dropped offer removes
                // the temporary file (`Prepared`'s drop).
                if let Ok(reply) = rx.recv_timeout(KEEP) {
                    let _ = reply.send(prepared.and_then(|p| commit_synced_file(p, &path)));
                }
            })
            .ok()?;
        Some(PreparedText {
            path: file,
            commit: tx,
        })
    }

    /// The file the text is for.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Puts the text in place and returns how that went; `None` if it is no longer there
    /// (it waited longer than [`KEEP`]): the caller writes the file the usual way.
    pub(crate) fn commit(self) -> Option<Result<(), SyncError>> {
        let (tx, rx) = mpsc::channel();
        self.commit.send(tx).ok()?;
        rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporaries(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn a_committed_text_replaces_the_file_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.canvasl");
        std::fs::write(&path, b"old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = PreparedText::start(path.clone(), Arc::new(b"new\n".to_vec())).unwrap();
        p.commit().unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(temporaries(dir.path()).is_empty());
    }

    #[test]
    fn a_dropped_offer_leaves_the_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.canvasl");
        std::fs::write(&path, b"old\n").unwrap();
        drop(PreparedText::start(path.clone(), Arc::new(b"new\n".to_vec())).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !temporaries(dir.path()).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(temporaries(dir.path()).is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), b"old\n");
    }

    #[test]
    fn a_failed_write_is_said_at_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-directory").join("a.canvasl");
        let p = PreparedText::start(path.clone(), Arc::new(b"new\n".to_vec())).unwrap();
        let e = p.commit().unwrap().unwrap_err();
        assert!(e.to_string().contains("a.canvasl"), "{e}");
    }
}
