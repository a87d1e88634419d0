//! The federation functions Elisp calls. The [`crate::session::Session`] owns the node and
//! handles every received message on its own worker; these functions convert arguments and
//! results, sign what Elisp sends (a few tens of microseconds) and hand it to the MQTT client.

use std::path::PathBuf;

use super::convert::{counts_alist, plist, CallTimer};
use super::errors::{check, guard, raise, signal, Kind};
use super::identity::{identity_arg, now};
use super::mqtt::plist_get;
pub(super) use super::session::with_node;
use super::session::{send_error, with_session};
use crate::federation::{
    Config, LocalProfile, Node, PeerInfo, Publication, SyncKind, Transition, TrustPolicy,
};
use emacs::{defun, Env, IntoLisp, Result, Value};

/// Whether federation runs.
pub fn running() -> bool {
    super::session::running()
}

fn publish(env: &Env, p: Publication) -> Result<String> {
    match with_session(env, |s| Ok(s.publish(p)))? {
        Ok(id) => Ok(id),
        Err(e) => send_error(env, e),
    }
}

fn policy_of(env: &Env, v: Value<'_>) -> Result<TrustPolicy> {
    let name: String = env.call("symbol-name", (v,))?.into_rust()?;
    match name.parse::<TrustPolicy>() {
        Ok(p) => Ok(p),
        Err(_) => signal(
            env,
            Kind::General,
            format!("unknown trust policy `{name}`: use tofu, allowlist or open"),
        ),
    }
}

pub(super) fn natnum(
    env: &Env,
    plist: Value<'_>,
    key: &str,
    min: u64,
    default: u64,
) -> Result<u64> {
    match plist_get(env, plist, key)? {
        None => Ok(default),
        Some(v) => match v.into_rust::<i64>() {
            Ok(n) if n >= 0 && n as u64 >= min => Ok(n as u64),
            _ => signal(
                env,
                Kind::General,
                format!("{key} must be an integer of at least {min}"),
            ),
        },
    }
}

fn config_from_plist(env: &Env, plist: Value<'_>) -> Result<Config> {
    let d = Config::default();
    let prefix = match plist_get(env, plist, ":prefix")? {
        Some(v) => v.into_rust::<String>()?,
        None => d.prefix.clone(),
    };
    let policy = match plist_get(env, plist, ":policy")? {
        Some(v) => policy_of(env, v)?,
        None => d.policy,
    };
    Ok(Config {
        prefix,
        max_event_bytes: natnum(
            env,
            plist,
            ":max-event-bytes",
            1024,
            d.max_event_bytes as u64,
        )? as usize,
        max_age_secs: natnum(env, plist, ":max-age", 1, d.max_age_secs)?,
        max_future_secs: natnum(env, plist, ":max-future", 1, d.max_future_secs)?,
        replay_capacity: natnum(env, plist, ":replay-capacity", 1, d.replay_capacity as u64)?
            as usize,
        stale_after_secs: natnum(env, plist, ":stale-after", 1, d.stale_after_secs)?,
        max_peers: natnum(env, plist, ":max-peers", 1, d.max_peers as u64)? as usize,
        policy,
    })
}

/// Start a federation node for IDENTITY with the settings in PLIST.
///
/// Keys: :name, :software, :capabilities (list of strings), :prefix,
/// :policy (tofu, allowlist or open), :trust-file, :max-event-bytes,
/// :max-age, :max-future, :replay-capacity, :stale-after, :max-peers.
/// Return the list of (FILTER QOS) to subscribe to.
///
/// Internal: use `meta-log-federation-init'.
#[defun(name = "-federation-start")]
fn federation_start<'e>(env: &'e Env, identity: Value<'e>, plist: Value<'e>) -> Result<Value<'e>> {
    let _t = CallTimer::start("federation-start");
    let identity = identity_arg(env, identity)?.clone();
    let config = config_from_plist(env, plist)?;
    let name = match plist_get(env, plist, ":name")? {
        Some(v) => v.into_rust::<String>()?,
        None => String::new(),
    };
    let software = match plist_get(env, plist, ":software")? {
        Some(v) => v.into_rust::<String>()?,
        None => format!("meta-log-federation/{}", crate::VERSION),
    };
    let mut capabilities = Vec::new();
    if let Some(list) = plist_get(env, plist, ":capabilities")? {
        let n: i64 = env.call("length", (list,))?.into_rust()?;
        for i in 0..n {
            capabilities.push(env.call("nth", (i, list))?.into_rust::<String>()?);
        }
    }
    let trust_path = match plist_get(env, plist, ":trust-file")? {
        Some(v) => Some(PathBuf::from(
            env.call("expand-file-name", (v,))?.into_rust::<String>()?,
        )),
        None => None,
    };
    guard(env, || {
        if running() {
            return signal(env, Kind::General, "federation is already running");
        }
        let profile = LocalProfile {
            name,
            software,
            capabilities,
        };
        let node = match Node::new(identity, config, profile, trust_path, now()) {
            Ok(n) => n,
            Err(e) => return raise(env, e),
        };
        let subs = node.subscriptions();
        if let Err(e) = super::session::start(node) {
            return signal(
                env,
                Kind::General,
                format!("cannot start the federation session's thread: {e}"),
            );
        }
        let items = subs
            .into_iter()
            .map(|(f, q)| env.list((f, i64::from(q))))
            .collect::<Result<Vec<_>>>()?;
        env.list(&items[..])
    })
}

/// Forget the federation node (after the departure was published).
///
/// Return non-nil if there was one.
#[defun(name = "-federation-stop")]
fn federation_stop() -> Result<bool> {
    let _t = CallTimer::start("federation-stop");
    // Elisp saved (and reported a failure) just before; this is a last try.
    if let Some(s) = super::session::current() {
        let _ = s.with_node(|n| n.save_delivery());
    }
    Ok(super::session::stop())
}

/// Return non-nil while a federation node exists.
#[defun(name = "-federation-running-p")]
fn federation_running_p() -> Result<bool> {
    let _t = super::convert::CallTimer::start("federation-running-p");
    Ok(running())
}

/// Publish our presence (retained) and its announcement copy.
///
/// Return the presence event's id.
#[defun(name = "-federation-announce")]
fn federation_announce(env: &Env) -> Result<String> {
    let _t = CallTimer::start("federation-announce");
    guard(env, || {
        let pubs = with_node(env, |n| match n.announce(now()) {
            Ok(p) => Ok(p),
            Err(e) => raise(env, e),
        })?;
        let mut first = String::new();
        for p in pubs {
            let id = publish(env, p)?;
            if first.is_empty() {
                first = id;
            }
        }
        Ok(first)
    })
}

/// Publish our departure with REASON (retained, replacing our presence).
#[defun(name = "-federation-depart")]
fn federation_depart(env: &Env, reason: String) -> Result<String> {
    let _t = CallTimer::start("federation-depart");
    guard(env, || {
        let p = with_node(env, |n| match n.departure(&reason, now()) {
            Ok(p) => Ok(p),
            Err(e) => raise(env, e),
        })?;
        publish(env, p)
    })
}

/// Encrypt TEXT to PEER-ID, sign it and publish it; return the event id.
///
/// Internal: use `meta-log-federation-send-peer-message'.
#[defun(name = "-federation-send-peer-message")]
fn federation_send_peer_message(env: &Env, peer_id: String, text: String) -> Result<String> {
    let _t = CallTimer::start("federation-send-peer-message");
    guard(env, || {
        let prepared = with_node(env, |n| {
            match n.prepare_peer_message(&peer_id, &text, now()) {
                Ok(p) => Ok(p),
                Err(e) => raise(env, e),
            }
        })?;
        // The id is known now; the signature (most of the cost) is made on the session's
        // worker, which then publishes: the message is in the outbox from there on, so a
        // failure to publish is retried like a lost one.
        let id = prepared.event_id.clone();
        with_session(env, |s| {
            s.node_op_queued(
                "a peer message could not be published now (it stays in the outbox and is resent)",
                move |n| n.finish_peer_message(prepared),
            );
            Ok(())
        })?;
        Ok(id)
    })
}

fn sync_kind(env: &Env, v: Value<'_>) -> Result<SyncKind> {
    let name: String = env.call("symbol-name", (v,))?.into_rust()?;
    match name.as_str() {
        "change" => Ok(SyncKind::Change),
        "request" => Ok(SyncKind::Request),
        "response" => Ok(SyncKind::Response),
        _ => signal(
            env,
            Kind::General,
            format!("unknown sync kind `{name}`: use change, request or response"),
        ),
    }
}

pub(super) fn tags_from_lisp(env: &Env, tags: Value<'_>) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    let n: i64 = env.call("length", (tags,))?.into_rust()?;
    for i in 0..n {
        let tag = env.call("nth", (i, tags))?;
        let m: i64 = env.call("length", (tag,))?.into_rust()?;
        let mut v = Vec::new();
        for j in 0..m {
            v.push(env.call("nth", (j, tag))?.into_rust::<String>()?);
        }
        out.push(v);
    }
    Ok(out)
}

/// Sign and publish a sync event of KIND (change, request, response) with CONTENT and TAGS.
///
/// Return the event id.
#[defun(name = "-federation-publish-sync")]
fn federation_publish_sync<'e>(
    env: &'e Env,
    kind: Value<'e>,
    content: String,
    tags: Value<'e>,
) -> Result<String> {
    let _t = CallTimer::start("federation-publish-sync");
    let kind = sync_kind(env, kind)?;
    let tags = tags_from_lisp(env, tags)?;
    guard(env, || {
        let p = with_node(env, |n| match n.sync(kind, &content, tags, now()) {
            Ok(p) => Ok(p),
            Err(e) => raise(env, e),
        })?;
        publish(env, p)
    })
}

fn transition_to_lisp<'e>(env: &'e Env, t: &Transition) -> Result<Value<'e>> {
    let kind = env.intern(t.kind())?;
    match t {
        Transition::CameOnline { peer_id, name } => {
            env.list((kind, peer_id.as_str(), name.as_str()))
        }
        Transition::WentOffline { peer_id, graceful } => {
            env.list((kind, peer_id.as_str(), *graceful))
        }
        Transition::WentStale { peer_id } | Transition::Resumed { peer_id } => {
            env.list((kind, peer_id.as_str()))
        }
        Transition::KeyConflict {
            name,
            known_peer_id,
            new_peer_id,
        } => env.list((
            kind,
            new_peer_id.as_str(),
            name.as_str(),
            known_peer_id.as_str(),
        )),
    }
}

fn transitions_to_lisp<'e>(env: &'e Env, ts: &[Transition]) -> Result<Value<'e>> {
    let v = ts
        .iter()
        .map(|t| transition_to_lisp(env, t))
        .collect::<Result<Vec<_>>>()?;
    env.list(&v[..])
}

/// Mark peers silent for too long as stale; return the transitions.
#[defun(name = "-federation-tick")]
fn federation_tick(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-tick");
    guard(env, || {
        let ts = with_node(env, |n| Ok(n.tick(now())))?;
        transitions_to_lisp(env, &ts)
    })
}

fn peer_to_lisp<'e>(env: &'e Env, p: &PeerInfo, topic: String) -> Result<Value<'e>> {
    let caps = p
        .capabilities
        .iter()
        .map(|c| c.as_str().into_lisp(env))
        .collect::<Result<Vec<_>>>()?;
    plist(
        env,
        vec![
            (":peer-id", p.peer_id.as_str().into_lisp(env)?),
            (":name", p.name.as_str().into_lisp(env)?),
            (":status", env.intern(p.status.as_str())?),
            (":last-seen", (p.last_seen as i64).into_lisp(env)?),
            (":software", p.software.as_str().into_lisp(env)?),
            (":protocol", p.protocol.as_str().into_lisp(env)?),
            (":capabilities", env.list(&caps[..])?),
            (":messages-in", (p.messages_in as i64).into_lisp(env)?),
            (":sync-in", (p.sync_in as i64).into_lisp(env)?),
            (":messages-out", (p.messages_out as i64).into_lisp(env)?),
            (":trust", env.intern(p.trust.as_str())?),
            (":address", topic.into_lisp(env)?),
        ],
    )
}

/// Return the known peers as a list of plists, sorted by peer id.
///
/// Keys: :peer-id :name :status (online, offline, stale) :last-seen (Unix
/// time) :software :protocol :capabilities :messages-in (peer messages
/// received) :sync-in (sync events received) :messages-out :trust (unknown, pinned, trusted, conflict, blocked) :address (the
/// topic that messages to the peer go to).
#[defun(name = "-federation-peers")]
fn federation_peers(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-peers");
    peers_to_lisp(env, false)
}

/// Return the peers that announced themselves, as `-federation-peers' does.
///
/// Keys that only sent other events are left out here, in Rust: with
/// thousands of throwaway keys in the peer table, the blackboard asks
/// for the few announced peers without Emacs building a plist for each.
#[defun(name = "-federation-announced-peers")]
fn federation_announced_peers(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-announced-peers");
    peers_to_lisp(env, true)
}

/// The known peers (with ONLY_ANNOUNCED, the announced ones) as plists.
fn peers_to_lisp(env: &Env, only_announced: bool) -> Result<Value<'_>> {
    guard(env, || {
        let peers = with_node(env, |n| {
            Ok(n.peers()
                .into_iter()
                .filter(|p| !only_announced || p.announced())
                .map(|p| {
                    let t = n.messages_topic(&p.peer_id);
                    (p, t)
                })
                .collect::<Vec<_>>())
        })?;
        let v = peers
            .iter()
            .map(|(p, t)| peer_to_lisp(env, p, t.clone()))
            .collect::<Result<Vec<_>>>()?;
        env.list(&v[..])
    })
}

/// Return the details of PEER-ID as a plist, or nil if it is unknown.
#[defun(name = "-federation-peer")]
fn federation_peer(env: &Env, peer_id: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-peer");
    guard(env, || {
        let p = with_node(env, |n| {
            Ok(n.peer(&peer_id).map(|p| (p, n.messages_topic(&peer_id))))
        })?;
        match p {
            Some((p, t)) => peer_to_lisp(env, &p, t),
            None => env.intern("nil"),
        }
    })
}

/// Return the known peer ids, sorted.
#[defun(name = "-federation-peer-ids")]
fn federation_peer_ids(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-peer-ids");
    guard(env, || {
        let ids = with_node(env, |n| Ok(n.peer_ids()))?;
        let v = ids
            .iter()
            .map(|s| s.as_str().into_lisp(env))
            .collect::<Result<Vec<_>>>()?;
        env.list(&v[..])
    })
}

/// Trust PEER-ID (and save the trust file).
#[defun(name = "-federation-trust")]
fn federation_trust(env: &Env, peer_id: String) -> Result<bool> {
    let _t = CallTimer::start("federation-trust");
    guard(env, || {
        with_node(env, |n| check(env, n.trust(&peer_id, now())))?;
        Ok(true)
    })
}

/// Forget the trust decision about PEER-ID; non-nil if there was one.
#[defun(name = "-federation-untrust")]
fn federation_untrust(env: &Env, peer_id: String) -> Result<bool> {
    let _t = CallTimer::start("federation-untrust");
    guard(env, || with_node(env, |n| check(env, n.untrust(&peer_id))))
}

/// Block PEER-ID (and save the trust file).
#[defun(name = "-federation-block")]
fn federation_block(env: &Env, peer_id: String) -> Result<bool> {
    let _t = CallTimer::start("federation-block");
    guard(env, || {
        with_node(env, |n| check(env, n.block(&peer_id, now())))?;
        Ok(true)
    })
}

/// Set the trust POLICY (the symbol tofu, allowlist or open).
#[defun(name = "-federation-set-policy")]
fn federation_set_policy<'e>(env: &'e Env, policy: Value<'e>) -> Result<()> {
    let _t = CallTimer::start("federation-set-policy");
    let p = policy_of(env, policy)?;
    guard(env, || {
        with_node(env, |n| {
            n.set_policy(p);
            Ok(())
        })
    })
}

/// Save the trust file if TOFU pinned new keys since the last save.
#[defun(name = "-federation-save-trust")]
fn federation_save_trust(env: &Env) -> Result<()> {
    let _t = CallTimer::start("federation-save-trust");
    guard(env, || with_node(env, |n| check(env, n.save_trust())))
}

/// Return the federation's counters as a plist.
///
/// Keys: :sent :accepted :dropped :echoes (our own events echoed back
/// by the broker: normal, not drops) :replay-size and :drops, an alist
/// of (REASON . COUNT) for every reason a check drops for.
#[defun(name = "-federation-counters")]
fn federation_counters(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-counters");
    guard(env, || {
        let (counts, drops, replay) =
            with_node(env, |n| Ok((n.counts(), n.drop_counts(), n.replay_len())))?;
        plist(
            env,
            vec![
                (":sent", (counts.sent as i64).into_lisp(env)?),
                (":accepted", (counts.accepted as i64).into_lisp(env)?),
                (":dropped", (counts.dropped as i64).into_lisp(env)?),
                (":echoes", (counts.echoes as i64).into_lisp(env)?),
                (":replay-size", (replay as i64).into_lisp(env)?),
                (":drops", counts_alist(env, &drops)?),
            ],
        )
    })
}

/// Return every key the trust store knows, as a list of plists.
///
/// Keys: :peer-id, :name (the display name it was pinned with or
/// claims, or nil), :state (pinned, trusted, conflict or blocked),
/// :since (Unix time the entry was made) and :replaces (for a held key,
/// state conflict: the pinned or trusted key whose name it claims, else
/// nil).  Held and blocked keys that are not in the peer table are
/// listed too.
#[defun(name = "-federation-trust-entries")]
fn federation_trust_entries(env: &Env) -> Result<Value<'_>> {
    let _t = CallTimer::start("federation-trust-entries");
    guard(env, || {
        let entries = with_node(env, |n| {
            let store = n.trust_store();
            Ok(store
                .entries()
                .map(|(id, e)| {
                    (
                        id.to_string(),
                        e.clone(),
                        store.conflict_owner(id).map(str::to_string),
                    )
                })
                .collect::<Vec<_>>())
        })?;
        let nil = env.intern("nil")?;
        let v = entries
            .iter()
            .map(|(id, e, owner)| {
                plist(
                    env,
                    vec![
                        (":peer-id", id.as_str().into_lisp(env)?),
                        (
                            ":name",
                            match &e.name {
                                Some(n) => n.as_str().into_lisp(env)?,
                                None => nil,
                            },
                        ),
                        (":state", env.intern(e.state.as_str())?),
                        (":since", (e.since as i64).into_lisp(env)?),
                        (
                            ":replaces",
                            match owner {
                                Some(o) => o.as_str().into_lisp(env)?,
                                None => nil,
                            },
                        ),
                    ],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        env.list(&v[..])
    })
}

/// Return our peer id, or nil when federation is not running.
#[defun(name = "-federation-peer-id")]
fn federation_peer_id(env: &Env) -> Result<Value<'_>> {
    let _t = super::convert::CallTimer::start("federation-peer-id");
    match super::session::current() {
        Some(s) => s.peer_id().into_lisp(env),
        None => env.intern("nil"),
    }
}
