//! Randomized convergence test: 3–4 replicas edit at random and exchange changes in random
//! order, duplicated, delayed, through catch-up exchanges and restarts. Every seed must end with
//! byte-identical texts on all replicas, and no edit that nothing else touched may be lost.

use std::collections::{HashMap, HashSet};

use automerge::{ChangeHash, ReadDoc};
use serde_json::{Map, Value};

use super::diff::{content_of, split_lines};
use super::render::parse_object;
use super::{DocFigures, SharedDoc};
use crate::canvasl::generate::XorShift;

/// What one local save did to one item, seen at item level.
#[derive(Debug, Clone)]
enum Effect {
    Add(String),
    Delete,
    /// Field → new value (None: removed).
    Fields(Vec<(String, Option<Value>)>),
    WholeLine(String),
}

#[derive(Debug)]
struct Op {
    uid: String,
    effect: Effect,
    /// Ops whose change the replica had applied when it made this one.
    known: HashSet<usize>,
    replica: usize,
}

/// (uid, line text) for every line of a replica.
fn items(d: &SharedDoc) -> Vec<(String, String)> {
    let text = String::from_utf8(d.text()).unwrap_or_default();
    let lines = split_lines(&text);
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| (d.uid(i).unwrap_or_default(), (*l).to_owned()))
        .collect()
}

fn same_line(a: &str, b: &str) -> bool {
    let (a, b) = (content_of(a), content_of(b));
    match (parse_object(a), parse_object(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The kept figures of `d` are those of its text now (and are kept from here on, so the next
/// change must drop them: a missed invalidation shows at the next call).
fn assert_figures(seed: u64, what: &str, d: &SharedDoc) {
    let fresh = DocFigures {
        text_len: d.text().len(),
        conflicts: d.conflicts().len(),
    };
    assert_eq!(
        d.text_len(),
        fresh.text_len,
        "seed {seed}: text_len after {what}"
    );
    assert_eq!(d.figures(), fresh, "seed {seed}: kept figures after {what}");
    assert!(
        d.figures_ready(),
        "seed {seed}: figures not kept after {what}"
    );
}

/// Saves `new_text` in `d` as a line edit ([`SharedDoc::apply_local_lines`]): the lines it
/// shares with the current text at both ends are kept, the middle is handed over.
fn save_as_line_edit(d: &mut SharedDoc, new_text: &str) -> Option<Vec<u8>> {
    let old_text = String::from_utf8(d.text()).unwrap_or_default();
    let (old, new) = (split_lines(&old_text), split_lines(new_text));
    let most = old.len().min(new.len());
    let before = (0..most).take_while(|&i| old[i] == new[i]).count();
    let after = (0..most - before)
        .take_while(|&k| old[old.len() - 1 - k] == new[new.len() - 1 - k])
        .count();
    let middle = new[before..new.len() - after].concat();
    d.apply_local_lines(before, after, middle.as_bytes())
        .expect("local line edit")
}

/// Random edits of `text`'s lines; returns the new text.
fn random_edit(rng: &mut XorShift, text: &str, tag: &str) -> String {
    let mut lines: Vec<String> = split_lines(text)
        .iter()
        .map(|l| content_of(l).to_owned())
        .collect();
    let edits = 1 + rng.below(3);
    for e in 0..edits {
        let tag = format!("{tag}.{e}");
        let n = lines.len() as u64;
        let i = rng.below(n.max(1)) as usize;
        match rng.below(100) {
            0..=39 => {
                // Set or remove a field of a JSON entry.
                let json_lines: Vec<usize> = (0..lines.len())
                    .filter(|&k| parse_object(&lines[k]).is_some())
                    .collect();
                if let Some(&k) = rng.pick(&json_lines) {
                    let mut m: Map<String, Value> = parse_object(&lines[k]).unwrap_or_default();
                    let field = *rng.pick(&["x", "y", "color", "text", "w"]).unwrap_or(&"x");
                    if rng.chance(150) {
                        m.shift_remove(field);
                    } else {
                        m.insert(field.to_owned(), Value::String(tag.clone()));
                    }
                    lines[k] = serde_json::to_string(&m).unwrap_or_default();
                }
            }
            40..=54 => {
                let id = if rng.chance(300) {
                    "dup".to_owned()
                } else {
                    format!("n{tag}")
                };
                let pos = rng.below(n + 1) as usize;
                lines.insert(pos, format!("{{\"id\":\"{id}\",\"x\":1}}"));
            }
            55..=61 => {
                let pos = rng.below(n + 1) as usize;
                let line = match rng.below(3) {
                    0 => String::new(),
                    1 => format!("@note {tag}"),
                    _ => format!("prose {tag}"),
                };
                lines.insert(pos, line);
            }
            62..=75 if n > 1 => {
                lines.remove(i);
            }
            76..=89 if n > 0 => {
                lines[i] = match rng.below(3) {
                    0 => format!("raw {tag}"),
                    1 => format!("{{\"id\":\"raw\",\"k\":\"{tag}\"}}"),
                    _ => match parse_object(&lines[i]) {
                        // Reformat without changing values.
                        Some(m) => serde_json::to_string_pretty(&m)
                            .unwrap_or_default()
                            .replace('\n', ""),
                        None => format!("raw {tag}"),
                    },
                };
            }
            90..=99 if n > 1 => {
                let line = lines.remove(i);
                let j = rng.below(n) as usize;
                lines.insert(j, line);
            }
            _ => {}
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Runs one seed; returns how many item-level effects it checked.
fn run_seed(seed: u64) -> usize {
    let mut rng = XorShift::new(seed);
    let n_replicas = 3 + rng.below(2) as usize;
    let mut base = String::from("@version 1.0\n\n");
    for k in 0..(3 + rng.below(6)) {
        let id = if rng.chance(300) {
            "dup".to_owned()
        } else {
            format!("e{k}")
        };
        base.push_str(&format!(
            "{{\"id\":\"{id}\",\"x\":{k},\"text\":\"t{k}\"}}\n"
        ));
    }
    base.push_str("some prose\n");
    let actor = |r: usize| {
        let mut a = [0u8; 32];
        a[0] = r as u8 + 1;
        a[31] = (seed % 251) as u8;
        a
    };
    let first = SharedDoc::import(base.as_bytes(), actor(0)).expect("import");
    let mut replicas = vec![first];
    assert_figures(seed, "import", &replicas[0]);
    for r in 1..n_replicas {
        let mut d = SharedDoc::new(actor(r));
        assert_figures(seed, "new", &d);
        let bytes = replicas[0].changes_since(&d.heads()).expect("catch-up");
        d.apply_remote(&bytes).expect("join");
        assert_figures(seed, "join", &d);
        replicas.push(d);
    }
    let mut ops: Vec<Op> = Vec::new();
    let mut op_hash: Vec<ChangeHash> = Vec::new();
    // Messages in flight: (to, bytes).
    let mut pool: Vec<(usize, Vec<u8>)> = Vec::new();
    let steps = 15 + rng.below(20);
    for step in 0..steps {
        let r = rng.below(n_replicas as u64) as usize;
        match rng.below(100) {
            0..=49 => {
                // A local save.
                let before = items(&replicas[r]);
                let old_text = String::from_utf8(replicas[r].text()).unwrap_or_default();
                let new_text = random_edit(&mut rng, &old_text, &format!("{r}-{step}"));
                // Every other save as the buffer hands it over: the changed lines only.
                let change = if (seed + step).is_multiple_of(2) {
                    save_as_line_edit(&mut replicas[r], &new_text)
                } else {
                    replicas[r]
                        .apply_local_text(new_text.as_bytes())
                        .expect("local edit")
                };
                // The local text is what the user wrote (up to re-serialization of edited lines).
                let now = String::from_utf8(replicas[r].text()).unwrap_or_default();
                let (a, b) = (split_lines(&now), split_lines(&new_text));
                assert_eq!(a.len(), b.len(), "seed {seed}: {now:?} vs {new_text:?}");
                for (x, y) in a.iter().zip(&b) {
                    assert!(same_line(x, y), "seed {seed}: {x:?} vs {y:?}");
                }
                let Some(change) = change else { continue };
                let after = items(&replicas[r]);
                let known: HashSet<usize> = (0..ops.len())
                    .filter(|&k| {
                        replicas[r]
                            .inner()
                            .get_change_by_hash(&op_hash[k])
                            .is_some()
                    })
                    .collect();
                let heads = replicas[r].inner().get_heads();
                assert_eq!(heads.len(), 1);
                let old: HashMap<&str, &str> = before
                    .iter()
                    .map(|(u, t)| (u.as_str(), t.as_str()))
                    .collect();
                let new: HashMap<&str, &str> = after
                    .iter()
                    .map(|(u, t)| (u.as_str(), t.as_str()))
                    .collect();
                let mut effects = Vec::new();
                for (u, t) in &after {
                    match old.get(u.as_str()) {
                        None => effects.push((u.clone(), Effect::Add(t.clone()))),
                        Some(o) if *o != t => {
                            let (om, nm) =
                                (parse_object(content_of(o)), parse_object(content_of(t)));
                            let effect = match (om, nm) {
                                (Some(om), Some(nm)) if om != nm => {
                                    let mut f: Vec<(String, Option<Value>)> = nm
                                        .iter()
                                        .filter(|(k, v)| om.get(*k) != Some(v))
                                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                                        .collect();
                                    f.extend(
                                        om.keys()
                                            .filter(|k| !nm.contains_key(*k))
                                            .map(|k| (k.clone(), None)),
                                    );
                                    Effect::Fields(f)
                                }
                                _ => Effect::WholeLine(t.clone()),
                            };
                            effects.push((u.clone(), effect));
                        }
                        _ => {}
                    }
                }
                for (u, _) in &before {
                    if !new.contains_key(u.as_str()) {
                        effects.push((u.clone(), Effect::Delete));
                    }
                }
                for (uid, effect) in effects {
                    ops.push(Op {
                        uid,
                        effect,
                        known: known.clone(),
                        replica: r,
                    });
                    op_hash.push(heads[0]);
                }
                for to in 0..n_replicas {
                    if to != r {
                        pool.push((to, change.clone()));
                    }
                }
            }
            50..=84 => {
                // Deliver a few messages, in random order, sometimes duplicated.
                for _ in 0..1 + rng.below(4) {
                    if pool.is_empty() {
                        break;
                    }
                    let k = rng.below(pool.len() as u64) as usize;
                    let (to, bytes) = if rng.chance(200) {
                        pool[k].clone()
                    } else {
                        pool.swap_remove(k)
                    };
                    replicas[to].apply_remote(&bytes).expect("remote change");
                }
            }
            85..=94 => {
                // A catch-up exchange between two replicas.
                let other = rng.below(n_replicas as u64) as usize;
                if other != r {
                    let bytes = replicas[other]
                        .changes_since(&replicas[r].heads())
                        .expect("changes_since");
                    replicas[r].apply_remote(&bytes).expect("catch-up");
                }
            }
            _ => {
                // A restart.
                let saved = replicas[r].save();
                let text = replicas[r].text();
                replicas[r] = SharedDoc::load(&saved, actor(r)).expect("load");
                assert_eq!(
                    replicas[r].text(),
                    text,
                    "seed {seed}: restart changed the text"
                );
            }
        }
        for d in &replicas {
            assert_figures(seed, &format!("step {step}"), d);
        }
    }
    // Deliver everything still in flight, in random order.
    while !pool.is_empty() {
        let k = rng.below(pool.len() as u64) as usize;
        let (to, bytes) = pool.swap_remove(k);
        replicas[to].apply_remote(&bytes).expect("remote change");
    }
    let text0 = replicas[0].text();
    for (r, d) in replicas.iter().enumerate() {
        assert_eq!(
            String::from_utf8_lossy(&d.text()),
            String::from_utf8_lossy(&text0),
            "seed {seed}: replica {r} differs"
        );
        assert_eq!(d.heads(), replicas[0].heads(), "seed {seed}");
        assert_figures(seed, &format!("the last deliveries to {r}"), d);
        let reloaded = SharedDoc::load(&d.save(), actor(r)).expect("reload");
        assert_eq!(reloaded.text(), text0, "seed {seed}: reload of {r} differs");
    }
    // Conflicts are listed the same everywhere.
    let c0 = replicas[0].conflicts();
    for d in &replicas[1..] {
        assert_eq!(d.conflicts(), c0, "seed {seed}");
    }
    check_effects(seed, &ops, &items(&replicas[0]))
}

/// No edit that nothing else touched is lost; deleted items stay deleted.
fn check_effects(seed: u64, ops: &[Op], fin: &[(String, String)]) -> usize {
    let fin: HashMap<&str, &str> = fin.iter().map(|(u, t)| (u.as_str(), t.as_str())).collect();
    let deleted: HashSet<&str> = ops
        .iter()
        .filter(|o| matches!(o.effect, Effect::Delete))
        .map(|o| o.uid.as_str())
        .collect();
    let mut checked = 0;
    for (i, op) in ops.iter().enumerate() {
        let ctx = || format!("seed {seed}: op {i} {op:?}");
        let u = op.uid.as_str();
        if deleted.contains(u) {
            assert!(!fin.contains_key(u), "{}: deleted item still there", ctx());
            checked += 1;
            continue;
        }
        // Ops on the same item that this one did not know of: later or concurrent.
        let others: Vec<&Op> = ops
            .iter()
            .enumerate()
            .filter(|(k, o)| *k != i && o.uid == op.uid && !op.known.contains(k))
            .map(|(_, o)| o)
            .collect();
        let line = fin.get(u).copied();
        match &op.effect {
            Effect::Delete => {}
            Effect::Add(text) => {
                let line = line.unwrap_or_else(|| panic!("{}: added item missing", ctx()));
                if others.is_empty() {
                    assert!(same_line(line, text), "{}: got {line:?}", ctx());
                }
                checked += 1;
            }
            Effect::WholeLine(text) => {
                let line = line.unwrap_or_else(|| panic!("{}: edited item missing", ctx()));
                if others.is_empty() {
                    assert!(same_line(line, text), "{}: got {line:?}", ctx());
                    checked += 1;
                }
            }
            Effect::Fields(fields) => {
                let line = line.unwrap_or_else(|| panic!("{}: edited item missing", ctx()));
                let m = parse_object(content_of(line));
                for (f, v) in fields {
                    let touched = others.iter().any(|o| match &o.effect {
                        Effect::Fields(g) => g.iter().any(|(h, _)| h == f),
                        _ => true,
                    });
                    if touched {
                        continue;
                    }
                    let m = m
                        .as_ref()
                        .unwrap_or_else(|| panic!("{}: not an object: {line:?}", ctx()));
                    assert_eq!(m.get(f), v.as_ref(), "{}: field {f} in {line:?}", ctx());
                    checked += 1;
                }
            }
        }
        let _ = op.replica;
    }
    checked
}

#[test]
fn random_edits_converge_and_keep_every_untouched_edit() {
    let seeds: u64 = std::env::var("MERGE_PROPTEST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut checked = 0;
    for seed in 0..seeds {
        checked += run_seed(seed);
    }
    eprintln!("proptest: {seeds} seeds, {checked} item-level effects checked");
    assert!(
        checked > seeds as usize * 5,
        "only {checked} effects checked"
    );
}
