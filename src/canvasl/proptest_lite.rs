//! Property-style tests without a property-testing crate: a few hundred random inputs from the
//! in-house xorshift, checking that nothing panics, that whatever parses writes back
//! byte-identical, and that edited documents write text that parses back to the same bytes.

use serde_json::{json, Map, Value};

use super::generate::{generate_canvas, XorShift};
use super::model::{Document, EntryKey};
use super::parse::{parse, ParseError};
use super::write::write;

const FRAGMENTS: &[&[u8]] = &[
    b"{",
    b"}",
    b"\"id\"",
    b":",
    b"\"a\"",
    b"\"b\"",
    b",",
    b"1",
    b"2.5e3",
    b"-0",
    b"@version",
    b" 1.0",
    b": \"x\"",
    b": 1.0",
    b" // c",
    b"\n",
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\t",
    b"[",
    b"]",
    b"\xef\xbb\xbf",
    "é→".as_bytes(),
    b"\\",
    b"\\u00e9",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"null",
    b"true",
    b"#",
    b"\"fromNode\":\"#a\"",
    b"\"edge\":\"A --> B\"",
    b"* org",
    b"\"",
    b"{\"id\":\"a\"}",
    b"{\"id\":7}",
    b"{}",
    b"\x00",
];

fn fragment_soup(rng: &mut XorShift) -> Vec<u8> {
    let n = rng.below(40) as usize;
    let mut out = Vec::new();
    for _ in 0..n {
        if let Some(f) = rng.pick(FRAGMENTS) {
            out.extend_from_slice(f);
        }
    }
    out
}

fn random_bytes(rng: &mut XorShift) -> Vec<u8> {
    let n = rng.below(64) as usize;
    (0..n)
        .map(|_| {
            // Bias towards the bytes that matter to the parser.
            match rng.below(4) {
                0 => *rng.pick(b"{}\":,@\n\r #[]").unwrap_or(&b'x'),
                _ => rng.below(256) as u8,
            }
        })
        .collect()
}

/// Real-looking lines, some of them damaged (truncated, a byte replaced, a line joined).
fn mutated_canvas(rng: &mut XorShift) -> Vec<u8> {
    let mut bytes = generate_canvas(1 + rng.below(12) as usize, rng.next_u64()).into_bytes();
    for _ in 0..rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len() as u64) as usize;
        match rng.below(4) {
            0 => bytes.truncate(at),
            1 => bytes[at] = rng.below(256) as u8,
            2 => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, *rng.pick(b"\r\n{}\"@").unwrap_or(&b'\n')),
        }
    }
    if rng.chance(200) {
        let mut with_bom = b"\xef\xbb\xbf".to_vec();
        with_bom.extend_from_slice(&bytes);
        bytes = with_bom;
    }
    bytes
}

/// Random edits through the public helpers; errors are fine, panics are not.
fn random_edits(doc: &mut Document, rng: &mut XorShift) {
    let keys: Vec<EntryKey> = doc.entries().map(|e| e.key().clone()).collect();
    for _ in 0..rng.below(6) {
        let key = rng
            .pick(&keys)
            .cloned()
            .unwrap_or_else(|| EntryKey::new("missing", 0));
        match rng.below(5) {
            0 => {
                let _ = doc.set_entry_field(&key, "x", json!(rng.below(100)));
            }
            1 => {
                let _ = doc.set_entry_field(&key, "id", json!("changed"));
            }
            2 => {
                let _ = doc.remove_entry_field(&key, "type");
            }
            3 => {
                let _ = doc.remove_entry(&key);
            }
            _ => {
                let mut m = Map::new();
                m.insert("id".into(), Value::String("new".into()));
                m.insert("text".into(), Value::String("a\r\nb\u{2028}".into()));
                let after = if rng.chance(300) { None } else { Some(&key) };
                let _ = doc.insert_entry_after(after, m);
            }
        }
    }
    for e in doc.entries() {
        let _ = e.edge_endpoints();
    }
}

fn check(input: &[u8], rng: &mut XorShift) -> bool {
    match parse(input) {
        Ok(mut doc) => {
            assert_eq!(write(&doc), input, "round trip of {input:?}");
            for e in doc.entries() {
                let _ = (e.fields().len(), e.edge_endpoints(), e.entry_type());
            }
            for d in doc.directives() {
                let _ = (d.text(), d.json());
            }
            random_edits(&mut doc, rng);
            let edited = write(&doc);
            let again = parse(&edited).expect("written text is UTF-8");
            assert_eq!(write(&again), edited);
            assert!(again.entries().count() >= doc.entries().count());
            true
        }
        Err(ParseError::InvalidUtf8 { offset, line }) => {
            assert!(offset < input.len() && line >= 1);
            assert!(std::str::from_utf8(input).is_err());
            false
        }
    }
}

#[test]
fn random_inputs_never_panic_and_round_trip() {
    let mut rng = XorShift::new(0xC0FFEE);
    let mut parsed = 0;
    let mut total = 0;
    for round in 0..900 {
        let input = match round % 3 {
            0 => fragment_soup(&mut rng),
            1 => random_bytes(&mut rng),
            _ => mutated_canvas(&mut rng),
        };
        total += 1;
        if check(&input, &mut rng) {
            parsed += 1;
        }
    }
    // Make sure the generators exercise the success path a fair amount.
    assert!(parsed > total / 3, "only {parsed} of {total} inputs parsed");
}

#[test]
fn deeply_nested_json_is_not_a_crash() {
    let deep = format!("{}{}\n", "{\"a\":".repeat(5000), "}".repeat(5000));
    let doc = parse(deep.as_bytes()).unwrap();
    assert_eq!(write(&doc), deep.as_bytes());
    let deep = format!(
        "{{\"id\":{}{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let doc = parse(deep.as_bytes()).unwrap();
    assert_eq!(write(&doc), deep.as_bytes());
}
