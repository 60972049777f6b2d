// SPDX-License-Identifier: MIT
// tests/conformance/conformance.test.mjs — agentbroker-mcp under the official MCP TypeScript SDK
// clients over stdio. Run by run.sh (which starts the broker and sets the environment lib.mjs
// reads) with `node --test --test-reporter=tap`: every test() below is one TAP test.
//
// 2025-11-25 (initialize handshake): @modelcontextprotocol/sdk 1.x Client.
// 2026-07-28 (server/discover, per-request _meta): @modelcontextprotocol/client 2.x Client.
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, verify } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
	ErrorCode,
	LATEST_PROTOCOL_VERSION,
	McpError,
	SUPPORTED_PROTOCOL_VERSIONS,
} from '@modelcontextprotocol/sdk/types.js';
import { Client as ModernClient } from '@modelcontextprotocol/client';
import { StdioClientTransport as ModernStdioClientTransport } from '@modelcontextprotocol/client/stdio';

import {
	CLIENT_INFO,
	MODERN,
	auditField,
	auditWait,
	cfg,
	collectStderr,
	connectModern,
	connectV1,
	hostParams,
	textOf,
	waitFor,
} from './lib.mjs';

const T = { timeout: 90000 };
const CAPABILITIES = { tools: { listChanged: false }, logging: {} };
const META_VERSION = 'io.modelcontextprotocol/protocolVersion';
const META_CAPS = 'io.modelcontextprotocol/clientCapabilities';
const SANITIZER = /ERROR: (Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer|runtime error:/;
// crash.segv's store through NULL is deliberate: UBSan builds report it (from the worker).
const DELIBERATE = /^.*tests\/modules\/crash\.c:\d+:\d+: runtime error: store to null pointer.*$/gm;

// Run fn with an SDK client (connectV1 or connectModern) on a fresh host; the host is closed
// afterwards and must not have reported a sanitizer error (ASan/UBSan builds).
async function withClient(connectFn, opts, fn) {
	const h = await connectFn(opts);
	let result;
	try {
		result = await fn(h);
	} finally {
		await h.close();
	}
	assert.doesNotMatch(h.stderr().replace(DELIBERATE, ''), SANITIZER, 'a sanitizer report in the host\'s stderr');
	return result;
}
const withV1 = (opts, fn) => withClient(connectV1, opts, fn);
const withModern = (fn) => withClient(connectModern, {}, fn);

// Send raw JSON-RPC messages through the SDK's stdio transport to a fresh host and return the
// responses by id (for what the SDK Client does not let a caller send, such as another
// protocolVersion in initialize).
async function rawExchange(messages) {
	const transport = new StdioClientTransport(hostParams());
	const stderr = collectStderr(transport.stderr);
	const byId = new Map();
	transport.onmessage = (m) => {
		if ('id' in m && !('method' in m)) byId.set(m.id, m);
	};
	await transport.start();
	try {
		for (const m of messages) await transport.send(m);
		const ids = messages.filter((m) => 'id' in m).map((m) => m.id);
		const all = await waitFor(() => ids.every((id) => byId.has(id)), 20000);
		assert.ok(all, `no answer to every request; stderr:\n${stderr()}`);
		return byId;
	} finally {
		await transport.close();
	}
}

function initialize(id, protocolVersion) {
	return {
		jsonrpc: '2.0',
		id,
		method: 'initialize',
		params: { protocolVersion, capabilities: {}, clientInfo: CLIENT_INFO },
	};
}

// Assert that promise rejects with an McpError of this code; returns the error.
async function rejectsWithCode(promise, code, what = '') {
	let caught;
	await assert.rejects(
		promise,
		(e) => {
			caught = e;
			return true;
		},
		`expected an error${what ? ` for ${what}` : ''}`,
	);
	assert.ok(caught instanceof McpError, `expected an McpError, got ${caught}`);
	assert.equal(caught.code, code, `error code of: ${caught.message}`);
	return caught;
}

function b64urlJson(part) {
	return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// --- initialize and version negotiation ------------------------------------------------------

test('initialize: the SDK client connects with its latest version, which the host echoes', T, async () => {
	await withV1({}, async ({ client, rec }) => {
		const init = rec.sentRequest('initialize');
		assert.equal(init.params.protocolVersion, LATEST_PROTOCOL_VERSION);
		assert.equal(rec.responseTo(init.id).result.protocolVersion, LATEST_PROTOCOL_VERSION);
		assert.deepEqual(client.getServerCapabilities(), CAPABILITIES);
		assert.equal(client.getServerVersion().name, 'agentbroker-mcp');
		assert.match(client.getServerVersion().version, /^\d+\.\d+/);
		assert.ok(client.getInstructions()?.length > 0, 'instructions are given');
		assert.ok(rec.sent().some((m) => m.method === 'notifications/initialized'));
		assert.deepEqual(await client.ping(), {});
		assert.deepEqual(await client.setLoggingLevel('warning'), {});
	});
});

test('initialize: an older supported version (2025-06-18, 2025-03-26) is echoed', T, async () => {
	for (const v of ['2025-06-18', '2025-03-26']) {
		const r = await rawExchange([initialize(1, v)]);
		assert.equal(r.get(1).result.protocolVersion, v);
		assert.deepEqual(r.get(1).result.capabilities, CAPABILITIES);
	}
});

test('initialize: an unsupported version is answered with the latest, which the SDK accepts', T, async () => {
	for (const v of ['1999-01-01', '2024-11-05', MODERN]) {
		const r = await rawExchange([initialize('x', v)]);
		assert.equal(r.get('x').result.protocolVersion, '2025-11-25', `answer to ${v}`);
	}
	assert.ok(SUPPORTED_PROTOCOL_VERSIONS.includes('2025-11-25'));
});

// --- tools/list -------------------------------------------------------------------------------

// Every page of tools/list, following nextCursor (at most 50 pages).
async function listPages(client) {
	const pages = [];
	let cursor;
	do {
		const page = await client.listTools(cursor === undefined ? {} : { cursor });
		pages.push(page);
		cursor = page.nextCursor;
		assert.ok(pages.length <= 50, 'tools/list never stops paging');
	} while (cursor !== undefined);
	return pages;
}

test('tools/list: paged by cursor, each allowed tool exactly once, the same order twice', T, async () => {
	await withV1({ env: { AGENTBROKER_MCP_PAGE_SIZE: '3' } }, async ({ client }) => {
		const first = await listPages(client);
		const second = await listPages(client);
		const names = first.flatMap((p) => p.tools.map((t) => t.name));
		assert.equal(first.length, Math.ceil(cfg.tools.length / 3), 'pages of 3');
		for (const p of first.slice(0, -1)) assert.equal(p.tools.length, 3);
		assert.equal(new Set(names).size, names.length, 'no tool twice');
		// Exactly the tools policy allows (the loaded test modules garbage, leak, unscoped, effect
		// and groupwritable are not in the policy), sorted by name.
		assert.deepEqual(names, cfg.tools);
		assert.deepEqual(second, first, 'a second listing gives the same pages and cursors');
	});
});

test('tools/list: one page by default; every tool has a description and an object inputSchema', T, async () => {
	await withV1({}, async ({ client }) => {
		const { tools, nextCursor } = await client.listTools();
		assert.equal(nextCursor, undefined);
		assert.deepEqual(
			tools.map((t) => t.name),
			cfg.tools,
		);
		for (const t of tools) {
			assert.equal(t.inputSchema.type, 'object', t.name);
			assert.ok(t.description.length > 0, t.name);
		}
		const hmac = tools.find((t) => t.name === 'sign.hmac_sha256');
		assert.equal(hmac.outputSchema.type, 'object');
		assert.equal(hmac.annotations.readOnlyHint, true);
		assert.deepEqual(hmac.inputSchema.required, ['key', 'message']);
	});
});

test('tools/list: a cursor the host did not issue is a JSON-RPC error (-32602)', T, async () => {
	await withV1({ env: { AGENTBROKER_MCP_PAGE_SIZE: '3' } }, async ({ client }) => {
		const { nextCursor } = await client.listTools();
		assert.ok(nextCursor);
		// docs/mcp.md: base64url of a version tag, the generation of the allowed set, the last name
		// shown. A cursor of another generation is stale.
		const [tag, gen, ...rest] = Buffer.from(nextCursor, 'base64url').toString('utf8').split('.');
		const stale = Buffer.from([tag, Number(gen) + 1000, ...rest].join('.')).toString('base64url');
		for (const bad of ['not a cursor!', Buffer.from('hello').toString('base64url'), stale, '']) {
			await rejectsWithCode(client.listTools({ cursor: bad }), ErrorCode.InvalidParams, `cursor '${bad}'`);
		}
		// The session goes on: the good cursor still works.
		const page2 = await client.listTools({ cursor: nextCursor });
		assert.equal(page2.tools[0].name, cfg.tools[3]);
	});
});

// --- calls of every shipped tool --------------------------------------------------------------

test('echo.echo returns its text (UTF-8 intact)', T, async () => {
	await withV1({}, async ({ client }) => {
		const text = 'héllo, wörld ✓ 🚀 "quoted" \\ back\nslash';
		const r = await client.callTool({ name: 'echo.echo', arguments: { text } });
		assert.notEqual(r.isError, true);
		assert.equal(textOf(r), text);
	});
});

test('fs.read_file reads a file in the root, by offset and length, and reports binary files', T, async () => {
	const content = readFileSync(join(cfg.fsRoot, 'hello.txt'), 'utf8');
	await withV1({}, async ({ client }) => {
		let r = await client.callTool({ name: 'fs.read_file', arguments: { path: 'hello.txt' } });
		assert.notEqual(r.isError, true, textOf(r));
		assert.equal(textOf(r), content);
		// The same file by its absolute path.
		r = await client.callTool({ name: 'fs.read_file', arguments: { path: join(cfg.fsRoot, 'hello.txt') } });
		assert.equal(textOf(r), content);
		// A page: the bytes asked for, then a note with the next offset.
		r = await client.callTool({ name: 'fs.read_file', arguments: { path: 'hello.txt', offset: 6, length: 4 } });
		assert.equal(r.content[0].text, content.slice(6, 10));
		assert.match(textOf(r), /offset=10\b/);
		r = await client.callTool({ name: 'fs.read_file', arguments: { path: 'sub/nested.txt' } });
		assert.equal(textOf(r), 'nested file\n');
		r = await client.callTool({ name: 'fs.read_file', arguments: { path: 'blob.bin' } });
		assert.notEqual(r.isError, true);
		assert.match(textOf(r), /binary/);
		assert.doesNotMatch(textOf(r), /\u0000|\ufffd/);
		r = await client.callTool({ name: 'fs.read_file', arguments: { path: '/etc/passwd' } });
		assert.equal(r.isError, true);
		assert.match(textOf(r), /outside the allowed roots/);
	});
});

test('fs.list_dir lists the root, sorted, with types', T, async () => {
	await withV1({}, async ({ client }) => {
		const r = await client.callTool({ name: 'fs.list_dir', arguments: { path: '.' } });
		assert.notEqual(r.isError, true, textOf(r));
		const s = r.structuredContent;
		assert.equal(s.total, 3);
		assert.deepEqual(
			s.entries.map((e) => [e.name, e.type]),
			[
				['blob.bin', 'file'],
				['hello.txt', 'file'],
				['sub', 'directory'],
			],
		);
		assert.equal(s.next_cursor, undefined);
		// Paged: limit 2, then the cursor.
		const p1 = await client.callTool({ name: 'fs.list_dir', arguments: { path: '.', limit: 2 } });
		assert.equal(p1.structuredContent.entries.length, 2);
		assert.ok(p1.structuredContent.next_cursor);
		const p2 = await client.callTool({
			name: 'fs.list_dir',
			arguments: { path: '.', limit: 2, cursor: p1.structuredContent.next_cursor },
		});
		assert.deepEqual(
			p2.structuredContent.entries.map((e) => e.name),
			['sub'],
		);
	});
});

test('fs.stat describes a file', T, async () => {
	const st = statSync(join(cfg.fsRoot, 'hello.txt'));
	await withV1({}, async ({ client }) => {
		const r = await client.callTool({ name: 'fs.stat', arguments: { path: 'hello.txt' } });
		assert.notEqual(r.isError, true, textOf(r));
		const s = r.structuredContent;
		assert.equal(s.type, 'file');
		assert.equal(s.size, st.size);
		assert.equal(s.mode, (st.mode & 0o7777).toString(8).padStart(4, '0'));
		assert.equal(s.uid, st.uid);
		assert.equal(s.symlink, false);
		assert.equal(Date.parse(s.mtime) / 1000, Math.floor(st.mtimeMs / 1000));
	});
});

test('fs.search finds file names by pattern, recursively', T, async () => {
	await withV1({}, async ({ client }) => {
		const r = await client.callTool({ name: 'fs.search', arguments: { path: '.', pattern: '\\.txt$' } });
		assert.notEqual(r.isError, true, textOf(r));
		assert.deepEqual(
			r.structuredContent.matches.map((m) => m.path).sort(),
			['./hello.txt', './sub/nested.txt'],
		);
		assert.equal(r.structuredContent.next_cursor, undefined);
	});
});

test('sign.hmac_sha256: the MAC verifies with the secret policy holds', T, async () => {
	await withV1({}, async ({ client }) => {
		const message = 'conformance message ✓ ' + Date.now();
		const want = createHmac('sha256', Buffer.from(cfg.hmacSecret, 'utf8')).update(message, 'utf8').digest('hex');
		const r = await client.callTool({ name: 'sign.hmac_sha256', arguments: { key: cfg.hmacKey, message } });
		assert.notEqual(r.isError, true, textOf(r));
		assert.equal(r.structuredContent.mac, want);
		assert.equal(textOf(r), want);
		assert.ok(!JSON.stringify(r).includes(cfg.hmacSecret), 'the key is not in the result');
		// A key the tool is not granted: the broker refuses, the result says why.
		const d = await client.callTool({ name: 'sign.hmac_sha256', arguments: { key: 'conf_identity', message } });
		assert.equal(d.isError, true);
		assert.match(textOf(d), /refused|denied|not allowed/i);
	});
});

test('sign.jwt: the JWT verifies against the JWKS the broker publishes (Ed25519)', T, async () => {
	const jwks = JSON.parse(readFileSync(cfg.jwks, 'utf8'));
	await withV1({}, async ({ client }) => {
		const args = { audience: 'https://api.example.test', scope: 'read:things', ttl: 120 };
		const r = await client.callTool({ name: 'sign.jwt', arguments: args });
		assert.notEqual(r.isError, true, textOf(r));
		const jwt = r.structuredContent.jwt;
		assert.equal(textOf(r), jwt);
		const [h, p, s] = jwt.split('.');
		const header = b64urlJson(h);
		const claims = b64urlJson(p);
		assert.equal(header.alg, 'EdDSA');
		const jwk = jwks.keys.find((k) => k.kid === header.kid);
		assert.ok(jwk, `the JWKS has the key ${header.kid}`);
		assert.deepEqual([jwk.kty, jwk.crv], ['OKP', 'Ed25519']);
		const key = createPublicKey({ key: jwk, format: 'jwk' });
		assert.equal(verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url')), true, 'signature');
		// A changed payload does not verify.
		const forged = Buffer.from(JSON.stringify({ ...claims, scope: 'admin' })).toString('base64url');
		assert.equal(verify(null, Buffer.from(`${h}.${forged}`), key, Buffer.from(s, 'base64url')), false);
		assert.equal(claims.iss, 'agentbroker-conformance');
		assert.ok(claims.aud === args.audience || (Array.isArray(claims.aud) && claims.aud.includes(args.audience)));
		assert.equal(claims.scope, args.scope);
		assert.equal(claims.exp - claims.iat, args.ttl);
		assert.equal(claims.exp, r.structuredContent.exp);
		assert.ok(Math.abs(claims.iat - Date.now() / 1000) < 120, 'iat is now');
	});
});

// --- invalid calls ------------------------------------------------------------------------------

test('schema: a missing required argument is an isError result naming it; nothing runs', T, async () => {
	await withV1({}, async ({ client, runId }) => {
		const run = await runId();
		const r = await client.callTool({ name: 'echo.echo', arguments: {} });
		assert.equal(r.isError, true);
		assert.match(textOf(r), /^Invalid arguments for echo\.echo: arguments\.text: required/);
		const r2 = await client.callTool({ name: 'fs.read_file', arguments: { offset: 1 } });
		assert.equal(r2.isError, true);
		assert.match(textOf(r2), /arguments\.path: required/);
		// The broker was never asked: once a valid call has ended, it is the run's only begin.
		await client.callTool({ name: 'echo.echo', arguments: { text: 'valid' } });
		const ends = await auditWait(1, ['op=tool-call-end', `run="${run}"`]);
		assert.equal(ends.length, 1);
		const begins = await auditWait(1, ['op=tool-call-begin', `run="${run}"`]);
		assert.equal(begins.length, 1);
		assert.equal(auditField(begins[0], 'tool'), 'echo.echo');
		assert.equal((await auditWait(0, ['op=tool-call-deny', `run="${run}"`], 0)).length, 0);
	});
});

test('schema: a wrong type is an isError result (no coercion)', T, async () => {
	await withV1({}, async ({ client }) => {
		for (const [name, args, re] of [
			['echo.echo', { text: 5 }, /arguments\.text: must be string, not integer/],
			['echo.echo', { text: null }, /arguments\.text: must be string/],
			['hang.slow', { ms: '100' }, /arguments\.ms: must be integer, not string/],
			['hang.slow', { ms: 1.5 }, /arguments\.ms: must be integer/],
			['fs.read_file', { path: ['hello.txt'] }, /arguments\.path: must be string/],
		]) {
			const r = await client.callTool({ name, arguments: args });
			assert.equal(r.isError, true, `${name} ${JSON.stringify(args)}`);
			assert.match(textOf(r), re);
			assert.match(textOf(r), /Nothing was run/);
		}
	});
});

test('schema: an unexpected property (additionalProperties: false) is an isError result naming it', T, async () => {
	await withV1({}, async ({ client }) => {
		const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'a', extra: 1 } });
		assert.equal(r.isError, true);
		assert.match(textOf(r), /unexpected property 'extra'/);
	});
});

test('schema: bounds (minimum, maximum, minLength) are enforced', T, async () => {
	await withV1({}, async ({ client }) => {
		for (const [name, args, re] of [
			['hang.slow', { ms: -1 }, /arguments\.ms: must be >= 0/],
			['hang.progress', { steps: 1001 }, /arguments\.steps: must be <= 1000/],
			['sign.jwt', { audience: '' }, /arguments\.audience/],
		]) {
			const r = await client.callTool({ name, arguments: args });
			assert.equal(r.isError, true, `${name} ${JSON.stringify(args)}`);
			assert.match(textOf(r), re);
		}
	});
});

test('unknown tool: a JSON-RPC error (-32602) naming it', T, async () => {
	await withV1({}, async ({ client }) => {
		const e = await rejectsWithCode(client.callTool({ name: 'nosuch.tool', arguments: {} }), ErrorCode.InvalidParams);
		assert.match(e.message, /Unknown tool: nosuch\.tool/);
		// The session goes on.
		assert.equal(textOf(await client.callTool({ name: 'echo.echo', arguments: { text: 'after' } })), 'after');
	});
});

test('a loaded tool policy does not allow: not listed, and a call is an isError denial', T, async () => {
	await withV1({}, async ({ client }) => {
		const r = await client.callTool({ name: 'groupwritable.ping', arguments: {} });
		assert.equal(r.isError, true);
		assert.match(textOf(r), /^denied by policy: tool-not-allowed/);
	});
});

test('a crashing tool: an isError result, and the session keeps serving', T, async () => {
	await withV1({}, async ({ client }) => {
		const r = await client.callTool({ name: 'crash.segv', arguments: {} });
		assert.equal(r.isError, true);
		assert.match(textOf(r), /crashed/);
		assert.equal(textOf(await client.callTool({ name: 'echo.echo', arguments: { text: 'alive' } })), 'alive');
		const again = await client.callTool({ name: 'crash.segv', arguments: {} });
		assert.match(textOf(again), /crashed/);
	});
});

// --- progress, cancellation, concurrency --------------------------------------------------------

test('progress: notifications strictly increasing, all before the result', T, async () => {
	await withV1({}, async ({ client, rec }) => {
		const seen = [];
		const r = await client.callTool({ name: 'hang.progress', arguments: { steps: 6, interval_ms: 20 } }, undefined, {
			onprogress: (p) => seen.push(p),
		});
		assert.notEqual(r.isError, true, textOf(r));
		assert.equal(textOf(r), 'done: 6 steps');
		assert.deepEqual(
			seen.map((p) => p.progress),
			[1, 2, 3, 4, 5, 6],
		);
		for (const p of seen) assert.equal(p.total, 6);
		// On the wire: the token the SDK sent, and every notification before the response.
		const req = rec.sentRequest('tools/call', (p) => p.name === 'hang.progress');
		const token = req.params._meta.progressToken;
		assert.notEqual(token, undefined);
		const inbound = rec.received();
		const respAt = inbound.findIndex((m) => m.id === req.id && 'result' in m);
		const notes = inbound
			.map((m, i) => [m, i])
			.filter(([m]) => m.method === 'notifications/progress' && m.params.progressToken === token);
		assert.equal(notes.length, 6);
		for (const [, i] of notes) assert.ok(i < respAt, 'progress after the result');
		for (let i = 1; i < notes.length; i++)
			assert.ok(notes[i][0].params.progress > notes[i - 1][0].params.progress, 'strictly increasing');
	});
});

test('cancellation: abort sends notifications/cancelled; no result; the audit record says cancelled', T, async (t) => {
	await withV1({}, async ({ client, rec, runId }) => {
		const run = await runId();
		const ac = new AbortController();
		const t0 = performance.now();
		const call = client.callTool({ name: 'hang.slow', arguments: { ms: 60000 } }, undefined, { signal: ac.signal });
		call.catch(() => {});
		// Once the broker has begun the call, cancel it.
		const begins = await auditWait(1, ['op=tool-call-begin', `run="${run}"`, 'tool="hang.slow"']);
		assert.equal(begins.length, 1, 'the call was begun');
		ac.abort('the conformance suite cancels it');
		await assert.rejects(call);
		const req = rec.sentRequest('tools/call', (p) => p.name === 'hang.slow');
		const cancel = rec.sent().find((m) => m.method === 'notifications/cancelled');
		assert.ok(cancel, 'the SDK sent notifications/cancelled');
		assert.equal(cancel.params.requestId, req.id);
		const ends = await auditWait(1, ['op=tool-call-end', `run="${run}"`, 'tool="hang.slow"']);
		assert.equal(ends.length, 1, 'one tool-call-end');
		assert.equal(auditField(ends[0], 'status'), 'cancelled');
		assert.equal(auditField(ends[0], 'call'), auditField(begins[0], 'call'));
		t.diagnostic(`cancelled after ${Math.round(performance.now() - t0)} ms; end record: ${ends[0]}`);
		assert.ok(performance.now() - t0 < 20000, 'the call stopped long before its 60 s');
		// No response for the cancelled request, and the session goes on.
		await sleep(500);
		assert.equal(rec.responseTo(req.id), undefined, 'no response to a cancelled request');
		assert.equal(textOf(await client.callTool({ name: 'echo.echo', arguments: { text: 'next' } })), 'next');
		assert.equal(rec.responseTo(req.id), undefined, 'no late response either');
	});
});

test('concurrency: 50 calls at once, one slow (2 s): the other 49 finish first', T, async (t) => {
	await withV1({}, async ({ client }) => {
		const t0 = performance.now();
		const done = [];
		const calls = [];
		const call = (label, name, args, check) =>
			client.callTool({ name, arguments: args }).then((r) => {
				done.push({ label, ms: performance.now() - t0 });
				assert.notEqual(r.isError, true, `${label}: ${textOf(r)}`);
				check(r);
			});
		calls.push(call('slow', 'hang.slow', { ms: 2000 }, (r) => assert.equal(textOf(r), 'slept')));
		for (let i = 1; i < 50; i++) {
			if (i % 7 === 0)
				// The slow call's own module serves more calls meanwhile (another worker).
				calls.push(call(`hang${i}`, 'hang.slow', { ms: 0 }, (r) => assert.equal(textOf(r), 'slept')));
			else if (i % 5 === 0)
				calls.push(
					call(`stat${i}`, 'fs.stat', { path: 'hello.txt' }, (r) => assert.equal(r.structuredContent.type, 'file')),
				);
			else calls.push(call(`echo${i}`, 'echo.echo', { text: `call ${i}` }, (r) => assert.equal(textOf(r), `call ${i}`)));
		}
		await Promise.all(calls);
		const order = done.map((d) => d.label);
		const slow = done.find((d) => d.label === 'slow');
		const others = done.filter((d) => d.label !== 'slow');
		const lastOther = Math.max(...others.map((d) => d.ms));
		t.diagnostic(`completion order: ${order.join(' ')}`);
		t.diagnostic(`the 49 others done by ${Math.round(lastOther)} ms; the slow call at ${Math.round(slow.ms)} ms`);
		assert.equal(done.length, 50);
		assert.equal(order.at(-1), 'slow', 'the slow call finishes last');
		assert.ok(slow.ms >= 2000, 'the slow call took its 2 s');
		assert.ok(lastOther < slow.ms, 'the others were not held up by the slow call');
	});
});

// --- 2026-07-28: server/discover and stateless requests (v2 client) ----------------------------

test('2026-07-28: server/discover lists 2026-07-28 and capabilities matching initialize', T, async () => {
	const legacyCaps = await withV1({}, async ({ client }) => client.getServerCapabilities());
	await withModern(async ({ client, rec }) => {
		assert.equal(client.getProtocolEra(), 'modern');
		assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
		assert.ok(!rec.sent().some((m) => m.method === 'initialize'), 'no initialize in the modern era');
		const d = await client.discover();
		assert.ok(d.supportedVersions.includes(MODERN));
		assert.ok(d.supportedVersions.includes('2025-11-25'));
		assert.deepEqual(d.capabilities, CAPABILITIES);
		assert.deepEqual(d.capabilities, legacyCaps);
		// The request carried the version; the raw result is complete and cacheable.
		const req = rec.sentRequest('server/discover');
		assert.equal(req.params._meta[META_VERSION], MODERN);
		const raw = rec.responseTo(req.id).result;
		assert.equal(raw.resultType, 'complete');
		assert.equal(typeof raw.ttlMs, 'number');
		assert.equal(raw.cacheScope, 'public');
		assert.equal(raw._meta['io.modelcontextprotocol/serverInfo'].name, 'agentbroker-mcp');
	});
});

test('2026-07-28: stateless tools/list and tools/call with _meta (resultType complete)', T, async () => {
	await withModern(async ({ client, rec }) => {
		const { tools } = await client.listTools();
		assert.deepEqual(
			tools.map((t) => t.name),
			cfg.tools,
		);
		const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'stateless' } });
		assert.equal(textOf(r), 'stateless');
		const req = rec.sentRequest('tools/call', (p) => p.name === 'echo.echo');
		assert.equal(req.params._meta[META_VERSION], MODERN);
		assert.equal(typeof req.params._meta[META_CAPS], 'object');
		const raw = rec.responseTo(req.id).result;
		assert.equal(raw.resultType, 'complete');
		const list = rec.responseTo(rec.sentRequest('tools/list').id).result;
		assert.equal(list.resultType, 'complete');
		assert.equal(list.cacheScope, 'private');
		// A tool with structured output, checked by the v2 client against its outputSchema.
		const mac = await client.callTool({ name: 'sign.hmac_sha256', arguments: { key: cfg.hmacKey, message: 'm' } });
		assert.equal(
			mac.structuredContent.mac,
			createHmac('sha256', Buffer.from(cfg.hmacSecret, 'utf8')).update('m').digest('hex'),
		);
		// Invalid arguments and unknown tools behave as in 2025-11-25.
		const bad = await client.callTool({ name: 'echo.echo', arguments: { text: 1 } });
		assert.equal(bad.isError, true);
		await assert.rejects(client.callTool({ name: 'nosuch.tool', arguments: {} }), (e) => e.code === -32602);
	});
});

test('2026-07-28: a v2 client in auto mode negotiates the modern era', T, async () => {
	const transport = new ModernStdioClientTransport(hostParams());
	collectStderr(transport.stderr);
	const client = new ModernClient(CLIENT_INFO, { versionNegotiation: { mode: 'auto' } });
	await client.connect(transport);
	try {
		assert.equal(client.getProtocolEra(), 'modern');
		assert.equal(client.getNegotiatedProtocolVersion(), MODERN);
		assert.equal(client.getServerVersion()?.name, 'agentbroker-mcp');
		const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'auto' } });
		assert.equal(textOf(r), 'auto');
	} finally {
		await client.close();
	}
});

test('2026-07-28: a v2 client without negotiation (legacy mode) gets the 2025-11-25 session', T, async () => {
	const transport = new ModernStdioClientTransport(hostParams());
	collectStderr(transport.stderr);
	const client = new ModernClient(CLIENT_INFO);
	await client.connect(transport);
	try {
		assert.equal(client.getProtocolEra(), 'legacy');
		assert.equal(client.getNegotiatedProtocolVersion(), '2025-11-25');
		const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'legacy' } });
		assert.equal(textOf(r), 'legacy');
	} finally {
		await client.close();
	}
});
