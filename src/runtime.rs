//! The background tokio runtime that owns all network I/O.
//!
//! Each connection owns its runtime, so stopping it joins its threads and a later start builds a
//! fresh one (a runtime or client kept in a one-time static could not be restarted after a
//! stop). Its threads block SIGPIPE: Emacs leaves SIGPIPE at its default action, so a write to a
//! closed socket or to the wake-up pipe from one of our threads would otherwise kill Emacs.

use tokio::runtime::Runtime;

/// Blocks SIGPIPE in the calling thread, so writes to closed pipes fail with EPIPE instead.
pub fn block_sigpipe() {
    // SAFETY: plain libc calls on a local, initialized signal set; they only change this
    // thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Builds the runtime: one worker (one connection needs no more, and Emacs' own thread keeps a
/// core to itself on two-core machines), SIGPIPE blocked
/// in every thread it starts.
pub fn build() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("meta-log-federation")
        .on_thread_start(block_sigpipe)
        .enable_all()
        .build()
}

/// Number of threads in this process (Linux), used by tests that check nothing leaks.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of open file descriptors in this process (Linux), used by leak tests.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
