//! Wire constants of federation protocol version 2: event kinds, tags,
//! topic names and the JSON content of presence events. See the
//! [module documentation](super) for the protocol as a whole.

use serde::{Deserialize, Serialize};

use super::names;
use crate::transport::topic::{validate_topic, TopicError};

/// The protocol version this code speaks, carried in every event as
/// `["v","2"]` and in presence content as `"protocol":"2"`.
///
/// Version 2 added private shares (sealed content, key envelopes, membership
/// documents, per-share topics `{p}/sync/{TAG}`); a version-1 peer would take
/// them for malformed sync events, so the two refuse each other by this tag.
/// The sync content keeps its own format version
/// (`sync::wire::CONTENT_VERSION`, still 1).
pub const PROTOCOL_VERSION: &str = "2";

/// The sentence an event or presence of another protocol version is dropped
/// with: both versions and which side to update. `theirs` comes from the
/// network, so it is quoted only when it is a short number.
pub fn version_refusal(theirs: &str) -> String {
    let number = |v: &str| {
        (!v.is_empty() && v.len() <= 6 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u32>().ok())
            .flatten()
    };
    let ours = number(PROTOCOL_VERSION).unwrap_or_default();
    match number(theirs) {
        Some(t) if t < ours => format!(
            "the peer speaks protocol version {t}, this peer speaks {ours}: \
             update meta-log-federation on that peer"
        ),
        Some(t) => format!(
            "the peer speaks protocol version {t}, this peer speaks {ours}: \
             update meta-log-federation here"
        ),
        None => format!(
            "the peer speaks an unknown protocol version, this peer speaks {ours}: \
             update meta-log-federation on the older side"
        ),
    }
}

/// Default topic prefix (the prototype's).
pub const DEFAULT_PREFIX: &str = "canvasl";

/// Presence: a peer's announcement, `online` or `offline` (the last will is
/// an `offline` presence). Ephemeral range (20000-29999).
pub const KIND_PRESENCE: u16 = 20_770;
/// Departure: a deliberate, graceful `offline` presence with a reason,
/// published on a clean shutdown. Ephemeral range.
pub const KIND_DEPARTURE: u16 = 20_771;
/// Sync request: "send me what I am missing" (content opaque). Ephemeral range.
pub const KIND_SYNC_REQUEST: u16 = 20_772;
/// Encrypted peer message (NIP-44 v2 content, one recipient). Regular range
/// (1000-9999).
pub const KIND_PEER_MESSAGE: u16 = 4_770;
/// Sync change: one CanvasL change (content opaque). Regular range.
pub const KIND_SYNC_CHANGE: u16 = 4_771;
/// Sync response: an answer to a sync request (content opaque). Regular range.
pub const KIND_SYNC_RESPONSE: u16 = 4_772;
/// Delivery receipt: the recipient of peer messages acknowledges their event
/// ids (NIP-44 v2 content, to the messages' sender; see
/// [`receipts`](super::receipts)). Regular range.
pub const KIND_RECEIPT: u16 = 4_773;
/// Link signal: WebRTC/TCP signalling for a direct link (NIP-44 v2 content, one recipient; see
/// [`crate::links::signal`]). Regular range.
pub const KIND_LINK_SIGNAL: u16 = 4_774;
/// Link hello: the first frame on a direct link, signed, never published (see
/// [`crate::links::hello`]).
pub const KIND_LINK_HELLO: u16 = 20_774;

/// Every kind this protocol version defines.
pub const KINDS: [u16; 8] = [
    KIND_PRESENCE,
    KIND_DEPARTURE,
    KIND_SYNC_REQUEST,
    KIND_PEER_MESSAGE,
    KIND_SYNC_CHANGE,
    KIND_SYNC_RESPONSE,
    KIND_RECEIPT,
    KIND_LINK_SIGNAL,
];

/// Tag name of the topic-kind tag `["t", <topic-kind>]`.
pub const TAG_TOPIC: &str = "t";
/// Tag name of the recipient tag `["p", <peer id>]`.
pub const TAG_RECIPIENT: &str = "p";
/// Tag name of the protocol version tag `["v", "2"]`.
pub const TAG_VERSION: &str = "v";

/// Longest display name, software string, capability or reason, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Most capabilities a presence may list.
pub const MAX_CAPABILITIES: usize = 64;

/// The kind of topic an event travels on; its name is the value of the
/// event's `t` tag, so an event signed for one topic cannot be replayed on
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `{p}/peers/announce`: `t` = `announce`.
    Announce,
    /// `{p}/peers/{id}/presence`: `t` = `presence`.
    Presence,
    /// `{p}/peers/{id}/messages`: `t` = `message`.
    Messages,
    /// `{p}/sync`: `t` = `sync`.
    Sync,
}

impl TopicKind {
    /// The value of the `t` tag for this topic kind.
    pub fn tag(self) -> &'static str {
        match self {
            TopicKind::Announce => "announce",
            TopicKind::Presence => "presence",
            TopicKind::Messages => "message",
            TopicKind::Sync => "sync",
        }
    }

    /// Whether an event of `kind` may travel on this topic kind.
    pub fn allows(self, kind: u32) -> bool {
        let Ok(kind) = u16::try_from(kind) else {
            return false;
        };
        match self {
            TopicKind::Announce | TopicKind::Presence => {
                kind == KIND_PRESENCE || kind == KIND_DEPARTURE
            }
            TopicKind::Messages => {
                kind == KIND_PEER_MESSAGE || kind == KIND_RECEIPT || kind == KIND_LINK_SIGNAL
            }
            TopicKind::Sync => matches!(
                kind,
                KIND_SYNC_CHANGE | KIND_SYNC_REQUEST | KIND_SYNC_RESPONSE
            ),
        }
    }
}

/// A parsed topic name of this protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `{p}/peers/announce`.
    Announce,
    /// `{p}/peers/{peer-id}/presence`.
    Presence(String),
    /// `{p}/peers/{peer-id}/messages`.
    Messages(String),
    /// `{p}/sync`.
    Sync,
    /// `{p}/sync/{share-tag}`: the sync traffic of one share with members, under its opaque
    /// tag (see [`is_share_tag`]).
    ShareSync(String),
}

impl Route {
    /// The topic kind of this route.
    pub fn kind(&self) -> TopicKind {
        match self {
            Route::Announce => TopicKind::Announce,
            Route::Presence(_) => TopicKind::Presence,
            Route::Messages(_) => TopicKind::Messages,
            Route::Sync | Route::ShareSync(_) => TopicKind::Sync,
        }
    }
}

/// Whether `s` is a peer id: 64 lowercase hex characters.
pub fn is_peer_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Tag name of the opaque share tag `["s", <share tag>]` of a sealed sync event.
pub const TAG_SHARE: &str = "s";

/// Length of an opaque share tag, in hex characters.
pub const SHARE_TAG_HEX_LEN: usize = 32;

/// Whether `s` is an opaque share tag: 32 lowercase hex characters (see
/// `crate::sync::share_key`).
pub fn is_share_tag(s: &str) -> bool {
    s.len() == SHARE_TAG_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Topic names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (e.g. `canvasl`, or `lab/canvasl`). The prefix
    /// must be a valid MQTT topic without wildcards, without a leading or
    /// trailing `/` and without empty levels.
    pub fn new(prefix: &str) -> Result<Topics, TopicError> {
        validate_topic(prefix)?;
        if prefix.split('/').any(str::is_empty) {
            return Err(TopicError(format!(
                "topic prefix `{prefix}` has an empty level (a leading, trailing or double `/`)"
            )));
        }
        Ok(Topics {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}/peers/announce`.
    pub fn announce(&self) -> String {
        format!("{}/peers/announce", self.prefix)
    }

    /// `{p}/sync`.
    pub fn sync(&self) -> String {
        format!("{}/sync", self.prefix)
    }

    /// `{p}/sync/{tag}`: the topic of one share with members, subscribed only by its
    /// holders.
    pub fn share_sync(&self, tag: &str) -> String {
        format!("{}/sync/{tag}", self.prefix)
    }

    /// `{p}/peers/{peer_id}/presence`.
    pub fn presence(&self, peer_id: &str) -> String {
        format!("{}/peers/{peer_id}/presence", self.prefix)
    }

    /// `{p}/peers/{peer_id}/messages`.
    pub fn messages(&self, peer_id: &str) -> String {
        format!("{}/peers/{peer_id}/messages", self.prefix)
    }

    /// `{p}/peers/+/presence`: every peer's retained presence.
    pub fn presence_filter(&self) -> String {
        format!("{}/peers/+/presence", self.prefix)
    }

    /// The filters a peer `me` subscribes to, with the recommended QoS:
    /// presence (QoS 0, see the module documentation), announce, sync and
    /// its own messages (QoS 1).
    pub fn subscriptions(&self, me: &str) -> Vec<(String, u8)> {
        vec![
            (self.presence_filter(), 0),
            (self.announce(), 1),
            (self.sync(), 1),
            (self.messages(me), 1),
        ]
    }

    /// Parses a topic of this protocol; `None` for any other topic
    /// (including a peer id that is not 64 lowercase hex characters).
    pub fn parse(&self, topic: &str) -> Option<Route> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["sync"] => Some(Route::Sync),
            ["sync", tag] if is_share_tag(tag) => Some(Route::ShareSync(tag.to_string())),
            ["peers", "announce"] => Some(Route::Announce),
            ["peers", id, "presence"] if is_peer_id(id) => Some(Route::Presence(id.to_string())),
            ["peers", id, "messages"] if is_peer_id(id) => Some(Route::Messages(id.to_string())),
            _ => None,
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

/// A peer's status as it announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnouncedStatus {
    /// Connected.
    Online,
    /// Gone (last will or departure).
    Offline,
}

/// The JSON content of presence and departure events.
///
/// ```json
/// {"peer_id":"<64 hex>","name":"alice","software":"meta-log-federation/0.1.0",
///  "protocol":"2","capabilities":["canvasl-sync","nip44-messages"],
///  "status":"online","since":1767225600}
/// ```
///
/// Unknown fields are ignored (so later versions can add some).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The signer's peer id; must equal the event's `pubkey`.
    pub peer_id: String,
    /// Display name chosen by the user (may be empty).
    pub name: String,
    /// Software and version, e.g. `meta-log-federation/0.1.0`.
    pub software: String,
    /// Protocol version, `"1"`.
    pub protocol: String,
    /// What the peer can do, e.g. `canvasl-sync`, `nip44-messages`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `online` or `offline`.
    pub status: AnnouncedStatus,
    /// Unix time the peer's current connection (session) started. Every
    /// presence of one session, its last will included, carries the same
    /// value; a new connection uses a larger one.
    pub since: u64,
    /// Why the peer left (departures only; optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Presence {
    /// Parses and checks presence content: JSON shape, field lengths, no
    /// control, separator or format character in any text field (see
    /// [`super::names`]), and `since <= created_at`; the name is returned in
    /// NFKC form. The caller checks `peer_id` and `protocol`.
    pub fn parse(content: &str, created_at: u64) -> Result<Presence, String> {
        let mut p: Presence =
            serde_json::from_str(content).map_err(|e| shorten(format!("presence content: {e}")))?;
        names::check_text("name", &p.name)?;
        names::check_text("software", &p.software)?;
        for c in &p.capabilities {
            names::check_text("capability", c)?;
        }
        if let Some(r) = &p.reason {
            names::check_text("reason", r)?;
        }
        p.name = names::normalize_name(&p.name);
        let long = [&p.peer_id, &p.name, &p.software, &p.protocol]
            .into_iter()
            .chain(p.capabilities.iter())
            .chain(p.reason.iter())
            .any(|s| s.len() > MAX_FIELD_BYTES);
        if long {
            return Err(format!(
                "presence content: a field is longer than {MAX_FIELD_BYTES} bytes"
            ));
        }
        if p.capabilities.len() > MAX_CAPABILITIES {
            return Err(format!(
                "presence content: more than {MAX_CAPABILITIES} capabilities"
            ));
        }
        if p.since > created_at {
            return Err(format!(
                "presence content: since ({}) is later than created_at ({created_at})",
                p.since
            ));
        }
        Ok(p)
    }

    /// The order of presence events from one peer:
    /// `(since, offline-after-online, created_at)`. A presence is applied
    /// only if its key is not smaller than the last one applied.
    pub fn order_key(&self, created_at: u64) -> (u64, u8, u64) {
        let rank = match self.status {
            AnnouncedStatus::Online => 0,
            AnnouncedStatus::Offline => 1,
        };
        (self.since, rank, created_at)
    }
}

/// First value of the first tag named `name`, if any.
pub fn tag_value<'a>(tags: &'a [Vec<String>], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.first().map(String::as_str) == Some(name))
        .and_then(|t| t.get(1))
        .map(String::as_str)
}

/// Cuts a message quoting untrusted input to a readable length, and
/// escapes any control, separator or format character in it (`\u{…}`), so
/// a quoted value can never break a line or reorder the text it is in.
pub(crate) fn shorten(s: String) -> String {
    const MAX: usize = 200;
    let mut s = if names::check_text("", &s).is_ok() {
        s
    } else {
        s.chars()
            .map(|c| {
                if names::check_text("", c.encode_utf8(&mut [0; 4])).is_ok() {
                    c.to_string()
                } else {
                    c.escape_unicode().to_string()
                }
            })
            .collect()
    };
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "17162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917";

    #[test]
    fn topic_names_and_parsing() {
        let t = Topics::default();
        assert_eq!(t.announce(), "canvasl/peers/announce");
        assert_eq!(t.sync(), "canvasl/sync");
        assert_eq!(t.presence(ID), format!("canvasl/peers/{ID}/presence"));
        assert_eq!(t.messages(ID), format!("canvasl/peers/{ID}/messages"));
        assert_eq!(t.presence_filter(), "canvasl/peers/+/presence");
        assert_eq!(t.parse(&t.announce()), Some(Route::Announce));
        assert_eq!(t.parse(&t.sync()), Some(Route::Sync));
        assert_eq!(t.parse(&t.presence(ID)), Some(Route::Presence(ID.into())));
        assert_eq!(t.parse(&t.messages(ID)), Some(Route::Messages(ID.into())));
        for bad in [
            "canvasl",
            "canvasl/",
            "canvaslx/sync",
            "other/sync",
            "canvasl/sync/x",
            "canvasl/peers/abc/presence",
            &format!("canvasl/peers/{}/presence", ID.to_uppercase()),
            &format!("canvasl/peers/{ID}/other"),
            &format!("canvasl/peers/{ID}/presence/x"),
        ] {
            assert_eq!(t.parse(bad), None, "{bad}");
        }
        for (f, _) in t.subscriptions(ID) {
            assert!(crate::transport::topic::validate_filter(&f).is_ok());
        }
    }

    #[test]
    fn prefixes() {
        let t = Topics::new("lab/canvasl").unwrap();
        assert_eq!(t.sync(), "lab/canvasl/sync");
        assert_eq!(t.parse("lab/canvasl/sync"), Some(Route::Sync));
        assert_eq!(t.parse("canvasl/sync"), None);
        for bad in ["", "a/", "/a", "a//b", "a/+", "a/#", "a\0"] {
            assert!(Topics::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_are_in_the_documented_ranges_and_distinct() {
        for k in KINDS {
            assert!((1000..10_000).contains(&k) || (20_000..30_000).contains(&k));
        }
        let mut v = KINDS.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), KINDS.len());
        assert!(TopicKind::Presence.allows(u32::from(KIND_DEPARTURE)));
        assert!(!TopicKind::Sync.allows(u32::from(KIND_PRESENCE)));
        assert!(!TopicKind::Messages.allows(70_000));
    }

    #[test]
    fn quoted_input_cannot_break_lines() {
        assert_eq!(shorten("a\nb\u{202e}c".into()), "a\\u{a}b\\u{202e}c");
        assert_eq!(shorten("plain".into()), "plain");
        assert!(shorten("x".repeat(500)).ends_with('…'));
    }

    #[test]
    fn version_refusal_says_which_side_to_update() {
        assert!(version_refusal("1").contains("version 1, this peer speaks 2"));
        assert!(version_refusal("1").ends_with("on that peer"));
        assert!(version_refusal("3").ends_with("here"));
        // Peer text is never quoted unless it is a short number.
        let odd = version_refusal("2\u{202e}evil");
        assert!(odd.contains("unknown protocol version") && !odd.contains("evil"));
    }

    #[test]
    fn presence_parsing() {
        let p = Presence {
            peer_id: ID.into(),
            name: "alice".into(),
            software: "x/1".into(),
            protocol: PROTOCOL_VERSION.into(),
            capabilities: vec!["canvasl-sync".into()],
            status: AnnouncedStatus::Online,
            since: 10,
            reason: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("reason"));
        assert_eq!(Presence::parse(&json, 10).unwrap(), p);
        assert!(Presence::parse(&json, 9).unwrap_err().contains("since"));
        let extra = json.replace("{", "{\"future\":[1,2],");
        assert_eq!(Presence::parse(&extra, 10).unwrap(), p);
        assert!(Presence::parse("{}", 10).is_err());
        assert!(Presence::parse(&json.replace("online", "away"), 10).is_err());
        let long = json.replace("alice", &"a".repeat(MAX_FIELD_BYTES + 1));
        assert!(Presence::parse(&long, 10).is_err());
        for bad in ["a\nb", "a\u{2028}b", "x\u{202e}", "al\u{ad}ice", "a\u{85}"] {
            let quoted = serde_json::to_string(bad).unwrap();
            let j = json.replace("\"alice\"", &quoted);
            assert!(
                Presence::parse(&j, 10).unwrap_err().contains("name"),
                "{bad}"
            );
        }
        let j = json.replace("\"x/1\"", "\"x\\n* H\"");
        assert!(Presence::parse(&j, 10).unwrap_err().contains("software"));
        let wide = json.replace("\"alice\"", "\"\u{ff41}lice \"");
        assert_eq!(Presence::parse(&wide, 10).unwrap().name, "alice");
        let mut many = p.clone();
        many.capabilities = vec!["c".into(); MAX_CAPABILITIES + 1];
        assert!(Presence::parse(&serde_json::to_string(&many).unwrap(), 10).is_err());
        let mut off = p.clone();
        off.status = AnnouncedStatus::Offline;
        assert!(off.order_key(10) > p.order_key(500));
        let mut next = p.clone();
        next.since = 11;
        assert!(next.order_key(11) > off.order_key(10));
    }
}
