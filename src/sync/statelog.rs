//! The merge state saved by the change, not by the document: a log beside each state file.
//!
//! `state_dir/ORIGIN/NAME.automerge.log` holds records appended after the state file was last
//! written whole. Each record carries the changes applied since the previous one and the
//! [`StateMeta`] after them, so loading is: the state file, then every record of its
//! generation, in order. Writing a share's state after an edit appends one record (a few
//! hundred bytes and one `fsync`) instead of rewriting megabytes.
//!
//! * Record: `len` (u32 LE, of the body), the first 8 bytes of the body's SHA-256, the body:
//!   a u32 LE header length, a JSON header (`gen`, `heads`, `file_sha256`, `pending_sha256`),
//!   then the automerge change bytes.
//! * Generation: each whole write of the state file picks a new random `gen` (in its header)
//!   and removes the log; records of another generation (a log left by a crash between the
//!   two, or beside a rebuilt state) are ignored.
//! * Torn tail: reading stops at the first record that is incomplete or fails its check (a
//!   crash during an append); what came before is used, and the next write is a whole one
//!   (which removes the log), so nothing is ever appended after damage.
//! * Compaction: once the log exceeds [`LOG_SLACK`] plus a quarter of the state, or after a
//!   failed append, the state is written whole again.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};

use super::action::SyncError;
use super::store::{sha256, StateMeta};

/// The log may grow to this plus a quarter of the state before it is compacted.
pub(crate) const LOG_SLACK: u64 = 256 * 1024;

/// Largest record header.
const MAX_RECORD_HEADER: usize = 64 * 1024;

/// Where a state stands on disk (kept in memory with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Persisted {
    /// Generation of the state file on disk.
    pub(crate) gen: u64,
    /// Bytes of the base the state file on disk holds.
    pub(crate) base_len: usize,
    /// Bytes of the tail on disk (in the state file and the log together).
    pub(crate) tail_on_disk: usize,
    /// Bytes of the log.
    pub(crate) log_bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct RecordHeader {
    gen: u64,
    heads: String,
    file_sha256: String,
    pending_sha256: Option<String>,
}

/// A new generation number.
pub(crate) fn new_gen() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // Never the same as a previous one in practice: the clock in nanoseconds.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        return t;
    }
    u64::from_le_bytes(b)
}

/// One record (see the module documentation).
pub(crate) fn encode_record(gen: u64, meta: &StateMeta, changes: &[u8]) -> Vec<u8> {
    let header = RecordHeader {
        gen,
        heads: Base64::encode_string(&meta.heads),
        file_sha256: hex::encode(meta.file_sha256),
        pending_sha256: meta.pending_sha256.map(hex::encode),
    };
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut body = Vec::with_capacity(4 + header.len() + changes.len());
    body.extend_from_slice(&(header.len() as u32).to_le_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(changes);
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&sha256(&body)[..8]);
    out.extend_from_slice(&body);
    out
}

/// What a log holds for generation `gen`: each record's meta and changes, in order, and
/// whether the whole log was read cleanly (false: a torn or damaged tail, or records of another
/// generation; the next write must then be a whole one).
pub(crate) fn decode_log(bytes: &[u8], gen: u64) -> (Vec<(StateMeta, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(record) = decode_one(&mut rest) else {
            return (out, false);
        };
        let (g, meta, changes) = record;
        if g != gen {
            return (out, false);
        }
        out.push((meta, changes));
    }
    (out, true)
}

fn decode_one(rest: &mut &[u8]) -> Option<(u64, StateMeta, Vec<u8>)> {
    let (len, r) = rest.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    let (check, r) = r.split_at_checked(8)?;
    let (body, r) = r.split_at_checked(len)?;
    if sha256(body)[..8] != *check {
        return None;
    }
    let (hlen, b) = body.split_at_checked(4)?;
    let hlen = u32::from_le_bytes(hlen.try_into().ok()?) as usize;
    if hlen > MAX_RECORD_HEADER {
        return None;
    }
    let (header, changes) = b.split_at_checked(hlen)?;
    let h: RecordHeader = serde_json::from_slice(header).ok()?;
    let hash = |s: &str| -> Option<[u8; 32]> { hex::decode(s).ok()?.try_into().ok() };
    let heads = Base64::decode_vec(&h.heads).ok()?;
    if !heads.len().is_multiple_of(32) {
        return None;
    }
    let meta = StateMeta {
        heads,
        file_sha256: hash(&h.file_sha256)?,
        pending_sha256: match h.pending_sha256 {
            Some(p) => Some(hash(&p)?),
            None => None,
        },
    };
    *rest = r;
    Some((h.gen, meta, changes.to_vec()))
}

/// Appends `record` to the log at `path` (created 0600) and makes it durable.
pub(crate) fn append(path: &Path, record: &[u8]) -> Result<(), SyncError> {
    let mut opts = fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(path)?;
        f.write_all(record)?;
        f.sync_data()
    })();
    result.map_err(|e| SyncError::io("append to", path, e))
}

/// Removes the log at `path` (nothing if there is none).
pub(crate) fn remove(path: &Path) -> Result<(), SyncError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SyncError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u8) -> StateMeta {
        StateMeta {
            heads: vec![n; 32],
            file_sha256: [n; 32],
            pending_sha256: n.is_multiple_of(2).then_some([n; 32]),
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let mut log = Vec::new();
        for n in 1..=3u8 {
            log.extend(encode_record(7, &meta(n), &[n; 10]));
        }
        let (records, clean) = decode_log(&log, 7);
        assert!(clean);
        assert_eq!(records.len(), 3);
        assert_eq!(records[2], (meta(3), vec![3; 10]));
        // Every cut inside the last record leaves the first two, and says so.
        let two =
            encode_record(7, &meta(1), &[1; 10]).len() + encode_record(7, &meta(2), &[2; 10]).len();
        for cut in two + 1..log.len() {
            let (records, clean) = decode_log(&log[..cut], 7);
            assert_eq!((records.len(), clean), (2, false), "cut at {cut}");
        }
        // A flipped byte fails the check.
        let mut bad = log.clone();
        bad[two + 20] ^= 1;
        assert_eq!(decode_log(&bad, 7).0.len(), 2);
        // Another generation is ignored.
        assert_eq!(decode_log(&log, 8), (Vec::new(), false));
    }
}
