//! Origin authority and membership (issue 13, items 1-2): a share is created only by its
//! origin or a member the origin vouched for; a member list keeps everyone else out.

use std::collections::BTreeSet;

use base64ct::{Base64, Encoding};
use serde_json::json;

use super::members::Membership;
use super::util::{files_under, read, Bus, Node, R, T0};
use super::{Action, ShareId, SyncConfig, SyncError};
use crate::federation::SyncKind;
use crate::identity::Identity;
use crate::merge::SharedDoc;

const TEXT: &str = "@version 1.0\n\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n";

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

fn warnings(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Warning { .. }))
        .count()
}

fn publishes(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Publish { .. }))
        .count()
}

fn change(url: &str, full: bool) -> String {
    json!({"v":1,"share":url,"op":"change","full":full,"data":full_doc_data(TEXT)}).to_string()
}

fn members_content(m: &Membership) -> String {
    json!({"v":1,"share":m.share.url(),"op":"members","members":m.event}).to_string()
}

fn attacker() -> Identity {
    Identity::from_secret_for_tests([0x66; 32])
}

#[test]
fn a_share_named_after_us_is_never_created_from_the_network() -> R {
    let mut victim = Node::signed(2, SyncConfig::default());
    let evil = attacker().peer_id();
    let url = format!("canvasl://{}/forged.canvasl", victim.id);
    for (kind, content, tags) in [
        (SyncKind::Change, change(&url, true), vec![]),
        (SyncKind::Change, change(&url, false), vec![]),
        (
            SyncKind::Response,
            json!({"v":1,"share":url,"op":"response","full":true,"data":full_doc_data(TEXT)})
                .to_string(),
            vec![vec!["p".to_string(), victim.id.clone()]],
        ),
    ] {
        let a = victim.engine().handle(&evil, kind, &content, &tags, T0)?;
        assert!(
            refused(&a) == vec!["not-origin"] || refused(&a) == vec!["unsolicited"],
            "{a:?}"
        );
        assert_eq!(publishes(&a), 0, "nothing is asked of the sender: {a:?}");
    }
    assert!(files_under(&victim.sync_dir()).is_empty());
    assert!(victim.engine().shares().is_empty());
    assert_eq!(victim.engine().refusals().get("not-origin"), 2);
    Ok(())
}

#[test]
fn the_forged_share_attack_is_refused_and_reported_once() -> R {
    // The attack of issue 13: a change for a share of a third origin, then the attacker's
    // answer to the request it provokes.
    let mut victim = Node::signed(2, SyncConfig::default());
    let origin = Identity::from_secret_for_tests([0x44; 32]).peer_id();
    let evil = attacker();
    let url = format!("canvasl://{origin}/forged.canvasl");
    let a = victim.engine().handle(
        &evil.peer_id(),
        SyncKind::Change,
        &change(&url, false),
        &[],
        T0,
    )?;
    // Asking is harmless: the answer is what gets checked.
    assert_eq!(publishes(&a), 1, "{a:?}");
    let response =
        json!({"v":1,"share":url,"op":"response","full":true,"data":full_doc_data(TEXT)})
            .to_string();
    let to_me = vec![vec!["p".to_string(), victim.id.clone()]];
    let a = victim.engine().handle(
        &evil.peer_id(),
        SyncKind::Response,
        &response,
        &to_me,
        T0 + 1,
    )?;
    assert_eq!(refused(&a), vec!["not-origin"]);
    assert_eq!(warnings(&a), 1, "reported: {a:?}");
    // A membership the attacker signed itself does not help.
    let share = ShareId::parse(&url)?;
    let forged = Membership {
        share: share.clone(),
        version: 1,
        members: None,
        event: crate::identity::event::sign(
            &evil,
            super::KIND_SHARE_MEMBERS,
            &json!({"share":url,"version":1,"members":null}).to_string(),
            vec![],
            T0,
        ),
    };
    let a = victim.engine().handle(
        &evil.peer_id(),
        SyncKind::Change,
        &members_content(&forged),
        &[],
        T0 + 2,
    )?;
    assert_eq!(refused(&a), vec!["not-origin"]);
    let a = victim.engine().handle(
        &evil.peer_id(),
        SyncKind::Response,
        &response,
        &to_me,
        T0 + 3,
    )?;
    assert_eq!(refused(&a), vec!["not-origin"]);
    assert_eq!(warnings(&a), 0, "reported once per peer: {a:?}");
    assert!(files_under(&victim.sync_dir()).is_empty());
    assert!(victim.engine().shares().is_empty());
    Ok(())
}

#[test]
fn a_member_answers_for_an_offline_origin_with_the_origins_membership() -> R {
    let mut bus = Bus::new(3, 21, &SyncConfig::default());
    bus.nodes[2].online = false;
    let path = bus.nodes[0].write_home("team.canvasl", TEXT.as_bytes());
    bus.on(0, |e, now| e.share(&path, None, now))?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "team.canvasl")?;
    // The origin leaves; node 2 comes back and hears of the share from node 1 only.
    bus.nodes[0].online = false;
    bus.nodes[2].online = true;
    let p1 = bus.nodes[1].file_of(&share);
    std::fs::write(&p1, format!("{TEXT}{{\"id\":\"c\",\"x\":3}}\n"))?;
    bus.on(1, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    let p2 = bus.nodes[2].file_of(&share);
    assert_eq!(read(&p2), read(&p1));
    assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    Ok(())
}

#[test]
fn a_member_list_keeps_other_peers_out() -> R {
    let mut bus = Bus::new(3, 22, &SyncConfig::default());
    let member = bus.nodes[1].id.clone();
    let outsider = bus.nodes[2].id.clone();
    let path = bus.nodes[0].write_home("private.canvasl", TEXT.as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![member.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "private.canvasl")?;
    assert_eq!(read(&bus.nodes[1].file_of(&share)), TEXT.as_bytes());
    assert!(bus.nodes[2].engine().shares().is_empty(), "not offered");
    assert!(files_under(&bus.nodes[2].sync_dir()).is_empty());
    // The outsider's change and request are refused by the members.
    let url = share.url();
    let c = json!({"v":1,"share":url,"op":"change","full":false,"data":full_doc_data(TEXT)})
        .to_string();
    for n in 0..2 {
        let a = bus.nodes[n]
            .engine()
            .handle(&outsider, SyncKind::Change, &c, &[], T0)?;
        assert_eq!(refused(&a), vec!["not-member"], "node {n}");
        let r = json!({"v":1,"share":url,"op":"request","heads":""}).to_string();
        let a = bus.nodes[n]
            .engine()
            .handle(&outsider, SyncKind::Request, &r, &[], T0)?;
        assert_eq!(refused(&a), vec!["not-member"], "node {n}");
        assert_eq!(publishes(&a), 0);
    }
    // The origin offers the share only to members.
    assert!(bus.nodes[0].engine().offer(&outsider, T0).is_empty());
    // (The key, then the request.)
    assert_eq!(bus.nodes[0].engine().offer(&member, T0 + 100).len(), 2);
    Ok(())
}

#[test]
fn a_removed_member_stops_and_a_new_member_gets_the_share() -> R {
    let mut bus = Bus::new(3, 23, &SyncConfig::default());
    let (b, c) = (bus.nodes[1].id.clone(), bus.nodes[2].id.clone());
    let path = bus.nodes[0].write_home("rota.canvasl", TEXT.as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![b.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "rota.canvasl")?;
    // Only the origin changes members.
    assert!(matches!(
        bus.nodes[1]
            .engine()
            .set_members(&share.url(), Some(vec![c.clone()]), T0),
        Err(SyncError::NotOrigin(_))
    ));
    assert!(matches!(
        bus.nodes[0]
            .engine()
            .set_members(&share.url(), Some(vec!["nope".into()]), T0),
        Err(SyncError::BadPeerId(_))
    ));
    // Swap b for c.
    bus.now += 5;
    bus.on(0, |e, now| {
        e.set_members(&share.url(), Some(vec![c.clone()]), now)
    })?;
    bus.run();
    assert!(
        bus.warnings
            .iter()
            .any(|(n, m)| *n == 1 && m.contains("removed")),
        "{:?}",
        bus.warnings
    );
    assert_eq!(
        read(&bus.nodes[2].file_of(&share)),
        TEXT.as_bytes(),
        "{:?} {:?}",
        bus.refused,
        bus.warnings
    );
    let info = bus.nodes[1].engine().shares();
    assert!(!info[0].brief.active, "b stopped syncing");
    // An edit after the removal reaches c, not b.
    let after = format!("{TEXT}{{\"id\":\"z\",\"x\":9}}\n");
    std::fs::write(&path, &after)?;
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert_eq!(read(&bus.nodes[2].file_of(&share)), after.as_bytes());
    assert_eq!(read(&bus.nodes[1].file_of(&share)), TEXT.as_bytes());
    let m = bus.nodes[0]
        .engine()
        .membership(&share.url())?
        .expect("membership");
    assert_eq!(m.members, Some(BTreeSet::from([c.clone()])));
    // Its membership outlives a restart, on the origin and on c.
    for n in [0, 2] {
        bus.nodes[n].close();
        bus.nodes[n].reopen();
        let again = bus.nodes[n].engine().membership(&share.url())?;
        assert_eq!(again.map(|m| m.version), Some(m.version), "node {n}");
    }
    Ok(())
}

#[test]
fn a_membership_is_checked_and_a_newer_one_wins() -> R {
    let origin = Identity::from_secret_for_tests([0x44; 32]);
    let share = ShareId::new(&origin.peer_id(), "m.canvasl")?;
    let m = Membership::sign(&origin, &share, 7, None, T0)?;
    assert!(Membership::verify(m.event.clone(), &share).is_ok());
    // Another share's membership, or a tampered one, is refused.
    let other = ShareId::new(&origin.peer_id(), "n.canvasl")?;
    assert_eq!(
        Membership::verify(m.event.clone(), &other).unwrap_err().0,
        "bad-members"
    );
    let mut tampered = m.event.clone();
    tampered.content = tampered.content.replace("7", "8");
    assert_eq!(
        Membership::verify(tampered, &share).unwrap_err().0,
        "bad-members"
    );
    // Only the origin can sign one.
    assert!(matches!(
        Membership::sign(&attacker(), &share, 1, None, T0),
        Err(SyncError::NotOrigin(_))
    ));
    // A newer version replaces an older one, not the reverse.
    let mut node = Node::signed(2, SyncConfig::default());
    let me = node.id.clone();
    let v8 = Membership::sign(&origin, &share, 8, Some(BTreeSet::from([me.clone()])), T0)?;
    let v9 = Membership::sign(&origin, &share, 9, Some(BTreeSet::new()), T0)?;
    node.engine().handle(
        &attacker().peer_id(),
        SyncKind::Change,
        &members_content(&v9),
        &[],
        T0,
    )?;
    node.engine().handle(
        &attacker().peer_id(),
        SyncKind::Change,
        &members_content(&v8),
        &[],
        T0,
    )?;
    // v9 leaves us out: the origin's own document is refused.
    let a = node.engine().handle(
        &origin.peer_id(),
        SyncKind::Change,
        &change(&share.url(), true),
        &[],
        T0,
    )?;
    assert_eq!(refused(&a), vec!["not-member"]);
    assert!(node.engine().shares().is_empty());
    Ok(())
}
