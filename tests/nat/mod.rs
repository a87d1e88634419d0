//! The NAT test topology, shared by the tests that run peers behind simulated home routers
//! (`tests/webrtc_nat.rs` with the Rust probe, `tests/nat_emacs.rs` with batch Emacs peers).
//! It needs root and `ip netns`; otherwise a test prints SKIPPED, records itself in
//! `$CARGO_TARGET_DIR/skipped-tests` ([`skip`]), and returns.
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
//! tuple and hole punching fails where it works on the internet. A router may forward one TCP
//! port to its home ([`Topology::forward_tcp`]), as a person does for the TCP fallback.
//!
//! Everything (namespaces, servers, peers) is removed when the [`Topology`] is dropped, also
//! when a test fails: its panic unwinds through the drop.

// Each test file uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The "public" server's address: mosquitto on port 1883, coturn (STUN and TURN) on 3478.
pub const PUB_ADDR: &str = "198.18.0.1";
/// The STUN server, as an ICE URL.
pub const STUN: &str = "stun:198.18.0.1:3478";
/// The TURN server over UDP, as an ICE URL; its user and password are [`TURN_USER`] and
/// [`TURN_PASSWORD`].
pub const TURN_URL: &str = "turn:198.18.0.1:3478?transport=udp";
/// coturn's long-term user.
pub const TURN_USER: &str = "probe";
/// coturn's long-term password.
pub const TURN_PASSWORD: &str = "probe-secret";

/// The public (outside) address of router `n` (1 or 2).
pub fn router_public_addr(n: u8) -> String {
    format!("198.18.{n}.2")
}

/// The address of the host in home `n` (1 or 2).
pub fn home_addr(n: u8) -> String {
    format!("198.19.{n}.2")
}

/// How a router translates and filters.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Nat {
    /// Endpoint-independent mapping (`masquerade`).
    Cone,
    /// A new mapping per destination (`masquerade random`).
    Symmetric,
    /// Symmetric, and no UDP at all leaves the home (a network that lets only TCP out).
    UdpBlocked,
}

/// Why the NAT tests cannot run here, if they cannot.
pub fn cannot_run(tag: &str) -> Option<String> {
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

/// Say a test of `suite` (the test file) was skipped, and leave a line for `make test`'s
/// summary.
pub fn skip(suite: &str, test: &str, why: &str) {
    println!("SKIPPED {test}: {why}");
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let _ = std::fs::create_dir_all(&dir);
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skipped-tests"))
    {
        let _ = writeln!(f, "{suite}::{test}: {why}");
    }
}

/// Run `args` and return what it printed (panics if it cannot start).
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Run `args` quietly; true if it succeeded.
pub fn run_status(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run `args`, failing the test with its error output if it fails.
pub fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nft -f -` inside a namespace.
pub fn nft(ns: &str, rules: &str) {
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
pub struct Topology {
    prefix: String,
    /// Every process started inside the namespaces (servers, peers), killed when dropped.
    children: Vec<Child>,
}

impl Topology {
    /// The full name of namespace `name` (pub, nat1, nat2, home1, home2).
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Build the five namespaces, their links, routes and NAT rules; `tag` keeps the names
    /// of concurrent tests apart.
    pub fn build(tag: &str, nat1: Nat, nat2: Nat) -> Topology {
        let topology = Topology {
            prefix: format!("mlf{}{tag}", std::process::id()),
            children: vec![],
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
    pub fn serve(&mut self, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("pub")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in pub: {e}"));
        self.children.push(child);
    }

    /// mosquitto on 198.18.0.1:1883 and coturn (STUN and TURN/UDP) on 198.18.0.1:3478.
    pub fn start_servers(&mut self, dir: &std::path::Path) {
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
            format!(
                "listening-port=3478\nlistening-ip=198.18.0.1\nrelay-ip=198.18.0.1\n\
             min-port=40000\nmax-port=40099\nlt-cred-mech\nuser={TURN_USER}:{TURN_PASSWORD}\n\
             realm=meta-log.test\nno-tls\nno-dtls\nno-cli\nno-software-attribute\n\
             pidfile=/dev/null\nlog-file=stdout\nsimple-log\n"
            ),
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
            PUB_ADDR,
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

    /// Forward TCP `port` arriving at router `n`'s public address to `to_port` in home `n`,
    /// as a person does on a home router for a listener inside.
    pub fn forward_tcp(&self, n: u8, port: u16, to_port: u16) {
        let home = home_addr(n);
        nft(
            &self.ns(&format!("nat{n}")),
            &format!(
                "table ip nat {{\n\
                   chain pre {{ type nat hook prerouting priority -100; \
                     iifname \"out\" tcp dport {port} dnat to {home}:{to_port}; }}\n\
                 }}\n\
                 insert rule inet filter forward iifname \"out\" ct status dnat accept\n"
            ),
        );
    }

    /// Start `command` (a program and its arguments) inside namespace `ns` with `env` added;
    /// it is killed when the topology is dropped. Its standard output is piped (the caller
    /// takes it from the returned child's index with [`Topology::take_stdout`]), its error
    /// output goes to `log`.
    pub fn spawn(
        &mut self,
        ns: &str,
        command: &[String],
        env: &[(&str, String)],
        cwd: &std::path::Path,
        log: &std::path::Path,
    ) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(command)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?} in {ns}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    /// The piped standard output of the process [`Topology::spawn`] returned `index` for.
    pub fn take_stdout(&mut self, index: usize) -> std::process::ChildStdout {
        self.children[index]
            .stdout
            .take()
            .expect("stdout taken twice")
    }

    /// Kill the process [`Topology::spawn`] returned `index` for (e.g. a peer whose work is
    /// done), and wait for it.
    pub fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in ["home1", "home2", "nat1", "nat2", "pub"] {
            let _ = run_status(&["ip", "netns", "del", &self.ns(name)]);
        }
    }
}
