//! A session without a broker, for the session's own tests.

use crate::federation::{Config, LocalProfile, Node};
use crate::identity::Identity;
use crate::session::{system_clock, PublishError, Publisher, Session, SessionEvent};

/// No broker: these tests publish nothing.
struct Unconnected;

impl Publisher for Unconnected {
    fn publish(&self, _: &str, _: Vec<u8>, _: u8, _: bool) -> Result<(), PublishError> {
        Err(PublishError::NotConnected)
    }
    fn connected(&self) -> bool {
        false
    }
}

/// A session of a throwaway identity, and a function returning its events so far.
pub(crate) fn test_session() -> (Session, impl Fn() -> Vec<SessionEvent>) {
    let id = Identity::from_secret_for_tests([7u8; 32]);
    let profile = LocalProfile {
        name: "session-test".into(),
        software: "session-test".into(),
        capabilities: Vec::new(),
    };
    let node = Node::new(id, Config::default(), profile, None, system_clock()).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let session = Session::start(
        node,
        Box::new(Unconnected),
        Box::new(move |ev| {
            let _ = tx.send(ev);
        }),
        system_clock,
    )
    .unwrap();
    (session, move || rx.try_iter().collect())
}
