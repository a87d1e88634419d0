//! The core's rules, asked by Elisp instead of copied into it: share names and share URLs
//! (`crate::sync::share_id`), broker URLs and their redaction (`crate::transport::url`), topic
//! names (`crate::federation::Topics`) and the peer-id predicate
//! (`crate::federation::protocol::is_peer_id`). Each answer comes from the one Rust function
//! that owns the rule, so the two languages can never disagree.

use super::convert::{plist, CallTimer};
use super::errors::{check, guard, meta_log_federation_error, signal, Kind};
use crate::federation::protocol::{is_peer_id, PROTOCOL_VERSION};
use crate::federation::Topics;
use crate::sync::{check_share_name, ShareId};
use crate::transport::url;
use emacs::{defun, Env, IntoLisp, Result, Value};

/// The text of the string `v`; `meta-log-federation-error` (naming `what`) for anything else,
/// or for a string holding raw bytes rather than Unicode text.
fn text(env: &Env, v: Value<'_>, what: &str) -> Result<String> {
    if env.call("stringp", (v,))?.is_not_nil() {
        if let Ok(s) = v.into_rust::<String>() {
            return Ok(s);
        }
        return env.signal(
            meta_log_federation_error,
            (format!(
                "the {what} is not valid Unicode text (it holds raw bytes)"
            ),),
        );
    }
    env.signal(
        meta_log_federation_error,
        (format!("the {what} must be a string"), v),
    )
}

/// Return the federation protocol version this module speaks, a string such as "2".
///
/// Every event carries it in its `v' tag and every presence in its `protocol'
/// field; a peer of another version is refused.
#[defun(name = "-protocol-version")]
fn protocol_version() -> Result<&'static str> {
    Ok(PROTOCOL_VERSION)
}

/// Return non-nil if OBJECT is a peer id: a string of 64 lowercase hexadecimal characters.
#[defun(name = "-valid-peer-id-p")]
fn valid_peer_id_p(env: &Env, object: Value<'_>) -> Result<bool> {
    let _t = CallTimer::start("valid-peer-id-p");
    if !env.call("stringp", (object,))?.is_not_nil() {
        return Ok(false);
    }
    Ok(object
        .into_rust::<String>()
        .map(|s| is_peer_id(&s))
        .unwrap_or(false))
}

/// Return why NAME is not an acceptable share name (a string), or nil if it is.
///
/// A share name is one plain file name, at most 223 bytes in UTF-8, ending
/// with one of the extensions the sync engine accepts (such as .canvasl),
/// without control or invisible format characters, `/', `\\', a leading
/// `.', `..', or a drive prefix.  These are the sync engine's own rules,
/// applied to every name that comes from the network.
#[defun(name = "-share-name-problem")]
fn share_name_problem(env: &Env, name: Value<'_>) -> Result<Option<String>> {
    let _t = CallTimer::start("share-name-problem");
    guard(env, || {
        let name = text(env, name, "share name")?;
        Ok(check_share_name(&name).err().map(|e| e.to_string()))
    })
}

/// Parse the share URL, canvasl://ORIGIN/NAME, and return (ORIGIN . NAME).
///
/// ORIGIN must be a peer id and NAME a share name the sync engine accepts
/// (see `meta-log-federation--share-name-problem').  Signal
/// `meta-log-federation-sync-error' saying what is wrong otherwise.
#[defun(name = "-share-url-parse")]
fn share_url_parse<'e>(env: &'e Env, url: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("share-url-parse");
    guard(env, || {
        let url = text(env, url, "share URL")?;
        let id = check(env, ShareId::parse(&url))?;
        env.cons(id.origin(), id.name())
    })
}

/// Return the share URL of the share NAME from the peer ORIGIN, canvasl://ORIGIN/NAME.
///
/// Signal `meta-log-federation-sync-error' when ORIGIN is not a peer id or
/// NAME not an acceptable share name.
#[defun(name = "-share-url")]
fn share_url(env: &Env, origin: Value<'_>, name: Value<'_>) -> Result<String> {
    let _t = CallTimer::start("share-url");
    guard(env, || {
        let origin = text(env, origin, "origin")?;
        let name = text(env, name, "share name")?;
        Ok(check(env, ShareId::new(&origin, &name))?.url())
    })
}

/// Parse the broker URL and return its parts as a plist.
///
/// URL is mqtt://[USER[:PASSWORD]@]HOST[:PORT], mqtts://... (TLS),
/// ws://[USER[:PASSWORD]@]HOST[:PORT][/PATH] (MQTT over WebSockets) or
/// wss://... (WebSockets over TLS).  Keys: :scheme (\"mqtt\", \"mqtts\",
/// \"ws\" or \"wss\"), :tls and :websocket (non-nil or nil), :host, :port
/// (the scheme's default when the URL has none), :path (WebSockets only,
/// else nil), :user (or nil), :password-p (non-nil when the URL holds a
/// password; the password itself is never returned), :url (the URL
/// without its password) and :redacted (the URL with its password shown
/// as ***).  A malformed URL signals `meta-log-federation-bad-url' saying
/// what is wrong.
#[defun(name = "-broker-url-parts")]
fn broker_url_parts<'e>(env: &'e Env, url: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("broker-url-parts");
    guard(env, || {
        let url = text(env, url, "broker URL")?;
        let u = check(env, url::parse(&url))?;
        let nil = env.intern("nil")?;
        let t = env.intern("t")?;
        let flag = |b: bool| if b { t } else { nil };
        plist(
            env,
            vec![
                (":scheme", u.scheme().into_lisp(env)?),
                (":tls", flag(u.tls)),
                (":websocket", flag(u.websocket)),
                (":host", u.host.clone().into_lisp(env)?),
                (":port", i64::from(u.port).into_lisp(env)?),
                (
                    ":path",
                    if u.websocket {
                        u.path.clone().into_lisp(env)?
                    } else {
                        nil
                    },
                ),
                (
                    ":user",
                    match &u.username {
                        Some(n) => n.clone().into_lisp(env)?,
                        None => nil,
                    },
                ),
                (":password-p", flag(u.password.is_some())),
                (":url", u.without_password().into_lisp(env)?),
                (":redacted", u.redacted().into_lisp(env)?),
            ],
        )
    })
}

/// Return URL with any password replaced by ***, safe to show.
///
/// A valid broker URL comes back in its canonical form (default port
/// written out); any other string has the password of its user
/// information hidden however malformed the rest is.  Never signals for a
/// string.
#[defun(name = "-broker-url-redact")]
fn broker_url_redact(env: &Env, url: Value<'_>) -> Result<String> {
    let _t = CallTimer::start("broker-url-redact");
    guard(env, || Ok(url::redact_any(&text(env, url, "broker URL")?)))
}

/// Return the broker URL with USER and PASSWORD as its login.
///
/// Both are percent-encoded as URLs need; any login URL had is replaced.
/// A malformed URL signals `meta-log-federation-bad-url'.
#[defun(name = "-broker-url-with-login")]
fn broker_url_with_login(
    env: &Env,
    url: Value<'_>,
    user: Value<'_>,
    password: Value<'_>,
) -> Result<String> {
    let _t = CallTimer::start("broker-url-with-login");
    guard(env, || {
        let u = check(env, url::parse(&text(env, url, "broker URL")?))?;
        let user = text(env, user, "user name")?;
        let password = text(env, password, "password")?;
        Ok(u.with_login(&user, &password))
    })
}

/// Return the MQTT topic of KIND under PREFIX, for PEER-ID when KIND needs one.
///
/// PEER-ID is nil for the kinds that need none.
/// KIND is one of the symbols `announce' (PREFIX/peers/announce), `sync'
/// (PREFIX/sync), `presence' (PREFIX/peers/PEER-ID/presence), `messages'
/// (PREFIX/peers/PEER-ID/messages) and `presence-filter'
/// (PREFIX/peers/+/presence).  Signal `meta-log-federation-bad-topic' for
/// an unusable PREFIX and `meta-log-federation-unknown-peer' when PEER-ID
/// is not a peer id.
#[defun(name = "-topic")]
fn topic<'e>(
    env: &'e Env,
    prefix: Value<'e>,
    kind: Value<'e>,
    peer_id: Option<Value<'e>>,
) -> Result<String> {
    let _t = CallTimer::start("topic");
    guard(env, || {
        let topics = check(env, Topics::new(&text(env, prefix, "topic prefix")?))?;
        let kind: String = env.call("symbol-name", (kind,))?.into_rust()?;
        let peer = |env: &Env| -> Result<String> {
            let Some(v) = peer_id else {
                return signal(
                    env,
                    Kind::UnknownPeer,
                    format!("the topic `{kind}' needs a peer id"),
                );
            };
            let id = text(env, v, "peer id")?;
            if !is_peer_id(&id) {
                return signal(
                    env,
                    Kind::UnknownPeer,
                    format!("{id:?} is not a peer id (64 lowercase hex characters)"),
                );
            }
            Ok(id)
        };
        match kind.as_str() {
            "announce" => Ok(topics.announce()),
            "sync" => Ok(topics.sync()),
            "presence-filter" => Ok(topics.presence_filter()),
            "presence" => Ok(topics.presence(&peer(env)?)),
            "messages" => Ok(topics.messages(&peer(env)?)),
            _ => signal(
                env,
                Kind::General,
                format!(
                    "unknown topic kind `{kind}': use announce, sync, presence, messages or \
                     presence-filter"
                ),
            ),
        }
    })
}
