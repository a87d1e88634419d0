//! The engine's side of per-share keys (see `super::share_key`): sealing what it publishes for
//! a share with members, opening what arrives, handing keys to members and taking them in.

use base64ct::{Base64, Encoding};

use crate::federation::SyncKind;
use crate::identity::nip44;

use super::action::{Action, SyncError};
use super::engine::SyncEngine;
use super::members::Membership;
use super::share_id::ShareId;
use super::share_key::{plain_budget, KeyEnvelope, KeyGift, KeyRing, Sealed, ShareKey};
use super::store::{read_file, write_file};

/// The file (in the state directory) holding the share keys.
const KEYS_FILE: &str = "share-keys.json";

use crate::federation::protocol::TAG_SHARE;

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl SyncEngine {
    fn keys_path(&self) -> std::path::PathBuf {
        self.store.manifest_path().with_file_name(KEYS_FILE)
    }

    /// Reads the share keys (at open); a damaged file is reported and kept aside by the next
    /// save (members get the key again from the origin).
    pub(crate) fn load_keys(&mut self) -> Result<(), SyncError> {
        let path = self.keys_path();
        let Some(bytes) = read_file(&path)? else {
            return Ok(());
        };
        match KeyRing::from_json(&bytes) {
            Ok((ring, bad)) => {
                self.keys = ring;
                if bad > 0 {
                    self.notices.push(Action::Warning {
                        share: None,
                        message: format!("{}: {bad} damaged key(s) dropped", path.display()),
                    });
                }
            }
            Err(e) => self.notices.push(Action::Warning {
                share: None,
                message: format!(
                    "{} is damaged ({e}); shares with members are unreadable until their \
                     origins send the keys again",
                    path.display()
                ),
            }),
        }
        Ok(())
    }

    fn save_keys(&self) -> Result<(), SyncError> {
        write_file(&self.keys_path(), &self.keys.to_json())
    }

    /// The largest plain content of an event of `id` (sealing makes it larger).
    pub(crate) fn content_budget_for(&self, id: &ShareId) -> usize {
        if self.keys.sealed(id) {
            plain_budget(self.config.max_content_bytes)
        } else {
            self.config.max_content_bytes
        }
    }

    /// A publication of `content` about `id`: sealed with the share's current key (and tagged
    /// `["s",TAG]`) if it has one, else as it is.
    pub(crate) fn seal_publish(
        &self,
        id: &ShareId,
        kind: SyncKind,
        content: String,
        mut tags: Vec<Vec<String>>,
    ) -> Result<Action, SyncError> {
        let content = match self.keys.current(id) {
            Some(key) => {
                tags.push(vec![TAG_SHARE.to_string(), key.tag()]);
                key.seal(kind, &content)
                    .map_err(|e| SyncError::Crypto(e.to_string()))?
            }
            None => content,
        };
        Ok(Action::Publish {
            kind,
            content,
            tags,
        })
    }

    /// Starts a new epoch of our share `id` with a fresh key (saved).
    pub(crate) fn new_share_key(&mut self, id: &ShareId, now: u64) -> Result<(), SyncError> {
        let epoch = self
            .keys
            .current(id)
            .map_or(now, |k| k.epoch.saturating_add(1).max(now));
        let key = ShareKey::generate(epoch).map_err(|e| SyncError::Crypto(e.to_string()))?;
        self.keys.insert(id, key);
        self.save_keys()
    }

    /// Key envelopes of our share `id`'s current key, one to each of `to` (responses on the
    /// federation-wide sync topic, NIP-44 encrypted to each member).
    pub(crate) fn key_actions(
        &self,
        id: &ShareId,
        to: &[String],
    ) -> Result<Vec<Action>, SyncError> {
        let signer = self.members.signer().ok_or(SyncError::NoSigner)?;
        let key = self
            .keys
            .current(id)
            .ok_or_else(|| SyncError::Crypto(format!("{id} has no key")))?;
        let membership = self
            .members
            .get(id)
            .ok_or_else(|| SyncError::Crypto(format!("{id} has no membership")))?;
        let gift = zeroize::Zeroizing::new(
            serde_json::to_string(&KeyGift {
                share: id.url(),
                epoch: key.epoch,
                key: key.to_base64().to_string(),
                members: membership.event.clone(),
            })
            .unwrap_or_default(),
        );
        let mut out = Vec::with_capacity(to.len());
        for peer in to {
            let ck = nip44::conversation_key(signer.keypair(), peer)
                .map_err(|e| SyncError::Crypto(format!("key for {}: {e}", short_id(peer))))?;
            let payload =
                nip44::encrypt(&ck, &gift).map_err(|e| SyncError::Crypto(e.to_string()))?;
            let content = serde_json::to_string(&KeyEnvelope {
                v: super::wire::CONTENT_VERSION,
                op: "key".into(),
                nip44: payload,
            })
            .unwrap_or_default();
            out.push(Action::Publish {
                kind: SyncKind::Response,
                content,
                tags: vec![vec!["p".to_string(), peer.clone()]],
            });
        }
        Ok(out)
    }

    /// The opaque tags of the shares with members we hold or were given a key for: their
    /// topics (`crate::federation::Topics::share_sync`) are the ones to subscribe to.
    pub fn share_tags(&self) -> Vec<String> {
        self.keys
            .current_tags()
            .into_iter()
            .filter(|(share, _)| self.shares.get(share).is_none_or(|s| !s.entry.unshared))
            .map(|(_, tag)| tag)
            .collect()
    }

    /// The key envelope of our sealed share `id` for `peer` (none for a plain share); a
    /// failure becomes a warning.
    pub(crate) fn key_for_member(&mut self, id: &ShareId, peer: &str) -> Vec<Action> {
        if !self.keys.sealed(id) {
            return Vec::new();
        }
        match self.key_actions(id, &[peer.to_string()]) {
            Ok(a) => a,
            Err(e) => vec![Action::Warning {
                share: Some(id.clone()),
                message: e.to_string(),
            }],
        }
    }

    /// A sealed content arrived: the plain content and its share, or `None` when it is not
    /// for us (a tag we do not know: a share we are not a member of) or does not open.
    pub(crate) fn open_sealed(
        &mut self,
        from: &str,
        kind: SyncKind,
        sealed: &Sealed,
        out: &mut Vec<Action>,
    ) -> Option<(ShareId, String)> {
        let (share, key) = self.keys.by_tag(&sealed.tag)?;
        let share = share.clone();
        match key.open(kind, &sealed.sealed) {
            Ok(plain) => Some((share, plain)),
            Err(e) => {
                self.refuse(
                    out,
                    "decrypt-failed",
                    format!("{share} from {}: {e}", short_id(from)),
                );
                None
            }
        }
    }

    /// A key envelope addressed to us arrived from `from`.
    pub(crate) fn on_key(
        &mut self,
        from: &str,
        envelope: &KeyEnvelope,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), SyncError> {
        let Some(signer) = self.members.signer() else {
            return Ok(());
        };
        let opened = nip44::conversation_key(signer.keypair(), from)
            .and_then(|ck| nip44::decrypt(&ck, &envelope.nip44))
            .map(zeroize::Zeroizing::new);
        let plain = match opened {
            Ok(p) => p,
            Err(e) => {
                self.refuse(
                    out,
                    "decrypt-failed",
                    format!("a key envelope from {}: {e}", short_id(from)),
                );
                return Ok(());
            }
        };
        let gift: KeyGift = match serde_json::from_str(&plain) {
            Ok(g) => g,
            Err(e) => {
                self.refuse(out, "malformed", format!("a key envelope: {e}"));
                return Ok(());
            }
        };
        let share = match ShareId::parse(&gift.share) {
            Ok(s) => s,
            Err(e) => {
                self.refuse(out, e.reason(), e.to_string());
                return Ok(());
            }
        };
        if share.origin() != from {
            self.refuse(
                out,
                "not-origin",
                format!(
                    "{} sent a key of {share}, which it does not own",
                    short_id(from)
                ),
            );
            return Ok(());
        }
        let m = match Membership::verify(gift.members, &share) {
            Ok(m) => m,
            Err((reason, detail)) => {
                self.refuse(out, reason, detail);
                return Ok(());
            }
        };
        if !m.admits(&self.me) {
            self.refuse(
                out,
                "not-member",
                format!("a key of {share} whose membership leaves this peer out"),
            );
            return Ok(());
        }
        let key = match Base64::decode_vec(&gift.key)
            .ok()
            .and_then(|b| ShareKey::from_bytes(gift.epoch, &b).ok())
        {
            Some(k) => k,
            None => {
                self.refuse(out, "malformed", format!("a key of {share}: not 32 bytes"));
                return Ok(());
            }
        };
        let new_key = self.keys.insert(&share, key);
        if new_key {
            self.save_keys()?;
        }
        let was_removed = self.removed_here(&share);
        self.take_membership(m)?;
        if !self.shares.contains_key(&share) {
            // A newcomer member: ask the origin for the document (sealed).
            out.extend(self.request(&share, Some(from), now, false));
        } else if was_removed && !self.removed_here(&share) {
            // Removed earlier, a member again: sync resumes (the file, with whatever was
            // written in it meanwhile, merges with the share's edits since).
            out.extend(self.readmitted(&share, now)?);
        } else if new_key && self.shares.get(&share).is_some_and(|s| !s.entry.unshared) {
            // A new epoch of a share we hold (the origin removed a member): its events now
            // travel on the new tag's topic. Asking the origin there takes that topic (a
            // share's topic is subscribed before its first publication) and fetches what
            // was sealed under the new key before we had it.
            out.extend(self.request(&share, Some(from), now, true));
        }
        Ok(())
    }
}

#[cfg(test)]
impl SyncEngine {
    /// [`SyncEngine::key_actions`] for one peer, as any holder of the key could make them.
    pub(crate) fn key_actions_for_test(
        &self,
        id: &ShareId,
        to: &str,
    ) -> Result<Vec<Action>, SyncError> {
        self.key_actions(id, &[to.to_string()])
    }
}
