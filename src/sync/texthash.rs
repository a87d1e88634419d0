//! The SHA-256 of a whole file's text, computed on a thread of its own while the worker waits
//! for something else: the file write and its fsync (a save), or the person's Emacs patching
//! its buffer (an offer). The hash is what the merge state records about the file, so it must
//! be the real digest; only where it is computed changes, so that it is off the path from a
//! save to the other peer's file.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::store::sha256;

/// A text with its SHA-256, which may still be being computed.
#[derive(Debug)]
pub(crate) struct HashingText {
    text: Arc<Vec<u8>>,
    hash: Option<JoinHandle<[u8; 32]>>,
}

impl HashingText {
    /// Starts hashing `text` on its own thread (inline if no thread can be started).
    pub(crate) fn start(text: Vec<u8>) -> HashingText {
        let text = Arc::new(text);
        let shared = Arc::clone(&text);
        let hash = std::thread::Builder::new()
            .name("mlf-text-hash".into())
            .spawn(move || sha256(&shared))
            .ok();
        HashingText { text, hash }
    }

    /// The text and its SHA-256, waiting for the hash if needed. A hashing thread that failed
    /// (it cannot, short of running out of memory) is replaced by hashing here.
    pub(crate) fn finish(self) -> (Vec<u8>, [u8; 32]) {
        let hash = self.hash.and_then(|h| h.join().ok());
        // The thread dropped its reference when it returned (or never ran): the text is ours.
        let text = Arc::try_unwrap(self.text).unwrap_or_else(|shared| (*shared).clone());
        let hash = hash.unwrap_or_else(|| sha256(&text));
        (text, hash)
    }
}

/// Runs `write` (which writes `text` to its file) while `text` is hashed on a second thread;
/// returns what `write` returned and the text's SHA-256.
pub(crate) fn write_while_hashing<T>(text: &[u8], write: impl FnOnce() -> T) -> (T, [u8; 32]) {
    std::thread::scope(|s| {
        let hashing = std::thread::Builder::new()
            .name("mlf-text-hash".into())
            .spawn_scoped(s, || sha256(text))
            .ok();
        let written = write();
        let hash = hashing
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| sha256(text));
        (written, hash)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_texts_sha256() {
        let text = b"one\ntwo\n".repeat(1000);
        let (back, h) = HashingText::start(text.clone()).finish();
        assert_eq!(back, text);
        assert_eq!(h, sha256(&text));
        let (n, h) = write_while_hashing(&text, || 7);
        assert_eq!((n, h), (7, sha256(&text)));
    }
}
