//! WebRTC links across simulated NATs, with network namespaces (needs root and `ip netns`;
//! otherwise each test prints SKIPPED, records itself in `$CARGO_TARGET_DIR/skipped-tests`,
//! and returns). The topology is built by `tests/nat/mod.rs` (its comments record the traps);
//! `tests/nat_emacs.rs` runs batch Emacs peers in the same topology.
//!
//! Every address is in the benchmark ranges 198.18.0.0/15 that are never routed:
//!
//! ```text
//!  home1 198.19.1.2 ── 198.19.1.1 nat1 198.18.1.2 ──┐
//!                                                  198.18.1.1
//!                                              pub 198.18.0.1 (mosquitto :1883, coturn :3478)
//!                                                  198.18.2.1
//!  home2 198.19.2.2 ── 198.19.2.1 nat2 198.18.2.2 ──┘
//! ```
//!
//! The peers are `examples/link_probe.rs`, one in each home, signalling through the real
//! mosquitto in `pub`. Everything is removed when the test ends, failed or not.

mod nat;
mod probe;

use nat::{cannot_run, Nat, Topology, PUB_ADDR, STUN, TURN_PASSWORD, TURN_URL, TURN_USER};
use probe::probe_binary;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Run the two probes, one in each home of `topology` (which kills them if the test fails
/// first); returns (offerer's report, answerer's report).
fn link(topology: &mut Topology, dir: &Path, session: &str, ice: &[&str]) -> (Value, Value) {
    let probe = probe_binary().display().to_string();
    let mut spawn = |home: &str, role: &str| {
        let mut command = vec![probe.clone(), role.into(), format!("{PUB_ADDR}:1883")];
        command.push(session.into());
        command.extend(ice.iter().map(|s| s.to_string()));
        let log = dir.join(format!("{role}.log"));
        let index = topology.spawn(
            home,
            &command,
            &[("LINK_PROBE_TIMEOUT_MS", "15000".into())],
            dir,
            &log,
        );
        (index, log)
    };
    let answerer = spawn("home2", "answerer");
    let offerer = spawn("home1", "offerer");
    // Each probe prints its report as its last line, then exits (closing its output).
    let mut report = |(index, log): (usize, PathBuf)| {
        let mut text = String::new();
        let _ = topology.take_stdout(index).read_to_string(&mut text);
        serde_json::from_str::<Value>(text.lines().last().unwrap_or("")).unwrap_or_else(|_| {
            panic!(
                "link_probe printed no report: {text}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    };
    (report(offerer), report(answerer))
}

/// Build the topology, start the servers, link the two homes.
fn scenario(test: &str, tag: &str, nat1: Nat, nat2: Nat, ice: &[&str]) -> Option<(Value, Value)> {
    if let Some(why) = cannot_run(tag) {
        nat::skip("webrtc_nat", test, &why);
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut topology = Topology::build(tag, nat1, nat2);
    topology.start_servers(dir.path());
    let reports = link(
        &mut topology,
        dir.path(),
        &format!("{}{tag}", std::process::id()),
        ice,
    );
    drop(topology);
    Some(reports)
}

/// The TURN server as `link_probe` takes it: URL,USER,PASSWORD.
fn turn() -> String {
    format!("{TURN_URL},{TURN_USER},{TURN_PASSWORD}")
}

#[test]
fn cone_nats_with_stun_give_a_direct_srflx_link() {
    let Some((offerer, answerer)) = scenario(
        "cone_nats_with_stun_give_a_direct_srflx_link",
        "c",
        Nat::Cone,
        Nat::Cone,
        &[STUN],
    ) else {
        return;
    };
    assert_eq!(offerer["ok"], true, "offerer: {offerer}");
    assert_eq!(answerer["ok"], true, "answerer: {answerer}");
    assert_eq!(offerer["path"], "srflx", "offerer: {offerer}");
    assert_eq!(answerer["path"], "srflx", "answerer: {answerer}");
    assert_eq!(offerer["remote_fingerprint"], answerer["local_fingerprint"]);
}

#[test]
fn symmetric_nats_with_turn_give_a_relay_link() {
    let Some((offerer, answerer)) = scenario(
        "symmetric_nats_with_turn_give_a_relay_link",
        "s",
        Nat::Symmetric,
        Nat::Symmetric,
        &[STUN, &turn()],
    ) else {
        return;
    };
    assert_eq!(offerer["ok"], true, "offerer: {offerer}");
    assert_eq!(answerer["ok"], true, "answerer: {answerer}");
    assert_eq!(offerer["path"], "relay", "offerer: {offerer}");
    assert_eq!(answerer["path"], "relay", "answerer: {answerer}");
}

#[test]
fn udp_blocked_on_one_router_fails_ice_while_the_broker_still_carries_the_signalling() {
    let Some((offerer, answerer)) = scenario(
        "udp_blocked_on_one_router_fails_ice_while_the_broker_still_carries_the_signalling",
        "u",
        Nat::UdpBlocked,
        Nat::Cone,
        &[STUN, &turn()],
    ) else {
        return;
    };
    for report in [&offerer, &answerer] {
        assert_eq!(report["ok"], false, "{report}");
        let error = report["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("ICE failed") || error.contains("timed out"),
            "{report}"
        );
    }
    // The broker (TCP) still reached both: each received the other's description.
    assert!(
        offerer["signals_received"].as_u64().unwrap_or(0) >= 1,
        "{offerer}"
    );
    assert!(
        answerer["signals_received"].as_u64().unwrap_or(0) >= 1,
        "{answerer}"
    );
}
