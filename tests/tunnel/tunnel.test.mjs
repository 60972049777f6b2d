// SPDX-License-Identifier: MIT
// The tunnel tests (run by run.sh, which starts the broker and makes the certificates).
// TAP output. Every connection is on loopback: agentbroker-mcp -> fault proxy -> control plane.
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { startControlPlane, IDEMPOTENCY_KEY } from './controlplane.mjs';
import { startFaultProxy } from './faultproxy.mjs';
import { ok, diag, plan } from './tap.mjs';

const { T, SOCK, MCP, WORKER, MODDIR } = process.env;
const identity = JSON.parse(fs.readFileSync(`${T}/identity.json`, 'utf8'));
const publicKey = crypto.createPublicKey({ key: identity.jwk, format: 'jwk' });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (res) => (res.content || []).map((c) => c.text || '').join('');
const p99 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)];
};

const cp = await startControlPlane({
  key: fs.readFileSync(`${T}/server.key`),
  cert: fs.readFileSync(`${T}/server.pem`),
  publicKey,
  issuer: identity.sandbox_id,
});
const proxy = await startFaultProxy(cp.port);
const url = `wss://127.0.0.1:${proxy.port}/mcp`;
// The JWT's aud is the URL the sandbox dials (the proxy's): that is what was registered.
cp.state.audience = url;

const hosts = [];
const logs = new Set();
// A host dialling the control plane through the proxy; its stderr goes to $T/NAME.err.
// Pings every second and a fast backoff (200 ms to 2 s) unless extra sets them.
function startHost(name, extra = [], dialUrl = url) {
  const err = fs.openSync(`${T}/${name}.err`, 'a');
  const defaults = [];
  if (!extra.includes('--tunnel-ping-ms')) defaults.push('--tunnel-ping-ms', '1000');
  if (!extra.includes('--tunnel-backoff-ms') && !extra.includes('--default-backoff'))
    defaults.push('--tunnel-backoff-ms', '200,2000');
  extra = extra.filter((a) => a !== '--default-backoff');
  const child = spawn(
    MCP,
    ['--broker', SOCK, '--modules', MODDIR, '--tunnel', dialUrl, ...defaults, ...extra],
    { env: { ...process.env, AGENTBROKER_WORKER: WORKER }, stdio: ['ignore', 'ignore', err] },
  );
  hosts.push(child);
  logs.add(`${T}/${name}.err`);
  return { child, log: () => fs.readFileSync(`${T}/${name}.err`, 'utf8') };
}
const runOf = async (h) => {
  for (let i = 0; i < 100; i++) {
    const m = /\brun (\S+)/.exec(h.log());
    if (m) return m[1];
    await sleep(50);
  }
  return null;
};
function journal(fields) {
  const args = ['-o', 'json', '--no-pager', ...Object.entries(fields).map(([k, v]) => `${k}=${v}`)];
  const out = execFileSync('journalctl', args, { encoding: 'utf8', maxBuffer: 256 << 20 });
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
async function journalCount(fields, want, secs = 10, keep = () => true) {
  let got = [];
  for (let i = 0; i < secs * 5; i++) {
    got = journal(fields).filter(keep);
    if (got.length >= want) break;
    await sleep(200);
  }
  return got;
}
const exited = (c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r)));
// Wait until the control plane has accepted more than n connections.
async function waitConn(n, secs = 20) {
  for (let i = 0; i < secs * 20; i++) {
    if (cp.state.connections.length > n) return true;
    await sleep(50);
  }
  return false;
}
// JSON-RPC requests outside the SDK Client (a restarted host needs a new initialize).
let rawId = 0;
const raw = (method, params, ms = 30000) =>
  Promise.race([
    cp.transport.request({ jsonrpc: '2.0', id: `raw-${++rawId}`, method, params }),
    sleep(ms).then(() => ({ error: { code: 'timeout', message: `no answer to ${method} in ${ms} ms` } })),
  ]);
const rawInit = async () => {
  const r = await raw('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
  await cp.transport.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return r;
};
const rawCall = (name, args, key) => raw('tools/call', { name, arguments: args, _meta: { [IDEMPOTENCY_KEY]: key } });
const call = (name, args, key, timeout = 120000) =>
  cp.client.callTool({ name, arguments: args, ...(key ? { _meta: { [IDEMPOTENCY_KEY]: key } } : {}) }, undefined, {
    timeout,
  });

try {
  // ---- 1. end to end: list and call every shipped tool ---------------------------------
  const host = startHost('main', ['--tunnel-ca', `${T}/ca.pem`]);
  const run = await runOf(host);
  await Promise.race([cp.connected, sleep(15000).then(() => { throw new Error('no session within 15 s'); })]);
  ok(cp.state.sessions.size > 0 && Boolean(run), `the sandbox dialled in and initialized (run ${run}, session ${[...cp.state.sessions][0]})`,
    { run, sessions: [...cp.state.sessions] });
  const { tools } = await cp.client.listTools();
  const names = tools.map((t) => t.name).sort();
  const shipped = ['echo.echo', 'fs.list_dir', 'fs.read_file', 'fs.search', 'fs.stat', 'sign.hmac_sha256', 'sign.jwt'];
  ok(shipped.every((s) => names.includes(s)), `tools/list over the tunnel lists every shipped tool (${names.join(', ')})`, names);
  const calls = {
    'echo.echo': { text: 'hello tunnel' },
    'fs.read_file': { path: `${T}/root/hello.txt` },
    'fs.list_dir': { path: `${T}/root` },
    'fs.stat': { path: `${T}/root/hello.txt` },
    'fs.search': { path: `${T}/root`, pattern: 'hello' },
    'sign.hmac_sha256': { key: 'sign_hmac', message: 'tunnel' },
    'sign.jwt': { audience: 'https://internal.example', scope: 'read', ttl: 60 },
  };
  for (const [name, args] of Object.entries(calls)) {
    const res = await call(name, args);
    ok(!res.isError, `${name} through the tunnel: ${text(res).slice(0, 60).replace(/\n/g, ' ')}`, res);
  }

  // ---- 1b. ids come back exactly (issue 17): an id rounded on the way back (cJSON printed
  // 9007199254740991 as 9.00719925474099e+15) never matches its request: it would time out.
  for (const id of [9007199254740991, -9007199254740991, 5000000000000001, 1e15]) {
    const r = await Promise.race([cp.transport.request({ jsonrpc: '2.0', id, method: 'ping' }), sleep(15000).then(() => null)]);
    ok(r !== null && r.id === id && r.result !== undefined, `ping with id ${id} over the tunnel: answered with that id`, r);
  }
  {
    const id = 9007199254740990;
    const r = await Promise.race([
      cp.transport.request({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo.echo', arguments: { text: 'big id' } } }),
      sleep(30000).then(() => null),
    ]);
    ok(r !== null && r.id === id && text(r.result) === 'big id', `tools/call with id ${id} over the tunnel: answered with that id`, r);
  }

  // ---- 2. cut during a call: the effect happens once and the result arrives ------------
  const f1 = `${T}/effect-cut.txt`;
  const conns0 = cp.state.connections.length;
  const pending = call('effect.append', { file: f1, text: 'cut-1', delay_ms: 1500 }, 'cut-test-1');
  await sleep(400);
  proxy.cut();
  const res1 = await pending;
  const lines1 = fs.readFileSync(f1, 'utf8').split('\n').filter(Boolean);
  ok(!res1.isError && /appended/.test(text(res1)), 'the call cut mid-way got its result after the reconnect', res1);
  ok(lines1.length === 1 && lines1[0] === 'cut-1', `its side effect happened exactly once (${lines1.length} line)`, lines1);
  ok(cp.state.connections.length > conns0, `the sandbox reconnected (${cp.state.connections.length - conns0} new connections)`);
  ok(cp.state.sessions.size === 1, `one stable session id across reconnects (${[...cp.state.sessions].join(',')})`);
  // A re-sent call with the same key is answered from the store, not run again.
  const again = await call('effect.append', { file: f1, text: 'cut-1', delay_ms: 1500 }, 'cut-test-1');
  ok(text(again) === text(res1) && fs.readFileSync(f1, 'utf8').split('\n').filter(Boolean).length === 1,
    'a re-sent call with a known key gets the recorded result and does not run again', again);

  // ---- 3. 1,000 calls, the connection cut every ~50 -----------------------------------
  const f2 = `${T}/effect-1000.txt`;
  const N = 1000;
  const started = [];
  let cuts = 0;
  const t0 = Date.now();
  // At most 64 calls in flight (the host takes 256); the connection is cut after every 50th call.
  let inflight = 0;
  for (let i = 0; i < N; i++) {
    while (inflight >= 64) await sleep(2);
    inflight++;
    started.push(call('effect.append', { file: f2, text: `call-${i}` }, `bulk-${i}`).finally(() => inflight--));
    if (i % 50 === 49) {
      await sleep(10);
      proxy.cut();
      cuts++;
    }
  }
  const results = await Promise.allSettled(started);
  const good = results.filter((r) => r.status === 'fulfilled' && !r.value.isError).length;
  const lines2 = fs.readFileSync(f2, 'utf8').split('\n').filter(Boolean);
  const uniq = new Set(lines2);
  if (cp.transport.errors) diag(`control plane: ${cp.transport.errors} WebSocket errors, last: ${cp.transport.lastError}`);
  ok(good === N, `${good} of ${N} calls answered (with ${cuts} cuts, ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    results.filter((r) => r.status !== 'fulfilled' || r.value.isError).slice(0, 3).map((r) => r.reason?.message || r.value));
  ok(lines2.length === N && uniq.size === N, `every call ran exactly once: ${lines2.length} lines, ${uniq.size} distinct`);
  const begins = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tool-call-begin', AGENTBROKER_TOOL: 'effect.append' }, N + 1);
  const ends = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tool-call-end', AGENTBROKER_TOOL: 'effect.append' }, N + 1);
  const bcalls = new Set(begins.map((e) => e.AGENTBROKER_CALL));
  const ecalls = new Set(ends.map((e) => e.AGENTBROKER_CALL));
  ok(begins.length === N + 1 && ends.length === N + 1 && bcalls.size === N + 1 && [...bcalls].every((c) => ecalls.has(c)),
    `exactly one begin/end audit pair per call: ${begins.length} begins, ${ends.length} ends for ${N + 1} effect.append calls`);
  // A cut while the host is still reconnecting ends no connection: compare with what the
  // control plane saw rather than with the number of cuts. A call answered first: the host is
  // connected (under load a ping may also time out and a reconnect be on its way). A dial cut
  // before it was up is audited tunnel-disconnect reason=dial-failed, without a tunnel-connect.
  await call('echo.echo', { text: 'settle' });
  const accepted = cp.state.connections.length;
  const connects = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tunnel-connect' }, accepted);
  const disconnects = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tunnel-disconnect' }, accepted - 1, 10,
    (e) => e.AGENTBROKER_REASON !== 'dial-failed');
  ok(connects.length === accepted && disconnects.length === accepted - 1,
    `every connection audited: ${connects.length} tunnel-connect and ${disconnects.length} tunnel-disconnect for ` +
    `${accepted} connections accepted (${cuts} cuts)`,
    `disconnect reasons: ${disconnects.map((e) => e.AGENTBROKER_REASON).join(',')}`);

  // ---- 4. head-of-line: one 3 s call and 200 fast calls --------------------------------
  const fast = async () => {
    const lat = [];
    await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const s = process.hrtime.bigint();
      await call('echo.echo', { text: `fast-${i}` });
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }));
    return p99(lat);
  };
  await fast(); // warm-up
  const base = Math.max(await fast(), await fast());
  // Two batches while the slow call runs, the better one counted (the baseline counts the
  // worse of two): a batch held up behind the slow call would wait for seconds, far past 2x,
  // while one batch's p99 on a loaded machine (the ASan build) moves by 2x on its own.
  let slowDone = false;
  const slow = call('effect.append', { file: `${T}/slow.txt`, text: 'slow', delay_ms: 3000 }).finally(() => {
    slowDone = true;
  });
  await sleep(100);
  const during = [await fast(), await fast()];
  const inFlight = !slowDone;
  const withSlow = Math.min(...during);
  const slowRes = await slow;
  ok(!slowRes.isError && inFlight && withSlow <= 2 * base,
    `head-of-line: fast calls' p99 ${withSlow.toFixed(1)} ms with a 3 s call in flight ` +
    `(batches ${during.map((x) => x.toFixed(1)).join(', ')} ms${inFlight ? '' : ', NOT all while it ran'}), ` +
    `${base.toFixed(1)} ms without (limit 2x)`);


  // ---- 4b. large results, concurrently, with cuts: every message the control plane gets
  // is valid UTF-8 JSON. Each result is several 64 KiB fragments of multi-byte UTF-8; a
  // message not written completely when the connection drops is sent again after the
  // reconnect, and must arrive as it was (lws masks a client's frames in place: re-sending
  // the masked bytes put garbage on the wire).
  {
    const inv0 = cp.transport.invalid;
    const errs0 = cp.transport.errors;
    const big = (i) => `${i}:` + '€😀é'.repeat(20000); // 60,000 characters, 180,000 bytes
    const M = 48;
    let bigCuts = 0;
    const t0 = Date.now();
    // Cut whenever another 300 kB went up: mostly in the middle of a message.
    proxy.cutEvery(300000, 10);
    const calls = Array.from({ length: M }, (_, i) => call('echo.echo', { text: big(i) }));
    const res = await Promise.allSettled(calls);
    bigCuts = 10 - proxy.cutsLeft();
    proxy.cutEvery(0);
    const right = res.filter((r, i) => r.status === 'fulfilled' && !r.value.isError && text(r.value) === big(i)).length;
    ok(right === M, `${right} of ${M} large results (180,000 bytes of multi-byte UTF-8 each) arrived intact ` +
      `with ${bigCuts} cuts (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      res.filter((r, i) => r.status !== 'fulfilled' || text(r.value) !== big(i)).slice(0, 2)
        .map((r) => r.reason?.message || text(r.value).slice(0, 300)));
    ok(cp.transport.invalid === inv0 && cp.transport.errors === errs0,
      `every message the control plane received was UTF-8 JSON (${cp.transport.received} messages so far; ` +
      `${cp.transport.invalid - inv0} invalid, ${cp.transport.errors - errs0} WebSocket errors)`,
      `${cp.transport.lastInvalid || ''} ${cp.transport.lastError || ''}`);
  }

  // ---- 4c. a delayed connection still works -------------------------------------------
  {
    proxy.delay(150);
    const s = Date.now();
    const r = await call('echo.echo', { text: 'slow path' });
    const ms = Date.now() - s;
    proxy.delay(0);
    ok(!r.isError && text(r) === 'slow path' && ms >= 300,
      `with 150 ms added each way the call still works (${ms} ms round trip)`, r);
  }

  // ---- 4d. a stalled connection: two missed pongs, then a reconnect --------------------
  {
    const conns = cp.state.connections.length;
    const acc0 = proxy.state.accepted;
    const before = journal({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tunnel-disconnect', AGENTBROKER_REASON: 'ping-timeout' }).length;
    const s = Date.now();
    proxy.stall();
    const pending = call('echo.echo', { text: 'through a stall' });
    const r = await pending;
    const ms = Date.now() - s;
    const pt = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tunnel-disconnect', AGENTBROKER_REASON: 'ping-timeout' }, before + 1);
    ok(pt.length === before + 1, `the stalled connection was dropped for two missed pongs (tunnel-disconnect reason=ping-timeout audited)`);
    ok(!r.isError && text(r) === 'through a stall' && cp.state.connections.length > conns && proxy.state.accepted > acc0,
      `the sandbox reconnected and the call sent into the stall was answered ${ms} ms later (ping every 1 s)`, r);
    ok(ms >= 1000 && ms < 15000, `the dead connection was noticed and replaced within 1..15 s (${ms} ms; pings every 1 s, dropped at the third tick without a pong)`);
  }

  // ---- 4e. cancellation over the tunnel -------------------------------------------------
  {
    const fc = `${T}/effect-cancel.txt`;
    const c0 = journal({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tool-call-end', AGENTBROKER_STATUS: 'cancelled' }).length;
    const ac = new AbortController();
    const started = Date.now();
    // The worker sleeps 5 s before it appends; a cancelled call's worker is stopped within
    // 2 s (its grace period), long before that.
    const p = cp.client.callTool({ name: 'effect.append', arguments: { file: fc, text: 'cancelled', delay_ms: 5000 },
      _meta: { [IDEMPOTENCY_KEY]: 'cancel-1' } }, undefined, { signal: ac.signal });
    await sleep(500);
    ac.abort('test');
    const outcome = await p.then(() => 'resolved', (e) => `rejected: ${e.message}`);
    const ends = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tool-call-end', AGENTBROKER_STATUS: 'cancelled' }, c0 + 1);
    await sleep(Math.max(0, started + 6000 - Date.now())); // past the call's delay: a call still running would have appended
    ok(/^rejected/.test(outcome) && ends.length === c0 + 1 && ends.at(-1)?.AGENTBROKER_TOOL === 'effect.append',
      `notifications/cancelled stopped the call: it was audited status=cancelled (${ends.length - c0} record; the client's call ${outcome})`);
    ok(!fs.existsSync(fc), `the cancelled call had no effect (${fs.existsSync(fc) ? 'the file exists' : 'no file'})`);
    const again = await call('effect.append', { file: fc, text: 'after cancel' }, 'cancel-1');
    ok(!again.isError && fs.readFileSync(fc, 'utf8') === 'after cancel\n',
      'a cancelled call is forgotten: the same key sent again runs', again);
  }

  // ---- 4f. a refusal that passes is not recorded: the re-sent call runs ----------------
  {
    const ff = `${T}/effect-full.txt`;
    const fr = `${T}/effect-retry.txt`;
    // 256 calls that each take 5 s (the module's workers run at most 8 of them at a time, the
    // rest wait): 256 in flight when the 257th comes, however the host spreads them over its
    // workers. They are cancelled once the refusal is seen, so the test does not wait them out.
    const aborts = Array.from({ length: 256 }, () => new AbortController());
    const fill = aborts.map((ac, i) =>
      cp.client.callTool({ name: 'effect.append', arguments: { file: ff, text: `fill-${i}`, delay_ms: 5000 },
        _meta: { [IDEMPOTENCY_KEY]: `fill-${i}` } }, undefined, { signal: ac.signal, timeout: 120000 }));
    await sleep(300);
    const refused = await call('effect.append', { file: fr, text: 'retry-me' }, 'retry-1');
    for (const ac of aborts) ac.abort('test');
    const filled = await Promise.allSettled(fill);
    ok(refused.isError && /too many calls in flight/.test(text(refused)) && refused._meta?.['io.agentbroker/notRun'] === true,
      `the 257th call in flight was refused: "${text(refused).slice(0, 70)}", _meta notRun ${refused._meta?.['io.agentbroker/notRun']}`, refused);
    ok(filled.every((r) => r.status === 'rejected') && !fs.existsSync(ff),
      `the 256 calls in flight were cancelled before they had any effect (${filled.filter((r) => r.status === 'rejected').length} cancelled)`);
    // The cancellations reach the host after the client gave up on the calls: until the host
    // has ended them it may still be full, and says so again (not recorded either). Re-send
    // the same key until there is room.
    let rerun, tries = 0;
    const until = Date.now() + 30000;
    do {
      if (tries++) await sleep(250);
      rerun = await call('effect.append', { file: fr, text: 'retry-me' }, 'retry-1');
    } while (rerun._meta?.['io.agentbroker/notRun'] === true && Date.now() < until);
    const lines = fs.existsSync(fr) ? fs.readFileSync(fr, 'utf8').split('\n').filter(Boolean) : [];
    ok(!rerun.isError && /appended/.test(text(rerun)) && lines.length === 1,
      `re-sent with the same key once there was room, the call ran (${lines.length} line; ${tries} sends): the refusal was not recorded`, rerun);
  }

  // ---- 5. auth: a refused dial is audited, and retried with backoff -------------------
  for (const [mode, why] of [['expired', 'expired'], ['audience', 'audience'], ['replay', 'replayed']]) {
    const rej0 = cp.state.rejections.length;
    cp.setMode(mode);
    proxy.cut();
    await sleep(4000);
    const rej = cp.state.rejections.slice(rej0);
    cp.setMode('ok');
    const gaps = rej.slice(1).map((r, i) => r.at - rej[i].at);
    ok(rej.length >= 2 && rej.length <= 20 && rej.every((r) => r.reason === why),
      `${mode} JWT: ${rej.length} dials refused in 4 s (${why}), spaced ${gaps.join(',')} ms`, rej);
    const fails = await journalCount({ AGENTBROKER_RUN: run, AGENTBROKER_OP: 'tunnel-auth-fail', AGENTBROKER_REASON: 'jwt-rejected' }, 1);
    ok(fails.length >= 1, `tunnel-auth-fail reason=jwt-rejected audited (${fails.length} so far)`);
    const r = await call('echo.echo', { text: `after ${mode}` });
    ok(!r.isError, `the session resumes once the control plane accepts again`);
  }
  for (const [name, extra, reason] of [
    ['pin', ['--tunnel-ca', `${T}/ca.pem`, '--tunnel-pin', '00'.repeat(32)], 'pin-mismatch'],
    ['ca', ['--tunnel-ca', `${T}/other.pem`], 'tls-verify'],
  ]) {
    const conns = cp.state.connections.length;
    const h = startHost(name, extra);
    const hrun = await runOf(h);
    const fails = await journalCount({ AGENTBROKER_RUN: hrun, AGENTBROKER_OP: 'tunnel-auth-fail', AGENTBROKER_REASON: reason }, 2, 8);
    ok(fails.length >= 2 && cp.state.connections.length === conns,
      `${name === 'pin' ? 'wrong pinned fingerprint' : 'untrusted CA'}: refused ${fails.length} times (audited ${reason}), never connected`);
    h.child.kill('SIGTERM');
  }

  // ---- 6. host restart: kill -9 mid-run, start again on the same run and checkpoint ----
  // The re-sent calls of the run are answered from the checkpoint and never run again.
  host.child.kill('SIGTERM');
  await exited(host.child);
  {
    const ckpt = `${T}/tunnel-restart.json`;
    const fa = `${T}/effect-restart-a.txt`;
    const fb = `${T}/effect-restart-b.txt`;
    let n0 = cp.state.connections.length;
    // A run that outlives its host (a restart resumes it): opened by the orchestrator, not by
    // the host. A host's own run ends with the host (the broker tears it down when the host
    // dies, docs/architecture.md), so a restart could not resume it.
    const run1 = execFileSync(process.env.CTL, ['--socket', SOCK, 'run', 'open', '--label', 'tunnel-restart'],
      { encoding: 'utf8' }).trim();
    const h1 = startHost('restart1', ['--tunnel-ca', `${T}/ca.pem`, '--tunnel-checkpoint', ckpt, '--run', run1]);
    ok(await waitConn(n0), `a host with a checkpoint connected (run ${run1})`);
    const sess1 = cp.state.connections.at(-1).session;
    await rawInit();
    const a = await rawCall('effect.append', { file: fa, text: 'restart-a' }, 'restart-a');
    const hmac = await rawCall('sign.hmac_sha256', { key: 'sign_hmac', message: 'checkpoint' }, 'restart-hmac');
    ok(a.result && !a.result.isError && hmac.result && !hmac.result.isError, 'before the restart: two calls answered', [a, hmac]);
    const bP = rawCall('effect.append', { file: fb, text: 'restart-b', delay_ms: 1500 }, 'restart-b');
    await sleep(500);
    h1.child.kill('SIGKILL');
    await exited(h1.child);
    const st = fs.statSync(ckpt);
    const ck = fs.readFileSync(ckpt, 'utf8');
    const secret = fs.readFileSync(`${T}/creds/sign_hmac`, 'utf8').trim();
    ok((st.mode & 0o777) === 0o600 && ck.includes('"k:restart-a","o":') && ck.includes('"k:restart-b","s":"running"') &&
      !ck.includes(secret),
      `the checkpoint (mode ${(st.mode & 0o777).toString(8)}, ${ck.split('\n').length - 1} lines) holds the recorded result, ` +
      'the running call, and no secret', ck.slice(0, 2000));

    n0 = cp.state.connections.length;
    const h2 = startHost('restart2', ['--tunnel-ca', `${T}/ca.pem`, '--tunnel-checkpoint', ckpt, '--run', run1]);
    ok(await waitConn(n0), 'the host started again on the same run and checkpoint reconnected');
    ok(cp.state.connections.at(-1).session === sess1, `with the same session id (${sess1})`);
    // The control plane re-sent restart-b on the new connection (it was never answered).
    const b = await bP;
    ok(b.error?.code === -32001, `the call running at the kill, re-sent: error ${b.error?.code} (outcome unknown, not run again)`, b);
    const a2 = await rawCall('effect.append', { file: fa, text: 'restart-a' }, 'restart-a');
    const linesA = fs.readFileSync(fa, 'utf8').split('\n').filter(Boolean);
    ok(a2.result && JSON.stringify(a2.result.content) === JSON.stringify(a.result.content) && linesA.length === 1,
      `the finished call, re-sent after the restart: the recorded result from the checkpoint, effect file ${linesA.length} line`, a2);
    await sleep(1500); // past restart-b's delay, should its worker have survived the kill
    const b2 = await rawCall('effect.append', { file: fb, text: 'restart-b', delay_ms: 1500 }, 'restart-b');
    const linesB = fs.existsSync(fb) ? fs.readFileSync(fb, 'utf8').split('\n').filter(Boolean).length : 0;
    const begins = journal({ AGENTBROKER_RUN: run1, AGENTBROKER_OP: 'tool-call-begin', AGENTBROKER_TOOL: 'effect.append' });
    ok(b2.error?.code === -32001 && linesB <= 1 && begins.length === 2,
      `nothing ran twice: ${begins.length} effect.append begins in the run for 2 calls, restart-b's file ${linesB} line(s)`, b2);
    // A new call before the initialize is refused with a JSON-RPC error: not recorded, so
    // after the initialize the same key runs.
    const fc = `${T}/effect-restart-c.txt`;
    const early = await rawCall('effect.append', { file: fc, text: 'restart-c' }, 'restart-c');
    await rawInit();
    const late = await rawCall('effect.append', { file: fc, text: 'restart-c' }, 'restart-c');
    ok(early.error?.code === -32600 && late.result && !late.result.isError && fs.existsSync(fc) &&
      fs.readFileSync(fc, 'utf8') === 'restart-c\n',
      `a call before the initialize: error ${early.error?.code}, not recorded; after it the same key ran once`, [early, late]);
    h2.child.kill('SIGTERM');
    await exited(h2.child);
  }

  // ---- 7. backoff: the control plane down for 60 s ------------------------------------
  // The policy: the n-th dial after a failure waits uniform [0, min(30 s, 1 s * 2^n)] (full
  // jitter). Gaps may be near 0; what must hold is each gap <= its attempt's cap (+ slack for
  // noticing the failure and minting the JWT), the caps themselves, and the number of dials:
  // the caps 1+2+4+8+16 s fit in 60 s, so at least 5 dials; a tight loop would make thousands.
  {
    let n0 = cp.state.connections.length;
    const hb = startHost('backoff', ['--tunnel-ca', `${T}/ca.pem`, '--default-backoff']);
    ok(await waitConn(n0), 'a host with the default backoff (1 s to 30 s) connected');
    await sleep(300);
    const mark = hb.log().length;
    const a0 = proxy.state.attempts.length;
    proxy.setDown(true);
    const tCut = Date.now();
    proxy.cut();
    await sleep(60000);
    const tUp = Date.now();
    proxy.setDown(false);
    n0 = cp.state.connections.length;
    const back = await waitConn(n0, 45);
    const tConn = back ? cp.state.connections.at(-1).at : NaN;
    const all = proxy.state.attempts.slice(a0);
    const dials = all.filter((t) => t < tUp);
    const sched = [...hb.log().slice(mark).matchAll(/next dial in (\d+) ms \(backoff cap (\d+) ms\)/g)]
      .map((m) => ({ delay: +m[1], cap: +m[2] }));
    const gaps = dials.map((t, i) => t - (i ? dials[i - 1] : tCut));
    const caps = sched.slice(0, dials.length).map((s) => s.cap);
    const want = caps.map((_, i) => Math.min(30000, 1000 * 2 ** i));
    const slack = 1000;
    diag(`backoff: ${dials.length} dials in ${((tUp - tCut) / 1000).toFixed(1)} s down`);
    diag(`measured gaps (ms, at the proxy): ${gaps.join(', ')}`);
    diag(`the host's delays (ms):            ${sched.slice(0, dials.length).map((s) => s.delay).join(', ')}`);
    diag(`caps (ms):                         ${caps.join(', ')}`);
    ok(caps.length === dials.length && caps.every((c, i) => c === want[i]),
      `the caps double from 1 s to the 30 s cap: ${caps.join(',')}`, { caps, want });
    ok(gaps.every((g, i) => g <= want[i] + slack),
      `every gap is within its attempt's cap + ${slack} ms (largest ${Math.max(...gaps)} ms)`, { gaps, want });
    ok(sched.slice(0, dials.length).every((s, i) => Math.abs(gaps[i] - s.delay) <= slack),
      'each measured gap matches the delay the host drew (within the slack)');
    ok(dials.length >= 5 && dials.length <= 40, `${dials.length} dials in 60 s: no tight loop (5..40)`);
    const capNow = sched[dials.length]?.cap;
    diag(`back up after ${tUp - tCut} ms; reconnected ${tConn - tUp} ms later; the cap in force ${capNow} ms`);
    ok(back && capNow === 30000 && tConn - tUp <= capNow + 2000,
      `after the control plane came back the session resumed within the next backoff step (${tConn - tUp} ms <= ${capNow} ms + 2 s)`);
    hb.child.kill('SIGTERM');
    await exited(hb.child);
  }

  // ---- 8. the backoff starts over only after the connection was healthy ----------------
  // --tunnel-healthy-ms 2500 instead of 30 s, backoff 200 ms to 3.2 s.
  {
    let n0 = cp.state.connections.length;
    const hr = startHost('reset', ['--tunnel-ca', `${T}/ca.pem`, '--tunnel-backoff-ms', '200,3200', '--tunnel-healthy-ms', '2500']);
    ok(await waitConn(n0), 'a host with --tunnel-healthy-ms 2500 connected');
    const capAfterCut = async () => {
      const mark = hr.log().length;
      proxy.cut();
      for (let i = 0; i < 50; i++) {
        const m = /next dial in (\d+) ms \(backoff cap (\d+) ms\)/.exec(hr.log().slice(mark));
        if (m) return +m[2];
        await sleep(100);
      }
      return null;
    };
    // Down for 5 s: 200+400+800+1600 ms of caps fit, so at least 5 failed dials.
    proxy.setDown(true);
    const c1 = await capAfterCut();
    await sleep(5000);
    n0 = cp.state.connections.length;
    proxy.setDown(false);
    ok(c1 === 200 && await waitConn(n0), `down for 5 s (first cap ${c1} ms), then reconnected`);
    // Cut again 300 ms after the reconnect: not healthy yet, the backoff goes on from its cap.
    await sleep(300);
    n0 = cp.state.connections.length;
    const c2 = await capAfterCut();
    ok(c2 === 3200, `a cut 0.3 s after the reconnect: the next dial's cap is ${c2} ms (no reset before 2.5 s healthy)`);
    ok(await waitConn(n0), 'reconnected');
    await sleep(3500);
    n0 = cp.state.connections.length;
    const t0 = Date.now();
    const c3 = await capAfterCut();
    const again = await waitConn(n0);
    ok(c3 === 200 && again, `a cut after 3.5 s healthy: the backoff started over (cap ${c3} ms, reconnected in ${Date.now() - t0} ms)`);
    hr.child.kill('SIGTERM');
    await exited(hr.child);
  }
} catch (e) {
  ok(false, `the tests ran to the end`, e.stack || String(e));
}
for (const h of hosts) h.kill('SIGTERM');
await Promise.race([Promise.all(hosts.map(exited)), sleep(10000)]);
// In the ASan/UBSan build a sanitizer's report goes to the host's stderr.
const reports = [...logs].filter((f) => /AddressSanitizer|LeakSanitizer|runtime error:/.test(fs.readFileSync(f, 'utf8')));
ok(reports.length === 0, `no sanitizer report in the ${logs.size} hosts' stderr`,
  ...reports.map((f) => `${f}:\n${fs.readFileSync(f, 'utf8').split('\n').filter((l) => /Sanitizer|runtime error|#\d/.test(l)).slice(0, 30).join('\n')}`));
await proxy.close();
await cp.close();
process.exit(plan());
