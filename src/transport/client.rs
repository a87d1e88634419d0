//! The MQTT client: a handle for callers and a manager task on the runtime.
//!
//! rumqttc does the protocol; this file adds what its issue tracker and our own measurements say
//! it lacks: our own bounded queue in front of it (its `try_publish` silently drops when its
//! channel is full), tracking of every QoS 1/2 message until the broker acknowledges it (on a
//! new session rumqttc clears its unacknowledged packets), re-subscription on every ConnAck,
//! exponential backoff between reconnect attempts, and a fresh client and event loop for each
//! connection, so nothing stale from a dead connection is sent before the subscriptions are
//! restored.
//!
//! Persistent sessions (`clean_session` off, a stable client id): the broker keeps the session
//! while we are away and queues QoS 1 messages for our subscriptions. Two clients with one
//! client id (two Emacs of one identity) would throw each other off for ever, each reconnect
//! ending the other's connection. So when a connection ends within [`TAKEOVER_WINDOW`] of its
//! ConnAck [`TAKEOVER_LIMIT`] times in a row, this client says so and goes on with a unique
//! client id and a clean session. The one that gives way is normally the one that started
//! later (when the other had been connected for longer than the window); the other keeps the
//! persistent session.

use super::options::ConnectOptions;
use super::topic::{filter_matches, validate_filter, validate_topic};
use crate::events::{lock, Event, EventBus};
use rumqttc::{AsyncClient, ClientError, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Capacity of rumqttc's request channel; our own queue sits in front of it.
const REQUEST_CHANNEL_CAP: usize = 512;

/// A connection that ends sooner than this after its ConnAck counts as thrown off.
const TAKEOVER_WINDOW: Duration = Duration::from_secs(5);

/// How many connections thrown off in a row mean another client uses our client id.
const TAKEOVER_LIMIT: u32 = 3;

/// Why a publish or subscribe was refused at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientCallError {
    #[error("{0}")]
    BadTopic(String),
    #[error("QoS must be 0, 1 or 2, not {0}")]
    BadQos(i64),
    #[error(
        "payload of {size} bytes is over the {limit}-byte packet limit (raise :max-packet-size \
         or split the payload)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "{0} messages are already waiting to be sent or acknowledged: the broker is unreachable \
         or slow; wait for the connection or raise the queue limit"
    )]
    QueueFull(usize),
    #[error("the connection is closing")]
    Closed,
}

/// One subscription: its id is what message events carry, so Elisp finds its handlers.
#[derive(Debug, Clone)]
struct Subscription {
    id: u64,
    filter: String,
    qos: u8,
    /// Elisp subscribed to it (its messages go to the event bus with this id).
    elisp: bool,
    /// The core session takes its messages ([`super::options::Inbound`]).
    session: bool,
}

/// Counters and state shared by the handle and the manager.
#[derive(Debug, Default)]
pub struct Stats {
    pub connected: AtomicBool,
    /// Messages accepted from callers and not yet sent (QoS 0) or acknowledged (QoS 1/2).
    pub pending: AtomicUsize,
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub connects: AtomicU64,
    pub requeued: AtomicU64,
}

#[derive(Debug, Clone)]
struct OutMsg {
    seq: u64,
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
}

enum Command {
    Publish(OutMsg),
    Subscribe(Vec<(String, u8)>),
    Unsubscribe(String),
    Disconnect,
}

/// The caller's side of a connection. Every method returns at once.
pub struct Client {
    cmd: mpsc::UnboundedSender<Command>,
    subs: Arc<Mutex<Vec<Subscription>>>,
    pub stats: Arc<Stats>,
    opts: Arc<ConnectOptions>,
    next_id: AtomicU64,
    seq: AtomicU64,
}

fn qos_of(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn check_qos(q: i64) -> Result<u8, ClientCallError> {
    match q {
        0..=2 => Ok(q as u8),
        _ => Err(ClientCallError::BadQos(q)),
    }
}

impl Client {
    /// Creates the handle and the manager future; spawn the future on the runtime.
    pub fn new(
        opts: ConnectOptions,
        bus: &'static EventBus,
    ) -> (
        Client,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let opts = Arc::new(opts);
        // Registered now, before the manager connects: the queue of a persistent session
        // arrives right after the ConnAck, and a message without a subscription is dropped.
        let initial: Vec<Subscription> = opts
            .initial_subscriptions
            .iter()
            .enumerate()
            .map(|(i, (filter, qos))| {
                let session = opts
                    .inbound
                    .as_ref()
                    .is_some_and(|inb| inb.filters.contains(filter));
                Subscription {
                    id: i as u64 + 1,
                    filter: filter.clone(),
                    qos: *qos,
                    elisp: !session,
                    session,
                }
            })
            .collect();
        let first_free_id = initial.len() as u64 + 1;
        let subs = Arc::new(Mutex::new(initial));
        let stats = Arc::new(Stats::default());
        let manager = Manager {
            opts: opts.clone(),
            subs: subs.clone(),
            stats: stats.clone(),
            bus,
            queue: VecDeque::new(),
            awaiting_pkid: VecDeque::new(),
            inflight: HashMap::new(),
            control: VecDeque::new(),
            sub_requests: VecDeque::new(),
            sub_pkids: HashMap::new(),
            conn: None,
            attempt: 0,
            ever_connected: false,
            reconnect_at: None,
            closing: None,
            up_since: None,
            short_lived: 0,
            fallback_id: None,
        };
        let client = Client {
            cmd: tx,
            subs,
            stats,
            opts,
            next_id: AtomicU64::new(first_free_id),
            seq: AtomicU64::new(0),
        };
        (client, manager.run(rx))
    }

    /// Queues a message. Refused at once for a bad topic or QoS, a payload over the packet
    /// limit, or a full queue; otherwise it is sent when connected (after any reconnect).
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: i64,
        retain: bool,
    ) -> Result<(), ClientCallError> {
        validate_topic(topic).map_err(|e| ClientCallError::BadTopic(e.0))?;
        let qos = check_qos(qos)?;
        // Fixed header (max 5) + topic length prefix (2) + packet id (2).
        let size = payload.len() + topic.len() + 9;
        if size > self.opts.max_outgoing_packet {
            return Err(ClientCallError::TooLarge {
                size: payload.len(),
                limit: self.opts.max_outgoing_packet,
            });
        }
        let limit = self.opts.queue_limit;
        self.stats
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(ClientCallError::QueueFull)?;
        let msg = OutMsg {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            topic: topic.to_string(),
            payload,
            qos,
            retain,
        };
        self.cmd.send(Command::Publish(msg)).map_err(|_| {
            self.stats.pending.fetch_sub(1, Ordering::SeqCst);
            ClientCallError::Closed
        })
    }

    /// Subscribes to `filter` (re-subscribed after every reconnect) and returns its id, which
    /// message events carry. Subscribing to the same filter again keeps its id.
    pub fn subscribe(&self, filter: &str, qos: i64) -> Result<u64, ClientCallError> {
        validate_filter(filter).map_err(|e| ClientCallError::BadTopic(e.0))?;
        let qos = check_qos(qos)?;
        let id = {
            let mut subs = lock(&self.subs);
            if let Some(s) = subs.iter_mut().find(|s| s.filter == filter) {
                s.qos = s.qos.max(qos);
                s.elisp = true;
                s.id
            } else {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                subs.push(Subscription {
                    id,
                    filter: filter.to_string(),
                    qos,
                    elisp: true,
                    session: false,
                });
                id
            }
        };
        self.cmd
            .send(Command::Subscribe(vec![(filter.to_string(), qos)]))
            .map_err(|_| ClientCallError::Closed)?;
        Ok(id)
    }

    /// Subscribes to `filter` for the core session: its messages go to the connection's
    /// [`Inbound`](super::options::Inbound) receiver, as those of the initial federation
    /// filters do (a per-share topic, taken after the connection was made). Idempotent.
    pub fn subscribe_session(&self, filter: &str, qos: i64) -> Result<(), ClientCallError> {
        validate_filter(filter).map_err(|e| ClientCallError::BadTopic(e.0))?;
        let qos = check_qos(qos)?;
        {
            let mut subs = lock(&self.subs);
            if let Some(s) = subs.iter_mut().find(|s| s.filter == filter) {
                if s.session && s.qos >= qos {
                    return Ok(());
                }
                s.qos = s.qos.max(qos);
                s.session = true;
            } else {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                subs.push(Subscription {
                    id,
                    filter: filter.to_string(),
                    qos,
                    elisp: false,
                    session: true,
                });
            }
        }
        self.cmd
            .send(Command::Subscribe(vec![(filter.to_string(), qos)]))
            .map_err(|_| ClientCallError::Closed)
    }

    /// Forgets a subscription; returns false if there was none for `filter`. A filter the
    /// core session takes stays subscribed for it; only Elisp's interest ends.
    pub fn unsubscribe(&self, filter: &str) -> bool {
        let removed = {
            let mut subs = lock(&self.subs);
            if let Some(s) = subs.iter_mut().find(|s| s.filter == filter && s.session) {
                return std::mem::replace(&mut s.elisp, false);
            }
            let before = subs.len();
            subs.retain(|s| s.filter != filter);
            subs.len() != before
        };
        if removed {
            let _ = self.cmd.send(Command::Unsubscribe(filter.to_string()));
        }
        removed
    }

    /// The current subscriptions as (id, filter, qos).
    pub fn subscriptions(&self) -> Vec<(u64, String, u8)> {
        lock(&self.subs)
            .iter()
            .map(|s| (s.id, s.filter.clone(), s.qos))
            .collect()
    }

    pub fn is_connected(&self) -> bool {
        self.stats.connected.load(Ordering::SeqCst)
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Asks the manager to flush (bounded by the flush timeout) and disconnect cleanly.
    pub fn request_disconnect(&self) {
        let _ = self.cmd.send(Command::Disconnect);
    }
}

enum Net {
    Ev(rumqttc::Event),
    Down(String),
    /// The broker refused our credentials: retrying with the same ones cannot succeed.
    Refused(String),
}

struct Conn {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Net>,
    poll: tokio::task::JoinHandle<()>,
    up: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

enum Control {
    Sub(Vec<(String, u8)>),
    Unsub(String),
}

struct Manager {
    opts: Arc<ConnectOptions>,
    subs: Arc<Mutex<Vec<Subscription>>>,
    stats: Arc<Stats>,
    bus: &'static EventBus,
    /// Accepted, not yet handed to rumqttc.
    queue: VecDeque<OutMsg>,
    /// Handed to rumqttc, waiting for its Outgoing::Publish (which gives the packet id).
    awaiting_pkid: VecDeque<OutMsg>,
    /// QoS 1/2 written, waiting for PubAck/PubComp.
    inflight: HashMap<u16, OutMsg>,
    control: VecDeque<Control>,
    sub_requests: VecDeque<Vec<String>>,
    sub_pkids: HashMap<u16, Vec<String>>,
    conn: Option<Conn>,
    attempt: u32,
    ever_connected: bool,
    reconnect_at: Option<Instant>,
    closing: Option<Instant>,
    /// When the current connection's ConnAck came.
    up_since: Option<Instant>,
    /// Connections in a row that ended within `TAKEOVER_WINDOW`.
    short_lived: u32,
    /// The unique client id used after giving way to another client with ours.
    fallback_id: Option<String>,
}

enum Step {
    Cmd(Option<Command>),
    Net(Option<Net>),
    Reconnect,
    CloseDeadline,
}

async fn recv_net(conn: Option<&mut Conn>) -> Option<Net> {
    match conn {
        Some(c) => c.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Whether the broker refused the connection for its credentials (bad user name or
/// password, or not authorized): a refusal that retrying with the same ones cannot change.
fn is_auth_refusal(e: &rumqttc::ConnectionError) -> bool {
    use rumqttc::mqttbytes::v4::ConnectReturnCode as C;
    matches!(
        e,
        rumqttc::ConnectionError::ConnectionRefused(C::BadUserNamePassword | C::NotAuthorized)
    )
}

fn describe(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}); check the user name, password and \
             client id"
        ),
        E::Io(io) => format!("network error: {io}"),
        // A broker that dies mid-session shows up as a read error inside rumqttc's state
        // machine; say it in the same words as a failed connect.
        E::MqttState(
            rumqttc::StateError::Io(io)
            | rumqttc::StateError::Deserialization(rumqttc::mqttbytes::Error::Io(io)),
        ) => format!("network error: {io}"),
        E::MqttState(rumqttc::StateError::ConnectionAborted) => {
            "network error: the broker closed the connection".into()
        }
        E::NetworkTimeout => "network timeout".into(),
        other => other.to_string(),
    }
}

impl Manager {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<Command>) {
        self.start_connection();
        loop {
            let step = tokio::select! {
                c = cmd_rx.recv() => Step::Cmd(c),
                n = recv_net(self.conn.as_mut()) => Step::Net(n),
                _ = sleep_until(self.reconnect_at) => Step::Reconnect,
                _ = sleep_until(self.closing) => Step::CloseDeadline,
            };
            match step {
                Step::Cmd(Some(c)) => self.on_command(c),
                // Every handle is gone: nobody can use this connection any more.
                Step::Cmd(None) => self.begin_closing(),
                Step::Net(Some(Net::Ev(ev))) => self.on_event(ev),
                Step::Net(Some(Net::Down(reason))) => self.on_down(reason),
                Step::Net(Some(Net::Refused(reason))) => self.on_refused(reason),
                Step::Net(None) => self.on_down("the network task ended".into()),
                Step::Reconnect => {
                    self.reconnect_at = None;
                    self.start_connection();
                }
                Step::CloseDeadline => break,
            }
            if self.closing.is_some() && (self.flushed() || !self.is_up()) {
                break;
            }
        }
        self.finish().await;
    }

    fn is_up(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.up)
    }

    fn flushed(&self) -> bool {
        self.queue.is_empty() && self.awaiting_pkid.is_empty() && self.inflight.is_empty()
    }

    fn begin_closing(&mut self) {
        if self.closing.is_none() {
            self.closing = Some(Instant::now() + self.opts.flush_timeout);
        }
    }

    fn mqtt_options(&self) -> MqttOptions {
        let o = &self.opts;
        let client_id = self
            .fallback_id
            .clone()
            .unwrap_or_else(|| o.client_id.clone());
        let (address, port) = o.broker_address();
        let mut m = MqttOptions::new(client_id, address, port);
        m.set_keep_alive(o.keep_alive)
            .set_clean_session(o.clean_session || self.fallback_id.is_some())
            .set_max_packet_size(o.max_incoming_packet, o.max_outgoing_packet)
            .set_request_channel_capacity(REQUEST_CHANNEL_CAP);
        if let Some(u) = &o.url.username {
            m.set_credentials(u.clone(), o.url.password.clone().unwrap_or_default());
        }
        let will = o
            .will_provider
            .map_or_else(|| o.will.clone(), |provide| provide());
        if let Some(w) = &will {
            m.set_last_will(rumqttc::LastWill::new(
                w.topic.clone(),
                w.payload.clone(),
                qos_of(w.qos),
                w.retain,
            ));
        }
        match o.transport() {
            Ok(t) => {
                m.set_transport(t);
            }
            Err(e) => self.bus.push(Event::Error {
                context: "tls".into(),
                message: e,
            }),
        }
        m
    }

    /// A fresh client and event loop for each attempt, so requests queued in a dead
    /// connection's channel can never go out ahead of the re-subscriptions.
    fn start_connection(&mut self) {
        let (client, mut eventloop) = AsyncClient::new(self.mqtt_options(), REQUEST_CHANNEL_CAP);
        // rumqttc leaves Nagle's algorithm on: a small publish then waits for the broker's
        // delayed ACK of the previous one (40 ms on Linux), which made every round trip
        // through the broker ~80 ms. Messages here are small and latency-bound.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, rx) = mpsc::unbounded_channel();
        let poll = tokio::spawn(poll_loop(eventloop, tx));
        self.conn = Some(Conn {
            client,
            rx,
            poll,
            up: false,
        });
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(m) => {
                self.queue.push_back(m);
                self.flush();
            }
            Command::Subscribe(filters) => {
                self.control.push_back(Control::Sub(filters));
                self.flush();
            }
            Command::Unsubscribe(f) => {
                self.control.push_back(Control::Unsub(f));
                self.flush();
            }
            Command::Disconnect => self.begin_closing(),
        }
    }

    /// Hands queued work to rumqttc while its channel has room: control requests first, then
    /// publishes in order. What does not fit waits for the next Outgoing event.
    fn flush(&mut self) {
        let Some(conn) = self.conn.as_ref().filter(|c| c.up) else {
            return;
        };
        while let Some(c) = self.control.pop_front() {
            let sent = match &c {
                Control::Sub(filters) => {
                    let topics = filters
                        .iter()
                        .map(|(f, q)| rumqttc::SubscribeFilter::new(f.clone(), qos_of(*q)));
                    conn.client.try_subscribe_many(topics).is_ok()
                }
                Control::Unsub(f) => conn.client.try_unsubscribe(f.clone()).is_ok(),
            };
            if !sent {
                self.control.push_front(c);
                return;
            }
            if let Control::Sub(filters) = c {
                self.sub_requests
                    .push_back(filters.into_iter().map(|(f, _)| f).collect());
            }
        }
        // Publishes wait until the broker has acknowledged every subscription asked for
        // before them. MQTT orders packets on one connection, but the embedded broker
        // (rumqttd) routes subscriptions and publishes apart: a presence sent right behind
        // the subscriptions reached peers before ours were in place, and their answer (a
        // share key, say) was lost.
        if !self.sub_requests.is_empty() || !self.sub_pkids.is_empty() {
            return;
        }
        while let Some(m) = self.queue.pop_front() {
            match conn.client.try_publish(
                m.topic.clone(),
                qos_of(m.qos),
                m.retain,
                m.payload.clone(),
            ) {
                Ok(()) => self.awaiting_pkid.push_back(m),
                Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => {
                    self.queue.push_front(m);
                    return;
                }
            }
        }
    }

    fn done(&mut self) {
        self.stats.pending.fetch_sub(1, Ordering::SeqCst);
        self.stats.published.fetch_add(1, Ordering::Relaxed);
    }

    fn on_event(&mut self, ev: rumqttc::Event) {
        match ev {
            rumqttc::Event::Incoming(Incoming::ConnAck(_)) => self.on_connack(),
            rumqttc::Event::Incoming(Incoming::Publish(p)) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let (filters, to_session) = {
                    let subs = lock(&self.subs);
                    let matching = subs.iter().filter(|s| filter_matches(&s.filter, &p.topic));
                    let mut ids = Vec::new();
                    let mut to_session = false;
                    for s in matching {
                        to_session |= s.session;
                        if s.elisp {
                            ids.push(s.id);
                        }
                    }
                    (ids, to_session)
                };
                if to_session {
                    if let Some(inb) = &self.opts.inbound {
                        (inb.deliver)(p.topic.clone(), p.payload.to_vec());
                    }
                }
                // A message for a filter unsubscribed meanwhile has no handler left to run.
                if !filters.is_empty() {
                    self.bus.push(Event::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        filters,
                    });
                }
            }
            rumqttc::Event::Incoming(Incoming::PubAck(a)) => self.acked(a.pkid),
            rumqttc::Event::Incoming(Incoming::PubComp(c)) => self.acked(c.pkid),
            rumqttc::Event::Incoming(Incoming::SubAck(ack)) => {
                let filters = self.sub_pkids.remove(&ack.pkid).unwrap_or_default();
                for (i, code) in ack.return_codes.iter().enumerate() {
                    if matches!(code, rumqttc::SubscribeReasonCode::Failure) {
                        let f = filters.get(i).cloned().unwrap_or_default();
                        self.bus.push(Event::Error {
                            context: "subscribe".into(),
                            message: format!("the broker refused the subscription to `{f}`"),
                        });
                    }
                }
                self.flush();
            }
            rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(m) = self.awaiting_pkid.pop_front() {
                    if m.qos == 0 {
                        self.done();
                    } else {
                        self.inflight.insert(pkid, m);
                    }
                }
                self.flush();
            }
            rumqttc::Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(f) = self.sub_requests.pop_front() {
                    self.sub_pkids.insert(pkid, f);
                }
                self.flush();
            }
            rumqttc::Event::Outgoing(_) => self.flush(),
            rumqttc::Event::Incoming(_) => {}
        }
    }

    fn acked(&mut self, pkid: u16) {
        if self.inflight.remove(&pkid).is_some() {
            self.done();
        }
        self.flush();
    }

    fn on_connack(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.up = true;
        }
        self.stats.connected.store(true, Ordering::SeqCst);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.attempt = 0;
        self.up_since = Some(Instant::now());
        // Restore every subscription before anything queued goes out, so messages published
        // while we were away and echoed back by the broker reach their handlers.
        self.control.clear();
        self.sub_requests.clear();
        self.sub_pkids.clear();
        let all: Vec<(String, u8)> = lock(&self.subs)
            .iter()
            .map(|s| (s.filter.clone(), s.qos))
            .collect();
        if !all.is_empty() {
            self.control.push_back(Control::Sub(all));
        }
        self.bus.push(Event::Connected {
            broker: self.opts.url.redacted(),
            reconnect: self.ever_connected,
        });
        self.ever_connected = true;
        self.flush();
    }

    /// The connection (or an attempt) failed: put every unconfirmed message back at the front
    /// of the queue, in its original order, and schedule a reconnect.
    fn on_down(&mut self, reason: String) {
        let was_up = self.is_up();
        if was_up {
            self.note_session_end();
        }
        self.conn = None;
        self.stats.connected.store(false, Ordering::SeqCst);
        let mut back: Vec<OutMsg> = self.inflight.drain().map(|(_, m)| m).collect();
        back.extend(self.awaiting_pkid.drain(..));
        back.sort_by_key(|m| m.seq);
        self.stats
            .requeued
            .fetch_add(back.len() as u64, Ordering::Relaxed);
        for m in back.into_iter().rev() {
            self.queue.push_front(m);
        }
        self.sub_requests.clear();
        self.sub_pkids.clear();
        let retry = self.closing.is_none();
        if was_up {
            self.bus.push(Event::Disconnected {
                reason: reason.clone(),
                will_retry: retry,
            });
        } else if self.attempt == 0 || self.attempt.is_multiple_of(10) {
            self.bus.push(Event::Error {
                context: "connect".into(),
                message: format!(
                    "cannot reach {}: {reason}; retrying",
                    self.opts.url.redacted()
                ),
            });
        }
        if retry {
            let delay = backoff(self.opts.min_backoff, self.opts.max_backoff, self.attempt);
            self.attempt = self.attempt.saturating_add(1);
            self.reconnect_at = Some(Instant::now() + delay);
        }
    }

    /// The broker refused our credentials: stop retrying (the same user name and password
    /// would be refused forever) and say so once, as an `auth` error, then as a final
    /// disconnection. Queued messages stay queued until the connection is closed.
    fn on_refused(&mut self, reason: String) {
        self.conn = None;
        self.stats.connected.store(false, Ordering::SeqCst);
        self.reconnect_at = None;
        let user = self.opts.url.username.as_deref().unwrap_or("");
        let message = if user.is_empty() {
            format!(
                "{} refused the connection: {reason}. It needs a user name and password: \
                 give the user in the URL (mqtt://USER@HOST:PORT) and the password in \
                 auth-sources (~/.authinfo.gpg), then connect again",
                self.opts.url.redacted()
            )
        } else {
            format!(
                "{} refused user `{user}`: {reason}. Not retrying: fix the password \
                 (auth-sources entry for this host and port, or the URL) or the broker's \
                 account, then connect again",
                self.opts.url.redacted()
            )
        };
        self.bus.push(Event::Error {
            context: "auth".into(),
            message: message.clone(),
        });
        self.bus.push(Event::Disconnected {
            reason: message,
            will_retry: false,
        });
    }

    /// Counts connections thrown off right after their ConnAck; at the limit, gives way to
    /// the other client that uses our client id (see the module documentation).
    fn note_session_end(&mut self) {
        let short = self
            .up_since
            .take()
            .is_some_and(|t| t.elapsed() < TAKEOVER_WINDOW);
        self.short_lived = if short { self.short_lived + 1 } else { 0 };
        if self.opts.clean_session || self.fallback_id.is_some() {
            return;
        }
        if self.short_lived >= TAKEOVER_LIMIT {
            let id = super::options::default_client_id();
            self.bus.push(Event::Error {
                context: "session".into(),
                message: format!(
                    "the broker ended this connection {TAKEOVER_LIMIT} times within seconds of \
                     connecting: another client uses the client id `{}` (another Emacs with \
                     this identity?). This one goes on as `{id}` with a clean session, so the \
                     broker keeps no messages for it while it is away; give each device its \
                     own identity",
                    self.opts.client_id
                ),
            });
            self.fallback_id = Some(id);
        }
    }

    async fn finish(mut self) {
        let unsent = self.queue.len() + self.awaiting_pkid.len() + self.inflight.len();
        if let Some(mut conn) = self.conn.take() {
            if conn.up && conn.client.try_disconnect().is_ok() {
                // Wait (briefly) until the DISCONNECT packet went out, so the broker does not
                // publish our last will.
                let wait = async {
                    while let Some(n) = conn.rx.recv().await {
                        if matches!(n, Net::Ev(rumqttc::Event::Outgoing(Outgoing::Disconnect)))
                            || matches!(n, Net::Down(_))
                        {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
            }
        }
        self.stats.connected.store(false, Ordering::SeqCst);
        // Whatever was not sent is released and said, never dropped silently.
        self.stats.pending.fetch_sub(unsent, Ordering::SeqCst);
        let reason = if unsent == 0 {
            "disconnected by request".to_string()
        } else {
            format!("disconnected by request; {unsent} queued messages were not sent")
        };
        self.bus.push(Event::Disconnected {
            reason,
            will_retry: false,
        });
    }
}

async fn poll_loop(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Net>) {
    loop {
        match eventloop.poll().await {
            Ok(ev) => {
                if tx.send(Net::Ev(ev)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let net = if is_auth_refusal(&e) {
                    Net::Refused(describe(&e))
                } else {
                    Net::Down(describe(&e))
                };
                let _ = tx.send(net);
                return;
            }
        }
    }
}

/// Exponential backoff with up to 20% jitter, so many peers do not reconnect in lockstep.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(16));
    let base = exp.min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 200) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let b0 = backoff(min, max, 0);
        assert!(b0 >= min && b0 <= min.mul_f64(1.2));
        let b3 = backoff(min, max, 3);
        assert!(b3 >= Duration::from_millis(800));
        let b30 = backoff(min, max, 30);
        assert!(b30 >= max && b30 <= max.mul_f64(1.2));
    }
}
