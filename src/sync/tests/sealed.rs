//! Shares with members are sealed (issue 13, item 3): nothing about them travels in clear,
//! keys reach members only, a removed member cannot read what follows its removal.

use super::share_key::{envelope, Envelope};
use super::util::{read, Bus, R, T0};
use super::{ShareId, SyncConfig};
use crate::federation::SyncKind;

const CANARY: &str = "canary-7f3a9c";

fn text(extra: &str) -> String {
    format!(
        "@version 1.0\n\n{{\"id\":\"a\",\"text\":\"{CANARY}\"}}\n{{\"id\":\"b\",\"x\":2}}\n{extra}"
    )
}

#[test]
fn nothing_of_a_members_share_travels_in_clear() -> R {
    let mut bus = Bus::new(3, 31, &SyncConfig::default());
    let member = bus.nodes[1].id.clone();
    let path = bus.nodes[0].write_home("secret-plan.canvasl", text("").as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![member.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "secret-plan.canvasl")?;
    assert_eq!(read(&bus.nodes[1].file_of(&share)), text("").as_bytes());
    std::fs::write(
        &path,
        text("{\"id\":\"c\",\"text\":\"second canary-7f3a9c\"}\n"),
    )?;
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert!(String::from_utf8(read(&bus.nodes[1].file_of(&share)))?.contains("second"));
    assert!(bus.log.len() >= 4, "{}", bus.log.len());
    for (from, kind, content) in &bus.log {
        assert!(!content.contains(CANARY), "{from} {kind:?}: {content}");
        assert!(
            !content.contains("secret-plan"),
            "{from} {kind:?}: {content}"
        );
        match envelope(content) {
            Ok(Envelope::Sealed(_)) | Ok(Envelope::Key(_)) => {}
            _ => panic!("in clear: {content}"),
        }
    }
    // The third peer saw all of it and holds nothing.
    assert!(bus.nodes[2].engine().shares().is_empty());
    assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    Ok(())
}

#[test]
fn a_removed_member_cannot_open_what_follows() -> R {
    let mut bus = Bus::new(3, 32, &SyncConfig::default());
    let (b, c) = (bus.nodes[1].id.clone(), bus.nodes[2].id.clone());
    let path = bus.nodes[0].write_home("roster.canvasl", text("").as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![b.clone(), c.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "roster.canvasl")?;
    assert_eq!(read(&bus.nodes[2].file_of(&share)), text("").as_bytes());
    let old_tag = bus.nodes[0].engine().keys.current(&share).unwrap().tag();
    bus.now += 10;
    bus.on(0, |e, now| {
        e.set_members(&share.url(), Some(vec![c.clone()]), now)
    })?;
    bus.run();
    let new_tag = bus.nodes[0].engine().keys.current(&share).unwrap().tag();
    assert_ne!(old_tag, new_tag, "the key was rotated");
    assert!(bus.nodes[1].engine().keys.by_tag(&new_tag).is_none());
    assert!(bus.nodes[2].engine().keys.by_tag(&new_tag).is_some());
    // c, still a member, asks under the new key at once: publishing on the new tag's topic
    // is what subscribes it there (a share's topic is taken before its first publication).
    assert!(bus.log.iter().any(|(from, kind, content)| {
        *from == 2
            && *kind == SyncKind::Request
            && matches!(envelope(content), Ok(Envelope::Sealed(s)) if s.tag == new_tag)
    }));
    let mark = bus.log.len();
    std::fs::write(&path, text("{\"id\":\"z\",\"text\":\"after removal\"}\n"))?;
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert!(String::from_utf8(read(&bus.nodes[2].file_of(&share)))?.contains("after removal"));
    assert!(!String::from_utf8(read(&bus.nodes[1].file_of(&share)))?.contains("after removal"));
    // Every event after the removal is sealed under the new key, which b lacks: with every
    // key b holds, none opens.
    let later: Vec<_> = bus.log[mark..].to_vec();
    assert!(!later.is_empty());
    for (_, kind, content) in later {
        let Ok(Envelope::Sealed(s)) = envelope(&content) else {
            panic!("in clear: {content}")
        };
        assert_eq!(s.tag, new_tag);
        let old = bus.nodes[1]
            .engine()
            .keys
            .by_tag(&old_tag)
            .map(|(_, k)| k.clone());
        let old = old.expect("b keeps its old key");
        assert!(old.open(kind, &s.sealed).is_err());
    }
    Ok(())
}

#[test]
fn a_removed_member_added_again_gets_the_key_and_the_document() -> R {
    let mut bus = Bus::new(2, 33, &SyncConfig::default());
    let b = bus.nodes[1].id.clone();
    let path = bus.nodes[0].write_home("again.canvasl", text("").as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![b.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "again.canvasl")?;
    bus.now += 10;
    bus.on(0, |e, now| e.set_members(&share.url(), Some(vec![]), now))?;
    bus.run();
    std::fs::write(&path, text("{\"id\":\"z\",\"text\":\"while away\"}\n"))?;
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert!(!String::from_utf8(read(&bus.nodes[1].file_of(&share)))?.contains("while away"));
    bus.now += 10;
    bus.on(0, |e, now| {
        e.set_members(&share.url(), Some(vec![b.clone()]), now)
    })?;
    bus.run();
    // The current key, the edit made while it was away, and later edits.
    let tag = bus.nodes[0].engine().keys.current(&share).unwrap().tag();
    assert!(bus.nodes[1].engine().keys.by_tag(&tag).is_some());
    assert!(String::from_utf8(read(&bus.nodes[1].file_of(&share)))?.contains("while away"));
    assert!(bus.nodes[1].engine().share_tags().contains(&tag));
    std::fs::write(
        &path,
        text("{\"id\":\"z\",\"text\":\"while away\"}\n{\"id\":\"y\",\"text\":\"back\"}\n"),
    )?;
    bus.on(0, |e, now| e.local_file_changed(&share.url(), now))?;
    bus.run();
    assert!(String::from_utf8(read(&bus.nodes[1].file_of(&share)))?.contains("back"));
    assert!(bus.refused.is_empty(), "{:?}", bus.refused);
    Ok(())
}

#[test]
fn keys_come_only_from_the_origin_and_only_to_members() -> R {
    let mut bus = Bus::new(3, 33, &SyncConfig::default());
    let (b, c) = (bus.nodes[1].id.clone(), bus.nodes[2].id.clone());
    let path = bus.nodes[0].write_home("k.canvasl", text("").as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![b.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "k.canvasl")?;
    // b (a member, not the origin) hands c the key it got: refused.
    let now = bus.now;
    let gift = bus.nodes[1].engine().key_actions_for_test(&share, &c);
    let actions = gift?;
    let mut refusals = Vec::new();
    for a in actions {
        if let super::Action::Publish {
            kind,
            content,
            tags,
        } = a
        {
            assert_eq!(kind, SyncKind::Response);
            let r = bus.nodes[2]
                .engine()
                .handle(&b, kind, &content, &tags, now)?;
            refusals.extend(r);
        }
    }
    assert!(
        refusals.iter().any(|a| matches!(
            a,
            super::Action::Refused {
                reason: "not-origin",
                ..
            }
        )),
        "{refusals:?}"
    );
    assert!(bus.nodes[2].engine().keys.current(&share).is_none());
    assert!(bus.nodes[2].engine().shares().is_empty());
    Ok(())
}

#[test]
fn a_member_away_when_added_gets_the_key_when_it_comes_online() -> R {
    let mut bus = Bus::new(3, 34, &SyncConfig::default());
    let (b, c) = (bus.nodes[1].id.clone(), bus.nodes[2].id.clone());
    bus.nodes[2].online = false;
    let path = bus.nodes[0].write_home("late.canvasl", text("").as_bytes());
    bus.on(0, |e, now| {
        e.share_with_members(&path, None, Some(vec![b.clone(), c.clone()]), now)
    })?;
    bus.run();
    let share = ShareId::new(&bus.nodes[0].id, "late.canvasl")?;
    assert!(bus.nodes[2].engine().shares().is_empty());
    // c comes online: the origin's offer hands it the key, then the document.
    bus.nodes[2].online = true;
    bus.now += 100;
    bus.on(0, |e, now| Ok(e.offer(&c, now)))?;
    bus.run();
    assert_eq!(read(&bus.nodes[2].file_of(&share)), text("").as_bytes());
    Ok(())
}

/// The position of the first publication on a share's own topic (it carries the share tag)
/// and of the first key envelope in `actions`.
fn first_on_topic_and_first_key(actions: &[super::Action]) -> (usize, usize) {
    use crate::federation::protocol::TAG_SHARE;
    let publications: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            super::Action::Publish { content, tags, .. } => Some((content, tags)),
            _ => None,
        })
        .collect();
    let on_topic = publications.iter().position(|(_, tags)| {
        tags.iter()
            .any(|t| t.first().map(String::as_str) == Some(TAG_SHARE))
    });
    let key = publications
        .iter()
        .position(|(content, _)| matches!(envelope(content), Ok(Envelope::Key(_))));
    (
        on_topic.expect("a publication on the share's topic"),
        key.expect("a key envelope"),
    )
}

/// The session subscribes to a share's topic at its first publication there. The origin must
/// publish there before any member gets the key, or a member's first request (made as soon as
/// it has the key) can reach the broker before the origin listens, and be lost.
#[test]
fn the_origin_publishes_on_a_new_keys_topic_before_the_key_goes_out() -> R {
    let mut bus = Bus::new(3, 33, &SyncConfig::default());
    let (b, c) = (bus.nodes[1].id.clone(), bus.nodes[2].id.clone());
    let path = bus.nodes[0].write_home("order.canvasl", text("").as_bytes());
    let now = T0;
    let created = bus.nodes[0].engine().share_with_members(
        &path,
        None,
        Some(vec![b.clone(), c.clone()]),
        now,
    )?;
    let (on_topic, key) = first_on_topic_and_first_key(&created);
    assert!(on_topic < key, "created: {on_topic} >= {key}");
    let share = ShareId::new(&bus.nodes[0].id, "order.canvasl")?;
    // Removing a member makes a new key, hence a new topic.
    let rotated =
        bus.nodes[0]
            .engine()
            .set_members(&share.url(), Some(vec![c.clone()]), now + 1)?;
    let new_tag = bus.nodes[0].engine().share_tags();
    let (on_topic, key) = first_on_topic_and_first_key(&rotated[1..]);
    assert!(on_topic < key, "rotated: {on_topic} >= {key}");
    // And that first publication is on the new key's topic.
    match &rotated[1..][on_topic] {
        super::Action::Publish { tags, .. } => assert!(
            tags.iter()
                .any(|t| t.get(1).is_some_and(|v| new_tag.contains(v))),
            "{tags:?} not on {new_tag:?}"
        ),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn sealed_events_travel_on_their_share_topic_only() {
    use crate::federation::{
        Config, Inbound, LocalProfile, Outbound, Topics, TrustPolicy, TrustStore,
    };
    use crate::identity::Identity;
    let topics = Topics::default();
    let tag = "0123456789abcdef0123456789abcdef";
    assert_eq!(topics.share_sync(tag), format!("canvasl/sync/{tag}"));
    assert_eq!(
        topics.parse(&topics.share_sync(tag)),
        Some(crate::federation::Route::ShareSync(tag.to_string()))
    );
    assert_eq!(topics.parse("canvasl/sync/not-a-tag"), None);
    let config = Config {
        policy: TrustPolicy::Open,
        ..Config::default()
    };
    let profile = LocalProfile {
        name: "a".into(),
        software: "t".into(),
        capabilities: Vec::new(),
    };
    let alice = Identity::from_secret_for_tests([0x21; 32]);
    let bob = Identity::from_secret_for_tests([0x22; 32]);
    let out = Outbound::new(alice, &config, profile, T0).unwrap();
    let s = vec![vec!["s".to_string(), tag.to_string()]];
    let p = out.sync(SyncKind::Change, "{}", s.clone(), T0).unwrap();
    assert_eq!(p.topic, topics.share_sync(tag));
    let plain = out.sync(SyncKind::Change, "{}", vec![], T0).unwrap();
    assert_eq!(plain.topic, topics.sync());
    let mut inbound = Inbound::new(bob, config, TrustStore::new()).unwrap();
    // On another share's topic, or on the federation-wide one: dropped.
    let other = topics.share_sync("ffffffffffffffffffffffffffffffff");
    for topic in [other.as_str(), "canvasl/sync"] {
        let d = inbound.accept(topic, &p.payload, T0).unwrap_err();
        assert_eq!(d.reason.as_str(), "wrong-topic", "{topic}");
    }
    assert!(inbound.accept(&p.topic, &p.payload, T0).is_ok());
    assert!(inbound.accept(&plain.topic, &plain.payload, T0).is_ok());
}
