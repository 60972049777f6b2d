#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A cut result's note says the next offset without touching the tool's own text: a tool whose
# output contains "<<<<<<<<<<<<<<<<<<<<" (the placeholder the host once patched into the note
# with strstr, so that the first occurrence, in the tool's text, was rewritten) gets it back
# unchanged, and the note names the offset after what was shown (tests/modules/sentinel.c).
. "$(dirname "$0")/lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
SENTINEL='<<<<<<<<<<<<<<<<<<<<'

require_root
require_services
require_tools jq timeout
require_built "$MCP" "$WORKER"
[ -f "$TMODDIR/sentinel.so" ] || unmet "$TMODDIR/sentinel.so is not built (make check builds the test modules)"

setup_testdir
mkdir -m 0755 "$T/modules"
install -m 0755 "$TMODDIR/sentinel.so" "$T/modules/"
cat >"$T/policy.yaml" <<EOF
tools:
  - match: "sentinel.*"
    max_result_bytes: 300
clients: { uids: [0] }
EOF
start_broker "$T/policy.yaml"

INIT='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-shaping.sh","version":"1"}}}'
{
	echo "$INIT"
	echo '{"jsonrpc":"2.0","method":"notifications/initialized"}'
	echo '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sentinel.page","arguments":{}}}'
	echo '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sentinel.page","arguments":{"offset":5000}}}'
} | AGENTBROKER_WORKER="$WORKER" timeout 60 "$MCP" --broker "$SOCK" --modules "$T/modules" >"$T/out" 2>"$T/err"
is "$?" 0 "the host answered both calls and exited at the end of input"
# resp ID JQ: jq -r JQ of the response whose id is ID.
resp() { jq -r "select(.id == $1) | $2" "$T/out"; }

for id in 1 2; do
	text=$(resp $id '.result.content[0].text')
	shown=$(resp $id '.result.content[:-1] | map(.text) | join("") | utf8bytelength')
	start=$([ "$id" = 2 ] && echo 5000 || echo 0)
	like "$(resp $id '.result.content[-1].text')" '^\[truncated: [0-9]+ of 1020 bytes shown' \
		"call $id: the result is cut, with a note"
	is "${text:0:20}" "$SENTINEL" "call $id: the tool's text still begins with its twenty '<'"
	like "$text" '^<{20}x+$' "call $id: the tool's text is nothing but its own bytes"
	like "$(resp $id '.result.content[-1].text')" "again with offset=$((start + shown)) to get the rest\\.\\]\$" \
		"call $id: the note names the offset after the $shown bytes shown (from $start)"
	ok "call $id: the cut result fits in max_result_bytes (300)" \
		test "$(resp $id '.result | tojson | utf8bytelength')" -le 300
done
unlike "$(cat "$T/err")" 'Sanitizer|runtime error' "no sanitizer report from the host"
stop_broker

done_testing
