//! Line splitting and the line diff that turns "old text vs new text" into line operations.

use std::time::{Duration, Instant};

use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};

/// Splits `text` into lines, each keeping its own line ending (`\n` or `\r\n`); only the last line
/// may lack one. An empty text has no lines; a text ending with `\n` has no empty last line
/// (the same convention as `crate::canvasl::parse`).
pub(crate) fn split_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / 128 + 1);
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('\n') {
            Some(i) => {
                let (line, tail) = rest.split_at(i + 1);
                out.push(line);
                rest = tail;
            }
            None => {
                out.push(rest);
                rest = "";
            }
        }
    }
    out
}

/// The line ending at the end of `line` (`"\r\n"`, `"\n"` or `""`).
pub(crate) fn ending_of(line: &str) -> &str {
    if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    }
}

/// `line` without its line ending.
pub(crate) fn content_of(line: &str) -> &str {
    &line[..line.len() - ending_of(line).len()]
}

/// One step of a line edit script, applied left to right to the old line list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineOp {
    /// Keep `n` old lines.
    Keep(usize),
    /// Delete `n` old lines.
    Delete(usize),
    /// Insert the new lines `new[start..start + n]`.
    Insert { start: usize, n: usize },
    /// Old line `old` becomes new line `new` (same entry, edited).
    Modify { old: usize, new: usize },
}

/// How long the diff may search for a minimal script before settling for a valid, larger one.
const DIFF_DEADLINE: Duration = Duration::from_millis(500);

/// A line edit script from `old` to `new`. Common prefix and suffix are skipped with plain
/// comparisons; the rest goes to Myers' algorithm. In a replaced block, old and new lines are
/// paired in order as edits of the same entry (that keeps the entry's identity, so concurrent
/// edits of other fields merge); surplus old lines are deletions, surplus new lines insertions.
pub(crate) fn line_script<A: AsRef<str>>(old: &[A], new: &[&str]) -> Vec<LineOp> {
    let prefix = old
        .iter()
        .zip(new.iter())
        .take_while(|(a, b)| a.as_ref() == **b)
        .count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a.as_ref() == **b)
        .count();
    let old_mid: Vec<&str> = old[prefix..old.len() - suffix]
        .iter()
        .map(AsRef::as_ref)
        .collect();
    let new_mid = &new[prefix..new.len() - suffix];
    let mut ops = Vec::new();
    push_keep(&mut ops, prefix);
    if !old_mid.is_empty() || !new_mid.is_empty() {
        let deadline = Instant::now() + DIFF_DEADLINE;
        for op in capture_diff_slices_deadline(Algorithm::Myers, &old_mid, new_mid, Some(deadline))
        {
            match op {
                DiffOp::Equal { len, .. } => push_keep(&mut ops, len),
                DiffOp::Delete { old_len, .. } => ops.push(LineOp::Delete(old_len)),
                DiffOp::Insert {
                    new_index, new_len, ..
                } => ops.push(LineOp::Insert {
                    start: prefix + new_index,
                    n: new_len,
                }),
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    let paired = old_len.min(new_len);
                    for k in 0..paired {
                        ops.push(LineOp::Modify {
                            old: prefix + old_index + k,
                            new: prefix + new_index + k,
                        });
                    }
                    if old_len > paired {
                        ops.push(LineOp::Delete(old_len - paired));
                    }
                    if new_len > paired {
                        ops.push(LineOp::Insert {
                            start: prefix + new_index + paired,
                            n: new_len - paired,
                        });
                    }
                }
            }
        }
    }
    push_keep(&mut ops, suffix);
    ops
}

fn push_keep(ops: &mut Vec<LineOp>, n: usize) {
    if n == 0 {
        return;
    }
    if let Some(LineOp::Keep(k)) = ops.last_mut() {
        *k += n;
    } else {
        ops.push(LineOp::Keep(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_endings() {
        assert_eq!(split_lines(""), Vec::<&str>::new());
        assert_eq!(split_lines("a\n"), vec!["a\n"]);
        assert_eq!(split_lines("a\r\nb"), vec!["a\r\n", "b"]);
        assert_eq!(split_lines("\n\n"), vec!["\n", "\n"]);
        assert_eq!(ending_of("a\r\n"), "\r\n");
        assert_eq!(content_of("a\r\n"), "a");
        assert_eq!(content_of("a\r"), "a\r");
    }

    fn apply(old: &[&str], new: &[&str], ops: &[LineOp]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        for op in ops {
            match op {
                LineOp::Keep(n) => {
                    out.extend(old[i..i + n].iter().map(|s| s.to_string()));
                    i += n;
                }
                LineOp::Delete(n) => i += n,
                LineOp::Insert { start, n } => {
                    out.extend(new[*start..start + n].iter().map(|s| s.to_string()))
                }
                LineOp::Modify { old: o, new: j } => {
                    assert_eq!(*o, i);
                    out.push(new[*j].to_string());
                    i += 1;
                }
            }
        }
        assert_eq!(i, old.len());
        out
    }

    #[test]
    fn scripts_rebuild_the_new_text() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["a", "b", "c"], &["a", "x", "c"]),
            (&["a", "b", "c"], &["c", "a", "b"]),
            (&[], &["a"]),
            (&["a"], &[]),
            (&["a", "a", "a"], &["a", "b", "a", "a"]),
            (&["a", "b"], &["x", "y", "z"]),
        ];
        for (old, new) in cases {
            let ops = line_script(old, new);
            assert_eq!(apply(old, new, &ops), new.to_vec(), "{old:?} -> {new:?}");
        }
        assert_eq!(
            line_script(&["a", "b", "c"], &["a", "x", "c"]),
            vec![
                LineOp::Keep(1),
                LineOp::Modify { old: 1, new: 1 },
                LineOp::Keep(1)
            ]
        );
    }
}
