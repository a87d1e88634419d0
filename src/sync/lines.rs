//! [`SyncEngine::local_lines_changed`]: a save handed over as the lines that changed, so that
//! the engine neither rereads nor diffs the whole file.
//!
//! Emacs records which lines of a buffer changed since it was last in step with the file (from
//! `after-change-functions`) and, on save, hands over [`LineEdit`]: how many bytes of whole
//! lines at the top and at the bottom stayed, and the text now between them (bytes, because a
//! buffer knows byte positions without counting lines; the engine counts the lines). The engine trusts it only when it
//! provably describes the file it knows:
//!
//! * the buffer started from the file as the engine last wrote or read it (`base_mtime` is the
//!   modification time the buffer was visiting then, and equals the one the engine saw);
//! * the merge state has nothing the file lacks (no remote change merged while the file was
//!   held, no rewrite pending, no rebuild), and the text has no byte order mark;
//! * the file now on disk has exactly the length the edit predicts.
//!
//! Otherwise — or for a file changed outside Emacs — the whole file is taken in as before
//! ([`SyncEngine::local_file_changed`]: three-way merge relative to the base heads).

use super::action::{Action, SyncError};
use super::engine::{stamp_of, SyncEngine};
use super::share_id::ShareId;
use super::store::sha256;
use super::wire::Of;

/// A saved buffer's change, as lines. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEdit {
    /// Bytes at the top that did not change: whole lines (a buffer knows byte positions
    /// without counting lines).
    pub head: usize,
    /// Bytes at the bottom that did not change: whole lines.
    pub tail: usize,
    /// The text between them now: whole lines, endings included (the last one may lack its
    /// ending only if `tail` is 0).
    pub middle: Vec<u8>,
    /// The modification time of the file the buffer started from, as (seconds, nanoseconds)
    /// since the epoch; `None` if unknown (then the edit is not trusted).
    pub base_mtime: Option<(i64, u32)>,
}

/// Why a line edit was not used (the whole file was taken in instead); for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Untrusted {
    /// The buffer did not start from the file the engine knows.
    Base,
    /// Merged changes, a pending rewrite or a rebuild: the file is not the document's text.
    State,
    /// The edit does not fit the text or the file on disk.
    Shape,
}

fn mtime_of(t: std::time::SystemTime) -> Option<(i64, u32)> {
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()))
}

/// Lines of `text` (a partial last line counts).
fn lines_in(text: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', text).count() + usize::from(text.last().is_some_and(|&b| b != b'\n'))
}

/// Whether `at` is the start of a line of `text`.
fn at_line_start(text: &[u8], at: usize) -> bool {
    at == 0 || text.get(at - 1) == Some(&b'\n')
}

impl SyncEngine {
    /// The user saved the file of a share and the buffer hands over what changed (`edit`):
    /// applied as a local edit from those lines alone when the edit can be trusted (see the
    /// [module documentation](self)), else exactly like [`SyncEngine::local_file_changed`].
    /// Ends a hold. Returns the actions (publish the change; `Updated` with hunks if the
    /// engine re-serialized changed entries and rewrote the file).
    pub fn local_lines_changed(
        &mut self,
        share_or_path: &str,
        edit: &LineEdit,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        if let Some(s) = self.shares.get_mut(&id) {
            s.held = false;
        }
        match self.apply_line_edit(&id, edit)? {
            Ok(actions) => Ok(actions),
            Err(_why) => self.local_file_changed(share_or_path, now),
        }
    }

    /// The fast path: `Ok(Err(why))` when the edit cannot be trusted (nothing was changed).
    pub(crate) fn apply_line_edit(
        &mut self,
        id: &ShareId,
        edit: &LineEdit,
    ) -> Result<Result<Vec<Action>, Untrusted>, SyncError> {
        let path = self.file_path(id)?;
        self.live(id)?;
        if self.is_rebuilding(id) {
            return Ok(Err(Untrusted::State));
        }
        let stamp = stamp_of(&path);
        let live = self.live(id)?;
        let known = live.stamp.and_then(|(_, m, _)| mtime_of(m));
        if edit.base_mtime.is_none() || known != edit.base_mtime {
            return Ok(Err(Untrusted::Base));
        }
        let Some((written_hash, written)) = &live.written else {
            return Ok(Err(Untrusted::State));
        };
        if *written_hash != live.state.meta.file_sha256
            || live.state.meta.pending_sha256.is_some()
            || live.doc.heads() != live.state.meta.heads
            || live.doc.has_bom()
        {
            return Ok(Err(Untrusted::State));
        }
        let total = live.doc.line_count();
        let Some(tail_start) = written.len().checked_sub(edit.tail) else {
            return Ok(Err(Untrusted::Shape));
        };
        let head = edit.head;
        let fits = head <= tail_start
            && at_line_start(written, head)
            && at_line_start(written, tail_start)
            && (edit.tail == 0 || edit.middle.is_empty() || edit.middle.ends_with(b"\n"));
        if !fits {
            return Ok(Err(Untrusted::Shape));
        }
        let predicted = head + edit.middle.len() + edit.tail;
        if stamp.map(|s| s.0) != Some(predicted as u64) {
            return Ok(Err(Untrusted::Shape));
        }
        let before = memchr::memchr_iter(b'\n', &written[..head]).count();
        let after = lines_in(&written[tail_start..]);
        if before + after > total {
            return Ok(Err(Untrusted::Shape));
        }
        let tail = tail_start;
        let mut new_file = Vec::with_capacity(predicted);
        new_file.extend_from_slice(&written[..head]);
        new_file.extend_from_slice(&edit.middle);
        new_file.extend_from_slice(&written[tail..]);
        let new_hash = sha256(&new_file);
        let change = live
            .doc
            .apply_local_lines(before, after, &edit.middle)
            .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        // Changed entries may be re-serialized (compact, fields in order): then the file is
        // written back, and the buffer patched from the hunks.
        let new_total = live.doc.line_count();
        let same = new_total >= before + after
            && live.doc.lines_text(before, new_total - after).as_slice() == edit.middle.as_slice();
        live.set_written(new_hash, new_file);
        live.stamp = stamp;
        // The buffer and the file agree again: nothing is held any more.
        if let Some(s) = self.shares.get_mut(id) {
            s.held = false;
        }
        let mut out = Vec::new();
        if let Some(c) = &change {
            out.extend(self.data_actions(id, Of::Change, false, c, Vec::new())?);
        }
        let known_text = same.then_some(new_hash);
        out.extend(self.save_and_write_known(
            id,
            change.as_deref(),
            false,
            Some(new_hash),
            known_text,
        )?);
        Ok(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_line_starts() {
        assert_eq!(lines_in(b""), 0);
        assert_eq!(lines_in(b"a\nbb\nc"), 3);
        assert_eq!(lines_in(b"a\nbb\n"), 2);
        assert!(at_line_start(b"a\nb", 0));
        assert!(at_line_start(b"a\nb", 2));
        assert!(!at_line_start(b"a\nb", 1));
        assert!(at_line_start(b"a\n", 2));
    }
}
