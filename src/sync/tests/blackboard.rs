//! Text shares (`.org`, `.md`, `.txt`) through the engine, and [`SyncEngine::ask`]: the
//! blackboard's paths. Three peers on the simulated bus.

use super::util::{read, Bus, R, T0};
use super::{Action, ShareId, SyncConfig, BLACKBOARD_NAME};
use crate::federation::SyncKind;
use crate::merge::DocKind;

const BOARD: &str =
    "#+TITLE: Federation Blackboard\n\n* Federation Blackboard\n** Ideas\n- one\n- two\n** Tasks\n";

fn trio(seed: u64) -> Bus {
    let mut bus = Bus::new(3, seed, &SyncConfig::default());
    bus.dup_per_mille = 100;
    bus
}

/// Node 0 shares BOARD as its blackboard; every node has it.
fn shared_board(bus: &mut Bus) -> ShareId {
    let path = bus.nodes[0].write_home("my-board.org", BOARD.as_bytes());
    bus.on(0, |e, now| e.share(&path, Some(BLACKBOARD_NAME), now))
        .expect("share");
    bus.run();
    let share = ShareId::blackboard(&bus.nodes[0].id).expect("id");
    assert_eq!(share.kind(), DocKind::Text);
    for i in 0..3 {
        let f = bus.nodes[i].file_of(&share);
        assert_eq!(read(&f), BOARD.as_bytes(), "node {i}");
    }
    share
}

fn save(bus: &mut Bus, i: usize, share: &ShareId, text: &str) {
    let f = bus.nodes[i].file_of(share);
    std::fs::write(&f, text).expect("write");
    let url = share.url();
    bus.on(i, |e, now| e.local_file_changed(&url, now))
        .expect("save");
}

#[test]
fn text_share_names_and_kinds() {
    for (name, kind) in [
        ("blackboard.org", DocKind::Text),
        ("README.md", DocKind::Text),
        ("notes.txt", DocKind::Text),
        ("plan.canvasl", DocKind::Canvas),
        ("plan.jsonl", DocKind::Canvas),
    ] {
        assert_eq!(super::kind_of_name(name), kind, "{name}");
    }
    let me = format!("{:064x}", 5);
    assert_eq!(
        ShareId::blackboard(&me).expect("id").url(),
        format!("canvasl://{me}/blackboard.org")
    );
}

#[test]
fn concurrent_edits_on_two_peers_converge_on_all_three() -> R {
    for seed in 1..6 {
        let mut bus = trio(seed);
        let share = shared_board(&mut bus);
        save(
            &mut bus,
            0,
            &share,
            &BOARD.replace("- one", "- one, said alice"),
        );
        save(
            &mut bus,
            1,
            &share,
            &BOARD.replace("** Tasks\n", "** Tasks\n- [ ] bob's task\n"),
        );
        bus.run();
        let want = BOARD
            .replace("- one", "- one, said alice")
            .replace("** Tasks\n", "** Tasks\n- [ ] bob's task\n");
        for i in 0..3 {
            let f = bus.nodes[i].file_of(&share);
            assert_eq!(String::from_utf8(read(&f))?, want, "seed {seed}, node {i}");
            assert!(bus.nodes[i].engine().conflicts(&share.url())?.is_empty());
        }
        assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    }
    Ok(())
}

#[test]
fn one_line_written_on_two_peers_ends_with_one_winner_and_the_loser_listed() -> R {
    let mut winners = Vec::new();
    for seed in 1..6 {
        let mut bus = trio(seed);
        let share = shared_board(&mut bus);
        save(
            &mut bus,
            0,
            &share,
            &BOARD.replace("- two", "- two (alice)"),
        );
        save(
            &mut bus,
            2,
            &share,
            &BOARD.replace("- two", "- two (carol)"),
        );
        bus.run();
        let f0 = bus.nodes[0].file_of(&share);
        let shown = String::from_utf8(read(&f0))?;
        for i in 0..3 {
            let f = bus.nodes[i].file_of(&share);
            assert_eq!(String::from_utf8(read(&f))?, shown, "seed {seed}, node {i}");
            let c = bus.nodes[i].engine().conflicts(&share.url())?;
            assert_eq!(c.len(), 1, "{c:?}");
            assert_eq!(c[0].losers.len(), 1);
        }
        winners.push(shown);
    }
    // The actors decide, not the order of delivery.
    assert!(winners.windows(2).all(|w| w[0] == w[1]), "{winners:?}");
    assert!(winners[0].contains("- two (alice)") != winners[0].contains("- two (carol)"));
    Ok(())
}

#[test]
fn a_held_text_file_is_not_written_until_saved_and_keeps_both_edits() -> R {
    let mut bus = trio(7);
    let share = shared_board(&mut bus);
    let url = share.url();
    // Node 1 has a buffer with unsaved edits: its file is held.
    bus.on(1, |e, _| e.hold_writes(&url, true))?;
    save(
        &mut bus,
        0,
        &share,
        &BOARD.replace("- one", "- one (remote)"),
    );
    bus.run();
    let f1 = bus.nodes[1].file_of(&share);
    assert_eq!(read(&f1), BOARD.as_bytes(), "a held file is not written");
    // The buffer is saved (based on BOARD): both edits survive.
    save(
        &mut bus,
        1,
        &share,
        &BOARD.replace("** Tasks\n", "** Tasks\n- local\n"),
    );
    bus.run();
    let want = BOARD
        .replace("- one", "- one (remote)")
        .replace("** Tasks\n", "** Tasks\n- local\n");
    for i in 0..3 {
        let f = bus.nodes[i].file_of(&share);
        assert_eq!(String::from_utf8(read(&f))?, want, "node {i}");
    }
    Ok(())
}

#[test]
fn asking_a_peer_for_a_share_we_do_not_hold_brings_the_whole_document() -> R {
    let mut bus = trio(9);
    bus.shuffle = false;
    bus.dup_per_mille = 0;
    // Node 2 is offline while node 0 shares its blackboard.
    bus.nodes[2].online = false;
    let path = bus.nodes[0].write_home("board.org", BOARD.as_bytes());
    bus.on(0, |e, now| e.share(&path, Some(BLACKBOARD_NAME), now))?;
    bus.run();
    bus.nodes[2].online = true;
    let share = ShareId::blackboard(&bus.nodes[0].id)?;
    assert!(bus.nodes[2].engine().resolve(&share.url()).is_err());
    let origin = bus.nodes[0].id.clone();
    let url = share.url();
    bus.on(2, |e, now| e.ask(&url, &origin, now))?;
    let (_, kind, content) = bus.log.last().expect("a request").clone();
    assert_eq!(kind, SyncKind::Request);
    assert!(content.contains(&url), "{content}");
    bus.run();
    let f2 = bus.nodes[2].file_of(&share);
    assert_eq!(read(&f2), BOARD.as_bytes());
    assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    Ok(())
}

#[test]
fn asking_checks_its_arguments() -> R {
    let mut bus = trio(3);
    let share = shared_board(&mut bus);
    let url = share.url();
    let e = bus.nodes[1].engine();
    assert!(e.ask("not a url", &format!("{:064x}", 1), T0).is_err());
    assert!(e.ask(&url, "not-a-peer", T0).is_err());
    let me = e.peer_id().to_string();
    assert_eq!(e.ask(&url, &me, T0)?, Vec::<Action>::new());
    e.unshare(&url)?;
    assert!(e.ask(&url, &format!("{:064x}", 1), T0).is_err());
    Ok(())
}
