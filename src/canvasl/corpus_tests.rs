//! Tests over the real-world corpus in `tests/data/corpus/` (see its REPORT.md in the shared
//! corpus; the expected figures below are copied from that report's table).

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::json;

use super::model::{DirectiveForm, EntryKey, LineKind, OtherReason};
use super::parse::{parse, WarningKind};
use super::write::write;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus");

/// (file, bytes, lines as counted by the report (`split('\n')`), `@k v` directives, `@k: v`
/// directives, JSON objects, other lines, entries whose id was already seen).
type Row = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const EXPECTED: &[Row] = &[
    (
        "automaton-evolutions__files__a0-unified-automaton.canvasl",
        6420,
        34,
        2,
        0,
        15,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a1-automaton-kernel-seed.canvasl",
        20806,
        101,
        2,
        0,
        49,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a10-mqtt-herald.canvasl",
        2361,
        16,
        2,
        0,
        6,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a11-master.canvasl",
        6214,
        38,
        2,
        0,
        17,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a2-metaverse-shape.canvasl",
        15669,
        90,
        2,
        0,
        43,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a3-metaverse-centroid.canvasl",
        5567,
        32,
        2,
        0,
        14,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a4-autonomous-basis.canvasl",
        8248,
        44,
        2,
        0,
        20,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a5-sheaf-gluer.canvasl",
        2830,
        18,
        2,
        0,
        7,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a6-homology-checker.canvasl",
        2408,
        16,
        2,
        0,
        6,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a7-webauthn-oracle.canvasl",
        2406,
        16,
        2,
        0,
        6,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a8-bip32-keymaster.canvasl",
        2348,
        16,
        2,
        0,
        6,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__a9-webrtc-messenger.canvasl",
        2396,
        16,
        2,
        0,
        6,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__automaton.canvasl",
        1463,
        15,
        7,
        0,
        5,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__categories.canvasl",
        2798,
        14,
        4,
        0,
        4,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__centroid.canvasl",
        1073,
        10,
        3,
        0,
        4,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__federated-rbac.canvasl",
        3270,
        26,
        7,
        0,
        12,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__marketplace.canvasl",
        35106,
        183,
        4,
        0,
        176,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__root.canvasl",
        8116,
        49,
        4,
        0,
        41,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__service.canvasl",
        6024,
        37,
        4,
        0,
        29,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__shape.canvasl",
        995,
        10,
        3,
        0,
        4,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__system.canvasl",
        871,
        12,
        6,
        0,
        3,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__token.canvasl",
        4625,
        31,
        4,
        0,
        23,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__topology.canvasl",
        800,
        11,
        5,
        0,
        3,
        0,
        0,
    ),
    (
        "automaton-evolutions__files__university.canvasl",
        9770,
        56,
        4,
        0,
        48,
        0,
        0,
    ),
    (
        "automaton__ai-portal-agent-movement.canvasl",
        12353,
        124,
        0,
        5,
        59,
        0,
        0,
    ),
    (
        "automaton__automaton.fast.canvasl",
        239523,
        408,
        0,
        6,
        400,
        0,
        220,
    ),
    (
        "automaton__automaton.jsonl",
        1538573,
        2001,
        0,
        0,
        2000,
        0,
        1122,
    ),
    (
        "automaton__automaton.llama3.2_latest.canvasl",
        94619,
        408,
        0,
        6,
        400,
        0,
        220,
    ),
    (
        "automaton__automaton.metaverse.canvasl",
        148040,
        276,
        0,
        4,
        270,
        0,
        125,
    ),
    (
        "automaton__automaton.wordnet.canvasl",
        13044,
        25,
        0,
        6,
        17,
        0,
        0,
    ),
    (
        "automaton__examples__automaton-kernel.canvasl",
        120704,
        438,
        0,
        4,
        432,
        0,
        0,
    ),
    (
        "automaton__examples__automaton-kernel.seed.canvasl",
        20946,
        68,
        0,
        4,
        62,
        0,
        0,
    ),
    (
        "automaton__examples__automaton.canvas.space.canvasl",
        27248,
        40,
        0,
        4,
        34,
        0,
        0,
    ),
    (
        "meta-log__dev-docs__research__categories.canvasl",
        2799,
        15,
        4,
        0,
        4,
        0,
        0,
    ),
    (
        "meta-log__dev-docs__research__federated-rbac.canvasl",
        3271,
        27,
        7,
        0,
        12,
        0,
        0,
    ),
    (
        "meta-log__examples__demo-generated-template.canvasl",
        433,
        20,
        4,
        0,
        0,
        11,
        0,
    ),
];

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(CORPUS).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn corpus_directory_matches_table() {
    let mut on_disk: Vec<String> = std::fs::read_dir(CORPUS)
        .expect("corpus directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".canvasl") || n.ends_with(".jsonl"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|r| r.0.to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn every_corpus_file_round_trips_and_matches_report() {
    for &(name, bytes, report_lines, space, colon, objects, other, dups) in EXPECTED {
        let input = read(name);
        assert_eq!(input.len(), bytes, "{name}: size");
        let doc = parse(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(write(&doc), input, "{name}: round trip");

        let trailing = usize::from(input.last() == Some(&b'\n'));
        assert_eq!(doc.lines().len() + trailing, report_lines, "{name}: lines");
        let n_space = doc
            .directives()
            .filter(|d| d.form == DirectiveForm::Space)
            .count();
        let n_colon = doc
            .directives()
            .filter(|d| d.form != DirectiveForm::Space)
            .count();
        assert_eq!((n_space, n_colon), (space, colon), "{name}: directives");
        assert_eq!(doc.entries().count(), objects, "{name}: entries");
        let n_other = doc
            .lines()
            .iter()
            .filter(|l| matches!(l.kind(), LineKind::Other { .. }))
            .count();
        assert_eq!(n_other, other, "{name}: other lines");

        let dup_warnings = doc
            .warnings()
            .iter()
            .filter(|w| w.kind == WarningKind::DuplicateId)
            .count();
        assert_eq!(dup_warnings, dups, "{name}: duplicate-id warnings");
        let repeated = doc
            .entries()
            .filter(|e| e.occurrence() > 0 && e.id().is_some())
            .count();
        assert_eq!(repeated, dups, "{name}: entries with occurrence > 0");

        // Keys are unique and all resolve to their entry.
        let keys: HashSet<&EntryKey> = doc.entries().map(|e| e.key()).collect();
        assert_eq!(keys.len(), objects, "{name}: unique keys");
        for e in doc.entries() {
            assert_eq!(doc.entry(e.key()).map(|x| x.raw()), Some(e.raw()));
            // The lazily built object agrees with a direct parse.
            let direct: serde_json::Value = serde_json::from_str(e.raw()).unwrap();
            assert_eq!(&serde_json::Value::Object(e.fields().clone()), &direct);
        }
        // Only these warnings occur in the corpus.
        for w in doc.warnings() {
            assert!(
                matches!(w.kind, WarningKind::DuplicateId | WarningKind::NonJsonLine),
                "{name}: unexpected {w}"
            );
        }
    }
}

#[test]
fn duplicate_counts_of_the_largest_files() {
    for (name, want) in [
        ("automaton__automaton.fast.canvasl", 220),
        ("automaton__automaton.jsonl", 1122),
    ] {
        let doc = parse(&read(name)).unwrap();
        let n = doc
            .warnings()
            .iter()
            .filter(|w| w.kind == WarningKind::DuplicateId)
            .count();
        assert_eq!(n, want, "{name}");
    }
}

#[test]
fn org_body_file_gives_other_lines() {
    let name = "meta-log__examples__demo-generated-template.canvasl";
    let input = read(name);
    let doc = parse(&input).unwrap();
    assert_eq!(write(&doc), input);
    assert_eq!(
        doc.directive("version").map(|d| d.value.as_str()),
        Some("1.0")
    );
    assert_eq!(
        doc.directive("generated").map(|d| d.value.as_str()),
        Some("2025-11-19T20:09:04Z")
    );
    let other: Vec<&str> = doc
        .lines()
        .iter()
        .filter(|l| {
            matches!(
                l.kind(),
                LineKind::Other {
                    reason: OtherReason::NotJson,
                    ..
                }
            )
        })
        .map(|l| l.raw())
        .collect();
    assert_eq!(other.len(), 11);
    assert_eq!(other[0], "* Peer Identity Management With Webauthn");
    assert!(other.contains(&":END:"));
    let warned: Vec<usize> = doc
        .warnings()
        .iter()
        .filter(|w| w.kind == WarningKind::NonJsonLine)
        .map(|w| w.line)
        .collect();
    assert_eq!(warned.len(), 11);
    assert_eq!(warned[0], 6);
    assert_eq!(
        doc.lines().last().map(|l| l.ending()),
        Some(super::LineEnding::None)
    );
}

#[test]
fn corpus_directive_values() {
    let doc = parse(&read("automaton__ai-portal-agent-movement.canvasl")).unwrap();
    let v = doc.directive("version").unwrap();
    assert_eq!(
        (v.form, v.value.as_str(), v.text().as_ref()),
        (DirectiveForm::ColonJson, "\"1.0\"", "1.0")
    );
    let doc = parse(&read("automaton__automaton.llama3.2_latest.canvasl")).unwrap();
    let d = doc.directive("variant").unwrap();
    assert_eq!(
        (d.form, d.value.as_str()),
        (DirectiveForm::ColonBare, "llama3.2:latest")
    );
    let doc = parse(&read("automaton-evolutions__files__automaton.canvasl")).unwrap();
    let includes: Vec<&str> = doc
        .directives()
        .filter(|d| d.name == "include")
        .map(|d| d.value.as_str())
        .collect();
    assert!(includes.contains(&"shape.canvasl"), "{includes:?}");
}

#[test]
fn corpus_edges_in_all_shapes() {
    let doc = parse(&read("automaton-evolutions__files__automaton.canvasl")).unwrap();
    let edges: Vec<(String, String)> = doc.entries().filter_map(|e| e.edge_endpoints()).collect();
    assert!(
        edges.contains(&("8D-affine".into(), "unified-self-reference".into())),
        "{edges:?}"
    );
    let doc = parse(&read(
        "automaton-evolutions__files__a0-unified-automaton.canvasl",
    ))
    .unwrap();
    let edges: Vec<(String, String)> = doc.entries().filter_map(|e| e.edge_endpoints()).collect();
    assert!(
        edges.contains(&(
            "unified-automaton".into(),
            "integration-point-kernel".into()
        )),
        "{edges:?}"
    );
}

#[test]
fn editing_a_corpus_file_touches_one_line() {
    let name = "automaton__automaton.fast.canvasl";
    let input = read(name);
    let mut doc = parse(&input).unwrap();
    // Pick an id that repeats, and edit its second occurrence only.
    let key = doc
        .entries()
        .find(|e| e.occurrence() == 1 && e.id().is_some())
        .map(|e| e.key().clone())
        .unwrap();
    let first = EntryKey {
        occurrence: 0,
        ..key.clone()
    };
    let pos = doc.line_index(&key).unwrap();
    let first_pos = doc.line_index(&first).unwrap();
    doc.set_entry_field(&key, "color", json!("edited-by-test"))
        .unwrap();
    let out = write(&doc);
    let before: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let after: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
    assert_eq!(before.len(), after.len());
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if i == pos {
            assert_ne!(a, b);
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            assert_eq!(v["color"], json!("edited-by-test"));
        } else {
            assert_eq!(a, b, "line {i} changed");
        }
    }
    assert_ne!(pos, first_pos);
}
