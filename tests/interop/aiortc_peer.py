#!/usr/bin/env python3
"""An independent WebRTC peer (Python aiortc) for tests/webrtc_aiortc.rs (transport only).

Speaks the link probe's signalling (examples/link_probe.rs: JSON on
meta-log-probe/SESSION/offerer|answerer over a real MQTT broker) and opens, or
accepts, the data channel labelled "meta-log-federation". The offerer sends
20 messages and expects each back; the answerer echoes them. Prints one JSON
report line like the probe's and exits 0 on success, 2 on failure.

Usage: aiortc_peer.py offerer|answerer HOST:PORT SESSION
"""

import asyncio
import json
import os
import sys
import time

import paho.mqtt.client as mqtt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

LABEL = "meta-log-federation"
ECHOES = 20


def fingerprint(sdp):
    """The first a=fingerprint of SDP, as "sha-256 AB:..." ."""
    for line in sdp.splitlines():
        if line.startswith("a=fingerprint:"):
            algorithm, value = line[len("a=fingerprint:"):].split(" ", 1)
            return f"{algorithm.lower()} {value.strip().upper()}"
    return None


async def main(role, broker, session):
    host, port = broker.rsplit(":", 1)
    mine, theirs = (role, "answerer" if role == "offerer" else "offerer")
    loop = asyncio.get_running_loop()
    inbox = asyncio.Queue()
    peer_ready = asyncio.Event()
    received = 0

    def on_message(_client, _userdata, msg):
        try:
            value = json.loads(msg.payload)
        except ValueError:
            return
        loop.call_soon_threadsafe(inbox.put_nowait, value)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"aiortc-{session}-{mine}")
    client.on_message = on_message
    client.connect(host, int(port))
    client.subscribe(f"meta-log-probe/{session}/{mine}", qos=1)
    client.loop_start()

    def send(obj):
        client.publish(f"meta-log-probe/{session}/{theirs}", json.dumps(obj), qos=1)

    # No ICE servers: aiortc would otherwise ask a public STUN server; everything stays local.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    opened = asyncio.Event()
    channel_box = {}
    messages = asyncio.Queue()

    def attach(channel):
        channel_box["channel"] = channel

        @channel.on("message")
        def on_message(message):
            messages.put_nowait(message if isinstance(message, bytes) else message.encode())

        if channel.readyState == "open":
            opened.set()

        @channel.on("open")
        def on_open():
            opened.set()

    @pc.on("datachannel")
    def on_datachannel(channel):
        if channel.label == LABEL:
            attach(channel)
            opened.set()

    async def hello():
        for _ in range(600):
            send({"type": "hello"})
            if peer_ready.is_set():
                send({"type": "hello"})
                return
            await asyncio.sleep(0.1)

    async def pump():
        nonlocal received
        while True:
            value = await inbox.get()
            peer_ready.set()
            kind = value.get("type")
            if kind in ("offer", "answer", "candidate", "end-of-candidates"):
                received += 1
            if kind == "offer" and role == "answerer":
                await pc.setRemoteDescription(RTCSessionDescription(value["sdp"], "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                # aiortc does not trickle: its description carries every candidate.
                send({"type": "answer", "sdp": pc.localDescription.sdp})
                send({"type": "end-of-candidates"})
            elif kind == "answer" and role == "offerer":
                await pc.setRemoteDescription(RTCSessionDescription(value["sdp"], "answer"))
            elif kind == "candidate":
                line = value["candidate"]
                if line.startswith("candidate:"):
                    line = line[len("candidate:"):]
                if not line:
                    continue
                candidate = candidate_from_sdp(line)
                candidate.sdpMid = value.get("sdpMid") or "0"
                candidate.sdpMLineIndex = value.get("sdpMLineIndex") or 0
                await pc.addIceCandidate(candidate)

    hello_task = asyncio.create_task(hello())
    pump_task = asyncio.create_task(pump())
    await asyncio.wait_for(peer_ready.wait(), 60)
    start = time.monotonic()
    if role == "offerer":
        attach(pc.createDataChannel(LABEL))
        await pc.setLocalDescription(await pc.createOffer())
        send({"type": "offer", "sdp": pc.localDescription.sdp})
        send({"type": "end-of-candidates"})

    report = {"ok": False, "signals_received": 0}
    try:
        await asyncio.wait_for(opened.wait(), 30)
        setup_ms = int((time.monotonic() - start) * 1000)
        channel = channel_box["channel"]
        echoed = 0
        for i in range(ECHOES):
            if role == "offerer":
                message = f"aiortc message {i}".encode()
                channel.send(message)
                reply = await asyncio.wait_for(messages.get(), 10)
                if reply != message:
                    break
            else:
                message = await asyncio.wait_for(messages.get(), 10)
                channel.send(message)
            echoed += 1
        report = {
            "ok": echoed == ECHOES,
            "echoed": echoed,
            "setup_ms": setup_ms,
            "local_fingerprint": fingerprint(pc.localDescription.sdp),
            "remote_fingerprint": fingerprint(pc.remoteDescription.sdp),
        }
        await asyncio.sleep(0.5)
    except (asyncio.TimeoutError, KeyError) as error:
        report = {"ok": False, "error": f"no open data channel: {error!r}"}
    report["signals_received"] = received
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 2


async def bounded(role, broker, session):
    """Run `main`, reporting a failure rather than hanging past 90 s."""
    try:
        return await asyncio.wait_for(main(role, broker, session), 90)
    except asyncio.TimeoutError:
        print(json.dumps({"ok": False, "error": "aiortc peer gave up after 90 s"}), flush=True)
        return 2


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("offerer", "answerer"):
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    code = asyncio.run(bounded(*sys.argv[1:]))
    # Not waiting for aiortc's and paho's teardown: the report is out, the test reads it.
    sys.stdout.flush()
    os._exit(code)
