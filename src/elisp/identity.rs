//! The identity functions that Elisp calls: recovery phrases, peer identities (kept inside the
//! module as opaque `user-ptr` objects, so the private key never becomes a Lisp string),
//! identity files, and signing and verifying NIP-01 events.
//!
//! Functions with optional arguments are internal (`meta-log-federation--...`) and wrapped in
//! `lisp/meta-log-federation-identity.el`; the others are the public API as they are.

use super::convert::CallTimer;
use super::errors::{guard, meta_log_federation_error, signal, ElispError, Kind};
use crate::identity::event::{self, SignedEvent, VerifyError};
use crate::identity::{file, mnemonic, Identity, IdentityError};
use emacs::{defun, use_symbols, Env, IntoLisp, Result, Transfer, Value};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

use_symbols! {
    sym_wrong_type_argument => "wrong-type-argument"
    sym_args_out_of_range => "args-out-of-range"
    sym_stringp => "stringp"
    sym_listp => "listp"
    sym_integerp => "integerp"
    sym_identity_p => "meta-log-federation-identity-p"
    kw_id => ":id"
    kw_pubkey => ":pubkey"
    kw_created_at => ":created-at"
    kw_kind => ":kind"
    kw_tags => ":tags"
    kw_content => ":content"
    kw_sig => ":sig"
}

/// Identities travel to Lisp as `user-ptr` objects of this type; Lisp can only hand them back.
impl Transfer for Identity {
    fn type_name() -> &'static str {
        "meta-log-federation-identity"
    }
}

/// The reason of the most recent failed `verify-event`: (reason name, message).
static LAST_VERIFY_FAILURE: Mutex<Option<(&'static str, String)>> = Mutex::new(None);

fn set_last_failure(v: Option<(&'static str, String)>) {
    *LAST_VERIFY_FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = v;
}

/// Signals `e` as the error table maps it (`super::errors`); `file` completes I/O messages,
/// which do not name the file themselves.
fn identity_error<T>(env: &Env, e: IdentityError, file: Option<&Path>) -> Result<T> {
    let msg = match (&e, file) {
        (IdentityError::Io(io), Some(f)) => format!("{}: {io}", f.display()),
        _ => e.message(),
    };
    signal(env, e.kind(), msg)
}

fn wrong_type<'e, T>(env: &'e Env, predicate: &emacs::OnceGlobalRef, v: Value<'e>) -> Result<T> {
    env.signal(sym_wrong_type_argument, (predicate.bind(env), v))
}

/// The identity in `v`, or a `wrong-type-argument` signal naming the predicate.
pub(super) fn identity_arg<'e>(env: &'e Env, v: Value<'e>) -> Result<&'e Identity> {
    match v.into_rust::<&Identity>() {
        Ok(id) => Ok(id),
        Err(_) => wrong_type(env, sym_identity_p, v),
    }
}

/// The text of `v` if it is a string holding valid Unicode text, else `None`. Never signals.
fn text_of(v: Value<'_>) -> Option<String> {
    v.into_rust::<String>().ok()
}

/// The text of a string argument; `wrong-type-argument` if it is not a string, and
/// `meta-log-federation-error` if it is a string with raw bytes (not Unicode text).
fn string_arg<'e>(env: &'e Env, v: Value<'e>) -> Result<String> {
    match text_of(v) {
        Some(s) => Ok(s),
        None if env.call("stringp", (v,))?.is_not_nil() => env.signal(
            meta_log_federation_error,
            (
                "the string is not valid Unicode text (it holds raw bytes)",
                v,
            ),
        ),
        None => wrong_type(env, sym_stringp, v),
    }
}

/// The length of a proper list, or `None` (dotted or circular lists, non-lists).
fn proper_length(env: &Env, v: Value<'_>) -> Result<Option<usize>> {
    if v.is_not_nil() {
        let n = env.call("proper-list-p", (v,))?;
        Ok(if n.is_not_nil() {
            Some(n.into_rust::<i64>()? as usize)
        } else {
            None
        })
    } else {
        Ok(Some(0))
    }
}

/// The elements of a proper list; `wrong-type-argument` otherwise.
fn list_items<'e>(env: &'e Env, list: Value<'e>) -> Result<Vec<Value<'e>>> {
    let Some(n) = proper_length(env, list)? else {
        return wrong_type(env, sym_listp, list);
    };
    let mut items = Vec::with_capacity(n);
    let mut rest = list;
    for _ in 0..n {
        items.push(rest.car()?);
        rest = rest.cdr()?;
    }
    Ok(items)
}

fn file_arg(file: &str) -> PathBuf {
    PathBuf::from(file)
}

fn secret_arg(v: Option<String>) -> Option<Zeroizing<String>> {
    v.map(Zeroizing::new)
}

// ---------------------------------------------------------------------------------------------
// Recovery phrases

/// Return a new random recovery phrase of WORDS words (12 or 24).
///
/// Internal: use `meta-log-federation-mnemonic-generate'.
#[defun(name = "-mnemonic-generate")]
fn mnemonic_generate(env: &Env, words: i64) -> Result<String> {
    let _t = CallTimer::start("mnemonic-generate");
    guard(env, || {
        let n = match usize::try_from(words) {
            Ok(n) => n,
            Err(_) => {
                return signal(
                    env,
                    Kind::Identity,
                    format!("cannot generate a {words}-word recovery phrase: use 12 or 24 words"),
                )
            }
        };
        mnemonic::generate(n).or_else(|e| identity_error(env, e, None))
    })
}

/// Return t if MNEMONIC is a valid English BIP-39 recovery phrase, else nil.
///
/// Valid means: every word is in the BIP-39 English word list, there are
/// 12, 15, 18, 21 or 24 of them, and the checksum matches.  Case and extra
/// whitespace do not matter.  Never signals for a string.
#[defun(name = "mnemonic-valid-p")]
fn mnemonic_valid_p<'e>(env: &'e Env, mnemonic: Value<'e>) -> Result<bool> {
    let _t = CallTimer::start("mnemonic-valid-p");
    guard(env, || match text_of(mnemonic) {
        Some(s) => Ok(mnemonic::is_valid(&s)),
        None if env.call("stringp", (mnemonic,))?.is_not_nil() => Ok(false),
        None => wrong_type(env, sym_stringp, mnemonic),
    })
}

// ---------------------------------------------------------------------------------------------
// Identities

/// Derive the identity of MNEMONIC with BIP-39 PASSPHRASE along PATH.
///
/// Internal: use `meta-log-federation-identity-from-mnemonic'.
#[defun(user_ptr(direct), name = "-identity-from-mnemonic")]
fn identity_from_mnemonic(
    env: &Env,
    mnemonic: String,
    passphrase: String,
    path: String,
) -> Result<Identity> {
    let _t = CallTimer::start("identity-from-mnemonic");
    let mnemonic = Zeroizing::new(mnemonic);
    let passphrase = Zeroizing::new(passphrase);
    guard(env, || {
        Identity::from_mnemonic(&mnemonic, &passphrase, &path)
            .or_else(|e| identity_error(env, e, None))
    })
}

/// Return t if OBJECT is a peer identity made by meta-log-federation, else nil.
///
/// Identities come from `meta-log-federation-identity-from-mnemonic',
/// `meta-log-federation-identity-create' and
/// `meta-log-federation-identity-load'.
#[defun(name = "identity-p")]
fn identity_p(object: Value<'_>) -> Result<bool> {
    let _t = super::convert::CallTimer::start("identity-p");
    Ok(object.into_rust::<&Identity>().is_ok())
}

/// Return the peer id of IDENTITY: its x-only public key as 64 hex digits.
///
/// This is the `pubkey' of the events IDENTITY signs (Nostr NIP-01).
#[defun(name = "identity-peer-id")]
fn identity_peer_id<'e>(env: &'e Env, identity: Value<'e>) -> Result<String> {
    let _t = CallTimer::start("identity-peer-id");
    Ok(identity_arg(env, identity)?.peer_id())
}

/// Return the compressed public key of IDENTITY as 66 hex digits.
///
/// It is the peer id with a leading 02 or 03 byte (SEC1 compressed form).
#[defun(name = "identity-public-key")]
fn identity_public_key<'e>(env: &'e Env, identity: Value<'e>) -> Result<String> {
    let _t = CallTimer::start("identity-public-key");
    Ok(identity_arg(env, identity)?.public_key())
}

/// Return the BIP-32 derivation path of IDENTITY, such as "m/44'/1237'/0'/0/0".
#[defun(name = "identity-path")]
fn identity_path<'e>(env: &'e Env, identity: Value<'e>) -> Result<String> {
    let _t = super::convert::CallTimer::start("identity-path");
    Ok(identity_arg(env, identity)?.path().to_string())
}

// ---------------------------------------------------------------------------------------------
// Identity files

/// Create a new identity (WORDS words, derivation PATH) and save it in FILE.
///
/// Internal: use `meta-log-federation-identity-create'.
#[defun(user_ptr(direct), name = "-identity-create")]
fn identity_create(
    env: &Env,
    file: String,
    passphrase: Option<String>,
    words: i64,
    path: String,
) -> Result<Identity> {
    let _t = CallTimer::start("identity-create");
    let passphrase = secret_arg(passphrase);
    guard(env, || {
        let target = file_arg(&file);
        let words = usize::try_from(words).unwrap_or(0);
        let phrase =
            Zeroizing::new(mnemonic::generate(words).or_else(|e| identity_error(env, e, None))?);
        let id = Identity::from_mnemonic(&phrase, "", &path)
            .or_else(|e| identity_error(env, e, None))?;
        file::save(&id, &target, passphrase.as_ref().map(|p| p.as_str()), false)
            .or_else(|e| identity_error(env, e, Some(&target)))?;
        Ok(id)
    })
}

/// Load the identity saved in FILE, decrypting it with PASSPHRASE.
///
/// Internal: use `meta-log-federation-identity-load'.
#[defun(user_ptr(direct), name = "-identity-load")]
fn identity_load(env: &Env, file: String, passphrase: Option<String>) -> Result<Identity> {
    let _t = CallTimer::start("identity-load");
    let passphrase = secret_arg(passphrase);
    guard(env, || {
        let target = file_arg(&file);
        file::load(&target, passphrase.as_ref().map(|p| p.as_str()))
            .or_else(|e| identity_error(env, e, Some(&target)))
    })
}

/// Save IDENTITY in FILE, encrypted with PASSPHRASE if non-nil.
///
/// Internal: use `meta-log-federation-identity-save'.
#[defun(name = "-identity-save")]
fn identity_save<'e>(
    env: &'e Env,
    identity: Value<'e>,
    file: String,
    passphrase: Option<String>,
    overwrite: Value<'e>,
) -> Result<()> {
    let _t = CallTimer::start("identity-save");
    let passphrase = secret_arg(passphrase);
    let id = identity_arg(env, identity)?;
    guard(env, || {
        let target = file_arg(&file);
        file::save(
            id,
            &target,
            passphrase.as_ref().map(|p| p.as_str()),
            overwrite.is_not_nil(),
        )
        .or_else(|e| identity_error(env, e, Some(&target)))
    })
}

// ---------------------------------------------------------------------------------------------
// Events

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn tags_arg<'e>(env: &'e Env, tags: Value<'e>) -> Result<Vec<Vec<String>>> {
    list_items(env, tags)?
        .into_iter()
        .map(|tag| {
            list_items(env, tag)?
                .into_iter()
                .map(|s| string_arg(env, s))
                .collect()
        })
        .collect()
}

/// Sign a new event as IDENTITY with KIND, CONTENT and TAGS; return its JSON.
///
/// Internal: use `meta-log-federation-sign-event'.
#[defun(name = "-sign-event")]
fn sign_event<'e>(
    env: &'e Env,
    identity: Value<'e>,
    kind: Value<'e>,
    content: Value<'e>,
    tags: Value<'e>,
) -> Result<String> {
    let _t = CallTimer::start("sign-event");
    let id = identity_arg(env, identity)?;
    let Ok(k) = kind.into_rust::<i64>() else {
        return wrong_type(env, sym_integerp, kind);
    };
    let Ok(k) = u16::try_from(k) else {
        return env.signal(sym_args_out_of_range, (kind, 0, i64::from(u16::MAX)));
    };
    let content = string_arg(env, content)?;
    let tags = tags_arg(env, tags)?;
    guard(env, || {
        Ok(event::sign(id, k, &content, tags, now()).to_json())
    })
}

fn u64_to_lisp(env: &Env, n: u64) -> Result<Value<'_>> {
    match i64::try_from(n) {
        Ok(i) => i.into_lisp(env),
        Err(_) => env.call("string-to-number", (n.to_string(),)),
    }
}

/// A verified event as the plist `(:id :pubkey :created-at :kind :tags :content :sig)`.
fn event_plist<'e>(env: &'e Env, ev: &SignedEvent) -> Result<Value<'e>> {
    let tags = ev
        .tags
        .iter()
        .map(|t| {
            let items = t
                .iter()
                .map(|s| s.as_str().into_lisp(env))
                .collect::<Result<Vec<_>>>()?;
            env.list(&items[..])
        })
        .collect::<Result<Vec<_>>>()?;
    let items = [
        kw_id.bind(env),
        ev.id.as_str().into_lisp(env)?,
        kw_pubkey.bind(env),
        ev.pubkey.as_str().into_lisp(env)?,
        kw_created_at.bind(env),
        u64_to_lisp(env, ev.created_at)?,
        kw_kind.bind(env),
        i64::from(ev.kind).into_lisp(env)?,
        kw_tags.bind(env),
        env.list(&tags[..])?,
        kw_content.bind(env),
        ev.content.as_str().into_lisp(env)?,
        kw_sig.bind(env),
        ev.sig.as_str().into_lisp(env)?,
    ];
    env.list(&items[..])
}

/// Why a Lisp value that is not valid Unicode text is not an event.
fn not_text(env: &Env, v: Value<'_>) -> (&'static str, String) {
    let is_string = env
        .call("stringp", (v,))
        .map(|s| s.is_not_nil())
        .unwrap_or(false);
    if is_string {
        (
            VerifyError::MalformedJson(String::new()).reason(),
            "event is not valid JSON: the string is not valid Unicode text".to_string(),
        )
    } else {
        ("not-a-string", "event is not a string".to_string())
    }
}

/// Verify the signed event in the string JSON; return it as a plist, or nil.
///
/// The value is (:id ID :pubkey PUBKEY :created-at SECONDS :kind KIND
/// :tags TAGS :content CONTENT :sig SIG) when JSON is a well-formed
/// Nostr NIP-01 event whose id matches its contents and whose BIP-340
/// signature verifies.  Otherwise the value is nil and
/// `meta-log-federation-verify-event-reason' tells why.  Never signals,
/// whatever JSON is (a non-string gives nil too).  To check many events,
/// `meta-log-federation-verify-events' is faster.
#[defun(name = "verify-event")]
fn verify_event<'e>(env: &'e Env, json: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("verify-event");
    guard(env, || {
        let failure = match text_of(json) {
            None => not_text(env, json),
            Some(text) => match event::verify_json(&text) {
                Ok(ev) => {
                    set_last_failure(None);
                    return event_plist(env, &ev);
                }
                Err(e) => (e.reason(), e.to_string()),
            },
        };
        set_last_failure(Some(failure));
        ().into_lisp(env)
    })
}

/// Return why the last `meta-log-federation-verify-event' refused an event.
///
/// The value is (REASON . MESSAGE): REASON is one of the symbols
/// `too-large', `malformed-json', `bad-field', `bad-hex', `id-mismatch',
/// `bad-pubkey', `bad-signature' and `not-a-string'; MESSAGE is a sentence
/// for humans.  The value is nil when the last verification succeeded (or
/// none was made).  `meta-log-federation-verify-events' does not change it.
#[defun(name = "verify-event-reason")]
fn verify_event_reason(env: &Env) -> Result<Value<'_>> {
    let _t = super::convert::CallTimer::start("verify-event-reason");
    let last = LAST_VERIFY_FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    match last {
        None => ().into_lisp(env),
        Some((reason, message)) => env.cons(env.intern(reason)?, message),
    }
}

/// Verify every event in the list EVENTS; return a list of plists and nils.
///
/// Each element of EVENTS is a string of JSON, as for
/// `meta-log-federation-verify-event'; the value has one element per
/// event, in the same order: the event's plist if it verifies, nil if
/// not (non-strings give nil too).  One call verifies the whole list,
/// sharing work between events of the same signer, so this is the fast
/// way to check a batch received from other peers.  Signals only when
/// EVENTS is not a proper list.
#[defun(name = "verify-events")]
fn verify_events<'e>(env: &'e Env, events: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("verify-events");
    guard(env, || {
        let items = list_items(env, events)?;
        let texts: Vec<Option<String>> = items.iter().map(|v| text_of(*v)).collect();
        let refs: Vec<&str> = texts.iter().filter_map(|t| t.as_deref()).collect();
        let mut results = event::verify_batch(&refs).into_iter();
        let nil = ().into_lisp(env)?;
        let mut out = Vec::with_capacity(texts.len());
        for text in &texts {
            let value = match text {
                None => nil,
                Some(_) => match results.next() {
                    Some(Ok(ev)) => event_plist(env, &ev)?,
                    _ => nil,
                },
            };
            out.push(value);
        }
        env.list(&out[..])
    })
}

// ---------------------------------------------------------------------------------------------
// Benchmark

/// Return bare libsecp256k1 Schnorr verifications per second, measured on N signatures.
///
/// Internal, for bench/identity-bench.el: N events are signed first
/// (not timed), then only the verification of their (id, signature,
/// public key) triples is timed, with no JSON and no Lisp involved.
#[defun(name = "-bench-bare-verify")]
fn bench_bare_verify(env: &Env, n: i64) -> Result<f64> {
    let _t = super::convert::CallTimer::start("bench-bare-verify");
    guard(env, || {
        if !(1..=1_000_000).contains(&n) {
            return env.signal(sym_args_out_of_range, (n, 1, 1_000_000));
        }
        let events = match crate::identity::bench::sample_events(n as usize) {
            Ok(ev) => ev,
            Err(e) => return signal(env, Kind::General, e),
        };
        let (ok, time) = crate::identity::bench::bare_verify(&events);
        let secs = time.as_secs_f64().max(1e-9);
        if ok != events.len() {
            return signal(
                env,
                Kind::General,
                format!("benchmark: only {ok} of {n} signatures verified"),
            );
        }
        Ok(n as f64 / secs)
    })
}
