//! Transport-level interop with an independent WebRTC implementation: Python aiortc
//! (`tests/interop/aiortc_peer.py`) and our `connect` (`examples/link_probe.rs`) open a data
//! channel to each other, signalling through a real mosquitto, each side offering in turn.
//! The signalling here is the probe's plain JSON; the protocol-level test, where an aiortc peer
//! written from docs/PROTOCOL.md links with a batch Emacs through the signed, encrypted
//! signalling and the hello, is `test/meta-log-federation-aiortc-test.el`
//! (`tests/interop/federation_peer.py`).
//! Without python3 + aiortc + paho-mqtt the tests print SKIPPED and record themselves in
//! `$CARGO_TARGET_DIR/skipped-tests`.

mod common;
mod probe;

use common::Broker;
use probe::probe_binary;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn skip(test: &str, why: &str) {
    println!("SKIPPED {test}: {why}");
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let _ = std::fs::create_dir_all(&dir);
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skipped-tests"))
    {
        let _ = writeln!(f, "webrtc_aiortc::{test}: {why}");
    }
}

fn aiortc_missing() -> Option<String> {
    let ok = Command::new("python3")
        .args(["-c", "import aiortc, paho.mqtt"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (!ok).then(|| {
        "python3 with aiortc and paho-mqtt is not installed (pip install aiortc paho-mqtt)".into()
    })
}

fn report(child: std::process::Child, who: &str) -> Value {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "{who} printed no report: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Run our probe as `ours` and aiortc as the other role; returns (our report, aiortc's).
fn link(ours: &str, theirs: &str, session: &str) -> (Value, Value) {
    let broker = Broker::start();
    let addr = format!("127.0.0.1:{}", broker.port);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aiortc_peer.py");
    let python = Command::new("python3")
        .arg(script)
        .args([theirs, &addr, session])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let probe = Command::new(probe_binary())
        .args([ours, &addr, session])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("link_probe");
    (
        report(probe, "link_probe"),
        report(python, "aiortc_peer.py"),
    )
}

fn check(ours: &Value, theirs: &Value) {
    assert_eq!(ours["ok"], true, "ours: {ours}\naiortc: {theirs}");
    assert_eq!(theirs["ok"], true, "aiortc: {theirs}\nours: {ours}");
    assert_eq!(ours["echoed"], 20);
    // The certificate our side saw in DTLS is the one aiortc's SDP named, and the other way.
    assert_eq!(ours["remote_fingerprint"], theirs["local_fingerprint"]);
    assert_eq!(theirs["remote_fingerprint"], ours["local_fingerprint"]);
}

#[test]
fn aiortc_answers_our_offer() {
    if let Some(why) = aiortc_missing() {
        return skip("aiortc_answers_our_offer", &why);
    }
    let (ours, theirs) = link("offerer", "answerer", &format!("a{}", std::process::id()));
    check(&ours, &theirs);
}

#[test]
fn we_answer_an_aiortc_offer() {
    if let Some(why) = aiortc_missing() {
        return skip("we_answer_an_aiortc_offer", &why);
    }
    let (ours, theirs) = link("answerer", "offerer", &format!("b{}", std::process::id()));
    check(&ours, &theirs);
}
