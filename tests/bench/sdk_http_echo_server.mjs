// SPDX-License-Identifier: MIT
// tests/bench/sdk_http_echo_server.mjs — the baseline of the HTTP benchmark: the official MCP
// TypeScript SDK's own Streamable HTTP server (McpServer + StreamableHTTPServerTransport from
// @modelcontextprotocol/sdk on node:http, as in the SDK's examples) serving the same tool as
// agentbroker's echo module (sdk_echo_tool.mjs). Nothing is audited, nothing is isolated; it checks a bearer token (the same comparison cost as a cache
// hit, no token service) and Host (the SDK's DNS-rebinding protection), as agentbroker-mcp does.
//
//   node sdk_http_echo_server.mjs --state stateful|stateless --response json|sse
//   environment: SDK_BENCH_TOKEN  the bearer token every request must carry
//
// stateful   one transport and McpServer per session (Mcp-Session-Id from randomUUID), made
//            by initialize, as in the SDK's simpleStreamableHttp example;
// stateless  a new McpServer and transport for every request (sessionIdGenerator undefined),
//            as the SDK requires for stateless mode (a stateless transport is never reused).
// --response json sets enableJsonResponse (one JSON body per POST), sse leaves the SDK's default
// (an SSE stream per POST). Listens on 127.0.0.1 on a free port and prints "listening PORT".
//
// Run by bench_http.mjs, from a directory whose node_modules holds the pinned SDK
// (run-bench-http.sh links tests/node_modules there).
import { randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

import { registerEcho } from './sdk_echo_tool.mjs';

const BODY_MAX = 4 * 1024 * 1024;

function option(name, allowed) {
	const i = process.argv.indexOf(name);
	const v = i >= 0 ? process.argv[i + 1] : undefined;
	if (!allowed.includes(v)) {
		console.error(`sdk_http_echo_server: ${name} must be one of ${allowed.join(', ')}`);
		process.exit(2);
	}
	return v;
}

const state = option('--state', ['stateful', 'stateless']);
const response = option('--response', ['json', 'sse']);
const token = process.env.SDK_BENCH_TOKEN;
if (!token) {
	console.error('sdk_http_echo_server: SDK_BENCH_TOKEN is not set');
	process.exit(2);
}
const expected = Buffer.from(`Bearer ${token}`);

function newServer() {
	const server = new McpServer({ name: 'sdk-echo', version: '1.0.0' });
	registerEcho(server);
	return server;
}

let allowedHosts = [];

function newTransport(extra) {
	return new StreamableHTTPServerTransport({
		enableJsonResponse: response === 'json',
		enableDnsRebindingProtection: true,
		allowedHosts,
		...extra,
	});
}

function fail(res, status, message, headers = {}) {
	res.writeHead(status, { 'Content-Type': 'text/plain', ...headers }).end(`${message}\n`);
}

function authorized(req) {
	const got = Buffer.from(req.headers.authorization ?? '');
	return got.length === expected.length && timingSafeEqual(got, expected);
}

// The body of a POST, parsed (as express.json() does in the SDK's examples), or undefined.
function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;
		req.on('data', (c) => {
			size += c.length;
			if (size > BODY_MAX) {
				reject(new Error('body too large'));
				req.destroy();
			} else chunks.push(c);
		});
		req.on('end', () => {
			try {
				resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
			} catch {
				resolve(undefined);
			}
		});
		req.on('error', reject);
	});
}

const sessions = new Map(); // session id -> transport

async function handle(req, res) {
	if (req.url !== '/mcp') return fail(res, 404, 'Not Found');
	if (!authorized(req))
		return fail(res, 401, 'Unauthorized', { 'WWW-Authenticate': 'Bearer realm="sdk-echo", error="invalid_token"' });
	const body = req.method === 'POST' ? await readBody(req) : undefined;
	if (state === 'stateless') {
		if (req.method !== 'POST') return fail(res, 405, 'Method Not Allowed', { Allow: 'POST' });
		const server = newServer();
		const transport = newTransport({ sessionIdGenerator: undefined });
		res.on('close', () => {
			transport.close();
			server.close();
		});
		await server.connect(transport);
		await transport.handleRequest(req, res, body);
		return;
	}
	const sid = req.headers['mcp-session-id'];
	let transport = sid ? sessions.get(sid) : undefined;
	if (!transport) {
		if (sid) return fail(res, 404, 'Session not found');
		if (req.method !== 'POST' || !isInitializeRequest(body)) return fail(res, 400, 'Bad Request: no session');
		transport = newTransport({
			sessionIdGenerator: () => randomUUID(),
			onsessioninitialized: (id) => sessions.set(id, transport),
		});
		transport.onclose = () => {
			if (transport.sessionId) sessions.delete(transport.sessionId);
		};
		await newServer().connect(transport);
	}
	await transport.handleRequest(req, res, body);
}

const httpServer = http.createServer((req, res) => {
	handle(req, res).catch((e) => {
		console.error(`sdk_http_echo_server: ${e?.stack ?? e}`);
		if (!res.headersSent) fail(res, 500, 'Internal Server Error');
		else res.end();
	});
});
httpServer.keepAliveTimeout = 60_000;
httpServer.listen(0, '127.0.0.1', () => {
	const { port } = httpServer.address();
	allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`];
	console.log(`listening ${port}`);
});
process.on('SIGTERM', () => {
	httpServer.closeAllConnections();
	httpServer.close(() => process.exit(0));
});
