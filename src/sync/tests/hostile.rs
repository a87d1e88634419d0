//! What a hostile peer cannot make sync do: answers nobody asked for,
//! share names that collide on case-insensitive file systems, invisible
//! characters in names.

use base64ct::{Base64, Encoding};
use serde_json::json;

use super::share_id::folded_name;
use super::util::{files_under, peer, Node, R, T0};
use super::{check_share_name, Action, SyncConfig, SyncError};
use crate::federation::SyncKind;
use crate::merge::SharedDoc;

const TEXT: &str = "@version 1.0\n\n{\"id\":\"a\",\"x\":1}\n";

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

fn response(url: &str, to: &str) -> (String, Vec<Vec<String>>) {
    let content = json!({"v":1,"share":url,"op":"response","full":true,"data":full_doc_data(TEXT)})
        .to_string();
    (content, vec![vec!["p".to_string(), to.to_string()]])
}

#[test]
fn an_unsolicited_response_writes_nothing() -> R {
    let mut node = Node::new(2, SyncConfig::default());
    let me = node.id.clone();
    let origin = peer(0xab);
    let url = format!("canvasl://{origin}/plan.canvasl");
    let (content, tags) = response(&url, &me);
    let actions = node
        .engine()
        .handle(&origin, SyncKind::Response, &content, &tags, T0)?;
    assert_eq!(refused(&actions), vec!["unsolicited"]);
    assert!(files_under(&node.sync_dir()).is_empty());
    assert!(files_under(&node.state_dir()).is_empty());
    assert!(node.engine().shares().is_empty());
    // Someone else's answer is not applied either (quietly).
    let (content, tags) = response(&url, &peer(0xcd));
    let actions = node
        .engine()
        .handle(&origin, SyncKind::Response, &content, &tags, T0)?;
    assert!(actions.is_empty(), "{actions:?}");
    assert!(files_under(&node.sync_dir()).is_empty());
    // Once we asked (the origin offered the share, we requested it), the
    // same answer creates the share.
    let offer = json!({"v":1,"share":url,"op":"request","heads":"","have":""}).to_string();
    let asked = node
        .engine()
        .handle(&origin, SyncKind::Request, &offer, &[], T0)?;
    assert!(
        asked.iter().any(|a| matches!(
            a,
            Action::Publish {
                kind: SyncKind::Request,
                ..
            }
        )),
        "{asked:?}"
    );
    let (content, tags) = response(&url, &me);
    let actions = node
        .engine()
        .handle(&origin, SyncKind::Response, &content, &tags, T0 + 1)?;
    assert!(
        matches!(&actions[..], [Action::Updated { created: true, .. }]),
        "{actions:?}"
    );
    // Long after the request, answers are unsolicited again.
    let url2 = format!("canvasl://{origin}/other.canvasl");
    let offer = json!({"v":1,"share":url2,"op":"request","heads":"","have":""}).to_string();
    node.engine()
        .handle(&origin, SyncKind::Request, &offer, &[], T0)?;
    let (content, tags) = response(&url2, &me);
    let actions =
        node.engine()
            .handle(&origin, SyncKind::Response, &content, &tags, T0 + 10_000)?;
    assert_eq!(refused(&actions), vec!["unsolicited"]);
    Ok(())
}

#[test]
fn names_colliding_by_case_or_normalisation_are_refused() -> R {
    let mut node = Node::new(2, SyncConfig::default());
    let origin = peer(0xab);
    let change = |name: &str| {
        json!({"v":1,"share":format!("canvasl://{origin}/{name}"),"op":"change",
               "full":true,"data":full_doc_data(TEXT)})
        .to_string()
    };
    let actions =
        node.engine()
            .handle(&origin, SyncKind::Change, &change("Notes.canvasl"), &[], T0)?;
    assert!(matches!(
        &actions[..],
        [Action::Updated { created: true, .. }]
    ));
    for twin in ["notes.canvasl", "NOTES.canvasl"] {
        let actions = node
            .engine()
            .handle(&origin, SyncKind::Change, &change(twin), &[], T0)?;
        assert_eq!(refused(&actions), vec!["name-collision"], "{twin}");
    }
    // Composed and decomposed forms of one name.
    node.engine().handle(
        &origin,
        SyncKind::Change,
        &change("caf\u{e9}.canvasl"),
        &[],
        T0,
    )?;
    let actions = node.engine().handle(
        &origin,
        SyncKind::Change,
        &change("cafe\u{301}.canvasl"),
        &[],
        T0,
    )?;
    assert_eq!(refused(&actions), vec!["name-collision"]);
    assert_eq!(files_under(&node.sync_dir().join(&origin)).len(), 2);
    // Another origin may use the name.
    let other = peer(0xcd);
    let c = json!({"v":1,"share":format!("canvasl://{other}/notes.canvasl"),"op":"change",
                   "full":true,"data":full_doc_data(TEXT)})
    .to_string();
    let actions = node
        .engine()
        .handle(&other, SyncKind::Change, &c, &[], T0)?;
    assert!(matches!(
        &actions[..],
        [Action::Updated { created: true, .. }]
    ));
    // Sharing a local file: the same rule.
    let a = node.write_home("Plan.canvasl", TEXT.as_bytes());
    let sub = node.home().join("sub");
    std::fs::create_dir_all(&sub)?;
    let b = sub.join("plan.canvasl");
    std::fs::write(&b, TEXT)?;
    node.engine().share(&a, None, T0)?;
    assert!(matches!(
        node.engine().share(&b, None, T0),
        Err(SyncError::NameTaken(_))
    ));
    Ok(())
}

#[test]
fn names_with_invisible_characters_are_refused() {
    for bad in [
        "a\u{200b}.canvasl",
        "evil\u{202e}lvsnac.jsonl",
        "soft\u{ad}hyphen.canvasl",
        "x\u{2028}.canvasl",
        "\u{feff}bom.canvasl",
    ] {
        assert_eq!(
            check_share_name(bad).unwrap_err().reason(),
            "name-format",
            "{bad:?}"
        );
    }
    assert!(check_share_name("caf\u{e9}.canvasl").is_ok());
    assert_eq!(
        folded_name("Caf\u{e9}.canvasl"),
        folded_name("CAFE\u{301}.canvasl")
    );
    assert_ne!(folded_name("a.canvasl"), folded_name("b.canvasl"));
}
