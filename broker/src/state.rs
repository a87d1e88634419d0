//! The rendezvous file: "the first Emacs on the machine starts the broker, later ones find it".
//!
//! PATH.lock is held (flock, exclusive) by the running broker for its whole life, so at most
//! one broker runs per state file, and the kernel releases the lock however the broker dies.
//! PATH itself is written atomically (temporary file, fsync, rename) once the broker listens,
//! and removed when it exits; a file left by a killed broker is simply overwritten by the
//! next one. PATH.lock is never removed: unlinking a lock file lets two processes lock two
//! different inodes.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::probe;

/// What a state file says about a running broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub pid: u32,
    pub port: u16,
    pub url: String,
}

pub enum LockOutcome {
    /// We hold the lock: start the broker, then `publish`.
    Acquired(StateFile),
    /// Another live broker holds the lock and serves this URL.
    OtherRunning(BrokerInfo),
    /// Another process holds the lock but never published a reachable broker.
    OtherNotReady,
}

pub struct StateFile {
    path: PathBuf,
    /// Kept open for the process's life: closing it would release the lock.
    _lock: File,
    /// True once `remove` ran: a later `publish` must not bring the file back.
    removed: Mutex<bool>,
}

impl StateFile {
    /// Takes PATH.lock, or waits up to TIMEOUT for the broker that holds it to be reachable.
    pub fn lock(path: &Path, timeout: Duration) -> io::Result<LockOutcome> {
        secure_directory(directory_of(path))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(lock_path(path))?;
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(LockOutcome::Acquired(StateFile {
                    path: path.to_path_buf(),
                    _lock: lock,
                    removed: Mutex::new(false),
                }));
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
            // Someone else holds the lock: the broker it runs is ready once it published
            // the state file and answers on the port it names.
            if let Some(info) = read(path) {
                if info.pid != std::process::id()
                    && pid_alive(info.pid)
                    && probe::mqtt_connect(
                        (std::net::Ipv4Addr::LOCALHOST, info.port).into(),
                        Duration::from_millis(500),
                    )
                    .is_ok()
                {
                    return Ok(LockOutcome::OtherRunning(info));
                }
            }
            if Instant::now() >= deadline {
                return Ok(LockOutcome::OtherNotReady);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Atomically writes `{"pid","port","url","started"}` to the state file.
    pub fn publish(&self, pid: u32, port: u16, url: &str) -> io::Result<()> {
        let removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        if *removed {
            return Ok(());
        }
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let json = serde_json::json!({
            "pid": pid,
            "port": port,
            "url": url,
            "started": started,
            "version": env!("CARGO_PKG_VERSION"),
        });
        let tmp = sibling(&self.path, &format!(".tmp.{pid}"));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            file.write_all(format!("{json}\n").as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Make the rename itself durable; not every file system allows this.
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the state file if it names this process. Called right before the process
    /// exits: the guard is leaked on purpose, so a `publish` racing with it (a signal during
    /// start-up) waits forever instead of writing the file back.
    pub fn remove(&self) {
        let mut guard = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        *guard = true;
        if read(&self.path).is_some_and(|info| info.pid == std::process::id()) {
            let _ = fs::remove_file(&self.path);
        }
        std::mem::forget(guard);
    }
}

/// The directory holding PATH ("." for a bare file name).
fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// Creates DIR (and its missing parents) with mode 0700, then refuses it unless this user
/// owns it and nobody else may write in it.
pub fn secure_directory(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    let me = effective_uid();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "directory {} belongs to uid {}, not to this user (uid {me}): remove it, or \
                 choose another state file",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "directory {} may be written by other users (mode {:o}): `chmod go-w` it, or \
                 choose another state file",
                dir.display(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// PATH.lock beside the state file.
pub fn lock_path(path: &Path) -> PathBuf {
    sibling(path, ".lock")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Reads a state file; None when it is missing, partial, not ours to understand, or owned
/// by another user.
pub fn read(path: &Path) -> Option<BrokerInfo> {
    let mut file = File::open(path).ok()?;
    if file.metadata().ok()?.uid() != effective_uid() {
        return None;
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut file, &mut text).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(BrokerInfo {
        pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
        port: u16::try_from(value.get("port")?.as_u64()?).ok()?,
        url: value.get("url")?.as_str()?.to_string(),
    })
}

/// True if a process with PID exists (signal 0 checks without sending anything).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to another user.
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "meta-log-broker-state-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn publish_read_remove_round_trip() {
        let dir = temp_dir("round-trip");
        let path = dir.join("sub/broker.json");
        let LockOutcome::Acquired(state) = StateFile::lock(&path, Duration::ZERO).unwrap() else {
            panic!("lock not acquired");
        };
        assert!(
            lock_path(&path).exists(),
            "directories and lock file created"
        );
        state
            .publish(std::process::id(), 1234, "mqtt://127.0.0.1:1234")
            .unwrap();
        let info = read(&path).unwrap();
        assert_eq!(
            info,
            BrokerInfo {
                pid: std::process::id(),
                port: 1234,
                url: "mqtt://127.0.0.1:1234".into()
            }
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"started\":"), "{text}");
        state.remove();
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_locker_in_the_same_process_does_not_get_the_lock() {
        // flock locks belong to open file descriptions, so a second open in the same
        // process conflicts just as another process would.
        let dir = temp_dir("second");
        let path = dir.join("broker.json");
        let LockOutcome::Acquired(_held) = StateFile::lock(&path, Duration::ZERO).unwrap() else {
            panic!("first lock not acquired");
        };
        assert!(matches!(
            StateFile::lock(&path, Duration::from_millis(100)).unwrap(),
            LockOutcome::OtherNotReady
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_state_files_are_ignored() {
        let dir = temp_dir("garbage");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.json");
        fs::write(&path, "{\"pid\": 1, \"port\":").unwrap();
        assert_eq!(read(&path), None);
        fs::write(&path, "{\"pid\": 1, \"port\": 70000, \"url\": \"x\"}").unwrap();
        assert_eq!(read(&path), None, "port out of range");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_is_created_private_and_refused_when_others_may_write() {
        let dir = temp_dir("private");
        let path = dir.join("a/b/broker.json");
        let LockOutcome::Acquired(_held) = StateFile::lock(&path, Duration::ZERO).unwrap() else {
            panic!("lock not acquired");
        };
        for d in [dir.join("a"), dir.join("a/b")] {
            assert_eq!(
                fs::metadata(&d).unwrap().mode() & 0o777,
                0o700,
                "{}",
                d.display()
            );
        }
        let open = dir.join("open");
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let Err(err) = StateFile::lock(&open.join("broker.json"), Duration::ZERO) else {
            panic!("a world-writable directory was accepted");
        };
        assert!(
            err.to_string().contains("may be written by other users"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_file_owned_by_another_user_is_not_read() {
        // Needs root to give a file away; as another user the check is the same code.
        if effective_uid() != 0 {
            eprintln!("skipped: needs root to chown a file to another user");
            return;
        }
        let dir = temp_dir("foreign");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.json");
        fs::write(
            &path,
            "{\"pid\": 1, \"port\": 1883, \"url\": \"mqtt://127.0.0.1:1883\"}",
        )
        .unwrap();
        assert!(read(&path).is_some(), "own file read");
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        assert_eq!(read(&path), None, "a file of uid 65534 was trusted");
        let LockOutcome::Acquired(_held) =
            StateFile::lock(&dir.join("x.json"), Duration::ZERO).unwrap()
        else {
            panic!("lock not acquired");
        };
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let Err(err) = StateFile::lock(&path, Duration::ZERO) else {
            panic!("a directory of another user was accepted");
        };
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pid_alive_tells_live_from_dead() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }
}
