//! The edit path off Emacs' main thread: a buffer's save handed to the engine as the lines that
//! changed, and the changes merged into a held share offered to the buffer, both carried out
//! (file writes included) on the session's worker.
//!
//! **Saving** ([`SyncEngine::save_buffer`]). Emacs does not write the file: it hands over a
//! [`BufferSave`] (the changed lines of [`LineEdit`], which text the buffer started from, and a
//! sequence number) and goes on. The engine builds the buffer's text T from the text it knows
//! the file holds (`Live::written`) and the changed lines, writes T to the file (atomically,
//! and before anything else changes: when it fails nothing else does), then takes the edit in:
//!
//! * nothing merged while the file was held: the lines are applied as they are
//!   (`SharedDoc::apply_local_lines`, no pass over the whole text);
//! * remote changes merged while it was held: T is merged relative to the text the file
//!   had (the three-way rule), and the share stays held with T as its file's text. The merged
//!   text M, which differs from T, is then offered to the buffer like any held change.
//!
//! The engine trusts the changed lines only when the file on disk is the one it last wrote or
//! read (length, modification time, inode) and the buffer started from that text (its version,
//! its save's sequence number, or its modification time). Otherwise it says the save was not
//! taken ([`Action::SaveNotTaken`]), changes nothing, and the buffer is saved again with its
//! whole text.
//!
//! **Receiving** ([`SyncEngine::take_offers`], [`SyncEngine::write_offered`]). Remote changes
//! merged into a held share are rendered on the worker and offered to the buffer as hunks from
//! the text the buffer shows (`from`) to the merged text (`version`). An unmodified buffer
//! showing `from` patches itself and asks for `version` to be written; a modified one leaves
//! the offer, and its next save merges the changes (the hold's rule: a buffer with unsaved
//! edits is never overwritten).

use std::sync::atomic::{AtomicU64, Ordering};

use super::action::{Action, SyncError};
use super::engine::{stamp_of, SyncEngine};
use super::hunk::hunks_between;
use super::lines::LineEdit;
use super::share_id::ShareId;
use super::store::{sha256, write_synced_file, StateMeta};
use super::texthash::{write_while_hashing, HashingText};
use super::wire::Of;

/// The source of text versions: unique within the process, so that a version never names two
/// texts even across shares, reloads and engines.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

/// A new text version.
pub(crate) fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// A buffer's save, handed over instead of writing the file. See the [module
/// documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferSave {
    /// The changed lines, relative to the text the buffer started from.
    pub edit: LineEdit,
    /// The version of the text the buffer started from, if it was told one.
    pub base_version: Option<u64>,
    /// The sequence number of the save whose text the buffer started from, if its `Saved`
    /// has not arrived yet.
    pub base_seq: Option<u64>,
    /// This save's sequence number (increasing), reported back with the outcome.
    pub seq: u64,
}

/// Merged text of a held share offered to the buffer visiting its file.
#[derive(Debug)]
pub(crate) struct Offered {
    /// The version the text gets once written.
    pub(crate) version: u64,
    /// The document's heads it is the text of.
    pub(crate) heads: Vec<u8>,
    /// The text, its SHA-256 computed on its own thread while the buffer takes the offer.
    pub(crate) text: HashingText,
}

/// Modification time of a stamp as (seconds, nanoseconds) since the epoch.
pub(crate) fn mtime_pair(stamp: Option<(u64, std::time::SystemTime, u64)>) -> Option<(i64, u32)> {
    let d = stamp?.1.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()))
}

/// Whether `at` is the start of a line of `text`.
fn at_line_start(text: &[u8], at: usize) -> bool {
    at == 0 || text.get(at - 1) == Some(&b'\n')
}

/// The 32-byte heads in `after` that are not in `before`.
fn new_heads(before: &[u8], after: &[u8]) -> Vec<u8> {
    let old: Vec<&[u8]> = before.chunks_exact(32).collect();
    after
        .chunks_exact(32)
        .filter(|h| !old.contains(h))
        .flatten()
        .copied()
        .collect()
}

impl SyncEngine {
    /// A buffer visiting the file of `share_or_path` was saved: writes its text and takes the
    /// edit in, the share staying held (the buffer still visits the file). See the [module
    /// documentation](self). The outcome is an action: [`Action::Saved`] once the file holds
    /// the buffer's text, else [`Action::SaveNotTaken`] (nothing changed).
    pub fn save_buffer(
        &mut self,
        share_or_path: &str,
        save: &BufferSave,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let _ = now;
        let id = self.active(share_or_path)?;
        let path = self.file_path(&id)?;
        let not_taken = |reason: &str, failed: bool| {
            Ok(vec![Action::SaveNotTaken {
                share: id.clone(),
                path: path.clone(),
                seq: save.seq,
                reason: reason.to_string(),
                failed,
            }])
        };
        self.live(&id)?;
        if self.is_rebuilding(&id) {
            return not_taken("its merge state is being rebuilt", false);
        }
        let disk = stamp_of(&path);
        let live = self.live(&id)?;
        if live.stamp.is_none() || live.stamp != disk {
            return not_taken("the file changed on disk", false);
        }
        let base_ok = match (save.base_version, save.base_seq) {
            (Some(v), _) if v == live.version => true,
            (_, Some(q)) if live.saved_seq == Some(q) => true,
            (None, None) => {
                save.edit.base_mtime.is_some() && save.edit.base_mtime == mtime_pair(live.stamp)
            }
            _ => false,
        };
        if !base_ok {
            return not_taken("the buffer did not start from the file's text", false);
        }
        let Some((written_hash, written)) = &live.written else {
            return not_taken("the file's text is not known", false);
        };
        if *written_hash != live.state.meta.file_sha256 || live.doc.has_bom() {
            return not_taken("the file is not the merge state's text", false);
        }
        let edit = &save.edit;
        let Some(tail_start) = written.len().checked_sub(edit.tail) else {
            return not_taken("the changed lines do not fit the file", false);
        };
        let fits = edit.head <= tail_start
            && at_line_start(written, edit.head)
            && at_line_start(written, tail_start)
            && (edit.tail == 0 || edit.middle.is_empty() || edit.middle.ends_with(b"\n"));
        if !fits {
            return not_taken("the changed lines do not fit the file", false);
        }
        let mut text = Vec::with_capacity(edit.head + edit.middle.len() + edit.tail);
        text.extend_from_slice(&written[..edit.head]);
        text.extend_from_slice(&edit.middle);
        text.extend_from_slice(&written[tail_start..]);
        let before = memchr::memchr_iter(b'\n', &written[..edit.head]).count();
        let after = lines_in(&written[tail_start..]);
        let merged_meanwhile = live.doc.heads() != live.state.meta.heads;
        if !merged_meanwhile && before + after > live.doc.line_count() {
            return not_taken("the changed lines do not fit the file", false);
        }
        // The buffer changed since any offer: what is merged is offered again, from its text.
        live.offered = None;
        // The file first: if it cannot be written, nothing else changes and the buffer is
        // marked modified again.
        // The text's SHA-256 (what the state records about the file) is computed while the
        // write waits for the disk.
        let (written, hash) = write_while_hashing(&text, || write_synced_file(&path, &text));
        if let Err(e) = written {
            return not_taken(&e.to_string(), true);
        }
        let stamp = stamp_of(&path);
        let out = if merged_meanwhile {
            self.take_save_merged(&id, &path, text, hash)?
        } else {
            self.take_save_lines(
                &id,
                &path,
                (edit.head, before, after),
                &save.edit.middle,
                text,
                hash,
            )?
        };
        let live = self.live(&id)?;
        live.stamp = stamp;
        live.saved_seq = Some(save.seq);
        let version = live.version;
        // Saved before any offer made from the saved text: the buffer learns its version first.
        let (offers, mut out): (Vec<Action>, Vec<Action>) = out
            .into_iter()
            .partition(|a| matches!(a, Action::Offered { .. }));
        out.push(Action::Saved {
            share: id.clone(),
            path,
            seq: save.seq,
            version,
            mtime: mtime_pair(stamp),
        });
        out.extend(offers);
        Ok(out)
    }

    /// A buffer visiting the file of `share_or_path` was saved by Emacs itself (its changed
    /// lines were not known): the file is read and merged relative to the text it had (the
    /// three-way rule), the share stays held with the saved text as its base, and the merged
    /// text, if it differs, is offered to the buffer. [`Action::Saved`] says so with `seq`.
    pub fn save_buffer_file(
        &mut self,
        share_or_path: &str,
        seq: u64,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        let path = self.file_path(&id)?;
        // The buffer changed since any offer: what is merged is offered again, from its text.
        self.live(&id)?.offered = None;
        let unusual = self.is_rebuilding(&id) || {
            let live = self.live(&id)?;
            live.state.meta.pending_sha256.is_some()
                || live.written.as_ref().map(|w| w.0) != Some(live.state.meta.file_sha256)
        };
        let mut out = if unusual {
            // A rebuild, an interrupted write or a file the engine does not know: the
            // general take-in, which writes the merged file; held again after.
            let a = self.local_file_changed(share_or_path, now)?;
            self.hold_writes(share_or_path, true)?;
            a
        } else {
            match super::store::read_file(&path)? {
                None => {
                    let a = self.local_file_changed(share_or_path, now)?;
                    self.hold_writes(share_or_path, true)?;
                    a
                }
                Some(text) => {
                    let hash = sha256(&text);
                    let live = self.live(&id)?;
                    let a = if live.written.as_ref().is_some_and(|w| w.0 == hash) {
                        Vec::new()
                    } else {
                        self.take_save_merged(&id, &path, text, hash)?
                    };
                    let live = self.live(&id)?;
                    live.stamp = stamp_of(&path);
                    if let Some(s) = self.shares.get_mut(&id) {
                        s.held = true;
                    }
                    a
                }
            }
        };
        let live = self.live(&id)?;
        live.saved_seq = Some(seq);
        let (version, mtime) = (live.version, mtime_pair(live.stamp));
        out.extend(self.take_offers());
        let (offers, rest): (Vec<Action>, Vec<Action>) = out
            .into_iter()
            .partition(|a| matches!(a, Action::Offered { .. }));
        let mut out = rest;
        out.push(Action::Saved {
            share: id,
            path,
            seq,
            version,
            mtime,
        });
        out.extend(offers);
        Ok(out)
    }

    /// The save's lines applied as they are: nothing was merged while the file was held.
    fn take_save_lines(
        &mut self,
        id: &ShareId,
        path: &std::path::Path,
        (head, before, after): (usize, usize, usize),
        middle: &[u8],
        text: Vec<u8>,
        hash: [u8; 32],
    ) -> Result<Vec<Action>, SyncError> {
        let live = self.live(id)?;
        let change = live
            .doc
            .apply_local_lines(before, after, middle)
            .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        let new_total = live.doc.line_count();
        // Changed entries may be re-serialized (compact, fields in order): the document's
        // text then differs from the file, a held change offered to the buffer like any other.
        let same = new_total >= before + after
            && live.doc.lines_text(before, new_total - after).as_slice() == middle;
        if let Some(c) = &change {
            live.state.tail.extend_from_slice(c);
        }
        let heads = live.doc.heads();
        // The file holds the buffer's text T: its base is now the document with the save in.
        live.state.meta = StateMeta {
            heads: heads.clone(),
            file_sha256: hash,
            pending_sha256: None,
        };
        let offer = (!same).then(|| {
            // The engine's form of the changed lines, offered to the buffer at once: T with
            // its middle replaced (no render of the whole text).
            let mid = live.doc.lines_text(before, new_total - after);
            let tail = head + middle.len();
            let mut merged = Vec::with_capacity(text.len() - middle.len() + mid.len());
            merged.extend_from_slice(&text[..head]);
            merged.extend_from_slice(&mid);
            merged.extend_from_slice(&text[tail..]);
            merged
        });
        live.set_written(hash, text);
        let mut out = Vec::new();
        if let Some(merged) = offer {
            let live = self.live(id)?;
            let version = next_version();
            let hunks = live
                .written
                .as_ref()
                .and_then(|(_, old)| hunks_between(old, &merged));
            out.push(Action::Offered {
                share: id.clone(),
                path: path.to_path_buf(),
                from: live.version,
                version,
                hunks,
            });
            live.offered = Some(Offered {
                version,
                heads,
                text: HashingText::start(merged),
            });
        }
        if let Some(c) = &change {
            out.extend(self.data_actions(id, Of::Change, false, c, Vec::new())?);
        }
        out.extend(self.compact_and_save_state(id)?);
        Ok(out)
    }

    /// The save merged relative to the text the file had, with the changes merged while it
    /// was held: the file keeps the buffer's text T, the share stays held with T's heads as
    /// its base, and the merged text is offered to the buffer.
    fn take_save_merged(
        &mut self,
        id: &ShareId,
        path: &std::path::Path,
        text: Vec<u8>,
        hash: [u8; 32],
    ) -> Result<Vec<Action>, SyncError> {
        let live = self.live(id)?;
        let base = live.state.meta.heads.clone();
        let heads_before = live.doc.heads();
        let change = live
            .doc
            .apply_local_text_based_on(&base, &text)
            .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        // The heads of T: the base with the save's own change on top.
        let heads_of_text = match &change {
            Some(_) => {
                let mut h = new_heads(&heads_before, &live.doc.heads());
                if h.is_empty() {
                    h = live.doc.heads();
                }
                h
            }
            None => base,
        };
        if let Some(c) = &change {
            live.state.tail.extend_from_slice(c);
        }
        live.state.meta = StateMeta {
            heads: heads_of_text,
            file_sha256: hash,
            pending_sha256: None,
        };
        live.set_written(hash, text);
        let mut out = Vec::new();
        if let Some(c) = &change {
            out.extend(self.data_actions(id, Of::Change, false, c, Vec::new())?);
        }
        out.extend(self.compact_and_save_state(id)?);
        Ok(out)
    }

    /// Saves the state of `id` (compacting a long tail of changes first).
    fn compact_and_save_state(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        let live = self.live(id)?;
        if live.state.tail.len() > super::files::COMPACT_SLACK + live.state.base.len() / 4 {
            live.state.base = live.doc.save();
            live.state.tail.clear();
            live.state.persisted.set(None);
        }
        self.write_state_or_report(id)
    }

    /// Offers the merged text of every held share whose document moved on from its file and
    /// that has no offer yet: rendered here (on the session's worker), with the hunks from the
    /// text the file holds. See the [module documentation](self).
    pub fn take_offers(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for (id, path) in self.held_with_changes() {
            if self.is_rebuilding(&id) {
                continue;
            }
            let Some(live) = self.shares.get_mut(&id).and_then(|s| s.live.as_mut()) else {
                continue;
            };
            if live.offered.is_some() {
                continue;
            }
            let heads = live.doc.heads();
            let text = live.doc.text();
            // Hunks from the file's text, when the engine knows it is the file on disk.
            let hunks = match &live.written {
                Some((h, old)) if *h == live.state.meta.file_sha256 => hunks_between(old, &text),
                _ => None,
            };
            let version = next_version();
            out.push(Action::Offered {
                share: id.clone(),
                path,
                from: live.version,
                version,
                hunks,
            });
            live.offered = Some(Offered {
                version,
                heads,
                text: HashingText::start(text),
            });
        }
        out
    }

    /// A file changed on disk (a file notification): taken in as
    /// [`SyncEngine::local_file_changed`] does, unless its length, modification time and inode
    /// are what the engine last wrote or read (its own writes notify too: those cost a stat,
    /// not a read and a hash of the whole file). With `hold`, a buffer visits the file: the
    /// share is held again after.
    pub fn file_touched(
        &mut self,
        share_or_path: &str,
        hold: bool,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        let path = self.file_path(&id)?;
        let live = self.live(&id)?;
        if live.stamp.is_some() && live.stamp == stamp_of(&path) {
            return Ok(Vec::new());
        }
        let a = self.local_file_changed(share_or_path, now)?;
        if hold {
            self.hold_writes(share_or_path, true)?;
        }
        Ok(a)
    }

    /// Forgets the text offered for `share_or_path`, so that the next [`SyncEngine::take_offers`]
    /// offers the merged text again, from the text the file holds: for a buffer that did not
    /// take the offer (it had unsaved edits) and now shows the file again (reverted, visited).
    pub fn reoffer(&mut self, share_or_path: &str) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        if let Some(live) = self.shares.get_mut(&id).and_then(|s| s.live.as_mut()) {
            live.offered = None;
        }
        Ok(Vec::new())
    }

    /// The buffer shows the offered text `version` of `share_or_path`: writes it to the file,
    /// and the share stays held with it as its base. Nothing happens when that offer is gone
    /// (a save or another write came first) or the file changed on disk since the engine
    /// last saw it (a save made outside this path takes it in). Returns
    /// [`Action::OfferWritten`], or [`Action::WriteFailed`].
    pub fn write_offered(
        &mut self,
        share_or_path: &str,
        version: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        let path = self.file_path(&id)?;
        if self.is_rebuilding(&id) {
            return Ok(Vec::new());
        }
        let disk = stamp_of(&path);
        let live = self.live(&id)?;
        if live.offered.as_ref().is_none_or(|o| o.version != version)
            || live.stamp.is_none()
            || live.stamp != disk
        {
            return Ok(Vec::new());
        }
        let Some(o) = live.offered.take() else {
            return Ok(Vec::new());
        };
        let on_disk = live.written.as_ref().map(|(h, _)| *h);
        let (text, hash) = o.text.finish();
        let old_meta = std::mem::replace(
            &mut live.state.meta,
            StateMeta {
                heads: o.heads.clone(),
                file_sha256: hash,
                pending_sha256: on_disk,
            },
        );
        // The state first, then the file (see `save_and_write_known`).
        let failed = self.write_state_or_report(&id)?;
        if !failed.is_empty() {
            let live = self.live(&id)?;
            live.state.meta = old_meta;
            return Ok(failed);
        }
        if let Err(e) = write_synced_file(&path, &text) {
            let live = self.live(&id)?;
            live.state.meta = StateMeta {
                pending_sha256: None,
                ..old_meta
            };
            return Ok(vec![self.write_failed(&id, e)?]);
        }
        self.write_succeeded(&id);
        let live = self.live(&id)?;
        let stamp = stamp_of(&path);
        live.stamp = stamp;
        live.set_written(hash, text);
        live.version = o.version;
        Ok(vec![Action::OfferWritten {
            share: id,
            path,
            version,
            mtime: mtime_pair(stamp),
        }])
    }
}

/// Lines of `text` (a partial last line counts).
fn lines_in(text: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', text).count() + usize::from(text.last().is_some_and(|&b| b != b'\n'))
}
