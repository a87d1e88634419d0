//! The MQTT functions that Elisp calls. All return at once; outcomes arrive as events.

use super::convert::{opt, payload_from_lisp, CallTimer};
use super::errors::{check, guard, raise, signal, Kind};
use crate::events::BUS;
use crate::transport::connection;
use crate::transport::options::{default_client_id, ConnectOptions, Will};
use crate::transport::url;
use emacs::{defun, Env, Result, Value};
use std::time::Duration;

pub(super) fn plist_get<'e>(
    env: &'e Env,
    plist: Value<'e>,
    key: &str,
) -> Result<Option<Value<'e>>> {
    let v = env.call("plist-get", (plist, env.intern(key)?))?;
    Ok(v.is_not_nil().then_some(v))
}

fn seconds(v: Option<Value<'_>>, what: &str, env: &Env) -> Result<Option<Duration>> {
    let Some(v) = v else { return Ok(None) };
    let secs: f64 = env.call("float", (v,))?.into_rust()?;
    if !(0.0..=1.0e6).contains(&secs) {
        return signal(
            env,
            Kind::General,
            format!("{what} must be 0 to 1e6 seconds"),
        );
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn options_from_plist<'e>(
    env: &'e Env,
    url: url::BrokerUrl,
    plist: Value<'e>,
) -> Result<ConnectOptions> {
    let client_id: Option<String> = opt(plist_get(env, plist, ":client-id")?)?;
    let mut o = ConnectOptions::new(url, client_id.unwrap_or_else(default_client_id));
    if let Some(ka) = opt::<i64>(plist_get(env, plist, ":keep-alive")?)? {
        if !(0..=65_535).contains(&ka) {
            return signal(
                env,
                Kind::General,
                "keep-alive must be 0 (off) or 1 to 65535 seconds",
            );
        }
        o.keep_alive = Duration::from_secs(ka as u64);
    }
    // :clean-session defaults to t; only an explicit :clean-session nil turns it off.
    let has_clean = env
        .call("plist-member", (plist, env.intern(":clean-session")?))?
        .is_not_nil();
    if has_clean {
        o.clean_session = plist_get(env, plist, ":clean-session")?.is_some();
    }
    if let Some(topic) = opt::<String>(plist_get(env, plist, ":will-topic")?)? {
        let payload = match plist_get(env, plist, ":will-payload")? {
            Some(p) => payload_from_lisp(p)?,
            None => Vec::new(),
        };
        let qos = opt::<i64>(plist_get(env, plist, ":will-qos")?)?.unwrap_or(1);
        if !(0..=2).contains(&qos) {
            return signal(env, Kind::General, "will QoS must be 0, 1 or 2");
        }
        o.will = Some(Will {
            topic,
            payload,
            qos: qos as u8,
            retain: plist_get(env, plist, ":will-retain")?.is_some(),
        });
    }
    if plist_get(env, plist, ":federation-will")?.is_some() {
        if !super::federation::running() {
            return signal(
                env,
                Kind::General,
                ":federation-will needs a running federation node",
            );
        }
        o.will_provider = Some(super::session::will_for_new_session);
    }
    if plist_get(env, plist, ":federation-inbound")?.is_some() {
        // The federation's topics go to the session's worker, not to Elisp.
        match super::session::current() {
            Some(s) => o.inbound = Some(s.inbound()),
            None => {
                return signal(
                    env,
                    Kind::General,
                    ":federation-inbound needs a running federation node",
                )
            }
        }
    }
    if let Some(list) = plist_get(env, plist, ":subscribe")? {
        // ((FILTER QOS) ...), subscribed before the first connection.
        let n: i64 = env.call("length", (list,))?.into_rust()?;
        for i in 0..n {
            let item = env.call("nth", (i, list))?;
            let filter: String = env.call("car", (item,))?.into_rust()?;
            let qos: i64 = env.call("cadr", (item,))?.into_rust()?;
            check(env, crate::transport::topic::validate_filter(&filter))?;
            if !(0..=2).contains(&qos) {
                return signal(env, Kind::General, ":subscribe QoS must be 0, 1 or 2");
            }
            o.initial_subscriptions.push((filter, qos as u8));
        }
    }
    if let Some(ca) = opt::<String>(plist_get(env, plist, ":ca-file")?)? {
        let expanded: String = env.call("expand-file-name", (ca.as_str(),))?.into_rust()?;
        o.ca_file = Some(expanded.into());
    }
    if let Some(n) = opt::<i64>(plist_get(env, plist, ":queue-limit")?)? {
        if n < 1 {
            return signal(env, Kind::General, ":queue-limit must be at least 1");
        }
        o.queue_limit = n as usize;
    }
    if let Some(n) = opt::<i64>(plist_get(env, plist, ":max-packet-size")?)? {
        if !(1024..=268_435_455).contains(&n) {
            return signal(
                env,
                Kind::General,
                ":max-packet-size must be 1024 to 268435455 bytes",
            );
        }
        o.max_outgoing_packet = n as usize;
        o.max_incoming_packet = o.max_incoming_packet.max(n as usize);
    }
    if let Some(d) = seconds(
        plist_get(env, plist, ":max-reconnect-delay")?,
        ":max-reconnect-delay",
        env,
    )? {
        o.max_backoff = d.max(Duration::from_millis(10));
        o.min_backoff = o.min_backoff.min(o.max_backoff);
    }
    if let Some(d) = seconds(
        plist_get(env, plist, ":flush-timeout")?,
        ":flush-timeout",
        env,
    )? {
        o.flush_timeout = d;
    }
    Ok(o)
}

/// Start connecting to the broker at URL with the options in PLIST.
///
/// Internal: use `meta-log-federation-mqtt-connect', which checks the keywords.
#[defun(name = "-mqtt-connect")]
fn mqtt_connect<'e>(env: &'e Env, url: String, plist: Value<'e>) -> Result<()> {
    let _t = CallTimer::start("mqtt_connect");
    guard(env, || {
        let parsed = check(env, url::parse(&url))?;
        let opts = options_from_plist(env, parsed, plist)?;
        check(env, connection::connect(opts, &BUS))
    })
}

fn not_connected<T>(env: &Env) -> Result<T> {
    signal(
        env,
        Kind::NotConnected,
        "not connected: call meta-log-federation-mqtt-connect first",
    )
}

/// Publish PAYLOAD to TOPIC with QOS (nil means 0), retained if RETAIN.
///
/// Internal: use `meta-log-federation-mqtt-publish'.
#[defun(name = "-mqtt-publish")]
fn mqtt_publish(
    env: &Env,
    topic: String,
    payload: Value<'_>,
    qos: Option<i64>,
    retain: Value<'_>,
) -> Result<()> {
    let _t = CallTimer::start("mqtt_publish");
    guard(env, || {
        let bytes = payload_from_lisp(payload)?;
        let retain = retain.is_not_nil();
        match connection::with_client(|c| c.publish(&topic, bytes, qos.unwrap_or(0), retain)) {
            None => not_connected(env),
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => raise(env, e),
        }
    })
}

/// Subscribe to FILTER with QOS and return the subscription's id.
///
/// Internal: use `meta-log-federation-mqtt-subscribe', which also
/// registers the handler.
#[defun(name = "-mqtt-subscribe")]
fn mqtt_subscribe(env: &Env, filter: String, qos: Option<i64>) -> Result<i64> {
    let _t = CallTimer::start("mqtt_subscribe");
    guard(env, || {
        match connection::with_client(|c| c.subscribe(&filter, qos.unwrap_or(0))) {
            None => not_connected(env),
            Some(Ok(id)) => Ok(id as i64),
            Some(Err(e)) => raise(env, e),
        }
    })
}

/// Unsubscribe from FILTER; return non-nil if there was such a subscription.
///
/// Internal: use `meta-log-federation-mqtt-unsubscribe'.
#[defun(name = "-mqtt-unsubscribe")]
fn mqtt_unsubscribe(env: &Env, filter: String) -> Result<bool> {
    let _t = CallTimer::start("mqtt_unsubscribe");
    guard(env, || {
        Ok(connection::with_client(|c| c.unsubscribe(&filter)).unwrap_or(false))
    })
}

/// Return non-nil if the MQTT connection is up right now.
///
/// Nil while connecting, while reconnecting after the broker went away, and
/// after `meta-log-federation-mqtt-disconnect'.
#[defun(name = "mqtt-connected-p")]
fn mqtt_connected_p() -> Result<bool> {
    let _t = CallTimer::start("mqtt_connected_p");
    Ok(connection::with_client(|c| c.is_connected()).unwrap_or(false))
}

/// Return non-nil if a connection exists, up or reconnecting.
#[defun(name = "-mqtt-active-p")]
fn mqtt_active_p() -> Result<bool> {
    let _t = super::convert::CallTimer::start("mqtt-active-p");
    Ok(connection::exists())
}

/// Start a clean disconnect and return at once (non-nil if there was a connection).
///
/// Internal: use `meta-log-federation-mqtt-disconnect'.
#[defun(name = "-mqtt-disconnect")]
fn mqtt_disconnect(env: &Env) -> Result<bool> {
    let _t = CallTimer::start("mqtt_disconnect");
    guard(env, || Ok(connection::disconnect()))
}

/// Disconnect and stop every background thread, waiting a bounded time.
///
/// Internal: used by `meta-log-federation-shutdown' and `kill-emacs-hook'.
#[defun(name = "-shutdown-blocking")]
fn shutdown_blocking(env: &Env) -> Result<bool> {
    let _t = super::convert::CallTimer::start("shutdown-blocking");
    guard(env, || Ok(connection::shutdown_blocking()))
}

/// Return the number of threads and open file descriptors of this Emacs.
///
/// Internal: used by tests that check nothing leaks.
#[defun(name = "-resource-counts")]
fn resource_counts(env: &Env) -> Result<Value<'_>> {
    let _t = super::convert::CallTimer::start("resource-counts");
    env.cons(
        crate::runtime::thread_count() as i64,
        crate::runtime::fd_count() as i64,
    )
}
