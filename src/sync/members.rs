//! Who may create and edit a share: origin authority and membership (issue 13, items 1-2).
//!
//! A share `canvasl://ORIGIN/NAME` exists only because ORIGIN created it. Its *membership* is a
//! small document signed by ORIGIN: a signed event of kind [`KIND_SHARE_MEMBERS`] whose content
//! is `{"share":URL,"version":N,"members":null|[PEER-ID,...]}` (`null`: the whole federation).
//! The document is never published on its own: it travels inside a sync event's content as
//! `{"v":1,"share":URL,"op":"members","members":<signed event>}` (on a change or response
//! event), before the whole document it vouches for. Anyone may forward it; only ORIGIN's
//! signature makes it valid, and a larger `version` replaces a smaller one.
//!
//! Rules (enforced in `super::inbound`):
//! * A peer that does not hold a share creates it from a whole document only when the sender
//!   is ORIGIN, or a member of a membership ORIGIN signed that also admits the receiver;
//!   anything else is refused (`not-origin`), nothing is written, nothing is asked of the
//!   sender, and the first refusal per sender is reported as a warning.
//! * A share under our own peer id that we do not hold is never created from the network.
//! * With an explicit member list, changes and requests from a non-member are refused
//!   (`not-member`), and the origin offers the share only to members.
//! * A newer membership that leaves us out stops the share on our side (its file stays).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::federation::protocol::is_peer_id;
use crate::federation::SyncKind;
use crate::identity::event::{sign, SignedEvent};
use crate::identity::Identity;

use super::action::{Action, SyncError};
use super::engine::SyncEngine;
use super::share_id::ShareId;
use super::store::{read_file, write_file};
use super::wire::encode_members;

/// Kind of the signed membership document (embedded in sync content, never published alone).
pub const KIND_SHARE_MEMBERS: u16 = 4_775;

/// Most peers in one member list.
pub const MAX_MEMBERS: usize = 1000;

/// Most memberships kept for shares we do not hold (announced ahead of their documents).
const MAX_PENDING: usize = 1024;

/// The file (in the state directory) holding the memberships of the shares we hold.
const MEMBERS_FILE: &str = "members.json";

/// The JSON content of a membership document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersContent {
    share: String,
    version: u64,
    members: Option<Vec<String>>,
}

/// A verified membership document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The share.
    pub share: ShareId,
    /// Its version; a larger one replaces a smaller one.
    pub version: u64,
    /// The members besides the origin; `None` for the whole federation.
    pub members: Option<BTreeSet<String>>,
    /// The origin's signed event.
    pub event: SignedEvent,
}

impl Membership {
    /// Signs a membership of `share` with `identity`, which must be the share's origin.
    pub fn sign(
        identity: &Identity,
        share: &ShareId,
        version: u64,
        members: Option<BTreeSet<String>>,
        now: u64,
    ) -> Result<Membership, SyncError> {
        if identity.peer_id() != share.origin() {
            return Err(SyncError::NotOrigin(share.clone()));
        }
        if let Some(m) = &members {
            check_members(m.iter().map(String::as_str))?;
        }
        let content = MembersContent {
            share: share.url(),
            version,
            members: members.as_ref().map(|m| m.iter().cloned().collect()),
        };
        let content = serde_json::to_string(&content).unwrap_or_default();
        let event = sign(identity, KIND_SHARE_MEMBERS, &content, Vec::new(), now);
        Ok(Membership {
            share: share.clone(),
            version,
            members,
            event,
        })
    }

    /// Checks a membership document received for `share`: signature, kind, signer (the
    /// origin: else `not-origin`), content. The refusal reason is `bad-members` otherwise.
    pub fn verify(
        event: SignedEvent,
        share: &ShareId,
    ) -> Result<Membership, (&'static str, String)> {
        let bad = |m: String| ("bad-members", m);
        event
            .verify()
            .map_err(|e| bad(format!("membership of {share}: {e}")))?;
        if event.kind != u32::from(KIND_SHARE_MEMBERS) {
            return Err(bad(format!(
                "membership of {share}: kind {}, expected {KIND_SHARE_MEMBERS}",
                event.kind
            )));
        }
        if event.pubkey != share.origin() {
            return Err((
                "not-origin",
                format!(
                    "a membership of {share} signed by {}, not by its origin",
                    short_id(&event.pubkey)
                ),
            ));
        }
        let c: MembersContent = serde_json::from_str(&event.content)
            .map_err(|e| bad(format!("membership of {share}: {e}")))?;
        if c.share != share.url() {
            return Err(bad(format!(
                "a membership of another share sent as one of {share}"
            )));
        }
        let members = match c.members {
            None => None,
            Some(list) => {
                check_members(list.iter().map(String::as_str))
                    .map_err(|e| bad(format!("membership of {share}: {e}")))?;
                Some(list.into_iter().collect())
            }
        };
        Ok(Membership {
            share: share.clone(),
            version: c.version,
            members,
            event,
        })
    }

    /// Whether `peer` may hold and edit the share: the origin always, others if the
    /// membership is the whole federation or lists them.
    pub fn admits(&self, peer: &str) -> bool {
        peer == self.share.origin() || self.members.as_ref().is_none_or(|m| m.contains(peer))
    }

    /// The member list (without the origin), `None` for the whole federation.
    pub fn list(&self) -> Option<Vec<String>> {
        self.members.as_ref().map(|m| m.iter().cloned().collect())
    }
}

/// Checks a member list: peer ids, at most [`MAX_MEMBERS`].
pub fn check_members<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), SyncError> {
    let mut n = 0usize;
    for id in ids {
        if !is_peer_id(id) {
            return Err(SyncError::BadPeerId(id.to_string()));
        }
        n += 1;
    }
    if n > MAX_MEMBERS {
        return Err(SyncError::TooLarge {
            what: "the member list".into(),
            size: n,
            limit: MAX_MEMBERS,
        });
    }
    Ok(())
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The memberships an engine knows, and who was already reported for a forged share.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Memberships of shares we hold (saved in `state_dir/members.json`).
    held: BTreeMap<ShareId, Membership>,
    /// Memberships announced for shares we do not hold yet (memory only, bounded).
    pending: HashMap<ShareId, Membership>,
    /// Peers already reported for trying to create a share they do not own.
    reported: HashSet<String>,
    /// The key that signs our own shares' memberships.
    signer: Option<Identity>,
}

impl Registry {
    /// The membership of `share`, held or pending.
    pub(crate) fn get(&self, share: &ShareId) -> Option<&Membership> {
        self.held.get(share).or_else(|| self.pending.get(share))
    }

    /// Whether `peer` may take part in `share`: true without a known membership (a share
    /// made before memberships existed, or whose membership has not arrived yet).
    pub(crate) fn admits(&self, share: &ShareId, peer: &str) -> bool {
        self.get(share).is_none_or(|m| m.admits(peer))
    }

    /// Keeps `m` if it is newer than what we have; `held` says whether we hold the share.
    /// Returns whether it was kept.
    fn offer(&mut self, m: Membership, held: bool) -> bool {
        if self
            .get(&m.share)
            .is_some_and(|old| old.version >= m.version)
        {
            return false;
        }
        if held {
            self.pending.remove(&m.share);
            self.held.insert(m.share.clone(), m);
        } else {
            if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&m.share) {
                return false;
            }
            self.pending.insert(m.share.clone(), m);
        }
        true
    }

    /// Our key, if the engine was given one.
    pub(crate) fn signer(&self) -> Option<&Identity> {
        self.signer.as_ref()
    }

    /// Whether memberships can be signed.
    pub(crate) fn has_signer(&self) -> bool {
        self.signer.is_some()
    }

    /// Moves a pending membership to the held ones (the share was just created).
    fn promote(&mut self, share: &ShareId) -> bool {
        match self.pending.remove(share) {
            Some(m) => {
                self.held.insert(share.clone(), m);
                true
            }
            None => false,
        }
    }
}

impl SyncEngine {
    fn members_path(&self) -> PathBuf {
        self.store.manifest_path().with_file_name(MEMBERS_FILE)
    }

    /// Reads the memberships saved by [`SyncEngine::save_members`]; a damaged entry is
    /// dropped with a notice (the origin sends it again with its next whole document).
    pub(crate) fn load_members(&mut self) -> Result<(), SyncError> {
        let path = self.members_path();
        let Some(bytes) = read_file(&path)? else {
            return Ok(());
        };
        let events: Vec<SignedEvent> = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                self.notices.push(Action::Warning {
                    share: None,
                    message: format!(
                        "{} is damaged ({e}); memberships are learnt again from the origins",
                        path.display()
                    ),
                });
                return Ok(());
            }
        };
        for ev in events {
            let share = serde_json::from_str::<MembersContent>(&ev.content)
                .ok()
                .and_then(|c| ShareId::parse(&c.share).ok());
            let verified = share.map(|s| Membership::verify(ev, &s));
            match verified {
                Some(Ok(m)) => {
                    self.members.offer(m, true);
                }
                _ => self.notices.push(Action::Warning {
                    share: None,
                    message: format!("{}: an entry is damaged; dropped", path.display()),
                }),
            }
        }
        Ok(())
    }

    pub(crate) fn save_members(&self) -> Result<(), SyncError> {
        let events: Vec<&SignedEvent> = self.members.held.values().map(|m| &m.event).collect();
        let json = serde_json::to_vec(&events).unwrap_or_default();
        write_file(&self.members_path(), &json)
    }

    /// Gives the engine the key of its peer, to sign the memberships of the shares it
    /// creates. Our shares without a membership (made before memberships existed) get one
    /// for the whole federation. Fails if the key is not our peer's.
    pub fn set_signer(&mut self, identity: Identity, now: u64) -> Result<(), SyncError> {
        if identity.peer_id() != self.me {
            return Err(SyncError::BadPeerId(identity.peer_id()));
        }
        self.members.signer = Some(identity);
        let own: Vec<ShareId> = self
            .shares
            .keys()
            .filter(|id| id.origin() == self.me && self.members.get(id).is_none())
            .cloned()
            .collect();
        for id in &own {
            self.sign_members(id, None, now)?;
        }
        if !own.is_empty() {
            self.save_members()?;
        }
        Ok(())
    }

    /// Signs and keeps a new membership of our share `id` (not saved).
    fn sign_members(
        &mut self,
        id: &ShareId,
        members: Option<BTreeSet<String>>,
        now: u64,
    ) -> Result<Membership, SyncError> {
        let signer = self.members.signer.as_ref().ok_or(SyncError::NoSigner)?;
        // Larger than every earlier version, even after a lost state.
        let version = self
            .members
            .get(id)
            .map_or(now, |m| m.version.saturating_add(1).max(now));
        let m = Membership::sign(signer, id, version, members, now)?;
        self.members.offer(m.clone(), true);
        Ok(m)
    }

    /// The publication of a membership: a change to everyone, or a response to one peer
    /// (sealed for a share with members).
    pub(crate) fn members_action(
        &self,
        m: &Membership,
        to: Option<&str>,
    ) -> Result<Action, SyncError> {
        let kind = if to.is_some() {
            SyncKind::Response
        } else {
            SyncKind::Change
        };
        let tags = to
            .map(|t| vec![vec!["p".to_string(), t.to_string()]])
            .unwrap_or_default();
        self.seal_publish(&m.share, kind, encode_members(&m.share, &m.event), tags)
    }

    /// The membership of a share we hold (URL or path), if it has one.
    pub fn membership(&self, share_or_path: &str) -> Result<Option<Membership>, SyncError> {
        let id = self.resolve(share_or_path)?;
        Ok(self.members.get(&id).cloned())
    }

    /// Starts sharing `path` (see [`SyncEngine::share`]) with `members`: `None` for the whole
    /// federation (the whole document is announced to everyone, in clear), or a list of peer
    /// ids: the share gets a key (see `super::share_key`), each member gets the key in a NIP-44
    /// envelope and is offered the share; everything about it is sealed. Needs
    /// [`SyncEngine::set_signer`].
    pub fn share_with_members(
        &mut self,
        path: &std::path::Path,
        name: Option<&str>,
        members: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        if self.members.signer.is_none() {
            return Err(SyncError::NoSigner);
        }
        let list: Option<BTreeSet<String>> = match members {
            Some(m) => {
                check_members(m.iter().map(String::as_str))?;
                Some(m.into_iter().filter(|p| *p != self.me).collect())
            }
            None => None,
        };
        let announce = list.is_none();
        let actions = self.share_announcing(path, name, now, announce)?;
        let id = self.resolve(&path.to_string_lossy())?;
        if id.origin() != self.me {
            // A share of another origin, resumed.
            return Ok(actions);
        }
        let m = self.sign_members(&id, list, now)?;
        self.save_members()?;
        let mut out = Vec::new();
        if let Some(list) = &m.members {
            let to: Vec<String> = list.iter().cloned().collect();
            self.new_share_key(&id, now)?;
            // The membership, sealed under the new key, is our first publication on the
            // share's topic: the session subscribes to a share's topic before its first
            // publication there, so we listen before any member has the key and can ask.
            out.push(self.members_action(&m, None)?);
            out.extend(self.key_actions(&id, &to)?);
            for peer in list {
                out.extend(self.request(&id, Some(peer), now, true));
            }
        } else {
            out.push(self.members_action(&m, None)?);
        }
        out.extend(actions);
        Ok(out)
    }

    /// Replaces the member list of our share (`None`: the whole federation), signs it with a
    /// newer version and publishes it; new members get the key and are offered the share.
    /// Removing a member rotates the key: the new one goes to the remaining members only, so
    /// the removed peer cannot read anything written afterwards. Only the origin can do this
    /// ([`SyncError::NotOrigin`]); a share with members cannot be opened to the whole
    /// federation again.
    pub fn set_members(
        &mut self,
        share_or_path: &str,
        members: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let id = self.active(share_or_path)?;
        if id.origin() != self.me {
            return Err(SyncError::NotOrigin(id));
        }
        let before = self.members.get(&id).cloned();
        let list: Option<BTreeSet<String>> = match members {
            Some(m) => {
                check_members(m.iter().map(String::as_str))?;
                Some(m.into_iter().filter(|p| *p != self.me).collect())
            }
            None => None,
        };
        let Some(list) = list else {
            if self.keys.sealed(&id) {
                return Err(SyncError::Sealed(id));
            }
            let m = self.sign_members(&id, None, now)?;
            self.save_members()?;
            return Ok(vec![self.members_action(&m, None)?]);
        };
        let old: BTreeSet<String> = before
            .as_ref()
            .and_then(|b| b.members.clone())
            .unwrap_or_default();
        let removed = old.iter().any(|p| !list.contains(p));
        let added: Vec<String> = if self.keys.sealed(&id) {
            list.iter().filter(|p| !old.contains(*p)).cloned().collect()
        } else {
            list.iter().cloned().collect()
        };
        let m = self.sign_members(&id, Some(list.clone()), now)?;
        self.save_members()?;
        // The new list goes out under the current key first (if any), so a removed member
        // learns it was removed; then the key changes.
        let mut out = vec![self.members_action(&m, None)?];
        if removed || !self.keys.sealed(&id) {
            self.new_share_key(&id, now)?;
            let all: Vec<String> = list.iter().cloned().collect();
            // Under the new key, before the key goes out: this first publication on the new
            // key's topic subscribes us there before any member can ask there.
            out.push(self.members_action(&m, None)?);
            out.extend(self.key_actions(&id, &all)?);
        } else {
            out.extend(self.key_actions(&id, &added)?);
        }
        for peer in &added {
            out.extend(self.request(&id, Some(peer), now, true));
        }
        Ok(out)
    }

    /// The membership to send before answering `to` about `share`, if we know one.
    pub(crate) fn members_for_response(
        &self,
        share: &ShareId,
        to: &str,
    ) -> Result<Option<Action>, SyncError> {
        self.members
            .get(share)
            .map(|m| self.members_action(m, Some(to)))
            .transpose()
    }

    /// A membership document arrived.
    pub(crate) fn on_members(
        &mut self,
        share: &ShareId,
        event: SignedEvent,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        let m = match Membership::verify(event, share) {
            Ok(m) => m,
            Err((reason, detail)) => {
                self.refuse(out, reason, detail);
                return Ok(());
            }
        };
        let held = self.shares.get(share).map(|s| s.entry.unshared);
        let was_removed = self.removed_here(share);
        let admits_me = m.admits(&self.me);
        // A member list that names us for a share we lack: ask the origin for it (the
        // origin's own offer may have come first and been declined under an older list).
        let newcomer = held.is_none() && admits_me && m.members.is_some();
        if !self.members.offer(m, held.is_some()) {
            return Ok(());
        }
        if newcomer {
            out.extend(self.request(share, Some(share.origin()), now, false));
        }
        if held.is_some() {
            self.save_members()?;
        }
        if was_removed && admits_me {
            out.extend(self.readmitted(share, now)?);
        }
        if held == Some(false) && !admits_me {
            // The origin removed us: stop syncing, keep the file.
            if let Some(s) = self.shares.get_mut(share) {
                s.entry.unshared = true;
                s.live = None;
            }
            self.requests.retain(|(s, _), _| s != share);
            self.write_manifest()?;
            out.push(Action::Warning {
                share: Some(share.clone()),
                message: format!(
                    "the origin of {share} removed this peer from its members: the share is no \
                     longer synced (its file stays)"
                ),
            });
        }
        Ok(())
    }

    /// Whether a share we do not hold may be created from data sent by `from`; refuses (and
    /// reports once per sender) otherwise.
    pub(crate) fn may_create(
        &mut self,
        from: &str,
        share: &ShareId,
        out: &mut Vec<Action>,
    ) -> bool {
        let me = self.me.clone();
        let verdict = if share.origin() == me {
            Err((
                "not-origin",
                "it is named after this peer, which never created it",
            ))
        } else {
            match self.members.get(share) {
                Some(m) if !m.admits(&me) => {
                    Err(("not-member", "its origin did not make this peer a member"))
                }
                Some(m) if m.admits(from) => Ok(()),
                _ if from == share.origin() => Ok(()),
                Some(_) => Err(("not-origin", "the sender is not one of its members")),
                None => Err((
                    "not-origin",
                    "the sender is not its origin and showed no membership signed by the origin",
                )),
            }
        };
        match verdict {
            Ok(()) => true,
            Err((reason, why)) => {
                let detail = format!(
                    "{} sent a share this peer does not hold, {share}: {why}; nothing written",
                    short_id(from)
                );
                if reason == "not-origin" && self.members.reported.insert(from.to_string()) {
                    out.push(Action::Warning {
                        share: None,
                        message: format!(
                            "peer {} tried to create {share}, a share it does not own \
                             (refused; further attempts are only counted)",
                            short_id(from)
                        ),
                    });
                }
                self.refuse(out, reason, detail);
                false
            }
        }
    }

    /// Whether to ask `from` for a share we do not hold that it sent part of: not for a share
    /// named after us, nor when a known membership leaves us or the sender out. (Asking is
    /// harmless otherwise: the answer is checked by [`SyncEngine::may_create`].)
    pub(crate) fn may_ask(&mut self, from: &str, share: &ShareId, out: &mut Vec<Action>) -> bool {
        let me = self.me.clone();
        let known_bad = share.origin() == me
            || self
                .members
                .get(share)
                .is_some_and(|m| !m.admits(&me) || !m.admits(from));
        if known_bad {
            // The same refusal and report as for a whole document.
            self.may_create(from, share, out)
        } else {
            true
        }
    }

    /// Whether our copy of `share` stopped because its origin removed us: we hold it,
    /// unshared, and the membership we keep leaves us out. (A share the person unshared
    /// while a member is not this: it resumes only when they share its file again.)
    pub(crate) fn removed_here(&self, share: &ShareId) -> bool {
        self.shares.get(share).is_some_and(|s| s.entry.unshared)
            && self.members.get(share).is_some_and(|m| !m.admits(&self.me))
    }

    /// The origin made us a member again of `share`, which stopped when it removed us: sync
    /// resumes as if the person had shared the file again, and says so.
    pub(crate) fn readmitted(
        &mut self,
        share: &ShareId,
        now: u64,
    ) -> Result<Vec<Action>, SyncError> {
        let mut out = self.resume(share, now)?;
        out.push(Action::Warning {
            share: Some(share.clone()),
            message: format!(
                "the origin of {share} made this peer a member again: the share is synced \
                 again (edits made to its file meanwhile are merged in)"
            ),
        });
        Ok(out)
    }

    /// Whether `from` may send changes and requests for a share we hold (refuses otherwise).
    pub(crate) fn member_may(
        &mut self,
        from: &str,
        share: &ShareId,
        out: &mut Vec<Action>,
    ) -> bool {
        if self.members.admits(share, from) {
            return true;
        }
        self.refuse(
            out,
            "not-member",
            format!("{} is not a member of {share}", short_id(from)),
        );
        false
    }

    /// Keeps a verified membership (from a key envelope) if it is newer.
    pub(crate) fn take_membership(&mut self, m: Membership) -> Result<(), SyncError> {
        let held = self.shares.contains_key(&m.share);
        if self.members.offer(m, held) && held {
            self.save_members()?;
        }
        Ok(())
    }

    /// A share was created from the network: its pending membership becomes held.
    pub(crate) fn members_created(&mut self, share: &ShareId) -> Result<(), SyncError> {
        if self.members.promote(share) {
            self.save_members()?;
        }
        Ok(())
    }

    /// Whether `peer` may be offered our share `id`.
    pub(crate) fn offer_allowed(&self, id: &ShareId, peer: &str) -> bool {
        self.members.admits(id, peer)
    }

    /// Whether the whole document of `id` is announced to everyone (no member list).
    pub(crate) fn announced_to_all(&self, id: &ShareId) -> bool {
        self.members.get(id).is_none_or(|m| m.members.is_none())
    }
}
