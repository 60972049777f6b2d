// SPDX-License-Identifier: MIT
// tests/bench/bench_sandbox.mjs — the client of run-bench-sandbox.sh (issue 11's benchmark):
// newline-delimited JSON-RPC over a host's stdin/stdout (no SDK, no bash in the timed path),
// times taken with process.hrtime in this one process.
//
//   provision N     N times: start agentbroker-mcp (ARGS), send initialize, initialized and one
//                   echo.echo call at once, and take
//                     host   spawn -> the call's result (a whole host start)
//                     run    the moment the host's run-open returned (the run exists; builder,
//                            cgroup and worker not yet), which the host logs with --debug as
//                            "run <id> ready at <µs> us (CLOCK_MONOTONIC)" (the clock of
//                            process.hrtime) -> the call's result from the new worker in the
//                            run's sandbox; left out for a host that does not log it
//                     down   SIGTERM (what the broker sends a host when its run is closed or
//                            expires) -> the host has exited: it exits after it has killed
//                            the run's processes (waited for on their pidfds), removed the
//                            cgroup and closed the namespaces that hold the workspace
//   steady N        one host: a warm-up call, then N sequential echo.echo calls; each call's
//                   latency (request written -> response line read)
//   floor N         N times: spawn `unshare --fork --pid --mount --net --user true` -> exit
// Every result is checked (the text echoed back); a failure ends the run with status 1.
// Prints one JSON line: {"host":[µs...],"run":[...],"down":[...]} / {"steady":[...]} / {"floor":[...]}.
// Usage: node bench_sandbox.mjs MODE N -- PROGRAM ARGS...   (environment passed through; in
// provision mode --debug is added to ARGS)
import { spawn } from 'node:child_process';

const [mode, nArg, sep, prog, ...args] = process.argv.slice(2);
const N = Number(nArg);
if (!['provision', 'steady', 'floor'].includes(mode) || !(N > 0) || sep !== '--' || !prog) {
  process.stderr.write('usage: bench_sandbox.mjs provision|steady|floor N -- PROGRAM ARGS...\n');
  process.exit(2);
}

const now = () => Number(process.hrtime.bigint() / 1000n); // µs
const INIT = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench-sandbox', version: '1' } } });
const INITED = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' });
const call = (id) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call',
  params: { name: 'echo.echo', arguments: { text: `x${id}` } } });

// A host with its stdout split into lines; waitFor(id) resolves with the response of that id.
function startHost(extra = []) {
  const child = spawn(prog, [...args, ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
  const h = { child, waiting: new Map(), runAt: 0, err: '', exited: null };
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let msg;
      try { msg = JSON.parse(line); } catch { continue; }
      const w = h.waiting.get(msg.id);
      if (w) { h.waiting.delete(msg.id); w(msg); }
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    if (h.err.length < 65536) h.err += d;
    const m = / run [0-9a-f]+ ready at ([0-9]+) us \(CLOCK_MONOTONIC\)/.exec(h.err);
    if (m && !h.runAt) h.runAt = Number(m[1]);
  });
  h.exit = new Promise((resolve) => child.on('exit', () => resolve(now())));
  h.waitFor = (id) => new Promise((resolve) => h.waiting.set(id, resolve));
  return h;
}

function check(h, msg, id) {
  const text = msg?.result?.content?.[0]?.text;
  if (text !== `x${id}` || msg.result.isError) {
    process.stderr.write(`bench_sandbox: call ${id} failed: ${JSON.stringify(msg)}\n${h.err.slice(-2000)}\n`);
    process.exit(1);
  }
}

async function provision() {
  const out = { host: [], run: [], down: [] };
  for (let k = 0; k < N; k++) {
    const t0 = now();
    const h = startHost(['--debug']);
    const res = h.waitFor(2);
    h.child.stdin.write(`${INIT}\n${INITED}\n${call(2)}\n`);
    const msg = await res;
    const t1 = now();
    check(h, msg, 2);
    /* The log line was written before the result; its pipe may be read after. */
    for (let i = 0; i < 100 && !h.runAt; i++) await new Promise((resolve) => setTimeout(resolve, 1));
    const t2 = now();
    h.child.kill('SIGTERM');
    const t3 = await h.exit;
    out.host.push(t1 - t0);
    if (h.runAt) out.run.push(t1 - h.runAt);
    out.down.push(t3 - t2);
  }
  return out;
}

async function steady() {
  const h = startHost();
  const first = h.waitFor(2);
  h.child.stdin.write(`${INIT}\n${INITED}\n${call(2)}\n`);
  check(h, await first, 2);
  const lat = [];
  for (let i = 10; i < N + 10; i++) {
    const t0 = now();
    const res = h.waitFor(i);
    h.child.stdin.write(`${call(i)}\n`);
    const msg = await res;
    lat.push(now() - t0);
    check(h, msg, i);
  }
  h.child.stdin.end();
  await h.exit;
  return { steady: lat };
}

async function floor() {
  const lat = [];
  for (let k = 0; k < N; k++) {
    const t0 = now();
    const child = spawn(prog, args, { stdio: 'ignore' });
    const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
    if (code !== 0) {
      process.stderr.write(`bench_sandbox: ${prog} exited with ${code}\n`);
      process.exit(1);
    }
    lat.push(now() - t0);
  }
  return { floor: lat };
}

const result = mode === 'provision' ? await provision() : mode === 'steady' ? await steady() : await floor();
process.stdout.write(`${JSON.stringify(result)}\n`);
