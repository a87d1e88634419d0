//! meta-log-broker: a small MQTT 3.1.1 broker on loopback for the Emacsen of one machine.
//!
//! The first Emacs that wants a broker runs this program with `--state-file`; the broker
//! takes an exclusive lock beside that file, listens, and writes the file (pid, port, URL)
//! once clients can connect. Later Emacsen read the file and connect to the same broker; a
//! second broker started with the same state file finds the first and exits at once.
//!
//! rumqttd is embedded with its configuration built here. Its traps (see
//! shared/NOTES-native-bridge.md) shape the code: `Broker::start` blocks forever and has no
//! stop API, so stopping is `process::exit`; a failed bind only logs and returns, so
//! readiness is proven by an MQTT handshake on the port, not by `start`'s result.
//!
//! With `--detach` the command itself exits as soon as the broker listens, and the broker
//! goes on in a session of its own (see detach.rs): that is how Emacs starts it.
//!
//! Exit status: 0 after a clean stop (SIGTERM, SIGINT, `--idle-exit`), when another broker
//! already owns the state file (its URL is printed), or when `--detach` saw the broker
//! listen; 1 on a usage error; 2 when the broker cannot start or stops unexpectedly; 3 when
//! another broker holds the lock but does not become ready in time.

mod args;
mod detach;
mod idle;
mod probe;
mod state;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use args::Options;
use state::{LockOutcome, StateFile};

/// Exit status when the broker cannot start or dies.
const EXIT_FAILED: i32 = 2;
/// Exit status when another broker holds the lock but never becomes ready.
const EXIT_OTHER_NOT_READY: i32 = 3;

/// How long to wait for our own listener, and for another broker that holds the lock.
/// Shorter than the 10 s Emacs waits, so that Emacs hears why a start failed.
const READY_TIMEOUT: Duration = Duration::from_secs(8);

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Prints a diagnostic line on stderr under `--verbose`.
macro_rules! vlog {
    ($($arg:tt)*) => {
        if VERBOSE.load(Ordering::Relaxed) {
            eprintln!("meta-log-broker: {}", format_args!($($arg)*));
        }
    };
}

fn main() {
    // Before any thread exists, so that every thread inherits the mask and only the
    // signal thread ever receives SIGTERM and SIGINT.
    let signals = block_stop_signals();

    let options = match args::parse(std::env::args().skip(1)) {
        Ok(args::Command::Run(options)) => options,
        Ok(args::Command::Help) => {
            print!("{}", args::USAGE);
            return;
        }
        Ok(args::Command::Version) => {
            println!("meta-log-broker {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(message) => {
            eprintln!("meta-log-broker: {message}\n\n{}", args::USAGE);
            process::exit(1);
        }
    };
    VERBOSE.store(options.verbose, Ordering::Relaxed);
    if options.detach {
        // Still one thread: the parent waits here for the ready line and exits.
        if let Err(e) = detach::start() {
            fail(EXIT_FAILED, &format!("cannot detach: {e}"));
        }
    }
    if options.verbose {
        init_tracing();
    }

    // The rendezvous: with a state file, only the holder of its lock runs a broker.
    let state = match &options.state_file {
        None => None,
        Some(path) => match StateFile::lock(path, READY_TIMEOUT) {
            Ok(LockOutcome::Acquired(state)) => Some(state),
            Ok(LockOutcome::OtherRunning(info)) => {
                say(&format!(
                    "meta-log-broker already running on {} (pid {})",
                    info.url, info.pid
                ));
                return;
            }
            Ok(LockOutcome::OtherNotReady) => fail(
                EXIT_OTHER_NOT_READY,
                &format!(
                    "another meta-log-broker holds {}.lock but did not become ready within {} s",
                    path.display(),
                    READY_TIMEOUT.as_secs()
                ),
            ),
            Err(e) => fail(
                EXIT_FAILED,
                &format!("cannot use state file {}: {e}", path.display()),
            ),
        },
    };
    let state: &'static Option<StateFile> = Box::leak(Box::new(state));

    spawn_signal_thread(signals, state);

    let (addr, server) = match start_broker(&options) {
        Ok(started) => started,
        Err(message) => fail(EXIT_FAILED, &message),
    };
    let url = client_url(addr);

    if let Some(state) = state {
        if let Err(e) = state.publish(process::id(), addr.port(), &url) {
            fail(
                EXIT_FAILED,
                &format!("cannot write state file {}: {e}", state.path().display()),
            );
        }
    }
    say(&format!("meta-log-broker listening on {url}"));
    if options.detach {
        detach::finish(options.log_file.as_deref());
    }
    vlog!(
        "pid {}, idle exit {}",
        process::id(),
        match options.idle_exit {
            0 => "never".to_string(),
            s => format!("after {s} s without clients"),
        }
    );

    supervise(&options, addr.port(), &server, state);
}

/// Prints one line on stdout and flushes it. A closed stdout (the Emacs that started us
/// has gone) is not an error: the broker keeps serving.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints MESSAGE on stderr and exits with STATUS; always shown, with or without --verbose.
fn fail(status: i32, message: &str) -> ! {
    eprintln!("meta-log-broker: {message}");
    process::exit(status)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// The URL clients of this machine use: an unspecified bind address is reached on loopback.
fn client_url(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("mqtt://127.0.0.1:{}", addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("mqtt://[::1]:{}", addr.port()),
        IpAddr::V4(ip) => format!("mqtt://{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("mqtt://[{ip}]:{}", addr.port()),
    }
}

/// The address to probe for readiness: loopback when bound to every interface.
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The rumqttd configuration: one MQTT 3.1.1 listener on ADDR, no TLS, no metrics.
fn config(addr: SocketAddr) -> rumqttd::Config {
    use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
    use std::collections::HashMap;

    let connections = ConnectionSettings {
        // Time a client has to send CONNECT after the TCP connection is accepted.
        connection_timeout_ms: 10_000,
        // The sample configuration allows 20 KB; CanvasL changes and catch-ups are larger.
        // The limit applies to the whole packet, so leave room for the topic.
        max_payload_size: 2 * 1024 * 1024,
        // Packets read from one connection before they are handed to the router.
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4".to_string(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = RouterConfig {
        max_connections: 10_000,
        // Upper bound on the messages, retained ones included, that one read hands to a
        // QoS 0 subscription. The default (200) silently drops the retained messages of a
        // wildcard beyond it; a federation keeps one retained presence message per peer.
        // (QoS 1 subscriptions stay capped at 100 by rumqttd's fixed in-flight window, which
        // is why presence is subscribed at QoS 0.)
        max_outgoing_packet_count: 100_000,
        // Small in-memory logs: every topic filter has its own, and memory grows with them.
        // A segment may overshoot by one packet, so a 2 MiB publish still fits.
        max_segment_size: 1024 * 1024,
        max_segment_count: 3,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let mut v4 = HashMap::new();
    v4.insert("v4".to_string(), server);
    Config {
        id: 0,
        router,
        v4: Some(v4),
        ..Default::default()
    }
}

/// Starts rumqttd on the configured address and returns once it answers an MQTT CONNECT.
/// Port 0 picks a free port; rumqttd never tells which port it bound, so we choose it.
fn start_broker(options: &Options) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let attempts = if options.port == 0 { 5 } else { 1 };
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        // Binding first tells a port in use apart from a slow start: rumqttd reports a
        // failed bind only in its log and returns as if all was well.
        let addr = match TcpListener::bind(SocketAddr::new(options.bind, options.port)) {
            Ok(listener) => match listener.local_addr() {
                Ok(addr) => addr,
                Err(e) => return Err(format!("cannot read the bound address: {e}")),
            },
            Err(e) => {
                return Err(format!(
                    "cannot listen on {}: {e}",
                    SocketAddr::new(options.bind, options.port)
                ))
            }
        };
        // The probe listener is closed here; rumqttd binds the same address next.
        vlog!("starting rumqttd on {addr} (attempt {attempt})");
        let mut broker = rumqttd::Broker::new(config(addr));
        let server = thread::Builder::new()
            .name("rumqttd".to_string())
            .spawn(move || {
                // Returns only when every listener has failed (e.g. the port was taken).
                let _ = broker.start();
            })
            .map_err(|e| format!("cannot start the broker thread: {e}"))?;

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if server.is_finished() {
                last_error = format!("rumqttd could not listen on {addr} (port taken?)");
                break;
            }
            match probe::mqtt_connect(probe_addr(addr), Duration::from_millis(500)) {
                // Still ours? A listener that died just now would have ended the thread.
                Ok(()) if !server.is_finished() => return Ok((addr, server)),
                Ok(()) => {}
                Err(e) => vlog!("not ready yet: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "rumqttd did not accept MQTT connections on {addr} within {} s",
                    READY_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        // The failed broker's router thread stays behind, idle: rumqttd cannot be stopped.
    }
    Err(last_error)
}

/// Watches the broker until it must stop: its listener died, or no client for `--idle-exit`.
fn supervise(
    options: &Options,
    port: u16,
    server: &JoinHandle<()>,
    state: &'static Option<StateFile>,
) -> ! {
    let idle_limit = Duration::from_secs(options.idle_exit);
    let tick = if options.idle_exit == 0 {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(250).min(idle_limit / 2)
    };
    let mut counter = if options.idle_exit > 0 {
        match idle::ConnectionCounter::new(port) {
            Ok(counter) => Some(counter),
            Err(e) => {
                eprintln!("meta-log-broker: --idle-exit disabled: cannot count connections: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut last_client = Instant::now();
    loop {
        thread::sleep(tick);
        if server.is_finished() {
            stop(state, EXIT_FAILED, Some("rumqttd stopped unexpectedly"));
        }
        if let Some(c) = counter.as_mut() {
            match c.established() {
                Ok(0) => {
                    if last_client.elapsed() >= idle_limit {
                        vlog!("no client for {} s: exiting", options.idle_exit);
                        stop(state, 0, None);
                    }
                }
                Ok(_) => last_client = Instant::now(),
                Err(e) => {
                    eprintln!("meta-log-broker: --idle-exit disabled: {e}");
                    counter = None;
                }
            }
        }
    }
}

/// Removes the state file (if it is ours) and exits: rumqttd has no stop API.
fn stop(state: &Option<StateFile>, status: i32, message: Option<&str>) -> ! {
    if let Some(state) = state {
        state.remove();
    }
    if let Some(message) = message {
        eprintln!("meta-log-broker: {message}");
    }
    process::exit(status)
}

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in this (the only) thread, and ignores SIGHUP: the broker is
/// meant to outlive the terminal or Emacs that started it (`--idle-exit` ends it instead).
fn block_stop_signals() -> libc::sigset_t {
    let set = stop_signal_set();
    // SAFETY: called at the start of main, before any other thread exists.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    set
}

/// One thread waits for SIGTERM or SIGINT, then removes the state file and exits 0.
fn spawn_signal_thread(set: libc::sigset_t, state: &'static Option<StateFile>) {
    let spawned = thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: SET holds signals blocked in every thread; sigwait writes SIGNAL.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                vlog!("signal {signal}: exiting");
                stop(state, 0, None);
            }
        });
    if let Err(e) = spawned {
        fail(EXIT_FAILED, &format!("cannot start the signal thread: {e}"));
    }
}
