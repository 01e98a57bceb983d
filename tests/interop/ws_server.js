'use strict';
// A Node `ws` WebSocketServer used as a tunnelscope backend by tests/interop.rs.
//
// Listens on 127.0.0.1 (a free port), negotiates permessage-deflate, picks the first
// subprotocol the client offers and echoes every message with its type. It reports on
// stdout, one line each:
//   listening PORT
//   connection path=PATH protocol=PROTO extensions=EXTS
//   close CODE
// It exits when stdin closes (its parent went away) or after a hard time limit.

const { WebSocketServer } = require('ws');

const LIMIT_MS = Number(process.env.INTEROP_LIMIT_MS || 30000);
setTimeout(() => {
  console.error('ws_server.js: time limit reached');
  process.exit(3);
}, LIMIT_MS);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: true,
  handleProtocols: (protocols) => protocols.values().next().value ?? false,
});

wss.on('listening', () => console.log(`listening ${wss.address().port}`));
wss.on('error', (e) => {
  console.error('ws_server.js:', e.message);
  process.exit(1);
});
wss.on('connection', (ws, req) => {
  console.log(
    `connection path=${req.url} protocol=${ws.protocol || '-'} extensions=${ws.extensions || '-'}`,
  );
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code) => console.log(`close ${code}`));
  ws.on('error', (e) => console.error('ws_server.js: connection error:', e.message));
});
