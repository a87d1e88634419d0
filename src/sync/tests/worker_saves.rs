//! The edit path of `super::save`, as the session's worker and the Elisp glue run it: saves
//! handed over as changed lines and written by the engine, merged changes offered to the
//! buffer as hunks and written once it shows them. A property test over many seeds where two
//! people type and save while the other's changes arrive, the engine's answers reaching the
//! buffers late (as events do), in any order with the typing.

use std::collections::VecDeque;
use std::path::PathBuf;

use super::hunk::apply_hunks;
use super::util::{read, Bus, T0};
use super::{Action, BufferSave, LineEdit, ShareId, SyncConfig};
use crate::canvasl::generate::XorShift;
use crate::federation::SyncKind;

const BASE: &str =
    "@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"c\",\"x\":3}\n";

/// Lines at the top and bottom that `old` and `new` share.
fn common_lines(old: &str, new: &str) -> (usize, usize) {
    let a = crate::merge::split_lines(old);
    let b = crate::merge::split_lines(new);
    let before = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let room = a.len().min(b.len()) - before;
    let after = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    (before, after)
}

/// A buffer visiting the shared file, with what `meta-log-federation-save.el` keeps.
struct Buffer {
    path: PathBuf,
    text: String,
    modified: bool,
    /// The text its tracked changes started from.
    base: String,
    base_version: Option<u64>,
    base_seq: Option<u64>,
    /// The file time the buffer started from (visited or reverted).
    base_mtime: Option<(i64, u32)>,
    pending: Option<u64>,
    offer: Option<u64>,
}

/// The modification time of `path`, as Emacs hands it over.
fn mtime(path: &std::path::Path) -> Option<(i64, u32)> {
    let d = std::fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((d.as_secs() as i64, d.subsec_nanos()))
}

/// An event in flight between peers: from, to, kind, content, tags.
type Msg = (usize, usize, SyncKind, String, Vec<Vec<String>>);

struct World {
    bus: Bus,
    share: ShareId,
    bufs: Vec<Buffer>,
    /// Messages between the peers.
    queue: VecDeque<Msg>,
    /// The engine's answers on their way to each buffer (the session's events).
    events: Vec<VecDeque<Action>>,
    seq: u64,
    patched: usize,
    saved: usize,
    merged_saves: usize,
}

impl World {
    fn new() -> World {
        World::with_text(BASE)
    }

    /// Two peers visiting a shared canvas of `text`.
    fn with_text(text: &str) -> World {
        let mut bus = Bus::new(2, 7, &SyncConfig::default());
        bus.shuffle = false;
        bus.dup_per_mille = 0;
        let path = bus.nodes[0].write_home("plan.canvasl", text.as_bytes());
        bus.on(0, |e, now| e.share(&path, None, now))
            .expect("share");
        bus.run();
        let share = ShareId::new(&bus.nodes[0].id, "plan.canvasl").expect("id");
        let p1 = bus.nodes[1].file_of(&share);
        let p0 = path.canonicalize().expect("canonical");
        let visit = |path: PathBuf| {
            let text = String::from_utf8(read(&path)).expect("utf-8");
            Buffer {
                base: text.clone(),
                text,
                modified: false,
                base_version: None,
                base_seq: None,
                base_mtime: mtime(&path),
                pending: None,
                offer: None,
                path,
            }
        };
        let mut w = World {
            bus,
            share,
            bufs: vec![visit(p0), visit(p1)],
            queue: VecDeque::new(),
            events: vec![VecDeque::new(), VecDeque::new()],
            seq: 0,
            patched: 0,
            saved: 0,
            merged_saves: 0,
        };
        // Visiting holds the file (as `meta-log-federation--sync-visit` does).
        for node in 0..2 {
            let url = w.share.url();
            let a = w.bus.nodes[node]
                .engine()
                .hold_writes(&url, true)
                .expect("hold");
            w.engine_did(node, a);
        }
        w
    }

    /// What the worker does with an operation's actions: publishes go to the other peer,
    /// the rest (and the offers it makes after every operation) become events.
    fn engine_did(&mut self, node: usize, actions: Vec<Action>) {
        let offers = self.bus.nodes[node].engine().take_offers();
        for a in actions.into_iter().chain(offers) {
            match a {
                Action::Publish {
                    kind,
                    content,
                    tags,
                } => self.queue.push_back((node, 1 - node, kind, content, tags)),
                other => self.events[node].push_back(other),
            }
        }
    }

    fn deliver(&mut self, pick: usize) {
        if self.queue.is_empty() {
            return;
        }
        let (from, to, kind, content, tags) =
            self.queue.remove(pick % self.queue.len()).expect("message");
        let from_id = self.bus.nodes[from].id.clone();
        let a = self.bus.nodes[to]
            .engine()
            .handle(&from_id, kind, &content, &tags, T0)
            .expect("handle");
        self.engine_did(to, a);
    }

    fn type_into(&mut self, node: usize, rng: &mut XorShift, token: &str) {
        let url = self.share.url();
        if !self.bufs[node].modified {
            let a = self.bus.nodes[node]
                .engine()
                .hold_writes(&url, true)
                .expect("hold");
            self.engine_did(node, a);
            self.bufs[node].modified = true;
        }
        let b = &mut self.bufs[node];
        let lines = crate::merge::split_lines(&b.text);
        let at = 1 + rng.below(lines.len() as u64) as usize;
        let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        out.insert(at.min(out.len()), format!("{{\"id\":\"{token}\"}}\n"));
        b.text = out.concat();
    }

    /// `meta-log-federation--save-on-worker`: the changed lines handed over, the buffer
    /// unmodified at once.
    fn save(&mut self, node: usize, rng: &mut XorShift) {
        self.seq += 1;
        let seq = self.seq;
        let b = &mut self.bufs[node];
        let (mut before, mut after) = common_lines(&b.base, &b.text);
        // Emacs' record may be coarser than the exact change.
        before -= rng.below(before as u64 + 1) as usize / 2;
        after -= rng.below(after as u64 + 1) as usize / 2;
        let base_lines = crate::merge::split_lines(&b.base);
        let new_lines = crate::merge::split_lines(&b.text);
        let save = BufferSave {
            edit: LineEdit {
                head: base_lines[..before].iter().map(|l| l.len()).sum(),
                tail: base_lines[base_lines.len() - after..]
                    .iter()
                    .map(|l| l.len())
                    .sum(),
                middle: new_lines[before..new_lines.len() - after]
                    .concat()
                    .into_bytes(),
                base_mtime: b.base_mtime,
            },
            base_version: b.base_version,
            base_seq: b.base_seq,
            seq,
        };
        b.modified = false;
        b.base = b.text.clone();
        b.base_version = None;
        b.base_seq = Some(seq);
        b.base_mtime = None;
        b.pending = Some(seq);
        let url = self.share.url();
        let a = self.bus.nodes[node]
            .engine()
            .save_buffer(&url, &save, T0)
            .expect("save");
        self.engine_did(node, a);
    }

    /// One event reaches the buffer of `node`, as `meta-log-federation-save.el` handles it.
    fn event(&mut self, node: usize) {
        let Some(ev) = self.events[node].pop_front() else {
            return;
        };
        let url = self.share.url();
        let b = &mut self.bufs[node];
        match ev {
            Action::Saved {
                seq, version, path, ..
            } => {
                assert_eq!(path, b.path);
                self.saved += 1;
                if b.pending == Some(seq) {
                    b.pending = None;
                    b.base_version = Some(version);
                    b.base_seq = None;
                    b.base_mtime = mtime(&b.path);
                    // The file holds the saved text (later saves may be on their way).
                    let file = String::from_utf8(read(&b.path)).expect("utf-8");
                    assert_eq!(file, b.base, "the file is the saved buffer's text");
                }
            }
            Action::SaveNotTaken { seq, failed, .. } => {
                assert!(!failed, "no write fails here");
                if b.pending == Some(seq) {
                    b.pending = None;
                }
                b.base_version = None;
                b.base_seq = None;
                if b.modified {
                    return;
                }
                // Saved again the usual way: Emacs writes the file, the worker reads it.
                std::fs::write(&b.path, &b.text).expect("write");
                self.seq += 1;
                let seq = self.seq;
                b.base = b.text.clone();
                b.base_seq = Some(seq);
                b.base_mtime = mtime(&b.path);
                b.pending = Some(seq);
                let a = self.bus.nodes[node]
                    .engine()
                    .save_buffer_file(&url, seq, T0)
                    .expect("save file");
                self.engine_did(node, a);
            }
            Action::Offered {
                from,
                version,
                hunks,
                ..
            } => {
                if b.modified || b.pending.is_some() {
                    // Left for the next save, which takes the changes in.
                    return;
                }
                // A buffer that started from another text is not patched: flushed below.
                let hunks = hunks.filter(|_| b.base_version.is_none_or(|v| v == from));
                match hunks.and_then(|h| apply_hunks(&b.text, &h)) {
                    Some(new) => {
                        self.patched += 1;
                        b.text = new;
                        b.base = b.text.clone();
                        b.base_version = Some(version);
                        b.base_seq = None;
                        b.base_mtime = None;
                        b.offer = Some(version);
                        let a = self.bus.nodes[node]
                            .engine()
                            .write_offered(&url, version)
                            .expect("write offered");
                        self.engine_did(node, a);
                    }
                    None => {
                        // `meta-log-federation--sync-flush`: written and shown in one step.
                        b.base_version = None;
                        let e = self.bus.nodes[node].engine();
                        let mut a = e.hold_writes(&url, false).expect("release");
                        a.extend(e.hold_writes(&url, true).expect("hold"));
                        for x in &a {
                            if let Action::Updated { .. } = x {
                                let file = String::from_utf8(read(&b.path)).expect("utf-8");
                                b.text = file.clone();
                                b.base = file;
                                b.base_mtime = mtime(&b.path);
                            }
                        }
                        let rest = a
                            .into_iter()
                            .filter(|x| !matches!(x, Action::Updated { .. }))
                            .collect();
                        self.engine_did(node, rest);
                    }
                }
            }
            Action::OfferWritten { version, .. } => {
                if b.offer == Some(version) {
                    b.offer = None;
                    b.base_mtime = mtime(&b.path);
                }
            }
            Action::Updated { hunks, .. } => {
                if !b.modified {
                    let file = String::from_utf8(read(&b.path)).expect("utf-8");
                    b.text = match hunks.and_then(|h| apply_hunks(&b.text, &h)) {
                        Some(t) if t == file => t,
                        _ => file,
                    };
                    b.base = b.text.clone();
                    b.base_version = None;
                    b.base_mtime = mtime(&b.path);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn quiet(&self) -> bool {
        self.queue.is_empty() && self.events.iter().all(|e| e.is_empty())
    }
}

/// Two people type (new entries, each a unique token) into buffers visiting the share on two
/// peers and save now and then; the saves go to the engine as changed lines, the other's
/// changes arrive, and the engine's answers reach the buffers late, interleaved with the
/// typing. At the end both files and both buffers are the same text and every token typed is
/// in it: no typed character and no peer's change is lost.
#[test]
fn worker_saves_offers_and_typing_converge_and_lose_nothing() {
    let (mut patched, mut saved) = (0, 0);
    let mut merged = 0;
    for seed in 0..60u64 {
        let mut rng = XorShift::new(seed ^ 0x5a5e);
        let mut w = World::new();
        let mut tokens = Vec::new();
        for step in 0..50 {
            let node = rng.below(2) as usize;
            match rng.below(12) {
                0..=3 => {
                    let t = format!("t{seed}-{node}-{step}");
                    w.type_into(node, &mut rng, &t);
                    tokens.push(t);
                }
                4..=5 => {
                    if w.bufs[node].modified || rng.below(4) == 0 {
                        if w.bus.nodes[node].engine().held_with_changes().is_empty() {
                            w.save(node, &mut rng);
                        } else {
                            w.merged_saves += 1;
                            w.save(node, &mut rng);
                        }
                    }
                }
                6..=8 => w.event(node),
                _ => {
                    let pick = rng.below(8) as usize;
                    w.deliver(pick);
                }
            }
        }
        // Everyone saves what they typed; everything is delivered and answered.
        for _ in 0..8 {
            for node in 0..2 {
                if w.bufs[node].modified {
                    w.save(node, &mut rng);
                }
            }
            while !w.quiet() {
                w.deliver(0);
                w.event(0);
                w.event(1);
            }
        }
        let f0 = read(&w.bufs[0].path);
        let f1 = read(&w.bufs[1].path);
        if f0 != f1 {
            for n in 0..2 {
                let held = w.bus.nodes[n].engine().held_with_changes();
                let b = &w.bufs[n];
                eprintln!(
                    "DEBUG node {n}: held {:?} modified {} version {:?} seq {:?} pending {:?} offer {:?} text==file {}",
                    held.len(), b.modified, b.base_version, b.base_seq, b.pending, b.offer,
                    b.text.as_bytes() == read(&b.path)
                );
            }
        }
        assert_eq!(f0, f1, "seed {seed}: the files converge");
        let text = String::from_utf8(f0).expect("utf-8");
        for b in &w.bufs {
            assert!(!b.modified, "seed {seed}");
            assert_eq!(b.text, text, "seed {seed}: each buffer shows the file");
        }
        for t in &tokens {
            assert!(text.contains(t.as_str()), "seed {seed}: {t} was lost");
        }
        patched += w.patched;
        saved += w.saved;
        merged += w.merged_saves;
    }
    // The worker's paths were taken: saves answered, offers patched in, saves that met
    // changes merged meanwhile.
    assert!(
        saved > 200 && patched > 100 && merged > 50,
        "saved {saved}, patched {patched}, merged saves {merged}"
    );
}

/// A save handed over as lines is written by the engine: the file is the buffer's text, the
/// other peer gets the change, and a save whose base the engine does not know changes nothing.
#[test]
fn a_buffer_save_writes_the_file_and_an_unknown_base_changes_nothing() {
    let mut w = World::new();
    let mut rng = XorShift::new(3);
    w.type_into(0, &mut rng, "typed");
    w.save(0, &mut rng);
    let file = String::from_utf8(read(&w.bufs[0].path)).expect("utf-8");
    assert_eq!(file, w.bufs[0].text);
    assert!(matches!(w.events[0].front(), Some(Action::Saved { .. })));
    while !w.quiet() {
        w.deliver(0);
        w.event(0);
        w.event(1);
    }
    assert!(String::from_utf8(read(&w.bufs[1].path))
        .expect("utf-8")
        .contains("typed"));
    assert_eq!(w.bufs[1].text, w.bufs[0].text, "patched from the offer");
    // A base the engine does not know: not taken, nothing written.
    let url = w.share.url();
    let before = read(&w.bufs[0].path);
    let save = BufferSave {
        edit: LineEdit {
            head: 0,
            tail: 0,
            middle: b"garbage\n".to_vec(),
            base_mtime: None,
        },
        base_version: Some(u64::MAX),
        base_seq: None,
        seq: 999,
    };
    let a = w.bus.nodes[0]
        .engine()
        .save_buffer(&url, &save, T0)
        .expect("save");
    assert!(
        matches!(
            &a[..],
            [Action::SaveNotTaken {
                failed: false,
                seq: 999,
                ..
            }]
        ),
        "{a:?}"
    );
    assert_eq!(read(&w.bufs[0].path), before);
}

/// A save of the buffer visiting `path`, whose text is `old`, that replaces the line starting
/// at byte `start` with `middle`.
fn line_save(
    path: &std::path::Path,
    old: &str,
    start: usize,
    middle: &[u8],
    seq: u64,
) -> BufferSave {
    let end = start + old[start..].find('\n').expect("ending") + 1;
    BufferSave {
        edit: LineEdit {
            head: start,
            tail: old.len() - end,
            middle: middle.to_vec(),
            base_mtime: mtime(path),
        },
        base_version: None,
        base_seq: None,
        seq,
    }
}

/// The file's text goes with a save until its write (`begin_save` hands it to `finish_save`):
/// a save the document refuses (here: bytes that are not UTF-8) gives it back, so the next save
/// of the buffer is taken as usual.
#[test]
fn a_refused_save_leaves_the_file_text_known_for_the_next() {
    let mut w = World::new();
    let url = w.share.url();
    let path = w.bufs[0].path.clone();
    let old = String::from_utf8(read(&path)).expect("utf-8");
    let start = old.find("{\"id\":\"b\"").expect("line b");
    let end = start + old[start..].find('\n').expect("ending") + 1;
    let refused = w.bus.nodes[0].engine().save_buffer(
        &url,
        &line_save(&path, &old, start, b"{\"id\":\"b\",\"x\":\"\xff\"}\n", 1),
        T0,
    );
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(read(&path), old.as_bytes(), "nothing written");
    let line = old[start..end].replace("}", ",\"y\":3}");
    let done = w.bus.nodes[0]
        .engine()
        .save_buffer(&url, &line_save(&path, &old, start, line.as_bytes(), 2), T0)
        .expect("save");
    assert!(
        done.iter().any(|a| matches!(a, Action::Publish { .. }))
            && done
                .iter()
                .any(|a| matches!(a, Action::Saved { seq: 2, .. })),
        "{done:?}"
    );
    let expected = format!("{}{}{}", &old[..start], line, &old[end..]);
    assert_eq!(read(&path), expected.as_bytes());
}

/// Saves one after the other hash their text from the first changed byte on (the hash states
/// of the last save, `super::super::midstate`): what the state records is the file's real
/// hash, so a restart recognizes the file and takes nothing in.
#[test]
fn saves_after_saves_record_the_hash_a_restart_recognizes() {
    let lines: String = (0..9_000)
        .map(|i| format!("{{\"id\":\"n{i}\",\"type\":\"text\",\"text\":\"node {i} of the canvas, long enough\",\"x\":{i}}}\n"))
        .collect();
    let text = format!("@version 1.0\n{lines}");
    assert!(text.len() > 2 * crate::sync::midstate::MIDSTATE_EVERY);
    let mut w = World::with_text(&text);
    let url = w.share.url();
    let path = w.bufs[0].path.clone();
    // Past two kept states, further on, then at the start.
    for (seq, n) in [(1u64, 7_000), (2, 8_500), (3, 3)] {
        let old = String::from_utf8(read(&path)).expect("utf-8");
        let start = old.find(&format!("{{\"id\":\"n{n}\"")).expect("line");
        let end = start + old[start..].find('\n').expect("ending") + 1;
        let line = old[start..end].replace("}\n", &format!(",\"saved\":{seq}}}\n"));
        let done = w.bus.nodes[0]
            .engine()
            .save_buffer(
                &url,
                &line_save(&path, &old, start, line.as_bytes(), seq),
                T0,
            )
            .expect("save");
        assert!(
            done.iter().any(|a| matches!(a, Action::Saved { .. })),
            "{done:?}"
        );
        let recorded = w.bus.nodes[0]
            .engine()
            .live(&w.share)
            .expect("live")
            .state
            .meta
            .file_sha256;
        assert_eq!(
            recorded,
            crate::sync::store::sha256(&read(&path)),
            "save {seq}"
        );
    }
    let saved = read(&path);
    w.bus.nodes[0].close();
    w.bus.nodes[0].reopen();
    let a = w.bus.nodes[0].engine().startup(T0 + 1).expect("startup");
    assert!(
        !a.iter().any(|a| matches!(
            a,
            Action::Publish {
                kind: SyncKind::Change,
                ..
            }
        )),
        "the file was taken in as an edit: {a:?}"
    );
    assert_eq!(read(&path), saved);
}

/// A save's change goes out before its file is written (`begin_save`, then `finish_save`). When
/// the write then fails, the edit is kept all the same: the buffer is told (marked modified
/// again), the peers have the change, and the state says the file may hold the old text, so
/// a restart writes it (the old file is not taken for an edit undoing the change).
#[test]
fn a_save_whose_file_cannot_be_written_still_goes_out_and_a_restart_writes_it() {
    let mut w = World::new();
    let url = w.share.url();
    let path = w.bufs[0].path.clone();
    let old = String::from_utf8(read(&path)).expect("utf-8");
    let new = old.replace("\"x\":2}", "\"x\":22}");
    let start = old.find("{\"id\":\"b\"").expect("line b");
    let end = |t: &str| start + t[start..].find('\n').expect("ending") + 1;
    let save = BufferSave {
        edit: LineEdit {
            head: start,
            tail: old.len() - end(&old),
            middle: new.as_bytes()[start..end(&new)].to_vec(),
            base_mtime: mtime(&path),
        },
        base_version: None,
        base_seq: None,
        seq: 1,
    };
    let (actions, write) = w.bus.nodes[0]
        .engine()
        .begin_save(&url, &save, T0)
        .expect("begin");
    let write = write.expect("the save is taken");
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Publish {
                kind: SyncKind::Change,
                ..
            }
        )),
        "{actions:?}"
    );
    // The file cannot be written: a directory in its place (which stops root too).
    std::fs::remove_file(&path).expect("remove");
    std::fs::create_dir(&path).expect("mkdir");
    let done = w.bus.nodes[0].engine().finish_save(write).expect("finish");
    assert!(
        matches!(
            &done[..],
            [Action::SaveNotTaken {
                failed: true,
                seq: 1,
                ..
            }]
        ),
        "{done:?}"
    );
    // The file as a failed write leaves it: the old text.
    std::fs::remove_dir(&path).expect("rmdir");
    std::fs::write(&path, &old).expect("old text");
    // The peer has the change (written to its file once its buffer lets go).
    w.bus.absorb(0, actions);
    w.bus.run();
    let a = w.bus.nodes[1]
        .engine()
        .hold_writes(&url, false)
        .expect("release");
    w.bus.absorb(1, a);
    w.bus.run();
    let theirs = String::from_utf8(read(&w.bufs[1].path)).expect("utf-8");
    assert!(theirs.contains("\"x\":22}"), "{theirs}");
    // Restarted, this peer writes its file from the state: the edit is there, not undone.
    w.bus.nodes[0].close();
    w.bus.nodes[0].reopen();
    w.bus
        .on(0, |e, now| {
            let mut a = e.startup(now)?;
            a.extend(e.take_notices());
            Ok(a)
        })
        .expect("startup");
    w.bus.run();
    assert_eq!(read(&path), new.as_bytes());
    assert_eq!(read(&w.bufs[1].path), new.as_bytes());
}
