//! Saves handed over as changed lines ([`super::LineEdit`]) and updates carrying hunks
//! ([`super::Hunk`]): the fast paths agree with the whole-file ones, and a property test over
//! many seeds where two people type into buffers visiting the shared file while the other's
//! changes arrive, are patched in, and both save.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::hunk::apply_hunks;
use super::lines::Untrusted;
use super::util::{read, Bus, R, T0};
use super::{Action, LineEdit, ShareId, SyncConfig};
use crate::canvasl::generate::XorShift;
use crate::federation::SyncKind;

const BASE: &str =
    "@version 1.0\n{\"id\":\"a\",\"x\":1}\n{\"id\":\"b\",\"x\":2}\n{\"id\":\"c\",\"x\":3}\n";

fn mtime(path: &Path) -> Option<(i64, u32)> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((d.as_secs() as i64, d.subsec_nanos()))
}

/// Lines equal at the top and at the bottom of `old` and `new` (not overlapping).
fn common_lines(old: &str, new: &str) -> (usize, usize) {
    let o: Vec<&str> = crate::merge::split_lines(old);
    let n: Vec<&str> = crate::merge::split_lines(new);
    let before = o.iter().zip(&n).take_while(|(a, b)| a == b).count();
    let room = o.len().min(n.len()) - before;
    let mut after = o
        .iter()
        .rev()
        .zip(n.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    // A kept last line must end the same way in both: a partial last line is never "after".
    if after > 0 && !new.ends_with('\n') {
        after = 0;
    }
    (before, after)
}

/// The middle of `new` between `before` and `after` lines.
fn middle_of(new: &str, before: usize, after: usize) -> String {
    let n = crate::merge::split_lines(new);
    n[before..n.len() - after].concat()
}

/// One person's buffer visiting the share's file on one peer.
struct Buffer {
    path: PathBuf,
    text: String,
    modified: bool,
    /// The text and file time it was last in step with the file.
    base: String,
    base_mtime: Option<(i64, u32)>,
}

impl Buffer {
    fn visit(path: PathBuf) -> Buffer {
        let text = String::from_utf8(read(&path)).expect("utf-8");
        Buffer {
            base_mtime: mtime(&path),
            base: text.clone(),
            text,
            modified: false,
            path,
        }
    }

    /// What the Elisp glue does with an update: patch an unmodified buffer (the hunks must fit
    /// and give the file), else revert; a modified buffer is left alone.
    fn updated(&mut self, hunks: Option<Vec<super::Hunk>>, patched: &mut usize) {
        if self.modified {
            return;
        }
        let file = String::from_utf8(read(&self.path)).expect("utf-8");
        match hunks {
            Some(h) => {
                let new = apply_hunks(&self.text, &h).expect("hunks fit the unmodified buffer");
                assert_eq!(new, file, "patched buffer == file");
                *patched += 1;
                self.text = new;
            }
            None => self.text = file,
        }
        self.base = self.text.clone();
        self.base_mtime = mtime(&self.path);
    }
}

/// An event in flight: from, to, kind, content, tags.
type Msg = (usize, usize, SyncKind, String, Vec<Vec<String>>);

struct World {
    bus: Bus,
    share: ShareId,
    bufs: Vec<Buffer>,
    queue: VecDeque<Msg>,
    patched: usize,
    fast: usize,
}

impl World {
    fn new() -> World {
        let mut bus = Bus::new(2, 1, &SyncConfig::default());
        bus.shuffle = false;
        bus.dup_per_mille = 0;
        let path = bus.nodes[0].write_home("plan.canvasl", BASE.as_bytes());
        bus.on(0, |e, now| e.share(&path, None, now))
            .expect("share");
        bus.run();
        let share = ShareId::new(&bus.nodes[0].id, "plan.canvasl").expect("id");
        let p1 = bus.nodes[1].file_of(&share);
        let p0 = path.canonicalize().expect("canonical");
        World {
            bus,
            share,
            bufs: vec![Buffer::visit(p0), Buffer::visit(p1)],
            queue: VecDeque::new(),
            patched: 0,
            fast: 0,
        }
    }

    fn actions(&mut self, node: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Publish {
                    kind,
                    content,
                    tags,
                } => self.queue.push_back((node, 1 - node, kind, content, tags)),
                Action::Updated { path, hunks, .. } => {
                    assert_eq!(path, self.bufs[node].path);
                    self.bufs[node].updated(hunks, &mut self.patched);
                }
                other => panic!("unexpected {other:?}"),
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
        self.actions(to, a);
    }

    fn type_into(&mut self, node: usize, rng: &mut XorShift, token: &str) {
        if !self.bufs[node].modified {
            let url = self.share.url();
            let a = self.bus.nodes[node]
                .engine()
                .hold_writes(&url, true)
                .expect("hold");
            self.actions(node, a);
            self.bufs[node].modified = true;
        }
        let b = &mut self.bufs[node];
        let lines = crate::merge::split_lines(&b.text);
        let at = 1 + rng.below(lines.len() as u64) as usize;
        let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        out.insert(at.min(out.len()), format!("{{\"id\":\"{token}\"}}\n"));
        b.text = out.concat();
    }

    fn save(&mut self, node: usize, rng: &mut XorShift) {
        let b = &mut self.bufs[node];
        std::fs::write(&b.path, &b.text).expect("save");
        let (mut before, mut after) = common_lines(&b.base, &b.text);
        // Emacs' record may be coarser than the exact change.
        before -= rng.below(before as u64 + 1) as usize / 2;
        after -= rng.below(after as u64 + 1) as usize / 2;
        let base_lines = crate::merge::split_lines(&b.base);
        let edit = LineEdit {
            head: base_lines[..before].iter().map(|l| l.len()).sum(),
            tail: base_lines[base_lines.len() - after..]
                .iter()
                .map(|l| l.len())
                .sum(),
            middle: middle_of(&b.text, before, after).into_bytes(),
            base_mtime: if rng.below(8) == 0 {
                None
            } else {
                b.base_mtime
            },
        };
        b.modified = false;
        b.base = b.text.clone();
        let url = self.share.url();
        let engine = self.bus.nodes[node].engine();
        let id = engine.resolve(&url).expect("share");
        let a = match engine.apply_line_edit(&id, &edit).expect("line edit") {
            Ok(a) => {
                self.fast += 1;
                a
            }
            Err(_) => engine.local_file_changed(&url, T0).expect("save"),
        };
        self.bufs[node].base_mtime = mtime(&self.bufs[node].path);
        self.actions(node, a);
    }
}

#[test]
fn a_line_edit_is_taken_without_the_whole_file_and_arrives_as_hunks() -> R {
    let mut w = World::new();
    let p0 = w.bufs[0].path.clone();
    let base_mtime = mtime(&p0);
    let new = BASE.replace("\"x\":2", "\"x\":22");
    std::fs::write(&p0, &new)?;
    let head = BASE.find("{\"id\":\"b\"").expect("line b");
    let edit = LineEdit {
        head,
        tail: "{\"id\":\"c\",\"x\":3}\n".len(),
        middle: b"{\"id\":\"b\",\"x\":22}\n".to_vec(),
        base_mtime,
    };
    let id = w.share.clone();
    let a = w.bus.nodes[0].engine().apply_line_edit(&id, &edit)?;
    let a = a.expect("trusted");
    assert!(
        a.iter().all(|a| matches!(a, Action::Publish { .. })),
        "{a:?}"
    );
    w.actions(0, a);
    w.deliver(0);
    assert_eq!(read(&w.bufs[1].path), new.as_bytes());
    assert_eq!(w.bufs[1].text, new);
    assert_eq!(w.patched, 1, "the other buffer was patched, not reverted");
    Ok(())
}

#[test]
fn untrusted_line_edits_fall_back_to_the_whole_file() -> R {
    let mut w = World::new();
    let p0 = w.bufs[0].path.clone();
    let id = w.share.clone();
    let base_mtime = mtime(&p0);
    let new = BASE.replace("\"x\":3", "\"x\":33");
    std::fs::write(&p0, &new)?;
    let good = LineEdit {
        head: BASE.find("{\"id\":\"c\"").expect("line c"),
        tail: 0,
        middle: b"{\"id\":\"c\",\"x\":33}\n".to_vec(),
        base_mtime,
    };
    let e = w.bus.nodes[0].engine();
    let unknown_base = LineEdit {
        base_mtime: None,
        ..good.clone()
    };
    assert_eq!(
        e.apply_line_edit(&id, &unknown_base)?.err(),
        Some(Untrusted::Base)
    );
    let wrong_length = LineEdit {
        middle: b"{\"id\":\"c\",\"x\":3}\n".to_vec(),
        ..good.clone()
    };
    assert_eq!(
        e.apply_line_edit(&id, &wrong_length)?.err(),
        Some(Untrusted::Shape)
    );
    let not_a_line_start = LineEdit {
        head: good.head + 1,
        middle: good.middle[1..].to_vec(),
        ..good.clone()
    };
    assert_eq!(
        e.apply_line_edit(&id, &not_a_line_start)?.err(),
        Some(Untrusted::Shape)
    );
    let too_many = LineEdit {
        head: good.head,
        tail: BASE.len(),
        ..good.clone()
    };
    assert_eq!(
        e.apply_line_edit(&id, &too_many)?.err(),
        Some(Untrusted::Shape)
    );
    // The public entry falls back to reading the file: the edit is taken all the same.
    let a = e.local_lines_changed(&id.url(), &unknown_base, T0)?;
    w.actions(0, a);
    w.deliver(0);
    assert_eq!(read(&w.bufs[1].path), new.as_bytes());
    Ok(())
}

/// Two people type (new entries, each a unique token) into buffers visiting the share on two
/// peers, save now and then, and the other's changes arrive in between: unmodified buffers
/// are patched from the hunks, modified ones hold the file. At the end both files and both
/// buffers are the same text and every token typed is in it.
#[test]
fn typing_remote_patches_and_saves_converge_and_lose_nothing() {
    let mut fast = 0;
    let mut patched = 0;
    for seed in 0..40u64 {
        let mut rng = XorShift::new(seed);
        let mut w = World::new();
        let mut tokens = Vec::new();
        for step in 0..40 {
            let node = rng.below(2) as usize;
            match rng.below(10) {
                0..=3 => {
                    let t = format!("t{seed}-{node}-{step}");
                    w.type_into(node, &mut rng, &t);
                    tokens.push(t);
                }
                4..=5 => {
                    if w.bufs[node].modified || rng.below(4) == 0 {
                        w.save(node, &mut rng);
                    }
                }
                _ => {
                    let pick = rng.below(8) as usize;
                    w.deliver(pick);
                }
            }
        }
        // Everyone saves; everything is delivered.
        for _ in 0..4 {
            for node in 0..2 {
                if w.bufs[node].modified {
                    w.save(node, &mut rng);
                }
            }
            while !w.queue.is_empty() {
                w.deliver(0);
            }
        }
        let f0 = read(&w.bufs[0].path);
        let f1 = read(&w.bufs[1].path);
        assert_eq!(f0, f1, "seed {seed}: the files converge");
        let text = String::from_utf8(f0).expect("utf-8");
        for b in &w.bufs {
            assert_eq!(b.text, text, "seed {seed}: each buffer shows the file");
        }
        for t in &tokens {
            assert!(text.contains(t.as_str()), "seed {seed}: {t} was lost");
        }
        fast += w.fast;
        patched += w.patched;
    }
    // The fast paths were taken (not only the fallbacks).
    assert!(fast > 60 && patched > 60, "fast {fast}, patched {patched}");
}
