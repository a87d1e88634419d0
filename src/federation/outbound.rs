//! Builders of the signed events this peer publishes. Each returns a
//! [`Publication`]: topic, payload bytes, retain flag and QoS, ready for
//! the MQTT client.
//!
//! Typical use:
//! 1. at connect: [`Outbound::new_session`], then [`Outbound::will`] as the
//!    MQTT last will (topic, payload, retain, QoS as returned);
//! 2. once connected: [`Outbound::presence`] (retained) and
//!    [`Outbound::announce`]; re-publish [`Outbound::presence`] more often
//!    than the peers' stale limit (e.g. every 60 s) as a heartbeat;
//! 3. at a clean shutdown: [`Outbound::departure`], then disconnect (a
//!    departure ends the session: to come back, reconnect with a new
//!    session and a new will).

use crate::identity::event::{compute_id, sign, sign_with_id, SignedEvent};
use crate::identity::{nip44, Identity};

use super::inbound::SyncKind;
use super::peers::PeerTable;
use super::protocol::{
    AnnouncedStatus, Presence, TopicKind, Topics, KIND_DEPARTURE, KIND_PEER_MESSAGE, KIND_PRESENCE,
    MAX_CAPABILITIES, MAX_FIELD_BYTES, PROTOCOL_VERSION, TAG_RECIPIENT, TAG_TOPIC, TAG_VERSION,
};
use super::{Config, ConfigError};

/// What this peer announces about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalProfile {
    /// Display name.
    pub name: String,
    /// Software and version, e.g. `meta-log-federation/0.1.0`.
    pub software: String,
    /// Capabilities, e.g. `canvasl-sync`, `nip44-messages`.
    pub capabilities: Vec<String>,
}

/// An event built, encrypted and given its id, but not signed yet: signing is most of an
/// event's cost, so [`crate::federation::Node::prepare_peer_message`] hands the caller the id
/// at once and the session's worker signs ([`Prepared::sign`]) and publishes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Topic name.
    pub topic: String,
    /// The event id (hex), what the signature will sign.
    pub event_id: String,
    to: String,
    id: [u8; 32],
    kind: u16,
    content: String,
    tags: Vec<Vec<String>>,
    created_at: u64,
}

impl Prepared {
    /// The peer it is addressed to.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// Signs it as `identity` (the identity that prepared it) and returns the publication.
    pub fn sign(self, identity: &Identity) -> Publication {
        let ev = sign_with_id(
            identity,
            self.id,
            self.kind,
            self.content,
            self.tags,
            self.created_at,
        );
        Publication {
            topic: self.topic,
            payload: ev.to_json().into_bytes(),
            retain: false,
            qos: 1,
            event_id: self.event_id,
        }
    }
}

/// Length in bytes of the hex signature in an event's JSON.
const SIG_HEX_LEN: usize = 128;

/// One MQTT publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Topic name.
    pub topic: String,
    /// The signed event's JSON.
    pub payload: Vec<u8>,
    /// Whether to publish it retained.
    pub retain: bool,
    /// MQTT QoS (0 or 1).
    pub qos: u8,
    /// The event id.
    pub event_id: String,
}

/// Why an event could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The recipient is not in the peer table.
    #[error("peer {0} is unknown: wait for its presence before sending it messages")]
    UnknownPeer(String),
    /// The payload would exceed the size limit.
    #[error("the event would be {size} bytes, above the limit of {limit}; send less")]
    TooLarge {
        /// The event's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// NIP-44 encryption refused the plaintext or key.
    #[error("cannot encrypt the message: {0}")]
    Encrypt(String),
    /// Caller-supplied tags are unusable.
    #[error("bad tags: {0}")]
    BadTags(String),
    /// The outbox already holds its maximum of unacknowledged messages.
    #[error(
        "{0} messages are still waiting for a delivery receipt; wait until they are \
         delivered or fail"
    )]
    OutboxFull(usize),
}

/// The sending side of one peer.
#[derive(Debug, Clone)]
pub struct Outbound {
    identity: Identity,
    me: String,
    topics: Topics,
    profile: LocalProfile,
    max_bytes: usize,
    since: u64,
    keys: nip44::ConversationKeys,
}

fn base_tags(topic: TopicKind) -> Vec<Vec<String>> {
    vec![
        vec![TAG_VERSION.to_string(), PROTOCOL_VERSION.to_string()],
        vec![TAG_TOPIC.to_string(), topic.tag().to_string()],
    ]
}

impl Outbound {
    /// The identity that signs our events.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The sending side for `identity`, announcing `profile`; starts a
    /// session at `now`.
    pub fn new(
        identity: Identity,
        config: &Config,
        profile: LocalProfile,
        now: u64,
    ) -> Result<Outbound, ConfigError> {
        let topics = config.topics()?;
        let long = [&profile.name, &profile.software]
            .into_iter()
            .chain(profile.capabilities.iter())
            .any(|s| s.len() > MAX_FIELD_BYTES);
        if long || profile.capabilities.len() > MAX_CAPABILITIES {
            return Err(ConfigError(format!(
                "profile: names are limited to {MAX_FIELD_BYTES} bytes and \
                 capabilities to {MAX_CAPABILITIES} entries"
            )));
        }
        Ok(Outbound {
            me: identity.peer_id(),
            identity,
            topics,
            profile,
            max_bytes: config.max_event_bytes,
            since: now,
            keys: nip44::ConversationKeys::default(),
        })
    }

    /// Starts a new session (call at every (re)connect, before building the
    /// will). The session time is `now`, or one second after the previous
    /// session if the clock has not moved on, so sessions are strictly
    /// ordered. Returns it.
    pub fn new_session(&mut self, now: u64) -> u64 {
        self.since = now.max(self.since.saturating_add(1));
        self.since
    }

    /// Makes the next session start after `last`, the `since` of a session
    /// of an earlier run (see [`session_file`](super::session_file)).
    pub fn resume_after(&mut self, last: u64) {
        self.since = self.since.max(last);
    }

    /// The current session's start time.
    pub fn session_since(&self) -> u64 {
        self.since
    }

    /// Our peer id.
    pub fn peer_id(&self) -> &str {
        &self.me
    }

    /// The topic names.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    fn finish(
        &self,
        topic: String,
        kind: u16,
        content: &str,
        tags: Vec<Vec<String>>,
        now: u64,
        retain: bool,
    ) -> Result<Publication, OutboundError> {
        // created_at never precedes the session start (see new_session).
        let ev = sign(&self.identity, kind, content, tags, now.max(self.since));
        let payload = ev.to_json().into_bytes();
        if payload.len() > self.max_bytes {
            return Err(OutboundError::TooLarge {
                size: payload.len(),
                limit: self.max_bytes,
            });
        }
        Ok(Publication {
            topic,
            payload,
            retain,
            qos: 1,
            event_id: ev.id,
        })
    }

    fn presence_content(&self, status: AnnouncedStatus, reason: Option<&str>) -> String {
        let p = Presence {
            peer_id: self.me.clone(),
            name: self.profile.name.clone(),
            software: self.profile.software.clone(),
            protocol: PROTOCOL_VERSION.to_string(),
            capabilities: self.profile.capabilities.clone(),
            status,
            since: self.since,
            reason: reason.map(|r| {
                let mut r = r.to_string();
                if r.len() > MAX_FIELD_BYTES {
                    let mut cut = MAX_FIELD_BYTES;
                    while !r.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    r.truncate(cut);
                }
                r
            }),
        };
        serde_json::to_string(&p).unwrap_or_default()
    }

    /// Our `online` presence, retained on our presence topic (also the
    /// heartbeat).
    pub fn presence(&self, now: u64) -> Result<Publication, OutboundError> {
        let content = self.presence_content(AnnouncedStatus::Online, None);
        self.finish(
            self.topics.presence(&self.me),
            KIND_PRESENCE,
            &content,
            base_tags(TopicKind::Presence),
            now,
            true,
        )
    }

    /// Our `online` presence on the announce topic (not retained), for
    /// peers listening there.
    pub fn announce(&self, now: u64) -> Result<Publication, OutboundError> {
        let content = self.presence_content(AnnouncedStatus::Online, None);
        self.finish(
            self.topics.announce(),
            KIND_PRESENCE,
            &content,
            base_tags(TopicKind::Announce),
            now,
            false,
        )
    }

    /// The MQTT last will: an `offline` presence of the current session,
    /// retained on our presence topic. Build it at connect time.
    pub fn will(&self, now: u64) -> Result<Publication, OutboundError> {
        let content = self.presence_content(AnnouncedStatus::Offline, None);
        self.finish(
            self.topics.presence(&self.me),
            KIND_PRESENCE,
            &content,
            base_tags(TopicKind::Presence),
            now,
            true,
        )
    }

    /// A graceful departure, retained on our presence topic (it replaces
    /// the `online` presence there). `reason` is cut to 256 bytes.
    pub fn departure(&self, reason: &str, now: u64) -> Result<Publication, OutboundError> {
        let content = self.presence_content(AnnouncedStatus::Offline, Some(reason));
        self.finish(
            self.topics.presence(&self.me),
            KIND_DEPARTURE,
            &content,
            base_tags(TopicKind::Presence),
            now,
            true,
        )
    }

    /// [`Outbound::peer_message`] up to the signature: checked, encrypted and given its id.
    pub fn prepare_peer_message(
        &self,
        peers: &mut PeerTable,
        to: &str,
        plaintext: &str,
        now: u64,
    ) -> Result<Prepared, OutboundError> {
        if !peers.contains(to) {
            return Err(OutboundError::UnknownPeer(super::protocol::shorten(
                to.to_string(),
            )));
        }
        if plaintext.len() > self.max_bytes {
            return Err(OutboundError::TooLarge {
                size: plaintext.len(),
                limit: self.max_bytes,
            });
        }
        let (content, tags) = self.sealed_to(to, plaintext)?;
        let created_at = now.max(self.since);
        let id = compute_id(
            &self.me,
            created_at,
            u32::from(KIND_PEER_MESSAGE),
            &tags,
            &content,
        );
        let unsigned = SignedEvent {
            id: hex::encode(id),
            pubkey: self.me.clone(),
            created_at,
            kind: u32::from(KIND_PEER_MESSAGE),
            tags,
            content,
            sig: "0".repeat(SIG_HEX_LEN),
        };
        // The signature's length is fixed: the size is known before signing.
        let size = unsigned.to_json().len();
        if size > self.max_bytes {
            return Err(OutboundError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        peers.note_sent(to);
        Ok(Prepared {
            topic: self.topics.messages(to),
            event_id: unsigned.id,
            to: to.to_string(),
            id,
            kind: KIND_PEER_MESSAGE,
            content: unsigned.content,
            tags: unsigned.tags,
            created_at,
        })
    }

    /// A message to one peer, encrypted with NIP-44 so only it can read
    /// it. Refused if the peer is not in `peers` or the event would be too
    /// large; on success the peer's `messages_out` counter goes up.
    pub fn peer_message(
        &self,
        peers: &mut PeerTable,
        to: &str,
        plaintext: &str,
        now: u64,
    ) -> Result<Publication, OutboundError> {
        Ok(self
            .prepare_peer_message(peers, to, plaintext, now)?
            .sign(&self.identity))
    }

    /// `plaintext` encrypted (NIP-44) to `to`, and the tags of an event on its messages topic.
    fn sealed_to(
        &self,
        to: &str,
        plaintext: &str,
    ) -> Result<(String, Vec<Vec<String>>), OutboundError> {
        let ciphertext = self
            .keys
            .get(self.identity.keypair(), to)
            .and_then(|k| nip44::encrypt(&k, plaintext))
            .map_err(|e| OutboundError::Encrypt(e.to_string()))?;
        let mut tags = base_tags(TopicKind::Messages);
        tags.push(vec![TAG_RECIPIENT.to_string(), to.to_string()]);
        Ok((ciphertext, tags))
    }

    /// An event of `kind` on `to`'s messages topic with `plaintext`
    /// encrypted (NIP-44) to `to`: peer messages and delivery receipts.
    pub(super) fn encrypted_to(
        &self,
        to: &str,
        kind: u16,
        plaintext: &str,
        now: u64,
    ) -> Result<Publication, OutboundError> {
        let (ciphertext, tags) = self.sealed_to(to, plaintext)?;
        self.finish(
            self.topics.messages(to),
            kind,
            &ciphertext,
            tags,
            now,
            false,
        )
    }

    /// An event signed with our key that is never published (a direct link's hello, see
    /// [`crate::links::hello`]).
    pub fn sign_unpublished(
        &self,
        kind: u16,
        content: &str,
        tags: Vec<Vec<String>>,
        now: u64,
    ) -> crate::identity::event::SignedEvent {
        sign(&self.identity, kind, content, tags, now)
    }

    /// A sync event on the sync topic. `content` is opaque to this layer;
    /// `extra_tags` are appended after `v` and `t` (tags must be non-empty
    /// and may not be named `v` or `t`).
    pub fn sync(
        &self,
        kind: SyncKind,
        content: &str,
        extra_tags: Vec<Vec<String>>,
        now: u64,
    ) -> Result<Publication, OutboundError> {
        for t in &extra_tags {
            match t.first().map(String::as_str) {
                None => return Err(OutboundError::BadTags("a tag is empty".into())),
                Some(TAG_VERSION) | Some(TAG_TOPIC) => {
                    return Err(OutboundError::BadTags(
                        "tag names `v` and `t` are reserved".into(),
                    ))
                }
                _ => {}
            }
        }
        // A sealed event of a share with members goes on that share's own topic.
        let topic = match super::protocol::tag_value(&extra_tags, super::protocol::TAG_SHARE) {
            Some(tag) if super::protocol::is_share_tag(tag) => self.topics.share_sync(tag),
            Some(_) => {
                return Err(OutboundError::BadTags(
                    "the `s` tag is not a share tag".into(),
                ))
            }
            None => self.topics.sync(),
        };
        let mut tags = base_tags(TopicKind::Sync);
        tags.extend(extra_tags);
        self.finish(topic, kind.kind(), content, tags, now, false)
    }
}
