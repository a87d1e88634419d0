//! The WebRTC transport on this machine: a direct (host) link, a link relayed through a real
//! coturn, and a peer whose certificate is not the one its SDP names.

#![cfg(feature = "webrtc")]

mod webrtc_support;

use meta_log_federation_module::links::channel::{LinkError, LinkPath, Signal};
use meta_log_federation_module::links::webrtc::WebrtcOptions;
use std::time::Duration;
use webrtc_support::{link_pair, link_pair_with, loopback_options, relay_options, Coturn};

const SETUP: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    meta_log_federation_module::runtime::build().unwrap()
}

/// Send `message` one way and wait for it on the other side.
async fn carry(
    from: &meta_log_federation_module::links::channel::Channel,
    to: &mut meta_log_federation_module::links::channel::Channel,
    message: Vec<u8>,
) {
    from.tx.send(message.clone()).await.expect("link open");
    let got = tokio::time::timeout(Duration::from_secs(10), to.rx.recv())
        .await
        .expect("message arrives")
        .expect("link still open");
    assert_eq!(got, message);
}

#[test]
fn a_direct_link_on_loopback_carries_messages_both_ways_in_order() {
    runtime().block_on(async {
        let (a, b) = link_pair(vec![], loopback_options(), SETUP).await;
        let (mut a, mut b) = (a.expect("offerer opens"), b.expect("answerer opens"));
        assert_eq!(a.path, LinkPath::Host);
        assert_eq!(b.path, LinkPath::Host);
        // Each side saw the certificate the other side's SDP named.
        assert_eq!(a.remote_fingerprint, b.local_fingerprint);
        assert_eq!(b.remote_fingerprint, a.local_fingerprint);
        assert!(a.local_fingerprint.starts_with("sha-256 "));
        assert_ne!(a.local_fingerprint, b.local_fingerprint);
        carry(&a, &mut b, b"hello from the offerer".to_vec()).await;
        carry(&b, &mut a, b"hello from the answerer".to_vec()).await;
        // Ordered: 200 messages arrive in the order sent.
        for i in 0..200u32 {
            a.tx.send(i.to_be_bytes().to_vec()).await.unwrap();
        }
        for i in 0..200u32 {
            let got = tokio::time::timeout(Duration::from_secs(10), b.rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, i.to_be_bytes().to_vec());
        }
        // A signed event can be tens of KiB: one message stays one message.
        let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        carry(&a, &mut b, big).await;
        // Dropping one side closes the other's receiving half.
        drop(a);
        let end = tokio::time::timeout(Duration::from_secs(20), b.rx.recv()).await;
        assert_eq!(end.expect("the far end notices the close"), None);
    });
}

#[test]
fn a_relay_only_link_goes_through_coturn() {
    let turn = Coturn::start_loopback();
    runtime().block_on(async {
        let (a, b) = link_pair(vec![turn.ice_server()], relay_options(), SETUP).await;
        let (mut a, mut b) = (a.expect("offerer opens"), b.expect("answerer opens"));
        assert_eq!(a.path, LinkPath::Relay);
        assert_eq!(b.path, LinkPath::Relay);
        carry(&a, &mut b, b"through the relay".to_vec()).await;
        carry(&b, &mut a, b"and back".to_vec()).await;
    });
}

#[test]
fn relay_only_with_wrong_turn_credentials_never_opens() {
    let turn = Coturn::start_loopback();
    let mut server = turn.ice_server();
    server.credential = Some("not-the-password".into());
    runtime().block_on(async {
        let (a, b) = link_pair(vec![server], relay_options(), Duration::from_secs(8)).await;
        assert!(
            matches!(a, Err(LinkError::IceFailed(_) | LinkError::Timeout(_))),
            "{a:?}"
        );
        assert!(
            matches!(b, Err(LinkError::IceFailed(_) | LinkError::Timeout(_))),
            "{b:?}"
        );
    });
}

/// Change one hex digit of the offer's DTLS fingerprint, as a man in the middle presenting
/// its own certificate would have to.
fn tamper_fingerprint(signal: Signal) -> Signal {
    match signal {
        Signal::Offer(sdp) => {
            let mut out = String::new();
            for line in sdp.split_inclusive('\n') {
                if let Some(rest) = line.strip_prefix("a=fingerprint:sha-256 ") {
                    let first = if rest.starts_with('0') { '1' } else { '0' };
                    out.push_str("a=fingerprint:sha-256 ");
                    out.push(first);
                    out.push_str(&rest[1..]);
                } else {
                    out.push_str(line);
                }
            }
            assert_ne!(out, sdp, "the offer names a sha-256 fingerprint");
            Signal::Offer(out)
        }
        other => other,
    }
}

#[test]
fn a_certificate_that_does_not_match_the_sdp_never_carries_a_message() {
    runtime().block_on(async {
        let (a, b) = link_pair_with(
            vec![],
            loopback_options(),
            loopback_options(),
            SETUP,
            tamper_fingerprint,
        )
        .await;
        // The answerer checks the offerer's certificate against the (tampered) offer.
        assert!(matches!(b, Err(LinkError::Fingerprint)), "{b:?}");
        // The offerer's side may have come up before the answerer closed: nothing it sends
        // reaches anyone, and its channel closes.
        if let Ok(mut a) = a {
            let _ = a.tx.send(b"must go nowhere".to_vec()).await;
            let end = tokio::time::timeout(Duration::from_secs(20), a.rx.recv()).await;
            assert_eq!(end.expect("the offerer's channel closes"), None);
        }
    });
}

#[test]
fn a_peer_that_never_answers_times_out() {
    runtime().block_on(async {
        let (_keep_in, signals_in) = tokio::sync::mpsc::channel(8);
        let (signals_out, _sent) = tokio::sync::mpsc::channel(64);
        let result = meta_log_federation_module::links::webrtc::connect_with_options(
            meta_log_federation_module::links::channel::Role::Offerer,
            vec![],
            signals_in,
            signals_out,
            Duration::from_millis(1500),
            WebrtcOptions {
                include_loopback: true,
                udp_addrs: vec!["127.0.0.1:0".into()],
                ..Default::default()
            },
        )
        .await;
        assert!(
            matches!(result, Err(LinkError::Timeout(1500))),
            "{result:?}"
        );
    });
}
