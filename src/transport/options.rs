//! What a connection is configured with, checked before anything touches the network.

use super::url::BrokerUrl;
use std::path::PathBuf;
use std::time::Duration;

/// A last will: what the broker publishes for us if we vanish without a clean disconnect.
#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// Where the messages of some subscriptions go instead of the event bus: the core session
/// (`crate::session`) takes the federation's topics on the runtime, so Emacs' main thread
/// never sees their raw bytes. Called on the runtime's thread with (topic, payload); it must
/// only hand the message over (a channel send), never do the work itself.
#[derive(Clone)]
pub struct Inbound {
    /// The filters whose messages go to `deliver` (they must be among the initial
    /// subscriptions).
    pub filters: Vec<String>,
    /// Takes one message.
    pub deliver: std::sync::Arc<dyn Fn(String, Vec<u8>) + Send + Sync>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

/// Everything a connection needs. Build with [`ConnectOptions::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: BrokerUrl,
    pub client_id: String,
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub will: Option<Will>,
    /// Called before every connection attempt; its will replaces `will`. Federation uses it
    /// so that each MQTT session has a will signed for that session (a reconnect after a
    /// broken connection must not inherit the will the broker has just published).
    pub will_provider: Option<fn() -> Option<Will>>,
    /// PEM file with the CA certificates to trust for mqtts:// and wss:// (else the system's
    /// roots).
    pub ca_file: Option<PathBuf>,
    /// How many messages may wait unsent or unacknowledged; a publish beyond it is refused.
    pub queue_limit: usize,
    /// First reconnect delay; doubled after each failed attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Largest packet we send; larger publishes are refused at once.
    pub max_outgoing_packet: usize,
    /// Largest packet we accept; the broker's larger ones end the connection (rumqttc's rule).
    pub max_incoming_packet: usize,
    /// How long a clean disconnect waits for queued QoS 1/2 messages to be acknowledged.
    pub flush_timeout: Duration,
    /// Filters (with QoS) subscribed before the first connection, so that the messages a
    /// persistent session has queued, which the broker sends right after the ConnAck, find
    /// their subscription.
    pub initial_subscriptions: Vec<(String, u8)>,
    /// Subscriptions whose messages the core session takes (see [`Inbound`]).
    pub inbound: Option<Inbound>,
}

impl ConnectOptions {
    /// Defaults suited to a desktop Emacs on a LAN or loopback broker.
    pub fn new(url: BrokerUrl, client_id: impl Into<String>) -> Self {
        ConnectOptions {
            url,
            client_id: client_id.into(),
            keep_alive: Duration::from_secs(30),
            clean_session: true,
            will: None,
            will_provider: None,
            ca_file: None,
            queue_limit: 10_000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_outgoing_packet: 1024 * 1024,
            max_incoming_packet: 8 * 1024 * 1024,
            flush_timeout: Duration::from_secs(2),
            initial_subscriptions: Vec::new(),
            inbound: None,
        }
    }

    /// Checks the values a caller may get wrong, with a message that says how to fix them.
    pub fn validate(&self) -> Result<(), String> {
        if self.client_id.is_empty() || self.client_id.len() > 65_535 {
            return Err("client id must be 1 to 65535 bytes".into());
        }
        let ka = self.keep_alive;
        if !(ka.is_zero() || (ka >= Duration::from_secs(1) && ka.as_secs() <= 65_535)) {
            return Err("keep-alive must be 0 (off) or 1 to 65535 seconds".into());
        }
        for (f, q) in &self.initial_subscriptions {
            super::topic::validate_filter(f).map_err(|e| format!("subscription: {e}"))?;
            if *q > 2 {
                return Err("subscription QoS must be 0, 1 or 2".into());
            }
        }
        if let Some(i) = &self.inbound {
            if let Some(f) = i
                .filters
                .iter()
                .find(|f| !self.initial_subscriptions.iter().any(|(g, _)| g == *f))
            {
                return Err(format!(
                    "the session's filter `{f}` must be one of the initial subscriptions"
                ));
            }
        }
        if self.queue_limit == 0 {
            return Err("queue limit must be at least 1".into());
        }
        if let Some(w) = &self.will {
            super::topic::validate_topic(&w.topic).map_err(|e| format!("will topic: {e}"))?;
            if w.qos > 2 {
                return Err("will QoS must be 0, 1 or 2".into());
            }
        }
        if self.url.tls && !cfg!(feature = "tls") {
            return Err(
                "this module was built without TLS support (NO_TLS=1): rebuild it with `make` \
                 (or use an mqtt:// or ws:// URL)"
                    .into(),
            );
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(format!("CA file {} does not exist", ca.display()));
            }
        }
        Ok(())
    }
}

impl ConnectOptions {
    /// The address and port rumqttc is given: host and port for `mqtt(s)://`; for WebSockets
    /// the whole `ws(s)://host:port/path` (rumqttc reads host and port from it).
    pub(crate) fn broker_address(&self) -> (String, u16) {
        if self.url.websocket {
            (self.url.websocket_address(), self.url.port)
        } else {
            (self.url.host.clone(), self.url.port)
        }
    }

    /// rumqttc's transport for the URL: TCP, TLS, WebSockets or WebSockets over TLS. TLS
    /// (`mqtts://` and `wss://`) uses the same rustls configuration (`super::tls`); the error
    /// says which file or setting to fix.
    pub(crate) fn transport(&self) -> Result<rumqttc::Transport, String> {
        match (self.url.websocket, self.url.tls) {
            (false, false) => Ok(rumqttc::Transport::Tcp),
            (true, false) => Ok(rumqttc::Transport::Ws),
            #[cfg(feature = "tls")]
            (websocket, true) => {
                let cfg = rumqttc::TlsConfiguration::Rustls(super::tls::client_config(
                    self.ca_file.as_deref(),
                )?);
                Ok(if websocket {
                    rumqttc::Transport::Wss(cfg)
                } else {
                    rumqttc::Transport::Tls(cfg)
                })
            }
            #[cfg(not(feature = "tls"))]
            (_, true) => Err("this module was built without TLS support".into()),
        }
    }
}

/// A client id that is unique per process and time, for callers who give none.
pub fn default_client_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("meta-log-{}-{:08x}", std::process::id(), nanos)
}
