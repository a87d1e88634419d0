#!/usr/bin/env python3
"""Check mlf_protocol.py against published data, not against the Rust code.

* The official NIP-44 v2 test vectors (conversation keys, padding,
  encryption with a given nonce both ways, and every invalid payload and
  key refused).
* The example events of docs/PROTOCOL.md section 13: each id is the hash of
  our canonical serialisation, each signature verifies, and event 1's
  canonical text is the one the document prints.

Usage: self_test.py NIP44-VECTORS.json PROTOCOL.md
Prints "OK N checks" and exits 0, or names the first failure and exits 1.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlf_protocol as proto  # noqa: E402


def nip44(vectors, check):
    v = vectors["v2"]
    for c in v["valid"]["get_conversation_key"]:
        ck = proto.Identity(bytes.fromhex(c["sec1"])).conversation_key(c["pub2"])
        check(ck.hex() == c["conversation_key"], f"conversation key {c['sec1'][:8]}")
    for length, padded in v["valid"]["calc_padded_len"]:
        check(proto.calc_padded_len(length) == padded, f"padded length of {length}")
    for c in v["valid"]["encrypt_decrypt"]:
        ck = bytes.fromhex(c["conversation_key"])
        payload = proto.nip44_encrypt(ck, c["plaintext"], bytes.fromhex(c["nonce"]))
        check(payload == c["payload"], f"encrypt {c['plaintext'][:20]!r}")
        check(proto.nip44_decrypt(ck, c["payload"]) == c["plaintext"], "decrypt")
        other = proto.Identity(bytes.fromhex(c["sec2"])).conversation_key(
            proto.Identity(bytes.fromhex(c["sec1"])).peer_id
        )
        check(other == ck, "the conversation key is the same both ways")
    for c in v["invalid"]["decrypt"]:
        try:
            proto.nip44_decrypt(bytes.fromhex(c["conversation_key"]), c["payload"])
            check(False, f"invalid payload accepted ({c['note']})")
        except (proto.ProtocolError, ValueError):
            check(True, "")
    for c in v["invalid"]["get_conversation_key"]:
        try:
            proto.Identity(bytes.fromhex(c["sec1"])).conversation_key(c["pub2"])
            check(False, f"invalid key accepted ({c['note']})")
        except (ValueError, TypeError):
            check(True, "")


def examples(doc, check):
    section = doc.split("## 13. Example events", 1)[1].split("\n## 14.", 1)[0]
    events = [
        json.loads(block)
        for block in re.findall(r"```json\n(.*?)\n```", section, re.S)
        if '"sig"' in block
    ]
    check(len(events) >= 4, "section 13 has example events")
    for event in events:
        try:
            proto.verify_event(event, check_age=False)
            check(True, "")
        except proto.ProtocolError as error:
            check(False, f"example event {event['id'][:12]}: {error}")
    canonical = re.search(r"Canonical serialisation of event 1.*?```text\n(.*?)\n```", section, re.S)
    first = events[0]
    check(
        canonical
        and canonical.group(1)
        == proto.canonical(
            [0, first["pubkey"], first["created_at"], first["kind"], first["tags"], first["content"]]
        ),
        "event 1's canonical serialisation is the document's",
    )


def main(vectors_file, doc_file):
    count = 0

    def check(ok, what):
        nonlocal count
        if not ok:
            print(f"FAILED: {what}")
            sys.exit(1)
        count += 1

    with open(vectors_file, encoding="utf-8") as f:
        nip44(json.load(f), check)
    with open(doc_file, encoding="utf-8") as f:
        examples(f.read(), check)
    print(f"OK {count} checks")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    main(*sys.argv[1:])
