//! [`DocKind`]: what a line of a shared file is, so that CanvasL canvases and plain
//! line-oriented text (Org, Markdown, plain text) share one document type and every engine path.
//!
//! Both kinds use the same CRDT schema (see `super::render`): one automerge list item per line,
//! whose `t` key holds the line's text with its line ending. They differ only in what an edit of
//! a line writes:
//!
//! * [`DocKind::Canvas`]: a line that is a JSON object before and after the edit becomes one
//!   field override per changed field (concurrent edits of different fields of one entry both
//!   survive); any other line is rewritten whole.
//! * [`DocKind::Text`]: every line is rewritten whole, whatever it looks like. An Org or
//!   Markdown line that happens to start with `{` is prose, not an entry, so it must not be
//!   merged field by field. Concurrent edits of different lines all survive; two writes of one
//!   line are an automerge conflict on its `t` key: every replica shows the same winner (the
//!   write with the greater op id) and [`super::SharedDoc::conflicts`] lists the loser (with
//!   `field: None`, the whole line as a JSON string). Text lines never carry overrides, and a
//!   text replica renders a line from its `t` alone, so overrides a hand-made change might add
//!   are ignored the same way everywhere.
//!
//! The kind is not stored in the document: it follows from the share's name
//! (`crate::sync::ShareId::kind`, the one place that maps a file-name suffix to a kind), so a
//! peer cannot turn a canvas into text or back.

use automerge::transaction::Transactable;
use automerge::ObjId;

use super::render::{BASE, FIELD_PREFIX};
use super::MergeError;

/// How the lines of a shared document are merged (see the `merge::text` source docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum DocKind {
    /// A CanvasL file: JSON entries merge field by field.
    #[default]
    Canvas,
    /// Plain line-oriented text (`.org`, `.md`, `.txt`): every line merges as a whole.
    Text,
}

impl DocKind {
    /// A stable short name (`"canvas"`, `"text"`), as shown to Elisp.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Canvas => "canvas",
            DocKind::Text => "text",
        }
    }

    /// Whether JSON entries of this kind merge field by field.
    pub(crate) fn merges_fields(self) -> bool {
        self == DocKind::Canvas
    }
}

/// Turns "text line `old` became `new`" into operations on `item`: the whole line is written,
/// and any field override on the item is dropped (a text line has none; a hand-made change
/// could have added some, and they must not apply to the new text).
pub(crate) fn modify_text_line(
    tx: &mut impl Transactable,
    item: &ObjId,
    new: &str,
) -> Result<(), MergeError> {
    tx.put(item, BASE, new)?;
    let stale: Vec<String> = tx
        .keys(item)
        .filter(|k| k.starts_with(FIELD_PREFIX))
        .collect();
    for k in stale {
        tx.delete(item, k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Merging plain text documents: concurrent lines, one line written twice, the same winner
    //! whichever way the changes travel, and lines that look like JSON.

    use super::DocKind;
    use crate::merge::{MergeError, SharedDoc};

    type R = Result<(), MergeError>;

    const ORG: &str = "#+TITLE: Federation Blackboard\n\n* Federation Blackboard\n** Ideas\n- first idea\n- second idea\n** Tasks\n- [ ] write the tests\n";

    fn text(d: &SharedDoc) -> String {
        String::from_utf8(d.text()).expect("utf-8")
    }

    /// Two text replicas of ORG: `a` imported it, `b` joined.
    fn pair() -> Result<(SharedDoc, SharedDoc), MergeError> {
        let a = SharedDoc::import(ORG.as_bytes(), [1; 32])?.with_kind(DocKind::Text);
        let mut b = SharedDoc::new([2; 32]).with_kind(DocKind::Text);
        b.apply_remote(&a.changes_since(&[])?)?;
        assert_eq!(text(&b), ORG);
        Ok((a, b))
    }

    #[test]
    fn concurrent_edits_of_different_lines_and_headings_all_survive() -> R {
        let (mut a, mut b) = pair()?;
        let ca = a
            .apply_local_text(
                ORG.replace("- first idea", "- first idea, refined")
                    .as_bytes(),
            )?
            .expect("a change");
        let cb = b
            .apply_local_text(
                ORG.replace("** Tasks\n", "** Tasks\n- [ ] share the blackboard\n")
                    .replace("** Ideas", "** Ideas (from bob)")
                    .as_bytes(),
            )?
            .expect("a change");
        a.apply_remote(&cb)?;
        b.apply_remote(&ca)?;
        let want = "#+TITLE: Federation Blackboard\n\n* Federation Blackboard\n** Ideas (from bob)\n- first idea, refined\n- second idea\n** Tasks\n- [ ] share the blackboard\n- [ ] write the tests\n";
        assert_eq!(text(&a), want);
        assert_eq!(text(&b), want);
        assert!(a.conflicts().is_empty() && b.conflicts().is_empty());
        Ok(())
    }

    /// Both replicas write one line; returns (a, b) after the exchange in the given order.
    fn same_line(a_first: bool) -> Result<(SharedDoc, SharedDoc), MergeError> {
        let (mut a, mut b) = pair()?;
        let ca = a
            .apply_local_text(
                ORG.replace("- second idea", "- second idea (alice)")
                    .as_bytes(),
            )?
            .expect("a change");
        let cb = b
            .apply_local_text(
                ORG.replace("- second idea", "- second idea (bob)")
                    .as_bytes(),
            )?
            .expect("a change");
        if a_first {
            b.apply_remote(&ca)?;
            a.apply_remote(&cb)?;
        } else {
            a.apply_remote(&cb)?;
            b.apply_remote(&ca)?;
        }
        Ok((a, b))
    }

    #[test]
    fn one_line_written_twice_has_the_same_winner_everywhere_and_lists_the_loser() -> R {
        let mut winners = Vec::new();
        for a_first in [true, false] {
            let (a, b) = same_line(a_first)?;
            assert_eq!(text(&a), text(&b));
            let shown = text(&a);
            let line = shown
                .lines()
                .find(|l| l.starts_with("- second idea"))
                .expect("the line")
                .to_owned();
            assert!(line == "- second idea (alice)" || line == "- second idea (bob)");
            for d in [&a, &b] {
                let c = d.conflicts();
                assert_eq!(c.len(), 1, "{c:?}");
                assert_eq!(c[0].field, None);
                assert_eq!(c[0].line, 5);
                assert_eq!(c[0].entry_key, None);
                assert_eq!(c[0].winner, Some(serde_json::json!(format!("{line}\n"))));
                let loser = if line.ends_with("(alice)") {
                    "- second idea (bob)\n"
                } else {
                    "- second idea (alice)\n"
                };
                assert_eq!(c[0].losers, vec![Some(serde_json::json!(loser))]);
            }
            winners.push(line);
        }
        // The same winner whichever change arrived first.
        assert_eq!(winners[0], winners[1]);
        Ok(())
    }

    #[test]
    fn a_line_that_looks_like_json_merges_whole_in_text_and_by_field_in_a_canvas() -> R {
        let base = "* Notes\n{\"id\":\"n\",\"x\":1,\"y\":2}\n";
        let a_edit = base.replace("\"x\":1", "\"x\":10");
        let b_edit = base.replace("\"y\":2", "\"y\":20");
        let mut shown = Vec::new();
        for kind in [DocKind::Text, DocKind::Canvas] {
            let mut a = SharedDoc::import(base.as_bytes(), [1; 32])?.with_kind(kind);
            let mut b = SharedDoc::new([2; 32]).with_kind(kind);
            b.apply_remote(&a.changes_since(&[])?)?;
            let ca = a.apply_local_text(a_edit.as_bytes())?.expect("a change");
            let cb = b.apply_local_text(b_edit.as_bytes())?.expect("a change");
            a.apply_remote(&cb)?;
            b.apply_remote(&ca)?;
            assert_eq!(text(&a), text(&b));
            assert_eq!(a.kind(), kind);
            shown.push((text(&a), a.conflicts().len()));
        }
        // Text: one of the two lines, written exactly as its author wrote it, and a conflict.
        let (t, n) = &shown[0];
        assert!(*t == a_edit || *t == b_edit, "{t}");
        assert_eq!(*n, 1);
        // Canvas: both fields.
        assert_eq!(
            shown[1],
            ("* Notes\n{\"id\":\"n\",\"x\":10,\"y\":20}\n".into(), 0)
        );
        Ok(())
    }

    #[test]
    fn field_overrides_from_a_hand_made_change_are_ignored_and_dropped_by_an_edit() -> R {
        // A replica that (wrongly) treats the share as a canvas writes a field override.
        let base = "* Notes\n{\"id\":\"n\",\"x\":1}\n";
        let mut canvas = SharedDoc::import(base.as_bytes(), [1; 32])?;
        let mut text_replica = SharedDoc::new([2; 32]).with_kind(DocKind::Text);
        text_replica.apply_remote(&canvas.changes_since(&[])?)?;
        let forged = canvas
            .apply_local_text(base.replace("\"x\":1", "\"x\":99").as_bytes())?
            .expect("a change");
        text_replica.apply_remote(&forged)?;
        // The text replica shows the line as written, not the override.
        assert_eq!(text(&text_replica), base);
        // Editing the line there writes it whole and removes the override for everyone.
        let edited = "* Notes\n{\"id\":\"n\",\"x\":2} and prose\n";
        let c = text_replica
            .apply_local_text(edited.as_bytes())?
            .expect("a change");
        canvas.apply_remote(&c)?;
        assert_eq!(text(&text_replica), edited);
        assert_eq!(text(&canvas), edited);
        Ok(())
    }

    #[test]
    fn a_stale_save_keeps_the_remote_line_that_arrived_meanwhile() -> R {
        let (mut a, mut b) = pair()?;
        let base_heads = b.heads();
        let ca = a
            .apply_local_text(ORG.replace("- first idea", "- first idea (a)").as_bytes())?
            .expect("a change");
        b.apply_remote(&ca)?;
        // b saves a buffer based on the text before a's edit.
        let cb = b
            .apply_local_text_based_on(
                &base_heads,
                ORG.replace("- [ ] write the tests", "- [x] write the tests")
                    .as_bytes(),
            )?
            .expect("a change");
        a.apply_remote(&cb)?;
        let want = ORG
            .replace("- first idea", "- first idea (a)")
            .replace("- [ ] write the tests", "- [x] write the tests");
        assert_eq!(text(&a), want);
        assert_eq!(text(&b), want);
        Ok(())
    }
}
