// SPDX-License-Identifier: MIT
// tests/bench/bench_gateway.mjs — the MCP gateway's overhead (run by run-bench-gateway.sh, which
// starts the broker, auditd and journald and sets the environment): the same third-party MCP
// server (@modelcontextprotocol/server-everything, its `echo` tool) called with the same
// client (the official SDK Client + StdioClientTransport) directly, and through agentbroker-mcp
// (policy `servers:`; every call decided at the broker, audited, shaped), in one run, the two
// sessions open side by side and taking turns in blocks of calls.
// Measures: sequential tools/call latency (p50/p90/p99 of --calls after --warmup), calls/s with
// --inflight calls outstanding (--parallel-calls in all), and memory: VmRSS of each process
// tree (the server's node process; agentbroker-mcp plus the server under it). Every result is
// checked (not isError, the text echoed back).
// Environment: AB_MCP (agentbroker-mcp), AB_MCP_LIBPATH, AB_WORKER, AB_SOCK, AB_MODULES (an
// empty directory), AB_SERVER (server-everything's dist/index.js).
// Options: --warmup N (200) --calls N (2000) --parallel-calls N (4000) --inflight N (16)
// Prints aligned text, then one JSON line. Exit status: 0 measured, 1 failed.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { processTree, readText, runMain, table } from './bench_util.mjs';

function parseArgs(argv) {
	const o = { warmup: 200, calls: 2000, parallelCalls: 4000, inflight: 16 };
	const ints = { '--warmup': 'warmup', '--calls': 'calls', '--parallel-calls': 'parallelCalls', '--inflight': 'inflight' };
	for (let i = 0; i < argv.length; i++) {
		const v = Number(argv[i + 1]);
		if (!(argv[i] in ints) || !Number.isInteger(v) || v < 1 || v > 10_000_000)
			throw new Error(`unknown option or bad value: ${argv[i]} (--warmup, --calls, --parallel-calls, --inflight N)`);
		o[ints[argv[i++]]] = v;
	}
	return o;
}

function rssKiB(pid) {
	const m = /VmRSS:\s+(\d+)/.exec(readText(`/proc/${pid}/status`) ?? '');
	return m ? Number(m[1]) : 0;
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const ms = (x) => (x / 1e6).toFixed(3);

async function open(name, command, args, env) {
	const transport = new StdioClientTransport({ command, args, env: { ...process.env, ...env }, stderr: 'pipe' });
	let err = '';
	transport.stderr?.on('data', (d) => { err = (err + d).slice(-4000); });
	const client = new Client({ name: 'agentbroker-bench-gateway', version: '1.0.0' });
	await client.connect(transport);
	return { name, client, transport, tool: null, err: () => err };
}

async function callOnce(s, i) {
	const text = `bench ${i}`;
	const r = await s.client.callTool({ name: s.tool, arguments: { message: text } });
	if (r.isError || r.content?.[0]?.text !== `Echo: ${text}`)
		throw new Error(`${s.name}: unexpected result ${JSON.stringify(r).slice(0, 300)}\n${s.err()}`);
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const env = process.env;
	const server = env.AB_SERVER;
	const direct = await open('direct', process.execPath, [server, 'stdio'], {});
	direct.tool = 'echo';
	const via = await open('agentbroker', env.AB_MCP, ['--broker', env.AB_SOCK, '--modules', env.AB_MODULES], {
		AGENTBROKER_WORKER: env.AB_WORKER, ...(env.AB_MCP_LIBPATH ? { LD_LIBRARY_PATH: env.AB_MCP_LIBPATH } : {}),
	});
	via.tool = 'every.echo';
	const tools = (await via.client.listTools()).tools.map((t) => t.name);
	if (!tools.includes('every.echo')) throw new Error(`agentbroker-mcp does not list every.echo: ${tools}`);
	const sessions = [direct, via];

	for (const s of sessions) for (let i = 0; i < o.warmup; i++) await callOnce(s, i);
	// Sequential: blocks of 100 calls, taking turns.
	const lat = { direct: [], agentbroker: [] };
	for (let done = 0; done < o.calls; done += 100)
		for (const s of sessions)
			for (let i = 0; i < Math.min(100, o.calls - done); i++) {
				const t0 = process.hrtime.bigint();
				await callOnce(s, done + i);
				lat[s.name].push(Number(process.hrtime.bigint() - t0));
			}
	// In flight: o.inflight calls outstanding, o.parallelCalls in all, each session in turn.
	const rate = {};
	for (const s of sessions) {
		let next = 0;
		const t0 = process.hrtime.bigint();
		const worker = async () => { while (next < o.parallelCalls) await callOnce(s, next++); };
		await Promise.all(Array.from({ length: o.inflight }, worker));
		rate[s.name] = o.parallelCalls / (Number(process.hrtime.bigint() - t0) / 1e9);
	}
	// Memory: the process trees (direct: the server; agentbroker: the host and the server under it).
	const directPid = direct.transport.pid, hostPid = via.transport.pid;
	const hostTree = processTree(hostPid);
	const mem = {
		direct_server_kib: processTree(directPid).reduce((a, p) => a + rssKiB(p), 0),
		host_kib: rssKiB(hostPid),
		host_tree_kib: hostTree.reduce((a, p) => a + rssKiB(p), 0),
	};
	mem.gateway_server_kib = mem.host_tree_kib - mem.host_kib;
	for (const s of sessions) await s.client.close();

	const res = {};
	for (const s of sessions) {
		const l = lat[s.name].sort((a, b) => a - b);
		res[s.name] = { p50_ms: Number(ms(pct(l, 50))), p90_ms: Number(ms(pct(l, 90))), p99_ms: Number(ms(pct(l, 99))),
			calls_per_s: Math.round(rate[s.name]) };
	}
	console.log(table(sessions.map((s) => [s.name === 'direct' ? 'server-everything, direct' : 'through agentbroker-mcp',
		res[s.name].p50_ms, res[s.name].p90_ms, res[s.name].p99_ms, res[s.name].calls_per_s]),
	['echo (SDK client, stdio)', 'p50 ms', 'p90 ms', 'p99 ms', `calls/s (${o.inflight} in flight)`]));
	console.log(`added by the gateway: p50 +${(res.agentbroker.p50_ms - res.direct.p50_ms).toFixed(3)} ms, ` +
		`throughput x${(res.agentbroker.calls_per_s / res.direct.calls_per_s).toFixed(2)}`);
	console.log(`memory (VmRSS): server direct ${(mem.direct_server_kib / 1024).toFixed(1)} MiB; through agentbroker: ` +
		`agentbroker-mcp ${(mem.host_kib / 1024).toFixed(1)} MiB (the memory the gateway adds) + the server under it ` +
		`${(mem.gateway_server_kib / 1024).toFixed(1)} MiB`);
	console.log(JSON.stringify({ bench: 'gateway', options: o, results: res, memory_kib: mem }));
	return 0;
}

runMain(main, 'bench_gateway');
