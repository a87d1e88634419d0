//! The CanvasL document model.
//!
//! A [`Document`] is a list of [`Line`]s plus a BOM flag. Every line keeps its raw text and its
//! own [`LineEnding`], so that an unchanged document is written back byte for byte
//! (see [`crate::canvasl::write()`]).
//!
//! # Entry identity
//!
//! Ids repeat a lot in real CanvasL files (more than half of the entries in the largest corpus
//! files repeat an id), so an entry's identity cannot be its `id` alone. Each [`Entry`] gets an
//! [`EntryKey`]:
//!
//! * an entry with id `X` that is the n-th entry (0-based, in file order) with that id gets
//!   `EntryKey { id: Some("X"), occurrence: n }`;
//! * an entry without a usable id (no `id` field, or an `id` that is not a string or a number)
//!   is the n-th *id-less* entry and gets `EntryKey { id: None, occurrence: n }`.
//!
//! Numeric ids are stringified the way `serde_json` prints them (`5`, `-3`, `1.5`), so `"5"` and
//! `5` are the same id.
//!
//! Limits of this choice, which a merge layer must keep in mind:
//!
//! * Two entries are **never** merged or otherwise identified just because they share an id.
//! * Keys are stable for the lifetime of a `Document`: edits never renumber existing entries, and
//!   keys of removed entries are not reused for new ones. They are *positional at parse time*
//!   though: writing an edited document and parsing it again recomputes occurrences in file order,
//!   so an entry inserted before an older entry with the same id, or the removal of an earlier
//!   duplicate, shifts the occurrence numbers of the later duplicates. Adding or removing an
//!   id-less entry likewise shifts the keys of later id-less entries.
//! * An entry's key does not depend on its content, so changing fields never changes its key. For
//!   the same reason the `id` field itself cannot be edited (see [`EditError::IdIsIdentity`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::parse::Warning;

/// How a line ends in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LineEnding {
    /// `\n`
    #[default]
    Lf,
    /// `\r\n`
    CrLf,
    /// No line ending: the last line of a file that does not end with a newline.
    None,
}

impl LineEnding {
    /// The bytes of this line ending (`""` for [`LineEnding::None`]).
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
            LineEnding::None => "",
        }
    }
}

/// One line of a document: what it is, and how it ends.
#[derive(Clone, Debug)]
pub struct Line {
    pub(crate) kind: LineKind,
    pub(crate) ending: LineEnding,
}

impl Line {
    /// What kind of line this is, with its parsed content.
    pub fn kind(&self) -> &LineKind {
        &self.kind
    }

    /// This line's own line ending.
    pub fn ending(&self) -> LineEnding {
        self.ending
    }

    /// The line's text as it will be written (without its line ending and without the BOM).
    pub fn raw(&self) -> &str {
        match &self.kind {
            LineKind::Directive(d) => &d.raw,
            LineKind::Entry(e) => e.raw(),
            LineKind::Blank { raw } | LineKind::Other { raw, .. } => raw,
        }
    }

    /// The entry on this line, if it is one.
    pub fn as_entry(&self) -> Option<&Entry> {
        match &self.kind {
            LineKind::Entry(e) => Some(e),
            _ => None,
        }
    }

    /// The directive on this line, if it is one.
    pub fn as_directive(&self) -> Option<&Directive> {
        match &self.kind {
            LineKind::Directive(d) => Some(d),
            _ => None,
        }
    }
}

/// The kinds of line found in CanvasL files.
#[derive(Clone, Debug)]
pub enum LineKind {
    /// `@name value`, `@name: <json>` or `@name: bare value`, possibly with a `// comment`.
    Directive(Directive),
    /// A line holding one JSON object.
    Entry(Entry),
    /// An empty line, or one holding only whitespace (kept verbatim in `raw`).
    Blank {
        /// The line's text (empty or whitespace only).
        raw: String,
    },
    /// Anything else: Org or Markdown text, malformed JSON, JSON that is not an object.
    Other {
        /// The line's text.
        raw: String,
        /// Why this line is not an entry.
        reason: OtherReason,
    },
}

/// Why a line was classified as [`LineKind::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherReason {
    /// Not valid JSON (prose, Org/Markdown, malformed JSON, a malformed directive).
    NotJson,
    /// Valid JSON, but not an object (an array, a string, a number, ...).
    NotAnObject,
}

/// The three directive spellings found in the wild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectiveForm {
    /// `@version 1.0` (or a bare `@name`).
    Space,
    /// `@version: "1.0"`: after the colon comes a JSON string, object or array.
    ColonJson,
    /// `@version: 1.0`: after the colon comes bare text (which may or may not happen to be valid
    /// JSON, like `1.0` or `true`; see [`Directive::json`]).
    ColonBare,
}

/// A directive line such as `@version 1.0`, `@version: "1.0"` or `@schema: canvasl // note`.
#[derive(Clone, Debug, PartialEq)]
pub struct Directive {
    /// The name without the `@` (`version`).
    pub name: String,
    /// The value as written, trimmed, without the comment. For [`DirectiveForm::ColonJson`] this is
    /// JSON text (`"1.0"` with its quotes); use [`Directive::text`] for the decoded string.
    pub value: String,
    /// Which of the three spellings was used.
    pub form: DirectiveForm,
    /// A trailing comment, verbatim from its `//` to the end of the line.
    pub comment: Option<String>,
    /// The whole line as written.
    pub raw: String,
}

impl Directive {
    /// The value as text: a JSON string value is decoded (`"1.0"` gives `1.0`), anything else is
    /// returned as written.
    pub fn text(&self) -> Cow<'_, str> {
        if self.form == DirectiveForm::ColonJson {
            if let Ok(Value::String(s)) = serde_json::from_str::<Value>(&self.value) {
                return Cow::Owned(s);
            }
        }
        Cow::Borrowed(&self.value)
    }

    /// The value read as JSON, if it is valid JSON (always the case for
    /// [`DirectiveForm::ColonJson`]; `1.0` after a colon or a space also gives a number).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.value).ok()
    }
}

/// Identifies an entry within one [`Document`]; see the [module docs](self) for the rules and
/// their limits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    /// The entry's id (numbers stringified), or `None` for an entry without a usable id.
    pub id: Option<String>,
    /// 0-based index among the entries with the same id (or among the id-less entries).
    pub occurrence: u32,
}

impl EntryKey {
    /// The key of the `occurrence`-th entry with id `id`.
    pub fn new(id: impl Into<String>, occurrence: u32) -> Self {
        EntryKey {
            id: Some(id.into()),
            occurrence,
        }
    }

    /// The key of the `occurrence`-th entry without an id.
    pub fn anonymous(occurrence: u32) -> Self {
        EntryKey {
            id: None,
            occurrence,
        }
    }
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "id {:?} occurrence {}", id, self.occurrence),
            None => write!(f, "id-less entry {}", self.occurrence),
        }
    }
}

/// A line holding one JSON object.
///
/// The JSON is validated while parsing, but the object itself is only built the first time
/// [`Entry::fields`] (or an edit) needs it; writing an unchanged entry just copies its raw text.
#[derive(Clone, Debug)]
pub struct Entry {
    raw: String,
    fields: OnceLock<Map<String, Value>>,
    key: EntryKey,
    modified: bool,
}

impl Entry {
    /// An entry parsed from `raw`, which the caller has checked is a JSON object.
    pub(crate) fn parsed(raw: String, key: EntryKey) -> Self {
        Entry {
            raw,
            fields: OnceLock::new(),
            key,
            modified: false,
        }
    }

    /// A new entry made from `fields` (serialized compactly).
    pub(crate) fn created(fields: Map<String, Value>, key: EntryKey) -> Self {
        Entry {
            raw: serialize(&fields),
            fields: OnceLock::from(fields),
            key,
            modified: true,
        }
    }

    /// This entry's key within its document.
    pub fn key(&self) -> &EntryKey {
        &self.key
    }

    /// The entry's id (a numeric id is stringified), if it has a string or numeric `id`.
    pub fn id(&self) -> Option<&str> {
        self.key.id.as_deref()
    }

    /// 0-based index among the entries with the same id (or among id-less entries).
    pub fn occurrence(&self) -> u32 {
        self.key.occurrence
    }

    /// The line's text as it will be written: the original text, or the compact re-serialization
    /// if the entry was created or changed.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Whether this entry was created or changed since parsing (and so is re-serialized).
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// The JSON object, keys in file order. Built on first use.
    pub fn fields(&self) -> &Map<String, Value> {
        self.fields.get_or_init(|| parse_object(&self.raw))
    }

    /// One field of the object.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields().get(field)
    }

    /// The `type` field, if it is a string (free text in the wild: `text`, `edge`, `node`, ...).
    pub fn entry_type(&self) -> Option<&str> {
        self.get("type").and_then(Value::as_str)
    }

    /// The two ends of an edge, understanding the shapes found in the wild, in this order:
    /// `fromNode`/`toNode` (JSON Canvas), `from`/`to`, and `{"edge": "A --> B"}` (also `A -> B`).
    /// One leading `#` is stripped from each end (`"#id"` references); numeric ends are
    /// stringified. Returns `None` unless both ends are present and non-empty.
    ///
    /// This is purely syntactic: any entry with `from` and `to` strings qualifies, whatever its
    /// `type`.
    pub fn edge_endpoints(&self) -> Option<(String, String)> {
        let f = self.fields();
        let pair = |a: &str, b: &str| match (endpoint(f.get(a)), endpoint(f.get(b))) {
            (Some(x), Some(y)) => Some((x, y)),
            _ => None,
        };
        pair("fromNode", "toNode")
            .or_else(|| pair("from", "to"))
            .or_else(|| f.get("edge").and_then(Value::as_str).and_then(parse_arrow))
    }

    /// Applies `edit` to the object and re-serializes the line compactly (keeping key order).
    pub(crate) fn edit<R>(&mut self, edit: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
        let mut map = std::mem::take(&mut self.fields)
            .into_inner()
            .unwrap_or_else(|| parse_object(&self.raw));
        let result = edit(&mut map);
        self.raw = serialize(&map);
        self.fields = OnceLock::from(map);
        self.modified = true;
        result
    }
}

/// Parses a line already validated as a JSON object. Cannot fail in practice (the parser checked
/// the same text with the same JSON reader); an empty map is the harmless fallback.
fn parse_object(raw: &str) -> Map<String, Value> {
    serde_json::from_str(raw).unwrap_or_default()
}

/// Compact JSON for an object. Serializing a `Map<String, Value>` cannot fail.
pub(crate) fn serialize(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| String::from("{}"))
}

/// The id of an entry as used in its [`EntryKey`]: strings as is, numbers stringified.
pub(crate) fn id_of_value(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn strip_ref(s: &str) -> Option<String> {
    let s = s.strip_prefix('#').unwrap_or(s);
    if s.is_empty() {
        None
    } else {
        Some(s.to_owned())
    }
}

fn endpoint(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => strip_ref(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_arrow(s: &str) -> Option<(String, String)> {
    let (a, b) = s.split_once("-->").or_else(|| s.split_once("->"))?;
    Some((strip_ref(a.trim())?, strip_ref(b.trim())?))
}

/// Key → line lookup, built on first use and then kept up to date by the edit helpers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    /// Line index (into `Document::lines`) of every entry.
    pub(crate) by_key: HashMap<EntryKey, usize>,
    /// Next unused occurrence number per id (`None` for id-less entries). Never decreases, so
    /// removed keys are not reused.
    pub(crate) next_occurrence: HashMap<Option<String>, u32>,
}

impl Index {
    fn build(lines: &[Line]) -> Index {
        let mut index = Index::default();
        for (i, line) in lines.iter().enumerate() {
            if let LineKind::Entry(e) = &line.kind {
                index.by_key.insert(e.key.clone(), i);
                let next = index.next_occurrence.entry(e.key.id.clone()).or_insert(0);
                *next = (*next).max(e.key.occurrence.saturating_add(1));
            }
        }
        index
    }

    /// Records that a line was inserted at `pos`.
    pub(crate) fn shift_after_insert(&mut self, pos: usize) {
        for i in self.by_key.values_mut() {
            if *i >= pos {
                *i += 1;
            }
        }
    }

    /// Records that the line at `pos` was removed.
    pub(crate) fn shift_after_remove(&mut self, pos: usize) {
        for i in self.by_key.values_mut() {
            if *i > pos {
                *i -= 1;
            }
        }
    }
}

/// Errors from the editing helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// No entry has this key.
    #[error("no entry with {0}")]
    NoSuchEntry(EntryKey),
    /// The `id` field is (part of) the entry's identity and cannot be changed or removed; remove
    /// the entry and insert a new one instead.
    #[error("the id field of {0} cannot be changed or removed; remove and re-insert the entry")]
    IdIsIdentity(EntryKey),
}

/// A parsed CanvasL document; see the [module docs](self).
///
/// Cloning is cheap enough for small files; the key index is rebuilt lazily.
#[derive(Clone, Debug, Default)]
pub struct Document {
    pub(crate) bom: bool,
    pub(crate) lines: Vec<Line>,
    pub(crate) warnings: Vec<Warning>,
    pub(crate) line_ending: LineEnding,
    index: OnceLock<Index>,
}

impl Document {
    /// An empty document (no BOM, `\n` line endings).
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_parts(
        bom: bool,
        lines: Vec<Line>,
        warnings: Vec<Warning>,
        line_ending: LineEnding,
    ) -> Self {
        Document {
            bom,
            lines,
            warnings,
            line_ending,
            index: OnceLock::new(),
        }
    }

    /// Whether the file started with a UTF-8 byte order mark (written back if so).
    pub fn has_bom(&self) -> bool {
        self.bom
    }

    /// Sets whether a BOM is written.
    pub fn set_bom(&mut self, bom: bool) {
        self.bom = bom;
    }

    /// All lines, in file order.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Warnings found while parsing (not updated by edits).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The dominant line ending of the parsed file (`\r\n` only if more lines end with `\r\n`
    /// than with `\n`); used for new lines.
    pub fn line_ending(&self) -> LineEnding {
        self.line_ending
    }

    /// Sets the line ending used for lines added from now on.
    pub fn set_line_ending(&mut self, ending: LineEnding) {
        if ending != LineEnding::None {
            self.line_ending = ending;
        }
    }

    /// All entries, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.lines.iter().filter_map(Line::as_entry)
    }

    /// All directives, in file order.
    pub fn directives(&self) -> impl Iterator<Item = &Directive> + '_ {
        self.lines.iter().filter_map(Line::as_directive)
    }

    /// The first directive called `name` (without the `@`).
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives().find(|d| d.name == name)
    }

    /// The entry with this key.
    pub fn entry(&self, key: &EntryKey) -> Option<&Entry> {
        let i = self.line_index(key)?;
        self.lines.get(i).and_then(Line::as_entry)
    }

    /// The 0-based line index of the entry with this key (the BOM is not a line).
    pub fn line_index(&self, key: &EntryKey) -> Option<usize> {
        self.index
            .get_or_init(|| Index::build(&self.lines))
            .by_key
            .get(key)
            .copied()
    }

    /// Runs `f` with the (built) index and the lines.
    pub(crate) fn with_index<R>(&mut self, f: impl FnOnce(&mut Index, &mut Vec<Line>) -> R) -> R {
        let mut index = std::mem::take(&mut self.index)
            .into_inner()
            .unwrap_or_else(|| Index::build(&self.lines));
        let result = f(&mut index, &mut self.lines);
        self.index = OnceLock::from(index);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> Entry {
        let raw = v.to_string();
        Entry::parsed(raw, EntryKey::anonymous(0))
    }

    #[test]
    fn edges_from_node_to_node() {
        let e = entry(json!({"id":"e","fromNode":"a","toNode":"b","fromSide":"right"}));
        assert_eq!(e.edge_endpoints(), Some(("a".into(), "b".into())));
    }

    #[test]
    fn edges_from_to_with_refs() {
        let e = entry(json!({"id":"e","from":"#a","to":"##b"}));
        assert_eq!(e.edge_endpoints(), Some(("a".into(), "#b".into())));
        let e = entry(json!({"from":"a","to":3}));
        assert_eq!(e.edge_endpoints(), Some(("a".into(), "3".into())));
    }

    #[test]
    fn edges_arrow_string() {
        let e = entry(json!({"edge":"A --> B"}));
        assert_eq!(e.edge_endpoints(), Some(("A".into(), "B".into())));
        let e = entry(json!({"edge":"#A->#B"}));
        assert_eq!(e.edge_endpoints(), Some(("A".into(), "B".into())));
        assert_eq!(entry(json!({"edge":"A --> "})).edge_endpoints(), None);
        assert_eq!(entry(json!({"edge":"A B"})).edge_endpoints(), None);
    }

    #[test]
    fn non_edges() {
        assert_eq!(
            entry(json!({"id":"n","type":"text"})).edge_endpoints(),
            None
        );
        assert_eq!(entry(json!({"from":"a"})).edge_endpoints(), None);
        assert_eq!(entry(json!({"from":"#","to":"b"})).edge_endpoints(), None);
        assert_eq!(entry(json!({"from":["a"],"to":"b"})).edge_endpoints(), None);
    }

    #[test]
    fn from_node_wins_over_from() {
        let e = entry(json!({"from":"x","to":"y","fromNode":"a","toNode":"b"}));
        assert_eq!(e.edge_endpoints(), Some(("a".into(), "b".into())));
    }

    #[test]
    fn directive_text_and_json() {
        let d = Directive {
            name: "version".into(),
            value: "\"1.0\"".into(),
            form: DirectiveForm::ColonJson,
            comment: None,
            raw: "@version: \"1.0\"".into(),
        };
        assert_eq!(d.text(), "1.0");
        assert_eq!(d.json(), Some(json!("1.0")));
        let d = Directive {
            value: "1.0".into(),
            form: DirectiveForm::ColonBare,
            ..d
        };
        assert_eq!(d.text(), "1.0");
        assert_eq!(d.json(), Some(json!(1.0)));
    }

    #[test]
    fn key_display_and_order() {
        assert_eq!(EntryKey::new("a", 1).to_string(), "id \"a\" occurrence 1");
        assert_eq!(EntryKey::anonymous(2).to_string(), "id-less entry 2");
        assert!(EntryKey::anonymous(5) < EntryKey::new("a", 0));
    }

    #[test]
    fn id_of_value_forms() {
        assert_eq!(id_of_value(Some(&json!("x"))), Some("x".into()));
        assert_eq!(id_of_value(Some(&json!(5))), Some("5".into()));
        assert_eq!(id_of_value(Some(&json!(-1.5))), Some("-1.5".into()));
        assert_eq!(id_of_value(Some(&json!(null))), None);
        assert_eq!(id_of_value(None), None);
    }
}
