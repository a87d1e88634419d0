// Independent verifier of Nostr NIP-01 events, for cross-checking the native module.
//
// Reads one event (JSON) per line on standard input and prints one line per
// event on standard output: "ok" when the event's id is the SHA-256 of its
// NIP-01 canonical serialisation and its BIP-340 signature verifies, "bad"
// otherwise (the reason goes to standard error).  Shares no code with the
// module: Schnorr comes from @noble/curves (pure JavaScript, not
// libsecp256k1), SHA-256 from node:crypto, JSON from the JavaScript engine.
//
//   npm ci --prefix test/crosscheck
//   node test/crosscheck/verify.mjs < events.jsonl

import { createHash } from 'node:crypto';
import { schnorr } from '@noble/curves/secp256k1.js';

const FIELDS = ['content', 'created_at', 'id', 'kind', 'pubkey', 'sig', 'tags'];
const isHex = (s, n) => typeof s === 'string' && s.length === n && /^[0-9a-f]*$/.test(s);

function check(line) {
  let ev;
  try {
    ev = JSON.parse(line);
  } catch (e) {
    return `not JSON: ${e.message}`;
  }
  if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) return 'not an object';
  const keys = Object.keys(ev).sort();
  if (keys.join(',') !== FIELDS.join(',')) return `fields are ${keys.join(',')}`;
  if (!isHex(ev.id, 64) || !isHex(ev.pubkey, 64) || !isHex(ev.sig, 128)) return 'bad hex';
  if (!Number.isSafeInteger(ev.created_at) || ev.created_at < 0) return 'bad created_at';
  if (!Number.isInteger(ev.kind) || ev.kind < 0 || ev.kind > 65535) return 'bad kind';
  if (typeof ev.content !== 'string') return 'bad content';
  if (!Array.isArray(ev.tags)
      || !ev.tags.every((t) => Array.isArray(t) && t.every((s) => typeof s === 'string'))) {
    return 'bad tags';
  }
  // NIP-01: the id is sha256 of the UTF-8 JSON array, with JSON.stringify's escaping.
  const canonical = JSON.stringify([0, ev.pubkey, ev.created_at, ev.kind, ev.tags, ev.content]);
  const id = createHash('sha256').update(canonical, 'utf8').digest();
  if (id.toString('hex') !== ev.id) return `id mismatch (computed ${id.toString('hex')})`;
  let valid = false;
  try {
    valid = schnorr.verify(Buffer.from(ev.sig, 'hex'), id, Buffer.from(ev.pubkey, 'hex'));
  } catch (e) {
    return `schnorr: ${e.message}`;
  }
  return valid ? null : 'signature does not verify';
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const lines = input.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const out = lines.map((line, i) => {
    const why = check(line);
    if (why !== null) process.stderr.write(`line ${i + 1}: ${why}\n`);
    return why === null ? 'ok' : 'bad';
  });
  process.stdout.write(out.map((s) => `${s}\n`).join(''));
});
