//! BIP-39 recovery phrases (English word list only).
//!
//! A recovery phrase ("mnemonic") is the one secret a user has to back up:
//! every key of a peer is derived from it.

use bip39::{Language, Mnemonic};
use zeroize::Zeroizing;

use super::error::{IdentityError, Result};

/// Generates a new random English recovery phrase of `words` words.
///
/// Only 12 (128 bits of entropy) and 24 (256 bits) are offered; anything else
/// is [`IdentityError::BadWordCount`]. The entropy comes from the operating
/// system's random source.
pub fn generate(words: usize) -> Result<String> {
    let len = match words {
        12 => 16,
        24 => 32,
        other => return Err(IdentityError::BadWordCount(other)),
    };
    let mut entropy = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(&mut entropy[..len])
        .map_err(|e| IdentityError::Crypto(format!("the OS random source failed: {e}")))?;
    let m = Mnemonic::from_entropy_in(Language::English, &entropy[..len])
        .map_err(|e| IdentityError::Crypto(format!("mnemonic from entropy: {e}")))?;
    Ok(m.to_string())
}

/// Parses a phrase, tolerating extra whitespace and upper case.
/// Returns the parsed mnemonic or a message suitable for a user.
pub(crate) fn parse(phrase: &str) -> std::result::Result<Mnemonic, String> {
    let lowered = Zeroizing::new(phrase.to_lowercase());
    Mnemonic::parse_in(Language::English, lowered.as_str()).map_err(|e| match e {
        bip39::Error::BadWordCount(n) => {
            format!("it has {n} words, but a recovery phrase has 12, 15, 18, 21 or 24")
        }
        bip39::Error::UnknownWord(i) => {
            format!("word {} is not in the BIP-39 English word list", i + 1)
        }
        bip39::Error::InvalidChecksum => {
            "the checksum does not match (a word is wrong or the words are out of order)"
                .to_string()
        }
        other => other.to_string(),
    })
}

/// Whether `phrase` is a valid English BIP-39 phrase (known words, a valid
/// length and a correct checksum). Never panics.
pub fn is_valid(phrase: &str) -> bool {
    parse(phrase).is_ok()
}

/// Turns a phrase plus optional BIP-39 passphrase (the "25th word"; use `""`
/// for none) into the 64-byte seed, with the standard 2048 rounds of
/// PBKDF2-HMAC-SHA512. Both are NFKD-normalised first, as BIP-39 requires.
pub fn to_seed(phrase: &str, passphrase: &str) -> Result<[u8; 64]> {
    let m = parse(phrase).map_err(IdentityError::BadMnemonic)?;
    Ok(m.to_seed(passphrase))
}

/// The canonical spelling of a phrase: lower case, single spaces.
pub(crate) fn canonical(phrase: &str) -> Result<Zeroizing<String>> {
    let m = parse(phrase).map_err(IdentityError::BadMnemonic)?;
    Ok(Zeroizing::new(m.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The official BIP-39 English vectors (trezor/python-mnemonic
    /// vectors.json): entropy, phrase, seed with passphrase "TREZOR",
    /// BIP-32 master xprv.
    pub(crate) fn vectors() -> Vec<[String; 4]> {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("testdata/bip39_vectors.json")).expect("json");
        v["english"]
            .as_array()
            .expect("array")
            .iter()
            .map(|row| {
                let r = row.as_array().expect("row");
                [0, 1, 2, 3].map(|i| r[i].as_str().expect("str").to_string())
            })
            .collect()
    }

    #[test]
    fn official_bip39_vectors() {
        let vs = vectors();
        assert_eq!(vs.len(), 24);
        for [entropy, phrase, seed, _xprv] in &vs {
            let e = hex::decode(entropy).unwrap();
            let m = Mnemonic::from_entropy_in(Language::English, &e).unwrap();
            assert_eq!(&m.to_string(), phrase);
            assert!(is_valid(phrase));
            assert_eq!(hex::encode(to_seed(phrase, "TREZOR").unwrap()), *seed);
        }
    }

    #[test]
    fn generate_lengths() {
        for n in [12, 24] {
            let p = generate(n).unwrap();
            assert_eq!(p.split(' ').count(), n);
            assert!(is_valid(&p));
        }
        assert_ne!(generate(12).unwrap(), generate(12).unwrap());
        for n in [0, 11, 13, 15, 18, 21, 25, usize::MAX] {
            let e = generate(n).unwrap_err();
            assert!(matches!(e, IdentityError::BadWordCount(_)));
            assert!(e.to_string().contains("use 12 or 24"), "{e}");
        }
    }

    #[test]
    fn invalid_phrases() {
        let good = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        assert!(is_valid(good));
        assert!(is_valid(&good.to_uppercase()));
        assert!(is_valid(&format!("  {}  ", good.replace(' ', "   "))));
        for bad in [
            "",
            " ",
            "abandon",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon zzzz",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            "\u{0}\u{ffff}\u{10ffff}",
            "é é é é é é é é é é é é",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        let e = to_seed("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon zzzz", "")
            .unwrap_err();
        assert!(e.to_string().contains("word 12"), "{e}");
        let e = to_seed("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon", "")
            .unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
