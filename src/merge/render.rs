//! The CRDT schema, and turning one CRDT line item into its line of text.
//!
//! Schema of the automerge document (see the [module docs](super) for why):
//!
//! ```text
//! ROOT
//! ├── "bom":   bool                      whether the file starts with a UTF-8 BOM
//! └── "lines": List<Map>                 one item per line of the file, in file order
//!     └── item: Map
//!         ├── "t":       string          the line's base text, with its line ending
//!         └── ".<field>": string         field override: the field's JSON text, or "" = removed
//! ```

use automerge::{Automerge, ObjId as ExId, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef};
use serde_json::{Map, Value as Json};

use super::diff::{content_of, ending_of};
use super::text::DocKind;

/// Root key of the line list.
pub(crate) const LINES: &str = "lines";
/// Root key of the BOM flag.
pub(crate) const BOM: &str = "bom";
/// Item key of the base text.
pub(crate) const BASE: &str = "t";
/// Prefix of field-override keys.
pub(crate) const FIELD_PREFIX: char = '.';
/// Override value meaning "field removed" (never valid JSON text).
pub(crate) const REMOVED: &str = "";

/// One line of the read view: its rendered text (with its own line ending, possibly none) and
/// whether its item holds a concurrent-write conflict.
#[derive(Clone, Debug, Default)]
pub(crate) struct ViewLine {
    pub(crate) text: String,
    pub(crate) conflict: bool,
}

/// Parses `content` (no line ending) as a JSON object, keeping key order.
pub(crate) fn parse_object(content: &str) -> Option<Map<String, Json>> {
    // Cheap pre-check: directives, prose and blank lines never start with `{`.
    if !content.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<Map<String, Json>>(content).ok()
}

/// A string scalar's text, if `v` is one.
fn as_str<'a>(v: &'a Value<'_>) -> Option<&'a str> {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.as_str()),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// Renders the item `item` (a map) as a line of text. Never fails: an item that does not follow
/// the schema (possible only if a peer sent a hand-made change) renders as what can be read of it.
/// A [`DocKind::Text`] line is its base text alone.
pub(crate) fn render_item(doc: &impl ReadDoc, item: &ExId, kind: DocKind) -> ViewLine {
    let mut base: Option<String> = None;
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut conflict = false;
    for entry in doc.map_range(item, ..) {
        conflict |= entry.conflict;
        let text: &str = match &entry.value {
            ValueRef::Scalar(ScalarValueRef::Str(t)) => t,
            _ => continue,
        };
        if entry.key == BASE {
            base = Some(text.to_owned());
        } else if let Some(field) = entry.key.strip_prefix(FIELD_PREFIX) {
            overrides.push((field.to_owned(), text.to_owned()));
        }
    }
    let base = base.unwrap_or_default();
    let text = if overrides.is_empty() || !kind.merges_fields() {
        base
    } else {
        apply_overrides(&base, &overrides)
    };
    ViewLine { text, conflict }
}

/// The base line with field overrides applied (in key order; new fields appended in that order),
/// re-serialized compactly like `crate::canvasl` does for edited entries. Overrides on a base that
/// is not a JSON object are ignored.
pub(crate) fn apply_overrides(base: &str, overrides: &[(String, String)]) -> String {
    let ending = ending_of(base);
    let Some(mut map) = parse_object(content_of(base)) else {
        return base.to_owned();
    };
    for (field, json) in overrides {
        if json == REMOVED {
            map.shift_remove(field);
        } else if let Ok(v) = serde_json::from_str::<Json>(json) {
            map.insert(field.clone(), v);
        }
    }
    let mut out = crate::canvasl::model::serialize(&map);
    out.push_str(ending);
    out
}

/// All values of `key` in `item`, the winner first (rendered as text: the base line, or the
/// override's JSON text, `""` for a removal).
pub(crate) fn values_of(doc: &Automerge, item: &ExId, key: &str) -> (Option<String>, Vec<String>) {
    let winner = doc
        .get(item, key)
        .ok()
        .flatten()
        .and_then(|(v, id)| as_str(&v).map(|s| (s.to_owned(), id)));
    let all = doc.get_all(item, key).unwrap_or_default();
    let losers = all
        .iter()
        .filter(|(_, id)| Some(id) != winner.as_ref().map(|(_, w)| w))
        .filter_map(|(v, _)| as_str(v).map(str::to_owned))
        .collect();
    (winner.map(|(s, _)| s), losers)
}
