//! Damaged or missing merge state and manifest, and failed writes: no edit is lost, the
//! damaged file is kept aside, one warning says so, and sync goes on.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::bus::edit_entry;
use super::util::{read, Bus, R};
use super::{Action, ShareId, ShareState, SyncConfig, SyncEngine, SyncError};

const BASE: &str =
    "@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"c\",\"x\":3}\n";

fn pair() -> Bus {
    let mut bus = Bus::new(2, 7, &SyncConfig::default());
    bus.shuffle = false;
    bus.dup_per_mille = 0;
    bus
}

/// Node 0 shares BASE; returns the share and both files.
fn shared(bus: &mut Bus) -> (ShareId, PathBuf, PathBuf) {
    let path = bus.nodes[0].write_home("plan.canvasl", BASE.as_bytes());
    bus.on(0, |e, now| e.share(&path, None, now))
        .expect("share");
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "plan.canvasl").expect("id");
    let p1 = bus.nodes[1].file_of(&share);
    assert_eq!(read(&p1), BASE.as_bytes());
    (share, path.canonicalize().expect("canonical"), p1)
}

fn state_file(bus: &Bus, node: usize, share: &ShareId) -> PathBuf {
    bus.nodes[node]
        .state_dir()
        .join(share.origin())
        .join(format!("{}.automerge", share.name()))
}

/// Files in `dir` whose name starts with `prefix` and holds `.damaged-`.
fn kept_aside(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.starts_with(prefix) && n.contains(".damaged-")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Node `i` quits (events sent meanwhile do not reach it).
fn down(bus: &mut Bus, i: usize) {
    bus.nodes[i].close();
    bus.nodes[i].online = false;
}

/// Restarts node `i` (startup plus the notices) and delivers everything.
fn restart(bus: &mut Bus, i: usize) {
    bus.nodes[i].close();
    bus.nodes[i].reopen();
    bus.nodes[i].online = true;
    bus.on(i, |e, now| {
        let mut a = e.startup(now)?;
        a.extend(e.take_notices());
        Ok(a)
    })
    .expect("startup");
    bus.run();
}

fn text(path: &Path) -> String {
    String::from_utf8(read(path)).expect("utf-8")
}

/// Node `lost` loses its state (garbage or deleted) while it is down; both sides edit a
/// different entry meanwhile; after its restart both files hold both edits, once each.
fn both_edits_survive(lost: usize, damage: impl Fn(&Path)) -> R {
    let mut bus = pair();
    let (share, p0, p1) = shared(&mut bus);
    let files = [p0.clone(), p1.clone()];
    down(&mut bus, lost);
    // The other side edits entry a (line 1) and publishes it while `lost` is down.
    let other = 1 - lost;
    edit_entry(&files[other], 1, "x", json!(100));
    let f = files[other].to_string_lossy().into_owned();
    bus.on(other, |e, now| e.local_file_changed(&f, now))?;
    bus.run();
    // `lost` edits entry c (line 3) while down, and its state is damaged.
    edit_entry(&files[lost], 3, "x", json!(300));
    let state = state_file(&bus, lost, &share);
    damage(&state);
    let warnings_before = bus.warnings.len();
    restart(&mut bus, lost);
    for p in &files {
        let t = text(p);
        assert!(
            t.contains("{\"id\":\"a\",\"x\":100}"),
            "other's edit in {t}"
        );
        assert!(t.contains("{\"id\":\"c\",\"x\":300}"), "own edit in {t}");
        assert_eq!(
            t.matches("\"id\":\"b\"").count(),
            1,
            "no duplicate line: {t}"
        );
        assert_eq!(t.lines().count(), 4, "{t}");
    }
    assert_eq!(read(&p0), read(&p1));
    let new: Vec<&String> = bus.warnings[warnings_before..]
        .iter()
        .filter(|(n, _)| *n == lost)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(new.len(), 1, "one warning: {new:?}");
    assert!(new[0].contains("merge state"), "{}", new[0]);
    let status = bus.nodes[lost].engine().status();
    assert_eq!(status[0].state, ShareState::Rebuilt);
    // A second restart: healthy again, no warning.
    let n = bus.warnings.len();
    restart(&mut bus, lost);
    assert_eq!(bus.warnings.len(), n, "{:?}", &bus.warnings[n..]);
    assert_eq!(
        bus.nodes[lost].engine().status()[0].state,
        ShareState::Healthy
    );
    assert!(!state.with_extension("automerge.rebuilding").exists());
    Ok(())
}

#[test]
fn a_damaged_state_of_a_receiver_is_kept_aside_and_both_edits_survive() -> R {
    both_edits_survive(1, |state| {
        std::fs::write(state, b"garbage, not a state file").expect("damage");
    })
}

#[test]
fn a_truncated_state_of_the_origin_is_kept_aside_and_both_edits_survive() -> R {
    both_edits_survive(0, |state| {
        let b = std::fs::read(state).expect("state");
        std::fs::write(state, &b[..b.len() / 2]).expect("truncate");
    })
}

#[test]
fn a_missing_state_of_either_side_loses_no_edit() -> R {
    both_edits_survive(1, |state| std::fs::remove_file(state).expect("remove"))?;
    both_edits_survive(0, |state| std::fs::remove_file(state).expect("remove"))
}

#[test]
fn the_damaged_state_is_kept_aside_not_deleted() -> R {
    let mut bus = pair();
    let (share, _p0, _p1) = shared(&mut bus);
    down(&mut bus, 1);
    let state = state_file(&bus, 1, &share);
    std::fs::write(&state, b"garbage").expect("damage");
    restart(&mut bus, 1);
    let dir = state.parent().expect("dir");
    let kept = kept_aside(dir, "plan.canvasl.automerge");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(read(&kept[0]), b"garbage");
    let w = &bus.warnings.last().expect("a warning").1;
    assert!(w.contains(&kept[0].display().to_string()), "{w}");
    Ok(())
}

#[test]
fn a_rebuilt_share_does_not_overwrite_the_file_before_a_peer_answers() -> R {
    let mut bus = pair();
    let (share, p0, p1) = shared(&mut bus);
    down(&mut bus, 1);
    edit_entry(&p1, 2, "x", json!(222));
    let mine = read(&p1);
    std::fs::remove_file(state_file(&bus, 1, &share)).expect("remove");
    // The origin is offline: the request goes nowhere.
    bus.nodes[0].online = false;
    restart(&mut bus, 1);
    bus.queue.clear();
    assert_eq!(read(&p1), mine);
    assert_eq!(
        bus.nodes[1].engine().status()[0].state,
        ShareState::Rebuilding
    );
    // Restarting again while rebuilding keeps rebuilding (the marker) and still keeps the file.
    restart(&mut bus, 1);
    bus.queue.clear();
    assert_eq!(read(&p1), mine);
    // The origin comes back; its offer starts the merge.
    bus.nodes[0].online = true;
    let to = bus.nodes[1].id.clone();
    bus.on(0, |e, now| Ok(e.offer(&to, now)))?;
    bus.run();
    assert!(text(&p1).contains("{\"id\":\"b\",\"x\":222}"));
    assert_eq!(read(&p0), read(&p1));
    Ok(())
}

fn manifest(bus: &Bus, node: usize) -> PathBuf {
    bus.nodes[node].state_dir().join("shares.json")
}

#[test]
fn a_damaged_manifest_is_kept_aside_and_rebuilt_and_sync_goes_on() -> R {
    let mut bus = pair();
    let (_share, p0, p1) = shared(&mut bus);
    for node in [1, 0] {
        down(&mut bus, node);
        let m = manifest(&bus, node);
        let good = read(&m);
        std::fs::write(&m, &good[..good.len() - 20]).expect("truncate");
        // The backup too, so that recovery must use the state files and the salvage.
        std::fs::write(m.with_extension("json.bak"), b"{").expect("damage backup");
        let n = bus.warnings.len();
        restart(&mut bus, node);
        let w: Vec<&String> = bus.warnings[n..].iter().map(|(_, m)| m).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("shares.json") && w[0].contains("kept aside"),
            "{}",
            w[0]
        );
        let kept = kept_aside(&bus.nodes[node].state_dir(), "shares.json");
        assert_eq!(kept.len(), 1);
        assert_eq!(read(&kept[0]), &good[..good.len() - 20]);
        assert_eq!(bus.nodes[node].engine().shares().len(), 1);
    }
    // Edits still flow both ways.
    edit_entry(&p0, 1, "x", json!(11));
    let f = p0.to_string_lossy().into_owned();
    bus.on(0, |e, now| e.local_file_changed(&f, now))?;
    bus.run();
    edit_entry(&p1, 2, "x", json!(22));
    let f = p1.to_string_lossy().into_owned();
    bus.on(1, |e, now| e.local_file_changed(&f, now))?;
    bus.run();
    let t = text(&p0);
    assert!(t.contains("\"x\":11") && t.contains("\"x\":22"), "{t}");
    assert_eq!(read(&p0), read(&p1));
    Ok(())
}

#[test]
fn a_missing_manifest_beside_state_files_is_rebuilt_from_them() -> R {
    let mut bus = pair();
    let (share, _p0, _p1) = shared(&mut bus);
    down(&mut bus, 1);
    std::fs::remove_file(manifest(&bus, 1))?;
    std::fs::remove_file(manifest(&bus, 1).with_extension("json.bak"))?;
    restart(&mut bus, 1);
    let shares = bus.nodes[1].engine().shares();
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].brief.share, share);
    assert!(bus.warnings.last().expect("warning").1.contains("missing"));
    Ok(())
}

#[test]
fn an_own_share_lost_with_the_manifest_resumes_its_history_when_shared_again() -> R {
    let mut bus = pair();
    let (share, p0, p1) = shared(&mut bus);
    down(&mut bus, 0);
    std::fs::write(manifest(&bus, 0), b"garbage")?;
    std::fs::remove_file(manifest(&bus, 0).with_extension("json.bak"))?;
    restart(&mut bus, 0);
    let w = &bus.warnings.last().expect("warning").1;
    assert!(
        w.contains(&share.url()) && w.contains("share that file again"),
        "{w}"
    );
    assert!(bus.nodes[0].engine().shares().is_empty());
    edit_entry(&p0, 1, "x", json!(5));
    bus.on(0, |e, now| e.share(&p0, None, now))?;
    bus.run();
    // The same history: the edit arrives as an edit, not as a second copy of every line.
    let t = text(&p1);
    assert!(t.contains("{\"id\":\"a\",\"x\":5}"), "{t}");
    assert_eq!(t.lines().count(), 4, "{t}");
    Ok(())
}

/// Where writes can be made to fail: a tiny tmpfs that is filled up (as root), or else a
/// directory whose subdirectories are made read-only (permissions; root ignores those).
struct FailingDisk {
    dir: PathBuf,
    tmpfs: bool,
}

impl FailingDisk {
    /// Makes writes under the directory fail.
    fn fail(&self) {
        if self.tmpfs {
            use std::io::Write;
            let mut f = std::fs::File::create(self.dir.join("filler")).expect("filler");
            let block = vec![0u8; 4096];
            while f.write_all(&block).is_ok() {}
            let _ = f.sync_all();
        } else {
            self.chmod_dirs(0o500);
        }
    }

    /// Makes them work again.
    fn heal(&self) {
        if self.tmpfs {
            std::fs::remove_file(self.dir.join("filler")).expect("remove filler");
        } else {
            self.chmod_dirs(0o700);
        }
    }

    fn chmod_dirs(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read dir").flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
            if d != self.dir {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).expect("chmod");
            }
        }
    }

    /// The error the system gives.
    fn error_text(&self) -> &'static str {
        if self.tmpfs {
            "No space left"
        } else {
            "Permission denied"
        }
    }
}

/// Runs `f` with a [`FailingDisk`]: a 256 KiB tmpfs mounted on a fresh directory when that is
/// possible (root), unmounted in any case; else read-only directories.
fn with_failing_disk(f: impl FnOnce(&FailingDisk) -> R) -> R {
    let dir = tempfile::tempdir()?;
    let tmpfs = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    struct Cleanup(PathBuf, bool);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if self.1 {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            } else {
                let _ = std::process::Command::new("chmod")
                    .args(["-R", "u+rwx"])
                    .arg(&self.0)
                    .status();
            }
        }
    }
    let _c = Cleanup(dir.path().to_path_buf(), tmpfs);
    if !tmpfs && is_root() {
        // Root without the right to mount (a container): neither way can make a write fail.
        // Rust has no run-time skip; say so loudly. The ert test skips likewise.
        eprintln!("SKIPPED: cannot mount a tmpfs, and permissions do not stop root");
        return Ok(());
    }
    f(&FailingDisk {
        dir: dir.path().to_path_buf(),
        tmpfs,
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_full_disk_keeps_the_old_file_reports_and_the_retry_writes_it() -> R {
    with_failing_disk(|disk| {
        let mnt = disk.dir.as_path();
        let mut bus = pair();
        let (share, p0, _p1) = shared(&mut bus);
        // Node 1's synced files and state live on the tmpfs from now on.
        down(&mut bus, 1);
        let sync = bus.nodes[1].sync_dir();
        let state = bus.nodes[1].state_dir();
        for (d, name) in [(&sync, "sync"), (&state, "state")] {
            let target = mnt.join(name);
            std::process::Command::new("cp")
                .arg("-a")
                .arg(d)
                .arg(&target)
                .status()?;
            std::fs::remove_dir_all(d)?;
            std::os::unix::fs::symlink(&target, d)?;
        }
        restart(&mut bus, 1);
        let p1 = mnt.join("sync").join(share.origin()).join(share.name());
        let before = read(&p1);
        assert_eq!(before, BASE.as_bytes());
        disk.fail();
        edit_entry(&p0, 1, "x", json!(77));
        let f = p0.to_string_lossy().into_owned();
        bus.on(0, |e, now| e.local_file_changed(&f, now))?;
        bus.run();
        let failed: Vec<&String> = bus.warnings.iter().map(|(_, m)| m).collect();
        assert!(
            failed.iter().any(|m| m.contains(disk.error_text())),
            "{failed:?}"
        );
        assert_eq!(read(&p1), before, "the old file is intact");
        assert_eq!(bus.nodes[1].engine().pending_writes(), 1);
        let st = &bus.nodes[1].engine().status()[0];
        assert!(st.pending_write.is_some() && st.write_attempts >= 1);
        // Still full: the retry fails again and says so.
        let again = bus.nodes[1].engine().retry_writes(0);
        assert!(again
            .iter()
            .any(|a| matches!(a, Action::WriteFailed { attempt, .. } if *attempt >= 2)));
        assert_eq!(read(&p1), before);
        // Space returns: the retry alone writes the file, no remote edit needed.
        disk.heal();
        let done = bus.nodes[1].engine().retry_writes(0);
        assert!(
            done.iter().any(|a| matches!(a, Action::Updated { .. })),
            "{done:?}"
        );
        assert!(text(&p1).contains("{\"id\":\"a\",\"x\":77}"));
        assert_eq!(bus.nodes[1].engine().pending_writes(), 0);
        // And the state on disk is the new one: a restart changes nothing.
        let n = bus.updated.len();
        restart(&mut bus, 1);
        assert_eq!(read(&p1), read(&p0));
        assert_eq!(bus.updated.len(), n);
        Ok(())
    })
}

#[test]
fn a_save_made_while_a_remote_change_waits_to_be_written_keeps_both() -> R {
    with_failing_disk(|disk| {
        let mnt = disk.dir.as_path();
        let mut bus = pair();
        let (share, p0, _p1) = shared(&mut bus);
        // Node 1's synced files on the tmpfs (its state stays on the ordinary disk).
        down(&mut bus, 1);
        let sync = bus.nodes[1].sync_dir();
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&sync)
            .arg(mnt.join("sync"))
            .status()?;
        std::fs::remove_dir_all(&sync)?;
        std::os::unix::fs::symlink(mnt.join("sync"), &sync)?;
        restart(&mut bus, 1);
        let p1 = mnt.join("sync").join(share.origin()).join(share.name());
        disk.fail();
        edit_entry(&p0, 1, "x", json!(77));
        let f = p0.to_string_lossy().into_owned();
        bus.on(0, |e, now| e.local_file_changed(&f, now))?;
        bus.run();
        assert_eq!(bus.nodes[1].engine().pending_writes(), 1);
        // Space returns and the user saves another entry before the retry runs.
        disk.heal();
        edit_entry(&p1, 3, "x", json!(33));
        let f = p1.to_string_lossy().into_owned();
        bus.on(1, |e, now| e.local_file_changed(&f, now))?;
        bus.run();
        for p in [&p0, &p1] {
            let t = text(p);
            assert!(
                t.contains("{\"id\":\"a\",\"x\":77}"),
                "remote edit kept: {t}"
            );
            assert!(
                t.contains("{\"id\":\"c\",\"x\":33}"),
                "local edit kept: {t}"
            );
            assert_eq!(t.lines().count(), 4, "{t}");
        }
        assert_eq!(bus.nodes[1].engine().pending_writes(), 0);
        Ok(())
    })
}

#[test]
fn a_failed_write_of_a_local_save_is_retried_without_taking_the_save_in_twice() -> R {
    with_failing_disk(|disk| {
        let mnt = disk.dir.as_path();
        // Node 0's state directory on the tmpfs.
        let root = tempfile::tempdir()?;
        let home = root.path().join("home");
        std::fs::create_dir_all(&home)?;
        let mut e = SyncEngine::open(
            &root.path().join("sync"),
            &mnt.join("state"),
            &super::util::peer(1),
            [1; 32],
        )?;
        let path = home.join("plan.canvasl");
        std::fs::write(&path, BASE)?;
        e.share(&path, None, 0)?;
        disk.fail();
        std::fs::write(&path, format!("{BASE}{{\"id\":\"d\",\"x\":4}}\n"))?;
        let a = e.local_file_changed(&path.to_string_lossy(), 0)?;
        assert!(a.iter().any(|a| matches!(a, Action::WriteFailed { .. })));
        disk.heal();
        let a = e.retry_writes(0);
        assert!(
            !a.iter().any(|a| matches!(a, Action::Publish { .. })),
            "the save is not taken in again: {a:?}"
        );
        assert_eq!(e.pending_writes(), 0);
        drop(e);
        let mut e = SyncEngine::open(
            &root.path().join("sync"),
            &mnt.join("state"),
            &super::util::peer(1),
            [1; 32],
        )?;
        let a = e.startup(0)?;
        assert!(
            !a.iter().any(|a| matches!(a, Action::Publish { kind, .. } if *kind == crate::federation::SyncKind::Change)),
            "the state on disk holds the save: {a:?}"
        );
        assert_eq!(e.shares()[0].lines, 5);
        Ok(())
    })
}

#[test]
fn other_errors_are_not_taken_for_write_failures() {
    let mut bus = pair();
    let (share, _p0, _p1) = shared(&mut bus);
    let e = bus.nodes[1].engine();
    assert!(matches!(
        e.write_failed(&share, SyncError::UnknownShare("x".into())),
        Err(SyncError::UnknownShare(_))
    ));
    assert_eq!(e.pending_writes(), 0);
}
