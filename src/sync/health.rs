//! How each share is doing, for the person: rebuilt or healthy, when data last went out and
//! came in, and writes that failed ([`SyncEngine::status`]). Failed writes are remembered here
//! and retried by [`SyncEngine::retry_writes`] until they succeed, so a full disk or a
//! permission problem costs no edit and needs no further remote edit to heal.

use std::path::PathBuf;

use serde::Deserialize;

use super::action::{Action, SyncError};
use super::engine::SyncEngine;
use super::share_id::ShareId;
use super::store::write_file;

/// Most recent errors kept per share.
const MAX_ERRORS: usize = 5;

/// The state of a share as [`SyncEngine::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareState {
    /// Its merge state loaded normally.
    Healthy,
    /// Its merge state was damaged or missing: it was rebuilt from the local file, which waits
    /// to be merged with the peers' version (nothing is written to the file until then).
    Rebuilding,
    /// Rebuilt, and merged with the peers' version (since the engine was opened).
    Rebuilt,
    /// Not synced any more.
    Unshared,
}

impl ShareState {
    /// A stable short name: `healthy`, `rebuilding`, `rebuilt`, `unshared`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareState::Healthy => "healthy",
            ShareState::Rebuilding => "rebuilding",
            ShareState::Rebuilt => "rebuilt",
            ShareState::Unshared => "unshared",
        }
    }
}

/// What [`SyncEngine::status`] tells about one share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareStatus {
    /// The share.
    pub share: ShareId,
    /// The synced file.
    pub path: PathBuf,
    /// Healthy, rebuilding, rebuilt or unshared.
    pub state: ShareState,
    /// Where a damaged merge state was kept aside, if it was.
    pub kept_aside: Option<PathBuf>,
    /// When data or a request about it was last published (caller's clock), if ever.
    pub last_sent: Option<u64>,
    /// When a peer's event about it was last taken in, if ever.
    pub last_received: Option<u64>,
    /// A write that failed and is being retried: the file and the error.
    pub pending_write: Option<(PathBuf, String)>,
    /// Failed attempts of that write so far.
    pub write_attempts: u32,
    /// The last few errors, oldest first.
    pub errors: Vec<String>,
}

/// A rebuild after the merge state was lost.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rebuild {
    /// Where the damaged state was kept aside (`None`: it was missing).
    pub(crate) kept: Option<PathBuf>,
    /// The peers' version was merged in.
    pub(crate) done: bool,
}

/// A write that failed.
#[derive(Debug, Clone)]
pub(crate) struct WriteFailure {
    pub(crate) path: PathBuf,
    pub(crate) message: String,
    pub(crate) attempts: u32,
}

/// Per-share health (not persisted, except a rebuild's marker file).
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    pub(crate) rebuild: Option<Rebuild>,
    pub(crate) last_sent: Option<u64>,
    pub(crate) last_received: Option<u64>,
    pub(crate) write_failure: Option<WriteFailure>,
    pub(crate) errors: Vec<String>,
}

#[derive(Deserialize)]
struct ShareOnly {
    share: String,
}

impl SyncEngine {
    pub(crate) fn health_mut(&mut self, id: &ShareId) -> &mut Health {
        self.health.entry(id.clone()).or_default()
    }

    /// Whether the share waits for the peers' version to finish a rebuild.
    pub(crate) fn is_rebuilding(&self, id: &ShareId) -> bool {
        self.health
            .get(id)
            .and_then(|h| h.rebuild.as_ref())
            .is_some_and(|r| !r.done)
    }

    /// Remembers an error about a share for [`SyncEngine::status`].
    pub(crate) fn note_error(&mut self, id: &ShareId, message: &str) {
        let errors = &mut self.health_mut(id).errors;
        errors.push(message.to_string());
        if errors.len() > MAX_ERRORS {
            errors.remove(0);
        }
    }

    /// A write of `id` failed with `error`: remembered for [`SyncEngine::retry_writes`] and
    /// reported as [`Action::WriteFailed`]. Other errors are returned as they are.
    pub(crate) fn write_failed(
        &mut self,
        id: &ShareId,
        error: SyncError,
    ) -> Result<Action, SyncError> {
        let SyncError::Io { path, .. } = &error else {
            return Err(error);
        };
        let path = path.clone();
        let message = error.to_string();
        self.write_failures_seen += 1;
        self.note_error(id, &message);
        let h = self.health_mut(id);
        let attempt = h.write_failure.as_ref().map_or(0, |f| f.attempts) + 1;
        h.write_failure = Some(WriteFailure {
            path: path.clone(),
            message: message.clone(),
            attempts: attempt,
        });
        Ok(Action::WriteFailed {
            share: id.clone(),
            path,
            message,
            attempt,
        })
    }

    /// A write of `id` succeeded: a failure remembered for it is over.
    pub(crate) fn write_succeeded(&mut self, id: &ShareId) {
        if let Some(h) = self.health.get_mut(id) {
            h.write_failure = None;
        }
    }

    /// How many shares have a write waiting to be retried.
    pub fn pending_writes(&self) -> usize {
        self.health
            .values()
            .filter(|h| h.write_failure.is_some())
            .count()
    }

    /// Retries every write that failed (see [`Action::WriteFailed`]): the merge state as it is
    /// in memory, then the file (taking in a save made meanwhile first, as always). A write
    /// that fails again gives another [`Action::WriteFailed`] with a higher `attempt`; call
    /// again later (with a backoff). Needs no event from a peer.
    pub fn retry_writes(&mut self, now: u64) -> Vec<Action> {
        let _ = now;
        let ids: Vec<ShareId> = self
            .health
            .iter()
            .filter(|(_, h)| h.write_failure.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if self.shares.get(&id).is_none_or(|s| s.entry.unshared) {
                self.write_succeeded(&id);
                continue;
            }
            let before = self.write_failures_seen;
            match self.retry_one(&id) {
                Ok(actions) => out.extend(actions),
                Err(e) => match self.write_failed(&id, e) {
                    Ok(a) => out.push(a),
                    Err(e) => {
                        let message = e.to_string();
                        self.note_error(&id, &message);
                        out.push(Action::Warning {
                            share: Some(id.clone()),
                            message,
                        });
                    }
                },
            }
            if self.write_failures_seen == before {
                self.write_succeeded(&id);
            }
        }
        out
    }

    fn retry_one(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        if let Some(r) = self
            .health
            .get(id)
            .and_then(|h| h.rebuild.clone())
            .filter(|r| !r.done)
        {
            let marker = self.store.rebuild_marker(id)?;
            let kept = r.kept.map(|p| p.to_string_lossy().into_owned());
            write_file(&marker, kept.unwrap_or_default().as_bytes())?;
        }
        self.live(id)?;
        if let Some(l) = self.shares.get(id).and_then(|s| s.live.as_ref()) {
            self.store.write_state(id, &l.state)?;
        }
        self.absorb_file(id)
    }

    fn share_of_content(&self, content: &str) -> Option<ShareId> {
        let s: ShareOnly = serde_json::from_str(content).ok()?;
        let id = ShareId::parse(&s.share).ok()?;
        self.shares.contains_key(&id).then_some(id)
    }

    /// The caller published an event with `content` at `now` (for [`ShareStatus::last_sent`]).
    pub fn note_published(&mut self, content: &str, now: u64) {
        if let Some(id) = self.share_of_content(content) {
            self.health_mut(&id).last_sent = Some(now);
        }
    }

    /// An event with `content` from a peer was taken in at `now` (for
    /// [`ShareStatus::last_received`]).
    pub fn note_received(&mut self, content: &str, now: u64) {
        if let Some(id) = self.share_of_content(content) {
            self.health_mut(&id).last_received = Some(now);
        }
    }

    /// What happened since the last call that is not the answer to an operation: a damaged
    /// or missing state or manifest found and rebuilt (one [`Action::Warning`] each, once).
    /// The caller should take them after every operation.
    pub fn take_notices(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.notices)
    }

    /// How every share is doing. Loads shares not loaded yet (which may rebuild a damaged
    /// one: see [`SyncEngine::take_notices`]).
    pub fn status(&mut self) -> Vec<ShareStatus> {
        let ids: Vec<ShareId> = self.shares.keys().cloned().collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(s) = self.shares.get(&id) else {
                continue;
            };
            let unshared = s.entry.unshared;
            let path = s.entry.path.clone();
            if !unshared {
                if let Err(e) = self.live(&id) {
                    let message = e.to_string();
                    if !self.health_mut(&id).errors.contains(&message) {
                        self.note_error(&id, &message);
                    }
                }
            }
            let h = self.health.get(&id).cloned().unwrap_or_default();
            let state = match &h.rebuild {
                _ if unshared => ShareState::Unshared,
                None => ShareState::Healthy,
                Some(r) if r.done => ShareState::Rebuilt,
                Some(_) => ShareState::Rebuilding,
            };
            out.push(ShareStatus {
                share: id,
                path,
                state,
                kept_aside: h.rebuild.and_then(|r| r.kept),
                last_sent: h.last_sent,
                last_received: h.last_received,
                write_attempts: h.write_failure.as_ref().map_or(0, |f| f.attempts),
                pending_write: h.write_failure.map(|f| (f.path, f.message)),
                errors: h.errors,
            });
        }
        out
    }
}
