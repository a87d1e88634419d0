//! Which held shares have changes waiting: a share is held while a buffer visits its file
//! (see [`SyncEngine::hold_writes`]); remote changes are then merged and saved but the file
//! is written only when the buffer's owner (Emacs' main thread) releases the hold, so the
//! file never changes under a buffer behind its back.

use std::path::PathBuf;

use super::{ShareId, SyncEngine};

impl SyncEngine {
    /// The held shares whose merged document differs from what their file holds, with the
    /// file of each.
    pub fn held_with_changes(&self) -> Vec<(ShareId, PathBuf)> {
        self.shares
            .iter()
            .filter(|(_, s)| s.held && !s.entry.unshared)
            .filter_map(|(id, s)| {
                let live = s.live.as_ref()?;
                (live.doc.heads() != live.state.meta.heads)
                    .then(|| Some((id.clone(), self.share_path(id)?.to_path_buf())))
                    .flatten()
            })
            .collect()
    }

    /// Renders ahead the text of every held share whose merged document moved on from its
    /// file (see `Live::prepared`): the session's worker calls it after merging, so that the
    /// write when the hold ends costs Emacs' main thread the write alone.
    pub fn prepare_held_writes(&mut self) {
        for (id, _) in self.held_with_changes() {
            let Some(live) = self.shares.get_mut(&id).and_then(|s| s.live.as_mut()) else {
                continue;
            };
            let heads = live.doc.heads();
            if live.prepared.as_ref().is_some_and(|(h, _, _)| *h == heads) {
                continue;
            }
            let text = live.doc.text();
            let hash = super::store::sha256(&text);
            live.prepared = Some((heads, text, hash));
        }
    }
}
