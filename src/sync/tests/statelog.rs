//! The merge state saved by the change: edits append to the log beside the state file, survive
//! a restart, and a torn log is read up to the damage and then compacted away.

use serde_json::json;

use super::bus::edit_entry;
use super::util::{read, Bus, R};
use super::{ShareId, SyncConfig};
use crate::federation::SyncKind;

const BASE: &str = "@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n";

fn pair() -> (Bus, ShareId, std::path::PathBuf, std::path::PathBuf) {
    let mut bus = Bus::new(2, 3, &SyncConfig::default());
    bus.shuffle = false;
    bus.dup_per_mille = 0;
    let path = bus.nodes[0].write_home("log.canvasl", BASE.as_bytes());
    bus.on(0, |e, now| e.share(&path, None, now))
        .expect("share");
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "log.canvasl").expect("id");
    let p1 = bus.nodes[1].file_of(&share);
    (bus, share, path.canonicalize().expect("canonical"), p1)
}

fn state_files(
    bus: &Bus,
    node: usize,
    share: &ShareId,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = bus.nodes[node].state_dir().join(share.origin());
    (
        dir.join(format!("{}.automerge", share.name())),
        dir.join(format!("{}.automerge.log", share.name())),
    )
}

#[test]
fn edits_append_to_the_log_and_survive_a_restart() -> R {
    let (mut bus, share, p0, p1) = pair();
    let (state1, log1) = state_files(&bus, 1, &share);
    // The first write after loading may be whole; after it, edits only append.
    edit_entry(&p0, 1, "x", json!(10));
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let whole = read(&state1);
    for v in 11..20 {
        edit_entry(&p0, 2, "x", json!(v));
        bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
        bus.run();
    }
    assert_eq!(
        read(&state1),
        whole,
        "the state file is not rewritten per edit"
    );
    assert!(!read(&log1).is_empty(), "the edits are in the log");
    assert_eq!(read(&p1), read(&p0));
    // A restart reads the state and its log: nothing is missing, nothing is taken for a
    // local edit, and the next edits merge.
    bus.nodes[1].close();
    bus.nodes[1].reopen();
    let changes = |bus: &Bus| {
        bus.log
            .iter()
            .filter(|(n, k, _)| *n == 1 && *k == SyncKind::Change)
            .count()
    };
    let before = changes(&bus);
    bus.on(1, |e, now| e.startup(now))?;
    bus.run();
    assert_eq!(
        changes(&bus),
        before,
        "the file matches the state read back: no local edit is made up"
    );
    let lines = bus.nodes[1].engine().shares()[0].lines;
    assert_eq!(lines, 3);
    edit_entry(&p1, 1, "y", json!(5));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let t = String::from_utf8(read(&p0))?;
    assert!(
        t.contains("\"x\":10") && t.contains("\"x\":19") && t.contains("\"y\":5"),
        "{t}"
    );
    assert_eq!(read(&p1), read(&p0));
    Ok(())
}

#[test]
fn a_torn_log_is_read_up_to_the_damage_and_compacted() -> R {
    let (mut bus, share, p0, p1) = pair();
    let (state1, log1) = state_files(&bus, 1, &share);
    for v in 10..14 {
        edit_entry(&p0, 1, "x", json!(v));
        bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
        bus.run();
    }
    // A crash in the middle of an append: the last record is cut short.
    let log = read(&log1);
    assert!(log.len() > 20);
    std::fs::write(&log1, &log[..log.len() - 7])?;
    bus.nodes[1].close();
    bus.nodes[1].reopen();
    bus.on(1, |e, now| e.startup(now))?;
    bus.run();
    // The file held the last edit: it is kept (taken in, or already merged), never lost.
    assert!(String::from_utf8(read(&p1))?.contains("\"x\":13"));
    assert!(bus.warnings.is_empty(), "{:?}", bus.warnings);
    // After the torn log the next write was whole: the old records are gone.
    edit_entry(&p0, 2, "x", json!(99));
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert!(
        !read(&log1).starts_with(&log[..12]),
        "the torn log was compacted away (a new generation follows the state file)"
    );
    assert!(!read(&state1).is_empty());
    bus.nodes[1].close();
    bus.nodes[1].reopen();
    bus.on(1, |e, now| e.startup(now))?;
    bus.run();
    assert_eq!(read(&p1), read(&p0));
    assert!(String::from_utf8(read(&p1))?.contains("\"x\":99"));
    Ok(())
}
