//! The last session's `since` on disk, so that sessions stay strictly
//! ordered across restarts of Emacs, not only across reconnects of one run.
//!
//! Why: a session's `since` is the Unix time in seconds (§6 of
//! `docs/PROTOCOL.md`), and the first session of a process starts one
//! second ahead of the clock. A peer killed and started again within the
//! same second (or after reconnects that pushed `since` ahead of the clock)
//! would reuse the `since` of the session the broker has just ended with
//! its will. Every receiver then holds the will `(S, offline)` and drops the
//! new `online` `(S, online)` as `too-old` (offline outranks online within a
//! session), so the peer stays offline for everyone although it is
//! connected; and its first events, signed with the same `created_at`, can
//! even be byte for byte the previous run's and be refused as `replay`.
//!
//! The file (`trust.session` beside `trust.json`) holds one decimal number,
//! written atomically before each CONNECT carries the session's will. A
//! missing or damaged file is the clock alone, as before.

use std::path::{Path, PathBuf};

/// The session file that goes with trust file `trust_path`.
pub fn session_path(trust_path: &Path) -> PathBuf {
    trust_path.with_extension("session")
}

/// The `since` of the last session recorded at `path`, if the file holds one.
pub fn read_last_since(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Records `since` as the last session's, atomically (mode 0600).
pub fn write_last_since(path: &Path, since: u64) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, format!("{since}\n").as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = session_path(&dir.path().join("trust.json"));
        assert_eq!(p.file_name().unwrap(), "trust.session");
        assert_eq!(read_last_since(&p), None, "missing file");
        write_last_since(&p, 1_795_848_584).unwrap();
        assert_eq!(read_last_since(&p), Some(1_795_848_584));
        std::fs::write(&p, "garbage").unwrap();
        assert_eq!(read_last_since(&p), None, "damaged file is ignored");
    }
}
