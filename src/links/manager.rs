//! The link manager: one direct link per peer at most, its state (connecting, up, failed,
//! closed), its path, round-trip time and byte counts; retries with backoff; and, for every
//! event the node is about to publish, the choice of path ([`Manager::carry`]).
//!
//! It knows nothing of Emacs or MQTT: the node side is a [`LinkHost`] (sign and publish a
//! signal, sign a hello, hand a received event to the same receive path as MQTT messages, and
//! publish again through the broker what a dropped link may have lost). The transport is chosen
//! in one place, `open_channel`: a WebRTC data channel when built with the `webrtc` feature,
//! else (or when ICE fails) TLS over TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::channel::{Channel, IceServer, LinkError, LinkPath, Role};
use super::frame::Frame;
use super::hello::{hello_content, verify_hello, Expected};
use super::signal::{new_session_id, role_with, RateLimit, SignalBody, SignalMsg};
use crate::events::lock;
use crate::federation::protocol::{tag_value, Topics, TAG_RECIPIENT};

/// What the link manager needs from the federation node.
pub trait LinkHost: Send + Sync + 'static {
    /// Signs, encrypts and publishes a link signal (kind 4774) to `to` through the broker.
    fn send_signal(&self, to: &str, plaintext: &str) -> Result<(), String>;
    /// Signs a hello (kind 20774) to `to` with `content`; returns the event's JSON.
    fn sign_hello(&self, to: &str, content: &str) -> Result<String, String>;
    /// An event frame arrived on `from`'s link: hand `topic` and `payload` to the receive path
    /// every MQTT message takes.
    fn deliver(&self, from: &str, topic: &str, payload: &[u8]);
    /// The link to `peer` dropped: publish again through the broker what it may have lost
    /// (the peer's unacknowledged messages).
    fn link_down(&self, peer: &str);
    /// Now, in Unix seconds.
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// When links open without being asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoLinks {
    /// Only when asked ([`Manager::connect`]).
    Off,
    /// To every trusted peer that is online (the caller asks; see `meta-log-federation-direct-links`).
    All,
    /// When an event is about to go to a peer without a link.
    OnDemand,
}

/// Settings of a link manager.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our peer id.
    pub me: String,
    /// The federation's topic names.
    pub topics: Topics,
    /// Where the TCP fallback listens (`None`: no listener; we may still dial).
    pub tcp_listen: Option<SocketAddr>,
    /// The address offered to peers for the TCP fallback instead of the listener's own (a
    /// router's public address with a port forwarded to the listener); `None`: the listener's.
    pub tcp_advertise: Option<SocketAddr>,
    /// ICE servers for WebRTC.
    pub ice: Vec<IceServer>,
    /// Whether a WebRTC data channel is tried before the TCP fallback (in a build with
    /// WebRTC).
    pub webrtc: bool,
    /// When links open by themselves.
    pub auto: AutoLinks,
    /// How long one attempt may take.
    pub setup_timeout: Duration,
    /// Time between pings on an up link.
    pub ping_interval: Duration,
    /// First retry delay after a failure (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Age window of a hello, as the federation's (`max_age_secs`, `max_future_secs`).
    pub hello_window: (u64, u64),
}

impl Settings {
    /// Defaults for `me` with `topics`.
    pub fn new(me: &str, topics: Topics) -> Settings {
        Settings {
            me: me.to_string(),
            topics,
            tcp_listen: None,
            tcp_advertise: None,
            ice: Vec::new(),
            webrtc: true,
            auto: AutoLinks::Off,
            setup_timeout: Duration::from_secs(15),
            ping_interval: Duration::from_secs(5),
            min_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            hello_window: (600, 900),
        }
    }
}

/// A link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Signalling or handshaking.
    Connecting,
    /// Verified and carrying events.
    Up,
    /// The last attempt failed or the link broke (retried with backoff if wanted).
    Failed,
    /// Closed on purpose.
    Closed,
}

impl LinkState {
    /// The name used in Elisp.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Up => "up",
            LinkState::Failed => "failed",
            LinkState::Closed => "closed",
        }
    }
}

/// One link, as shown to the person.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    /// The peer.
    pub peer: String,
    /// Its state.
    pub state: LinkState,
    /// Its path, once up (kept after it drops).
    pub path: Option<LinkPath>,
    /// The last ping's round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Frame bytes sent.
    pub bytes_out: u64,
    /// Why it last failed, if it did.
    pub last_error: Option<String>,
}

/// A change for the person's hooks.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// A link came up.
    Up {
        /// The peer.
        peer: String,
        /// Its path.
        path: LinkPath,
    },
    /// A link went down (or an attempt failed).
    Down {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// Things dropped or refused, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Links that came up.
    pub links_up: u64,
    /// Attempts that failed before a verified link.
    pub setup_failed: u64,
    /// Links closed for a hello that did not verify (or none in time).
    pub bad_hello: u64,
    /// Connections refused for a certificate fingerprint other than the signalled one.
    pub bad_fingerprint: u64,
    /// Signals over a peer's budget.
    pub rate_limited: u64,
    /// Signals of the wrong role (an offer from the larger peer id, ...).
    pub glare: u64,
    /// Signals for a session that is not the current one.
    pub stale_session: u64,
    /// Signals that were not valid JSON of §16.1.
    pub malformed_signals: u64,
    /// Event frames for another topic or signed by another key than the link's peer.
    pub link_foreign: u64,
    /// Frames that were not frames (the link was closed).
    pub malformed_frames: u64,
    /// Events sent over links instead of the broker.
    pub carried: u64,
    /// Events received over links.
    pub received: u64,
}

struct Peer {
    state: LinkState,
    path: Option<LinkPath>,
    session: Option<String>,
    /// Counts sessions, so a task that outlived its session changes nothing.
    generation: u64,
    tx: Option<mpsc::Sender<Vec<u8>>>,
    signals: Option<mpsc::UnboundedSender<SignalMsg>>,
    task: Option<tokio::task::JoinHandle<()>>,
    rtt_ms: Option<f64>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
    wanted: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            state: LinkState::Closed,
            path: None,
            session: None,
            generation: 0,
            tx: None,
            signals: None,
            task: None,
            rtt_ms: None,
            bytes_in: Arc::default(),
            bytes_out: Arc::default(),
            wanted: false,
            backoff: Duration::ZERO,
            retry_at: None,
            last_error: None,
        }
    }
}

#[derive(Default)]
struct State {
    peers: HashMap<String, Peer>,
    rate: RateLimit,
    counters: Counters,
    events: Vec<LinkEvent>,
}

struct Inner {
    host: Arc<dyn LinkHost>,
    settings: Settings,
    state: Mutex<State>,
    #[cfg(feature = "tls")]
    listener: Option<super::tcp::Listener>,
    started: Instant,
    /// The manager's runtime, where every task runs.
    rt: tokio::runtime::Handle,
}

/// The running link manager (owns its runtime: dropping it closes every link).
pub struct Manager {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("me", &self.inner.settings.me)
            .finish_non_exhaustive()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Whether this build can open direct links at all (the TCP fallback needs `tls`).
pub fn available() -> bool {
    cfg!(any(feature = "tls", feature = "webrtc"))
}

impl Manager {
    /// Starts a manager on a runtime of its own; binds the TCP listener if one is configured.
    pub fn start(host: Arc<dyn LinkHost>, settings: Settings) -> Result<Manager, LinkError> {
        if !available() {
            return Err(LinkError::Setup(
                "this build has no direct links: build the module with `make module FEATURES=tls`"
                    .into(),
            ));
        }
        let rt = crate::runtime::build()
            .map_err(|e| LinkError::Setup(format!("cannot start the link runtime: {e}")))?;
        #[cfg(feature = "tls")]
        let listener = match settings.tcp_listen {
            Some(a) => Some(rt.block_on(super::tcp::Listener::bind(a))?),
            None => None,
        };
        let inner = Arc::new(Inner {
            host,
            settings,
            state: Mutex::new(State::default()),
            #[cfg(feature = "tls")]
            listener,
            started: Instant::now(),
            rt: rt.handle().clone(),
        });
        let weak = Arc::downgrade(&inner);
        rt.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.retry_due();
            }
        });
        Ok(Manager {
            inner,
            rt: Some(rt),
        })
    }

    /// The address the TCP fallback listens on, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "tls")]
        {
            self.inner.listener.as_ref().map(|l| l.local_addr())
        }
        #[cfg(not(feature = "tls"))]
        None
    }

    /// Opens a link to `peer` (returns at once; the link comes up or fails later). Resets its
    /// backoff; does nothing if one is connecting or up.
    pub fn connect(&self, peer: &str) {
        self.inner.connect(peer, true);
    }

    /// Closes the link to `peer` and stops retrying it.
    pub fn close(&self, peer: &str) {
        let mut st = lock(&self.inner.state);
        if let Some(p) = st.peers.get_mut(peer) {
            p.wanted = false;
            p.retry_at = None;
            let was_up = p.state == LinkState::Up;
            if let Some(tx) = p.tx.take() {
                let _ = tx.try_send(
                    Frame::Close {
                        reason: "closed by the user".into(),
                    }
                    .encode(),
                );
            }
            if let Some(t) = p.task.take() {
                t.abort();
            }
            p.generation += 1;
            p.signals = None;
            p.state = LinkState::Closed;
            if was_up {
                st.events.push(LinkEvent::Down {
                    peer: peer.to_string(),
                    reason: "closed".into(),
                });
                drop(st);
                self.inner.host.link_down(peer);
            }
        }
    }

    /// A link signal accepted by the node from `from` (its plaintext).
    pub fn on_signal(&self, from: &str, plaintext: &str) {
        self.inner.on_signal(from, plaintext);
    }

    /// Sends the event `payload` for `topic` over a link instead of the broker, when the topic
    /// (or the event's `p` tag, for sync) names a peer with an up link. Returns whether it did;
    /// if not, the caller publishes as usual. With [`AutoLinks::OnDemand`], starts a link.
    pub fn carry(&self, topic: &str, payload: &[u8]) -> bool {
        self.inner.carry(topic, payload)
    }

    /// Every link, sorted by peer.
    pub fn links(&self) -> Vec<LinkInfo> {
        let st = lock(&self.inner.state);
        let mut v: Vec<LinkInfo> = st
            .peers
            .iter()
            .map(|(id, p)| LinkInfo {
                peer: id.clone(),
                state: p.state,
                path: p.path,
                rtt_ms: p.rtt_ms,
                bytes_in: p.bytes_in.load(Ordering::Relaxed),
                bytes_out: p.bytes_out.load(Ordering::Relaxed),
                last_error: p.last_error.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// The link to `peer`, if any.
    pub fn link(&self, peer: &str) -> Option<LinkInfo> {
        self.links().into_iter().find(|l| l.peer == peer)
    }

    /// The changes since the last call, oldest first.
    pub fn take_events(&self) -> Vec<LinkEvent> {
        std::mem::take(&mut lock(&self.inner.state).events)
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        lock(&self.inner.state).counters
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
}

/// What a setup task needs to know about its session.
// A build without any transport never reads the signalling parts.
#[cfg_attr(not(any(feature = "tls", feature = "webrtc")), allow(dead_code))]
struct SessionCtx {
    inner: Arc<Inner>,
    peer: String,
    session: String,
    generation: u64,
    role: Role,
    signals: mpsc::UnboundedReceiver<SignalMsg>,
    /// The offer that started it (answerer only).
    offer: Option<SignalMsg>,
}

impl Inner {
    fn connect(self: &Arc<Self>, peer: &str, explicit: bool) {
        let mut st = lock(&self.state);
        let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
        if matches!(p.state, LinkState::Connecting | LinkState::Up) {
            return;
        }
        if explicit {
            p.wanted = true;
            p.backoff = Duration::ZERO;
        } else if p.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        match role_with(&self.settings.me, peer) {
            Role::Offerer => {
                let session = new_session_id();
                self.start_session(&mut st, peer, session, Role::Offerer, None);
            }
            Role::Answerer => {
                // The smaller peer id offers: ask it to.
                let p = st.peers.get_mut(peer).expect("inserted above");
                p.state = LinkState::Connecting;
                p.generation += 1;
                p.session = None;
                let generation = p.generation;
                drop(st);
                let msg = SignalMsg {
                    session: new_session_id(),
                    body: SignalBody::Request,
                };
                if let Err(e) = self.host.send_signal(peer, &msg.to_json()) {
                    self.failed(peer, generation, &format!("signal not sent: {e}"));
                    return;
                }
                // No offer in time: failed, retried with backoff.
                let (me, peer, t) = (self.clone(), peer.to_string(), self.settings.setup_timeout);
                self.spawn(async move {
                    tokio::time::sleep(t).await;
                    let waiting = lock(&me.state)
                        .peers
                        .get(&peer)
                        .is_some_and(|p| p.generation == generation && p.session.is_none());
                    if waiting {
                        me.failed(&peer, generation, "no offer from the peer in time");
                    }
                });
            }
        }
    }

    fn spawn(
        &self,
        f: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        Some(self.rt.spawn(f))
    }

    /// Starts a session task (the caller holds the state lock).
    fn start_session(
        self: &Arc<Self>,
        st: &mut State,
        peer: &str,
        session: String,
        role: Role,
        offer: Option<SignalMsg>,
    ) {
        let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
        if let Some(t) = p.task.take() {
            t.abort();
        }
        p.generation += 1;
        p.state = LinkState::Connecting;
        p.session = Some(session.clone());
        p.tx = None;
        let (stx, srx) = mpsc::unbounded_channel();
        p.signals = Some(stx);
        let ctx = SessionCtx {
            inner: self.clone(),
            peer: peer.to_string(),
            session,
            generation: p.generation,
            role,
            signals: srx,
            offer,
        };
        p.task = self.spawn(run_session(ctx));
    }

    fn on_signal(self: &Arc<Self>, from: &str, plaintext: &str) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let mut st = lock(&self.state);
        if !st.rate.allow(from, now_ms) {
            st.counters.rate_limited += 1;
            return;
        }
        let msg = match SignalMsg::parse(plaintext) {
            Ok(m) => m,
            Err(_) => {
                st.counters.malformed_signals += 1;
                return;
            }
        };
        let my_role = role_with(&self.settings.me, from);
        // The sender's role is the other one.
        if (msg.offerer_only() && my_role == Role::Offerer)
            || (msg.answerer_only() && my_role == Role::Answerer)
        {
            st.counters.glare += 1;
            return;
        }
        match &msg.body {
            SignalBody::Request => {
                let busy = st
                    .peers
                    .get(from)
                    .is_some_and(|p| matches!(p.state, LinkState::Connecting | LinkState::Up));
                if !busy {
                    let session = new_session_id();
                    self.start_session(&mut st, from, session, Role::Offerer, None);
                }
            }
            SignalBody::Offer { .. } | SignalBody::TcpOffer { .. } => {
                // A tcp-offer in the session of a WebRTC offer continues it.
                let same = st
                    .peers
                    .get(from)
                    .is_some_and(|p| p.session.as_deref() == Some(msg.session.as_str()));
                if same {
                    if let Some(s) = st.peers.get(from).and_then(|p| p.signals.clone()) {
                        let _ = s.send(msg);
                    }
                } else {
                    let session = msg.session.clone();
                    self.start_session(&mut st, from, session, Role::Answerer, Some(msg));
                }
            }
            _ => {
                let target = st.peers.get(from).and_then(|p| {
                    (p.session.as_deref() == Some(msg.session.as_str()))
                        .then(|| p.signals.clone())
                        .flatten()
                });
                match target {
                    Some(s) => {
                        let _ = s.send(msg);
                    }
                    None => st.counters.stale_session += 1,
                }
            }
        }
    }

    fn carry(self: &Arc<Self>, topic: &str, payload: &[u8]) -> bool {
        let Some(peer) = self.addressee(topic, payload) else {
            return false;
        };
        let mut st = lock(&self.state);
        let tx = st
            .peers
            .get(&peer)
            .filter(|p| p.state == LinkState::Up)
            .and_then(|p| p.tx.clone().map(|t| (t, p.bytes_out.clone())));
        match tx {
            Some((tx, out)) => {
                let Ok(text) = std::str::from_utf8(payload) else {
                    return false;
                };
                let frame = Frame::Event {
                    topic: topic.to_string(),
                    payload: text.to_string(),
                }
                .encode();
                let n = frame.len() as u64;
                // A full queue: the broker takes it (never both).
                if tx.try_send(frame).is_ok() {
                    out.fetch_add(n, Ordering::Relaxed);
                    st.counters.carried += 1;
                    true
                } else {
                    false
                }
            }
            None => {
                if self.settings.auto == AutoLinks::OnDemand {
                    drop(st);
                    self.connect(&peer, false);
                }
                false
            }
        }
    }

    /// The peer an event is addressed to, when a link may carry it (§16.5).
    fn addressee(&self, topic: &str, payload: &[u8]) -> Option<String> {
        let t = &self.settings.topics;
        if topic == t.sync() {
            #[derive(serde::Deserialize)]
            struct Tags {
                tags: Vec<Vec<String>>,
            }
            let tags: Tags = serde_json::from_slice(payload).ok()?;
            return tag_value(&tags.tags, TAG_RECIPIENT).map(str::to_string);
        }
        let rest = topic
            .strip_prefix(t.prefix())?
            .strip_prefix("/peers/")?
            .strip_suffix("/messages")?;
        // Link signals always go through the broker: they set links up.
        #[derive(serde::Deserialize)]
        struct Kind {
            kind: u32,
        }
        let k: Kind = serde_json::from_slice(payload).ok()?;
        (k.kind != u32::from(crate::federation::protocol::KIND_LINK_SIGNAL))
            .then(|| rest.to_string())
    }

    fn failed(&self, peer: &str, generation: u64, why: &str) {
        let mut st = lock(&self.state);
        let Some(p) = st.peers.get_mut(peer) else {
            return;
        };
        if p.generation != generation {
            return;
        }
        let was_up = p.state == LinkState::Up;
        p.state = LinkState::Failed;
        p.tx = None;
        p.signals = None;
        p.last_error = Some(why.to_string());
        p.backoff = if p.backoff.is_zero() {
            self.settings.min_backoff
        } else {
            (p.backoff * 2).min(self.settings.max_backoff)
        };
        p.retry_at = Some(Instant::now() + p.backoff);
        if !was_up {
            st.counters.setup_failed += 1;
        }
        st.events.push(LinkEvent::Down {
            peer: peer.to_string(),
            reason: why.to_string(),
        });
        drop(st);
        if was_up {
            self.host.link_down(peer);
        }
    }

    fn retry_due(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<String> = lock(&self.state)
            .peers
            .iter()
            .filter(|(_, p)| {
                p.wanted && p.state == LinkState::Failed && p.retry_at.is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for peer in due {
            self.connect(&peer, false);
        }
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut lock(&self.state).counters);
    }
}

/// Sends a signal of this session.
fn signal(ctx: &SessionCtx, body: SignalBody) -> Result<(), LinkError> {
    let msg = SignalMsg {
        session: ctx.session.clone(),
        body,
    };
    ctx.inner
        .host
        .send_signal(&ctx.peer, &msg.to_json())
        .map_err(|e| LinkError::Setup(format!("signal not sent: {e}")))
}

/// Waits for the next signal of this session (a `close` ends the attempt).
#[cfg_attr(not(any(feature = "tls", feature = "webrtc")), allow(dead_code))]
async fn next_signal(ctx: &mut SessionCtx, deadline: Instant) -> Result<SignalMsg, LinkError> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, ctx.signals.recv()).await {
        Ok(Some(SignalMsg {
            body: SignalBody::Close { reason },
            ..
        })) => Err(LinkError::Setup(format!(
            "the peer closed the session: {reason}"
        ))),
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(LinkError::Setup("session replaced".into())),
        Err(_) => Err(LinkError::Timeout(
            ctx.inner.settings.setup_timeout.as_millis() as u64,
        )),
    }
}

/// Opens a channel to the session's peer: the one place where the transport is chosen.
/// Returns it with the fingerprint the peer's signed signalling named.
async fn open_channel(ctx: &mut SessionCtx) -> Result<(Channel, String), LinkError> {
    // A WebRTC data channel first, unless the peer opened with the TCP fallback (a peer built
    // without WebRTC). A certificate that does not match its signed SDP ends the session: no
    // fallback for an impostor.
    #[cfg(feature = "webrtc")]
    {
        let tcp_first = matches!(
            ctx.offer.as_ref().map(|m| &m.body),
            Some(SignalBody::TcpOffer { .. })
        );
        if !tcp_first && ctx.inner.settings.webrtc {
            match webrtc_channel(ctx).await {
                Ok(x) => return Ok(x),
                Err(LinkError::Fingerprint) => return Err(LinkError::Fingerprint),
                Err(_) => {}
            }
        }
    }
    let deadline = Instant::now() + ctx.inner.settings.setup_timeout;
    #[cfg(feature = "tls")]
    {
        tcp_channel(ctx, deadline).await
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = deadline;
        Err(LinkError::Setup(
            "this build has no TCP fallback (built without `tls`)".into(),
        ))
    }
}

/// The WebRTC attempt: [`super::webrtc::connect`] fed with this session's signals. Returns the
/// channel and the fingerprint of the peer's signed SDP. A `tcp-offer` arriving meanwhile (the
/// offerer gave up on ICE) ends it and is kept for the TCP fallback.
#[cfg(feature = "webrtc")]
async fn webrtc_channel(ctx: &mut SessionCtx) -> Result<(Channel, String), LinkError> {
    use super::channel::Signal;
    use super::signal::sdp_fingerprint;
    let inner = ctx.inner.clone();
    let (in_tx, in_rx) = mpsc::channel::<Signal>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Signal>(64);
    let mut their_fp: Option<String> = None;
    // The answerer starts from the offer that opened the session.
    if let Some(SignalMsg {
        body: SignalBody::Offer { sdp },
        ..
    }) = ctx.offer.take()
    {
        their_fp = sdp_fingerprint(&sdp);
        let _ = in_tx.send(Signal::Offer(sdp)).await;
    }
    let connect = super::webrtc::connect(
        ctx.role,
        inner.settings.ice.clone(),
        in_rx,
        out_tx,
        inner.settings.setup_timeout,
    );
    tokio::pin!(connect);
    loop {
        tokio::select! {
            r = &mut connect => {
                let ch = r?;
                let fp = their_fp.ok_or_else(|| LinkError::Setup("no SDP from the peer".into()))?;
                return Ok((ch, fp));
            }
            out = out_rx.recv() => {
                let Some(out) = out else { continue };
                let body = match out {
                    Signal::Offer(sdp) => SignalBody::Offer { sdp },
                    Signal::Answer(sdp) => SignalBody::Answer { sdp },
                    Signal::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                        SignalBody::Candidate { candidate, sdp_mid, sdp_mline_index }
                    }
                    Signal::EndOfCandidates => SignalBody::EndOfCandidates,
                };
                signal(ctx, body)?;
            }
            m = ctx.signals.recv() => {
                let Some(m) = m else {
                    return Err(LinkError::Setup("session replaced".into()));
                };
                let sig = match m.body {
                    SignalBody::Offer { sdp } | SignalBody::Answer { sdp } => {
                        their_fp = sdp_fingerprint(&sdp);
                        if ctx.role == Role::Offerer { Signal::Answer(sdp) } else { Signal::Offer(sdp) }
                    }
                    SignalBody::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                        Signal::Candidate { candidate, sdp_mid, sdp_mline_index }
                    }
                    SignalBody::EndOfCandidates => Signal::EndOfCandidates,
                    SignalBody::TcpOffer { .. } => {
                        ctx.offer = Some(m);
                        return Err(LinkError::IceFailed("the peer moved to the TCP fallback".into()));
                    }
                    SignalBody::Close { reason } => {
                        return Err(LinkError::Setup(format!("the peer closed the session: {reason}")));
                    }
                    SignalBody::TcpAnswer { .. } | SignalBody::Request => continue,
                };
                let _ = in_tx.send(sig).await;
            }
        }
    }
}

#[cfg(feature = "tls")]
async fn tcp_channel(
    ctx: &mut SessionCtx,
    deadline: Instant,
) -> Result<(Channel, String), LinkError> {
    use super::tcp::{dial, SessionCert};
    let cert = SessionCert::generate()?;
    let inner = ctx.inner.clone();
    let listener = inner.listener.as_ref();
    // Behind a NAT the listener's own address is private: offer the advertised one instead.
    let our_addr = listener.map(|l| {
        inner
            .settings
            .tcp_advertise
            .unwrap_or_else(|| l.local_addr())
            .to_string()
    });
    let parse = |a: &str| {
        a.parse::<SocketAddr>()
            .map_err(|e| LinkError::Setup(format!("bad address {a}: {e}")))
    };
    let within = |d: Instant| d.saturating_duration_since(Instant::now());
    let timeout = LinkError::Timeout(inner.settings.setup_timeout.as_millis() as u64);
    match ctx.role {
        Role::Offerer => {
            let incoming = match listener {
                Some(l) => Some(l.expect(&ctx.session, &cert)?),
                None => None,
            };
            signal(
                ctx,
                SignalBody::TcpOffer {
                    fingerprint: cert.fingerprint.clone(),
                    addr: our_addr.clone(),
                },
            )?;
            let (their_fp, their_addr) = loop {
                if let SignalBody::TcpAnswer { fingerprint, addr } =
                    next_signal(ctx, deadline).await?.body
                {
                    break (fingerprint, addr);
                }
            };
            if let Some(addr) = their_addr {
                if let Some(l) = listener {
                    l.forget(&ctx.session);
                }
                let ch = tokio::time::timeout(
                    within(deadline),
                    dial(parse(&addr)?, &ctx.session, &cert, &their_fp),
                )
                .await
                .map_err(|_| timeout)??;
                Ok((ch, their_fp))
            } else if let (Some(l), Some(rx)) = (listener, incoming) {
                l.expect_client(&ctx.session, &their_fp);
                let r = tokio::time::timeout(within(deadline), rx).await;
                l.forget(&ctx.session);
                let ch = r
                    .map_err(|_| timeout)?
                    .map_err(|_| LinkError::Setup("listener stopped".into()))??;
                Ok((ch, their_fp))
            } else {
                Err(LinkError::Setup(
                    "neither peer accepts TCP connections (one of them must listen for the TCP fallback)"
                        .into(),
                ))
            }
        }
        Role::Answerer => {
            let (their_fp, their_addr) = match ctx.offer.take().map(|m| m.body) {
                Some(SignalBody::TcpOffer { fingerprint, addr }) => (fingerprint, addr),
                _ => loop {
                    // A WebRTC offer came first; wait for the TCP offer of the same session.
                    if let SignalBody::TcpOffer { fingerprint, addr } =
                        next_signal(ctx, deadline).await?.body
                    {
                        break (fingerprint, addr);
                    }
                },
            };
            if let Some(l) = listener {
                let rx = l.expect(&ctx.session, &cert)?;
                l.expect_client(&ctx.session, &their_fp);
                signal(
                    ctx,
                    SignalBody::TcpAnswer {
                        fingerprint: cert.fingerprint.clone(),
                        addr: our_addr,
                    },
                )?;
                let r = tokio::time::timeout(within(deadline), rx).await;
                l.forget(&ctx.session);
                let ch = r
                    .map_err(|_| timeout)?
                    .map_err(|_| LinkError::Setup("listener stopped".into()))??;
                Ok((ch, their_fp))
            } else {
                signal(
                    ctx,
                    SignalBody::TcpAnswer {
                        fingerprint: cert.fingerprint.clone(),
                        addr: None,
                    },
                )?;
                let Some(addr) = their_addr else {
                    return Err(LinkError::Setup(
                        "neither peer accepts TCP connections (one of them must listen for the TCP fallback)"
                            .into(),
                    ));
                };
                let ch = tokio::time::timeout(
                    within(deadline),
                    dial(parse(&addr)?, &ctx.session, &cert, &their_fp),
                )
                .await
                .map_err(|_| timeout)??;
                Ok((ch, their_fp))
            }
        }
    }
}

/// Exchanges hellos: sends ours, checks theirs (the first frame, within 10 s).
async fn exchange_hello(
    ctx: &SessionCtx,
    ch: &mut Channel,
    signalled_fp: &str,
) -> Result<(), String> {
    let inner = &ctx.inner;
    let content = hello_content(&ctx.session, &ch.local_fingerprint, &ch.remote_fingerprint);
    let ours = inner.host.sign_hello(&ctx.peer, &content)?;
    let event: serde_json::Value =
        serde_json::from_str(&ours).map_err(|e| format!("our hello: {e}"))?;
    ch.tx
        .send(Frame::Hello { event }.encode())
        .await
        .map_err(|_| "the link closed before the hello".to_string())?;
    let first = tokio::time::timeout(Duration::from_secs(10), ch.rx.recv())
        .await
        .map_err(|_| "no hello within 10 s".to_string())?
        .ok_or("the link closed before the peer's hello")?;
    let Ok(Frame::Hello { event }) = Frame::decode(&first) else {
        return Err("the first frame is not a hello".into());
    };
    let (max_age, max_future) = inner.settings.hello_window;
    verify_hello(
        &event.to_string(),
        &Expected {
            peer: &ctx.peer,
            me: &inner.settings.me,
            session: &ctx.session,
            remote_fp: &ch.remote_fingerprint,
            signalled_fp,
            local_fp: &ch.local_fingerprint,
            now: inner.host.now(),
            max_age,
            max_future,
        },
    )
    .map(|_| ())
}

/// One session: signalling, transport, hello, then the link's life until it drops.
async fn run_session(mut ctx: SessionCtx) {
    let inner = ctx.inner.clone();
    let (peer, generation) = (ctx.peer.clone(), ctx.generation);
    let (mut ch, signalled_fp) = match open_channel(&mut ctx).await {
        Ok(x) => x,
        Err(e) => {
            if matches!(e, LinkError::Fingerprint) {
                inner.count(|c| c.bad_fingerprint += 1);
            }
            // Tell the peer, so it stops waiting (best effort).
            let _ = signal(
                &ctx,
                SignalBody::Close {
                    reason: e.to_string().chars().take(200).collect(),
                },
            );
            inner.failed(&peer, generation, &e.to_string());
            return;
        }
    };
    if let Err(why) = exchange_hello(&ctx, &mut ch, &signalled_fp).await {
        inner.count(|c| c.bad_hello += 1);
        let _ = ch.tx.try_send(
            Frame::Close {
                reason: "hello did not verify".into(),
            }
            .encode(),
        );
        inner.failed(&peer, generation, &why);
        return;
    }
    let Channel {
        path, tx, mut rx, ..
    } = ch;
    let (bytes_in, bytes_out) = {
        let mut st = lock(&inner.state);
        let Some(p) = st.peers.get_mut(&peer) else {
            return;
        };
        if p.generation != generation {
            return;
        }
        p.state = LinkState::Up;
        p.path = Some(path);
        p.tx = Some(tx.clone());
        p.signals = None;
        p.backoff = Duration::ZERO;
        p.retry_at = None;
        p.last_error = None;
        let io = (p.bytes_in.clone(), p.bytes_out.clone());
        st.counters.links_up += 1;
        st.events.push(LinkEvent::Up {
            peer: peer.clone(),
            path,
        });
        io
    };
    let mine = inner.settings.topics.messages(&inner.settings.me);
    let sync = inner.settings.topics.sync();
    let mut ping = tokio::time::interval(inner.settings.ping_interval);
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut nonce = 0u64;
    let why = loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break "the link closed".to_string() };
                bytes_in.fetch_add(m.len() as u64, Ordering::Relaxed);
                match Frame::decode(&m) {
                    Ok(Frame::Event { topic, payload }) => {
                        if (topic == mine || topic == sync) && signer(&payload).as_deref() == Some(peer.as_str()) {
                            inner.count(|c| c.received += 1);
                            inner.host.deliver(&peer, &topic, payload.as_bytes());
                        } else {
                            inner.count(|c| c.link_foreign += 1);
                        }
                    }
                    Ok(Frame::Ping { nonce }) => {
                        let f = Frame::Pong { nonce }.encode();
                        bytes_out.fetch_add(f.len() as u64, Ordering::Relaxed);
                        let _ = tx.try_send(f);
                    }
                    Ok(Frame::Pong { nonce }) => {
                        if let Some(t0) = sent.remove(&nonce) {
                            let ms = t0.elapsed().as_secs_f64() * 1000.0;
                            if let Some(p) = lock(&inner.state).peers.get_mut(&peer) {
                                p.rtt_ms = Some(ms);
                            }
                        }
                        sent.retain(|n, _| *n > nonce);
                    }
                    Ok(Frame::Close { reason }) => break format!("closed by the peer: {reason}"),
                    Ok(Frame::Hello { .. }) | Err(_) => {
                        inner.count(|c| c.malformed_frames += 1);
                        break "the peer sent a frame that is not one".to_string();
                    }
                }
            }
            _ = ping.tick() => {
                if sent.len() >= 3 {
                    break "3 pings unanswered".to_string();
                }
                nonce += 1;
                sent.insert(nonce, Instant::now());
                let f = Frame::Ping { nonce }.encode();
                bytes_out.fetch_add(f.len() as u64, Ordering::Relaxed);
                if tx.try_send(f).is_err() {
                    break "the link is stuck".to_string();
                }
            }
        }
    };
    inner.failed(&peer, generation, &why);
}

/// The `pubkey` of an event's JSON, if it has one.
fn signer(payload: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Pk {
        pubkey: String,
    }
    serde_json::from_str::<Pk>(payload).ok().map(|p| p.pubkey)
}
