//! A bounded set of recently accepted event ids: a ring (oldest first) plus
//! a hash set, so memory never exceeds `capacity` ids however many events
//! arrive. An id pushed out of the ring can be seen again, which is why the
//! inbound pipeline also refuses events older than its maximum age.

use std::collections::{HashSet, VecDeque};

/// Recently seen event ids, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct ReplaySet {
    capacity: usize,
    order: VecDeque<[u8; 32]>,
    seen: HashSet<[u8; 32]>,
}

impl ReplaySet {
    /// An empty set that remembers at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> ReplaySet {
        let capacity = capacity.max(1);
        ReplaySet {
            capacity,
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.seen.contains(id)
    }

    /// Remembers `id`, forgetting the oldest id when full. Returns `false`
    /// if it was already remembered.
    pub fn insert(&mut self, id: [u8; 32]) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The most ids remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Decodes a 64-hex-character event id (already checked by verification).
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
    fn remembers_and_forgets_the_oldest() {
        let mut r = ReplaySet::new(3);
        assert!(r.is_empty());
        assert!(r.insert(id(1)));
        assert!(!r.insert(id(1)));
        r.insert(id(2));
        r.insert(id(3));
        assert!(r.contains(&id(1)));
        r.insert(id(4));
        assert!(!r.contains(&id(1)));
        assert!(r.contains(&id(2)) && r.contains(&id(4)));
        assert_eq!(r.len(), 3);
        assert_eq!(ReplaySet::new(0).capacity(), 1);
    }

    #[test]
    fn memory_stays_bounded() {
        let cap = 1000;
        let mut r = ReplaySet::new(cap);
        for n in 0..50_000 {
            r.insert(id(n));
            assert!(r.len() <= cap);
        }
        assert_eq!(r.len(), cap);
        assert_eq!(r.seen.len(), cap);
        // The hash set does not keep growing its allocation either.
        assert!(r.seen.capacity() < 4 * cap, "{}", r.seen.capacity());
        assert!(r.order.capacity() < 4 * cap, "{}", r.order.capacity());
        assert!(r.contains(&id(49_999)) && !r.contains(&id(48_999)));
    }

    #[test]
    fn bad_hex_ids_do_not_panic() {
        assert_eq!(id_bytes("zz"), [0u8; 32]);
        assert_eq!(id_bytes(&"ab".repeat(32))[0], 0xab);
    }
}
