//! [`SharedDoc`]: one shared CanvasL file, as an automerge document plus a line read view.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use automerge::transaction::Transactable;
use automerge::{
    hydrate, ActorId, Automerge, ChangeHash, ObjId, ObjType, PatchAction, PatchLog, Prop, ReadDoc,
    Value, ROOT,
};
use serde_json::Value as Json;

use super::diff::{content_of, ending_of, line_script, split_lines, LineOp};
use super::render::{
    apply_overrides, parse_object, render_item, values_of, ViewLine, BASE, BOM, FIELD_PREFIX,
    LINES, REMOVED,
};
use super::text::{modify_text_line, DocKind};
use super::{Applied, Conflict, DocFigures, MergeError};
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
    /// How lines merge (see [`DocKind`]); not stored in the document.
    kind: DocKind,
    /// The figures of the view, once computed; emptied by every change of the view or the
    /// document ([`SharedDoc::view_changed`]), so that a status query reads them without
    /// walking every line (see [`SharedDoc::figures`]).
    figures: OnceLock<DocFigures>,
}

impl std::fmt::Debug for SharedDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDoc")
            .field("actor", self.doc.get_actor())
            .field("kind", &self.kind)
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
            kind: DocKind::Canvas,
            figures: OnceLock::new(),
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
            kind: DocKind::Canvas,
            figures: OnceLock::new(),
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
            kind: DocKind::Canvas,
            figures: OnceLock::new(),
        };
        shared.rebuild_view();
        Ok(shared)
    }

    /// This replica with lines merged as `kind` (the default is [`DocKind::Canvas`]). Call it
    /// right after [`SharedDoc::import`], [`SharedDoc::new`] or [`SharedDoc::load`], with the
    /// kind of the share (every replica of a share must use the same kind).
    pub fn with_kind(mut self, kind: DocKind) -> SharedDoc {
        if kind != self.kind {
            self.kind = kind;
            self.rebuild_view();
        }
        self
    }

    /// How this replica merges lines.
    pub fn kind(&self) -> DocKind {
        self.kind
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

    /// Length in bytes of [`SharedDoc::text`], without making it (a status query on a large
    /// file must not copy it).
    pub fn text_len(&self) -> usize {
        let last = self.view.len().saturating_sub(1);
        let lines: usize = self
            .view
            .iter()
            .enumerate()
            .map(|(i, l)| l.text.len() + usize::from(i < last && ending_of(&l.text).is_empty()))
            .sum();
        lines + if self.bom { BOM_STR.len() } else { 0 }
    }

    /// The length of the text and the number of conflicts: kept from the last call until the
    /// text or the document changes, so only the first call after a change walks every line
    /// (a call on a cold cache computes them here, and keeps them). The sync engine's worker
    /// calls it after each change (`SyncEngine::warm_figures`), so that a status query on
    /// Emacs' thread finds them ready.
    pub fn figures(&self) -> DocFigures {
        *self.figures.get_or_init(|| DocFigures {
            text_len: self.text_len(),
            conflicts: self.conflict_count(),
        })
    }

    /// Whether [`SharedDoc::figures`] are kept (reading them costs no walk of the lines).
    pub fn figures_ready(&self) -> bool {
        self.figures.get().is_some()
    }

    /// Forgets the kept [`SharedDoc::figures`]: call it wherever the view (lines, BOM) or the
    /// document's items change, since conflicts live in the document.
    fn view_changed(&mut self) {
        self.figures.take();
    }

    /// Whether [`SharedDoc::text`] starts with a byte order mark.
    pub fn has_bom(&self) -> bool {
        self.bom
    }

    /// Lines `from..to` of [`SharedDoc::text`] (without the byte order mark), as they are
    /// written: what a line edit ([`SharedDoc::apply_local_lines`]) made of its middle.
    pub fn lines_text(&self, from: usize, to: usize) -> Vec<u8> {
        let to = to.min(self.view.len());
        let last = self.view.len().saturating_sub(1);
        let mut out = Vec::new();
        for i in from.min(to)..to {
            let line = &self.view[i].text;
            out.extend_from_slice(line.as_bytes());
            if i < last && ending_of(line).is_empty() {
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
        self.apply_script(list, &script, &new_lines, bom)
    }

    /// Applies a local edit given as changed lines: the first `before` and the last `after`
    /// lines of the current text stay, and the lines between them become `middle` (whole
    /// lines, endings included). The same as [`SharedDoc::apply_local_text`] on the whole new
    /// text, without comparing the unchanged lines. Returns the change to send, or `None` if
    /// nothing changed. Errors with [`MergeError::BadEdit`] when `before + after` exceeds the
    /// lines of the text.
    pub fn apply_local_lines(
        &mut self,
        before: usize,
        after: usize,
        middle: &[u8],
    ) -> Result<Option<Vec<u8>>, MergeError> {
        let Some(list) = self.lines.clone() else {
            return Err(MergeError::NotShared);
        };
        let total = self.view.len();
        if before.checked_add(after).is_none_or(|n| n > total) {
            return Err(MergeError::BadEdit {
                before,
                after,
                lines: total,
            });
        }
        let middle = std::str::from_utf8(middle).map_err(|e| MergeError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        let new_lines = split_lines(middle);
        let last = total.saturating_sub(1);
        let old: Vec<std::borrow::Cow<'_, str>> = self.view[before..total - after]
            .iter()
            .enumerate()
            .map(|(k, l)| {
                if before + k < last && ending_of(&l.text).is_empty() {
                    std::borrow::Cow::Owned(format!("{}\n", l.text))
                } else {
                    std::borrow::Cow::Borrowed(l.text.as_str())
                }
            })
            .collect();
        let mut script = Vec::with_capacity(8);
        if before > 0 {
            script.push(LineOp::Keep(before));
        }
        for op in line_script(&old, &new_lines) {
            script.push(match op {
                LineOp::Modify { old, new } => LineOp::Modify {
                    old: old + before,
                    new,
                },
                other => other,
            });
        }
        drop(old);
        if after > 0 {
            script.push(LineOp::Keep(after));
        }
        let bom = self.bom;
        self.apply_script(list, &script, &new_lines, bom)
    }

    /// Applies a line edit script to the current text (`new_lines`: the lines the script's
    /// insertions and modifications index). See [`SharedDoc::apply_local_text`].
    fn apply_script(
        &mut self,
        list: ObjId,
        script: &[LineOp],
        new_lines: &[&str],
        bom: bool,
    ) -> Result<Option<Vec<u8>>, MergeError> {
        let unchanged = script.iter().all(|op| matches!(op, LineOp::Keep(_)));
        if unchanged && bom == self.bom {
            return Ok(None);
        }
        self.view_changed();
        let heads_before = self.doc.get_heads();
        let old_view = std::mem::take(&mut self.view);
        let (kind, bom_changed) = (self.kind, bom != self.bom);
        let mut tx = self.doc.transaction();
        let edited = (|| {
            if bom_changed {
                tx.put(ROOT, BOM, bom)?;
            }
            edit_lines(&mut tx, &list, kind, script, new_lines, old_view)
        })();
        let (new_view, dirty) = match edited {
            Ok(v) => {
                tx.commit();
                v
            }
            Err(e) => {
                // Dropping the transaction rolls the document back; the view was taken apart
                // on the way, so it is read again from the document as it was.
                drop(tx);
                self.rebuild_view();
                return Err(e);
            }
        };
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
        // The log costs little while loading; its patches (which cost the whole list) are
        // made only when the lines cannot be found from the changes (`update_view_after`).
        let mut log = if self.lines.is_none() {
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
            let this = &mut *self;
            let updated =
                guarded(|| Ok(this.update_view_after(&heads_before, &mut log))).unwrap_or(false);
            if !updated {
                self.rebuild_view();
            }
        }
        result?;
        Ok(Applied {
            changed,
            missing_deps: self.doc.get_missing_deps(&[]).len(),
        })
    }

    /// Brings the view up to date with the changes applied since `heads_before`: the lines
    /// they touched, found from their operations (`super::touched`), else the patches `log`
    /// recorded. False if neither fits (the caller rebuilds the view).
    fn update_view_after(&mut self, heads_before: &[ChangeHash], log: &mut PatchLog) -> bool {
        let Some(list) = self.lines.clone() else {
            return false;
        };
        if let Some(t) = super::touched::touched_lines(&self.doc, heads_before, &list) {
            return self.apply_touched(&list, &t);
        }
        let patches = self.doc.make_patches(log);
        self.apply_patches(&patches)
    }

    /// Updates the view with the lines remote changes inserted and changed; false if they do
    /// not fit it.
    fn apply_touched(&mut self, list: &ObjId, t: &super::touched::Touched) -> bool {
        let total = self.view.len() + t.inserted.len();
        let fits = t.inserted.last().is_none_or(|&i| i < total)
            && t.changed.last().is_none_or(|&i| i < total);
        if !fits {
            return false;
        }
        self.view_changed();
        if !t.inserted.is_empty() {
            let mut old = std::mem::take(&mut self.view).into_iter();
            let mut inserted = t.inserted.iter().peekable();
            let mut view = Vec::with_capacity(total);
            while view.len() < total {
                if inserted.next_if_eq(&&view.len()).is_some() {
                    view.push(ViewLine::default());
                } else if let Some(line) = old.next() {
                    view.push(line);
                } else {
                    return false;
                }
            }
            self.view = view;
        }
        for &i in t.inserted.iter().chain(&t.changed) {
            self.rerender(list, i);
        }
        self.bom = matches!(
            self.doc.get(ROOT, BOM),
            Ok(Some((Value::Scalar(s), _))) if s.as_bool() == Some(true)
        );
        true
    }

    /// Every field (or whole line) written concurrently by several peers, with the value every
    /// replica shows (the winner) and the others (the losers).
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut out = Vec::new();
        let mut keys: Option<Vec<Option<EntryKey>>> = None;
        self.each_conflict(|line, item, field, winner, losers| {
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
                line,
                entry_key: keys.get(line).cloned().flatten(),
                winner: as_value(&winner),
                losers: losers.iter().map(|l| as_value(l)).collect(),
                field,
            });
        });
        out
    }

    /// `conflicts().len()`, without parsing the text for entry keys or building the values.
    fn conflict_count(&self) -> usize {
        let mut n = 0;
        self.each_conflict(|_, _, _, _, _| n += 1);
        n
    }

    /// Calls `f` with (line, item, field or `None` for the whole line, winner, losers) for
    /// every concurrent write that [`SharedDoc::conflicts`] lists, in its order.
    fn each_conflict(&self, mut f: impl FnMut(usize, &ObjId, Option<String>, String, Vec<String>)) {
        let Some(list) = &self.lines else {
            return;
        };
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
                } else if !self.kind.merges_fields() {
                    continue;
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
                f(i, &item, field, winner, losers);
            }
        }
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
        if !self.kind.merges_fields() {
            return Vec::new();
        }
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
            *slot = render_item(&self.doc, &item, self.kind);
        }
    }

    /// Rebuilds the whole read view from the CRDT.
    fn rebuild_view(&mut self) {
        self.view_changed();
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
                        render_item(&self.doc, &item.id(), self.kind)
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
        self.view_changed();
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

    // ---- Additions for the sync engine (`crate::sync`). ----

    /// Whether this replica holds the shared document (it imported it, loaded it, or received
    /// it). A replica made with [`SharedDoc::new`] that has received nothing is not joined.
    pub fn is_joined(&self) -> bool {
        self.lines.is_some()
    }

    /// How many changes this replica knows it is missing (dependencies of queued changes).
    pub fn missing_deps(&self) -> usize {
        self.doc.get_missing_deps(&[]).len()
    }

    /// How many of `hashes` (32 bytes each, as from [`SharedDoc::heads`]) this replica does not
    /// have. Cheap: looks at change metadata only.
    pub fn unknown_hashes(&self, hashes: &[u8]) -> Result<usize, MergeError> {
        Ok(self.parse_hashes(hashes)?.1)
    }

    /// Up to `max` hashes (32 bytes each) that describe what this replica has: the heads, older
    /// ancestors at exponentially growing distances (1, 2, 4, ... changes back), and the first
    /// change of the history (the import, which every replica has). A peer that does not know
    /// our heads (because we made changes it has not seen) usually knows some of these, so
    /// [`SharedDoc::changes_for`] can answer with the changes after them instead of the whole
    /// document. The walk looks at change metadata only, at most 100,000 changes.
    pub fn sync_hashes(&self, max: usize) -> Vec<u8> {
        let heads = self.doc.get_heads();
        let room = max.saturating_sub(1);
        let mut out: Vec<ChangeHash> = heads.iter().take(room).copied().collect();
        let mut seen: std::collections::HashSet<ChangeHash> = heads.iter().copied().collect();
        let mut roots: Vec<ChangeHash> = Vec::new();
        // Breadth-first walk from the heads; keep the hashes found at depths 1, 2, 4, 8, ...
        let mut frontier = heads;
        let mut depth = 0usize;
        let mut next_kept = 1usize;
        let mut visited = 0usize;
        while !frontier.is_empty() && visited < 100_000 {
            depth += 1;
            let mut next = Vec::new();
            for h in &frontier {
                let Some(meta) = self.doc.get_change_meta_by_hash(h) else {
                    continue;
                };
                visited += 1;
                if meta.deps.is_empty() {
                    roots.push(*h);
                }
                for d in meta.deps {
                    if seen.insert(d) {
                        next.push(d);
                    }
                }
            }
            if depth == next_kept {
                next_kept = next_kept.saturating_mul(2);
                for h in &next {
                    if out.len() < room {
                        out.push(*h);
                    }
                }
            }
            frontier = next;
        }
        for r in roots {
            if out.len() < max && !out.contains(&r) {
                out.push(r);
            }
        }
        out.iter().flat_map(|h| h.0).collect()
    }

    /// What a peer that has the changes `peer_hashes` (and their ancestors) is missing: like
    /// [`SharedDoc::changes_since`], but `peer_hashes` may be any known changes of the peer (for
    /// instance [`SharedDoc::sync_hashes`]), unknown ones are ignored, and the flag tells whether
    /// the answer is the whole document (when none of the hashes is known). Empty bytes: the
    /// peer has everything this replica has.
    pub fn changes_for(&self, peer_hashes: &[u8]) -> Result<(Vec<u8>, bool), MergeError> {
        let (known, _) = self.parse_hashes(peer_hashes)?;
        if known.is_empty() {
            if !self.is_joined() && self.doc.get_heads().is_empty() {
                return Ok((Vec::new(), false));
            }
            return Ok((self.doc.save(), true));
        }
        Ok((self.doc.save_after(&known), false))
    }

    /// Applies a local save of the file like [`SharedDoc::apply_local_text`], but relative to
    /// the text the file was based on: the document as it was at `base_heads` (from
    /// [`SharedDoc::heads`], recorded when the file was last written or read). Changes that
    /// arrived after `base_heads` and are missing from `new_text` are therefore not reverted:
    /// the local edit is made as a change concurrent with them (an automerge transaction
    /// isolated at `base_heads`) and merged.
    ///
    /// Heads this replica does not know are ignored; when `base_heads` are the current heads
    /// (or none of them is known) this is exactly [`SharedDoc::apply_local_text`]. Afterwards
    /// [`SharedDoc::text`] holds the merge of both; write it back to the file.
    pub fn apply_local_text_based_on(
        &mut self,
        base_heads: &[u8],
        new_text: &[u8],
    ) -> Result<Option<Vec<u8>>, MergeError> {
        let (mut base, _) = self.parse_hashes(base_heads)?;
        base.sort_unstable();
        base.dedup();
        let current = self.doc.get_heads();
        if base.is_empty() || base == current || !self.is_joined() {
            return self.apply_local_text(new_text);
        }
        let (bom, new_lines) = lines_of(new_text)?;
        // The base text, read at the base heads.
        let list = match self.doc.get_at(ROOT, LINES, &base) {
            Ok(Some((Value::Object(ObjType::List), id))) => id,
            _ => return self.apply_local_text(new_text),
        };
        let base_bom = matches!(
            self.doc.get_at(ROOT, BOM, &base),
            Ok(Some((Value::Scalar(s), _))) if s.as_bool() == Some(true)
        );
        let mut old: Vec<String> = self
            .doc
            .list_range_at(&list, .., &base)
            .map(|item| {
                if matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
                    render_item_at(&self.doc, &item.id(), &base, self.kind)
                } else {
                    String::new()
                }
            })
            .collect();
        let last = old.len().saturating_sub(1);
        for (i, l) in old.iter_mut().enumerate() {
            if i < last && ending_of(l).is_empty() {
                l.push('\n');
            }
        }
        let script = line_script(&old, &new_lines);
        let unchanged = matches!(script.as_slice(), [] | [LineOp::Keep(_)]);
        if unchanged && bom == base_bom {
            return Ok(None);
        }
        let heads_before = current;
        let mut tx = self
            .doc
            .transaction_at(PatchLog::inactive(), &base)
            .map_err(|_| MergeError::Internal)?;
        if bom != base_bom {
            tx.put(ROOT, BOM, bom)?;
        }
        let mut pos = 0usize;
        for op in &script {
            match *op {
                LineOp::Keep(n) => pos += n,
                LineOp::Delete(n) => {
                    tx.splice(&list, pos, n as isize, Vec::<hydrate::Value>::new())?;
                }
                LineOp::Insert { start, n } => {
                    let lines = &new_lines[start..start + n];
                    tx.splice(&list, pos, 0, lines.iter().map(|l| new_item(l)))?;
                    pos += n;
                }
                LineOp::Modify { old: o, new } => {
                    let old_line = old.get(o).ok_or(MergeError::Internal)?;
                    match tx.get(&list, pos)? {
                        Some((Value::Object(ObjType::Map), item)) => {
                            if self.kind.merges_fields() {
                                modify_item(&mut tx, &item, self.kind, old_line, new_lines[new])?;
                            } else {
                                modify_text_line(&mut tx, &item, new_lines[new])?;
                            }
                        }
                        _ => tx.splice(&list, pos, 1, [new_item(new_lines[new])])?,
                    }
                    pos += 1;
                }
            }
        }
        tx.commit();
        let heads_after = self.doc.get_heads();
        let patches = self.doc.diff(&heads_before, &heads_after);
        if !self.apply_patches(&patches) {
            self.rebuild_view();
        }
        let change = self.doc.save_after(&heads_before);
        Ok(if change.is_empty() {
            None
        } else {
            Some(change)
        })
    }

    /// Splits `hashes` into the known ones and the number of unknown ones.
    fn parse_hashes(&self, hashes: &[u8]) -> Result<(Vec<ChangeHash>, usize), MergeError> {
        if !hashes.len().is_multiple_of(32) {
            return Err(MergeError::BadHeads);
        }
        let mut known = Vec::new();
        let mut unknown = 0usize;
        for c in hashes.chunks_exact(32) {
            match ChangeHash::try_from(c) {
                Ok(h) if self.doc.get_change_meta_by_hash(&h).is_some() => known.push(h),
                _ => unknown += 1,
            }
        }
        Ok((known, unknown))
    }

    /// The version of this document's history whose text is closest to `text`, as heads (32
    /// bytes each): the base to give [`SharedDoc::apply_local_text_based_on`] for a file whose
    /// own base is unknown (its merge state was lost). Closest means the fewest lines present
    /// in one and not the other (counted as multisets, line endings ignored); of equally close
    /// versions the newest wins, so a file equal to the current text is based on the current
    /// heads. Candidates are the current heads and the versions ending at each of up to
    /// `max_candidates` changes, newest first (breadth-first from the heads). Reads at old
    /// heads cost a walk of the document each: keep `max_candidates` modest.
    pub fn closest_version(
        &self,
        text: &[u8],
        max_candidates: usize,
    ) -> Result<Vec<u8>, MergeError> {
        let (_, lines) = lines_of(text)?;
        let strip = |l: &str| l.trim_end_matches(['\n', '\r']).to_owned();
        let mut target: HashMap<String, i64> = HashMap::new();
        for l in &lines {
            *target.entry(strip(l)).or_insert(0) += 1;
        }
        let heads = self.doc.get_heads();
        let mut candidates: Vec<Vec<ChangeHash>> = vec![heads.clone()];
        let mut seen: std::collections::HashSet<ChangeHash> = heads.iter().copied().collect();
        let mut frontier = heads.clone();
        while !frontier.is_empty() && candidates.len() <= max_candidates {
            let mut next = Vec::new();
            for h in &frontier {
                if heads.len() > 1 || !heads.contains(h) {
                    candidates.push(vec![*h]);
                }
                if let Some(meta) = self.doc.get_change_meta_by_hash(h) {
                    for d in meta.deps {
                        if seen.insert(d) {
                            next.push(d);
                        }
                    }
                }
            }
            frontier = next;
        }
        candidates.truncate(max_candidates.max(1));
        let mut best: Option<(i64, &Vec<ChangeHash>)> = None;
        for c in &candidates {
            let Ok(Some((Value::Object(ObjType::List), list))) = self.doc.get_at(ROOT, LINES, c)
            else {
                continue;
            };
            let mut counts = target.clone();
            for item in self.doc.list_range_at(&list, .., c) {
                if matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
                    let line = render_item_at(&self.doc, &item.id(), c, self.kind);
                    *counts.entry(strip(&line)).or_insert(0) -= 1;
                }
            }
            let score: i64 = counts.values().map(|v| v.abs()).sum();
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, c));
            }
        }
        Ok(best
            .map(|(_, c)| c.iter().flat_map(|h| h.0).collect())
            .unwrap_or_default())
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Automerge {
        &self.doc
    }
}

/// [`render_item`] as the document was at `heads`.
fn render_item_at(doc: &Automerge, item: &ObjId, heads: &[ChangeHash], kind: DocKind) -> String {
    let mut base: Option<String> = None;
    let mut overrides: Vec<(String, String)> = Vec::new();
    for entry in doc.map_range_at(item, .., heads) {
        let text: &str = match &entry.value {
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(t)) => t,
            _ => continue,
        };
        if entry.key == BASE {
            base = Some(text.to_owned());
        } else if let Some(field) = entry.key.strip_prefix(FIELD_PREFIX) {
            overrides.push((field.to_owned(), text.to_owned()));
        }
    }
    let base = base.unwrap_or_default();
    if overrides.is_empty() || !kind.merges_fields() {
        base
    } else {
        apply_overrides(&base, &overrides)
    }
}

/// Carries out a line edit script inside `tx`, moving the lines of `old_view` that stay into
/// the returned view (new and modified lines are listed as dirty, to be rendered after the
/// commit). On an error `tx` must be dropped, which rolls the document back.
fn edit_lines(
    tx: &mut automerge::transaction::Transaction<'_>,
    list: &ObjId,
    kind: DocKind,
    script: &[LineOp],
    new_lines: &[&str],
    old_view: Vec<ViewLine>,
) -> Result<(Vec<ViewLine>, Vec<usize>), MergeError> {
    let mut old_view = old_view.into_iter();
    let mut new_view: Vec<ViewLine> = Vec::with_capacity(new_lines.len());
    let mut dirty: Vec<usize> = Vec::new();
    let mut pos = 0usize;
    for op in script {
        match *op {
            LineOp::Keep(n) => {
                new_view.extend(old_view.by_ref().take(n));
                pos += n;
            }
            LineOp::Delete(n) => {
                old_view.by_ref().take(n).for_each(drop);
                tx.splice(list, pos, n as isize, Vec::<hydrate::Value>::new())?;
            }
            LineOp::Insert { start, n } => {
                let lines = new_lines
                    .get(start..start + n)
                    .ok_or(MergeError::Internal)?;
                tx.splice(list, pos, 0, lines.iter().map(|l| new_item(l)))?;
                for _ in 0..n {
                    dirty.push(new_view.len());
                    new_view.push(ViewLine::default());
                }
                pos += n;
            }
            LineOp::Modify { new, .. } => {
                let old_line = old_view.next().ok_or(MergeError::Internal)?;
                let new_line = *new_lines.get(new).ok_or(MergeError::Internal)?;
                match tx.get(list, pos)? {
                    Some((Value::Object(ObjType::Map), item)) => {
                        if kind.merges_fields() {
                            modify_item(tx, &item, kind, &old_line.text, new_line)?;
                        } else {
                            modify_text_line(tx, &item, new_line)?;
                        }
                    }
                    // Not an item of this schema (a hand-made remote change): replace it.
                    _ => tx.splice(list, pos, 1, [new_item(new_line)])?,
                }
                dirty.push(new_view.len());
                new_view.push(old_line);
                pos += 1;
            }
        }
    }
    Ok((new_view, dirty))
}

/// Turns "line `old` became line `new`" into operations on `item`.
fn modify_item(
    tx: &mut impl Transactable,
    item: &ObjId,
    kind: DocKind,
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
            // The line as typed stays the line shown: when the base with its overrides would
            // read otherwise (a field added in front, fields reordered along with the edit)
            // and the typed line is in the compact form a rendered line has (as Emacs'
            // `json-serialize' writes it), the typed line becomes the base too. Its overrides
            // hold the same values, so a concurrent edit of another field still applies;
            // without this, the engine's form of the line would be offered back to the
            // buffer and its whole file written again. A line in another form (spaces,
            // numbers written otherwise) is rendered anew whatever its base.
            if crate::canvasl::model::serialize(&n) == content_of(new)
                && content_of(&render_item(&*tx, item, kind).text) != content_of(new)
            {
                tx.put(item, BASE, new)?;
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

#[cfg(test)]
mod sync_additions_tests {
    //! The methods added for `crate::sync`: 3-way local saves, hash negotiation.

    use super::SharedDoc;
    use crate::merge::{DocFigures, DocKind, MergeError};

    type R = Result<(), Box<dyn std::error::Error>>;

    const BASE: &str = "@version 1.0\n\n{\"id\":\"a\",\"x\":1,\"y\":2}\n{\"id\":\"b\",\"x\":3}\n{\"id\":\"c\",\"x\":5}\nsome prose\n";

    fn pair() -> Result<(SharedDoc, SharedDoc), MergeError> {
        let a = SharedDoc::import(BASE.as_bytes(), [1; 32])?;
        let mut b = SharedDoc::new([2; 32]);
        b.apply_remote(&a.changes_since(&[])?)?;
        Ok((a, b))
    }

    fn text(d: &SharedDoc) -> String {
        String::from_utf8(d.text()).unwrap_or_default()
    }

    /// The read view agrees with the CRDT (a fresh load renders the same text).
    fn assert_view_consistent(d: &SharedDoc) -> R {
        let fresh = SharedDoc::load(&d.save(), [9; 32])?;
        assert_eq!(text(&fresh), text(d));
        Ok(())
    }

    #[test]
    fn text_len_is_the_length_of_the_text_without_making_it() -> R {
        for t in [
            BASE,
            "",
            "no ending",
            "\u{feff}{\"id\":\"a\"}\r\nlast without ending",
        ] {
            let mut d = SharedDoc::import(t.as_bytes(), [1; 32])?;
            assert_eq!(d.text_len(), d.text().len(), "{t:?}");
            // A line appended after one without an ending: the text gains a newline.
            let mut grown = d.text();
            grown.extend_from_slice(b"\n{\"id\":\"z\"}\n");
            d.apply_local_text(&grown)?;
            assert_eq!(d.text_len(), d.text().len(), "{t:?} grown");
        }
        Ok(())
    }

    /// An edit script that fails halfway (here: it modifies a line past the end, after a
    /// deletion already made) leaves the document and its view as they were.
    #[test]
    fn an_edit_that_fails_halfway_changes_nothing() -> R {
        use crate::merge::diff::LineOp;
        let mut d = SharedDoc::import(BASE.as_bytes(), [1; 32])?;
        let heads = d.heads();
        let list = d.lines.clone().ok_or("no lines")?;
        let script = [
            LineOp::Delete(1),
            LineOp::Keep(5),
            LineOp::Modify { old: 9, new: 0 },
        ];
        let r = d.apply_script(list, &script, &["{\"id\":\"q\"}\n"], false);
        assert!(matches!(r, Err(MergeError::Internal)), "{r:?}");
        assert_eq!(text(&d), BASE);
        assert_eq!(d.heads(), heads);
        assert_view_consistent(&d)?;
        // And the replica still takes edits.
        let grown = format!("{BASE}{{\"id\":\"z\"}}\n");
        d.apply_local_text(grown.as_bytes())?;
        assert_eq!(text(&d), grown);
        Ok(())
    }

    /// [`SharedDoc::figures`] as a fresh computation makes them.
    fn fresh_figures(d: &SharedDoc) -> DocFigures {
        DocFigures {
            text_len: d.text().len(),
            conflicts: d.conflicts().len(),
        }
    }

    #[test]
    fn kept_figures_follow_concurrent_writes_and_a_change_of_kind() -> R {
        let (mut a, mut b) = pair()?;
        let ca = a
            .apply_local_text(BASE.replace("\"x\":1,", "\"x\":10,").as_bytes())?
            .ok_or("no change")?;
        let cb = b
            .apply_local_text(BASE.replace("\"x\":1,", "\"x\":200,").as_bytes())?
            .ok_or("no change")?;
        assert_eq!(a.figures(), fresh_figures(&a));
        assert_eq!(a.figures().conflicts, 0);
        // Both wrote x of entry a: one conflict, on both sides.
        a.apply_remote(&cb)?;
        b.apply_remote(&ca)?;
        for d in [&a, &b] {
            assert_eq!(d.figures(), fresh_figures(d));
            assert_eq!(d.figures().conflicts, 1);
        }
        // As a text share, lines merge whole: the field overrides are neither shown nor
        // counted, so both figures change with the kind.
        let canvas = a.figures();
        let text = a.with_kind(DocKind::Text);
        assert_eq!(text.figures(), fresh_figures(&text));
        assert_eq!(text.figures().conflicts, 0);
        assert_ne!(text.figures().text_len, canvas.text_len);
        Ok(())
    }

    #[test]
    fn stale_save_keeps_the_remote_edit_that_arrived_meanwhile() -> R {
        let (mut a, mut b) = pair()?;
        let base = a.heads();
        // B edits entry b; A receives it (its file is rewritten, but the user's buffer is old).
        let cb = b
            .apply_local_text(BASE.replace("\"x\":3", "\"x\":30").as_bytes())?
            .ok_or("no change")?;
        a.apply_remote(&cb)?;
        // The user saves the old buffer with an edit of entry a.
        let saved = BASE.replace("\"x\":1,", "\"x\":10,");
        let ca = a
            .apply_local_text_based_on(&base, saved.as_bytes())?
            .ok_or("no change")?;
        assert!(ca.len() < 1024, "{} bytes", ca.len());
        let expected = BASE
            .replace("\"x\":1,", "\"x\":10,")
            .replace("\"x\":3", "\"x\":30");
        assert_eq!(text(&a), expected);
        b.apply_remote(&ca)?;
        assert_eq!(text(&b), expected);
        assert_view_consistent(&a)?;
        // Plain apply_local_text would have reverted B's edit.
        let (mut a2, mut b2) = pair()?;
        let cb = b2
            .apply_local_text(BASE.replace("\"x\":3", "\"x\":30").as_bytes())?
            .ok_or("no change")?;
        a2.apply_remote(&cb)?;
        a2.apply_local_text(saved.as_bytes())?;
        assert!(text(&a2).contains("\"x\":3}"));
        Ok(())
    }

    #[test]
    fn stale_save_with_insertions_and_deletions() -> R {
        let (mut a, mut b) = pair()?;
        let base = a.heads();
        // Remote: a line inserted at the top and entry c deleted.
        let remote = BASE
            .replace("@version 1.0\n", "@version 1.0\n{\"id\":\"top\"}\n")
            .replace("{\"id\":\"c\",\"x\":5}\n", "");
        let cb = b.apply_local_text(remote.as_bytes())?.ok_or("no change")?;
        a.apply_remote(&cb)?;
        // Local (stale buffer): prose deleted, a line appended after b, entry a edited.
        let local = BASE
            .replace("some prose\n", "")
            .replace(
                "{\"id\":\"b\",\"x\":3}\n",
                "{\"id\":\"b\",\"x\":3}\n{\"id\":\"new\"}\n",
            )
            .replace("\"y\":2", "\"y\":7");
        let ca = a
            .apply_local_text_based_on(&base, local.as_bytes())?
            .ok_or("no change")?;
        let expected = "@version 1.0\n{\"id\":\"top\"}\n\n{\"id\":\"a\",\"x\":1,\"y\":7}\n{\"id\":\"b\",\"x\":3}\n{\"id\":\"new\"}\n";
        assert_eq!(text(&a), expected);
        b.apply_remote(&ca)?;
        assert_eq!(text(&b), expected);
        assert_view_consistent(&a)?;
        assert_view_consistent(&b)?;
        Ok(())
    }

    #[test]
    fn based_on_current_heads_or_unchanged_base() -> R {
        let (mut a, mut b) = pair()?;
        // Same heads: identical to apply_local_text.
        let edited = BASE.replace("\"x\":5", "\"x\":6");
        let c = a.apply_local_text_based_on(&a.heads(), edited.as_bytes())?;
        assert!(c.is_some());
        assert_eq!(text(&a), edited);
        assert_eq!(
            a.apply_local_text_based_on(&a.heads(), edited.as_bytes())?,
            None
        );
        // A file equal to its (older) base holds no local edit, even if the document moved on.
        let base = a.heads();
        let cb = b
            .apply_local_text(BASE.replace("some prose", "other prose").as_bytes())?
            .ok_or("no change")?;
        a.apply_remote(&cb)?;
        assert_eq!(a.apply_local_text_based_on(&base, edited.as_bytes())?, None);
        assert!(text(&a).contains("other prose"));
        // Unknown heads are ignored (the current text is the base); bad lengths are refused.
        let now = text(&a).replace("other prose", "third");
        assert!(a
            .apply_local_text_based_on(&[7u8; 32], now.as_bytes())?
            .is_some());
        assert_eq!(text(&a), now);
        assert!(matches!(
            a.apply_local_text_based_on(&[1u8; 31], b"x\n"),
            Err(MergeError::BadHeads)
        ));
        Ok(())
    }

    #[test]
    fn base_older_than_own_last_change_does_not_reuse_a_sequence_number() -> R {
        // Crash window: our own change was saved but the recorded base is older.
        let (mut a, mut b) = pair()?;
        let base = a.heads();
        let first = BASE.replace("\"x\":5", "\"x\":6");
        let c1 = a.apply_local_text(first.as_bytes())?.ok_or("no change")?;
        let second = first.replace("some prose", "more prose");
        let c2 = a
            .apply_local_text_based_on(&base, second.as_bytes())?
            .ok_or("no change")?;
        assert_eq!(text(&a), second);
        b.apply_remote(&c2)?;
        b.apply_remote(&c1)?;
        assert_eq!(text(&b), second);
        let reloaded = SharedDoc::load(&a.save(), [1; 32])?;
        assert_eq!(text(&reloaded), second);
        Ok(())
    }

    /// Random line edits of a text (field edits, deletions, insertions).
    fn random_edit(text: &str, rng: &mut crate::canvasl::generate::XorShift, tag: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for _ in 0..1 + rng.below(4) {
            let n = lines.len() as u64;
            match rng.below(3) {
                0 if n > 0 => {
                    let i = rng.below(n) as usize;
                    if let Ok(mut m) = serde_json::from_str::<
                        serde_json::Map<String, serde_json::Value>,
                    >(&lines[i])
                    {
                        m.insert(format!("f{}", rng.below(3)), serde_json::json!(tag));
                        lines[i] = serde_json::to_string(&m).unwrap_or_default();
                    }
                }
                1 if n > 1 => {
                    lines.remove(rng.below(n) as usize);
                }
                _ => {
                    let i = rng.below(n + 1) as usize;
                    lines.insert(i, format!("{{\"id\":\"{tag}-{}\"}}", rng.below(1000)));
                }
            }
        }
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn random_stale_saves_converge_and_keep_the_view_consistent() -> R {
        let mut rng = crate::canvasl::generate::XorShift::new(11);
        for round in 0..40 {
            let base: String = (0..8)
                .map(|i| format!("{{\"id\":\"e{i}\",\"f0\":{i}}}\n"))
                .collect();
            let mut a = SharedDoc::import(base.as_bytes(), [1; 32])?;
            let mut b = SharedDoc::new([2; 32]);
            b.apply_remote(&a.changes_since(&[])?)?;
            // A's file is based on `base`; B's edits arrive at A; A's user saves a stale edit.
            let file_heads = a.heads();
            let remote = random_edit(&base, &mut rng, "b");
            if let Some(c) = b.apply_local_text(remote.as_bytes())? {
                a.apply_remote(&c)?;
            }
            let local = random_edit(&base, &mut rng, "a");
            // Kept from before the save: the save must drop them.
            assert_eq!(a.figures(), fresh_figures(&a), "round {round}");
            assert_eq!(b.figures(), fresh_figures(&b), "round {round}");
            if let Some(c) = a.apply_local_text_based_on(&file_heads, local.as_bytes())? {
                b.apply_remote(&c)?;
            }
            assert_eq!(text(&a), text(&b), "round {round}");
            assert_eq!(a.figures(), fresh_figures(&a), "round {round}");
            assert_eq!(b.figures(), fresh_figures(&b), "round {round}");
            assert_view_consistent(&a)?;
            assert_view_consistent(&b)?;
            // Lines only A added, and only B added, are both there.
            for l in local.lines().filter(|l| l.contains("\"a-")) {
                if !base.contains(l) {
                    assert!(text(&a).contains(l), "round {round}: {l}");
                }
            }
            for l in remote.lines().filter(|l| l.contains("\"b-")) {
                assert!(text(&a).contains(l), "round {round}: {l}");
            }
        }
        Ok(())
    }

    #[test]
    fn offline_edits_on_both_sides_need_only_the_new_changes() -> R {
        let big: String = (0..2000)
            .map(|i| format!("{{\"id\":\"n{i}\",\"text\":\"some words here\"}}\n"))
            .collect();
        let mut a = SharedDoc::import(big.as_bytes(), [1; 32])?;
        let mut b = SharedDoc::new([2; 32]);
        b.apply_remote(&a.changes_since(&[])?)?;
        for k in 0..5 {
            let t = text(&a).replace(&format!("n{k}\""), &format!("n{k}a\""));
            a.apply_local_text(t.as_bytes())?;
            let t = text(&b).replace(&format!("n{}\"", 100 + k), &format!("n{}b\"", 100 + k));
            b.apply_local_text(t.as_bytes())?;
        }
        let hashes = b.sync_hashes(32);
        assert_eq!(hashes.len() % 32, 0);
        assert!(hashes.len() > 32);
        assert_eq!(a.unknown_hashes(&b.heads())?, 1);
        assert_eq!(b.unknown_hashes(&b.heads())?, 0);
        let (for_b, full) = a.changes_for(&hashes)?;
        assert!(!full);
        assert!(for_b.len() * 4 < a.save().len(), "{} bytes", for_b.len());
        b.apply_remote(&for_b)?;
        let (for_a, full) = b.changes_for(&a.sync_hashes(32))?;
        assert!(!full);
        a.apply_remote(&for_a)?;
        assert_eq!(text(&a), text(&b));
        assert_eq!(a.heads(), b.heads());
        assert_eq!(a.changes_for(&b.heads())?.0, Vec::<u8>::new());
        // No known hash at all: the whole document.
        let (all, full) = a.changes_for(&[])?;
        assert!(full);
        let mut c = SharedDoc::new([3; 32]);
        c.apply_remote(&all)?;
        assert_eq!(text(&c), text(&a));
        assert!(c.is_joined() && !SharedDoc::new([4; 32]).is_joined());
        assert_eq!(c.missing_deps(), 0);
        Ok(())
    }
}
