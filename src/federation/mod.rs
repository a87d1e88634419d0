//! The federation core: topic names, event kinds, the inbound verification
//! pipeline, the peer table, trust, and the outbound event builders.
//!
//! This module is synchronous and knows nothing of MQTT clients or Emacs:
//! the caller passes in topics, payload bytes and the current Unix time,
//! and publishes the [`Publication`]s it gets back.
//!
//! * [`protocol`] — kinds, tags, topics, presence content.
//! * [`inbound`] — [`Inbound::accept`], the pipeline every received
//!   message goes through.
//! * [`outbound`] — [`Outbound`], builders of signed events to publish.
//! * [`peers`] — [`PeerTable`] and [`Transition`]s.
//! * [`trust`] — [`TrustPolicy`], [`TrustStore`].
//! * [`replay`] — [`ReplaySet`], the bounded duplicate-id memory, and
//!   [`replay_journal`], its copy on disk.
//! * [`names`] — what a display name may hold, and look-alike skeletons.
//! * [`dropped`] — [`Dropped`], [`DropReason`], [`DropCounters`].
//! * [`receipts`] — delivery receipts (kind 4773) and the log of accepted
//!   peer messages; [`outbox`] — unacknowledged messages, resent until a
//!   receipt or their expiry.
//!
//! # Protocol, version 1
//!
//! Every MQTT payload is one signed Nostr event (NIP-01 JSON, BIP-340
//! Schnorr signature; the event `pubkey` is the peer id: 64 lowercase hex
//! characters). Nothing else is ever published on these topics.
//!
//! ## Topics
//!
//! `{p}` is the topic prefix, `canvasl` by default (configurable; it may
//! have several levels, e.g. `lab/canvasl`).
//!
//! | topic | retained | publisher | events |
//! |---|---|---|---|
//! | `{p}/peers/{peer-id}/presence` | yes | only `{peer-id}` | presence (online, offline = last will), departure |
//! | `{p}/peers/announce` | no | anyone | presence (online), departure |
//! | `{p}/sync` | no | anyone | sync change, sync request, sync response |
//! | `{p}/peers/{peer-id}/messages` | no | anyone, to `{peer-id}` | encrypted peer message, delivery receipt |
//!
//! A peer subscribes to `{p}/peers/+/presence` (at QoS 0: some brokers
//! deliver at most about 100 retained messages to one QoS 1 subscription),
//! `{p}/peers/announce`, `{p}/sync` and its own `{p}/peers/{me}/messages`
//! (see [`Topics::subscriptions`]). MQTT keeps one retained message per
//! topic, so each peer has a presence topic of its own: a newcomer learns
//! every peer's last presence from the retained messages at once. The
//! MQTT last will is set on the same topic, retained, so it replaces the
//! peer's `online` presence when the broker notices the peer is gone.
//!
//! Publishing: presence, will and departure at QoS 1 with retain; the other
//! events at QoS 1 without retain.
//!
//! ## Event kinds
//!
//! | kind | name | range | topic | content |
//! |---|---|---|---|---|
//! | 20770 | presence | ephemeral | presence, announce | presence JSON |
//! | 20771 | departure | ephemeral | presence, announce | presence JSON, `status` `offline`, with `reason` |
//! | 20772 | sync request | ephemeral | sync | opaque (caller's) |
//! | 4770 | peer message | regular | messages | NIP-44 v2 payload |
//! | 4771 | sync change | regular | sync | opaque (caller's) |
//! | 4772 | sync response | regular | sync | opaque (caller's) |
//! | 4773 | delivery receipt | regular | messages (of the acknowledged sender) | NIP-44 v2 payload of `{"ack":[ids]}`, see [`receipts`] |
//! | 4774 | link signal | regular | messages | NIP-44 v2 payload of direct-link signalling, see [`crate::links::signal`] |
//!
//! Any other kind is dropped (`unknown-kind`).
//!
//! ## Tags
//!
//! Every event carries:
//! * `["v","2"]` — protocol version; a missing or different value is
//!   dropped (`protocol-version`);
//! * `["t",<topic-kind>]` — `presence`, `announce`, `sync` or `message`:
//!   the kind of topic the event was made for. It is covered by the
//!   signature, so an event cannot be replayed onto another kind of topic
//!   (`wrong-topic`).
//!
//! Peer messages also carry `["p",<recipient peer id>]`, which must equal
//! the `{peer-id}` of the topic. Sync events may carry further tags chosen
//! by the caller (for instance `["p",<peer>]` to address a sync request or
//! response, `["e",<request event id>]` on a response); tag names `t` and
//! `v` are reserved.
//!
//! ## Presence content (kinds 20770 and 20771)
//!
//! ```json
//! {"peer_id":"<64 hex>","name":"alice","software":"meta-log-federation/0.1.0",
//!  "protocol":"2","capabilities":["canvasl-sync","nip44-messages"],
//!  "status":"online","since":1767225600}
//! ```
//!
//! * `peer_id` must equal the event's `pubkey`; `protocol` must be `"1"`.
//! * `status` is `online` or `offline` (a departure is always `offline`
//!   and may add `"reason":"..."`).
//! * `since` is the Unix time the sender's current MQTT session started;
//!   every presence of one session, the will included, carries the same
//!   value, and each new session a larger one. `since <= created_at`.
//! * Strings are at most 256 bytes, at most 64 capabilities; unknown
//!   fields are ignored.
//!
//! ## Peer message content (kind 4770)
//!
//! The NIP-44 v2 payload (Base64) of the UTF-8 plaintext, encrypted with
//! the conversation key of the sender's secret key and the recipient's
//! peer id. Only sender and recipient can read it; the broker and other
//! peers see the event's tags and size only.
//!
//! ## Verifying a received message
//!
//! [`Inbound::accept`] checks, in order, dropping at the first failure:
//!
//! 1. size (default limit 65,536 bytes) → `too-large`;
//! 2. UTF-8, JSON, NIP-01 shape → `malformed`; recomputed id →
//!    `id-mismatch`; Schnorr signature → `bad-signature`;
//! 3. our own event, echoed back by the broker → `own-event` (quiet);
//! 4. `v` tag → `protocol-version`; kind → `unknown-kind`; presence
//!    content → `malformed` (or `protocol-version`);
//! 5. `created_at`: more than 900 s in the future → `in-future`; older than
//!    600 s → `too-old`, **except presence and departure events of a known
//!    key**, see below (an unknown key must announce itself with a fresh
//!    presence, so a replayed old presence cannot pin a key);
//! 6. event id already accepted → `replay`: every accepted id is remembered
//!    until its `created_at` leaves the 600 s window (so never forgotten
//!    while it could pass the age check), across restarts too (a journal
//!    beside the trust file); memory is bounded (default 100,000 ids, a
//!    tenth per sender): when full, or when the sender holds its share,
//!    new events are refused → `flood`;
//! 7. topic, kind, `t` tag, signer and `p` tag agree → `wrong-topic`; a
//!    message for another peer → `not-for-us`;
//! 8. trust policy → `blocked` or `untrusted`;
//! 9. peer messages, receipts, link signals: NIP-44 decryption with our key → `decrypt-failed`.
//!
//! Only events that pass every step are remembered as seen, so a message
//! dropped for its topic or for trust can still be accepted when it arrives
//! legitimately (or after the user trusts its sender).
//!
//! ## The presence rule (why an old last will is still accepted)
//!
//! The last will is signed when the peer connects but published by the
//! broker only when the peer disappears, possibly hours later, so its
//! `created_at` is old. Retained presences are old too. Presence and
//! departure events are therefore exempt from the maximum age; instead
//! each peer's presence events are ordered by the key
//! `(since, status, created_at)`, with `offline` above `online` within one
//! session, and one is applied only if its key is **not smaller** than the
//! key of the last presence applied for that peer (`too-old` otherwise; an
//! equal key is the same state again, e.g. the announce copy of a retained
//! presence, and changes nothing).
//!
//! Why this is safe:
//! * every presence is signed by the peer itself and must arrive on the
//!   peer's own presence topic or the announce topic, so nobody else can
//!   make one up;
//! * a will belongs to one session (`since`) and outranks every `online`
//!   of that session, including the periodic re-announcements signed after
//!   it, so the broker's will always takes effect;
//! * a replayed `offline` (an old will or departure) carries an older
//!   `since` than the peer's current session, so it cannot override a newer
//!   `online`; a replayed old `online` cannot override a newer `offline`
//!   either;
//! * the future limit still applies, and the exact same event is refused
//!   as a replay.
//!
//! What it does not prevent: someone able to publish retained messages on a
//! peer's presence topic can replace the retained presence with an older
//! one signed by that peer; peers who saw the newer one ignore it, a
//! newcomer believes it until the next presence. Such an old `online` shows
//! the peer as `stale` at once when it is older than the stale limit. Broker
//! ACLs (each client may publish only to its own presence topic) close this.
//! A sender reconnecting twice within one second uses a `since` one second
//! ahead of its clock (see [`Outbound::new_session`]), never an equal one.
//! A node with a trust file also keeps its last `since` beside it
//! ([`session_file`]), so a peer killed and started again within the same
//! second still starts a later session than the one its will ended.
//!
//! ## Trust
//!
//! See [`trust`]: TOFU by default, an allowlist, or open; blocking always
//! wins. A display name already held by one key (compared as a look-alike
//! skeleton, see [`names`]) and announced by another key raises a
//! [`Transition::KeyConflict`] warning under every policy; under TOFU a
//! new key is held (`untrusted`), a trusted key only has that presence
//! refused. Only a presence pins a key, at a bounded rate, and a full
//! store replaces the least recently seen automatic pin.
//!
//! ## Own events and shared identities
//!
//! Events signed with our own key are dropped quietly as `own-event`. Two
//! running peers that share one identity therefore ignore each other: give
//! each device its own identity.

pub mod dropped;
pub mod file_writer;
pub mod inbound;
pub mod names;
pub mod node;
pub mod outbound;
pub mod outbox;
pub mod peers;
pub mod protocol;
pub mod receipts;
pub mod replay;
pub mod replay_journal;
pub mod session_file;
pub mod trust;

#[cfg(test)]
mod tests;

pub use dropped::{DropCounters, DropReason, Dropped};
pub use inbound::{Accepted, Body, Inbound, SyncKind};
pub use node::{DeliveryPaths, DeliveryTick, Handled, Node, NodeCounts, NodeError};
pub use outbound::{LocalProfile, Outbound, OutboundError, Prepared, Publication};
pub use outbox::{Outbox, OutboxSettings, Pending};
pub use peers::{PeerInfo, PeerStatus, PeerTable, Transition};
pub use protocol::{Presence, Route, Topics};
pub use replay::ReplaySet;
pub use trust::{TrustError, TrustPolicy, TrustState, TrustStore};

/// Settings of the federation core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Topic prefix (default `canvasl`).
    pub prefix: String,
    /// Largest accepted or produced payload, in bytes (default 65,536).
    pub max_event_bytes: usize,
    /// Oldest accepted `created_at`, in seconds before now (default 600).
    /// Presence events are exempt (see the module documentation).
    pub max_age_secs: u64,
    /// Latest accepted `created_at`, in seconds after now (default 900).
    pub max_future_secs: u64,
    /// How many accepted event ids are remembered (default 100,000).
    pub replay_capacity: usize,
    /// Silence after which an online peer becomes stale (default 120 s).
    pub stale_after_secs: u64,
    /// Most peers in the peer table and in the trust store (default 10,000);
    /// new peers beyond that are dropped as `untrusted`.
    pub max_peers: usize,
    /// Trust policy (default TOFU).
    pub policy: TrustPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: protocol::DEFAULT_PREFIX.to_string(),
            max_event_bytes: 65_536,
            max_age_secs: 600,
            max_future_secs: 900,
            replay_capacity: 100_000,
            stale_after_secs: 120,
            max_peers: 10_000,
            policy: TrustPolicy::Tofu,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("federation configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Most ids one sender may hold in the replay memory: a tenth of it,
    /// so a single key cannot fill it for everyone.
    pub fn replay_per_sender(&self) -> usize {
        (self.replay_capacity / 10).max(1)
    }

    /// Checks the settings and returns the topic names they imply.
    pub fn topics(&self) -> Result<Topics, ConfigError> {
        if self.max_event_bytes < 1024 {
            return Err(ConfigError(format!(
                "max_event_bytes is {}; it must be at least 1024",
                self.max_event_bytes
            )));
        }
        if self.replay_capacity == 0 || self.max_peers == 0 {
            return Err(ConfigError(
                "replay_capacity and max_peers must be at least 1".into(),
            ));
        }
        Topics::new(&self.prefix).map_err(|e| ConfigError(e.to_string()))
    }
}
