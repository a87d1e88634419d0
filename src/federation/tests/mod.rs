//! End-to-end tests of the federation core: outbound builders feeding the
//! inbound pipeline of other peers. Shared helpers live here.

pub(super) use std::collections::HashSet;
use std::sync::OnceLock;

mod fuzz;
mod hostile;
mod messages;
mod pipeline;
mod presence;
mod trust;

pub(super) use crate::identity::event::{sign, SignedEvent};
pub(super) use crate::identity::{nip44, Identity, DEFAULT_PATH};

pub(super) use super::protocol::*;
pub(super) use super::*;

pub(super) const T0: u64 = 1_767_225_600;
/// The protocol version before this one, spoken by a peer that was not updated.
pub(super) const OLD_VERSION: &str = "1";

pub(super) fn ident(slot: usize) -> &'static Identity {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    &IDS.get_or_init(|| {
        [
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
            "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
        ]
        .iter()
        .map(|m| Identity::from_mnemonic(m, "", DEFAULT_PATH).unwrap())
        .collect()
    })[slot]
}

pub(super) fn alice() -> &'static Identity {
    ident(0)
}
pub(super) fn bob() -> &'static Identity {
    ident(1)
}
pub(super) fn carol() -> &'static Identity {
    ident(2)
}
pub(super) fn mallory() -> &'static Identity {
    ident(3)
}

pub(super) fn profile(name: &str) -> LocalProfile {
    LocalProfile {
        name: name.into(),
        software: "meta-log-federation/0.1.0".into(),
        capabilities: vec!["canvasl-sync".into(), "nip44-messages".into()],
    }
}

pub(super) fn inbound(id: &Identity, policy: TrustPolicy) -> Inbound {
    let config = Config {
        policy,
        ..Config::default()
    };
    Inbound::new(id.clone(), config, TrustStore::new()).unwrap()
}

/// An inbound side for `id` whose trust store already pins `known` (as if
/// they had announced themselves before a restart).
pub(super) fn inbound_knowing(id: &Identity, policy: TrustPolicy, known: &[&Identity]) -> Inbound {
    let mut trust = TrustStore::new();
    for k in known {
        assert!(trust.pin(&k.peer_id(), None, T0, 100));
    }
    let config = Config {
        policy,
        ..Config::default()
    };
    Inbound::new(id.clone(), config, trust).unwrap()
}

pub(super) fn outbound(id: &Identity, name: &str, now: u64) -> Outbound {
    Outbound::new(id.clone(), &Config::default(), profile(name), now).unwrap()
}

pub(super) fn feed(i: &mut Inbound, p: &Publication, now: u64) -> Result<Accepted, Dropped> {
    i.accept(&p.topic, &p.payload, now)
}

pub(super) fn reason(r: Result<Accepted, Dropped>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(d) => {
            assert!(!d.message.is_empty());
            d.reason.as_str()
        }
    }
}

/// Signs an arbitrary event as `id` and returns its JSON bytes.
pub(super) fn raw(id: &Identity, kind: u16, content: &str, tags: &[&[&str]], at: u64) -> Vec<u8> {
    let tags = tags
        .iter()
        .map(|t| t.iter().map(|s| s.to_string()).collect())
        .collect();
    sign(id, kind, content, tags, at).to_json().into_bytes()
}

pub(super) fn parse(p: &Publication) -> SignedEvent {
    serde_json::from_slice(&p.payload).unwrap()
}

/// Presence content saying `peer_id` (called `name`) is online since `T0`.
pub(super) fn online_presence_json(peer_id: String, name: &str) -> String {
    serde_json::to_string(&Presence {
        peer_id,
        name: name.into(),
        software: "x".into(),
        protocol: PROTOCOL_VERSION.into(),
        capabilities: vec![],
        status: AnnouncedStatus::Online,
        since: T0,
        reason: None,
    })
    .unwrap()
}

pub(super) fn reid(ev: &mut SignedEvent) {
    ev.id = hex::encode(ev.computed_id());
}
