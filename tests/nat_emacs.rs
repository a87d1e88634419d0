//! Batch Emacs peers behind simulated NAT routers (issue 12): the real package, started with
//! `ip netns exec homeN emacs --batch -Q -L lisp -L test -l test/meta-log-federation-nat-peer.el`,
//! links to the other home through `meta-log-federation-connect-to-peer`, with its ICE servers
//! and TCP fallback set through the package's own options, and sends messages. The topology
//! (two homes behind routers, mosquitto and coturn in `pub`) is `tests/nat/mod.rs`.
//!
//! Each test: the recipient starts in home2; a `mosquitto_sub` in `pub` subscribes to the
//! recipient's message topic; the sender starts in home1, opens a link once it sees the
//! recipient online, and sends 100 messages when the link is up (or when it failed, in the
//! broker and impostor cases). The test counts every message arriving at the recipient, and
//! what the spy saw. Cases: cone NATs + STUN → `srflx`; symmetric NATs + TURN → `relay`; UDP
//! blocked with a forwarded TCP port (`meta-log-federation-tcp-advertise`) → `tcp`; UDP blocked
//! without one → the broker; a forwarded port that reaches an impostor → refused, the broker.
//!
//! Needs root, `ip`, `nft`, `turnserver`, `emacs`, the mosquitto clients and `openssl`; otherwise each test
//! prints SKIPPED and records itself in `$CARGO_TARGET_DIR/skipped-tests`. Needs the module
//! (`lisp/meta-log-federation-module.so`, built by `make module`, which `make test` runs before
//! `cargo test`): missing or older than its sources, the test fails and says what to run.

mod nat;

use meta_log_federation_module::federation::protocol::{Topics, KIND_PEER_MESSAGE};
use nat::{cannot_run, Nat, Topology, PUB_ADDR, STUN, TURN_PASSWORD, TURN_URL, TURN_USER};
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUITE: &str = "nat_emacs";

/// How many messages each test sends.
const COUNT: usize = 100;

/// The port the recipient's TCP fallback listens on, forwarded by its router in the TCP test.
const TCP_PORT: u16 = 7448;

/// The package's top directory.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test unless the module exists and is newer than every source it is built from:
/// an Emacs peer would otherwise offer to build it (in a namespace without a network) or test
/// old code.
fn require_module() {
    let module = root().join("lisp/meta-log-federation-module.so");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = modified(&module);
    let mut newest = modified(&root().join("Cargo.toml"));
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                newest = newest.max(modified(&path));
            }
        }
    }
    assert!(
        built.is_some() && built >= newest,
        "{} is missing or older than src/: run `make module` (or the whole `make test`, which \
         builds it before `cargo test`)",
        module.display()
    );
}

/// Why these tests cannot run here, if they cannot.
fn cannot_run_emacs(tag: &str) -> Option<String> {
    if let Some(why) = cannot_run(tag) {
        return Some(why);
    }
    for tool in ["emacs", "mosquitto_sub", "mosquitto_pub", "openssl", "bash"] {
        if !nat::run_status(&["sh", "-c", &format!("command -v {tool}")]) {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// The lines a process printed on standard output, gathered by a thread as they come.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(stdout: std::process::ChildStdout) -> Lines {
        let lines = Lines::default();
        let sink = lines.0.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        lines
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A batch Emacs peer in a home: its report lines and its error output's file.
struct Peer {
    name: String,
    lines: Lines,
    log: PathBuf,
}

impl Peer {
    /// The JSON reports so far.
    fn reports(&self) -> Vec<Value> {
        self.lines
            .snapshot()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Waits (at most `secs`) for the first report of `event` that `accept` takes; fails the
    /// test with the peer's error output when none comes.
    fn wait_for(&self, event: &str, secs: u64, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self
                .reports()
                .into_iter()
                .find(|v| v["event"] == event && accept(v))
            {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {event} report within {secs} s; reports: {:?}\nits output:\n{}",
                    self.name,
                    self.lines.snapshot(),
                    tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many times each message text arrived.
    fn received(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for v in self.reports() {
            if v["event"] == "message" {
                *counts
                    .entry(v["text"].as_str().unwrap_or_default().to_string())
                    .or_insert(0) += 1;
            }
        }
        counts
    }
}

/// The last lines of a log file, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// An Elisp string literal.
fn lisp_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Starts a batch Emacs peer in home `home`, with `settings` (variable, Elisp value) set
/// before the package loads; returns once it reported itself ready, with its peer id.
fn start_peer(
    topology: &mut Topology,
    dir: &Path,
    home: u8,
    name: &str,
    settings: &[(&str, String)],
) -> (Peer, String) {
    let peer_dir = dir.join(name);
    std::fs::create_dir_all(&peer_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&peer_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut setq = format!(
        "(setq nat-peer-dir {} nat-peer-broker {} meta-log-federation-link-setup-timeout 10",
        lisp_string(&format!("{}/", peer_dir.display())),
        lisp_string(&format!("mqtt://{PUB_ADDR}:1883")),
    );
    for (var, value) in settings {
        setq.push_str(&format!(" {var} {value}"));
    }
    setq.push(')');
    let command: Vec<String> = [
        "emacs",
        "--batch",
        "-Q",
        "-L",
        "lisp",
        "-L",
        "test",
        "--eval",
        &setq,
        "-l",
        "test/meta-log-federation-nat-peer.el",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = dir.join(format!("{name}.log"));
    let home_ns = format!("home{home}");
    let runtime = peer_dir.display().to_string();
    let index = topology.spawn(
        &home_ns,
        &command,
        &[("HOME", runtime.clone()), ("XDG_RUNTIME_DIR", runtime)],
        root(),
        &log,
    );
    let peer = Peer {
        name: format!("{name} (home{home})"),
        lines: Lines::follow(topology.take_stdout(index)),
        log,
    };
    let ready = peer.wait_for("ready", 90, |_| true);
    let id = ready["peer_id"].as_str().expect("peer id").to_string();
    (peer, id)
}

/// A `mosquitto_sub` in `pub` on `topic`, subscribed (it has seen a probe) when returned.
fn spy(topology: &mut Topology, dir: &Path, topic: &str) -> Lines {
    let command: Vec<String> = ["mosquitto_sub", "-h", PUB_ADDR, "-q", "1", "-t", topic]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let index = topology.spawn("pub", &command, &[], dir, &dir.join("spy.log"));
    let lines = Lines::follow(topology.take_stdout(index));
    mark(topology, &lines, topic, "spy-probe");
    lines
}

/// Publishes `marker` on `topic` until the spy `lines` shows it: everything the broker
/// routed before is then in `lines` too.
fn mark(topology: &Topology, lines: &Lines, topic: &str, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        nat::must(&[
            "ip",
            "netns",
            "exec",
            &topology.ns("pub"),
            "mosquitto_pub",
            "-h",
            PUB_ADDR,
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            marker,
        ]);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if lines.snapshot().iter().any(|l| l == marker) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(Instant::now() < deadline, "the spy never saw {marker}");
    }
}

/// How many peer messages (their kind) the spy saw.
fn spied_messages(lines: &Lines) -> usize {
    let kind = format!("\"kind\":{KIND_PEER_MESSAGE}");
    lines
        .snapshot()
        .iter()
        .filter(|l| l.contains(&kind))
        .count()
}

/// What one run showed.
struct Outcome {
    /// The sender's `link-up` path, or None when no link came up.
    sender_path: Option<String>,
    /// The recipient's `link-up` path, or None.
    recipient_path: Option<String>,
    /// The sender's `link` report after sending (state, path, bytes out).
    sender_link: Value,
    /// The sender's direct-link counters after its last link-down (empty without one).
    sender_counters: Value,
    /// How many times each message arrived at the recipient.
    received: HashMap<String, usize>,
    /// Peer messages the spy on the recipient's message topic saw.
    spied: usize,
}

/// Where router 2 forwards [`TCP_PORT`].
#[derive(Clone, Copy, PartialEq)]
enum Forward {
    /// Nowhere (no forwarding rule; the recipient does not listen).
    Nothing,
    /// To the recipient's listener.
    Listener,
    /// To another TLS server in home2 ([`IMPOSTOR_PORT`]) with a certificate of its own: a
    /// connection the recipient never signed for.
    Impostor,
}

/// The port the impostor listens on in home2.
const IMPOSTOR_PORT: u16 = 7449;

/// Starts `openssl s_server` in home2 on [`IMPOSTOR_PORT`] with a fresh certificate; it asks
/// for a client certificate and speaks the links' ALPN, as a link's listener does.
fn start_impostor(topology: &mut Topology, dir: &Path) {
    let (key, cert) = (dir.join("impostor.key"), dir.join("impostor.crt"));
    nat::must(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=impostor",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let addr = format!("{}:{IMPOSTOR_PORT}", nat::home_addr(2));
    let alpn = String::from_utf8_lossy(meta_log_federation_module::links::tcp::ALPN).to_string();
    let command: Vec<String> = [
        "openssl",
        "s_server",
        "-accept",
        &addr,
        "-cert",
        cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-tls1_3",
        "-verify",
        "1",
        "-alpn",
        &alpn,
        // Serve without reading commands from standard input (at its end, it would quit).
        "-www",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let index = topology.spawn("home2", &command, &[], dir, &dir.join("impostor.log"));
    let _drained = Lines::follow(topology.take_stdout(index));
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = format!("exec 3<>/dev/tcp/{}/{IMPOSTOR_PORT}", nat::home_addr(2));
    while !nat::run_status(&[
        "ip",
        "netns",
        "exec",
        &topology.ns("home2"),
        "bash",
        "-c",
        &probe,
    ]) {
        assert!(Instant::now() < deadline, "the impostor did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a test's homes are set up.
struct Case {
    nat1: Nat,
    nat2: Nat,
    /// ICE servers (an Elisp list) for both peers.
    ice: String,
    /// What router 2 forwards [`TCP_PORT`] to; with a forward, the recipient listens on
    /// [`TCP_PORT`] and advertises the router's public address.
    forward: Forward,
    /// Whether the sender sends after the link came up (true) or after it failed (false).
    expect_link: bool,
}

/// Builds the topology, runs the two Emacs peers, returns what happened; None when skipped.
fn scenario(test: &str, tag: &str, case: Case) -> Option<Outcome> {
    if let Some(why) = cannot_run_emacs(tag) {
        nat::skip(SUITE, test, &why);
        return None;
    }
    require_module();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut topology = Topology::build(tag, case.nat1, case.nat2);
    topology.start_servers(dir.path());
    match case.forward {
        Forward::Nothing => {}
        Forward::Listener => topology.forward_tcp(2, TCP_PORT, TCP_PORT),
        Forward::Impostor => {
            start_impostor(&mut topology, dir.path());
            topology.forward_tcp(2, TCP_PORT, IMPOSTOR_PORT);
        }
    }
    let mut recipient_settings = vec![("meta-log-federation-ice-servers", case.ice.clone())];
    if case.forward != Forward::Nothing {
        recipient_settings.push((
            "meta-log-federation-tcp-listen",
            lisp_string(&format!("0.0.0.0:{TCP_PORT}")),
        ));
        recipient_settings.push((
            "meta-log-federation-tcp-advertise",
            lisp_string(&format!("{}:{TCP_PORT}", nat::router_public_addr(2))),
        ));
    }
    let (recipient, recipient_id) = start_peer(
        &mut topology,
        dir.path(),
        2,
        "recipient",
        &recipient_settings,
    );
    let topic = Topics::default().messages(&recipient_id);
    let spy = spy(&mut topology, dir.path(), &topic);
    let (sender, _) = start_peer(
        &mut topology,
        dir.path(),
        1,
        "sender",
        &[
            ("meta-log-federation-ice-servers", case.ice.clone()),
            ("nat-peer-send-to", lisp_string(&recipient_id)),
            ("nat-peer-count", COUNT.to_string()),
            (
                "nat-peer-send-after",
                if case.expect_link {
                    "'link-up"
                } else {
                    "'link-down"
                }
                .to_string(),
            ),
        ],
    );
    let sender_link = sender.wait_for("link", 60, |_| true);
    let path = |peer: &Peer| {
        peer.reports()
            .iter()
            .find(|v| v["event"] == "link-up")
            .map(|v| v["path"].as_str().unwrap_or_default().to_string())
    };
    // Every message arrives, then the spy is fenced with a marker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while recipient.received().len() < COUNT && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    mark(&topology, &spy, &topic, "spy-done");
    if case.expect_link {
        // The recipient's link-up hook runs from a timer (every 0.5 s), possibly after the
        // first messages came over the link.
        recipient.wait_for("link-up", 20, |_| true);
    }
    // Link setup as the sender saw it: from asking to the link-up hook (a figure, not asserted).
    let at = |event: &str| {
        sender
            .reports()
            .iter()
            .find(|v| v["event"] == event)
            .and_then(|v| v["at"].as_f64())
    };
    let setup = at("link-up")
        .zip(at("connecting"))
        .map(|(up, asked)| up - asked);
    let outcome = Outcome {
        sender_path: path(&sender),
        recipient_path: path(&recipient),
        sender_link,
        sender_counters: sender
            .reports()
            .into_iter()
            .rfind(|v| v["event"] == "counters")
            .unwrap_or_default(),
        received: recipient.received(),
        spied: spied_messages(&spy),
    };
    drop(topology);
    // For the record (`--nocapture`): what happened, and how long it took.
    println!(
        "{test}: sender path {:?}, recipient path {:?}, sender link {}, {} distinct messages \
         arrived, the spy saw {}, link setup {:?} s, {:.1} s in all",
        outcome.sender_path,
        outcome.recipient_path,
        outcome.sender_link,
        outcome.received.len(),
        outcome.spied,
        setup,
        started.elapsed().as_secs_f64()
    );
    Some(outcome)
}

/// Every one of the [`COUNT`] messages arrived exactly once.
fn assert_each_once(outcome: &Outcome) {
    for i in 0..COUNT {
        let text = format!("nat-{i:03}");
        assert_eq!(
            outcome.received.get(&text),
            Some(&1),
            "{text} arrived {:?} times",
            outcome.received.get(&text)
        );
    }
    assert_eq!(outcome.received.len(), COUNT, "{:?}", outcome.received);
}

/// `meta-log-federation-ice-servers` with the STUN server only.
fn ice_stun() -> String {
    format!("'((:urls {}))", lisp_string(STUN))
}

/// `meta-log-federation-ice-servers` with STUN and TURN (long-term credentials).
fn ice_turn() -> String {
    format!(
        "'((:urls {}) (:urls {} :username {} :credential {}))",
        lisp_string(STUN),
        lisp_string(TURN_URL),
        lisp_string(TURN_USER),
        lisp_string(TURN_PASSWORD)
    )
}

#[test]
fn two_emacs_behind_cone_nats_link_directly_through_stun() {
    let Some(outcome) = scenario(
        "two_emacs_behind_cone_nats_link_directly_through_stun",
        "ec",
        Case {
            nat1: Nat::Cone,
            nat2: Nat::Cone,
            ice: ice_stun(),
            forward: Forward::Nothing,
            expect_link: true,
        },
    ) else {
        return;
    };
    assert_eq!(outcome.sender_path.as_deref(), Some("srflx"));
    assert_eq!(outcome.recipient_path.as_deref(), Some("srflx"));
    assert_eq!(
        outcome.sender_link["state"], "up",
        "{}",
        outcome.sender_link
    );
    assert_eq!(
        outcome.sender_link["path"], "srflx",
        "{}",
        outcome.sender_link
    );
    assert_each_once(&outcome);
    assert_eq!(outcome.spied, 0, "the broker carried peer messages");
}

#[test]
fn two_emacs_behind_symmetric_nats_link_through_turn() {
    let Some(outcome) = scenario(
        "two_emacs_behind_symmetric_nats_link_through_turn",
        "es",
        Case {
            nat1: Nat::Symmetric,
            nat2: Nat::Symmetric,
            ice: ice_turn(),
            forward: Forward::Nothing,
            expect_link: true,
        },
    ) else {
        return;
    };
    assert_eq!(outcome.sender_path.as_deref(), Some("relay"));
    assert_eq!(outcome.recipient_path.as_deref(), Some("relay"));
    assert_eq!(
        outcome.sender_link["state"], "up",
        "{}",
        outcome.sender_link
    );
    assert_each_once(&outcome);
    assert_eq!(outcome.spied, 0, "the broker carried peer messages");
}

#[test]
fn udp_blocked_falls_back_to_tcp_through_a_forwarded_port() {
    let Some(outcome) = scenario(
        "udp_blocked_falls_back_to_tcp_through_a_forwarded_port",
        "et",
        Case {
            nat1: Nat::UdpBlocked,
            nat2: Nat::Cone,
            ice: ice_turn(),
            forward: Forward::Listener,
            expect_link: true,
        },
    ) else {
        return;
    };
    assert_eq!(outcome.sender_path.as_deref(), Some("tcp"));
    assert_eq!(outcome.recipient_path.as_deref(), Some("tcp"));
    assert_eq!(
        outcome.sender_link["state"], "up",
        "{}",
        outcome.sender_link
    );
    assert_each_once(&outcome);
    assert_eq!(outcome.spied, 0, "the broker carried peer messages");
}

#[test]
fn udp_blocked_without_a_forwarded_port_leaves_the_broker_and_loses_nothing() {
    let Some(outcome) = scenario(
        "udp_blocked_without_a_forwarded_port_leaves_the_broker_and_loses_nothing",
        "eb",
        Case {
            nat1: Nat::UdpBlocked,
            nat2: Nat::Cone,
            ice: ice_turn(),
            forward: Forward::Nothing,
            expect_link: false,
        },
    ) else {
        return;
    };
    assert_eq!(outcome.sender_path, None);
    assert_eq!(outcome.recipient_path, None);
    assert_ne!(
        outcome.sender_link["state"], "up",
        "{}",
        outcome.sender_link
    );
    assert_each_once(&outcome);
    assert_eq!(outcome.spied, COUNT, "the broker carried each message once");
}

#[test]
fn a_forwarded_port_that_reaches_an_impostor_never_carries_a_message() {
    let Some(outcome) = scenario(
        "a_forwarded_port_that_reaches_an_impostor_never_carries_a_message",
        "ei",
        Case {
            nat1: Nat::UdpBlocked,
            nat2: Nat::Cone,
            ice: ice_turn(),
            forward: Forward::Impostor,
            expect_link: false,
        },
    ) else {
        return;
    };
    assert_eq!(outcome.sender_path, None);
    assert_ne!(
        outcome.sender_link["state"], "up",
        "{}",
        outcome.sender_link
    );
    let counters = &outcome.sender_counters;
    assert!(
        counters["bad-fingerprint"].as_u64().unwrap_or(0) >= 1,
        "{counters}"
    );
    assert_eq!(counters["carried"], 0, "{counters}");
    assert_each_once(&outcome);
    assert_eq!(outcome.spied, COUNT, "the broker carried each message once");
}
