//! Reading CanvasL: [`parse()`] (bytes) and [`parse_str`] (text).
//!
//! The parser never drops a line and never fails on content: anything that is not a directive,
//! a JSON object or a blank line becomes [`LineKind::Other`] with a [`Warning`]. The only error is
//! invalid UTF-8.
//!
//! Lines end at `\n`; a `\r` right before it makes the ending `\r\n`. A lone `\r` is ordinary
//! content. A final line without a newline has [`LineEnding::None`]; a file ending with a newline
//! has no extra empty line at the end.
//!
//! Entry lines are validated and their `id` extracted in one pass that does not build the JSON
//! object (see [`Entry::fields`], which builds it on first use).

use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::model::{
    Directive, DirectiveForm, Document, Entry, EntryKey, Line, LineEnding, LineKind, OtherReason,
};

/// The only way parsing can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is not valid UTF-8.
    #[error("invalid UTF-8 at byte offset {offset} (line {line})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte (counting a BOM, if any).
        offset: usize,
        /// 1-based line number of that byte.
        line: usize,
    },
}

/// What a [`Warning`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WarningKind {
    /// A line that is neither blank, a directive, nor valid JSON (e.g. Org or Markdown text).
    NonJsonLine,
    /// Valid JSON that is not an object.
    NotAnObject,
    /// An entry whose id was already used by an earlier entry (one warning per repetition).
    DuplicateId,
    /// The file uses `\r\n` line endings (once per file, at the first such line).
    Crlf,
    /// The file starts with a UTF-8 byte order mark.
    Bom,
    /// A directive after the first entry.
    DirectiveAfterEntries,
    /// Both `\n` and `\r\n` endings occur (once per file, at the first line that differs).
    MixedLineEndings,
}

impl WarningKind {
    /// The stable short name: `non-json-line`, `not-an-object`, `duplicate-id`, `crlf`, `bom`,
    /// `directive-after-entries`, `mixed-line-endings`.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::NonJsonLine => "non-json-line",
            WarningKind::NotAnObject => "not-an-object",
            WarningKind::DuplicateId => "duplicate-id",
            WarningKind::Crlf => "crlf",
            WarningKind::Bom => "bom",
            WarningKind::DirectiveAfterEntries => "directive-after-entries",
            WarningKind::MixedLineEndings => "mixed-line-endings",
        }
    }
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something odd but accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line number.
    pub line: usize,
    /// What kind of oddity.
    pub kind: WarningKind,
    /// A human-readable explanation.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.kind, self.message)
    }
}

/// Parses CanvasL bytes. Fails only on invalid UTF-8.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(parse_str(s)),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
            Err(ParseError::InvalidUtf8 { offset, line })
        }
    }
}

/// Parses CanvasL text. Cannot fail; see the [module docs](self).
pub fn parse_str(text: &str) -> Document {
    let mut p = Parser::default();
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            p.warn(
                1,
                WarningKind::Bom,
                "file starts with a UTF-8 byte order mark".into(),
            );
            (true, rest)
        }
        None => (false, text),
    };
    p.lines.reserve(body.len() / 128 + 1);

    let mut rest = body;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let (line, ending, next) = match rest.find('\n') {
            Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\r' => {
                (&rest[..i - 1], LineEnding::CrLf, &rest[i + 1..])
            }
            Some(i) => (&rest[..i], LineEnding::Lf, &rest[i + 1..]),
            None => (rest, LineEnding::None, ""),
        };
        rest = next;
        p.ending(line_no, ending);
        let kind = p.classify(line_no, line);
        p.lines.push(Line { kind, ending });
    }

    let dominant = if p.crlf > p.lf {
        LineEnding::CrLf
    } else {
        LineEnding::Lf
    };
    Document::from_parts(bom, p.lines, p.warnings, dominant)
}

#[derive(Default)]
struct Parser<'a> {
    lines: Vec<Line>,
    warnings: Vec<Warning>,
    /// First line and count of each id seen so far.
    ids: HashMap<Cow<'a, str>, (usize, u32)>,
    anonymous: u32,
    seen_entry: bool,
    lf: usize,
    crlf: usize,
    first_ending: Option<LineEnding>,
    mixed_warned: bool,
}

impl<'a> Parser<'a> {
    fn warn(&mut self, line: usize, kind: WarningKind, message: String) {
        self.warnings.push(Warning {
            line,
            kind,
            message,
        });
    }

    fn ending(&mut self, line_no: usize, ending: LineEnding) {
        match ending {
            LineEnding::Lf => self.lf += 1,
            LineEnding::CrLf => {
                self.crlf += 1;
                if self.crlf == 1 {
                    self.warn(line_no, WarningKind::Crlf, "CRLF line endings".into());
                }
            }
            LineEnding::None => return,
        }
        match self.first_ending {
            None => self.first_ending = Some(ending),
            Some(first) if first != ending && !self.mixed_warned => {
                self.mixed_warned = true;
                self.warn(
                    line_no,
                    WarningKind::MixedLineEndings,
                    format!(
                        "line ends with {:?} but earlier lines end with {:?}",
                        ending.as_str(),
                        first.as_str()
                    ),
                );
            }
            Some(_) => {}
        }
    }

    fn classify(&mut self, line_no: usize, line: &'a str) -> LineKind {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            return LineKind::Blank {
                raw: line.to_owned(),
            };
        }
        if trimmed.starts_with('{') {
            if let Ok(probe) = serde_json::from_str::<IdProbe<'a>>(line) {
                return LineKind::Entry(self.entry(line_no, line, probe.0));
            }
        } else if line.starts_with('@') {
            if let Some(d) = parse_directive(line) {
                if self.seen_entry {
                    self.warn(
                        line_no,
                        WarningKind::DirectiveAfterEntries,
                        format!("directive @{} after the first entry", d.name),
                    );
                }
                return LineKind::Directive(d);
            }
        } else if serde_json::from_str::<Strict>(line).is_ok() {
            self.warn(
                line_no,
                WarningKind::NotAnObject,
                "valid JSON, but not an object; kept as text".into(),
            );
            return LineKind::Other {
                raw: line.to_owned(),
                reason: OtherReason::NotAnObject,
            };
        }
        self.warn(
            line_no,
            WarningKind::NonJsonLine,
            "neither a directive nor a JSON object; kept as text".into(),
        );
        LineKind::Other {
            raw: line.to_owned(),
            reason: OtherReason::NotJson,
        }
    }

    fn entry(&mut self, line_no: usize, line: &str, id: Option<Cow<'a, str>>) -> Entry {
        self.seen_entry = true;
        let key = match id {
            None => {
                let n = self.anonymous;
                self.anonymous = n.saturating_add(1);
                EntryKey::anonymous(n)
            }
            Some(id) => {
                let owned = id.as_ref().to_owned();
                let occurrence = match self.ids.entry(id) {
                    MapEntry::Vacant(v) => {
                        v.insert((line_no, 1));
                        0
                    }
                    MapEntry::Occupied(mut o) => {
                        let (first, count) = *o.get();
                        o.insert((first, count.saturating_add(1)));
                        self.warnings.push(Warning {
                            line: line_no,
                            kind: WarningKind::DuplicateId,
                            message: format!(
                                "id {owned:?} already used on line {first} (occurrence {count} here)"
                            ),
                        });
                        count
                    }
                };
                EntryKey {
                    id: Some(owned),
                    occurrence,
                }
            }
        };
        Entry::parsed(line.to_owned(), key)
    }
}

/// Recognizes `@name value`, `@name: <json>`, `@name: bare` (name: ASCII letters, digits, `-`,
/// `_`), each optionally followed by a `// comment`. Returns `None` for anything else.
pub(crate) fn parse_directive(raw: &str) -> Option<Directive> {
    let rest = raw.strip_prefix('@')?;
    let name_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    let (form, value_part) = if let Some(v) = after.strip_prefix(':') {
        (DirectiveForm::ColonBare, v)
    } else if after.is_empty() || after.starts_with([' ', '\t']) {
        (DirectiveForm::Space, after)
    } else {
        return None;
    };
    let value_part = value_part.trim_start();

    let (form, value, comment) = match json_prefix(form, value_part) {
        Some((value, comment)) => (DirectiveForm::ColonJson, value, comment),
        None => {
            let (value, comment) = split_comment(value_part);
            (form, value, comment)
        }
    };
    Some(Directive {
        name: name.to_owned(),
        value: value.to_owned(),
        form,
        comment: comment.map(str::to_owned),
        raw: raw.to_owned(),
    })
}

/// After a colon: a JSON string/object/array, then nothing or a `//` comment.
fn json_prefix(form: DirectiveForm, v: &str) -> Option<(&str, Option<&str>)> {
    if form != DirectiveForm::ColonBare || !v.starts_with(['"', '{', '[']) {
        return None;
    }
    let mut stream = serde_json::Deserializer::from_str(v).into_iter::<Strict>();
    stream.next()?.ok()?;
    let end = stream.byte_offset();
    let (value, tail) = (v.get(..end)?, v.get(end..)?.trim_start());
    if tail.is_empty() {
        Some((value, None))
    } else if tail.starts_with("//") {
        Some((value, Some(tail)))
    } else {
        None
    }
}

/// Splits `value // comment`: a comment starts at a `//` at the start or after whitespace (so
/// `https://x` is not a comment).
fn split_comment(v: &str) -> (&str, Option<&str>) {
    let bytes = v.as_bytes();
    let mut from = 0;
    while let Some(i) = v[from..].find("//").map(|i| i + from) {
        if i == 0 || bytes[i - 1].is_ascii_whitespace() {
            return (v[..i].trim_end(), Some(&v[i..]));
        }
        from = i + 2;
    }
    (v.trim_end(), None)
}

/// Deserializes a JSON object, keeping only its `id` (last one wins, like `serde_json::Map`).
struct IdProbe<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for IdProbe<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ProbeVisitor)
    }
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = IdProbe<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<IsId>()? {
            if key.0 {
                id = map.next_value::<IdValue<'de>>()?.0;
            } else {
                map.next_value::<Strict>()?;
            }
        }
        Ok(IdProbe(id))
    }
}

/// Any JSON value, checked exactly as strictly as `serde_json::Value` would check it (number
/// ranges, `\u` surrogate pairs), but without building anything. `serde::de::IgnoredAny` is not
/// enough: `serde_json` skips ignored values leniently (it accepts `1e400` and lone surrogates,
/// which `Value` rejects), and every line accepted as an entry must later build its object.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_key::<Strict>()?.is_some() {
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}

/// A map key, remembering only whether it is `id`.
struct IsId(bool);

impl<'de> Deserialize<'de> for IsId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IsId, E> {
                Ok(IsId(s == "id"))
            }
        }
        d.deserialize_str(V)
    }
}

/// An `id` value: strings (borrowed when unescaped), numbers stringified, anything else `None`.
struct IdValue<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for IdValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(IdValue(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(IdValue(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(IdValue(Some(Cow::Owned(n.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(IdValue(Some(Cow::Owned(n.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                // Same text as `serde_json::Value::Number(..).to_string()`.
                Ok(IdValue(
                    serde_json::Number::from_f64(n).map(|n| Cow::Owned(n.to_string())),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IdValue(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<Strict>()?.is_some() {}
                Ok(IdValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<Strict, Strict>()?.is_some() {}
                Ok(IdValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvasl::write::write;
    use serde_json::json;

    fn kinds(doc: &Document) -> Vec<&'static str> {
        doc.warnings().iter().map(|w| w.kind.as_str()).collect()
    }

    fn roundtrip(input: &str) -> Document {
        let doc = parse(input.as_bytes()).expect("valid UTF-8");
        assert_eq!(String::from_utf8(write(&doc)).unwrap(), input);
        doc
    }

    #[test]
    fn three_directive_forms() {
        let input = "@version 1.0\n@version: \"1.0\"\n@version: 1.0\n@schema: canvasl-v1 // the schema\n@x: \"a // b\" // real comment\n@url https://example.org/x\n@flag\n@r5rs-engine: meta-log-db\n";
        let doc = roundtrip(input);
        let d: Vec<&Directive> = doc.directives().collect();
        assert_eq!(d.len(), 8);
        assert_eq!(
            (d[0].name.as_str(), d[0].value.as_str(), d[0].form),
            ("version", "1.0", DirectiveForm::Space)
        );
        assert_eq!(
            (d[1].value.as_str(), d[1].form),
            ("\"1.0\"", DirectiveForm::ColonJson)
        );
        assert_eq!(d[1].text(), "1.0");
        assert_eq!(
            (d[2].value.as_str(), d[2].form),
            ("1.0", DirectiveForm::ColonBare)
        );
        assert_eq!(d[2].json(), Some(json!(1.0)));
        assert_eq!(d[3].value, "canvasl-v1");
        assert_eq!(d[3].comment.as_deref(), Some("// the schema"));
        assert_eq!(d[4].form, DirectiveForm::ColonJson);
        assert_eq!(d[4].text(), "a // b");
        assert_eq!(d[4].comment.as_deref(), Some("// real comment"));
        assert_eq!(d[5].value, "https://example.org/x");
        assert_eq!(d[5].comment, None);
        assert_eq!((d[6].name.as_str(), d[6].value.as_str()), ("flag", ""));
        assert_eq!(d[7].name, "r5rs-engine");
        assert_eq!(d[7].value, "meta-log-db");
        assert!(doc.warnings().is_empty());
        assert_eq!(doc.directive("schema").unwrap().value, "canvasl-v1");
    }

    #[test]
    fn odd_directives_are_other() {
        let doc = roundtrip("@\n@=x\n@ version 1\n  @version 1\n");
        assert!(doc
            .lines()
            .iter()
            .all(|l| matches!(l.kind(), LineKind::Other { .. })));
        assert_eq!(kinds(&doc), vec!["non-json-line"; 4]);
    }

    #[test]
    fn json_after_colon_with_junk_is_bare() {
        let doc = roundtrip("@k: \"a\" b\n");
        let d = doc.directives().next().unwrap();
        assert_eq!(d.form, DirectiveForm::ColonBare);
        assert_eq!(d.value, "\"a\" b");
    }

    #[test]
    fn blank_lines() {
        let doc = roundtrip("@version 1.0\n\n{\"id\":\"a\"}\n   \n\t\n{\"id\":\"b\"}\n\n");
        let blanks = doc
            .lines()
            .iter()
            .filter(|l| matches!(l.kind(), LineKind::Blank { .. }))
            .count();
        assert_eq!(blanks, 4);
        assert_eq!(doc.lines()[3].raw(), "   ");
        assert_eq!(doc.entries().count(), 2);
        assert!(doc.warnings().is_empty());
    }

    #[test]
    fn crlf_file() {
        let doc = roundtrip("@version 1.0\r\n{\"id\":\"a\"}\r\n{\"id\":\"b\"}\r\n");
        assert_eq!(kinds(&doc), vec!["crlf"]);
        assert_eq!(doc.warnings()[0].line, 1);
        assert_eq!(doc.line_ending(), LineEnding::CrLf);
        assert!(doc.lines().iter().all(|l| l.ending() == LineEnding::CrLf));
        assert_eq!(doc.lines()[1].raw(), "{\"id\":\"a\"}");
    }

    #[test]
    fn mixed_endings() {
        let doc = roundtrip("{\"id\":\"a\"}\n{\"id\":\"b\"}\r\n{\"id\":\"c\"}\n{\"id\":\"d\"}\r\n");
        assert_eq!(kinds(&doc), vec!["crlf", "mixed-line-endings"]);
        assert_eq!(doc.warnings()[1].line, 2);
        assert_eq!(doc.line_ending(), LineEnding::Lf);
    }

    #[test]
    fn lone_cr_is_content() {
        let doc = roundtrip("{\"id\":\"a\"}\r{\"id\":\"b\"}\n\r\n");
        assert_eq!(doc.lines().len(), 2);
        assert!(matches!(
            doc.lines()[0].kind(),
            LineKind::Other {
                reason: OtherReason::NotJson,
                ..
            }
        ));
        assert!(matches!(doc.lines()[1].kind(), LineKind::Blank { .. }));
    }

    #[test]
    fn bom() {
        let doc = roundtrip("\u{feff}@version 1.0\n{\"id\":\"a\"}\n");
        assert!(doc.has_bom());
        assert_eq!(kinds(&doc), vec!["bom"]);
        assert_eq!(doc.lines()[0].raw(), "@version 1.0");
        assert_eq!(doc.directive("version").unwrap().value, "1.0");
    }

    #[test]
    fn no_trailing_newline() {
        let doc = roundtrip("@version 1.0\n{\"id\":\"a\"}");
        assert_eq!(doc.lines().len(), 2);
        assert_eq!(doc.lines()[1].ending(), LineEnding::None);
        let doc = roundtrip("{\"id\":\"a\"}\r\n{\"id\":\"b\"}");
        assert_eq!(doc.lines()[1].ending(), LineEnding::None);
        assert_eq!(kinds(&doc), vec!["crlf"]);
    }

    #[test]
    fn empty_inputs() {
        assert!(roundtrip("").lines().is_empty());
        assert_eq!(roundtrip("\n").lines().len(), 1);
        assert_eq!(roundtrip("\u{feff}").lines().len(), 0);
        assert_eq!(roundtrip("\r\n\r\n").lines().len(), 2);
    }

    #[test]
    fn other_lines() {
        let doc = roundtrip(
            "* Org heading\n[1,2]\n\"str\"\n42\n{\"a\":1\n{\"a\":1} x\n{\"a\":1}\n# md\n\u{a0}{}\n",
        );
        let reasons: Vec<Option<OtherReason>> = doc
            .lines()
            .iter()
            .map(|l| match l.kind() {
                LineKind::Other { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        use OtherReason::*;
        assert_eq!(
            reasons,
            vec![
                Some(NotJson),
                Some(NotAnObject),
                Some(NotAnObject),
                Some(NotAnObject),
                Some(NotJson),
                Some(NotJson),
                None,
                Some(NotJson),
                Some(NotJson)
            ]
        );
        assert_eq!(
            kinds(&doc),
            vec![
                "non-json-line",
                "not-an-object",
                "not-an-object",
                "not-an-object",
                "non-json-line",
                "non-json-line",
                "non-json-line",
                "non-json-line"
            ]
        );
        assert_eq!(doc.warnings()[7].line, 9);
    }

    #[test]
    fn indented_entry() {
        let doc = roundtrip("  {\"id\":\"a\"}  \n");
        assert_eq!(doc.entries().next().unwrap().id(), Some("a"));
    }

    #[test]
    fn directive_after_entries() {
        let doc = roundtrip("@version 1.0\n{\"id\":\"a\"}\n@schema x\n");
        assert_eq!(kinds(&doc), vec!["directive-after-entries"]);
        assert_eq!(doc.warnings()[0].line, 3);
    }

    #[test]
    fn duplicate_ids_get_distinct_keys() {
        let doc = roundtrip(
            "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\"}\n{\"id\":\"a\",\"n\":2}\n{\"id\":\"a\"}\n{\"x\":1}\n{\"id\":null}\n{\"id\":7}\n{\"id\":\"7\"}\n{\"id\":\"\\u0061\"}\n",
        );
        let keys: Vec<EntryKey> = doc.entries().map(|e| e.key().clone()).collect();
        assert_eq!(
            keys,
            vec![
                EntryKey::new("a", 0),
                EntryKey::new("b", 0),
                EntryKey::new("a", 1),
                EntryKey::new("a", 2),
                EntryKey::anonymous(0),
                EntryKey::anonymous(1),
                EntryKey::new("7", 0),
                EntryKey::new("7", 1),
                EntryKey::new("a", 3),
            ]
        );
        let dups: Vec<(usize, &str)> = doc
            .warnings()
            .iter()
            .map(|w| (w.line, w.kind.as_str()))
            .collect();
        assert_eq!(
            dups,
            vec![
                (3, "duplicate-id"),
                (4, "duplicate-id"),
                (8, "duplicate-id"),
                (9, "duplicate-id")
            ]
        );
        assert!(doc.warnings()[0].message.contains("line 1"));
        assert_eq!(
            doc.entry(&EntryKey::new("a", 1)).unwrap().get("n"),
            Some(&json!(2))
        );
        assert_eq!(doc.line_index(&EntryKey::new("a", 2)), Some(3));
        assert!(doc.entry(&EntryKey::new("a", 4)).is_none());
    }

    #[test]
    fn last_id_key_wins() {
        let doc = roundtrip("{\"id\":\"a\",\"id\":\"b\"}\n");
        let e = doc.entries().next().unwrap();
        assert_eq!(e.id(), Some("b"));
        assert_eq!(e.get("id"), Some(&json!("b")));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let err = parse(b"{\"id\":\"a\"}\n{\"id\":\"\xff\"}\n").unwrap_err();
        assert_eq!(
            err,
            ParseError::InvalidUtf8 {
                offset: 18,
                line: 2
            }
        );
        assert!(err.to_string().contains("byte offset 18"));
        assert!(parse(b"\xef\xbb").is_err());
        assert!(parse(b"abc\xc3").is_err());
    }

    #[test]
    fn fields_keep_order() {
        let doc = roundtrip("{\"z\":1,\"a\":2,\"id\":\"q\",\"m\":[1,{\"b\":2,\"a\":1}]}\n");
        let keys: Vec<&String> = doc.entries().next().unwrap().fields().keys().collect();
        assert_eq!(keys, vec!["z", "a", "id", "m"]);
    }
}

#[cfg(test)]
mod strictness_tests {
    use super::*;

    /// Lines that `serde_json::Value` rejects must not become entries (their object could not be
    /// built later), and lines it accepts must.
    #[test]
    fn entry_validation_matches_value() {
        for line in [
            r#"{"a":1e400}"#,
            r#"{"a":-1e400}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":"\u00zz"}"#,
            r#"{"a":[1,{"b":1e999}]}"#,
            r#"{"a":123456789012345678901234567890}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"id":"\ud83d\ude00","b":[true,null,-0.0]}"#,
        ] {
            let doc = parse_str(line);
            let is_entry = doc.entries().count() == 1;
            let value_ok = serde_json::from_str::<serde_json::Value>(line).is_ok();
            assert_eq!(is_entry, value_ok, "{line}");
        }
        let doc = parse_str("1e400\n[1e400]\n[1]\n");
        let kinds: Vec<WarningKind> = doc.warnings().iter().map(|w| w.kind).collect();
        assert_eq!(
            kinds,
            vec![
                WarningKind::NonJsonLine,
                WarningKind::NonJsonLine,
                WarningKind::NotAnObject
            ]
        );
        assert_eq!(
            parse_str(r#"{"id":"\ud83d\ude00"}"#)
                .entries()
                .next()
                .unwrap()
                .id(),
            Some("\u{1f600}")
        );
    }
}
