//! The process-wide MQTT connection used from Elisp, and its runtime's life cycle.
//!
//! A connection owns its runtime. Disconnecting takes it out of service at once (so a new
//! connect may start straight away) and hands the old one to a reaper thread that lets the
//! manager flush and say goodbye, then shuts the runtime down and joins its threads. Emacs'
//! main thread never waits on the network, except in [`shutdown_blocking`], which exists for
//! `kill-emacs-hook` and is bounded.

use super::client::Client;
use super::options::ConnectOptions;
use crate::events::{lock, EventBus};
use crate::runtime;
use once_cell::sync::Lazy;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::runtime::Runtime;

struct Connection {
    client: Client,
    rt: Runtime,
    task: tokio::task::JoinHandle<()>,
}

static CURRENT: Lazy<Mutex<Option<Connection>>> = Lazy::new(|| Mutex::new(None));
static REAPERS: Lazy<Mutex<Vec<JoinHandle<()>>>> = Lazy::new(|| Mutex::new(Vec::new()));

/// Why a connect was refused at once.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("already connected to {0}; disconnect first")]
    AlreadyConnected(String),
    #[error("{0}")]
    BadOptions(String),
    #[error("cannot start the background runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Starts connecting (returns at once; the outcome arrives as events on `bus`).
pub fn connect(opts: ConnectOptions, bus: &'static EventBus) -> Result<(), ConnectError> {
    opts.validate().map_err(ConnectError::BadOptions)?;
    let mut cur = lock(&CURRENT);
    if let Some(c) = cur.as_ref() {
        return Err(ConnectError::AlreadyConnected(
            c.client.options().url.redacted(),
        ));
    }
    let rt = runtime::build()?;
    let (client, manager) = Client::new(opts, bus);
    let task = rt.spawn(manager);
    *cur = Some(Connection { client, rt, task });
    Ok(())
}

/// Runs `f` with the current client, or returns None when there is no connection.
pub fn with_client<R>(f: impl FnOnce(&Client) -> R) -> Option<R> {
    lock(&CURRENT).as_ref().map(|c| f(&c.client))
}

/// Whether a connection exists (connected or reconnecting).
pub fn exists() -> bool {
    lock(&CURRENT).is_some()
}

fn stop(conn: Connection, extra: Duration) {
    let Connection { client, rt, task } = conn;
    client.request_disconnect();
    let wait = client.options().flush_timeout + extra;
    // The manager exits after flushing or at its deadline; this bound only guards a bug.
    let _ = rt.block_on(async { tokio::time::timeout(wait, task).await });
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// Disconnects without blocking: returns false if there was no connection. The
/// `Disconnected` event arrives when the goodbye is done.
pub fn disconnect() -> bool {
    let Some(conn) = lock(&CURRENT).take() else {
        return false;
    };
    let handle = std::thread::Builder::new()
        .name("meta-log-reaper".into())
        .spawn(move || {
            runtime::block_sigpipe();
            stop(conn, Duration::from_secs(1));
        });
    let mut reapers = lock(&REAPERS);
    reapers.retain(|h| !h.is_finished());
    if let Ok(h) = handle {
        reapers.push(h);
    }
    true
}

/// Disconnects and waits (bounded) until every thread is gone: for Emacs' exit and for tests
/// that count threads. Returns whether there was a connection.
pub fn shutdown_blocking() -> bool {
    let taken = lock(&CURRENT).take();
    let had = taken.is_some();
    if let Some(conn) = taken {
        stop(conn, Duration::from_millis(500));
    }
    let reapers: Vec<JoinHandle<()>> = lock(&REAPERS).drain(..).collect();
    for h in reapers {
        let _ = h.join();
    }
    had
}
