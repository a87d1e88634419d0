//! The finished, high-level events the session hands to its consumer (Elisp): one per thing
//! that happened, after every check, decryption, merge and file write is done.

/// Why a peer went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// It said goodbye (a departure event).
    Departed,
    /// The broker published its last will.
    Vanished,
    /// Silent for longer than the stale limit.
    Stale,
}

impl Offline {
    /// The Elisp symbol name (`departed`, `vanished`, `stale`).
    pub fn as_str(self) -> &'static str {
        match self {
            Offline::Departed => "departed",
            Offline::Vanished => "vanished",
            Offline::Stale => "stale",
        }
    }
}

/// A value of a [`SessionEvent::Sync`] event, as Elisp receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncValue {
    /// A string.
    Text(String),
    /// An integer (versions and sequence numbers stay far below 2^61).
    Int(i64),
    /// t or nil.
    Flag(bool),
    /// A modification time as "SECONDS.NANOSECONDS", or nil.
    Mtime(Option<(i64, u32)>),
    /// Hunks (see `crate::sync::hunk`), or nil when unknown.
    Hunks(Option<Vec<crate::sync::Hunk>>),
}

/// Something that happened, finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A peer came online.
    PeerOnline {
        peer_id: String,
        /// Its announced display name (peer-supplied text: show it through the safe helper).
        name: String,
        /// The topic that messages to it go to.
        address: String,
    },
    /// A peer went away.
    PeerOffline { peer_id: String, reason: Offline },
    /// A known name was announced by a new key (held until the person decides).
    KeyConflict {
        new_peer_id: String,
        name: String,
        known_peer_id: String,
    },
    /// A verified, decrypted peer message.
    PeerMessage {
        from: String,
        text: String,
        /// The event's id and verified Schnorr signature.
        id: String,
        sig: String,
        /// The topic it came on.
        topic: String,
    },
    /// A receipt acknowledged our messages, as (id, peer).
    Receipt { delivered: Vec<(String, String)> },
    /// The delivery upkeep ran (on the worker): messages given up, errors, and the messages
    /// still waiting for a receipt per recipient. Sent only when one of them changed.
    Delivery {
        /// (id, peer, why) of each message given up.
        failed: Vec<(String, String, String)>,
        /// What could not be saved or sent.
        errors: Vec<String>,
        /// (peer, count) of messages waiting for a receipt.
        waiting: Vec<(String, usize)>,
    },
    /// An accepted presence, departure or sync event, for the prototype's
    /// `meta-log-mqtt-message-received-hook` (only sent while that hook has functions).
    Accepted {
        topic: String,
        /// `presence`, `departure`, `sync-change`, `sync-request` or `sync-response`.
        kind: &'static str,
        /// The content (empty for presence and departure).
        content: String,
    },
    /// A message was dropped by a check; `quiet` ones (echoes of our own) are counted only.
    Dropped {
        reason: String,
        message: String,
        peer: Option<String>,
        quiet: bool,
    },
    /// A sync message from a peer was refused; nothing changed.
    SyncRefused { reason: String, detail: String },
    /// Something the person should know (a share's URL, if any, and the text).
    Warning {
        share: Option<String>,
        message: String,
    },
    /// A file of a share could not be written; it is retried.
    WriteFailed {
        share: String,
        path: String,
        message: String,
        attempt: u32,
    },
    /// An event of the edit path (see `crate::sync::save`): a symbol and at most five
    /// values, so that this path's events need no case of their own in the conversion.
    /// `saved` (SHARE PATH SEQ VERSION MTIME), `save-not-taken` (SHARE PATH SEQ REASON
    /// FAILED), `held-change` (SHARE PATH FROM VERSION HUNKS), `offer-written` (SHARE PATH
    /// VERSION MTIME), `file-updated` (SHARE PATH CREATED HUNKS), `shared` (ASKED URL PATH),
    /// `share-failed` (ASKED PATH WHY).
    Sync {
        /// The event's type, an Elisp symbol's name.
        kind: &'static str,
        /// Its values.
        values: Vec<SyncValue>,
    },
}
