// SPDX-License-Identifier: MIT
// The tunnel benchmark (run by tests/bench/run-bench-tunnel.sh, which starts the broker and
// makes the certificates): agentbroker-mcp --tunnel dials a lean control plane on loopback
// TLS, and this control plane drives echo.echo calls over the MCP tunnel protocol
// (docs/tunnel.md).
//
// The control plane: an HTTPS server with the `ws` package (subprotocol "mcp") that checks the
// dial JWT with verifyJwt() of tests/tunnel/controlplane.mjs (EdDSA against the registered key,
// aud, exp, single-use jti), then speaks JSON-RPC directly (initialize, notifications/initialized,
// tools/call): a raw client, not the MCP SDK's Client, so the numbers are the host's and the
// wire's, not the SDK's. Each call is a tools/call of echo.echo {text: "hello tunnel"} without
// an idempotency key (the host keys it by session id + request id and records its result, as
// for every tunnel call).
//
// Phases (after --warmup calls):
//   sequential   --calls calls, one at a time: round-trip latency (p50, p99, mean) and calls/s
//   in flight    --parallel-calls calls, --inflight (32) outstanding: calls/s, latency p50/p99
// Bytes on the wire: counted during the sequential phase on the control plane's TCP socket
// (net.Socket bytesRead/bytesWritten of the connection under the TLS layer), i.e. the TCP
// payload: TLS records (5-byte headers, AEAD tags) carrying the WebSocket frames (client
// frames masked, 4-byte key) that carry the JSON-RPC text. The TLS handshake and the dial
// are outside the phase. The JSON-RPC text alone is given beside it.
//
// Environment: AB_MCP, AB_MCP_LIBPATH (optional), AB_WORKER, AB_SOCK, AB_MODULES, AB_CERT,
// AB_KEY, AB_CA, AB_JWK (the sandbox's public key as JSON), AB_SANDBOX_ID.
// Options: --warmup N (300) --calls N (2000) --parallel-calls N (20000) --inflight N (32).
// Prints a text report and a last line {"bench":"tunnel",...}; exit 0, or 1 on a failure.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { WebSocketServer } from 'ws';
import { verifyJwt } from './controlplane.mjs';

const o = { warmup: 300, calls: 2000, parallelCalls: 20000, inflight: 32 };
for (let i = 2; i < process.argv.length; i++) {
  const k = { '--warmup': 'warmup', '--calls': 'calls', '--parallel-calls': 'parallelCalls', '--inflight': 'inflight' }[
    process.argv[i]];
  const v = Number(process.argv[i + 1]);
  if (!k || !Number.isInteger(v) || v < 1) {
    console.error(`bench_tunnel: bad option ${process.argv[i]} ${process.argv[i + 1] ?? ''}`);
    process.exit(1);
  }
  o[k] = v;
  i++;
}
const need = (k) => process.env[k] || (console.error(`bench_tunnel: ${k} is not set`), process.exit(1));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((s.length * p) / 100) - 1))];
};
const f = (x, d = 1) => x.toFixed(d);

const publicKey = crypto.createPublicKey({ key: JSON.parse(need('AB_JWK')), format: 'jwk' });
const server = https.createServer({ key: fs.readFileSync(need('AB_KEY')), cert: fs.readFileSync(need('AB_CERT')) });
const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has('mcp') ? 'mcp' : false) });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `wss://127.0.0.1:${server.address().port}/mcp`;
const seen = new Set();
let tcp = null; // the raw TCP socket of the accepted connection
const sockets = new Map();
server.on('connection', (s) => sockets.set(s.remotePort, s));
let onConn;
const connected = new Promise((r) => (onConn = r));
let rejected = 0;
server.on('upgrade', (req, socket, head) => {
  const auth = req.headers.authorization || '';
  const why = verifyJwt(auth.startsWith('Bearer ') ? auth.slice(7) : '', {
    publicKey, audience: url, issuer: need('AB_SANDBOX_ID'), seen,
  });
  if (why) {
    rejected++;
    console.error(`bench_tunnel: dial refused: ${why}`);
    socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  tcp = sockets.get(req.socket.remotePort);
  wss.handleUpgrade(req, socket, head, (ws) => onConn(ws));
});

const env = { ...process.env, AGENTBROKER_WORKER: need('AB_WORKER') };
if (process.env.AB_MCP_LIBPATH) env.LD_LIBRARY_PATH = process.env.AB_MCP_LIBPATH;
const hostErr = [];
const host = spawn(need('AB_MCP'), ['--broker', need('AB_SOCK'), '--modules', need('AB_MODULES'), '--tunnel', url,
  '--tunnel-ca', need('AB_CA')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
host.stderr.on('data', (d) => hostErr.push(d));
host.on('exit', (code, sig) => {
  if (!stopping) {
    console.error(`bench_tunnel: agentbroker-mcp exited (${code ?? sig}):\n${Buffer.concat(hostErr).toString().slice(-3000)}`);
    process.exit(1);
  }
});
let stopping = false;

const ws = await Promise.race([connected, sleep(20000).then(() => null)]);
if (!ws) {
  console.error(`bench_tunnel: no connection within 20 s:\n${Buffer.concat(hostErr).toString().slice(-3000)}`);
  process.exit(1);
}
const pending = new Map();
let nextId = 0;
let textIn = 0; // JSON-RPC text, sandbox -> control plane (responses)
let textOut = 0; // control plane -> sandbox (requests)
ws.on('message', (data) => {
  textIn += data.length;
  const m = JSON.parse(data.toString());
  const p = pending.get(m.id);
  if (p) {
    pending.delete(m.id);
    p(m);
  }
});
const request = (method, params) =>
  new Promise((resolve) => {
    const id = ++nextId;
    const text = JSON.stringify({ jsonrpc: '2.0', id, method, params });
    textOut += Buffer.byteLength(text);
    pending.set(id, resolve);
    ws.send(text);
  });
const echo = async () => {
  const m = await request('tools/call', { name: 'echo.echo', arguments: { text: 'hello tunnel' } });
  if (m.error || m.result?.isError || m.result?.content?.[0]?.text !== 'hello tunnel')
    throw new Error(`echo.echo failed: ${JSON.stringify(m).slice(0, 300)}`);
};

const init = await request('initialize', {
  protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench_tunnel', version: '1' },
});
if (init.error) {
  console.error(`bench_tunnel: initialize failed: ${JSON.stringify(init.error)}`);
  process.exit(1);
}
ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));

let calls = 0;
try {
  for (let i = 0; i < o.warmup; i++, calls++) await echo();

  // sequential
  const r0 = tcp.bytesRead, w0 = tcp.bytesWritten, ti0 = textIn, to0 = textOut;
  const lat = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < o.calls; i++, calls++) {
    const s = process.hrtime.bigint();
    await echo();
    lat.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  const seqS = Number(process.hrtime.bigint() - t0) / 1e9;
  // up: sandbox -> control plane (the results), down: control plane -> sandbox (the calls)
  const up = (tcp.bytesRead - r0) / o.calls, down = (tcp.bytesWritten - w0) / o.calls;
  const jUp = (textIn - ti0) / o.calls, jDown = (textOut - to0) / o.calls;

  // in flight
  const plat = [];
  let started = 0;
  const t1 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: o.inflight }, async () => {
    while (started < o.parallelCalls) {
      started++;
      const s = process.hrtime.bigint();
      await echo();
      calls++;
      plat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  }));
  const parS = Number(process.hrtime.bigint() - t1) / 1e9;

  const mean = lat.reduce((a, b) => a + b, 0) / lat.length;
  console.log(`agentbroker-mcp --tunnel ${url} (loopback TLS, lean ws control plane, raw JSON-RPC), echo.echo "hello tunnel"`);
  console.log(`  sequential, ${o.calls} calls:  p50 ${f(pct(lat, 50), 3)} ms  p99 ${f(pct(lat, 99), 3)} ms  ` +
    `mean ${f(mean, 3)} ms  ${f(o.calls / seqS, 0)} calls/s`);
  console.log(`  ${o.inflight} in flight, ${o.parallelCalls} calls:  ${f(o.parallelCalls / parS, 0)} calls/s  ` +
    `latency p50 ${f(pct(plat, 50), 3)} ms  p99 ${f(pct(plat, 99), 3)} ms`);
  console.log(`  bytes on the wire per call (TCP payload = TLS records, sequential phase): ` +
    `${f(down, 1)} control plane -> sandbox + ${f(up, 1)} sandbox -> control plane = ${f(up + down, 1)}`);
  console.log(`  of which JSON-RPC text: ${f(jDown, 1)} (request) + ${f(jUp, 1)} (response) = ${f(jUp + jDown, 1)}; ` +
    `WebSocket framing + TLS records: ${f(up + down - jUp - jDown, 1)} bytes per call`);
  console.log(JSON.stringify({
    bench: 'tunnel', calls_done: calls, warmup: o.warmup, calls: o.calls, parallel_calls: o.parallelCalls,
    inflight: o.inflight,
    sequential: { p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), mean_ms: mean, calls_per_s: o.calls / seqS },
    in_flight: { calls_per_s: o.parallelCalls / parS, p50_ms: pct(plat, 50), p99_ms: pct(plat, 99) },
    wire_bytes_per_call: { to_sandbox: down, from_sandbox: up, json_request: jDown, json_response: jUp },
    dials_refused: rejected,
  }));
} catch (e) {
  console.error(`bench_tunnel: ${e.message}`);
  process.exitCode = 1;
}
stopping = true;
console.error(`bench_tunnel: ${calls} calls made`);
host.kill('SIGTERM');
await new Promise((r) => (host.exitCode !== null ? r() : host.once('exit', r)));
ws.terminate();
server.close();
process.exit(process.exitCode ?? 0);
