//! Display names are data, never structure: what a peer may put in a name,
//! how a name is normalised, and the skeleton that look-alike names share.
//!
//! * [`check_text`] refuses control characters (C0 and C1), line and
//!   paragraph separators and Unicode format characters (general category
//!   `Cf`: zero-width characters, bidirectional overrides, soft hyphens…)
//!   in every text field of a presence, so no name can carry a line break
//!   into an Org file or reorder what a person reads.
//! * [`normalize_name`] is NFKC, so fullwidth or compatibility forms of a
//!   name are stored and shown in their plain form.
//! * [`skeleton`] is what the impersonation check compares: NFKC, case
//!   folded, default-ignorable code points removed, and each character
//!   mapped to its UTS #39 confusable prototype (`unicode-security`), so
//!   `alice`, `ＡLICE`, Cyrillic `аlice` and `al\u{ad}ice` share one.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why `c` may not appear in a peer's text, or `None` if it may.
fn forbidden(c: char) -> Option<&'static str> {
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line or paragraph separator")
        }
        GeneralCategory::Format => Some("an invisible format character"),
        _ => None,
    }
}

/// Checks one text field a peer sent (`field` names it in the error).
pub fn check_text(field: &str, s: &str) -> Result<(), String> {
    match s.chars().find_map(|c| forbidden(c).map(|why| (c, why))) {
        Some((c, why)) => Err(format!(
            "presence content: the {field} holds {why} (U+{:04X}); names are plain text",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The stored form of a display name: NFKC, surrounding white space trimmed.
pub fn normalize_name(s: &str) -> String {
    s.nfkc().collect::<String>().trim().to_string()
}

/// The form two names are compared in (UTS #39 skeleton of the case-folded
/// NFKC name, white space collapsed). Empty for an empty name.
pub fn skeleton(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    let folded: String = folded.nfkc().collect();
    let skel: String = unicode_security::skeleton(&folded).collect();
    // Confusable prototypes may be upper case (e.g. `l` → `I`): fold again.
    let skel = skel.to_lowercase();
    skel.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_characters_are_refused() {
        for bad in [
            "a\nb",
            "a\rb",
            "a\u{0}b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2029}b",
            "alice\u{200b}",
            "alice\u{202e}",
            "al\u{ad}ice",
            "\u{feff}x",
            "a\u{1b}[31mb",
        ] {
            assert!(check_text("name", bad).is_err(), "{bad:?}");
        }
        for good in ["alice", "Zoë Ω", "李雷", "a b", "[[x]] * #+begin"] {
            assert!(check_text("name", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let alice = skeleton("alice");
        for twin in [
            "alice\u{200b}",
            "\u{0430}lice",
            "\u{ff41}lice",
            "alice\u{202e}",
            "al\u{ad}ice",
            "ALICE",
            "  Alice ",
            "a1ice",
        ] {
            assert_eq!(skeleton(twin), alice, "{twin:?}");
        }
        assert_ne!(skeleton("bob"), alice);
        assert_ne!(skeleton("alicia"), alice);
        assert_eq!(normalize_name(" \u{ff41}lice "), "alice");
    }
}
