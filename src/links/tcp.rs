//! The TCP fallback (docs/PROTOCOL.md §16.2): TLS 1.3 through rustls, mutual, with a fresh
//! self-signed certificate per session (rcgen) whose fingerprint travels in the signed
//! signalling. No CA and no name check: each side's custom verifier accepts exactly the
//! fingerprint the other side's signed signal named (the TLS handshake proves possession of
//! its key). Frames are length-prefixed ([`super::frame`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::channel::{Channel, LinkError, LinkPath};
use super::frame::{read_frame, write_frame};
use super::signal::{fingerprint_of_der, same_fingerprint};
use crate::events::lock;

/// The ALPN protocol of a link.
pub const ALPN: &[u8] = b"mlf-link/1";
/// Messages waiting to be written to one link before senders wait.
const CHANNEL_DEPTH: usize = 1024;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS server name of a session: `<session id>.mlf-link.invalid` (it selects the
/// listener's certificate for that session).
pub fn server_name(session: &str) -> String {
    format!("{session}.mlf-link.invalid")
}

/// One session's certificate and key.
#[derive(Clone)]
pub struct SessionCert {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
    /// `sha-256 AB:...` of the certificate.
    pub fingerprint: String,
}

impl std::fmt::Debug for SessionCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCert")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SessionCert {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<SessionCert, LinkError> {
        let ck = rcgen::generate_simple_self_signed(vec!["mlf-link.invalid".to_string()])
            .map_err(|e| LinkError::Setup(format!("certificate: {e}")))?;
        let cert = ck.cert.der().clone();
        let fingerprint = fingerprint_of_der(&cert);
        Ok(SessionCert {
            cert,
            key: Arc::new(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
            fingerprint,
        })
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.as_ref().clone_key())
    }

    fn certified_key(&self) -> Result<Arc<CertifiedKey>, LinkError> {
        CertifiedKey::from_der(vec![self.cert.clone()], self.key_der(), &provider())
            .map(Arc::new)
            .map_err(|e| LinkError::Setup(format!("certificate: {e}")))
    }
}

/// Accepts exactly one certificate fingerprint (the client's check of the server).
#[derive(Debug)]
struct PinnedServer {
    expected: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if same_fingerprint(&fingerprint_of_der(end_entity), &self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The listener's check of a client: the certificate must be one a waiting session expects.
/// Its fingerprint is checked again against that very session once the handshake ends (the
/// session is known from the server name only then).
#[derive(Debug)]
struct ExpectedClients {
    shared: Arc<Shared>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ExpectedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fp = fingerprint_of_der(end_entity);
        let known = lock(&self.shared.waiting).values().any(|w| {
            w.expected_client
                .as_deref()
                .is_none_or(|e| same_fingerprint(e, &fp))
        });
        if known {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A session the listener waits for.
struct Waiting {
    key: Arc<CertifiedKey>,
    /// The client certificate's fingerprint, once the signalling named it.
    expected_client: Option<String>,
    local_fp: String,
    done: Option<oneshot::Sender<Result<Channel, LinkError>>>,
    /// The client's connection, once it arrived, and its certificate's fingerprint.
    arrived: Option<(TlsStream<TcpStream>, String)>,
}

/// Hands the session's connection over once both the client and the signalling naming its
/// certificate are there; a connection with another certificate fails the session.
fn complete(waiting: &mut HashMap<String, Waiting>, session: &str) {
    let ready = waiting
        .get(session)
        .is_some_and(|w| w.arrived.is_some() && w.expected_client.is_some());
    if !ready {
        return;
    }
    let Some(mut w) = waiting.remove(session) else {
        return;
    };
    let (Some((tls, fp)), Some(expected), Some(done)) =
        (w.arrived.take(), w.expected_client.take(), w.done.take())
    else {
        return;
    };
    let result = if same_fingerprint(&fp, &expected) {
        Ok(spawn_channel(tls, w.local_fp.clone(), fp))
    } else {
        Err(LinkError::Fingerprint)
    };
    let _ = done.send(result);
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Chooses the certificate of the session the client names.
#[derive(Debug)]
struct BySession(Arc<Shared>);

impl ResolvesServerCert for BySession {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let session = hello.server_name()?.strip_suffix(".mlf-link.invalid")?;
        lock(&self.0.waiting).get(session).map(|w| w.key.clone())
    }
}

/// The opt-in TCP listener of the fallback (one per running link manager).
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Listens on `addr` (port 0: any free port). Must run inside the tokio runtime.
    pub async fn bind(addr: SocketAddr) -> Result<Listener, LinkError> {
        let sock = TcpListener::bind(addr)
            .await
            .map_err(|e| LinkError::Setup(format!("cannot listen on {addr}: {e}")))?;
        let addr = sock
            .local_addr()
            .map_err(|e| LinkError::Setup(e.to_string()))?;
        let shared = Arc::new(Shared::default());
        let p = provider();
        let mut config = rustls::ServerConfig::builder_with_provider(p.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| LinkError::Setup(e.to_string()))?
            .with_client_cert_verifier(Arc::new(ExpectedClients {
                shared: shared.clone(),
                provider: p,
            }))
            .with_cert_resolver(Arc::new(BySession(shared.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let s2 = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = sock.accept().await else {
                    // Out of descriptors, say: wait instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                };
                let (acceptor, shared) = (acceptor.clone(), s2.clone());
                // A slow or hostile client holds only its own task.
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    );
                    let Ok(Ok(tls)) = handshake.await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    let Some(session) = conn
                        .server_name()
                        .and_then(|n| n.strip_suffix(".mlf-link.invalid"))
                        .map(str::to_string)
                    else {
                        return;
                    };
                    let remote_fp = conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| fingerprint_of_der(c));
                    let Some(fp) = remote_fp else { return };
                    let mut g = lock(&shared.waiting);
                    let Some(w) = g.get_mut(&session) else { return };
                    if w.arrived.is_some() {
                        return; // one connection per session
                    }
                    w.arrived = Some((TlsStream::Server(tls), fp));
                    complete(&mut g, &session);
                });
            }
        });
        Ok(Listener { addr, shared, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the session `session`'s client, presenting `cert`; the channel arrives on the
    /// receiver once a client with the expected certificate connected.
    pub fn expect(
        &self,
        session: &str,
        cert: &SessionCert,
    ) -> Result<oneshot::Receiver<Result<Channel, LinkError>>, LinkError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiting).insert(
            session.to_string(),
            Waiting {
                key: cert.certified_key()?,
                expected_client: None,
                local_fp: cert.fingerprint.clone(),
                done: Some(tx),
                arrived: None,
            },
        );
        Ok(rx)
    }

    /// The signalling named the client's certificate for `session`.
    pub fn expect_client(&self, session: &str, fingerprint: &str) {
        let mut g = lock(&self.shared.waiting);
        if let Some(w) = g.get_mut(session) {
            w.expected_client = Some(fingerprint.to_string());
        }
        complete(&mut g, session);
    }

    /// Stops waiting for `session`.
    pub fn forget(&self, session: &str) {
        lock(&self.shared.waiting).remove(session);
    }
}

/// Dials `addr` for `session`, presenting `cert` and accepting only a server certificate with
/// fingerprint `expected`.
pub async fn dial(
    addr: SocketAddr,
    session: &str,
    cert: &SessionCert,
    expected: &str,
) -> Result<Channel, LinkError> {
    let p = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| LinkError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            expected: expected.to_string(),
            provider: p,
        }))
        .with_client_auth_cert(vec![cert.cert.clone()], cert.key_der())
        .map_err(|e| LinkError::Setup(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    let name = ServerName::try_from(server_name(session))
        .map_err(|e| LinkError::Setup(format!("server name: {e}")))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| LinkError::Setup(format!("cannot connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(_)) => LinkError::Fingerprint,
                _ => LinkError::Setup(format!("TLS with {addr}: {e}")),
            },
        )?;
    let remote = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fingerprint_of_der(c))
        .ok_or(LinkError::Fingerprint)?;
    Ok(spawn_channel(
        TlsStream::Client(tls),
        cert.fingerprint.clone(),
        remote,
    ))
}

/// Turns a TLS stream into a [`Channel`]: one task reads frames, one writes them.
fn spawn_channel(stream: TlsStream<TcpStream>, local_fp: String, remote_fp: String) -> Channel {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut out_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let (in_tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if write_frame(&mut wr, &m).await.is_err() {
                break;
            }
        }
        // Every sender gone (or the socket broke): close our side.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
    });
    tokio::spawn(async move {
        // Ends on a clean close, an error or an oversized frame: the receiver sees the end.
        while let Ok(Some(m)) = read_frame(&mut rd).await {
            if in_tx.send(m).await.is_err() {
                break;
            }
        }
    });
    Channel {
        path: LinkPath::Tcp,
        local_fingerprint: local_fp,
        remote_fingerprint: remote_fp,
        tx,
        rx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_sides_link_when_each_presents_the_signalled_certificate() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (server_cert, client_cert) = (
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
        );
        let session = "0123456789abcdef0123456789abcdef";
        let waiting = listener.expect(session, &server_cert).unwrap();
        listener.expect_client(session, &client_cert.fingerprint);
        let mut c = dial(
            listener.local_addr(),
            session,
            &client_cert,
            &server_cert.fingerprint,
        )
        .await
        .unwrap();
        let mut s = waiting.await.unwrap().unwrap();
        assert_eq!(c.remote_fingerprint, server_cert.fingerprint);
        assert_eq!(s.remote_fingerprint, client_cert.fingerprint);
        c.tx.send(b"ping".to_vec()).await.unwrap();
        assert_eq!(s.rx.recv().await.unwrap(), b"ping");
        s.tx.send(vec![7u8; 100_000]).await.unwrap();
        assert_eq!(c.rx.recv().await.unwrap().len(), 100_000);
        drop(c);
        assert!(s.rx.recv().await.is_none(), "the other side sees the close");
    }

    #[tokio::test]
    async fn the_listener_waits_for_the_signal_naming_a_client_that_came_first() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (server_cert, client_cert, intruder) = (
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
        );
        let session = "0123456789abcdef0123456789abcdef";
        let mut waiting = listener.expect(session, &server_cert).unwrap();
        let _c = dial(
            listener.local_addr(),
            session,
            &client_cert,
            &server_cert.fingerprint,
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(waiting.try_recv().is_err(), "nothing before the signal");
        // The signal names another certificate than the one the client presented.
        listener.expect_client(session, &intruder.fingerprint);
        assert!(matches!(
            waiting.await.unwrap(),
            Err(LinkError::Fingerprint)
        ));
    }

    #[tokio::test]
    async fn a_server_with_another_certificate_is_refused() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (server_cert, client_cert, other) = (
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
        );
        let session = "0123456789abcdef0123456789abcdef";
        let _waiting = listener.expect(session, &server_cert).unwrap();
        listener.expect_client(session, &client_cert.fingerprint);
        let r = dial(
            listener.local_addr(),
            session,
            &client_cert,
            &other.fingerprint,
        )
        .await;
        assert!(matches!(r, Err(LinkError::Fingerprint)), "{r:?}");
    }

    #[tokio::test]
    async fn a_client_with_another_certificate_is_refused() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (server_cert, client_cert, intruder) = (
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
            SessionCert::generate().unwrap(),
        );
        let session = "0123456789abcdef0123456789abcdef";
        let waiting = listener.expect(session, &server_cert).unwrap();
        listener.expect_client(session, &client_cert.fingerprint);
        let r = dial(
            listener.local_addr(),
            session,
            &intruder,
            &server_cert.fingerprint,
        )
        .await;
        // The client may see the refusal only when it first reads; either way no channel opens
        // on the listener's side.
        if let Ok(mut c) = r {
            assert!(c.rx.recv().await.is_none());
        }
        let pending = tokio::time::timeout(std::time::Duration::from_millis(300), waiting).await;
        assert!(
            !matches!(pending, Ok(Ok(Ok(_)))),
            "no channel for an intruder"
        );
    }
}
