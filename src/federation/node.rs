//! [`Node`]: one running federation peer, the receiving and sending sides
//! together with the trust file they persist to.
//!
//! The Emacs layer keeps one `Node` while federation runs and hands it every
//! message of the federation's topics; the node never touches the network
//! itself: it returns [`Publication`]s for the caller to publish.

use std::path::PathBuf;

use crate::identity::{Identity, SignedEvent};

use super::inbound::{verify_payload, Accepted, Body, Inbound, SyncKind};
use super::outbound::{LocalProfile, Outbound, OutboundError, Prepared, Publication};
use super::outbox::{Outbox, OutboxSettings};
use super::peers::{PeerInfo, Transition};
use super::protocol::KIND_RECEIPT;
use super::receipts::{self, PendingReceipts, ReceivedLog};
use super::replay_journal::{journal_path, ReplayJournal};
use super::session_file::{read_last_since, session_path, write_last_since};
use super::trust::{TrustError, TrustPolicy, TrustStore};
use super::{Config, ConfigError, DropReason, Dropped};

/// Where delivery state is kept, and how the outbox behaves.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPaths {
    /// The outbox file (`None`: in memory only).
    pub outbox: Option<PathBuf>,
    /// The file of recently accepted message ids (`None`: in memory only).
    pub received: Option<PathBuf>,
    /// Resend and expiry settings.
    pub settings: OutboxSettings,
}

/// What [`Node::handle`] made of one received message.
#[derive(Debug)]
pub struct Handled {
    /// Accepted or dropped, as [`Node::receive`] says, except that a peer
    /// message accepted before a restart is dropped as `replay`.
    pub result: Result<Accepted, Dropped>,
    /// Our messages that a receipt in it acknowledged, as (id, peer).
    pub delivered: Vec<(String, String)>,
}

/// What one [`Node::delivery_tick`] did.
#[derive(Debug, Default)]
pub struct DeliveryTick {
    /// Receipts and resends to publish.
    pub publications: Vec<Publication>,
    /// Messages given up, as (id, peer, reason).
    pub failed: Vec<(String, String, String)>,
    /// Files that could not be written, said for the person.
    pub errors: Vec<String>,
}

/// A stable MQTT client id for the peer `peer_id`: `mlf` and the first 20
/// hex digits of the id (23 characters, letters and digits only: what
/// every MQTT 3.1.1 broker must accept). The broker keeps the persistent
/// session of this id while the peer is away.
pub fn client_id_for(peer_id: &str) -> String {
    let n = peer_id.len().min(20);
    format!("mlf{}", &peer_id[..n])
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The display name would be refused by other peers (control, separator or format
    /// characters).
    #[error("{0}; choose a display name in plain text")]
    BadDisplayName(String),
    /// The trust file could not be read.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The replay journal beside the trust file could not be read or written.
    #[error("replay journal {path}: {source}; check the directory's permissions")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Totals of what a node sent and accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Events published (presence, messages, sync).
    pub sent: u64,
    /// Events accepted.
    pub accepted: u64,
    /// Events dropped by a check (our own echoes are not drops).
    pub dropped: u64,
    /// Our own events, echoed back by the broker (normal MQTT behaviour).
    pub echoes: u64,
}

/// One federation peer: identity, peer table, trust and replay memory.
#[derive(Debug)]
pub struct Node {
    inbound: Inbound,
    outbound: Outbound,
    trust_path: Option<PathBuf>,
    journal: Option<ReplayJournal>,
    /// The last failure to append to the journal, reported by the next save.
    journal_error: Option<String>,
    /// The last failure to record the session's `since`, reported by the
    /// next save.
    session_error: Option<String>,
    counts: NodeCounts,
    outbox: Outbox,
    received: ReceivedLog,
    receipts_due: PendingReceipts,
}

impl Node {
    /// A node for `identity`; loads the trust store from `trust_path` (a
    /// missing file is an empty store; `None` keeps trust in memory only).
    pub fn new(
        identity: Identity,
        config: Config,
        profile: LocalProfile,
        trust_path: Option<PathBuf>,
        now: u64,
    ) -> Result<Node, NodeError> {
        // Others refuse a presence whose name holds control, separator or
        // format characters: say so here rather than be ignored silently.
        super::names::check_text("display name", &profile.name).map_err(|m| {
            NodeError::BadDisplayName(m.trim_start_matches("presence content: ").to_string())
        })?;
        let trust = match &trust_path {
            Some(p) => TrustStore::load(p)?,
            None => TrustStore::new(),
        };
        let mut outbound = Outbound::new(identity.clone(), &config, profile, now)?;
        // Sessions stay ordered across restarts: a peer started again within
        // the second of its last session would otherwise reuse that session's
        // `since`, and its will would outrank its new presence everywhere.
        if let Some(last) = trust_path
            .as_deref()
            .and_then(|p| read_last_since(&session_path(p)))
        {
            outbound.resume_after(last);
        }
        let received = ReceivedLog::in_memory(config.replay_capacity);
        let mut inbound = Inbound::new(identity, config, trust)?;
        // The replay memory survives restarts: ids accepted before (even
        // just before a crash) are refused again while young.
        let journal = match &trust_path {
            Some(p) => {
                let path = journal_path(p);
                Some(
                    ReplayJournal::open(&path, inbound.replay_set_mut(), now)
                        .map_err(|source| NodeError::Journal { path, source })?,
                )
            }
            None => None,
        };
        Ok(Node {
            inbound,
            outbound,
            trust_path,
            journal,
            journal_error: None,
            session_error: None,
            counts: NodeCounts::default(),
            outbox: Outbox::in_memory(OutboxSettings::default()),
            received,
            receipts_due: PendingReceipts::default(),
        })
    }

    /// Keeps the outbox and the received-message log in `paths` (loading
    /// what a previous run left there); returns warnings for damaged files,
    /// which were set aside.
    pub fn open_delivery(&mut self, paths: &DeliveryPaths, now: u64) -> Vec<String> {
        let mut warnings = Vec::new();
        self.outbox = match &paths.outbox {
            Some(p) => {
                let (o, w) = Outbox::open(p, paths.settings, now);
                warnings.extend(w);
                o
            }
            None => Outbox::in_memory(paths.settings),
        };
        let cap = self.config().replay_capacity;
        self.received = match &paths.received {
            Some(p) => {
                let (r, w) = ReceivedLog::open(p, cap, now);
                warnings.extend(w);
                r
            }
            None => ReceivedLog::in_memory(cap),
        };
        warnings
    }

    /// The identity of this peer (signs the memberships of its shares).
    pub fn identity(&self) -> &Identity {
        self.outbound.identity()
    }

    /// The MQTT client id of this peer (see [`client_id_for`]).
    pub fn client_id(&self) -> String {
        client_id_for(self.peer_id())
    }

    /// Our peer id.
    pub fn peer_id(&self) -> &str {
        self.inbound.peer_id()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        self.inbound.config()
    }

    /// The filters to subscribe to, with their QoS.
    pub fn subscriptions(&self) -> Vec<(String, u8)> {
        self.inbound.topics().subscriptions(self.peer_id())
    }

    /// Starts a new MQTT session and returns its last will (call before
    /// every connection attempt).
    pub fn begin_session(&mut self, now: u64) -> Result<Publication, OutboundError> {
        let since = self.outbound.new_session(now);
        // Recorded before the CONNECT that carries this session's will, so
        // that even a `kill -9` right after it leaves the next run a later
        // session. A failure is reported by the next save; the clock alone
        // still orders sessions more than a second apart.
        if let Some(p) = self.trust_path.as_deref().map(session_path) {
            if let Err(e) = write_last_since(&p, since) {
                self.session_error = Some(format!("{}: {e}", p.display()));
            }
        }
        self.outbound.will(now)
    }

    /// Our retained presence and the announcement copy, to publish once
    /// connected and then as a heartbeat.
    pub fn announce(&mut self, now: u64) -> Result<Vec<Publication>, OutboundError> {
        let v = vec![self.outbound.presence(now)?, self.outbound.announce(now)?];
        self.counts.sent += v.len() as u64;
        Ok(v)
    }

    /// Our departure (retained, replaces the presence).
    pub fn departure(&mut self, reason: &str, now: u64) -> Result<Publication, OutboundError> {
        self.counts.sent += 1;
        self.outbound.departure(reason, now)
    }

    /// An encrypted message to one known peer, kept in the outbox until
    /// its receipt arrives.
    pub fn peer_message(
        &mut self,
        to: &str,
        plaintext: &str,
        now: u64,
    ) -> Result<Publication, OutboundError> {
        let prepared = self.prepare_peer_message(to, plaintext, now)?;
        Ok(self.finish_peer_message(prepared))
    }

    /// [`Node::peer_message`] in two steps, so that the caller gets the event id before the
    /// signature is made: this step checks, encrypts, gives the id (refusals happen here) and
    /// puts the message in the outbox; [`Node::finish_peer_message`] signs it.
    pub fn prepare_peer_message(
        &mut self,
        to: &str,
        plaintext: &str,
        now: u64,
    ) -> Result<Prepared, OutboundError> {
        if !self.outbox.has_room() {
            return Err(OutboundError::OutboxFull(self.outbox.pending().len()));
        }
        let p = self.outbound.prepare_peer_message(
            self.inbound.peer_table_mut(),
            to,
            plaintext,
            now,
        )?;
        // In the outbox from now on (shown and counted), sent once it is signed.
        self.outbox.reserve(&p.event_id, p.to(), &p.topic, now);
        self.counts.sent += 1;
        Ok(p)
    }

    /// Signs a message of [`Node::prepare_peer_message`], which waits in the outbox until its
    /// receipt arrives; returns what to publish.
    pub fn finish_peer_message(&mut self, prepared: Prepared) -> Publication {
        let p = prepared.sign(self.outbound.identity());
        self.outbox.fill(&p);
        p
    }

    /// Verifies and applies one received message, with delivery receipts:
    /// an accepted peer message is remembered and will be acknowledged (at
    /// the next [`Node::delivery_tick`]); a duplicate of one is dropped as
    /// `replay` and acknowledged again; a receipt acknowledges our
    /// messages (see [`receipts`]).
    pub fn handle(&mut self, topic: &str, payload: &[u8], now: u64) -> Handled {
        let verified = verify_payload(payload, self.config().max_event_bytes);
        self.handle_verified(topic, verified, now)
    }

    /// [`Node::handle`] for a payload whose stateless checks (size, shape, id, signature)
    /// [`verify_payload`] made already, without the node: the session makes them before it
    /// locks the node, so that Emacs' queries of the node do not wait for signature checks.
    pub fn handle_verified(
        &mut self,
        topic: &str,
        verified: Result<SignedEvent, Dropped>,
        now: u64,
    ) -> Handled {
        let mut delivered = Vec::new();
        let result = match self.receive_verified(topic, verified, now) {
            Ok(a) => match &a.body {
                Body::Message { .. } => {
                    let (id, from) = (a.event.id.clone(), a.from().to_string());
                    self.receipts_due.add(&from, &id);
                    if self.received.sender(&id).is_some() {
                        // Accepted before a restart: the replay memory was
                        // empty, the log was not.
                        self.counts.accepted -= 1;
                        self.counts.dropped += 1;
                        self.inbound.count_drop(DropReason::Replay);
                        Err(Dropped {
                            reason: DropReason::Replay,
                            message: "message already received before a restart (resent by \
                                      its sender)"
                                .into(),
                            event_id: Some(id),
                            peer_id: Some(from),
                            transitions: a.transitions,
                        })
                    } else {
                        self.received.record(&id, &from, a.event.created_at);
                        Ok(a)
                    }
                }
                Body::Receipt { acked } => {
                    let from = a.from().to_string();
                    delivered = self
                        .outbox
                        .acknowledge(&from, acked)
                        .into_iter()
                        .map(|id| (id, from.clone()))
                        .collect();
                    Ok(a)
                }
                _ => Ok(a),
            },
            Err(d) => {
                if d.reason == DropReason::Replay {
                    if let (Some(id), Some(peer)) = (&d.event_id, &d.peer_id) {
                        if self.received.sender(id) == Some(peer.as_str()) {
                            self.receipts_due.add(peer, id);
                        }
                    }
                }
                Err(d)
            }
        };
        Handled { result, delivered }
    }

    /// Delivery upkeep, every half second or so: saves the log of accepted
    /// messages, then builds the receipts for them (so a receipt always
    /// means "remembered"); gives up expired messages; resends those whose
    /// backoff ran out; saves the outbox.
    pub fn delivery_tick(&mut self, now: u64) -> DeliveryTick {
        let mut t = DeliveryTick::default();
        let window = self.config().max_age_secs + self.config().max_future_secs;
        self.received.prune(now.saturating_sub(window));
        match self.received.save() {
            Ok(()) => {
                let per = receipts::acks_per_receipt(self.config().max_event_bytes);
                for (peer, ids) in self.receipts_due.take() {
                    for chunk in ids.chunks(per) {
                        let content = receipts::content(chunk);
                        match self
                            .outbound
                            .encrypted_to(&peer, KIND_RECEIPT, &content, now)
                        {
                            Ok(p) => t.publications.push(p),
                            Err(e) => t.errors.push(format!("receipt not sent: {e}")),
                        }
                    }
                }
            }
            // No receipt for what we could not remember: the sender resends
            // and the next tick tries again.
            Err(e) => t
                .errors
                .push(format!("the log of received messages cannot be saved: {e}")),
        }
        t.failed = self.outbox.expire(now);
        t.publications.extend(self.outbox.due(now));
        if let Err(e) = self.outbox.save_in_background() {
            t.errors.push(format!("the outbox cannot be saved: {e}"));
        }
        self.counts.sent += t.publications.len() as u64;
        t
    }

    /// Every unacknowledged message again (call after a reconnection).
    pub fn resend_all(&mut self, now: u64) -> Vec<Publication> {
        let v = self.outbox.resend_all(now);
        self.counts.sent += v.len() as u64;
        v
    }

    /// The unacknowledged messages, oldest first.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Saves the outbox and the received log now (at shutdown).
    pub fn save_delivery(&mut self) -> std::io::Result<()> {
        self.received.save()?;
        self.outbox.save()
    }

    /// A sync event.
    pub fn sync(
        &mut self,
        kind: SyncKind,
        content: &str,
        tags: Vec<Vec<String>>,
        now: u64,
    ) -> Result<Publication, OutboundError> {
        let p = self.outbound.sync(kind, content, tags, now)?;
        self.counts.sent += 1;
        Ok(p)
    }

    /// Verifies and applies one received message.
    pub fn receive(&mut self, topic: &str, payload: &[u8], now: u64) -> Result<Accepted, Dropped> {
        let verified = verify_payload(payload, self.config().max_event_bytes);
        self.receive_verified(topic, verified, now)
    }

    fn receive_verified(
        &mut self,
        topic: &str,
        verified: Result<SignedEvent, Dropped>,
        now: u64,
    ) -> Result<Accepted, Dropped> {
        let r = self.inbound.accept_verified(topic, verified, now);
        match &r {
            Ok(a) => {
                self.counts.accepted += 1;
                if let Some(j) = &mut self.journal {
                    if let Err(e) = j.append(&a.event.id, &a.event.pubkey, a.event.created_at) {
                        self.journal_error = Some(format!("{}: {e}", j.path().display()));
                    }
                }
            }
            Err(d) if d.reason == DropReason::OwnEvent => self.counts.echoes += 1,
            Err(_) => self.counts.dropped += 1,
        }
        r
    }

    /// Marks silent peers stale.
    pub fn tick(&mut self, now: u64) -> Vec<Transition> {
        self.inbound.tick(now)
    }

    /// Known peers with their trust state, sorted by id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inbound.peers()
    }

    /// One known peer.
    pub fn peer(&self, peer_id: &str) -> Option<PeerInfo> {
        self.inbound.peer(peer_id)
    }

    /// Known peer ids, sorted.
    pub fn peer_ids(&self) -> Vec<String> {
        self.inbound.peer_ids()
    }

    /// Trusts a peer and saves the trust file.
    pub fn trust(&mut self, peer_id: &str, now: u64) -> Result<(), TrustError> {
        self.inbound.trust_peer(peer_id, now)?;
        self.save_trust()
    }

    /// Forgets a peer's trust state and saves; `false` if there was none.
    pub fn untrust(&mut self, peer_id: &str) -> Result<bool, TrustError> {
        let had = self.inbound.untrust_peer(peer_id)?;
        self.save_trust()?;
        Ok(had)
    }

    /// Blocks a peer and saves the trust file.
    pub fn block(&mut self, peer_id: &str, now: u64) -> Result<(), TrustError> {
        self.inbound.block_peer(peer_id, now)?;
        self.save_trust()
    }

    /// Changes the trust policy (not persisted: it is a user option).
    pub fn set_policy(&mut self, policy: TrustPolicy) {
        self.inbound.set_policy(policy);
    }

    /// Saves the trust file if anything changed (TOFU pins included), and
    /// compacts the replay journal when it has grown; reports a failure to
    /// write the journal since the last save.
    pub fn save_trust(&mut self) -> Result<(), TrustError> {
        let journal = self.save_journal().and(self.session_saved());
        let trust = match &self.trust_path {
            Some(p) if self.inbound.trust_store().is_dirty() => {
                let p = p.clone();
                self.inbound.trust_store_mut().save(&p)
            }
            _ => Ok(()),
        };
        trust.and(journal)
    }

    /// Reports a failure to record a session start since the last save.
    fn session_saved(&mut self) -> Result<(), TrustError> {
        match (self.session_error.take(), &self.trust_path) {
            (Some(m), Some(t)) => Err(TrustError::Io {
                path: session_path(t),
                source: std::io::Error::other(format!(
                    "the session start could not be recorded ({m}); if Emacs restarts \
                     within a second, the others may show this peer offline until its \
                     next reconnect"
                )),
            }),
            _ => Ok(()),
        }
    }

    fn save_journal(&mut self) -> Result<(), TrustError> {
        let Some(j) = &mut self.journal else {
            return Ok(());
        };
        let set = self.inbound.replay_set();
        let compacted = if j.wants_compaction(set) {
            j.compact(set)
        } else {
            Ok(())
        };
        let failed = self.journal_error.take().or_else(|| {
            compacted
                .err()
                .map(|e| format!("{}: {e}", j.path().display()))
        });
        match failed {
            None => Ok(()),
            Some(m) => Err(TrustError::Io {
                path: j.path().to_path_buf(),
                source: std::io::Error::other(format!(
                    "the replay journal could not be written ({m}); replays of events \
                     accepted since are refused only until Emacs restarts"
                )),
            }),
        }
    }

    /// The trust store: every key it knows (pinned, trusted, held, blocked),
    /// including keys that are not in the peer table.
    pub fn trust_store(&self) -> &TrustStore {
        self.inbound.trust_store()
    }

    /// Drop counts per reason, zeros included.
    pub fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        self.inbound.drop_counts()
    }

    /// Totals sent, accepted and dropped.
    pub fn counts(&self) -> NodeCounts {
        self.counts
    }

    /// How many event ids the replay memory holds.
    pub fn replay_len(&self) -> usize {
        self.inbound.replay_len()
    }

    /// The topic that peer messages to `peer_id` go to.
    pub fn messages_topic(&self, peer_id: &str) -> String {
        self.inbound.topics().messages(peer_id)
    }

    /// A direct-link signal to `to` (kind 4774, NIP-44 encrypted like a peer message, not kept
    /// in the outbox: see [`crate::links::signal`]).
    pub fn link_signal(
        &mut self,
        to: &str,
        plaintext: &str,
        now: u64,
    ) -> Result<Publication, OutboundError> {
        let p =
            self.outbound
                .encrypted_to(to, super::protocol::KIND_LINK_SIGNAL, plaintext, now)?;
        self.counts.sent += 1;
        Ok(p)
    }

    /// An event signed with our key and never published (a direct link's hello).
    pub fn sign_unpublished(
        &self,
        kind: u16,
        content: &str,
        tags: Vec<Vec<String>>,
        now: u64,
    ) -> crate::identity::event::SignedEvent {
        self.outbound.sign_unpublished(kind, content, tags, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::{Body, PeerStatus};

    fn identity(n: u8) -> Identity {
        crate::federation::tests::ident(n as usize - 1).clone()
    }

    fn node(n: u8, dir: &std::path::Path) -> Node {
        let profile = LocalProfile {
            name: format!("peer{n}"),
            software: "test/0".into(),
            capabilities: vec!["nip44-messages".into()],
        };
        Node::new(
            identity(n),
            Config::default(),
            profile,
            Some(dir.join(format!("trust{n}.json"))),
            1_000,
        )
        .expect("node")
    }

    fn deliver(to: &mut Node, p: &Publication, now: u64) -> Result<Accepted, Dropped> {
        to.receive(&p.topic, &p.payload, now)
    }

    #[test]
    fn two_nodes_meet_talk_privately_and_part() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = node(1, dir.path());
        let mut b = node(2, dir.path());
        let will = a.begin_session(1_000).unwrap();
        for p in a.announce(1_000).unwrap() {
            deliver(&mut b, &p, 1_000).ok();
        }
        assert_eq!(b.peer_ids(), vec![a.peer_id().to_string()]);
        for p in b.announce(1_001).unwrap() {
            deliver(&mut a, &p, 1_001).ok();
        }
        let m = a.peer_message(b.peer_id(), "hello b", 1_002).unwrap();
        assert!(!String::from_utf8_lossy(&m.payload).contains("hello b"));
        let got = deliver(&mut b, &m, 1_002).unwrap();
        assert_eq!(
            got.body,
            Body::Message {
                plaintext: "hello b".into()
            }
        );
        // The same event again is a replay.
        let again = deliver(&mut b, &m, 1_002).unwrap_err();
        assert_eq!(again.reason, DropReason::Replay);
        // The broker publishes a's will: b sees a offline.
        let gone = deliver(&mut b, &will, 1_010).unwrap();
        assert!(matches!(
            gone.transitions.as_slice(),
            [Transition::WentOffline {
                graceful: false,
                ..
            }]
        ));
        assert_eq!(b.peer(a.peer_id()).unwrap().status, PeerStatus::Offline);
        assert_eq!(b.counts().accepted, 4);
        assert_eq!(b.counts().dropped, 1);
        // b's own presence echoed back is an echo, not a drop.
        for p in b.announce(1_011).unwrap() {
            assert_eq!(
                deliver(&mut b, &p, 1_011).unwrap_err().reason,
                DropReason::OwnEvent
            );
        }
        assert_eq!(b.counts().dropped, 1);
        assert_eq!(b.counts().echoes, 2);
        assert_eq!(b.peer(a.peer_id()).unwrap().messages_in, 1);
    }

    #[test]
    fn a_reconnect_starts_a_session_that_outranks_the_old_will() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = node(1, dir.path());
        let mut b = node(2, dir.path());
        let old_will = a.begin_session(1_000).unwrap();
        for p in a.announce(1_000).unwrap() {
            deliver(&mut b, &p, 1_000).ok();
        }
        // Connection breaks, a reconnects in the same second, and the
        // broker publishes the old will only after the new presence.
        let _new_will = a.begin_session(1_000).unwrap();
        let fresh = a.announce(1_000).unwrap();
        deliver(&mut b, &fresh[0], 1_000).unwrap();
        assert!(deliver(&mut b, &old_will, 1_001).is_err());
        assert_eq!(b.peer(a.peer_id()).unwrap().status, PeerStatus::Online);
    }

    #[test]
    fn a_peer_restarted_within_the_second_outranks_its_old_will() {
        // The flaky three-peer sync test: Carol is killed and started again
        // within one second. The broker publishes her old will; her new
        // run's presence must still make her online, and must not be the
        // old run's event again.
        let dir = tempfile::tempdir().unwrap();
        let mut b = node(2, dir.path());
        let mut a = node(1, dir.path());
        let old_will = a.begin_session(1_000).unwrap();
        let old = a.announce(1_000).unwrap();
        for p in &old {
            deliver(&mut b, p, 1_000).ok();
        }
        drop(a); // kill -9: no departure
        deliver(&mut b, &old_will, 1_000).unwrap();
        assert_eq!(
            b.peer(identity(1).peer_id().as_str()).unwrap().status,
            PeerStatus::Offline
        );
        // Same clock second, same files.
        let mut a = node(1, dir.path());
        let _will = a.begin_session(1_000).unwrap();
        let fresh = a.announce(1_000).unwrap();
        assert_ne!(
            fresh[0].event_id, old[0].event_id,
            "a new event, not the old one"
        );
        let got = deliver(&mut b, &fresh[0], 1_000).expect("new presence accepted");
        assert_eq!(got.transitions[0].kind(), "came-online");
        assert_eq!(b.peer(a.peer_id()).unwrap().status, PeerStatus::Online);
        assert!(b
            .drop_counts()
            .iter()
            .all(|(r, n)| *r != "too-old" || *n == 0));
    }

    #[test]
    fn trust_decisions_persist_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let c = identity(3).peer_id();
        {
            let mut a = node(1, dir.path());
            a.block(&c, 1_000).unwrap();
        }
        let mut a = node(1, dir.path());
        let mut cn = node(3, dir.path());
        let p = cn.announce(1_000).unwrap();
        let d = deliver(&mut a, &p[0], 1_000).unwrap_err();
        assert_eq!(d.reason, DropReason::Blocked);
        assert!(a.untrust(&c).unwrap());
        assert!(deliver(&mut a, &p[1], 1_000).is_ok());
    }

    fn meet(a: &mut Node, b: &mut Node, now: u64) {
        for p in a.announce(now).unwrap() {
            deliver(b, &p, now).ok();
        }
        for p in b.announce(now).unwrap() {
            deliver(a, &p, now).ok();
        }
    }

    fn paths(dir: &std::path::Path, n: u8) -> DeliveryPaths {
        DeliveryPaths {
            outbox: Some(dir.join(format!("outbox{n}.json"))),
            received: Some(dir.join(format!("received{n}.json"))),
            settings: OutboxSettings::default(),
        }
    }

    #[test]
    fn receipts_acknowledge_each_message_once_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = node(1, dir.path());
        let mut b = node(2, dir.path());
        assert!(a.open_delivery(&paths(dir.path(), 1), 1_000).is_empty());
        assert!(b.open_delivery(&paths(dir.path(), 2), 1_000).is_empty());
        meet(&mut a, &mut b, 1_000);
        let m1 = a.peer_message(b.peer_id(), "one", 1_001).unwrap();
        let m2 = a.peer_message(b.peer_id(), "two", 1_001).unwrap();
        assert_eq!(a.outbox().pending().len(), 2);
        assert!(b.handle(&m1.topic, &m1.payload, 1_002).result.is_ok());
        // A resend in the same run: a replay, acknowledged again.
        let again = b.handle(&m1.topic, &m1.payload, 1_002).result.unwrap_err();
        assert_eq!(again.reason, DropReason::Replay);
        let tick = b.delivery_tick(1_002);
        assert_eq!(tick.publications.len(), 1, "one receipt for the batch");
        let receipt = &tick.publications[0];
        assert_eq!(receipt.topic, a.messages_topic(a.peer_id()));
        assert!(!String::from_utf8_lossy(&receipt.payload).contains(&m1.event_id));
        let h = a.handle(&receipt.topic, &receipt.payload, 1_003);
        assert!(matches!(h.result.unwrap().body, Body::Receipt { .. }));
        assert_eq!(
            h.delivered,
            vec![(m1.event_id.clone(), b.peer_id().to_string())]
        );
        assert_eq!(a.outbox().pending().len(), 1);
        // b restarts (empty replay memory) after accepting m2, before its
        // receipt went out; a resends m2 after reconnecting.
        assert!(b.handle(&m2.topic, &m2.payload, 1_004).result.is_ok());
        b.save_delivery().unwrap();
        drop(b);
        let mut b = node(2, dir.path());
        assert!(b.open_delivery(&paths(dir.path(), 2), 1_005).is_empty());
        let resent = a.resend_all(1_005);
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].payload, m2.payload);
        let dup = b.handle(&resent[0].topic, &resent[0].payload, 1_005);
        assert_eq!(dup.result.unwrap_err().reason, DropReason::Replay);
        let tick = b.delivery_tick(1_006);
        assert_eq!(tick.publications.len(), 1);
        let h = a.handle(
            &tick.publications[0].topic,
            &tick.publications[0].payload,
            1_006,
        );
        assert_eq!(h.delivered.len(), 1);
        assert!(a.outbox().pending().is_empty());
        // a restarted too: its saved outbox is empty now.
        a.delivery_tick(1_007);
        // The tick hands the outbox to its writer thread; a restart reads it once written.
        a.outbox().written().unwrap();
        let mut a2 = node(1, dir.path());
        a2.open_delivery(&paths(dir.path(), 1), 1_008);
        assert!(a2.outbox().pending().is_empty());
    }

    #[test]
    fn unacknowledged_messages_survive_a_restart_and_fail_at_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = node(1, dir.path());
        let mut b = node(2, dir.path());
        a.open_delivery(&paths(dir.path(), 1), 1_000);
        meet(&mut a, &mut b, 1_000);
        let m = a.peer_message(b.peer_id(), "lost", 1_000).unwrap();
        a.delivery_tick(1_000);
        a.outbox().written().unwrap();
        let mut a = node(1, dir.path());
        a.open_delivery(&paths(dir.path(), 1), 1_001);
        assert_eq!(a.outbox().pending()[0].id, m.event_id);
        // A receipt forged by someone else acknowledges nothing: receipts
        // are signed, so only b can acknowledge b's messages.
        let mut c = node(3, dir.path());
        meet(&mut c, &mut a, 1_001);
        let forged = c
            .outbound
            .encrypted_to(
                a.peer_id(),
                KIND_RECEIPT,
                &receipts::content(std::slice::from_ref(&m.event_id)),
                1_001,
            )
            .unwrap();
        assert!(a
            .handle(&forged.topic, &forged.payload, 1_001)
            .delivered
            .is_empty());
        let t = a.delivery_tick(1_020);
        assert_eq!(t.publications.len(), 1, "resent after the backoff");
        let t = a.delivery_tick(1_600);
        assert_eq!(t.failed.len(), 1);
        assert_eq!(t.failed[0].0, m.event_id);
        assert!(a.outbox().pending().is_empty());
    }

    #[test]
    fn a_display_name_others_would_refuse_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let profile = LocalProfile {
            name: "alice\n* Peer".into(),
            software: "test/0".into(),
            capabilities: vec![],
        };
        let e = Node::new(identity(1), Config::default(), profile, None, 1_000).unwrap_err();
        assert!(matches!(e, NodeError::BadDisplayName(_)), "{e}");
        assert!(e.to_string().contains("plain text"), "{e}");
        drop(dir);
    }

    #[test]
    fn messages_to_unknown_peers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = node(1, dir.path());
        let err = a
            .peer_message(&identity(4).peer_id(), "x", 1_000)
            .unwrap_err();
        assert!(matches!(err, OutboundError::UnknownPeer(_)));
        assert_eq!(a.counts().sent, 0);
    }
}
