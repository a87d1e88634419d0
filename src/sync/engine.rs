//! [`SyncEngine`]: the shares of one peer, their files and merge state, and the operations the
//! Emacs glue calls. Received events are handled in `super::inbound`; keeping files and state
//! in agreement is in `super::files`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use crate::federation::protocol::is_peer_id;
use crate::merge::{Conflict, SharedDoc};

use super::action::{Action, Refusals, SyncError};
use super::chunk::{Reassembler, ReassemblyLimits};
use super::share_id::{check_share_name, ShareId, SHARE_SCHEME};
use super::store::{read_file, sha256, ManifestEntry, StateFile, StateMeta, Store};
use super::wire::Of;
use super::SyncConfig;

/// What [`SyncEngine::shares`] tells about one share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    /// What needs no look at its text (as [`SyncEngine::share_list`] gives it).
    pub brief: ShareBrief,
    /// Lines in the document (0 if its state cannot be read).
    pub lines: usize,
    /// Bytes of the document's text.
    pub bytes: usize,
    /// Bytes of its state file.
    pub state_bytes: u64,
    /// Fields or lines written concurrently (see [`SyncEngine::conflicts`]).
    pub conflicts: usize,
}

/// What [`SyncEngine::share_list`] tells about one share: what needs no look at its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBrief {
    /// The share.
    pub share: ShareId,
    /// `canvasl://ORIGIN/NAME`.
    pub url: String,
    /// The synced file.
    pub path: PathBuf,
    /// Whether we are its origin.
    pub local: bool,
    /// False once unshared.
    pub active: bool,
}

/// A loaded share.
pub(crate) struct Live {
    pub(crate) doc: SharedDoc,
    pub(crate) state: StateFile,
    /// (length, modification time, inode) of the file when the engine last read or wrote it.
    pub(crate) stamp: Option<(u64, std::time::SystemTime, u64)>,
    /// The file's bytes as the engine last wrote or read them, with their SHA-256: the old
    /// text of the hunks of the next [`Action::Updated`]. `None` until known.
    pub(crate) written: Option<([u8; 32], Vec<u8>)>,
    /// Which text `written` is: a number that changes whenever it does, so that a buffer can
    /// say which text it started from (see `super::save`).
    pub(crate) version: u64,
    /// The buffer save (its sequence number) whose text `written` is, when the engine wrote
    /// it for the buffer (see `super::save`).
    pub(crate) saved_seq: Option<u64>,
    /// The merged text of a held share, rendered by the session's worker and offered to the
    /// buffer visiting the file (see `super::save`): written when the buffer shows it.
    pub(crate) offered: Option<super::save::Offered>,
    /// The hash states of the text of the last buffer save, for the next one's hash (see
    /// `super::midstate`); of whichever text its hash says.
    pub(crate) midstates: Option<super::midstate::Midstates>,
}

impl Live {
    /// A share just loaded, created or received.
    pub(crate) fn new(
        doc: SharedDoc,
        state: StateFile,
        stamp: Option<(u64, std::time::SystemTime, u64)>,
        written: Option<([u8; 32], Vec<u8>)>,
    ) -> Live {
        Live {
            doc,
            state,
            stamp,
            written,
            version: super::save::next_version(),
            saved_seq: None,
            offered: None,
            midstates: None,
        }
    }

    /// The engine now knows the file as `text` (SHA-256 `hash`): a new version unless it is
    /// the text it knew already. An offer made from the old text is dropped with it.
    pub(crate) fn set_written(&mut self, hash: [u8; 32], text: Vec<u8>) {
        if self.written.as_ref().is_some_and(|(h, _)| *h == hash) {
            self.written = Some((hash, text));
            return;
        }
        self.written = Some((hash, text));
        self.version = super::save::next_version();
        self.saved_seq = None;
        self.offered = None;
    }
}

pub(crate) struct Share {
    pub(crate) entry: ManifestEntry,
    pub(crate) live: Option<Live>,
    /// Remote changes are not written to the file until it is saved (see
    /// [`SyncEngine::hold_writes`]). Not persisted.
    pub(crate) held: bool,
}

/// The sync engine of one peer. See the [module documentation](super).
pub struct SyncEngine {
    pub(crate) me: String,
    pub(crate) actor: [u8; 32],
    pub(crate) config: SyncConfig,
    pub(crate) store: Store,
    pub(crate) shares: BTreeMap<ShareId, Share>,
    pub(crate) reassembler: Reassembler,
    pub(crate) refusals: Refusals,
    /// Last automatic request per (share, addressee): our heads then, and when.
    pub(crate) requests: HashMap<(ShareId, Option<String>), (Vec<u8>, u64)>,
    /// Last whole-document response per (share, requester), when.
    pub(crate) full_responses: HashMap<(ShareId, String), u64>,
    /// How each share is doing (see `super::health`).
    pub(crate) health: HashMap<ShareId, super::health::Health>,
    /// Warnings not tied to an operation's answer (see [`SyncEngine::take_notices`]).
    pub(crate) notices: Vec<Action>,
    /// Write failures so far (to tell whether a retry failed again).
    pub(crate) write_failures_seen: u64,
    /// Memberships and origin authority (see `super::members`).
    pub(crate) members: super::members::Registry,
    /// Keys of the shares with members (see `super::share_key`).
    pub(crate) keys: super::share_key::KeyRing,
    /// Merge states of held shares still to write (see `super::deferred`).
    pub(crate) deferred: super::deferred::Deferred,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("me", &self.me)
            .field("shares", &self.shares.len())
            .finish()
    }
}

pub(crate) fn stamp_of(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    let m = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.len(), m.modified().ok()?, ino))
}

impl SyncEngine {
    /// Opens the engine of peer `identity_peer_id` (64 lowercase hex), whose CRDT actor is
    /// `actor` (stable per peer, e.g. derived from its key; never shared by two running peers).
    /// Creates both directories (0700) and reads the manifest; shares are loaded on first use
    /// (call [`SyncEngine::startup`] next). Default settings ([`SyncConfig::default`]).
    pub fn open(
        sync_dir: &Path,
        state_dir: &Path,
        identity_peer_id: &str,
        actor: [u8; 32],
    ) -> Result<SyncEngine, SyncError> {
        SyncEngine::open_with(
            sync_dir,
            state_dir,
            identity_peer_id,
            actor,
            SyncConfig::default(),
        )
    }

    /// [`SyncEngine::open`] with settings.
    pub fn open_with(
        sync_dir: &Path,
        state_dir: &Path,
        identity_peer_id: &str,
        actor: [u8; 32],
        config: SyncConfig,
    ) -> Result<SyncEngine, SyncError> {
        if !is_peer_id(identity_peer_id) {
            return Err(SyncError::BadPeerId(identity_peer_id.to_string()));
        }
        config.check()?;
        let store = Store::open(sync_dir, state_dir)?;
        let mut shares = BTreeMap::new();
        let (entries, manifest_notice) = super::recover::load_manifest(&store, identity_peer_id)?;
        for mut entry in entries {
            if entry.share.origin() != identity_peer_id {
                // Never trust a stored path for a share from the network.
                entry.path = store.remote_path_lexical(&entry.share);
            }
            shares.insert(
                entry.share.clone(),
                Share {
                    entry,
                    live: None,
                    held: false,
                },
            );
        }
        let reassembler = Reassembler::new(ReassemblyLimits {
            max_buffered: config.max_buffered_bytes,
            max_transfers: config.max_transfers,
            max_age_secs: config.chunk_max_age_secs,
        });
        let mut engine = SyncEngine {
            me: identity_peer_id.to_string(),
            actor,
            config,
            store,
            shares,
            reassembler,
            refusals: Refusals::default(),
            requests: HashMap::new(),
            full_responses: HashMap::new(),
            health: HashMap::new(),
            notices: manifest_notice
                .map(|message| Action::Warning {
                    share: None,
                    message,
                })
                .into_iter()
                .collect(),
            write_failures_seen: 0,
            members: super::members::Registry::default(),
            keys: super::share_key::KeyRing::default(),
            deferred: Default::default(),
        };
        engine.load_members()?;
        engine.load_keys()?;
        Ok(engine)
    }

    /// Our peer id.
    pub fn peer_id(&self) -> &str {
        &self.me
    }

    /// The settings.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The directory holding the files of shares from other peers (canonical).
    pub fn sync_dir(&self) -> &Path {
        self.store.sync_dir()
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Unfinished chunked payloads: how many, and the bytes they reserve.
    pub fn reassembly_status(&self) -> (usize, u64) {
        (self.reassembler.pending(), self.reassembler.buffered())
    }

    /// The file of `share`, if it is known.
    pub fn share_path(&self, share: &ShareId) -> Option<&Path> {
        self.shares.get(share).map(|s| s.entry.path.as_path())
    }

    /// The share named by `share_or_path`: a `canvasl://` URL, or the path of a shared file.
    pub fn resolve(&self, share_or_path: &str) -> Result<ShareId, SyncError> {
        if share_or_path.starts_with(SHARE_SCHEME) {
            let id = ShareId::parse(share_or_path)?;
            return if self.shares.contains_key(&id) {
                Ok(id)
            } else {
                Err(SyncError::UnknownShare(share_or_path.to_string()))
            };
        }
        let want = normalize(Path::new(share_or_path));
        self.shares
            .values()
            .find(|s| s.entry.path == want || normalize(&s.entry.path) == want)
            .map(|s| s.entry.share.clone())
            .ok_or_else(|| SyncError::UnknownShare(share_or_path.to_string()))
    }

    // ---- Operations. ----

    /// Starts sharing the file at `path` as `name` (default: its file name, which must then be
    /// a valid share name): imports it, saves the state and announces the whole document (a
    /// change with `full: true`), so that peers create the file. Sharing a file that was
    /// unshared resumes it.
    pub fn share(
        &mut self,
        path: &Path,
        name: Option<&str>,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let known = fs::canonicalize(path)
            .ok()
            .is_some_and(|c| self.shares.values().any(|s| s.entry.path == c));
        if self.members.has_signer() && !known {
            // A new share: its membership, signed by us, is the whole federation (see
            // `super::members`). A known one resumes with the membership it has.
            return self.share_with_members(path, name, None, now);
        }
        self.share_announcing(path, name, now, true)
    }

    /// [`SyncEngine::share`]; `announce` false leaves out the announcement of the whole
    /// document (a share with members is offered to each of them instead).
    pub(crate) fn share_announcing(
        &mut self,
        path: &Path,
        name: Option<&str>,
        now: u64,
        announce: bool,
    ) -> Result<Vec<Action>, SyncError> {
        let canon = fs::canonicalize(path).map_err(|e| SyncError::io("open", path, e))?;
        if !fs::metadata(&canon)
            .map_err(|e| SyncError::io("open", &canon, e))?
            .is_file()
        {
            return Err(SyncError::UnsafePath {
                path: canon,
                detail: "only regular files can be shared".into(),
            });
        }
        if let Some(s) = self.shares.values().find(|s| s.entry.path == canon) {
            let id = s.entry.share.clone();
            if !s.entry.unshared {
                return Err(SyncError::AlreadyShared {
                    path: canon,
                    share: id,
                });
            }
            if name.is_some_and(|n| n != id.name()) {
                return Err(SyncError::AlreadyShared {
                    path: canon,
                    share: id,
                });
            }
            return self.resume(&id, now);
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => canon
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
        };
        check_share_name(&name)?;
        let id = ShareId::new(&self.me, &name)?;
        if self.shares.contains_key(&id) {
            return Err(SyncError::NameTaken(id));
        }
        if let Some(other) = self.colliding_share(&id) {
            return Err(SyncError::NameTaken(other));
        }
        if self.has_orphan_state(&id) {
            // Its entry was lost with a damaged manifest: resume its history.
            self.shares.insert(
                id.clone(),
                Share {
                    entry: ManifestEntry {
                        share: id.clone(),
                        path: canon,
                        unshared: true,
                    },
                    live: None,
                    held: false,
                },
            );
            return self.resume(&id, now);
        }
        let bytes = read_file(&canon)?
            .ok_or_else(|| SyncError::io("read", &canon, std::io::ErrorKind::NotFound.into()))?;
        let file_hash = sha256(&bytes);
        let doc = SharedDoc::import(&bytes, self.actor)
            .map(|d| d.with_kind(id.kind()))
            .map_err(|e| SyncError::merge(canon.display().to_string(), e))?;
        let saved = doc.save();
        if saved.len() > self.config.max_payload_bytes {
            return Err(SyncError::TooLarge {
                what: format!("the merge state of {}", canon.display()),
                size: saved.len(),
                limit: self.config.max_payload_bytes,
            });
        }
        // The announcement must be sendable before anything is written.
        let actions = self.data_actions(&id, Of::Change, true, &saved, Vec::new())?;
        let actions = if announce { actions } else { Vec::new() };
        let state = StateFile {
            meta: StateMeta {
                heads: doc.heads(),
                file_sha256: file_hash,
                pending_sha256: None,
            },
            base: saved,
            tail: Vec::new(),
            persisted: Default::default(),
        };
        self.store.write_state(&id, &state)?;
        let entry = ManifestEntry {
            share: id.clone(),
            path: canon.clone(),
            unshared: false,
        };
        self.shares.insert(
            id.clone(),
            Share {
                entry,
                live: Some(Live::new(
                    doc,
                    state,
                    stamp_of(&canon),
                    Some((file_hash, bytes)),
                )),
                held: false,
            },
        );
        if let Err(e) = self.write_manifest() {
            self.shares.remove(&id);
            return Err(e);
        }
        Ok(actions)
    }

    pub(super) fn resume(&mut self, id: &ShareId, now: u64) -> Result<Vec<Action>, SyncError> {
        if let Some(s) = self.shares.get_mut(id) {
            s.entry.unshared = false;
        }
        self.write_manifest()?;
        let mut out = self.absorb_file(id)?;
        if id.origin() == self.me && self.announced_to_all(id) {
            let saved = self.live(id)?.doc.save();
            out.extend(self.data_actions(id, Of::Change, true, &saved, Vec::new())?);
        }
        out.extend(self.request(id, None, now, true));
        Ok(out)
    }

    /// Stops syncing a share: its file and state are kept, events about it are ignored.
    /// [`SyncEngine::share`] on its file resumes it.
    pub fn unshare(&mut self, share_or_path: &str) -> Result<Vec<Action>, SyncError> {
        let id = self.resolve(share_or_path)?;
        if let Some(s) = self.shares.get_mut(&id) {
            if s.entry.unshared {
                return Err(SyncError::Unshared(id));
            }
            s.entry.unshared = true;
            s.live = None;
        }
        self.requests.retain(|(s, _), _| *s != id);
        self.write_manifest()?;
        Ok(Vec::new())
    }

    /// Every share, without sizes: cheap (no share is loaded, no text is looked at), for
    /// callers that need only the URL, file, origin and whether it is synced.
    pub fn share_list(&self) -> Vec<ShareBrief> {
        self.shares
            .iter()
            .map(|(id, s)| ShareBrief {
                share: id.clone(),
                url: id.url(),
                path: s.entry.path.clone(),
                local: id.origin() == self.me,
                active: !s.entry.unshared,
            })
            .collect()
    }

    /// Every share, with sizes. Loads shares not loaded yet (those that cannot be read show 0
    /// lines). The sizes are those the documents keep ([`SharedDoc::figures`]), made ready by
    /// [`SyncEngine::warm_figures`] after each change, so this walks no text unless a document
    /// changed on this thread since.
    pub fn shares(&mut self) -> Vec<ShareInfo> {
        self.share_list()
            .into_iter()
            .map(|b| {
                let (lines, bytes, conflicts) = match b.active.then(|| self.live(&b.share)) {
                    Some(Ok(l)) => {
                        let f = l.doc.figures();
                        (l.doc.line_count(), f.text_len, f.conflicts)
                    }
                    _ => (0, 0, 0),
                };
                ShareInfo {
                    state_bytes: self.store.state_size(&b.share),
                    brief: b,
                    lines,
                    bytes,
                    conflicts,
                }
            })
            .collect()
    }

    /// Computes the [`SharedDoc::figures`] of every loaded share whose text changed since they
    /// were last computed (a walk of its lines; nothing for the others). The session's worker
    /// calls it after the work that changed them, so that [`SyncEngine::shares`] on Emacs'
    /// thread finds them ready. Returns how many documents it computed.
    pub fn warm_figures(&self) -> usize {
        let mut counted = 0;
        for l in self.shares.values().filter_map(|s| s.live.as_ref()) {
            if !l.doc.figures_ready() {
                l.doc.figures();
                counted += 1;
            }
        }
        counted
    }

    /// The user saved the file of a share (`share_or_path`: URL or file path): applies it as a
    /// local edit relative to the text the file was based on, saves, writes the file back if
    /// the merge or re-serialization changed it, and publishes the change. Nothing happens if
    /// the file did not change. A missing file is written again from the state.
    pub fn local_file_changed(
        &mut self,
        share_or_path: &str,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let _ = now;
        let id = self.active(share_or_path)?;
        if let Some(s) = self.shares.get_mut(&id) {
            s.held = false;
        }
        self.absorb_file(&id)
    }

    /// While `hold` is true, changes from peers are merged and saved but not written to the
    /// share's file: call it when the user starts modifying a buffer visiting the file, so the
    /// file does not change under the buffer. The next save ([`SyncEngine::local_file_changed`])
    /// is then merged relative to the text the buffer was based on (the three-way rule), both
    /// sides' edits survive, the merged file is written and the hold ends. `hold = false` (the
    /// buffer was reverted or killed unmodified) writes what was held back. Holds are not
    /// persisted: [`SyncEngine::startup`] writes every file.
    pub fn hold_writes(
        &mut self,
        share_or_path: &str,
        hold: bool,
    ) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        if let Some(s) = self.shares.get_mut(&id) {
            s.held = hold;
        }
        if hold {
            Ok(Vec::new())
        } else {
            self.absorb_released(&id)
        }
    }

    /// Loads every share and brings each file and state into agreement: a file edited while
    /// the engine was closed is taken in as a local edit (and published), a missing file is
    /// written again. Then asks the peers for what we missed (one request per share). Problems
    /// with one share become [`Action::Warning`]s; the others go on.
    pub fn startup(&mut self, now: u64) -> Result<Vec<Action>, SyncError> {
        let mut out = Vec::new();
        let ids: Vec<ShareId> = self
            .shares
            .values()
            .filter(|s| !s.entry.unshared)
            .map(|s| s.entry.share.clone())
            .collect();
        for id in ids {
            match self.absorb_file(&id) {
                Ok(a) => out.extend(a),
                Err(e) => {
                    let message = e.to_string();
                    self.note_error(&id, &message);
                    out.push(Action::Warning {
                        share: Some(id.clone()),
                        message,
                    });
                    continue;
                }
            }
            out.extend(self.request(&id, None, now, true));
        }
        Ok(out)
    }

    /// Asks the peers for what we miss, for one share (`Some(URL or path)`) or all.
    pub fn catch_up(
        &mut self,
        share_or_all: Option<&str>,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let ids = match share_or_all {
            Some(s) => vec![self.active(s)?],
            None => self
                .shares
                .values()
                .filter(|s| !s.entry.unshared)
                .map(|s| s.entry.share.clone())
                .collect(),
        };
        let mut out = Vec::new();
        for id in ids {
            self.live(&id)?;
            out.extend(self.request(&id, None, now, true));
        }
        Ok(out)
    }

    /// Tells a peer that just came online about the shares we started: a request addressed
    /// to it with our heads. A peer that has the share answers with what we lack (usually
    /// nothing); a peer that has never heard of it asks us for the whole document. So a
    /// newcomer learns every share whose origin is online, and a returning peer costs one
    /// small request per share.
    pub fn offer(&mut self, to_peer: &str, now: u64) -> Vec<Action> {
        if !is_peer_id(to_peer) || to_peer == self.me {
            return Vec::new();
        }
        let ids: Vec<ShareId> = self
            .shares
            .values()
            .filter(|s| !s.entry.unshared && s.entry.share.origin() == self.me)
            .map(|s| s.entry.share.clone())
            .filter(|id| self.offer_allowed(id, to_peer))
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if self.live(&id).is_ok() {
                // A member that was away when it was added gets the key first.
                out.extend(self.key_for_member(&id, to_peer));
                out.extend(self.request(&id, Some(to_peer), now, false));
            }
        }
        out
    }

    /// Fields or lines of a share written concurrently by several peers, with the value every
    /// peer shows.
    pub fn conflicts(&mut self, share_or_path: &str) -> Result<Vec<Conflict>, SyncError> {
        let id = self.active(share_or_path)?;
        Ok(self.live(&id)?.doc.conflicts())
    }

    // ---- Internals shared with `inbound`. ----

    /// The share, which must be active.
    pub(crate) fn active(&self, share_or_path: &str) -> Result<ShareId, SyncError> {
        let id = self.resolve(share_or_path)?;
        match self.shares.get(&id) {
            Some(s) if s.entry.unshared => Err(SyncError::Unshared(id)),
            _ => Ok(id),
        }
    }

    pub(crate) fn write_manifest(&self) -> Result<(), SyncError> {
        self.store
            .write_manifest(self.shares.values().map(|s| &s.entry))
    }

    /// The file of a share, re-checked for shares from the network.
    pub(crate) fn file_path(&self, id: &ShareId) -> Result<PathBuf, SyncError> {
        if id.origin() == self.me {
            self.shares
                .get(id)
                .map(|s| s.entry.path.clone())
                .ok_or_else(|| SyncError::UnknownShare(id.url()))
        } else {
            self.store.remote_path(id)
        }
    }
}

/// An absolute path with symbolic links resolved as far as it exists.
fn normalize(p: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(p) {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}
