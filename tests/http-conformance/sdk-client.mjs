// SPDX-License-Identifier: MIT
// The official MCP TypeScript SDK client (@modelcontextprotocol/sdk, pinned in tests/package-lock.json)
// over StreamableHTTPClientTransport against agentbroker-mcp --http, for
// tests/integration/http-clients.sh. Usage: node sdk-client.mjs URL [TOKEN]
// Connects (initialize), lists the tools, calls echo.echo, closes (DELETE), and prints one JSON
// object: {tools: [names], echo: "text", session: bool} or {error, code} when a step failed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "agentbroker-http-clients-test", version: "1.0.0" });
const out = {};
try {
	await client.connect(transport);
	out.session = typeof transport.sessionId === "string" && transport.sessionId.length > 0;
	out.protocol = transport.protocolVersion ?? null;
	const { tools } = await client.listTools();
	out.tools = tools.map((t) => t.name).sort();
	const res = await client.callTool({ name: "echo.echo", arguments: { text: "hello over HTTP" } });
	out.echo = res.content?.[0]?.text ?? null;
	out.isError = res.isError === true;
	await transport.terminateSession();
	await client.close();
} catch (e) {
	out.error = e instanceof Error ? e.message : String(e);
	out.code = e?.code ?? null;
}
console.log(JSON.stringify(out));
process.exit(0);
