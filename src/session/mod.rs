//! The core session: where the program is put together. One [`Session`] owns the federation
//! [`Node`] (identity, peers, trust, replay, delivery) and, once opened, the
//! [`SyncEngine`], and runs the whole inbound pipeline on a worker thread of its own: size,
//! signature, id, time window, replay, trust and decryption (in the node), then sync merge,
//! state persistence and file writes (in the engine, through the one executor
//! [`crate::sync::exec`]). Its consumer (Emacs) receives only finished [`SessionEvent`]s.
//!
//! The transport hands the federation's messages straight to the worker
//! ([`Session::inbound`]): Emacs' main thread never sees their bytes. Outbound calls made by
//! the consumer sign (and encrypt) on the calling thread, which costs tens of microseconds,
//! and hand the publication to the MQTT client, which returns at once.
//!
//! Lock order: the engine before the node, never the reverse (the worker takes the node,
//! lets it go, then takes the engine; an engine operation signs its publications with the node
//! while it holds the engine).

pub mod event;
mod files;
mod publisher;
#[cfg(test)]
mod test_support;
mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use sha2::{Digest, Sha256};

use crate::events::lock;
use crate::federation::{Node, OutboundError, Publication, SyncKind};
use crate::links::manager::Manager;
use crate::sync::exec::{execute_on, ActionSink};
use crate::sync::{Action, SyncConfig, SyncEngine, SyncError};
use crate::transport::options::Inbound;

pub use event::{Offline, SessionEvent, SyncValue};
pub use files::FILE_WRITTEN;
pub use publisher::{GlobalConnection, PublishError, Publisher};

/// Where the session's events go (the Emacs event bus, or a test's channel).
pub type EventSink = Box<dyn Fn(SessionEvent) + Send + Sync>;

/// The clock: Unix time in seconds (injected, so tests can move it).
pub type Clock = fn() -> u64;

/// Unix time now.
pub fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters of the session, for statistics and benchmarks.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Messages the worker took from the transport.
    pub inbound: AtomicU64,
    /// Events handed to the consumer.
    pub events: AtomicU64,
    /// The longest time the worker spent on one message, in microseconds.
    pub max_handle_us: AtomicU64,
    /// Panics the worker caught (each reported as a warning): it goes on after one.
    pub internal_errors: AtomicU64,
}

/// What the session's parts share with its worker.
pub(crate) struct Shared {
    pub(crate) node: Mutex<Node>,
    pub(crate) engine: Mutex<Option<SyncEngine>>,
    pub(crate) publisher: Box<dyn Publisher>,
    pub(crate) sink: EventSink,
    pub(crate) clock: Clock,
    /// Whether [`SessionEvent::Accepted`] events are wanted (the prototype's hook has
    /// functions); off, the content of sync events never crosses to Elisp.
    pub(crate) report_accepted: AtomicBool,
    pub(crate) stats: SessionStats,
    /// Set by [`Session::stop`]: messages still queued are left unhandled, so that stopping
    /// never waits for a flood to be worked through.
    pub(crate) stopping: AtomicBool,
    /// The direct-link manager while direct links run: it carries events to peers it has a
    /// link to, and takes the link signals the node accepts.
    pub(crate) links: Mutex<Option<Arc<Manager>>>,
    /// Milliseconds between two delivery upkeeps on the worker (0: none).
    pub(crate) delivery_every_ms: AtomicU64,
    /// The per-share sync topics' prefix (`{p}/sync/`), if the topics are valid.
    pub(crate) share_topic_prefix: Option<String>,
    /// Whether the engine is open, readable without its lock: Emacs asks on every save and
    /// hold, and must not wait while the worker merges or writes.
    pub(crate) sync_open: AtomicBool,
    /// Whether the worker has deferred states or stale figures to deal with (see
    /// `worker::Housekeeping`).
    pub(crate) housekeeping_due: AtomicBool,
}

impl Shared {
    /// The interval of the delivery upkeep, if it runs.
    pub(crate) fn delivery_every(&self) -> Option<std::time::Duration> {
        match self.delivery_every_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// Publishes one event: over the direct link to its addressee if one is up, else to the
    /// MQTT client. A share's own topic is subscribed before its first publication, so an
    /// answer cannot come back before the subscription.
    pub(crate) fn publish_to(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PublishError> {
        if self.share_topic_tag(topic).is_some() {
            // Idempotent in the client, which keeps it across reconnections. A holder
            // publishes on its share's topic (a catch-up request at start, or on receiving the
            // share) before it can expect anything there, so Emacs never has to subscribe.
            // Also when a direct link carries this one event: later edits from other holders
            // still come through the broker.
            self.publisher.follow(topic);
        }
        let links = lock(&self.links).clone();
        if links.is_some_and(|m| m.carry(topic, &payload)) {
            return Ok(());
        }
        self.publisher.publish(topic, payload, qos, retain)
    }

    /// The share tag of `topic` if it is a per-share sync topic (`{p}/sync/TAG`).
    fn share_topic_tag<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let tag = topic.strip_prefix(self.share_topic_prefix.as_deref()?)?;
        (!tag.is_empty() && !tag.contains('/')).then_some(tag)
    }

    pub(crate) fn emit(&self, ev: SessionEvent) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        (self.sink)(ev);
    }

    /// Signs a sync event with the node and publishes it.
    pub(crate) fn publish_sync(
        &self,
        kind: SyncKind,
        content: &str,
        tags: &[Vec<String>],
    ) -> Result<(), String> {
        let p = lock(&self.node)
            .sync(kind, content, tags.to_vec(), (self.clock)())
            .map_err(|e| e.to_string())?;
        self.publish_to(&p.topic, p.payload, p.qos, p.retain)
            .map_err(|e| e.to_string())
    }
}

/// The executor's sink inside the session: publications are signed and published, the other
/// actions collected (for the caller, or turned into events by the worker).
pub(crate) struct SessionSink<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) reports: Vec<Action>,
}

impl ActionSink for SessionSink<'_> {
    fn publish(
        &mut self,
        kind: SyncKind,
        content: &str,
        tags: &[Vec<String>],
    ) -> Result<(), String> {
        self.shared.publish_sync(kind, content, tags)
    }

    fn report(&mut self, action: Action) {
        self.reports.push(action);
    }
}

/// Work for the worker thread.
pub(crate) enum Work {
    Inbound(String, Vec<u8>),
    /// Run a closure on the worker, in order with the messages (tests, flushes).
    Call(Box<dyn FnOnce(&Shared) + Send>),
    /// An operation of Emacs on the engine, often its answer to the events it was just given
    /// (a buffer taking an offer): unlike [`Work::Call`], it goes before the housekeeping
    /// still due (see `worker::Housekeeping`), as it writes what it needs itself.
    Op(Box<dyn FnOnce(&Shared) + Send>),
    Stop,
}

/// Why an outbound call did not publish.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The event could not be built (unknown peer, too large, ...).
    #[error(transparent)]
    Build(#[from] OutboundError),
    /// The MQTT client refused it or there is no connection.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// One peer's running federation: the node, the sync engine, the worker.
pub struct Session {
    /// Our peer id, kept outside the node's lock: Elisp asks for it per message.
    peer_id: String,
    shared: Arc<Shared>,
    tx: Sender<Work>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    /// Starts the session of `node`: publications go to `publisher`, events to `sink`.
    pub fn start(
        node: Node,
        publisher: Box<dyn Publisher>,
        sink: EventSink,
        clock: Clock,
    ) -> std::io::Result<Session> {
        let peer_id = node.peer_id().to_string();
        let share_topic_prefix = node.config().topics().ok().map(|t| t.share_sync(""));
        let shared = Arc::new(Shared {
            node: Mutex::new(node),
            engine: Mutex::new(None),
            publisher,
            sink,
            clock,
            report_accepted: AtomicBool::new(false),
            stats: SessionStats::default(),
            stopping: AtomicBool::new(false),
            links: Mutex::new(None),
            delivery_every_ms: AtomicU64::new(0),
            share_topic_prefix,
            sync_open: AtomicBool::new(false),
            housekeeping_due: AtomicBool::new(false),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("meta-log-session".into())
            .spawn(move || {
                crate::runtime::block_sigpipe();
                worker::run(&s, rx);
            })?;
        Ok(Session {
            peer_id,
            shared,
            tx,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// What the transport needs to hand the federation's messages to the worker: the
    /// node's subscriptions, and a sender that only queues.
    pub fn inbound(&self) -> Inbound {
        let filters = self
            .with_node(|n| n.subscriptions())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        let tx = self.tx.clone();
        Inbound {
            filters,
            deliver: Arc::new(move |topic, payload| {
                // The worker lives as long as the session; after a stop nothing is wanted.
                let _ = tx.send(Work::Inbound(topic, payload));
            }),
        }
    }

    /// Hands one received message to the worker (what [`Session::inbound`]'s sender does).
    pub fn receive(&self, topic: &str, payload: &[u8]) {
        let _ = self
            .tx
            .send(Work::Inbound(topic.to_string(), payload.to_vec()));
    }

    /// Our peer id (without waiting for the node).
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Runs `f` with the node (briefly: the worker waits for it).
    pub fn with_node<T>(&self, f: impl FnOnce(&mut Node) -> T) -> T {
        f(&mut lock(&self.shared.node))
    }

    /// Builds a publication with the node and publishes it; returns the event id.
    pub fn publish_with(
        &self,
        f: impl FnOnce(&mut Node, u64) -> Result<Publication, OutboundError>,
    ) -> Result<String, SendError> {
        let p = f(&mut lock(&self.shared.node), (self.shared.clock)())?;
        self.publish(p)
    }

    /// Publishes a publication built elsewhere; returns its event id.
    pub fn publish(&self, p: Publication) -> Result<String, SendError> {
        let id = p.event_id;
        self.shared
            .publish_to(&p.topic, p.payload, p.qos, p.retain)?;
        Ok(id)
    }

    /// Whether an MQTT client is there to publish to.
    pub fn publisher(&self) -> &dyn Publisher {
        &*self.shared.publisher
    }

    /// The clock's time now.
    pub fn now(&self) -> u64 {
        (self.shared.clock)()
    }

    /// Asks for (or stops) [`SessionEvent::Accepted`] events.
    pub fn set_report_accepted(&self, on: bool) {
        self.shared.report_accepted.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> &SessionStats {
        &self.shared.stats
    }

    /// Runs the delivery upkeep (`Node::delivery_tick`: receipts, resends, expiry, and the
    /// saving of the outbox and the received log) on the worker every `every`, or no more
    /// (`None`). Its outcome comes as [`SessionEvent::Delivery`] when something changed.
    pub fn run_delivery_every(&self, every: Option<std::time::Duration>) {
        let ms = every.map_or(0, |d| d.as_millis().clamp(1, u64::MAX as u128) as u64);
        self.shared.delivery_every_ms.store(ms, Ordering::Relaxed);
        // Wake the worker so that it takes the new schedule at once.
        let _ = self.tx.send(Work::Call(Box::new(|_| ())));
    }

    /// Runs the delivery upkeep once more on the worker, after the messages queued so far, and
    /// waits for it; its event goes to the consumer as usual. False if the worker has stopped.
    pub fn delivery_upkeep_now(&self) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = self.tx.send(Work::Call(Box::new(move |s: &Shared| {
            if let Some(ev) = worker::delivery_upkeep(s, &mut Vec::new()) {
                s.emit(ev);
            }
            let _ = tx.send(());
        })));
        sent.is_ok() && rx.recv().is_ok()
    }

    /// Puts the direct-link manager in place (`None`: direct links stop); returns the one
    /// it replaces. While it runs, events to a peer with a link up go over the link, and the
    /// link signals the node accepts go to it.
    pub fn set_links(&self, links: Option<Arc<Manager>>) -> Option<Arc<Manager>> {
        std::mem::replace(&mut *lock(&self.shared.links), links)
    }

    /// The direct-link manager, while direct links run.
    pub fn links(&self) -> Option<Arc<Manager>> {
        lock(&self.shared.links).clone()
    }

    /// Opens the sync engine in `sync_dir` (received files) and `state_dir` (merge states),
    /// for events of at most `max_event_bytes`.
    pub fn open_sync(
        &self,
        sync_dir: &Path,
        state_dir: &Path,
        max_event_bytes: usize,
    ) -> Result<(), SyncError> {
        let (me, identity) = self.with_node(|n| (n.peer_id().to_string(), n.identity().clone()));
        // The CRDT actor: stable for this peer, different for every peer.
        let mut actor = [0u8; 32];
        actor.copy_from_slice(&Sha256::digest(format!("meta-log-federation actor {me}")));
        let config = SyncConfig::for_event_limit(max_event_bytes);
        let mut e = SyncEngine::open_with(sync_dir, state_dir, &me, actor, config)?;
        // The engine signs memberships and key envelopes of the shares we originate.
        e.set_signer(identity, (self.shared.clock)())?;
        // Held shares' states are written after their buffers are offered the change (see
        // `worker::carry_out`), off the path from a peer's save to this Emacs' buffer.
        e.defer_held_state_writes(true);
        *lock(&self.shared.engine) = Some(e);
        self.shared.sync_open.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Closes the sync engine; true if it was open.
    /// Closes the sync engine after the operations queued before (a save handed to the worker
    /// is written, never dropped); true if it was open.
    pub fn close_sync(&self) -> bool {
        self.shared.sync_open.store(false, Ordering::SeqCst);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let queued = self.tx.send(Work::Call(Box::new(move |s: &Shared| {
            let _ = tx.send(lock(&s.engine).take().is_some());
        })));
        match queued.ok().and_then(|()| rx.recv().ok()) {
            Some(was_open) => was_open,
            // The worker has stopped: nothing is queued any more.
            None => lock(&self.shared.engine).take().is_some(),
        }
    }

    /// Whether the engine is open (without waiting for the worker).
    pub fn sync_open_p(&self) -> bool {
        self.shared.sync_open.load(Ordering::SeqCst)
    }

    /// Runs a query on the engine (`None` while it is closed).
    pub fn with_engine<T>(
        &self,
        f: impl FnOnce(&mut SyncEngine) -> Result<T, SyncError>,
    ) -> Option<Result<T, SyncError>> {
        lock(&self.shared.engine).as_mut().map(f)
    }

    /// Runs an operation on the engine and carries out its actions with the one executor:
    /// publications are signed and published; the other actions (and the engine's notices,
    /// see `SyncEngine::take_notices`) are returned, in order. `None` while the engine is
    /// closed.
    pub fn engine_op<T>(
        &self,
        f: impl FnOnce(&mut SyncEngine, u64) -> Result<(T, Vec<Action>), SyncError>,
    ) -> Option<Result<(T, Vec<Action>), SyncError>> {
        let mut g = lock(&self.shared.engine);
        let e = g.as_mut()?;
        let now = (self.shared.clock)();
        Some(f(e, now).map(|(v, mut actions)| {
            actions.extend(e.take_notices());
            // Here the caller waits anyway: nothing is gained by writing later.
            actions.extend(e.write_deferred_states());
            let mut sink = SessionSink {
                shared: &self.shared,
                reports: Vec::new(),
            };
            execute_on(e, actions, now, &mut sink);
            // The figures this operation made stale are computed on the worker, not here.
            let _ = self.tx.send(Work::Call(Box::new(worker::warm_figures)));
            (v, sink.reports)
        }))
    }

    /// Queues an operation on the engine for the worker and returns at once: it runs after
    /// every message and operation queued before it, so the consumer's operations on one file
    /// keep the order it made them in. Its actions are carried out by the one executor and
    /// their outcome arrives as events; an error of the operation becomes a
    /// [`SessionEvent::Warning`] (prefixed with `what`), unless `quiet_if` says it is expected.
    pub fn engine_op_queued(
        &self,
        what: &'static str,
        quiet_if: fn(&SyncError) -> bool,
        f: impl FnOnce(&mut SyncEngine, u64) -> Result<Vec<Action>, SyncError> + Send + 'static,
    ) {
        let _ = self.tx.send(Work::Op(Box::new(move |s: &Shared| {
            let mut g = lock(&s.engine);
            let Some(e) = g.as_mut() else { return };
            let now = (s.clock)();
            let actions = match f(e, now) {
                Ok(mut a) => {
                    a.extend(e.take_notices());
                    a
                }
                Err(err) if quiet_if(&err) => return,
                Err(err) => vec![Action::Warning {
                    share: None,
                    message: format!("{what}: {err}"),
                }],
            };
            worker::carry_out(s, g, actions, now);
        })));
    }

    /// Queues `f` on the worker with the node and returns at once: outbound work whose cost
    /// Emacs must not wait for (signing), in the order of the calls. A publication `f`
    /// returns is published; a failure to publish becomes a [`SessionEvent::Warning`].
    pub fn node_op_queued(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Node) -> Publication + Send + 'static,
    ) {
        let _ = self.tx.send(Work::Call(Box::new(move |s: &Shared| {
            let p = f(&mut lock(&s.node));
            if let Err(e) = s.publish_to(&p.topic, p.payload, p.qos, p.retain) {
                s.emit(SessionEvent::Warning {
                    share: None,
                    message: format!("{what}: {e}"),
                });
            }
        })));
    }

    /// Queues a buffer's save of `share` (see `crate::sync::save`) for the worker and returns
    /// at once. Its outcome arrives as a `saved` or `save-not-taken` event (also when the
    /// operation fails: a save is never left unanswered), and the changes it published and the
    /// text it offers as the usual events.
    pub fn queue_save(&self, share: String, save: QueuedSave) {
        let _ = self.tx.send(Work::Op(Box::new(move |s: &Shared| {
            let mut g = lock(&s.engine);
            let Some(e) = g.as_mut() else {
                drop(g);
                s.emit(save_not_taken(
                    &share,
                    save.seq(),
                    "CanvasL sync is not running",
                ));
                return;
            };
            let now = (s.clock)();
            match save.run(e, &share, now) {
                Ok((mut a, write)) => {
                    a.extend(e.take_notices());
                    // The change goes out before the file is written: the peers do not wait
                    // for the write of the whole file (its state is on disk already).
                    let mut unanswered = None;
                    if let Some(w) = write {
                        let mut sink = SessionSink {
                            shared: s,
                            reports: Vec::new(),
                        };
                        execute_on(e, a, now, &mut sink);
                        a = sink.reports;
                        match e.finish_save(w) {
                            Ok(more) => a.extend(more),
                            // A save is never left unanswered.
                            Err(err) => unanswered = Some(err.to_string()),
                        }
                    }
                    worker::carry_out(s, g, a, now);
                    if let Some(why) = unanswered {
                        s.emit(save_not_taken(&share, save.seq(), &why));
                    }
                }
                Err(err) => {
                    drop(g);
                    s.emit(save_not_taken(&share, save.seq(), &err.to_string()));
                }
            }
        })));
    }

    /// Queues the share of the file at `path` as `name` (see `SyncEngine::share`: reading,
    /// parsing and building its document cost the whole file) and returns at once. A `shared`
    /// event (URL asked for, URL, file) follows once peers can ask for it, or `share-failed`
    /// (URL asked for, file, why).
    pub fn queue_share(&self, path: std::path::PathBuf, name: Option<String>, asked: String) {
        use event::SyncValue::Text;
        let _ = self.tx.send(Work::Call(Box::new(move |s: &Shared| {
            let file = Text(path.to_string_lossy().into_owned());
            let mut g = lock(&s.engine);
            let outcome = match g.as_mut() {
                None => Err("CanvasL sync is not running".to_string()),
                Some(e) => {
                    let now = (s.clock)();
                    e.share(&path, name.as_deref(), now)
                        .and_then(|a| Ok((e.resolve(&path.to_string_lossy())?.url(), a)))
                        .map(|(url, mut a)| {
                            a.extend(e.take_notices());
                            (url, a, now)
                        })
                        .map_err(|err| err.to_string())
                }
            };
            match outcome {
                Ok((url, actions, now)) => {
                    worker::carry_out(s, g, actions, now);
                    s.emit(SessionEvent::Sync {
                        kind: "shared",
                        values: vec![Text(asked), Text(url), file],
                    });
                }
                Err(why) => {
                    drop(g);
                    s.emit(SessionEvent::Sync {
                        kind: "share-failed",
                        values: vec![Text(asked), file, Text(why)],
                    });
                }
            }
        })));
    }

    /// Runs `f` on the worker after every message queued before this call, and returns its
    /// result (for tests, and to wait until the pipeline is idle).
    pub fn on_worker<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Work::Call(Box::new(move |s: &Shared| {
                let _ = tx.send(f(&mut lock(&s.node)));
            })))
            .ok()?;
        rx.recv().ok()
    }

    /// Stops the worker and waits for it: the message it is handling is finished, those still
    /// queued are dropped (the broker's persistent session and the peers' catch-up bring back
    /// what matters).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Work::Stop);
        if let Some(h) = lock(&self.worker).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A buffer's save for the worker: its changed lines, or (Emacs wrote the file) its number.
pub enum QueuedSave {
    /// See `SyncEngine::save_buffer`.
    Lines(crate::sync::BufferSave),
    /// See `SyncEngine::save_buffer_file`: the save's sequence number.
    File(u64),
}

impl QueuedSave {
    fn seq(&self) -> u64 {
        match self {
            QueuedSave::Lines(s) => s.seq,
            QueuedSave::File(seq) => *seq,
        }
    }

    /// Takes the save in; a save of changed lines leaves its file to write
    /// (`SyncEngine::begin_save`).
    fn run(
        &self,
        e: &mut SyncEngine,
        share: &str,
        now: u64,
    ) -> Result<(Vec<Action>, Option<crate::sync::save::SaveWrite>), SyncError> {
        match self {
            QueuedSave::Lines(s) => e.begin_save(share, s, now),
            QueuedSave::File(seq) => Ok((e.save_buffer_file(share, *seq, now)?, None)),
        }
    }
}

/// The `save-not-taken` event of a save that failed before the engine could say more.
fn save_not_taken(share: &str, seq: u64, why: &str) -> SessionEvent {
    use event::SyncValue::{Flag, Int, Text};
    SessionEvent::Sync {
        kind: "save-not-taken",
        values: vec![
            Text(share.to_string()),
            Text(String::new()),
            Int(seq as i64),
            Text(why.to_string()),
            Flag(false),
        ],
    }
}
