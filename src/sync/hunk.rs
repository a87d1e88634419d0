//! [`Hunk`]: the lines that changed between two versions of a synced file, so that a buffer
//! visiting the file can be patched in place instead of reverted ([`super::Action::Updated`]).
//!
//! # Shape
//!
//! A list of hunks describes how the *old* text (the file as the engine last wrote or read it,
//! which is what an unmodified buffer visiting the file shows) becomes the new text:
//!
//! * hunks are ordered by `start_line`, do not overlap and do not touch each other's lines;
//! * `start_line` is 0-based and counts lines of the **old** text;
//! * a hunk removes `delete` old lines starting at `start_line` (their text, endings included,
//!   is in `deleted`, so the receiver can check that it patches the text the hunk was made for)
//!   and puts the lines of `insert` (endings included) in their place.
//!
//! Apply them **bottom-up** (last hunk first): then every `start_line` is still a line number
//! of the text being patched. Lines are split after each `\n`; only the last line of a text may
//! lack an ending, and a byte order mark stays part of the first line.

use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};
use std::time::{Duration, Instant};

use crate::merge::split_lines;

/// One changed block of lines. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// First old line replaced (0-based, in the old text).
    pub start_line: usize,
    /// Where that line starts in the old text, in bytes (lets a receiver find it without
    /// counting lines).
    pub start_byte: usize,
    /// How many old lines are removed (0 for a pure insertion).
    pub delete: usize,
    /// The removed old lines, endings included (`delete` of them).
    pub deleted: Vec<String>,
    /// The new lines put in their place, endings included.
    pub insert: Vec<String>,
}

/// Above this many changed bytes (old and new together) no hunks are made: reverting the
/// buffer costs less than sending and applying them.
pub const MAX_HUNK_BYTES: usize = 1 << 20;

/// How long the line diff of the changed middle may search before settling for larger hunks.
const DIFF_DEADLINE: Duration = Duration::from_millis(50);

/// The hunks turning `old` into `new` (empty when they are equal), or `None` when they cannot
/// be made usefully: a text that is not UTF-8, or changes above [`MAX_HUNK_BYTES`].
///
/// Cost: two byte comparisons of the unchanged start and end (memory speed), a count of the
/// line endings before the first change, and a line diff of the changed middle only.
pub fn hunks_between(old: &[u8], new: &[u8]) -> Option<Vec<Hunk>> {
    // The unchanged start, cut back to a line start.
    let mut prefix = common_prefix(old, new);
    let room = old.len().min(new.len()) - prefix;
    let mut suffix = common_suffix(&old[prefix..], &new[prefix..], room);
    if prefix == old.len() && prefix == new.len() {
        return Some(Vec::new());
    }
    prefix = old[..prefix]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // The unchanged end, moved forward to a line start (the same in both: the bytes after it
    // are equal, and so is the byte before it once it follows a line ending of the suffix).
    let at_line_start = |text: &[u8], at: usize| at == 0 || text[at - 1] == b'\n';
    if !(at_line_start(old, old.len() - suffix) && at_line_start(new, new.len() - suffix)) {
        suffix = match old[old.len() - suffix..].iter().position(|&b| b == b'\n') {
            Some(i) => suffix - i - 1,
            None => 0,
        };
    }
    let old_mid = &old[prefix..old.len() - suffix];
    let new_mid = &new[prefix..new.len() - suffix];
    if old_mid.len() + new_mid.len() > MAX_HUNK_BYTES {
        return None;
    }
    // Cuts are after line endings (ASCII), so the middles are text when the files are.
    let old_mid = std::str::from_utf8(old_mid).ok()?;
    let new_mid = std::str::from_utf8(new_mid).ok()?;
    let first = memchr::memchr_iter(b'\n', &old[..prefix]).count();
    let old_lines = split_lines(old_mid);
    let new_lines = split_lines(new_mid);
    let deadline = Instant::now() + DIFF_DEADLINE;
    // Byte offset of each old middle line.
    let mut offsets = Vec::with_capacity(old_lines.len() + 1);
    let mut at = prefix;
    for l in &old_lines {
        offsets.push(at);
        at += l.len();
    }
    offsets.push(at);
    let mut out: Vec<Hunk> = Vec::new();
    let owned = |ls: &[&str]| ls.iter().map(|l| (*l).to_owned()).collect::<Vec<String>>();
    for op in capture_diff_slices_deadline(Algorithm::Myers, &old_lines, &new_lines, Some(deadline))
    {
        let (old_index, old_len, new_index, new_len) = match op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete {
                old_index,
                old_len,
                new_index,
            } => (old_index, old_len, new_index, 0),
            DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => (old_index, 0, new_index, new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (old_index, old_len, new_index, new_len),
        };
        let deleted = owned(&old_lines[old_index..old_index + old_len]);
        let insert = owned(&new_lines[new_index..new_index + new_len]);
        match out.last_mut() {
            // Adjacent operations (a delete next to an insert) make one hunk.
            Some(h) if h.start_line + h.delete == first + old_index => {
                h.delete += old_len;
                h.deleted.extend(deleted);
                h.insert.extend(insert);
            }
            _ => out.push(Hunk {
                start_line: first + old_index,
                start_byte: offsets[old_index],
                delete: old_len,
                deleted,
                insert,
            }),
        }
    }
    Some(out)
}

/// Compared a block at a time: slice equality is a `memcmp`, far faster than byte by byte.
const BLOCK: usize = 4096;

/// Length of the common start of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Length of the common end of `a` and `b`, at most `max`.
fn common_suffix(a: &[u8], b: &[u8], max: usize) -> usize {
    let n = a.len().min(b.len()).min(max);
    let (ea, eb) = (a.len(), b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[ea - i - BLOCK..ea - i] == b[eb - i - BLOCK..eb - i] {
        i += BLOCK;
    }
    while i < n && a[ea - i - 1] == b[eb - i - 1] {
        i += 1;
    }
    i
}

/// Applies `hunks` (made for `old`) bottom-up; `None` when a hunk does not fit `old` (its
/// deleted lines are not there). The receiver's rule, in Rust: used by the tests and the
/// property test.
pub fn apply_hunks(old: &str, hunks: &[Hunk]) -> Option<String> {
    let mut lines: Vec<&str> = split_lines(old);
    let mut owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    lines.clear();
    for h in hunks.iter().rev() {
        let end = h.start_line.checked_add(h.delete)?;
        if end > owned.len() || owned[h.start_line..end] != h.deleted[..] {
            return None;
        }
        owned.splice(h.start_line..end, h.insert.iter().cloned());
    }
    Some(owned.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(old: &str, new: &str) -> Vec<Hunk> {
        let hunks = hunks_between(old.as_bytes(), new.as_bytes()).expect("hunks");
        assert_eq!(
            apply_hunks(old, &hunks).as_deref(),
            Some(new),
            "{old:?} -> {new:?}: {hunks:?}"
        );
        for h in &hunks {
            let before: usize = crate::merge::split_lines(old)[..h.start_line]
                .iter()
                .map(|l| l.len())
                .sum();
            assert_eq!(h.start_byte, before, "{old:?} -> {new:?}: {h:?}");
        }
        for w in hunks.windows(2) {
            assert!(w[0].start_line + w[0].delete < w[1].start_line, "{hunks:?}");
        }
        hunks
    }

    #[test]
    fn one_changed_line_is_one_hunk() {
        let h = check("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(
            h,
            vec![Hunk {
                start_line: 1,
                start_byte: 2,
                delete: 1,
                deleted: vec!["b\n".into()],
                insert: vec!["B\n".into()],
            }]
        );
        assert!(check("a\nb\n", "a\nb\n").is_empty());
    }

    #[test]
    fn edges_and_partial_lines() {
        let cases = [
            ("", "a\n"),
            ("a\n", ""),
            ("a", "a\nb"),
            ("a\nb", "a\n"),
            ("a\nb\nc", "a\nb\nd"),
            ("x\na\na\n", "x\na\n"),
            ("a\na\na\n", "a\na\na\na\n"),
            ("a\nb\nc\nd\ne\n", "A\nb\nc\nd\nE\n"),
            ("\u{feff}a\nb\n", "\u{feff}A\nb\n"),
            ("é\nü\n", "é\nö\n"),
            ("a\r\nb\r\n", "a\r\nc\r\n"),
            ("ab\n", "ac\n"),
            ("abc\nabd\n", "abd\n"),
        ];
        for (o, n) in cases {
            check(o, n);
        }
    }

    #[test]
    fn far_apart_changes_are_separate_hunks() {
        let old: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let new = old
            .replace("line 3\n", "line three\n")
            .replace("line 900\n", "");
        let h = check(&old, &new);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].start_line, h[1].start_line, h[1].delete), (3, 900, 1));
    }

    #[test]
    fn long_texts_changed_near_block_edges() {
        let old: String = (0..3000).map(|i| format!("line {i:05}\n")).collect();
        for at in [0, 4095, 4096, 4097, 8191, old.len() / 2, old.len() - 5] {
            let mut new = old.clone().into_bytes();
            new[at] = if new[at] == b'x' { b'y' } else { b'x' };
            check(&old, std::str::from_utf8(&new).expect("ascii"));
        }
    }

    #[test]
    fn stale_hunks_do_not_apply() {
        let h = check("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(apply_hunks("a\nX\nc\n", &h), None);
        assert_eq!(apply_hunks("a\n", &h), None);
    }

    #[test]
    fn refused_when_not_text_or_too_large() {
        assert_eq!(hunks_between(b"a\n\xff\n", b"a\n\xfe\n"), None);
        let big = "x".repeat(MAX_HUNK_BYTES + 1);
        assert_eq!(hunks_between(b"", big.as_bytes()), None);
    }

    #[test]
    fn random_edits_round_trip() {
        // A small deterministic generator: many seeds, texts made of few distinct lines so that
        // the diff meets repeats.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for _ in 0..2000 {
            let mut old = String::new();
            for _ in 0..next(12) {
                old.push_str(["a\n", "b\n", "c", "é\n", "\n", "dd\r\n"][next(6) as usize]);
            }
            let mut new = old.clone();
            for _ in 0..=next(3) {
                let at = (next(new.len() as u64 + 1)) as usize;
                if !new.is_char_boundary(at) {
                    continue;
                }
                match next(3) {
                    0 => new.insert_str(at, ["x", "\n", "y\nz\n"][next(3) as usize]),
                    _ => {
                        let end = (at + next(4) as usize).min(new.len());
                        if new.is_char_boundary(end) {
                            new.replace_range(at..end, "");
                        }
                    }
                }
            }
            check(&old, &new);
        }
    }
}
