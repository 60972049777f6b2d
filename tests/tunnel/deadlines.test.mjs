// SPDX-License-Identifier: MIT
// The dial's deadlines (docs/tunnel.md, "Dial deadlines"): run by deadlines.sh (run.sh's set-up).
// TAP output. agentbroker-mcp -> fault proxy -> control plane, all on loopback, with short
// deadlines (DEADLINE_MS per stage) and a short backoff (BACKOFF_MS) so that the cases are quick.
// - The control plane goes silent at one stage of the next dial (after the TCP accept, inside
//   TLS, after reading the upgrade request, after the 101): the host redials within the backoff
//   cap + that stage's deadline, then serves a call.
// - A listener that never accepts (its backlog full): the TCP connect's deadline.
// - The fault proxy stalls the next connection at a random byte of the handshake, 50 times in a
//   row: each time the host redials within the cap + the longest deadline (or the ping timeout,
//   when the stall fell after the first message), then serves a call.
// Env: STAGES (comma list, default all), RANDOM_STALLS (default 50), TUNNEL_DEADLINE_OPTS=none
// (give the host no deadline options: for running against a host without them).
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { startControlPlane } from './controlplane.mjs';
import { startFaultProxy } from './faultproxy.mjs';
import { ok, diag, plan } from './tap.mjs';

const { T, SOCK, MCP, WORKER, MODDIR } = process.env;
const DEADLINE_MS = 1000;
const BACKOFF = [100, 400];
const PING_MS = 500;
const SLACK_MS = 1500; // noticing, minting the dial JWT, a loaded machine
const WAIT_MS = 30000; // how long a redial is waited for before the case fails
const STAGES = (process.env.STAGES || 'accept,tls,upgrade,first-message,connect,ping').split(',');
const RANDOM_STALLS = +(process.env.RANDOM_STALLS ?? 50);
const stageOf = { accept: 'tls-handshake', tls: 'tls-handshake', upgrade: 'upgrade-answer', 'first-message': 'first-message' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (cond, ms) => {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (cond()) return true;
  return cond();
};

const identity = JSON.parse(fs.readFileSync(`${T}/identity.json`, 'utf8'));
const cp = await startControlPlane({
  key: fs.readFileSync(`${T}/server.key`),
  cert: fs.readFileSync(`${T}/server.pem`),
  publicKey: crypto.createPublicKey({ key: identity.jwk, format: 'jwk' }),
  issuer: identity.sandbox_id,
});
const proxy = await startFaultProxy(cp.port);
const url = `wss://127.0.0.1:${proxy.port}/mcp`;
cp.state.audience = url;

const deadlineOpts = process.env.TUNNEL_DEADLINE_OPTS === 'none' ? [] : [
  '--tunnel-connect-timeout-ms', `${DEADLINE_MS}`, '--tunnel-tls-timeout-ms', `${DEADLINE_MS}`,
  '--tunnel-upgrade-timeout-ms', `${DEADLINE_MS}`, '--tunnel-first-message-timeout-ms', `${DEADLINE_MS}`,
];
const hosts = [];
function startHost(name, dialUrl) {
  const err = fs.openSync(`${T}/${name}.err`, 'a');
  const child = spawn(MCP, ['--broker', SOCK, '--modules', MODDIR, '--tunnel', dialUrl, '--tunnel-ca', `${T}/ca.pem`,
    '--tunnel-backoff-ms', BACKOFF.join(','), '--tunnel-healthy-ms', '300', '--tunnel-ping-ms', `${PING_MS}`,
    ...deadlineOpts], { env: { ...process.env, AGENTBROKER_WORKER: WORKER }, stdio: ['ignore', 'ignore', err] });
  hosts.push(child);
  return { child, log: () => fs.readFileSync(`${T}/${name}.err`, 'utf8') };
}
const exited = (c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r)));
const call = (text) =>
  cp.client.callTool({ name: 'echo.echo', arguments: { text } }, undefined, { timeout: WAIT_MS })
    .then((r) => (r.content || []).map((c) => c.text || '').join(''), (e) => `error: ${e.message}`);
// The host's failed dials audited (tunnel-disconnect reason=dial-failed) in run.
const auditedFailureRecords = (run) =>
  execFileSync('journalctl', ['-o', 'json', '--no-pager', `AGENTBROKER_RUN=${run}`, 'AGENTBROKER_OP=tunnel-disconnect',
    'AGENTBROKER_REASON=dial-failed'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => JSON.parse(l));
const auditedFailures = (run) => auditedFailureRecords(run).length;
// The first dial that reached the proxy after time at, or undefined.
const dialAfter = (at) => proxy.state.attempts.find((a) => a > at);

let host;
try {
  host = startHost('deadlines', url);
  await Promise.race([cp.connected, sleep(15000).then(() => { throw new Error('no session within 15 s'); })]);
  ok((await call('up')) === 'up', 'the host dialled in and a call was served');
  const run = /\brun (\S+)/.exec(host.log())?.[1];
  const t0 = Date.now();
  const bound = (stageMs) => BACKOFF[1] + stageMs + SLACK_MS;

  // ---- 1. the control plane goes silent at each stage ----------------------------------
  for (const stage of STAGES.filter((s) => stageOf[s])) {
    const s0 = cp.state.stalls.length;
    const mark = host.log().length;
    cp.stallNext(stage);
    proxy.cut();
    const stalled = await until(() => cp.state.stalls.length > s0, 10000);
    const at = cp.state.stalls[s0]?.at;
    const redialled = stalled && (await until(() => dialAfter(at) !== undefined, WAIT_MS));
    const ms = redialled ? dialAfter(at) - at : NaN;
    const res = redialled ? await call(`after ${stage}`) : 'not tried';
    const logged = host.log().slice(mark);
    diag(`${stage}: the stall began ${at ? new Date(at).toISOString() : 'never'}; redial ${ms} ms later`);
    ok(stalled && redialled && ms <= bound(DEADLINE_MS),
      `silent at '${stage}': the host redialled ${ms} ms after the stall began ` +
      `(<= cap ${BACKOFF[1]} + deadline ${DEADLINE_MS} + ${SLACK_MS} ms)`,
      redialled ? '' : `no dial within ${WAIT_MS} ms; the host's log since:\n${logged.slice(-3000)}`);
    ok(res === `after ${stage}`, `... and then served a call (${res})`);
    ok(logged.includes(`failed at ${stageOf[stage]}: no `),
      `... and logged the failed dial with its stage (${stageOf[stage]})`, logged.slice(-2000));
  }

  const stageCases = STAGES.filter((s) => stageOf[s]).length;
  if (stageCases) {
    await sleep(500); // the broker writes the records
    const audited = auditedFailures(run);
    ok(audited >= stageCases, `the failed dials were audited: ${audited} tunnel-disconnect reason=dial-failed records ` +
      `for ${stageCases} stalls (run ${run})`);
    const details = auditedFailureRecords(run).map((j) => String(j.AGENTBROKER_DETAIL || ''));
    for (const stage of STAGES.filter((s) => stageOf[s]))
      ok(details.some((d) => d.includes(`stage=${stageOf[stage]}`)),
        `... the record of the stall at '${stage}' names its stage (stage=${stageOf[stage]})`, details.join('\n'));
  }

  // ---- 2. the TCP connect: a listener whose backlog is full never completes it ----------
  if (STAGES.includes('connect')) {
    // A process that listens with a backlog of 1 and never accepts (its event loop is blocked),
    // with its queue filled: further SYNs are dropped, the connect hangs.
    const blocker = spawn(process.execPath, ['-e',
      "const s=require('net').createServer().listen({port:0,host:'127.0.0.1',backlog:1},()=>{" +
      "console.log(s.address().port);Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0)})"],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise((r) => blocker.stdout.once('data', (d) => r(+d.toString().trim())));
    const fill = [];
    for (let i = 0; i < 4; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fill.push(s);
    }
    await sleep(300);
    const hc = startHost('deadlines-connect', `wss://127.0.0.1:${port}/mcp`);
    const t0 = Date.now();
    await until(() => (hc.log().match(/failed at tcp-connect/g) || []).length >= 2 &&
      (hc.log().match(/dial attempt/g) || []).length >= 3, 3 * bound(DEADLINE_MS));
    const fails = (hc.log().match(/failed at tcp-connect: no progress in \d+ ms/g) || []).length;
    const dials = (hc.log().match(/dial attempt/g) || []).length;
    ok(fails >= 2 && dials >= 3,
      `a TCP connect that never completes: ${fails} dials dropped at tcp-connect and ${dials} dials in ` +
      `${Date.now() - t0} ms`, hc.log().slice(-2000));
    hc.child.kill('SIGTERM');
    await exited(hc.child);
    blocker.kill('SIGKILL');
    for (const s of fill) s.destroy();
  }

  // ---- 3. a stall once up: two pings unanswered, the connection dropped, logged once ------
  if (STAGES.includes('ping')) {
    const mark = host.log().length;
    const c0 = cp.state.connections.length;
    proxy.stall();
    const back = await until(() => cp.state.connections.length > c0, WAIT_MS);
    await sleep(4 * PING_MS); // the ping timer would have fired again meanwhile
    const logged = host.log().slice(mark);
    const pt = (logged.match(/two pings went unanswered/g) || []).length;
    ok(back && pt === 1 && /disconnected \(ping-timeout\)/.test(logged),
      `a stalled connection is dropped for the ping timeout and the host reconnected; the ping timer logged it ${pt} time(s)`,
      logged.slice(-2500));
  }

  // ---- 4. the fault proxy stalls the handshake at a random byte, RANDOM_STALLS times ----
  if (RANDOM_STALLS > 0) {
    // The bytes of a whole handshake (TCP payload both ways, up to and with the first MCP
    // message and its answer) on a fresh connection.
    const c0 = cp.state.connections.length;
    proxy.cut();
    await until(() => cp.state.connections.length > c0, 10000);
    await sleep(150);
    const H = proxy.state.lastPairBytes;
    const mark = host.log().length;
    const t0 = Date.now();
    const times = [];
    const bad = [];
    for (let i = 0; i < RANDOM_STALLS; i++) {
      const k = crypto.randomInt(H);
      proxy.state.stalledAt = null;
      proxy.stallNextAt(k);
      proxy.cut();
      // A stall after the first message is found by the ping timeout (the third tick without
      // a pong), not by a deadline.
      const stalled = await until(() => proxy.state.stalledAt, 10000);
      const at = proxy.state.stalledAt;
      const redialled = stalled && (await until(() => dialAfter(at) !== undefined, WAIT_MS));
      const ms = redialled ? dialAfter(at) - at : NaN;
      const res = redialled ? await call(`random ${i}`) : 'not tried';
      times.push(ms);
      if (!(ms <= bound(Math.max(DEADLINE_MS, 3 * PING_MS))) || res !== `random ${i}`)
        bad.push({ i, k, stalled: !!stalled, ms, res });
    }
    const s = Date.now() - t0;
    const logged = host.log().slice(mark);
    const lines = (logged.match(/tunnel: dial \d+ to \S+ failed at/g) || []).length;
    const summed = [...logged.matchAll(/(\d+) more dials (?:had )?failed/g)].reduce((a, m) => a + +m[1], 0);
    diag(`${RANDOM_STALLS} stalls at a random byte of ${H}: redial after ${Math.min(...times)}..${Math.max(...times)} ms ` +
      `(median ${[...times].sort((a, b) => a - b)[times.length >> 1]} ms); ${(s / 1000).toFixed(1)} s in all`);
    ok(bad.length === 0, `${RANDOM_STALLS} random stalls in a row: each time the host redialled within ` +
      `cap + deadline (or ping timeout) + ${SLACK_MS} ms and then served a call`, bad.slice(0, 5));
    ok(lines <= 5 * Math.ceil(s / 60000) + 5 && (lines >= RANDOM_STALLS || summed > 0),
      `the failed dials were logged rate-limited: ${lines} lines, ${summed} more counted in summaries`, logged.slice(-2000));
    await sleep(500);
    const audited = auditedFailures(run);
    const windows = Math.ceil((Date.now() - t0) / 60000);
    ok(audited >= stageCases && audited <= 5 * windows + 5,
      `... and audited rate-limited too: ${audited} dial-failed records in ${windows} minute(s) (at most 5 a minute)`);
    const pt = (logged.match(/two pings went unanswered/g) || []).length;
    const drops = (logged.match(/disconnected \(ping-timeout\)/g) || []).length;
    ok(pt === drops, `after a ping timeout the ping timer logs once: ${pt} ping-timeout lines for ${drops} drops`);
  }
} catch (e) {
  ok(false, 'the tests ran to the end', e.stack || String(e));
}
for (const h of hosts) h.kill('SIGTERM');
await Promise.race([Promise.all(hosts.map(exited)), sleep(10000)]);
const reports = hosts.length && fs.readdirSync(T).filter((f) => /^deadlines.*\.err$/.test(f))
  .filter((f) => /AddressSanitizer|LeakSanitizer|runtime error:/.test(fs.readFileSync(`${T}/${f}`, 'utf8')));
ok(!reports.length, `no sanitizer report in the hosts' stderr`, reports);
await proxy.close();
await cp.close();
process.exit(plan());
