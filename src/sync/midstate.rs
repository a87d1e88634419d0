//! The SHA-256 of a saved text, computed from its first changed byte on.
//!
//! The merge state records the hash of the file it was written with, so a buffer's save must
//! hash the whole new text before its change goes out (see `super::save`): 9 ms for 12 MB here,
//! the longest step before the publication. A one-entry edit leaves the text's start as it was,
//! and SHA-256 reads its input in order, so the state the hash had after each
//! [`MIDSTATE_EVERY`] bytes of the last saved text is kept ([`Midstates`]): the next save's hash
//! starts from the last of them before the edit, and reads only the rest. The digest is the
//! same as a hash of the whole text (a test checks it); only less of the text is read.

use sha2::{Digest, Sha256};

/// Bytes between two kept states (48 states, 5 KB, for a 12 MB text).
pub(crate) const MIDSTATE_EVERY: usize = 256 * 1024;

/// A text's SHA-256 with the states of the hash after each [`MIDSTATE_EVERY`] bytes of it.
#[derive(Clone)]
pub(crate) struct Midstates {
    /// The digest of the whole text: which text the states are of.
    pub(crate) hash: [u8; 32],
    /// `states[i]`: the hash after the text's first `(i + 1) * MIDSTATE_EVERY` bytes.
    states: Vec<Sha256>,
}

impl std::fmt::Debug for Midstates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Midstates({} kept)", self.states.len())
    }
}

/// SHA-256 of the concatenation of `parts`, with its [`Midstates`]. `prev` are those of an
/// earlier text whose first `unchanged` bytes are the same as these (the caller checks that
/// `prev` is of the text it means, by its hash): the hash resumes from the last state within
/// those bytes.
pub(crate) fn sha256_resuming(
    parts: &[&[u8]],
    prev: Option<&Midstates>,
    unchanged: usize,
) -> ([u8; 32], Midstates) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let reuse = prev.map_or(0, |p| {
        (unchanged.min(total) / MIDSTATE_EVERY).min(p.states.len())
    });
    let mut states: Vec<Sha256> = prev.map_or_else(Vec::new, |p| p.states[..reuse].to_vec());
    let mut h = states.last().cloned().unwrap_or_else(Sha256::new);
    // Feed the bytes from `from` on, keeping the state at each boundary.
    let from = reuse * MIDSTATE_EVERY;
    let mut pos = 0usize;
    for part in parts {
        let (start, end) = (pos, pos + part.len());
        pos = end;
        if end <= from {
            continue;
        }
        let mut at = start.max(from);
        while at < end {
            let next_boundary = (at / MIDSTATE_EVERY + 1) * MIDSTATE_EVERY;
            let stop = end.min(next_boundary);
            h.update(&part[at - start..stop - start]);
            if stop == next_boundary {
                states.push(h.clone());
            }
            at = stop;
        }
    }
    let hash: [u8; 32] = h.finalize().into();
    (hash, Midstates { hash, states })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvasl::generate::XorShift;
    use crate::sync::store::sha256;

    fn bytes(rng: &mut XorShift, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    }

    #[test]
    fn a_resumed_hash_is_the_hash_of_the_whole_text_edit_after_edit() {
        let mut rng = XorShift::new(7);
        let mut text = bytes(&mut rng, 3 * MIDSTATE_EVERY + 1234);
        let (h, mut mids) = sha256_resuming(&[&text], None, 0);
        assert_eq!(h, sha256(&text));
        let m = MIDSTATE_EVERY;
        // Edits at the start, on and around boundaries, in the middle, at the very end, ones
        // that shrink the text below a kept state and ones that grow it past new boundaries.
        let edits: [(usize, usize, usize); 9] = [
            (0, 10, 5),
            (m - 1, 2, 2),
            (m, 0, 7),
            (2 * m + 17, 300, 40),
            (m + 5, 2 * m, 0),
            (10, 0, 2 * m + 3),
            (usize::MAX, 0, 9),
            (usize::MAX, 0, 0),
            (3, 1, 1),
        ];
        for (k, &(at, cut, insert)) in edits.iter().enumerate() {
            let at = at.min(text.len());
            let cut = cut.min(text.len() - at);
            let middle = bytes(&mut rng, insert);
            let parts: [&[u8]; 3] = [&text[..at], &middle, &text[at + cut..]];
            let (h, next) = sha256_resuming(&parts, Some(&mids), at);
            let whole = parts.concat();
            assert_eq!(h, sha256(&whole), "edit {k}");
            assert_eq!(next.hash, h);
            assert_eq!(next.states.len(), whole.len() / m, "edit {k}");
            text = whole;
            mids = next;
        }
        // States of another text are never used when `unchanged` says nothing is shared.
        let other = bytes(&mut rng, 2 * m);
        let (h, _) = sha256_resuming(&[&other], Some(&mids), 0);
        assert_eq!(h, sha256(&other));
    }
}
