// SPDX-License-Identifier: MIT
// tests/bench/bench_http.mjs — agentbroker-mcp --http against the official MCP TypeScript SDK's
// Streamable HTTP server, side by side in one run, with the same load client (`make bench`,
// through run-bench-http.sh, which starts the broker, auditd and journald and sets the
// environment).
//
// Both serve `echo.echo {text}` on 127.0.0.1 with a bearer token. The load client is
// bench_http (C, libcurl multi, HTTP/1.1 keep-alive; one process per measurement, so that its
// own CPU time is measured alone); it checks every answer. For each case and each server:
//   sequential   one call at a time (--calls after --warmup): calls/s, latency p50/p90/p99
//   in flight    --inflight calls outstanding (--parallel-calls): calls/s, latency
//   CPU per call of every process that does the work, from /proc/PID/stat deltas: the client;
//                agentbroker-mcp (host), its module workers, agentbrokerd, journald, auditd,
//                kauditd; the SDK server's node process; and the whole machine (/proc/stat)
// Cases (--cases):
//   2025-json   2025-11-25 session (initialize, Mcp-Session-Id), JSON answers: agentbroker-mcp
//               gets `Accept: application/json`; the SDK server (stateful) enableJsonResponse
//   2025-sse    the same with SSE answers: `Accept: application/json, text/event-stream`
//               (agentbroker-mcp answers a tools/call with an SSE stream when the client
//               accepts one); the SDK server's default (SSE)
//   2026-json   2026-07-28, stateless (MCP-Protocol-Version, Mcp-Method, Mcp-Name, _meta on
//               every call). The SDK (1.x) does not speak 2026-07-28: its counterpart is its
//               stateless mode (a new server and transport per request) with 2025-11-25
//   2026-sse    the same with SSE answers
// Targets (issue 4): in flight, agentbroker-mcp >= 10x the SDK server's calls/s with full
// auditing; sequential p99 <= 2 ms. Where the throughput target is out of reach, the report
// shows the CPU accounting: CPU per call summed over the processes that must do the work
// against what the machine's CPUs can give.
//
// Environment (set by run-bench-http.sh):
//   AB_MCP, AB_MCP_LIBPATH, AB_WORKER, AB_SOCK, AB_MODULES   as for bench_mcp.mjs
//   AB_CTL       agentbrokerctl (issues the token: http-token)
//   AB_CLIENT    the bench_http program
//   AB_WATCH     name=pid,... of the other processes whose CPU time counts (broker, journald,
//                auditd, kauditd)
// Options: --warmup N (300) --calls N (3000) --parallel-calls N (20000) --inflight N (32)
//   --cases 2025-json,2025-sse,2026-json,2026-sse --servers agentbroker,sdk
//   --attach CMD: run CMD (sh -c) around agentbroker-mcp's in-flight phases with {pids}
//   replaced by the host's and its workers' pids (perf record, strace -c); stopped with SIGINT.
// Prints aligned text, then one JSON line. Exit status: 0 measured, 1 failed, 3 a target
// missed (only with --check-targets).
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { processTree, runAttach, runMain, table, watched } from './bench_util.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const TARGET_RATIO = 10;
const TARGET_P99_US = 2000;
const CASES = {
	'2025-json': {
		title: '2025-11-25 session, JSON answers',
		ab: { mode: 'session', accept: 'json' },
		sdk: { server: ['stateful', 'json'], mode: 'session', accept: 'json', acceptBoth: true },
	},
	'2025-sse': {
		title: '2025-11-25 session, SSE answers',
		ab: { mode: 'session', accept: 'sse' },
		sdk: { server: ['stateful', 'sse'], mode: 'session', accept: 'sse' },
	},
	'2026-json': {
		title: '2026-07-28 stateless, JSON answers (SDK: stateless mode, 2025-11-25)',
		ab: { mode: 'stateless-2026', accept: 'json' },
		sdk: { server: ['stateless', 'json'], mode: 'stateless-2025', accept: 'json', acceptBoth: true },
	},
	'2026-sse': {
		title: '2026-07-28 stateless, SSE answers (SDK: stateless mode, 2025-11-25)',
		ab: { mode: 'stateless-2026', accept: 'sse' },
		sdk: { server: ['stateless', 'sse'], mode: 'stateless-2025', accept: 'sse' },
	},
};
// The processes that must do agentbroker-mcp's work, in report order.
const AB_PROCS = ['host', 'workers', 'broker', 'journald', 'auditd', 'kauditd'];

function parseArgs(argv) {
	const o = {
		warmup: 300, calls: 3000, parallelCalls: 20000, inflight: 32,
		cases: Object.keys(CASES), servers: ['agentbroker', 'sdk'], checkTargets: false, attach: null,
	};
	const ints = { '--warmup': 'warmup', '--calls': 'calls', '--parallel-calls': 'parallelCalls', '--inflight': 'inflight' };
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
		} else if (a === '--cases' || a === '--servers') {
			const allowed = a === '--cases' ? Object.keys(CASES) : ['agentbroker', 'sdk'];
			const list = val().split(',').filter(Boolean);
			if (!list.length || list.some((x) => !allowed.includes(x)))
				throw new Error(`${a} takes a list of ${allowed.join(', ')}`);
			o[a.slice(2)] = list;
		} else if (a === '--check-targets') {
			o.checkTargets = true;
		} else if (a === '--attach') {
			o.attach = val();
		} else {
			throw new Error(`unknown option '${a}'`);
		}
	}
	if (o.inflight > o.parallelCalls) throw new Error('--inflight must not exceed --parallel-calls');
	return o;
}

function need(name) {
	const v = process.env[name];
	if (!v) throw new Error(`${name} is not set: run this through tests/bench/run-bench-http.sh`);
	return v;
}

// --- servers ----------------------------------------------------------------------------------
// A child whose stderr (or stdout) prints a line matching re; resolves with the match.
function startServer(label, command, args, env, re, stream) {
	return new Promise((resolve, reject) => {
		const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
		let out = '';
		let err = '';
		let done = false;
		const timer = setTimeout(() => finish(new Error(`${label} did not start within 15 s:\n${err}${out}`)), 15000);
		const finish = (e, m) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			if (e) {
				child.kill('SIGKILL');
				reject(e);
			} else resolve({ child, match: m, log: () => err });
		};
		const look = () => {
			const m = (stream === 'stdout' ? out : err).match(re);
			if (m) finish(null, m);
		};
		child.stdout.setEncoding('utf8').on('data', (d) => {
			out += d;
			look();
		});
		child.stderr.setEncoding('utf8').on('data', (d) => {
			err = (err + d).slice(-20000);
			look();
		});
		child.once('error', (e) => finish(e));
		child.once('exit', (code, sig) => finish(new Error(`${label} exited (${code ?? sig}) at start:\n${err}${out}`)));
		child.exited = new Promise((r) => child.once('exit', r));
	});
}

async function stopServer(s) {
	if (!s || s.child.exitCode !== null) return;
	s.child.kill('SIGTERM');
	const t = setTimeout(() => s.child.kill('SIGKILL'), 5000);
	await s.child.exited;
	clearTimeout(t);
}

function execOut(cmd, args, env) {
	return new Promise((resolve, reject) => {
		execFile(cmd, args, { env: { ...process.env, ...env }, maxBuffer: 16 << 20 }, (e, stdout, stderr) => {
			if (e) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || e.message}`));
			else resolve(stdout);
		});
	});
}

// --- one measurement ----------------------------------------------------------------------------
const CALLS_DONE = { agentbroker: 0, sdk: 0 };

async function measure(server, spec, url, token, watch, count, inflight, warmup) {
	const args = ['--url', url, '--mode', spec.mode, '--accept', spec.accept, '--inflight', String(inflight),
		'--calls', String(count), '--warmup', String(warmup)];
	if (spec.acceptBoth) args.push('--accept-both');
	for (const w of watch) args.push(w.tree ? '--watch-tree' : '--watch', `${w.name}=${w.pid}`);
	const out = await execOut(need('AB_CLIENT'), args, { BENCH_HTTP_TOKEN: token });
	const r = JSON.parse(out.trim().split('\n').pop());
	CALLS_DONE[server] += warmup + count;
	return r;
}

// --- formatting -------------------------------------------------------------------------------
const f = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '-');
const rate = (r) => r.calls / (r.wall_ns / 1e9);
const perCallUs = (ns, r) => ns / r.calls / 1e3;

// How much of the machine's CPU time during measurement r was not this benchmark's (in %).
function otherPct(r) {
	const ours = r.client_cpu_ns + Object.values(r.cpu_ns).reduce((a, b) => a + b, 0);
	return Math.max(0, (100 * (r.machine_busy_ns - ours)) / r.wall_ns / r.cpus);
}

// CPU per call of the processes that do a server's work (without the client), in us.
function serverCpuUs(server, r) {
	const names = server === 'agentbroker' ? AB_PROCS : ['server'];
	return names.reduce((a, n) => a + perCallUs(r.cpu_ns[n] ?? 0, r), 0);
}

function reportCase(key, res, o, servers) {
	const c = CASES[key];
	const rows = [];
	const blank = (label) => rows.push([label]);
	const each = (label, fn, extra = '') => rows.push([label, ...servers.map((s) => (res[s] ? fn(res[s], s) : '')), extra]);
	for (const [phase, label] of [['seq', `sequential (${f(o.calls)} calls after ${o.warmup})`],
		['par', `${o.inflight} in flight (${f(o.parallelCalls)} calls)`]]) {
		blank(label);
		const ratio = res.agentbroker && res.sdk ? `${f(rate(res.agentbroker[phase]) / rate(res.sdk[phase]), 2)}x` : '';
		each('  calls/s', (r) => f(rate(r[phase])), ratio);
		each('  latency p50 / p90 / p99', (r) => `${f(r[phase].lat_us.p50)} / ${f(r[phase].lat_us.p90)} / ${f(r[phase].lat_us.p99)} us`);
		each('  latency max', (r) => `${f(r[phase].lat_us.max)} us`);
		each('  CPU per call: client', (r) => `${f(perCallUs(r[phase].client_cpu_ns, r[phase]), 1)} us`);
		for (const n of AB_PROCS)
			each(`  CPU per call: ${n}`, (r, s) => (s === 'agentbroker' ? `${f(perCallUs(r[phase].cpu_ns[n] ?? 0, r[phase]), 1)} us` : '-'));
		each('  CPU per call: SDK server (node)', (r, s) => (s === 'sdk' ? `${f(perCallUs(r[phase].cpu_ns.server ?? 0, r[phase]), 1)} us` : '-'));
		each('  CPU per call: server side, sum', (r, s) => `${f(serverCpuUs(s, r[phase]), 1)} us`);
		each('  machine busy (all CPUs) per call', (r) => `${f(perCallUs(r[phase].machine_busy_ns, r[phase]), 1)} us`);
		each('  machine busy, % of all CPUs', (r) => `${f((100 * r[phase].machine_busy_ns) / r[phase].wall_ns / r[phase].cpus)}%`);
		// What the rest of the machine (other processes, interrupts) used meanwhile: noise.
		each('  of which not this benchmark', (r) => `${f(otherPct(r[phase]))}%`);
	}
	console.log(`\n== ${key}: ${c.title}`);
	console.log(table(rows, ['', ...servers.map((s) => (s === 'agentbroker' ? 'agentbroker-mcp' : 'SDK server')), 'ratio']));
}

// --- main ---------------------------------------------------------------------------------------
async function main() {
	const o = parseArgs(process.argv.slice(2));
	const servers = o.servers;
	const cpus = os.cpus().length;
	const sdkEntry = fileURLToPath(import.meta.resolve('@modelcontextprotocol/sdk/server/mcp.js'));
	const sdkVersion = JSON.parse(readFileSync(join(sdkEntry, '../../../../package.json'), 'utf8')).version;
	const curlVersion = (await execOut('curl-config', ['--version']).catch(() => 'libcurl ?')).trim();
	console.log(`HTTP benchmark: echo.echo over MCP Streamable HTTP, 127.0.0.1, bearer token; node ${process.version}, ` +
		`@modelcontextprotocol/sdk ${sdkVersion}, client bench_http (${curlVersion}, HTTP/1.1 keep-alive), ` +
		`${cpus} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);

	const started = {};
	const results = {};
	try {
		let abToken = null;
		if (servers.includes('agentbroker')) {
			const env = { AGENTBROKER_WORKER: need('AB_WORKER') };
			if (process.env.AB_MCP_LIBPATH) env.LD_LIBRARY_PATH = process.env.AB_MCP_LIBPATH;
			const args = ['--http', '127.0.0.1:0', '--broker', need('AB_SOCK'), '--modules', need('AB_MODULES')];
			started.agentbroker = await startServer('agentbroker-mcp', need('AB_MCP'), args, env,
				/serving MCP over Streamable HTTP at (http:\/\/127\.0\.0\.1:\d+\/mcp)/, 'stderr');
			abToken = (await execOut(need('AB_CTL'), ['--socket', need('AB_SOCK'), 'http-token', '--ttl', '2h'])).trim();
			if (!/^abh_[A-Za-z0-9_-]{43}$/.test(abToken)) throw new Error('agentbrokerctl http-token printed no token');
			console.log(`  agentbroker-mcp: ${need('AB_MCP')} ${args.join(' ')} (pid ${started.agentbroker.child.pid}), ` +
				'token from agentbrokerctl http-token');
		}
		const sdkToken = randomBytes(32).toString('base64url');
		if (servers.includes('sdk'))
			for (const key of o.cases) {
				const [state, response] = CASES[key].sdk.server;
				const name = `sdk-${state}-${response}`;
				if (started[name]) continue;
				started[name] = await startServer(name, process.execPath,
					[join(HERE, 'sdk_http_echo_server.mjs'), '--state', state, '--response', response],
					{ SDK_BENCH_TOKEN: sdkToken }, /listening (\d+)/, 'stdout');
				console.log(`  SDK server ${state}/${response}: node sdk_http_echo_server.mjs --state ${state} --response ${response} ` +
					`(pid ${started[name].child.pid})`);
			}

		const w = watched();
		for (const key of o.cases) {
			const c = CASES[key];
			const res = {};
			const spec = {};
			if (servers.includes('agentbroker')) {
				const pid = started.agentbroker.child.pid;
				spec.agentbroker = {
					url: started.agentbroker.match[1], token: abToken, client: c.ab,
					watch: [{ name: 'host', pid }, { name: 'workers', pid, tree: true }, ...w],
				};
			}
			if (servers.includes('sdk')) {
				const s = started[`sdk-${c.sdk.server.join('-')}`];
				spec.sdk = {
					url: `http://127.0.0.1:${s.match[1]}/mcp`, token: sdkToken, client: c.sdk,
					watch: [{ name: 'server', pid: s.child.pid }, ...w],
				};
			}
			// The servers take turns; the order flips between the phases.
			for (const [i, phase] of ['seq', 'par'].entries()) {
				const order = i % 2 ? [...servers].reverse() : servers;
				for (const s of order) {
					const x = spec[s];
					const stop = phase === 'par' && s === 'agentbroker' && o.attach
						? await runAttach(o.attach, processTree(started.agentbroker.child.pid))
						: null;
					res[s] ??= {};
					res[s][phase] = await measure(s, x.client, x.url, x.token, x.watch,
						phase === 'seq' ? o.calls : o.parallelCalls, phase === 'seq' ? 1 : o.inflight,
						phase === 'seq' ? o.warmup : Math.min(o.parallelCalls, 20 * o.inflight));
					if (stop) await stop();
				}
			}
			results[key] = res;
			reportCase(key, res, o, servers);
		}
	} catch (e) {
		const ab = started.agentbroker;
		const tail = ab ? ab.log().trimEnd().split('\n').slice(-8).map((l) => `  agentbroker-mcp: ${l}`).join('\n') : '';
		throw new Error(`${e?.message ?? e}${tail ? `\n${tail}` : ''}`);
	} finally {
		for (const s of Object.values(started)) await stopServer(s);
	}

	// Targets and the CPU accounting.
	const verdicts = {};
	let missed = false;
	if (servers.includes('agentbroker')) {
		console.log('\n== targets (issue 4), agentbroker-mcp with full auditing');
		const rows = [];
		for (const key of o.cases) {
			const ab = results[key].agentbroker;
			const sdk = results[key].sdk;
			const v = {
				seq_p99_us: { value: ab.seq.lat_us.p99, target: TARGET_P99_US, met: ab.seq.lat_us.p99 <= TARGET_P99_US },
				inflight_ratio: sdk
					? { value: rate(ab.par) / rate(sdk.par), target: TARGET_RATIO, met: rate(ab.par) >= TARGET_RATIO * rate(sdk.par) }
					: { value: null, target: TARGET_RATIO, met: null },
			};
			verdicts[key] = v;
			const word = (m) => (m === null ? 'n/a' : m ? 'PASS' : 'MISS');
			rows.push([`${key}: sequential p99`, `${f(ab.seq.lat_us.p99)} us`, `<= ${f(TARGET_P99_US)} us`, word(v.seq_p99_us.met),
				`(other load meanwhile: ${f(otherPct(ab.seq))}% of the machine)`]);
			rows.push([`${key}: ${o.inflight} in flight`, sdk ? `${f(rate(ab.par))} calls/s = ${f(v.inflight_ratio.value, 2)}x SDK (${f(rate(sdk.par))})` : `${f(rate(ab.par))} calls/s`,
				sdk ? `>= ${TARGET_RATIO}x = ${f(TARGET_RATIO * rate(sdk.par))} calls/s` : `>= ${TARGET_RATIO}x SDK`, word(v.inflight_ratio.met)]);
			if (Object.values(v).some((x) => x.met === false)) missed = true;
		}
		console.log(table(rows, ['', 'measured', 'target', '', '']));

		// What 2 cores can give: CPU per call of the processes that must do each call's work.
		console.log(`\n== CPU accounting, ${o.inflight} in flight: what ${cpus} CPUs can serve at this CPU cost per call`);
		const arows = [];
		const notes = [];
		for (const key of o.cases) {
			const ab = results[key].agentbroker.par;
			const sdk = results[key].sdk?.par;
			const us = (n) => perCallUs(ab.cpu_ns[n] ?? 0, ab);
			const audit = us('broker') + us('journald') + us('auditd') + us('kauditd');
			const http = us('host') + us('workers');
			const all = audit + http;
			const client = perCallUs(ab.client_cpu_ns, ab);
			const needed = sdk ? TARGET_RATIO * rate(sdk) : null;
			arows.push([`${key}: broker + journald + auditd + kauditd (the audit trail)`, `${f(audit, 1)} us`, `${f((cpus * 1e6) / audit)} calls/s`]);
			arows.push([`${key}: host + workers (HTTP, MCP, the tool)`, `${f(http, 1)} us`, `${f((cpus * 1e6) / http)} calls/s`]);
			arows.push([`${key}: all server-side processes`, `${f(all, 1)} us`, `${f((cpus * 1e6) / all)} calls/s`]);
			arows.push([`${key}: ... plus the load client`, `${f(all + client, 1)} us`, `${f((cpus * 1e6) / (all + client))} calls/s`]);
			if (needed) {
				const budget = (cpus * 1e6) / needed;
				arows.push([`${key}: 10x the SDK server needs`, `<= ${f(budget, 1)} us`, `${f(needed)} calls/s`]);
				notes.push(audit > budget
					? `${key}: 10x is out of reach on ${cpus} CPUs: the audit trail alone takes ${f(audit, 1)} us per call, the budget is ${f(budget, 1)} us`
					: all + client > budget
						? `${key}: 10x needs the server side (${f(all, 1)} us) and the client (${f(client, 1)} us) within ${f(budget, 1)} us per call`
						: `${key}: 10x fits in the CPU budget (${f(all + client, 1)} of ${f(budget, 1)} us per call)`);
			}
		}
		console.log(table(arows, ['CPU per call (sum over processes)', 'us/call', `ceiling on ${cpus} CPUs`]));
		for (const n of notes) console.log(n);
	}

	const json = {
		bench: 'http', tool: 'echo.echo', node: process.version, sdk: sdkVersion, cpus, loadavg: os.loadavg(),
		warmup: o.warmup, calls: o.calls, parallel_calls: o.parallelCalls, inflight: o.inflight,
		results: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, Object.fromEntries(Object.entries(r).map(([s, x]) => [s, {
			seq_calls_per_s: rate(x.seq), seq_us: x.seq.lat_us, inflight_calls_per_s: rate(x.par), inflight_us: x.par.lat_us,
			seq_cpu_us_per_call: Object.fromEntries(Object.entries({ client: x.seq.client_cpu_ns, ...x.seq.cpu_ns }).map(([n, ns]) => [n, perCallUs(ns, x.seq)])),
			inflight_cpu_us_per_call: Object.fromEntries(Object.entries({ client: x.par.client_cpu_ns, ...x.par.cpu_ns }).map(([n, ns]) => [n, perCallUs(ns, x.par)])),
		}]))])),
		targets: verdicts,
		calls_done: CALLS_DONE,
	};
	console.log(JSON.stringify(json));
	return o.checkTargets && missed ? 3 : 0;
}

runMain(main, 'bench_http');
