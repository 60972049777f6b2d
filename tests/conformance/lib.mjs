// SPDX-License-Identifier: MIT
// tests/conformance/lib.mjs — helpers of the conformance suite: start agentbroker-mcp under the
// official MCP TypeScript SDK clients (v1 @modelcontextprotocol/sdk for the 2025-11-25 session,
// v2 @modelcontextprotocol/client for 2026-07-28), record the messages on the wire, read the
// broker's audit records.
//
// run.sh starts the broker and exports (all required):
//   AB_MCP       the agentbroker-mcp program of the build
//   AB_WORKER    the agentbroker-worker program of the build (AGENTBROKER_WORKER)
//   AB_SOCK      the broker's socket
//   AB_MODULES   module directories, ':'-separated
//   AB_FS_ROOT   the fs module's root (modules.fs.roots in the policy)
//   AB_HMAC_KEY, AB_HMAC_SECRET  the name and value of the bytes secret sign.hmac_sha256 may use
//   AB_JWKS      the JWKS file the broker writes (jwt.jwks_file)
//   AB_TOOLS     the tools the policy allows, ','-separated, sorted
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Client as ModernClient } from '@modelcontextprotocol/client';
import { StdioClientTransport as ModernStdioClientTransport } from '@modelcontextprotocol/client/stdio';

function need(name) {
	const v = process.env[name];
	if (!v) throw new Error(`${name} is not set: run this suite through tests/conformance/run.sh`);
	return v;
}

export const cfg = {
	mcp: need('AB_MCP'),
	worker: need('AB_WORKER'),
	sock: need('AB_SOCK'),
	modules: need('AB_MODULES').split(':'),
	fsRoot: need('AB_FS_ROOT'),
	hmacKey: need('AB_HMAC_KEY'),
	hmacSecret: need('AB_HMAC_SECRET'),
	jwks: need('AB_JWKS'),
	tools: need('AB_TOOLS').split(','),
};

export const CLIENT_INFO = { name: 'agentbroker-conformance', version: '1.0.0' };
export const MODERN = '2026-07-28';

// The stdio server parameters that start the host on the test broker (both SDKs take this shape).
// extraEnv adds environment variables (e.g. AGENTBROKER_MCP_PAGE_SIZE).
export function hostParams(extraEnv = {}) {
	const args = ['--broker', cfg.sock];
	for (const d of cfg.modules) args.push('--modules', d);
	return {
		command: cfg.mcp,
		args,
		env: { PATH: process.env.PATH ?? '/usr/bin:/bin', AGENTBROKER_WORKER: cfg.worker, ...extraEnv },
		stderr: 'pipe',
	};
}

// A Transport that wraps another and records every message, in and out, with a timestamp
// (performance.now()), so that tests can check what went over the wire and in which order.
export class RecordingTransport {
	constructor(inner) {
		this.inner = inner;
		this.log = [];
	}

	async start() {
		this.inner.onmessage = (msg, extra) => {
			this.log.push({ dir: 'in', t: performance.now(), msg });
			this.onmessage?.(msg, extra);
		};
		this.inner.onerror = (e) => this.onerror?.(e);
		this.inner.onclose = () => this.onclose?.();
		return this.inner.start();
	}

	async send(msg, options) {
		this.log.push({ dir: 'out', t: performance.now(), msg });
		return this.inner.send(msg, options);
	}

	async close() {
		return this.inner.close();
	}

	get sessionId() {
		return this.inner.sessionId;
	}

	setProtocolVersion(v) {
		this.inner.setProtocolVersion?.(v);
	}

	// The messages received, in order.
	received() {
		return this.log.filter((e) => e.dir === 'in').map((e) => e.msg);
	}

	// The messages sent, in order.
	sent() {
		return this.log.filter((e) => e.dir === 'out').map((e) => e.msg);
	}

	// The response (result or error) to the request with this id, or undefined.
	responseTo(id) {
		return this.received().find((m) => m.id === id && !('method' in m));
	}

	// The request we sent with this method whose params satisfy pred (the last one).
	sentRequest(method, pred = () => true) {
		return this.sent().filter((m) => m.method === method && 'id' in m && pred(m.params ?? {})).at(-1);
	}
}

// Collect a child's stderr (a stream, or null) into a string getter.
export function collectStderr(stream) {
	let text = '';
	stream?.setEncoding('utf8');
	stream?.on('data', (d) => {
		text += d;
	});
	return () => text;
}

// Wait until pred() is true (polling every 50 ms) or ms pass; returns pred()'s last value.
export async function waitFor(pred, ms = 10000) {
	const end = Date.now() + ms;
	let v;
	while (!(v = await pred()) && Date.now() < end) await sleep(50);
	return v;
}

// Start the host under an SDK client (ClientClass over TransportClass, from one SDK), recording
// the wire. Returns { client, rec, stderr(), runId() (a promise of the run id the host opened),
// close() }.
async function connect(ClientClass, TransportClass, { env = {}, clientOptions = {} } = {}) {
	const transport = new TransportClass(hostParams(env));
	const stderr = collectStderr(transport.stderr);
	const rec = new RecordingTransport(transport);
	const client = new ClientClass(CLIENT_INFO, clientOptions);
	try {
		await client.connect(rec);
	} catch (e) {
		e.message += `\nagentbroker-mcp stderr:\n${stderr()}`;
		throw e;
	}
	return { client, rec, stderr, runId: () => runIdOf(stderr), close: () => client.close() };
}

// The host under the v1 SDK Client: the 2025-11-25 initialize handshake.
export function connectV1({ env = {}, capabilities = {} } = {}) {
	return connect(Client, StdioClientTransport, { env, clientOptions: { capabilities } });
}

// The host under the v2 SDK Client pinned to 2026-07-28: server/discover, per-request _meta.
export function connectModern({ env = {} } = {}) {
	return connect(ModernClient, ModernStdioClientTransport, {
		env,
		clientOptions: { versionNegotiation: { mode: { pin: MODERN } } },
	});
}

// The run id the host logged at start ("info: run <id>"), waiting for it up to 10 s.
export async function runIdOf(stderr) {
	const m = await waitFor(() => /\binfo: run (\S+)/.exec(stderr()), 10000);
	if (!m) throw new Error(`agentbroker-mcp did not log its run id; stderr:\n${stderr()}`);
	return m[1];
}

// The raw AUDIT_TRUSTED_APP records of the last 10 minutes (ausearch -ts recent) that hold
// every string of patterns, as an array of lines.
export async function auditRecords(...patterns) {
	const out = await new Promise((resolve) => {
		execFile(
			'ausearch',
			['--input-logs', '-m', 'TRUSTED_APP', '-ts', 'recent', '--format', 'raw'],
			{ env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 256 * 1024 * 1024 },
			// ausearch exits 1 when nothing matches: that is an empty result here.
			(err, stdout) => resolve(stdout ?? ''),
		);
	});
	return out.split('\n').filter((l) => l.startsWith('type=') && patterns.every((p) => l.includes(p)));
}

// Wait up to ms for exactly n records holding every pattern; returns the records found last.
export async function auditWait(n, patterns, ms = 10000) {
	let recs = [];
	await waitFor(async () => {
		recs = await auditRecords(...patterns);
		return recs.length >= n;
	}, ms);
	// Give a straggler (a duplicate that should not exist) a moment to show up.
	if (recs.length === n) {
		await sleep(300);
		recs = await auditRecords(...patterns);
	}
	return recs;
}

// The value of field in one raw audit record (quotes removed), or undefined.
export function auditField(record, field) {
	const m = new RegExp(`[ ']${field}=("[^"]*"|[^ ']*)`).exec(record);
	return m ? m[1].replace(/"/g, '') : undefined;
}

// The text of a tool result's text blocks, joined.
export function textOf(result) {
	return (result.content ?? [])
		.filter((c) => c.type === 'text')
		.map((c) => c.text)
		.join('');
}
