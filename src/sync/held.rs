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
}
