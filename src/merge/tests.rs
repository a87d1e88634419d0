//! Specific behaviours of [`SharedDoc`].

use super::{MergeError, SharedDoc};
use crate::canvasl::EntryKey;
use serde_json::json;

type R = Result<(), Box<dyn std::error::Error>>;

fn actor(n: u8) -> [u8; 32] {
    [n; 32]
}

fn text(d: &SharedDoc) -> String {
    String::from_utf8(d.text()).unwrap_or_default()
}

/// Both directions of a heads / changes_since exchange.
fn sync(a: &mut SharedDoc, b: &mut SharedDoc) -> R {
    b.apply_remote(&a.changes_since(&b.heads())?)?;
    a.apply_remote(&b.changes_since(&a.heads())?)?;
    Ok(())
}

/// A shared document on `n` replicas (replica 0 imported it, the others joined).
fn share(base: &str, n: u8) -> Result<Vec<SharedDoc>, Box<dyn std::error::Error>> {
    let first = SharedDoc::import(base.as_bytes(), actor(1))?;
    let mut out = vec![first];
    for k in 1..n {
        let mut d = SharedDoc::new(actor(k + 1));
        d.apply_remote(&out[0].changes_since(&d.heads())?)?;
        assert_eq!(d.text(), base.as_bytes());
        out.push(d);
    }
    Ok(out)
}

const BASE: &str = "@version 1.0\n\n{\"id\":\"a\",\"x\":1,\"y\":2}\n{\"id\":\"b\",\"x\":3}\n{\"id\":\"a\",\"x\":9}\nsome prose\n";

#[test]
fn every_corpus_file_round_trips() -> R {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        let mut d = SharedDoc::import(&bytes, actor(1))?;
        assert_eq!(d.text(), bytes, "{}", path.display());
        assert_eq!(d.apply_local_text(&bytes)?, None);
        let loaded = SharedDoc::load(&d.save(), actor(1))?;
        assert_eq!(loaded.text(), bytes, "{} after load", path.display());
        let mut joiner = SharedDoc::new(actor(2));
        joiner.apply_remote(&d.changes_since(&[])?)?;
        assert_eq!(joiner.text(), bytes, "{} on a joiner", path.display());
        n += 1;
    }
    assert!(n >= 30, "only {n} corpus files");
    Ok(())
}

#[test]
fn odd_files_round_trip() -> R {
    for t in [
        "",
        "\n",
        "\u{feff}{\"id\":\"a\"}\r\n{\"id\":\"b\"}\r\n",
        "{\"id\":\"a\"}\n{\"id\":\"b\"}",
        "a\rb\n  \n{ \"id\" : 1 }\n[1,2]\n@version: \"1.0\"\n",
    ] {
        let d = SharedDoc::import(t.as_bytes(), actor(1))?;
        assert_eq!(text(&d), t);
        let d = SharedDoc::load(&d.save(), actor(2))?;
        assert_eq!(text(&d), t);
    }
    assert!(matches!(
        SharedDoc::import(b"\xff\n", actor(1)),
        Err(MergeError::InvalidUtf8 { offset: 0 })
    ));
    Ok(())
}

#[test]
fn concurrent_edits_of_different_entries_and_fields_survive() -> R {
    let mut r = share(BASE, 2)?;
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    // a edits x of the first "a", b edits y of it and x of "b".
    let ca = a
        .apply_local_text(BASE.replace("\"x\":1,", "\"x\":10,").as_bytes())?
        .ok_or("no change")?;
    let cb = b
        .apply_local_text(
            BASE.replace("\"y\":2", "\"y\":20")
                .replace("\"x\":3", "\"x\":30")
                .as_bytes(),
        )?
        .ok_or("no change")?;
    assert!(ca.len() < 1024, "{} bytes", ca.len());
    a.apply_remote(&cb)?;
    b.apply_remote(&ca)?;
    let expected = "@version 1.0\n\n{\"id\":\"a\",\"x\":10,\"y\":20}\n{\"id\":\"b\",\"x\":30}\n{\"id\":\"a\",\"x\":9}\nsome prose\n";
    assert_eq!(text(a), expected);
    assert_eq!(text(b), expected);
    assert!(a.conflicts().is_empty());
    Ok(())
}

#[test]
fn a_field_added_in_front_stays_where_it_was_typed_and_merges_by_field() -> R {
    let mut r = share(BASE, 2)?;
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    // a adds a field in front of the first "a" (as Emacs' `json-serialize' of an alist with
    // the new key pushed first writes it); b edits y of the same entry meanwhile.
    let typed = BASE.replace(
        "{\"id\":\"a\",\"x\":1,\"y\":2}",
        "{\"note\":\"n\",\"id\":\"a\",\"x\":1,\"y\":2}",
    );
    let ca = a.apply_local_text(typed.as_bytes())?.ok_or("no change")?;
    // The typed line is the document's line: nothing to offer back to the buffer.
    assert_eq!(text(a), typed);
    let cb = b
        .apply_local_text(BASE.replace("\"y\":2", "\"y\":20").as_bytes())?
        .ok_or("no change")?;
    a.apply_remote(&cb)?;
    b.apply_remote(&ca)?;
    let expected = typed.replace("\"y\":2}", "\"y\":20}");
    assert_eq!(text(a), expected);
    assert_eq!(text(b), expected);
    assert!(a.conflicts().is_empty());
    // The same through the changed-lines path a buffer's save takes (line 2 of the text).
    let mut c = share(BASE, 1)?.remove(0);
    let line = "{\"note\":\"n\",\"id\":\"a\",\"x\":1,\"y\":2}\n";
    c.apply_local_lines(2, 3, line.as_bytes())?
        .ok_or("no change")?;
    assert_eq!(text(&c), typed);
    // A line in another form than a rendered one (spaces here) is rendered anew.
    let mut d = share(BASE, 1)?.remove(0);
    let spaced = "{\"note\": \"n\", \"id\":\"a\",\"x\":1,\"y\":2}\n";
    d.apply_local_lines(2, 3, spaced.as_bytes())?
        .ok_or("no change")?;
    let t = text(&d);
    assert!(
        t.contains("\n{\"id\":\"a\",\"x\":1,\"y\":2,\"note\":\"n\"}\n"),
        "{t}"
    );
    Ok(())
}

#[test]
fn same_field_conflict_has_one_winner_and_is_listed() -> R {
    let mut r = share(BASE, 3)?;
    let ca = r[0]
        .apply_local_text(BASE.replace("\"x\":9", "\"x\":100").as_bytes())?
        .ok_or("no change")?;
    let cb = r[1]
        .apply_local_text(BASE.replace("\"x\":9", "\"x\":200").as_bytes())?
        .ok_or("no change")?;
    r[0].apply_remote(&cb)?;
    r[1].apply_remote(&ca)?;
    // The third replica gets them in the other order.
    r[2].apply_remote(&cb)?;
    r[2].apply_remote(&ca)?;
    let t = text(&r[0]);
    assert_eq!(text(&r[1]), t);
    assert_eq!(text(&r[2]), t);
    // Actor 2 ([2; 32]) > actor 1: its write wins.
    assert!(t.contains("{\"id\":\"a\",\"x\":200}"), "{t}");
    for d in &r {
        let c = d.conflicts();
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].field.as_deref(), Some("x"));
        assert_eq!(c[0].winner, Some(json!(200)));
        assert_eq!(c[0].losers, vec![Some(json!(100))]);
        assert_eq!(c[0].entry_key, Some(EntryKey::new("a", 1)));
        assert_eq!(c[0].line, 4);
    }
    // A later edit of the field resolves the conflict everywhere.
    let cc = r[2]
        .apply_local_text(t.replace("\"x\":200", "\"x\":300").as_bytes())?
        .ok_or("no change")?;
    r[0].apply_remote(&cc)?;
    assert!(r[0].conflicts().is_empty());
    assert!(r[2].conflicts().is_empty());
    Ok(())
}

#[test]
fn whole_line_conflict_on_prose_and_directives() -> R {
    let mut r = share(BASE, 2)?;
    let ca = r[0]
        .apply_local_text(
            BASE.replace("@version 1.0", "@version 2.0")
                .replace("some prose", "A")
                .as_bytes(),
        )?
        .ok_or("no change")?;
    let cb = r[1]
        .apply_local_text(BASE.replace("some prose", "B").as_bytes())?
        .ok_or("no change")?;
    r[0].apply_remote(&cb)?;
    r[1].apply_remote(&ca)?;
    assert_eq!(text(&r[0]), text(&r[1]));
    assert!(text(&r[0]).starts_with("@version 2.0\n"));
    // Replica 0's write has the higher op counter (its change made two ops), so it wins.
    assert!(text(&r[0]).ends_with("\nA\n"));
    for d in &r {
        let c = d.conflicts();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, None);
        assert_eq!(c[0].winner, Some(json!("A\n")));
        assert_eq!(c[0].losers, vec![Some(json!("B\n"))]);
    }
    Ok(())
}

#[test]
fn entries_added_on_both_sides_all_appear_in_the_same_order() -> R {
    let mut r = share(BASE, 2)?;
    let ca = r[0]
        .apply_local_text(
            BASE.replace(
                "some prose\n",
                "some prose\n{\"id\":\"new\",\"by\":\"a\"}\n",
            )
            .as_bytes(),
        )?
        .ok_or("no change")?;
    // Same id, same place: still two entries.
    let cb = r[1]
        .apply_local_text(
            BASE.replace(
                "some prose\n",
                "some prose\n{\"id\":\"new\",\"by\":\"b\"}\n{\"id\":\"c\"}\n",
            )
            .as_bytes(),
        )?
        .ok_or("no change")?;
    r[0].apply_remote(&cb)?;
    r[1].apply_remote(&ca)?;
    let t = text(&r[0]);
    assert_eq!(text(&r[1]), t);
    assert!(t.contains("{\"id\":\"new\",\"by\":\"a\"}\n"));
    assert!(t.contains("{\"id\":\"new\",\"by\":\"b\"}\n{\"id\":\"c\"}\n"));
    assert_eq!(t.lines().count(), 9);
    let (a, b) = r.split_at_mut(1);
    sync(&mut a[0], &mut b[0])?;
    assert_eq!(text(&r[0]), t);
    Ok(())
}

#[test]
fn delete_wins_over_a_concurrent_edit() -> R {
    for deleter_first in [true, false] {
        let mut r = share(BASE, 2)?;
        let del = r[0]
            .apply_local_text(BASE.replace("{\"id\":\"b\",\"x\":3}\n", "").as_bytes())?
            .ok_or("no change")?;
        let edit = r[1]
            .apply_local_text(BASE.replace("\"x\":3", "\"x\":4,\"z\":true").as_bytes())?
            .ok_or("no change")?;
        if deleter_first {
            r[0].apply_remote(&edit)?;
            r[1].apply_remote(&del)?;
        } else {
            r[1].apply_remote(&del)?;
            r[0].apply_remote(&edit)?;
        }
        let expected = BASE.replace("{\"id\":\"b\",\"x\":3}\n", "");
        assert_eq!(text(&r[0]), expected);
        assert_eq!(text(&r[1]), expected);
    }
    Ok(())
}

#[test]
fn duplicate_and_out_of_order_delivery() -> R {
    let mut r = share(BASE, 2)?;
    let c1 = r[0]
        .apply_local_text(BASE.replace("\"x\":1,", "\"x\":2,").as_bytes())?
        .ok_or("no change")?;
    let t1 = text(&r[0]);
    let c2 = r[0]
        .apply_local_text(t1.replace("some prose", "more prose").as_bytes())?
        .ok_or("no change")?;
    let applied = r[1].apply_remote(&c2)?;
    assert!(!applied.changed);
    assert_eq!(applied.missing_deps, 1);
    assert_eq!(text(&r[1]), BASE);
    let applied = r[1].apply_remote(&c1)?;
    assert!(applied.changed);
    assert_eq!(applied.missing_deps, 0);
    assert_eq!(text(&r[1]), text(&r[0]));
    let before = r[1].save();
    for c in [&c1, &c2, &c1] {
        let applied = r[1].apply_remote(c)?;
        assert!(!applied.changed);
    }
    assert_eq!(text(&r[1]), text(&r[0]));
    assert_eq!(r[1].save(), before);
    Ok(())
}

#[test]
fn save_and_load_keep_history_without_duplicates() -> R {
    let mut r = share(BASE, 2)?;
    let c1 = r[0]
        .apply_local_text(BASE.replace("\"x\":3", "\"x\":4").as_bytes())?
        .ok_or("no change")?;
    r[1].apply_remote(&c1)?;
    // Replica 1 restarts.
    let saved = r[1].save();
    let mut b = SharedDoc::load(&saved, actor(2))?;
    assert_eq!(b.text(), r[0].text());
    // Old and new changes from replica 0: the old one is a no-op, the new one applies once.
    assert!(!b.apply_remote(&c1)?.changed);
    let t = text(&r[0]);
    let c2 = r[0]
        .apply_local_text(t.replace("some prose", "prose 2").as_bytes())?
        .ok_or("no change")?;
    assert!(b.apply_remote(&c2)?.changed);
    assert_eq!(b.text(), r[0].text());
    // The reloaded replica keeps editing with its own actor; replica 0 takes its change.
    let t = text(&b);
    let c3 = b
        .apply_local_text(format!("{t}{{\"id\":\"from-b\"}}\n").as_bytes())?
        .ok_or("no change")?;
    r[0].apply_remote(&c3)?;
    assert_eq!(b.text(), r[0].text());
    assert_eq!(text(&b).matches("from-b").count(), 1);
    assert_eq!(text(&b).lines().count(), 7);
    Ok(())
}

#[test]
fn edits_made_while_closed_are_picked_up() -> R {
    let mut r = share(BASE, 2)?;
    let saved = r[1].save();
    // The file is edited on disk while replica 1 is closed.
    let on_disk = BASE.replace("some prose", "edited offline");
    let mut b = SharedDoc::load(&saved, actor(2))?;
    let c = b.apply_local_text(on_disk.as_bytes())?.ok_or("no change")?;
    assert_eq!(text(&b), on_disk);
    r[0].apply_remote(&c)?;
    assert_eq!(text(&r[0]), on_disk);
    Ok(())
}

#[test]
fn late_joiner_catches_up_with_heads() -> R {
    let mut a = SharedDoc::import(BASE.as_bytes(), actor(1))?;
    let mut t = BASE.to_owned();
    for k in 0..5 {
        t.push_str(&format!("{{\"id\":\"n{k}\"}}\n"));
        a.apply_local_text(t.as_bytes())?;
    }
    let mut c = SharedDoc::new(actor(3));
    assert!(matches!(
        c.apply_local_text(b"x\n"),
        Err(MergeError::NotShared)
    ));
    c.apply_remote(&a.changes_since(&c.heads())?)?;
    assert_eq!(c.text(), a.text());
    // Later: only what is missing travels.
    t.push_str("{\"id\":\"later\"}\n");
    a.apply_local_text(t.as_bytes())?;
    let missing = a.changes_since(&c.heads())?;
    assert!(missing.len() < 400, "{} bytes", missing.len());
    assert!(c.apply_remote(&missing)?.changed);
    assert_eq!(c.text(), a.text());
    assert!(a.changes_since(&c.heads())?.is_empty());
    assert!(matches!(
        a.changes_since(&[0; 31]),
        Err(MergeError::BadHeads)
    ));
    // Unknown heads: everything is sent, applying it is harmless.
    let all = a.changes_since(&[7; 32])?;
    assert!(!c.apply_remote(&all)?.changed);
    Ok(())
}

#[test]
fn appending_after_a_last_line_without_newline() -> R {
    let base = "{\"id\":\"a\"}\n{\"id\":\"b\"}";
    let mut r = share(base, 2)?;
    let ca = r[0]
        .apply_local_text(format!("{base}\n{{\"id\":\"c\"}}").as_bytes())?
        .ok_or("no change")?;
    let cb = r[1]
        .apply_local_text(format!("{base}\nprose").as_bytes())?
        .ok_or("no change")?;
    r[0].apply_remote(&cb)?;
    r[1].apply_remote(&ca)?;
    let t = text(&r[0]);
    assert_eq!(text(&r[1]), t);
    assert_eq!(t.lines().count(), 4, "{t:?}");
    assert!(t.starts_with("{\"id\":\"a\"}\n{\"id\":\"b\"}\n"));
    // The two "add a newline to b" writes agree, so they are not listed as a conflict.
    assert!(r[0].conflicts().is_empty(), "{:?}", r[0].conflicts());
    // Writing the merged text back is not a change.
    assert_eq!(r[0].apply_local_text(t.as_bytes())?, None);
    Ok(())
}

#[test]
fn formatting_only_edits_and_field_removal() -> R {
    let mut r = share(BASE, 2)?;
    // Reformat the first "a" on replica 0; remove its y on replica 1.
    let ca = r[0]
        .apply_local_text(
            BASE.replace(
                "{\"id\":\"a\",\"x\":1,\"y\":2}",
                "{ \"y\": 2, \"id\": \"a\", \"x\": 1 }",
            )
            .as_bytes(),
        )?
        .ok_or("no change")?;
    assert!(text(&r[0]).contains("{ \"y\": 2, \"id\": \"a\", \"x\": 1 }\n"));
    let cb = r[1]
        .apply_local_text(BASE.replace(",\"y\":2", "").as_bytes())?
        .ok_or("no change")?;
    r[0].apply_remote(&cb)?;
    r[1].apply_remote(&ca)?;
    let t = text(&r[0]);
    assert_eq!(text(&r[1]), t);
    assert!(t.contains("\n{\"id\":\"a\",\"x\":1}\n"), "{t}");
    Ok(())
}

#[test]
fn malformed_remote_bytes_never_panic() -> R {
    let mut r = share(BASE, 2)?;
    let c = r[0]
        .apply_local_text(BASE.replace("\"x\":3", "\"x\":4").as_bytes())?
        .ok_or("no change")?;
    let full = r[0].save();
    let mut rng = crate::canvasl::generate::XorShift::new(5);
    let before = r[1].text();
    for round in 0..300 {
        let src = if round % 2 == 0 { &c } else { &full };
        let mut bytes = src.clone();
        match round % 3 {
            0 => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
            _ => {
                bytes = (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect();
            }
        }
        if round % 5 == 0 {
            // A valid change followed by garbage.
            bytes = [c.clone(), bytes].concat();
        }
        let mut d = SharedDoc::load(&r[1].save(), actor(2))?;
        let _ = d.apply_remote(&bytes);
        // Whatever was applied, the text matches the CRDT.
        assert_eq!(d.text(), SharedDoc::load(&d.save(), actor(2))?.text());
        let _ = SharedDoc::load(&bytes, actor(3));
        let mut fresh = SharedDoc::new(actor(4));
        let _ = fresh.apply_remote(&bytes);
        let _ = fresh.text();
        let _ = fresh.conflicts();
    }
    assert_eq!(r[1].text(), before);
    r[1].apply_remote(&c)?;
    assert_eq!(r[1].text(), r[0].text());
    Ok(())
}
