// SPDX-License-Identifier: MIT
// tests/bench/bench_context.mjs — the tool-result cost of common agent tasks (issue 14), for the
// fs module behind agentbroker-mcp and for the reference filesystem server
// (@modelcontextprotocol/server-filesystem), both driven by the official SDK client
// (Client + StdioClientTransport) on the same deterministic corpus (run-bench-context.sh sets
// the environment and starts the broker).
//
// Per task and server: calls made, result bytes (every result as the client got it,
// JSON-serialized: content, structuredContent, isError), text bytes (the text of the content
// blocks alone: what a client that shows the model only `content` passes on), and the bytes of
// the bare answer; then the ratio reference/ours of the result bytes, and whether our result
// meets the issue's target (on the result bytes). The fs module runs with its default
// configuration (structured_output: false: fs.list_dir answers with its compact text alone).
// The JSON line also has the bytes of structuredContent alone (0 for ours). Every answer is
// checked against the corpus: a wrong answer fails the run.
//
// Environment: AB_MCP, AB_MCP_LIBPATH, AB_WORKER, AB_SOCK, AB_MODULES (the host and the broker),
// AB_CORPUS (an empty directory to generate the corpus in), AB_REF_SERVER (the reference
// server's dist/index.js).
// Options: --keep-corpus (do not generate: AB_CORPUS already holds it).
// Prints aligned text, then one JSON line. Exit status: 0 all targets met, 3 a target missed,
// 1 failed.
import { mkdirSync, readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { runMain, table } from './bench_util.mjs';

const CLIENT_INFO = { name: 'agentbroker-bench-context', version: '1.0.0' };
const CALL_TIMEOUT_MS = 120000;
// The SDK client refuses a message over 10 MiB by default (STDIO_DEFAULT_MAX_BUFFER_SIZE) and
// closes the connection: the reference server's read of the 5 MiB log is 13 MB (text and
// structuredContent). Raised so that it can be measured.
const MAX_MESSAGE = 64 * 1024 * 1024;

// --- the corpus ------------------------------------------------------------------------------
// A small deterministic generator (mulberry32), so that every run measures the same bytes.
function rng(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}
const WORDS = ['alpha', 'bravo', 'cache', 'delta', 'event', 'fetch', 'graph', 'index', 'queue', 'store', 'token', 'value'];
const pad = (n, w) => String(n).padStart(w, '0');

function makeCorpus(root) {
	const r = rng(14);
	const pick = (a) => a[Math.floor(r() * a.length)];
	const corpus = { root, errorLines: [], smallNames: [], tree: [] };

	// src/: 10 x 10 x 100 files, and small/ with 20 files
	for (let m = 0; m < 10; m++) {
		const top = { name: `mod${pad(m, 2)}`, bytes: 0, files: 0, subs: [] };
		for (let p = 0; p < 10; p++) {
			const dir = join(root, 'src', top.name, `pkg${pad(p, 2)}`);
			mkdirSync(dir, { recursive: true });
			top.subs.push(`pkg${pad(p, 2)}`);
			for (let f = 0; f < 100; f++) {
				let text = `// ${top.name}/pkg${pad(p, 2)}/file${pad(f, 3)}.c\n`;
				const n = 2 + Math.floor(r() * 12);
				for (let i = 0; i < n; i++) text += `static int ${pick(WORDS)}_${pick(WORDS)}_${i} = ${Math.floor(r() * 100000)};\n`;
				writeFileSync(join(dir, `file${pad(f, 3)}.c`), text);
				top.bytes += Buffer.byteLength(text);
				top.files++;
			}
		}
		corpus.tree.push(top);
	}
	const small = join(root, 'src', 'small');
	mkdirSync(small);
	for (let i = 0; i < 20; i++) {
		const name = `${pick(WORDS)}-${pad(i, 2)}.md`;
		writeFileSync(join(small, name), `# ${name}\n`);
		corpus.smallNames.push(name);
	}
	corpus.smallNames.sort();

	// logs/app.log: 5 MiB, 20 ERROR lines spread evenly
	mkdirSync(join(root, 'logs'));
	const LOG_SIZE = 5 * 1024 * 1024;
	const lines = [];
	let size = 0, t = Date.UTC(2026, 2, 1, 0, 0, 0);
	while (size < LOG_SIZE) {
		t += Math.floor(r() * 900);
		const ts = new Date(t).toISOString();
		const x = r();
		const worker = Math.floor(r() * 8);
		let line;
		if (x < 0.3) line = `${ts} DEBUG [worker-${worker}] cache ${pick(WORDS)} hit key=${Math.floor(r() * 1e6)}`;
		else if (x < 0.95) line = `${ts} INFO [worker-${worker}] request ${Math.floor(r() * 1e6)} served in ${Math.floor(r() * 300)} ms path=/api/v1/${pick(WORDS)}/${Math.floor(r() * 1e5)}`;
		else line = `${ts} WARN [worker-${worker}] slow query on ${pick(WORDS)} took ${1000 + Math.floor(r() * 4000)} ms`;
		lines.push(line);
		size += Buffer.byteLength(line) + 1;
	}
	const step = Math.floor(lines.length / 21);
	for (let i = 1; i <= 20; i++) {
		const ts = lines[i * step].slice(0, 24);
		const e = `${ts} ERROR [worker-${i % 8}] payment ${70000 + i * 37} failed: upstream timeout after 3000 ms (order=${(0x5eed0000 + i * 4099).toString(16)})`;
		lines[i * step] = e;
		corpus.errorLines.push(e);
	}
	writeFileSync(join(root, 'logs', 'app.log'), lines.join('\n') + '\n');
	corpus.logLevels = ['ERROR', 'WARN', 'INFO', 'DEBUG'];

	// data/issues.json: 30 issues, about 40 KB
	mkdirSync(join(root, 'data'));
	const issues = [];
	for (let n = 1; n <= 30; n++) {
		let body = '';
		while (body.length < 1000) body += `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)}. `;
		issues.push({
			number: n, title: `${pick(WORDS)} fails when ${pick(WORDS)} is empty`, state: r() < 0.7 ? 'open' : 'closed',
			user: { login: `user${Math.floor(r() * 100)}`, id: Math.floor(r() * 1e6) },
			labels: [pick(WORDS), pick(WORDS)], comments: Math.floor(r() * 20),
			created_at: new Date(Date.UTC(2026, 0, n)).toISOString(), body,
		});
	}
	writeFileSync(join(root, 'data', 'issues.json'), JSON.stringify(issues, null, 1));
	corpus.projection = JSON.stringify(issues.map(({ number, title, state }) => ({ number, title, state })));

	// data/table.csv: 2 MB
	const rows = ['id,date,region,product,quantity,unit_price,total,customer'];
	let csv = rows[0].length + 1;
	for (let id = 1; csv < 2 * 1000 * 1000; id++) {
		const q = 1 + Math.floor(r() * 50), pr = (1 + r() * 99).toFixed(2);
		const row = `${id},2026-${pad(1 + Math.floor(r() * 12), 2)}-${pad(1 + Math.floor(r() * 28), 2)},${pick(['north', 'south', 'east', 'west'])},${pick(WORDS)}-${Math.floor(r() * 1000)},${q},${pr},${(q * pr).toFixed(2)},customer-${Math.floor(r() * 5000)}`;
		rows.push(row);
		csv += row.length + 1;
	}
	writeFileSync(join(root, 'data', 'table.csv'), rows.join('\n') + '\n');
	corpus.csvHead = rows.slice(0, 101).join('\n') + '\n';
	writeFileSync(join(root, 'corpus.json'), JSON.stringify(corpus));
	return corpus;
}

// --- sessions --------------------------------------------------------------------------------
function serverEnv(extra) {
	const env = {};
	for (const k of ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER'])
		if (process.env[k] !== undefined && !process.env[k].startsWith('()')) env[k] = process.env[k];
	return { ...env, ...extra };
}

class Session {
	constructor(name, command, args, env) {
		this.name = name;
		this.spec = { command, args, env: serverEnv(env), stderr: 'pipe', maxBufferSize: MAX_MESSAGE };
	}
	async start() {
		this.transport = new StdioClientTransport(this.spec);
		this.stderr = '';
		this.transport.stderr.on('data', (d) => (this.stderr += d));
		this.client = new Client(CLIENT_INFO, { capabilities: {} });
		try {
			await this.client.connect(this.transport);
		} catch (e) {
			throw new Error(`${this.name} did not start: ${e.message}; its stderr: ${this.stderr.slice(-2000)}`);
		}
	}
	// A task's measure: calls, result bytes, text bytes.
	begin() {
		this.m = { calls: 0, resultBytes: 0, textBytes: 0, structuredBytes: 0 };
	}
	async call(name, args) {
		let r;
		try {
			r = await this.client.callTool({ name, arguments: args }, undefined, { timeout: CALL_TIMEOUT_MS });
		} catch (e) {
			throw new Error(`${this.name} ${name}: ${e.message}; its stderr: ${this.stderr.slice(-2000)}`);
		}
		if (r.isError) throw new Error(`${this.name} ${name}: isError: ${r.content?.[0]?.text}`);
		this.m.calls++;
		this.m.resultBytes += Buffer.byteLength(JSON.stringify(r));
		const text = (r.content ?? []).filter((b) => b.type === 'text').map((b) => b.text).join('');
		this.m.textBytes += Buffer.byteLength(text);
		if (r.structuredContent !== undefined) this.m.structuredBytes += Buffer.byteLength(JSON.stringify(r.structuredContent));
		return { r, text };
	}
	async close() {
		await this.client.close();
	}
}

function check(cond, what) {
	if (!cond) throw new Error(`wrong answer: ${what}`);
}

// --- the tasks -------------------------------------------------------------------------------
// Each: the bare answer's bytes, a target on our result, and how each server does it.
function tasks(c) {
	const answerErrors = Buffer.byteLength(c.errorLines.join('\n') + '\n');
	const treeAnswer = c.tree.map((t) => `${t.name} ${t.bytes}\n` + t.subs.map((s) => `  ${s}\n`).join('')).join('');
	const namesBytes = c.smallNames.reduce((n, s) => n + Buffer.byteLength(s), 0);
	const summaryAnswer = `levels: ${c.logLevels.join(', ')}\n20 ERROR payment <n> failed: upstream timeout after <n> ms (order=<id>)\n`;
	return [
		{
			name: 'the 20 ERROR lines of a 5 MiB log', answer: answerErrors,
			target: (m) => [m.calls === 1 && m.resultBytes <= 2 * answerErrors, '1 call, <= 2x the lines'],
			ours: async (s) => {
				const { text } = await s.call('fs.grep', { path: 'logs/app.log', pattern: 'ERROR', fixed: true });
				for (const l of c.errorLines) check(text.includes(l), `fs.grep misses ${l}`);
			},
			ref: async (s) => {
				const { text } = await s.call('read_text_file', { path: join(c.root, 'logs/app.log') });
				for (const l of c.errorLines) check(text.includes(l), `read_text_file misses ${l}`);
			},
		},
		{
			name: 'tree shape: top folders with sizes, 2nd level named', answer: Buffer.byteLength(treeAnswer),
			target: (m) => [m.calls === 1 && m.resultBytes <= 16384, '1 call, <= 16 KiB'],
			ours: async (s) => {
				const { text } = await s.call('fs.tree', { path: 'src', depth: 2 });
				for (const t of c.tree) {
					check(new RegExp(`^${t.name}/  10 dirs, 1000 files, [0-9.]+ KiB$`, 'm').test(text), `fs.tree: ${t.name}`);
					for (const sub of t.subs) check(text.includes(`\n  ${sub}/  100 files`), `fs.tree: ${t.name}/${sub}`);
				}
			},
			// no sizes of folders: a listing with sizes of every folder down to the files
			ref: async (s) => {
				const { text } = await s.call('list_directory_with_sizes', { path: join(c.root, 'src') });
				for (const t of c.tree) {
					check(text.includes(t.name), `list_directory_with_sizes: ${t.name}`);
					let bytes = 0;
					await s.call('list_directory_with_sizes', { path: join(c.root, 'src', t.name) });
					for (const sub of t.subs) {
						const { r } = await s.call('list_directory_with_sizes', { path: join(c.root, 'src', t.name, sub) });
						const listing = r.content[0].text;
						for (const m of listing.matchAll(/^\[FILE\] \S+\s+([0-9.]+) (B|KB)$/gm))
							bytes += m[2] === 'B' ? Number(m[1]) : Number(m[1]) * 1024;
					}
					check(Math.abs(bytes - t.bytes) / t.bytes < 0.02, `list_directory_with_sizes: the size of ${t.name}`);
				}
			},
		},
		{
			name: 'list_dir of 20 entries', answer: namesBytes,
			target: (m) => [m.calls === 1 && m.resultBytes <= 2 * namesBytes, '1 call, <= 2x the names'],
			ours: async (s) => {
				// the compact text: "path: ..., total: 20", then a line per entry (name, tab, size)
				const { text } = await s.call('fs.list_dir', { path: 'src/small' });
				const lines = text.split('\n').filter((l) => l !== '');
				check(lines[0] === `path: src/small, total: ${c.smallNames.length}`, 'fs.list_dir: the first line');
				check(JSON.stringify(lines.slice(1).map((l) => l.split('\t')[0])) === JSON.stringify(c.smallNames),
					'fs.list_dir names');
			},
			ref: async (s) => {
				const { text } = await s.call('list_directory', { path: join(c.root, 'src/small') });
				for (const n of c.smallNames) check(text.includes(n), `list_directory: ${n}`);
			},
		},
		{
			name: 'CSV header + 100 rows', answer: Buffer.byteLength(c.csvHead),
			target: (m) => [m.calls === 1 && m.resultBytes <= 1.1 * Buffer.byteLength(c.csvHead), '1 call, <= 1.1x the rows'],
			ours: async (s) => {
				const { r } = await s.call('fs.read_file', { path: 'data/table.csv', start_line: 1, max_lines: 101 });
				check(r.content[0].text === c.csvHead, 'fs.read_file lines: the header and 100 rows');
			},
			ref: async (s) => {
				const { text } = await s.call('read_text_file', { path: join(c.root, 'data/table.csv'), head: 101 });
				check(text.replace(/\n?$/, '\n') === c.csvHead, 'read_text_file head=101');
			},
		},
		{
			name: '3 fields x 30 objects of a 40 KB JSON', answer: Buffer.byteLength(c.projection),
			target: (m) => [m.resultBytes <= 4096, '<= 4 KB'],
			ours: async (s) => {
				const { text } = await s.call('fs.read_json', { path: 'data/issues.json', select: ['[*].{number,title,state}'] });
				check(text === c.projection, 'fs.read_json projection');
			},
			ref: async (s) => {
				const { text } = await s.call('read_text_file', { path: join(c.root, 'data/issues.json') });
				check(JSON.stringify(JSON.parse(text).map(({ number, title, state }) => ({ number, title, state }))) === c.projection,
					'read_text_file: the projection');
			},
		},
		{
			name: 'summary of the 5 MiB log', answer: Buffer.byteLength(summaryAnswer),
			target: (m) => [m.calls === 1 && m.resultBytes <= 4096, '1 call, <= 4 KB, all levels, the ERROR template x20'],
			ours: async (s) => {
				const { text } = await s.call('fs.summarize_log', { path: 'logs/app.log' });
				for (const l of c.logLevels) check(new RegExp(`^levels:.* ${l} [0-9]+`, 'm').test(text), `fs.summarize_log: level ${l}`);
				check(/^20 ERROR \[worker-<n>\] payment <n> failed: upstream timeout after <n> ms \(order=<id>\)$/m.test(text),
					'fs.summarize_log: the ERROR template with its count');
			},
			ref: async (s) => {
				const { text } = await s.call('read_text_file', { path: join(c.root, 'logs/app.log') });
				check(text.split('\n').filter((l) => l.includes(' ERROR ')).length === 20, 'read_text_file: 20 ERROR lines');
			},
		},
	];
}

// --- main ------------------------------------------------------------------------------------
async function main() {
	const e = process.env;
	for (const k of ['AB_MCP', 'AB_WORKER', 'AB_SOCK', 'AB_MODULES', 'AB_CORPUS', 'AB_REF_SERVER'])
		if (!e[k]) throw new Error(`${k} is not set (run tests/bench/run-bench-context.sh)`);
	const keep = process.argv.includes('--keep-corpus');
	const t0 = Date.now();
	const corpus = keep && existsSync(join(e.AB_CORPUS, 'corpus.json'))
		? JSON.parse(readFileSync(join(e.AB_CORPUS, 'corpus.json'), 'utf8')) : makeCorpus(e.AB_CORPUS);
	console.log(`corpus in ${corpus.root} (${((Date.now() - t0) / 1000).toFixed(1)} s): 10,000 files in src/, ` +
		`logs/app.log ${statSync(join(corpus.root, 'logs/app.log')).size} bytes, data/issues.json ` +
		`${statSync(join(corpus.root, 'data/issues.json')).size} bytes, data/table.csv ${statSync(join(corpus.root, 'data/table.csv')).size} bytes`);

	const ours = new Session('agentbroker-mcp', e.AB_MCP, ['--broker', e.AB_SOCK, '--modules', e.AB_MODULES], {
		AGENTBROKER_WORKER: e.AB_WORKER, ...(e.AB_MCP_LIBPATH ? { LD_LIBRARY_PATH: e.AB_MCP_LIBPATH } : {}),
	});
	const ref = new Session('server-filesystem', process.execPath, [e.AB_REF_SERVER, corpus.root], {});
	await ours.start();
	await ref.start();

	const rows = [], results = [];
	let missed = 0;
	for (const t of tasks(corpus)) {
		ours.begin();
		await t.ours(ours);
		ref.begin();
		await t.ref(ref);
		const [met, what] = t.target(ours.m);
		missed += met ? 0 : 1;
		const ratio = ref.m.resultBytes / ours.m.resultBytes;
		rows.push([t.name, t.answer, ours.m.calls, ours.m.resultBytes, ours.m.textBytes, ref.m.calls, ref.m.resultBytes,
			ref.m.textBytes, ratio.toFixed(1), `${met ? 'met' : 'MISSED'} (${what})`]);
		results.push({ task: t.name, answer_bytes: t.answer, ours: ours.m, reference: ref.m, ratio: Number(ratio.toFixed(2)), target: what, met });
	}
	await ours.close();
	await ref.close();
	console.log('\nresult bytes: each result as the client got it, JSON-serialized; text: the content blocks\' text alone');
	console.log(table(rows, ['task', 'answer', 'ours calls', 'ours result', 'ours text', 'ref calls', 'ref result', 'ref text',
		'ref/ours', 'target (ours)']));
	console.log(JSON.stringify({ bench: 'context', results, missed }));
	return missed ? 3 : 0;
}

runMain(main, 'bench_context');
