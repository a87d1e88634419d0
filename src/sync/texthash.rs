//! The SHA-256 of a whole file's text, computed on a thread of its own while the worker waits
//! for something else: the person's Emacs patching its buffer (an offer). The hash is what the
//! merge state records about the file, so it must be the real digest; only where it is
//! computed changes, so that it is off the path from a save to the other peer's file. (A
//! save hashes its text while the document takes the edit in: `super::save`.)

use std::sync::Arc;
use std::thread::JoinHandle;

use super::store::sha256;

/// A text with its SHA-256, which may still be being computed.
#[derive(Debug)]
pub(crate) struct HashingText {
    text: Arc<Vec<u8>>,
    hash: Option<JoinHandle<[u8; 32]>>,
    done: Option<[u8; 32]>,
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
        HashingText {
            text,
            hash,
            done: None,
        }
    }

    /// The text, shared with another reader (see `super::prepared`).
    pub(crate) fn shared(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.text)
    }

    /// The text.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.text
    }

    /// The text's SHA-256, waiting for it if needed. A hashing thread that failed (it cannot,
    /// short of running out of memory) is replaced by hashing here.
    pub(crate) fn hash(&mut self) -> [u8; 32] {
        if let Some(h) = self.done {
            return h;
        }
        let h = self
            .hash
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| sha256(&self.text));
        self.done = Some(h);
        h
    }

    /// The text and its SHA-256, waiting for the hash if needed.
    pub(crate) fn finish(mut self) -> (Vec<u8>, [u8; 32]) {
        let hash = self.hash();
        // The threads that read it dropped their references when they were done: the text is
        // ours, copied only if one is still reading.
        let text = Arc::try_unwrap(self.text).unwrap_or_else(|shared| (*shared).clone());
        (text, hash)
    }
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
    }
}
