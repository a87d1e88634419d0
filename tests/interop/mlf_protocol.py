"""The meta-log-federation wire protocol, written from docs/PROTOCOL.md only.

Events (section 3: NIP-01 id, BIP-340 signature), NIP-44 v2 (section 7),
presence (section 6), link signals (16.1), frames and the hello (16.3, 16.4).
Crypto comes from coincurve (secp256k1: BIP-340, point multiplication) and
cryptography (HKDF, ChaCha20, HMAC); nothing here is hand-rolled beyond the
framing the protocol defines.
"""

import base64
import hashlib
import hmac as std_hmac
import json
import math
import os
import time

import coincurve
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# The protocol version every event carries (["v", ...]) and presence announces (§5, §17.6).
PROTOCOL_VERSION = "2"

# Section 4.
KIND_PRESENCE = 20770
KIND_DEPARTURE = 20771
KIND_MESSAGE = 4770
KIND_RECEIPT = 4773
KIND_SIGNAL = 4774
KIND_HELLO = 20774
# Section 11.
MAX_AGE = 600
MAX_FUTURE = 900


class ProtocolError(Exception):
    """An event or frame that the protocol refuses; the text says which check."""


class Identity:
    """A secp256k1 key; its x-only public key (hex) is the peer id (section 3)."""

    def __init__(self, secret=None):
        self.key = coincurve.PrivateKey(secret) if secret else coincurve.PrivateKey()
        self.peer_id = self.key.public_key.format(compressed=True)[1:].hex()

    def sign(self, kind, tags, content, created_at=None):
        """Return a signed event (a dict in the field order of section 3)."""
        created_at = int(time.time()) if created_at is None else created_at
        event_id = event_hash(self.peer_id, created_at, kind, tags, content)
        sig = self.key.sign_schnorr(bytes.fromhex(event_id), os.urandom(32))
        return {
            "id": event_id,
            "pubkey": self.peer_id,
            "created_at": created_at,
            "kind": kind,
            "tags": tags,
            "content": content,
            "sig": sig.hex(),
        }

    def conversation_key(self, other_peer_id):
        """NIP-44 v2 conversation key with OTHER_PEER_ID (section 7)."""
        point = coincurve.PublicKey(b"\x02" + bytes.fromhex(other_peer_id))
        shared_x = point.multiply(self.key.secret).format(compressed=True)[1:]
        return std_hmac.new(b"nip44-v2", shared_x, hashlib.sha256).digest()


def canonical(value):
    """Compact JSON as section 3 requires (NIP-01 escaping, UTF-8 verbatim).

    Python's json writes \\" \\\\ \\n \\r \\t \\b \\f, other control characters
    as lowercase \\u00xx, and with ensure_ascii off everything else verbatim.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def event_hash(pubkey, created_at, kind, tags, content):
    """The event id: SHA-256 of [0,pubkey,created_at,kind,tags,content]."""
    text = canonical([0, pubkey, created_at, kind, tags, content])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_json(event):
    """The event's wire text (section 1: the payload is the JSON text)."""
    return canonical(event)


FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")


def _hex(value, length):
    return (
        isinstance(value, str)
        and len(value) == length
        and all(c in "0123456789abcdef" for c in value)
    )


def verify_event(event, check_age=True):
    """Check shape, id, signature (section 9 step 2) and age (step 5); return EVENT or raise.
    With CHECK_AGE false the age is not checked (the document's example events are old)."""
    if not isinstance(event, dict) or set(event) != set(FIELDS):
        raise ProtocolError("malformed: not the seven fields of section 3")
    if not (_hex(event["id"], 64) and _hex(event["pubkey"], 64) and _hex(event["sig"], 128)):
        raise ProtocolError("malformed: hex fields")
    if not isinstance(event["created_at"], int) or not isinstance(event["kind"], int):
        raise ProtocolError("malformed: integers")
    tags = event["tags"]
    if not isinstance(tags, list) or not all(
        isinstance(t, list) and all(isinstance(s, str) for s in t) for t in tags
    ):
        raise ProtocolError("malformed: tags")
    if not isinstance(event["content"], str):
        raise ProtocolError("malformed: content")
    expected = event_hash(
        event["pubkey"], event["created_at"], event["kind"], tags, event["content"]
    )
    if expected != event["id"]:
        raise ProtocolError("id-mismatch")
    key = coincurve.PublicKeyXOnly(bytes.fromhex(event["pubkey"]))
    if not key.verify(bytes.fromhex(event["sig"]), bytes.fromhex(event["id"])):
        raise ProtocolError("bad-signature")
    now = int(time.time())
    if not check_age:
        return event
    if event["created_at"] > now + MAX_FUTURE:
        raise ProtocolError("in-future")
    if now - event["created_at"] > MAX_AGE:
        raise ProtocolError("too-old")
    return event


def tag(event, name):
    """The value of the first tag named NAME (section 5), or None."""
    for t in event["tags"]:
        if len(t) >= 2 and t[0] == name:
            return t[1]
    return None


# NIP-44 v2 (section 7).


def calc_padded_len(length):
    if length <= 32:
        return 32
    next_power = 1 << math.ceil(math.log2(length))
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * math.ceil(length / chunk)


def _keys(conversation_key, nonce):
    okm = HKDFExpand(hashes.SHA256(), 76, nonce).derive(conversation_key)
    return okm[0:32], okm[32:44], okm[44:76]


def _chacha(key, nonce12, data):
    # cryptography's ChaCha20 takes a 16-byte nonce: 4-byte little-endian
    # initial counter (0, as RFC 8439 and section 7 say) then the 12-byte nonce.
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    return cipher.encryptor().update(data)


def _mac(key, data):
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def nip44_encrypt(conversation_key, plaintext, nonce=None):
    raw = plaintext.encode("utf-8")
    if not 1 <= len(raw) <= 65535:
        raise ProtocolError("plaintext must be 1 to 65535 bytes")
    nonce = nonce or os.urandom(32)  # a given nonce only for the test vectors
    chacha_key, chacha_nonce, hmac_key = _keys(conversation_key, nonce)
    padded = len(raw).to_bytes(2, "big") + raw
    padded += b"\x00" * (2 + calc_padded_len(len(raw)) - len(padded))
    ciphertext = _chacha(chacha_key, chacha_nonce, padded)
    mac = _mac(hmac_key, nonce + ciphertext)
    return base64.b64encode(b"\x02" + nonce + ciphertext + mac).decode("ascii")


def nip44_decrypt(conversation_key, payload):
    if not payload or payload[0] == "#" or not 132 <= len(payload) <= 87472:
        raise ProtocolError("decrypt-failed: payload length or encoding")
    data = base64.b64decode(payload, validate=True)
    if not 99 <= len(data) <= 65603 or data[0] != 2:
        raise ProtocolError("decrypt-failed: version or length")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    chacha_key, chacha_nonce, hmac_key = _keys(conversation_key, nonce)
    if not std_hmac.compare_digest(_mac(hmac_key, nonce + ciphertext), mac):
        raise ProtocolError("decrypt-failed: mac")
    padded = _chacha(chacha_key, chacha_nonce, ciphertext)
    length = int.from_bytes(padded[0:2], "big")
    if length == 0 or len(padded) != 2 + calc_padded_len(length):
        raise ProtocolError("decrypt-failed: padding")
    return padded[2 : 2 + length].decode("utf-8")


# Topics (section 2).


def messages_topic(prefix, peer_id):
    return f"{prefix}/peers/{peer_id}/messages"


def presence_topic(prefix, peer_id):
    return f"{prefix}/peers/{peer_id}/presence"


def announce_topic(prefix):
    return f"{prefix}/peers/announce"


def sync_topic(prefix):
    return f"{prefix}/sync"


# Presence (section 6).


def presence(identity, name, status, since, topic_kind, reason=None):
    """A presence event of STATUS for the session SINCE; with REASON, a departure (20771)."""
    body = {
        "peer_id": identity.peer_id,
        "name": name,
        "software": "mlf-aiortc-interop/0.1",
        "protocol": PROTOCOL_VERSION,
        "capabilities": ["nip44-messages"],
        "status": status,
        "since": since,
    }
    if reason is not None:
        body["reason"] = reason
    kind = KIND_PRESENCE if reason is None else KIND_DEPARTURE
    created_at = max(int(time.time()), since)
    return identity.sign(kind, [["v", PROTOCOL_VERSION], ["t", topic_kind]], canonical(body), created_at)


# Addressed, encrypted events: peer messages, receipts (section 14), signals (16.1).


def addressed(identity, kind, recipient, plaintext):
    """A kind KIND event to RECIPIENT whose content is the NIP-44 of PLAINTEXT."""
    content = nip44_encrypt(identity.conversation_key(recipient), plaintext)
    return identity.sign(kind, [["v", PROTOCOL_VERSION], ["t", "message"], ["p", recipient]], content)


def open_addressed(identity, event, sender):
    """Check that EVENT is from SENDER and addressed to us; return its plaintext."""
    verify_event(event)
    if event["pubkey"] != sender:
        raise ProtocolError("not from the linked peer")
    if tag(event, "v") != PROTOCOL_VERSION:
        raise ProtocolError("protocol-version")
    if tag(event, "t") != "message" or tag(event, "p") != identity.peer_id:
        raise ProtocolError("wrong-topic")
    return nip44_decrypt(identity.conversation_key(sender), event["content"])


# Link hello (section 16.4).


def hello(identity, peer, session, fingerprint, peer_fingerprint):
    content = canonical(
        {"session": session, "fingerprint": fingerprint, "peer_fingerprint": peer_fingerprint}
    )
    return identity.sign(KIND_HELLO, [["v", PROTOCOL_VERSION], ["t", "link"], ["p", peer]], content)


def check_hello(identity, event, peer, session, fingerprint_seen, own_fingerprint):
    """Every check of section 16.4; raise ProtocolError naming the first that fails."""
    verify_event(event)
    if event["pubkey"] != peer:
        raise ProtocolError("hello signed by another key")
    if event["kind"] != KIND_HELLO:
        raise ProtocolError("hello of another kind")
    if tag(event, "v") != PROTOCOL_VERSION or tag(event, "t") != "link" or tag(event, "p") != identity.peer_id:
        raise ProtocolError("hello tags")
    body = json.loads(event["content"])
    if not isinstance(body, dict):
        raise ProtocolError("hello content is not a JSON object")
    if body.get("session") != session:
        raise ProtocolError("hello for another session")
    if not same_fingerprint(body.get("fingerprint"), fingerprint_seen):
        raise ProtocolError("hello names another certificate than the transport's")
    if not same_fingerprint(body.get("peer_fingerprint"), own_fingerprint):
        raise ProtocolError("hello names another certificate of ours")
    return body


def same_fingerprint(a, b):
    """Fingerprints compare case-insensitively (16.1)."""
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def sdp_fingerprint(sdp):
    """The first a=fingerprint:sha-256 line of SDP as "sha-256 AB:...", or None (16.1)."""
    for line in sdp.splitlines():
        if line.lower().startswith("a=fingerprint:sha-256 "):
            return "sha-256 " + line.split(" ", 1)[1].strip().upper()
    return None
