//! Merging concurrent edits of shared CanvasL files (a CRDT per file).
//!
//! # Dependencies, and why
//!
//! * `automerge = "0.12.0"` — the CRDT. A well-kept, widely used crate with a compact saved
//!   form (about a fifth of the file here), a built-in change queue for out-of-order delivery,
//!   and deterministic conflict resolution. Chosen over loro 1.x because loro holds about 14x the
//!   file in memory (see `/work/shared/NOTES-crdt.md`), over the 4x target. Of the automerge
//!   layouts measured on a 100,000-entry canvas (release, see [`bench`](mod@bench)), one string
//!   per line builds in ~0.25 s and holds ~1.3x the file, against ~1.0 s and ~1.6x (and a
//!   580 MB build peak) for one automerge map per entry with a key per field. Needs Rust 1.90
//!   (automerge 0.12's `rust-version`).
//! * `similar = "3"` (no default features) — Myers line diff with a deadline, for "old text vs
//!   new text". Small, no dependencies.
//! * `serde_json` (with `preserve_order`) and `thiserror`, already used by `crate::canvasl`.
//!
//! # Design
//!
//! The CRDT is the source of truth for merging; the text is a read view kept beside it (one
//! rendered string per line), so that writing the file never walks the CRDT.
//!
//! * **Every line is an item** of one automerge list (`lines`), in file order: entries, but also
//!   directives (`@version 1.0`), blank lines and non-JSON lines, so they all survive and keep
//!   their place. An item is a small map whose `t` key holds the line's **base text** (the raw
//!   line with its own line ending, `\n`, `\r\n` or none). A BOM is a root flag.
//! * **Identity.** An item's identity is its automerge object id (`counter@actor`): globally
//!   unique, the same on every replica, independent of the entry's `id`. Two entries are never
//!   merged because they share an id; duplicate ids are just two items.
//! * **Per-field merging without per-field import cost.** Importing stores one string per line
//!   (one list splice in one change), so unchanged lines keep their raw bytes and an unchanged
//!   import writes back byte-identical. When a JSON entry is edited, each changed field is
//!   written as an **override key** `.<field>` holding the field's JSON text (`""` = removed).
//!   The rendered line is the base object with the overrides applied (existing keys keep their
//!   place, new keys are appended in name order) and is re-serialized compactly; lines without
//!   overrides are written as their raw base text. Concurrent edits of different fields are
//!   different keys, so both survive; two writes of the same field are an automerge conflict:
//!   every replica shows the same winner (automerge orders them by op id, so by actor for
//!   concurrent writes) and [`SharedDoc::conflicts`] lists the losers.
//! * A line that is not a JSON object before or after an edit (directive, prose, a JSON entry
//!   turned into prose) is replaced as a whole (`t` is rewritten). An edit of a JSON entry that
//!   changes no field value (only formatting, key order or line ending) rewrites `t` too.
//! * **Order.** The list is automerge's sequence CRDT: concurrent insertions at the same place
//!   end in the same order on every replica. Moving a line is a delete plus an insert (the moved
//!   line is a new item).
//! * **Delete vs edit: delete wins.** An entry deleted by one peer and concurrently edited by
//!   another stays deleted on every replica; the edit is kept in the history but not shown
//!   (automerge hides edits inside a deleted list element). Re-adding the line is the way back.
//! * **Local saves.** [`SharedDoc::apply_local_text`] diffs the view's lines against the saved
//!   text (common prefix/suffix, then Myers on the rest; replaced lines are paired in order as
//!   edits of the same item), makes one automerge change, and returns its bytes: only that
//!   change is sent.
//! * **Remote changes.** [`SharedDoc::apply_remote`] loads change bytes (duplicates are
//!   ignored; changes whose dependencies are missing wait in automerge's queue and are applied
//!   when they arrive), then updates only the lines the resulting patches touch.
//! * **Catch-up.** A late joiner sends its [`SharedDoc::heads`]; a peer answers with
//!   [`SharedDoc::changes_since`] (the changes the heads do not cover, or the whole compressed
//!   document for an empty replica). The exchange is per pair of peers, so it fits pub/sub.
//! * **Persistence.** [`SharedDoc::save`] / [`SharedDoc::load`] keep the full history (and queued
//!   changes); after a restart, [`SharedDoc::apply_local_text`] with the file's bytes picks up
//!   edits made while the replica was closed.
//!
//! * **Kinds.** The same document holds plain line-oriented text (`.org`, `.md`, `.txt`):
//!   with [`DocKind::Text`] every edited line is written whole and never as field overrides,
//!   so a line that happens to look like JSON merges as prose (see `text`).
//!
//! Limits: two peers must not both [`SharedDoc::import`] the same share (one imports, the others
//! join with [`SharedDoc::new`]); an override written concurrently with a rewrite of the whole
//! line into non-JSON text is kept in the CRDT but not shown; untrusted bytes are validated by
//! automerge and any panic inside it is caught and reported as [`MergeError::Panic`].

pub mod bench;
mod diff;
mod render;
mod shared;
mod text;
mod touched;

#[cfg(test)]
mod proptest;
#[cfg(test)]
mod tests;

pub(crate) use diff::split_lines;
pub use shared::SharedDoc;
pub use text::DocKind;

use crate::canvasl::EntryKey;

/// Errors of the merge layer.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Text that is not UTF-8 cannot be shared.
    #[error("the text is not valid UTF-8 (byte offset {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Bytes from a peer (or a saved state) that automerge rejected, or an operation it refused.
    #[error("CRDT error: {0}")]
    Crdt(#[from] automerge::AutomergeError),
    /// Heads must be a whole number of 32-byte hashes.
    #[error("heads must be a multiple of 32 bytes")]
    BadHeads,
    /// This replica has not received the shared document yet, so it cannot make local edits.
    #[error("this replica has not received the shared document yet")]
    NotShared,
    /// The CRDT library panicked on the input (treated as malformed input).
    #[error("the CRDT library failed on malformed input")]
    Panic,
    /// The CRDT and the read view disagree (a bug).
    #[error("internal error: the CRDT and its text view disagree")]
    Internal,
    /// A line edit ([`SharedDoc::apply_local_lines`]) keeps more lines than the text has.
    #[error(
        "the edit keeps {before} lines before and {after} after the change, but the text has \
         {lines} lines; hand over the whole file instead"
    )]
    BadEdit {
        /// Lines kept before the change.
        before: usize,
        /// Lines kept after it.
        after: usize,
        /// Lines of the text.
        lines: usize,
    },
}

/// What [`SharedDoc::apply_remote`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Whether the document changed (false for duplicates, and for changes that wait for
    /// missing dependencies).
    pub changed: bool,
    /// How many changes this replica knows it is missing (dependencies of queued changes).
    pub missing_deps: usize,
}

/// What a status listing shows of a document's text (see [`SharedDoc::figures`]): kept with the
/// document, so that reading them does not walk every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocFigures {
    /// Bytes of [`SharedDoc::text`] (as [`SharedDoc::text_len`]).
    pub text_len: usize,
    /// How many [`SharedDoc::conflicts`] there are.
    pub conflicts: usize,
}

/// A field (or a whole line) written concurrently by several peers.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The item's stable identity (see [`SharedDoc::uid`]).
    pub uid: String,
    /// Its current 0-based line index.
    pub line: usize,
    /// Its current key in the `crate::canvasl` sense, if the line is an entry.
    pub entry_key: Option<EntryKey>,
    /// The field, or `None` when the whole line was written (a non-JSON line, or a formatting
    /// rewrite).
    pub field: Option<String>,
    /// The value shown on every replica (`None`: the field is removed; for a whole line, the
    /// line text as a JSON string).
    pub winner: Option<serde_json::Value>,
    /// The values that lost, same encoding.
    pub losers: Vec<Option<serde_json::Value>>,
}
