//! CanvasL files from Elisp: parse a file into directives, entries and warnings.

use super::convert::CallTimer;
use super::errors::{guard, signal, Kind};
use crate::canvasl::{self, LineEnding};
use emacs::{defun, Env, IntoLisp, Result, Value};

fn keyword<'e>(env: &'e Env, name: &str) -> Result<Value<'e>> {
    env.intern(name)
}

fn opt_str<'e>(env: &'e Env, s: Option<&str>) -> Result<Value<'e>> {
    match s {
        Some(s) => s.into_lisp(env),
        None => ().into_lisp(env),
    }
}

/// Parse the CanvasL file FILE and return what it holds as a plist.
///
/// Internal: use `meta-log-federation-canvasl-parse'.  The plist has
/// :directives, a list of (NAME . VALUE) in file order; :entries, a list
/// of plists (:line N :id ID :occurrence K :type TYPE :json TEXT), where
/// ID repeats in real files and (ID . K) tells entries apart; :warnings,
/// a list of (LINE KIND MESSAGE); :bom and :crlf, non-nil when the file
/// has a byte-order mark or CRLF line endings.
#[defun(name = "-canvasl-parse")]
fn canvasl_parse(env: &Env, file: String) -> Result<Value<'_>> {
    let _t = CallTimer::start("canvasl_parse");
    guard(env, || {
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => return signal(env, Kind::General, format!("cannot read {file}: {e}")),
        };
        let doc = match canvasl::parse(&bytes) {
            Ok(d) => d,
            Err(e) => return signal(env, Kind::General, format!("{file}: {e}")),
        };
        let mut directives = Vec::new();
        for d in doc.directives() {
            directives.push(env.cons(d.name.as_str(), d.text().as_ref())?);
        }
        let mut entries = Vec::new();
        for (i, line) in doc.lines().iter().enumerate() {
            if let Some(e) = line.as_entry() {
                entries.push(env.list((
                    keyword(env, ":line")?,
                    (i + 1) as i64,
                    keyword(env, ":id")?,
                    opt_str(env, e.id())?,
                    keyword(env, ":occurrence")?,
                    e.occurrence() as i64,
                    keyword(env, ":type")?,
                    opt_str(env, e.entry_type())?,
                    keyword(env, ":json")?,
                    e.raw(),
                ))?);
            }
        }
        let mut warnings = Vec::new();
        for w in doc.warnings() {
            warnings.push(env.list((
                w.line as i64,
                env.intern(w.kind.as_str())?,
                w.message.as_str(),
            ))?);
        }
        env.list((
            keyword(env, ":directives")?,
            env.list(&directives[..])?,
            keyword(env, ":entries")?,
            env.list(&entries[..])?,
            keyword(env, ":warnings")?,
            env.list(&warnings[..])?,
            keyword(env, ":bom")?,
            doc.has_bom(),
            keyword(env, ":crlf")?,
            doc.line_ending() == LineEnding::CrLf,
        ))
    })
}
