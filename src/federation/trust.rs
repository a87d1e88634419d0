//! Which peers' events are accepted: the policy, the per-peer trust state,
//! and the trust store file.
//!
//! # Policies
//!
//! * [`TrustPolicy::Tofu`] (default): trust on first use. A new key's
//!   presence pins it with its display name (other events from it are
//!   accepted but pin nothing, so keys that never announce themselves leave
//!   no trace). If a display name already pinned or trusted for one key
//!   shows up with a **different** key, that key is held
//!   ([`TrustState::Conflict`]): nothing from it is accepted until the user
//!   trusts it, and the pipeline reports a loud
//!   [`Transition::KeyConflict`](super::Transition). Names are compared as
//!   look-alike skeletons ([`names::skeleton`]).
//!
//! The name check applies under every policy and to trusted keys too
//! (trust covers a key, not a name): their conflicting presence is refused
//! with the same warning, without changing their state.
//!
//! New automatic entries (pins, holds) are rate limited ([`PIN_BURST`],
//! then one per [`PIN_INTERVAL_SECS`]); a full store replaces the
//! automatic entry heard from least recently, never a trusted or blocked
//! peer.
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::names;
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

/// New automatic entries (pins and holds) allowed at once…
pub const PIN_BURST: u64 = 64;
/// …and then one per this many seconds, so a flood of keys can neither
/// fill the store quickly nor make `trust.json` grow fast. A peer that is
/// not pinned for lack of budget is still accepted under TOFU; its next
/// presence (every heartbeat) pins it.
pub const PIN_INTERVAL_SECS: u64 = 1;

/// A token bucket of new automatic entries.
#[derive(Debug, Clone, Default)]
struct PinBudget {
    spent: u64,
    since: u64,
}

impl PinBudget {
    fn take(&mut self, now: u64) -> bool {
        let refilled = now.saturating_sub(self.since) / PIN_INTERVAL_SECS.max(1);
        if refilled > 0 {
            self.spent = self.spent.saturating_sub(refilled);
            self.since = now;
        }
        if self.spent >= PIN_BURST {
            return false;
        }
        self.spent += 1;
        true
    }
}

/// Peer trust states, loaded from and saved to a file.
///
/// Bounded: when `max_entries` peers are stored, a new automatic entry
/// (a TOFU pin or hold) replaces the automatic entry heard from least
/// recently; explicitly trusted or blocked peers are never replaced.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    peers: BTreeMap<String, TrustEntry>,
    dirty: bool,
    /// When each stored peer was last heard from (memory only; `since`
    /// after a load), to choose which automatic entry to replace.
    seen: HashMap<String, u64>,
    /// The look-alike skeleton of each stored name.
    skeletons: HashMap<String, String>,
    budget: PinBudget,
    evicted: u64,
}

impl PartialEq for TrustStore {
    fn eq(&self, other: &Self) -> bool {
        self.peers == other.peers
    }
}

impl Eq for TrustStore {}

fn norm(name: &str) -> String {
    names::skeleton(name)
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
        let mut store = TrustStore {
            peers: file.peers,
            ..TrustStore::default()
        };
        store.reindex();
        Ok(store)
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

    fn reindex(&mut self) {
        self.seen = self
            .peers
            .iter()
            .map(|(id, e)| (id.clone(), e.since))
            .collect();
        self.skeletons = self
            .peers
            .iter()
            .filter_map(|(id, e)| e.name.as_deref().map(|n| (id.clone(), norm(n))))
            .collect();
    }

    fn remove(&mut self, peer_id: &str) -> bool {
        self.seen.remove(peer_id);
        self.skeletons.remove(peer_id);
        let removed = self.peers.remove(peer_id).is_some();
        self.dirty |= removed;
        removed
    }

    fn set_name(&mut self, peer_id: &str, name: &str) {
        if let Some(e) = self.peers.get_mut(peer_id) {
            if e.name.as_deref() != Some(name) {
                e.name = Some(name.to_string());
                self.skeletons.insert(peer_id.to_string(), norm(name));
                self.dirty = true;
            }
        }
    }

    /// Notes that `peer_id` was heard from at `now` (for eviction).
    pub(crate) fn touch(&mut self, peer_id: &str, now: u64) {
        if let Some(t) = self.seen.get_mut(peer_id) {
            *t = (*t).max(now);
        }
    }

    /// How many automatic entries were replaced to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Makes room for one new automatic entry: `false` if the store is full
    /// of explicit decisions (or the rate of new entries is exceeded).
    fn room_for_new(&mut self, max_entries: usize, now: u64) -> bool {
        if !self.budget.take(now) {
            return false;
        }
        while self.peers.len() >= max_entries.max(1) {
            let victim = self
                .peers
                .iter()
                .filter(|(_, e)| matches!(e.state, TrustState::Pinned | TrustState::Conflict))
                .min_by_key(|(id, e)| self.seen.get(id.as_str()).copied().unwrap_or(e.since))
                .map(|(id, _)| id.clone());
            match victim {
                Some(id) => {
                    self.remove(&id);
                    self.evicted += 1;
                }
                None => return false,
            }
        }
        true
    }

    fn set(&mut self, peer_id: &str, state: TrustState, now: u64) -> Result<(), TrustError> {
        check_id(peer_id)?;
        let e = self.peers.entry(peer_id.to_string()).or_insert(TrustEntry {
            state,
            name: None,
            since: now,
        });
        e.state = state;
        self.seen.entry(peer_id.to_string()).or_insert(now);
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
        Ok(self.remove(peer_id))
    }

    /// Decides about an event from `peer_id`, which announces display name
    /// `name` (presence events only). Changes nothing.
    ///
    /// The look-alike check applies under every policy and to explicitly
    /// trusted keys too: trust covers a key, not a name.
    pub(crate) fn check(
        &self,
        policy: TrustPolicy,
        peer_id: &str,
        name: Option<&str>,
        _max_entries: usize,
    ) -> Verdict {
        let state = self.state(peer_id);
        if state == TrustState::Blocked {
            return Verdict::Blocked;
        }
        if policy == TrustPolicy::Allowlist && state != TrustState::Trusted {
            return Verdict::Untrusted("the peer is not on the allowlist".into());
        }
        if policy == TrustPolicy::Tofu && state == TrustState::Conflict {
            return Verdict::Untrusted(
                "the peer's key is held: its display name belongs to another key; \
                 trust it explicitly if it is genuine"
                    .into(),
            );
        }
        if let Some(known) = name.and_then(|n| self.name_owner(n, peer_id)) {
            return Verdict::Conflict {
                name: name.unwrap_or_default().to_string(),
                known: known.to_string(),
            };
        }
        match policy {
            TrustPolicy::Open | TrustPolicy::Allowlist => Verdict::Accept { pin: false },
            TrustPolicy::Tofu => Verdict::Accept { pin: true },
        }
    }

    /// Another pinned or trusted key that holds display name `name` or one
    /// that looks like it (same [`names::skeleton`]).
    fn name_owner(&self, name: &str, peer_id: &str) -> Option<&str> {
        let n = norm(name);
        if n.is_empty() {
            return None;
        }
        self.skeletons
            .iter()
            .filter(|(id, sk)| id.as_str() != peer_id && **sk == n)
            .filter(|(id, _)| matches!(self.state(id), TrustState::Pinned | TrustState::Trusted))
            .map(|(id, _)| id.as_str())
            .min()
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

    /// Remembers `peer_id` on first use (its presence), or records its
    /// newly announced name. Returns whether the peer is stored: a new pin
    /// may wait for the rate of new entries, or find the store full of
    /// explicit decisions.
    pub(crate) fn pin(
        &mut self,
        peer_id: &str,
        name: Option<&str>,
        now: u64,
        max_entries: usize,
    ) -> bool {
        let name = name.filter(|n| !norm(n).is_empty());
        if self.peers.contains_key(peer_id) {
            if let Some(n) = name {
                self.set_name(peer_id, n);
            }
            self.touch(peer_id, now);
            return true;
        }
        if !self.room_for_new(max_entries, now) {
            return false;
        }
        self.peers.insert(
            peer_id.to_string(),
            TrustEntry {
                state: TrustState::Pinned,
                name: None,
                since: now,
            },
        );
        self.seen.insert(peer_id.to_string(), now);
        self.dirty = true;
        if let Some(n) = name {
            self.set_name(peer_id, n);
        }
        true
    }

    /// Holds `peer_id` after a name collision; `false` if it could not be
    /// stored (rate of new entries, or a store full of explicit decisions).
    pub(crate) fn hold(&mut self, peer_id: &str, name: &str, now: u64, max_entries: usize) -> bool {
        if !self.peers.contains_key(peer_id) {
            if !self.room_for_new(max_entries, now) {
                return false;
            }
            self.peers.insert(
                peer_id.to_string(),
                TrustEntry {
                    state: TrustState::Conflict,
                    name: None,
                    since: now,
                },
            );
            self.seen.insert(peer_id.to_string(), now);
        }
        if let Some(e) = self.peers.get_mut(peer_id) {
            e.state = TrustState::Conflict;
        }
        self.dirty = true;
        self.set_name(peer_id, name);
        self.touch(peer_id, now);
        true
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
        s.pin(&a, Some("Alice"), 5, 10);
        assert_eq!(s.state(&a), TrustState::Pinned);
        // Same name (case and spaces aside), new key: conflict.
        assert_eq!(
            s.check(TrustPolicy::Tofu, &b, Some(" alice "), 10),
            Verdict::Conflict {
                name: " alice ".into(),
                known: a.clone()
            }
        );
        s.hold(&b, "alice", 6, 10);
        assert_eq!(s.conflict_owner(&b), Some(a.as_str()));
        assert_eq!(s.conflict_owner(&a), None);
        assert!(matches!(
            s.check(TrustPolicy::Tofu, &b, None, 10),
            Verdict::Untrusted(_)
        ));
        s.trust(&b, 7).unwrap();
        // Trust covers the key, not the name: a trusted key claiming a name
        // that another key holds is still a conflict.
        assert!(matches!(
            s.check(TrustPolicy::Tofu, &b, Some("alice"), 10),
            Verdict::Conflict { .. }
        ));
        assert_eq!(
            s.check(TrustPolicy::Tofu, &b, Some("bob"), 10),
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
        assert!(matches!(
            s.trust("nope", 1),
            Err(TrustError::InvalidPeerId(_))
        ));
        assert_eq!("open".parse::<TrustPolicy>(), Ok(TrustPolicy::Open));
        assert!("x".parse::<TrustPolicy>().is_err());
    }

    #[test]
    fn look_alikes_conflict_under_every_policy() {
        let mut s = TrustStore::new();
        let (a, b) = (id('a'), id('b'));
        s.pin(&a, Some("alice"), 1, 100);
        s.trust(&b, 2).unwrap();
        for twin in [
            "alice\u{200b}",
            "\u{0430}lice",
            "\u{ff41}lice",
            "alice\u{202e}",
            "al\u{ad}ice",
        ] {
            for p in [TrustPolicy::Tofu, TrustPolicy::Allowlist, TrustPolicy::Open] {
                let v = s.check(p, &b, Some(twin), 100);
                assert!(
                    matches!(&v, Verdict::Conflict { known, .. } if *known == a),
                    "{twin:?} under {p}: {v:?}"
                );
            }
        }
        assert_eq!(
            s.check(TrustPolicy::Open, &b, Some("bob"), 100),
            Verdict::Accept { pin: false }
        );
    }

    #[test]
    fn a_flood_of_keys_cannot_crowd_out_newcomers_or_explicit_decisions() {
        let key = |n: u32| format!("{n:064x}");
        let mut s = TrustStore::new();
        let max = 50;
        s.trust(&key(1_000_000), 0).unwrap();
        s.block(&key(1_000_001), 0).unwrap();
        // 10,000 throwaway keys announce themselves, one per second.
        let mut pinned = 0;
        for n in 0..10_000u32 {
            if s.pin(&key(n), Some(&format!("x{n}")), u64::from(n), max) {
                pinned += 1;
            }
            assert!(s.len() <= max);
        }
        assert!(pinned > max, "{pinned}");
        assert_eq!(s.len(), max);
        assert!(s.evicted() > 0);
        // The explicit decisions are still there.
        assert_eq!(s.state(&key(1_000_000)), TrustState::Trusted);
        assert_eq!(s.state(&key(1_000_001)), TrustState::Blocked);
        // A burst faster than the rate pins only a bounded number…
        let burst = (0..1_000u32)
            .filter(|n| s.pin(&key(20_000 + n), None, 20_000, max))
            .count();
        assert_eq!(burst as u64, PIN_BURST);
        // …and a genuine newcomer is pinned once the rate allows.
        assert!(s.pin(&key(99_999), Some("newcomer"), 20_100, max));
        assert_eq!(s.state(&key(99_999)), TrustState::Pinned);
        // A store full of explicit decisions refuses to grow instead.
        let mut full = TrustStore::new();
        full.trust(&key(1), 0).unwrap();
        assert!(!full.pin(&key(2), None, 0, 1));
        assert_eq!(full.len(), 1);
    }

    #[test]
    fn round_trip_atomic_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        assert!(TrustStore::load(&path).unwrap().is_empty());
        let mut s = TrustStore::new();
        s.pin(&id('a'), Some("alice"), 1, 10);
        s.trust(&id('b'), 2).unwrap();
        s.block(&id('c'), 3).unwrap();
        s.hold(&id('d'), "alice", 4, 10);
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
