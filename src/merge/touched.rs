//! Which lines remote changes touched, read from the changes' own operations.
//!
//! Automerge's patches (`Automerge::make_patches`) locate a changed object by
//! indexing every element of its parent list (`PatchBuilder::update_path_map` walks the whole
//! list into a map): on a 100,000-line file that cost about 30 ms for a one-entry change,
//! the largest part of the path from a peer's save to this file. The usual remote change
//! edits fields of a few lines, or adds lines; for those the lines are found here from the
//! decoded operations, each located with [`ReadDoc::parents`] (automerge's index, logarithmic).
//! Anything else (lines deleted or replaced, the list itself replaced, an unusual object, a
//! very large batch) is left to the patches: [`touched_lines`] returns `None`.

use std::collections::HashSet;

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, ChangeHash, ObjId, ObjType, Prop, ReadDoc};

use super::render::BOM;

/// Above this many operations a batch is left to the patches: they index the list once for
/// all, which is then cheaper than locating each object.
const MAX_OPS: usize = 2_000;

/// What remote changes did to the `lines` list, by final index.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Touched {
    /// Lines inserted, ascending: each is a new item at that index of the new list.
    pub(crate) inserted: Vec<usize>,
    /// Lines (not inserted) whose item changed, by index in the new list.
    pub(crate) changed: Vec<usize>,
}

/// The lines of `list` the changes after `heads_before` inserted or changed, or `None` when
/// they do anything this does not follow (see the [module documentation](self)).
pub(crate) fn touched_lines(
    doc: &Automerge,
    heads_before: &[ChangeHash],
    list: &ObjId,
) -> Option<Touched> {
    let mut new_items: Vec<ObjId> = Vec::new();
    let mut objects: HashSet<ObjId> = HashSet::new();
    let mut ops = 0usize;
    for change in doc.get_changes(heads_before) {
        // Counted before decoding: a large batch is not expanded for nothing.
        ops += change.len();
        if ops > MAX_OPS {
            return None;
        }
        let change = change.decode();
        for (k, op) in change.operations.iter().enumerate() {
            let id = match &op.obj {
                ObjectId::Root => match &op.key {
                    // The byte order mark: read again by the caller.
                    Key::Map(key) if key == BOM => continue,
                    _ => return None,
                },
                ObjectId::Id(id) => id,
            };
            let obj = import(doc, id.counter(), id.actor())?;
            if obj == *list {
                // On the list itself only new items are followed (a deletion's index is
                // gone from the new list).
                if !(op.insert && matches!(op.action, OpType::Make(ObjType::Map))) {
                    return None;
                }
                let counter = change.start_op.get().checked_add(k as u64)?;
                new_items.push(import(doc, counter, &change.actor_id)?);
            } else {
                objects.insert(obj);
            }
        }
    }
    let mut inserted = Vec::with_capacity(new_items.len());
    for item in &new_items {
        // A deletion of it would be an operation on the list (above): it is in the new list.
        if let Some(i) = line_of(doc, item, list)? {
            inserted.push(i);
        }
        objects.remove(item);
    }
    inserted.sort_unstable();
    inserted.dedup();
    let mut changed = Vec::with_capacity(objects.len());
    for obj in &objects {
        if let Some(i) = line_of(doc, obj, list)? {
            if inserted.binary_search(&i).is_err() {
                changed.push(i);
            }
        }
    }
    changed.sort_unstable();
    changed.dedup();
    Some(Touched { inserted, changed })
}

/// The object `counter@actor` of `doc`, if `doc` knows the actor.
fn import(doc: &Automerge, counter: u64, actor: &automerge::ActorId) -> Option<ObjId> {
    // Automerge has no public constructor from (counter, actor) that also finds the actor's
    // index in this document; `import_obj` parses the form `ExId` displays.
    doc.import_obj(&format!("{counter}@{actor}")).ok()
}

/// The index in `list` of the line holding `obj` (the item itself or an object inside it):
/// `Some(None)` if that line is not in the list (deleted), `None` if `obj` does not lie under
/// `list`. An object hidden inside a line (a value that lost to a concurrent one) still counts
/// as that line's: rendering the line again is harmless.
fn line_of(doc: &Automerge, obj: &ObjId, list: &ObjId) -> Option<Option<usize>> {
    for parent in doc.parents(obj).ok()? {
        if parent.obj == *list {
            return match parent.prop {
                Prop::Seq(i) => Some(parent.visible.then_some(i)),
                Prop::Map(_) => None,
            };
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::render::LINES;
    use crate::merge::SharedDoc;
    use automerge::{Value, ROOT};

    const BASE: &str = "@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"c\",\"x\":3}\n{\"id\":\"d\",\"x\":4}\n";

    fn list(d: &SharedDoc) -> ObjId {
        match d.inner().get(ROOT, LINES) {
            Ok(Some((Value::Object(ObjType::List), id))) => id,
            other => panic!("no lines list: {other:?}"),
        }
    }

    /// `a`'s edit to `new`, applied to `b`: what `touched_lines` found in `b`, and `b`'s
    /// text, which must be `a`'s and that of `b` loaded afresh (its view kept in step).
    fn send(a: &mut SharedDoc, b: &mut SharedDoc, new: &str) -> Option<Touched> {
        let heads = b.inner().get_heads();
        let change = a.apply_local_text(new.as_bytes()).unwrap().unwrap();
        b.apply_remote(&change).unwrap();
        let found = touched_lines(b.inner(), &heads, &list(b));
        assert_eq!(b.text(), a.text());
        let fresh = SharedDoc::load(&b.save(), [9; 32]).unwrap();
        assert_eq!(fresh.text(), b.text());
        found
    }

    #[test]
    fn edited_and_inserted_lines_are_found_and_deletions_left_to_the_patches() {
        let mut a = SharedDoc::import(BASE.as_bytes(), [1; 32]).unwrap();
        let mut b = SharedDoc::new([2; 32]);
        b.apply_remote(&a.changes_since(&[]).unwrap()).unwrap();

        // A field of `c` changed, and a line inserted before `b`: indexes in the new list.
        let new = BASE
            .replace("{\"id\":\"b\"", "{\"id\":\"new\"}\n{\"id\":\"b\"")
            .replace("\"x\":3", "\"x\":30");
        assert_eq!(
            send(&mut a, &mut b, &new),
            Some(Touched {
                inserted: vec![2],
                changed: vec![4],
            })
        );

        // Two lines appended, one edited before them.
        let more = new.replace("\"x\":4}\n", "\"x\":40}\n{\"id\":\"e\"}\n{\"id\":\"f\"}\n");
        assert_eq!(
            send(&mut a, &mut b, &more),
            Some(Touched {
                inserted: vec![6, 7],
                changed: vec![5],
            })
        );

        // A deleted line has no index in the new list: automerge's patches say where it was.
        let fewer = more.replace("{\"id\":\"new\"}\n", "");
        assert_eq!(send(&mut a, &mut b, &fewer), None);
    }
}
