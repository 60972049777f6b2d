// SPDX-License-Identifier: MIT
// Reference control plane for agentbroker-mcp --tunnel (docs/tunnel.md): an HTTPS server with a
// WebSocket endpoint (the `ws` package, subprotocol "mcp") that accepts the sandbox's dial only
// with a valid dial JWT (EdDSA, verified against the sandbox's registered public key: iss,
// aud = our URL, exp <= 60 s ahead and not past, jti never seen before), and an MCP SDK Client
// that drives calls over TunnelTransport, a small custom Transport that survives reconnects of
// one session: requests not yet answered are sent again on the new connection, and a second
// response to the same request id (a queued result and the answer to the re-send) is dropped.
import crypto from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';

export const IDEMPOTENCY_KEY = 'io.agentbroker/idempotencyKey';

function b64url(s) {
  return Buffer.from(s, 'base64url');
}

// The JOSE typ only the broker's identity-jwt sets (docs/tunnel.md): a JWT a tool minted with
// mint-jwt has typ "JWT", even when signed with a copy of the identity key.
export const DIAL_TYP = 'agentbroker-dial+jwt';

// The dial-specific checks of a verified JWT: the dial typ, iss and sub present, sub = iss (the
// sandbox id) and, when the sandbox is known, iss = it. Returns null when good, else the reason.
export function dialClaimsProblem(header, claims, issuer) {
  if (header.typ !== DIAL_TYP) return 'typ';
  if (typeof claims.iss !== 'string' || !claims.iss || typeof claims.sub !== 'string') return 'issuer';
  if (claims.sub !== claims.iss) return 'subject';
  if (issuer && claims.iss !== issuer) return 'issuer';
  return null;
}

// Verify a dial JWT. Returns null when good, else the reason.
export function verifyJwt(token, { publicKey, audience, issuer, seen, now = Date.now() / 1000 }) {
  const parts = (token || '').split('.');
  if (parts.length !== 3) return 'malformed';
  let header, claims;
  try {
    header = JSON.parse(b64url(parts[0]).toString());
    claims = JSON.parse(b64url(parts[1]).toString());
  } catch {
    return 'malformed';
  }
  if (header.alg !== 'EdDSA') return 'alg';
  if (!crypto.verify(null, Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, b64url(parts[2]))) return 'signature';
  if (claims.aud !== audience) return 'audience';
  const dial = dialClaimsProblem(header, claims, issuer);
  if (dial) return dial;
  if (typeof claims.exp !== 'number' || claims.exp <= now) return 'expired';
  if (claims.exp > now + 61) return 'lifetime';
  if (typeof claims.jti !== 'string' || seen.has(claims.jti)) return 'replayed';
  seen.add(claims.jti);
  return null;
}

// A Transport over whichever WebSocket of the session is current.
export class TunnelTransport {
  constructor() {
    this.ws = null;
    this.pending = new Map(); // id -> request message, sent and not yet answered
    this.answered = new Set();
    this.queue = []; // messages sent while disconnected (not requests)
    this.raw = new Map(); // id -> resolve, for request()
    this.errors = 0; // WebSocket errors (an invalid UTF-8 message is one)
    this.invalid = 0; // messages that were not UTF-8 JSON
    this.received = 0;
    this.hellos = 0;
  }
  async start() {}
  attach(ws) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      this.received++;
      let msg;
      try {
        if (isBinary) throw new Error('a binary message');
        // ws has checked that a text message is UTF-8 (it fails the connection otherwise);
        // check again here, so that a message the sandbox garbled is counted either way.
        msg = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
      } catch (e) {
        this.invalid++;
        this.lastInvalid = `${e.message}: ${Buffer.from(data).subarray(0, 80).toString('hex')}`;
        this.onerror?.(e);
        return;
      }
      if ('id' in msg && !('method' in msg)) {
        if (!this.pending.has(msg.id)) return; // a duplicate (queued result + answer to the re-send)
        this.pending.delete(msg.id);
        const resolve = this.raw.get(msg.id);
        if (resolve) {
          this.raw.delete(msg.id);
          resolve(msg);
          return;
        }
      }
      this.onmessage?.(msg);
    });
    ws.on('error', (e) => {
      this.errors++;
      this.lastError = e.message;
      ws.terminate();
    });
    ws.on('close', () => {
      if (this.ws === ws) this.ws = null;
    });
    for (const m of this.pending.values()) ws.send(JSON.stringify(m));
    for (const m of this.queue.splice(0)) ws.send(JSON.stringify(m));
    // Every connection gets a message at once, even when nothing is waiting: the host drops a
    // dial whose control plane says nothing after the upgrade (its first-message deadline).
    // The answer is dropped like a duplicate (its id is not pending).
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: `hello-${++this.hellos}`, method: 'ping' }));
  }
  // Send a JSON-RPC request outside the SDK Client (it is re-sent after a reconnect like the
  // Client's); resolves with the response message. Use ids the Client does not (strings).
  request(message) {
    return new Promise((resolve) => {
      this.raw.set(message.id, resolve);
      this.send(message);
    });
  }
  async send(message) {
    // A cancelled request is not re-sent after a reconnect.
    if (message.method === 'notifications/cancelled') this.pending.delete(message.params?.requestId);
    if ('method' in message && 'id' in message) this.pending.set(message.id, message);
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(message));
    else if (!('id' in message && 'method' in message)) this.queue.push(message);
  }
  async close() {
    this.ws?.close();
    this.onclose?.();
  }
}

// Start the control plane on port (0: any) of 127.0.0.1. opts: key, cert (PEM), publicKey
// (a KeyObject), issuer, path. Returns { url, port, client, transport, connections, rejections,
// setMode(mode), stallNext(stage), close() }. mode: 'ok' | 'expired' (judge JWTs a minute later) |
// 'audience' (expect another audience) | 'down' (refuse every upgrade with 503).
// stallNext(stage): the next connection that reaches stage goes silent there and stays open
// (state.stalls gets { stage, at }, at = when the stage began for the sandbox): 'accept' (the
// TCP connection accepted, nothing read or sent), 'tls' (the ClientHello answered with the first
// TLS_STALL_BYTES bytes of the server's flight only), 'upgrade' (the upgrade request read, never
// answered), 'first-message' (101 sent, then no MCP message).
export const TLS_STALL_BYTES = 120;
export async function startControlPlane(opts) {
  const server = https.createServer({ key: opts.key, cert: opts.cert });
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (protos) => (protos.has('mcp') ? 'mcp' : false) });
  const seen = new Set();
  const state = { mode: 'ok', connections: [], rejections: [], sessions: new Set() };
  const transport = new TunnelTransport();
  await new Promise((res) => server.listen(opts.port || 0, '127.0.0.1', res));
  const port = server.address().port;
  const url = opts.url || `wss://127.0.0.1:${port}${opts.path || '/mcp'}`;
  state.stalls = [];
  state.stallNext = null;
  const held = new Set();
  const stallHere = (stage, hold) => {
    if (state.stallNext !== stage) return false;
    state.stallNext = null;
    state.stalls.push({ stage, at: Date.now() });
    held.add(hold);
    hold.on('error', () => {}).on('close', () => held.delete(hold));
    return true;
  };
  // The TLS server's own 'connection' listener runs only for connections not stalled here.
  const tlsListeners = server.listeners('connection');
  server.removeAllListeners('connection');
  server.on('connection', (sock) => {
    sock.on('error', () => {});
    if (stallHere('accept', sock)) return;
    if (stallHere('tls', sock)) {
      // Relay to this server's TLS (the stall is consumed: that connection is served), and
      // pass the first TLS_STALL_BYTES of its answer back, then nothing either way.
      const up = net.connect(port, '127.0.0.1');
      let down = 0;
      held.add(up);
      up.on('error', () => {}).on('close', () => held.delete(up));
      sock.on('data', (d) => down < TLS_STALL_BYTES && up.write(d));
      up.on('data', (d) => {
        if (down < TLS_STALL_BYTES) sock.write(d.subarray(0, TLS_STALL_BYTES - down));
        down += d.length;
      });
      return;
    }
    for (const l of tlsListeners) l.call(server, sock);
  });
  server.on('upgrade', (req, socket, head) => {
    if (stallHere('upgrade', socket)) return;
    const reject = (status, reason) => {
      state.rejections.push({ at: Date.now(), reason });
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Service Unavailable'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (state.mode === 'down') return reject(503, 'down');
    const auth = req.headers.authorization || '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    const why = verifyJwt(token, {
      publicKey: opts.publicKey,
      audience: state.mode === 'audience' ? 'wss://elsewhere.example/mcp' : (state.audience || opts.audience || url),
      issuer: opts.issuer,
      seen: state.mode === 'replay' ? new Set([JSON.parse(b64url(token.split('.')[1] || '').toString() || '{}').jti]) : seen,
      now: Date.now() / 1000 + (state.mode === 'expired' ? 120 : 0),
    });
    state.lastToken = token;
    if (why) return reject(401, why);
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (stallHere('first-message', ws)) return;
      const session = req.headers['agentbroker-session'];
      state.sessions.add(session);
      state.connections.push({ at: Date.now(), session });
      if (state.current) state.current.terminate();
      state.current = ws;
      transport.attach(ws);
    });
  });
  const client = new Client({ name: 'agentbroker-tunnel-reference', version: '1' });
  const connected = client.connect(transport);
  return {
    url,
    port,
    client,
    connected,
    transport,
    state,
    setMode(m) {
      state.mode = m;
    },
    dropCurrent() {
      state.current?.terminate();
    },
    stallNext(stage) {
      state.stallNext = stage;
    },
    async close() {
      for (const h of held) h.terminate ? h.terminate() : h.destroy();
      for (const c of wss.clients) c.terminate();
      await new Promise((res) => server.close(res));
    },
  };
}
