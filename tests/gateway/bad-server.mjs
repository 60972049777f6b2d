// SPDX-License-Identifier: MIT
// A small MCP server that misbehaves on request, for tests/integration/gateway.sh: plain
// newline-delimited JSON-RPC on stdio (no SDK), so that it can break the protocol at will.
// Every tools/call it receives is logged to stderr ("bad-server: call NAME"), which the host
// passes on to its own stderr: a test can see whether a call reached the server.
import * as fs from 'node:fs';
import { createInterface } from 'node:readline';

const tools = [
  ['ok', 'Answers with its process id'],
  ['denied', 'A tool that policy denies: it must never be called'],
  ['crash', 'Exits with status 3 while the call runs'],
  ['hang', 'Never answers'],
  ['garbage', 'Writes a line that is not JSON-RPC'],
  ['flood', 'Writes 20000 log notifications, then answers'],
  ['ask', 'Asks the client for sampling, then answers with what it said'],
  ['progress', 'Reports progress 1, 2, 3, then answers'],
  ['huge', 'Writes a 17 MiB line'],
  ['badschema', 'Has an input schema the host cannot enforce'],
  ['change', 'Adds the tool "added" and sends notifications/tools/list_changed'],
  ['added', 'Listed after "change" ran'],
  ['bigdesc', 'x'.repeat(70000)],
  ['leak', 'Puts $API_KEY on its stderr, in a progress message and in a JSON-RPC error'],
  ['probe', 'Says which of the paths in $PROBE_PATHS (colon-separated) it can read'],
].map(([name, description]) => ({
  name,
  description,
  inputSchema: name === 'badschema'
    ? { type: 'object', properties: { x: { $ref: '#/definitions/x' } } }
    : { type: 'object', properties: {}, additionalProperties: false },
}));

// This process's own name: in the run's sandbox every server is pid 1 of its pid namespace.
const INSTANCE = Math.random().toString(16).slice(2, 10);
const send = (m) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', ...m }) + '\n');
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const waiting = new Map();
let added = false;
let next = 1000;

createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id !== undefined && !m.method) {           // a response to our own request
    const cb = waiting.get(m.id);
    waiting.delete(m.id);
    if (cb) cb(m);
    return;
  }
  if (m.method === 'notifications/cancelled')
    return process.stderr.write(`bad-server: cancelled ${m.params.requestId} (${m.params.reason})\n`);
  if (m.method === 'initialize')
    return send({ id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} },
                                      serverInfo: { name: 'bad-server', version: '1' } } });
  if (m.method === 'tools/list')
    return send({ id: m.id, result: { tools: tools.filter((t) => t.name !== 'added' || added) } });
  if (m.method !== 'tools/call')
    return m.id !== undefined ? send({ id: m.id, error: { code: -32601, message: 'no' } }) : undefined;
  const name = m.params.name;
  process.stderr.write(`bad-server: call ${name}\n`);
  switch (name) {
  case 'change':
    added = true;
    send({ method: 'notifications/tools/list_changed' });
    return send({ id: m.id, result: text('changed') });
  case 'ok':
  case 'added':
  case 'denied':
    return send({ id: m.id, result: text(`ok from pid ${process.pid} instance ${INSTANCE}`) });
  case 'crash':
    return process.exit(3);
  case 'hang':
    return;
  case 'garbage':
    return process.stdout.write('this is not JSON-RPC\n');
  case 'flood':
    for (let i = 0; i < 20000; i++)
      send({ method: 'notifications/message', params: { level: 'info', data: `flood ${i}` } });
    return send({ id: m.id, result: text('flooded') });
  case 'ask': {
    const id = next++;
    waiting.set(id, (r) => send({ id: m.id, result: text(`asked: ${r.error ? r.error.code : 'answered'}`) }));
    return send({ id, method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } });
  }
  case 'progress': {
    const token = m.params._meta && m.params._meta.progressToken;
    for (let i = 1; i <= 3; i++)
      send({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: 3 } });
    return send({ id: m.id, result: text('progressed') });
  }
  case 'leak': {
    const key = process.env.API_KEY || '(no API_KEY)';
    process.stderr.write(`bad-server: my key is ${key}\n`);
    const token = m.params._meta && m.params._meta.progressToken;
    if (token !== undefined)
      send({ method: 'notifications/progress', params: { progressToken: token, progress: 1, message: `using ${key}` } });
    return send({ id: m.id, error: { code: -32000, message: `the key ${key} was refused` } });
  }
  case 'probe': {
    const seen = (process.env.PROBE_PATHS || '').split(':').filter(Boolean).map((p) => {
      try { fs.readFileSync(p); return `${p}=readable`; } catch (e) { return `${p}=${e.code}`; }
    });
    return send({ id: m.id, result: text(seen.join(' ')) });
  }
  case 'huge':
    return process.stdout.write('x'.repeat(17 * 1024 * 1024) + '\n');
  default:
    return send({ id: m.id, error: { code: -32602, message: `Unknown tool: ${name}` } });
  }
});
