//! MQTT over WebSockets (`ws://`) and WebSockets over TLS (`wss://`) against mosquitto's
//! websockets listeners: messages cross between a WebSocket client and a plain MQTT client
//! through one broker, `wss://` trusts the CA it is given and no other.

mod common;

use common::{collect_messages, leak_bus, wait_event};
use meta_log_federation_module::events::{Event, EventBus};
use meta_log_federation_module::transport::client::Client;
use meta_log_federation_module::transport::options::ConnectOptions;
use meta_log_federation_module::transport::url;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn mosquitto() -> String {
    for p in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

/// A mosquitto with a plain MQTT listener and a websockets listener (with TLS when `tls` names
/// a certificate and key), stopped when dropped.
struct WsBroker {
    mqtt_port: u16,
    ws_port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl WsBroker {
    fn start(tls: Option<(&Path, &Path)>) -> WsBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mqtt_port, ws_port) = (free_port(), free_port());
        let conf = dir.path().join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).expect("conf");
        write!(
            f,
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             listener {mqtt_port} 127.0.0.1\n\
             listener {ws_port} 127.0.0.1\nprotocol websockets\n"
        )
        .expect("write conf");
        if let Some((cert, key)) = tls {
            writeln!(f, "certfile {}\nkeyfile {}", cert.display(), key.display())
                .expect("write conf");
        }
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed: apt-get install mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [mqtt_port, ws_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "mosquitto did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        WsBroker {
            mqtt_port,
            ws_port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for WsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, made with openssl in `dir`;
/// returns (CA file, certificate, key).
#[cfg(feature = "tls")]
fn certificates(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is not installed: apt-get install openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.crt");
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=meta-log ws test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ]);
    use std::os::unix::fs::PermissionsExt;
    for f in [&crt, &key, &ca] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    (dir.join(ca), dir.join(crt), dir.join(key))
}

fn runtime() -> tokio::runtime::Runtime {
    meta_log_federation_module::runtime::build().unwrap()
}

fn client(
    url: &str,
    id: &str,
    rt: &tokio::runtime::Runtime,
    ca: Option<&Path>,
) -> (Client, &'static EventBus) {
    let bus = leak_bus();
    let mut opts = ConnectOptions::new(url::parse(url).unwrap(), id);
    opts.max_backoff = Duration::from_millis(300);
    opts.ca_file = ca.map(Path::to_path_buf);
    let (client, manager) = Client::new(opts, bus);
    rt.spawn(manager);
    (client, bus)
}

/// Subscribes `sub` to `topic` and publishes from `publisher` until a message arrives (the
/// subscription is then active), then checks that 20 numbered messages all arrive, in order.
fn messages_cross(sub: &Client, sub_bus: &EventBus, publisher: &Client, topic: &str) {
    sub.subscribe(topic, 1).unwrap();
    let mut active = false;
    for _ in 0..50 {
        publisher
            .publish(topic, b"probe".to_vec(), 1, false)
            .unwrap();
        if !collect_messages(sub_bus, 1, 1).is_empty() {
            active = true;
            break;
        }
    }
    assert!(active, "the subscription to {topic} never became active");
    std::thread::sleep(Duration::from_millis(100));
    sub_bus.drain(usize::MAX);
    for i in 0..20 {
        publisher
            .publish(topic, format!("m{i}").into_bytes(), 1, false)
            .unwrap();
    }
    let got: Vec<Vec<u8>> = collect_messages(sub_bus, 20, 20)
        .into_iter()
        .map(|(_, p, _)| p)
        .filter(|p| p != b"probe")
        .collect();
    let want: Vec<Vec<u8>> = (0..20).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(got, want);
}

#[test]
fn ws_clients_talk_with_plain_mqtt_clients_through_one_broker() {
    let broker = WsBroker::start(None);
    let rt = runtime();
    let ws_url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
    let (ws, ws_bus) = client(&ws_url, "ws-client", &rt, None);
    let (tcp, tcp_bus) = client(
        &format!("mqtt://127.0.0.1:{}", broker.mqtt_port),
        "tcp-client",
        &rt,
        None,
    );
    wait_event(ws_bus, 10, |e| matches!(e, Event::Connected { .. }));
    wait_event(tcp_bus, 10, |e| matches!(e, Event::Connected { .. }));
    messages_cross(&ws, ws_bus, &tcp, "ws/in");
    messages_cross(&tcp, tcp_bus, &ws, "ws/out");
}

#[test]
fn a_ws_url_on_a_plain_mqtt_port_never_connects() {
    // The WebSocket upgrade fails against a listener that speaks MQTT only: the client says
    // so and stays disconnected (it never mistakes the port for a working connection).
    let broker = WsBroker::start(None);
    let rt = runtime();
    let (c, bus) = client(
        &format!("ws://127.0.0.1:{}/", broker.mqtt_port),
        "ws-wrong-port",
        &rt,
        None,
    );
    wait_event(
        bus,
        10,
        |e| matches!(e, Event::Error { context, .. } if context == "connect"),
    );
    assert!(!c.is_connected());
    assert!(!bus
        .drain(usize::MAX)
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
}

#[cfg(feature = "tls")]
#[test]
fn wss_trusts_the_ca_it_is_given_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, crt, key) = certificates(dir.path(), "server");
    let (other_ca, _, _) = certificates(dir.path(), "other");
    let broker = WsBroker::start(Some((&crt, &key)));
    let rt = runtime();
    let wss_url = format!("wss://127.0.0.1:{}/mqtt", broker.ws_port);

    let (wss, wss_bus) = client(&wss_url, "wss-client", &rt, Some(&ca));
    let (tcp, tcp_bus) = client(
        &format!("mqtt://127.0.0.1:{}", broker.mqtt_port),
        "tcp-client-2",
        &rt,
        None,
    );
    wait_event(wss_bus, 10, |e| matches!(e, Event::Connected { .. }));
    wait_event(tcp_bus, 10, |e| matches!(e, Event::Connected { .. }));
    messages_cross(&wss, wss_bus, &tcp, "wss/in");
    messages_cross(&tcp, tcp_bus, &wss, "wss/out");

    // A server certificate from another CA is refused: no connection.
    let (bad, bad_bus) = client(&wss_url, "wss-wrong-ca", &rt, Some(&other_ca));
    let mut why = String::new();
    wait_event(bad_bus, 10, |e| match e {
        Event::Error { context, message } if context == "connect" => {
            why = message.clone();
            true
        }
        _ => false,
    });
    assert!(why.contains("certificate"), "{why}");
    assert!(!bad.is_connected());
    assert!(!bad_bus
        .drain(usize::MAX)
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
}
