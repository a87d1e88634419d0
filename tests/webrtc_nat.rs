//! WebRTC links across simulated NATs, with network namespaces (needs root and `ip netns`;
//! otherwise each test prints SKIPPED, records itself in `$CARGO_TARGET_DIR/skipped-tests`,
//! and returns).
//!
//! Topology (docs/FEDERATION_GUIDE.md, "The NAT test topology"), every address in the
//! benchmark ranges 198.18.0.0/15 that is never routed:
//!
//! ```text
//!  home1 198.19.1.2 ── 198.19.1.1 nat1 198.18.1.2 ──┐
//!                                                  198.18.1.1
//!                                              pub 198.18.0.1 (mosquitto :1883, coturn :3478)
//!                                                  198.18.2.1
//!  home2 198.19.2.2 ── 198.19.2.1 nat2 198.18.2.2 ──┘
//! ```
//!
//! `pub` routes the two router subnets and nothing else: its default route leads to a
//! neighbour that never answers (a static entry), so packets to private addresses vanish
//! instead of failing with ENETUNREACH (which made coturn, and ICE with it, give up). The
//! routers masquerade (`masquerade` = endpoint-independent, "cone"; `masquerade random` = a new
//! port per destination, "symmetric") and drop unsolicited inbound packets in their `input`
//! hook, as home routers do; without that, early packets from the far side take the conntrack
//! tuple and hole punching fails where it works on the internet.
//!
//! The peers are `examples/link_probe.rs`, one in each home, signalling through the real
//! mosquitto in `pub`. Everything is removed when the test ends, failed or not.

mod probe;

use probe::probe_binary;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How a router translates and filters.
#[derive(Clone, Copy, PartialEq)]
enum Nat {
    /// Endpoint-independent mapping (`masquerade`).
    Cone,
    /// A new mapping per destination (`masquerade random`).
    Symmetric,
    /// Symmetric, and no UDP at all leaves the home (a network that lets only TCP out).
    UdpBlocked,
}

/// Why the NAT tests cannot run here, if they cannot.
fn cannot_run(tag: &str) -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_NET_ADMIN)".into());
    }
    for tool in ["ip", "nft", "turnserver"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    let probe = format!("mlf{}{tag}-probe", std::process::id());
    let made = run_status(&["ip", "netns", "add", &probe]);
    let _ = run_status(&["ip", "netns", "del", &probe]);
    if !made {
        return Some("`ip netns add` fails here".into());
    }
    None
}

/// Say a test was skipped, and leave a line for `make test`'s summary.
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
        let _ = writeln!(f, "webrtc_nat::{test}: {why}");
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn run_status(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run `args`, failing the test with its error output if it fails.
fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nft -f -` inside a namespace.
fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The five namespaces and the servers in `pub`; removed when dropped (also on a failed
/// assertion: the test's panic unwinds through this).
struct Topology {
    prefix: String,
    servers: Vec<Child>,
}

impl Topology {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn build(tag: &str, nat1: Nat, nat2: Nat) -> Topology {
        let topology = Topology {
            prefix: format!("mlf{}{tag}", std::process::id()),
            servers: vec![],
        };
        let [public, r1, r2, h1, h2] =
            ["pub", "nat1", "nat2", "home1", "home2"].map(|n| topology.ns(n));
        for ns in [&public, &r1, &r2, &h1, &h2] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Links: pub ↔ routers, routers ↔ homes, and pub's silent default route.
        must(&[
            "ip", "-n", &public, "link", "add", "r1", "type", "veth", "peer", "name", "out",
            "netns", &r1,
        ]);
        must(&[
            "ip", "-n", &public, "link", "add", "r2", "type", "veth", "peer", "name", "out",
            "netns", &r2,
        ]);
        must(&[
            "ip", "-n", &r1, "link", "add", "in", "type", "veth", "peer", "name", "eth0", "netns",
            &h1,
        ]);
        must(&[
            "ip", "-n", &r2, "link", "add", "in", "type", "veth", "peer", "name", "eth0", "netns",
            &h2,
        ]);
        must(&[
            "ip",
            "-n",
            &public,
            "link",
            "add",
            "sink",
            "type",
            "veth",
            "peer",
            "name",
            "sink-peer",
        ]);
        let addresses: [(&str, &str, &str); 9] = [
            (&public, "lo", "198.18.0.1/32"),
            (&public, "r1", "198.18.1.1/24"),
            (&public, "r2", "198.18.2.1/24"),
            (&public, "sink", "198.18.255.1/30"),
            (&r1, "out", "198.18.1.2/24"),
            (&r2, "out", "198.18.2.2/24"),
            (&r1, "in", "198.19.1.1/24"),
            (&r2, "in", "198.19.2.1/24"),
            (&h1, "eth0", "198.19.1.2/24"),
        ];
        for (ns, dev, addr) in addresses {
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        }
        must(&[
            "ip",
            "-n",
            &h2,
            "addr",
            "add",
            "198.19.2.2/24",
            "dev",
            "eth0",
        ]);
        for (ns, dev) in [
            (&public, "r1"),
            (&public, "r2"),
            (&public, "sink"),
            (&public, "sink-peer"),
            (&r1, "out"),
            (&r1, "in"),
            (&r2, "out"),
            (&r2, "in"),
            (&h1, "eth0"),
            (&h2, "eth0"),
        ] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // pub: anything not on its two subnets goes to a neighbour that never answers.
        must(&[
            "ip",
            "-n",
            &public,
            "neigh",
            "add",
            "198.18.255.2",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "sink",
            "nud",
            "permanent",
        ]);
        must(&[
            "ip",
            "-n",
            &public,
            "route",
            "add",
            "default",
            "via",
            "198.18.255.2",
            "dev",
            "sink",
        ]);
        must(&[
            "ip",
            "-n",
            &r1,
            "route",
            "add",
            "default",
            "via",
            "198.18.1.1",
        ]);
        must(&[
            "ip",
            "-n",
            &r2,
            "route",
            "add",
            "default",
            "via",
            "198.18.2.1",
        ]);
        must(&[
            "ip",
            "-n",
            &h1,
            "route",
            "add",
            "default",
            "via",
            "198.19.1.1",
        ]);
        must(&[
            "ip",
            "-n",
            &h2,
            "route",
            "add",
            "default",
            "via",
            "198.19.2.1",
        ]);
        for ns in [&public, &r1, &r2] {
            must(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
        }
        for (ns, nat) in [(&r1, nat1), (&r2, nat2)] {
            let masquerade = match nat {
                Nat::Cone => "masquerade",
                Nat::Symmetric | Nat::UdpBlocked => "masquerade random",
            };
            let block = if nat == Nat::UdpBlocked {
                "iifname \"in\" meta l4proto udp drop;"
            } else {
                ""
            };
            nft(
                ns,
                &format!(
                    "table ip nat {{\n\
                       chain post {{ type nat hook postrouting priority 100; \
                         oifname \"out\" {masquerade}; }}\n\
                     }}\n\
                     table inet filter {{\n\
                       chain input {{ type filter hook input priority 0; \
                         iifname \"out\" ct state new drop; }}\n\
                       chain forward {{ type filter hook forward priority 0; \
                         iifname \"out\" ct state new drop; {block} }}\n\
                     }}\n"
                ),
            );
        }
        topology
    }

    /// Start a server inside `pub`.
    fn serve(&mut self, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("pub")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in pub: {e}"));
        self.servers.push(child);
    }

    /// mosquitto on 198.18.0.1:1883 and coturn (STUN and TURN/UDP) on 198.18.0.1:3478.
    fn start_servers(&mut self, dir: &std::path::Path) {
        let mosquitto_conf = dir.join("mosquitto.conf");
        std::fs::write(
            &mosquitto_conf,
            "listener 1883 198.18.0.1\nallow_anonymous true\npersistence false\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&mosquitto_conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mosquitto = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mosquitto");
        self.serve(&[mosquitto, "-c", mosquitto_conf.to_str().unwrap()]);
        let coturn_conf = dir.join("turnserver.conf");
        std::fs::write(
            &coturn_conf,
            "listening-port=3478\nlistening-ip=198.18.0.1\nrelay-ip=198.18.0.1\n\
             min-port=40000\nmax-port=40099\nlt-cred-mech\nuser=probe:probe-secret\n\
             realm=meta-log.test\nno-tls\nno-dtls\nno-cli\nno-software-attribute\n\
             pidfile=/dev/null\nlog-file=stdout\nsimple-log\n",
        )
        .unwrap();
        self.serve(&["turnserver", "-c", coturn_conf.to_str().unwrap()]);
        // Ready when both answer from a home (through the NAT).
        let deadline = Instant::now() + Duration::from_secs(15);
        while !run_status(&[
            "ip",
            "netns",
            "exec",
            &self.ns("home1"),
            "mosquitto_pub",
            "-h",
            "198.18.0.1",
            "-t",
            "ready",
            "-m",
            "x",
        ]) {
            assert!(Instant::now() < deadline, "mosquitto in pub did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Run the two probes, one in each home; returns (offerer's report, answerer's report).
    fn link(&self, session: &str, ice: &[&str]) -> (Value, Value) {
        let probe = probe_binary();
        let spawn = |home: &str, role: &str| {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &self.ns(home)])
                .arg(&probe)
                .args([role, "198.18.0.1:1883", session])
                .args(ice)
                .env("LINK_PROBE_TIMEOUT_MS", "15000")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().expect("start link_probe")
        };
        let answerer = spawn("home2", "answerer");
        let offerer = spawn("home1", "offerer");
        let report = |child: Child| {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            serde_json::from_str::<Value>(text.lines().last().unwrap_or("")).unwrap_or_else(|_| {
                panic!(
                    "link_probe printed no report: {text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        };
        (report(offerer), report(answerer))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in ["home1", "home2", "nat1", "nat2", "pub"] {
            let _ = run_status(&["ip", "netns", "del", &self.ns(name)]);
        }
    }
}

/// Build the topology, start the servers, link the two homes.
fn scenario(test: &str, tag: &str, nat1: Nat, nat2: Nat, ice: &[&str]) -> Option<(Value, Value)> {
    if let Some(why) = cannot_run(tag) {
        skip(test, &why);
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut topology = Topology::build(tag, nat1, nat2);
    topology.start_servers(dir.path());
    let reports = topology.link(&format!("{}{tag}", std::process::id()), ice);
    drop(topology);
    Some(reports)
}

const STUN: &str = "stun:198.18.0.1:3478";
const TURN: &str = "turn:198.18.0.1:3478?transport=udp,probe,probe-secret";

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
        &[STUN, TURN],
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
        &[STUN, TURN],
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
