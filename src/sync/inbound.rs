//! [`SyncEngine::handle`]: sync events from peers (already verified by the federation layer).

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::federation::protocol::{is_peer_id, tag_value, TAG_RECIPIENT};
use crate::federation::SyncKind;
use crate::merge::SharedDoc;

use super::action::{Action, SyncError};
use super::chunk::ChunkOutcome;
use super::engine::{stamp_of, Live, Share, SyncEngine};
use super::share_id::{folded_name, ShareId};
use super::share_key::{envelope, Envelope};
use super::store::{read_file, sha256, write_synced_file, ManifestEntry, StateFile, StateMeta};
use super::wire::{parse, Content, Of, Op, ParseLimits};

/// How long after a request its responses are accepted, in request intervals…
const RESPONSE_WINDOW_INTERVALS: u64 = 10;
/// …and at least this many seconds (a large answer comes in many chunks).
const MIN_RESPONSE_WINDOW_SECS: u64 = 300;

/// Most hashes accepted in one request (`heads` + `have`).
const MAX_REQUEST_HASHES: usize = 1024;

fn short(s: &str) -> String {
    let mut s = s.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl SyncEngine {
    pub(crate) fn refuse(&mut self, out: &mut Vec<Action>, reason: &'static str, detail: String) {
        self.refusals.count(reason);
        out.push(Action::Refused {
            reason,
            detail: short(&detail),
        });
    }

    /// Handles a sync event from `from_peer` (the verified sender): `sync_kind` and `content`
    /// as the event has them, `tags` all its tags. Everything is checked; bad input gives
    /// [`Action::Refused`] and changes nothing. Errors are local failures only (a file that
    /// cannot be written). Never panics.
    pub fn handle(
        &mut self,
        from_peer: &str,
        sync_kind: SyncKind,
        content: &str,
        tags: &[Vec<String>],
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let mut out = Vec::new();
        for (reason, detail) in self.reassembler.expire(now) {
            self.refuse(&mut out, reason, detail);
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.handle_inner(from_peer, sync_kind, content, tags, now, &mut out)
        }));
        match result {
            Ok(r) => r.map(|()| out),
            Err(_) => {
                let mut out = Vec::new();
                self.refuse(
                    &mut out,
                    "malformed",
                    "the input made the engine fail (a bug): ignored".into(),
                );
                Ok(out)
            }
        }
    }

    fn handle_inner(
        &mut self,
        from: &str,
        kind: SyncKind,
        content: &str,
        tags: &[Vec<String>],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        if !is_peer_id(from) {
            self.refuse(out, "bad-sender", format!("sender {:?}", short(from)));
            return Ok(());
        }
        if from == self.me {
            return Ok(());
        }
        if content.len() > self.config.max_incoming_content_bytes {
            self.refuse(
                out,
                "too-large",
                format!("content of {} bytes from {}", content.len(), &from[..12]),
            );
            return Ok(());
        }
        if tags.iter().any(|t| t.is_empty()) {
            self.refuse(out, "bad-tags", "an empty tag".into());
            return Ok(());
        }
        let target = tag_value(tags, TAG_RECIPIENT);
        if let Some(t) = target {
            if !is_peer_id(t) {
                self.refuse(out, "bad-tags", format!("p tag {:?}", short(t)));
                return Ok(());
            }
        }
        let for_someone_else = target.is_some_and(|t| t != self.me);
        // A share with members: keys come in envelopes, contents sealed (see `share_key`).
        let opened;
        let (content, sealed_for) = match envelope(content) {
            Err((reason, detail)) => {
                self.refuse(out, reason, format!("from {}: {detail}", &from[..12]));
                return Ok(());
            }
            Ok(Envelope::Key(k)) => {
                if target == Some(self.me.as_str()) && kind == SyncKind::Response {
                    self.on_key(from, &k, now, out)?;
                }
                return Ok(());
            }
            Ok(Envelope::Sealed(s)) => match self.open_sealed(from, kind, &s, out) {
                Some((share, plain)) => {
                    opened = plain;
                    (opened.as_str(), Some(share))
                }
                // Not ours (a share we are not a member of), or refused.
                None => return Ok(()),
            },
            Ok(Envelope::Plain) => (content, None),
        };
        let limits = ParseLimits {
            max_payload: self.config.max_payload_bytes,
            max_chunks: self.config.max_chunks(),
            max_hashes: MAX_REQUEST_HASHES,
        };
        let Content { share, op } = match parse(content, &limits) {
            Ok(c) => c,
            Err((reason, detail)) => {
                self.refuse(out, reason, format!("from {}: {detail}", &from[..12]));
                return Ok(());
            }
        };
        match &sealed_for {
            Some(s) if *s != share => {
                self.refuse(
                    out,
                    "bad-share",
                    format!("sealed for {s} but about {share}"),
                );
                return Ok(());
            }
            None if self.keys.sealed(&share) => {
                // Its members seal everything: a plain event about it is not from one.
                if !self.member_may(from, &share, out) {
                    return Ok(());
                }
                self.refuse(
                    out,
                    "not-sealed",
                    format!(
                        "{share} from {}: a share with members, in clear",
                        &from[..12]
                    ),
                );
                return Ok(());
            }
            _ => {}
        }
        let allowed = match (&op, kind) {
            (Op::Request { .. }, SyncKind::Request) => true,
            (Op::Data { of: Of::Change, .. }, SyncKind::Change)
            | (
                Op::Data {
                    of: Of::Response, ..
                },
                SyncKind::Response,
            ) => true,
            (Op::Chunk(c), SyncKind::Change) => c.of == Of::Change,
            (Op::Chunk(c), SyncKind::Response) => c.of == Of::Response,
            (Op::Members(_), SyncKind::Change | SyncKind::Response) => true,
            _ => false,
        };
        if !allowed {
            self.refuse(
                out,
                "wrong-op",
                format!("{} event with this op for {share}", kind.as_str()),
            );
            return Ok(());
        }
        match op {
            Op::Members(event) => self.on_members(&share, *event, now, out)?,
            Op::Request { heads, have } => {
                if !for_someone_else {
                    self.on_request(from, &share, &heads, &have, now, out)?;
                }
            }
            Op::Data { of, full, data } => {
                self.on_data(from, &share, of, full, &data, target, now, out)?;
            }
            Op::Chunk(chunk) => {
                // Do not spend memory on payloads we would ignore.
                let known = self.shares.get(&share).map(|s| s.entry.unshared);
                if known == Some(true) || (known.is_none() && for_someone_else) {
                    return Ok(());
                }
                match self.reassembler.add(from, &share, chunk, now) {
                    ChunkOutcome::Pending | ChunkOutcome::Duplicate => {}
                    ChunkOutcome::Refused(reason, detail) => self.refuse(out, reason, detail),
                    ChunkOutcome::Complete {
                        share,
                        of,
                        full,
                        data,
                    } => self.on_data(from, &share, of, full, &data, target, now, out)?,
                }
            }
        }
        Ok(())
    }

    /// A request: answer with what the requester lacks; ask back if it has changes we lack.
    fn on_request(
        &mut self,
        from: &str,
        share: &ShareId,
        heads: &[u8],
        have: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        match self.shares.get(share) {
            Some(s) if !s.entry.unshared => {}
            Some(_) => return Ok(()),
            None => {
                // The origin offers a share we have never heard of (see
                // `SyncEngine::offer`): ask it for the whole document, unless its
                // membership leaves us out. Even if we asked a moment ago: that request
                // may have gone out before the origin listened on the share's topic, and
                // its offer shows it listens now.
                if share.origin() == from && self.members.admits(share, &self.me) {
                    out.extend(self.request(share, Some(from), now, true));
                }
                return Ok(());
            }
        }
        if !self.member_may(from, share, out) {
            return Ok(());
        }
        // Answer with the file as the user last saved it; a file a buffer visits (held) is
        // handed over by Emacs after each save instead (it may be half-written right now).
        if !self.shares.get(share).is_some_and(|s| s.held) {
            out.extend(self.absorb_if_touched(share)?);
        }
        let mut known = Vec::with_capacity(heads.len() + have.len());
        known.extend_from_slice(heads);
        known.extend_from_slice(have);
        let live = self.live(share)?;
        let (data, full) = match live.doc.changes_for(&known) {
            Ok(x) => x,
            Err(e) => {
                self.refuse(out, "bad-heads", format!("{share}: {e}"));
                return Ok(());
            }
        };
        let unknown = live.doc.unknown_hashes(heads).unwrap_or(0);
        // The whole document is not sent to the same peer twice within the request interval
        // (a duplicated request, or a flood).
        if !data.is_empty() && (!full || self.may_send_full(share, from, now)) {
            let tags = vec![vec![TAG_RECIPIENT.to_string(), from.to_string()]];
            // The membership first, so a newcomer can check who answers for the origin.
            out.extend(self.members_for_response(share, from)?);
            out.extend(self.data_actions(share, Of::Response, full, &data, tags)?);
        }
        if unknown > 0 {
            out.extend(self.request(share, Some(from), now, false));
        }
        Ok(())
    }

    /// Whether the whole document may be sent to `to` now: not twice within
    /// `request_interval_secs` (a whole document is large, and a request costs little).
    fn may_send_full(&mut self, share: &ShareId, to: &str, now: u64) -> bool {
        let interval = self.config.request_interval_secs;
        let key = (share.clone(), to.to_string());
        if self
            .full_responses
            .get(&key)
            .is_some_and(|at| now < at.saturating_add(interval))
        {
            return false;
        }
        if self.full_responses.len() >= 4096 {
            self.full_responses
                .retain(|_, at| now < at.saturating_add(interval));
            if self.full_responses.len() >= 4096 {
                return false;
            }
        }
        self.full_responses.insert(key, now);
        true
    }

    /// Another share of the same origin whose name is `share`'s after case
    /// folding and NFC ([`folded_name`]): both would be one file on macOS or
    /// Windows.
    pub(crate) fn colliding_share(&self, share: &ShareId) -> Option<ShareId> {
        let folded = folded_name(share.name());
        self.shares
            .keys()
            .find(|id| {
                id.origin() == share.origin()
                    && id.name() != share.name()
                    && folded_name(id.name()) == folded
            })
            .cloned()
    }

    /// Whether we sent a request for `share` to `from` (or to everyone) within
    /// [`RESPONSE_WINDOW_INTERVALS`] request intervals before `now`.
    fn asked(&self, share: &ShareId, from: &str, now: u64) -> bool {
        let window = self
            .config
            .request_interval_secs
            .saturating_mul(RESPONSE_WINDOW_INTERVALS)
            .max(MIN_RESPONSE_WINDOW_SECS);
        [Some(from.to_string()), None].into_iter().any(|to| {
            self.requests
                .get(&(share.clone(), to))
                .is_some_and(|(_, at)| now <= at.saturating_add(window))
        })
    }

    /// Automerge bytes for a share: apply them, or create the share.
    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        from: &str,
        share: &ShareId,
        of: Of,
        full: bool,
        data: &[u8],
        target: Option<&str>,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        if of == Of::Response {
            // A response is applied only by the peer that asked for it, and
            // only if it did ask that peer (or everyone) lately: an answer
            // nobody asked for writes nothing.
            if target != Some(self.me.as_str()) {
                return Ok(());
            }
            if !self.asked(share, from, now) {
                self.refuse(
                    out,
                    "unsolicited",
                    format!(
                        "{share} from {}: a response to no request of ours",
                        &from[..12]
                    ),
                );
                return Ok(());
            }
        }
        match self.shares.get(share).map(|s| s.entry.unshared) {
            Some(true) => Ok(()),
            Some(false) => {
                if self.member_may(from, share, out) {
                    self.apply_data(from, share, data, now, out)
                } else {
                    Ok(())
                }
            }
            None => {
                let for_me = target == Some(self.me.as_str());
                let creatable = full
                    && match of {
                        Of::Change => from == share.origin(),
                        Of::Response => for_me,
                    };
                // Origin authority: only the origin, or a member the origin vouched for,
                // brings a share into existence here (see `super::members`).
                if creatable {
                    if self.may_create(from, share, out) {
                        self.create_share(from, share, data, now, out)
                    } else {
                        Ok(())
                    }
                } else if !self.may_ask(from, share, out) {
                    Ok(())
                } else {
                    if of == Of::Change || for_me {
                        // A share we do not have: ask for all of it.
                        out.extend(self.request(share, Some(from), now, false));
                    }
                    Ok(())
                }
            }
        }
    }

    fn apply_data(
        &mut self,
        from: &str,
        share: &ShareId,
        data: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        // A save the engine has not been told about is taken in first, so it is never
        // overwritten. Not while a buffer visits the file (it is held): Emacs may be writing it
        // right now, and hands the save over itself (three-way, against what the buffer was
        // based on) once it is written; read half-way, it would be taken in as an edit made
        // after this change, and this change's lines lost.
        if !self.shares.get(share).is_some_and(|s| s.held) {
            out.extend(self.absorb_if_touched(share)?);
        }
        let live = self.live(share)?;
        let on_disk = Some(live.state.meta.file_sha256);
        let heads_before = live.doc.heads();
        let missing_before = live.doc.missing_deps();
        let result = live.doc.apply_remote(data);
        let moved = live.doc.heads() != heads_before;
        match result {
            Err(e) => {
                if moved {
                    // Part of the bytes went in: keep the state and the file in step.
                    out.extend(self.save_and_write(share, None, true, on_disk)?);
                }
                self.refuse(
                    out,
                    "bad-change",
                    format!("{share} from {}: {e}", &from[..12]),
                );
            }
            Ok(applied) => {
                if moved || applied.missing_deps != missing_before {
                    out.extend(self.save_and_write(share, Some(data), false, on_disk)?);
                }
                if applied.missing_deps > 0 {
                    out.extend(self.request(share, Some(from), now, false));
                }
            }
        }
        Ok(())
    }

    fn create_share(
        &mut self,
        from: &str,
        share: &ShareId,
        data: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        if let Some(other) = self.colliding_share(share) {
            self.refuse(
                out,
                "name-collision",
                format!("{share}: its name differs from {other} only in case or normalisation"),
            );
            return Ok(());
        }
        if self.shares.len() >= self.config.max_shares {
            self.refuse(
                out,
                "too-many-shares",
                format!("{share}: already {} shares", self.shares.len()),
            );
            return Ok(());
        }
        let path = match self.store.remote_path(share) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(out, "unsafe-path", e.to_string());
                return Ok(());
            }
        };
        let mut doc = SharedDoc::new(self.actor).with_kind(share.kind());
        if let Err(e) = doc.apply_remote(data) {
            self.refuse(
                out,
                "bad-change",
                format!("{share} from {}: {e}", &from[..12]),
            );
            return Ok(());
        }
        if !doc.is_joined() {
            // Only part of the history: ask for the rest.
            out.extend(self.request(share, Some(from), now, false));
            return Ok(());
        }
        let text = doc.text();
        let hash = sha256(&text);
        let existing = read_file(&path)?;
        if existing.as_ref().is_some_and(|b| *b != text) {
            out.push(Action::Warning {
                share: Some(share.clone()),
                message: format!(
                    "{} existed without being a known share; it was replaced by the shared file",
                    path.display()
                ),
            });
        }
        let state = StateFile {
            meta: StateMeta {
                heads: doc.heads(),
                file_sha256: hash,
                pending_sha256: None,
            },
            // A saved document can be the compacted state as it is; anything else (change
            // chunks) is compacted, so that loading never depends on their order.
            base: if data.get(8) == Some(&0) {
                data.to_vec()
            } else {
                doc.save()
            },
            tail: Vec::new(),
            persisted: Default::default(),
        };
        self.store.write_state(share, &state)?;
        write_synced_file(&path, &text)?;
        let missing = doc.missing_deps();
        self.shares.insert(
            share.clone(),
            Share {
                entry: ManifestEntry {
                    share: share.clone(),
                    path: path.clone(),
                    unshared: false,
                },
                live: Some(Live::new(doc, state, None, Some((sha256(&text), text)))),
                held: false,
            },
        );
        if let Some(l) = self.shares.get_mut(share).and_then(|s| s.live.as_mut()) {
            l.stamp = stamp_of(&path);
        }
        self.write_manifest()?;
        self.members_created(share)?;
        out.push(Action::Updated {
            share: share.clone(),
            path,
            created: true,
            hunks: None,
        });
        if missing > 0 {
            out.extend(self.request(share, Some(from), now, false));
        }
        Ok(())
    }
}
