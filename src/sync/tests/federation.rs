//! The engine behind the real federation layer: every publication is signed with
//! `Outbound::sync`, verified with `Inbound::accept`, and handed to the other engine.

use crate::canvasl::generate_canvas;
use crate::federation::{Body, Config, Inbound, LocalProfile, Outbound, TrustPolicy, TrustStore};
use crate::identity::{Identity, DEFAULT_PATH};

use super::bus::edit_entry;
use super::util::{read, R, T0};
use super::{Action, ShareId, SyncConfig, SyncEngine};

struct Peer {
    engine: SyncEngine,
    out: Outbound,
    inb: Inbound,
    _dir: tempfile::TempDir,
}

fn peer(mnemonic: &str) -> Result<Peer, Box<dyn std::error::Error>> {
    let id = Identity::from_mnemonic(mnemonic, "", DEFAULT_PATH)?;
    let config = Config {
        policy: TrustPolicy::Open,
        ..Config::default()
    };
    let dir = tempfile::tempdir()?;
    let mut actor = [0u8; 32];
    hex::decode_to_slice(id.peer_id(), &mut actor)?;
    let engine = SyncEngine::open_with(
        &dir.path().join("sync"),
        &dir.path().join("state"),
        &id.peer_id(),
        actor,
        SyncConfig::for_event_limit(config.max_event_bytes),
    )?;
    let profile = LocalProfile {
        name: "p".into(),
        software: "test".into(),
        capabilities: vec!["canvasl-sync".into()],
    };
    Ok(Peer {
        engine,
        out: Outbound::new(id.clone(), &config, profile, T0)?,
        inb: Inbound::new(id, config, TrustStore::new())?,
        _dir: dir,
    })
}

/// Signs `actions`' publications as `from` and feeds them to `to`; returns `to`'s actions and
/// the largest event size.
fn deliver(
    from: &Peer,
    to: &mut Peer,
    actions: Vec<Action>,
) -> Result<(Vec<Action>, usize), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let mut largest = 0;
    for a in actions {
        if let Action::Publish {
            kind,
            content,
            tags,
        } = a
        {
            let p = from.out.sync(kind, &content, tags, T0)?;
            largest = largest.max(p.payload.len());
            let acc = to.inb.accept(&p.topic, &p.payload, T0)?;
            let Body::Sync { kind, content } = &acc.body else {
                return Err("not a sync event".into());
            };
            out.extend(
                to.engine
                    .handle(acc.from(), *kind, content, &acc.event.tags, T0)?,
            );
        }
    }
    Ok((out, largest))
}

#[test]
fn a_chunked_share_and_an_edit_go_through_signed_events() -> R {
    let mut a = peer("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")?;
    let mut b =
        peer("legal winner thank year wave sausage worth useful legal winner thank yellow")?;
    let text = generate_canvas(3000, 4);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.canvasl");
    std::fs::write(&path, &text)?;
    let actions = a.engine.share(&path, None, T0)?;
    assert!(actions.len() > 1, "the share is chunked");
    let (back, largest) = deliver(&a, &mut b, actions)?;
    assert!(largest <= 65_536, "{largest}");
    assert!(
        back.iter()
            .any(|x| matches!(x, Action::Updated { created: true, .. })),
        "{back:?}"
    );
    let share = ShareId::new(a.out.peer_id(), "big.canvasl")?;
    let b_path = b.engine.share_path(&share).ok_or("no share")?.to_path_buf();
    assert_eq!(read(&b_path), text.as_bytes());
    // B edits; its change reaches A.
    edit_entry(&b_path, 7, "color", serde_json::json!("signed"));
    let actions = b.engine.local_file_changed(&share.url(), T0)?;
    let (_, largest) = deliver(&b, &mut a, actions)?;
    assert!(largest < 2048, "{largest}");
    assert_eq!(read(&path), read(&b_path));
    // A request from B is answered (nothing missing: no response), and vice versa.
    let req = b.engine.catch_up(None, T0)?;
    let (resp, _) = deliver(&b, &mut a, req)?;
    assert!(resp.is_empty(), "{resp:?}");
    assert_eq!(a.engine.refusals().total() + b.engine.refusals().total(), 0);
    Ok(())
}
