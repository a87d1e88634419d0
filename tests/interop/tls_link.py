"""The TCP fallback of docs/PROTOCOL.md 16.2 and 16.3, dialling side, in Python.

A fresh self-signed ECDSA P-256 certificate per session (cryptography), TLS 1.3
only with Python's ssl module, the server name `<session>.mlf-link.invalid`,
ALPN `mlf-link/1`, our certificate presented to the listener (mutual TLS), and
the listener's certificate accepted if and only if its SHA-256 fingerprint is
the one its signed signal named.  Frames are a 4-byte big-endian length then
that many bytes of JSON.
"""

import asyncio
import datetime
import hashlib
import os
import ssl
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MAX_FRAME = 262144


def fingerprint(der):
    """A certificate's fingerprint as 16.1 writes it: "sha-256 AB:CD:..."."""
    return "sha-256 " + ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def self_signed(directory):
    """Write a fresh P-256 key and self-signed certificate; return (cert, key, fingerprint)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlf-aiortc-interop")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file = os.path.join(directory, "link.crt")
    key_file = os.path.join(directory, "link.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_file, key_file, fingerprint(cert.public_bytes(serialization.Encoding.DER))


class TcpLink:
    """One session over TLS 1.3; the same surface as the WebRTC link for the peer."""

    path = "tcp"

    def __init__(self, session):
        self.session = session
        self.started = time.monotonic()
        self.setup_ms = None
        self.hello_ok = False
        self.closed = False
        self._dir = tempfile.TemporaryDirectory(prefix="mlf-link-")
        self.cert_file, self.key_file, self.own_fp = self_signed(self._dir.name)
        self.signalled_fp = None  # from the peer's signed tcp-offer / tcp-answer
        self.seen_fp = None  # from the TLS handshake
        self.writer = None

    def fingerprints(self):
        """(ours, the peer's as the handshake showed it)."""
        return self.own_fp, self.seen_fp

    async def dial(self, addr, on_open, on_frame, on_error):
        """Connect to ADDR ("HOST:PORT"), check the certificate, then read frames."""
        host, port = addr.rsplit(":", 1)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        # No CA and no name check: the fingerprint below is the whole check (16.2).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(["mlf-link/1"])
        try:
            reader, self.writer = await asyncio.open_connection(
                host.strip("[]"),
                int(port),
                ssl=context,
                server_hostname=f"{self.session}.mlf-link.invalid",
            )
        except (OSError, ssl.SSLError) as error:
            return await on_error(f"TLS connection to {addr} failed: {error}")
        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        self.seen_fp = fingerprint(der)
        if self.seen_fp.lower() != (self.signalled_fp or "").lower():
            return await on_error("bad-fingerprint: the listener's certificate is not the signed one")
        on_open()
        try:
            while not self.closed:
                length = int.from_bytes(await reader.readexactly(4), "big")
                if length > MAX_FRAME:
                    return await on_error(f"a frame of {length} bytes announced")
                await on_frame(await reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as error:
            if not self.closed:
                await on_error(f"connection ended: {error!r}")

    def is_open(self):
        return self.writer is not None and not self.closed and not self.writer.is_closing()

    def send(self, text):
        data = text.encode("utf-8")
        self.writer.write(len(data).to_bytes(4, "big") + data)

    async def shutdown(self):
        if self.writer is not None:
            self.writer.close()
        self._dir.cleanup()
