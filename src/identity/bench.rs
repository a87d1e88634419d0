//! A small self-timing benchmark of the identity core.
//!
//! Run it in a release build, e.g.
//! `cargo run --release --example identity_bench`.

use std::time::{Duration, Instant};

use bitcoin::secp256k1::{schnorr, Message, XOnlyPublicKey};

use super::event::{sign, verify_batch, verify_json, SignedEvent};
use super::keys::{verifier, Identity, DEFAULT_PATH};

const PHRASE: &str =
    "leader monkey parrot ring guide accident before fence cannon height naive bean";
const EVENTS: usize = 20_000;

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// `n` events signed by the NIP-06 test identity (not timed), as the benchmarks use them.
pub fn sample_events(n: usize) -> Result<Vec<SignedEvent>, String> {
    let id = Identity::from_mnemonic(PHRASE, "", DEFAULT_PATH)
        .map_err(|e| format!("benchmark could not derive its identity: {e}"))?;
    Ok((0..n)
        .map(|i| {
            sign(
                &id,
                1,
                &format!("benchmark event number {i}, with some ordinary text in it"),
                vec![vec!["t".to_string(), "meta-log".to_string()]],
                1_700_000_000 + i as u64,
            )
        })
        .collect())
}

/// Bare libsecp256k1 Schnorr verification of `events`' (id, signature, key) triples, with no
/// JSON involved: the ceiling any verification path can reach. Returns how many verified and
/// the time the verification alone took.
pub fn bare_verify(events: &[SignedEvent]) -> (usize, Duration) {
    let triples: Vec<(Message, schnorr::Signature, XOnlyPublicKey)> = events
        .iter()
        .filter_map(|e| {
            let mut idb = [0u8; 32];
            let mut pk = [0u8; 32];
            let mut sig = [0u8; 64];
            hex::decode_to_slice(&e.id, &mut idb).ok()?;
            hex::decode_to_slice(&e.pubkey, &mut pk).ok()?;
            hex::decode_to_slice(&e.sig, &mut sig).ok()?;
            Some((
                Message::from_digest(idb),
                schnorr::Signature::from_slice(&sig).ok()?,
                XOnlyPublicKey::from_slice(&pk).ok()?,
            ))
        })
        .collect();
    let ctx = verifier();
    let t = Instant::now();
    let ok = triples
        .iter()
        .filter(|(m, s, k)| ctx.verify_schnorr(s, m, k).is_ok())
        .count();
    (ok, t.elapsed())
}

/// Measures signing, batch verification, bare libsecp256k1 verification and
/// identity derivation, and returns a multi-line human-readable report.
/// Takes a few seconds in a release build (much longer in debug).
pub fn bench_report() -> String {
    // 1. Signing through `sign` (id computation + fresh aux randomness); the one identity
    // derivation inside `sample_events` (about 1 ms) is a rounding error next to it.
    let t = Instant::now();
    let events = match sample_events(EVENTS) {
        Ok(events) => events,
        Err(e) => return e,
    };
    let sign_time = t.elapsed();

    // 2. Full verification of JSON text through `verify_batch`.
    let jsons: Vec<String> = events.iter().map(|e| e.to_json()).collect();
    let refs: Vec<&str> = jsons.iter().map(String::as_str).collect();
    let t = Instant::now();
    let results = verify_batch(&refs);
    let batch_time = t.elapsed();
    let ok = results.iter().filter(|r| r.is_ok()).count();

    // 2b. The same, one `verify_json` call per event (no key cache).
    let t = Instant::now();
    let single_ok = refs.iter().filter(|j| verify_json(j).is_ok()).count();
    let single_time = t.elapsed();

    // 3. Bare `verify_schnorr` on the same (message, signature, key) triples.
    let (bare_ok, bare_time) = bare_verify(&events);

    // 4. Mnemonic → identity (PBKDF2 + BIP-32), median of 20.
    let mut derive: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let _ = Identity::from_mnemonic(PHRASE, "", DEFAULT_PATH);
            t.elapsed()
        })
        .collect();
    derive.sort();
    let median = derive[derive.len() / 2];

    let sign_rate = per_second(EVENTS, sign_time);
    let batch_rate = per_second(EVENTS, batch_time);
    let bare_rate = per_second(events.len(), bare_time);
    let single_rate = per_second(EVENTS, single_time);
    let ratio = 100.0 * batch_rate / bare_rate.max(1e-9);
    let median_ms = median.as_secs_f64() * 1000.0;
    format!(
        "identity core benchmark ({EVENTS} events, {} build)\n\
         sign (NIP-01 id + BIP-340, aux rand):  {sign_rate:>10.0} signatures/s\n\
         verify_batch (JSON → checked event):   {batch_rate:>10.0} events/s ({ok}/{EVENTS} valid)\n\
         verify_json, one call per event:       {single_rate:>10.0} events/s ({single_ok} valid)\n\
         bare secp256k1 verify_schnorr:         {bare_rate:>10.0} verifications/s ({bare_ok} valid)\n\
         verify_batch / bare:                   {ratio:>10.1} % {}\n\
         mnemonic → identity (median of 20):    {median_ms:>10.2} ms {}\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        crate::merge::bench::target(">= 75%", ratio >= 75.0),
        crate::merge::bench::target("< 50 ms", median_ms < 50.0),
    )
}
