#!/usr/bin/env python3
"""A federation peer in Python (aiortc) that links to an Emacs peer as docs/PROTOCOL.md says.

It has its own secp256k1 identity, announces itself with signed presence on
the real MQTT topics (sections 2 and 6), signals a WebRTC data channel with
kind 4774 events encrypted with NIP-44 v2 (16.1), sends and checks the hello
(16.4), then exchanges signed peer messages and receipts with the Emacs peer
as `event` frames (16.3, 16.5), answering pings.  Its protocol knowledge is
mlf_protocol.py, written from the document alone.

Usage:
  federation_peer.py --broker HOST:PORT --emacs PEER-ID --order smaller|larger
                     [--prefix canvasl] [--send N] [--expect N]
                     [--hello good|wrong-fingerprint] [--initiate] [--foreign]
                     [--transport webrtc|tcp]

--order picks a key whose peer id is smaller or larger than the Emacs
peer's, so the glare rule (the smaller id offers) makes this peer the
offerer or the answerer.  With --initiate it asks for the link itself once
online: the offerer offers unasked, the answerer sends `request`.  With
--foreign, before its own messages it sends over the link a peer message
signed by another key ("foreign-signer") and one of its own for a topic that
is not the Emacs peer's ("foreign-topic"): the Emacs peer must drop both.
With --transport tcp it has no WebRTC: it links by the TCP fallback (16.2,
tls_link.py), always dialling the Emacs peer's listener.  Lines on stdout, for the driving test:
  PEER ID          the key is made; connects after reading "go" on stdin
  ONLINE           connected, presence published
  SIGNAL TYPE      a link signal accepted from the Emacs peer
  HELLO-OK S       the Emacs peer's hello for session S passed every check
  HELLO-BAD WHY    it did not (the link is closed)
  SENT N           N peer messages sent as frames on the data channel
  GOT TEXT         a peer message from the Emacs peer, over the link
  BROKER TEXT      a peer message from the Emacs peer that came through the broker
  ACKED N          receipts over the link acknowledged N of our messages
  CLOSED WHY       the link closed
  REFUSED WHY      a frame refused
  DONE JSON        the final report, after "quit" on stdin (or stdin closing),
                   once its departure is published
"""

import argparse
import asyncio
import json
import os
import sys
import time

import paho.mqtt.client as mqtt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlf_protocol as proto  # noqa: E402
from tls_link import TcpLink  # noqa: E402

LABEL = "meta-log-federation"
SIGNAL_TYPES = {
    "request",
    "offer",
    "answer",
    "candidate",
    "end-of-candidates",
    "tcp-offer",
    "tcp-answer",
    "close",
}


def say(*words):
    print(*words, flush=True)


def make_identity(emacs, order):
    """A fresh key whose peer id is ORDER ("smaller"/"larger") than EMACS."""
    while True:
        identity = proto.Identity()
        if (identity.peer_id < emacs) == (order == "smaller"):
            return identity


class Link:
    """One signalling session and its RTCPeerConnection."""

    path = "webrtc"

    def __init__(self, session):
        self.session = session
        self.started = time.monotonic()
        self.setup_ms = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = None
        self.pending = []  # remote candidates that came before the remote description
        self.have_remote = False
        self.hello_ok = False
        self.closed = False

    def fingerprints(self):
        """(ours, theirs) as the two SDPs name them; aiortc's DTLS enforces the remote one."""
        return (
            proto.sdp_fingerprint(self.pc.localDescription.sdp),
            proto.sdp_fingerprint(self.pc.remoteDescription.sdp),
        )

    def is_open(self):
        return self.channel is not None and self.channel.readyState == "open"

    def send(self, text):
        self.channel.send(text)

    async def shutdown(self):
        await self.pc.close()


class Peer:
    def __init__(self, args, identity):
        self.args = args
        self.me = identity
        self.emacs = args.emacs
        self.prefix = args.prefix
        self.offerer = identity.peer_id < args.emacs
        self.link = None
        self.loop = asyncio.get_running_loop()
        self.inbox = asyncio.Queue()
        self.sent_ids = set()
        self.acked = set()
        self.got = []
        self.via_broker = []
        self.refused = []  # events of the Emacs peer that failed a check
        self.ignored = 0  # payloads on our topic that are not events of the Emacs peer
        self.hellos = {"ok": 0, "bad": 0}
        self.signals = {}
        self.setup_ms = None
        self.since = int(time.time())
        self.mqtt = None

    # MQTT (sections 1, 2, 6, 14).

    def connect(self):
        host, port = self.args.broker.rsplit(":", 1)
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="mlf" + self.me.peer_id[:20],
            clean_session=False,
        )
        will = proto.presence(self.me, self.args.name, "offline", self.since, "presence")
        client.will_set(
            proto.presence_topic(self.prefix, self.me.peer_id),
            proto.event_json(will),
            qos=1,
            retain=True,
        )
        client.on_connect = self.on_connect
        client.on_message = self.on_message
        client.connect(host, int(port), keepalive=30)
        client.loop_start()
        self.mqtt = client

    async def initiate(self):
        """Ask for a link: offer when the glare rule says we offer, else `request` (16.1)."""
        if self.offerer:
            await self.start_session()
        else:
            # Any fresh id: the offerer ignores it and starts its own session.
            self.publish_signal({"type": "request"}, session=os.urandom(16).hex())

    def on_connect(self, client, _userdata, _flags, _reason, _properties):
        client.subscribe(
            [
                (f"{self.prefix}/peers/+/presence", 0),
                (proto.announce_topic(self.prefix), 1),
                (proto.sync_topic(self.prefix), 1),
                (proto.messages_topic(self.prefix, self.me.peer_id), 1),
            ]
        )
        for topic, kind, retain in (
            (proto.presence_topic(self.prefix, self.me.peer_id), "presence", True),
            (proto.announce_topic(self.prefix), "announce", False),
        ):
            event = proto.presence(self.me, self.args.name, "online", self.since, kind)
            client.publish(topic, proto.event_json(event), qos=1, retain=retain)
        self.loop.call_soon_threadsafe(say, "ONLINE")
        if self.args.initiate:
            asyncio.run_coroutine_threadsafe(self.initiate(), self.loop)

    def depart(self):
        """A clean shutdown (section 6): a retained departure, then DISCONNECT (no will)."""
        event = proto.presence(
            self.me, self.args.name, "offline", self.since, "presence", reason="shutdown"
        )
        info = self.mqtt.publish(
            proto.presence_topic(self.prefix, self.me.peer_id),
            proto.event_json(event),
            qos=1,
            retain=True,
        )
        info.wait_for_publish(5)
        self.mqtt.disconnect()

    def on_message(self, _client, _userdata, msg):
        if msg.topic == proto.messages_topic(self.prefix, self.me.peer_id):
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, msg.payload)

    def publish_signal(self, body, session=None):
        body = dict(body, session=session or self.link.session)
        event = proto.addressed(self.me, proto.KIND_SIGNAL, self.emacs, proto.canonical(body))
        self.mqtt.publish(
            proto.messages_topic(self.prefix, self.emacs), proto.event_json(event), qos=1
        )

    # Signalling (16.1).

    async def pump(self):
        while True:
            payload = await self.inbox.get()
            try:
                event = json.loads(payload)
            except ValueError:
                # Not an event at all (the test's mosquitto_sub probes land here too).
                self.ignored += 1
                continue
            if not isinstance(event, dict) or event.get("pubkey") != self.emacs:
                self.ignored += 1
                continue
            try:
                plaintext = proto.open_addressed(self.me, event, self.emacs)
            except (ValueError, proto.ProtocolError) as error:
                self.refused.append(f"mqtt: {error}")
                continue
            if event["kind"] == proto.KIND_MESSAGE:
                self.via_broker.append(plaintext)
                say("BROKER", plaintext)
            elif event["kind"] == proto.KIND_SIGNAL:
                try:
                    await self.on_signal(json.loads(plaintext))
                except Exception as error:  # report, keep serving
                    self.refused.append(f"signal: {error!r}")
                    say("REFUSED", f"signal: {error!r}")

    async def on_signal(self, body):
        kind, session = body.get("type"), body.get("session")
        if kind not in SIGNAL_TYPES or not isinstance(session, str):
            raise proto.ProtocolError(f"malformed signal {body!r}")
        self.signals[kind] = self.signals.get(kind, 0) + 1
        say("SIGNAL", kind)
        if kind == "request":
            if self.offerer and not (self.link and not self.link.closed and self.link.is_open()):
                await self.start_session()
        elif kind == "tcp-offer" and not self.offerer:
            await self.answer_tcp(body)
        elif kind == "offer" and self.args.transport == "tcp":
            return  # without WebRTC: wait for the tcp-offer (16.1)
        elif kind == "offer":
            if self.offerer:
                # Glare: only the smaller id offers; the Emacs peer should never do this.
                self.refused.append("glare: an offer from the larger peer id")
                return
            await self.new_link(session)
            await self.set_remote(body["sdp"], "offer")
            await self.link.pc.setLocalDescription(await self.link.pc.createAnswer())
            # aiortc gathers before returning: its SDP carries every candidate.
            self.publish_signal({"type": "answer", "sdp": self.link.pc.localDescription.sdp})
            self.publish_signal({"type": "end-of-candidates"})
        elif not self.link or session != self.link.session:
            return  # stale-session
        elif kind == "answer" and self.offerer:
            await self.set_remote(body["sdp"], "answer")
        elif kind == "tcp-answer" and self.offerer and isinstance(self.link, TcpLink):
            self.link.signalled_fp = body.get("fingerprint")
            if body.get("addr"):
                self.dial(self.link, body["addr"])
            else:
                await self.close_link("neither side listens (this peer never does)")
        elif kind == "candidate":
            candidate = self.candidate(body)
            if self.link.have_remote:
                await self.link.pc.addIceCandidate(candidate)
            else:
                self.link.pending.append(candidate)
        elif kind == "end-of-candidates":
            if self.link.have_remote:
                await self.link.pc.addIceCandidate(None)
            else:
                self.link.pending.append(None)
        elif kind == "close":
            await self.close_link(f"peer closed: {body.get('reason')}", notify=False)

    def candidate(self, body):
        line = body["candidate"]
        if line.startswith("candidate:"):
            line = line[len("candidate:") :]
        candidate = candidate_from_sdp(line)
        candidate.sdpMid = body.get("sdp_mid")
        candidate.sdpMLineIndex = body.get("sdp_mline_index")
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        return candidate

    async def set_remote(self, sdp, kind):
        await self.link.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
        self.link.have_remote = True
        for candidate in self.link.pending:
            await self.link.pc.addIceCandidate(candidate)
        self.link.pending = []

    async def new_link(self, session):
        if self.link:
            await self.close_link("replaced by a new session", notify=False)
        self.link = Link(session)
        link = self.link

        @link.pc.on("datachannel")
        def on_datachannel(channel):
            if channel.label == LABEL:
                self.attach(link, channel)

        @link.pc.on("connectionstatechange")
        async def on_state():
            if link.pc.connectionState in ("failed", "closed") and not link.closed:
                await self.close_link(f"connection {link.pc.connectionState}", link=link)

        return link

    async def start_session(self):
        """Start a session as the offerer, by WebRTC or, without it, by the TCP fallback."""
        if self.args.transport == "tcp":
            if self.link:
                await self.close_link("replaced by a new session", notify=False)
            self.link = TcpLink(os.urandom(16).hex())
            # We never listen: the answerer's tcp-answer must name its listener.
            self.publish_signal({"type": "tcp-offer", "fingerprint": self.link.own_fp, "addr": None})
        else:
            await self.start_offer()

    async def answer_tcp(self, body):
        """Answer a tcp-offer; the offerer listens, so we dial it (16.1)."""
        if self.link:
            await self.close_link("replaced by a new session", notify=False)
        self.link = TcpLink(body["session"])
        self.link.signalled_fp = body.get("fingerprint")
        self.publish_signal({"type": "tcp-answer", "fingerprint": self.link.own_fp, "addr": None})
        if body.get("addr"):
            self.dial(self.link, body["addr"])
        else:
            await self.close_link("neither side listens (this peer never does)")

    def dial(self, link, addr):
        async def failed(why):
            await self.close_link(why, link=link)

        async def frame(data):
            await self.on_frame(link, data)

        self.loop.create_task(link.dial(addr, lambda: self.on_open(link), frame, failed))

    async def start_offer(self):
        link = await self.new_link(os.urandom(16).hex())
        self.attach(link, link.pc.createDataChannel(LABEL))
        await link.pc.setLocalDescription(await link.pc.createOffer())
        self.publish_signal({"type": "offer", "sdp": link.pc.localDescription.sdp})
        self.publish_signal({"type": "end-of-candidates"})

    async def close_link(self, why, notify=True, link=None):
        link = link or self.link
        if not link or link.closed:
            return
        link.closed = True
        say("CLOSED", why)
        if notify and link is self.link:
            try:
                self.publish_signal({"type": "close", "reason": why})
            except Exception:
                pass
        await link.shutdown()

    # The data channel: frames (16.3), hello (16.4), events (16.5).

    def attach(self, link, channel):
        link.channel = channel

        if channel.readyState == "open":
            self.on_open(link)
        else:
            channel.on("open", lambda: self.on_open(link))

        @channel.on("message")
        def on_message(message):
            self.loop.create_task(self.on_frame(link, message))

    def on_open(self, link):
        """The channel is open: our hello goes first (16.4)."""
        ours, theirs = link.fingerprints()
        if self.args.hello == "wrong-fingerprint":
            # A certificate that is not the one the transport presented.
            ours = "sha-256 " + ":".join(f"{b:02X}" for b in os.urandom(32))
        event = proto.hello(self.me, self.emacs, link.session, ours, theirs)
        self.send_frame(link, {"type": "hello", "event": event})
        if self.args.hello != "good":
            # What a forger would try next: events on a link that never verified,
            # queued on the channel right behind the hello.
            self.send_messages(link)

    def send_frame(self, link, frame):
        link.send(proto.canonical(frame))

    async def on_frame(self, link, message):
        if link.closed:
            return
        try:
            frame = json.loads(message)
            if not isinstance(frame, dict):
                raise proto.ProtocolError("a frame that is not a JSON object")
        except (ValueError, proto.ProtocolError) as error:
            return await self.close_link(f"bad frame: {error}", link=link)
        kind = frame.get("type")
        if not link.hello_ok:
            if kind != "hello":
                self.hellos["bad"] += 1
                say("HELLO-BAD", f"{kind} before the hello")
                return await self.close_link("bad-hello", link=link)
            ours, theirs = link.fingerprints()
            try:
                proto.check_hello(self.me, frame.get("event"), self.emacs, link.session, theirs, ours)
            except (proto.ProtocolError, ValueError, TypeError) as error:
                self.hellos["bad"] += 1
                say("HELLO-BAD", error)
                return await self.close_link("bad-hello", link=link)
            link.hello_ok = True
            link.setup_ms = int((time.monotonic() - link.started) * 1000)
            self.setup_ms = link.setup_ms
            self.hellos["ok"] += 1
            say("HELLO-OK", link.session)
            if self.args.hello == "good":
                self.send_messages(link)
        elif kind == "ping":
            self.send_frame(link, {"type": "pong", "nonce": frame.get("nonce")})
        elif kind == "pong":
            pass
        elif kind == "close":
            await self.close_link(f"peer closed: {frame.get('reason')}", notify=False, link=link)
        elif kind == "event":
            self.on_event(link, frame)
        else:
            await self.close_link(f"unknown frame type {kind!r}", link=link)

    def on_event(self, link, frame):
        topic = frame.get("topic")
        try:
            event = json.loads(frame.get("payload"))
            if topic == proto.sync_topic(self.prefix):
                return  # addressed sync traffic: this peer has no shares
            if topic != proto.messages_topic(self.prefix, self.me.peer_id):
                raise proto.ProtocolError(f"link-foreign topic {topic}")
            plaintext = proto.open_addressed(self.me, event, self.emacs)
        except (ValueError, TypeError, proto.ProtocolError) as error:
            self.refused.append(f"frame: {error}")
            say("REFUSED", f"frame: {error}")
            return
        if event["kind"] == proto.KIND_MESSAGE:
            self.got.append(plaintext)
            say("GOT", plaintext)
            receipt = proto.addressed(
                self.me, proto.KIND_RECEIPT, self.emacs, proto.canonical({"ack": [event["id"]]})
            )
            self.send_event(link, receipt)
        elif event["kind"] == proto.KIND_RECEIPT:
            try:
                body = json.loads(plaintext)
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("ack"), list):
                self.refused.append("frame: a receipt that is not {\"ack\":[...]}")
                return
            for acked in body["ack"]:
                if acked in self.sent_ids:
                    self.acked.add(acked)
            say("ACKED", len(self.acked))

    def send_event(self, link, event):
        self.send_frame(
            link,
            {
                "type": "event",
                "topic": proto.messages_topic(self.prefix, self.emacs),
                "payload": proto.event_json(event),
            },
        )

    def send_foreign(self, link):
        """Frames that 16.5 says to drop (link-foreign), on a link that verified."""
        stranger = proto.Identity()
        event = proto.addressed(stranger, proto.KIND_MESSAGE, self.emacs, "foreign-signer")
        self.send_event(link, event)
        event = proto.addressed(self.me, proto.KIND_MESSAGE, self.emacs, "foreign-topic")
        self.send_frame(
            link,
            {
                "type": "event",
                "topic": proto.messages_topic(self.prefix, stranger.peer_id),
                "payload": proto.event_json(event),
            },
        )

    def send_messages(self, link):
        if self.args.foreign:
            self.send_foreign(link)
        for i in range(self.args.send):
            if link.closed or not link.is_open():
                break
            event = proto.addressed(self.me, proto.KIND_MESSAGE, self.emacs, f"from-python-{i}")
            self.sent_ids.add(event["id"])
            self.send_event(link, event)
        say("SENT", len(self.sent_ids))

    def report(self):
        return {
            "peer_id": self.me.peer_id,
            "role": "offerer" if self.offerer else "answerer",
            "transport": self.args.transport,
            "hellos": self.hellos,
            "signals": self.signals,
            "setup_ms": self.setup_ms,
            "sent": len(self.sent_ids),
            "acked": len(self.acked),
            "got": len(self.got),
            "via_broker": len(self.via_broker),
            "refused": self.refused,
            "ignored": self.ignored,
        }


async def read_line():
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def main(args):
    identity = make_identity(args.emacs, args.order)
    say("PEER", identity.peer_id)
    if await read_line() != "go":
        return 1
    peer = Peer(args, identity)
    peer.connect()
    pump = asyncio.create_task(peer.pump())
    while await read_line() not in ("quit", ""):
        pass
    pump.cancel()
    if peer.link:
        if peer.link.is_open():
            peer.send_frame(peer.link, {"type": "close", "reason": "quit"})
        await peer.close_link("quit")
    peer.depart()
    say("DONE", json.dumps(peer.report()))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--emacs", required=True)
    parser.add_argument("--order", choices=("smaller", "larger"), required=True)
    parser.add_argument("--prefix", default="canvasl")
    parser.add_argument("--name", default="aiortc-python")
    parser.add_argument("--send", type=int, default=20)
    parser.add_argument("--hello", choices=("good", "wrong-fingerprint"), default="good")
    parser.add_argument("--initiate", action="store_true")
    parser.add_argument("--foreign", action="store_true")
    parser.add_argument("--transport", choices=("webrtc", "tcp"), default="webrtc")
    code = asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    # Not waiting for aiortc's and paho's teardown threads: the report is out.
    os._exit(code)
