//! One or two engines: refusals, errors, restarts, the three-way rule, the corpus.

use std::os::unix::fs::PermissionsExt;

use base64ct::{Base64, Encoding};
use serde_json::json;

use super::bus::edit_entry;
use super::util::{files_under, peer, read, Bus, Node, R, T0};
use super::{Action, ShareId, SyncConfig, SyncError};
use crate::federation::SyncKind;
use crate::merge::SharedDoc;

const BASE: &str = "@version 1.0\n\n{\"id\":\"a\",\"x\":1,\"y\":2}\n{\"id\":\"b\",\"x\":3}\n{\"id\":\"c\",\"x\":5}\nsome prose\n";

/// A Bus of two that delivers in order, without duplicates.
fn pair(seed: u64) -> Bus {
    let mut bus = Bus::new(2, seed, &SyncConfig::default());
    bus.shuffle = false;
    bus.dup_per_mille = 0;
    bus
}

/// Node 0 shares BASE as plan.canvasl; returns the share and both paths.
fn shared_pair(bus: &mut Bus) -> (ShareId, std::path::PathBuf, std::path::PathBuf) {
    let path = bus.nodes[0].write_home("plan.canvasl", BASE.as_bytes());
    bus.on(0, |e, now| e.share(&path, None, now))
        .expect("share");
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "plan.canvasl").expect("id");
    let p1 = bus.nodes[1].file_of(&share);
    assert_eq!(read(&p1), BASE.as_bytes());
    (share, path.canonicalize().expect("canonical"), p1)
}

fn full_doc_data(text: &str) -> String {
    let doc = SharedDoc::import(text.as_bytes(), [9; 32]).expect("import");
    Base64::encode_string(&doc.save())
}

fn refused(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Refused { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn bad_names_from_the_network_are_refused_counted_and_create_nothing() -> R {
    let mut node = Node::new(2, SyncConfig::default());
    let origin = peer(0xab);
    let data = full_doc_data(BASE);
    let long = format!("{}.canvasl", "n".repeat(300));
    let cases: Vec<(String, &str)> = vec![
        (
            format!("canvasl://{origin}/../../etc/x.canvasl"),
            "name-separator",
        ),
        (format!("canvasl://{origin}/.."), "name-dots"),
        (format!("canvasl://{origin}/..canvasl"), "name-dots"),
        (format!("canvasl://{origin}/.hidden.canvasl"), "name-dots"),
        (
            format!("canvasl://{origin}//etc/passwd.canvasl"),
            "name-absolute",
        ),
        (
            format!("canvasl://{origin}/C:evil.canvasl"),
            "name-absolute",
        ),
        (format!("canvasl://{origin}/a\\b.canvasl"), "name-separator"),
        (
            format!("canvasl://{origin}/bell\u{7}.canvasl"),
            "name-control",
        ),
        (
            format!("canvasl://{origin}/line\nbreak.canvasl"),
            "name-control",
        ),
        (format!("canvasl://{origin}/c1\u{85}.jsonl"), "name-control"),
        (format!("canvasl://{origin}/notes.doc"), "name-extension"),
        (format!("canvasl://{origin}/.canvasl"), "name-dots"),
        (format!("canvasl://{origin}/"), "name-empty"),
        (format!("canvasl://{origin}/{long}"), "name-too-long"),
        (
            format!("canvasl://{}/x.canvasl", origin.to_uppercase()),
            "bad-origin",
        ),
        ("canvasl://short/x.canvasl".to_string(), "bad-origin"),
        (format!("file://{origin}/x.canvasl"), "bad-share"),
        (format!("canvasl://{origin}"), "bad-share"),
    ];
    for (url, reason) in &cases {
        let content = json!({"v":1,"share":url,"op":"change","full":true,"data":data}).to_string();
        let actions = node
            .engine()
            .handle(&origin, SyncKind::Change, &content, &[], T0)?;
        assert_eq!(refused(&actions), vec![*reason], "{url:?}");
    }
    let counted = node.engine().refusals().total();
    assert_eq!(counted, cases.len() as u64);
    assert_eq!(node.engine().refusals().get("name-dots"), 4);
    assert!(files_under(&node.sync_dir()).is_empty());
    assert!(files_under(&node.state_dir()).is_empty());
    assert!(node.engine().shares().is_empty());
    // The same content with a good name creates the share.
    let url = format!("canvasl://{origin}/ok.canvasl");
    let content = json!({"v":1,"share":url,"op":"change","full":true,"data":data}).to_string();
    let actions = node
        .engine()
        .handle(&origin, SyncKind::Change, &content, &[], T0)?;
    assert!(matches!(
        &actions[..],
        [Action::Updated { created: true, .. }]
    ));
    assert_eq!(
        read(&node.sync_dir().join(&origin).join("ok.canvasl")),
        BASE.as_bytes()
    );
    Ok(())
}

#[test]
fn malformed_input_is_refused_and_changes_nothing() -> R {
    let mut bus = pair(1);
    let (share, _, p1) = shared_pair(&mut bus);
    let url = share.url();
    let from = bus.nodes[0].id.clone();
    let state = bus.nodes[1]
        .state_dir()
        .join(share.origin())
        .join("plan.canvasl.automerge");
    let state_before = read(&state);
    let garbage = json!({"v":1,"share":url,"op":"change","full":false,"data":"AAAA"});
    // Well-formed (it would be applied if it came in the right event from a good sender).
    let good_change =
        json!({"v":1,"share":url,"op":"change","full":true,"data":full_doc_data(BASE)});
    let big = "x".repeat((1 << 20) + 1);
    let p = |t: &str| vec![vec!["p".to_string(), t.to_string()]];
    type Case<'a> = (&'a str, SyncKind, String, Vec<Vec<String>>, &'a str);
    let cases: Vec<Case> = vec![
        (&from, SyncKind::Change, "not json".into(), vec![], "malformed"),
        (&from, SyncKind::Change, "[1,2]".into(), vec![], "malformed"),
        (&from, SyncKind::Change, json!({"v":2,"share":url,"op":"change","data":""}).to_string(), vec![], "version"),
        (&from, SyncKind::Change, json!({"share":url,"op":"change","data":""}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"data":""}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"dance"}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"change"}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"change","data":"!!!"}).to_string(), vec![], "bad-base64"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"change","data":12}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Change, garbage.to_string(), vec![], "bad-change"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"change","data":Base64::encode_string(&[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5])}).to_string(), vec![], "bad-change"),
        (&from, SyncKind::Request, good_change.to_string(), vec![], "wrong-op"),
        (&from, SyncKind::Response, good_change.to_string(), vec![], "wrong-op"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"request","heads":""}).to_string(), vec![], "wrong-op"),
        (&from, SyncKind::Request, json!({"v":1,"share":url,"op":"request","heads":"AAAA"}).to_string(), vec![], "bad-heads"),
        (&from, SyncKind::Request, json!({"v":1,"share":url,"op":"request"}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Request, json!({"v":1,"share":url,"op":"request","heads":Base64::encode_string(&vec![0u8; 32 * 1025])}).to_string(), vec![], "too-large"),
        ("not-a-peer", SyncKind::Change, good_change.to_string(), vec![], "bad-sender"),
        (&from, SyncKind::Change, good_change.to_string(), p("nobody"), "bad-tags"),
        (&from, SyncKind::Change, good_change.to_string(), vec![vec![]], "bad-tags"),
        (&from, SyncKind::Change, big, vec![], "too-large"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"chunk","of":"change","id":"ab","index":3,"count":3,"size":10,"data":"AAAA"}).to_string(), vec![], "chunk-mismatch"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"chunk","of":"change","id":"ab","index":0,"count":0,"size":10,"data":"AAAA"}).to_string(), vec![], "chunk-mismatch"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"chunk","of":"change","id":"ab","index":0,"count":2,"size":1u64 << 40,"data":"AAAA"}).to_string(), vec![], "too-large"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"chunk","of":"change","id":"AB","index":0,"count":2,"size":10,"data":"AAAA"}).to_string(), vec![], "malformed"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"chunk","of":"response","id":"ab","index":0,"count":2,"size":10,"data":"AAAA"}).to_string(), vec![], "wrong-op"),
        (&from, SyncKind::Change, json!({"v":1,"share":url,"op":"chunk","of":"change","id":"ab","index":0,"count":2,"size":2,"data":"AAAA"}).to_string(), vec![], "chunk-mismatch"),
    ];
    for (sender, kind, content, tags, reason) in &cases {
        let actions = bus.nodes[1]
            .engine()
            .handle(sender, *kind, content, tags, T0)?;
        assert_eq!(refused(&actions), vec![*reason], "{content:.120}");
        assert!(
            actions.iter().all(|a| matches!(a, Action::Refused { .. })),
            "{actions:?}"
        );
    }
    assert_eq!(read(&p1), BASE.as_bytes());
    assert_eq!(read(&state), state_before, "the state was not rewritten");
    assert_eq!(bus.nodes[1].engine().refusals().total(), cases.len() as u64);
    Ok(())
}

#[test]
fn mutated_contents_never_panic() -> R {
    use crate::canvasl::generate::XorShift;
    let mut bus = pair(2);
    let (share, p0, _) = shared_pair(&mut bus);
    edit_entry(&p0, 3, "x", json!(30));
    let actions = bus.nodes[0].engine().local_file_changed(&share.url(), T0)?;
    let request = bus.nodes[0].engine().catch_up(None, T0)?;
    let samples: Vec<(SyncKind, String)> = actions
        .into_iter()
        .chain(request)
        .filter_map(|a| match a {
            Action::Publish { kind, content, .. } => Some((kind, content)),
            _ => None,
        })
        .collect();
    assert_eq!(samples.len(), 2);
    let from = bus.nodes[0].id.clone();
    let mut rng = XorShift::new(5);
    let mut fresh = Node::new(3, SyncConfig::default());
    for _ in 0..400 {
        let (kind, content) = &samples[rng.below(2) as usize];
        let mut bytes = content.clone().into_bytes();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len() as u64) as usize;
            match rng.below(3) {
                0 => bytes[i] = rng.below(256) as u8,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, b"{}[]\",:0aZ/+="[rng.below(13) as usize]),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let kinds = [SyncKind::Change, SyncKind::Request, SyncKind::Response];
        let kind = if rng.chance(200) {
            kinds[rng.below(3) as usize]
        } else {
            *kind
        };
        bus.nodes[1].engine().handle(&from, kind, &text, &[], T0)?;
        fresh.engine().handle(&from, kind, &text, &[], T0)?;
    }
    Ok(())
}

#[test]
fn share_errors_say_what_to_fix() -> R {
    let mut node = Node::new(1, SyncConfig::default());
    let p = node.write_home("plan.canvasl", BASE.as_bytes());
    node.engine().share(&p, None, T0)?;
    let e = node.engine().share(&p, None, T0).unwrap_err();
    assert!(matches!(e, SyncError::AlreadyShared { .. }), "{e}");
    assert!(
        e.to_string().contains("already shared as canvasl://"),
        "{e}"
    );
    let other = node.home().join("other");
    std::fs::create_dir_all(&other)?;
    std::fs::write(other.join("plan.canvasl"), BASE)?;
    let e = node
        .engine()
        .share(&other.join("plan.canvasl"), None, T0)
        .unwrap_err();
    assert!(matches!(e, SyncError::NameTaken(_)), "{e}");
    assert!(e.to_string().contains("give this one another name"), "{e}");
    node.engine()
        .share(&other.join("plan.canvasl"), Some("plan-2.canvasl"), T0)?;
    let txt = node.write_home("notes.doc", BASE.as_bytes());
    let e = node.engine().share(&txt, None, T0).unwrap_err();
    assert!(matches!(e, SyncError::BadName(_)), "{e}");
    assert!(e.to_string().contains(".canvasl or .jsonl"), "{e}");
    node.engine().share(&txt, Some("notes.jsonl"), T0)?;
    let e = node
        .engine()
        .share(&txt, Some("x/../y.canvasl"), T0)
        .unwrap_err();
    assert!(matches!(e, SyncError::AlreadyShared { .. }), "{e}");
    let home = node.home();
    let e = node
        .engine()
        .share(&home.join("missing.canvasl"), None, T0)
        .unwrap_err();
    assert!(matches!(e, SyncError::Io { .. }), "{e}");
    let e = node
        .engine()
        .share(&home, Some("d.canvasl"), T0)
        .unwrap_err();
    assert!(matches!(e, SyncError::UnsafePath { .. }), "{e}");
    let bad = node.write_home("bad.canvasl", b"{\"id\":\"a\"}\n\xff\n");
    let e = node.engine().share(&bad, None, T0).unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
    let e = node
        .engine()
        .local_file_changed("canvasl://nowhere", T0)
        .unwrap_err();
    assert!(matches!(e, SyncError::BadShare(_)), "{e}");
    let e = node
        .engine()
        .local_file_changed(home.join("nothing.canvasl").to_str().unwrap_or(""), T0)
        .unwrap_err();
    assert!(matches!(e, SyncError::UnknownShare(_)), "{e}");
    let (sd, st) = (node.sync_dir(), node.state_dir());
    assert!(matches!(
        SyncEngine::open(&sd, &st, "ABC", [1; 32]),
        Err(SyncError::BadPeerId(_))
    ));
    let tiny = SyncConfig {
        max_content_bytes: 100,
        ..SyncConfig::default()
    };
    assert!(matches!(
        SyncEngine::open_with(&sd, &st, &peer(1), [1; 32], tiny),
        Err(SyncError::Config(_))
    ));
    // The longest allowed name works all the way (state file and temporary names fit).
    let long = format!("{}.canvasl", "n".repeat(super::MAX_NAME_BYTES - 8));
    assert_eq!(long.len(), super::MAX_NAME_BYTES);
    node.engine().share(&p.clone(), None, T0).unwrap_err();
    let lp = node.write_home("long.canvasl", BASE.as_bytes());
    node.engine().share(&lp, Some(&long), T0)?;
    edit_entry(&lp, 2, "x", json!(7));
    assert!(!node
        .engine()
        .local_file_changed(&lp.to_string_lossy(), T0)?
        .is_empty());
    let too_long = format!("n{long}");
    let lp2 = node.write_home("long2.canvasl", BASE.as_bytes());
    assert!(node.engine().share(&lp2, Some(&too_long), T0).is_err());
    Ok(())
}

use super::SyncEngine;

#[test]
fn unshare_stops_syncing_and_share_resumes() -> R {
    let mut bus = pair(3);
    let (share, p0, p1) = shared_pair(&mut bus);
    bus.on(1, |e, _| e.unshare(&share.url()))?;
    assert!(matches!(
        bus.nodes[1].engine().unshare(&share.url()),
        Err(SyncError::Unshared(_))
    ));
    edit_entry(&p0, 2, "x", json!(100));
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_eq!(read(&p1), BASE.as_bytes(), "an unshared file is left alone");
    let info = bus.nodes[1].engine().shares();
    assert!(!info[0].brief.active);
    assert!(matches!(
        bus.nodes[1].engine().local_file_changed(&share.url(), T0),
        Err(SyncError::Unshared(_))
    ));
    // Still unshared after a restart.
    bus.nodes[1].close();
    bus.nodes[1].reopen();
    bus.on(1, |e, now| e.startup(now))?;
    bus.run();
    assert_eq!(read(&p1), BASE.as_bytes());
    // Sharing the file again resumes: it catches up.
    bus.on(1, |e, now| e.share(&p1, None, now))?;
    bus.run();
    assert_eq!(read(&p1), read(&p0));
    assert!(String::from_utf8(read(&p1))?.contains("\"x\":100"));
    Ok(())
}

#[test]
fn restart_keeps_state_and_takes_in_an_edit_made_while_closed() -> R {
    let mut bus = pair(4);
    let (share, p0, p1) = shared_pair(&mut bus);
    // A restart without edits publishes no change, writes nothing.
    bus.nodes[1].close();
    bus.nodes[1].reopen();
    let before = bus.log.len();
    bus.on(1, |e, now| e.startup(now))?;
    let kinds: Vec<SyncKind> = bus.log[before..].iter().map(|(_, k, _)| *k).collect();
    assert_eq!(kinds, vec![SyncKind::Request]);
    bus.run();
    assert_eq!(read(&p1), BASE.as_bytes());
    // Edit while closed.
    bus.nodes[1].close();
    edit_entry(&p1, 4, "x", json!(55));
    bus.nodes[1].reopen();
    bus.on(1, |e, now| e.startup(now))?;
    bus.run();
    let text = String::from_utf8(read(&p0))?;
    assert_eq!(read(&p1), read(&p0));
    assert!(text.contains("{\"id\":\"c\",\"x\":55}"), "{text}");
    assert_eq!(
        text.lines().count(),
        BASE.lines().count(),
        "no entry doubled"
    );
    // Both sides restart again: nothing changes, nothing is doubled.
    for i in 0..2 {
        bus.nodes[i].close();
        bus.nodes[i].reopen();
        bus.on(i, |e, now| e.startup(now))?;
    }
    bus.run();
    assert_eq!(String::from_utf8(read(&p0))?, text);
    assert_eq!(String::from_utf8(read(&p1))?, text);
    assert!(bus.refused.is_empty());
    // The manifest lists the share, with the file.
    let manifest = std::fs::read_to_string(bus.nodes[1].state_dir().join("shares.json"))?;
    assert!(manifest.contains(&share.url()));
    Ok(())
}

#[test]
fn a_missing_file_is_written_again_at_startup() -> R {
    let mut bus = pair(5);
    let (_, p0, p1) = shared_pair(&mut bus);
    bus.nodes[1].close();
    std::fs::remove_file(&p1)?;
    std::fs::remove_dir(p1.parent().ok_or("parent")?)?;
    bus.nodes[1].reopen();
    let actions = bus.nodes[1].engine().startup(T0)?;
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Updated { created: true, .. })));
    assert_eq!(read(&p1), read(&p0));
    Ok(())
}

#[test]
fn a_stale_buffer_save_keeps_the_remote_edit() -> R {
    let mut bus = pair(6);
    let (share, p0, p1) = shared_pair(&mut bus);
    let buffer = BASE; // What node 0's Emacs buffer holds while the user types.
    bus.on(0, |e, _| e.hold_writes(&share.url(), true))?;
    edit_entry(&p1, 3, "x", json!(33));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_eq!(read(&p0), BASE.as_bytes(), "held: the file is not written");
    // The remote change is saved: it survives a restart while held.
    assert!(bus.nodes[0].engine().shares()[0].lines == 6);
    // The user saves the buffer with an edit of another entry.
    std::fs::write(&p0, buffer.replace("\"x\":5", "\"x\":50"))?;
    bus.on(0, |e, now| e.local_file_changed(&p0.to_string_lossy(), now))?;
    bus.run();
    let t = String::from_utf8(read(&p0))?;
    assert!(t.contains("\"x\":33") && t.contains("\"x\":50"), "{t}");
    assert_eq!(read(&p1), read(&p0));
    // Another remote edit; saving the now stale buffer unchanged is no edit: the file is
    // written back with the remote edit.
    let buffer = t;
    edit_entry(&p1, 2, "x", json!(11));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let merged = read(&p0);
    assert!(String::from_utf8(merged.clone())?.contains("\"x\":11"));
    std::fs::write(&p0, &buffer)?;
    let actions = bus.nodes[0].engine().local_file_changed(&share.url(), T0)?;
    assert!(
        matches!(&actions[..], [Action::Updated { created: false, .. }]),
        "{actions:?}"
    );
    assert_eq!(read(&p0), merged);
    Ok(())
}

#[test]
fn an_unsaved_edit_is_taken_in_before_a_remote_change_is_written() -> R {
    let mut bus = pair(7);
    let (share, p0, p1) = shared_pair(&mut bus);
    // Node 0 saved the file but Elisp did not call local_file_changed (yet).
    edit_entry(&p0, 2, "y", json!(22));
    edit_entry(&p1, 4, "x", json!(51));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let t = String::from_utf8(read(&p0))?;
    assert!(t.contains("\"y\":22") && t.contains("\"x\":51"), "{t}");
    assert_eq!(read(&p1), read(&p0));
    // Unchanged file: nothing to do.
    assert!(bus.nodes[0]
        .engine()
        .local_file_changed(&share.url(), T0)?
        .is_empty());
    Ok(())
}

#[test]
fn a_file_left_as_before_the_last_write_is_rewritten_not_taken_as_an_edit() -> R {
    let mut bus = pair(8);
    let (share, p0, p1) = shared_pair(&mut bus);
    edit_entry(&p0, 3, "x", json!(31));
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let merged = read(&p1);
    // As if the engine crashed after saving its state but before writing the file.
    bus.nodes[1].close();
    std::fs::write(&p1, BASE)?;
    bus.nodes[1].reopen();
    bus.on(1, |e, now| e.startup(now))?;
    bus.run();
    assert_eq!(read(&p1), merged);
    assert_eq!(read(&p0), merged);
    Ok(())
}

#[test]
fn files_and_directories_are_private_and_user_files_keep_their_mode() -> R {
    let mut bus = pair(9);
    let (share, p0, p1) = shared_pair(&mut bus);
    let mode = |p: &std::path::Path| -> u32 {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    for n in &bus.nodes {
        assert_eq!(mode(&n.sync_dir()), 0o700);
        assert_eq!(mode(&n.state_dir()), 0o700);
        assert_eq!(mode(&n.state_dir().join(share.origin())), 0o700);
        assert_eq!(mode(&n.state_dir().join("shares.json")), 0o600);
    }
    assert_eq!(mode(&bus.nodes[1].sync_dir().join(share.origin())), 0o700);
    assert_eq!(mode(&p1), 0o600);
    std::fs::set_permissions(&p0, std::fs::Permissions::from_mode(0o644))?;
    edit_entry(&p1, 2, "x", json!(2));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert!(String::from_utf8(read(&p0))?.contains("\"x\":2"));
    assert_eq!(mode(&p0), 0o644);
    Ok(())
}

#[test]
fn a_symlinked_origin_directory_is_refused() -> R {
    let mut node = Node::new(2, SyncConfig::default());
    let origin = peer(1);
    let elsewhere = node.home().join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    std::os::unix::fs::symlink(&elsewhere, node.sync_dir().join(&origin))?;
    let url = format!("canvasl://{origin}/x.canvasl");
    let content =
        json!({"v":1,"share":url,"op":"change","full":true,"data":full_doc_data(BASE)}).to_string();
    let actions = node
        .engine()
        .handle(&origin, SyncKind::Change, &content, &[], T0)?;
    assert_eq!(refused(&actions), vec!["unsafe-path"]);
    assert!(files_under(&elsewhere).is_empty());
    Ok(())
}

#[test]
fn corpus_files_share_and_round_trip_byte_identical() -> R {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus");
    let mut bus = pair(10);
    let mut shared = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if super::check_share_name(&name).is_err() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let local = bus.nodes[0].write_home(&name, &bytes);
        bus.on(0, |e, now| e.share(&local, None, now))?;
        bus.run();
        let share = ShareId::new(&bus.nodes[0].id, &name)?;
        let remote = bus.nodes[1].file_of(&share);
        assert!(read(&remote) == bytes, "{name}");
        shared.push((share, bytes));
    }
    assert!(shared.len() >= 30, "{} files", shared.len());
    // A restart of the receiver changes nothing and publishes no change.
    bus.nodes[1].close();
    bus.nodes[1].reopen();
    let before = bus.log.len();
    bus.on(1, |e, now| e.startup(now))?;
    assert!(bus.log[before..]
        .iter()
        .all(|(_, k, _)| *k == SyncKind::Request));
    bus.run();
    for (share, bytes) in &shared {
        let remote = bus.nodes[1].file_of(share);
        assert!(read(&remote) == *bytes, "{share} after restart");
    }
    assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    Ok(())
}

#[test]
fn requests_for_other_peers_and_unknown_shares_are_ignored() -> R {
    let mut bus = pair(11);
    let (share, _, _) = shared_pair(&mut bus);
    let req = json!({"v":1,"share":share.url(),"op":"request","heads":""}).to_string();
    let other = vec![vec!["p".to_string(), peer(9)]];
    let a = bus.nodes[0]
        .engine()
        .handle(&peer(7), SyncKind::Request, &req, &other, T0)?;
    assert!(a.is_empty());
    // Addressed to everyone: the whole document, addressed to the requester.
    let a = bus.nodes[0]
        .engine()
        .handle(&peer(7), SyncKind::Request, &req, &[], T0)?;
    // The share's membership goes first (see `members`), then the document.
    let (members, a) = a.split_at(1);
    assert!(
        matches!(&members[0], Action::Publish { content, .. } if content.contains("\"op\":\"members\"")),
        "{members:?}"
    );
    match a {
        [Action::Publish {
            kind: SyncKind::Response,
            content,
            tags,
        }] => {
            assert!(content.contains("\"full\":true"));
            assert_eq!(tags, &vec![vec!["p".to_string(), peer(7)]]);
        }
        other => panic!("{other:?}"),
    }
    // Not twice within the request interval.
    let again = bus.nodes[0]
        .engine()
        .handle(&peer(7), SyncKind::Request, &req, &[], T0 + 1)?;
    assert!(again.is_empty(), "{again:?}");
    let later = bus.nodes[0]
        .engine()
        .handle(&peer(7), SyncKind::Request, &req, &[], T0 + 31)?;
    assert_eq!(later.len(), 2, "the membership and the document");
    let unknown =
        json!({"v":1,"share":format!("canvasl://{}/x.canvasl", peer(5)),"op":"request","heads":""})
            .to_string();
    assert!(bus.nodes[0]
        .engine()
        .handle(&peer(7), SyncKind::Request, &unknown, &[], T0)?
        .is_empty());
    // A full change for a new share from someone who is not its origin is not taken; the
    // engine asks for the share instead (once, then not again within the interval).
    let url = format!("canvasl://{}/new.canvasl", peer(5));
    let content =
        json!({"v":1,"share":url,"op":"change","full":true,"data":full_doc_data(BASE)}).to_string();
    let a = bus.nodes[1]
        .engine()
        .handle(&peer(7), SyncKind::Change, &content, &[], T0)?;
    assert!(
        matches!(&a[..], [Action::Publish { kind: SyncKind::Request, tags, .. }] if tags[0][1] == peer(7))
    );
    let a = bus.nodes[1]
        .engine()
        .handle(&peer(7), SyncKind::Change, &content, &[], T0 + 1)?;
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(bus.nodes[1].engine().shares().len(), 1);
    // Our own events echoed back are ignored.
    let me = bus.nodes[1].id.clone();
    assert!(bus.nodes[1]
        .engine()
        .handle(&me, SyncKind::Change, &content, &[], T0)?
        .is_empty());
    Ok(())
}

/// Releasing a hold trusts the file only while its stamp is the one the engine knows
/// (`absorb_released`): a file changed under the hold is read and merged, never overwritten.
#[test]
fn a_file_changed_under_a_hold_is_merged_when_the_hold_ends() -> R {
    let mut bus = pair(13);
    let (share, p0, p1) = shared_pair(&mut bus);
    bus.on(0, |e, _| e.hold_writes(&share.url(), true))?;
    edit_entry(&p1, 2, "y", json!(9));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_eq!(read(&p0), BASE.as_bytes());
    // Written under the hold, and not handed over: the release must take it in.
    edit_entry(&p0, 3, "x", json!(4));
    bus.on(0, |e, _| e.hold_writes(&share.url(), false))?;
    bus.run();
    let text = String::from_utf8(read(&p0))?;
    assert!(text.contains("\"y\":9"), "{text}");
    assert!(text.contains("\"id\":\"b\",\"x\":4"), "{text}");
    assert_eq!(read(&p0), read(&p1));
    assert!(bus.refused.is_empty());
    Ok(())
}

/// The text a worker renders ahead for a held share is written when the hold ends only while
/// it is still the document's text: a change merged after it was rendered is not lost.
#[test]
fn text_rendered_ahead_of_a_release_is_used_only_while_current() -> R {
    let mut bus = pair(14);
    let (share, p0, p1) = shared_pair(&mut bus);
    bus.on(0, |e, _| e.hold_writes(&share.url(), true))?;
    edit_entry(&p1, 2, "y", json!(9));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    bus.nodes[0].engine().take_offers();
    edit_entry(&p1, 3, "x", json!(4));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_eq!(read(&p0), BASE.as_bytes());
    bus.on(0, |e, _| e.hold_writes(&share.url(), false))?;
    bus.run();
    assert_eq!(read(&p0), read(&p1));
    // Rendered ahead and still current: written as rendered.
    bus.on(0, |e, _| e.hold_writes(&share.url(), true))?;
    edit_entry(&p1, 4, "x", json!(6));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    bus.nodes[0].engine().take_offers();
    bus.on(0, |e, _| e.hold_writes(&share.url(), false))?;
    bus.run();
    assert_eq!(read(&p0), read(&p1));
    assert!(bus.refused.is_empty());
    Ok(())
}

#[test]
fn held_changes_are_written_when_the_hold_ends_or_at_startup() -> R {
    let mut bus = pair(12);
    let (share, p0, p1) = shared_pair(&mut bus);
    bus.on(0, |e, _| e.hold_writes(&p0.to_string_lossy(), true))?;
    edit_entry(&p1, 2, "y", json!(9));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_eq!(read(&p0), BASE.as_bytes());
    // Released unmodified: the held change is written.
    let a = bus.nodes[0].engine().hold_writes(&share.url(), false)?;
    assert!(
        matches!(&a[..], [Action::Updated { created: false, .. }]),
        "{a:?}"
    );
    assert_eq!(read(&p0), read(&p1));
    // Held again, then a restart: startup writes what was held.
    bus.on(0, |e, _| e.hold_writes(&share.url(), true))?;
    edit_entry(&p1, 3, "x", json!(4));
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_ne!(read(&p0), read(&p1));
    bus.nodes[0].close();
    bus.nodes[0].reopen();
    bus.on(0, |e, now| e.startup(now))?;
    bus.run();
    assert_eq!(read(&p0), read(&p1));
    assert!(bus.refused.is_empty());
    Ok(())
}
