//! The peer table: what is known about each peer, and the status changes
//! ([`Transition`]s) the caller turns into hooks.
//!
//! Status rules:
//! * an accepted `online` presence makes a peer [`PeerStatus::Online`]
//!   (or [`PeerStatus::Stale`] straight away if the presence is already older
//!   than the stale limit, e.g. an old retained message);
//! * an accepted `offline` presence (the last will) or departure makes it
//!   [`PeerStatus::Offline`];
//! * [`PeerTable::tick`] makes an online peer stale after a silence longer
//!   than the stale limit (default 120 s);
//! * any other accepted event from a stale peer makes it online again.
//!
//! `last_seen` is the `created_at` of the newest accepted event from the
//! peer (never later than the local clock).

use std::collections::HashMap;

use serde::Serialize;

use super::protocol::{AnnouncedStatus, Presence};
use super::trust::TrustState;

/// What kind of event a peer sent, for its counts: "In" counts peer
/// messages, "Sync in" sync events; a delivery receipt counts as neither
/// (it only shows the peer is there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Traffic {
    /// An encrypted peer message.
    Message,
    /// A CanvasL sync event.
    Sync,
    /// A delivery receipt.
    Receipt,
}

/// A peer's status as seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Announced itself and was heard from recently.
    Online,
    /// Its last will or departure was received.
    Offline,
    /// Announced itself online but has been silent too long.
    Stale,
}

impl PeerStatus {
    /// `online`, `offline` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Online => "online",
            PeerStatus::Offline => "offline",
            PeerStatus::Stale => "stale",
        }
    }
}

/// What is known about one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// The peer id, which is also its public key (x-only, 64 hex).
    pub peer_id: String,
    /// Display name (empty until it announces one).
    pub name: String,
    /// Software and version it announced.
    pub software: String,
    /// Protocol version it announced.
    pub protocol: String,
    /// Capabilities it announced.
    pub capabilities: Vec<String>,
    /// Online, offline or stale.
    pub status: PeerStatus,
    /// Unix time of the newest accepted event from it.
    pub last_seen: u64,
    /// Accepted peer messages from it (what the person reads as "messages").
    pub messages_in: u64,
    /// Accepted sync events from it (CanvasL changes, requests, responses).
    pub sync_in: u64,
    /// Messages sent to it (counted by the outbound builders).
    pub messages_out: u64,
    /// Its trust state (filled in when listed).
    pub trust: TrustState,
    /// Order key of the last presence applied.
    #[serde(skip)]
    pub(crate) presence_key: Option<(u64, u8, u64)>,
}

impl PeerInfo {
    /// True once a presence of the peer was accepted (it announced its
    /// software): keys that only sent other events are not announced, and
    /// the blackboard records only announced peers.
    pub fn announced(&self) -> bool {
        !self.software.is_empty()
    }
}

/// A change the caller may want to run hooks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "transition", rename_all = "kebab-case")]
pub enum Transition {
    /// The peer came online (first announcement, or back from stale/offline).
    CameOnline {
        /// Peer id.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// The peer went offline: its last will (`graceful: false`) or a
    /// departure (`graceful: true`).
    WentOffline {
        /// Peer id.
        peer_id: String,
        /// Whether it left deliberately.
        graceful: bool,
    },
    /// The peer has been silent longer than the stale limit.
    WentStale {
        /// Peer id.
        peer_id: String,
    },
    /// The peer, online all along, announced a new MQTT session: it reconnected (its broker
    /// may have restarted and lost the messages it kept for it). What waits for it is sent
    /// again (see `crate::session`); no hook runs.
    Resumed {
        /// Peer id.
        peer_id: String,
    },
    /// **Warning**: a display name known for one key was announced by a new
    /// key (TOFU). Nothing from the new key is accepted until the user
    /// trusts it.
    KeyConflict {
        /// The display name.
        name: String,
        /// The key that already holds the name.
        known_peer_id: String,
        /// The new key, now held.
        new_peer_id: String,
    },
}

impl Transition {
    /// `came-online`, `went-offline`, `went-stale` or `key-conflict`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::CameOnline { .. } => "came-online",
            Transition::WentOffline { .. } => "went-offline",
            Transition::WentStale { .. } => "went-stale",
            Transition::Resumed { .. } => "resumed",
            Transition::KeyConflict { .. } => "key-conflict",
        }
    }

    /// Whether the user must be warned loudly (a key conflict).
    pub fn is_warning(&self) -> bool {
        matches!(self, Transition::KeyConflict { .. })
    }

    /// The peer the transition is about (the new key for a conflict).
    pub fn peer_id(&self) -> &str {
        match self {
            Transition::CameOnline { peer_id, .. }
            | Transition::WentOffline { peer_id, .. }
            | Transition::WentStale { peer_id }
            | Transition::Resumed { peer_id } => peer_id,
            Transition::KeyConflict { new_peer_id, .. } => new_peer_id,
        }
    }
}

/// Known peers, at most `max_peers` of them. When full, a newcomer takes
/// the place of the least recently seen peer that nobody decided about
/// (trust unknown or pinned automatically); trusted, held and blocked
/// peers always stay.
#[derive(Debug, Clone)]
pub struct PeerTable {
    peers: HashMap<String, PeerInfo>,
    stale_after: u64,
    max_peers: usize,
    evicted: u64,
}

impl PeerTable {
    /// An empty table; peers go stale after `stale_after` seconds of silence.
    pub fn new(stale_after: u64, max_peers: usize) -> PeerTable {
        PeerTable {
            peers: HashMap::new(),
            stale_after,
            max_peers,
            evicted: 0,
        }
    }

    /// Drops the least recently seen undecided peer to make room for a new
    /// one; `false` if every known peer is trusted, held or blocked.
    pub(crate) fn make_room(&mut self) -> bool {
        let victim = self
            .peers
            .values()
            .filter(|p| matches!(p.trust, TrustState::Unknown | TrustState::Pinned))
            .min_by(|a, b| (a.last_seen, &a.peer_id).cmp(&(b.last_seen, &b.peer_id)))
            .map(|p| p.peer_id.clone());
        match victim {
            Some(id) => {
                self.peers.remove(&id);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// How many peers were dropped to make room for newcomers.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// One peer.
    pub fn get(&self, peer_id: &str) -> Option<&PeerInfo> {
        self.peers.get(peer_id)
    }

    /// Whether `peer_id` is known.
    pub fn contains(&self, peer_id: &str) -> bool {
        self.peers.contains_key(peer_id)
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Known peer ids, sorted.
    pub fn peer_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.peers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Known peers, sorted by id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self.peers.values().cloned().collect();
        v.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        v
    }

    /// Marks online peers silent for longer than the stale limit as stale.
    pub fn tick(&mut self, now: u64) -> Vec<Transition> {
        let mut out = Vec::new();
        for p in self.peers.values_mut() {
            if p.status == PeerStatus::Online && now.saturating_sub(p.last_seen) > self.stale_after
            {
                p.status = PeerStatus::Stale;
                out.push(Transition::WentStale {
                    peer_id: p.peer_id.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.peer_id().cmp(b.peer_id()));
        out
    }

    /// Counts a message sent to `peer_id`; `false` if the peer is unknown.
    pub fn note_sent(&mut self, peer_id: &str) -> bool {
        match self.peers.get_mut(peer_id) {
            Some(p) => {
                p.messages_out += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets a peer; returns whether it was known.
    pub fn forget(&mut self, peer_id: &str) -> bool {
        self.peers.remove(peer_id).is_some()
    }

    /// Whether a new peer `peer_id` would not fit.
    pub(crate) fn is_full_for(&self, peer_id: &str) -> bool {
        !self.peers.contains_key(peer_id) && self.peers.len() >= self.max_peers
    }

    pub(crate) fn presence_key(&self, peer_id: &str) -> Option<(u64, u8, u64)> {
        self.peers.get(peer_id).and_then(|p| p.presence_key)
    }

    pub(crate) fn set_trust(&mut self, peer_id: &str, trust: TrustState) {
        if let Some(p) = self.peers.get_mut(peer_id) {
            p.trust = trust;
        }
    }

    fn entry(&mut self, peer_id: &str, trust: TrustState) -> (&mut PeerInfo, bool) {
        let new = !self.peers.contains_key(peer_id);
        let p = self
            .peers
            .entry(peer_id.to_string())
            .or_insert_with(|| PeerInfo {
                peer_id: peer_id.to_string(),
                name: String::new(),
                software: String::new(),
                protocol: String::new(),
                capabilities: Vec::new(),
                status: PeerStatus::Offline,
                last_seen: 0,
                messages_in: 0,
                sync_in: 0,
                messages_out: 0,
                trust,
                presence_key: None,
            });
        p.trust = trust;
        (p, new)
    }

    /// Applies an accepted presence (its order was checked by the caller).
    pub(crate) fn apply_presence(
        &mut self,
        p: &Presence,
        created_at: u64,
        now: u64,
        graceful: bool,
        trust: TrustState,
    ) -> Vec<Transition> {
        let stale_after = self.stale_after;
        let (info, new) = self.entry(&p.peer_id, trust);
        let before = info.status;
        let key = p.order_key(created_at);
        let same = info.presence_key == Some(key);
        // The session's start is the first part of the order key.
        let new_session = info.presence_key.is_some_and(|k| k.0 < p.since);
        info.presence_key = Some(key);
        info.last_seen = info.last_seen.max(created_at.min(now));
        info.name = p.name.clone();
        info.software = p.software.clone();
        info.protocol = p.protocol.clone();
        info.capabilities = p.capabilities.clone();
        if same && !new {
            return Vec::new();
        }
        let id = p.peer_id.clone();
        match p.status {
            AnnouncedStatus::Online => {
                let fresh = now.saturating_sub(info.last_seen) <= stale_after;
                info.status = if fresh {
                    PeerStatus::Online
                } else {
                    PeerStatus::Stale
                };
                match (before, info.status) {
                    (b, PeerStatus::Online) if b != PeerStatus::Online || new => {
                        vec![Transition::CameOnline {
                            peer_id: id,
                            name: p.name.clone(),
                        }]
                    }
                    (PeerStatus::Online, PeerStatus::Stale) if !new => {
                        vec![Transition::WentStale { peer_id: id }]
                    }
                    (PeerStatus::Online, PeerStatus::Online) if new_session => {
                        vec![Transition::Resumed { peer_id: id }]
                    }
                    _ => Vec::new(),
                }
            }
            AnnouncedStatus::Offline => {
                info.status = PeerStatus::Offline;
                if before != PeerStatus::Offline && !new {
                    vec![Transition::WentOffline {
                        peer_id: id,
                        graceful,
                    }]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Records an accepted non-presence event from `peer_id`: a peer
    /// message when `message`, else a sync event.
    pub(crate) fn note_received(
        &mut self,
        peer_id: &str,
        created_at: u64,
        now: u64,
        trust: TrustState,
        traffic: Traffic,
    ) -> Vec<Transition> {
        let (info, new) = self.entry(peer_id, trust);
        match traffic {
            Traffic::Message => info.messages_in += 1,
            Traffic::Sync => info.sync_in += 1,
            Traffic::Receipt => {}
        }
        info.last_seen = info.last_seen.max(created_at.min(now));
        if new || info.status == PeerStatus::Stale {
            info.status = PeerStatus::Online;
            return vec![Transition::CameOnline {
                peer_id: peer_id.to_string(),
                name: info.name.clone(),
            }];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(status: AnnouncedStatus, since: u64) -> Presence {
        Presence {
            peer_id: "a".repeat(64),
            name: "alice".into(),
            software: "t/1".into(),
            protocol: crate::federation::protocol::PROTOCOL_VERSION.into(),
            capabilities: vec![],
            status,
            since,
            reason: None,
        }
    }

    #[test]
    fn a_new_session_of_a_peer_online_all_along_is_a_resumption() {
        let mut t = PeerTable::new(120, 10);
        let id = "a".repeat(64);
        let first = presence(AnnouncedStatus::Online, 1000);
        assert_eq!(
            t.apply_presence(&first, 1000, 1000, false, TrustState::Pinned)[0].kind(),
            "came-online"
        );
        // A heartbeat of the same session changes nothing.
        assert!(t
            .apply_presence(&first, 1030, 1030, false, TrustState::Pinned)
            .is_empty());
        // A presence of a later session (it reconnected) while online all along.
        let again = presence(AnnouncedStatus::Online, 1040);
        assert_eq!(
            t.apply_presence(&again, 1041, 1041, false, TrustState::Pinned),
            vec![Transition::Resumed {
                peer_id: id.clone()
            }]
        );
        assert_eq!(t.get(&id).unwrap().status, PeerStatus::Online);
        // Its heartbeats are not resumptions.
        assert!(t
            .apply_presence(&again, 1070, 1070, false, TrustState::Pinned)
            .is_empty());
    }

    #[test]
    fn online_stale_offline() {
        let mut t = PeerTable::new(120, 10);
        let id = "a".repeat(64);
        let on = presence(AnnouncedStatus::Online, 1000);
        let tr = t.apply_presence(&on, 1000, 1000, false, TrustState::Pinned);
        assert_eq!(tr[0].kind(), "came-online");
        assert_eq!(t.get(&id).unwrap().status, PeerStatus::Online);
        assert!(t.tick(1120).is_empty());
        let tr = t.tick(1121);
        assert_eq!(
            tr,
            vec![Transition::WentStale {
                peer_id: id.clone()
            }]
        );
        assert!(t.tick(1200).is_empty(), "reported once");
        // Activity brings it back.
        let tr = t.note_received(&id, 1201, 1201, TrustState::Pinned, Traffic::Message);
        assert_eq!(tr[0].kind(), "came-online");
        assert_eq!(t.get(&id).unwrap().messages_in, 1);
        // Sync traffic is counted apart from messages.
        t.note_received(&id, 1202, 1202, TrustState::Pinned, Traffic::Sync);
        assert_eq!(t.get(&id).unwrap().messages_in, 1);
        assert_eq!(t.get(&id).unwrap().sync_in, 1);
        t.tick(2000);
        let off = presence(AnnouncedStatus::Offline, 1000);
        let tr = t.apply_presence(&off, 1000, 2001, false, TrustState::Pinned);
        assert_eq!(
            tr,
            vec![Transition::WentOffline {
                peer_id: id.clone(),
                graceful: false
            }]
        );
        assert_eq!(t.get(&id).unwrap().status, PeerStatus::Offline);
        assert!(t.tick(9999).is_empty());
        assert!(t.note_sent(&id));
        assert!(!t.note_sent(&"b".repeat(64)));
        assert_eq!(t.peers()[0].messages_out, 1);
        assert_eq!(t.peer_ids(), vec![id.clone()]);
        assert!(t.forget(&id) && t.is_empty());
    }

    #[test]
    fn old_retained_online_is_stale_at_once() {
        let mut t = PeerTable::new(120, 10);
        let on = presence(AnnouncedStatus::Online, 10);
        assert!(t
            .apply_presence(&on, 10, 5000, false, TrustState::Pinned)
            .is_empty());
        assert_eq!(t.peers()[0].status, PeerStatus::Stale);
        assert!(t.is_full_for(&"b".repeat(64)) == (t.len() >= 10));
    }
}
