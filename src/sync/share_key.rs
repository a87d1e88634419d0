//! Per-share keys for shares with members (issue 13, item 3): the content of every sync event
//! of such a share is sealed with XChaCha20-Poly1305 (crate `chacha20poly1305`) under the
//! share's current key; the origin hands each member the key in a NIP-44 envelope.
//!
//! * **Key**: 32 random bytes per share and *epoch*; removing a member starts a new epoch with
//!   a new key, given only to the remaining members.
//! * **Opaque tag**: `hex(SHA-256("meta-log-federation share tag v1" || key)[..16])`, 32 hex
//!   characters. It names the share on the wire instead of its URL (a keyed hash: without the
//!   key nobody can tell which share, or which file name, it stands for) and changes with
//!   every epoch.
//! * **Sealed content**: `{"v":1,"op":"sealed","tag":TAG,"box":B64}`; `box` is a 24-byte random
//!   nonce followed by the XChaCha20-Poly1305 ciphertext of the plain content (the JSON of the
//!   module documentation, URL included), with associated data
//!   `"meta-log-federation sealed v1|" + TAG + "|" + KIND` (`change`, `request` or
//!   `response`), so a sealed event cannot be replayed as another kind. The event carries the
//!   tag `["s",TAG]`.
//! * **Key envelope**: `{"v":1,"op":"key","nip44":PAYLOAD}` on a response event addressed to the
//!   member (`["p",MEMBER]`), signed by the origin; PAYLOAD is NIP-44 v2 of
//!   `{"share":URL,"epoch":E,"key":B64,"members":<membership event>}` with the conversation key
//!   of origin and member. Only the origin's envelopes are taken, and only when the enclosed
//!   membership (signed by the origin) names the receiver.

use std::collections::{BTreeMap, HashMap};

use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::federation::SyncKind;
use crate::identity::event::SignedEvent;

use super::share_id::ShareId;
use super::wire::CONTENT_VERSION;

pub use crate::federation::protocol::{is_share_tag as is_tag, SHARE_TAG_HEX_LEN as TAG_HEX_LEN};

/// Domain of the tag hash.
const TAG_DOMAIN: &[u8] = b"meta-log-federation share tag v1";

/// Prefix of the associated data of a sealed content.
const AAD_PREFIX: &str = "meta-log-federation sealed v1|";

/// Bytes a sealed content adds to the plain one: nonce (24) and tag (16), Base64 (×4/3), and
/// the JSON wrapper with the opaque tag (about 80).
#[cfg(test)]
pub(crate) fn sealed_len(plain_len: usize) -> usize {
    (plain_len + 40).div_ceil(3) * 4 + 100
}

/// The largest plain content whose sealed form fits `budget`.
pub(crate) fn plain_budget(budget: usize) -> usize {
    (budget.saturating_sub(100) / 4 * 3).saturating_sub(40)
}

/// One key of one share.
#[derive(Clone)]
pub struct ShareKey {
    /// Its epoch (larger is newer).
    pub epoch: u64,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShareKey(epoch {}, tag {})", self.epoch, self.tag())
    }
}

/// Why a sealed content or key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

impl ShareKey {
    /// A fresh random key for `epoch`.
    pub fn generate(epoch: u64) -> Result<ShareKey, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut key[..])
            .map_err(|_| SealError("the OS random source failed".into()))?;
        Ok(ShareKey { epoch, key })
    }

    /// A key from its bytes.
    pub fn from_bytes(epoch: u64, bytes: &[u8]) -> Result<ShareKey, SealError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError(format!("a share key has 32 bytes, not {}", bytes.len())))?;
        Ok(ShareKey {
            epoch,
            key: Zeroizing::new(arr),
        })
    }

    /// The key's bytes, Base64.
    pub(crate) fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(Base64::encode_string(&self.key[..]))
    }

    /// The opaque tag of the share under this key.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(TAG_DOMAIN);
        h.update(&self.key[..]);
        hex::encode(&h.finalize()[..TAG_HEX_LEN / 2])
    }

    fn aad(&self, kind: SyncKind) -> String {
        format!("{AAD_PREFIX}{}|{}", self.tag(), kind.as_str())
    }

    /// Seals `plain` (a sync content) for an event of `kind`: the sealed content.
    pub fn seal(&self, kind: SyncKind, plain: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce)
            .map_err(|_| SealError("the OS random source failed".into()))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&self.key[..])
            .map_err(|e| SealError(format!("cipher key: {e}")))?;
        let aad = self.aad(kind);
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError("encryption failed".into()))?;
        let mut boxed = Vec::with_capacity(24 + ct.len());
        boxed.extend_from_slice(&nonce);
        boxed.extend_from_slice(&ct);
        Ok(serde_json::to_string(&Sealed {
            v: CONTENT_VERSION,
            op: "sealed".into(),
            tag: self.tag(),
            sealed: Base64::encode_string(&boxed),
        })
        .unwrap_or_default())
    }

    /// Opens the `box` of a sealed content of an event of `kind`.
    pub fn open(&self, kind: SyncKind, boxed_b64: &str) -> Result<String, SealError> {
        let boxed = Base64::decode_vec(boxed_b64)
            .map_err(|_| SealError("the sealed box is not Base64".into()))?;
        if boxed.len() < 24 + 16 {
            return Err(SealError("the sealed box is too short".into()));
        }
        let (nonce, ct) = boxed.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().unwrap_or([0; 24]);
        let cipher = XChaCha20Poly1305::new_from_slice(&self.key[..])
            .map_err(|e| SealError(format!("cipher key: {e}")))?;
        let aad = self.aad(kind);
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                SealError("the sealed content does not open with the share's key".into())
            })?;
        String::from_utf8(plain).map_err(|_| SealError("the sealed content is not text".into()))
    }
}

/// The JSON of a sealed content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sealed {
    pub(crate) v: u64,
    pub(crate) op: String,
    pub(crate) tag: String,
    #[serde(rename = "box")]
    pub(crate) sealed: String,
}

/// The JSON of a key envelope.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEnvelope {
    pub(crate) v: u64,
    pub(crate) op: String,
    pub(crate) nip44: String,
}

/// What a key envelope holds (NIP-44 plaintext).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyGift {
    pub(crate) share: String,
    pub(crate) epoch: u64,
    pub(crate) key: String,
    pub(crate) members: SignedEvent,
}

/// What the first bytes of a content say it is, without parsing it all.
pub(crate) enum Envelope {
    Sealed(Sealed),
    Key(KeyEnvelope),
    Plain,
}

/// Tells a sealed content or a key envelope from a plain content.
pub(crate) fn envelope(content: &str) -> Result<Envelope, (&'static str, String)> {
    #[derive(Deserialize)]
    struct OpOnly {
        op: Option<String>,
    }
    let op = serde_json::from_str::<OpOnly>(content)
        .ok()
        .and_then(|o| o.op)
        .unwrap_or_default();
    match op.as_str() {
        "sealed" => {
            let s: Sealed = serde_json::from_str(content)
                .map_err(|e| ("malformed", format!("sealed content: {e}")))?;
            if s.v != CONTENT_VERSION {
                return Err(("version", format!("sealed content version {}", s.v)));
            }
            if !is_tag(&s.tag) {
                return Err((
                    "malformed",
                    "a sealed content's tag is not 32 hex digits".into(),
                ));
            }
            Ok(Envelope::Sealed(s))
        }
        "key" => {
            let k: KeyEnvelope = serde_json::from_str(content)
                .map_err(|e| ("malformed", format!("key envelope: {e}")))?;
            if k.v != CONTENT_VERSION {
                return Err(("version", format!("key envelope version {}", k.v)));
            }
            Ok(Envelope::Key(k))
        }
        _ => Ok(Envelope::Plain),
    }
}

/// The keys an engine holds: every epoch of every sealed share, by share and by tag.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    by_share: BTreeMap<ShareId, BTreeMap<u64, ShareKey>>,
    by_tag: HashMap<String, (ShareId, u64)>,
}

/// The file form of the key ring (`state_dir/share-keys.json`, 0600).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    share: String,
    epoch: u64,
    key: String,
}

impl KeyRing {
    /// Adds a key; returns whether it was new.
    pub(crate) fn insert(&mut self, share: &ShareId, key: ShareKey) -> bool {
        let epochs = self.by_share.entry(share.clone()).or_default();
        if epochs.contains_key(&key.epoch) {
            return false;
        }
        self.by_tag.insert(key.tag(), (share.clone(), key.epoch));
        epochs.insert(key.epoch, key);
        true
    }

    /// The newest key of `share`.
    pub(crate) fn current(&self, share: &ShareId) -> Option<&ShareKey> {
        self.by_share.get(share)?.values().next_back()
    }

    /// The share and key a tag stands for.
    pub(crate) fn by_tag(&self, tag: &str) -> Option<(&ShareId, &ShareKey)> {
        let (share, epoch) = self.by_tag.get(tag)?;
        Some((share, self.by_share.get(share)?.get(epoch)?))
    }

    /// Whether `share` is sealed (we hold a key for it).
    pub(crate) fn sealed(&self, share: &ShareId) -> bool {
        self.by_share.contains_key(share)
    }

    /// The current tag of every sealed share (the per-share topics to subscribe to).
    pub(crate) fn current_tags(&self) -> Vec<(ShareId, String)> {
        self.by_share
            .iter()
            .filter_map(|(s, e)| Some((s.clone(), e.values().next_back()?.tag())))
            .collect()
    }

    pub(crate) fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let stored: Vec<StoredKey> = self
            .by_share
            .iter()
            .flat_map(|(s, e)| {
                e.values().map(move |k| StoredKey {
                    share: s.url(),
                    epoch: k.epoch,
                    key: k.to_base64().to_string(),
                })
            })
            .collect();
        Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default())
    }

    /// Reads the file form; entries that do not parse are counted, not fatal.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<(KeyRing, usize), String> {
        let stored: Vec<StoredKey> =
            serde_json::from_slice(bytes).map_err(|e| format!("not a key list: {e}"))?;
        let mut ring = KeyRing::default();
        let mut bad = 0;
        for s in stored {
            let key = Base64::decode_vec(&s.key)
                .ok()
                .and_then(|b| ShareKey::from_bytes(s.epoch, &b).ok());
            match (ShareId::parse(&s.share), key) {
                (Ok(share), Some(key)) => {
                    ring.insert(&share, key);
                }
                _ => bad += 1,
            }
        }
        Ok((ring, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_content_opens_only_with_its_key_and_kind() {
        let k = ShareKey::generate(1).unwrap();
        let sealed = k.seal(SyncKind::Change, "{\"canary\":\"xyzzy\"}").unwrap();
        assert!(!sealed.contains("xyzzy"));
        let Envelope::Sealed(s) = envelope(&sealed).unwrap() else {
            panic!("not sealed")
        };
        assert_eq!(s.tag, k.tag());
        assert_eq!(
            k.open(SyncKind::Change, &s.sealed).unwrap(),
            "{\"canary\":\"xyzzy\"}"
        );
        // Another kind, another key (a new epoch), a flipped bit: refused.
        assert!(k.open(SyncKind::Request, &s.sealed).is_err());
        let k2 = ShareKey::generate(2).unwrap();
        assert_ne!(k.tag(), k2.tag());
        assert!(k2.open(SyncKind::Change, &s.sealed).is_err());
        let mut raw = Base64::decode_vec(&s.sealed).unwrap();
        raw[30] ^= 1;
        assert!(k
            .open(SyncKind::Change, &Base64::encode_string(&raw))
            .is_err());
        assert!(sealed.len() <= sealed_len("{\"canary\":\"xyzzy\"}".len()));
        assert!(sealed_len(plain_budget(60_000)) <= 60_000);
    }

    #[test]
    fn the_key_ring_survives_its_file_form() {
        let share = ShareId::parse(&format!("canvasl://{}/a.canvasl", "ab".repeat(32))).unwrap();
        let mut ring = KeyRing::default();
        let k1 = ShareKey::generate(1).unwrap();
        let k2 = ShareKey::generate(5).unwrap();
        assert!(ring.insert(&share, k1.clone()));
        assert!(!ring.insert(&share, k1.clone()));
        ring.insert(&share, k2.clone());
        assert_eq!(ring.current(&share).unwrap().epoch, 5);
        assert_eq!(ring.by_tag(&k1.tag()).unwrap().1.epoch, 1);
        let (back, bad) = KeyRing::from_json(&ring.to_json()).unwrap();
        assert_eq!(bad, 0);
        assert_eq!(back.current(&share).unwrap().tag(), k2.tag());
        assert_eq!(back.current_tags(), vec![(share, k2.tag())]);
    }
}
