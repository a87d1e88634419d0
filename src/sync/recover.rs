//! Damaged or missing sync state: nothing is thrown away, no edit is lost, and sync goes on.
//!
//! * A share's merge state (`ORIGIN/NAME.automerge`) that cannot be read, or is missing, is
//!   renamed aside (`….damaged-TIMESTAMP`) and the share is **rebuilt**: an empty replica
//!   (never a fresh import, which would give peers a second, unrelated copy of every line)
//!   plus a marker file `NAME.automerge.rebuilding`. The local file is left alone and counts
//!   as this peer's edits. The catch-up request that follows brings the peers' version; the
//!   file is then applied relative to the version of that history closest to it
//!   (`SharedDoc::closest_version`), so edits made on both sides survive, and the merge is
//!   published and written. Until a peer answers, nothing is written to the file.
//! * A damaged manifest (`shares.json`) is renamed aside and rebuilt from the state files,
//!   the manifest's backup (`shares.json.bak`) and whatever can still be read of the damaged
//!   one. A missing manifest beside state files is rebuilt the same way. Shares of this peer
//!   whose file cannot be located are named in the warning; sharing the file again adopts the
//!   state that is still there.
//!
//! Each case gives one [`Action::Warning`] (through [`SyncEngine::take_notices`]) that says
//! what happened and what was kept where; the renamed file is not read again, so the warning
//! is not repeated.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use crate::merge::SharedDoc;

use super::action::{Action, SyncError};
use super::engine::SyncEngine;
use super::health::Rebuild;
use super::share_id::ShareId;
use super::store::{
    keep_aside, read_file, salvage_manifest, sha256, write_file, ManifestEntry, StateFile,
    StateMeta, Store,
};
use super::wire::Of;

/// Versions of the history compared with the local file to find its base when rebuilding.
const BASE_CANDIDATES: usize = 256;

impl SyncEngine {
    /// Loads a share's state, or rebuilds it if it is damaged or missing (see the module
    /// documentation). I/O errors other than a missing file are returned: the file may be
    /// fine.
    pub(crate) fn load_or_rebuild(
        &mut self,
        id: &ShareId,
    ) -> Result<(SharedDoc, StateFile), SyncError> {
        let loaded = self.store.read_state(id).and_then(|state| {
            SharedDoc::load(&state.crdt_bytes(), self.actor)
                .map(|doc| (doc.with_kind(id.kind()), state))
                .map_err(|e| SyncError::Corrupt {
                    path: self.store.state_path(id).unwrap_or_default(),
                    detail: e.to_string(),
                })
        });
        match loaded {
            Ok(x) => {
                // A rebuild interrupted by a restart goes on.
                let marker = self.store.rebuild_marker(id)?;
                if let Some(kept) = read_file(&marker)? {
                    let kept = String::from_utf8_lossy(&kept).into_owned();
                    self.health_mut(id).rebuild = Some(Rebuild {
                        kept: (!kept.is_empty()).then(|| PathBuf::from(kept)),
                        done: false,
                    });
                }
                Ok(x)
            }
            Err(SyncError::Corrupt { path, detail }) => self.rebuild(id, path, detail),
            Err(e) => Err(e),
        }
    }

    fn rebuild(
        &mut self,
        id: &ShareId,
        state_path: PathBuf,
        detail: String,
    ) -> Result<(SharedDoc, StateFile), SyncError> {
        let missing = fs::symlink_metadata(&state_path).is_err();
        let kept = keep_aside(&state_path)?;
        // Its log goes with it (the rebuilt state starts a new one); kept for inspection only.
        let _ = keep_aside(&state_path.with_extension("automerge.log"));
        let file = self.file_path(id)?;
        let bytes = read_file(&file)?;
        let doc = SharedDoc::new(self.actor).with_kind(id.kind());
        let state = StateFile {
            meta: StateMeta {
                heads: Vec::new(),
                file_sha256: bytes.as_deref().map(sha256).unwrap_or([0; 32]),
                pending_sha256: None,
            },
            base: doc.save(),
            tail: Vec::new(),
            persisted: Default::default(),
        };
        self.health_mut(id).rebuild = Some(Rebuild {
            kept: kept.clone(),
            done: false,
        });
        // The marker first: a state without it would be taken for an ordinary empty replica,
        // and the peers' version would then be written over the local file.
        let marker = self.store.rebuild_marker(id)?;
        let kept_text = kept
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut failures = Vec::new();
        if let Err(e) = write_file(&marker, kept_text.as_bytes()) {
            failures.push(e);
        } else if let Err(e) = self.store.write_state(id, &state) {
            failures.push(e);
        }
        let what = if missing {
            format!("its merge state {} was missing", state_path.display())
        } else {
            format!(
                "its merge state was damaged ({detail}); it was kept aside as {}",
                kept.as_ref().map_or_else(
                    || state_path.display().to_string(),
                    |p| p.display().to_string()
                )
            )
        };
        let then = if bytes.is_some() {
            format!(
                "The share is rebuilt from {}, whose content counts as this Emacs' edits: it \
                 is merged with the other peers' version as soon as one of them answers \
                 (the file is not overwritten before)",
                file.display()
            )
        } else {
            format!(
                "{} is missing too: the share is filled from the other peers' version as soon \
                 as one of them answers",
                file.display()
            )
        };
        self.notices.push(Action::Warning {
            share: Some(id.clone()),
            message: format!("{what}. {then}."),
        });
        for e in failures {
            let a = self.write_failed(id, e)?;
            self.notices.push(a);
        }
        Ok((doc, state))
    }

    /// Ends a rebuild once the peers' version is here: applies the local file relative to the
    /// closest version of that history, publishes the result and writes the merged file.
    /// Nothing happens while the replica has not received the document, or while the file is
    /// held (the save that ends the hold finishes it).
    pub(crate) fn finish_rebuild(&mut self, id: &ShareId) -> Result<Vec<Action>, SyncError> {
        let path = self.file_path(id)?;
        let held = self.shares.get(id).is_some_and(|s| s.held);
        let live = self.live(id)?;
        if !live.doc.is_joined() || held {
            if let Some(b) = read_file(&path)? {
                live.state.meta.file_sha256 = sha256(&b);
            }
            live.stamp = super::engine::stamp_of(&path);
            return Ok(Vec::new());
        }
        let bytes = read_file(&path)?;
        let mut out = Vec::new();
        let mut change = None;
        if let Some(b) = &bytes {
            let base = live
                .doc
                .closest_version(b, BASE_CANDIDATES)
                .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
            change = live
                .doc
                .apply_local_text_based_on(&base, b)
                .map_err(|e| SyncError::merge(format!("{} ({})", id, path.display()), e))?;
        }
        if let Some(c) = &change {
            out.extend(self.data_actions(id, Of::Change, false, c, Vec::new())?);
        }
        if let Some(r) = self.health_mut(id).rebuild.as_mut() {
            r.done = true;
        }
        let written = self.save_and_write(id, None, true, bytes.as_deref().map(sha256))?;
        let failed = written
            .iter()
            .any(|a| matches!(a, Action::WriteFailed { .. }));
        out.extend(written);
        if failed {
            // The marker stays until the merged state is on disk (the retry writes it).
            if let Some(r) = self.health_mut(id).rebuild.as_mut() {
                r.done = false;
            }
        } else {
            let marker = self.store.rebuild_marker(id)?;
            let _ = fs::remove_file(marker);
        }
        Ok(out)
    }

    /// The share `id` of this peer has a state file but is not in the manifest (it was lost
    /// with a damaged manifest): sharing its file again adopts that state instead of starting a
    /// second, unrelated history.
    pub(crate) fn has_orphan_state(&self, id: &ShareId) -> bool {
        !self.shares.contains_key(id)
            && self
                .store
                .state_path(id)
                .is_ok_and(|p| fs::symlink_metadata(p).is_ok())
    }
}

/// Reads the manifest, rebuilding it if it is damaged, or missing beside state files (see the
/// module documentation). Returns the entries and the warning to give, if any.
pub(crate) fn load_manifest(
    store: &Store,
    me: &str,
) -> Result<(Vec<ManifestEntry>, Option<String>), SyncError> {
    let path = store.manifest_path();
    let exists = fs::symlink_metadata(&path).is_ok();
    let (damage, damaged_bytes) = match store.read_manifest() {
        Ok(entries) if exists => return Ok((entries, None)),
        Ok(_) => {
            if store.state_files().is_empty() {
                return Ok((Vec::new(), None));
            }
            (None, None)
        }
        Err(SyncError::Corrupt { detail, .. }) => (Some(detail), read_file(&path)?),
        Err(e) => return Err(e),
    };
    let kept = match damage {
        Some(_) => keep_aside(&path)?,
        None => None,
    };
    let backup = store
        .read_manifest_at(&store.manifest_backup_path())
        .unwrap_or_default();
    let salvaged = damaged_bytes
        .map(|b| salvage_manifest(&b))
        .unwrap_or_default();
    let known = |id: &ShareId| {
        salvaged
            .iter()
            .chain(backup.iter())
            .find(|e| e.share == *id)
    };
    let ids: BTreeSet<ShareId> = store
        .state_files()
        .into_iter()
        .chain(salvaged.iter().map(|e| e.share.clone()))
        .chain(backup.iter().map(|e| e.share.clone()))
        .collect();
    let mut entries = Vec::new();
    let mut lost = Vec::new();
    for id in ids {
        let found = known(&id);
        let path = if id.origin() != me {
            store.remote_path_lexical(&id)
        } else if let Some(e) = found {
            e.path.clone()
        } else {
            lost.push(id.url());
            continue;
        };
        entries.push(ManifestEntry {
            unshared: found.is_some_and(|e| e.unshared),
            share: id,
            path,
        });
    }
    let saved = store.write_manifest(entries.iter());
    let mut message = match (&damage, &kept) {
        (Some(detail), Some(k)) => format!(
            "the list of shared files {} was damaged ({detail}); it was kept aside as {}",
            path.display(),
            k.display()
        ),
        _ => format!("the list of shared files {} was missing", path.display()),
    };
    message.push_str(&format!(
        ". It was rebuilt from the merge states{}: {} share(s){}",
        if backup.is_empty() {
            ""
        } else {
            " and its backup"
        },
        entries.len(),
        if entries.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                entries
                    .iter()
                    .map(|e| e.share.url())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    if !lost.is_empty() {
        message.push_str(&format!(
            ". The file of {} could not be located: share that file again \
             to resume it with its history",
            lost.join(", ")
        ));
    }
    if let Err(e) = saved {
        message.push_str(&format!(
            ". The rebuilt list could not be saved ({e}); it is rebuilt again at the next start"
        ));
    }
    Ok((entries, Some(message)))
}
