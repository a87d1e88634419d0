//! The content of sync events (JSON, version 1): building and strict parsing. See the
//! [module documentation](super) for the schemas.

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::share_id::ShareId;
use crate::identity::event::SignedEvent;

/// The first bytes of every automerge chunk (saved document or change).
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Checks that `data` is a sequence of whole automerge chunks (magic bytes, known type, length
/// within the data, checksum where it covers the bytes as sent), so that garbage is refused
/// instead of being silently skipped by automerge's incremental loading. Does not decode the
/// chunks (automerge does that when they are applied).
pub(crate) fn check_automerge_chunks(data: &[u8]) -> Result<(), String> {
    if data.is_empty() {
        return Err("no data".into());
    }
    let mut rest = data;
    let mut n = 0usize;
    while !rest.is_empty() {
        if rest.len() < 9 || rest[..4] != AUTOMERGE_MAGIC {
            return Err(format!("chunk {n} is not automerge data"));
        }
        let checksum = &rest[4..8];
        let typ = rest[8];
        if typ > 3 {
            return Err(format!("chunk {n} has unknown type {typ}"));
        }
        // Unsigned LEB128 length.
        let mut len: u64 = 0;
        let mut i = 9;
        let mut shift = 0u32;
        loop {
            let Some(&b) = rest.get(i) else {
                return Err(format!("chunk {n} is truncated"));
            };
            if shift > 56 {
                return Err(format!("chunk {n} has a bad length"));
            }
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| i.checked_add(l))
            .filter(|&e| e <= rest.len())
            .ok_or_else(|| format!("chunk {n} is truncated"))?;
        // Compressed changes (type 2) carry the checksum of their uncompressed form.
        if typ != 2 {
            let digest: [u8; 32] = Sha256::digest(&rest[8..end]).into();
            if digest[..4] != *checksum {
                return Err(format!("chunk {n} has a bad checksum"));
            }
        }
        rest = &rest[end..];
        n += 1;
    }
    Ok(())
}

/// The content schema version.
pub const CONTENT_VERSION: u64 = 1;

/// Which payload a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Of {
    Change,
    Response,
}

impl Of {
    fn as_str(self) -> &'static str {
        match self {
            Of::Change => "change",
            Of::Response => "response",
        }
    }
}

/// One parsed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Automerge bytes (`full`: a whole saved document).
    Data { of: Of, full: bool, data: Vec<u8> },
    /// The sender's heads and other changes it has (32 bytes each).
    Request { heads: Vec<u8>, have: Vec<u8> },
    /// One piece of a `Data` payload too large for one event.
    Chunk(Chunk),
    /// A membership document signed by the share's origin (see `super::members`).
    Members(Box<SignedEvent>),
}

/// A chunk of a large payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) of: Of,
    pub(crate) full: bool,
    /// Hex of the first 16 bytes of the SHA-256 of the whole payload.
    pub(crate) id: String,
    pub(crate) index: u32,
    pub(crate) count: u32,
    /// Length of the whole payload.
    pub(crate) size: u64,
    pub(crate) data: Vec<u8>,
}

/// A parsed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    pub(crate) share: ShareId,
    pub(crate) op: Op,
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseLimits {
    /// Largest whole payload (a chunk's declared `size`).
    pub(crate) max_payload: usize,
    /// Most chunks in one payload.
    pub(crate) max_chunks: u32,
    /// Most hashes in `heads` + `have`.
    pub(crate) max_hashes: usize,
}

/// A refusal: stable reason, detail.
pub(crate) type Refusal = (&'static str, String);

/// The JSON form (all fields optional; `parse` checks which ones each op needs).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Raw {
    v: Option<u64>,
    share: Option<String>,
    op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heads: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    have: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<SignedEvent>,
}

fn raw(share: &ShareId, op: &str) -> Raw {
    Raw {
        v: Some(CONTENT_VERSION),
        share: Some(share.url()),
        op: Some(op.to_string()),
        ..Raw::default()
    }
}

fn to_json(r: &Raw) -> String {
    // Strings, integers and booleans always serialize.
    serde_json::to_string(r).unwrap_or_default()
}

/// `{"v":1,"share":..,"op":"change"|"response","full":..,"data":..}`.
pub(crate) fn encode_data(share: &ShareId, of: Of, full: bool, data: &[u8]) -> String {
    let mut r = raw(share, of.as_str());
    r.full = Some(full);
    r.data = Some(Base64::encode_string(data));
    to_json(&r)
}

/// `{"v":1,"share":..,"op":"members","members":<signed event>}`.
pub(crate) fn encode_members(share: &ShareId, event: &SignedEvent) -> String {
    let mut r = raw(share, "members");
    r.members = Some(event.clone());
    to_json(&r)
}

/// `{"v":1,"share":..,"op":"request","heads":..,"have":..}` (`have` left out when empty).
pub(crate) fn encode_request(share: &ShareId, heads: &[u8], have: &[u8]) -> String {
    let mut r = raw(share, "request");
    r.heads = Some(Base64::encode_string(heads));
    if !have.is_empty() {
        r.have = Some(Base64::encode_string(have));
    }
    to_json(&r)
}

/// `{"v":1,"share":..,"op":"chunk","of":..,"full":..,"id":..,"index":..,"count":..,"size":..,
/// "data":..}`.
pub(crate) fn encode_chunk(share: &ShareId, c: &Chunk) -> String {
    encode_chunk_b64(share, c, &Base64::encode_string(&c.data))
}

/// [`encode_chunk`] with the data already in Base64 (used to size chunks).
pub(crate) fn encode_chunk_b64(share: &ShareId, c: &Chunk, data_b64: &str) -> String {
    let mut r = raw(share, "chunk");
    r.of = Some(c.of.as_str().to_string());
    r.full = Some(c.full);
    r.id = Some(c.id.clone());
    r.index = Some(u64::from(c.index));
    r.count = Some(u64::from(c.count));
    r.size = Some(c.size);
    r.data = Some(data_b64.to_string());
    to_json(&r)
}

/// The length of `s` once written as a JSON string in the signed event (without the quotes),
/// counted conservatively: `"` and `\` take two bytes, other control characters six.
pub fn escaped_len(s: &str) -> usize {
    s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

fn b64(field: &'static str, s: Option<String>, max: usize) -> Result<Vec<u8>, Refusal> {
    let s = s.ok_or(("malformed", format!("`{field}` is missing")))?;
    // Base64 of max bytes is at most 4 * ceil(max / 3) characters.
    if s.len() / 4 > max / 3 + 1 {
        return Err(("too-large", format!("`{field}` is {} characters", s.len())));
    }
    Base64::decode_vec(&s).map_err(|_| ("bad-base64", format!("`{field}` is not Base64")))
}

fn need<T>(field: &'static str, v: Option<T>) -> Result<T, Refusal> {
    v.ok_or(("malformed", format!("`{field}` is missing")))
}

/// Parses and checks one content. Never panics; a refusal says why.
pub(crate) fn parse(content: &str, limits: &ParseLimits) -> Result<Content, Refusal> {
    let r: Raw = serde_json::from_str(content)
        .map_err(|e| ("malformed", format!("not a sync content: {e}")))?;
    match r.v {
        Some(CONTENT_VERSION) => {}
        Some(v) => return Err(("version", format!("content version {v}, expected 1"))),
        None => return Err(("malformed", "`v` is missing".into())),
    }
    let url = need("share", r.share)?;
    let share = ShareId::parse(&url).map_err(|e| (e.reason(), e.to_string()))?;
    let op = need("op", r.op)?;
    let op = match op.as_str() {
        "change" | "response" => {
            let of = if op == "change" {
                Of::Change
            } else {
                Of::Response
            };
            let data = b64("data", r.data, limits.max_payload)?;
            check_automerge_chunks(&data).map_err(|e| ("bad-change", format!("`data`: {e}")))?;
            Op::Data {
                of,
                full: r.full.unwrap_or(false),
                data,
            }
        }
        "request" => {
            let max = limits.max_hashes * 32;
            let heads = b64("heads", r.heads, max)?;
            let have = match r.have {
                Some(h) => b64("have", Some(h), max)?,
                None => Vec::new(),
            };
            if !heads.len().is_multiple_of(32) || !have.len().is_multiple_of(32) {
                return Err(("bad-heads", "heads are not 32-byte hashes".into()));
            }
            if heads.len() + have.len() > max {
                return Err(("too-large", "too many heads".into()));
            }
            Op::Request { heads, have }
        }
        "chunk" => {
            let of = match need("of", r.of)?.as_str() {
                "change" => Of::Change,
                "response" => Of::Response,
                other => {
                    return Err((
                        "malformed",
                        format!("`of` is {other:?}, expected change or response"),
                    ))
                }
            };
            let id = need("id", r.id)?;
            if id.is_empty()
                || id.len() > 64
                || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err((
                    "malformed",
                    "`id` must be 1 to 64 lowercase hex digits".into(),
                ));
            }
            let count = need("count", r.count)?;
            let index = need("index", r.index)?;
            let size = need("size", r.size)?;
            if count == 0 || count > u64::from(limits.max_chunks) {
                return Err((
                    "chunk-mismatch",
                    format!("`count` is {count}, allowed 1 to {}", limits.max_chunks),
                ));
            }
            if index >= count {
                return Err(("chunk-mismatch", format!("index {index} of {count} chunks")));
            }
            if size > limits.max_payload as u64 {
                return Err((
                    "too-large",
                    format!(
                        "a payload of {size} bytes, above the limit of {}",
                        limits.max_payload
                    ),
                ));
            }
            if count > size.max(1) {
                return Err(("chunk-mismatch", format!("{count} chunks for {size} bytes")));
            }
            let data = b64("data", r.data, limits.max_payload)?;
            if data.len() as u64 > size {
                return Err((
                    "chunk-mismatch",
                    format!("a chunk of {} bytes in a payload of {size}", data.len()),
                ));
            }
            Op::Chunk(Chunk {
                of,
                full: r.full.unwrap_or(false),
                id,
                index: index as u32,
                count: count as u32,
                size,
                data,
            })
        }
        "members" => Op::Members(Box::new(need("members", r.members)?)),
        other => return Err(("malformed", format!("unknown op {other:?}"))),
    };
    Ok(Content { share, op })
}
