//! What the engine asks its caller to do ([`Action`]), its errors ([`SyncError`]) and the
//! refusal counters ([`Refusals`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::federation::SyncKind;
use crate::merge::MergeError;

use super::hunk::Hunk;
use super::share_id::{NameError, ShareId, ShareIdError};

/// Something the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Publish a sync event (`crate::federation::Outbound::sync(kind, &content, tags, now)`).
    /// `content` fits the engine's `max_content_bytes` once JSON-escaped; `tags` hold at most a
    /// `p` tag (the peer the event is for).
    Publish {
        /// Change, request or response.
        kind: SyncKind,
        /// The event content (JSON, see the module documentation).
        content: String,
        /// Extra tags (`["p", <peer id>]` on requests to one peer and on responses).
        tags: Vec<Vec<String>>,
    },
    /// The file of a share was written (tell Elisp: revert an unmodified buffer, etc.).
    Updated {
        /// The share.
        share: ShareId,
        /// The file.
        path: PathBuf,
        /// Whether the file was created (a new share from a peer, or a missing file rewritten).
        created: bool,
        /// The changed lines, relative to the file as the engine last wrote or read it (what an
        /// unmodified buffer visiting it shows); see [`super::hunk`]. `None` when they are not
        /// known (a new file, the first write since the share was loaded, changes too large):
        /// revert the buffer then.
        hunks: Option<Vec<Hunk>>,
    },
    /// Input from a peer was refused; nothing changed. `reason` is a stable short string (also
    /// counted, see [`super::SyncEngine::refusals`]).
    Refused {
        /// Stable short reason, e.g. `malformed`, `name-dots`, `chunk-expired`.
        reason: &'static str,
        /// What was wrong, for the log.
        detail: String,
    },
    /// Something the user should know that is not a refusal (a share that could not be loaded
    /// at startup, a stray file replaced, ...).
    Warning {
        /// The share concerned, if any.
        share: Option<ShareId>,
        /// What happened and what to do.
        message: String,
    },
    /// A file of a share (its merge state or the synced file) could not be written (a full
    /// disk, permissions). The old file is intact; the write is retried by
    /// [`super::SyncEngine::retry_writes`] until it succeeds. Reported on every failed attempt
    /// (`attempt` counts them, 1 for the first), so the caller can warn once and back off.
    WriteFailed {
        /// The share.
        share: ShareId,
        /// The file that could not be written.
        path: PathBuf,
        /// What went wrong (the system's error).
        message: String,
        /// Failed attempts in a row, 1 for the first.
        attempt: u32,
    },
    /// A buffer's save handed to the engine is written: the file holds the buffer's text
    /// (see `super::save`).
    Saved {
        /// The share.
        share: ShareId,
        /// The file.
        path: PathBuf,
        /// The save's sequence number.
        seq: u64,
        /// The version of the text the file now holds (the buffer's base from now on).
        version: u64,
        /// The file's modification time after the write, (seconds, nanoseconds).
        mtime: Option<(i64, u32)>,
    },
    /// A buffer's save handed to the engine was not written. With `failed`, the file could not
    /// be written (`reason` is the system's error): the edit is kept all the same (in the merge
    /// state, and sent to the peers), the state saying the file may still hold its old text;
    /// the buffer is marked modified again. Otherwise nothing changed: the engine cannot trust
    /// the changed lines (`reason` says why) and the whole text must be saved.
    SaveNotTaken {
        /// The share.
        share: ShareId,
        /// The file.
        path: PathBuf,
        /// The save's sequence number.
        seq: u64,
        /// Why.
        reason: String,
        /// Whether writing the file failed.
        failed: bool,
    },
    /// Changes merged into a held share, offered to the buffer visiting its file: `hunks`
    /// turn the text of version `from` (the file's) into the merged text, version `version`
    /// once written (see `super::save`). `None` hunks: revert instead of patching.
    Offered {
        /// The share.
        share: ShareId,
        /// The file.
        path: PathBuf,
        /// The version the hunks start from.
        from: u64,
        /// The version of the merged text.
        version: u64,
        /// The changed lines.
        hunks: Option<Vec<Hunk>>,
    },
    /// The offered text `version` of a held share was written to its file.
    OfferWritten {
        /// The share.
        share: ShareId,
        /// The file.
        path: PathBuf,
        /// The version now in the file.
        version: u64,
        /// The file's modification time after the write, (seconds, nanoseconds).
        mtime: Option<(i64, u32)>,
    },
}

/// Errors of the engine's operations. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The peer id given to the engine is not one.
    #[error("the peer id must be 64 lowercase hex characters, not {0:?}")]
    BadPeerId(String),
    /// The engine's settings cannot work.
    #[error("sync configuration: {0}")]
    Config(String),
    /// A share name was refused.
    #[error("{0} (share names are plain file names ending with .canvasl or .jsonl, or .org, .md, .txt for text)")]
    BadName(#[from] NameError),
    /// A share URL could not be read.
    #[error("{0}")]
    BadShare(#[from] ShareIdError),
    /// Nothing matches the share URL or file path given.
    #[error("no share matches {0:?}: share the file first, or give its canvasl:// URL")]
    UnknownShare(String),
    /// The file is shared already.
    #[error("{path} is already shared as {share}")]
    AlreadyShared {
        /// The file.
        path: PathBuf,
        /// Its share.
        share: ShareId,
    },
    /// We already share another file under this name.
    #[error("another file is already shared as {0}; give this one another name")]
    NameTaken(ShareId),
    /// Only a share's origin can do this (change its members).
    #[error("only the origin of {0} can change its members; ask its origin")]
    NotOrigin(ShareId),
    /// Sealing or unsealing with a share key failed (the OS random source failed).
    #[error("cannot encrypt for a share with members: {0}")]
    Crypto(String),
    /// A share with members cannot become a share with the whole federation.
    #[error("{0} has members and is encrypted; it cannot be opened to the whole federation (share a copy of the file instead)")]
    Sealed(ShareId),
    /// Memberships cannot be signed: the engine has no key (federation is not running).
    #[error("the sync engine has no signing key: start federation first")]
    NoSigner,
    /// The share was unshared.
    #[error("{0} is not synced any more (it was unshared); share the file again to resume")]
    Unshared(ShareId),
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `create directory`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A path is not where it must be (outside the sync or state directory, or a symbolic
    /// link where a regular file is expected).
    #[error("refusing to use {path}: {detail}")]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A saved state or manifest cannot be read.
    #[error(
        "the sync state {path} is damaged ({detail}); it is kept aside and rebuilt when the \
         share is loaded"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The merge layer refused (for instance a file that is not UTF-8).
    #[error("{share}: {source}; fix the file and save it again")]
    Merge {
        /// The share.
        share: String,
        /// The merge error.
        source: Box<MergeError>,
    },
    /// Something is too large to be synced.
    #[error("{what} is {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// What.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl SyncError {
    pub(crate) fn merge(share: impl Into<String>, source: MergeError) -> Self {
        SyncError::Merge {
            share: share.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SyncError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// How many inputs were refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals(BTreeMap<&'static str, u64>);

impl Refusals {
    /// Counts one refusal.
    pub(crate) fn count(&mut self, reason: &'static str) {
        *self.0.entry(reason).or_insert(0) += 1;
    }

    /// The count for `reason` (0 if none).
    pub fn get(&self, reason: &str) -> u64 {
        self.0.get(reason).copied().unwrap_or(0)
    }

    /// Every reason seen, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    /// Total refusals.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}
