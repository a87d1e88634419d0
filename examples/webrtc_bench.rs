//! `make bench` figures for direct links (WebRTC data channels): setup time and round trip on
//! loopback and through a real coturn (relay only), and messages per second over a link.
//! Printed, not asserted; each target is followed by "met" or "MISSED".

#[path = "../tests/webrtc_support/mod.rs"]
mod webrtc_support;

use meta_log_federation_module::links::channel::{Channel, IceServer};
use meta_log_federation_module::links::webrtc::WebrtcOptions;
use std::time::{Duration, Instant};
use webrtc_support::{link_pair, loopback_options, relay_options, Coturn};

const SETUP: Duration = Duration::from_secs(30);

/// Open a link, timing the setup (both sides open).
async fn open(ice: Vec<IceServer>, options: WebrtcOptions) -> (Channel, Channel, Duration) {
    let start = Instant::now();
    let (a, b) = link_pair(ice, options, SETUP).await;
    let took = start.elapsed();
    (a.expect("offerer opens"), b.expect("answerer opens"), took)
}

/// Median round trip of a 1 KiB message echoed by the other side.
async fn round_trip(a: &mut Channel, b: &mut Channel, rounds: usize) -> Duration {
    let message = vec![7u8; 1024];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        a.tx.send(message.clone()).await.unwrap();
        let got = b.rx.recv().await.unwrap();
        b.tx.send(got).await.unwrap();
        a.rx.recv().await.unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    times[rounds / 2]
}

/// Messages of `size` bytes per second, one way, counted when received.
async fn throughput(a: &mut Channel, b: &mut Channel, count: usize, size: usize) -> f64 {
    let message = vec![1u8; size];
    let start = Instant::now();
    let tx = a.tx.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            tx.send(message.clone()).await.unwrap();
        }
    });
    for _ in 0..count {
        b.rx.recv().await.unwrap();
    }
    sender.await.unwrap();
    count as f64 / start.elapsed().as_secs_f64()
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn main() {
    let runtime = meta_log_federation_module::runtime::build().unwrap();
    runtime.block_on(async {
        let (mut a, mut b, setup) = open(vec![], loopback_options()).await;
        println!(
            "link setup, loopback (host path, {}): {:.0} ms",
            a.path.as_str(),
            setup.as_secs_f64() * 1e3
        );
        let rtt = round_trip(&mut a, &mut b, 200).await;
        println!(
            "round trip, 1 KiB, direct link: {:.0} µs (median of 200)",
            rtt.as_secs_f64() * 1e6
        );
        let rate = throughput(&mut a, &mut b, 20_000, 1024).await;
        println!("messages/s over a direct link, 1 KiB, one way: {rate:.0}");

        let turn = Coturn::start_loopback();
        let (mut a, mut b, setup) = open(vec![turn.ice_server()], relay_options()).await;
        println!(
            "link setup through coturn (relay only, {}): {:.0} ms",
            a.path.as_str(),
            setup.as_secs_f64() * 1e3
        );
        let rtt = round_trip(&mut a, &mut b, 100).await;
        println!(
            "round trip, 1 KiB, through coturn on loopback: {:.2} ms (median of 100; target < 5 ms: {})",
            rtt.as_secs_f64() * 1e3,
            verdict(rtt < Duration::from_millis(5))
        );
        let rate = throughput(&mut a, &mut b, 2_000, 1024).await;
        println!("messages/s through coturn, 1 KiB, one way: {rate:.0}");
    });
}
