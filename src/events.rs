//! The event bus: how the background runtime hands results to Emacs' main thread.
//!
//! Runtime threads push [`Event`]s into an unbounded crossbeam channel and then wake Emacs by
//! writing one byte to a pipe (Emacs 28's `open_channel`). One byte per drain is enough: a flag
//! remembers that a wake-up is pending, so a burst of 10,000 messages costs a handful of
//! writes. Emacs drains the channel from the pipe process' filter, on its main thread. With no
//! waker installed (tests, or before the Elisp side is set up) events simply wait in the queue.

use crossbeam_channel::{Receiver, Sender};
use once_cell::sync::Lazy;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Something that happened on the runtime, for Elisp to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The MQTT connection is up (after the first connect and after every reconnect).
    Connected { broker: String, reconnect: bool },
    /// The connection went down. `will_retry` says whether the client reconnects by itself.
    Disconnected { reason: String, will_retry: bool },
    /// A message arrived; `filters` are the ids of the subscriptions it matches.
    Message {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        filters: Vec<u64>,
    },
    /// Something failed that no caller is waiting for (a refused subscription, a connect attempt).
    Error { context: String, message: String },
    /// A finished event of the core session (`crate::session`).
    Session(crate::session::SessionEvent),
}

/// Counters of the bus, for `meta-log-federation-stats`.
#[derive(Debug, Default)]
pub struct BusCounters {
    pub pushed: AtomicU64,
    pub wakeups: AtomicU64,
    pub wake_failures: AtomicU64,
}

/// A queue of events plus an optional pipe to wake the consumer.
pub struct EventBus {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    waker: Mutex<Option<Box<dyn Write + Send>>>,
    wake_pending: AtomicBool,
    pub counters: BusCounters,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        EventBus {
            tx,
            rx,
            waker: Mutex::new(None),
            wake_pending: AtomicBool::new(false),
            counters: BusCounters::default(),
        }
    }

    /// Installs (or replaces) the writer that wakes the consumer, and wakes it once in case
    /// events are already waiting.
    pub fn set_waker(&self, w: Box<dyn Write + Send>) {
        *lock(&self.waker) = Some(w);
        self.wake_pending.store(false, Ordering::SeqCst);
        if !self.rx.is_empty() {
            self.wake();
        }
    }

    /// Removes the waker (its pipe is closed by dropping it).
    pub fn clear_waker(&self) {
        *lock(&self.waker) = None;
    }

    pub fn has_waker(&self) -> bool {
        lock(&self.waker).is_some()
    }

    /// Queues an event and wakes the consumer if no wake-up is pending.
    pub fn push(&self, ev: Event) {
        // The receiver lives as long as the bus, so sending cannot fail.
        let _ = self.tx.send(ev);
        self.counters.pushed.fetch_add(1, Ordering::Relaxed);
        self.wake();
    }

    fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut guard = lock(&self.waker);
        if let Some(w) = guard.as_mut() {
            match w.write(b"\n") {
                Ok(_) => {
                    self.counters.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The pipe is full of unread wake-ups: Emacs will drain anyway.
                }
                Err(_) => {
                    // The pipe process is gone (EPIPE): drop the writer, never write again.
                    self.counters.wake_failures.fetch_add(1, Ordering::Relaxed);
                    *guard = None;
                    self.wake_pending.store(false, Ordering::SeqCst);
                }
            }
        } else {
            // Nobody to wake: let the next push try again once a waker is installed.
            self.wake_pending.store(false, Ordering::SeqCst);
        }
    }

    /// Takes up to `max` events. Clears the pending wake-up first, so an event pushed while
    /// draining triggers a fresh wake-up instead of being stranded.
    pub fn drain(&self, max: usize) -> Vec<Event> {
        self.wake_pending.store(false, Ordering::SeqCst);
        self.rx.try_iter().take(max).collect()
    }

    /// Number of events waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Locks a mutex, recovering from poisoning: a panic elsewhere must not wedge the bus.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Finds the descriptor in the Debug form of a `std::io::PipeWriter`
/// (`PipeWriter(FileDesc(OwnedFd { fd: 12 }))`); a test pins the format.
pub fn fd_from_debug(debug: &str) -> Option<i32> {
    let start = debug.find("fd: ")? + 4;
    let digits: String = debug[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Sets close-on-exec (children of Emacs must not inherit the pipe) and non-blocking (a worker
/// must never stall on a full pipe) on `fd`.
pub fn make_cloexec_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor this process owns; only its flags change.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        let fdfl = libc::fcntl(fd, libc::F_GETFD);
        if fdfl >= 0 {
            libc::fcntl(fd, libc::F_SETFD, fdfl | libc::FD_CLOEXEC);
        }
    }
}

/// The process-wide bus that the Emacs layer drains.
pub static BUS: Lazy<EventBus> = Lazy::new(EventBus::new);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct CountingWriter(Arc<Mutex<usize>>);
    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            *lock(&self.0) += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct BrokenPipe;
    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn err_event(i: usize) -> Event {
        Event::Error {
            context: "t".into(),
            message: i.to_string(),
        }
    }

    #[test]
    fn one_wakeup_per_drain_and_order_kept() {
        let bus = EventBus::new();
        let w = CountingWriter::default();
        bus.set_waker(Box::new(w.clone()));
        for i in 0..1000 {
            bus.push(err_event(i));
        }
        assert_eq!(*lock(&w.0), 1, "a burst needs a single wake-up");
        let first = bus.drain(600);
        assert_eq!(first.len(), 600);
        assert_eq!(first[0], err_event(0));
        bus.push(err_event(1000));
        assert_eq!(*lock(&w.0), 2, "a push after a drain wakes again");
        let rest = bus.drain(usize::MAX);
        assert_eq!(rest.len(), 401);
        assert_eq!(rest.last(), Some(&err_event(1000)));
        assert!(bus.is_empty());
    }

    #[test]
    fn broken_pipe_drops_the_waker_and_keeps_events() {
        let bus = EventBus::new();
        bus.set_waker(Box::new(BrokenPipe));
        bus.push(err_event(1));
        assert!(!bus.has_waker());
        bus.push(err_event(2));
        assert_eq!(bus.drain(10).len(), 2);
        assert_eq!(bus.counters.wake_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn pipe_writer_debug_names_its_descriptor() {
        use std::os::fd::AsRawFd;
        let (_r, w) = std::io::pipe().unwrap();
        let fd = w.as_raw_fd();
        assert_eq!(fd_from_debug(&format!("{w:?}")), Some(fd));
        make_cloexec_nonblocking(fd);
        // SAFETY: reading the flags of a descriptor we own.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFL),
                libc::fcntl(fd, libc::F_GETFD),
            )
        };
        assert!(fl & libc::O_NONBLOCK != 0);
        assert!(fdfl & libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn installing_a_waker_with_events_waiting_wakes_at_once() {
        let bus = EventBus::new();
        bus.push(err_event(1));
        let w = CountingWriter::default();
        bus.set_waker(Box::new(w.clone()));
        assert_eq!(*lock(&w.0), 1);
    }
}
