//! The WebRTC transport: one ordered, reliable data channel to a peer, set up through ICE (host,
//! server-reflexive and relayed candidates) with the signalling carried by the caller.
//!
//! Built on webrtc-rs (`webrtc` 0.21, a thin async layer over the sans-IO `rtc` crates), whose
//! driver runs on the project's tokio runtime: [`connect`] must be called from inside it. The
//! crate's TURN path is patched (`patches/webrtc/README.md`): as released, every relayed packet
//! waited for the driver's next wake-up (~250 ms).
//!
//! The DTLS fingerprint check is done here rather than inside the crate: webrtc-rs, given a
//! fingerprint that does not match, never completes DTLS and never reports a failure (its state
//! goes to "disconnected" and stays there). With the crate's own check turned off, the
//! handshake completes, and [`connect`] compares the certificate the peer actually presented
//! with the fingerprint of its (signed) SDP before a single message is handed to the caller:
//! a mismatch closes the connection and returns [`LinkError::Fingerprint`] at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceCandidateType, RTCIceConnectionState, RTCIceGatheringState,
    RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};

use super::channel::{Channel, IceServer, LinkError, LinkPath, Role, Signal};

/// The data channel's label (the peer's side sees it; aiortc peers create the same one).
pub const DATA_CHANNEL_LABEL: &str = "meta-log-federation";

/// Messages buffered in each direction of an open channel before the sender waits.
const CHANNEL_DEPTH: usize = 1024;

/// How the transport is set up beyond the ICE servers: the defaults are what a federation
/// peer uses; tests and the NAT probe narrow them.
#[derive(Debug, Clone)]
pub struct WebrtcOptions {
    /// Use relayed (TURN) candidates only, as WebRTC's `iceTransportPolicy: "relay"`.
    pub relay_only: bool,
    /// Local UDP addresses to bind (`0.0.0.0:0` = one socket per usable interface).
    pub udp_addrs: Vec<String>,
    /// Also offer loopback host candidates (two peers on one machine with no other interface).
    pub include_loopback: bool,
}

impl Default for WebrtcOptions {
    fn default() -> Self {
        WebrtcOptions {
            relay_only: false,
            udp_addrs: vec!["0.0.0.0:0".to_owned()],
            include_loopback: false,
        }
    }
}

/// Open a data channel to the peer at the other end of `signals_in`/`signals_out`, with the
/// default [`WebrtcOptions`]. See [`connect_with_options`].
pub async fn connect(
    role: Role,
    ice: Vec<IceServer>,
    signals_in: mpsc::Receiver<Signal>,
    signals_out: mpsc::Sender<Signal>,
    timeout: Duration,
) -> Result<Channel, LinkError> {
    connect_with_options(
        role,
        ice,
        signals_in,
        signals_out,
        timeout,
        WebrtcOptions::default(),
    )
    .await
}

/// Open an ordered, reliable data channel to one peer.
///
/// The offerer creates the channel and sends [`Signal::Offer`]; the answerer waits for it and
/// sends [`Signal::Answer`]; both trickle [`Signal::Candidate`]s and end with
/// [`Signal::EndOfCandidates`]. Candidates that arrive before the description they belong to are
/// kept until it arrives. Returns once the channel is open and the peer's DTLS certificate has
/// been checked against its SDP fingerprint; gives up after `timeout` ([`LinkError::Timeout`]),
/// at once when ICE fails ([`LinkError::IceFailed`]) or when the certificate does not match
/// ([`LinkError::Fingerprint`]). Must run inside a tokio runtime.
pub async fn connect_with_options(
    role: Role,
    ice: Vec<IceServer>,
    mut signals_in: mpsc::Receiver<Signal>,
    signals_out: mpsc::Sender<Signal>,
    timeout: Duration,
    options: WebrtcOptions,
) -> Result<Channel, LinkError> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let pc = Arc::new(build_peer_connection(&ice, &options, events_tx.clone()).await?);
    let setup = negotiate(
        role,
        &pc,
        &mut signals_in,
        &signals_out,
        &mut events,
        events_tx,
    );
    let outcome = match tokio::time::timeout(timeout, setup).await {
        Ok(outcome) => outcome,
        Err(_) => Err(LinkError::Timeout(timeout.as_millis() as u64)),
    };
    match outcome {
        Ok(open) => Ok(spawn_link(pc, open)),
        Err(error) => {
            let _ = pc.close().await;
            Err(error)
        }
    }
}

/// What the driver tells [`negotiate`] (forwarded from [`Events`]' callbacks and the data
/// channel's own event stream).
enum Event {
    Candidate(RTCIceCandidateInit),
    GatheringComplete,
    IceFailed(String),
    DataChannel(Arc<dyn DataChannel>),
    ChannelOpen,
    ChannelClosed,
}

/// The peer connection's event handler: forwards what matters to [`negotiate`].
struct Events(mpsc::UnboundedSender<Event>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.send(Event::Candidate(init));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(Event::GatheringComplete);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Failed {
            let _ = self
                .0
                .send(Event::IceFailed("no candidate pair answered".into()));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Failed {
            let _ = self
                .0
                .send(Event::IceFailed("the peer connection failed".into()));
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.0.send(Event::DataChannel(channel));
    }
}

async fn build_peer_connection(
    ice: &[IceServer],
    options: &WebrtcOptions,
    events: mpsc::UnboundedSender<Event>,
) -> Result<impl PeerConnection, LinkError> {
    let ice_servers = ice
        .iter()
        .map(|server| RTCIceServer {
            urls: server.urls.clone(),
            username: server.username.clone().unwrap_or_default(),
            credential: server.credential.clone().unwrap_or_default(),
        })
        .collect();
    let policy = if options.relay_only {
        RTCIceTransportPolicy::Relay
    } else {
        RTCIceTransportPolicy::All
    };
    let mut settings = SettingEngineBuilder::new()
        // Checked here, against the certificate actually presented (see the module comment).
        .with_disable_certificate_fingerprint_verification(true)
        .with_include_loopback_candidate(options.include_loopback);
    if options.relay_only {
        // The wait exists to let better pairs win; with relays only there are none.
        settings = settings.with_relay_acceptance_min_wait(Some(Duration::ZERO));
    }
    PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(ice_servers)
                .with_ice_transport_policy(policy)
                .build(),
        )
        .with_setting_engine(settings.build())
        .with_handler(Arc::new(Events(events)))
        .with_udp_addrs(options.udp_addrs.clone())
        .build()
        .await
        .map_err(|e| LinkError::Setup(format!("creating the peer connection: {e}")))
}

/// An open channel, checked, with what [`spawn_link`] needs to run it.
struct Open {
    channel: Arc<dyn DataChannel>,
    events: mpsc::UnboundedReceiver<Event>,
    inbound: mpsc::Receiver<Vec<u8>>,
    inbound_tx: mpsc::Sender<Vec<u8>>,
    path: LinkPath,
    local_fingerprint: String,
    remote_fingerprint: String,
}

/// Run the offer/answer exchange and ICE until the data channel is open and checked.
async fn negotiate(
    role: Role,
    pc: &Arc<impl PeerConnection>,
    signals_in: &mut mpsc::Receiver<Signal>,
    signals_out: &mpsc::Sender<Signal>,
    events: &mut mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
) -> Result<Open, LinkError> {
    let setup = |what: &str, e: webrtc::error::Error| LinkError::Setup(format!("{what}: {e}"));
    let send = |signal: Signal| async {
        signals_out
            .send(signal)
            .await
            .map_err(|_| LinkError::Setup("the signalling channel closed".into()))
    };
    let (inbound_tx, inbound) = mpsc::channel(CHANNEL_DEPTH);
    let mut channel: Option<Arc<dyn DataChannel>> = None;
    let mut have_remote = false;
    let mut early_candidates = Vec::new();

    if role == Role::Offerer {
        let dc = pc
            .create_data_channel(DATA_CHANNEL_LABEL, None)
            .await
            .map_err(|e| setup("creating the data channel", e))?;
        pump(dc.clone(), inbound_tx.clone(), events_tx.clone());
        channel = Some(dc);
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| setup("creating the offer", e))?;
        pc.set_local_description(offer.clone())
            .await
            .map_err(|e| setup("applying the offer", e))?;
        send(Signal::Offer(offer.sdp)).await?;
    }

    // Once both descriptions are known, the signalling may end (the peer's side of it stops as
    // soon as its channel is open); ICE and DTLS go on without it.
    let mut signalling = true;
    loop {
        tokio::select! {
            signal = signals_in.recv(), if signalling => {
                let Some(signal) = signal else {
                    if have_remote {
                        signalling = false;
                        continue;
                    }
                    return Err(LinkError::Setup("the signalling channel closed".into()));
                };
                match signal {
                    Signal::Offer(sdp) if role == Role::Answerer && !have_remote => {
                        let offer = RTCSessionDescription::offer(sdp)
                            .map_err(|e| setup("reading the peer's offer", e))?;
                        pc.set_remote_description(offer)
                            .await
                            .map_err(|e| setup("applying the peer's offer", e))?;
                        have_remote = true;
                        let answer = pc
                            .create_answer(None)
                            .await
                            .map_err(|e| setup("creating the answer", e))?;
                        pc.set_local_description(answer.clone())
                            .await
                            .map_err(|e| setup("applying the answer", e))?;
                        send(Signal::Answer(answer.sdp)).await?;
                    }
                    Signal::Answer(sdp) if role == Role::Offerer && !have_remote => {
                        let answer = RTCSessionDescription::answer(sdp)
                            .map_err(|e| setup("reading the peer's answer", e))?;
                        pc.set_remote_description(answer)
                            .await
                            .map_err(|e| setup("applying the peer's answer", e))?;
                        have_remote = true;
                    }
                    Signal::Offer(_) | Signal::Answer(_) => {
                        return Err(LinkError::Setup(
                            "the peer sent a description out of turn".into(),
                        ));
                    }
                    Signal::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                        early_candidates.push(RTCIceCandidateInit {
                            candidate,
                            sdp_mid,
                            sdp_mline_index,
                            ..Default::default()
                        });
                    }
                    Signal::EndOfCandidates => {}
                }
                if have_remote {
                    for candidate in early_candidates.drain(..) {
                        // A candidate this peer cannot use (another address family, a
                        // malformed line) is skipped: the others may still work, and if none
                        // does, ICE fails and says so.
                        let _ = pc.add_ice_candidate(candidate).await;
                    }
                }
            }
            event = events.recv() => {
                // `events_tx` lives in this function, so the stream never ends here.
                let Some(event) = event else { continue };
                match event {
                    // Candidates are offered while the peer still listens; once its side of
                    // the signalling has ended, the pairs already known must do.
                    Event::Candidate(init) => {
                        let _ = signals_out
                            .send(Signal::Candidate {
                                candidate: init.candidate,
                                sdp_mid: init.sdp_mid.filter(|mid| !mid.is_empty()),
                                sdp_mline_index: init.sdp_mline_index,
                            })
                            .await;
                    }
                    Event::GatheringComplete => {
                        let _ = signals_out.send(Signal::EndOfCandidates).await;
                    }
                    Event::IceFailed(why) => return Err(LinkError::IceFailed(why)),
                    Event::DataChannel(dc) if channel.is_none() => {
                        pump(dc.clone(), inbound_tx.clone(), events_tx.clone());
                        channel = Some(dc);
                    }
                    Event::DataChannel(dc) => {
                        // Only one channel per link: a second one is refused.
                        let _ = dc.close().await;
                    }
                    Event::ChannelOpen => break,
                    Event::ChannelClosed => {
                        return Err(LinkError::Setup("the data channel closed while opening".into()));
                    }
                }
            }
        }
    }

    // `ChannelOpen` only comes from a channel's pump, started when the channel was kept.
    let channel = channel
        .ok_or_else(|| LinkError::Setup("a data channel opened before it was known".into()))?;
    let (local_fingerprint, remote_fingerprint, path) = check_transport(pc).await?;
    // The setup's events (candidates, gathering) are of no further use; later ones only
    // report the channel's end.
    drop(events_tx);
    let (_, events_rest) = mpsc::unbounded_channel();
    Ok(Open {
        channel,
        events: std::mem::replace(events, events_rest),
        inbound,
        inbound_tx,
        path,
        local_fingerprint,
        remote_fingerprint,
    })
}

/// Forward one data channel's events: messages to `inbound`, its opening and closing to
/// `events`. Ends when the channel closes.
fn pump(
    channel: Arc<dyn DataChannel>,
    inbound: mpsc::Sender<Vec<u8>>,
    events: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        while let Some(event) = channel.poll().await {
            match event {
                DataChannelEvent::OnOpen => {
                    let _ = events.send(Event::ChannelOpen);
                }
                DataChannelEvent::OnMessage(message) => {
                    // A caller that dropped its receiving half still sends: its messages are
                    // discarded, the channel stays open (it closes when both halves are gone).
                    let _ = inbound.send(message.data.to_vec()).await;
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
        let _ = events.send(Event::ChannelClosed);
    });
}

/// The two fingerprints (ours from our SDP; the peer's from the certificate it presented,
/// checked against its SDP) and the path of the selected candidate pair.
async fn check_transport(
    pc: &Arc<impl PeerConnection>,
) -> Result<(String, String, LinkPath), LinkError> {
    let local_sdp = pc
        .local_description()
        .await
        .ok_or_else(|| LinkError::Setup("no local description".into()))?;
    let remote_sdp = pc
        .remote_description()
        .await
        .ok_or_else(|| LinkError::Setup("no remote description".into()))?;
    let local_fingerprint = sdp_fingerprint(&local_sdp.sdp)
        .ok_or_else(|| LinkError::Setup("our SDP has no fingerprint".into()))?;
    let claimed = sdp_fingerprint(&remote_sdp.sdp).ok_or(LinkError::Fingerprint)?;
    let sctp = pc
        .sctp()
        .await
        .ok_or_else(|| LinkError::Setup("no SCTP transport on an open channel".into()))?;
    let dtls = sctp.transport();
    let certificates = dtls
        .get_remote_certificates()
        .await
        .map_err(|e| LinkError::Setup(format!("reading the peer's certificate: {e}")))?;
    let algorithm = claimed.split(' ').next().unwrap_or_default();
    let presented = certificates
        .first()
        .and_then(|der| certificate_fingerprint(algorithm, der))
        .ok_or(LinkError::Fingerprint)?;
    if !presented.eq_ignore_ascii_case(&claimed) {
        return Err(LinkError::Fingerprint);
    }
    let pair = dtls
        .ice_transport()
        .get_selected_candidate_pair()
        .await
        .map_err(|e| LinkError::Setup(format!("reading the selected candidate pair: {e}")))?
        .ok_or_else(|| LinkError::Setup("no selected candidate pair".into()))?;
    let path = path_of(pair.local().typ, pair.remote().typ);
    Ok((local_fingerprint, presented, path))
}

/// The path a candidate pair takes: through a relay if either end is relayed, else through a
/// NAT's mapping if either end was learnt from STUN or from the checks, else direct.
pub fn path_of(local: RTCIceCandidateType, remote: RTCIceCandidateType) -> LinkPath {
    use RTCIceCandidateType::*;
    match (local, remote) {
        (Relay, _) | (_, Relay) => LinkPath::Relay,
        (Srflx | Prflx, _) | (_, Srflx | Prflx) => LinkPath::Srflx,
        _ => LinkPath::Host,
    }
}

/// The first `a=fingerprint:` of an SDP, normalised as `sha-256 AB:CD:...` (algorithm in lower
/// case, hex in upper case).
pub fn sdp_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|line| {
        let value = line.trim().strip_prefix("a=fingerprint:")?;
        let (algorithm, hex) = value.trim().split_once(' ')?;
        Some(format!(
            "{} {}",
            algorithm.to_ascii_lowercase(),
            hex.trim().to_ascii_uppercase()
        ))
    })
}

/// A certificate's fingerprint in SDP form (RFC 8122), for the hash functions WebRTC uses.
pub fn certificate_fingerprint(algorithm: &str, der: &[u8]) -> Option<String> {
    let digest = match algorithm.to_ascii_lowercase().as_str() {
        "sha-256" => Sha256::digest(der).to_vec(),
        "sha-384" => Sha384::digest(der).to_vec(),
        "sha-512" => Sha512::digest(der).to_vec(),
        _ => return None,
    };
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    Some(format!(
        "{} {}",
        algorithm.to_ascii_lowercase(),
        hex.join(":")
    ))
}

/// Hand the open channel to the caller: a task moves outbound messages onto the data channel
/// and closes the peer connection once the caller has dropped both halves or the channel
/// closed.
fn spawn_link(pc: Arc<impl PeerConnection>, open: Open) -> Channel {
    let Open {
        channel,
        mut events,
        inbound,
        inbound_tx,
        path,
        local_fingerprint,
        remote_fingerprint,
    } = open;
    let (tx, mut outbound) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    tokio::spawn(async move {
        let mut sending = true;
        loop {
            tokio::select! {
                message = outbound.recv(), if sending => match message {
                    Some(bytes) => {
                        if channel.send(BytesMut::from(&bytes[..])).await.is_err() {
                            break;
                        }
                    }
                    None => sending = false,
                },
                _ = inbound_tx.closed(), if !sending => break,
                event = events.recv() => match event {
                    Some(Event::ChannelClosed) | Some(Event::IceFailed(_)) | None => break,
                    Some(_) => {}
                },
            }
        }
        drop(inbound_tx);
        let _ = channel.close().await;
        let _ = pc.close().await;
    });
    Channel {
        path,
        local_fingerprint,
        remote_fingerprint,
        tx,
        rx: inbound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_written_as_in_sdp() {
        // SHA-256("abc"), FIPS 180-2's example.
        assert_eq!(
            certificate_fingerprint("SHA-256", b"abc").unwrap(),
            "sha-256 BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(certificate_fingerprint("md5", b"abc"), None);
        let sdp = "v=0\r\na=group:BUNDLE 0\r\na=fingerprint:SHA-256 ab:cd:ef\r\nm=application\r\n";
        assert_eq!(sdp_fingerprint(sdp).unwrap(), "sha-256 AB:CD:EF");
        assert_eq!(sdp_fingerprint("v=0\r\nm=application\r\n"), None);
    }

    #[test]
    fn the_path_is_the_least_direct_end_of_the_pair() {
        use RTCIceCandidateType::*;
        assert_eq!(path_of(Host, Host), LinkPath::Host);
        assert_eq!(path_of(Host, Srflx), LinkPath::Srflx);
        assert_eq!(path_of(Prflx, Host), LinkPath::Srflx);
        assert_eq!(path_of(Srflx, Relay), LinkPath::Relay);
        assert_eq!(path_of(Relay, Host), LinkPath::Relay);
    }
}
