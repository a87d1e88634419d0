//! A peer for the NAT namespace tests (`tests/webrtc_nat.rs`) and the aiortc interop test: opens
//! a WebRTC link to one other peer with [`connect`], the signalling carried over a real MQTT
//! broker, then exchanges a few messages over the link.
//!
//! Usage: `link_probe offerer|answerer BROKER_HOST:PORT SESSION [ICE_URL[,USER,PASSWORD]]...`
//!
//! Signals travel as JSON on `meta-log-probe/SESSION/offerer` and `.../answerer` (each side
//! subscribes to its own name): `{"type":"offer"|"answer","sdp":...}`,
//! `{"type":"candidate","candidate":...,"sdpMid":...,"sdpMLineIndex":...}`,
//! `{"type":"end-of-candidates"}`, and `{"type":"hello"}`, repeated until the other side's
//! arrives, so that neither starts before both listen. This is the probe's own plain
//! signalling (no signatures, no encryption): the federation's signed signalling is the link
//! manager's (docs/PROTOCOL.md).
//!
//! Prints one JSON line: `{"ok":true,"path":"srflx","echoed":N,...}` or
//! `{"ok":false,"error":"...","signals_received":N}`, and exits 0 or 2.

use meta_log_federation_module::links::channel::{IceServer, Role, Signal};
use meta_log_federation_module::links::webrtc::{connect_with_options, WebrtcOptions};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Messages the offerer sends and expects back.
const ECHOES: usize = 20;

fn signal_to_json(signal: &Signal) -> Value {
    match signal {
        Signal::Offer(sdp) => json!({"type": "offer", "sdp": sdp}),
        Signal::Answer(sdp) => json!({"type": "answer", "sdp": sdp}),
        Signal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => json!({"type": "candidate", "candidate": candidate, "sdpMid": sdp_mid,
                    "sdpMLineIndex": sdp_mline_index}),
        Signal::EndOfCandidates => json!({"type": "end-of-candidates"}),
    }
}

fn signal_from_json(value: &Value) -> Option<Signal> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    match value.get("type")?.as_str()? {
        "offer" => Some(Signal::Offer(text("sdp")?)),
        "answer" => Some(Signal::Answer(text("sdp")?)),
        "candidate" => Some(Signal::Candidate {
            candidate: text("candidate")?,
            sdp_mid: text("sdpMid"),
            sdp_mline_index: value
                .get("sdpMLineIndex")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok()),
        }),
        "end-of-candidates" => Some(Signal::EndOfCandidates),
        _ => None,
    }
}

fn parse_ice(arg: &str) -> IceServer {
    let mut parts = arg.split(',');
    IceServer {
        urls: vec![parts.next().unwrap_or_default().to_owned()],
        username: parts.next().map(str::to_owned),
        credential: parts.next().map(str::to_owned),
    }
}

fn fail(error: &str, signals: usize) -> ! {
    println!(
        "{}",
        json!({"ok": false, "error": error, "signals_received": signals})
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: link_probe offerer|answerer BROKER_HOST:PORT SESSION [ICE_URL[,USER,PASSWORD]]...");
        std::process::exit(64);
    }
    let role = match args[1].as_str() {
        "offerer" => Role::Offerer,
        "answerer" => Role::Answerer,
        other => {
            eprintln!("link_probe: role must be offerer or answerer, not {other}");
            std::process::exit(64);
        }
    };
    let (host, port) = args[2].rsplit_once(':').expect("BROKER_HOST:PORT");
    let port: u16 = port.parse().expect("a port number");
    let session = args[3].clone();
    let ice: Vec<IceServer> = args[4..].iter().map(|a| parse_ice(a)).collect();
    let timeout: u64 = std::env::var("LINK_PROBE_TIMEOUT_MS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20_000);
    let (mine, theirs) = match role {
        Role::Offerer => ("offerer", "answerer"),
        Role::Answerer => ("answerer", "offerer"),
    };
    let my_topic = format!("meta-log-probe/{session}/{mine}");
    let their_topic = format!("meta-log-probe/{session}/{theirs}");

    let runtime = meta_log_federation_module::runtime::build().expect("tokio runtime");
    runtime.block_on(async move {
        let mut options = MqttOptions::new(format!("probe-{session}-{mine}"), host, port);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client
            .subscribe(&my_topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (signals_in_tx, signals_in) = mpsc::channel::<Signal>(64);
        let (signals_out, mut signals_out_rx) = mpsc::channel::<Signal>(64);
        let received = Arc::new(AtomicUsize::new(0));
        let (peer_ready_tx, mut peer_ready) = tokio::sync::watch::channel(false);

        // MQTT: incoming signals to `connect`, the peer's hello to `peer_ready`.
        let counter = received.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let Ok(value) = serde_json::from_slice::<Value>(&p.payload) else {
                            continue;
                        };
                        let _ = peer_ready_tx.send(true);
                        if let Some(signal) = signal_from_json(&value) {
                            counter.fetch_add(1, Ordering::Relaxed);
                            let _ = signals_in_tx.send(signal).await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        // Hello until the peer's first message arrives (it listens by then).
        let hello_client = client.clone();
        let hello_topic = their_topic.clone();
        let mut ready = peer_ready.clone();
        tokio::spawn(async move {
            for _ in 0..600 {
                let _ = hello_client
                    .publish(
                        &hello_topic,
                        QoS::AtLeastOnce,
                        false,
                        json!({"type": "hello"}).to_string(),
                    )
                    .await;
                if *ready.borrow_and_update() {
                    // One more, in case ours was published before the peer subscribed.
                    let _ = hello_client
                        .publish(
                            &hello_topic,
                            QoS::AtLeastOnce,
                            false,
                            json!({"type": "hello"}).to_string(),
                        )
                        .await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        // Outgoing signals to MQTT.
        let out_client = client.clone();
        let out_topic = their_topic.clone();
        tokio::spawn(async move {
            while let Some(signal) = signals_out_rx.recv().await {
                let _ = out_client
                    .publish(
                        &out_topic,
                        QoS::AtLeastOnce,
                        false,
                        signal_to_json(&signal).to_string(),
                    )
                    .await;
            }
        });

        if tokio::time::timeout(Duration::from_secs(60), peer_ready.wait_for(|r| *r))
            .await
            .is_err()
        {
            fail("the peer never said hello over the broker", 0);
        }
        let start = Instant::now();
        let options = WebrtcOptions {
            relay_only: std::env::var("LINK_PROBE_RELAY_ONLY").is_ok(),
            ..Default::default()
        };
        let channel = connect_with_options(
            role,
            ice,
            signals_in,
            signals_out,
            Duration::from_millis(timeout),
            options,
        )
        .await;
        let setup_ms = start.elapsed().as_millis() as u64;
        let mut channel = match channel {
            Ok(channel) => channel,
            Err(e) => fail(&e.to_string(), received.load(Ordering::Relaxed)),
        };
        let mut echoed = 0;
        let mut rtts = Vec::new();
        for i in 0..ECHOES {
            match role {
                Role::Offerer => {
                    let message = format!("probe message {i}").into_bytes();
                    let sent = Instant::now();
                    if channel.tx.send(message.clone()).await.is_err() {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), channel.rx.recv()).await {
                        Ok(Some(reply)) if reply == message => {
                            echoed += 1;
                            rtts.push(sent.elapsed().as_micros() as u64);
                        }
                        _ => break,
                    }
                }
                Role::Answerer => {
                    match tokio::time::timeout(Duration::from_secs(10), channel.rx.recv()).await {
                        Ok(Some(message)) => {
                            if channel.tx.send(message).await.is_err() {
                                break;
                            }
                            echoed += 1;
                        }
                        _ => break,
                    }
                }
            }
        }
        rtts.sort_unstable();
        println!(
            "{}",
            json!({"ok": echoed == ECHOES, "path": channel.path.as_str(), "echoed": echoed,
                   "setup_ms": setup_ms, "median_rtt_us": rtts.get(rtts.len() / 2),
                   "local_fingerprint": channel.local_fingerprint,
                   "remote_fingerprint": channel.remote_fingerprint,
                   "signals_received": received.load(Ordering::Relaxed)})
        );
        // Let the last echo leave before the link closes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::process::exit(if echoed == ECHOES { 0 } else { 2 });
    });
}
