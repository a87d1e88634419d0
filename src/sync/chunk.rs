//! Payloads larger than one event: splitting them into chunks, and putting them back together
//! with bounded memory.

use std::collections::{HashMap, HashSet, VecDeque};

use sha2::{Digest, Sha256};

use super::share_id::ShareId;
use super::wire::{
    check_automerge_chunks, encode_chunk, encode_chunk_b64, encode_data, escaped_len, Chunk, Of,
};

/// Why a payload cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// The content budget cannot hold even a small chunk.
    BudgetTooSmall { budget: usize, overhead: usize },
    /// More chunks than allowed.
    TooManyChunks { count: usize, max: u32 },
}

/// The chunk id of a payload: hex of the first 16 bytes of its SHA-256.
pub(crate) fn payload_id(data: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(data).into();
    hex::encode(&digest[..16])
}

/// The contents that carry `data` (one `change`/`response` if it fits in `budget` bytes once
/// JSON-escaped, chunks otherwise).
pub(crate) fn split(
    share: &ShareId,
    of: Of,
    full: bool,
    data: &[u8],
    budget: usize,
    max_chunks: u32,
) -> Result<Vec<String>, SplitError> {
    let whole = encode_data(share, of, full, data);
    if escaped_len(&whole) <= budget {
        return Ok(vec![whole]);
    }
    let id = payload_id(data);
    // The wrapper with the widest possible numbers, empty data.
    let probe = Chunk {
        of,
        full,
        id: id.clone(),
        index: u32::MAX,
        count: u32::MAX,
        size: data.len() as u64,
        data: Vec::new(),
    };
    let overhead = escaped_len(&encode_chunk_b64(share, &probe, ""));
    // Base64 needs no escaping: each 4 characters carry 3 bytes.
    let per_chunk = budget.saturating_sub(overhead) / 4 * 3;
    if per_chunk < 48 {
        return Err(SplitError::BudgetTooSmall { budget, overhead });
    }
    let count = data.len().div_ceil(per_chunk);
    if count > max_chunks as usize {
        return Err(SplitError::TooManyChunks {
            count,
            max: max_chunks,
        });
    }
    Ok(data
        .chunks(per_chunk)
        .enumerate()
        .map(|(i, piece)| {
            encode_chunk(
                share,
                &Chunk {
                    of,
                    full,
                    id: id.clone(),
                    index: i as u32,
                    count: count as u32,
                    size: data.len() as u64,
                    data: piece.to_vec(),
                },
            )
        })
        .collect())
}

/// Limits of the [`Reassembler`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReassemblyLimits {
    /// Most bytes held by all unfinished payloads together (each reserves its declared size).
    pub(crate) max_buffered: usize,
    /// Most unfinished payloads.
    pub(crate) max_transfers: usize,
    /// Seconds after its first chunk at which an unfinished payload is dropped.
    pub(crate) max_age_secs: u64,
}

/// What one chunk did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChunkOutcome {
    /// Stored; more chunks needed.
    Pending,
    /// A chunk already held, or of a payload already completed: ignored.
    Duplicate,
    /// The last chunk: the whole payload.
    Complete {
        share: ShareId,
        of: Of,
        full: bool,
        data: Vec<u8>,
    },
    /// Refused (reason, detail); the payload it belonged to is dropped.
    Refused(&'static str, String),
}

type Key = (String, String, String); // sender, share url, id

#[derive(Debug)]
struct Transfer {
    share: ShareId,
    of: Of,
    full: bool,
    count: u32,
    size: u64,
    parts: Vec<Option<Vec<u8>>>,
    received: u32,
    bytes: u64,
    started: u64,
    /// Bytes reserved against the buffer limit: the declared size plus the chunk table.
    reserved: u64,
}

/// What a payload of `size` bytes in `count` chunks reserves.
fn reservation(size: u64, count: u32) -> u64 {
    size.saturating_add(u64::from(count) * 32)
}

/// Puts chunked payloads back together, per sender and payload id. Memory is bounded: every
/// unfinished payload reserves its declared size (plus its chunk table) against `max_buffered`, their number is capped,
/// and they are dropped `max_age_secs` after their first chunk. Recently completed payloads are
/// remembered so that late duplicate chunks are ignored.
#[derive(Debug)]
pub(crate) struct Reassembler {
    limits: ReassemblyLimits,
    transfers: HashMap<Key, Transfer>,
    reserved: u64,
    done: VecDeque<(Key, u64)>,
    done_keys: HashSet<Key>,
}

/// How many completed payloads are remembered.
const DONE_MEMORY: usize = 4096;

impl Reassembler {
    pub(crate) fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            transfers: HashMap::new(),
            reserved: 0,
            done: VecDeque::new(),
            done_keys: HashSet::new(),
        }
    }

    /// Bytes reserved by unfinished payloads.
    pub(crate) fn buffered(&self) -> u64 {
        self.reserved
    }

    /// Unfinished payloads.
    pub(crate) fn pending(&self) -> usize {
        self.transfers.len()
    }

    /// Drops payloads older than the age limit; returns a refusal for each.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<(&'static str, String)> {
        let max_age = self.limits.max_age_secs;
        let old: Vec<Key> = self
            .transfers
            .iter()
            .filter(|(_, t)| now.saturating_sub(t.started) > max_age)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in old {
            if let Some(t) = self.remove(&k) {
                out.push((
                    "chunk-expired",
                    format!(
                        "{} from {}: {} of {} chunks after {} s",
                        t.share,
                        short(&k.0),
                        t.received,
                        t.count,
                        max_age
                    ),
                ));
            }
        }
        while let Some((_, at)) = self.done.front() {
            if now.saturating_sub(*at) > max_age {
                if let Some((k, _)) = self.done.pop_front() {
                    self.done_keys.remove(&k);
                }
            } else {
                break;
            }
        }
        out
    }

    fn remove(&mut self, k: &Key) -> Option<Transfer> {
        let t = self.transfers.remove(k)?;
        self.reserved = self.reserved.saturating_sub(t.reserved);
        Some(t)
    }

    /// Adds one chunk from `sender` for `share`.
    pub(crate) fn add(
        &mut self,
        sender: &str,
        share: &ShareId,
        chunk: Chunk,
        now: u64,
    ) -> ChunkOutcome {
        let key: Key = (sender.to_string(), share.url(), chunk.id.clone());
        if self.done_keys.contains(&key) {
            return ChunkOutcome::Duplicate;
        }
        if let Some(t) = self.transfers.get(&key) {
            if t.of != chunk.of
                || t.full != chunk.full
                || t.count != chunk.count
                || t.size != chunk.size
            {
                let detail = format!(
                    "{share} from {}: chunk {} says {} chunks of {} bytes, earlier ones {} of {}",
                    short(sender),
                    chunk.index,
                    chunk.count,
                    chunk.size,
                    t.count,
                    t.size
                );
                self.remove(&key);
                return ChunkOutcome::Refused("chunk-mismatch", detail);
            }
        } else {
            let need = reservation(chunk.size, chunk.count);
            if self.transfers.len() >= self.limits.max_transfers
                || self.reserved.saturating_add(need) > self.limits.max_buffered as u64
            {
                return ChunkOutcome::Refused(
                    "chunk-overflow",
                    format!(
                        "{share} from {}: {} bytes would exceed the reassembly buffer \
                         ({} of {} bytes in {} payloads)",
                        short(sender),
                        chunk.size,
                        self.reserved,
                        self.limits.max_buffered,
                        self.transfers.len()
                    ),
                );
            }
            self.reserved += need;
            self.transfers.insert(
                key.clone(),
                Transfer {
                    share: share.clone(),
                    of: chunk.of,
                    full: chunk.full,
                    count: chunk.count,
                    size: chunk.size,
                    parts: vec![None; chunk.count as usize],
                    received: 0,
                    bytes: 0,
                    started: now,
                    reserved: need,
                },
            );
        }
        let Some(t) = self.transfers.get_mut(&key) else {
            return ChunkOutcome::Pending;
        };
        let slot = &mut t.parts[chunk.index as usize];
        if slot.is_some() {
            return ChunkOutcome::Duplicate;
        }
        let len = chunk.data.len() as u64;
        if t.bytes + len > t.size {
            let detail = format!(
                "{share} from {}: chunks exceed the declared {} bytes",
                short(sender),
                t.size
            );
            self.remove(&key);
            return ChunkOutcome::Refused("chunk-mismatch", detail);
        }
        *slot = Some(chunk.data);
        t.received += 1;
        t.bytes += len;
        if t.received < t.count {
            return ChunkOutcome::Pending;
        }
        let Some(t) = self.remove(&key) else {
            return ChunkOutcome::Pending;
        };
        self.done.push_back((key.clone(), now));
        self.done_keys.insert(key.clone());
        if self.done.len() > DONE_MEMORY {
            if let Some((k, _)) = self.done.pop_front() {
                self.done_keys.remove(&k);
            }
        }
        let mut data = Vec::with_capacity(t.size as usize);
        for p in t.parts.into_iter().flatten() {
            data.extend_from_slice(&p);
        }
        if data.len() as u64 != t.size
            || payload_id(&data) != key.2
            || check_automerge_chunks(&data).is_err()
        {
            return ChunkOutcome::Refused(
                "chunk-corrupt",
                format!(
                    "{share} from {}: the reassembled payload does not match its id",
                    short(sender)
                ),
            );
        }
        ChunkOutcome::Complete {
            share: t.share,
            of: t.of,
            full: t.full,
            data,
        }
    }
}

fn short(peer: &str) -> &str {
    peer.get(..12).unwrap_or(peer)
}
