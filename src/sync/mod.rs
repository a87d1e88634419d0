//! The CanvasL sync engine: shared files, their merge state on disk, and the content of sync
//! events (kinds 4771 change, 20772 request, 4772 response on `{prefix}/sync`).
//!
//! Synchronous and free of MQTT and Emacs: the caller passes in what arrived (already verified
//! by `crate::federation::Inbound`) and the current time, and performs the [`Action`]s it gets
//! back: publish an event (`crate::federation::Outbound::sync`), tell Elisp a file changed,
//! log a refusal. Nothing blocks; the only I/O is on the shared files and in the two
//! directories the engine is given.
//!
//! * [`share_id`] — [`ShareId`] (`canvasl://ORIGIN/NAME`), [`check_share_name`].
//! * [`engine`] — [`SyncEngine`]: share, unshare, local saves, holds, startup, catch-up;
//!   `ask` — [`SyncEngine::ask`]: one share from one peer, held or not (the blackboard).
//! * `files` — keeping a share's file, document and state file in agreement.
//! * `inbound` — [`SyncEngine::handle`]: what peers send.
//! * `wire` — the content schemas below; `chunk` — splitting and reassembly.
//! * `store` — files on disk; [`action`] — [`Action`], [`SyncError`], [`Refusals`].
//! * [`lines`] — saves handed over as changed lines; [`hunk`] — changed lines sent to Elisp
//!   with [`Action::Updated`]; `statelog` — the merge state saved by the change.
//!
//! # Shares and files
//!
//! A share is one CanvasL file, named by the peer that shared it first (its *origin*) and a
//! name: `canvasl://ORIGIN/NAME`. A name ending with `.org`, `.md` or `.txt` makes it a text
//! share, whose lines merge whole ([`kind_of_name`], `crate::merge::DocKind`); a peer's Org
//! blackboard is the text share `canvasl://PEER/blackboard.org` ([`BLACKBOARD_NAME`]). Only the origin imports the file into a CRDT
//! (`crate::merge::SharedDoc`); every other peer starts empty and receives the whole document.
//!
//! * A share we started keeps its file where the user has it.
//! * A share from another peer lives at `sync_dir/ORIGIN/NAME` (two shares of the same name
//!   from different origins never collide). The name comes from the network and is checked
//!   ([`check_share_name`]); resolved paths must stay inside `sync_dir`, and the engine never
//!   writes through a symbolic link there.
//! * `state_dir/shares.json` lists the shares (URL, file, unshared flag);
//!   `state_dir/ORIGIN/NAME.automerge` holds a share's merge state together with the heads the
//!   file on disk corresponds to and the file's SHA-256 (one atomic file, so they always
//!   agree): a 16-byte magic `canvasl-sync-st1`, a little-endian `u32` header length, a JSON
//!   header (`v`, `share`, `heads`, `file_sha256`, `pending_sha256`, `base_len`), then automerge
//!   bytes: a compacted save followed by the changes applied since (re-compacted when they
//!   exceed 64 KiB plus a quarter of the save). Edits are appended to a log beside it
//!   (`NAME.automerge.log`, see `statelog`) and the state file is rewritten only now and then.
//!   Every write of a whole file is atomic
//!   (`crate::fsutil::write_atomic`); directories are 0700, new files 0600, and a synced file
//!   that already exists keeps its permissions.
//!
//! # Local saves: a three-way rule
//!
//! When the user saves a file ([`SyncEngine::local_file_changed`]), the new text is applied
//! relative to the text the file was based on (the heads recorded when the engine last wrote or
//! read the file), not to the document's current text, so changes merged meanwhile and missing
//! from the saved text are kept, not reverted (`SharedDoc::apply_local_text_based_on`).
//!
//! * Remote changes are written to the file at once, unless the file is *held*
//!   ([`SyncEngine::hold_writes`], for a buffer the user is modifying): then they are merged
//!   and saved but the file, and the heads it is based on, stay as they are until the next save
//!   (merged three-way, then written) or the end of the hold.
//! * Before writing a file for a remote change, the engine takes in a save it has not been told
//!   about (the file's length, modification time or inode changed), so a save is never lost.
//! * A file equal to its content just before the engine's last write of it holds no edit (a
//!   crash between saving the state and writing the file, or a stale buffer saved unchanged):
//!   it is written again.
//! * Without a hold, a buffer that was not reverted after an [`Action::Updated`] and is then
//!   saved over the new file is a genuine edit of that file: what it lacks is removed.
//!
//! # Damage and failed writes
//!
//! A damaged or missing state file or manifest is kept aside and rebuilt without losing an
//! edit (`recover`); a write that fails (full disk, permissions) is an
//! [`Action::WriteFailed`], leaves the old file intact and is retried by
//! [`SyncEngine::retry_writes`]; [`SyncEngine::status`] tells how each share is doing
//! (`health`). See docs/FEDERATION_GUIDE.md, "What survives what".
//!
//! # Content (JSON, `"v":1`)
//!
//! Binary fields are standard Base64 with padding. `share` is always `canvasl://ORIGIN/NAME`.
//!
//! | event | content |
//! |---|---|
//! | change (4771) | `{"v":1,"share":S,"op":"change","full":F,"data":B}` |
//! | request (20772) | `{"v":1,"share":S,"op":"request","heads":H,"have":A}` |
//! | response (4772) | `{"v":1,"share":S,"op":"response","full":F,"data":B}` |
//! | change or response, chunked | `{"v":1,"share":S,"op":"chunk","of":"change"\|"response","full":F,"id":I,"index":N,"count":C,"size":Z,"data":B}` |
//!
//! * `data`: automerge bytes (one or more changes, or a whole saved document when `full` is
//!   true); their chunk framing and checksums are checked before use. A change announcing a new
//!   share carries the whole document (`full: true`); a peer that does not have the share
//!   creates it from such a change only if it comes from the share's origin, or from a response
//!   addressed to it. Otherwise it asks the sender for the share.
//! * `heads`: the requester's heads; `have`: further changes it has (older ancestors at
//!   exponentially growing distances, and the first change), optional. Both are 32-byte hashes
//!   concatenated. The answer holds every change not covered by the known ones among them (the
//!   whole document if none is known; not twice to the same peer within
//!   `request_interval_secs`). A responder that does not know some of the requester's heads
//!   sends its own request to the requester, so that offline edits on both sides meet.
//! * Tags: requests for one peer and every response carry `["p", <peer id>]`; requests without
//!   `p` are for every peer that has the share. A request whose `p` names another peer is not
//!   answered; a response addressed to someone else is still applied to a share we have.
//! * Chunks: a payload whose content would not fit `max_content_bytes` is cut into `count`
//!   chunks of `data`; `id` is the hex of the first 16 bytes of the payload's SHA-256, `size`
//!   its length. The receiver reassembles per sender, share and id, checks size and id, ignores
//!   duplicate chunks (also late ones of a payload already complete), refuses chunks whose
//!   `count`/`size`/`of`/`full` disagree (`chunk-mismatch`), bounds the memory held by
//!   unfinished payloads (`chunk-overflow`) and drops those older than `chunk_max_age_secs`
//!   (`chunk-expired`).
//! * Unknown fields are ignored; another `v` is refused (`version`).
//!
//! # Refusals
//!
//! Everything from the network is checked; bad input gives [`Action::Refused`] and changes
//! nothing. Reasons: `bad-sender`, `bad-tags`, `too-large`, `malformed`, `version`,
//! `wrong-op` (op not allowed for the event kind), `bad-share`, `bad-origin`, `name-*`
//! (see [`NameError::reason`]), `bad-base64`, `bad-heads`, `bad-change` (not automerge data,
//! or the CRDT refused it), `chunk-mismatch`, `chunk-overflow`, `chunk-expired`,
//! `chunk-corrupt`, `too-many-shares`, `unsafe-path`, and for owned and private shares
//! (see [`members`] and [`share_key`]) `not-origin`, `not-member`, `bad-members`,
//! `decrypt-failed`, `not-sealed`. Counted in [`SyncEngine::refusals`].

pub mod action;
mod ask;
mod chunk;
mod deferred;
pub mod engine;
pub mod exec;
mod files;
pub mod health;
mod held;
pub mod hunk;
mod inbound;
pub mod lines;
pub mod members;
mod midstate;
mod prepared;
mod recover;
pub mod save;
mod sealing;
pub mod share_id;
pub mod share_key;
mod statelog;
mod store;
mod texthash;
mod wire;

#[cfg(test)]
mod tests;

pub use action::{Action, Refusals, SyncError};
pub use engine::{ShareBrief, ShareInfo, SyncEngine};
pub use health::{ShareState, ShareStatus};
pub use hunk::Hunk;
pub use lines::LineEdit;
pub use members::{Membership, KIND_SHARE_MEMBERS};
pub use save::BufferSave;
pub use share_id::{
    check_share_name, kind_of_name, NameError, ShareId, ShareIdError, BLACKBOARD_NAME,
    MAX_NAME_BYTES,
};
pub use wire::{escaped_len, CONTENT_VERSION};

/// Bytes of a signed sync event besides its content, counted generously: `id` (64), `pubkey`
/// (64), `sig` (128), `created_at` and `kind` (30), the keys and punctuation (about 70), and
/// the tags `["v","2"]`, `["t","sync"]`, `["p",<64 hex>]`, `["e",<64 hex>]` (about 190), with
/// room to spare for a few more tags.
pub const EVENT_OVERHEAD: usize = 1024;

/// The largest content (counted JSON-escaped, see [`escaped_len`]) that fits in a signed event
/// of at most `max_event_bytes` bytes (`crate::federation::Config::max_event_bytes`).
/// Conservative: see [`EVENT_OVERHEAD`].
pub fn content_budget(max_event_bytes: usize) -> usize {
    max_event_bytes.saturating_sub(EVENT_OVERHEAD)
}

/// The smallest `max_content_bytes` the engine accepts (a chunk's wrapper with a long share
/// name must leave room for data).
pub const MIN_CONTENT_BYTES: usize = 2048;

/// Settings of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Largest content of one published event, JSON-escaped (default
    /// `content_budget(65_536)`). Larger payloads are chunked.
    pub max_content_bytes: usize,
    /// Largest content accepted from a peer (default 1 MiB; the federation layer's event limit
    /// is normally far lower).
    pub max_incoming_content_bytes: usize,
    /// Largest payload (change, response, whole document) sent or reassembled (default 64 MiB).
    pub max_payload_bytes: usize,
    /// Most bytes held by unfinished chunked payloads together (default 128 MiB).
    pub max_buffered_bytes: usize,
    /// Most unfinished chunked payloads (default 64).
    pub max_transfers: usize,
    /// Unfinished chunked payloads are dropped this long after their first chunk (default 600 s).
    pub chunk_max_age_secs: u64,
    /// Automatic requests (missing changes, unknown shares, unknown heads) to the same peer for
    /// the same share, with the same heads, are not repeated within this time (default 30 s).
    /// [`SyncEngine::catch_up`] and [`SyncEngine::startup`] always send.
    pub request_interval_secs: u64,
    /// Most shares (new shares announced by peers beyond this are refused; default 1000).
    pub max_shares: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_content_bytes: content_budget(65_536),
            max_incoming_content_bytes: 1 << 20,
            max_payload_bytes: 64 << 20,
            max_buffered_bytes: 128 << 20,
            max_transfers: 64,
            chunk_max_age_secs: 600,
            request_interval_secs: 30,
            max_shares: 1000,
        }
    }
}

impl SyncConfig {
    /// The defaults, with `max_content_bytes` computed for events of `max_event_bytes`.
    pub fn for_event_limit(max_event_bytes: usize) -> SyncConfig {
        SyncConfig {
            max_content_bytes: content_budget(max_event_bytes),
            ..SyncConfig::default()
        }
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<(), SyncError> {
        if self.max_content_bytes < MIN_CONTENT_BYTES {
            return Err(SyncError::Config(format!(
                "max_content_bytes is {}; it must be at least {MIN_CONTENT_BYTES} \
                 (events of at least {} bytes)",
                self.max_content_bytes,
                MIN_CONTENT_BYTES + EVENT_OVERHEAD
            )));
        }
        if self.max_payload_bytes == 0 || self.max_transfers == 0 || self.max_shares == 0 {
            return Err(SyncError::Config(
                "max_payload_bytes, max_transfers and max_shares must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Most chunks in one payload: the smallest chunk a sender makes carries about 750 bytes
    /// (with [`MIN_CONTENT_BYTES`] and the longest name), so `max_payload_bytes / 512` is ample.
    pub(crate) fn max_chunks(&self) -> u32 {
        u32::try_from(self.max_payload_bytes / 512 + 1).unwrap_or(u32::MAX)
    }
}
