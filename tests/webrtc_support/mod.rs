//! Helpers for the WebRTC link tests and the link benchmark: a real coturn on a free port, and
//! two `connect` calls joined by in-memory signalling.

#![allow(dead_code)]

use meta_log_federation_module::links::channel::{Channel, IceServer, LinkError, Role, Signal};
use meta_log_federation_module::links::webrtc::{connect_with_options, WebrtcOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The static TURN user every test coturn knows.
pub const TURN_USER: &str = "meta-log-test";
/// Its password.
pub const TURN_PASSWORD: &str = "relay-only-on-loopback";

/// A coturn on `ip` (UDP, long-term credentials, one static user), stopped when dropped.
pub struct Coturn {
    pub port: u16,
    pub ip: Ipv4Addr,
    child: Child,
    _conf: tempfile::NamedTempFile,
}

/// A free UDP port on `ip` (free when asked: the server binds it right after).
pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

impl Coturn {
    /// Start coturn listening and relaying on `ip`; `extra` adds configuration lines.
    /// `launcher` prefixes the command (e.g. `ip netns exec pub`).
    pub fn start(ip: Ipv4Addr, launcher: &[&str], extra: &str) -> Coturn {
        let port = free_udp_port(Ipv4Addr::LOCALHOST);
        // A small relay port range of its own, away from the listening port.
        let min_port = 20000 + (port % 2000) * 20;
        let mut conf = tempfile::NamedTempFile::new().expect("temp file");
        write!(
            conf,
            "listening-port={port}\nlistening-ip={ip}\nrelay-ip={ip}\n\
             min-port={min_port}\nmax-port={}\n\
             lt-cred-mech\nuser={TURN_USER}:{TURN_PASSWORD}\nrealm=meta-log.test\n\
             no-tls\nno-dtls\nno-cli\nallow-loopback-peers\nno-software-attribute\n\
             pidfile=/dev/null\nlog-file=stdout\nsimple-log\n{extra}\n",
            min_port + 19
        )
        .expect("write coturn conf");
        let (program, args) = match launcher.split_first() {
            Some((first, rest)) => (first.to_string(), rest.to_vec()),
            None => ("turnserver".to_string(), vec![]),
        };
        let mut command = Command::new(program);
        command.args(args);
        if !launcher.is_empty() {
            command.arg("turnserver");
        }
        let child = command
            .arg("-c")
            .arg(conf.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coturn is not installed: apt-get install coturn");
        let server = Coturn {
            port,
            ip,
            child,
            _conf: conf,
        };
        if launcher.is_empty() {
            server.wait_ready();
        }
        server
    }

    /// Start coturn on 127.0.0.1.
    pub fn start_loopback() -> Coturn {
        Coturn::start(Ipv4Addr::LOCALHOST, &[], "")
    }

    /// Wait until it answers a STUN binding request.
    pub fn wait_ready(&self) {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // A STUN Binding request (RFC 5389): type 1, length 0, magic cookie, transaction id.
        let mut request = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"meta-log-rdy");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        loop {
            let _ = socket.send_to(&request, SocketAddr::from((self.ip, self.port)));
            if socket.recv_from(&mut buf).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "coturn did not start");
        }
    }

    /// The TURN server as an ICE server with the static user's credentials.
    pub fn ice_server(&self) -> IceServer {
        IceServer {
            urls: vec![format!("turn:{}:{}?transport=udp", self.ip, self.port)],
            username: Some(TURN_USER.into()),
            credential: Some(TURN_PASSWORD.into()),
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for two peers on this machine: loopback host candidates, nothing else.
pub fn loopback_options() -> WebrtcOptions {
    WebrtcOptions {
        relay_only: false,
        udp_addrs: vec!["127.0.0.1:0".into()],
        include_loopback: true,
    }
}

/// Options for relay-only peers.
pub fn relay_options() -> WebrtcOptions {
    WebrtcOptions {
        relay_only: true,
        udp_addrs: vec!["127.0.0.1:0".into()],
        include_loopback: true,
    }
}

/// Carry signals from one peer to the other, through `edit` (which may tamper with them).
fn relay_signals(
    mut from: mpsc::Receiver<Signal>,
    to: mpsc::Sender<Signal>,
    edit: fn(Signal) -> Signal,
) {
    tokio::spawn(async move {
        while let Some(signal) = from.recv().await {
            if to.send(edit(signal)).await.is_err() {
                break;
            }
        }
    });
}

/// Open a link between two `connect` calls in this runtime, the offerer's signals passed
/// through `edit_offerer`. Returns (offerer's result, answerer's result).
pub async fn link_pair_with(
    ice: Vec<IceServer>,
    offerer: WebrtcOptions,
    answerer: WebrtcOptions,
    timeout: Duration,
    edit_offerer: fn(Signal) -> Signal,
) -> (Result<Channel, LinkError>, Result<Channel, LinkError>) {
    let (a_out, a_out_rx) = mpsc::channel(64);
    let (b_out, b_out_rx) = mpsc::channel(64);
    let (a_in_tx, a_in) = mpsc::channel(64);
    let (b_in_tx, b_in) = mpsc::channel(64);
    relay_signals(a_out_rx, b_in_tx, edit_offerer);
    relay_signals(b_out_rx, a_in_tx, |s| s);
    let a = connect_with_options(Role::Offerer, ice.clone(), a_in, a_out, timeout, offerer);
    let b = connect_with_options(Role::Answerer, ice, b_in, b_out, timeout, answerer);
    tokio::join!(a, b)
}

/// [`link_pair_with`] with both peers alike and nothing tampered with.
pub async fn link_pair(
    ice: Vec<IceServer>,
    options: WebrtcOptions,
    timeout: Duration,
) -> (Result<Channel, LinkError>, Result<Channel, LinkError>) {
    link_pair_with(ice, options.clone(), options, timeout, |s| s).await
}
