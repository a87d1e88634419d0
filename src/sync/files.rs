//! Keeping a share's file, its loaded document and its state file in agreement, and building
//! the events that carry data and requests. Used by the operations in `super::engine` and by
//! `super::inbound`.

use crate::federation::SyncKind;

use super::action::{Action, SyncError};
use super::chunk::{split, SplitError};
use super::engine::{stamp_of, Live, SyncEngine};
use super::hunk::hunks_between;
use super::share_id::ShareId;
use super::store::{read_file, sha256, write_synced_file, StateMeta};
use super::wire::{encode_request, escaped_len, Of};

/// Most hashes sent in a request's `have`.
const HAVE_HASHES: usize = 32;

/// A tail of changes larger than this plus a quarter of the compacted state is compacted.
pub(crate) const COMPACT_SLACK: usize = 64 * 1024;

impl SyncEngine {
    /// The loaded share (loading it from its state file if needed).
    pub(crate) fn live(&mut self, id: &ShareId) -> Result<&mut Live, SyncError> {
        let loaded = match self.shares.get(id) {
            None => return Err(SyncError::UnknownShare(id.url())),
            Some(s) => s.live.is_some(),
        };
        if !loaded {
            // A damaged or missing state is rebuilt (see `super::recover`), never fatal.
            let (doc, state) = self.load_or_rebuild(id)?;
            if let Some(s) = self.shares.get_mut(id) {
                s.live = Some(Live::new(doc, state, None, None));
            }
        }
        self.shares
            .get_mut(id)
            .and_then(|s| s.live.as_mut())
            .ok_or_else(|| SyncError::UnknownShare(id.url()))
    }

    /// Brings the file of a share and its state into agreement, taking in a local edit if the
    /// file changed since the engine last wrote or read it. A file equal to its content just
    /// before the engine's last write of it (a crash or an error between saving the state and
    /// writing the file) holds no edit: it is rewritten. That is also what the three-way rule
    /// gives for a stale buffer saved unchanged.
    pub(crate) fn absorb_file(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        let path = self.file_path(id)?;
        self.live(id)?;
        if self.is_rebuilding(id) {
            // The file holds this peer's edits; it is merged once the peers' version is here.
            return self.finish_rebuild(id);
        }
        let Some(bytes) = read_file(&path)? else {
            return Ok(self
                .save_and_write(id, None, false, None)?
                .into_iter()
                .collect());
        };
        let hash = sha256(&bytes);
        let held = self.shares.get(id).is_some_and(|s| s.held);
        let live = self.live(id)?;
        live.set_written(hash, bytes);
        if hash == live.state.meta.file_sha256 {
            live.stamp = stamp_of(&path);
            if held || live.doc.heads() == live.state.meta.heads {
                return Ok(Vec::new());
            }
            // Changes were merged while the file was held (or before a restart): write them.
            return Ok(self
                .save_and_write(id, None, false, Some(hash))?
                .into_iter()
                .collect());
        }
        // A save: the buffer and the file agree again, so nothing is held any more.
        if let Some(s) = self.shares.get_mut(id) {
            s.held = false;
        }
        let live = self.live(id)?;
        if Some(hash) == live.state.meta.pending_sha256 {
            return Ok(self
                .save_and_write(id, None, false, Some(hash))?
                .into_iter()
                .collect());
        }
        let bytes = live.written.as_ref().map(|w| &w.1[..]).unwrap_or_default();
        let change = live
            .doc
            .apply_local_text_based_on(&live.state.meta.heads, bytes)
            .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        let mut out = Vec::new();
        if let Some(c) = &change {
            out.extend(self.data_actions(id, Of::Change, false, c, Vec::new())?);
        }
        let written = self.save_and_write(id, change.as_deref(), false, Some(hash))?;
        out.extend(written);
        Ok(out)
    }

    /// [`SyncEngine::absorb_file`] for a hold just released: when the file's length,
    /// modification time and inode are what the engine last wrote or read, and the text it
    /// knows for them is the one its state describes, the file is neither read nor hashed
    /// again: only the changes merged while it was held are written. A held file changes only
    /// through the buffer's owner, who hands every save over itself (and a save changes the
    /// stamp), so this skips two passes over the whole file on the main thread.
    pub(crate) fn absorb_released(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        let path = self.file_path(id)?;
        if self.is_rebuilding(id) {
            return self.absorb_file(id);
        }
        let live = self.live(id)?;
        let unchanged = live.stamp.is_some() && live.stamp == stamp_of(&path);
        let known = live.written.as_ref().map(|(h, _)| *h);
        match known {
            Some(h)
                if unchanged
                    && h == live.state.meta.file_sha256
                    && live.state.meta.pending_sha256.is_none() =>
            {
                if live.doc.heads() == live.state.meta.heads {
                    return Ok(Vec::new());
                }
                Ok(self
                    .save_and_write(id, None, false, Some(h))?
                    .into_iter()
                    .collect())
            }
            _ => self.absorb_file(id),
        }
    }

    /// Like [`SyncEngine::absorb_file`] outside startup, but trusts the file's length,
    /// modification time and inode when they are what the engine last saw (before writing a
    /// file for a remote change, and before answering a request).
    pub(crate) fn absorb_if_touched(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        let path = self.file_path(id)?;
        let live = self.live(id)?;
        if live.stamp.is_some() && live.stamp == stamp_of(&path) {
            return Ok(Vec::new());
        }
        self.absorb_file(id)
    }

    /// Saves the state after the document changed (`appended`: the bytes of the changes, kept
    /// as the state's tail; `compact`: re-save the whole document), recording the heads and the
    /// hash of the document's text, then writes the file if `on_disk` (the hash of the file now
    /// on disk, `None` if it is missing) differs from the text.
    pub(crate) fn save_and_write(
        &mut self,
        id: &ShareId,
        appended: Option<&[u8]>,
        compact: bool,
        on_disk: Option<[u8; 32]>,
    ) -> Result<Vec<Action>, SyncError> {
        self.save_and_write_known(id, appended, compact, on_disk, None)
    }

    /// [`SyncEngine::save_and_write`] when the caller knows the SHA-256 of the document's text
    /// (`text_hash`): the text is then rendered only if the file must be written.
    pub(crate) fn save_and_write_known(
        &mut self,
        id: &ShareId,
        appended: Option<&[u8]>,
        compact: bool,
        on_disk: Option<[u8; 32]>,
        text_hash: Option<[u8; 32]>,
    ) -> Result<Vec<Action>, SyncError> {
        let path = self.file_path(id)?;
        let held = on_disk.is_some() && self.shares.get(id).is_some_and(|s| s.held);
        let rebuilding = self.is_rebuilding(id);
        let live = self.live(id)?;
        if let Some(a) = appended {
            live.state.tail.extend_from_slice(a);
        }
        if rebuilding {
            // Keep what arrived; the file is merged, not overwritten (see `super::recover`).
            if live.doc.is_joined() && !held {
                return self.finish_rebuild(id);
            }
            return self.write_state_or_report(id);
        }
        if compact || live.state.tail.len() > COMPACT_SLACK + live.state.base.len() / 4 {
            live.state.base = live.doc.save();
            live.state.tail.clear();
            live.state.persisted.set(None);
        }
        if held {
            // The file stays as it is, and so does what the state says about it.
            if self.deferred.defer(id) {
                return Ok(Vec::new());
            }
            return self.write_state_or_report(id);
        }
        // The text offered to a visiting buffer is the one rendered for these heads, if they
        // are still the document's: written under the version the buffer was told.
        let offered = live.offered.take();
        let mut offered_version = None;
        let (text, hash) = match (text_hash, offered) {
            (Some(h), _) => (None, h),
            (None, Some(o)) if o.heads == live.doc.heads() => {
                offered_version = Some(o.version);
                let (t, h) = o.text.finish();
                (Some(t), h)
            }
            (None, _) => {
                let t = live.doc.text();
                let h = sha256(&t);
                (Some(t), h)
            }
        };
        let write = on_disk != Some(hash);
        let meta = StateMeta {
            heads: live.doc.heads(),
            file_sha256: hash,
            pending_sha256: if write { on_disk } else { None },
        };
        // The file is written only once the state describing it is on disk. When a write
        // fails, the meta kept in memory must describe the file as it now is, so that a save
        // made before the retry is merged three-way, and taken in once:
        // * the file had not changed since the last write or read (a remote change, or changes
        //   merged while held): the old meta, whose heads the file still corresponds to;
        // * the file was just taken in (a local save): the new meta, which includes the save.
        // The retry writes the state from memory, then the file.
        let old_meta = std::mem::replace(&mut live.state.meta, meta);
        let unchanged_file = on_disk == Some(old_meta.file_sha256);
        let restore = |e: &mut SyncEngine| {
            if unchanged_file {
                if let Some(l) = e.shares.get_mut(id).and_then(|s| s.live.as_mut()) {
                    l.state.meta = StateMeta {
                        pending_sha256: None,
                        ..old_meta.clone()
                    };
                }
            }
        };
        let written = self.write_state_or_report(id)?;
        if !written.is_empty() {
            restore(self);
            return Ok(written);
        }
        if !write {
            return Ok(Vec::new());
        }
        let text = match text {
            Some(t) => t,
            None => self.live(id)?.doc.text(),
        };
        if let Err(e) = write_synced_file(&path, &text) {
            restore(self);
            return Ok(vec![self.write_failed(id, e)?]);
        }
        self.write_succeeded(id);
        let live = self.live(id)?;
        live.stamp = stamp_of(&path);
        let hunks = match &live.written {
            Some((h, old)) if on_disk == Some(*h) => hunks_between(old, &text),
            _ => None,
        };
        live.set_written(hash, text);
        if let Some(v) = offered_version {
            live.version = v;
        }
        Ok(vec![Action::Updated {
            share: id.clone(),
            path,
            created: on_disk.is_none(),
            hunks,
        }])
    }

    /// Saves the loaded state of `id`; a failed write becomes [`Action::WriteFailed`] (and is
    /// retried by [`SyncEngine::retry_writes`]). Empty when it was written.
    pub(crate) fn write_state_or_report(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        let result = match self.shares.get(id).and_then(|s| s.live.as_ref()) {
            Some(l) => self.store.write_state(id, &l.state),
            None => Err(SyncError::UnknownShare(id.url())),
        };
        match result {
            Ok(_) => {
                // What a deferred write would have written is on disk now.
                self.deferred.written(id);
                if self
                    .health
                    .get(id)
                    .and_then(|h| h.write_failure.as_ref())
                    .is_some_and(|f| f.path == self.store.state_path(id).unwrap_or_default())
                {
                    self.write_succeeded(id);
                }
                Ok(Vec::new())
            }
            Err(e) => Ok(vec![self.write_failed(id, e)?]),
        }
    }

    /// Publish actions carrying `data` (chunked if needed).
    pub(crate) fn data_actions(
        &self,
        id: &ShareId,
        of: Of,
        full: bool,
        data: &[u8],
        tags: Vec<Vec<String>>,
    ) -> Result<Vec<Action>, SyncError> {
        if data.len() > self.config.max_payload_bytes {
            return Err(SyncError::TooLarge {
                what: format!("a change of {id}"),
                size: data.len(),
                limit: self.config.max_payload_bytes,
            });
        }
        let contents = split(
            id,
            of,
            full,
            data,
            self.content_budget_for(id),
            self.config.max_chunks(),
        )
        .map_err(|e| match e {
            SplitError::BudgetTooSmall { budget, overhead } => SyncError::Config(format!(
                "max_content_bytes {budget} leaves no room for data after {overhead} bytes of \
                 chunk header; raise it"
            )),
            SplitError::TooManyChunks { count, max } => SyncError::TooLarge {
                what: format!("a change of {id} ({count} chunks)"),
                size: data.len(),
                limit: max as usize,
            },
        })?;
        let kind = match of {
            Of::Change => SyncKind::Change,
            Of::Response => SyncKind::Response,
        };
        // A share with members is sealed with its key (see `super::share_key`).
        contents
            .into_iter()
            .map(|content| self.seal_publish(id, kind, content, tags.clone()))
            .collect()
    }

    /// A request for what we miss of `id`, to `target` or to everyone. Unless `force`, not
    /// repeated to the same addressee with the same heads within `request_interval_secs`.
    pub(crate) fn request(
        &mut self,
        id: &ShareId,
        target: Option<&str>,
        now: u64,
        force: bool,
    ) -> Option<Action> {
        let (heads, have) = match self.shares.get(id).and_then(|s| s.live.as_ref()) {
            Some(l) => {
                let heads = l.doc.heads();
                let mut have = l.doc.sync_hashes(HAVE_HASHES + heads.len() / 32);
                // sync_hashes starts with the heads.
                have.drain(..heads.len().min(have.len()));
                (heads, have)
            }
            None => (Vec::new(), Vec::new()),
        };
        let key = (id.clone(), target.map(str::to_string));
        if !force {
            if let Some((h, at)) = self.requests.get(&key) {
                if *h == heads && now < at.saturating_add(self.config.request_interval_secs) {
                    return None;
                }
            }
        }
        if self.requests.len() >= 4096 {
            let interval = self.config.request_interval_secs;
            self.requests
                .retain(|_, (_, at)| now < at.saturating_add(interval));
            if self.requests.len() >= 4096 {
                return None;
            }
        }
        self.requests.insert(key, (heads.clone(), now));
        let budget = self.content_budget_for(id);
        let mut content = encode_request(id, &heads, &have);
        if escaped_len(&content) > budget {
            content = encode_request(id, &heads, &[]);
        }
        let mut n = heads.len() / 32;
        while escaped_len(&content) > budget && n > 0 {
            // Fewer heads only make the answer larger, never wrong.
            n /= 2;
            content = encode_request(id, &heads[..n * 32], &[]);
        }
        let tags = target
            .map(|t| vec![vec!["p".to_string(), t.to_string()]])
            .unwrap_or_default();
        match self.seal_publish(id, SyncKind::Request, content, tags) {
            Ok(a) => Some(a),
            Err(e) => {
                // Never sent in clear: the next catch-up asks again.
                self.notices.push(Action::Warning {
                    share: Some(id.clone()),
                    message: e.to_string(),
                });
                None
            }
        }
    }
}
