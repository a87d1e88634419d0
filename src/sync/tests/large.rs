//! A 100,000-entry canvas: the size of a one-entry edit, and (ignored by `cargo test`, run by
//! `make test-large`, which `.ci/run` runs) a whole share through shuffled, duplicated chunks.

use serde_json::json;

use super::bus::edit_entry;
use super::chunk::split;
use super::util::{read, Node, R, T0};
use super::wire::Of;
use super::{Action, ShareId, SyncConfig};
use crate::canvasl::generate::XorShift;
use crate::canvasl::generate_canvas;
use crate::federation::SyncKind;
use crate::merge::SharedDoc;

/// The change content a one-entry edit of a 100,000-entry canvas publishes (the engine's own
/// encoding path, without its disk work).
#[test]
fn a_one_entry_edit_of_a_100k_canvas_is_a_small_event() -> R {
    let text = generate_canvas(100_000, 42);
    let mut doc = SharedDoc::import(text.as_bytes(), [1; 32])?;
    let edited = text.replacen("\"color\":\"3\"", "\"color\":\"5\"", 1);
    let change = doc
        .apply_local_text(edited.as_bytes())?
        .ok_or("no change")?;
    let share = ShareId::new(&super::util::peer(1), "big.canvasl")?;
    let config = SyncConfig::default();
    let contents = split(
        &share,
        Of::Change,
        false,
        &change,
        config.max_content_bytes,
        config.max_chunks(),
    )
    .map_err(|e| format!("{e:?}"))?;
    assert_eq!(contents.len(), 1);
    println!(
        "one-entry edit of a 100,000-entry canvas: {} bytes of change, {} bytes of content",
        change.len(),
        contents[0].len()
    );
    assert!(contents[0].len() < 700, "{}", contents[0].len());
    Ok(())
}

#[test]
#[ignore = "large: about a minute in a debug build; `make test-large` (run by .ci/run) runs it"]
fn a_100k_canvas_shared_through_shuffled_duplicated_chunks() -> R {
    let text = generate_canvas(100_000, 42);
    let mut a = Node::new(1, SyncConfig::default());
    let mut b = Node::new(2, SyncConfig::default());
    let path = a.write_home("big.canvasl", text.as_bytes());
    let actions = a.engine().share(&path, None, T0)?;
    let mut events: Vec<(SyncKind, String)> = actions
        .into_iter()
        .filter_map(|x| match x {
            Action::Publish { kind, content, .. } => Some((kind, content)),
            _ => None,
        })
        .collect();
    println!(
        "100,000 entries ({} bytes): {} chunk events",
        text.len(),
        events.len()
    );
    assert!(events.len() > 20);
    let mut rng = XorShift::new(3);
    for _ in 0..events.len() / 3 {
        let e = events[rng.below(events.len() as u64) as usize].clone();
        events.push(e);
    }
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let from = a.id.clone();
    let mut created = 0;
    for (kind, content) in &events {
        for x in b.engine().handle(&from, *kind, content, &[], T0)? {
            match x {
                Action::Updated { created: true, .. } => created += 1,
                Action::Refused { reason, detail } => panic!("{reason}: {detail}"),
                _ => {}
            }
        }
    }
    assert_eq!(created, 1);
    let share = ShareId::new(&a.id, "big.canvasl")?;
    let b_path = b.file_of(&share);
    assert!(read(&b_path) == text.as_bytes(), "byte-identical");
    assert_eq!(b.engine().reassembly_status(), (0, 0));
    // A one-entry edit through the engine.
    edit_entry(&path, 5000, "color", json!("edited"));
    let actions = a.engine().local_file_changed(&share.url(), T0)?;
    let publish: Vec<&String> = actions
        .iter()
        .filter_map(|x| match x {
            Action::Publish { content, .. } => Some(content),
            _ => None,
        })
        .collect();
    assert_eq!(publish.len(), 1);
    println!(
        "one-entry edit through the engine: {} bytes of content",
        publish[0].len()
    );
    assert!(publish[0].len() < 700);
    for x in actions {
        if let Action::Publish { kind, content, .. } = x {
            b.engine().handle(&from, kind, &content, &[], T0)?;
        }
    }
    assert!(read(&b_path) == read(&path));
    // A restart of the receiver keeps everything.
    b.close();
    b.reopen();
    let actions = b.engine().startup(T0)?;
    assert!(actions.iter().all(|x| matches!(
        x,
        Action::Publish {
            kind: SyncKind::Request,
            ..
        }
    )));
    assert!(read(&b_path) == read(&path));
    Ok(())
}
