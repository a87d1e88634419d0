//! The engine's files: the layout of the sync and state directories, the manifest of shares,
//! and the per-share state file. Every write is atomic; directories are created 0700.
//!
//! ```text
//! sync_dir/ORIGIN/NAME               the file of a share from another peer
//! state_dir/shares.json              the manifest: every share, its file, unshared flag
//! state_dir/ORIGIN/NAME.automerge    the share's merge state (see StateFile)
//! ```

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::write_atomic;

use super::action::SyncError;
use super::share_id::{ShareId, STATE_SUFFIX};
use super::statelog::{self, Persisted};

/// The manifest's file name in the state directory.
pub const MANIFEST_FILE: &str = "shares.json";

/// First bytes of a state file.
const STATE_MAGIC: &[u8; 16] = b"canvasl-sync-st1";

/// Largest header of a state file.
const MAX_HEADER: usize = 64 * 1024;

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Creates `dir` and its missing parents with mode 0700.
pub(crate) fn create_dir_private(dir: &Path) -> Result<(), SyncError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| SyncError::io("create directory", dir, e))
}

/// Writes `bytes` to `path` atomically (replacing it). A new file is 0600.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    write_atomic(path, bytes, true).map_err(|e| SyncError::io("write", path, e))
}

/// [`write_file`] for a synced file: an existing file keeps its permissions (the user's own
/// files are not made private behind their back).
///
/// The text is synced to disk before it is renamed over the file, on every write, although the
/// merge state is the durable copy: after a crash, a file that is neither the text the state
/// records nor the one it replaced (`pending_sha256`) is taken in as a local edit (see
/// `absorb_file`), so a file left empty or half-written by a rename that reached the disk
/// before the data would be merged as the deletion of everything it lost, and sent to every
/// peer. With the sync first, the file is the old text or the new one, never empty or half.
pub(crate) fn write_synced_file(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    let prepared =
        crate::fsutil::Prepared::write(path, bytes).map_err(|e| SyncError::io("write", path, e))?;
    commit_synced_file(prepared, path)
}

/// The second half of [`write_synced_file`]: `prepared` (the text, written and synced beside
/// `path`) put in place, an existing file keeping its permissions.
pub(crate) fn commit_synced_file(
    prepared: crate::fsutil::Prepared,
    path: &Path,
) -> Result<(), SyncError> {
    let before = fs::metadata(path).ok().map(|m| m.permissions());
    prepared
        .commit(true)
        .map_err(|e| SyncError::io("write", path, e))?;
    if let Some(p) = before {
        fs::set_permissions(path, p).map_err(|e| SyncError::io("set permissions of", path, e))?;
    }
    Ok(())
}

/// Reads `path`; `Ok(None)` if it does not exist.
pub(crate) fn read_file(path: &Path) -> Result<Option<Vec<u8>>, SyncError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SyncError::io("read", path, e)),
    }
}

/// Keeps a damaged file aside as `NAME.damaged-TIMESTAMP` (UTC, RFC 3339) through
/// [`crate::fsutil::keep_aside`]; returns the new path, or `None` if there was no file.
pub(crate) fn keep_aside(path: &Path) -> Result<Option<PathBuf>, SyncError> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    crate::fsutil::keep_aside(path, &stamp)
        .map_err(|e| SyncError::io("keep aside (rename)", path, e))
}

/// What can still be read of a damaged manifest: each `"share"` string value and the
/// `"path"` and `"unshared"` values after it, in order (a truncated or partly overwritten
/// file keeps most of them). Entries that do not check out are left out.
pub(crate) fn salvage_manifest(bytes: &[u8]) -> Vec<ManifestEntry> {
    let text = String::from_utf8_lossy(bytes);
    let value_after = |from: usize, key: &str| -> Option<(usize, serde_json::Value)> {
        let at = text[from..].find(&format!("\"{key}\""))? + from;
        let colon = text[at..].find(':')? + at + 1;
        let mut it =
            serde_json::Deserializer::from_str(&text[colon..]).into_iter::<serde_json::Value>();
        let v = it.next()?.ok()?;
        Some((colon + it.byte_offset(), v))
    };
    let mut out: Vec<ManifestEntry> = Vec::new();
    let mut pos = 0;
    while let Some((end, v)) = value_after(pos, "share") {
        pos = end;
        let Some(share) = v.as_str().and_then(|u| ShareId::parse(u).ok()) else {
            continue;
        };
        // The path and flag belong to this entry only if they come before the next share.
        let next_share = text[pos..]
            .find("\"share\"")
            .map_or(text.len(), |i| i + pos);
        let path = value_after(pos, "path")
            .filter(|(e, _)| *e <= next_share)
            .and_then(|(_, v)| v.as_str().map(PathBuf::from))
            .filter(|p| p.is_absolute());
        let unshared = value_after(pos, "unshared")
            .filter(|(e, _)| *e <= next_share)
            .and_then(|(_, v)| v.as_bool())
            .unwrap_or(false);
        if let Some(path) = path {
            if !out.iter().any(|e| e.share == share) {
                out.push(ManifestEntry {
                    share,
                    path,
                    unshared,
                });
            }
        }
    }
    out
}

/// One share in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestEntry {
    pub(crate) share: ShareId,
    /// The synced file (absolute).
    pub(crate) path: PathBuf,
    /// Whether the user stopped syncing it (files are kept; peers' events are ignored).
    pub(crate) unshared: bool,
}

#[derive(Serialize, Deserialize)]
struct RawManifest {
    v: u64,
    shares: Vec<RawEntry>,
}

#[derive(Serialize, Deserialize)]
struct RawEntry {
    share: String,
    path: PathBuf,
    #[serde(default)]
    unshared: bool,
}

/// What the state file records besides the CRDT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateMeta {
    /// The heads that the file on disk corresponds to (the base of the next local edit).
    pub(crate) heads: Vec<u8>,
    /// SHA-256 of the file as the engine last wrote or read it.
    pub(crate) file_sha256: [u8; 32],
    /// SHA-256 of the file as it was just before the engine's last write of it, when that
    /// content held no edit unknown to this state: if a crash left the file so, startup rewrites
    /// it instead of taking it for a local edit.
    pub(crate) pending_sha256: Option<[u8; 32]>,
}

/// A share's merge state: a compacted automerge save (`base`) followed by the changes applied
/// since (`tail`, automerge change chunks), so that small changes do not re-compress the whole
/// document. Saved atomically with its [`StateMeta`], so the heads and hashes always describe
/// the CRDT stored beside them.
///
/// On disk the state file may be followed by records in its log (see `super::statelog`):
/// `persisted` says what is there, so the next write appends only what is new. Code that
/// replaces `base` must set it to `None` (the next write is then a whole one).
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    pub(crate) meta: StateMeta,
    pub(crate) base: Vec<u8>,
    pub(crate) tail: Vec<u8>,
    pub(crate) persisted: std::cell::Cell<Option<Persisted>>,
}

#[derive(Serialize, Deserialize)]
struct RawHeader {
    v: u64,
    share: String,
    heads: String,
    file_sha256: String,
    pending_sha256: Option<String>,
    base_len: u64,
    /// Generation of the log records that follow (absent in states written before the log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gen: Option<u64>,
}

impl StateFile {
    /// The automerge bytes (`SharedDoc::load` accepts a save followed by change chunks).
    pub(crate) fn crdt_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.base.len() + self.tail.len());
        v.extend_from_slice(&self.base);
        v.extend_from_slice(&self.tail);
        v
    }

    fn encode(&self, share: &ShareId, gen: u64) -> Vec<u8> {
        let header = RawHeader {
            v: 1,
            share: share.url(),
            heads: Base64::encode_string(&self.meta.heads),
            file_sha256: hex::encode(self.meta.file_sha256),
            pending_sha256: self.meta.pending_sha256.map(hex::encode),
            base_len: self.base.len() as u64,
            gen: Some(gen),
        };
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(
            STATE_MAGIC.len() + 4 + header.len() + self.base.len() + self.tail.len(),
        );
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.base);
        out.extend_from_slice(&self.tail);
        out
    }

    fn decode(bytes: &[u8], share: &ShareId) -> Result<(StateFile, Option<u64>), String> {
        let rest = bytes
            .strip_prefix(STATE_MAGIC.as_slice())
            .ok_or("not a state file")?;
        let (len, rest) = rest.split_at_checked(4).ok_or("truncated")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_HEADER {
            return Err("header too large".into());
        }
        let (header, body) = rest.split_at_checked(len).ok_or("truncated")?;
        let h: RawHeader = serde_json::from_slice(header).map_err(|e| e.to_string())?;
        if h.v != 1 {
            return Err(format!("state version {}", h.v));
        }
        if h.share != share.url() {
            return Err(format!("it belongs to {}", h.share));
        }
        let hash = |s: &str| -> Result<[u8; 32], String> {
            let v = hex::decode(s).map_err(|e| e.to_string())?;
            v.try_into().map_err(|_| "bad hash".to_string())
        };
        let heads = Base64::decode_vec(&h.heads).map_err(|_| "bad heads")?;
        if !heads.len().is_multiple_of(32) {
            return Err("bad heads".into());
        }
        let base_len = usize::try_from(h.base_len).map_err(|_| "bad length")?;
        let (base, tail) = body.split_at_checked(base_len).ok_or("truncated")?;
        Ok((
            StateFile {
                meta: StateMeta {
                    heads,
                    file_sha256: hash(&h.file_sha256)?,
                    pending_sha256: h.pending_sha256.as_deref().map(hash).transpose()?,
                },
                base: base.to_vec(),
                tail: tail.to_vec(),
                persisted: Default::default(),
            },
            h.gen,
        ))
    }
}

/// The two directories, canonical.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    sync_dir: PathBuf,
    state_dir: PathBuf,
}

impl Store {
    /// Creates (0700) and canonicalizes both directories.
    pub(crate) fn open(sync_dir: &Path, state_dir: &Path) -> Result<Store, SyncError> {
        create_dir_private(sync_dir)?;
        create_dir_private(state_dir)?;
        let canon = |p: &Path| fs::canonicalize(p).map_err(|e| SyncError::io("open", p, e));
        Ok(Store {
            sync_dir: canon(sync_dir)?,
            state_dir: canon(state_dir)?,
        })
    }

    pub(crate) fn sync_dir(&self) -> &Path {
        &self.sync_dir
    }

    /// `root/ORIGIN`, created 0700, checked to be that very directory (not a link elsewhere).
    fn origin_dir(root: &Path, share: &ShareId) -> Result<PathBuf, SyncError> {
        let dir = root.join(share.origin());
        create_dir_private(&dir)?;
        let real = fs::canonicalize(&dir).map_err(|e| SyncError::io("open", &dir, e))?;
        if real != dir || !real.starts_with(root) {
            return Err(SyncError::UnsafePath {
                path: dir,
                detail: format!(
                    "it resolves to {}, outside {}",
                    real.display(),
                    root.display()
                ),
            });
        }
        Ok(real)
    }

    /// `dir/file`, refused if it exists and is not a regular file.
    fn file_in(dir: PathBuf, file: &str) -> Result<PathBuf, SyncError> {
        let path = dir.join(file);
        if path.parent() != Some(dir.as_path()) {
            return Err(SyncError::UnsafePath {
                path,
                detail: "the name is not a plain file name".into(),
            });
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_file() => Err(SyncError::UnsafePath {
                path,
                detail: "it exists and is not a regular file (a link or a directory)".into(),
            }),
            _ => Ok(path),
        }
    }

    /// Where the file of a share from another peer lives: `sync_dir/ORIGIN/NAME`.
    pub(crate) fn remote_path(&self, share: &ShareId) -> Result<PathBuf, SyncError> {
        let dir = Self::origin_dir(&self.sync_dir, share)?;
        Self::file_in(dir, share.name())
    }

    /// `sync_dir/ORIGIN/NAME` without touching the disk.
    pub(crate) fn remote_path_lexical(&self, share: &ShareId) -> PathBuf {
        self.sync_dir.join(share.origin()).join(share.name())
    }

    /// `state_dir/ORIGIN/NAME.automerge`.
    pub(crate) fn state_path(&self, share: &ShareId) -> Result<PathBuf, SyncError> {
        let dir = Self::origin_dir(&self.state_dir, share)?;
        Self::file_in(dir, &format!("{}{STATE_SUFFIX}", share.name()))
    }

    /// `state_dir/shares.json`.
    pub(crate) fn manifest_path(&self) -> PathBuf {
        self.state_dir.join(MANIFEST_FILE)
    }

    /// The copy of the manifest written after each successful write of it
    /// (`state_dir/shares.json.bak`): a second source when the manifest is damaged.
    pub(crate) fn manifest_backup_path(&self) -> PathBuf {
        self.state_dir.join(format!("{MANIFEST_FILE}.bak"))
    }

    /// The manifest (empty if there is none yet).
    pub(crate) fn read_manifest(&self) -> Result<Vec<ManifestEntry>, SyncError> {
        self.read_manifest_at(&self.manifest_path())
    }

    /// A manifest at `path` (empty if there is none).
    pub(crate) fn read_manifest_at(&self, path: &Path) -> Result<Vec<ManifestEntry>, SyncError> {
        let path = path.to_path_buf();
        let Some(bytes) = read_file(&path)? else {
            return Ok(Vec::new());
        };
        let corrupt = |detail: String| SyncError::Corrupt {
            path: path.clone(),
            detail,
        };
        let raw: RawManifest =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if raw.v != 1 {
            return Err(corrupt(format!("manifest version {}", raw.v)));
        }
        let mut out = Vec::with_capacity(raw.shares.len());
        for e in raw.shares {
            let share =
                ShareId::parse(&e.share).map_err(|err| corrupt(format!("{}: {err}", e.share)))?;
            if !e.path.is_absolute() {
                return Err(corrupt(format!("{}: the path is not absolute", e.share)));
            }
            out.push(ManifestEntry {
                share,
                path: e.path,
                unshared: e.unshared,
            });
        }
        Ok(out)
    }

    /// Replaces the manifest.
    pub(crate) fn write_manifest<'a>(
        &self,
        entries: impl Iterator<Item = &'a ManifestEntry>,
    ) -> Result<(), SyncError> {
        let raw = RawManifest {
            v: 1,
            shares: entries
                .map(|e| RawEntry {
                    share: e.share.url(),
                    path: e.path.clone(),
                    unshared: e.unshared,
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&raw).unwrap_or_default();
        bytes.push(b'\n');
        write_file(&self.manifest_path(), &bytes)?;
        // The backup only helps recovery: failing to write it must not fail the operation.
        let _ = write_file(&self.manifest_backup_path(), &bytes);
        Ok(())
    }

    /// The shares whose state files are in the state directory (`ORIGIN/NAME.automerge`,
    /// damaged ones included: their names are enough to rebuild them).
    pub(crate) fn state_files(&self) -> Vec<ShareId> {
        let mut out = Vec::new();
        let Ok(origins) = fs::read_dir(&self.state_dir) else {
            return out;
        };
        for origin in origins.flatten() {
            let Ok(names) = fs::read_dir(origin.path()) else {
                continue;
            };
            let origin = origin.file_name().to_string_lossy().into_owned();
            for f in names.flatten() {
                let f = f.file_name().to_string_lossy().into_owned();
                if let Some(name) = f.strip_suffix(STATE_SUFFIX) {
                    if let Ok(id) = ShareId::new(&origin, name) {
                        out.push(id);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Marker of a share being rebuilt after its state was lost
    /// (`state_dir/ORIGIN/NAME.automerge.rebuilding`, holding the path of the damaged state
    /// kept aside, if any). Present from the rebuild until the peers' version was merged.
    pub(crate) fn rebuild_marker(&self, share: &ShareId) -> Result<PathBuf, SyncError> {
        let dir = Self::origin_dir(&self.state_dir, share)?;
        Self::file_in(dir, &format!("{}{STATE_SUFFIX}.rebuilding", share.name()))
    }

    /// A share's state: its state file, then the records of its log (see `super::statelog`).
    pub(crate) fn read_state(&self, share: &ShareId) -> Result<StateFile, SyncError> {
        let path = self.state_path(share)?;
        let bytes = read_file(&path)?.ok_or_else(|| SyncError::Corrupt {
            path: path.clone(),
            detail: "it is missing".into(),
        })?;
        let (mut state, gen) = StateFile::decode(&bytes, share)
            .map_err(|detail| SyncError::Corrupt { path, detail })?;
        let log_path = self.log_path(share)?;
        let Some(gen) = gen else {
            // Written before logs existed: the next write is a whole one.
            return Ok(state);
        };
        let log = read_file(&log_path)?.unwrap_or_default();
        let (records, clean) = statelog::decode_log(&log, gen);
        let mut log_bytes = 0u64;
        for (meta, changes) in records {
            log_bytes += statelog::encode_record(gen, &meta, &changes).len() as u64;
            state.tail.extend_from_slice(&changes);
            state.meta = meta;
        }
        if clean {
            state.persisted.set(Some(Persisted {
                gen,
                base_len: state.base.len(),
                tail_on_disk: state.tail.len(),
                log_bytes,
            }));
        }
        Ok(state)
    }

    /// `state_dir/ORIGIN/NAME.automerge.log`.
    pub(crate) fn log_path(&self, share: &ShareId) -> Result<PathBuf, SyncError> {
        let dir = Self::origin_dir(&self.state_dir, share)?;
        Self::file_in(dir, &format!("{}{STATE_SUFFIX}.log", share.name()))
    }

    /// Saves a share's state: appends what is new to its log when the state file on disk is
    /// this state's base, else (or when the log is due for compaction) writes the state file
    /// whole and removes the log. Returns the bytes written.
    pub(crate) fn write_state(&self, share: &ShareId, state: &StateFile) -> Result<u64, SyncError> {
        let log_path = self.log_path(share)?;
        if let Some(p) = state.persisted.get() {
            let limit = statelog::LOG_SLACK + (state.base.len() + state.tail.len()) as u64 / 4;
            if p.base_len == state.base.len()
                && p.tail_on_disk <= state.tail.len()
                && p.log_bytes <= limit
            {
                let record =
                    statelog::encode_record(p.gen, &state.meta, &state.tail[p.tail_on_disk..]);
                // A failed append may leave a torn record: never append after it.
                state.persisted.set(None);
                statelog::append(&log_path, &record)?;
                state.persisted.set(Some(Persisted {
                    tail_on_disk: state.tail.len(),
                    log_bytes: p.log_bytes + record.len() as u64,
                    ..p
                }));
                return Ok(record.len() as u64);
            }
        }
        let path = self.state_path(share)?;
        let gen = statelog::new_gen();
        let bytes = state.encode(share, gen);
        state.persisted.set(None);
        write_file(&path, &bytes)?;
        // Records left in the log are of another generation now: removing them only saves
        // space (and keeps appends after a torn record impossible).
        let _ = statelog::remove(&log_path);
        state.persisted.set(Some(Persisted {
            gen,
            base_len: state.base.len(),
            tail_on_disk: state.tail.len(),
            log_bytes: 0,
        }));
        Ok(bytes.len() as u64)
    }

    /// Size of a share's state file on disk (0 if absent).
    pub(crate) fn state_size(&self, share: &ShareId) -> u64 {
        let path = self
            .state_dir
            .join(share.origin())
            .join(format!("{}{STATE_SUFFIX}", share.name()));
        let log = path.with_extension("automerge.log");
        fs::metadata(path).map(|m| m.len()).unwrap_or(0)
            + fs::metadata(log).map(|m| m.len()).unwrap_or(0)
    }
}
