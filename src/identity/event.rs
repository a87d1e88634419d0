//! Nostr NIP-01 events: canonical serialisation, signing, and verification
//! of untrusted JSON.
//!
//! # Canonical serialisation
//!
//! The event id is the SHA-256 of the compact JSON array
//! `[0,<pubkey>,<created_at>,<kind>,<tags>,<content>]`, produced here by
//! `serde_json` (no whitespace, UTF-8). NIP-01 requires `\n`, `\"`, `\\`,
//! `\r`, `\t`, `\b` and `\f` escapes and every other character verbatim;
//! `serde_json` does exactly that, with one unavoidable difference: the
//! remaining control characters U+0000..U+001F (which JSON forbids raw)
//! are written as `\u00XX` with lowercase hex, the same as JavaScript's
//! `JSON.stringify` and go-nostr. `/`, DEL (U+007F), U+2028/U+2029 and all
//! non-ASCII characters (including non-BMP ones such as emoji) are written
//! verbatim as UTF-8, never as `\u` escapes.
//!
//! # Verifying
//!
//! [`verify_json`] checks, in this order: size, JSON syntax, shape and
//! types (exactly the seven NIP-01 fields, no more, no fewer, no
//! duplicates), lowercase hex of the right length, the id, and the BIP-340
//! signature. It never panics, whatever the input. Parsing a
//! [`SignedEvent`] with serde does **not** verify it; call
//! [`SignedEvent::verify`] for that.

use std::fmt;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{schnorr, Message, XOnlyPublicKey};
use serde::{Deserialize, Serialize};

use super::keys::{secp, verifier, Identity};

/// Default limit on the size of an event's JSON text: 256 KiB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The largest kind NIP-01 allows.
pub const MAX_KIND: u32 = 65_535;

/// A signed Nostr event (NIP-01). Field order is the NIP-01 wire order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedEvent {
    /// SHA-256 of the canonical serialisation, 64 lowercase hex chars.
    pub id: String,
    /// The signer's x-only public key (peer id), 64 lowercase hex chars.
    pub pubkey: String,
    /// Unix time in seconds.
    pub created_at: u64,
    /// Event kind, 0..=65535.
    pub kind: u32,
    /// Tags: arrays of strings.
    pub tags: Vec<Vec<String>>,
    /// Arbitrary text.
    pub content: String,
    /// BIP-340 Schnorr signature of `id`, 128 lowercase hex chars.
    pub sig: String,
}

/// Why an event was refused. [`VerifyError::reason`] gives a stable short
/// machine-readable name; `Display` gives a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The text is longer than the limit.
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The text is not JSON.
    MalformedJson(String),
    /// Valid JSON, but not an event object: a field is missing, unknown,
    /// repeated or of the wrong type, or a number is out of range.
    BadField(String),
    /// `id`, `pubkey` or `sig` is not lowercase hex of the right length.
    BadHex {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The `id` is not the hash of the event's contents.
    IdMismatch {
        /// The id the event claims.
        claimed: String,
        /// The id computed from its contents.
        computed: String,
    },
    /// The `pubkey` is not a point on the curve.
    BadPubkey,
    /// The signature does not verify against `pubkey` and `id`.
    BadSignature,
}

impl VerifyError {
    /// A stable, short, machine-readable name for the error:
    /// `too-large`, `malformed-json`, `bad-field`, `bad-hex`, `id-mismatch`,
    /// `bad-pubkey` or `bad-signature`.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::TooLarge { .. } => "too-large",
            VerifyError::MalformedJson(_) => "malformed-json",
            VerifyError::BadField(_) => "bad-field",
            VerifyError::BadHex { .. } => "bad-hex",
            VerifyError::IdMismatch { .. } => "id-mismatch",
            VerifyError::BadPubkey => "bad-pubkey",
            VerifyError::BadSignature => "bad-signature",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::TooLarge { size, limit } => {
                write!(f, "event is too large: {size} bytes, the limit is {limit}")
            }
            VerifyError::MalformedJson(m) => write!(f, "event is not valid JSON: {m}"),
            VerifyError::BadField(m) => write!(f, "event has a bad field: {m}"),
            VerifyError::BadHex { field, reason } => write!(f, "event field {field}: {reason}"),
            VerifyError::IdMismatch { claimed, computed } => write!(
                f,
                "event id {claimed} does not match its contents (computed {computed}); it was altered"
            ),
            VerifyError::BadPubkey => write!(f, "event pubkey is not a valid secp256k1 public key"),
            VerifyError::BadSignature => {
                write!(f, "event signature is invalid: not signed by its pubkey")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Serialises `[0,pubkey,created_at,kind,tags,content]` exactly as NIP-01
/// prescribes (see the module documentation for escaping). The SHA-256 of
/// this string is the event id.
pub fn canonical_json(
    pubkey: &str,
    created_at: u64,
    kind: u32,
    tags: &[Vec<String>],
    content: &str,
) -> String {
    let bytes = canonical_bytes(pubkey, created_at, kind, tags, content);
    // serde_json only ever writes valid UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

fn canonical_bytes(
    pubkey: &str,
    created_at: u64,
    kind: u32,
    tags: &[Vec<String>],
    content: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        100 + pubkey.len()
            + content.len()
            + tags.iter().flatten().map(|t| t.len() + 3).sum::<usize>(),
    );
    // Serialising strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &(0u8, pubkey, created_at, kind, tags, content));
    out
}

/// The event id (SHA-256 of the canonical serialisation) as raw bytes.
pub fn compute_id(
    pubkey: &str,
    created_at: u64,
    kind: u32,
    tags: &[Vec<String>],
    content: &str,
) -> [u8; 32] {
    sha256::Hash::hash(&canonical_bytes(pubkey, created_at, kind, tags, content)).to_byte_array()
}

/// Signs a new event as `identity`.
///
/// The signature is BIP-340 Schnorr over the 32-byte id, with fresh
/// auxiliary randomness from the OS (if the OS random source ever failed,
/// the all-zero auxiliary input is used, which BIP-340 permits: signing is
/// then deterministic but still secure).
pub fn sign(
    identity: &Identity,
    kind: u16,
    content: &str,
    tags: Vec<Vec<String>>,
    created_at: u64,
) -> SignedEvent {
    let pubkey = identity.peer_id();
    let id = compute_id(&pubkey, created_at, u32::from(kind), &tags, content);
    sign_with_id(identity, id, kind, content.to_string(), tags, created_at)
}

/// Signs an event whose id was computed before (see [`compute_id`]) with the same fields:
/// the costly part of [`sign`], which can then run on another thread than the one that
/// needs the id.
pub fn sign_with_id(
    identity: &Identity,
    id: [u8; 32],
    kind: u16,
    content: String,
    tags: Vec<Vec<String>>,
    created_at: u64,
) -> SignedEvent {
    let pubkey = identity.peer_id();
    let kind = u32::from(kind);
    let mut aux = [0u8; 32];
    if getrandom::getrandom(&mut aux).is_err() {
        aux = [0u8; 32];
    }
    let sig =
        secp().sign_schnorr_with_aux_rand(&Message::from_digest(id), identity.keypair(), &aux);
    SignedEvent {
        id: hex::encode(id),
        pubkey,
        created_at,
        kind,
        tags,
        content,
        sig: hex::encode(sig.serialize()),
    }
}

impl SignedEvent {
    /// The id these fields hash to (sha256 of the canonical serialization), whatever `id` says.
    pub fn computed_id(&self) -> [u8; 32] {
        compute_id(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        )
    }

    /// The event as compact NIP-01 JSON (fields in wire order).
    pub fn to_json(&self) -> String {
        // Serialising strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks an event already in memory: kind range, hex fields, id and
    /// signature (the same checks as [`verify_json`] after parsing).
    pub fn verify(&self) -> Result<(), VerifyError> {
        check_shape(self)?;
        check_crypto(self)
    }
}

/// Parses and fully verifies one event given as JSON text, with the default
/// size limit [`MAX_EVENT_BYTES`]. Never panics.
pub fn verify_json(json: &str) -> Result<SignedEvent, VerifyError> {
    verify_json_with_limit(json, MAX_EVENT_BYTES)
}

/// Like [`verify_json`] with a caller-chosen size limit in bytes.
pub fn verify_json_with_limit(json: &str, limit: usize) -> Result<SignedEvent, VerifyError> {
    let ev = parse_unverified(json, limit)?;
    check_crypto(&ev)?;
    Ok(ev)
}

/// Verifies many events, one result per input, in order, sharing one
/// verification context.
///
/// Public keys already seen in the batch are not parsed again (a few
/// microseconds saved per event when few peers sign many events).
pub fn verify_batch(jsons: &[&str]) -> Vec<Result<SignedEvent, VerifyError>> {
    let mut cache = KeyCache::default();
    jsons
        .iter()
        .map(|j| {
            let ev = parse_unverified(j, MAX_EVENT_BYTES)?;
            check_crypto_cached(&ev, &mut cache)?;
            Ok(ev)
        })
        .collect()
}

/// Parsed public keys by their bytes, bounded: when full it is emptied and filled again, so
/// that a flood of throwaway keys cannot keep out the keys of peers that sign often.
#[derive(Default)]
struct KeyCache {
    keys: std::collections::BTreeMap<[u8; 32], XOnlyPublicKey>,
}

impl KeyCache {
    const CAPACITY: usize = 1024;

    const fn new() -> KeyCache {
        KeyCache {
            keys: std::collections::BTreeMap::new(),
        }
    }

    fn get(&mut self, bytes: &[u8; 32]) -> Result<XOnlyPublicKey, VerifyError> {
        if let Some(k) = self.keys.get(bytes) {
            return Ok(*k);
        }
        let k = XOnlyPublicKey::from_slice(bytes).map_err(|_| VerifyError::BadPubkey)?;
        if self.keys.len() >= Self::CAPACITY {
            self.keys.clear();
        }
        self.keys.insert(*bytes, k);
        Ok(k)
    }
}

/// Longest piece of a parser message quoted back (messages can quote input).
const MAX_MESSAGE: usize = 160;

fn shorten(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Size, JSON, shape and hex checks; no cryptography.
fn parse_unverified(json: &str, limit: usize) -> Result<SignedEvent, VerifyError> {
    if json.len() > limit {
        return Err(VerifyError::TooLarge {
            size: json.len(),
            limit,
        });
    }
    // Serde would also accept a struct written as a JSON array; NIP-01
    // events are objects.
    if !json.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(json) {
            Ok(_) => VerifyError::BadField("an event must be a JSON object".to_string()),
            Err(e) => classify(e, json),
        });
    }
    let ev: SignedEvent = serde_json::from_str(json).map_err(|e| classify(e, json))?;
    check_shape(&ev)?;
    Ok(ev)
}

/// Sorts a parser error into "not JSON" and "JSON, but not an event".
fn classify(e: serde_json::Error, json: &str) -> VerifyError {
    use serde_json::error::Category;
    let msg = e.to_string();
    match e.classify() {
        Category::Data => {
            // Serde stops at the first type error; make sure the text is
            // JSON at all before blaming a field.
            match serde_json::from_str::<serde::de::IgnoredAny>(json) {
                Ok(_) => VerifyError::BadField(shorten(msg)),
                Err(e2) => VerifyError::MalformedJson(shorten(e2.to_string())),
            }
        }
        // Valid JSON that serde_json refuses to represent: a number beyond
        // f64 range, or nesting deeper than 128 levels.
        _ if msg.starts_with("number out of range")
            || msg.starts_with("recursion limit exceeded") =>
        {
            VerifyError::BadField(shorten(msg))
        }
        _ => VerifyError::MalformedJson(shorten(msg)),
    }
}

fn check_hex(field: &'static str, value: &str, len: usize) -> Result<(), VerifyError> {
    if value.len() != len {
        return Err(VerifyError::BadHex {
            field,
            reason: format!("expected {len} hex characters, found {}", value.len()),
        });
    }
    if !value
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(VerifyError::BadHex {
            field,
            reason: "expected lowercase hex digits (0-9, a-f)".to_string(),
        });
    }
    Ok(())
}

fn check_shape(ev: &SignedEvent) -> Result<(), VerifyError> {
    if ev.kind > MAX_KIND {
        return Err(VerifyError::BadField(format!(
            "kind {} is out of range 0..=65535",
            ev.kind
        )));
    }
    check_hex("id", &ev.id, 64)?;
    check_hex("pubkey", &ev.pubkey, 64)?;
    check_hex("sig", &ev.sig, 128)?;
    Ok(())
}

fn decode32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Id and signature checks; assumes [`check_shape`] passed.
fn check_crypto(ev: &SignedEvent) -> Result<(), VerifyError> {
    // Parsing an x-only key takes a square root (about 18 us, a third of a verification):
    // keys seen before, by any verifier of this process, are kept parsed.
    let mut shared = SHARED_KEYS.lock().unwrap_or_else(|e| e.into_inner());
    check_crypto_cached(ev, &mut shared)
}

/// Public keys parsed by [`check_crypto`], for every event verified one at a time.
static SHARED_KEYS: std::sync::Mutex<KeyCache> = std::sync::Mutex::new(KeyCache::new());

fn check_crypto_cached(ev: &SignedEvent, cache: &mut KeyCache) -> Result<(), VerifyError> {
    let computed = ev.computed_id();
    let claimed = decode32(&ev.id).ok_or(VerifyError::BadHex {
        field: "id",
        reason: "not hex".to_string(),
    })?;
    if computed != claimed {
        return Err(VerifyError::IdMismatch {
            claimed: ev.id.clone(),
            computed: hex::encode(computed),
        });
    }
    let pk_bytes = decode32(&ev.pubkey).ok_or(VerifyError::BadHex {
        field: "pubkey",
        reason: "not hex".to_string(),
    })?;
    let pk = cache.get(&pk_bytes)?;
    let mut sig_bytes = [0u8; 64];
    hex::decode_to_slice(&ev.sig, &mut sig_bytes).map_err(|_| VerifyError::BadHex {
        field: "sig",
        reason: "not hex".to_string(),
    })?;
    let sig = schnorr::Signature::from_slice(&sig_bytes).map_err(|_| VerifyError::BadSignature)?;
    verifier()
        .verify_schnorr(&sig, &Message::from_digest(computed), &pk)
        .map_err(|_| VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::DEFAULT_PATH;

    const PHRASE: &str =
        "leader monkey parrot ring guide accident before fence cannon height naive bean";

    fn ident() -> Identity {
        Identity::from_mnemonic(PHRASE, "", DEFAULT_PATH).unwrap()
    }

    fn sample() -> SignedEvent {
        sign(
            &ident(),
            1,
            "hello \"world\"\n",
            vec![
                vec!["t".into(), "meta-log".into()],
                vec!["e".into(), "".into()],
            ],
            1_700_000_000,
        )
    }

    /// Sets a top-level field of an event's JSON to a raw JSON value.
    fn with_field(json: &str, field: &str, raw: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v[field] = serde_json::from_str(raw).unwrap();
        v.to_string()
    }

    fn reason(json: &str) -> &'static str {
        match verify_json(json) {
            Ok(_) => "ok",
            Err(e) => {
                assert!(!e.to_string().is_empty());
                e.reason()
            }
        }
    }

    #[test]
    fn round_trip() {
        let ev = sample();
        assert_eq!(ev.pubkey, ident().peer_id());
        let json = ev.to_json();
        assert!(json.starts_with(r#"{"id":""#), "{json}");
        let back = verify_json(&json).unwrap();
        assert_eq!(back, ev);
        assert!(ev.verify().is_ok());
        // Fresh aux randomness: same event signed twice, different sigs.
        let ev2 = sample();
        assert_eq!(ev.id, ev2.id);
        assert_ne!(ev.sig, ev2.sig);
        assert!(ev2.verify().is_ok());
        // Extremes of created_at and kind.
        for (kind, at) in [(0u16, 0u64), (65535, u64::MAX)] {
            let e = sign(&ident(), kind, "", vec![], at);
            assert_eq!(verify_json(&e.to_json()).unwrap(), e);
        }
    }

    #[test]
    fn tampering_is_detected() {
        let json = sample().to_json();
        let cases: [(&str, &str); 7] = [
            (
                "id",
                "\"0000000000000000000000000000000000000000000000000000000000000000\"",
            ),
            (
                "pubkey",
                "\"d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573\"",
            ),
            ("created_at", "1700000001"),
            ("kind", "2"),
            ("tags", "[[\"t\",\"meta-log\"]]"),
            ("content", "\"hello world\""),
            (
                "sig",
                "\"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"",
            ),
        ];
        for (field, raw) in cases {
            let t = with_field(&json, field, raw);
            let want = if field == "sig" {
                "bad-signature"
            } else {
                "id-mismatch"
            };
            assert_eq!(reason(&t), want, "tampered {field}");
        }
        // Tamper and recompute the id: the signature no longer matches.
        let mut ev = sample();
        ev.content.push('!');
        ev.id = hex::encode(ev.computed_id());
        assert_eq!(reason(&ev.to_json()), "bad-signature");
        // Another valid key, id recomputed: signature is not by that key.
        let mut ev = sample();
        ev.pubkey = "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573".into();
        ev.id = hex::encode(ev.computed_id());
        assert_eq!(reason(&ev.to_json()), "bad-signature");
        // An x coordinate with no point on the curve.
        let off_curve = (1u8..=255)
            .map(|i| [i; 32])
            .find(|b| XOnlyPublicKey::from_slice(b).is_err())
            .unwrap();
        let mut ev = sample();
        ev.pubkey = hex::encode(off_curve);
        ev.id = hex::encode(ev.computed_id());
        assert_eq!(reason(&ev.to_json()), "bad-pubkey");
    }

    #[test]
    fn canonical_edge_cases() {
        let pk = "17162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917";
        assert_eq!(
            canonical_json(pk, 1, 1, &[], ""),
            format!(r#"[0,"{pk}",1,1,[],""]"#)
        );
        let c = canonical_json(pk, 0, 65535, &[vec![]], "");
        assert_eq!(c, format!(r#"[0,"{pk}",0,65535,[[]],""]"#));
        let c = canonical_json(pk, 5, 7, &[vec!["".into(), "".into()]], "x");
        assert_eq!(c, format!(r#"[0,"{pk}",5,7,[["",""]],"x"]"#));
        let cases = [
            ("a\"b", r#"a\"b"#),
            ("a\\b", r#"a\\b"#),
            ("l1\nl2", r#"l1\nl2"#),
            ("t\tab", r#"t\tab"#),
            ("c\rr", r#"c\rr"#),
            ("\u{8}\u{c}", r#"\b\f"#),
            ("\u{0}\u{1}\u{1f}", r#"\u0000\u0001\u001f"#),
            ("\u{7f}/</script>", "\u{7f}/</script>"),
            ("\u{2028}\u{2029}", "\u{2028}\u{2029}"),
            ("😀 🏳️‍🌈 𝄞", "😀 🏳️‍🌈 𝄞"),
            ("日本語 中文 한국어", "日本語 中文 한국어"),
            ("é (e + U+0301: e\u{301})", "é (e + U+0301: e\u{301})"),
        ];
        for (raw, escaped) in cases {
            let c = canonical_json(pk, 1, 1, &[vec!["k".into(), raw.into()]], raw);
            assert_eq!(
                c,
                format!(r#"[0,"{pk}",1,1,[["k","{escaped}"]],"{escaped}"]"#)
            );
            // And such events survive a round trip through JSON.
            let ev = sign(&ident(), 1, raw, vec![vec![raw.into()]], 9);
            assert_eq!(verify_json(&ev.to_json()).unwrap().content, raw);
        }
    }

    /// An event written by another implementation, escaped differently on the
    /// wire (`\u00e9`, `\/`): the parser decodes it and the id is computed
    /// over the canonical form, as NIP-01 says.
    #[test]
    fn wire_escapes_do_not_matter() {
        let ev = sign(&ident(), 1, "é/", vec![], 1);
        let json = ev.to_json().replace("é/", "\\u00e9\\/");
        assert!(json.contains("\\u00e9"));
        assert_eq!(verify_json(&json).unwrap(), ev);
        // Pretty-printed with extra whitespace, fields reordered: still fine.
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        assert_eq!(verify_json(&pretty).unwrap(), ev);
    }

    /// Events from the wild, signed by other software (fixtures that appear
    /// in go-nostr's and other relays' test suites).
    #[test]
    fn real_events_verify() {
        let events = [
            r#"{"kind":1,"id":"dc90c95f09947507c1044e8f48bcf6350aa6bff1507dd4acfc755b9239b5c962","pubkey":"3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d","created_at":1644271588,"tags":[],"content":"now that https://blueskyweb.org/blog/2-7-2022-overview was announced we can stop working on nostr?","sig":"230e9d8f0ddaf7eb70b5f7741ccfa37e87a455c9a469282e3464e2052d3192cd63a167e196e381ef9d7e69e9ea43af2443b839974dc85d8aaab9efe1d9296524"}"#,
            r#"{"id":"75468b04a0e03633a40f1c8d7e1a0cad1363ecc514ecbcde22093874e04e8166","pubkey":"3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d","created_at":1668011201,"kind":1,"tags":[["e","247baa8ed5db8097b16d9594a3a27fd2b64c030fa9e68ce7d6106df4a499700d","","reply"],["p","6b0d4c8d9dc59e110d380b0429a02891f1341a0fa2ba1b1cf83a3db4d47e3964","","reply"]],"content":"you're not allowed to pronounce these words, traitor","sig":"588577ccd5ad6be8f61d93e4738799dede9b169ad150ee3ee6a1c4bb80adfbee27bb4e302e0ea173637c189d6664f1dc82ad3590b5524240bf492fa0b754432c"}"#,
        ];
        for e in events {
            let ev = verify_json(e).unwrap();
            assert_eq!(ev.to_json().len(), e.len());
        }
        let results = verify_batch(&events);
        assert!(results.iter().all(|r| r.is_ok()));
        // One changed character in the content breaks it.
        let broken = events[0].replace("nostr?", "nostr!");
        assert_eq!(reason(&broken), "id-mismatch");
    }

    #[test]
    fn malformed_inputs() {
        let good = sample().to_json();
        let hex64 = "a".repeat(64);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "malformed-json"),
            ("not json".into(), "malformed-json"),
            ("{".into(), "malformed-json"),
            (good[..good.len() - 1].to_string(), "malformed-json"),
            (format!("{good} x"), "malformed-json"),
            (format!("{good}{good}"), "malformed-json"),
            ("\u{0}".into(), "malformed-json"),
            (good.replace("\"kind\":1", "\"kind\":1,"), "malformed-json"),
            // A type error before a syntax error is still malformed JSON.
            (
                good.replace("\"kind\":1", "\"kind\":\"1\"") + "}",
                "malformed-json",
            ),
            ("[]".into(), "bad-field"),
            // Serde would read a struct from an array; an event is an object.
            (
                {
                    let e = sample();
                    serde_json::to_string(&(
                        &e.id,
                        &e.pubkey,
                        e.created_at,
                        e.kind,
                        &e.tags,
                        &e.content,
                        &e.sig,
                    ))
                    .unwrap()
                },
                "bad-field",
            ),
            ("[1,2,3]".into(), "bad-field"),
            ("null".into(), "bad-field"),
            ("42".into(), "bad-field"),
            ("\"event\"".into(), "bad-field"),
            ("{}".into(), "bad-field"),
            (with_field(&good, "kind", "\"1\""), "bad-field"),
            (with_field(&good, "kind", "1.0"), "bad-field"),
            (with_field(&good, "kind", "-1"), "bad-field"),
            (with_field(&good, "kind", "65536"), "bad-field"),
            (with_field(&good, "kind", "4294967296"), "bad-field"),
            (with_field(&good, "kind", "null"), "bad-field"),
            (with_field(&good, "created_at", "-1"), "bad-field"),
            (with_field(&good, "created_at", "1.5"), "bad-field"),
            (
                with_field(&good, "created_at", "\"1700000000\""),
                "bad-field",
            ),
            (
                good.replace("1700000000", "18446744073709551616"),
                "bad-field",
            ),
            (good.replace("1700000000", "1e400"), "bad-field"),
            (
                good.replace("1700000000", "99999999999999999999999999999999999999"),
                "bad-field",
            ),
            (with_field(&good, "tags", "null"), "bad-field"),
            (with_field(&good, "tags", "[[1]]"), "bad-field"),
            (with_field(&good, "tags", "[[null]]"), "bad-field"),
            (with_field(&good, "tags", "[\"t\"]"), "bad-field"),
            (with_field(&good, "tags", "{}"), "bad-field"),
            (with_field(&good, "content", "null"), "bad-field"),
            (with_field(&good, "content", "{}"), "bad-field"),
            (with_field(&good, "id", "5"), "bad-field"),
            (with_field(&good, "extra", "1"), "bad-field"),
            (good.replace("\"kind\":1,", ""), "bad-field"),
            (
                good.replace("\"kind\":1,", "\"kind\":1,\"kind\":1,"),
                "bad-field",
            ),
            (good.replace("\"sig\"", "\"Sig\""), "bad-field"),
            (
                with_field(&good, "id", &format!("\"{}\"", "A".repeat(64))),
                "bad-hex",
            ),
            (
                with_field(&good, "id", &format!("\"{}\"", &hex64[..63])),
                "bad-hex",
            ),
            (
                with_field(&good, "id", &format!("\"{}g\"", &hex64[..63])),
                "bad-hex",
            ),
            (with_field(&good, "id", "\"\""), "bad-hex"),
            (
                with_field(&good, "pubkey", &format!("\"{}\"", "a".repeat(66))),
                "bad-hex",
            ),
            (
                with_field(&good, "pubkey", &format!("\"{}é\"", &hex64[..62])),
                "bad-hex",
            ),
            (
                with_field(&good, "sig", &format!("\"{}\"", "F".repeat(128))),
                "bad-hex",
            ),
            (
                with_field(&good, "sig", &format!("\"{}\"", "f".repeat(127))),
                "bad-hex",
            ),
        ];
        for (input, want) in &cases {
            assert_eq!(reason(input), *want, "input: {input}");
        }
        // Uppercase hex of the *real* values is refused, not normalised.
        let ev = sample();
        let up = with_field(
            &good,
            "pubkey",
            &format!("\"{}\"", ev.pubkey.to_uppercase()),
        );
        assert_eq!(reason(&up), "bad-hex");
    }

    #[test]
    fn size_limits() {
        let ev = sign(&ident(), 1, &"x".repeat(MAX_EVENT_BYTES), vec![], 1);
        let json = ev.to_json();
        assert!(json.len() > MAX_EVENT_BYTES);
        match verify_json(&json) {
            Err(e @ VerifyError::TooLarge { .. }) => assert_eq!(e.reason(), "too-large"),
            other => panic!("{other:?}"),
        }
        let small = sample().to_json();
        assert_eq!(
            verify_json_with_limit(&small, small.len() - 1)
                .unwrap_err()
                .reason(),
            "too-large"
        );
        assert!(verify_json_with_limit(&small, small.len()).is_ok());
        // Over the limit even when it is garbage: size is checked first.
        assert_eq!(reason(&"{".repeat(MAX_EVENT_BYTES + 1)), "too-large");
        // Deep nesting within the limit: refused, no stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(reason(&deep), "bad-field");
        let deep = "[".repeat(100_000);
        assert_eq!(reason(&deep), "malformed-json");
        let deep = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
        assert_ne!(reason(&deep), "ok");
        let deep_tags = with_field(&small, "tags", "[]").replace(
            "\"tags\":[]",
            &format!("\"tags\":{}{}", "[".repeat(5000), "]".repeat(5000)),
        );
        assert_ne!(reason(&deep_tags), "ok");
        // Error messages do not echo huge inputs.
        let huge = with_field(&small, "kind", &format!("\"{}\"", "k".repeat(100_000)));
        let e = verify_json(&huge).unwrap_err();
        assert_eq!(e.reason(), "bad-field");
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }

    #[test]
    fn fuzz_like_mutations_never_panic() {
        let good = sample().to_json();
        let bytes = good.as_bytes();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\",:0123456789abcdefABCDEF-+.eE \\nulltruefalse\x00\x7f";
        for _ in 0..3000 {
            let mut m = bytes.to_vec();
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[i] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        m.remove(i);
                    }
                    _ => m.insert(i, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let s = String::from_utf8_lossy(&m);
            let _ = verify_json(&s);
        }
        // Every truncation.
        for i in 0..good.len() {
            assert_ne!(reason(&good[..i]), "ok");
        }
    }

    #[test]
    fn batch_preserves_order() {
        let a = sample().to_json();
        let b = with_field(&a, "kind", "3");
        let other = Identity::from_mnemonic(
            "what bleak badge arrange retreat wolf trade produce cricket blur garlic valid proud rude strong choose busy staff weather area salt hollow arm fade",
            "",
            DEFAULT_PATH,
        )
        .unwrap();
        let c = sign(&other, 1, "from another peer", vec![], 2).to_json();
        let mut ev = sample();
        ev.pubkey = "f".repeat(64);
        ev.id = hex::encode(ev.computed_id());
        let d = ev.to_json();
        let r = verify_batch(&[&a, &b, "x", &a, &c, &d, &d, &c]);
        assert_eq!(r.len(), 8);
        assert!(r[0].is_ok() && r[3].is_ok() && r[4].is_ok() && r[7].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().reason(), "id-mismatch");
        assert_eq!(r[2].as_ref().unwrap_err().reason(), "malformed-json");
        assert_eq!(r[5].as_ref().unwrap_err().reason(), "bad-pubkey");
        assert_eq!(r[6].as_ref().unwrap_err().reason(), "bad-pubkey");
        assert_eq!(r[4].as_ref().unwrap().pubkey, other.peer_id());
        assert!(verify_batch(&[]).is_empty());
    }
}
