//! The edit path off Emacs' main thread: a buffer's save handed to the engine as the lines that
//! changed, and the changes merged into a held share offered to the buffer, both carried out
//! (file writes included) on the session's worker.
//!
//! **Saving** ([`SyncEngine::save_buffer`]). Emacs does not write the file: it hands over a
//! [`BufferSave`] (the changed lines of [`LineEdit`], which text the buffer started from, and a
//! sequence number) and goes on. The engine builds the buffer's text T from the text it knows
//! the file holds (`Live::written`) and the changed lines, and takes the edit in:
//!
//! * nothing merged while the file was held: the lines are applied as they are
//!   (`SharedDoc::apply_local_lines`, no pass over the whole text);
//! * remote changes merged while it was held: T is merged relative to the text the file
//!   had (the three-way rule), and the share stays held with T as its file's text. The merged
//!   text M, which differs from T, is then offered to the buffer like any held change.
//!
//! Then, in this order ([`SyncEngine::begin_save`], then [`SyncEngine::finish_save`]): the
//! merge state is saved, saying the file holds its old text or T (`pending_sha256`); the change
//! is published (the session does it between the two calls, so the peers do not wait for the
//! write of the whole file); T is written to the file, atomically. A crash anywhere in between
//! leaves the old file or T, and the state makes the next start write the document's text
//! (T, with what was merged since) over the old file rather than take the old file in as an
//! edit undoing the save. (If the state itself cannot be written, the change still goes out
//! and the state's write is retried, as it was before this order.) A write that fails keeps the
//! edit (in the state, and at the peers) and says the save was not written
//! ([`Action::SaveNotTaken`] with `failed`): the buffer is marked modified again, and its next
//! save is merged three-way.
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
use super::midstate::sha256_resuming;
use super::prepared::PreparedText;
use super::share_id::ShareId;
use super::store::{sha256, write_synced_file, StateMeta};
use super::texthash::HashingText;
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

/// A save taken into the document and its state, its file still to write: see
/// [`SyncEngine::begin_save`]. Dropped without [`SyncEngine::finish_save`], the buffer's save
/// would be left unanswered.
#[derive(Debug)]
#[must_use]
pub struct SaveWrite {
    id: ShareId,
    path: std::path::PathBuf,
    seq: u64,
    /// The file's text before the save (its hash, its bytes), taken from the engine until the
    /// write: the saved text is its bytes with `head..tail_start` replaced by `middle`.
    old: ([u8; 32], Vec<u8>),
    /// The saved text's hash states, kept for the next save once the file holds it.
    mids: super::midstate::Midstates,
    head: usize,
    tail_start: usize,
    middle: Vec<u8>,
    /// The saved text's hash.
    hash: [u8; 32],
    /// The engine's form of the changed lines, when it differs from `middle`.
    offer: Option<Vec<u8>>,
}

/// The saved text as three parts: the file's text `old` with `head..tail_start` replaced by
/// `middle` (see [`SaveWrite`]).
fn saved_parts<'a>(
    old: &'a [u8],
    head: usize,
    tail_start: usize,
    middle: &'a [u8],
) -> [&'a [u8]; 3] {
    [&old[..head], middle, &old[tail_start..]]
}

/// What taking a save into the document gave.
struct Taken {
    /// The heads of the saved text (the state's base).
    heads: Vec<u8>,
    /// The change to record and publish, if the text changed anything.
    change: Option<Vec<u8>>,
    /// The engine's form of the changed lines, when it differs from the saved ones.
    offer: Option<Vec<u8>>,
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
    /// The text written beside the file meanwhile, put in place when the buffer took it.
    pub(crate) prepared: Option<PreparedText>,
}

impl Offered {
    /// The offer of `text` as `version`, for the document at `heads`: its hash starts at once
    /// on a thread of its own, and so does its write beside the file at `path` (checked by
    /// `SyncEngine::file_path`; without it, the text is written only when asked).
    fn new(version: u64, heads: Vec<u8>, text: Vec<u8>, path: Option<&std::path::Path>) -> Offered {
        let text = HashingText::start(text);
        let prepared = path.and_then(|p| PreparedText::start(p.to_path_buf(), text.shared()));
        Offered {
            version,
            heads,
            text,
            prepared,
        }
    }
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
    /// A buffer visiting the file of `share_or_path` was saved: takes the edit in and writes
    /// its text, the share staying held (the buffer still visits the file). See the [module
    /// documentation](self). The outcome is an action: [`Action::Saved`] once the file holds
    /// the buffer's text, else [`Action::SaveNotTaken`]. [`SyncEngine::begin_save`] and
    /// [`SyncEngine::finish_save`] in one step.
    pub fn save_buffer(
        &mut self,
        share_or_path: &str,
        save: &BufferSave,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let (mut out, write) = self.begin_save(share_or_path, save, now)?;
        if let Some(w) = write {
            out.extend(self.finish_save(w)?);
        }
        Ok(out)
    }

    /// The first half of [`SyncEngine::save_buffer`]: the edit taken into the document and its
    /// merge state (which records that the file may still hold its old text), and the change
    /// to publish. The file is written by [`SyncEngine::finish_save`], which the caller runs
    /// next, after publishing if it likes: so the peers do not wait for the write of the whole
    /// file. Without a [`SaveWrite`], the actions say why the save was not taken (nothing
    /// changed).
    pub fn begin_save(
        &mut self,
        share_or_path: &str,
        save: &BufferSave,
        now: u64,
    ) -> Result<(Vec<Action>, Option<SaveWrite>), SyncError> {
        let _ = now;
        let id = self.active(share_or_path)?;
        let path = self.file_path(&id)?;
        let not_taken = |reason: &str| {
            Ok((
                vec![Action::SaveNotTaken {
                    share: id.clone(),
                    path: path.clone(),
                    seq: save.seq,
                    reason: reason.to_string(),
                    failed: false,
                }],
                None,
            ))
        };
        self.live(&id)?;
        if self.is_rebuilding(&id) {
            return not_taken("its merge state is being rebuilt");
        }
        let disk = stamp_of(&path);
        let live = self.live(&id)?;
        if live.stamp.is_none() || live.stamp != disk {
            return not_taken("the file changed on disk");
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
            return not_taken("the buffer did not start from the file's text");
        }
        let Some((written_hash, written)) = &live.written else {
            return not_taken("the file's text is not known");
        };
        if *written_hash != live.state.meta.file_sha256 || live.doc.has_bom() {
            return not_taken("the file is not the merge state's text");
        }
        let edit = &save.edit;
        let Some(tail_start) = written.len().checked_sub(edit.tail) else {
            return not_taken("the changed lines do not fit the file");
        };
        let fits = edit.head <= tail_start
            && at_line_start(written, edit.head)
            && at_line_start(written, tail_start)
            && (edit.tail == 0 || edit.middle.is_empty() || edit.middle.ends_with(b"\n"));
        if !fits {
            return not_taken("the changed lines do not fit the file");
        }
        // The file's text goes with the save to its write (`finish_save`), which puts the
        // changed lines in: the saved text is not built before the change is out.
        let Some((old_hash, old_text)) = live.written.take() else {
            return not_taken("the file's text is not known");
        };
        let parts = saved_parts(&old_text, edit.head, tail_start, &edit.middle);
        // The hash states of the file's text, if the last save left them (`super::midstate`).
        let mids = live.midstates.take().filter(|m| m.hash == old_hash);
        // The text's SHA-256 (what the state records about the file) is computed while the
        // document takes the edit in, from the first changed byte on.
        let hash_it = || sha256_resuming(&parts, mids.as_ref(), edit.head);
        let ((hash, mids), taken) = std::thread::scope(|s| {
            let hashing = std::thread::Builder::new()
                .name("mlf-text-hash".into())
                .spawn_scoped(s, hash_it)
                .ok();
            let taken = (|| {
                let before = memchr::memchr_iter(b'\n', parts[0]).count();
                let after = lines_in(parts[2]);
                let live = self.live(&id)?;
                let merged_meanwhile = live.doc.heads() != live.state.meta.heads;
                if !merged_meanwhile && before + after > live.doc.line_count() {
                    return Ok(None);
                }
                // The buffer changed since any offer: what is merged is offered again, from
                // its text.
                live.offered = None;
                Ok(Some(if merged_meanwhile {
                    self.take_save_merged(&id, &path, &parts.concat())?
                } else {
                    self.take_save_lines(&id, &path, (before, after), &edit.middle)?
                }))
            })();
            let hash = hashing.and_then(|h| h.join().ok()).unwrap_or_else(hash_it);
            (hash, taken)
        });
        // The state first: it says the file holds the old text or this one (`pending_sha256`),
        // so that a crash before the write (or a write that fails) never makes the old file
        // look like a local edit undoing this one; a restart writes the file from the state.
        let recorded = taken.and_then(|taken| {
            taken
                .map(|mut t| {
                    let offer = t.offer.take();
                    Ok((self.record_save(&id, t, hash, Some(old_hash))?, offer))
                })
                .transpose()
        });
        let (out, offer) = match recorded {
            Ok(Some(r)) => r,
            not_recorded => {
                // Nothing to write: the file keeps its text, which the engine knows again.
                self.live(&id)?.written = Some((old_hash, old_text));
                return match not_recorded {
                    Err(e) => Err(e),
                    _ => not_taken("the changed lines do not fit the file"),
                };
            }
        };
        Ok((
            out,
            Some(SaveWrite {
                id,
                path,
                seq: save.seq,
                old: (old_hash, old_text),
                mids,
                head: edit.head,
                tail_start,
                middle: edit.middle.clone(),
                hash,
                offer,
            }),
        ))
    }

    /// The second half of [`SyncEngine::save_buffer`]: writes the saved text to the file.
    /// Returns [`Action::Saved`] (then the offer of the engine's form of the changed lines, if
    /// it differs from the buffer's), or [`Action::SaveNotTaken`] with `failed` when the file
    /// cannot be written: the edit is in the merge state and went out all the same, and the
    /// buffer is marked modified again; its next save is merged three-way (the state says the
    /// file may hold the old text).
    pub fn finish_save(&mut self, w: SaveWrite) -> Result<Vec<Action>, SyncError> {
        let SaveWrite {
            id,
            path,
            seq,
            old,
            mids,
            head,
            tail_start,
            middle,
            hash,
            offer,
        } = w;
        let text = saved_parts(&old.1, head, tail_start, &middle).concat();
        if let Err(e) = write_synced_file(&path, &text) {
            // The file keeps its old text (or is on its way to the new one: the state says
            // which may be there), which the engine knows again.
            self.live(&id)?.written = Some(old);
            return Ok(vec![Action::SaveNotTaken {
                share: id,
                path,
                seq,
                reason: e.to_string(),
                failed: true,
            }]);
        }
        let stamp = stamp_of(&path);
        let live = self.live(&id)?;
        // The file holds the text: the state's "may still be the old text" is over. Said on
        // disk too (after the events when states are deferred), or else an old file put back
        // while Emacs is closed would be written over at the next start, not taken in.
        live.state.meta.pending_sha256 = None;
        let mut state_written = Vec::new();
        if !self.deferred.defer(&id) {
            state_written = self.write_state_or_report(&id)?;
        }
        // The engine's form of the changed lines, when it differs from the buffer's: the saved
        // text with those lines put in, offered with its hunks.
        let offer = offer.map(|mid| {
            let merged = saved_parts(&text, head, head + middle.len(), &mid).concat();
            let hunks = hunks_between(&text, &merged);
            (next_version(), merged, hunks)
        });
        let live = self.live(&id)?;
        live.set_written(hash, text);
        live.midstates = Some(mids);
        live.stamp = stamp;
        live.saved_seq = Some(seq);
        let version = live.version;
        let heads = live.doc.heads();
        // Saved before any offer made from the saved text: the buffer learns its version first.
        let mut out = state_written;
        out.push(Action::Saved {
            share: id.clone(),
            path: path.clone(),
            seq,
            version,
            mtime: mtime_pair(stamp),
        });
        if let Some((offered, merged, hunks)) = offer {
            out.push(Action::Offered {
                share: id.clone(),
                path: path.clone(),
                from: version,
                version: offered,
                hunks,
            });
            // Its write starts now, after the state's sync and the file's (one file system
            // journal: started earlier, it made those wait for the whole text).
            self.live(&id)?.offered = Some(Offered::new(offered, heads, merged, Some(&path)));
        }
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
                        let taken = self.take_save_merged(&id, &path, &text)?;
                        let a = self.record_save(&id, taken, hash, None)?;
                        self.live(&id)?.set_written(hash, text);
                        a
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
        (before, after): (usize, usize),
        middle: &[u8],
    ) -> Result<Taken, SyncError> {
        let live = self.live(id)?;
        let change = live
            .doc
            .apply_local_lines(before, after, middle)
            .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        let new_total = live.doc.line_count();
        // Changed entries may be re-serialized (a line that is not compact JSON): the
        // document's lines then differ from the saved ones, and are offered to the buffer
        // once the file is written (`finish_save`).
        let mid =
            (new_total >= before + after).then(|| live.doc.lines_text(before, new_total - after));
        let offer = mid.filter(|m| m.as_slice() != middle);
        // The saved text T, once written, is the state's base: the document with the save in.
        Ok(Taken {
            heads: live.doc.heads(),
            change,
            offer,
        })
    }

    /// The save merged relative to the text the file had, with the changes merged while it
    /// was held: the file keeps the buffer's text T, the share stays held with T's heads as
    /// its base, and the merged text is offered to the buffer (by `take_offers`).
    fn take_save_merged(
        &mut self,
        id: &ShareId,
        path: &std::path::Path,
        text: &[u8],
    ) -> Result<Taken, SyncError> {
        let live = self.live(id)?;
        let base = live.state.meta.heads.clone();
        let heads_before = live.doc.heads();
        let change = live
            .doc
            .apply_local_text_based_on(&base, text)
            .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        // The heads of T: the base with the save's own change on top.
        let heads = match &change {
            Some(_) => {
                let mut h = new_heads(&heads_before, &live.doc.heads());
                if h.is_empty() {
                    h = live.doc.heads();
                }
                h
            }
            None => base,
        };
        Ok(Taken {
            heads,
            change,
            offer: None,
        })
    }

    /// Records a save taken into the document: its change in the state, whose base becomes the
    /// saved text (`hash`; `pending`: what the file held before, if it is not written yet),
    /// the state saved, and the change's publication.
    fn record_save(
        &mut self,
        id: &ShareId,
        taken: Taken,
        hash: [u8; 32],
        pending: Option<[u8; 32]>,
    ) -> Result<Vec<Action>, SyncError> {
        let live = self.live(id)?;
        if let Some(c) = &taken.change {
            live.state.tail.extend_from_slice(c);
        }
        live.state.meta = StateMeta {
            heads: taken.heads,
            file_sha256: hash,
            pending_sha256: pending,
        };
        let mut out = Vec::new();
        if let Some(c) = &taken.change {
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
            // Where the text may be written (a synced file's directory is checked).
            let checked = self.file_path(&id).ok();
            let Some(live) = self.shares.get_mut(&id).and_then(|s| s.live.as_mut()) else {
                continue;
            };
            if live.offered.is_some() {
                continue;
            }
            let heads = live.doc.heads();
            let version = next_version();
            // Its hash and its write beside the file start first: the hunks are found meanwhile.
            let offered = Offered::new(version, heads, live.doc.text(), checked.as_deref());
            // Hunks from the file's text, when the engine knows it is the file on disk.
            let hunks = match &live.written {
                Some((h, old)) if *h == live.state.meta.file_sha256 => {
                    hunks_between(old, offered.text.bytes())
                }
                _ => None,
            };
            live.offered = Some(offered);
            out.push(Action::Offered {
                share: id.clone(),
                path,
                from: live.version,
                version,
                hunks,
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
        let Some(mut o) = live.offered.take() else {
            return Ok(Vec::new());
        };
        let on_disk = live.written.as_ref().map(|(h, _)| *h);
        let hash = o.text.hash();
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
        // The text was written beside the file while the buffer took it: only the rename is
        // left (the usual write if that was not possible).
        let written = match o
            .prepared
            .take()
            .filter(|p| p.path() == path)
            .and_then(PreparedText::commit)
        {
            Some(r) => r,
            None => write_synced_file(&path, o.text.bytes()),
        };
        let (text, _) = o.text.finish();
        if let Err(e) = written {
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
