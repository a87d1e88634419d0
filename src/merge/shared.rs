//! [`SharedDoc`]: one shared CanvasL file, as an automerge document plus a line read view.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::transaction::Transactable;
use automerge::{
    hydrate, ActorId, Automerge, ChangeHash, ObjId, ObjType, PatchAction, PatchLog, Prop, ReadDoc,
    Value, ROOT,
};
use serde_json::Value as Json;

use super::diff::{content_of, ending_of, line_script, split_lines, LineOp};
use super::render::{
    parse_object, render_item, values_of, ViewLine, BASE, BOM, FIELD_PREFIX, LINES, REMOVED,
};
use super::{Applied, Conflict, MergeError};
use crate::canvasl::EntryKey;

/// The UTF-8 byte order mark.
const BOM_STR: &str = "\u{feff}";

/// One shared CanvasL file: the CRDT (source of truth for merging) and the current text, line by
/// line (the read view, from which [`SharedDoc::text`] is written). See the [module docs](super).
pub struct SharedDoc {
    doc: Automerge,
    /// The `lines` list, once the document has content.
    lines: Option<ObjId>,
    /// One rendered line per list item, in list order.
    view: Vec<ViewLine>,
    bom: bool,
}

impl std::fmt::Debug for SharedDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDoc")
            .field("actor", self.doc.get_actor())
            .field("lines", &self.view.len())
            .field("heads", &self.doc.get_heads())
            .finish()
    }
}

/// Runs `f`, turning a panic inside the CRDT library into an error (bytes from the network are
/// untrusted; automerge validates them, this is the last line of defence).
fn guarded<R>(f: impl FnOnce() -> Result<R, MergeError>) -> Result<R, MergeError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(MergeError::Panic))
}

/// Splits text into (BOM present, lines).
fn lines_of(text: &[u8]) -> Result<(bool, Vec<&str>), MergeError> {
    let text = std::str::from_utf8(text).map_err(|e| MergeError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let (bom, body) = match text.strip_prefix(BOM_STR) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    Ok((bom, split_lines(body)))
}

fn new_item(line: &str) -> hydrate::Value {
    hydrate::Value::from(HashMap::from([(BASE, hydrate::Value::scalar(line))]))
}

impl SharedDoc {
    /// Starts sharing `text`: the whole file becomes one CRDT change, made by `actor`.
    ///
    /// Only the peer that starts a share imports; every other peer starts with [`SharedDoc::new`]
    /// and catches up (two peers importing the same file independently would hold two unrelated
    /// line lists, and only one would survive a merge).
    ///
    /// `actor` must be stable for the peer (derive it from the peer's key): it decides which of two
    /// concurrent writes wins, and it numbers the peer's changes. Never run two live replicas with
    /// the same actor.
    pub fn import(text: &[u8], actor: [u8; 32]) -> Result<SharedDoc, MergeError> {
        let (bom, lines) = lines_of(text)?;
        let mut doc = Automerge::new().with_actor(ActorId::from(actor));
        let mut tx = doc.transaction();
        tx.put(ROOT, BOM, bom)?;
        let list = tx.put_object(ROOT, LINES, ObjType::List)?;
        tx.splice(&list, 0, 0, lines.iter().map(|l| new_item(l)))?;
        tx.commit();
        let view = lines
            .iter()
            .map(|l| ViewLine {
                text: (*l).to_owned(),
                conflict: false,
            })
            .collect();
        Ok(SharedDoc {
            doc,
            lines: Some(list),
            view,
            bom,
        })
    }

    /// An empty replica for a peer joining a share: its text is empty until it receives the
    /// document (through [`SharedDoc::apply_remote`] with the output of another replica's
    /// [`SharedDoc::changes_since`]).
    pub fn new(actor: [u8; 32]) -> SharedDoc {
        SharedDoc {
            doc: Automerge::new().with_actor(ActorId::from(actor)),
            lines: None,
            view: Vec::new(),
            bom: false,
        }
    }

    /// Restores a replica saved with [`SharedDoc::save`]. Edits made to the file while the
    /// replica was closed are then picked up with [`SharedDoc::apply_local_text`] on the file's
    /// current bytes.
    pub fn load(bytes: &[u8], actor: [u8; 32]) -> Result<SharedDoc, MergeError> {
        let doc = guarded(|| Ok(Automerge::load(bytes)?))?;
        let mut shared = SharedDoc {
            doc: doc.with_actor(ActorId::from(actor)),
            lines: None,
            view: Vec::new(),
            bom: false,
        };
        shared.rebuild_view();
        Ok(shared)
    }

    /// The whole merge state (history included), compressed. Changes received but not yet
    /// applicable (missing dependencies) are kept too.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// The file as it should be written.
    pub fn text(&self) -> Vec<u8> {
        let len: usize = self.view.iter().map(|l| l.text.len() + 1).sum();
        let mut out = Vec::with_capacity(len + 3);
        if self.bom {
            out.extend_from_slice(BOM_STR.as_bytes());
        }
        let last = self.view.len().saturating_sub(1);
        for (i, line) in self.view.iter().enumerate() {
            out.extend_from_slice(line.text.as_bytes());
            if i < last && ending_of(&line.text).is_empty() {
                // A line without an ending that is no longer last (a peer appended after it).
                out.push(b'\n');
            }
        }
        out
    }

    /// Number of lines in [`SharedDoc::text`].
    pub fn line_count(&self) -> usize {
        self.view.len()
    }

    /// The current heads (the "state vector"): 32 bytes per head. Send them to a peer, which
    /// answers with [`SharedDoc::changes_since`].
    pub fn heads(&self) -> Vec<u8> {
        self.doc.get_heads().iter().flat_map(|h| h.0).collect()
    }

    /// What a peer whose heads are `peer_heads` (from [`SharedDoc::heads`]) is missing, as bytes
    /// for its [`SharedDoc::apply_remote`]. A peer with no heads gets the whole compressed
    /// document. Heads this replica does not know are ignored, so the answer may repeat changes
    /// the peer has (harmless: applying is idempotent).
    pub fn changes_since(&self, peer_heads: &[u8]) -> Result<Vec<u8>, MergeError> {
        if !peer_heads.len().is_multiple_of(32) {
            return Err(MergeError::BadHeads);
        }
        let known: Vec<ChangeHash> = peer_heads
            .chunks_exact(32)
            .filter_map(|c| ChangeHash::try_from(c).ok())
            .filter(|h| self.doc.get_change_by_hash(h).is_some())
            .collect();
        if known.is_empty() {
            return Ok(self.doc.save());
        }
        Ok(self.doc.save_after(&known))
    }

    /// Applies the new text of the file (as saved by the user) and returns the change to send to
    /// the other replicas, or `None` if the text is what this replica already has.
    ///
    /// The old and new texts are compared line by line; a changed line that stays a JSON object
    /// becomes one field override per changed field (so that concurrent edits of other fields
    /// merge), any other changed line replaces the line's base text. Afterwards
    /// [`SharedDoc::text`] may differ from `new_text` where lines were re-serialized (changed
    /// entries are written compactly, new fields in name order); write it back to the file.
    pub fn apply_local_text(&mut self, new_text: &[u8]) -> Result<Option<Vec<u8>>, MergeError> {
        let (bom, new_lines) = lines_of(new_text)?;
        let Some(list) = self.lines.clone() else {
            if new_lines.is_empty() && !bom {
                return Ok(None);
            }
            return Err(MergeError::NotShared);
        };
        let last = self.view.len().saturating_sub(1);
        let old: Vec<std::borrow::Cow<'_, str>> = self
            .view
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i < last && ending_of(&l.text).is_empty() {
                    std::borrow::Cow::Owned(format!("{}\n", l.text))
                } else {
                    std::borrow::Cow::Borrowed(l.text.as_str())
                }
            })
            .collect();
        let script = line_script(&old, &new_lines);
        drop(old);
        let unchanged = matches!(script.as_slice(), [] | [LineOp::Keep(_)]);
        if unchanged && bom == self.bom {
            return Ok(None);
        }
        let heads_before = self.doc.get_heads();
        let mut old_view = std::mem::take(&mut self.view).into_iter().enumerate();
        let mut new_view: Vec<ViewLine> = Vec::with_capacity(new_lines.len());
        let mut dirty: Vec<usize> = Vec::new();
        let mut tx = self.doc.transaction();
        if bom != self.bom {
            tx.put(ROOT, BOM, bom)?;
        }
        let mut pos = 0usize;
        for op in &script {
            match *op {
                LineOp::Keep(n) => {
                    new_view.extend(old_view.by_ref().take(n).map(|(_, l)| l));
                    pos += n;
                }
                LineOp::Delete(n) => {
                    old_view.by_ref().take(n).for_each(drop);
                    tx.splice(&list, pos, n as isize, Vec::<hydrate::Value>::new())?;
                }
                LineOp::Insert { start, n } => {
                    let lines = &new_lines[start..start + n];
                    tx.splice(&list, pos, 0, lines.iter().map(|l| new_item(l)))?;
                    for _ in 0..n {
                        dirty.push(new_view.len());
                        new_view.push(ViewLine::default());
                    }
                    pos += n;
                }
                LineOp::Modify { new, .. } => {
                    let (_, old_line) = old_view.next().ok_or(MergeError::Internal)?;
                    match tx.get(&list, pos)? {
                        Some((Value::Object(ObjType::Map), item)) => {
                            modify_item(&mut tx, &item, &old_line.text, new_lines[new])?;
                        }
                        // Not an item of this schema (a hand-made remote change): replace it.
                        _ => tx.splice(&list, pos, 1, [new_item(new_lines[new])])?,
                    }
                    dirty.push(new_view.len());
                    new_view.push(old_line);
                    pos += 1;
                }
            }
        }
        tx.commit();
        self.view = new_view;
        self.bom = bom;
        for i in dirty {
            self.rerender(&list, i);
        }
        let change = self.doc.save_after(&heads_before);
        Ok(if change.is_empty() {
            None
        } else {
            Some(change)
        })
    }

    /// Applies bytes from another replica: a change from [`SharedDoc::apply_local_text`], or the
    /// output of [`SharedDoc::changes_since`] / [`SharedDoc::save`]. Idempotent; changes whose
    /// dependencies have not arrived yet are kept and applied when they do. Malformed bytes give
    /// an error and leave the replica as it was.
    pub fn apply_remote(&mut self, bytes: &[u8]) -> Result<Applied, MergeError> {
        let heads_before = self.doc.get_heads();
        let full = self.lines.is_none();
        let mut log = if full {
            PatchLog::inactive()
        } else {
            PatchLog::active()
        };
        let doc = &mut self.doc;
        let result = guarded(|| {
            doc.load_incremental_log_patches(bytes, &mut log)?;
            Ok(())
        });
        // Even on an error, part of the input may have been applied: bring the view up to date.
        let changed = self.doc.get_heads() != heads_before;
        if matches!(result, Err(MergeError::Panic)) {
            // The CRDT's state is unknown: re-read it all (and keep the old view if that fails).
            let this = &mut *self;
            let _ = guarded(|| {
                this.rebuild_view();
                Ok(())
            });
        } else if changed {
            if full {
                self.rebuild_view();
            } else {
                let patches = self.doc.make_patches(&mut log);
                if !self.apply_patches(&patches) {
                    self.rebuild_view();
                }
            }
        }
        result?;
        Ok(Applied {
            changed,
            missing_deps: self.doc.get_missing_deps(&[]).len(),
        })
    }

    /// Every field (or whole line) written concurrently by several peers, with the value every
    /// replica shows (the winner) and the others (the losers).
    pub fn conflicts(&self) -> Vec<Conflict> {
        let Some(list) = &self.lines else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut keys: Option<Vec<Option<EntryKey>>> = None;
        for (i, line) in self.view.iter().enumerate() {
            if !line.conflict {
                continue;
            }
            let Ok(Some((Value::Object(_), item))) = self.doc.get(list, i) else {
                continue;
            };
            for entry in self.doc.map_range(&item, ..) {
                if !entry.conflict {
                    continue;
                }
                let (winner, losers) = values_of(&self.doc, &item, &entry.key);
                let field = if entry.key == BASE {
                    None
                } else if let Some(f) = entry.key.strip_prefix(FIELD_PREFIX) {
                    Some(f.to_owned())
                } else {
                    continue;
                };
                let Some(winner) = winner else { continue };
                let losers: Vec<String> = losers.into_iter().filter(|l| *l != winner).collect();
                if losers.is_empty() {
                    continue;
                }
                let whole_line = field.is_none();
                let as_value = |s: &str| -> Option<Json> {
                    if whole_line {
                        Some(Json::String(s.to_owned()))
                    } else if s == REMOVED {
                        None
                    } else {
                        serde_json::from_str(s).ok()
                    }
                };
                let keys = keys.get_or_insert_with(|| self.entry_keys());
                out.push(Conflict {
                    uid: item.to_string(),
                    line: i,
                    entry_key: keys.get(i).cloned().flatten(),
                    winner: as_value(&winner),
                    losers: losers.iter().map(|l| as_value(l)).collect(),
                    field,
                });
            }
        }
        out
    }

    /// The stable, globally unique identity of the item on line `line` (`counter@actor`), the
    /// same on every replica.
    pub fn uid(&self, line: usize) -> Option<String> {
        let list = self.lines.as_ref()?;
        match self.doc.get(list, line) {
            Ok(Some((_, id))) => Some(id.to_string()),
            _ => None,
        }
    }

    /// The [`EntryKey`] of every line (None for non-entries), as `crate::canvasl` computes them
    /// on the current text.
    fn entry_keys(&self) -> Vec<Option<EntryKey>> {
        let parsed = crate::canvasl::parse(&self.text()).unwrap_or_default();
        parsed
            .lines()
            .iter()
            .map(|l| l.as_entry().map(|e| e.key().clone()))
            .collect()
    }

    fn rerender(&mut self, list: &ObjId, i: usize) {
        if let (Ok(Some((Value::Object(ObjType::Map), item))), Some(slot)) =
            (self.doc.get(list, i), self.view.get_mut(i))
        {
            *slot = render_item(&self.doc, &item);
        }
    }

    /// Rebuilds the whole read view from the CRDT.
    fn rebuild_view(&mut self) {
        self.bom = matches!(
            self.doc.get(ROOT, BOM),
            Ok(Some((Value::Scalar(s), _))) if s.as_bool() == Some(true)
        );
        self.lines = match self.doc.get(ROOT, LINES) {
            Ok(Some((Value::Object(ObjType::List), id))) => Some(id),
            _ => None,
        };
        self.view = match &self.lines {
            Some(list) => self
                .doc
                .list_range(list, ..)
                .map(|item| {
                    if matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
                        render_item(&self.doc, &item.id())
                    } else {
                        ViewLine::default()
                    }
                })
                .collect(),
            None => Vec::new(),
        };
    }

    /// Updates the read view from patches; false if they do not fit (then rebuild instead).
    fn apply_patches(&mut self, patches: &[automerge::Patch]) -> bool {
        let Some(list) = self.lines.clone() else {
            return false;
        };
        let mut dirty = vec![false; self.view.len()];
        for p in patches {
            if p.obj == ROOT {
                match &p.action {
                    PatchAction::PutMap { key, value, .. } if key == BOM => {
                        self.bom =
                            matches!(&value.0, Value::Scalar(s) if s.as_bool() == Some(true));
                    }
                    PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key }
                        if key == LINES =>
                    {
                        return false;
                    }
                    _ => {}
                }
            } else if p.obj == list {
                match &p.action {
                    PatchAction::Insert { index, values } => {
                        if *index > self.view.len() {
                            return false;
                        }
                        let n = values.len();
                        self.view
                            .splice(index..index, std::iter::repeat_n(ViewLine::default(), n));
                        dirty.splice(index..index, std::iter::repeat_n(true, n));
                    }
                    PatchAction::DeleteSeq { index, length } => {
                        let Some(end) = index.checked_add(*length) else {
                            return false;
                        };
                        if end > self.view.len() {
                            return false;
                        }
                        self.view.drain(index..&end);
                        dirty.drain(index..&end);
                    }
                    PatchAction::PutSeq { index, .. }
                    | PatchAction::Conflict {
                        prop: Prop::Seq(index),
                    } => match dirty.get_mut(*index) {
                        Some(d) => *d = true,
                        None => return false,
                    },
                    _ => return false,
                }
            } else {
                // A change inside an item: its path ends with (list, index).
                match p.path.get(1) {
                    Some((obj, Prop::Seq(index))) if *obj == list => match dirty.get_mut(*index) {
                        Some(d) => *d = true,
                        None => return false,
                    },
                    _ => return false,
                }
            }
        }
        for (i, d) in dirty.iter().enumerate() {
            if *d {
                self.rerender(&list, i);
            }
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Automerge {
        &self.doc
    }
}

/// Turns "line `old` became line `new`" into operations on `item`.
fn modify_item(
    tx: &mut impl Transactable,
    item: &ObjId,
    old: &str,
    new: &str,
) -> Result<(), MergeError> {
    let old_obj = parse_object(content_of(old));
    let new_obj = parse_object(content_of(new));
    match (old_obj, new_obj) {
        (Some(o), Some(n)) if o != n => {
            // Field-level: only the fields that changed.
            for (k, v) in &n {
                if o.get(k) != Some(v) {
                    let json = serde_json::to_string(v).map_err(|_| MergeError::Internal)?;
                    tx.put(item, format!("{FIELD_PREFIX}{k}"), json)?;
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    tx.put(item, format!("{FIELD_PREFIX}{k}"), REMOVED)?;
                }
            }
            if ending_of(old) != ending_of(new) {
                let base = match tx.get(item, BASE)? {
                    Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
                    _ => None,
                }
                .unwrap_or_default();
                tx.put(
                    item,
                    BASE,
                    format!("{}{}", content_of(&base), ending_of(new)),
                )?;
            }
        }
        (Some(_), Some(_)) => {
            // Same fields, other formatting, key order or line ending: the new text becomes the
            // base (existing overrides hold the same values, so they still apply cleanly).
            tx.put(item, BASE, new)?;
        }
        (_, new_obj) => {
            // Not an object before or after: the whole line is one value.
            tx.put(item, BASE, new)?;
            let stale: Vec<String> = tx
                .keys(item)
                .filter(|k| k.starts_with(FIELD_PREFIX))
                .collect();
            // Overrides would apply to the new object too: drop the ones this peer has seen.
            if new_obj.is_some() || !stale.is_empty() {
                for k in stale {
                    tx.delete(item, k)?;
                }
            }
        }
    }
    Ok(())
}
