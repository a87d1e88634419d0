//! CanvasL reading and writing, byte for byte.
//!
//! CanvasL, as found in the wild, is a line-oriented format: optional `@name value` directive lines,
//! then one JSON object per line ("entries"), blank lines allowed. No single spec is followed, so
//! this module accepts everything the public corpus contains (see `tests/data/corpus/`) and writes
//! an unchanged document back **byte-identical**: BOM, every line's raw text and every line's own
//! line ending are kept.
//!
//! * [`parse()`] / [`parse_str`] read a [`Document`]; they never drop a line and never fail except
//!   on invalid UTF-8. Oddities are reported as [`Warning`]s ([`Document::warnings`]).
//! * [`write()`] turns a [`Document`] back into bytes.
//! * [`Document`] has the editing helpers a merge layer needs ([`Document::set_entry_field`],
//!   [`Document::remove_entry`], [`Document::insert_entry_after`], ...). Only edited entries are
//!   re-serialized (compact JSON, original key order, new keys appended).
//! * Entries are identified by an [`EntryKey`] (id + occurrence index), because ids repeat a lot in
//!   real files: two entries are never merged just because they share an id.
//!
//! ```
//! use meta_log_federation_module::canvasl::{parse, write, EntryKey};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut doc = parse(b"@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"a\"}\n")?;
//! assert_eq!(write(&doc), b"@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"a\"}\n");
//! // The second "a" is a different entry: ("a", 1).
//! doc.set_entry_field(&EntryKey::new("a", 1), "x", json!(2))?;
//! assert_eq!(doc.lines()[2].raw(), r#"{"id":"a","x":2}"#);
//! # Ok(())
//! # }
//! ```
//!
//! Dependencies: `serde_json` (feature `preserve_order`, so key order survives an edit), `serde`
//! (a small id-extracting visitor, so that parsing does not build every JSON map up front) and
//! `thiserror` (error types). Nothing else.

pub mod bench;
pub mod generate;
pub mod model;
pub mod parse;
pub mod write;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod proptest_lite;

pub use generate::generate_canvas;
pub use model::{
    Directive, DirectiveForm, Document, EditError, Entry, EntryKey, Line, LineEnding, LineKind,
    OtherReason,
};
pub use parse::{parse, parse_str, ParseError, Warning, WarningKind};
pub use write::{write, write_to};

#[cfg(test)]
mod tests {
    use super::{parse, write, EntryKey};
    use serde_json::json;

    /// The example from the module docs.
    #[test]
    fn doc_example() -> Result<(), Box<dyn std::error::Error>> {
        let mut doc = parse(b"@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"a\"}\n")?;
        assert_eq!(
            write(&doc),
            b"@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"a\"}\n"
        );
        doc.set_entry_field(&EntryKey::new("a", 1), "x", json!(2))?;
        assert_eq!(doc.lines()[2].raw(), r#"{"id":"a","x":2}"#);
        Ok(())
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn document_is_send_and_sync() {
        assert_send_sync::<super::Document>();
        assert_send_sync::<super::Warning>();
        assert_send_sync::<super::ParseError>();
    }
}
