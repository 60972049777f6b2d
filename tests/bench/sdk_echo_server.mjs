// SPDX-License-Identifier: MIT
// tests/bench/sdk_echo_server.mjs — the baseline of the MCP benchmark: the official MCP
// TypeScript SDK's own stdio server (McpServer + StdioServerTransport from
// @modelcontextprotocol/sdk) serving the same tool as agentbroker's echo module
// (sdk_echo_tool.mjs). Nothing is audited, nothing is isolated.
//
// Run by bench_mcp.mjs, from a directory whose node_modules holds the pinned SDK (run-bench-mcp.sh
// links tests/node_modules there).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

import { registerEcho } from './sdk_echo_tool.mjs';

const server = new McpServer({ name: 'sdk-echo', version: '1.0.0' });

registerEcho(server);

await server.connect(new StdioServerTransport());
