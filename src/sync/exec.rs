//! The one executor of the engine's [`Action`]s, used by the core session
//! (`crate::session`) and by the sync test harness: publications go to the caller's
//! publisher, everything else is reported; what was published is noted in the engine's
//! health record. Before this there were two copies (the Emacs glue and the test bus).

use crate::federation::SyncKind;

use super::{Action, SyncEngine};

/// Where the executor sends what the engine asks for.
pub trait ActionSink {
    /// Signs and publishes a sync event; the error says why it was not sent.
    fn publish(
        &mut self,
        kind: SyncKind,
        content: &str,
        tags: &[Vec<String>],
    ) -> Result<(), String>;

    /// Every action that is not a publication ([`Action::Updated`], [`Action::Refused`],
    /// [`Action::Warning`], [`Action::WriteFailed`]), and the warnings about publications
    /// that failed, in order.
    fn report(&mut self, action: Action);
}

/// The name of a sync kind in messages.
pub fn kind_name(k: SyncKind) -> &'static str {
    match k {
        SyncKind::Change => "change",
        SyncKind::Request => "request",
        SyncKind::Response => "response",
    }
}

/// Carries out `actions` in order. A publication that fails (no connection, a full queue)
/// becomes a [`Action::Warning`]: the change is in the merge state already and reaches the
/// peers at the next catch-up. Returns the contents that were published, for
/// [`execute_on`] (or the caller) to note.
pub fn execute(actions: Vec<Action>, sink: &mut dyn ActionSink) -> Vec<String> {
    let mut sent = Vec::new();
    for a in actions {
        match a {
            Action::Publish {
                kind,
                content,
                tags,
            } => match sink.publish(kind, &content, &tags) {
                Ok(()) => sent.push(content),
                Err(e) => sink.report(Action::Warning {
                    share: None,
                    message: format!(
                        "a sync {} was not sent ({e}); it will go out at the next catch-up",
                        kind_name(kind)
                    ),
                }),
            },
            other => sink.report(other),
        }
    }
    sent
}

/// [`execute`], then notes every publication in `engine`'s health record (last sent).
pub fn execute_on(
    engine: &mut SyncEngine,
    actions: Vec<Action>,
    now: u64,
    sink: &mut dyn ActionSink,
) {
    for c in execute(actions, sink) {
        engine.note_published(&c, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::ShareId;

    struct Recorder {
        fail: bool,
        published: Vec<String>,
        reported: Vec<Action>,
    }

    impl ActionSink for Recorder {
        fn publish(&mut self, _: SyncKind, content: &str, _: &[Vec<String>]) -> Result<(), String> {
            if self.fail {
                return Err("no MQTT connection".into());
            }
            self.published.push(content.to_string());
            Ok(())
        }
        fn report(&mut self, action: Action) {
            self.reported.push(action);
        }
    }

    fn actions() -> Vec<Action> {
        let share: ShareId = format!("canvasl://{}/a.canvasl", "1".repeat(64))
            .parse()
            .expect("share id");
        vec![
            Action::Publish {
                kind: SyncKind::Change,
                content: "c1".into(),
                tags: vec![],
            },
            Action::Updated {
                share,
                path: "/tmp/a.canvasl".into(),
                created: true,
                hunks: None,
            },
        ]
    }

    #[test]
    fn publications_go_out_and_the_rest_is_reported_in_order() {
        let mut r = Recorder {
            fail: false,
            published: vec![],
            reported: vec![],
        };
        let sent = execute(actions(), &mut r);
        assert_eq!(sent, vec!["c1".to_string()]);
        assert_eq!(r.published, vec!["c1".to_string()]);
        assert!(matches!(
            r.reported[..],
            [Action::Updated { created: true, .. }]
        ));
    }

    #[test]
    fn a_failed_publication_becomes_a_warning_and_is_not_noted() {
        let mut r = Recorder {
            fail: true,
            published: vec![],
            reported: vec![],
        };
        let sent = execute(actions(), &mut r);
        assert!(sent.is_empty());
        match &r.reported[0] {
            Action::Warning { message, .. } => {
                assert!(message.contains("no MQTT connection"), "{message}")
            }
            other => panic!("expected a warning, got {other:?}"),
        }
        assert!(matches!(r.reported[1], Action::Updated { .. }));
    }
}
