//! The example events in docs/PROTOCOL.md are real: each one verifies, bob's
//! inbound pipeline accepts (or drops, where the document says so) the whole
//! sequence in document order, the peer message decrypts to the documented
//! plaintext, the NIP-44 intermediate values follow from the steps the
//! document describes, and the code still builds exactly these events.
//!
//! The rest of the document is held to the code too: the decoded share
//! document of §8.2 is what the merge layer builds and renders, the
//! newcomer's offer of §8.5 runs as described through the sync engine, and
//! every default in the table of §11 is the code's.
//!
//! Format the test relies on (see the "Example events" section):
//! * the line before every ```json block holding an event (an object with a
//!   "sig") reads ``... Topic `T`, retain `true|false`, QoS `0|1`; bob:
//!   accepted.`` or ``...; bob: dropped `reason`.``;
//! * ```text blocks are checked when the line before them starts with
//!   "Canonical serialisation" (of the event before), "Bob's decryption
//!   result" (of the last peer message) or "NIP-44 intermediate values" (of
//!   the last peer message); the block after the paragraph starting "Sealing
//!   test vector" (§17.3) is recomputed from its key, nonce and plaintext.

use std::path::Path;

use base64ct::{Base64, Encoding};
use bitcoin::secp256k1::{ecdh, Parity, XOnlyPublicKey};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use meta_log_federation_module::federation::protocol::{
    tag_value, AnnouncedStatus, Presence, KIND_DEPARTURE, KIND_PEER_MESSAGE, KIND_PRESENCE,
    KIND_SYNC_CHANGE, KIND_SYNC_REQUEST, KIND_SYNC_RESPONSE,
};
use meta_log_federation_module::federation::{
    Body, Config, Inbound, LocalProfile, Outbound, Publication, SyncKind, Transition, TrustStore,
};
use meta_log_federation_module::identity::event::{canonical_json, verify_json, SignedEvent};
use meta_log_federation_module::identity::{nip44, Identity, DEFAULT_PATH};
use sha2::Sha256;

const ALICE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const BOB: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

/// One fenced block of the document.
struct Block {
    /// Info string after the opening fence (`json`, `text`, ...).
    tag: String,
    /// The last non-empty line before the opening fence.
    before: String,
    /// The lines inside the fence, joined with `\n`.
    body: String,
    /// Line number of the opening fence (1-based).
    line: usize,
}

/// What the line before an example event says.
struct Example {
    event: SignedEvent,
    json: String,
    topic: String,
    retain: bool,
    qos: u8,
    /// `None` for accepted, else the drop reason.
    dropped: Option<String>,
    line: usize,
}

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut last = "";
    let mut open: Option<(Block, Vec<&str>)> = None;
    for (n, line) in doc.lines().enumerate() {
        if let Some((block, lines)) = open.as_mut() {
            if line.trim_end() == "```" {
                block.body = lines.join("\n");
                out.extend(open.take().map(|(b, _)| b));
            } else {
                lines.push(line);
            }
        } else if let Some(tag) = line.strip_prefix("```") {
            let block = Block {
                tag: tag.trim().to_string(),
                before: last.to_string(),
                body: String::new(),
                line: n + 1,
            };
            open = Some((block, Vec::new()));
        } else if !line.trim().is_empty() {
            last = line;
        }
    }
    assert!(
        open.is_none(),
        "docs/PROTOCOL.md: a fenced block is not closed"
    );
    out
}

/// The text between the backticks that follow `key` in `line`.
fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(&rest[..rest.find('`')?])
}

fn examples(blocks: &[Block]) -> Vec<Example> {
    let mut out = Vec::new();
    for b in blocks {
        let here = format!("docs/PROTOCOL.md line {}", b.line);
        if b.tag != "json" {
            let event = serde_json::from_str::<serde_json::Value>(&b.body)
                .is_ok_and(|v| v.get("sig").is_some());
            assert!(!event, "{here}: an event in a block not tagged json");
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&b.body) {
            Ok(v) if v.get("sig").is_some() => {}
            Ok(_) => continue,
            Err(e) if b.body.contains("\"sig\"") => panic!("{here}: not JSON: {e}"),
            // Schemas with placeholders are not events.
            Err(_) => continue,
        }
        let event = verify_json(&b.body)
            .unwrap_or_else(|e| panic!("{here}: the event does not verify: {e}"));
        let topic = quoted(&b.before, "Topic ")
            .unwrap_or_else(|| panic!("{here}: the line before the event names no Topic `...`"));
        let retain = match quoted(&b.before, "retain ") {
            Some("true") => true,
            Some("false") => false,
            other => panic!("{here}: retain is {other:?}, expected `true` or `false`"),
        };
        let qos = match quoted(&b.before, "QoS ") {
            Some("0") => 0,
            Some("1") => 1,
            other => panic!("{here}: QoS is {other:?}, expected `0` or `1`"),
        };
        let dropped = if b.before.contains("bob: accepted") {
            None
        } else {
            Some(
                quoted(&b.before, "bob: dropped ")
                    .unwrap_or_else(|| {
                        panic!("{here}: say `bob: accepted` or ``bob: dropped `reason` ``")
                    })
                    .to_string(),
            )
        };
        out.push(Example {
            event,
            json: b.body.clone(),
            topic: topic.to_string(),
            retain,
            qos,
            dropped,
            line: b.line,
        });
    }
    out
}

fn identity(mnemonic: &str) -> Identity {
    Identity::from_mnemonic(mnemonic, "", DEFAULT_PATH).expect("test mnemonic")
}

fn inbound(id: &Identity) -> Inbound {
    Inbound::new(id.clone(), Config::default(), TrustStore::new()).expect("inbound")
}

/// The text of the ```text block whose preceding line starts with `label`,
/// after the block of line `after`.
fn text_after<'a>(blocks: &'a [Block], after: usize, label: &str) -> &'a str {
    blocks
        .iter()
        .find(|b| b.line > after && b.tag == "text" && b.before.starts_with(label))
        .map(|b| b.body.as_str())
        .unwrap_or_else(|| panic!("no ```text block after line {after} introduced by {label:?}"))
}

#[test]
fn example_events_verify_and_bob_accepts_the_sequence() {
    let doc = doc();
    let blocks = blocks(&doc);
    let examples = examples(&blocks);
    let (alice, bob) = (identity(ALICE), identity(BOB));
    for id in [&alice, &bob] {
        assert!(
            doc.contains(&format!("`{}`", id.peer_id())),
            "the document does not give peer id {}",
            id.peer_id()
        );
    }
    assert!(
        examples.len() >= 5,
        "only {} example events",
        examples.len()
    );
    // Every "**Event N, ...**" heading introduces an example, numbered in order.
    let headings: Vec<&str> = blocks
        .iter()
        .filter(|b| b.tag == "json")
        .filter_map(|b| b.before.strip_prefix("**Event "))
        .collect();
    let numbered = doc.lines().filter(|l| l.starts_with("**Event ")).count();
    assert_eq!(numbered, examples.len(), "event headings without an event");
    for (i, h) in headings.iter().enumerate() {
        assert!(
            h.starts_with(&format!("{},", i + 1)),
            "event {} is numbered {h}",
            i + 1
        );
    }
    let kinds: Vec<u32> = examples.iter().map(|e| e.event.kind).collect();
    for k in [KIND_PRESENCE, KIND_DEPARTURE, KIND_PEER_MESSAGE] {
        assert!(kinds.contains(&u32::from(k)), "no example of kind {k}");
    }
    let mut bob_in = inbound(&bob);
    let mut messages = 0;
    for ex in &examples {
        let here = format!("docs/PROTOCOL.md line {}", ex.line);
        assert!(
            ex.event.pubkey == alice.peer_id() || ex.event.pubkey == bob.peer_id(),
            "{here}: signed by neither alice nor bob"
        );
        let r = bob_in.accept(&ex.topic, ex.json.as_bytes(), ex.event.created_at);
        match (&ex.dropped, r) {
            (None, Ok(a)) => {
                if let Body::Message { plaintext } = &a.body {
                    messages += 1;
                    let want = text_after(&blocks, ex.line, "Bob's decryption result");
                    assert_eq!(plaintext, want, "{here}: decrypted text");
                }
            }
            (None, Err(d)) => panic!("{here}: documented as accepted, dropped: {d}"),
            (Some(want), Ok(_)) => panic!("{here}: documented as dropped `{want}`, accepted"),
            (Some(want), Err(d)) => assert_eq!(d.reason.as_str(), want, "{here}: {d}"),
        }
    }
    assert!(messages > 0, "no peer message was accepted");
}

#[test]
fn canonical_serialisation_and_nip44_values() {
    let doc = doc();
    let blocks = blocks(&doc);
    let examples = examples(&blocks);
    // Canonical serialisations: of the event just before the block.
    let mut checked = 0;
    for b in blocks
        .iter()
        .filter(|b| b.tag == "text" && b.before.starts_with("Canonical serialisation"))
    {
        let ev = &examples
            .iter()
            .rev()
            .find(|e| e.line < b.line)
            .expect("an event before the canonical serialisation")
            .event;
        let canonical = canonical_json(&ev.pubkey, ev.created_at, ev.kind, &ev.tags, &ev.content);
        assert_eq!(b.body, canonical, "line {}", b.line);
        let id = <sha2::Sha256 as sha2::Digest>::digest(b.body.as_bytes());
        assert_eq!(
            hex::encode(id),
            ev.id,
            "line {}: SHA-256 is not the id",
            b.line
        );
        checked += 1;
    }
    assert!(checked > 0, "no canonical serialisation example");

    // NIP-44: recompute every documented value from the steps the document
    // describes, with the primitives directly (not through nip44.rs).
    let (alice, bob) = (identity(ALICE), identity(BOB));
    let msg = examples
        .iter()
        .find(|e| e.event.kind == u32::from(KIND_PEER_MESSAGE))
        .expect("a peer message example");
    let values: Vec<(&str, &str)> = text_after(&blocks, msg.line, "NIP-44 intermediate values")
        .lines()
        .map(|l| {
            l.split_once(char::is_whitespace)
                .expect("`name value` lines")
        })
        .map(|(k, v)| (k, v.trim()))
        .collect();
    let get = |k: &str| {
        values
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("NIP-44 value {k} is missing"))
    };
    let plaintext = text_after(&blocks, msg.line, "Bob's decryption result");
    let sender = if msg.event.pubkey == alice.peer_id() {
        &alice
    } else {
        &bob
    };
    let recipient = if std::ptr::eq(sender, &alice) {
        &bob
    } else {
        &alice
    };
    // ECDH: the recipient's secret times the sender's x-only key lifted to even y.
    let xonly = XOnlyPublicKey::from_slice(&hex::decode(&msg.event.pubkey).unwrap()).unwrap();
    let point = xonly.public_key(Parity::Even);
    let xy = ecdh::shared_secret_point(&point, &recipient.keypair().secret_key());
    assert_eq!(hex::encode(&xy[..32]), get("shared_x"));
    let (prk, _) = Hkdf::<Sha256>::extract(Some(b"nip44-v2"), &xy[..32]);
    assert_eq!(hex::encode(prk), get("conversation_key"));
    for (a, b) in [(sender, recipient), (recipient, sender)] {
        let k = nip44::conversation_key(a.keypair(), &b.peer_id()).unwrap();
        assert_eq!(hex::encode(k), get("conversation_key"), "both directions");
    }
    let payload = Base64::decode_vec(&msg.event.content).expect("Base64 content");
    assert_eq!(payload[0], 2, "version byte");
    let (nonce, rest) = payload[1..].split_at(32);
    let (ciphertext, mac) = rest.split_at(rest.len() - 32);
    assert_eq!(hex::encode(nonce), get("nonce"));
    let mut okm = [0u8; 76];
    Hkdf::<Sha256>::from_prk(&prk)
        .unwrap()
        .expand(nonce, &mut okm)
        .unwrap();
    assert_eq!(hex::encode(&okm[..32]), get("chacha_key"));
    assert_eq!(hex::encode(&okm[32..44]), get("chacha_nonce"));
    assert_eq!(hex::encode(&okm[44..]), get("hmac_key"));
    assert_eq!(hex::encode(mac), get("mac"));
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&okm[44..]).unwrap();
    m.update(nonce);
    m.update(ciphertext);
    m.verify_slice(mac)
        .expect("HMAC-SHA256 over nonce || ciphertext");
    assert_eq!(ciphertext.len().to_string(), get("ciphertext_bytes"));
    let mut padded = ciphertext.to_vec();
    let key: [u8; 32] = okm[..32].try_into().unwrap();
    let iv: [u8; 12] = okm[32..44].try_into().unwrap();
    ChaCha20::new(&key.into(), &iv.into()).apply_keystream(&mut padded);
    let len = usize::from(u16::from_be_bytes([padded[0], padded[1]]));
    assert_eq!(len.to_string(), get("plaintext_bytes"));
    assert_eq!((padded.len() - 2).to_string(), get("padded_bytes"));
    assert!(padded[2 + len..].iter().all(|b| *b == 0), "zero padding");
    assert_eq!(std::str::from_utf8(&padded[2..2 + len]).unwrap(), plaintext);
}

/// The code still builds these events: same topic, retain flag and QoS, and
/// (except for the randomly encrypted peer message) the same event id.
#[test]
fn examples_are_what_outbound_builds() {
    let doc = doc();
    let blocks = blocks(&doc);
    let examples = examples(&blocks);
    let (alice, bob) = (identity(ALICE), identity(BOB));
    let config = Config::default();
    // Each signer's view of the peers, fed the documented sequence, so that
    // a peer message can be built to a peer it has heard of.
    let mut views = [inbound(&alice), inbound(&bob)];
    for ex in &examples {
        let here = format!("docs/PROTOCOL.md line {}", ex.line);
        let ev = &ex.event;
        let (who, view) = if ev.pubkey == alice.peer_id() {
            (&alice, 0)
        } else {
            (&bob, 1)
        };
        let kind = u16::try_from(ev.kind).expect("kind");
        let built: Publication = if kind == KIND_PRESENCE || kind == KIND_DEPARTURE {
            let p = Presence::parse(&ev.content, ev.created_at).expect("presence content");
            let profile = LocalProfile {
                name: p.name.clone(),
                software: p.software.clone(),
                capabilities: p.capabilities.clone(),
            };
            let out = Outbound::new(who.clone(), &config, profile, p.since).unwrap();
            match (kind, tag_value(&ev.tags, "t"), p.status) {
                (KIND_DEPARTURE, _, _) => out
                    .departure(p.reason.as_deref().unwrap_or_default(), ev.created_at)
                    .unwrap(),
                (_, Some("announce"), AnnouncedStatus::Online) => {
                    out.announce(ev.created_at).unwrap()
                }
                (_, _, AnnouncedStatus::Online) => out.presence(ev.created_at).unwrap(),
                (_, _, AnnouncedStatus::Offline) => out.will(ev.created_at).unwrap(),
            }
        } else {
            let profile = LocalProfile {
                name: String::new(),
                software: String::new(),
                capabilities: Vec::new(),
            };
            let out = Outbound::new(who.clone(), &config, profile, ev.created_at).unwrap();
            let sync = |k: SyncKind| {
                let extra = ev.tags.iter().skip(2).cloned().collect();
                out.sync(k, &ev.content, extra, ev.created_at).unwrap()
            };
            match kind {
                KIND_PEER_MESSAGE => {
                    let to = tag_value(&ev.tags, "p").expect("p tag");
                    let plaintext = text_after(&blocks, ex.line, "Bob's decryption result");
                    let table = views[view].peer_table_mut();
                    let p = out
                        .peer_message(table, to, plaintext, ev.created_at)
                        .unwrap_or_else(|e| panic!("{here}: {e}"));
                    let mine: SignedEvent = serde_json::from_slice(&p.payload).unwrap();
                    assert_eq!(
                        (mine.kind, &mine.tags, mine.created_at),
                        (ev.kind, &ev.tags, ev.created_at),
                        "{here}"
                    );
                    Publication {
                        event_id: ev.id.clone(),
                        ..p
                    }
                }
                KIND_SYNC_CHANGE => sync(SyncKind::Change),
                KIND_SYNC_REQUEST => sync(SyncKind::Request),
                KIND_SYNC_RESPONSE => sync(SyncKind::Response),
                other => panic!("{here}: kind {other} is not a federation kind"),
            }
        };
        assert_eq!(built.topic, ex.topic, "{here}: topic");
        assert_eq!(built.retain, ex.retain, "{here}: retain");
        assert_eq!(built.qos, ex.qos, "{here}: QoS");
        assert_eq!(
            built.event_id, ev.id,
            "{here}: the code builds another event"
        );
        for v in &mut views {
            let _ = v.accept(&ex.topic, ex.json.as_bytes(), ev.created_at);
        }
    }
}

/// The document says the will, delivered right after the first presence
/// (alice vanished instead of departing), takes effect.
#[test]
fn the_will_alone_takes_effect() {
    let blocks = blocks(&doc());
    let examples = examples(&blocks);
    let bob = identity(BOB);
    let is_presence = |e: &&Example, status: &str| {
        e.event.kind == u32::from(KIND_PRESENCE)
            && Presence::parse(&e.event.content, e.event.created_at)
                .is_ok_and(|p| serde_json::to_value(p.status).unwrap() == status)
    };
    let online = examples
        .iter()
        .find(|e| is_presence(e, "online") && tag_value(&e.event.tags, "t") == Some("presence"))
        .expect("a retained online presence");
    let will = examples
        .iter()
        .find(|e| is_presence(e, "offline") && e.event.pubkey == online.event.pubkey)
        .expect("a last will of the same peer");
    let mut b = inbound(&bob);
    let now = online.event.created_at;
    b.accept(&online.topic, online.json.as_bytes(), now)
        .expect("presence");
    let a = b
        .accept(&will.topic, will.json.as_bytes(), now + 90)
        .expect("will");
    assert_eq!(
        a.transitions,
        vec![Transition::WentOffline {
            peer_id: will.event.pubkey.clone(),
            graceful: false
        }]
    );
}

// ---- The automerge document of a share (§8): the decoded example is real. ----

/// The automerge document as JSON: maps become objects (keys in automerge's
/// order, which is by name), lists arrays, string scalars strings, booleans
/// booleans. Anything else is not part of the schema the document gives.
fn decode(doc: &automerge::Automerge) -> serde_json::Value {
    use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
    fn value(doc: &automerge::Automerge, v: Value<'_>, id: ObjId) -> serde_json::Value {
        match v {
            Value::Object(ObjType::Map) => {
                let mut m = serde_json::Map::new();
                for k in doc.keys(&id) {
                    let (v, child) = doc.get(&id, k.as_str()).unwrap().unwrap();
                    m.insert(k.clone(), value(doc, v, child));
                }
                serde_json::Value::Object(m)
            }
            Value::Object(ObjType::List) => serde_json::Value::Array(
                (0..doc.length(&id))
                    .map(|i| {
                        let (v, child) = doc.get(&id, i).unwrap().unwrap();
                        value(doc, v, child)
                    })
                    .collect(),
            ),
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
                ScalarValue::Boolean(b) => serde_json::Value::Bool(*b),
                other => panic!("a scalar outside the schema: {other:?}"),
            },
            other => panic!("an object outside the schema: {other:?}"),
        }
    }
    let mut root = serde_json::Map::new();
    for k in doc.keys(ROOT) {
        let (v, id) = doc.get(ROOT, k.as_str()).unwrap().unwrap();
        root.insert(k.clone(), value(doc, v, id));
    }
    serde_json::Value::Object(root)
}

/// Renders a decoded share document by the rules §8 states, without the
/// crate: the base text `t` as it is when the item has no override; else the
/// base object with the overrides applied in name order (existing keys keep
/// their place, new keys are appended, `""` removes), written compactly,
/// followed by the base text's line ending.
fn render_by_the_documented_rules(decoded: &serde_json::Value) -> String {
    type Object = serde_json::Map<String, serde_json::Value>;
    let mut out = String::new();
    if decoded["bom"] == serde_json::Value::Bool(true) {
        out.push('\u{feff}');
    }
    let lines = decoded["lines"].as_array().expect("`lines` is a list");
    for (i, item) in lines.iter().enumerate() {
        let item = item.as_object().expect("every item is a map");
        let base = item.get("t").and_then(|t| t.as_str()).unwrap_or("");
        let ending = if base.ends_with("\r\n") {
            "\r\n"
        } else if base.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        let content = &base[..base.len() - ending.len()];
        let mut overrides: Vec<(&str, &str)> = item
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix('.')?, v.as_str()?)))
            .collect();
        overrides.sort();
        let line = match serde_json::from_str::<Object>(content) {
            Ok(mut object) if !overrides.is_empty() => {
                for (field, json) in overrides {
                    if json.is_empty() {
                        object.shift_remove(field);
                    } else if let Ok(v) = serde_json::from_str(json) {
                        object.insert(field.to_string(), v);
                    }
                }
                format!("{}{ending}", serde_json::to_string(&object).unwrap())
            }
            _ => base.to_string(),
        };
        out.push_str(&line);
        if i + 1 < lines.len() && ending.is_empty() {
            out.push('\n');
        }
    }
    out
}

/// The ```text or ```json block whose preceding line starts with `label`.
fn block<'a>(blocks: &'a [Block], tag: &str, label: &str) -> &'a Block {
    let found: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.tag == tag && b.before.starts_with(label))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "docs/PROTOCOL.md: expected one ```{tag} block introduced by {label:?}"
    );
    found[0]
}

/// A file in a ```text block: its lines, each ended by `\n`.
fn file_text(b: &Block) -> String {
    format!("{}\n", b.body)
}

/// §8's decoded document is what the crate builds: the origin imports the
/// first text, a second peer joins and saves the second text, and the origin
/// applies that change. The decoded automerge document equals the JSON block,
/// both peers' files equal the rendered text, and the documented rendering
/// rules give that text from the decoded document alone.
#[test]
fn decoded_share_document_is_what_the_crate_builds() {
    use meta_log_federation_module::merge::SharedDoc;
    let blocks = blocks(&doc());
    let imported = file_text(block(
        &blocks,
        "text",
        "Share text as the origin imports it",
    ));
    let saved = file_text(block(
        &blocks,
        "text",
        "The same file as the second peer saves it",
    ));
    let decoded_block = block(&blocks, "json", "Decoded document after the edit");
    let rendered = file_text(block(&blocks, "text", "Rendered text"));

    let mut origin = SharedDoc::import(imported.as_bytes(), [1; 32]).expect("import");
    let mut joiner = SharedDoc::new([2; 32]);
    joiner
        .apply_remote(&origin.changes_since(&[]).expect("whole document"))
        .expect("join");
    assert_eq!(joiner.text(), imported.as_bytes(), "the joiner's file");
    let change = joiner
        .apply_local_text(saved.as_bytes())
        .expect("local save")
        .expect("a change");
    origin.apply_remote(&change).expect("apply the change");

    let state = automerge::Automerge::load(&origin.save()).expect("load");
    let decoded = decode(&state);
    let documented: serde_json::Value = serde_json::from_str(&decoded_block.body)
        .unwrap_or_else(|e| panic!("line {}: not JSON: {e}", decoded_block.line));
    assert_eq!(
        documented,
        decoded,
        "docs/PROTOCOL.md line {}: the decoded document differs; the crate builds\n{}",
        decoded_block.line,
        serde_json::to_string_pretty(&decoded).unwrap()
    );
    let text = |d: &SharedDoc| String::from_utf8(d.text()).expect("UTF-8");
    assert_eq!(text(&origin), rendered, "the origin's file");
    assert_eq!(text(&joiner), rendered, "the joiner's file");
    assert_eq!(
        render_by_the_documented_rules(&documented),
        rendered,
        "the rendering rules of §8 do not give the rendered text"
    );
}

// ---- The defaults table of §11 is the code's. ----

/// A default as the code has it: a number in the unit the table uses, or a
/// string.
#[derive(Debug, Clone, PartialEq)]
enum Stated {
    N(u64),
    S(String),
}

/// The defaults the code exposes, under the names the table's "source"
/// column uses.
fn code_defaults() -> Vec<(&'static str, Stated)> {
    use meta_log_federation_module::federation::protocol::{
        DEFAULT_PREFIX, MAX_CAPABILITIES, MAX_FIELD_BYTES,
    };
    use meta_log_federation_module::sync::{
        SyncConfig, EVENT_OVERHEAD, MAX_NAME_BYTES, MIN_CONTENT_BYTES,
    };
    use meta_log_federation_module::transport::options::ConnectOptions;
    use meta_log_federation_module::transport::url;
    use Stated::{N, S};
    let c = Config::default();
    let s = SyncConfig::default();
    let o = ConnectOptions::new(url::parse("mqtt://localhost").unwrap(), "x");
    let n = |v: usize| N(v as u64);
    vec![
        ("Config::max_event_bytes", n(c.max_event_bytes)),
        ("Config::max_age_secs", N(c.max_age_secs)),
        ("Config::max_future_secs", N(c.max_future_secs)),
        ("Config::replay_capacity", n(c.replay_capacity)),
        ("Config::stale_after_secs", N(c.stale_after_secs)),
        ("Config::max_peers", n(c.max_peers)),
        ("Config::policy", S(c.policy.as_str().to_string())),
        ("DEFAULT_PREFIX", S(DEFAULT_PREFIX.to_string())),
        ("MAX_FIELD_BYTES", n(MAX_FIELD_BYTES)),
        ("MAX_CAPABILITIES", n(MAX_CAPABILITIES)),
        ("nip44::MIN_PLAINTEXT", n(nip44::MIN_PLAINTEXT)),
        ("nip44::MAX_PLAINTEXT", n(nip44::MAX_PLAINTEXT)),
        ("ConnectOptions::keep_alive", N(o.keep_alive.as_secs())),
        (
            "ConnectOptions::min_backoff",
            n(o.min_backoff.as_millis() as usize),
        ),
        ("ConnectOptions::max_backoff", N(o.max_backoff.as_secs())),
        ("SyncConfig::max_content_bytes", n(s.max_content_bytes)),
        ("EVENT_OVERHEAD", n(EVENT_OVERHEAD)),
        ("MIN_CONTENT_BYTES", n(MIN_CONTENT_BYTES)),
        (
            "SyncConfig::max_incoming_content_bytes",
            n(s.max_incoming_content_bytes),
        ),
        ("SyncConfig::max_payload_bytes", n(s.max_payload_bytes)),
        ("SyncConfig::max_buffered_bytes", n(s.max_buffered_bytes)),
        ("SyncConfig::max_transfers", n(s.max_transfers)),
        ("SyncConfig::chunk_max_age_secs", N(s.chunk_max_age_secs)),
        (
            "SyncConfig::request_interval_secs",
            N(s.request_interval_secs),
        ),
        ("SyncConfig::max_shares", n(s.max_shares)),
        ("MAX_NAME_BYTES", n(MAX_NAME_BYTES)),
    ]
}

/// Private constants the table names, read from their definition in
/// `src/` (`const NAME: TYPE = VALUE;`, an integer type).
fn private_constant(name: &str) -> Option<u64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root];
    let needle = format!("const {name}: ");
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Some(i) = text.find(&needle) {
                    // Past the type (`usize`, `u64`, ...) to the value.
                    let value = &text[i + needle.len()..];
                    let value = &value[value.find('=')? + 1..];
                    let value: String = value[..value.find(';')?]
                        .chars()
                        .filter(|c| *c != '_')
                        .collect();
                    return Some(value.trim().parse().unwrap_or_else(|_| {
                        panic!("{}: {name} is not a plain number", path.display())
                    }));
                }
            }
        }
    }
    None
}

/// The default of an Elisp option, from its `defcustom` in `lisp/`: a number,
/// a string, or a quoted symbol (as a string).
fn defcustom_default(option: &str) -> Option<Stated> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lisp");
    let needle = format!("(defcustom {option}");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let Some(i) = text.find(&needle) else {
            continue;
        };
        let rest = &text[i + needle.len()..];
        // The name must end here (not be the prefix of a longer name).
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let value = rest.split_whitespace().next()?;
        return Some(if let Some(symbol) = value.strip_prefix('\'') {
            Stated::S(symbol.to_string())
        } else if let Some(s) = value.strip_prefix('"') {
            Stated::S(s.trim_end_matches('"').to_string())
        } else {
            Stated::N(value.parse().unwrap_or_else(|_| {
                panic!("the default of {option} is not a plain number, string or symbol")
            }))
        });
    }
    None
}

/// The cell's text if it is exactly one `code` span.
fn only_code(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// The default a table cell states: its first number (thousands separated
/// by commas), or its first `code` span when it has no number.
fn stated_default(cell: &str) -> Stated {
    let digits: String = cell
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    if let Ok(n) = digits.parse() {
        return Stated::N(n);
    }
    let code = quoted(cell, "").unwrap_or_else(|| panic!("no default in {cell:?}"));
    Stated::S(code.to_string())
}

/// Every row of §11's table states the default its source and its Elisp
/// option have in the code, and every default the code exposes is in the
/// table.
#[test]
fn limits_table_matches_the_code() {
    let doc = doc();
    let section = &doc[doc.find("## 11. Limits and settings").expect("§11")..];
    let section = &section[..section.find("\n## ").expect("the end of §11")];
    let mut rows = section.lines().filter(|l| l.starts_with('|')).map(|l| {
        l.trim_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect::<Vec<_>>()
    });
    let header = rows.next().expect("a table in §11");
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("§11's table has no column {name:?}"))
    };
    let (default, source, option) = (col("default"), col("source"), col("Elisp option"));
    let code = code_defaults();
    let mut named = Vec::new();
    let mut rows_checked = 0;
    for row in rows.skip(1) {
        assert_eq!(row.len(), header.len(), "§11 row {row:?}");
        let stated = stated_default(row[default]);
        let mut checks = 0;
        if let Some(name) = only_code(row[source]) {
            let value = match code.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => Some(v.clone()),
                None => private_constant(name).map(Stated::N),
            }
            .unwrap_or_else(|| panic!("§11: the source `{name}` is not known to the test"));
            assert_eq!(stated, value, "§11: the default of `{name}`");
            named.push(name);
            checks += 1;
        }
        if let Some(name) = only_code(row[option]) {
            let value = defcustom_default(name)
                .unwrap_or_else(|| panic!("§11: no defcustom {name} in lisp/"));
            assert_eq!(stated, value, "§11: the default of {name}");
            checks += 1;
        }
        assert!(
            checks > 0,
            "§11: nothing in the code checks the row {row:?}"
        );
        rows_checked += 1;
    }
    assert!(
        rows_checked >= code.len(),
        "§11 has only {rows_checked} rows"
    );
    // Private constants the test reads from the source; the table must keep them.
    let private = ["DONE_MEMORY", "MAX_REQUEST_HASHES", "HAVE_HASHES"];
    for name in code.iter().map(|(n, _)| *n).chain(private) {
        assert!(
            named.contains(&name),
            "§11 does not give the default of `{name}`"
        );
    }
}

// ---- §8.5: the newcomer's offer, step by step, through the real engine. ----

/// The contents §8.5 quotes, in order, with ALICE-ID replaced by `alice`.
fn offer_contents(doc: &str, alice: &str) -> Vec<serde_json::Value> {
    let start = doc.find("### 8.5 ").expect("§8.5");
    let section = &doc[start..];
    let section = &section[..section.find("\n### ").expect("the end of §8.5")];
    section
        .split('`')
        .filter(|s| s.starts_with("{\"v\":1,"))
        .map(|s| serde_json::from_str(&s.replace("ALICE-ID", alice)).expect("a JSON content"))
        .collect()
}

/// `content` has the documented fields, in the documented order, with the
/// documented values (`…` stands for any value).
fn assert_content_like(content: &str, documented: &serde_json::Value, step: &str) {
    let content: serde_json::Value = serde_json::from_str(content).expect("JSON content");
    let (got, want) = (
        content.as_object().unwrap(),
        documented.as_object().unwrap(),
    );
    let keys =
        |m: &serde_json::Map<String, serde_json::Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(got),
        keys(want),
        "§8.5 step {step}: the fields of {content}"
    );
    for (k, v) in want {
        if v != "…" {
            assert_eq!(&got[k], v, "§8.5 step {step}: `{k}` of {content}");
        }
    }
}

/// The one action of `actions` that publishes, with its kind, content and tags.
fn published(
    actions: &[meta_log_federation_module::sync::Action],
    step: &str,
) -> (SyncKind, String, Vec<Vec<String>>) {
    use meta_log_federation_module::sync::Action;
    let p: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish {
                kind,
                content,
                tags,
            } => Some((*kind, content.clone(), tags.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(p.len(), 1, "§8.5 step {step}: one event, not {actions:?}");
    p.into_iter().next().unwrap()
}

/// §8.5 as the engine does it: alice (the origin) offers her share to bob
/// with a request addressed to him, bob asks her for the whole document with
/// empty heads, alice answers with a full response addressed to bob, and bob
/// creates the share with alice's text.
#[test]
fn newcomer_offer_runs_as_documented() {
    use meta_log_federation_module::sync::{Action, SyncEngine};
    let (alice_id, bob_id) = (identity(ALICE).peer_id(), identity(BOB).peer_id());
    let documented = offer_contents(&doc(), &alice_id);
    assert_eq!(
        documented.len(),
        2,
        "§8.5 quotes the offer and bob's request"
    );
    let dir = tempfile::tempdir().unwrap();
    let open = |who: &str, id: &str, actor: u8| {
        let d = dir.path().join(who);
        SyncEngine::open(&d.join("sync"), &d.join("state"), id, [actor; 32]).unwrap()
    };
    let (mut alice, mut bob) = (open("alice", &alice_id, 1), open("bob", &bob_id, 2));
    let now = 1_767_225_600;
    let file = dir.path().join("board.canvasl");
    std::fs::write(&file, "@version 1.0\n{\"id\":\"a\",\"x\":1}\n").unwrap();
    alice.share(&file, None, now).unwrap();
    // One more change, so that alice has a `have` beyond her heads.
    std::fs::write(&file, "@version 1.0\n{\"id\":\"a\",\"x\":2}\n").unwrap();
    alice
        .local_file_changed(file.to_str().unwrap(), now)
        .unwrap();
    let p = |peer: &str| vec![vec!["p".to_string(), peer.to_string()]];

    // Step 2: the offer.
    let (kind, offer, tags) = published(&alice.offer(&bob_id, now), "2");
    assert_eq!((kind, &tags), (SyncKind::Request, &p(&bob_id)), "step 2");
    assert_content_like(&offer, &documented[0], "2");
    // Step 3: bob asks the origin for the whole document.
    let actions = bob.handle(&alice_id, kind, &offer, &tags, now).unwrap();
    let (kind, request, tags) = published(&actions, "3");
    assert_eq!((kind, &tags), (SyncKind::Request, &p(&alice_id)), "step 3");
    assert_content_like(&request, &documented[1], "3");
    // Step 4: the whole document, to bob.
    let actions = alice.handle(&bob_id, kind, &request, &tags, now).unwrap();
    let (kind, response, tags) = published(&actions, "4");
    assert_eq!((kind, &tags), (SyncKind::Response, &p(&bob_id)), "step 4");
    let r: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert_eq!((&r["op"], &r["full"]), (&"response".into(), &true.into()));
    // Step 5: bob creates the share at SYNC-DIR/ALICE-ID/board.canvasl.
    let actions = bob.handle(&alice_id, kind, &response, &tags, now).unwrap();
    let want = dir
        .path()
        .join("bob/sync")
        .canonicalize()
        .unwrap()
        .join(&alice_id)
        .join("board.canvasl");
    assert!(
        actions.iter().any(|a| matches!(a,
            Action::Updated { path, created: true, .. } if *path == want)),
        "step 5: {actions:?}"
    );
    assert_eq!(std::fs::read(&want).unwrap(), std::fs::read(&file).unwrap());
    // Step 3 again: a request for an unknown share from another peer than
    // its origin is ignored.
    let mut carol = open("carol", &"c".repeat(64), 3);
    assert!(carol
        .handle(&bob_id, SyncKind::Request, &offer, &[], now)
        .unwrap()
        .is_empty());
}

/// §17.3's sealing test vector: the opaque tag and the sealed box follow from the key, nonce
/// and plaintext by the documented construction (SHA-256 and XChaCha20-Poly1305 used
/// directly), and the module opens the box to the plaintext.
#[test]
fn sealing_test_vector() {
    use chacha20poly1305::aead::{Aead, KeyInit as _, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use meta_log_federation_module::sync::share_key::ShareKey;
    use sha2::Digest;

    let doc = doc();
    let start = doc
        .find("Sealing test vector")
        .expect("§17.3 has a sealing test vector");
    let block = &doc[start..];
    let body = &block[block.find("```text\n").expect("a text block") + 8..];
    let body = &body[..body.find("```").expect("a closed block")];
    let get = |k: &str| {
        body.lines()
            .find_map(|l| {
                l.split_once(char::is_whitespace)
                    .filter(|(n, _)| *n == k)
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("sealing test vector: no `{k}` line"))
    };
    let key = hex::decode(get("key")).unwrap();
    let nonce = hex::decode(get("nonce")).unwrap();
    let plaintext = get("plaintext");
    assert_eq!((key.len(), nonce.len()), (32, 24));
    assert_eq!(get("kind"), "request");
    let mut h = Sha256::new();
    h.update(b"meta-log-federation share tag v1");
    h.update(&key);
    let tag = hex::encode(&h.finalize()[..16]);
    assert_eq!(get("tag"), tag, "the opaque tag");
    let aad = format!("meta-log-federation sealed v1|{tag}|request");
    assert_eq!(get("aad"), aad, "the associated data");
    let cipher = XChaCha20Poly1305::new_from_slice(&key).unwrap();
    let ct = cipher
        .encrypt(
            &XNonce::from(<[u8; 24]>::try_from(nonce.as_slice()).unwrap()),
            Payload {
                msg: plaintext.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    assert_eq!(ct.len(), plaintext.len() + 16);
    let boxed = Base64::encode_string(&[nonce.as_slice(), ct.as_slice()].concat());
    assert_eq!(get("box"), boxed, "the box");
    let module_key = ShareKey::from_bytes(1, &key).unwrap();
    assert_eq!(module_key.tag(), tag, "the module's tag");
    assert_eq!(
        module_key.open(SyncKind::Request, &boxed).unwrap(),
        plaintext,
        "the module opens the box"
    );
    assert!(
        module_key.open(SyncKind::Change, &boxed).is_err(),
        "a box is bound to its kind"
    );
}
