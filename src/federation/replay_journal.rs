//! The replay memory on disk, so a restart (even a `kill -9`) does not
//! reopen the window for replays.
//!
//! A journal file beside the trust file (`trust.replay` for `trust.json`):
//! a header line, then one line per accepted event,
//! `<event id hex> <sender hex> <created_at>`, appended as each event is
//! accepted (one `write`; the operating system keeps it when the process
//! dies). When the node saves its state the journal is compacted: the
//! ids still young are written to a new private file (0600, fsync) that
//! replaces the old one atomically. A damaged line (a crash in the middle
//! of a write) is skipped; ids are only ever added from it, so a damaged
//! journal can never make the node accept more than it would without one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::replay::{id_bytes, ReplaySet};

/// First line of every journal.
pub const JOURNAL_HEADER: &str = "meta-log-federation-replay-v1";

/// The journal of one node's replay memory.
#[derive(Debug)]
pub struct ReplayJournal {
    path: PathBuf,
    file: Option<File>,
    lines: usize,
}

/// The journal file that goes with trust file `trust_path`.
pub fn journal_path(trust_path: &Path) -> PathBuf {
    trust_path.with_extension("replay")
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

impl ReplayJournal {
    /// Opens the journal at `path`, loads its young ids into `set`, and
    /// compacts it. A missing file is an empty journal.
    pub fn open(path: &Path, set: &mut ReplaySet, now: u64) -> std::io::Result<ReplayJournal> {
        let window = set.window();
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let Ok(line) = line else { break };
                    let mut parts = line.split(' ');
                    let (Some(id), Some(sender), Some(at), None) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let Ok(at) = at.parse::<u64>() else { continue };
                    if id.len() != 64 || sender.len() != 64 {
                        continue;
                    }
                    if at.saturating_add(window) >= now {
                        set.remember(id_bytes(id), id_bytes(sender), at);
                    }
                }
                set.expire(now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Private like the trust and identity files beside it.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut j = ReplayJournal {
            path: path.to_path_buf(),
            file: None,
            lines: 0,
        };
        j.compact(set)?;
        Ok(j)
    }

    /// Records one accepted event.
    pub fn append(&mut self, id: &str, sender: &str, created_at: u64) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(open_append(&self.path)?);
        }
        let line = format!("{id} {sender} {created_at}\n");
        let r = self
            .file
            .as_mut()
            .map_or(Ok(()), |f| f.write_all(line.as_bytes()));
        if r.is_err() {
            self.file = None; // reopen next time
        }
        self.lines += 1;
        r
    }

    /// Whether the journal holds many more lines than `set` has ids.
    pub fn wants_compaction(&self, set: &ReplaySet) -> bool {
        self.lines > 2 * set.len() + 1024
    }

    /// Rewrites the journal with the ids in `set` only (atomically).
    pub fn compact(&mut self, set: &ReplaySet) -> std::io::Result<()> {
        let window = set.window();
        let mut text = String::with_capacity(32 + set.len() * 140);
        text.push_str(JOURNAL_HEADER);
        text.push('\n');
        for (id, sender, expires) in set.iter() {
            text.push_str(&format!(
                "{} {} {}\n",
                hex::encode(id),
                hex::encode(sender),
                expires.saturating_sub(window)
            ));
        }
        crate::fsutil::write_atomic(&self.path, text.as_bytes(), true)?;
        self.file = None; // the old handle points at the replaced file
        self.lines = set.len();
        Ok(())
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexid(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn survives_a_crash_and_drops_expired_and_damaged_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(&dir.path().join("new/trust.json"));
        assert!(path.ends_with("trust.replay"));
        let mut set = ReplaySet::new(100, 100, 600);
        let mut j = ReplayJournal::open(&path, &mut set, 1000).unwrap();
        j.append(&hexid(1), &hexid(9), 1000).unwrap();
        j.append(&hexid(2), &hexid(9), 300).unwrap(); // old by the next start
        drop(j); // no save: as after kill -9
        let mut tail = open_append(&path).unwrap();
        tail.write_all(b"garbage\nabc def 12\n0101").unwrap();
        let mut again = ReplaySet::new(100, 100, 600);
        let j = ReplayJournal::open(&path, &mut again, 1100).unwrap();
        assert!(again.contains(&id_bytes(&hexid(1))));
        assert!(!again.contains(&id_bytes(&hexid(2))));
        assert_eq!(again.len(), 1);
        // Compacted on open: header and one line, private.
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
