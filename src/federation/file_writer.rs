//! A JSON state file written on a thread of its own.
//!
//! The outbox is saved at every delivery tick while messages wait. During a
//! burst it holds thousands of signed events (4 MB of JSON for 5,000), and
//! serialising, writing and syncing that took 27 ms on the session's worker,
//! twice a second: the worker, which signs the messages being sent, stood still
//! meanwhile (`make bench`, 2 cores). Here the caller hands over a snapshot and
//! goes on; the writer serialises it and replaces the file atomically
//! ([`crate::fsutil::write_atomic`]). Snapshots handed over while a write runs
//! are coalesced: only the newest is written, since each one is the whole file.
//!
//! Failures are kept and returned by the next [`FileWriter::submit`] (or by
//! [`FileWriter::flush`]), so the caller reports them and hands the state over
//! again.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use crate::events::lock;

use serde::Serialize;

/// What the caller and the writer thread share.
struct State<T> {
    /// The newest snapshot not taken by the writer yet, and its number.
    next: Option<(u64, T)>,
    /// Number of the last snapshot handed over.
    submitted: u64,
    /// Number of the last snapshot whose write ended (written or failed).
    done: u64,
    /// The last failure, until the caller takes it.
    error: Option<String>,
    /// The owner is gone: the thread ends once nothing waits.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

/// Writes snapshots of type `T` to one file, as JSON, on its own thread.
pub struct FileWriter<T: Serialize + Send + 'static> {
    shared: Arc<Shared<T>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T: Serialize + Send + 'static> std::fmt::Debug for FileWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.shared.state);
        f.debug_struct("FileWriter")
            .field("submitted", &s.submitted)
            .field("done", &s.done)
            .field("error", &s.error)
            .finish()
    }
}

impl<T: Serialize + Send + 'static> FileWriter<T> {
    /// A writer of `path`; `name` names its thread.
    pub fn new(path: PathBuf, name: &str) -> std::io::Result<FileWriter<T>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next: None,
                submitted: 0,
                done: 0,
                error: None,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&s, &path))?;
        Ok(FileWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands `snapshot` over to be written, replacing one not written yet.
    /// Returns the failure of an earlier write, if one failed since the last call:
    /// that state was not saved, and `snapshot` (newer) will be tried.
    pub fn submit(&self, snapshot: T) -> Result<(), String> {
        let mut s = lock(&self.shared.state);
        s.submitted += 1;
        s.next = Some((s.submitted, snapshot));
        let error = s.error.take();
        drop(s);
        self.shared.changed.notify_all();
        error.map_or(Ok(()), Err)
    }

    /// Waits until every snapshot handed over is written; the failure of the
    /// last write that failed since the last call, if any.
    pub fn flush(&self) -> Result<(), String> {
        let mut s = lock(&self.shared.state);
        while s.done < s.submitted {
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|p| p.into_inner());
        }
        s.error.take().map_or(Ok(()), Err)
    }
}

impl<T: Serialize + Send + 'static> Drop for FileWriter<T> {
    fn drop(&mut self) {
        // What was handed over is written before the thread ends.
        lock(&self.shared.state).closed = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: writes the newest snapshot, until closed with nothing left.
fn run<T: Serialize>(shared: &Shared<T>, path: &std::path::Path) {
    loop {
        let (number, snapshot) = {
            let mut s = lock(&shared.state);
            loop {
                if let Some(next) = s.next.take() {
                    break next;
                }
                if s.closed {
                    return;
                }
                s = shared.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = serde_json::to_vec(&snapshot)
            .map_err(std::io::Error::other)
            .and_then(|json| crate::fsutil::write_atomic(path, &json, true));
        drop(snapshot);
        let mut s = lock(&shared.state);
        // A snapshot taken over by a newer one counts as done with it.
        s.done = s.done.max(number);
        if let Err(e) = result {
            s.error = Some(format!("{}: {e}", path.display()));
        }
        drop(s);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::FileWriter;

    #[test]
    fn snapshots_are_written_in_order_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let w: FileWriter<Vec<u32>> = FileWriter::new(path.clone(), "test-writer").unwrap();
        for n in 0..200u32 {
            w.submit((0..n).collect()).unwrap();
        }
        w.flush().unwrap();
        let back: Vec<u32> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, (0..199).collect::<Vec<u32>>());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Dropping the writer writes what was handed over last.
        w.submit(vec![7]).unwrap();
        drop(w);
        let back: Vec<u32> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, vec![7]);
    }

    #[test]
    fn a_failed_write_is_said_once_and_a_later_one_can_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("state.json");
        let w: FileWriter<u32> = FileWriter::new(path.clone(), "test-writer").unwrap();
        std::fs::remove_dir(&sub).unwrap();
        w.submit(1).unwrap();
        let err = w.flush().unwrap_err();
        assert!(err.contains("state.json"), "{err}");
        // Said once.
        assert!(w.flush().is_ok());
        std::fs::create_dir(&sub).unwrap();
        w.submit(2).unwrap();
        w.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2");
    }
}
