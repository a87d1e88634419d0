//! The inbound pipeline: every received MQTT message goes through
//! [`Inbound::accept`], which verifies it step by step (see the
//! [module documentation](super) for the order) and keeps the peer table,
//! the duplicate-id memory, the trust store and the drop counters.

use crate::identity::event::{verify_json_with_limit, SignedEvent, VerifyError};
use crate::identity::{nip44, Identity};

use super::dropped::{DropCounters, DropReason, Dropped};
use super::peers::{PeerInfo, PeerTable, Traffic, Transition};
use super::protocol::{
    tag_value, AnnouncedStatus, Presence, Route, Topics, KINDS, KIND_DEPARTURE, KIND_LINK_SIGNAL,
    KIND_PEER_MESSAGE, KIND_PRESENCE, KIND_RECEIPT, KIND_SYNC_CHANGE, KIND_SYNC_REQUEST,
    KIND_SYNC_RESPONSE, PROTOCOL_VERSION, TAG_RECIPIENT, TAG_SHARE, TAG_TOPIC, TAG_VERSION,
};
use super::replay::{id_bytes, Refusal, ReplaySet};
use super::trust::{TrustError, TrustPolicy, TrustState, TrustStore, Verdict};
use super::{Config, ConfigError};

/// Which sync event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Kind 4771: one change.
    Change,
    /// Kind 20772: a request for what the sender is missing.
    Request,
    /// Kind 4772: an answer to a request.
    Response,
}

impl SyncKind {
    /// The event kind.
    pub fn kind(self) -> u16 {
        match self {
            SyncKind::Change => KIND_SYNC_CHANGE,
            SyncKind::Request => KIND_SYNC_REQUEST,
            SyncKind::Response => KIND_SYNC_RESPONSE,
        }
    }

    /// `change`, `request` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Change => "change",
            SyncKind::Request => "request",
            SyncKind::Response => "response",
        }
    }

    fn from_kind(kind: u32) -> Option<SyncKind> {
        match u16::try_from(kind).ok()? {
            KIND_SYNC_CHANGE => Some(SyncKind::Change),
            KIND_SYNC_REQUEST => Some(SyncKind::Request),
            KIND_SYNC_RESPONSE => Some(SyncKind::Response),
            _ => None,
        }
    }
}

/// What an accepted event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A presence (online or offline; an offline one is usually a last will).
    Presence(Presence),
    /// A graceful departure.
    Departure(Presence),
    /// A peer message to us, decrypted.
    Message {
        /// The plaintext.
        plaintext: String,
    },
    /// A delivery receipt to us, decrypted: the ids of our peer messages
    /// the sender accepted (see [`receipts`](super::receipts)).
    Receipt {
        /// Acknowledged event ids (64 lowercase hex each).
        acked: Vec<String>,
    },
    /// A direct-link signal to us, decrypted (see [`crate::links::signal`]).
    LinkSignal {
        /// The plaintext JSON.
        plaintext: String,
    },
    /// A sync event; `content` as the sender gave it.
    Sync {
        /// Change, request or response.
        kind: SyncKind,
        /// The opaque content.
        content: String,
    },
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The verified event (for a peer message, `content` is still the
    /// ciphertext; the plaintext is in [`Body::Message`]).
    pub event: SignedEvent,
    /// The topic it came on.
    pub route: Route,
    /// What it says.
    pub body: Body,
    /// Peer status changes it caused (run hooks for these).
    pub transitions: Vec<Transition>,
}

impl Accepted {
    /// The sender's peer id.
    pub fn from(&self) -> &str {
        &self.event.pubkey
    }
}

/// The receiving side of one peer: verification state, peer table and trust.
#[derive(Debug)]
pub struct Inbound {
    identity: Identity,
    me: String,
    config: Config,
    topics: Topics,
    replay: ReplaySet,
    peers: PeerTable,
    trust: TrustStore,
    counters: DropCounters,
    keys: nip44::ConversationKeys,
}

fn map_verify(e: VerifyError) -> Dropped {
    let reason = match e {
        VerifyError::TooLarge { .. } => DropReason::TooLarge,
        VerifyError::IdMismatch { .. } => DropReason::IdMismatch,
        VerifyError::BadSignature => DropReason::BadSignature,
        VerifyError::MalformedJson(_)
        | VerifyError::BadField(_)
        | VerifyError::BadHex { .. }
        | VerifyError::BadPubkey => DropReason::Malformed,
    };
    Dropped::new(reason, e.to_string())
}

/// Steps 1 and 2 of [`Inbound::accept`], which need no state: size, shape, id and
/// signature (`limit`: the configuration's `max_event_bytes`).
pub fn verify_payload(payload: &[u8], limit: usize) -> Result<SignedEvent, Dropped> {
    // 1. Size.
    if payload.len() > limit {
        return Err(Dropped::new(
            DropReason::TooLarge,
            format!("payload is {} bytes, the limit is {limit}", payload.len()),
        ));
    }
    // 2. Shape, id, signature.
    let text = std::str::from_utf8(payload)
        .map_err(|_| Dropped::new(DropReason::Malformed, "payload is not UTF-8 text"))?;
    verify_json_with_limit(text, limit).map_err(map_verify)
}

impl Inbound {
    /// The receiving side for `identity`, with `config` and a trust store
    /// (loaded with [`TrustStore::load`], or empty).
    pub fn new(
        identity: Identity,
        config: Config,
        trust: TrustStore,
    ) -> Result<Inbound, ConfigError> {
        let topics = config.topics()?;
        Ok(Inbound {
            me: identity.peer_id(),
            identity,
            replay: ReplaySet::new(
                config.replay_capacity,
                config.replay_per_sender(),
                config.max_age_secs,
            ),
            peers: PeerTable::new(config.stale_after_secs, config.max_peers),
            topics,
            trust,
            config,
            counters: DropCounters::default(),
            keys: nip44::ConversationKeys::default(),
        })
    }

    /// Verifies one received message and, if it passes every check,
    /// applies it (peer table, trust pinning, duplicate memory).
    ///
    /// `now` is the current Unix time in seconds. Never panics, whatever
    /// the bytes. Every drop is counted ([`Inbound::drop_counts`]).
    pub fn accept(&mut self, topic: &str, payload: &[u8], now: u64) -> Result<Accepted, Dropped> {
        let verified = verify_payload(payload, self.config.max_event_bytes);
        self.accept_verified(topic, verified, now)
    }

    /// [`Inbound::accept`] for a payload whose stateless checks [`verify_payload`] made
    /// already (its result, a drop included, which is counted here): the caller can make
    /// them, the costly part (a signature check), without holding the lock on this state.
    pub fn accept_verified(
        &mut self,
        topic: &str,
        verified: Result<SignedEvent, Dropped>,
        now: u64,
    ) -> Result<Accepted, Dropped> {
        let result = verified.and_then(|ev| self.run(topic, ev, now));
        if let Err(d) = &result {
            self.counters.count(d.reason);
        }
        result
    }

    fn run(&mut self, topic: &str, ev: SignedEvent, now: u64) -> Result<Accepted, Dropped> {
        let fail = |reason: DropReason, message: String| Dropped {
            reason,
            message,
            event_id: Some(ev.id.clone()),
            peer_id: Some(ev.pubkey.clone()),
            transitions: Vec::new(),
        };
        // 3. Our own event echoed back.
        if ev.pubkey == self.me {
            return Err(fail(
                DropReason::OwnEvent,
                "our own event, echoed by the broker".into(),
            ));
        }
        // 4. Version, kind, presence content. The signature is verified (step 2), so a
        // refusal names its real signer (the person is told once per peer); a blocked
        // signer stays a quiet `blocked`.
        let other_version = |v: &str| {
            if self.trust.state(&ev.pubkey) == TrustState::Blocked {
                fail(DropReason::Blocked, "the peer is blocked".into())
            } else {
                fail(
                    DropReason::ProtocolVersion,
                    super::protocol::version_refusal(v),
                )
            }
        };
        match tag_value(&ev.tags, TAG_VERSION) {
            Some(PROTOCOL_VERSION) => {}
            Some(v) => return Err(other_version(v)),
            None => {
                return Err(fail(
                    DropReason::ProtocolVersion,
                    "no protocol version tag [\"v\",…]; not a federation event".into(),
                ))
            }
        }
        if !KINDS.iter().any(|k| u32::from(*k) == ev.kind) {
            return Err(fail(
                DropReason::UnknownKind,
                format!("kind {} is not a federation kind", ev.kind),
            ));
        }
        let is_presence =
            ev.kind == u32::from(KIND_PRESENCE) || ev.kind == u32::from(KIND_DEPARTURE);
        let presence = if is_presence {
            let p = Presence::parse(&ev.content, ev.created_at)
                .map_err(|m| fail(DropReason::Malformed, m))?;
            if p.peer_id != ev.pubkey {
                return Err(fail(
                    DropReason::Malformed,
                    "presence content names another peer than its signer".into(),
                ));
            }
            if p.protocol != PROTOCOL_VERSION {
                return Err(other_version(&p.protocol));
            }
            if ev.kind == u32::from(KIND_DEPARTURE) && p.status != AnnouncedStatus::Offline {
                return Err(fail(
                    DropReason::Malformed,
                    "a departure must have status offline".into(),
                ));
            }
            Some(p)
        } else {
            None
        };
        // 5. created_at window (presence: ordering instead of maximum age).
        if ev.created_at > now.saturating_add(self.config.max_future_secs) {
            return Err(fail(
                DropReason::InFuture,
                format!(
                    "created_at is {} s in the future (limit {} s); check the sender's clock",
                    ev.created_at - now,
                    self.config.max_future_secs
                ),
            ));
        }
        let age = now.saturating_sub(ev.created_at);
        match &presence {
            // A key nobody knows may only introduce itself with a fresh
            // presence: an old one (replayed after a restart) cannot pin it.
            Some(_)
                if age > self.config.max_age_secs
                    && self.trust.state(&ev.pubkey) == TrustState::Unknown
                    && !self.peers.contains(&ev.pubkey) =>
            {
                return Err(fail(
                    DropReason::TooOld,
                    format!(
                        "presence of an unknown key is {age} s old (limit {} s); \
                         a new peer must announce itself afresh",
                        self.config.max_age_secs
                    ),
                ));
            }
            Some(p) => {
                if let Some(last) = self.peers.presence_key(&ev.pubkey) {
                    if p.order_key(ev.created_at) < last {
                        return Err(fail(
                            DropReason::TooOld,
                            "presence is older than the last presence seen from this peer".into(),
                        ));
                    }
                }
            }
            None => {
                if age > self.config.max_age_secs {
                    return Err(fail(
                        DropReason::TooOld,
                        format!(
                            "created_at is {age} s old (limit {} s)",
                            self.config.max_age_secs
                        ),
                    ));
                }
            }
        }
        // 6. Duplicate id.
        let id = id_bytes(&ev.id);
        let sender = id_bytes(&ev.pubkey);
        match self.replay.check(&id, &sender, now) {
            Ok(()) => {}
            // A presence remembered from before a restart (the journal) while
            // the peer table, which starts empty, holds none of this peer:
            // the broker's retained copy is how a restarted peer learns who is
            // there. The ordering rule above, not the id, decides presence.
            Err(Refusal::Seen)
                if presence.is_some() && self.peers.presence_key(&ev.pubkey).is_none() => {}
            Err(Refusal::Seen) => {
                return Err(fail(
                    DropReason::Replay,
                    "event already received (replay or duplicate delivery)".into(),
                ))
            }
            Err(Refusal::Full) => {
                return Err(fail(
                    DropReason::Flood,
                    format!(
                        "the replay memory holds {} young event ids; new events are refused \
                         until they expire (a flood?)",
                        self.replay.capacity()
                    ),
                ))
            }
            Err(Refusal::SenderQuota) => {
                return Err(fail(
                    DropReason::Flood,
                    format!(
                        "the sender sent more than {} events within {} s; dropped (a flood?)",
                        self.replay.per_sender(),
                        self.replay.window()
                    ),
                ))
            }
        }
        // 7. Topic, kind, tags and signer agree.
        let Some(route) = self.topics.parse(topic) else {
            return Err(fail(
                DropReason::WrongTopic,
                super::protocol::shorten(format!("`{topic}` is not a federation topic")),
            ));
        };
        let tk = route.kind();
        if !tk.allows(ev.kind) {
            return Err(fail(
                DropReason::WrongTopic,
                format!("kind {} does not belong on a {} topic", ev.kind, tk.tag()),
            ));
        }
        if tag_value(&ev.tags, TAG_TOPIC) != Some(tk.tag()) {
            return Err(fail(
                DropReason::WrongTopic,
                format!(
                    "the event's t tag does not say `{}`: it was made for another topic",
                    tk.tag()
                ),
            ));
        }
        match &route {
            Route::Presence(owner) if *owner != ev.pubkey => {
                return Err(fail(
                    DropReason::WrongTopic,
                    "presence on another peer's presence topic".into(),
                ));
            }
            // A share's topic carries only events sealed for that share, and a sealed
            // event only travels on its share's topic.
            Route::ShareSync(tag) if tag_value(&ev.tags, TAG_SHARE) != Some(tag.as_str()) => {
                return Err(fail(
                    DropReason::WrongTopic,
                    "the event's s tag does not name the share topic it came on".into(),
                ));
            }
            Route::Sync if tag_value(&ev.tags, TAG_SHARE).is_some() => {
                return Err(fail(
                    DropReason::WrongTopic,
                    "a sealed share event on the federation-wide sync topic".into(),
                ));
            }
            Route::Messages(to) => {
                if tag_value(&ev.tags, TAG_RECIPIENT) != Some(to.as_str()) {
                    return Err(fail(
                        DropReason::WrongTopic,
                        "the message's p tag does not name the topic's peer".into(),
                    ));
                }
                if *to != self.me {
                    return Err(fail(
                        DropReason::NotForUs,
                        "message addressed to another peer".into(),
                    ));
                }
            }
            _ => {}
        }
        // 8. Trust.
        let name: Option<String> = presence.as_ref().map(|p| p.name.clone());
        let pin = match self.trust.check(
            self.config.policy,
            &ev.pubkey,
            name.as_deref(),
            self.config.max_peers,
        ) {
            Verdict::Accept { pin } => pin,
            Verdict::Blocked => {
                return Err(fail(DropReason::Blocked, "the peer is blocked".into()));
            }
            Verdict::Untrusted(m) => return Err(fail(DropReason::Untrusted, m)),
            Verdict::Conflict { name, known } => {
                // Under TOFU a new or pinned key is held. A trusted key, or
                // any key under the other policies, keeps its state: only
                // this presence (its claim to the name) is refused.
                let state = self.trust.state(&ev.pubkey);
                let held = self.config.policy == TrustPolicy::Tofu
                    && matches!(state, TrustState::Unknown | TrustState::Pinned)
                    && self
                        .trust
                        .hold(&ev.pubkey, &name, now, self.config.max_peers);
                if held {
                    self.peers.set_trust(&ev.pubkey, TrustState::Conflict);
                }
                let consequence = if held || state == TrustState::Conflict {
                    "nothing from the new key is accepted until you trust it"
                } else {
                    "its presence is refused; forget the other key if this one replaces it"
                };
                let mut d = fail(
                    DropReason::Untrusted,
                    super::protocol::shorten(format!(
                        "WARNING: peer {}… announced display name `{}`, which (or a look-alike \
                         of which) belongs to peer {}…; {consequence}",
                        &ev.pubkey[..12],
                        name.escape_debug(),
                        &known[..known.len().min(12)],
                    )),
                );
                d.transitions.push(Transition::KeyConflict {
                    name,
                    known_peer_id: known,
                    new_peer_id: ev.pubkey.clone(),
                });
                return Err(d);
            }
        };
        if self.peers.is_full_for(&ev.pubkey) && !self.peers.make_room() {
            return Err(fail(
                DropReason::Untrusted,
                format!(
                    "the peer table is full ({} peers); new peers are refused",
                    self.config.max_peers
                ),
            ));
        }
        // 9. Decryption.
        let body = if ev.kind == u32::from(KIND_PEER_MESSAGE) {
            let plaintext = self
                .keys
                .get(self.identity.keypair(), &ev.pubkey)
                .and_then(|k| nip44::decrypt(&k, &ev.content))
                .map_err(|e| {
                    fail(
                        DropReason::DecryptFailed,
                        format!("message does not decrypt with our key: {e}"),
                    )
                })?;
            Body::Message { plaintext }
        } else if ev.kind == u32::from(KIND_RECEIPT) {
            let acked = self
                .keys
                .get(self.identity.keypair(), &ev.pubkey)
                .and_then(|k| nip44::decrypt(&k, &ev.content))
                .map_err(|e| {
                    fail(
                        DropReason::DecryptFailed,
                        format!("receipt does not decrypt with our key: {e}"),
                    )
                })
                .and_then(|plain| {
                    super::receipts::parse_content(&plain)
                        .map_err(|m| fail(DropReason::Malformed, m))
                })?;
            Body::Receipt { acked }
        } else if ev.kind == u32::from(KIND_LINK_SIGNAL) {
            let plaintext = self
                .keys
                .get(self.identity.keypair(), &ev.pubkey)
                .and_then(|k| nip44::decrypt(&k, &ev.content))
                .map_err(|e| {
                    fail(
                        DropReason::DecryptFailed,
                        format!("link signal does not decrypt with our key: {e}"),
                    )
                })?;
            Body::LinkSignal { plaintext }
        } else if let Some(p) = presence {
            if ev.kind == u32::from(KIND_DEPARTURE) {
                Body::Departure(p)
            } else {
                Body::Presence(p)
            }
        } else {
            match SyncKind::from_kind(ev.kind) {
                Some(kind) => Body::Sync {
                    kind,
                    content: ev.content.clone(),
                },
                None => {
                    return Err(fail(
                        DropReason::UnknownKind,
                        format!("kind {} is not a federation kind", ev.kind),
                    ))
                }
            }
        };
        // Accepted: remember it. Only a presence pins a key: any other
        // event from an unknown key is accepted under TOFU but leaves no
        // trace in the trust store, so a flood of keys cannot fill it.
        self.replay.remember(id, sender, ev.created_at);
        if pin && is_presence {
            self.trust
                .pin(&ev.pubkey, name.as_deref(), now, self.config.max_peers);
        }
        self.trust.touch(&ev.pubkey, now);
        let trust = self.trust.state(&ev.pubkey);
        let transitions = match &body {
            Body::Presence(p) => self
                .peers
                .apply_presence(p, ev.created_at, now, false, trust),
            Body::Departure(p) => self
                .peers
                .apply_presence(p, ev.created_at, now, true, trust),
            Body::Message { .. } => {
                self.peers
                    .note_received(&ev.pubkey, ev.created_at, now, trust, Traffic::Message)
            }
            Body::Sync { .. } => {
                self.peers
                    .note_received(&ev.pubkey, ev.created_at, now, trust, Traffic::Sync)
            }
            Body::Receipt { .. } | Body::LinkSignal { .. } => {
                self.peers
                    .note_received(&ev.pubkey, ev.created_at, now, trust, Traffic::Receipt)
            }
        };
        Ok(Accepted {
            event: ev,
            route,
            body,
            transitions,
        })
    }

    /// Marks silent peers stale (call every few seconds).
    pub fn tick(&mut self, now: u64) -> Vec<Transition> {
        self.peers.tick(now)
    }

    /// Known peers, sorted by id, with their current trust state.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut v = self.peers.peers();
        for p in &mut v {
            p.trust = self.trust.state(&p.peer_id);
        }
        v
    }

    /// Known peer ids, sorted.
    pub fn peer_ids(&self) -> Vec<String> {
        self.peers.peer_ids()
    }

    /// One known peer, with its current trust state.
    pub fn peer(&self, peer_id: &str) -> Option<PeerInfo> {
        self.peers.get(peer_id).map(|p| {
            let mut p = p.clone();
            p.trust = self.trust.state(peer_id);
            p
        })
    }

    /// The peer table (for [`Outbound::peer_message`](super::Outbound::peer_message)).
    pub fn peer_table(&self) -> &PeerTable {
        &self.peers
    }

    /// The peer table, mutable (message counters, forgetting peers).
    pub fn peer_table_mut(&mut self) -> &mut PeerTable {
        &mut self.peers
    }

    /// The trust store (save it with [`TrustStore::save`] when
    /// [`TrustStore::is_dirty`]).
    pub fn trust_store(&self) -> &TrustStore {
        &self.trust
    }

    /// The trust store, mutable.
    pub fn trust_store_mut(&mut self) -> &mut TrustStore {
        &mut self.trust
    }

    /// Trusts a peer explicitly (releases a TOFU hold; adds to the allowlist).
    pub fn trust_peer(&mut self, peer_id: &str, now: u64) -> Result<(), TrustError> {
        self.trust.trust(peer_id, now)?;
        self.peers.set_trust(peer_id, TrustState::Trusted);
        Ok(())
    }

    /// Forgets a peer's trust state (see [`TrustStore::untrust`]).
    pub fn untrust_peer(&mut self, peer_id: &str) -> Result<bool, TrustError> {
        let r = self.trust.untrust(peer_id)?;
        self.peers.set_trust(peer_id, TrustState::Unknown);
        Ok(r)
    }

    /// Blocks a peer: nothing from it is accepted any more.
    pub fn block_peer(&mut self, peer_id: &str, now: u64) -> Result<(), TrustError> {
        self.trust.block(peer_id, now)?;
        self.peers.set_trust(peer_id, TrustState::Blocked);
        Ok(())
    }

    /// Changes the trust policy.
    pub fn set_policy(&mut self, policy: TrustPolicy) {
        self.config.policy = policy;
    }

    /// Drop counts per reason, every reason listed (zeros included).
    pub fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        self.counters.list()
    }

    /// Counts a drop decided after [`Inbound::accept`] (a peer message
    /// already delivered before a restart, see [`receipts`](super::receipts)).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.count(reason);
    }

    /// The drop counters.
    pub fn counters(&self) -> &DropCounters {
        &self.counters
    }

    /// How many peers were dropped from the full peer table to make room
    /// (unknown or automatically pinned ones, least recently seen first).
    pub fn peers_evicted(&self) -> u64 {
        self.peers.evicted()
    }

    /// How many event ids the duplicate memory holds now.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// The duplicate memory (restored from and saved to its journal by
    /// [`Node`](super::Node)).
    pub fn replay_set(&self) -> &ReplaySet {
        &self.replay
    }

    /// The duplicate memory, mutable.
    pub fn replay_set_mut(&mut self) -> &mut ReplaySet {
        &mut self.replay
    }

    /// Our peer id.
    pub fn peer_id(&self) -> &str {
        &self.me
    }

    /// The topic names.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
