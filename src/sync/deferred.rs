//! Merge states of held shares written after the consumer is told, not before.
//!
//! A change merged into a share that a buffer visits (held: the file is not written) ends
//! with an offer to that buffer. The state append that records the change costs a sync to
//! disk (`fdatasync`, about half a millisecond here, far more on a busy disk) that the offer
//! does not need: the offer carries text, not a promise about the disk. With deferral on
//! (the session turns it on), such a state is written by [`SyncEngine::write_deferred_states`]
//! after the offer has gone out, by the same thread, before any other work but Emacs' own
//! operations on the engine, and within 20 ms (the session's worker: Emacs' answer to the
//! offer, the write of the file, comes first, and its state write covers the deferred one).
//! Nothing reads the state in between, and a crash in between loses only what the peers
//! still have (they send it again when asked at the next start).
//!
//! Off by default: a caller that does not call `write_deferred_states` (the engine's own
//! tests, the harness) keeps "state on disk when the operation returns".

use super::engine::SyncEngine;
use super::share_id::ShareId;
use super::Action;

/// Which held shares' states wait to be written.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    on: bool,
    due: Vec<ShareId>,
}

impl Deferred {
    /// Notes that `id`'s state is due; false (write it now) when deferral is off.
    pub(crate) fn defer(&mut self, id: &ShareId) -> bool {
        if self.on && !self.due.contains(id) {
            self.due.push(id.clone());
        }
        self.on
    }

    /// `id`'s state was written (with everything a deferred write would add).
    pub(crate) fn written(&mut self, id: &ShareId) {
        self.due.retain(|d| d != id);
    }
}

impl SyncEngine {
    /// Turns deferral of held shares' state writes on or off (see the [module
    /// documentation](self)). Whoever turns it on calls [`SyncEngine::write_deferred_states`]
    /// after every operation, once its events are out.
    pub fn defer_held_state_writes(&mut self, on: bool) {
        self.deferred.on = on;
    }

    /// Writes the states deferred so far; returns the actions of those that failed (the usual
    /// write-failed reports, retried like any other).
    pub fn write_deferred_states(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for id in std::mem::take(&mut self.deferred.due) {
            // A share given up meanwhile has no state left to write.
            if let Ok(actions) = self.write_state_or_report(&id) {
                out.extend(actions);
            }
        }
        out
    }
}
