//! A private mosquitto on a free port of 127.0.0.1, stopped when dropped.

#![allow(dead_code)]

use meta_log_federation_module::events::{Event, EventBus};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    conf: tempfile::NamedTempFile,
}

fn mosquitto() -> String {
    for p in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

impl Broker {
    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut conf = tempfile::NamedTempFile::new().expect("temp file");
        write!(
            conf,
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        .expect("write conf");
        let mut b = Broker {
            port,
            child: None,
            conf,
        };
        b.restart();
        b
    }

    /// Starts mosquitto again on the same port (after `kill`).
    pub fn restart(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.conf.path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod conf");
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(self.conf.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed: apt-get install mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Drains `bus` until `want` returns true for an event, or panics after `secs`.
pub fn wait_event(bus: &EventBus, secs: u64, mut want: impl FnMut(&Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if bus.drain(usize::MAX).iter().any(&mut want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("timed out waiting for an event");
}

/// Collects message payloads from `bus` until `n` arrived or `secs` passed.
pub fn collect_messages(bus: &EventBus, n: usize, secs: u64) -> Vec<(String, Vec<u8>, Vec<u64>)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        for ev in bus.drain(usize::MAX) {
            if let Event::Message {
                topic,
                payload,
                filters,
                ..
            } = ev
            {
                got.push((topic, payload, filters));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

pub fn leak_bus() -> &'static EventBus {
    Box::leak(Box::new(EventBus::new()))
}
