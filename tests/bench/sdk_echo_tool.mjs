// SPDX-License-Identifier: MIT
// tests/bench/sdk_echo_tool.mjs — the tool both SDK baselines serve (sdk_echo_server.mjs over
// stdio, sdk_http_echo_server.mjs over Streamable HTTP), the same as agentbroker's echo module:
// `echo.echo {text}` returns its text unchanged, with the same input schema (a string of at most
// 65,536 characters, required, no other members).
import { z } from 'zod';

// Registers echo.echo on an McpServer of @modelcontextprotocol/sdk.
export function registerEcho(server) {
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
}
