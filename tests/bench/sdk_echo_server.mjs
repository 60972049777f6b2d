// tests/bench/sdk_echo_server.mjs — the baseline of the MCP benchmark: the official MCP
// TypeScript SDK's own stdio server (McpServer + StdioServerTransport from
// @modelcontextprotocol/sdk) serving the same tool as agentbroker's echo module: `echo.echo
// {text}` returns its text unchanged, with the same input schema (a string of at most 65,536
// characters, required, no other members). Nothing is audited, nothing is isolated.
//
// Run by bench_mcp.mjs, from a directory whose node_modules holds the pinned SDK (run-bench-mcp.sh
// links tests/conformance/node_modules there).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'sdk-echo', version: '1.0.0' });

server.registerTool(
	'echo.echo',
	{
		title: 'Echo',
		description: 'Return the given text unchanged.',
		inputSchema: z.object({ text: z.string().max(65536).describe('The text to return.') }).strict(),
		annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
	},
	async ({ text }) => ({ content: [{ type: 'text', text }] }),
);

await server.connect(new StdioServerTransport());
