'use strict';
// A Node `ws` client driven by tests/interop.rs: node ws_client.js URL [CA_PEM] [--more]
//
// Connects offering subprotocols chat.v2 and chat.v1 and permessage-deflate, trusting
// only CA_PEM when given (verification stays on). Sends text and binary messages, small
// and large (large ones are compressed, RSV1), and checks each echo; --more adds
// non-ASCII text, small and large, and a larger binary message after the usual four.
// Reports on stdout:
//   protocol PROTO
//   extensions EXTS
//   echo text|binary BYTES ok     (one per message; BYTES as sent, UTF-8 for text)
//   ready                         (then waits for "close" on stdin)
//   closed CODE
// Any failure prints "error CODE MESSAGE" and exits 1; a hard time limit exits 3.

const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');

const LIMIT_MS = Number(process.env.INTEROP_LIMIT_MS || 30000);
setTimeout(() => {
  console.log('error TIMEOUT time limit reached');
  process.exit(3);
}, LIMIT_MS);

function fail(code, message) {
  console.log(`error ${code} ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith('--')));
const [url, caPath] = args.filter((a) => !a.startsWith('--'));
const options = { perMessageDeflate: true, handshakeTimeout: 10000 };
if (caPath) options.ca = fs.readFileSync(caPath);

// [isBinary, payload]
const messages = [
  [false, 'hello from node'],
  [false, 'tunnelscope relays compressed text. '.repeat(120)],
  [true, Buffer.from([0, 1, 2, 253, 254, 255])],
  [true, Buffer.from(Array.from({ length: 8192 }, (_, i) => i % 16))],
];
if (flags.has('--more')) {
  messages.push(
    [false, 'héllo ✓ 🌍 from node'],
    [false, 'ünïcødé ✓ 🚀 deflated through tunnelscope. '.repeat(200)],
    [true, Buffer.from(Array.from({ length: 262144 }, (_, i) => (i * 7) % 256))],
  );
}

const ws = new WebSocket(url, ['chat.v2', 'chat.v1'], options);
ws.on('error', (e) => fail(e.code || 'ERROR', e.message));

const incoming = [];
let waiting = null;
ws.on('message', (data, isBinary) => {
  const m = [isBinary, data];
  if (waiting) {
    const w = waiting;
    waiting = null;
    w(m);
  } else {
    incoming.push(m);
  }
});
const next = () =>
  incoming.length ? Promise.resolve(incoming.shift()) : new Promise((r) => (waiting = r));

ws.on('close', (code) => {
  console.log(`closed ${code}`);
  process.exit(0);
});

ws.on('open', async () => {
  console.log(`protocol ${ws.protocol || '-'}`);
  console.log(`extensions ${ws.extensions || '-'}`);
  for (const [isBinary, payload] of messages) {
    ws.send(payload, { binary: isBinary });
    const [gotBinary, got] = await next();
    const want = Buffer.from(payload);
    if (gotBinary !== isBinary) fail('ECHO', `type changed: sent binary=${isBinary}`);
    if (!Buffer.from(got).equals(want)) fail('ECHO', `payload of ${want.length} bytes changed`);
    console.log(`echo ${isBinary ? 'binary' : 'text'} ${want.length} ok`);
  }
  console.log('ready');
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === 'close') ws.close(1000, 'done');
  });
});
