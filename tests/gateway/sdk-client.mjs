// SPDX-License-Identifier: MIT
// The official MCP TypeScript SDK client against agentbroker-mcp (stdio, or Streamable HTTP
// with --url), for tests/integration/gateway.sh: lists the tools, makes the calls given as
// JSON ([{name, arguments}]) and prints {"tools": [names], "results": [CallToolResult]}.
//   node sdk-client.mjs --calls JSON [--url URL] [-- COMMAND ARG...]
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const argv = process.argv.slice(2);
const opt = (name) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const dash = argv.indexOf('--');
const calls = JSON.parse(opt('--calls') || '[]');
const url = opt('--url');

const transport = url
  ? new StreamableHTTPClientTransport(new URL(url), process.env.AB_TOKEN
      ? { requestInit: { headers: { Authorization: `Bearer ${process.env.AB_TOKEN}` } } } : undefined)
  : new StdioClientTransport({ command: argv[dash + 1], args: argv.slice(dash + 2), env: process.env, stderr: 'inherit' });
const client = new Client({ name: 'gateway-sdk-client', version: '1.0.0' });
await client.connect(transport);
const { tools } = await client.listTools();
const results = [];
for (const c of calls)
  results.push(await client.callTool({ name: c.name, arguments: c.arguments || {} }, undefined, { timeout: 60000 }));
console.log(JSON.stringify({ tools: tools.map((t) => t.name), results }));
await client.close();
