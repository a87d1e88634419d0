//! Three engines exchanging events through a simulated bus (random order, duplicates, an
//! offline peer), over many seeds.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::util::{read, Bus, R};
use super::{ShareId, SyncConfig};
use crate::canvasl::generate_canvas;
use crate::federation::SyncKind;

/// Sets `field` of the entry on line `line` (0-based) of the file at `path`, as a user would.
pub(crate) fn edit_entry(path: &Path, line: usize, field: &str, value: Value) {
    let text = String::from_utf8(read(path)).expect("utf-8");
    let out: String = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == line {
                let body = l.trim_end_matches('\n');
                let mut m: serde_json::Map<String, Value> =
                    serde_json::from_str(body).expect("an entry on that line");
                m.insert(field.to_string(), value.clone());
                format!("{}\n", serde_json::to_string(&m).expect("json"))
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(path, out).expect("write");
}

/// Shares a generated canvas from node 0 and delivers everything; returns the share and the
/// file path on each node.
fn share_canvas(bus: &mut Bus, entries: usize, seed: u64) -> (ShareId, Vec<PathBuf>) {
    let text = generate_canvas(entries, seed);
    let path = bus.nodes[0].write_home("plan.canvasl", text.as_bytes());
    bus.on(0, |e, now| e.share(&path, None, now))
        .expect("share");
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "plan.canvasl").expect("id");
    let paths: Vec<PathBuf> = (0..bus.nodes.len())
        .map(|i| bus.nodes[i].file_of(&share))
        .collect();
    for p in &paths {
        assert_eq!(read(p), text.as_bytes(), "{}", p.display());
    }
    (share, paths)
}

fn assert_all_equal(paths: &[PathBuf]) -> Vec<u8> {
    let first = read(&paths[0]);
    for p in &paths[1..] {
        assert!(
            read(p) == first,
            "{} differs from {}",
            p.display(),
            paths[0].display()
        );
    }
    first
}

#[test]
fn a_share_reaches_every_peer_byte_identical() -> R {
    for seed in 0..6 {
        let mut bus = Bus::new(3, seed, &SyncConfig::default());
        let (share, paths) = share_canvas(&mut bus, 200, seed);
        assert!(paths[1].starts_with(bus.nodes[1].sync_dir().canonicalize()?));
        assert!(paths[1].ends_with(format!("{}/plan.canvasl", share.origin())));
        let created: Vec<_> = bus.updated.iter().filter(|(_, _, c)| *c).collect();
        assert_eq!(created.len(), 2, "seed {seed}: {created:?}");
        assert!(bus.refused.is_empty(), "seed {seed}: {:?}", bus.refused);
        for n in &mut bus.nodes {
            let info = n.engine().shares();
            assert_eq!(info.len(), 1);
            assert_eq!(info[0].brief.url, share.url());
            assert_eq!(info[0].lines, 202);
            assert_eq!(info[0].brief.local, n.n == 1);
        }
    }
    Ok(())
}

#[test]
fn concurrent_edits_and_an_offline_peer_converge() -> R {
    for seed in 0..8 {
        let mut bus = Bus::new(3, 100 + seed, &SyncConfig::default());
        let (share, paths) = share_canvas(&mut bus, 150, seed);
        bus.nodes[2].online = false;
        // Concurrent edits of different entries on 0 and 1; 2 edits a third one while offline.
        edit_entry(&paths[0], 10, "color", json!("by-0"));
        edit_entry(&paths[1], 20, "text", json!("by 1"));
        edit_entry(&paths[2], 30, "x", json!(3.5));
        for (i, p) in paths.iter().enumerate() {
            let p = p.to_string_lossy().into_owned();
            bus.on(i, |e, now| e.local_file_changed(&p, now))?;
        }
        // A second edit on 0 after the first ones went around (still without 2).
        bus.run();
        edit_entry(&paths[0], 40, "width", json!(999));
        bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
        bus.run();
        assert_eq!(read(&paths[0]), read(&paths[1]), "seed {seed}");
        // 2 comes back: after a restart (odd seeds) or with catch_up (even seeds).
        bus.nodes[2].online = true;
        if seed % 2 == 1 {
            bus.nodes[2].close();
            bus.nodes[2].reopen();
            bus.on(2, |e, now| e.startup(now))?;
        } else {
            bus.on(2, |e, now| e.catch_up(None, now))?;
        }
        bus.run();
        let text = String::from_utf8(assert_all_equal(&paths))?;
        assert!(text.contains("\"color\":\"by-0\""), "seed {seed}");
        assert!(text.contains("\"text\":\"by 1\""), "seed {seed}");
        assert!(text.contains("\"x\":3.5"), "seed {seed}");
        assert!(text.contains("\"width\":999"), "seed {seed}");
        assert_eq!(
            text.lines().count(),
            152,
            "seed {seed}: no line lost or doubled"
        );
        assert!(bus.refused.is_empty(), "seed {seed}: {:?}", bus.refused);
    }
    Ok(())
}

#[test]
fn offline_edits_on_both_sides_meet_through_requests() -> R {
    for seed in 0..6 {
        let mut bus = Bus::new(2, 200 + seed, &SyncConfig::default());
        let (share, paths) = share_canvas(&mut bus, 100, seed);
        bus.nodes[1].online = false;
        edit_entry(&paths[0], 5, "color", json!("zero"));
        bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
        edit_entry(&paths[1], 6, "color", json!("one"));
        bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
        bus.run();
        bus.nodes[1].online = true;
        // Only the returning peer asks; the other learns of its edit through the counter-request.
        bus.on(1, |e, now| e.catch_up(Some(&share.url()), now))?;
        bus.run();
        let text = String::from_utf8(assert_all_equal(&paths))?;
        assert!(text.contains("\"color\":\"zero\"") && text.contains("\"color\":\"one\""));
    }
    Ok(())
}

#[test]
fn same_field_conflict_has_the_same_winner_everywhere() -> R {
    for seed in 0..5 {
        let mut bus = Bus::new(3, 300 + seed, &SyncConfig::default());
        let (share, paths) = share_canvas(&mut bus, 50, seed);
        edit_entry(&paths[0], 7, "color", json!("red"));
        edit_entry(&paths[1], 7, "color", json!("blue"));
        for i in 0..2 {
            bus.on(i, |e, now| e.local_file_changed(&share.url(), now))?;
        }
        bus.run();
        let text = String::from_utf8(assert_all_equal(&paths))?;
        let winner = if text.contains("\"color\":\"red\"") {
            "red"
        } else {
            "blue"
        };
        assert!(text.contains(&format!("\"color\":\"{winner}\"")));
        for n in &mut bus.nodes {
            let c = n.engine().conflicts(&share.url())?;
            assert_eq!(c.len(), 1, "seed {seed}: {c:?}");
            assert_eq!(c[0].field.as_deref(), Some("color"));
            assert_eq!(c[0].winner, Some(json!(winner)));
            assert_eq!(c[0].losers.len(), 1);
        }
    }
    Ok(())
}

#[test]
fn chunked_share_in_random_order_with_duplicates() -> R {
    let config = SyncConfig {
        max_content_bytes: 2048,
        ..SyncConfig::default()
    };
    for seed in 0..5 {
        let mut bus = Bus::new(3, 400 + seed, &config);
        bus.dup_per_mille = 400;
        let (share, paths) = share_canvas(&mut bus, 1000, seed);
        assert!(bus.published > 10, "{} events", bus.published);
        assert!(bus.largest_content <= 2048);
        // A late joiner's catch-up gets the whole document back in chunks too.
        bus.nodes[2].online = false;
        edit_entry(&paths[0], 100, "color", json!("late"));
        bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
        bus.run();
        bus.nodes[2].online = true;
        bus.on(2, |e, now| e.catch_up(None, now))?;
        bus.run();
        assert_all_equal(&paths);
        assert!(bus.refused.is_empty(), "seed {seed}: {:?}", bus.refused);
        for n in &mut bus.nodes {
            assert_eq!(n.engine().reassembly_status(), (0, 0));
        }
    }
    Ok(())
}

#[test]
fn a_peer_that_missed_the_announcement_gets_the_share_from_a_later_change() -> R {
    let mut bus = Bus::new(3, 7, &SyncConfig::default());
    bus.nodes[2].online = false;
    let (share, _) = {
        let text = generate_canvas(40, 1);
        let path = bus.nodes[0].write_home("late.jsonl", text.as_bytes());
        bus.on(0, |e, now| e.share(&path, None, now))?;
        bus.run();
        (ShareId::new(&bus.nodes[0].id, "late.jsonl")?, ())
    };
    bus.nodes[2].online = true;
    assert!(bus.nodes[2].engine().shares().is_empty());
    // Node 1 (not the origin) edits: node 2 hears of the share and asks node 1 for all of it.
    let p1 = bus.nodes[1].file_of(&share);
    edit_entry(&p1, 3, "color", json!("seen"));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let p2 = bus.nodes[2].file_of(&share);
    assert_eq!(read(&p2), read(&p1));
    assert!(String::from_utf8(read(&p2))?.contains("\"color\":\"seen\""));
    Ok(())
}

#[test]
fn a_newcomer_learns_the_shares_of_an_online_origin_through_its_offer() -> R {
    for seed in 0..4 {
        let mut bus = Bus::new(3, 900 + seed, &SyncConfig::default());
        bus.nodes[2].online = false;
        let text = generate_canvas(60, 2);
        let path = bus.nodes[0].write_home("offered.canvasl", text.as_bytes());
        bus.on(0, |e, now| e.share(&path, None, now))?;
        bus.run();
        let share = ShareId::new(&bus.nodes[0].id, "offered.canvasl")?;
        // Node 2 never heard the announcement; it comes online and node 0 sees it.
        bus.nodes[2].online = true;
        assert!(bus.nodes[2].engine().shares().is_empty());
        let newcomer = bus.nodes[2].id.clone();
        bus.on(0, |e, now| Ok(e.offer(&newcomer, now)))?;
        bus.run();
        assert_eq!(read(&bus.nodes[2].file_of(&share)), text.as_bytes());
        // Offering again to a peer that has the share sends no document.
        let before = bus.log.len();
        let known = bus.nodes[1].id.clone();
        bus.on(0, |e, now| Ok(e.offer(&known, now)))?;
        bus.run();
        assert!(bus.log[before..]
            .iter()
            .all(|(_, kind, _)| *kind == SyncKind::Request));
        assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    }
    Ok(())
}
