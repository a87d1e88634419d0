//! The sender's outbox: every peer message not yet acknowledged by a
//! [receipt](super::receipts), kept in a file (mode 0600, written
//! atomically) so that a restart of Emacs does not forget it.
//!
//! A message is resent as the very same signed event (same id, so the
//! recipient recognises a duplicate):
//! * after every reconnection of this peer ([`Outbox::resend_all`]);
//! * when its backoff runs out ([`Outbox::due`]): first after
//!   `resend_after` seconds, then doubling up to `resend_max`;
//!
//! until a receipt from the recipient names it ([`Outbox::acknowledge`]) or
//! it is `expiry` seconds old ([`Outbox::expire`]), when it is reported as
//! failed. An expiry above the recipients' maximum event age is pointless:
//! they refuse the event as `too-old` from then on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file_writer::FileWriter;
use super::outbound::Publication;
use super::protocol::is_peer_id;

/// How the outbox resends and gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Seconds after which an unacknowledged message counts as failed.
    pub expiry: u64,
    /// Seconds before the first resend (without a reconnect).
    pub resend_after: u64,
    /// Longest wait between two resends, in seconds.
    pub resend_max: u64,
    /// Most messages waiting; sending more is refused.
    pub capacity: usize,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            expiry: 600,
            resend_after: 15,
            resend_max: 120,
            capacity: 10_000,
        }
    }
}

/// One unacknowledged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The event id.
    pub id: String,
    /// The recipient.
    pub peer: String,
    /// The recipient's messages topic.
    pub topic: String,
    /// The signed event's JSON, sent again as it is.
    pub event: String,
    /// Unix time of the first send.
    pub first_sent: u64,
    /// Sends so far (1 after the first).
    pub attempts: u32,
    /// Unix time of the next resend.
    pub next_at: u64,
}

impl Pending {
    /// False for a message whose id is given out but whose signature is still being made on
    /// the session's worker ([`Outbox::reserve`]): it is not sent, resent or saved until then.
    pub fn is_signed(&self) -> bool {
        !self.event.is_empty()
    }

    fn publication(&self) -> Publication {
        Publication {
            topic: self.topic.clone(),
            payload: self.event.clone().into_bytes(),
            retain: false,
            qos: 1,
            event_id: self.id.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct OutboxFile {
    version: u32,
    messages: Vec<Pending>,
}

/// Unacknowledged peer messages, oldest first.
#[derive(Debug)]
pub struct Outbox {
    path: Option<PathBuf>,
    settings: OutboxSettings,
    pending: Vec<Pending>,
    dirty: bool,
    /// Writes the file off the caller's thread ([`Outbox::save_in_background`]); `None`
    /// if its thread could not start (then saves are made on the caller's thread).
    writer: Option<FileWriter<OutboxFile>>,
}

/// Keeps a damaged file aside as `NAME.damaged-NOW` through
/// [`crate::fsutil::keep_aside`] and returns the new name, or why there is none.
pub(super) fn set_aside(path: &Path, now: u64) -> String {
    match crate::fsutil::keep_aside(path, &now.to_string()) {
        Ok(Some(aside)) => aside.display().to_string(),
        Ok(None) => "nowhere (the file is gone)".to_string(),
        Err(e) => format!("nowhere (renaming failed: {e})"),
    }
}

impl Outbox {
    /// An empty outbox kept in memory only.
    pub fn in_memory(settings: OutboxSettings) -> Outbox {
        Outbox {
            path: None,
            settings,
            pending: Vec::new(),
            dirty: false,
            writer: None,
        }
    }

    /// The outbox in `path` (a missing file is an empty outbox). A damaged
    /// file is renamed aside and the outbox starts empty; the returned
    /// warning says so.
    pub fn open(path: &Path, settings: OutboxSettings, now: u64) -> (Outbox, Option<String>) {
        let mut o = Outbox::in_memory(settings);
        o.path = Some(path.to_path_buf());
        o.writer = FileWriter::new(path.to_path_buf(), "meta-log-outbox").ok();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (o, None),
            Err(e) => {
                return (
                    o,
                    Some(format!(
                        "cannot read the outbox {}: {e}; its unacknowledged messages are not \
                         resent",
                        path.display()
                    )),
                )
            }
        };
        match serde_json::from_str::<OutboxFile>(&text) {
            Ok(f) if f.version == 1 => {
                o.pending = f
                    .messages
                    .into_iter()
                    .filter(|p| is_peer_id(&p.id) && is_peer_id(&p.peer))
                    .collect();
                o.pending.sort_by_key(|p| p.first_sent);
                (o, None)
            }
            _ => {
                let aside = set_aside(path, now);
                o.dirty = true;
                (
                    o,
                    Some(format!(
                        "the outbox {} was damaged and was moved to {aside}; the messages it \
                         held are not resent and are not reported delivered",
                        path.display()
                    )),
                )
            }
        }
    }

    /// The settings.
    pub fn settings(&self) -> OutboxSettings {
        self.settings
    }

    /// Whether another message fits.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.settings.capacity
    }

    /// Keeps the just-sent message `p` to `peer` until it is acknowledged.
    pub fn add(&mut self, p: &Publication, peer: &str, now: u64) {
        self.pending.push(Pending {
            id: p.event_id.clone(),
            peer: peer.to_string(),
            topic: p.topic.clone(),
            event: String::from_utf8_lossy(&p.payload).into_owned(),
            first_sent: now,
            attempts: 1,
            next_at: now.saturating_add(self.settings.resend_after),
        });
        self.dirty = true;
    }

    /// Keeps the place of a message whose id is known but which is not signed yet, so that
    /// it counts and shows as waiting at once; [`Outbox::fill`] adds the signed event.
    pub fn reserve(&mut self, id: &str, peer: &str, topic: &str, now: u64) {
        self.pending.push(Pending {
            id: id.to_string(),
            peer: peer.to_string(),
            topic: topic.to_string(),
            event: String::new(),
            first_sent: now,
            attempts: 1,
            next_at: now.saturating_add(self.settings.resend_after),
        });
    }

    /// The signed event of a message [`Outbox::reserve`]d (if it is still waiting).
    pub fn fill(&mut self, p: &Publication) {
        if let Some(m) = self
            .pending
            .iter_mut()
            .rev()
            .find(|m| m.id == p.event_id && !m.is_signed())
        {
            m.event = String::from_utf8_lossy(&p.payload).into_owned();
            self.dirty = true;
        }
    }

    /// Drops the messages to `from` that its receipt names; returns their
    /// ids (a receipt from anyone else acknowledges nothing).
    pub fn acknowledge(&mut self, from: &str, ids: &[String]) -> Vec<String> {
        let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut done = Vec::new();
        self.pending.retain(|p| {
            let hit = p.peer == from && ids.contains(p.id.as_str());
            if hit {
                done.push(p.id.clone());
            }
            !hit
        });
        if !done.is_empty() {
            self.dirty = true;
        }
        done
    }

    fn backoff(&self, attempts: u32) -> u64 {
        let s = &self.settings;
        s.resend_after
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
            .min(s.resend_max.max(s.resend_after))
    }

    fn resend(&mut self, now: u64, only_due: bool) -> Vec<Publication> {
        let mut out = Vec::new();
        for i in 0..self.pending.len() {
            if (only_due && self.pending[i].next_at > now) || !self.pending[i].is_signed() {
                continue;
            }
            let attempts = self.pending[i].attempts.saturating_add(1);
            let wait = self.backoff(attempts);
            let p = &mut self.pending[i];
            p.attempts = attempts;
            p.next_at = now.saturating_add(wait);
            out.push(p.publication());
        }
        if !out.is_empty() {
            self.dirty = true;
        }
        out
    }

    /// The messages whose backoff ran out, to publish again.
    pub fn due(&mut self, now: u64) -> Vec<Publication> {
        self.resend(now, true)
    }

    /// Every waiting message to `peer`, oldest first, as it was sent (after a direct link to
    /// it dropped: what the link may have lost goes again through the broker). Changes no
    /// backoff: the recipient drops what it already has as a replay and acknowledges it again.
    pub fn waiting_for(&self, peer: &str) -> Vec<Publication> {
        self.pending
            .iter()
            .filter(|p| p.peer == peer && p.is_signed())
            .map(Pending::publication)
            .collect()
    }

    /// Every waiting message, to publish again after a reconnection.
    pub fn resend_all(&mut self, now: u64) -> Vec<Publication> {
        self.resend(now, false)
    }

    /// Drops and returns the messages older than the expiry, as
    /// (id, peer, reason).
    pub fn expire(&mut self, now: u64) -> Vec<(String, String, String)> {
        let expiry = self.settings.expiry;
        let mut gone = Vec::new();
        self.pending.retain(|p| {
            let old = now.saturating_sub(p.first_sent) >= expiry;
            if old {
                gone.push((
                    p.id.clone(),
                    p.peer.clone(),
                    format!(
                        "no receipt within {expiry} s ({} sends); the peer may be away or \
                         no longer accept it",
                        p.attempts
                    ),
                ));
            }
            !old
        });
        if !gone.is_empty() {
            self.dirty = true;
        }
        gone
    }

    /// The waiting messages, oldest first.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// How many messages wait, per recipient, in recipient order.
    pub fn waiting_per_peer(&self) -> Vec<(String, usize)> {
        let mut m: std::collections::BTreeMap<&str, usize> = Default::default();
        for p in &self.pending {
            *m.entry(p.peer.as_str()).or_default() += 1;
        }
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The file's contents now.
    fn snapshot(&self) -> OutboxFile {
        OutboxFile {
            version: 1,
            messages: self
                .pending
                .iter()
                .filter(|p| p.is_signed())
                .cloned()
                .collect(),
        }
    }

    /// Writes the file (atomically, mode 0600) if anything changed, and returns once it is
    /// written (with any write handed over before).
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match &self.writer {
            Some(w) => {
                let submitted = if self.dirty {
                    w.submit(self.snapshot())
                } else {
                    Ok(())
                };
                self.dirty = false;
                let flushed = w.flush();
                submitted.and(flushed).map_err(|e| {
                    self.dirty = true;
                    std::io::Error::other(e)
                })
            }
            None => {
                if !self.dirty {
                    return Ok(());
                }
                let json = serde_json::to_vec(&self.snapshot()).map_err(std::io::Error::other)?;
                crate::fsutil::write_atomic(path, &json, true)?;
                self.dirty = false;
                Ok(())
            }
        }
    }

    /// Waits until the writes handed to the writer thread are done (nothing new is handed
    /// over): what a restart would read.
    pub fn written(&self) -> std::io::Result<()> {
        self.writer
            .as_ref()
            .map_or(Ok(()), |w| w.flush().map_err(std::io::Error::other))
    }

    /// Hands the file's contents, if anything changed, to the writer thread and returns at
    /// once (the delivery tick: the session's worker does not wait for the disk). The error
    /// is that of an earlier write, which failed: the state is handed over again next time.
    pub fn save_in_background(&mut self) -> std::io::Result<()> {
        if self.writer.is_none() {
            return self.save();
        }
        if !self.dirty {
            return Ok(());
        }
        let snapshot = self.snapshot();
        self.dirty = false;
        let submitted = self.writer.as_ref().map_or(Ok(()), |w| w.submit(snapshot));
        submitted.map_err(|e| {
            self.dirty = true;
            std::io::Error::other(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn publication(n: u8) -> Publication {
        Publication {
            topic: format!("canvasl/peers/{}/messages", id(200)),
            payload: format!("{{\"id\":\"{}\"}}", id(n)).into_bytes(),
            retain: false,
            qos: 1,
            event_id: id(n),
        }
    }

    fn settings() -> OutboxSettings {
        OutboxSettings {
            expiry: 100,
            resend_after: 10,
            resend_max: 25,
            capacity: 3,
        }
    }

    #[test]
    fn resends_back_off_until_a_receipt_or_the_expiry() {
        let mut o = Outbox::in_memory(settings());
        let bob = id(200);
        o.add(&publication(1), &bob, 1_000);
        o.add(&publication(2), &bob, 1_005);
        assert!(o.due(1_009).is_empty());
        let r = o.due(1_010);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].payload, publication(1).payload);
        // Second resend of message 1 after 20 s, then capped at 25 s.
        assert!(o.due(1_029).iter().all(|p| p.event_id != id(1)));
        assert_eq!(
            o.due(1_030).first().map(|p| p.event_id.clone()),
            Some(id(1))
        );
        assert_eq!(o.pending()[0].next_at, 1_055);
        // A reconnect resends everything at once.
        assert_eq!(o.resend_all(1_031).len(), 2);
        // A receipt from someone else acknowledges nothing.
        assert!(o.acknowledge(&id(201), &[id(1)]).is_empty());
        assert_eq!(o.acknowledge(&bob, &[id(1), id(9)]), vec![id(1)]);
        let failed = o.expire(1_105);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, id(2));
        assert!(failed[0].2.contains("no receipt within 100 s"));
        assert!(o.pending().is_empty());
    }

    #[test]
    fn a_reserved_message_waits_unsent_until_it_is_signed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        let (mut o, _) = Outbox::open(&path, settings(), 1_000);
        let bob = id(200);
        let p = publication(1);
        o.reserve(&p.event_id, &bob, &p.topic, 1_000);
        // Shown and counted at once, but never sent, resent or saved without its signature.
        assert_eq!(o.pending().len(), 1);
        assert!(!o.pending()[0].is_signed());
        assert!(o.resend_all(1_000).is_empty());
        assert!(o.due(2_000).is_empty());
        assert!(o.waiting_for(&bob).is_empty());
        o.save().unwrap();
        assert_eq!(Outbox::open(&path, settings(), 1_000).0.pending().len(), 0);
        // Signed: it is the message from then on.
        o.fill(&p);
        assert!(o.pending()[0].is_signed());
        assert_eq!(o.waiting_for(&bob), vec![p.clone()]);
        assert_eq!(o.due(1_010), vec![p]);
        o.save().unwrap();
        assert_eq!(Outbox::open(&path, settings(), 1_000).0.pending().len(), 1);
    }

    #[test]
    fn the_outbox_survives_a_restart_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        let (mut o, warn) = Outbox::open(&path, settings(), 1);
        assert!(warn.is_none());
        for n in 1..=3 {
            o.add(&publication(n), &id(200), 1);
        }
        assert!(!o.has_room());
        assert_eq!(o.waiting_per_peer(), vec![(id(200), 3)]);
        o.save().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = Outbox::open(&path, settings(), 2);
        assert_eq!(again.pending(), o.pending());
        std::fs::write(&path, b"not json").unwrap();
        let (damaged, warn) = Outbox::open(&path, settings(), 7);
        assert!(damaged.pending().is_empty());
        assert!(warn.unwrap().contains("outbox.json.damaged-7"));
    }
}
