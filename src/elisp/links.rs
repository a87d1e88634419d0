//! The direct-link functions Elisp calls. The session owns the link manager
//! (`Session::set_links`): it publishes over a link to the addressee when one is up, and
//! hands the link signals the node accepts to it. Events received over a link go to the
//! session's worker as MQTT messages do, so they take the very same receive path.

use std::sync::Arc;
use std::time::Duration;

use super::convert::{plist, CallTimer};
use super::errors::{guard, signal, Kind};
use super::identity::now;
use super::mqtt::plist_get;
use super::session::current;
use crate::federation::protocol::{is_peer_id, KIND_LINK_HELLO};
use crate::federation::{Publication, TrustState};
use crate::links::channel::IceServer;
use crate::links::manager::{AutoLinks, LinkEvent, LinkHost, Manager, Settings};
use crate::links::{hello, ice};
use crate::session::{GlobalConnection, Publisher};
use emacs::{defun, Env, IntoLisp, Result, Value};

/// The session's link manager, while direct links run (the session owns it).
fn manager() -> Option<Arc<Manager>> {
    current().and_then(|s| s.links())
}

/// Runs `f` on the session's node, if federation runs.
fn node_do<T>(f: impl FnOnce(&mut crate::federation::Node) -> T) -> Option<T> {
    current().map(|s| s.with_node(f))
}

/// Publishes `p` through the MQTT connection (never over a link).
fn publish_now(p: &Publication) -> std::result::Result<(), String> {
    GlobalConnection
        .publish(&p.topic, p.payload.clone(), p.qos, p.retain)
        .map_err(|e| e.to_string())
}

/// The node side of the link manager in Emacs: the federation node and the MQTT client.
struct EmacsHost;

impl LinkHost for EmacsHost {
    fn send_signal(&self, to: &str, plaintext: &str) -> std::result::Result<(), String> {
        let p = node_do(|n| n.link_signal(to, plaintext, now()))
            .ok_or("federation is not running")?
            .map_err(|e| e.to_string())?;
        publish_now(&p)
    }

    fn sign_hello(&self, to: &str, content: &str) -> std::result::Result<String, String> {
        node_do(|n| {
            n.sign_unpublished(KIND_LINK_HELLO, content, hello::hello_tags(to), now())
                .to_json()
        })
        .ok_or_else(|| "federation is not running".to_string())
    }

    fn deliver(&self, _from: &str, topic: &str, payload: &[u8]) {
        // The session's worker checks and handles it as a message from the broker.
        if let Some(s) = current() {
            s.receive(topic, payload);
        }
    }

    fn link_down(&self, peer: &str) {
        let waiting = node_do(|n| n.outbox().waiting_for(peer)).unwrap_or_default();
        for p in waiting {
            // Unpublished now, sent again by the outbox's own resends later.
            let _ = publish_now(&p);
        }
    }

    fn now(&self) -> u64 {
        now()
    }
}

fn string_list(env: &Env, v: Value<'_>) -> Result<Vec<String>> {
    if v.is_not_nil() && env.call("stringp", (v,))?.is_not_nil() {
        return Ok(vec![v.into_rust()?]);
    }
    let n: i64 = env.call("length", (v,))?.into_rust()?;
    (0..n)
        .map(|i| env.call("nth", (i, v))?.into_rust::<String>())
        .collect()
}

fn ice_servers(env: &Env, list: Value<'_>) -> Result<Vec<IceServer>> {
    let n: i64 = env.call("length", (list,))?.into_rust()?;
    let mut out = Vec::new();
    for i in 0..n {
        let entry = env.call("nth", (i, list))?;
        let urls = match plist_get(env, entry, ":urls")? {
            Some(v) => string_list(env, v)?,
            None => {
                return signal(
                    env,
                    Kind::General,
                    "each entry of `meta-log-federation-ice-servers' needs :urls",
                )
            }
        };
        for u in &urls {
            if let Err(m) = ice::check_url(u) {
                return signal(
                    env,
                    Kind::General,
                    format!("{m}: fix `meta-log-federation-ice-servers'"),
                );
            }
        }
        let text = |k: &str| -> Result<Option<String>> {
            plist_get(env, entry, k)?.map(|v| v.into_rust()).transpose()
        };
        out.push(match text(":secret")? {
            Some(secret) => ice::server_with_secret(
                urls,
                &secret,
                &text(":username")?.unwrap_or_default(),
                now(),
            ),
            None => IceServer {
                urls,
                username: text(":username")?,
                credential: text(":credential")?,
            },
        });
    }
    Ok(out)
}

/// The socket address under KEY of the plist, or None; a value that is not one signals an
/// error naming OPTION and saying what to WRITE.
fn socket_addr<T: std::str::FromStr>(
    env: &Env,
    plist_v: Value<'_>,
    key: &str,
    option: &str,
    write: &str,
) -> Result<Option<T>> {
    let Some(v) = plist_get(env, plist_v, key)? else {
        return Ok(None);
    };
    let s: String = v.into_rust()?;
    match s.parse() {
        Ok(a) => Ok(Some(a)),
        Err(_) => signal(env, Kind::General, format!("{option} is {s:?}: {write}")),
    }
}

/// Start direct links for the running federation node, with the settings in PLIST.
///
/// Keys: :tcp-listen ("HOST:PORT" where the TCP fallback listens, or
/// nil), :tcp-advertise ("HOST:PORT" offered to peers instead of the
/// listener's address, or nil), :ice-servers (as `meta-log-federation-ice-servers'), :auto (nil,
/// t or `on-demand'), :setup-timeout (seconds), :webrtc (non-nil: try a
/// WebRTC data channel before the TCP fallback).  Return the address the
/// TCP fallback listens on, or nil.
///
/// Internal: `meta-log-federation-direct-start' calls it.
#[defun(name = "-links-start")]
fn links_start<'e>(env: &'e Env, plist_v: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("links-start");
    let tcp_listen = socket_addr(
        env,
        plist_v,
        ":tcp-listen",
        "`meta-log-federation-tcp-listen'",
        "write \"HOST:PORT\" with an IP address, e.g. \"0.0.0.0:7448\", or nil",
    )?;
    let tcp_advertise = socket_addr(
        env,
        plist_v,
        ":tcp-advertise",
        "`meta-log-federation-tcp-advertise'",
        "write the public \"HOST:PORT\" (an IP address) forwarded to the listener, or nil",
    )?;
    let ice = match plist_get(env, plist_v, ":ice-servers")? {
        Some(v) => ice_servers(env, v)?,
        None => Vec::new(),
    };
    let auto = match plist_get(env, plist_v, ":auto")? {
        None => AutoLinks::Off,
        Some(v) => auto_links(env, v)?,
    };
    let timeout = super::federation::natnum(env, plist_v, ":setup-timeout", 1, 15)?;
    let webrtc = plist_get(env, plist_v, ":webrtc")?.is_some();
    guard(env, || {
        let Some((me, topics)) = node_do(|n| (n.peer_id().to_string(), n.config().topics())) else {
            return signal(
                env,
                Kind::NotRunning,
                "federation is not running: call meta-log-federation-init first",
            );
        };
        let topics = match topics {
            Ok(t) => t,
            Err(e) => return signal(env, Kind::General, e.to_string()),
        };
        let mut s = Settings::new(&me, topics);
        s.tcp_listen = tcp_listen;
        s.tcp_advertise = tcp_advertise;
        s.ice = ice;
        s.webrtc = webrtc;
        s.auto = auto;
        s.setup_timeout = Duration::from_secs(timeout);
        let Some(session) = current() else {
            return signal(
                env,
                Kind::NotRunning,
                "federation is not running: call meta-log-federation-init first",
            );
        };
        if session.links().is_some() {
            return signal(env, Kind::General, "direct links are already running");
        }
        match Manager::start(Arc::new(EmacsHost), s) {
            Ok(m) => {
                let addr = m.tcp_addr();
                session.set_links(Some(Arc::new(m)));
                match addr {
                    Some(a) => a.to_string().into_lisp(env),
                    None => env.intern("nil"),
                }
            }
            Err(e) => signal(env, Kind::General, e.to_string()),
        }
    })
}

fn auto_links(env: &Env, v: Value<'_>) -> Result<AutoLinks> {
    let name: String = env.call("symbol-name", (v,))?.into_rust()?;
    match name.as_str() {
        "t" => Ok(AutoLinks::All),
        "on-demand" => Ok(AutoLinks::OnDemand),
        _ => signal(
            env,
            Kind::General,
            format!("`meta-log-federation-direct-links' is {name}: use nil, t or on-demand"),
        ),
    }
}

/// Stop direct links (every link closes; traffic goes through the broker).
/// Return non-nil if they were running.
#[defun(name = "-links-stop")]
fn links_stop() -> Result<bool> {
    Ok(current().and_then(|s| s.set_links(None)).is_some())
}

/// Return non-nil if this build can open direct links.
#[defun(name = "-links-available-p")]
fn links_available_p() -> Result<bool> {
    Ok(crate::links::manager::available())
}

fn need_manager(env: &Env) -> Result<Arc<Manager>> {
    match manager() {
        Some(m) => Ok(m),
        None => signal(
            env,
            Kind::NotRunning,
            "direct links are not running: start federation with `meta-log-federation-init'",
        ),
    }
}

/// Open a direct link to PEER-ID; return at once (the link comes up later).
///
/// Internal: use `meta-log-federation-connect-to-peer'.
#[defun(name = "-links-connect")]
fn links_connect(env: &Env, peer_id: String) -> Result<()> {
    let _t = CallTimer::start("links-connect");
    if !is_peer_id(&peer_id) {
        return signal(
            env,
            Kind::UnknownPeer,
            format!("{peer_id:?} is not a peer id (64 lowercase hex characters)"),
        );
    }
    let m = need_manager(env)?;
    let trust = node_do(|n| n.peer(&peer_id).map(|p| p.trust));
    match trust {
        None => signal(env, Kind::NotRunning, "federation is not running"),
        Some(None) => signal(
            env,
            Kind::UnknownPeer,
            format!("peer {peer_id} has not announced itself"),
        ),
        Some(Some(TrustState::Blocked)) => signal(
            env,
            Kind::Trust,
            format!("peer {peer_id} is blocked: unblock it first"),
        ),
        Some(Some(_)) => {
            m.connect(&peer_id);
            Ok(())
        }
    }
}

/// Close the direct link to PEER-ID and stop retrying it.
#[defun(name = "-links-close")]
fn links_close(env: &Env, peer_id: String) -> Result<()> {
    need_manager(env)?.close(&peer_id);
    Ok(())
}

/// Return one plist per direct link.
///
/// Keys: :peer-id, :state (connecting, up, failed or closed), :path
/// (host, srflx, relay, tcp or nil), :rtt-ms (float or nil), :bytes-in,
/// :bytes-out, :error (why it last failed, or nil).
#[defun(name = "-links-list")]
fn links_list(env: &Env) -> Result<Value<'_>> {
    let Some(m) = manager() else {
        return env.intern("nil");
    };
    let nil = env.intern("nil")?;
    let items = m
        .links()
        .into_iter()
        .map(|l| {
            plist(
                env,
                vec![
                    (":peer-id", l.peer.as_str().into_lisp(env)?),
                    (":state", env.intern(l.state.as_str())?),
                    (
                        ":path",
                        match l.path {
                            Some(p) => env.intern(p.as_str())?,
                            None => nil,
                        },
                    ),
                    (
                        ":rtt-ms",
                        match l.rtt_ms {
                            Some(r) => r.into_lisp(env)?,
                            None => nil,
                        },
                    ),
                    (":bytes-in", (l.bytes_in as i64).into_lisp(env)?),
                    (":bytes-out", (l.bytes_out as i64).into_lisp(env)?),
                    (
                        ":error",
                        match &l.last_error {
                            Some(e) => e.as_str().into_lisp(env)?,
                            None => nil,
                        },
                    ),
                ],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    env.list(&items[..])
}

/// Return the link changes since the last call, oldest first.
///
/// Each is (up PEER-ID PATH) or (down PEER-ID REASON).
#[defun(name = "-links-take-events")]
fn links_take_events(env: &Env) -> Result<Value<'_>> {
    let Some(m) = manager() else {
        return env.intern("nil");
    };
    let items = m
        .take_events()
        .into_iter()
        .map(|e| match e {
            LinkEvent::Up { peer, path } => {
                env.list((env.intern("up")?, peer.as_str(), env.intern(path.as_str())?))
            }
            LinkEvent::Down { peer, reason } => {
                env.list((env.intern("down")?, peer.as_str(), reason.as_str()))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    env.list(&items[..])
}

/// Return the direct links' counters as an alist of (NAME . COUNT).
#[defun(name = "-links-counters")]
fn links_counters(env: &Env) -> Result<Value<'_>> {
    let c = manager().map(|m| m.counters()).unwrap_or_default();
    let pairs = [
        ("links-up", c.links_up),
        ("setup-failed", c.setup_failed),
        ("bad-hello", c.bad_hello),
        ("bad-fingerprint", c.bad_fingerprint),
        ("rate-limited", c.rate_limited),
        ("glare", c.glare),
        ("stale-session", c.stale_session),
        ("malformed-signals", c.malformed_signals),
        ("link-foreign", c.link_foreign),
        ("malformed-frames", c.malformed_frames),
        ("carried", c.carried),
        ("received", c.received),
    ];
    let items = pairs
        .iter()
        .map(|(k, v)| env.cons(env.intern(k)?, *v as i64))
        .collect::<Result<Vec<_>>>()?;
    env.list(&items[..])
}

/// Return coturn REST credentials (USERNAME PASSWORD) for SECRET and USER.
///
/// They stay valid for TTL seconds (coturn's `use-auth-secret').
#[defun(name = "-links-rest-credentials")]
fn links_rest_credentials(env: &Env, secret: String, user: String, ttl: i64) -> Result<Value<'_>> {
    let ttl = u64::try_from(ttl).unwrap_or(ice::DEFAULT_REST_TTL_SECS);
    let (u, p) = ice::rest_credentials(&secret, &user, now(), ttl);
    env.list((u.as_str(), p.as_str()))
}
