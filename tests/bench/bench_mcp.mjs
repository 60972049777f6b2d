// SPDX-License-Identifier: MIT
// tests/bench/bench_mcp.mjs — agentbroker-mcp against the official MCP TypeScript SDK's own stdio
// server, side by side in one run, with the same client code (`make bench`, through
// run-bench-mcp.sh, which starts the broker, auditd and journald and sets the environment).
//
// Both servers serve `echo.echo {text}` over stdio. For each server and each client it measures:
//   cold start   spawn -> initialize answered -> first tools/call result (median of --spawns)
//   sequential   tools/call latency, one call at a time (p50/p90/p99 of --calls after --warmup)
//                (the servers' sessions are open side by side and take turns in blocks of calls,
//                so that both see the same machine and the same, warmed-up, client)
//   in flight    calls/s with --inflight calls outstanding (--parallel-calls calls in all)
//   memory       VmRSS and PSS (smaps_rollup) of the server's process tree: agentbroker-mcp plus
//                its module workers; the SDK server's node process
//   CPU          of the client (process.cpuUsage), of the server tree (the host process and its
//                workers apart), and of the processes named in AB_WATCH (the broker, auditd,
//                journald, kauditd), per call; their sum, and the calls/s that sum allows on
//                this machine's CPUs (no schedule of these processes does better)
// with two clients:
//   sdk   the official SDK Client + StdioClientTransport (@modelcontextprotocol/sdk)
//   raw   a minimal client: newline-delimited JSON-RPC over the child's stdin/stdout, no SDK,
//         so that the servers are compared fairly where the SDK client itself is the bottleneck.
// Every result is checked (not isError, the text echoed back); any failure fails the run.
//
// Environment (set by run-bench-mcp.sh):
//   AB_MCP        agentbroker-mcp program        AB_WORKER   agentbroker-worker program
//   AB_SOCK       the broker's socket            AB_MODULES  the module directory (echo.so)
//   AB_MCP_LIBPATH  LD_LIBRARY_PATH for AB_MCP (only when it needs one)
//   AB_SDK_SERVER the SDK echo server (default: sdk_echo_server.mjs beside this file)
//   AB_WATCH      name=pid,... of other processes whose CPU time is counted per call
// Options: --spawns N (20) --warmup N (300) --calls N (2000) --parallel-calls N (20000)
//   --inflight N (32) --clients sdk,raw --servers agentbroker,sdk --check-targets
//   --attach CMD [--attach-phase sequential|throughput]: run CMD (sh -c) around that phase of
//   the agentbroker-mcp raw-client session with {pids} replaced by the host's and its workers'
//   pids (comma-separated); it is stopped with SIGINT when the phase ends (perf, strace -c).
// Prints aligned text, then one JSON line. Exit status: 0 measured, 1 failed, 3 a target
// missed (only with --check-targets).
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { processTree, readText, runAttach, runMain, table, watched } from './bench_util.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const TOOL = 'echo.echo';
const CLIENT_INFO = { name: 'agentbroker-bench', version: '1.0.0' };
const PROTOCOL = '2025-11-25';
const TARGETS = { coldStartMs: 20, rssMiB: 8, parallelCallsPerSec: 10000 };

// --- options ---------------------------------------------------------------------------------
function parseArgs(argv) {
	const o = {
		spawns: 20, warmup: 300, calls: 2000, parallelCalls: 20000, inflight: 32,
		clients: ['sdk', 'raw'], servers: ['agentbroker', 'sdk'], checkTargets: false,
		attach: null, attachPhase: 'throughput',
	};
	const ints = { '--spawns': 'spawns', '--warmup': 'warmup', '--calls': 'calls',
		'--parallel-calls': 'parallelCalls', '--inflight': 'inflight' };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const val = () => {
			if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
			return argv[++i];
		};
		if (a in ints) {
			const v = Number(val());
			if (!Number.isInteger(v) || v < 1 || v > 10_000_000) throw new Error(`${a} must be 1..10000000`);
			o[ints[a]] = v;
		} else if (a === '--clients' || a === '--servers') {
			const allowed = a === '--clients' ? ['sdk', 'raw'] : ['agentbroker', 'sdk'];
			const list = val().split(',').filter(Boolean);
			if (!list.length || list.some((x) => !allowed.includes(x)))
				throw new Error(`${a} takes a list of ${allowed.join(', ')}`);
			o[a.slice(2)] = list;
		} else if (a === '--check-targets') {
			o.checkTargets = true;
		} else if (a === '--attach') {
			o.attach = val();
		} else if (a === '--attach-phase') {
			o.attachPhase = val();
			if (!['sequential', 'throughput'].includes(o.attachPhase))
				throw new Error('--attach-phase is sequential or throughput');
		} else {
			throw new Error(`unknown option '${a}'`);
		}
	}
	if (o.inflight > o.parallelCalls) throw new Error('--inflight must not exceed --parallel-calls');
	o.burst = Math.min(o.parallelCalls, 50 * o.inflight); // in-flight warm-up calls
	return o;
}

function need(name) {
	const v = process.env[name];
	if (!v) throw new Error(`${name} is not set: run this through tests/bench/run-bench-mcp.sh`);
	return v;
}

// --- /proc: CPU time, memory ------------------------------------------------------------------
// CPU time of a process (all its threads) in ns, from the scheduler's accounting; 0 when gone.
function cpuNs(pid) {
	let sum = 0;
	let tasks;
	try {
		tasks = readdirSync(`/proc/${pid}/task`);
	} catch {
		return 0;
	}
	for (const t of tasks) {
		const s = readText(`/proc/${pid}/task/${t}/schedstat`);
		if (s) sum += Number(s.split(' ')[0]);
	}
	return sum;
}

function cpuSnapshot(pids) {
	return new Map(pids.map((p) => [p, cpuNs(p)]));
}

// CPU ns used since `before` by the processes in `after` (new processes count from 0).
function cpuDelta(before, after) {
	let d = 0;
	for (const [p, ns] of after) d += ns - (before.get(p) ?? 0);
	return d;
}

function kib(text, key) {
	const m = text && text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'));
	return m ? Number(m[1]) : 0;
}

// VmRSS, VmHWM and PSS (KiB) summed over pid's process tree.
function treeMemory(pid) {
	const pids = processTree(pid);
	const r = { processes: pids.length, rssKiB: 0, hwmKiB: 0, pssKiB: 0, each: [] };
	for (const p of pids) {
		const st = readText(`/proc/${p}/status`);
		const sm = readText(`/proc/${p}/smaps_rollup`);
		const e = { pid: p, name: kibName(st), rssKiB: kib(st, 'VmRSS'), hwmKiB: kib(st, 'VmHWM'), pssKiB: kib(sm, 'Pss') };
		r.rssKiB += e.rssKiB;
		r.hwmKiB += e.hwmKiB;
		r.pssKiB += e.pssKiB;
		r.each.push(e);
	}
	return r;
}

function kibName(status) {
	const m = status && status.match(/^Name:\s+(.*)$/m);
	return m ? m[1] : '?';
}

// --- the clients ----------------------------------------------------------------------------
// The environment both clients give the server: what the SDK's StdioClientTransport passes by
// default (getDefaultEnvironment) plus the server's own.
function serverEnv(extra) {
	const env = {};
	for (const k of ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER'])
		if (process.env[k] !== undefined && !process.env[k].startsWith('()')) env[k] = process.env[k];
	return { ...env, ...extra };
}

// Calls answered with the right echo, per server (run-bench-mcp.sh matches agentbroker-mcp's
// count against the broker's journal entries).
const CALLS_DONE = {};

function checkEcho(res, text) {
	if (res?.isError) throw new Error(`isError result: ${res.content?.[0]?.text ?? JSON.stringify(res)}`);
	const got = res?.content?.[0]?.text;
	if (got !== text) throw new Error(`wrong result: ${JSON.stringify(res).slice(0, 300)}`);
}

// A session of the official SDK client: Client + StdioClientTransport.
class SdkSession {
	static label = 'official SDK Client (StdioClientTransport)';

	async start(spec) {
		this.key = spec.key;
		this.transport = new StdioClientTransport({
			command: spec.command, args: spec.args, env: serverEnv(spec.env), stderr: 'pipe',
		});
		this.stderr = '';
		this.transport.stderr.on('data', (d) => (this.stderr += d));
		this.client = new Client(CLIENT_INFO, { capabilities: {} });
		await this.client.connect(this.transport);
		this.pid = this.transport.pid;
	}

	async call(text) {
		checkEcho(await this.client.callTool({ name: TOOL, arguments: { text } }), text);
		CALLS_DONE[this.key]++;
	}

	async close() {
		await this.client.close();
	}
}

// A session of the minimal client: JSON lines over the child's pipes, responses matched by id.
class RawSession {
	static label = 'raw client (newline JSON over the pipes, no SDK)';

	start(spec) {
		this.key = spec.key;
		return new Promise((resolve, reject) => {
			this.pending = new Map();
			this.nextId = 1;
			this.buf = '';
			this.stderr = '';
			this.child = spawn(spec.command, spec.args, { env: serverEnv(spec.env), stdio: ['pipe', 'pipe', 'pipe'] });
			this.exited = new Promise((r) => this.child.once('close', r));
			this.child.once('error', reject);
			this.child.stderr.setEncoding('utf8');
			this.child.stderr.on('data', (d) => (this.stderr += d));
			this.child.stdout.setEncoding('utf8');
			this.child.stdout.on('data', (d) => this.onData(d));
			this.child.once('close', (code, sig) => {
				for (const p of this.pending.values()) p.reject(new Error(`server exited (${code ?? sig})`));
				this.pending.clear();
			});
			this.child.once('spawn', () => {
				this.pid = this.child.pid;
				this.request('initialize', { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: CLIENT_INFO })
					.then((r) => {
						if (typeof r?.protocolVersion !== 'string') throw new Error('initialize: no protocolVersion');
						this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
						resolve();
					})
					.catch(reject);
			});
		});
	}

	onData(chunk) {
		let buf = this.buf + chunk;
		let nl;
		while ((nl = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, nl);
			buf = buf.slice(nl + 1);
			if (!line.trim()) continue;
			let msg;
			try {
				msg = JSON.parse(line);
			} catch {
				const e = new Error(`server wrote a line that is not JSON: ${line.slice(0, 200)}`);
				for (const p of this.pending.values()) p.reject(e);
				this.pending.clear();
				continue;
			}
			if (msg.method !== undefined || msg.id === undefined) continue; // notifications, requests
			const p = this.pending.get(msg.id);
			if (!p) continue;
			this.pending.delete(msg.id);
			if (msg.error) p.reject(new Error(`JSON-RPC error ${msg.error.code}: ${msg.error.message}`));
			else p.resolve(msg.result);
		}
		this.buf = buf;
	}

	send(msg) {
		this.child.stdin.write(JSON.stringify(msg) + '\n');
	}

	request(method, params) {
		const id = this.nextId++;
		return new Promise((resolve, reject) => {
			this.pending.set(id, { resolve, reject });
			this.send({ jsonrpc: '2.0', id, method, params });
		});
	}

	async call(text) {
		checkEcho(await this.request('tools/call', { name: TOOL, arguments: { text } }), text);
		CALLS_DONE[this.key]++;
	}

	async close() {
		this.child.stdin.end();
		const timer = setTimeout(() => this.child.kill('SIGTERM'), 5000);
		await this.exited;
		clearTimeout(timer);
	}
}

const CLIENTS = { sdk: SdkSession, raw: RawSession };

// --- statistics and formatting ---------------------------------------------------------------
function quantile(sorted, q) {
	if (!sorted.length) return NaN;
	const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
	return sorted[i];
}

function summarize(ns) {
	const s = Float64Array.from(ns).sort();
	const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
	return { n: s.length, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), min: s[0], max: s[s.length - 1], mean };
}

const us = (ns) => ns / 1e3;
const ms = (ns) => ns / 1e6;
const f = (x, d = 1) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '-');
const mib = (k) => k / 1024;

function textOf(i) {
	return `hello from the benchmark, call ${i}`;
}

// --- measurements ----------------------------------------------------------------------------
// Runs body(s) with a new session; a failure names the server and shows the end of its stderr.
async function withSession(Session, spec, body) {
	const s = new Session();
	try {
		return await body(s);
	} catch (e) {
		const tail = (s.stderr ?? '').trimEnd().split('\n').slice(-8).map((l) => `  ${spec.label}: ${l}`).join('\n');
		try {
			await s.close();
		} catch {
			// already gone
		}
		throw new Error(`${spec.label}: ${e?.message ?? e}${tail ? `\n${tail}` : ''}`);
	}
}

async function coldStart(Session, spec) {
	return withSession(Session, spec, async (s) => {
		const t0 = process.hrtime.bigint();
		await s.start(spec);
		const t1 = process.hrtime.bigint();
		await s.call(textOf(0));
		const t2 = process.hrtime.bigint();
		await s.close();
		return { initNs: Number(t1 - t0), firstNs: Number(t2 - t0) };
	});
}

// A phase's numbers for one server, summed over its blocks.
function newTally(calls) {
	return { calls: 0, wallNs: 0, clientCpuNs: 0, serverCpuNs: 0, hostCpuNs: 0, watchNs: {}, latNs: new Float64Array(calls) };
}

// Runs `count` calls on session s with `inflight` calls outstanding (1: sequential) and adds
// their latencies, wall time and CPU times (client, server tree, watched processes) to tally.
async function block(s, count, inflight, tally) {
	const w = watched();
	const srv0 = cpuSnapshot(processTree(s.pid));
	const w0 = w.map((x) => cpuNs(x.pid));
	const cpu0 = process.cpuUsage();
	const base = tally.calls;
	let next = 0;
	const lane = async () => {
		while (next < count) {
			const i = next++;
			const t = process.hrtime.bigint();
			await s.call(textOf(base + i));
			tally.latNs[base + i] = Number(process.hrtime.bigint() - t);
		}
	};
	const t0 = process.hrtime.bigint();
	await Promise.all(Array.from({ length: Math.min(inflight, count) }, lane));
	tally.wallNs += Number(process.hrtime.bigint() - t0);
	const cpu1 = process.cpuUsage(cpu0);
	tally.clientCpuNs += (cpu1.user + cpu1.system) * 1e3;
	const srv1 = cpuSnapshot(processTree(s.pid));
	tally.serverCpuNs += cpuDelta(srv0, srv1);
	tally.hostCpuNs += (srv1.get(s.pid) ?? 0) - (srv0.get(s.pid) ?? 0);
	w.forEach((x, i) => (tally.watchNs[x.name] = (tally.watchNs[x.name] ?? 0) + cpuNs(x.pid) - w0[i]));
	tally.calls += count;
}

// Runs a phase of `total` calls per server in rounds of `per` calls, the servers taking turns
// (the order flips every round), so that both see the same machine and the same client JIT state.
async function phase(sessions, order, total, per, inflight, current) {
	const tallies = Object.fromEntries(order.map((k) => [k, newTally(total)]));
	for (let round = 0; tallies[order[0]].calls < total; round++)
		for (const k of round % 2 ? [...order].reverse() : order) {
			current.key = k;
			await block(sessions[k], Math.min(per, total - tallies[k].calls), inflight, tallies[k]);
		}
	for (const k of order) {
		tallies[k].lat = summarize(tallies[k].latNs);
		delete tallies[k].latNs;
	}
	return tallies;
}

// One session per server, open side by side: first call, warm-up (sequential and in flight),
// the sequential phase, the in-flight phase, memory after the first call and after all calls.
// Returns { server: { memoryFirst, sequential, throughput, memoryLoaded } }.
async function sessions(Session, specs, order, o, attach) {
	const open = {};
	const current = { key: order[0] };
	const r = Object.fromEntries(order.map((k) => [k, {}]));
	try {
		for (const k of order) {
			current.key = k;
			open[k] = new Session();
			await open[k].start(specs[k]);
			await open[k].call(textOf(0));
			r[k].memoryFirst = treeMemory(open[k].pid);
		}
		await phase(open, order, o.warmup, o.warmup, 1, current);
		await phase(open, order, o.burst, o.burst, o.inflight, current);

		const run = async (name, body) => {
			let stop = null;
			if (attach?.phase === name && open.agentbroker)
				stop = await runAttach(attach.cmd, processTree(open.agentbroker.pid));
			const t = await body();
			if (stop) await stop();
			for (const k of order) r[k][name] = t[k];
		};
		await run('sequential', () => phase(open, order, o.calls, Math.min(100, o.calls), 1, current));
		await run('throughput', () =>
			phase(open, order, o.parallelCalls, Math.ceil(o.parallelCalls / 5), o.inflight, current));
		for (const k of order) {
			current.key = k;
			r[k].memoryLoaded = treeMemory(open[k].pid);
			await open[k].close();
			delete open[k];
		}
		return r;
	} catch (e) {
		const k = current.key;
		const tail = (open[k]?.stderr ?? '').trimEnd().split('\n').slice(-8).map((l) => `  ${specs[k].label}: ${l}`).join('\n');
		for (const s of Object.values(open)) await s.close().catch(() => {});
		throw new Error(`${specs[k].label}: ${e?.message ?? e}${tail ? `\n${tail}` : ''}`);
	}
}

// --- the report --------------------------------------------------------------------------------
// CPU time of the client, the server tree and the watched processes in a phase.
function totalCpuNs(p) {
	return p.clientCpuNs + p.serverCpuNs + Object.values(p.watchNs).reduce((a, b) => a + Math.max(0, b), 0);
}

function perCall(ns, calls) {
	return us(ns / calls);
}

function reportClient(kind, res, order, o) {
	const names = order.map((k) => res[k].label);
	const rows = [];
	const each = (label, fn, target = '') => rows.push([label, ...order.map((k) => fn(res[k])), target]);
	const blank = (label) => rows.push([label]);
	each(`cold start: initialize answered, median of ${o.spawns}`, (r) => `${f(ms(r.cold.init.p50), 2)} ms`);
	each('cold start: first result, median', (r) => `${f(ms(r.cold.first.p50), 2)} ms`, `<= ${TARGETS.coldStartMs} ms`);
	each('cold start: first result, min .. max', (r) => `${f(ms(r.cold.first.min), 1)} .. ${f(ms(r.cold.first.max), 1)} ms`);
	blank(`sequential tools/call (${o.calls} calls; warm-up: ${o.warmup} sequential, ${o.burst} in flight)`);
	each('  latency p50', (r) => `${f(us(r.session.sequential.lat.p50))} us`, 'agentbroker <= SDK');
	each('  latency p90', (r) => `${f(us(r.session.sequential.lat.p90))} us`);
	each('  latency p99', (r) => `${f(us(r.session.sequential.lat.p99))} us`);
	each('  calls/s', (r) => f(r.session.sequential.calls / (r.session.sequential.wallNs / 1e9), 0));
	cpuRows(each, 'sequential', order, res);
	blank(`${o.inflight} calls in flight (${o.parallelCalls} calls)`);
	each('  calls/s', (r) => f(r.session.throughput.calls / (r.session.throughput.wallNs / 1e9), 0), `>= ${f(TARGETS.parallelCallsPerSec, 0)}`);
	each('  latency p50 / p99', (r) => `${f(us(r.session.throughput.lat.p50), 0)} / ${f(us(r.session.throughput.lat.p99), 0)} us`);
	cpuRows(each, 'throughput', order, res);
	blank('memory of the server (host + workers; SDK: node)');
	each('  after the first call: processes', (r) => r.session.memoryFirst.processes);
	each('  after the first call: RSS (sum of VmRSS)', (r) => `${f(mib(r.session.memoryFirst.rssKiB), 2)} MiB`, `<= ${TARGETS.rssMiB} MiB`);
	each('  after the first call: PSS (smaps_rollup)', (r) => `${f(mib(r.session.memoryFirst.pssKiB), 2)} MiB`);
	each(`  after ${f(1 + o.warmup + o.burst + o.calls + o.parallelCalls, 0)} calls: processes`, (r) => r.session.memoryLoaded.processes);
	each('  after the calls: RSS (sum of VmRSS)', (r) => `${f(mib(r.session.memoryLoaded.rssKiB), 2)} MiB`, `<= ${TARGETS.rssMiB} MiB`);
	each('  after the calls: PSS (smaps_rollup)', (r) => `${f(mib(r.session.memoryLoaded.pssKiB), 2)} MiB`);
	each('  peak RSS (sum of VmHWM)', (r) => `${f(mib(r.session.memoryLoaded.hwmKiB), 2)} MiB`);
	console.log(`\n== client: ${CLIENTS[kind].label}`);
	console.log(table(rows, ['', ...names, 'target']));
	const procs = res.agentbroker?.session.memoryLoaded.each;
	if (procs)
		console.log(`   agentbroker-mcp's processes after the calls: ${procs.map((e) => `${e.name}[${e.pid}] RSS ${f(mib(e.rssKiB), 2)} PSS ${f(mib(e.pssKiB), 2)} MiB`).join('; ')}`);
}

function cpuRows(each, phase, order, res) {
	each('  client CPU per call (% of one core)', (r) => {
		const p = r.session[phase];
		return `${f(perCall(p.clientCpuNs, p.calls))} us (${f((100 * p.clientCpuNs) / p.wallNs, 0)}%)`;
	});
	each('  server CPU per call (% of one core)', (r) => {
		const p = r.session[phase];
		return `${f(perCall(p.serverCpuNs, p.calls))} us (${f((100 * p.serverCpuNs) / p.wallNs, 0)}%)`;
	});
	each('    of it the host process (SDK: node)', (r) => `${f(perCall(r.session[phase].hostCpuNs, r.session[phase].calls))} us`);
	each('    of it the module workers', (r) => {
		const p = r.session[phase];
		return `${f(perCall(p.serverCpuNs - p.hostCpuNs, p.calls))} us`;
	});
	const names = [...new Set(order.flatMap((k) => Object.keys(res[k].session[phase].watchNs)))];
	for (const n of names)
		each(`  ${n} CPU per call`, (r) => {
			const p = r.session[phase];
			return n in p.watchNs ? `${f(perCall(p.watchNs[n], p.calls))} us` : '';
		});
	// Every process's CPU time per call, summed: on this many CPUs no schedule does better
	// than CPUs / that sum calls per second.
	each('  CPU per call, all of the above', (r) => `${f(perCall(totalCpuNs(r.session[phase]), r.session[phase].calls))} us`);
	each(`  => at most, on ${os.cpus().length} CPUs`, (r) => {
		const p = r.session[phase];
		return `${f((os.cpus().length * 1e9 * p.calls) / totalCpuNs(p), 0)} calls/s`;
	});
}

// --- main ----------------------------------------------------------------------------------------
async function main() {
	const o = parseArgs(process.argv.slice(2));
	const specs = {};
	if (o.servers.includes('agentbroker')) {
		const env = { AGENTBROKER_WORKER: need('AB_WORKER') };
		if (process.env.AB_MCP_LIBPATH) env.LD_LIBRARY_PATH = process.env.AB_MCP_LIBPATH;
		specs.agentbroker = {
			key: 'agentbroker',
			label: 'agentbroker-mcp',
			command: need('AB_MCP'),
			args: ['--broker', need('AB_SOCK'), '--modules', need('AB_MODULES')],
			env,
		};
	}
	if (o.servers.includes('sdk'))
		specs.sdk = {
			key: 'sdk',
			label: 'SDK server',
			command: process.execPath,
			args: [process.env.AB_SDK_SERVER || join(HERE, 'sdk_echo_server.mjs')],
			env: {},
		};
	const order = o.servers.filter((k) => specs[k]);
	for (const k of order) CALLS_DONE[k] = 0;
	// The SDK's package.json is not among its exports: find it from a module that is.
	const sdkEntry = fileURLToPath(import.meta.resolve('@modelcontextprotocol/sdk/client/index.js'));
	const sdkVersion = JSON.parse(readFileSync(join(sdkEntry, '../../../../package.json'), 'utf8')).version;
	console.log(`MCP benchmark: ${TOOL} over stdio; node ${process.version}, @modelcontextprotocol/sdk ${sdkVersion}, ` +
		`${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);
	for (const k of order) console.log(`  ${specs[k].label}: ${[specs[k].command, ...specs[k].args].join(' ')}`);

	const results = {};
	const attach = o.attach ? { cmd: o.attach, phase: o.attachPhase } : null;
	for (const kind of o.clients) {
		const Session = CLIENTS[kind];
		const res = {};
		for (const k of order) res[k] = { label: specs[k].label, coldNs: { init: [], first: [] } };
		// Cold starts alternate between the servers, so that both see the same machine state.
		for (let i = 0; i < o.spawns; i++)
			for (const k of order) {
				const c = await coldStart(Session, specs[k]);
				res[k].coldNs.init.push(c.initNs);
				res[k].coldNs.first.push(c.firstNs);
			}
		for (const k of order) {
			res[k].cold = { init: summarize(res[k].coldNs.init), first: summarize(res[k].coldNs.first) };
			delete res[k].coldNs;
		}
		const ses = await sessions(Session, specs, order, o, kind === 'raw' ? attach : null);
		for (const k of order) res[k].session = ses[k];
		reportClient(kind, res, order, o);
		results[kind] = res;
	}

	// Targets, per client: agentbroker-mcp's numbers (and the SDK server's p50 in the same run).
	const verdicts = {};
	let missed = false;
	console.log('\n== targets (issue 3), agentbroker-mcp');
	for (const kind of o.clients) {
		const ab = results[kind].agentbroker;
		if (!ab) continue;
		const sdk = results[kind].sdk;
		const tput = ab.session.throughput.calls / (ab.session.throughput.wallNs / 1e9);
		const rss = Math.max(ab.session.memoryFirst.rssKiB, ab.session.memoryLoaded.rssKiB);
		const v = {
			cold_start_ms: { value: ms(ab.cold.first.p50), target: TARGETS.coldStartMs, met: ms(ab.cold.first.p50) <= TARGETS.coldStartMs },
			rss_mib: { value: mib(rss), target: TARGETS.rssMiB, met: mib(rss) <= TARGETS.rssMiB },
			sequential_p50_us: sdk
				? { value: us(ab.session.sequential.lat.p50), target: us(sdk.session.sequential.lat.p50), met: ab.session.sequential.lat.p50 <= sdk.session.sequential.lat.p50 }
				: { value: us(ab.session.sequential.lat.p50), target: null, met: null },
			parallel_calls_per_s: { value: tput, target: TARGETS.parallelCallsPerSec, met: tput >= TARGETS.parallelCallsPerSec },
		};
		verdicts[kind] = v;
		const word = (m) => (m === null ? 'n/a' : m ? 'met' : 'MISSED');
		const rows = [
			['cold start to first result (median)', `${f(v.cold_start_ms.value, 2)} ms`, `<= ${TARGETS.coldStartMs} ms`, word(v.cold_start_ms.met)],
			['host + workers RSS (largest sample)', `${f(v.rss_mib.value, 2)} MiB`, `<= ${TARGETS.rssMiB} MiB`, word(v.rss_mib.met)],
			['sequential p50', `${f(v.sequential_p50_us.value)} us`, sdk ? `<= ${f(v.sequential_p50_us.target)} us (SDK server)` : '-', word(v.sequential_p50_us.met)],
			[`${o.inflight} in flight, full auditing`, `${f(tput, 0)} calls/s`, `>= ${f(TARGETS.parallelCallsPerSec, 0)} calls/s`, word(v.parallel_calls_per_s.met)],
		];
		console.log(`-- with the ${CLIENTS[kind].label}`);
		console.log(table(rows, ['', 'measured', 'target', '']));
		if (Object.values(v).some((x) => x.met === false)) missed = true;
	}

	const strip = (res) => Object.fromEntries(Object.entries(res).map(([k, r]) => [k, {
		cold_start_init_ms_p50: ms(r.cold.init.p50), cold_start_first_ms_p50: ms(r.cold.first.p50),
		cold_start_first_ms_min: ms(r.cold.first.min), cold_start_first_ms_max: ms(r.cold.first.max),
		seq_us: { p50: us(r.session.sequential.lat.p50), p90: us(r.session.sequential.lat.p90), p99: us(r.session.sequential.lat.p99), mean: us(r.session.sequential.lat.mean) },
		seq_client_cpu_us_per_call: perCall(r.session.sequential.clientCpuNs, r.session.sequential.calls),
		seq_server_cpu_us_per_call: perCall(r.session.sequential.serverCpuNs, r.session.sequential.calls),
		inflight_calls_per_s: r.session.throughput.calls / (r.session.throughput.wallNs / 1e9),
		inflight_us: { p50: us(r.session.throughput.lat.p50), p99: us(r.session.throughput.lat.p99) },
		inflight_client_cpu_us_per_call: perCall(r.session.throughput.clientCpuNs, r.session.throughput.calls),
		inflight_client_cpu_pct: (100 * r.session.throughput.clientCpuNs) / r.session.throughput.wallNs,
		inflight_server_cpu_us_per_call: perCall(r.session.throughput.serverCpuNs, r.session.throughput.calls),
		inflight_host_cpu_us_per_call: perCall(r.session.throughput.hostCpuNs, r.session.throughput.calls),
		inflight_total_cpu_us_per_call: perCall(totalCpuNs(r.session.throughput), r.session.throughput.calls),
		seq_host_cpu_us_per_call: perCall(r.session.sequential.hostCpuNs, r.session.sequential.calls),
		inflight_watch_cpu_us_per_call: Object.fromEntries(Object.entries(r.session.throughput.watchNs).map(([n, ns]) => [n, perCall(ns, r.session.throughput.calls)])),
		rss_mib_first: mib(r.session.memoryFirst.rssKiB), pss_mib_first: mib(r.session.memoryFirst.pssKiB),
		rss_mib_loaded: mib(r.session.memoryLoaded.rssKiB), pss_mib_loaded: mib(r.session.memoryLoaded.pssKiB),
		processes_loaded: r.session.memoryLoaded.processes,
	}]));
	const json = {
		bench: 'mcp', tool: TOOL, node: process.version, sdk: sdkVersion, cpus: os.cpus().length,
		spawns: o.spawns, calls: o.calls, parallel_calls: o.parallelCalls, inflight: o.inflight,
		results: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, strip(r)])),
		targets: verdicts,
		calls_done: CALLS_DONE,
	};
	console.log(JSON.stringify(json));
	return o.checkTargets && missed ? 3 : 0;
}

runMain(main, 'bench_mcp');
