//! Peer identities: a secp256k1 key pair derived from a recovery phrase
//! along a BIP-32 path (NIP-06 by default).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::secp256k1::{All, Keypair, Secp256k1, VerifyOnly};
use bitcoin::NetworkKind;
use zeroize::Zeroizing;

use super::error::{IdentityError, Result};
use super::mnemonic;

/// The NIP-06 derivation path (account 0): `m/44'/1237'/0'/0/0`.
pub const DEFAULT_PATH: &str = "m/44'/1237'/0'/0/0";

/// The process-wide signing context, created once and randomised with 32
/// bytes from the operating system (blinding against side channels; the
/// library does not do it by itself without its `rand` feature). Should the
/// OS refuse randomness, the context stays unblinded, which costs side-channel
/// hardening only, never correctness.
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut ctx = Secp256k1::new();
        let mut seed = Zeroizing::new([0u8; 32]);
        if getrandom::getrandom(&mut seed[..]).is_ok() {
            ctx.seeded_randomize(&seed);
        }
        ctx
    })
}

/// The process-wide verification context, shared by every verification.
pub(crate) fn verifier() -> &'static Secp256k1<VerifyOnly> {
    static CTX: OnceLock<Secp256k1<VerifyOnly>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::verification_only)
}

/// A peer identity: the key pair plus what is needed to save it again
/// (the recovery phrase, the BIP-39 passphrase and the derivation path).
///
/// The secret parts are wiped from memory when the value is dropped, and
/// `Debug` shows only the peer id and the path.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
    path: String,
    mnemonic: Zeroizing<String>,
    passphrase: Zeroizing<String>,
}

/// Overwrites the secret key and chain code of an extended private key.
fn wipe_xpriv(x: &mut Xpriv) {
    x.private_key.non_secure_erase();
    x.chain_code = bitcoin::bip32::ChainCode::from([0u8; 32]);
}

/// Parses a BIP-32 path, giving [`IdentityError::BadPath`] on failure.
fn parse_path(path: &str) -> Result<DerivationPath> {
    let bad = |reason: &str| IdentityError::BadPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = path.trim();
    if trimmed != "m" && !trimmed.starts_with("m/") {
        return Err(bad("it must start with m/"));
    }
    if trimmed.len() > 512 {
        return Err(bad("it is too long"));
    }
    for seg in trimmed.split('/').skip(1) {
        let digits = seg.strip_suffix(['\'', 'h']).unwrap_or(seg);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "each level must be a number, optionally followed by ' (hardened)",
            ));
        }
    }
    let p = DerivationPath::from_str(trimmed).map_err(|e| bad(&e.to_string()))?;
    if p.is_empty() {
        return Err(bad("it has no levels below m"));
    }
    Ok(p)
}

impl Identity {
    /// Derives the identity for `mnemonic` (an English BIP-39 phrase),
    /// the optional BIP-39 `passphrase` (`""` for none) and the BIP-32
    /// `path` (use [`DEFAULT_PATH`] unless you need another account).
    ///
    /// Fails with [`IdentityError::BadMnemonic`] or
    /// [`IdentityError::BadPath`]. Costs about 2 ms (PBKDF2): derive once and
    /// keep the value.
    pub fn from_mnemonic(mnemonic: &str, passphrase: &str, path: &str) -> Result<Identity> {
        let canonical = mnemonic::canonical(mnemonic)?;
        let dpath = parse_path(path)?;
        let seed = Zeroizing::new(mnemonic::to_seed(&canonical, passphrase)?);
        let mut master = Xpriv::new_master(NetworkKind::Main, &seed[..])
            .map_err(|e| IdentityError::Crypto(format!("BIP-32 master key: {e}")))?;
        let child = master.derive_priv(secp(), &dpath);
        // The extended keys hold secrets; `Xpriv` does not wipe itself.
        wipe_xpriv(&mut master);
        let mut child =
            child.map_err(|e| IdentityError::Crypto(format!("BIP-32 derivation: {e}")))?;
        let keypair = Keypair::from_secret_key(secp(), &child.private_key);
        wipe_xpriv(&mut child);
        Ok(Identity {
            keypair,
            path: dpath.to_string_with_m(),
            mnemonic: canonical,
            passphrase: Zeroizing::new(passphrase.to_string()),
        })
    }

    /// An identity for the secret key `secret` (tests that need many keys
    /// fast: no recovery phrase, so it cannot be saved).
    #[cfg(test)]
    pub(crate) fn from_secret_for_tests(secret: [u8; 32]) -> Identity {
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&secret).expect("valid secret key");
        Identity {
            keypair: Keypair::from_secret_key(secp(), &sk),
            path: DEFAULT_PATH.to_string(),
            mnemonic: Zeroizing::new(String::new()),
            passphrase: Zeroizing::new(String::new()),
        }
    }

    /// The peer id: the 32-byte x-only (BIP-340) public key as 64 lowercase
    /// hex characters. This is the Nostr `pubkey` of events this peer signs.
    pub fn peer_id(&self) -> String {
        hex::encode(self.keypair.x_only_public_key().0.serialize())
    }

    /// The 33-byte compressed SEC1 public key as 66 lowercase hex characters.
    pub fn public_key(&self) -> String {
        hex::encode(self.keypair.public_key().serialize())
    }

    /// The BIP-32 derivation path, normalised (e.g. `m/44'/1237'/0'/0/0`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The secret key as 64 hex characters.
    ///
    /// **For tests and test vectors only.** Anyone who sees this string can
    /// act as this peer; never log or display it.
    pub fn secret_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.keypair.secret_bytes()))
    }

    /// The key pair, for signing and ECDH.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The recovery phrase (canonical spelling). Needed to save the identity.
    pub(crate) fn mnemonic(&self) -> &str {
        &self.mnemonic
    }

    /// The BIP-39 passphrase ("" if none).
    pub(crate) fn bip39_passphrase(&self) -> &str {
        &self.passphrase
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.keypair.non_secure_erase();
    }
}

/// Turns a BIP-32 path into the canonical `m/...'` spelling.
trait PathWithM {
    fn to_string_with_m(&self) -> String;
}

impl PathWithM for DerivationPath {
    fn to_string_with_m(&self) -> String {
        // bitcoin 0.32 prints paths without the leading "m/" in some
        // versions and with it in others; normalise to "m/...".
        let s = self.to_string();
        let body = s.strip_prefix("m/").unwrap_or(&s);
        format!("m/{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::bip32::Xpub;

    #[test]
    fn nip06_vectors() {
        let cases = [
            (
                "leader monkey parrot ring guide accident before fence cannon height naive bean",
                "7f7ff03d123792d6ac594bfa67bf6d0c0ab55b6b1fdb6249303fe861f1ccba9a",
                "17162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917",
            ),
            (
                "what bleak badge arrange retreat wolf trade produce cricket blur garlic valid proud rude strong choose busy staff weather area salt hollow arm fade",
                "c15d739894c81a2fcfd3a2df85a0d2c0dbc47a280d092799f144d73d7ae78add",
                "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573",
            ),
        ];
        for (phrase, sk, pk) in cases {
            let id = Identity::from_mnemonic(phrase, "", DEFAULT_PATH).unwrap();
            assert_eq!(id.secret_hex().as_str(), sk);
            assert_eq!(id.peer_id(), pk);
            assert_eq!(id.public_key().len(), 66);
            assert!(id.public_key().ends_with(pk));
            assert_eq!(id.path(), DEFAULT_PATH);
        }
    }

    fn xprv_at(seed: &[u8], path: &str) -> (String, String) {
        let master = Xpriv::new_master(NetworkKind::Main, seed).unwrap();
        let child = if path == "m" {
            master
        } else {
            master
                .derive_priv(secp(), &parse_path(path).unwrap())
                .unwrap()
        };
        (
            child.to_string(),
            Xpub::from_priv(secp(), &child).to_string(),
        )
    }

    /// BIP-32 test vectors 1 and 2 (bitcoin/bips bip-0032.mediawiki).
    #[test]
    fn bip32_vectors() {
        let v1 = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let v1_cases = [
            (
                "m",
                "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
                "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            ),
            (
                "m/0'",
                "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
                "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
            ),
            (
                "m/0'/1",
                "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
                "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
            ),
            (
                "m/0'/1/2'",
                "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
                "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
            ),
            (
                "m/0'/1/2'/2",
                "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
                "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
            ),
            (
                "m/0'/1/2'/2/1000000000",
                "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
                "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
            ),
        ];
        let v2 = hex::decode("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542").unwrap();
        let v2_cases = [
            (
                "m",
                "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
                "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
            ),
            (
                "m/0",
                "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
                "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
            ),
            (
                "m/0/2147483647'",
                "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
                "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
            ),
            (
                "m/0/2147483647'/1",
                "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
                "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
            ),
            (
                "m/0/2147483647'/1/2147483646'",
                "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
                "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
            ),
            (
                "m/0/2147483647'/1/2147483646'/2",
                "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
                "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
            ),
        ];
        for (seed, cases) in [(&v1, &v1_cases[..]), (&v2, &v2_cases[..])] {
            for (path, xpub, xprv) in cases {
                let (got_prv, got_pub) = xprv_at(seed, path);
                assert_eq!(&got_prv, xprv, "xprv at {path}");
                assert_eq!(&got_pub, xpub, "xpub at {path}");
            }
        }
    }

    /// The BIP-39 vectors also give the BIP-32 master key of each seed.
    #[test]
    fn bip39_seed_to_master_xprv() {
        for [_, phrase, _, xprv] in crate::identity::mnemonic::tests::vectors() {
            let seed = mnemonic::to_seed(&phrase, "TREZOR").unwrap();
            assert_eq!(xprv_at(&seed, "m").0, xprv);
        }
    }

    #[test]
    fn bad_inputs_are_distinct_errors() {
        let good = "leader monkey parrot ring guide accident before fence cannon height naive bean";
        let e = Identity::from_mnemonic("leader monkey", "", DEFAULT_PATH).unwrap_err();
        assert!(matches!(e, IdentityError::BadMnemonic(_)), "{e}");
        for p in [
            "",
            "m",
            "44'/0",
            "m/x",
            "m/44'/1237'/0'/0/0/",
            "m//1",
            "m/4294967296",
            "m/2147483648'",
        ] {
            let e = Identity::from_mnemonic(good, "", p).unwrap_err();
            assert!(matches!(e, IdentityError::BadPath { .. }), "{p}: {e}");
            assert!(e.to_string().contains("m/44'/1237'/0'/0/0"), "{e}");
        }
        // "h" as the hardened marker is accepted and normalised.
        let id = Identity::from_mnemonic(good, "", "m/44h/1237h/0h/0/0").unwrap();
        assert_eq!(id.path(), DEFAULT_PATH);
    }

    #[test]
    fn passphrase_and_account_change_the_key() {
        let good = "leader monkey parrot ring guide accident before fence cannon height naive bean";
        let a = Identity::from_mnemonic(good, "", DEFAULT_PATH).unwrap();
        let b = Identity::from_mnemonic(good, "x", DEFAULT_PATH).unwrap();
        let c = Identity::from_mnemonic(good, "", "m/44'/1237'/1'/0/0").unwrap();
        assert_ne!(a.peer_id(), b.peer_id());
        assert_ne!(a.peer_id(), c.peer_id());
        assert_eq!(b.bip39_passphrase(), "x");
        assert_eq!(a.mnemonic(), good);
    }

    #[test]
    fn debug_hides_secrets() {
        let good = "leader monkey parrot ring guide accident before fence cannon height naive bean";
        let id = Identity::from_mnemonic(good, "pw", DEFAULT_PATH).unwrap();
        let d = format!("{id:?}");
        assert!(d.contains(&id.peer_id()));
        assert!(!d.contains("leader"));
        assert!(!d.contains(id.secret_hex().as_str()));
        assert!(!d.contains("pw\""));
    }
}
