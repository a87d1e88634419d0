//! Writing CanvasL back, and the editing helpers a merge layer needs.
//!
//! [`write()`] emits the BOM (if any), then every line's text and its own line ending. An unchanged
//! parsed document comes out byte-identical. An edited or new entry is one compact JSON line
//! (`serde_json` formatting: original key order, new keys appended; note that this may respell
//! untouched values of *that* line, e.g. `1e2` becomes `100.0` and `"\u00e9"` becomes `"é"`).
//! New lines get the document's dominant line ending ([`Document::line_ending`]).

use std::io;

use serde_json::{Map, Value};

use super::model::{id_of_value, Document, EditError, Entry, EntryKey, Line, LineEnding, LineKind};

const BOM: &[u8] = "\u{feff}".as_bytes();

/// The document as bytes.
pub fn write(doc: &Document) -> Vec<u8> {
    let size = doc.lines.iter().map(|l| l.raw().len() + 2).sum::<usize>() + BOM.len();
    let mut out = Vec::with_capacity(size);
    if doc.bom {
        out.extend_from_slice(BOM);
    }
    for line in &doc.lines {
        out.extend_from_slice(line.raw().as_bytes());
        out.extend_from_slice(line.ending.as_str().as_bytes());
    }
    out
}

/// Writes the document to `w` (wrap files in a `BufWriter`).
pub fn write_to<W: io::Write>(doc: &Document, mut w: W) -> io::Result<()> {
    if doc.bom {
        w.write_all(BOM)?;
    }
    for line in &doc.lines {
        w.write_all(line.raw().as_bytes())?;
        w.write_all(line.ending.as_str().as_bytes())?;
    }
    w.flush()
}

impl Document {
    /// The document as bytes; same as [`write()`].
    pub fn to_bytes(&self) -> Vec<u8> {
        write(self)
    }

    /// Sets `field` of the entry `key` to `value` (appended if the field is new). The line is
    /// re-serialized, unless the field already has exactly this value (then nothing changes).
    ///
    /// The `id` field cannot be changed ([`EditError::IdIsIdentity`]).
    pub fn set_entry_field(
        &mut self,
        key: &EntryKey,
        field: &str,
        value: Value,
    ) -> Result<(), EditError> {
        let entry = self.entry_mut(key)?;
        if entry.get(field) == Some(&value) {
            return Ok(());
        }
        if field == "id" {
            return Err(EditError::IdIsIdentity(key.clone()));
        }
        entry.edit(|m| {
            m.insert(field.to_owned(), value);
        });
        Ok(())
    }

    /// Removes `field` from the entry `key`, returning its old value (`Ok(None)`, and no change,
    /// if the entry had no such field). Remaining keys keep their order.
    ///
    /// The `id` field cannot be removed ([`EditError::IdIsIdentity`]).
    pub fn remove_entry_field(
        &mut self,
        key: &EntryKey,
        field: &str,
    ) -> Result<Option<Value>, EditError> {
        let entry = self.entry_mut(key)?;
        if !entry.fields().contains_key(field) {
            return Ok(None);
        }
        if field == "id" {
            return Err(EditError::IdIsIdentity(key.clone()));
        }
        Ok(entry.edit(|m| m.shift_remove(field)))
    }

    /// Removes the entry's line and returns the entry. Other lines are untouched, except that if
    /// the removed line was the last one and had no line ending, the new last line loses its line
    /// ending too (so a file without a final newline stays so). The key is not reused.
    pub fn remove_entry(&mut self, key: &EntryKey) -> Result<Entry, EditError> {
        self.with_index(|index, lines| {
            let pos = match index.by_key.remove(key) {
                Some(pos) if pos < lines.len() => pos,
                _ => return Err(EditError::NoSuchEntry(key.clone())),
            };
            let line = lines.remove(pos);
            index.shift_after_remove(pos);
            if line.ending == LineEnding::None && pos == lines.len() {
                if let Some(last) = lines.last_mut() {
                    last.ending = LineEnding::None;
                }
            }
            match line.kind {
                LineKind::Entry(e) => Ok(e),
                // The index only points at entries.
                _ => Err(EditError::NoSuchEntry(key.clone())),
            }
        })
    }

    /// Inserts a new entry made of `fields` (written compactly, in the map's order) right after
    /// the entry `after`, or, with `None`, right before the first entry (after the directives
    /// and whatever else precedes it; at the end if there are no entries). Returns the new key:
    /// its id comes from `fields["id"]` (string or number) and its occurrence is the next unused
    /// one for that id, so it never collides with an existing or removed key.
    ///
    /// The new line gets the dominant line ending. Inserting after a last line that has no line
    /// ending gives that line the dominant ending and leaves the new last line without one.
    pub fn insert_entry_after(
        &mut self,
        after: Option<&EntryKey>,
        fields: Map<String, Value>,
    ) -> Result<EntryKey, EditError> {
        let dominant = self.line_ending;
        self.with_index(|index, lines| {
            let pos = match after {
                Some(k) => {
                    1 + *index
                        .by_key
                        .get(k)
                        .ok_or_else(|| EditError::NoSuchEntry(k.clone()))?
                }
                None => lines
                    .iter()
                    .position(|l| matches!(l.kind, LineKind::Entry(_)))
                    .unwrap_or(lines.len()),
            }
            .min(lines.len());
            let id = id_of_value(fields.get("id"));
            let next = index.next_occurrence.entry(id.clone()).or_insert(0);
            let key = EntryKey {
                id,
                occurrence: *next,
            };
            *next = next.saturating_add(1);

            let mut ending = dominant;
            if pos == lines.len() {
                if let Some(prev) = lines.last_mut() {
                    if prev.ending == LineEnding::None {
                        prev.ending = dominant;
                        ending = LineEnding::None;
                    }
                }
            }
            lines.insert(
                pos,
                Line {
                    kind: LineKind::Entry(Entry::created(fields, key.clone())),
                    ending,
                },
            );
            index.shift_after_insert(pos);
            index.by_key.insert(key.clone(), pos);
            Ok(key)
        })
    }

    fn entry_mut(&mut self, key: &EntryKey) -> Result<&mut Entry, EditError> {
        let pos = self.line_index(key);
        match pos.and_then(|i| self.lines.get_mut(i)) {
            Some(Line {
                kind: LineKind::Entry(e),
                ..
            }) => Ok(e),
            _ => Err(EditError::NoSuchEntry(key.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvasl::parse::parse_str;
    use serde_json::json;

    const SRC: &str = "@version 1.0\n\n{\"id\": \"a\", \"x\": 1e2, \"t\": \"\\u00e9\"}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"a\",\"x\":3}\n";

    fn text(doc: &Document) -> String {
        String::from_utf8(write(doc)).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn unchanged_is_identical() {
        let doc = parse_str(SRC);
        assert_eq!(text(&doc), SRC);
        assert_eq!(doc.to_bytes(), SRC.as_bytes());
        let mut v = Vec::new();
        write_to(&doc, &mut v).unwrap();
        assert_eq!(v, SRC.as_bytes());
    }

    #[test]
    fn set_field_rewrites_only_that_line() {
        let mut doc = parse_str(SRC);
        let b = EntryKey::new("b", 0);
        doc.set_entry_field(&b, "x", json!(5)).unwrap();
        doc.set_entry_field(&b, "color", json!("4")).unwrap();
        assert_eq!(
            text(&doc),
            "@version 1.0\n\n{\"id\": \"a\", \"x\": 1e2, \"t\": \"\\u00e9\"}\n{\"id\":\"b\",\"x\":5,\"color\":\"4\"}\n{\"id\":\"a\",\"x\":3}\n"
        );
        assert!(doc.entry(&b).unwrap().is_modified());
        assert!(!doc.entry(&EntryKey::new("a", 0)).unwrap().is_modified());
    }

    #[test]
    fn set_field_on_spaced_entry_goes_compact() {
        let mut doc = parse_str(SRC);
        let a1 = EntryKey::new("a", 0);
        doc.set_entry_field(&a1, "y", json!(null)).unwrap();
        assert_eq!(
            doc.lines()[2].raw(),
            "{\"id\":\"a\",\"x\":100.0,\"t\":\"é\",\"y\":null}"
        );
        // The second "a" is a different entry and is untouched.
        assert_eq!(doc.lines()[4].raw(), "{\"id\":\"a\",\"x\":3}");
    }

    #[test]
    fn same_value_changes_nothing() {
        let mut doc = parse_str(SRC);
        let a = EntryKey::new("a", 0);
        doc.set_entry_field(&a, "x", json!(100.0)).unwrap();
        doc.set_entry_field(&a, "id", json!("a")).unwrap();
        assert_eq!(doc.remove_entry_field(&a, "nope"), Ok(None));
        assert_eq!(text(&doc), SRC);
    }

    #[test]
    fn id_is_identity() {
        let mut doc = parse_str(SRC);
        let a = EntryKey::new("a", 1);
        assert_eq!(
            doc.set_entry_field(&a, "id", json!("z")),
            Err(EditError::IdIsIdentity(a.clone()))
        );
        assert_eq!(
            doc.remove_entry_field(&a, "id"),
            Err(EditError::IdIsIdentity(a.clone()))
        );
        assert_eq!(text(&doc), SRC);
    }

    #[test]
    fn remove_field_keeps_order() {
        let mut doc = parse_str("{\"a\":1,\"b\":2,\"c\":3,\"d\":4}\n");
        let k = EntryKey::anonymous(0);
        assert_eq!(doc.remove_entry_field(&k, "b"), Ok(Some(json!(2))));
        assert_eq!(text(&doc), "{\"a\":1,\"c\":3,\"d\":4}\n");
    }

    #[test]
    fn missing_key_errors() {
        let mut doc = parse_str(SRC);
        let k = EntryKey::new("zz", 0);
        assert_eq!(
            doc.set_entry_field(&k, "x", json!(1)),
            Err(EditError::NoSuchEntry(k.clone()))
        );
        assert!(doc.remove_entry(&k).is_err());
        assert!(doc.insert_entry_after(Some(&k), Map::new()).is_err());
        assert_eq!(text(&doc), SRC);
    }

    #[test]
    fn remove_entry_removes_one_line() {
        let mut doc = parse_str(SRC);
        let removed = doc.remove_entry(&EntryKey::new("a", 0)).unwrap();
        assert_eq!(removed.get("x"), Some(&json!(100.0)));
        assert_eq!(
            text(&doc),
            "@version 1.0\n\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"a\",\"x\":3}\n"
        );
        // Keys of the remaining entries do not change.
        assert_eq!(doc.line_index(&EntryKey::new("a", 1)), Some(3));
        assert!(doc.entry(&EntryKey::new("a", 0)).is_none());
        doc.set_entry_field(&EntryKey::new("a", 1), "x", json!(4))
            .unwrap();
        assert_eq!(doc.lines()[3].raw(), "{\"id\":\"a\",\"x\":4}");
    }

    #[test]
    fn remove_last_line_without_newline() {
        let mut doc = parse_str("{\"id\":\"a\"}\r\n{\"id\":\"b\"}");
        doc.remove_entry(&EntryKey::new("b", 0)).unwrap();
        assert_eq!(text(&doc), "{\"id\":\"a\"}");
    }

    #[test]
    fn insert_after_key_and_at_start() {
        let mut doc = parse_str(SRC);
        let k = doc
            .insert_entry_after(
                Some(&EntryKey::new("b", 0)),
                obj(json!({"id":"a","z":1,"b":2})),
            )
            .unwrap();
        assert_eq!(k, EntryKey::new("a", 2));
        let first = doc
            .insert_entry_after(None, obj(json!({"id":"first"})))
            .unwrap();
        assert_eq!(first, EntryKey::new("first", 0));
        let anon = doc
            .insert_entry_after(Some(&k), obj(json!({"note":"no id"})))
            .unwrap();
        assert_eq!(anon, EntryKey::anonymous(0));
        assert_eq!(
            text(&doc),
            "@version 1.0\n\n{\"id\":\"first\"}\n{\"id\": \"a\", \"x\": 1e2, \"t\": \"\\u00e9\"}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"a\",\"z\":1,\"b\":2}\n{\"note\":\"no id\"}\n{\"id\":\"a\",\"x\":3}\n"
        );
        assert_eq!(doc.line_index(&k), Some(5));
        assert_eq!(doc.line_index(&EntryKey::new("a", 1)), Some(7));
        assert_eq!(doc.entry(&anon).unwrap().get("note"), Some(&json!("no id")));
    }

    #[test]
    fn removed_keys_are_not_reused() {
        let mut doc = parse_str(SRC);
        doc.remove_entry(&EntryKey::new("a", 1)).unwrap();
        let k = doc
            .insert_entry_after(None, obj(json!({"id":"a"})))
            .unwrap();
        assert_eq!(k, EntryKey::new("a", 2));
        let n = doc.insert_entry_after(None, obj(json!({"id":7}))).unwrap();
        assert_eq!(n, EntryKey::new("7", 0));
    }

    #[test]
    fn insert_uses_dominant_ending_and_keeps_no_final_newline() {
        let mut doc = parse_str("@version 1.0\r\n{\"id\":\"a\"}");
        doc.insert_entry_after(Some(&EntryKey::new("a", 0)), obj(json!({"id":"b"})))
            .unwrap();
        assert_eq!(
            text(&doc),
            "@version 1.0\r\n{\"id\":\"a\"}\r\n{\"id\":\"b\"}"
        );

        let mut doc = parse_str("@version 1.0\r\n");
        doc.insert_entry_after(None, obj(json!({"id":"b"})))
            .unwrap();
        assert_eq!(text(&doc), "@version 1.0\r\n{\"id\":\"b\"}\r\n");

        let mut doc = Document::new();
        doc.insert_entry_after(None, obj(json!({"id":"b"})))
            .unwrap();
        assert_eq!(text(&doc), "{\"id\":\"b\"}\n");
    }

    #[test]
    fn bom_is_written_back_and_settable() {
        let mut doc = parse_str("\u{feff}{\"id\":\"a\"}\n");
        assert_eq!(write(&doc), "\u{feff}{\"id\":\"a\"}\n".as_bytes());
        doc.set_bom(false);
        assert_eq!(write(&doc), b"{\"id\":\"a\"}\n");
    }

    #[test]
    fn edited_document_reparses_to_same_content() {
        let mut doc = parse_str(SRC);
        doc.set_entry_field(&EntryKey::new("a", 1), "x", json!({"nested":[1,2]}))
            .unwrap();
        let bytes = write(&doc);
        let again = crate::canvasl::parse::parse(&bytes).unwrap();
        assert_eq!(write(&again), bytes);
        assert_eq!(
            again.entry(&EntryKey::new("a", 1)).unwrap().get("x"),
            Some(&json!({"nested":[1,2]}))
        );
    }
}
