//! Identity files: a peer identity saved as a readable Org file.
//!
//! # Format `meta-log-identity-v1`
//!
//! An unencrypted file:
//!
//! ```org
//! #+TITLE: meta-log-federation peer identity
//! # WARNING: this file is UNENCRYPTED. Anyone who can read it can act as this peer.
//! # Keep it private, or save it again with a passphrase.
//! * Identity
//! :PROPERTIES:
//! :PEER_ID: 17162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917
//! :PUBLIC_KEY: 0217162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917
//! :DERIVATION_PATH: m/44'/1237'/0'/0/0
//! :FORMAT: meta-log-identity-v1
//! :ENCRYPTION: none
//! :END:
//! ** Secret
//! :PROPERTIES:
//! :MNEMONIC: leader monkey parrot ring guide accident before fence cannon height naive bean
//! :BIP39_PASSPHRASE: ""
//! :END:
//! ```
//!
//! `BIP39_PASSPHRASE` is a JSON string literal (so any passphrase, even one
//! with quotes or newlines, fits on one line).
//!
//! An encrypted file has the same `* Identity` drawer with
//! `:ENCRYPTION: argon2id-xchacha20poly1305`, and the secret section is:
//!
//! ```org
//! ** Secret
//! :PROPERTIES:
//! :KDF: argon2id
//! :KDF_MEMORY_KIB: 65536
//! :KDF_ITERATIONS: 3
//! :KDF_PARALLELISM: 4
//! :SALT: <16 bytes, Base64>
//! :NONCE: <24 bytes, Base64>
//! :KEY_CHECK: <8 bytes, hex>
//! :CIPHERTEXT_BYTES: <length of the decoded ciphertext>
//! :END:
//! #+BEGIN_EXAMPLE
//! <ciphertext, Base64 (RFC 4648, padded), 64 characters a line>
//! #+END_EXAMPLE
//! ```
//!
//! * Argon2id (version 0x13) turns the file passphrase and salt into 64
//!   bytes: the first 32 are the XChaCha20-Poly1305 key; `KEY_CHECK` is the
//!   first 8 bytes of SHA-256("meta-log-identity key check" ‖ last 32). The
//!   check tells a wrong passphrase apart from a damaged ciphertext.
//! * The plaintext is the JSON object `{"mnemonic":…,"passphrase":…}`; the
//!   AEAD's associated data is the ASCII string `meta-log-identity-v1`.
//! * The KDF parameters are read from the file, so they can be raised later
//!   without breaking old files (loading refuses absurd values: memory over
//!   256 MiB, more than 64 iterations or 16 lanes).
//!
//! On load the public properties are checked against the key derived from
//! the secret: an edited `PEER_ID`, `PUBLIC_KEY` or `DERIVATION_PATH` is an
//! error. Other Org text (notes, comments) may be added outside the drawers
//! and is ignored; unknown properties are ignored.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use base64ct::{Base64, Encoding};
use bitcoin::hashes::{sha256, Hash};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{IdentityError, Result};
use super::keys::{Identity, DEFAULT_PATH};
use super::mnemonic;

/// The format name written in `:FORMAT:`.
pub const FORMAT: &str = "meta-log-identity-v1";
/// `:ENCRYPTION:` of a plain file.
pub const ENCRYPTION_NONE: &str = "none";
/// `:ENCRYPTION:` of an encrypted file.
pub const ENCRYPTION_ARGON2_XCHACHA: &str = "argon2id-xchacha20poly1305";

/// Identity files larger than this are refused as damaged.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const KEY_CHECK_LABEL: &[u8] = b"meta-log-identity key check";

/// Argon2id cost parameters, stored in each encrypted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option: m = 64 MiB, t = 3, p = 4 (the
    /// root secret in the file is open to offline guessing by whoever copies
    /// it, so it gets more than OWASP's minimum). Within the loader's bounds.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    fn is_sane(&self) -> bool {
        (8..=256 * 1024).contains(&self.memory_kib)
            && (1..=64).contains(&self.iterations)
            && (1..=16).contains(&self.parallelism)
            && self.memory_kib >= 8 * self.parallelism
    }
}

#[derive(Serialize, Deserialize)]
struct SecretPlain {
    mnemonic: String,
    passphrase: String,
}

/// Argon2id → (32-byte AEAD key, 8-byte key check).
fn derive_key(
    passphrase: &str,
    salt: &[u8],
    kdf: &KdfParams,
) -> Result<(Zeroizing<[u8; 32]>, [u8; 8])> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(64))
        .map_err(|e| IdentityError::Crypto(format!("Argon2 parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 64]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut out[..])
        .map_err(|e| IdentityError::Crypto(format!("Argon2: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&out[..32]);
    let mut engine = sha256::Hash::engine();
    bitcoin::hashes::HashEngine::input(&mut engine, KEY_CHECK_LABEL);
    bitcoin::hashes::HashEngine::input(&mut engine, &out[32..]);
    let digest = sha256::Hash::from_engine(engine).to_byte_array();
    let mut check = [0u8; 8];
    check.copy_from_slice(&digest[..8]);
    Ok((key, check))
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| IdentityError::Crypto(format!("the OS random source failed: {e}")))?;
    Ok(b)
}

/// Renders the file text for `identity`.
fn render(
    identity: &Identity,
    file_passphrase: Option<&str>,
    kdf: &KdfParams,
) -> Result<Zeroizing<String>> {
    let mut t = Zeroizing::new(String::with_capacity(1024));
    t.push_str("#+TITLE: meta-log-federation peer identity\n");
    let encryption = if file_passphrase.is_some() {
        t.push_str(
            "# The secret part of this file is encrypted with a passphrase \
             (Argon2id + XChaCha20-Poly1305).\n",
        );
        ENCRYPTION_ARGON2_XCHACHA
    } else {
        t.push_str(
            "# WARNING: this file is UNENCRYPTED. Anyone who can read it can act as this peer.\n\
             # Keep it private, or save it again with a passphrase.\n",
        );
        ENCRYPTION_NONE
    };
    t.push_str("* Identity\n:PROPERTIES:\n");
    t.push_str(&format!(":PEER_ID: {}\n", identity.peer_id()));
    t.push_str(&format!(":PUBLIC_KEY: {}\n", identity.public_key()));
    t.push_str(&format!(":DERIVATION_PATH: {}\n", identity.path()));
    t.push_str(&format!(":FORMAT: {FORMAT}\n"));
    t.push_str(&format!(":ENCRYPTION: {encryption}\n"));
    t.push_str(":END:\n** Secret\n:PROPERTIES:\n");
    match file_passphrase {
        None => {
            t.push_str(":MNEMONIC: ");
            t.push_str(identity.mnemonic());
            t.push('\n');
            let quoted = Zeroizing::new(
                serde_json::to_string(identity.bip39_passphrase())
                    .map_err(|e| IdentityError::Crypto(e.to_string()))?,
            );
            t.push_str(":BIP39_PASSPHRASE: ");
            t.push_str(&quoted);
            t.push_str("\n:END:\n");
        }
        Some(pass) => {
            let salt: [u8; 16] = random()?;
            let nonce: [u8; 24] = random()?;
            let (key, check) = derive_key(pass, &salt, kdf)?;
            let plain = Zeroizing::new(
                serde_json::to_vec(&SecretPlain {
                    mnemonic: identity.mnemonic().to_string(),
                    passphrase: identity.bip39_passphrase().to_string(),
                })
                .map_err(|e| IdentityError::Crypto(e.to_string()))?,
            );
            let cipher = XChaCha20Poly1305::new_from_slice(&key[..])
                .map_err(|e| IdentityError::Crypto(format!("cipher key: {e}")))?;
            let ct = cipher
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &plain,
                        aad: FORMAT.as_bytes(),
                    },
                )
                .map_err(|_| IdentityError::Crypto("encryption failed".to_string()))?;
            t.push_str(":KDF: argon2id\n");
            t.push_str(&format!(":KDF_MEMORY_KIB: {}\n", kdf.memory_kib));
            t.push_str(&format!(":KDF_ITERATIONS: {}\n", kdf.iterations));
            t.push_str(&format!(":KDF_PARALLELISM: {}\n", kdf.parallelism));
            t.push_str(&format!(":SALT: {}\n", Base64::encode_string(&salt)));
            t.push_str(&format!(":NONCE: {}\n", Base64::encode_string(&nonce)));
            t.push_str(&format!(":KEY_CHECK: {}\n", hex::encode(check)));
            t.push_str(&format!(":CIPHERTEXT_BYTES: {}\n", ct.len()));
            t.push_str(":END:\n#+BEGIN_EXAMPLE\n");
            let b64 = Base64::encode_string(&ct);
            for chunk in b64.as_bytes().chunks(64) {
                // Base64 output is ASCII.
                t.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                t.push('\n');
            }
            t.push_str("#+END_EXAMPLE\n");
        }
    }
    Ok(t)
}

/// Saves `identity` to `path`.
///
/// With `file_passphrase` the secret part is encrypted (Argon2id with the
/// default [`KdfParams`], then XChaCha20-Poly1305); with `None` it is
/// written in clear with a warning comment. An empty passphrase is refused.
///
/// The write is atomic: a temporary file with mode 0600 is created in the
/// same directory, written, flushed to disk and then moved into place, so a
/// crash never leaves a half-written identity. An existing file is never
/// replaced unless `overwrite` is true ([`IdentityError::Exists`]).
pub fn save(
    identity: &Identity,
    path: &Path,
    file_passphrase: Option<&str>,
    overwrite: bool,
) -> Result<()> {
    save_with_kdf(
        identity,
        path,
        file_passphrase,
        overwrite,
        &KdfParams::default(),
    )
}

/// [`save`] with explicit Argon2id parameters (e.g. stronger ones).
pub fn save_with_kdf(
    identity: &Identity,
    path: &Path,
    file_passphrase: Option<&str>,
    overwrite: bool,
    kdf: &KdfParams,
) -> Result<()> {
    if file_passphrase == Some("") {
        return Err(IdentityError::BadPassphrase(
            "an empty file passphrase protects nothing: give a real passphrase, \
             or none to save the file unencrypted"
                .to_string(),
        ));
    }
    if !kdf.is_sane() {
        return Err(IdentityError::Crypto(format!(
            "Argon2 parameters out of range: {kdf:?}"
        )));
    }
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(IdentityError::Exists(path.to_path_buf()));
    }
    let text = render(identity, file_passphrase, kdf)?;
    write_atomic(path, text.as_bytes(), overwrite)
}

/// Writes through [`crate::fsutil::write_atomic`], turning "already exists" into
/// [`IdentityError::Exists`].
fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    crate::fsutil::write_atomic(path, bytes, overwrite).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            IdentityError::Exists(path.to_path_buf())
        } else {
            IdentityError::Io(e)
        }
    })
}

/// The parsed file: properties of both drawers and the ciphertext block.
/// The secret drawer's values (the recovery phrase of a plain file) are
/// wiped when it is dropped.
struct Parsed {
    identity: HashMap<String, String>,
    secret: HashMap<String, String>,
    block: Option<String>,
}

impl Drop for Parsed {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for v in self.secret.values_mut() {
            v.zeroize();
        }
    }
}

/// A warning when the identity file at `path` can be read by other users
/// (group or world permission bits), saying how to fix it; `None` when it
/// is private or cannot be examined.
pub fn exposure_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds your secret recovery phrase but other users may read it (mode {mode:04o}); \
             run chmod 600 on it, and treat the identity as exposed if others could log in here",
            path.display()
        )
    })
}

fn parse(text: &str, corrupt: &dyn Fn(String) -> IdentityError) -> Result<Parsed> {
    #[derive(PartialEq, Clone, Copy)]
    enum Where {
        Top,
        Identity,
        IdentityDrawer,
        Secret,
        SecretDrawer,
        Block,
    }
    let mut at = Where::Top;
    let mut identity = HashMap::new();
    let mut secret = HashMap::new();
    let mut block: Option<String> = None;
    let mut block_closed = false;
    let mut seen_identity = false;
    let mut seen_secret = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let lineno = n + 1;
        match at {
            Where::Block => {
                if line.eq_ignore_ascii_case("#+END_EXAMPLE") {
                    block_closed = true;
                    at = Where::Secret;
                } else if let Some(b) = block.as_mut() {
                    b.push_str(line);
                }
                continue;
            }
            Where::IdentityDrawer | Where::SecretDrawer => {
                if line.eq_ignore_ascii_case(":END:") {
                    at = if at == Where::IdentityDrawer {
                        Where::Identity
                    } else {
                        Where::Secret
                    };
                    continue;
                }
                let rest = line.strip_prefix(':').ok_or_else(|| {
                    corrupt(format!(
                        "line {lineno}: expected a :PROPERTY: line or :END:"
                    ))
                })?;
                let (key, value) = rest.split_once(':').ok_or_else(|| {
                    corrupt(format!(
                        "line {lineno}: expected a :PROPERTY: line or :END:"
                    ))
                })?;
                let map = if at == Where::IdentityDrawer {
                    &mut identity
                } else {
                    &mut secret
                };
                if map
                    .insert(key.trim().to_ascii_uppercase(), value.trim().to_string())
                    .is_some()
                {
                    return Err(corrupt(format!(
                        "line {lineno}: property {} appears twice",
                        key.trim()
                    )));
                }
                continue;
            }
            _ => {}
        }
        if line.starts_with('*') {
            let heading = line.trim_start_matches('*').trim();
            let stars = line.len() - line.trim_start_matches('*').len();
            at = match (stars, heading) {
                (1, "Identity") if !seen_identity => {
                    seen_identity = true;
                    Where::Identity
                }
                (2, "Secret") if seen_identity && !seen_secret => {
                    seen_secret = true;
                    Where::Secret
                }
                (1, "Identity") | (2, "Secret") => {
                    return Err(corrupt(format!(
                        "line {lineno}: section {heading} appears twice"
                    )));
                }
                _ => Where::Top,
            };
            continue;
        }
        if line.eq_ignore_ascii_case(":PROPERTIES:") {
            at = match at {
                Where::Identity if identity.is_empty() => Where::IdentityDrawer,
                Where::Secret if secret.is_empty() => Where::SecretDrawer,
                _ => return Err(corrupt(format!("line {lineno}: unexpected :PROPERTIES:"))),
            };
            continue;
        }
        if at == Where::Secret && line.eq_ignore_ascii_case("#+BEGIN_EXAMPLE") {
            if block.is_some() {
                return Err(corrupt(format!("line {lineno}: a second ciphertext block")));
            }
            block = Some(String::new());
            at = Where::Block;
        }
    }
    match at {
        Where::IdentityDrawer | Where::SecretDrawer => {
            return Err(corrupt(
                "a property drawer has no :END: (the file is truncated)".to_string(),
            ));
        }
        Where::Block if !block_closed => {
            return Err(corrupt(
                "the ciphertext block has no #+END_EXAMPLE (the file is truncated)".to_string(),
            ));
        }
        _ => {}
    }
    if !seen_identity || identity.is_empty() {
        return Err(corrupt(
            "no \"* Identity\" section with a property drawer".to_string(),
        ));
    }
    if !seen_secret || secret.is_empty() {
        return Err(corrupt(
            "no \"** Secret\" section with a property drawer (the file is truncated?)".to_string(),
        ));
    }
    Ok(Parsed {
        identity,
        secret,
        block,
    })
}

fn get<'a>(
    map: &'a HashMap<String, String>,
    key: &str,
    corrupt: &dyn Fn(String) -> IdentityError,
) -> Result<&'a str> {
    map.get(key)
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("property {key} is missing")))
}

fn get_u32(
    map: &HashMap<String, String>,
    key: &str,
    corrupt: &dyn Fn(String) -> IdentityError,
) -> Result<u32> {
    get(map, key, corrupt)?
        .parse()
        .map_err(|_| corrupt(format!("property {key} is not a number")))
}

fn get_b64(
    map: &HashMap<String, String>,
    key: &str,
    corrupt: &dyn Fn(String) -> IdentityError,
) -> Result<Vec<u8>> {
    Base64::decode_vec(get(map, key, corrupt)?)
        .map_err(|_| corrupt(format!("property {key} is not valid Base64")))
}

/// Loads an identity file written by [`save`].
///
/// `file_passphrase` is needed for an encrypted file (and ignored for an
/// unencrypted one). Errors, each with its own message:
/// * [`IdentityError::Io`]: the file cannot be read (e.g. it does not exist);
/// * [`IdentityError::CorruptFile`]: not an identity file, truncated, an
///   unknown format version, or a damaged ciphertext;
/// * [`IdentityError::BadPassphrase`]: wrong passphrase, or none given for an
///   encrypted file;
/// * [`IdentityError::KeyMismatch`]: `PEER_ID`, `PUBLIC_KEY` or
///   `DERIVATION_PATH` was edited and no longer matches the secret.
///
/// Loading never modifies the file.
pub fn load(path: &Path, file_passphrase: Option<&str>) -> Result<Identity> {
    let corrupt = |reason: String| IdentityError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(path)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(corrupt(format!(
            "it is {} bytes long, far too large for an identity file",
            meta.len()
        )));
    }
    let raw = Zeroizing::new(fs::read(path)?);
    let text =
        std::str::from_utf8(&raw).map_err(|_| corrupt("it is not UTF-8 text".to_string()))?;
    let parsed = parse(text, &corrupt)?;
    let format = get(&parsed.identity, "FORMAT", &corrupt)?;
    if format != FORMAT {
        return Err(corrupt(format!(
            "unsupported format {format:?}; this version reads {FORMAT}"
        )));
    }
    let peer_id = get(&parsed.identity, "PEER_ID", &corrupt)?;
    let public_key = get(&parsed.identity, "PUBLIC_KEY", &corrupt)?;
    let dpath = get(&parsed.identity, "DERIVATION_PATH", &corrupt)?;
    let encryption = get(&parsed.identity, "ENCRYPTION", &corrupt)?;

    let (mnemonic, bip39_pass) = match encryption {
        ENCRYPTION_NONE => {
            let m = Zeroizing::new(get(&parsed.secret, "MNEMONIC", &corrupt)?.to_string());
            let quoted = get(&parsed.secret, "BIP39_PASSPHRASE", &corrupt)?;
            let p: String = serde_json::from_str(quoted).map_err(|_| {
                corrupt("BIP39_PASSPHRASE is not a JSON string such as \"\"".to_string())
            })?;
            (m, Zeroizing::new(p))
        }
        ENCRYPTION_ARGON2_XCHACHA => {
            let pass = file_passphrase.ok_or_else(|| {
                IdentityError::BadPassphrase(format!(
                    "{} is encrypted: give its passphrase to load it",
                    path.display()
                ))
            })?;
            let s = &parsed.secret;
            let kdf_name = get(s, "KDF", &corrupt)?;
            if kdf_name != "argon2id" {
                return Err(corrupt(format!("unsupported KDF {kdf_name:?}")));
            }
            let kdf = KdfParams {
                memory_kib: get_u32(s, "KDF_MEMORY_KIB", &corrupt)?,
                iterations: get_u32(s, "KDF_ITERATIONS", &corrupt)?,
                parallelism: get_u32(s, "KDF_PARALLELISM", &corrupt)?,
            };
            if !kdf.is_sane() {
                return Err(corrupt(format!("Argon2 parameters out of range: {kdf:?}")));
            }
            let salt = get_b64(s, "SALT", &corrupt)?;
            if !(8..=64).contains(&salt.len()) {
                return Err(corrupt("SALT must be 8 to 64 bytes".to_string()));
            }
            let nonce: [u8; 24] = get_b64(s, "NONCE", &corrupt)?
                .try_into()
                .map_err(|_| corrupt("NONCE must be 24 bytes".to_string()))?;
            let mut check = [0u8; 8];
            hex::decode_to_slice(get(s, "KEY_CHECK", &corrupt)?, &mut check)
                .map_err(|_| corrupt("KEY_CHECK must be 16 hex digits".to_string()))?;
            let ct_len: usize = get(s, "CIPHERTEXT_BYTES", &corrupt)?
                .parse()
                .map_err(|_| corrupt("CIPHERTEXT_BYTES is not a number".to_string()))?;
            let block = parsed.block.as_deref().ok_or_else(|| {
                corrupt("the #+BEGIN_EXAMPLE ciphertext block is missing (truncated?)".to_string())
            })?;
            let ct = Base64::decode_vec(block).map_err(|_| {
                corrupt(
                    "the ciphertext block is not valid Base64 (damaged or truncated)".to_string(),
                )
            })?;
            if ct.len() != ct_len {
                return Err(corrupt(format!(
                    "the ciphertext is {} bytes, the file says {ct_len} (damaged or truncated)",
                    ct.len()
                )));
            }
            let (key, derived_check) = derive_key(pass, &salt, &kdf)?;
            if derived_check != check {
                return Err(IdentityError::BadPassphrase(format!(
                    "wrong passphrase for {}",
                    path.display()
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&key[..])
                .map_err(|e| IdentityError::Crypto(format!("cipher key: {e}")))?;
            let plain = Zeroizing::new(
                cipher
                    .decrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: &ct,
                            aad: FORMAT.as_bytes(),
                        },
                    )
                    .map_err(|_| {
                        corrupt(
                            "the passphrase is right but the encrypted secret was altered \
                             or damaged (authentication failed)"
                                .to_string(),
                        )
                    })?,
            );
            let sp: SecretPlain = serde_json::from_slice(&plain).map_err(|_| {
                corrupt("the decrypted secret is not in the expected form".to_string())
            })?;
            (Zeroizing::new(sp.mnemonic), Zeroizing::new(sp.passphrase))
        }
        other => {
            return Err(corrupt(format!(
                "unknown ENCRYPTION {other:?}; expected {ENCRYPTION_NONE} or {ENCRYPTION_ARGON2_XCHACHA}"
            )));
        }
    };
    if !mnemonic::is_valid(&mnemonic) {
        return Err(corrupt(
            "the recovery phrase in the file is not a valid BIP-39 phrase".to_string(),
        ));
    }
    let identity = Identity::from_mnemonic(&mnemonic, &bip39_pass, dpath).map_err(|e| match e {
        IdentityError::BadPath { .. } => corrupt(format!("DERIVATION_PATH: {e}")),
        other => other,
    })?;
    let mismatch =
        |field: &'static str, in_file: &str, derived: String| IdentityError::KeyMismatch {
            path: path.to_path_buf(),
            field,
            in_file: in_file.to_string(),
            derived,
        };
    if identity.peer_id() != peer_id {
        return Err(mismatch("PEER_ID", peer_id, identity.peer_id()));
    }
    if identity.public_key() != public_key {
        return Err(mismatch("PUBLIC_KEY", public_key, identity.public_key()));
    }
    Ok(identity)
}

/// Creates a new identity: a fresh `words`-word recovery phrase (12 or 24),
/// no BIP-39 passphrase, the NIP-06 path, saved to `path` (encrypted if
/// `file_passphrase` is given). Refuses to overwrite an existing file.
pub fn create(path: &Path, file_passphrase: Option<&str>, words: usize) -> Result<Identity> {
    let phrase = Zeroizing::new(mnemonic::generate(words)?);
    let identity = Identity::from_mnemonic(&phrase, "", DEFAULT_PATH)?;
    save(&identity, path, file_passphrase, false)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PHRASE: &str =
        "leader monkey parrot ring guide accident before fence cannon height naive bean";
    /// Cheap Argon2 parameters so debug-build tests stay fast.
    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn ident() -> Identity {
        Identity::from_mnemonic(PHRASE, "bip39 \"pass\"\nline two", DEFAULT_PATH).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_plain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.org");
        let id = ident();
        save(&id, &p, None, false).unwrap();
        assert_eq!(mode(&p), 0o600);
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("WARNING: this file is UNENCRYPTED"));
        assert!(text.contains(&format!(":PEER_ID: {}", id.peer_id())));
        assert!(text.contains(":ENCRYPTION: none"));
        assert!(text.contains(PHRASE));
        let back = load(&p, None).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(back.bip39_passphrase(), id.bip39_passphrase());
        // A passphrase given for a plain file is ignored.
        assert_eq!(load(&p, Some("x")).unwrap().peer_id(), id.peer_id());
        // Only the final file is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn readable_identity_files_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.org");
        save(&ident(), &p, None, false).unwrap();
        assert_eq!(exposure_warning(&p), None);
        for loose in [0o640, 0o604, 0o644] {
            fs::set_permissions(&p, fs::Permissions::from_mode(loose)).unwrap();
            let w = exposure_warning(&p).expect("a warning");
            assert!(w.contains("chmod 600"), "{w}");
            assert!(w.contains(&format!("{loose:04o}")), "{w}");
            // It still loads: the warning is the caller's to show.
            assert!(load(&p, None).is_ok());
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(exposure_warning(&p), None);
        assert_eq!(exposure_warning(&dir.path().join("missing")), None);
    }

    #[test]
    fn round_trip_encrypted_default_params() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.org");
        let id = ident();
        save(&id, &p, Some("correct horse"), false).unwrap();
        assert_eq!(mode(&p), 0o600);
        let text = fs::read_to_string(&p).unwrap();
        assert!(!text.contains("leader"));
        assert!(!text.contains("UNENCRYPTED"));
        // RFC 9106's second recommended option, within the loader's bounds.
        assert!(text.contains(":KDF_MEMORY_KIB: 65536"));
        assert!(text.contains(":KDF_ITERATIONS: 3"));
        assert!(text.contains(":KDF_PARALLELISM: 4"));
        assert!(KdfParams::default().is_sane());
        assert_eq!(
            KdfParams::default(),
            KdfParams {
                memory_kib: 64 * 1024,
                iterations: 3,
                parallelism: 4
            }
        );
        let back = load(&p, Some("correct horse")).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(back.path(), id.path());
        assert_eq!(back.mnemonic(), PHRASE);
        assert_eq!(back.bip39_passphrase(), id.bip39_passphrase());
    }

    #[test]
    fn create_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peer.org");
        let a = create(&p, None, 24).unwrap();
        assert_eq!(a.mnemonic().split(' ').count(), 24);
        let before = fs::read(&p).unwrap();
        let e = create(&p, None, 12).unwrap_err();
        assert!(matches!(e, IdentityError::Exists(_)), "{e}");
        let e = save(&ident(), &p, None, false).unwrap_err();
        assert!(matches!(e, IdentityError::Exists(_)), "{e}");
        assert_eq!(fs::read(&p).unwrap(), before);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Explicit overwrite works and keeps mode 0600.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        save_with_kdf(&ident(), &p, Some("pw"), true, &FAST).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(load(&p, Some("pw")).unwrap().peer_id(), ident().peer_id());
        assert_eq!(
            create(&dir.path().join("x.org"), None, 13)
                .unwrap_err()
                .to_string(),
            IdentityError::BadWordCount(13).to_string()
        );
        // A dangling symlink counts as existing.
        let link = dir.path().join("link.org");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(matches!(
            save(&ident(), &link, None, false).unwrap_err(),
            IdentityError::Exists(_)
        ));
        assert!(matches!(
            save(&ident(), &dir.path().join("no/such/dir.org"), None, false).unwrap_err(),
            IdentityError::Io(_)
        ));
        assert!(matches!(
            save(&ident(), &p, Some(""), true).unwrap_err(),
            IdentityError::BadPassphrase(_)
        ));
    }

    /// Writes a file, applies `edit` to its text, loads it, and returns the
    /// error, checking that loading left the file untouched.
    fn load_edited(
        pass: Option<&str>,
        load_pass: Option<&str>,
        edit: &dyn Fn(&str) -> String,
    ) -> IdentityError {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.org");
        save_with_kdf(&ident(), &p, pass, false, &FAST).unwrap();
        let edited = edit(&fs::read_to_string(&p).unwrap());
        fs::write(&p, &edited).unwrap();
        let e = load(&p, load_pass).unwrap_err();
        assert_eq!(fs::read_to_string(&p).unwrap(), edited);
        assert!(!e.to_string().contains("leader"), "secret in message: {e}");
        e
    }

    fn corrupt_reason(e: &IdentityError) -> String {
        match e {
            IdentityError::CorruptFile { reason, .. } => reason.clone(),
            other => panic!("expected CorruptFile, got {other:?}: {other}"),
        }
    }

    #[test]
    fn passphrase_errors() {
        let e = load_edited(Some("right"), Some("wrong"), &|t| t.to_string());
        assert!(matches!(e, IdentityError::BadPassphrase(_)), "{e}");
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        let e = load_edited(Some("right"), None, &|t| t.to_string());
        assert!(matches!(e, IdentityError::BadPassphrase(_)), "{e}");
        assert!(e.to_string().contains("is encrypted"), "{e}");
    }

    #[test]
    fn tampered_public_fields() {
        let other = "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573";
        for pass in [None, Some("pw")] {
            let e = load_edited(pass, pass, &|t| {
                let id = ident().peer_id();
                t.replace(&format!(":PEER_ID: {id}"), &format!(":PEER_ID: {other}"))
            });
            assert!(
                matches!(
                    e,
                    IdentityError::KeyMismatch {
                        field: "PEER_ID",
                        ..
                    }
                ),
                "{e}"
            );
            // Flipping the parity prefix of PUBLIC_KEY is caught.
            let e = load_edited(pass, pass, &|t| {
                let pk = ident().public_key();
                let flipped = if pk.starts_with("02") {
                    pk.replacen("02", "03", 1)
                } else {
                    pk.replacen("03", "02", 1)
                };
                t.replace(&pk, &flipped)
            });
            assert!(
                matches!(
                    e,
                    IdentityError::KeyMismatch {
                        field: "PUBLIC_KEY",
                        ..
                    }
                ),
                "{e}"
            );
            let e = load_edited(pass, pass, &|t| {
                t.replace("m/44'/1237'/0'/0/0", "m/44'/1237'/1'/0/0")
            });
            assert!(
                matches!(
                    e,
                    IdentityError::KeyMismatch {
                        field: "PEER_ID",
                        ..
                    }
                ),
                "{e}"
            );
            let e = load_edited(pass, pass, &|t| t.replace("m/44'/1237'/0'/0/0", "m/x"));
            assert!(corrupt_reason(&e).contains("DERIVATION_PATH"), "{e}");
        }
    }

    #[test]
    fn corrupt_files() {
        // (encrypted?, edit, expected words in the reason)
        type Edit = Box<dyn Fn(&str) -> String>;
        let cases: Vec<(Option<&str>, Edit, &str)> = vec![
            (None, Box::new(|_| String::new()), "Identity"),
            (None, Box::new(|_| "hello\n".into()), "Identity"),
            (
                None,
                Box::new(|t| t[..t.len() / 2].to_string()),
                "truncated",
            ),
            (
                Some("pw"),
                Box::new(|t| t[..t.len() / 2].to_string()),
                "truncated",
            ),
            (
                None,
                Box::new(|t| t.replace("meta-log-identity-v1", "meta-log-identity-v9")),
                "unsupported format",
            ),
            (
                None,
                Box::new(|t| t.replace(":ENCRYPTION: none", ":ENCRYPTION: rot13")),
                "unknown ENCRYPTION",
            ),
            (
                None,
                Box::new(|t| t.replace("leader monkey", "leader leader")),
                "recovery phrase",
            ),
            (
                None,
                Box::new(|t| t.replace(":BIP39_PASSPHRASE: \"", ":BIP39_PASSPHRASE: ")),
                "BIP39_PASSPHRASE",
            ),
            (
                None,
                Box::new(|t| t.replace(":MNEMONIC:", ":MNEMONIX:")),
                "MNEMONIC is missing",
            ),
            (
                None,
                Box::new(|t| t.replace(":PEER_ID:", ":PEER_ID: x\n:PEER_ID:")),
                "twice",
            ),
            (
                None,
                Box::new(|t| t.replace(":END:\n** Secret", "** Secret")),
                "expected a :PROPERTY:",
            ),
            (
                Some("pw"),
                Box::new(|t| t.replace(":KDF_MEMORY_KIB: 64", ":KDF_MEMORY_KIB: 99999999")),
                "out of range",
            ),
            (
                Some("pw"),
                Box::new(|t| t.replace(":KDF_ITERATIONS: 1", ":KDF_ITERATIONS: x")),
                "not a number",
            ),
            (
                Some("pw"),
                Box::new(|t| t.replace(":KDF: argon2id", ":KDF: scrypt")),
                "unsupported KDF",
            ),
            (
                Some("pw"),
                Box::new(|t| t.replace("#+END_EXAMPLE\n", "")),
                "truncated",
            ),
            (
                Some("pw"),
                // Drop the last full Base64 line: still valid Base64, but short.
                Box::new(|t| {
                    let lines: Vec<&str> = t.lines().collect();
                    let end = lines.iter().position(|l| *l == "#+END_EXAMPLE").unwrap();
                    let mut v = lines.clone();
                    v.remove(end - 2);
                    v.join("\n") + "\n"
                }),
                "truncated",
            ),
            (
                Some("pw"),
                // Flip one ciphertext character (same length): authentication fails.
                Box::new(|t| {
                    let start = t.find("#+BEGIN_EXAMPLE\n").unwrap() + 16;
                    let mut b = t.as_bytes().to_vec();
                    b[start + 5] = if b[start + 5] == b'A' { b'B' } else { b'A' };
                    String::from_utf8(b).unwrap()
                }),
                "authentication failed",
            ),
            (
                Some("pw"),
                Box::new(|t| t.replace(":NONCE: ", ":NONCE: AAAA")),
                "NONCE",
            ),
            (
                Some("pw"),
                Box::new(|t| t.replace(":SALT: ", ":SALT: *")),
                "SALT",
            ),
        ];
        for (i, (pass, edit, want)) in cases.iter().enumerate() {
            let e = load_edited(*pass, *pass, edit.as_ref());
            let r = corrupt_reason(&e);
            assert!(r.contains(want), "case {i}: {r}");
        }
        // Not UTF-8, and a huge file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin.org");
        fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
        assert!(corrupt_reason(&load(&p, None).unwrap_err()).contains("UTF-8"));
        fs::write(&p, vec![b'a'; 2 * 1024 * 1024]).unwrap();
        assert!(corrupt_reason(&load(&p, None).unwrap_err()).contains("too large"));
        // Missing file: an I/O error.
        assert!(matches!(
            load(&dir.path().join("missing.org"), None).unwrap_err(),
            IdentityError::Io(_)
        ));
    }

    #[test]
    fn notes_and_unknown_properties_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("id.org");
        save_with_kdf(&ident(), &p, Some("pw"), false, &FAST).unwrap();
        let t = fs::read_to_string(&p)
            .unwrap()
            .replace("* Identity\n", "Some notes.\n* Identity\nMore notes.\n")
            .replace(":FORMAT:", ":CREATED: 2026-11-25\n:FORMAT:")
            + "* Another heading\ntext\n";
        fs::write(&p, t).unwrap();
        assert_eq!(load(&p, Some("pw")).unwrap().peer_id(), ident().peer_id());
    }
}
