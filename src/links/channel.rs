//! Types shared by the direct-link transports (WebRTC, TCP) and the link manager.

use tokio::sync::mpsc;

/// How an open link reaches its peer (shown to the person as the link's path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkPath {
    /// ICE host candidates on both sides (same machine or same network).
    Host,
    /// A server-reflexive candidate (an address learnt from STUN; through a cone NAT).
    Srflx,
    /// Relayed through a TURN server.
    Relay,
    /// The TLS-over-TCP fallback.
    Tcp,
}

impl LinkPath {
    /// The stable name used in Elisp (`host`, `srflx`, `relay`, `tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPath::Host => "host",
            LinkPath::Srflx => "srflx",
            LinkPath::Relay => "relay",
            LinkPath::Tcp => "tcp",
        }
    }
}

/// One ICE server, as WebRTC's `RTCIceServer` (`stun:`/`turn:` URLs, optional credentials).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceServer {
    /// `stun:HOST:PORT` or `turn:HOST:PORT?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN user name, if any.
    pub username: Option<String>,
    /// TURN password, if any.
    pub credential: Option<String>,
}

/// A signalling message a transport asks the federation to carry to the other peer (signed and
/// NIP-44-encrypted there), or one that arrived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A session description offer (SDP text).
    Offer(String),
    /// A session description answer (SDP text).
    Answer(String),
    /// One trickled ICE candidate (`candidate:...` line), with its media section.
    Candidate {
        /// The candidate line.
        candidate: String,
        /// `sdpMid`, if any.
        sdp_mid: Option<String>,
        /// `sdpMLineIndex`, if any.
        sdp_mline_index: Option<u16>,
    },
    /// No more candidates will follow.
    EndOfCandidates,
}

/// An open, ordered, reliable channel to one peer, carrying whole messages, before the hello
/// that binds it to the peer's federation key. Dropping both halves closes it.
#[derive(Debug)]
pub struct Channel {
    /// How it reaches the peer.
    pub path: LinkPath,
    /// Our certificate's fingerprint (DTLS or TLS), as in SDP: `sha-256 AB:CD:...`.
    pub local_fingerprint: String,
    /// The fingerprint the peer's certificate actually had on this channel.
    pub remote_fingerprint: String,
    /// Messages to send.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Messages received; closed when the channel closes.
    pub rx: mpsc::Receiver<Vec<u8>>,
}

/// Why a link could not be opened or broke.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// ICE found no working candidate pair in time.
    #[error("no direct path found (ICE failed): {0}")]
    IceFailed(String),
    /// Setting up the transport failed.
    #[error("link setup failed: {0}")]
    Setup(String),
    /// The peer's certificate fingerprint was not the one its signed signalling named.
    #[error("the peer's certificate fingerprint does not match its signed signalling")]
    Fingerprint,
    /// Nothing happened in time.
    #[error("link setup timed out after {0} ms")]
    Timeout(u64),
}

/// Which side of a link setup this peer plays (glare is resolved before a transport starts:
/// the peer with the smaller peer id offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the offer (WebRTC) or dials (TCP).
    Offerer,
    /// Answers the offer (WebRTC) or accepts (TCP).
    Answerer,
}
