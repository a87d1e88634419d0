//! Private files written for the consumer (the Org blackboard's peer records) on the session's
//! worker, through the crate's one atomic writer ([`crate::fsutil::write_atomic`]): the write
//! syncs the file and its directory to disk, which can take tens of milliseconds while the disk
//! is busy, and Emacs must not wait for it.
//!
//! Writes of one file land in the order they were asked for, queued or waited for alike: both
//! go through the worker's one queue.

use std::path::PathBuf;

use super::{Session, SessionEvent, SyncValue, Work};

/// The [`SessionEvent::Sync`] kind that reports a queued write: `file-written` (PATH TAG
/// ERROR), ERROR nil when the file was written.
pub const FILE_WRITTEN: &str = "file-written";

impl Session {
    /// Writes `bytes` to `path` atomically (replacing it) on the worker and returns at once.
    /// A [`FILE_WRITTEN`] event with `tag` follows, with the error if the write failed.
    pub fn write_file_queued(&self, path: PathBuf, bytes: Vec<u8>, tag: i64) {
        let _ = self.tx.send(Work::Call(Box::new(move |s| {
            let error = crate::fsutil::write_atomic(&path, &bytes, true).err();
            s.emit(SessionEvent::Sync {
                kind: FILE_WRITTEN,
                values: vec![
                    SyncValue::Text(path.display().to_string()),
                    SyncValue::Int(tag),
                    match error {
                        None => SyncValue::Flag(false),
                        Some(e) => SyncValue::Text(e.to_string()),
                    },
                ],
            });
        })));
    }

    /// Writes `bytes` to `path` atomically on the worker, after the writes queued before, and
    /// waits for it (see [`crate::fsutil::write_atomic`] for `overwrite`). `None` if the worker
    /// has stopped (nothing was written).
    pub fn write_file_waiting(
        &self,
        path: PathBuf,
        bytes: Vec<u8>,
        overwrite: bool,
    ) -> Option<std::io::Result<()>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Work::Call(Box::new(move |_| {
                let _ = tx.send(crate::fsutil::write_atomic(&path, &bytes, overwrite));
            })))
            .ok()?;
        rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support::test_session;

    #[test]
    fn queued_and_waited_writes_land_in_order_and_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bb.org");
        let (session, events) = test_session();
        session.write_file_queued(path.clone(), b"first".to_vec(), 1);
        session.write_file_queued(path.clone(), b"second".to_vec(), 2);
        // A waited write comes after the queued ones: the file ends with its text.
        assert!(session
            .write_file_waiting(path.clone(), b"third".to_vec(), true)
            .unwrap()
            .is_ok());
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        let written: Vec<(i64, bool)> = events()
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::Sync { kind, values } if kind == FILE_WRITTEN => match &values[..] {
                    [SyncValue::Text(p), SyncValue::Int(tag), SyncValue::Flag(false)]
                        if *p == path.display().to_string() =>
                    {
                        Some((*tag, true))
                    }
                    [_, SyncValue::Int(tag), SyncValue::Text(_)] => Some((*tag, false)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(written, vec![(1, true), (2, true)]);
    }

    #[test]
    fn a_queued_write_that_fails_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("bb.org");
        let (session, events) = test_session();
        session.write_file_queued(path.clone(), b"text".to_vec(), 7);
        // Waiting on a later write makes sure the queued one ran.
        let _ = session.write_file_waiting(dir.path().join("other"), Vec::new(), true);
        let failed = events().into_iter().any(|e| {
            matches!(e, SessionEvent::Sync { kind, values }
                if kind == FILE_WRITTEN
                    && matches!(&values[..], [_, SyncValue::Int(7), SyncValue::Text(m)] if !m.is_empty()))
        });
        assert!(failed);
        assert!(!path.exists());
    }
}
