//! Test helpers: engines in temporary directories, and a simulated bus that routes their
//! publications to each other in random order, with duplicates, while some are offline.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::canvasl::generate::XorShift;
use crate::federation::SyncKind;
use crate::identity::Identity;

use super::{Action, ShareId, SyncConfig, SyncEngine};

/// A fixed clock start.
pub(crate) const T0: u64 = 1_767_225_600;

pub(crate) type R = Result<(), Box<dyn std::error::Error>>;

/// The peer id of test peer `n`.
pub(crate) fn peer(n: u8) -> String {
    format!("{n:064x}")
}

/// One peer: an engine over its own temporary directories.
pub(crate) struct Node {
    pub(crate) n: u8,
    pub(crate) id: String,
    pub(crate) root: TempDir,
    pub(crate) config: SyncConfig,
    engine: Option<SyncEngine>,
    pub(crate) online: bool,
    /// The node's key, for nodes that sign memberships ([`Node::signed`]).
    pub(crate) identity: Option<Identity>,
}

impl Node {
    pub(crate) fn new(n: u8, config: SyncConfig) -> Node {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("home")).expect("home");
        let mut node = Node {
            n,
            id: peer(n),
            root,
            config,
            engine: None,
            online: true,
            identity: None,
        };
        node.open();
        node
    }

    /// A node with a real key (secret `[n; 32]`) that signs the memberships of its shares.
    pub(crate) fn signed(n: u8, config: SyncConfig) -> Node {
        let identity = Identity::from_secret_for_tests([n; 32]);
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("home")).expect("home");
        let mut node = Node {
            n,
            id: identity.peer_id(),
            root,
            config,
            engine: None,
            online: true,
            identity: Some(identity),
        };
        node.open();
        node
    }

    fn open(&mut self) {
        self.engine = Some(
            SyncEngine::open_with(
                &self.root.path().join("sync"),
                &self.root.path().join("state"),
                &self.id,
                [self.n; 32],
                self.config.clone(),
            )
            .expect("open engine"),
        );
        if let Some(identity) = self.identity.clone() {
            self.engine()
                .set_signer(identity, T0)
                .expect("the node's own key");
        }
    }

    pub(crate) fn engine(&mut self) -> &mut SyncEngine {
        self.engine.as_mut().expect("engine open")
    }

    /// Drops the engine (as if Emacs quit) without a call to it.
    pub(crate) fn close(&mut self) {
        self.engine = None;
    }

    /// Opens the engine again (call `startup` next).
    pub(crate) fn reopen(&mut self) {
        self.open();
    }

    /// A directory for the user's own files.
    pub(crate) fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub(crate) fn sync_dir(&self) -> PathBuf {
        self.root.path().join("sync")
    }

    /// Where a share lives on this peer.
    pub(crate) fn file_of(&mut self, share: &ShareId) -> PathBuf {
        self.engine()
            .share_path(share)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.sync_dir().join(share.origin()).join(share.name()))
    }

    /// Writes a local file and returns its path.
    pub(crate) fn write_home(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.home().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

/// One event in flight.
#[derive(Clone, Debug)]
pub(crate) struct Msg {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) kind: SyncKind,
    pub(crate) content: String,
    pub(crate) tags: Vec<Vec<String>>,
}

/// Engines and the events between them.
pub(crate) struct Bus {
    pub(crate) nodes: Vec<Node>,
    pub(crate) queue: Vec<Msg>,
    rng: XorShift,
    pub(crate) now: u64,
    /// Chance (per mille) that a delivered event is delivered again later.
    pub(crate) dup_per_mille: u64,
    /// Deliver in random order (else first in, first out).
    pub(crate) shuffle: bool,
    pub(crate) refused: Vec<(usize, &'static str, String)>,
    pub(crate) updated: Vec<(usize, ShareId, bool)>,
    pub(crate) warnings: Vec<(usize, String)>,
    pub(crate) published: usize,
    pub(crate) delivered: usize,
    pub(crate) largest_content: usize,
    /// Every publication: node, kind, content.
    pub(crate) log: Vec<(usize, SyncKind, String)>,
}

impl Bus {
    pub(crate) fn new(n: usize, seed: u64, config: &SyncConfig) -> Bus {
        Bus {
            nodes: (0..n)
                .map(|i| Node::signed(i as u8 + 1, config.clone()))
                .collect(),
            queue: Vec::new(),
            rng: XorShift::new(seed),
            now: T0,
            dup_per_mille: 200,
            shuffle: true,
            refused: Vec::new(),
            updated: Vec::new(),
            warnings: Vec::new(),
            published: 0,
            delivered: 0,
            largest_content: 0,
            log: Vec::new(),
        }
    }

    /// Takes the actions of node `from` through the one executor
    /// ([`super::exec::execute`]): publications go to every other node (none if `from` is
    /// offline), the rest is recorded.
    pub(crate) fn absorb(&mut self, from: usize, actions: Vec<Action>) {
        let mut sink = BusSink {
            from,
            online: self.nodes[from].online,
            nodes: self.nodes.len(),
            queue: &mut self.queue,
            published: &mut self.published,
            largest_content: &mut self.largest_content,
            log: &mut self.log,
            refused: &mut self.refused,
            updated: &mut self.updated,
            warnings: &mut self.warnings,
        };
        super::exec::execute(actions, &mut sink);
    }

    /// Delivers one event; false when none is left.
    pub(crate) fn step(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let i = if self.shuffle {
            self.rng.below(self.queue.len() as u64) as usize
        } else {
            0
        };
        let msg = if self.shuffle {
            self.queue.swap_remove(i)
        } else {
            self.queue.remove(i)
        };
        if self.rng.chance(self.dup_per_mille) {
            self.queue.push(msg.clone());
        }
        self.now += self.rng.below(2);
        if !self.nodes[msg.to].online {
            return true;
        }
        self.delivered += 1;
        let from_id = self.nodes[msg.from].id.clone();
        let now = self.now;
        let actions = self.nodes[msg.to]
            .engine()
            .handle(&from_id, msg.kind, &msg.content, &msg.tags, now)
            .expect("handle never fails on a healthy disk");
        self.absorb(msg.to, actions);
        true
    }

    /// Delivers until nothing is left.
    pub(crate) fn run(&mut self) {
        let mut steps = 0usize;
        while self.step() {
            steps += 1;
            assert!(steps < 200_000, "the bus does not settle");
        }
    }

    /// Runs an operation on node `i` and takes its actions.
    pub(crate) fn on(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut SyncEngine, u64) -> Result<Vec<Action>, super::SyncError>,
    ) -> Result<(), super::SyncError> {
        let now = self.now;
        let actions = f(self.nodes[i].engine(), now)?;
        self.absorb(i, actions);
        Ok(())
    }
}

/// The test bus as the executor's sink: the fields of [`Bus`] that taking one node's actions
/// changes.
struct BusSink<'a> {
    from: usize,
    online: bool,
    nodes: usize,
    queue: &'a mut Vec<Msg>,
    published: &'a mut usize,
    largest_content: &'a mut usize,
    log: &'a mut Vec<(usize, SyncKind, String)>,
    refused: &'a mut Vec<(usize, &'static str, String)>,
    updated: &'a mut Vec<(usize, ShareId, bool)>,
    warnings: &'a mut Vec<(usize, String)>,
}

impl super::exec::ActionSink for BusSink<'_> {
    fn publish(
        &mut self,
        kind: SyncKind,
        content: &str,
        tags: &[Vec<String>],
    ) -> Result<(), String> {
        *self.published += 1;
        *self.largest_content = (*self.largest_content).max(content.len());
        self.log.push((self.from, kind, content.to_string()));
        if !self.online {
            return Ok(());
        }
        for to in (0..self.nodes).filter(|&to| to != self.from) {
            self.queue.push(Msg {
                from: self.from,
                to,
                kind,
                content: content.to_string(),
                tags: tags.to_vec(),
            });
        }
        Ok(())
    }

    fn report(&mut self, action: Action) {
        match action {
            Action::Updated { share, created, .. } => {
                self.updated.push((self.from, share, created))
            }
            Action::Refused { reason, detail } => self.refused.push((self.from, reason, detail)),
            Action::Warning { message, .. } | Action::WriteFailed { message, .. } => {
                self.warnings.push((self.from, message))
            }
            Action::Publish { .. } => unreachable!("the executor publishes these itself"),
            // The edit path's answers to a buffer (see `super::save`): no buffer here.
            Action::Saved { .. }
            | Action::SaveNotTaken { .. }
            | Action::Offered { .. }
            | Action::OfferWritten { .. } => {}
        }
    }
}

/// The bytes of a file ("" if it is missing).
pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Every file under `dir`, recursively (relative paths), sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    out
}
