//! NIP-44 version 2 encrypted payloads (peer-to-peer secrets).
//!
//! secp256k1 ECDH (unhashed shared x coordinate) → HKDF-extract with salt
//! `nip44-v2` = conversation key; per message a random 32-byte nonce,
//! HKDF-expand → ChaCha20 key/nonce and HMAC-SHA256 key; power-of-two
//! padding; MAC over nonce ‖ ciphertext; Base64 of
//! `0x02 ‖ nonce ‖ ciphertext ‖ mac`. Checked against the official vectors
//! (paulmillr/nip44 `nip44.vectors.json`).
//!
//! A conversation key is the same in both directions:
//! `conversation_key(a, B) == conversation_key(b, A)`. NIP-44 payloads
//! are not signed: put them in a signed event and verify that first.

use base64ct::{Base64, Encoding};
use bitcoin::secp256k1::{ecdh, Keypair, Parity, SecretKey, XOnlyPublicKey};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Smallest plaintext, in bytes.
pub const MIN_PLAINTEXT: usize = 1;
/// Largest plaintext, in bytes.
pub const MAX_PLAINTEXT: usize = 65_535;

const VERSION: u8 = 2;
const SALT: &[u8] = b"nip44-v2";

/// Why a NIP-44 operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Nip44Error {
    /// The peer's public key is not 64 hex chars of a valid x-only key, or
    /// the secret key is not a valid scalar.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The payload uses an encryption version this code does not know.
    #[error("unknown encryption version{0}")]
    UnknownVersion(String),
    /// The payload has an impossible length or is not Base64.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The MAC does not match: wrong key, or the payload was altered.
    #[error("invalid MAC: wrong conversation key, or the message was altered")]
    InvalidMac,
    /// The decrypted padding is inconsistent.
    #[error("invalid padding")]
    InvalidPadding,
    /// The plaintext is empty, longer than 65535 bytes, or (on decryption)
    /// not UTF-8.
    #[error("invalid plaintext: {0}")]
    InvalidPlaintext(String),
    /// The OS random source failed.
    #[error("the OS random source failed")]
    Random,
}

type Result<T> = std::result::Result<T, Nip44Error>;

/// The conversation key between our `keypair` and the peer whose x-only
/// public key (peer id) is `peer_xonly_hex`.
pub fn conversation_key(keypair: &Keypair, peer_xonly_hex: &str) -> Result<[u8; 32]> {
    // `secret_key()` is a copy of the secret: wipe it once used.
    let mut secret = keypair.secret_key();
    let r = conversation_key_from_secret(&secret, peer_xonly_hex);
    secret.non_secure_erase();
    r
}

/// Conversation keys already computed, per peer (an ECDH costs tens of
/// microseconds; a busy conversation reuses its key). Bounded: when full it
/// is emptied and refilled. Cloning gives an empty cache.
#[derive(Default)]
pub struct ConversationKeys {
    keys: std::sync::Mutex<std::collections::HashMap<String, Zeroizing<[u8; 32]>>>,
}

/// Most conversation keys kept.
const MAX_CACHED_KEYS: usize = 4096;

impl ConversationKeys {
    /// The conversation key between `keypair` and `peer_xonly_hex`, from the
    /// cache when it is there. The caller must always pass the same keypair.
    pub fn get(&self, keypair: &Keypair, peer_xonly_hex: &str) -> Result<[u8; 32]> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = keys.get(peer_xonly_hex) {
            return Ok(**k);
        }
        let k = conversation_key(keypair, peer_xonly_hex)?;
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(peer_xonly_hex.to_string(), Zeroizing::new(k));
        Ok(k)
    }
}

impl Clone for ConversationKeys {
    fn clone(&self) -> Self {
        ConversationKeys::default()
    }
}

impl std::fmt::Debug for ConversationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        write!(f, "ConversationKeys({n} cached)")
    }
}

fn conversation_key_from_secret(secret: &SecretKey, peer_xonly_hex: &str) -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(peer_xonly_hex, &mut bytes)
        .map_err(|_| Nip44Error::InvalidKey("the peer key must be 64 hex characters".into()))?;
    let xonly = XOnlyPublicKey::from_slice(&bytes)
        .map_err(|_| Nip44Error::InvalidKey("the peer key is not on the curve".into()))?;
    let point = xonly.public_key(Parity::Even);
    let xy = Zeroizing::new(ecdh::shared_secret_point(&point, secret));
    let (prk, _) = Hkdf::<Sha256>::extract(Some(SALT), &xy[..32]);
    let mut out = [0u8; 32];
    out.copy_from_slice(&prk);
    Ok(out)
}

struct MessageKeys {
    chacha_key: Zeroizing<[u8; 32]>,
    chacha_nonce: [u8; 12],
    hmac_key: Zeroizing<[u8; 32]>,
}

fn message_keys(conversation_key: &[u8; 32], nonce: &[u8; 32]) -> Result<MessageKeys> {
    let hk = Hkdf::<Sha256>::from_prk(conversation_key)
        .map_err(|_| Nip44Error::InvalidKey("conversation key length".into()))?;
    let mut okm = Zeroizing::new([0u8; 76]);
    hk.expand(nonce, &mut okm[..])
        .map_err(|_| Nip44Error::InvalidKey("HKDF expand".into()))?;
    let mut keys = MessageKeys {
        chacha_key: Zeroizing::new([0u8; 32]),
        chacha_nonce: [0u8; 12],
        hmac_key: Zeroizing::new([0u8; 32]),
    };
    keys.chacha_key.copy_from_slice(&okm[..32]);
    keys.chacha_nonce.copy_from_slice(&okm[32..44]);
    keys.hmac_key.copy_from_slice(&okm[44..76]);
    Ok(keys)
}

/// Padded length for a plaintext of `len` bytes; only called with
/// 1..=65535 (checked by the callers), so the shift cannot overflow.
fn calc_padded_len(len: usize) -> usize {
    if len <= 32 {
        return 32;
    }
    let next_power = 1usize << (usize::BITS - (len - 1).leading_zeros());
    let chunk = if next_power <= 256 {
        32
    } else {
        next_power / 8
    };
    chunk * ((len - 1) / chunk + 1)
}

fn mac(hmac_key: &[u8; 32], nonce: &[u8; 32], ciphertext: &[u8]) -> Result<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(hmac_key)
        .map_err(|_| Nip44Error::InvalidKey("HMAC key".into()))?;
    m.update(nonce);
    m.update(ciphertext);
    Ok(m)
}

/// Encrypts `plaintext` (1 to 65535 bytes of UTF-8) under
/// `conversation_key` with a fresh random nonce; returns the Base64 payload.
pub fn encrypt(conversation_key: &[u8; 32], plaintext: &str) -> Result<String> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).map_err(|_| Nip44Error::Random)?;
    encrypt_with_nonce(conversation_key, plaintext, &nonce)
}

/// [`encrypt`] with a caller-chosen nonce. Only for test vectors: reusing
/// a nonce with the same key reveals the messages.
fn encrypt_with_nonce(
    conversation_key: &[u8; 32],
    plaintext: &str,
    nonce: &[u8; 32],
) -> Result<String> {
    let len = plaintext.len();
    if !(MIN_PLAINTEXT..=MAX_PLAINTEXT).contains(&len) {
        return Err(Nip44Error::InvalidPlaintext(format!(
            "{len} bytes; it must be 1 to 65535 bytes"
        )));
    }
    let keys = message_keys(conversation_key, nonce)?;
    let padded_len = calc_padded_len(len);
    let mut buf = Vec::with_capacity(1 + 32 + 2 + padded_len + 32);
    buf.push(VERSION);
    buf.extend_from_slice(nonce);
    // len <= 65535, checked above.
    buf.extend_from_slice(&(len as u16).to_be_bytes());
    buf.extend_from_slice(plaintext.as_bytes());
    buf.resize(1 + 32 + 2 + padded_len, 0);
    let mut cipher = ChaCha20::new(&(*keys.chacha_key).into(), &keys.chacha_nonce.into());
    cipher.apply_keystream(&mut buf[33..]);
    let tag = mac(&keys.hmac_key, nonce, &buf[33..])?
        .finalize()
        .into_bytes();
    buf.extend_from_slice(&tag);
    Ok(Base64::encode_string(&buf))
}

/// Decrypts a NIP-44 v2 payload. Never panics; every malformed payload is
/// an error.
pub fn decrypt(conversation_key: &[u8; 32], payload: &str) -> Result<String> {
    // `#` marks a future non-Base64 encoding.
    if payload.starts_with('#') {
        return Err(Nip44Error::UnknownVersion(String::new()));
    }
    let plen = payload.len();
    if !(132..=87_472).contains(&plen) {
        return Err(Nip44Error::InvalidPayload(format!(
            "{plen} characters; a payload has 132 to 87472"
        )));
    }
    let data =
        Base64::decode_vec(payload).map_err(|_| Nip44Error::InvalidPayload("not Base64".into()))?;
    let dlen = data.len();
    if !(99..=65_603).contains(&dlen) {
        return Err(Nip44Error::InvalidPayload(format!(
            "{dlen} decoded bytes; expected 99 to 65603"
        )));
    }
    if data[0] != VERSION {
        return Err(Nip44Error::UnknownVersion(format!(" {}", data[0])));
    }
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(&data[1..33]);
    let ciphertext = &data[33..dlen - 32];
    let tag = &data[dlen - 32..];
    let keys = message_keys(conversation_key, &nonce)?;
    mac(&keys.hmac_key, &nonce, ciphertext)?
        .verify_slice(tag)
        .map_err(|_| Nip44Error::InvalidMac)?;
    let mut padded = Zeroizing::new(ciphertext.to_vec());
    let mut cipher = ChaCha20::new(&(*keys.chacha_key).into(), &keys.chacha_nonce.into());
    cipher.apply_keystream(&mut padded);
    if padded.len() < 2 {
        return Err(Nip44Error::InvalidPadding);
    }
    let len = usize::from(u16::from_be_bytes([padded[0], padded[1]]));
    if len == 0 || padded.len() < 2 + len || padded.len() != 2 + calc_padded_len(len) {
        return Err(Nip44Error::InvalidPadding);
    }
    String::from_utf8(padded[2..2 + len].to_vec())
        .map_err(|_| Nip44Error::InvalidPlaintext("not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::secp;
    use bitcoin::hashes::{sha256, Hash};

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("testdata/nip44_vectors.json")).unwrap()
    }

    fn h32(s: &serde_json::Value) -> [u8; 32] {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.as_str().unwrap(), &mut b).unwrap();
        b
    }

    fn sk(s: &serde_json::Value) -> SecretKey {
        SecretKey::from_slice(&h32(s)).unwrap()
    }

    fn xonly_hex(secret: &SecretKey) -> String {
        hex::encode(secret.x_only_public_key(secp()).0.serialize())
    }

    #[test]
    fn vectors_checksum() {
        let d = sha256::Hash::hash(include_bytes!("testdata/nip44_vectors.json"));
        assert_eq!(
            d.to_string(),
            "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"
        );
    }

    #[test]
    fn valid_conversation_keys() {
        let v = vectors();
        let cases = v["v2"]["valid"]["get_conversation_key"].as_array().unwrap();
        assert_eq!(cases.len(), 35);
        for c in cases {
            let got =
                conversation_key_from_secret(&sk(&c["sec1"]), c["pub2"].as_str().unwrap()).unwrap();
            assert_eq!(
                hex::encode(got),
                c["conversation_key"].as_str().unwrap(),
                "{c}"
            );
        }
    }

    #[test]
    fn invalid_conversation_keys() {
        let v = vectors();
        let cases = v["v2"]["invalid"]["get_conversation_key"]
            .as_array()
            .unwrap();
        assert_eq!(cases.len(), 8);
        // Each vector's note names the bad half: a bad `sec1` must be refused as a secret key
        // (the only way a secret enters the crate), a bad `pub2` by the conversation key with
        // a valid secret. No vector is skipped.
        let (mut bad_secrets, mut bad_peers) = (0, 0);
        for c in cases {
            let note = c["note"].as_str().unwrap();
            let sec = SecretKey::from_slice(&h32(&c["sec1"]));
            if note.starts_with("sec1") {
                assert!(sec.is_err(), "secret accepted: {c}");
                bad_secrets += 1;
            } else {
                assert!(note.starts_with("pub2"), "{c}");
                let sec = sec.unwrap_or_else(|e| panic!("valid secret refused ({e}): {c}"));
                let result = conversation_key_from_secret(&sec, c["pub2"].as_str().unwrap());
                assert!(
                    matches!(result, Err(Nip44Error::InvalidKey(_))),
                    "{c}: {result:?}"
                );
                bad_peers += 1;
            }
        }
        assert_eq!((bad_secrets, bad_peers), (3, 5));
        let kp = Keypair::from_secret_key(secp(), &SecretKey::from_slice(&[1u8; 32]).unwrap());
        for bad in [
            "",
            "zz",
            &"a".repeat(63),
            &"a".repeat(66),
            &"g".repeat(64),
            "ff\u{e9}",
        ] {
            assert!(matches!(
                conversation_key(&kp, bad),
                Err(Nip44Error::InvalidKey(_))
            ));
        }
    }

    #[test]
    fn message_keys_vectors() {
        let v = vectors();
        let mk = &v["v2"]["valid"]["get_message_keys"];
        let ck = h32(&mk["conversation_key"]);
        for k in mk["keys"].as_array().unwrap() {
            let keys = message_keys(&ck, &h32(&k["nonce"])).unwrap();
            assert_eq!(
                hex::encode(*keys.chacha_key),
                k["chacha_key"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(keys.chacha_nonce),
                k["chacha_nonce"].as_str().unwrap()
            );
            assert_eq!(hex::encode(*keys.hmac_key), k["hmac_key"].as_str().unwrap());
        }
    }

    #[test]
    fn padded_len_vectors() {
        let v = vectors();
        for pair in v["v2"]["valid"]["calc_padded_len"].as_array().unwrap() {
            let a = pair[0].as_u64().unwrap() as usize;
            let b = pair[1].as_u64().unwrap() as usize;
            assert_eq!(calc_padded_len(a), b, "{a}");
        }
    }

    #[test]
    fn encrypt_decrypt_vectors() {
        let v = vectors();
        let cases = v["v2"]["valid"]["encrypt_decrypt"].as_array().unwrap();
        assert_eq!(cases.len(), 10);
        for c in cases {
            let sec1 = sk(&c["sec1"]);
            let sec2 = sk(&c["sec2"]);
            let kp1 = Keypair::from_secret_key(secp(), &sec1);
            let kp2 = Keypair::from_secret_key(secp(), &sec2);
            let ck = conversation_key(&kp1, &xonly_hex(&sec2)).unwrap();
            assert_eq!(hex::encode(ck), c["conversation_key"].as_str().unwrap());
            let ck2 = conversation_key(&kp2, &xonly_hex(&sec1)).unwrap();
            assert_eq!(ck, ck2);
            let pt = c["plaintext"].as_str().unwrap();
            let payload = encrypt_with_nonce(&ck, pt, &h32(&c["nonce"])).unwrap();
            assert_eq!(payload, c["payload"].as_str().unwrap());
            assert_eq!(decrypt(&ck2, &payload).unwrap(), pt);
            // And with a random nonce.
            let p2 = encrypt(&ck, pt).unwrap();
            assert_ne!(p2, payload);
            assert_eq!(decrypt(&ck, &p2).unwrap(), pt);
        }
    }

    #[test]
    fn long_message_vectors() {
        let v = vectors();
        for c in v["v2"]["valid"]["encrypt_decrypt_long_msg"]
            .as_array()
            .unwrap()
        {
            let ck = h32(&c["conversation_key"]);
            let pt = c["pattern"]
                .as_str()
                .unwrap()
                .repeat(c["repeat"].as_u64().unwrap() as usize);
            assert_eq!(
                sha256::Hash::hash(pt.as_bytes()).to_string(),
                c["plaintext_sha256"].as_str().unwrap()
            );
            let payload = encrypt_with_nonce(&ck, &pt, &h32(&c["nonce"])).unwrap();
            assert_eq!(
                sha256::Hash::hash(payload.as_bytes()).to_string(),
                c["payload_sha256"].as_str().unwrap()
            );
            assert_eq!(decrypt(&ck, &payload).unwrap(), pt);
        }
    }

    #[test]
    fn invalid_decrypt_vectors() {
        let v = vectors();
        let cases = v["v2"]["invalid"]["decrypt"].as_array().unwrap();
        assert_eq!(cases.len(), 12);
        for c in cases {
            let ck = h32(&c["conversation_key"]);
            let note = c["note"].as_str().unwrap();
            let err = decrypt(&ck, c["payload"].as_str().unwrap()).unwrap_err();
            let ok = match &err {
                Nip44Error::UnknownVersion(_) => note.starts_with("unknown encryption version"),
                Nip44Error::InvalidPayload(_) => {
                    note.starts_with("invalid payload length") || note == "invalid base64"
                }
                Nip44Error::InvalidMac => note == "invalid MAC",
                Nip44Error::InvalidPadding => note == "invalid padding",
                _ => false,
            };
            assert!(ok, "{note}: got {err:?}");
        }
    }

    #[test]
    fn invalid_plaintext_lengths() {
        let v = vectors();
        let ck = [7u8; 32];
        for len in v["v2"]["invalid"]["encrypt_msg_lengths"]
            .as_array()
            .unwrap()
        {
            let pt = "a".repeat(len.as_u64().unwrap() as usize);
            assert!(matches!(
                encrypt(&ck, &pt),
                Err(Nip44Error::InvalidPlaintext(_))
            ));
        }
        assert!(encrypt(&ck, &"a".repeat(MAX_PLAINTEXT)).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let ck = [9u8; 32];
        let good = encrypt(&ck, "hello").unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut b = good.as_bytes().to_vec();
            let i = (next() as usize) % b.len();
            match next() % 3 {
                0 => b[i] = b"A+/=#\xd0\x00z"[(next() % 8) as usize],
                1 => {
                    b.truncate(i);
                }
                _ => b.insert(i, b'A'),
            }
            let s = String::from_utf8_lossy(&b);
            if s != good {
                assert!(decrypt(&ck, &s).is_err());
            }
        }
        assert!(decrypt(&[0u8; 32], &good).is_err());
    }
}
