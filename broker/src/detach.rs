//! `--detach`: the command returns once the broker listens, and the broker goes on alone.
//!
//! Emacs kills the processes it started when it exits, and reads nothing more from a
//! process once it has exited; a broker meant for every Emacs of the machine must be neither
//! Emacs's child nor tied to its pipes. So the process Emacs starts forks before any thread
//! exists: the child starts a new session and becomes the broker, with its stdout and
//! stderr on a pipe to the parent until it is ready; the parent relays what comes through
//! (the ready line on stdout, anything else on stderr) and exits with the outcome. Once
//! ready, the child points stdout at /dev/null and stderr at `--log-file` (or /dev/null),
//! which closes the pipe.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Lines the parent passes to its stdout; everything else goes to its stderr.
const READY_PREFIXES: [&str; 2] = [
    "meta-log-broker listening on ",
    "meta-log-broker already running on ",
];

/// Forks. Returns in the child (the broker-to-be); the parent never returns: it exits 0
/// once the child said it listens, or with the child's exit status if the child ended.
/// Must be called while the process has a single thread.
pub fn start() -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into FDS.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (see above), so the child may run normal code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: plain system calls on descriptors we own.
            unsafe {
                libc::setsid();
                libc::dup2(write_end.as_raw_fd(), libc::STDOUT_FILENO);
                libc::dup2(write_end.as_raw_fd(), libc::STDERR_FILENO);
            }
            drop(write_end);
            let null = File::open("/dev/null")?;
            // SAFETY: as above.
            unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) };
            Ok(())
        }
        child => {
            drop(write_end);
            relay_and_exit(File::from(read_end), child)
        }
    }
}

/// The parent's part: relay the child's start-up output, then exit with its outcome.
fn relay_and_exit(pipe: File, child: libc::pid_t) -> ! {
    // The parent may be interrupted while it waits (the mask came from main).
    // SAFETY: unblocking signals in our own (single) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    let mut listening = false;
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        if READY_PREFIXES.iter().any(|p| line.starts_with(p)) {
            listening |= line.starts_with(READY_PREFIXES[0]);
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        } else {
            eprintln!("{line}");
        }
    }
    if listening {
        // The broker goes on; it is no longer ours to wait for.
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(child, &mut status, 0) };
    if waited == child && libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    eprintln!("meta-log-broker: the detached broker ended during start-up");
    std::process::exit(2)
}

/// In the detached child, after the ready line: stdout to /dev/null, stderr to LOG_FILE
/// (appended) or /dev/null. This closes the pipe, and the parent exits.
pub fn finish(log_file: Option<&Path>) {
    let log = log_file.and_then(|path| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = fs::create_dir_all(dir);
        }
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .ok()
    });
    let Ok(null) = OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    let err = log.as_ref().unwrap_or(&null);
    // SAFETY: dup2 onto the standard descriptors; the originals stay open until dropped.
    unsafe {
        libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
        libc::dup2(err.as_raw_fd(), libc::STDERR_FILENO);
    }
}
