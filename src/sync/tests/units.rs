//! Names, share URLs, content schemas, automerge framing checks, chunking and reassembly, and
//! the content budget against real signed events.

use super::chunk::{split, ChunkOutcome, Reassembler, ReassemblyLimits};
use super::share_id::{check_share_name, NameError, ShareId, MAX_NAME_BYTES};
use super::util::{peer, R, T0};
use super::wire::{
    check_automerge_chunks, encode_chunk, encode_data, encode_request, escaped_len, parse, Chunk,
    Of, Op, ParseLimits,
};
use super::{content_budget, SyncConfig};
use crate::canvasl::generate::XorShift;
use crate::canvasl::generate_canvas;
use crate::merge::SharedDoc;

const LIMITS: ParseLimits = ParseLimits {
    max_payload: 64 << 20,
    max_chunks: 1 << 17,
    max_hashes: 1024,
};

#[test]
fn share_names() {
    for ok in [
        "plan.canvasl",
        "a.jsonl",
        "Überblick λ.canvasl",
        "with space.canvasl",
        "q\"uote.canvasl",
        "v1.2.canvasl",
        "x.canvasl.jsonl",
    ] {
        assert_eq!(check_share_name(ok), Ok(()), "{ok}");
    }
    let max = format!("{}.jsonl", "é".repeat((MAX_NAME_BYTES - 6) / 2));
    assert!(max.len() <= MAX_NAME_BYTES);
    assert_eq!(check_share_name(&max), Ok(()));
    let cases: [(&str, &str); 17] = [
        ("", "name-empty"),
        ("..", "name-dots"),
        (".", "name-dots"),
        ("../x.canvasl", "name-separator"),
        ("a/b.canvasl", "name-separator"),
        ("a\\b.canvasl", "name-separator"),
        ("/abs.canvasl", "name-absolute"),
        ("\\\\server\\x.canvasl", "name-absolute"),
        ("C:x.canvasl", "name-absolute"),
        (".hidden.canvasl", "name-dots"),
        ("a..b.canvasl", "name-dots"),
        ("tab\t.canvasl", "name-control"),
        ("del\u{7f}.canvasl", "name-control"),
        ("notes.doc", "name-extension"),
        ("org", "name-extension"),
        ("canvasl", "name-extension"),
        (".jsonl", "name-dots"),
    ];
    for (name, reason) in cases {
        let e = check_share_name(name).expect_err(name);
        assert_eq!(e.reason(), reason, "{name:?}");
        assert!(!e.to_string().is_empty());
    }
    let long = format!("{}.canvasl", "x".repeat(MAX_NAME_BYTES));
    assert_eq!(check_share_name(&long), Err(NameError::TooLong(long.len())));
}

#[test]
fn share_urls() -> R {
    let origin = peer(0xab);
    let id = ShareId::new(&origin, "plan.canvasl")?;
    let url = format!("canvasl://{origin}/plan.canvasl");
    assert_eq!(id.to_string(), url);
    assert_eq!(id.url(), url);
    assert_eq!(ShareId::parse(&url)?, id);
    assert_eq!(url.parse::<ShareId>()?, id);
    assert_eq!(id.origin(), origin);
    assert_eq!(id.name(), "plan.canvasl");
    for (bad, reason) in [
        ("plan.canvasl", "bad-share"),
        ("canvasl://", "bad-share"),
        ("canvasl:///plan.canvasl", "bad-origin"),
        ("canvasl://abc/plan.canvasl", "bad-origin"),
    ] {
        assert_eq!(ShareId::parse(bad).map_err(|e| e.reason()), Err(reason));
    }
    let e = ShareId::parse(&format!("canvasl://{origin}/a/b.canvasl")).unwrap_err();
    assert_eq!(e.reason(), "name-separator");
    Ok(())
}

fn sample_doc() -> SharedDoc {
    SharedDoc::import(generate_canvas(300, 3).as_bytes(), [1; 32]).expect("import")
}

#[test]
fn contents_round_trip_and_are_checked() -> R {
    let share = ShareId::new(&peer(1), "plan.canvasl")?;
    let mut doc = sample_doc();
    let saved = doc.save();
    let c = encode_data(&share, Of::Change, true, &saved);
    assert!(c.starts_with("{\"v\":1,\"share\":\"canvasl://"), "{c:.80}");
    let parsed = parse(&c, &LIMITS).map_err(|e| e.1)?;
    assert_eq!(parsed.share, share);
    assert_eq!(
        parsed.op,
        Op::Data {
            of: Of::Change,
            full: true,
            data: saved.clone()
        }
    );
    let heads = doc.heads();
    let r = encode_request(&share, &heads, &[]);
    assert!(!r.contains("have"));
    assert_eq!(
        parse(&r, &LIMITS).map_err(|e| e.1)?.op,
        Op::Request {
            heads: heads.clone(),
            have: Vec::new()
        }
    );
    let r = encode_request(&share, &[], &heads);
    assert!(
        matches!(parse(&r, &LIMITS).map_err(|e| e.1)?.op, Op::Request { heads, .. } if heads.is_empty())
    );
    let chunk = Chunk {
        of: Of::Response,
        full: false,
        id: "00ff".into(),
        index: 1,
        count: 3,
        size: 100,
        data: vec![7; 10],
    };
    let cc = encode_chunk(&share, &chunk);
    assert_eq!(parse(&cc, &LIMITS).map_err(|e| e.1)?.op, Op::Chunk(chunk));
    // Unknown fields are ignored; a duplicated field is malformed.
    let text = doc.text();
    let change = doc
        .apply_local_text(&[text.as_slice(), b"{\"id\":\"new\"}\n"].concat())?
        .ok_or("no change")?;
    let extra =
        encode_data(&share, Of::Response, false, &change).replacen('{', "{\"later\":[1,2],", 1);
    assert!(parse(&extra, &LIMITS).is_ok());
    let dup =
        encode_data(&share, Of::Change, false, &change).replacen("\"v\":1,", "\"v\":1,\"v\":1,", 1);
    assert_eq!(parse(&dup, &LIMITS).map_err(|e| e.0), Err("malformed"));
    // Limits.
    let small = ParseLimits {
        max_payload: 100,
        ..LIMITS
    };
    assert_eq!(parse(&c, &small).map_err(|e| e.0), Err("too-large"));
    let many = encode_request(&share, &vec![1u8; 32 * 600], &vec![2u8; 32 * 600]);
    assert_eq!(parse(&many, &LIMITS).map_err(|e| e.0), Err("too-large"));
    Ok(())
}

#[test]
fn automerge_framing_is_checked() -> R {
    let mut doc = sample_doc();
    let saved = doc.save();
    check_automerge_chunks(&saved)?;
    let heads_before = doc.heads();
    // A large change is compressed by automerge; a small one is not.
    let big: String = (0..400)
        .map(|i| format!("{{\"id\":\"x{i}\",\"t\":\"{}\"}}\n", "w".repeat(60)))
        .collect();
    let text = [doc.text(), big.into_bytes()].concat();
    let c1 = doc.apply_local_text(&text)?.ok_or("no change")?;
    check_automerge_chunks(&c1)?;
    let c2 = doc
        .apply_local_text(&[text.as_slice(), b"{\"id\":\"y\"}\n"].concat())?
        .ok_or("no change")?;
    check_automerge_chunks(&c2)?;
    let (since, full) = doc.changes_for(&heads_before)?;
    assert!(!full);
    check_automerge_chunks(&since)?;
    check_automerge_chunks(&[saved.as_slice(), &c1, &c2].concat())?;
    // Damaged framing.
    assert!(check_automerge_chunks(&[]).is_err());
    assert!(check_automerge_chunks(&saved[..saved.len() - 1]).is_err());
    assert!(check_automerge_chunks(&[saved.as_slice(), &[0x85]].concat()).is_err());
    let mut flipped = c2.clone();
    flipped[5] ^= 1;
    assert!(check_automerge_chunks(&flipped).is_err());
    let mut body = c2.clone();
    let last = body.len() - 1;
    body[last] ^= 0x40;
    assert!(check_automerge_chunks(&body).is_err());
    let mut magic = c2;
    magic[0] = 0;
    assert!(check_automerge_chunks(&magic).is_err());
    Ok(())
}

#[test]
fn escaped_length_is_never_below_the_real_one() {
    let mut rng = XorShift::new(1);
    let alphabet = [
        'a', '"', '\\', '\n', '\u{1}', 'é', '→', '{', '/', '\u{1f}', ' ',
    ];
    for _ in 0..500 {
        let s: String = (0..rng.below(40))
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let real = serde_json::to_string(&s).map(|j| j.len() - 2).unwrap_or(0);
        assert!(escaped_len(&s) >= real, "{s:?}");
    }
    assert_eq!(escaped_len("abc"), 3);
    assert_eq!(escaped_len("a\"b"), 4);
}

fn limits() -> ReassemblyLimits {
    ReassemblyLimits {
        max_buffered: 1 << 20,
        max_transfers: 4,
        max_age_secs: 60,
    }
}

fn chunks_of(share: &ShareId, data: &[u8], budget: usize) -> Vec<Chunk> {
    split(share, Of::Change, true, data, budget, 10_000)
        .expect("split")
        .iter()
        .map(|c| match parse(c, &LIMITS).expect("parse").op {
            Op::Chunk(ch) => ch,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn split_and_reassemble_in_any_order() -> R {
    let share = ShareId::new(&peer(1), "plan.canvasl")?;
    let data = sample_doc().save();
    assert_eq!(
        split(&share, Of::Change, true, &data, 1 << 20, 10)
            .map_err(|e| format!("{e:?}"))?
            .len(),
        1
    );
    let contents =
        split(&share, Of::Change, true, &data, 2048, 10_000).map_err(|e| format!("{e:?}"))?;
    assert!(contents.len() > 5);
    assert!(contents.iter().all(|c| escaped_len(c) <= 2048));
    let from = peer(2);
    for seed in 0..20 {
        let mut rng = XorShift::new(seed);
        let mut chunks = chunks_of(&share, &data, 2048);
        // Shuffle, and duplicate some.
        for i in (1..chunks.len()).rev() {
            chunks.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for _ in 0..5 {
            let c = chunks[rng.below(chunks.len() as u64) as usize].clone();
            chunks.push(c);
        }
        let mut r = Reassembler::new(limits());
        let mut complete = 0;
        for c in chunks {
            match r.add(&from, &share, c, T0) {
                ChunkOutcome::Complete {
                    data: d,
                    full,
                    of,
                    share: s,
                } => {
                    assert_eq!(d, data);
                    assert!(full && of == Of::Change && s == share);
                    complete += 1;
                }
                ChunkOutcome::Pending | ChunkOutcome::Duplicate => {}
                ChunkOutcome::Refused(reason, d) => panic!("{reason}: {d}"),
            }
        }
        assert_eq!(complete, 1);
        assert_eq!((r.pending(), r.buffered()), (0, 0));
    }
    Ok(())
}

#[test]
fn reassembly_refuses_mismatches_overflow_and_expires() -> R {
    let share = ShareId::new(&peer(1), "plan.canvasl")?;
    let data = sample_doc().save();
    let chunks = chunks_of(&share, &data, 2048);
    let from = peer(2);
    // Mismatched count: refused, the payload dropped.
    let mut r = Reassembler::new(limits());
    assert_eq!(
        r.add(&from, &share, chunks[0].clone(), T0),
        ChunkOutcome::Pending
    );
    let mut odd = chunks[1].clone();
    odd.count += 1;
    assert!(matches!(
        r.add(&from, &share, odd, T0),
        ChunkOutcome::Refused("chunk-mismatch", _)
    ));
    assert_eq!(r.pending(), 0);
    // Other senders' payloads are separate.
    let mut r = Reassembler::new(limits());
    assert_eq!(
        r.add(&from, &share, chunks[0].clone(), T0),
        ChunkOutcome::Pending
    );
    assert_eq!(
        r.add(&peer(3), &share, chunks[0].clone(), T0),
        ChunkOutcome::Pending
    );
    assert_eq!(r.pending(), 2);
    // Too many payloads, too many bytes.
    let mut r = Reassembler::new(ReassemblyLimits {
        max_buffered: data.len() * 3,
        max_transfers: 2,
        max_age_secs: 60,
    });
    for k in 0..2u8 {
        let mut c = chunks[0].clone();
        c.id = format!("{k:02x}");
        assert_eq!(r.add(&from, &share, c, T0), ChunkOutcome::Pending);
    }
    let mut c = chunks[0].clone();
    c.id = "ee".into();
    assert!(matches!(
        r.add(&from, &share, c, T0),
        ChunkOutcome::Refused("chunk-overflow", _)
    ));
    let mut r = Reassembler::new(ReassemblyLimits {
        max_buffered: data.len() / 2,
        ..limits()
    });
    assert!(matches!(
        r.add(&from, &share, chunks[0].clone(), T0),
        ChunkOutcome::Refused("chunk-overflow", _)
    ));
    // Expiry.
    let mut r = Reassembler::new(limits());
    assert_eq!(
        r.add(&from, &share, chunks[0].clone(), T0),
        ChunkOutcome::Pending
    );
    assert!(r.expire(T0 + 60).is_empty());
    let dropped = r.expire(T0 + 61);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, "chunk-expired");
    assert_eq!((r.pending(), r.buffered()), (0, 0));
    // A damaged chunk of the right length: the whole payload is refused.
    let mut r = Reassembler::new(limits());
    let mut bad = chunks.clone();
    bad[1].data[3] ^= 1;
    let outcomes: Vec<ChunkOutcome> = bad
        .into_iter()
        .map(|c| r.add(&from, &share, c, T0))
        .collect();
    assert!(matches!(
        outcomes.last(),
        Some(ChunkOutcome::Refused("chunk-corrupt", _))
    ));
    // A late duplicate of a completed payload is ignored.
    let mut r = Reassembler::new(limits());
    let mut last = ChunkOutcome::Pending;
    for c in chunks.clone() {
        last = r.add(&from, &share, c, T0);
    }
    assert!(matches!(last, ChunkOutcome::Complete { .. }));
    assert_eq!(
        r.add(&from, &share, chunks[0].clone(), T0),
        ChunkOutcome::Duplicate
    );
    assert_eq!(r.pending(), 0);
    Ok(())
}

#[test]
fn content_budget_fits_signed_events() -> R {
    use crate::federation::{Config, LocalProfile, Outbound, SyncKind};
    use crate::identity::{Identity, DEFAULT_PATH};
    let identity = Identity::from_mnemonic(
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
        "",
        DEFAULT_PATH,
    )?;
    let config = Config::default();
    let out = Outbound::new(
        identity.clone(),
        &config,
        LocalProfile {
            name: "a".into(),
            software: "t".into(),
            capabilities: vec![],
        },
        T0,
    )?;
    assert_eq!(content_budget(65_536), 65_536 - super::EVENT_OVERHEAD);
    let budget = SyncConfig::for_event_limit(config.max_event_bytes).max_content_bytes;
    // The worst name for escaping: quotes and backslash-free characters that JSON escapes.
    let name = format!("{}.canvasl", "\"".repeat(MAX_NAME_BYTES - 8));
    let share = ShareId::new(&identity.peer_id(), &name)?;
    let mut rng = XorShift::new(9);
    let payload: Vec<u8> = (0..300_000).map(|_| rng.below(256) as u8).collect();
    let tags = vec![
        vec!["p".to_string(), peer(7)],
        vec!["e".to_string(), peer(8)],
    ];
    let contents = split(&share, Of::Response, false, &payload, budget, 10_000)
        .map_err(|e| format!("{e:?}"))?;
    assert!(contents.len() >= 5);
    for c in &contents {
        let p = out.sync(SyncKind::Response, c, tags.clone(), T0)?;
        assert!(
            p.payload.len() <= config.max_event_bytes,
            "{}",
            p.payload.len()
        );
    }
    let req = encode_request(&share, &vec![3u8; 32 * 40], &vec![4u8; 32 * 32]);
    assert!(escaped_len(&req) <= budget);
    out.sync(SyncKind::Request, &req, tags, T0)?;
    Ok(())
}
