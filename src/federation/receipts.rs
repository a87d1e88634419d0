//! Delivery receipts, the recipient's side.
//!
//! A peer that accepts a peer message (kind 4770) answers its sender with a
//! receipt (kind [`KIND_RECEIPT`]): a signed event on the sender's messages
//! topic whose content is NIP-44 encrypted to the sender, so the broker and
//! other peers learn nothing from it but its size. The plaintext is
//!
//! ```json
//! {"ack":["<event id>", ...]}
//! ```
//!
//! with 1 to [`MAX_ACKS`] ids of peer messages the sender sent us. The
//! sender drops them from its [outbox](super::outbox) and reports them
//! delivered; receipts are never answered with receipts.
//!
//! Why receipts are not sent at once: accepted ids are gathered and, on the
//! next [`Node::delivery_tick`](super::Node::delivery_tick) (every half
//! second), first written to the [`ReceivedLog`] file and only then
//! acknowledged, one receipt per sender for the whole batch. A receipt
//! therefore always means "accepted and remembered": a crash cannot make
//! the sender stop resending a message we would not recognise after a
//! restart.
//!
//! Duplicates: the sender resends the *same* event (same id) until a
//! receipt arrives. A resend of a message accepted in this run is dropped
//! by the replay memory (`replay`); one accepted before a restart is found
//! in the [`ReceivedLog`] and dropped as `replay` too. Either way no handler
//! sees it twice, and the recipient acknowledges it again, so a lost
//! receipt only costs one more resend.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::protocol::{is_peer_id, shorten};

/// Most event ids one receipt acknowledges (larger batches are split).
pub const MAX_ACKS: usize = 256;

/// Bytes of receipt event around its encrypted content: id, pubkey, sig,
/// tags, kind, created_at and JSON punctuation, with room to spare.
const RECEIPT_OVERHEAD: usize = 700;

/// Bytes one acknowledged id adds to the plaintext (`"<64 hex>",`).
const ACK_BYTES: usize = 67;

#[derive(Serialize, Deserialize)]
struct Content {
    ack: Vec<String>,
}

/// The plaintext of a receipt for `ids`.
pub fn content(ids: &[String]) -> String {
    serde_json::to_string(&Content { ack: ids.to_vec() }).unwrap_or_default()
}

/// Parses a receipt's plaintext; the error says what is wrong with it.
pub fn parse_content(plain: &str) -> Result<Vec<String>, String> {
    let c: Content =
        serde_json::from_str(plain).map_err(|e| shorten(format!("receipt content: {e}")))?;
    if c.ack.is_empty() || c.ack.len() > MAX_ACKS {
        return Err(format!(
            "receipt content: it acknowledges {} ids; 1 to {MAX_ACKS} are allowed",
            c.ack.len()
        ));
    }
    if let Some(bad) = c.ack.iter().find(|id| !is_peer_id(id)) {
        return Err(shorten(format!(
            "receipt content: `{bad}` is not an event id (64 lowercase hex)"
        )));
    }
    Ok(c.ack)
}

/// How many ids fit in one receipt under the event size limit `max_bytes`
/// (NIP-44 Base64 grows the plaintext by about 4/3).
pub fn acks_per_receipt(max_bytes: usize) -> usize {
    let room = max_bytes.saturating_sub(RECEIPT_OVERHEAD) * 3 / 4;
    (room / ACK_BYTES).clamp(1, MAX_ACKS)
}

/// Ids accepted since the last receipts went out, per sender.
#[derive(Debug, Default)]
pub struct PendingReceipts {
    by_peer: BTreeMap<String, Vec<String>>,
}

impl PendingReceipts {
    /// Notes that `id` from `peer` is to be acknowledged.
    pub fn add(&mut self, peer: &str, id: &str) {
        let ids = self.by_peer.entry(peer.to_string()).or_default();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// Takes everything waiting, as (peer, ids) in peer order.
    pub fn take(&mut self) -> Vec<(String, Vec<String>)> {
        std::mem::take(&mut self.by_peer).into_iter().collect()
    }
}

/// One remembered message: who sent it and its `created_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Received {
    id: String,
    from: String,
    created_at: u64,
}

#[derive(Serialize, Deserialize)]
struct ReceivedFile {
    version: u32,
    received: Vec<Received>,
}

/// The ids of peer messages accepted recently, kept in a file so that a
/// resend arriving after a restart is still recognised (and acknowledged)
/// instead of reaching the handlers a second time.
///
/// Entries older than the acceptance window (maximum age plus clock skew)
/// are forgotten: the pipeline refuses such a message as `too-old` anyway.
#[derive(Debug)]
pub struct ReceivedLog {
    path: Option<PathBuf>,
    by_id: HashMap<String, Received>,
    /// Ids in the order they were recorded (may hold ids pruned since), so
    /// the oldest is found without a scan when the log is full.
    order: VecDeque<String>,
    capacity: usize,
    dirty: bool,
}

impl ReceivedLog {
    /// An empty log kept in memory only.
    pub fn in_memory(capacity: usize) -> ReceivedLog {
        ReceivedLog {
            path: None,
            by_id: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            dirty: false,
        }
    }

    /// The log in `path` (a missing file is an empty log). A damaged file
    /// is renamed aside (`NAME.damaged-UNIXTIME`) and the log starts empty;
    /// the returned warning says so.
    pub fn open(path: &Path, capacity: usize, now: u64) -> (ReceivedLog, Option<String>) {
        let mut log = ReceivedLog::in_memory(capacity);
        log.path = Some(path.to_path_buf());
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (log, None),
            Err(e) => {
                return (
                    log,
                    Some(format!(
                        "cannot read {}: {e}; messages received before this start may be \
                         handled again if their senders resend them",
                        path.display()
                    )),
                )
            }
        };
        match serde_json::from_str::<ReceivedFile>(&text) {
            Ok(f) if f.version == 1 => {
                // The file is sorted by created_at: oldest first.
                for r in f.received {
                    if is_peer_id(&r.id) && is_peer_id(&r.from) {
                        log.record(&r.id.clone(), &r.from.clone(), r.created_at);
                    }
                }
                log.dirty = false;
                (log, None)
            }
            _ => {
                let aside = super::outbox::set_aside(path, now);
                log.dirty = true;
                (
                    log,
                    Some(format!(
                        "{} was damaged and was moved to {}; messages received before this \
                         start may be handled again if their senders resend them",
                        path.display(),
                        aside
                    )),
                )
            }
        }
    }

    /// The sender of the remembered message `id`.
    pub fn sender(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(|r| r.from.as_str())
    }

    /// Remembers that `id` from `from`, made at `created_at`, was accepted.
    /// At capacity the oldest entry is forgotten.
    pub fn record(&mut self, id: &str, from: &str, created_at: u64) {
        while self.by_id.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.by_id.remove(&oldest);
                }
                None => break,
            }
        }
        // Ids pruned meanwhile are still in `order`: drop them when it has
        // grown well past the log, so it stays bounded.
        if self.order.len() > 2 * self.capacity {
            let by_id = &self.by_id;
            self.order.retain(|i| by_id.contains_key(i));
        }
        self.order.push_back(id.to_string());
        self.by_id.insert(
            id.to_string(),
            Received {
                id: id.to_string(),
                from: from.to_string(),
                created_at,
            },
        );
        self.dirty = true;
    }

    /// Forgets entries made before `oldest`.
    pub fn prune(&mut self, oldest: u64) {
        let before = self.by_id.len();
        self.by_id.retain(|_, r| r.created_at >= oldest);
        if self.by_id.len() != before {
            self.dirty = true;
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Writes the file (atomically, mode 0600) if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut received: Vec<Received> = self.by_id.values().cloned().collect();
        received.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let json = serde_json::to_vec(&ReceivedFile {
            version: 1,
            received,
        })
        .map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(path, &json, true)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn content_round_trips_and_bad_content_is_refused() {
        let ids = vec![id(1), id(2)];
        assert_eq!(parse_content(&content(&ids)).unwrap(), ids);
        assert!(parse_content("{}").is_err());
        assert!(parse_content("{\"ack\":[]}").is_err());
        assert!(parse_content("{\"ack\":[\"xyz\"]}")
            .unwrap_err()
            .contains("xyz"));
        let many: Vec<String> = (0..=MAX_ACKS).map(|_| id(3)).collect();
        assert!(parse_content(&content(&many)).is_err());
        assert!(parse_content(&content(&ids).replace('{', "{\"later\":1,")).is_ok());
    }

    #[test]
    fn a_full_receipt_fits_the_size_limit() {
        assert_eq!(acks_per_receipt(65_536), MAX_ACKS);
        assert_eq!(acks_per_receipt(1024), 3);
        let n = acks_per_receipt(20_000);
        let plain = content(&vec![id(9); n]);
        // NIP-44 pads and Base64-encodes: about 4/3 plus padding.
        assert!(plain.len() * 4 / 3 + 64 + RECEIPT_OVERHEAD <= 20_000 + 200);
    }

    #[test]
    fn the_log_survives_a_restart_and_a_damaged_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received.json");
        let (mut log, warn) = ReceivedLog::open(&path, 10, 100);
        assert!(warn.is_none());
        log.record(&id(1), &id(7), 100);
        log.record(&id(2), &id(7), 200);
        log.save().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (mut again, _) = ReceivedLog::open(&path, 10, 300);
        assert_eq!(again.sender(&id(1)), Some(id(7).as_str()));
        again.prune(150);
        assert_eq!(again.sender(&id(1)), None);
        assert_eq!(again.len(), 1);
        std::fs::write(&path, b"{\"version\":1,\"rec").unwrap();
        let (damaged, warn) = ReceivedLog::open(&path, 10, 400);
        assert!(damaged.is_empty());
        assert!(warn.unwrap().contains("damaged"));
        assert!(dir.path().join("received.json.damaged-400").exists());
    }

    #[test]
    fn the_log_is_bounded() {
        let mut log = ReceivedLog::in_memory(2);
        log.record(&id(1), &id(7), 1);
        log.record(&id(2), &id(7), 2);
        log.record(&id(3), &id(7), 3);
        assert_eq!(log.len(), 2);
        assert_eq!(log.sender(&id(1)), None);
    }
}
