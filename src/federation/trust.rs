//! Which peers' events are accepted: the policy, the per-peer trust state,
//! and the trust store file.
//!
//! # Policies
//!
//! * [`TrustPolicy::Tofu`] (default): trust on first use. The first event
//!   from a new key pins it (with its display name once it announces one).
//!   If a display name already pinned or trusted for one key shows up with
//!   a **different** key, that key is held ([`TrustState::Conflict`]):
//!   nothing from it is accepted until the user trusts it, and the pipeline
//!   reports a loud [`Transition::KeyConflict`](super::Transition). Names are
//!   compared after trimming and lower-casing.
//! * [`TrustPolicy::Allowlist`]: only peers the user trusted explicitly.
//! * [`TrustPolicy::Open`]: everyone (still subject to signatures etc.).
//!
//! Under every policy a blocked peer is refused: blocking always wins.
//!
//! # File
//!
//! A small JSON file, written atomically (temporary file in the same
//! directory, mode 0600, fsync, rename):
//!
//! ```json
//! {
//!   "format": "meta-log-federation-trust-v1",
//!   "peers": {
//!     "<64-hex peer id>": { "state": "pinned", "name": "alice", "since": 1767225600 }
//!   }
//! }
//! ```
//!
//! `state` is `pinned`, `trusted`, `conflict` or `blocked`; `since` is when
//! the entry was created (Unix seconds). The policy is not stored: it is a
//! user option passed in [`Config`](super::Config).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::protocol::{is_peer_id, MAX_FIELD_BYTES};

/// The `format` value of trust store files.
pub const TRUST_FORMAT: &str = "meta-log-federation-trust-v1";

/// Trust store files larger than this are refused as corrupt.
pub const MAX_TRUST_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How unknown peers are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustPolicy {
    /// Trust on first use (default).
    #[default]
    Tofu,
    /// Only explicitly trusted peers.
    Allowlist,
    /// Everyone who is not blocked.
    Open,
}

impl TrustPolicy {
    /// `tofu`, `allowlist` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustPolicy::Tofu => "tofu",
            TrustPolicy::Allowlist => "allowlist",
            TrustPolicy::Open => "open",
        }
    }
}

impl FromStr for TrustPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tofu" => Ok(TrustPolicy::Tofu),
            "allowlist" => Ok(TrustPolicy::Allowlist),
            "open" => Ok(TrustPolicy::Open),
            _ => Err(format!(
                "unknown trust policy `{s}`: use tofu, allowlist or open"
            )),
        }
    }
}

/// What the user (or TOFU) decided about one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustState {
    /// Never seen (not stored).
    Unknown,
    /// Remembered on first use (TOFU).
    Pinned,
    /// Trusted explicitly by the user.
    Trusted,
    /// Held: its display name belongs to another key (TOFU).
    Conflict,
    /// Blocked by the user.
    Blocked,
}

impl TrustState {
    /// `unknown`, `pinned`, `trusted`, `conflict` or `blocked`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustState::Unknown => "unknown",
            TrustState::Pinned => "pinned",
            TrustState::Trusted => "trusted",
            TrustState::Conflict => "conflict",
            TrustState::Blocked => "blocked",
        }
    }
}

/// One stored peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustEntry {
    /// Its state (never `unknown`).
    pub state: TrustState,
    /// The display name it was pinned with, if it announced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the entry was created (Unix seconds).
    #[serde(default)]
    pub since: u64,
}

/// Why a trust store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Not a peer id.
    #[error("`{0}` is not a peer id (64 lowercase hex characters)")]
    InvalidPeerId(String),
    /// Reading or writing the file failed.
    #[error("trust store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a trust store.
    #[error("trust store {path} is damaged or not a trust store: {reason}; fix or move it away (peers will then be trusted anew)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The file's JSON.
#[derive(Serialize, Deserialize)]
struct TrustFile {
    format: String,
    #[serde(default)]
    peers: BTreeMap<String, TrustEntry>,
}

/// The outcome of a trust check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Accept; `pin` if the key should be remembered (TOFU).
    Accept { pin: bool },
    /// Refuse (`untrusted`), with an explanation.
    Untrusted(String),
    /// Refuse (`blocked`).
    Blocked,
    /// Refuse (`untrusted`) and hold the key: `name` belongs to `known`.
    Conflict { name: String, known: String },
}

/// Peer trust states, loaded from and saved to a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    peers: BTreeMap<String, TrustEntry>,
    dirty: bool,
}

fn norm(name: &str) -> String {
    name.trim().to_lowercase()
}

fn check_id(peer_id: &str) -> Result<(), TrustError> {
    if is_peer_id(peer_id) {
        Ok(())
    } else {
        Err(TrustError::InvalidPeerId(super::protocol::shorten(
            peer_id.to_string(),
        )))
    }
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Loads a store; a missing file gives an empty store. A damaged file
    /// is an error ([`TrustError::Corrupt`]), never a panic.
    pub fn load(path: &Path) -> Result<TrustStore, TrustError> {
        let io = |source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |reason: String| TrustError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustStore::new()),
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        f.take(MAX_TRUST_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_TRUST_FILE_BYTES {
            return Err(corrupt(format!("larger than {MAX_TRUST_FILE_BYTES} bytes")));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not UTF-8".into()))?;
        let file: TrustFile = serde_json::from_str(text)
            .map_err(|e| corrupt(super::protocol::shorten(e.to_string())))?;
        if file.format != TRUST_FORMAT {
            return Err(corrupt(super::protocol::shorten(format!(
                "format is `{}`, expected `{TRUST_FORMAT}`",
                file.format
            ))));
        }
        for (id, entry) in &file.peers {
            if !is_peer_id(id) {
                return Err(corrupt(super::protocol::shorten(format!(
                    "`{id}` is not a peer id"
                ))));
            }
            if entry.state == TrustState::Unknown {
                return Err(corrupt(format!("peer {id} has state `unknown`")));
            }
            if entry
                .name
                .as_ref()
                .is_some_and(|n| n.len() > MAX_FIELD_BYTES)
            {
                return Err(corrupt(format!("peer {id} has an overlong name")));
            }
        }
        Ok(TrustStore {
            peers: file.peers,
            dirty: false,
        })
    }

    /// Saves the store atomically (temporary file with mode 0600 in the same
    /// directory, fsync, rename), then marks it clean.
    pub fn save(&mut self, path: &Path) -> Result<(), TrustError> {
        let file = TrustFile {
            format: TRUST_FORMAT.to_string(),
            peers: self.peers.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Private like the identity file beside it.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| TrustError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        write_atomic(path, text.as_bytes()).map_err(|source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }

    /// Whether the store changed since it was loaded or saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The state of `peer_id` ([`TrustState::Unknown`] if not stored).
    pub fn state(&self, peer_id: &str) -> TrustState {
        self.peers
            .get(peer_id)
            .map_or(TrustState::Unknown, |e| e.state)
    }

    /// The stored entry of `peer_id`.
    pub fn entry(&self, peer_id: &str) -> Option<&TrustEntry> {
        self.peers.get(peer_id)
    }

    /// All stored entries, by peer id.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &TrustEntry)> {
        self.peers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many peers are stored.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is stored.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    fn set(&mut self, peer_id: &str, state: TrustState, now: u64) -> Result<(), TrustError> {
        check_id(peer_id)?;
        let e = self.peers.entry(peer_id.to_string()).or_insert(TrustEntry {
            state,
            name: None,
            since: now,
        });
        e.state = state;
        self.dirty = true;
        Ok(())
    }

    /// Trusts `peer_id` explicitly (adds it to the allowlist; releases a
    /// TOFU hold). A blocked peer becomes trusted.
    pub fn trust(&mut self, peer_id: &str, now: u64) -> Result<(), TrustError> {
        self.set(peer_id, TrustState::Trusted, now)
    }

    /// Blocks `peer_id`: nothing from it is accepted under any policy.
    pub fn block(&mut self, peer_id: &str, now: u64) -> Result<(), TrustError> {
        self.set(peer_id, TrustState::Blocked, now)
    }

    /// Forgets `peer_id` (removes it from the allowlist, unblocks it, and
    /// under TOFU lets it be pinned anew). Returns whether it was stored.
    pub fn untrust(&mut self, peer_id: &str) -> Result<bool, TrustError> {
        check_id(peer_id)?;
        let removed = self.peers.remove(peer_id).is_some();
        self.dirty |= removed;
        Ok(removed)
    }

    /// Decides about an event from `peer_id`, which announces display name
    /// `name` (presence events only). Changes nothing.
    pub(crate) fn check(
        &self,
        policy: TrustPolicy,
        peer_id: &str,
        name: Option<&str>,
        max_entries: usize,
    ) -> Verdict {
        let state = self.state(peer_id);
        if state == TrustState::Blocked {
            return Verdict::Blocked;
        }
        match policy {
            TrustPolicy::Open => Verdict::Accept { pin: false },
            TrustPolicy::Allowlist => {
                if state == TrustState::Trusted {
                    Verdict::Accept { pin: false }
                } else {
                    Verdict::Untrusted("the peer is not on the allowlist".into())
                }
            }
            TrustPolicy::Tofu => match state {
                TrustState::Trusted => Verdict::Accept { pin: true },
                TrustState::Conflict => Verdict::Untrusted(
                    "the peer's key is held: its display name belongs to another key; \
                     trust it explicitly if it is genuine"
                        .into(),
                ),
                _ => {
                    if let Some(known) = name.and_then(|n| self.name_owner(n, peer_id)) {
                        return Verdict::Conflict {
                            name: name.unwrap_or_default().to_string(),
                            known: known.to_string(),
                        };
                    }
                    if state == TrustState::Unknown && self.peers.len() >= max_entries {
                        return Verdict::Untrusted(format!(
                            "the trust store is full ({max_entries} peers); new peers are refused"
                        ));
                    }
                    Verdict::Accept { pin: true }
                }
            },
        }
    }

    /// Another pinned or trusted key that holds display name `name`.
    fn name_owner(&self, name: &str, peer_id: &str) -> Option<&str> {
        let n = norm(name);
        if n.is_empty() {
            return None;
        }
        self.peers
            .iter()
            .find(|(id, e)| {
                id.as_str() != peer_id
                    && matches!(e.state, TrustState::Pinned | TrustState::Trusted)
                    && e.name.as_deref().map(norm).as_deref() == Some(n.as_str())
            })
            .map(|(id, _)| id.as_str())
    }

    /// For a held key ([`TrustState::Conflict`]), the pinned or trusted key
    /// whose display name it claims (the key it would replace); `None` for
    /// any other entry, or when that key is gone.
    pub fn conflict_owner(&self, peer_id: &str) -> Option<&str> {
        let e = self.peers.get(peer_id)?;
        if e.state != TrustState::Conflict {
            return None;
        }
        self.name_owner(e.name.as_deref()?, peer_id)
    }

    /// Remembers `peer_id` on first use, or records its newly announced name.
    pub(crate) fn pin(&mut self, peer_id: &str, name: Option<&str>, now: u64) {
        let name = name.filter(|n| !norm(n).is_empty());
        match self.peers.get_mut(peer_id) {
            Some(e) => {
                if let Some(n) = name {
                    if e.name.as_deref() != Some(n) {
                        e.name = Some(n.to_string());
                        self.dirty = true;
                    }
                }
            }
            None => {
                self.peers.insert(
                    peer_id.to_string(),
                    TrustEntry {
                        state: TrustState::Pinned,
                        name: name.map(str::to_string),
                        since: now,
                    },
                );
                self.dirty = true;
            }
        }
    }

    /// Holds `peer_id` after a name collision.
    pub(crate) fn hold(&mut self, peer_id: &str, name: &str, now: u64) {
        let e = self.peers.entry(peer_id.to_string()).or_insert(TrustEntry {
            state: TrustState::Conflict,
            name: None,
            since: now,
        });
        e.state = TrustState::Conflict;
        e.name = Some(name.to_string());
        self.dirty = true;
    }
}

impl fmt::Display for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes through [`crate::fsutil::write_atomic`], replacing any older file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn policies() {
        let mut s = TrustStore::new();
        let (a, b) = (id('a'), id('b'));
        assert_eq!(
            s.check(TrustPolicy::Open, &a, None, 10),
            Verdict::Accept { pin: false }
        );
        assert!(matches!(
            s.check(TrustPolicy::Allowlist, &a, None, 10),
            Verdict::Untrusted(_)
        ));
        assert_eq!(
            s.check(TrustPolicy::Tofu, &a, Some("alice"), 10),
            Verdict::Accept { pin: true }
        );
        s.pin(&a, Some("Alice"), 5);
        assert_eq!(s.state(&a), TrustState::Pinned);
        // Same name (case and spaces aside), new key: conflict.
        assert_eq!(
            s.check(TrustPolicy::Tofu, &b, Some(" alice "), 10),
            Verdict::Conflict {
                name: " alice ".into(),
                known: a.clone()
            }
        );
        s.hold(&b, "alice", 6);
        assert_eq!(s.conflict_owner(&b), Some(a.as_str()));
        assert_eq!(s.conflict_owner(&a), None);
        assert!(matches!(
            s.check(TrustPolicy::Tofu, &b, None, 10),
            Verdict::Untrusted(_)
        ));
        s.trust(&b, 7).unwrap();
        assert_eq!(
            s.check(TrustPolicy::Tofu, &b, Some("alice"), 10),
            Verdict::Accept { pin: true }
        );
        assert_eq!(
            s.check(TrustPolicy::Allowlist, &b, None, 10),
            Verdict::Accept { pin: false }
        );
        // Blocking wins everywhere.
        s.block(&b, 8).unwrap();
        for p in [TrustPolicy::Open, TrustPolicy::Allowlist, TrustPolicy::Tofu] {
            assert_eq!(s.check(p, &b, None, 10), Verdict::Blocked);
        }
        assert!(s.untrust(&b).unwrap());
        assert!(!s.untrust(&b).unwrap());
        assert_eq!(s.state(&b), TrustState::Unknown);
        // Full store refuses new peers under TOFU.
        assert!(matches!(
            s.check(TrustPolicy::Tofu, &id('c'), None, 1),
            Verdict::Untrusted(m) if m.contains("full")
        ));
        assert!(matches!(
            s.trust("nope", 1),
            Err(TrustError::InvalidPeerId(_))
        ));
        assert_eq!("open".parse::<TrustPolicy>(), Ok(TrustPolicy::Open));
        assert!("x".parse::<TrustPolicy>().is_err());
    }

    #[test]
    fn round_trip_atomic_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        assert!(TrustStore::load(&path).unwrap().is_empty());
        let mut s = TrustStore::new();
        s.pin(&id('a'), Some("alice"), 1);
        s.trust(&id('b'), 2).unwrap();
        s.block(&id('c'), 3).unwrap();
        s.hold(&id('d'), "alice", 4);
        assert!(s.is_dirty());
        s.save(&path).unwrap();
        assert!(!s.is_dirty());
        let back = TrustStore::load(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.entry(&id('a')).unwrap().name.as_deref(), Some("alice"));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(TRUST_FORMAT) && text.contains("\"blocked\""));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Overwriting leaves no temporary files behind.
        s.untrust(&id('c')).unwrap();
        s.save(&path).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(TrustStore::load(&path).unwrap().len(), 3);
        // A missing directory is created, private.
        let mut s2 = s.clone();
        let nested = dir.path().join("new/dir/t.json");
        s2.save(&nested).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(nested.parent().unwrap())
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
        // A failed save (a file where a directory must be) leaves the old file intact.
        assert!(s2.save(&path.join("t.json")).is_err());
        assert!(s2.save(Path::new("/")).is_err());
        assert_eq!(TrustStore::load(&path).unwrap().len(), 3);
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let good = format!(r#"{{"format":"{TRUST_FORMAT}","peers":{{}}}}"#);
        let cases = [
            "".to_string(),
            "{".to_string(),
            "null".to_string(),
            "[]".to_string(),
            r#"{"format":"other","peers":{}}"#.to_string(),
            good.replace("{}", r#"{"xyz":{"state":"pinned"}}"#),
            good.replace("{}", &format!(r#"{{"{}":{{"state":"unknown"}}}}"#, id('a'))),
            good.replace("{}", &format!(r#"{{"{}":{{"state":"weird"}}}}"#, id('a'))),
            good.replace("{}", &format!(r#"{{"{}":{{}}}}"#, id('a'))),
        ];
        for c in &cases {
            fs::write(&path, c).unwrap();
            match TrustStore::load(&path) {
                Err(e @ TrustError::Corrupt { .. }) => {
                    assert!(e.to_string().contains("damaged"), "{e}")
                }
                other => panic!("{c}: {other:?}"),
            }
        }
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            TrustStore::load(&path),
            Err(TrustError::Corrupt { .. })
        ));
        fs::write(&path, &good).unwrap();
        assert!(TrustStore::load(&path).unwrap().is_empty());
        // A directory is an I/O error, not a panic.
        assert!(matches!(
            TrustStore::load(dir.path()),
            Err(TrustError::Io { .. }) | Err(TrustError::Corrupt { .. })
        ));
    }
}
