//! [`SyncEngine::ask`]: ask one peer for one share now, whether we hold it or not (the
//! blackboard's `meta-log-federation-sync-blackboard PEER-ID`).

use crate::federation::protocol::is_peer_id;

use super::action::{Action, SyncError};
use super::engine::SyncEngine;
use super::share_id::ShareId;

impl SyncEngine {
    /// Sends `peer` a request for `share` (a `canvasl://` URL), addressed to it, now.
    ///
    /// * A share we hold: the request carries our heads, so `peer` answers with what we lack
    ///   (and asks back for what it lacks): a catch-up with that one peer.
    /// * A share we do not hold: the request carries no heads; if `peer` holds the share it
    ///   answers with the whole document, addressed to us, and we create the share from that
    ///   answer (a response is taken only from a peer we asked). A peer that does not hold the
    ///   share does not answer.
    ///
    /// Asking ourselves sends nothing. Errors: `share` is not a share URL, `peer` is not a peer
    /// id, the share was unshared here (share its file again to resume it).
    pub fn ask(&mut self, share: &str, peer: &str, now: u64) -> Result<Vec<Action>, SyncError> {
        let id = ShareId::parse(share)?;
        if !is_peer_id(peer) {
            return Err(SyncError::BadPeerId(peer.to_string()));
        }
        if peer == self.me {
            return Ok(Vec::new());
        }
        match self.shares.get(&id) {
            Some(s) if s.entry.unshared => return Err(SyncError::Unshared(id)),
            Some(_) => {
                self.live(&id)?;
            }
            None => {}
        }
        Ok(self
            .request(&id, Some(peer), now, true)
            .into_iter()
            .collect())
    }
}
