// SPDX-License-Identifier: MIT
// tests/bench/bench_util.mjs — helpers shared by the MCP host benchmarks (bench_mcp.mjs over
// stdio, bench_http.mjs over Streamable HTTP): /proc process trees, the watched processes of
// AB_WATCH, an attached profiler, aligned tables and the exit of main().
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

// The text of a file, or null when it cannot be read (a process that is gone).
export function readText(path) {
	try {
		return readFileSync(path, 'utf8');
	} catch {
		return null;
	}
}

// The parent pid of every process, from /proc/<pid>/stat (the comm field may hold spaces).
function parentMap() {
	const m = new Map();
	for (const d of readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		const s = readText(`/proc/${d}/stat`);
		if (!s) continue;
		const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
		m.set(Number(d), Number(rest[1]));
	}
	return m;
}

// pid and all its descendants.
export function processTree(pid) {
	const parents = parentMap();
	const tree = [pid];
	for (let i = 0; i < tree.length; i++)
		for (const [p, pp] of parents) if (pp === tree[i] && !tree.includes(p)) tree.push(p);
	return tree;
}

// Other processes whose CPU counts per call: AB_WATCH=name=pid,...
export function watched() {
	const w = [];
	for (const item of (process.env.AB_WATCH ?? '').split(',').filter(Boolean)) {
		const [name, pid] = item.split('=');
		if (name && /^\d+$/.test(pid ?? '')) w.push({ name, pid: Number(pid) });
	}
	return w;
}

// Runs cmd (sh -c) with {pids} replaced by pids (comma-separated), gives it 700 ms to attach,
// and returns a function that stops it with SIGINT and waits for it (perf record, strace -c).
export async function runAttach(cmd, pids) {
	const c = spawn('sh', ['-c', `exec ${cmd.replaceAll('{pids}', pids.join(','))}`], { stdio: 'inherit' });
	const done = new Promise((r) => c.once('close', r));
	await new Promise((r) => setTimeout(r, 700));
	return async () => {
		c.kill('SIGINT');
		await done;
	};
}

// Rows of cells as aligned text: the first column left-aligned, the others right-aligned.
export function table(rows, head) {
	const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => String(r[c] ?? '').length)));
	const line = (r) => r.map((x, c) => (c === 0 ? String(x ?? '').padEnd(widths[c]) : String(x ?? '').padStart(widths[c]))).join('   ').trimEnd();
	return [line(head), ...rows.map(line)].join('\n');
}

// Runs main() and exits with its status; a failure prints "NAME: FAILED: ..." and exits 1.
export function runMain(main, name) {
	main().then(
		(code) => process.exit(code),
		(e) => {
			console.error(`${name}: FAILED: ${e?.stack ?? e}`);
			process.exit(1);
		},
	);
}
