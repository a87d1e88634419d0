//! The duplicate-id memory: every accepted event id is remembered until
//! its `created_at` has left the acceptance window (after which the age
//! check refuses it anyway), so a replay inside the window is refused
//! however many events arrive in between.
//!
//! Memory is bounded without forgetting young ids:
//! * when `capacity` ids are remembered, new events are refused
//!   ([`Refusal::Full`], counted as `flood`) until old ids expire;
//! * one sender may hold at most `per_sender` ids ([`Refusal::SenderQuota`]),
//!   so one key cannot fill the memory for everyone.
//!
//! A refused event is not remembered and changes nothing, so it can be
//! accepted when it is delivered again later. The memory survives restarts
//! through a journal ([`super::replay_journal`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Why an event could not be remembered (and so is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The id is remembered already: a replay.
    Seen,
    /// The memory holds `capacity` young ids.
    Full,
    /// The sender holds its quota of young ids.
    SenderQuota,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: u64,
    sender: [u8; 32],
}

/// Recently accepted event ids, each kept until it expires.
#[derive(Debug, Clone)]
pub struct ReplaySet {
    capacity: usize,
    per_sender: usize,
    window: u64,
    seen: HashMap<[u8; 32], Entry>,
    expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
    per_sender_count: HashMap<[u8; 32], usize>,
}

impl ReplaySet {
    /// An empty set of at most `capacity` ids (at least 1), at most
    /// `per_sender` of one sender (at least 1), each remembered until its
    /// `created_at` is `window` seconds old.
    pub fn new(capacity: usize, per_sender: usize, window: u64) -> ReplaySet {
        ReplaySet {
            capacity: capacity.max(1),
            per_sender: per_sender.max(1),
            window,
            seen: HashMap::new(),
            expiry: BinaryHeap::new(),
            per_sender_count: HashMap::new(),
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.seen.contains_key(id)
    }

    /// Forgets the ids whose `created_at` is older than the window at `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(Reverse((expires, id))) = self.expiry.peek().copied() {
            if expires >= now {
                break;
            }
            self.expiry.pop();
            if let Some(e) = self.seen.remove(&id) {
                if let Some(n) = self.per_sender_count.get_mut(&e.sender) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_sender_count.remove(&e.sender);
                    }
                }
            }
        }
        if self.seen.is_empty() {
            // Give back the memory a flood made the tables grow to.
            self.seen.shrink_to(1024);
            self.per_sender_count.shrink_to(64);
            self.expiry.shrink_to(1024);
        }
    }

    /// Whether an event of `sender` could be remembered at `now` (checks
    /// [`Refusal::Seen`], [`Refusal::Full`] and [`Refusal::SenderQuota`]
    /// without remembering anything).
    pub fn check(&mut self, id: &[u8; 32], sender: &[u8; 32], now: u64) -> Result<(), Refusal> {
        self.expire(now);
        if self.seen.contains_key(id) {
            return Err(Refusal::Seen);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        if self.per_sender_count.get(sender).copied().unwrap_or(0) >= self.per_sender {
            return Err(Refusal::SenderQuota);
        }
        Ok(())
    }

    /// Remembers `id` of `sender`, created at `created_at`, if
    /// [`ReplaySet::check`] allows it.
    pub fn insert(
        &mut self,
        id: [u8; 32],
        sender: [u8; 32],
        created_at: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        self.check(&id, &sender, now)?;
        self.remember(id, sender, created_at);
        Ok(())
    }

    /// Remembers `id` unconditionally (restoring the journal; an already
    /// expired id is ignored at the next [`ReplaySet::expire`]).
    pub(crate) fn remember(&mut self, id: [u8; 32], sender: [u8; 32], created_at: u64) {
        let expires = created_at.saturating_add(self.window);
        if self.seen.insert(id, Entry { expires, sender }).is_none() {
            self.expiry.push(Reverse((expires, id)));
            *self.per_sender_count.entry(sender).or_insert(0) += 1;
        }
    }

    /// The remembered ids with their sender and expiry, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ([u8; 32], [u8; 32], u64)> + '_ {
        self.seen.iter().map(|(id, e)| (*id, e.sender, e.expires))
    }

    /// Seconds an id is remembered after its `created_at`.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The most ids remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most ids remembered for one sender.
    pub fn per_sender(&self) -> usize {
        self.per_sender
    }
}

/// Decodes a 64-hex-character event id or key (already checked by verification).
pub(crate) fn id_bytes(hex_id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // Verified events always have a valid id; a bad one maps to all zeros,
    // which can only cause a spurious `replay`, never a panic.
    let _ = hex::decode_to_slice(hex_id, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b
    }

    #[test]
    fn young_ids_are_never_forgotten_and_a_full_set_refuses() {
        let mut r = ReplaySet::new(3, 3, 600);
        let s = id(99);
        assert!(r.is_empty());
        assert_eq!(r.insert(id(1), s, 1000, 1000), Ok(()));
        assert_eq!(r.insert(id(1), s, 1000, 1000), Err(Refusal::Seen));
        r.insert(id(2), s, 1000, 1000).unwrap();
        r.insert(id(3), s, 1000, 1000).unwrap();
        // Full: the new one is refused, the old ones kept.
        assert_eq!(r.insert(id(4), s, 1000, 1000), Err(Refusal::Full));
        assert!(r.contains(&id(1)) && !r.contains(&id(4)));
        // Until the window has passed: then they go, and room is made.
        assert_eq!(r.insert(id(4), s, 1600, 1600), Err(Refusal::Full));
        assert_eq!(r.insert(id(4), s, 1601, 1601), Ok(()));
        assert!(!r.contains(&id(1)) && r.len() == 1);
        assert_eq!(ReplaySet::new(0, 0, 1).capacity(), 1);
    }

    #[test]
    fn one_sender_cannot_fill_the_set() {
        let mut r = ReplaySet::new(100, 10, 600);
        let (flood, honest) = (id(1000), id(2000));
        for n in 0..10 {
            r.insert(id(n), flood, 1000, 1000).unwrap();
        }
        assert_eq!(
            r.insert(id(10), flood, 1000, 1000),
            Err(Refusal::SenderQuota)
        );
        assert_eq!(r.insert(id(11), honest, 1000, 1000), Ok(()));
        // The quota frees up as the sender's ids expire.
        assert_eq!(r.insert(id(10), flood, 1601, 1601), Ok(()));
    }

    #[test]
    fn memory_stays_bounded() {
        let cap = 1000;
        let mut r = ReplaySet::new(cap, cap, 600);
        for n in 0..50_000u64 {
            let _ = r.insert(id(n), id(7), 1000 + n / 100, 1000 + n / 100);
            assert!(r.len() <= cap);
        }
        assert!(r.seen.capacity() < 4 * cap, "{}", r.seen.capacity());
        assert!(r.expiry.len() <= cap);
    }

    #[test]
    fn bad_hex_ids_do_not_panic() {
        assert_eq!(id_bytes("zz"), [0u8; 32]);
        assert_eq!(id_bytes(&"ab".repeat(32))[0], 0xab);
    }
}
