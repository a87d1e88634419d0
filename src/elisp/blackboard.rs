//! The blackboard's naming rule, for Elisp: the share URL of a peer's blackboard
//! (`crate::sync::ShareId::blackboard`).

use super::convert::CallTimer;
use super::errors::{guard, signal, Kind};
use crate::sync::ShareId;
use emacs::{defun, Env, Result};

/// Return the share URL of the blackboard of PEER-ID, canvasl://PEER-ID/blackboard.org.
///
/// Signals an error when PEER-ID is not 64 lowercase hex characters.
#[defun(name = "-blackboard-share-url")]
fn blackboard_share_url(env: &Env, peer_id: String) -> Result<String> {
    let _t = CallTimer::start("blackboard-share-url");
    guard(env, || match ShareId::blackboard(&peer_id) {
        Ok(id) => Ok(id.url()),
        Err(e) => signal(env, Kind::Sync, e.to_string()),
    })
}
