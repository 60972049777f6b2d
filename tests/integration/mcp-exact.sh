#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What fuzzing found in agentbroker-mcp (issue 17), end to end with the real broker: a module
# whose schema has const/enum values printing just past the 200 bytes messages show (a heap
# overflow in the host at load: run it in the sanitizer build); JSON-RPC ids and progress
# tokens up to 2^53-1 echoed exactly, out-of-range numbers refused as ids, over stdio and
# HTTP (tests/tunnel covers the tunnel); error messages that echo a method or tool name cut at
# a character boundary (every response line valid UTF-8); and fs.search with patterns that
# made glibc's regex engine run for minutes.
. "$(dirname "$0")/lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs

require_root
require_services
require_tools jq iconv timeout
require_built "$MCP" "$WORKER"
[ -f "$MODDIR/fs.so" ] && [ -f "$MODDIR/echo.so" ] || unmet "the shipped modules are not built in $MODDIR"
for m in bigconst hang; do
	[ -f "$TMODDIR/$m.so" ] || unmet "$TMODDIR/$m.so is not built (make check builds the test modules)"
done

setup_testdir
mkdir -m 0755 "$T/modules" "$T/root"
install -m 0755 "$MODDIR/fs.so" "$MODDIR/echo.so" "$TMODDIR/bigconst.so" "$TMODDIR/hang.so" "$T/modules/"
touch "$T/root/$(head -c 40 /dev/zero | tr '\0' a)!"     # what backtracking blows up on
cat >"$T/policy.yaml" <<EOF
tools:
  - match: "fs.*"
  - match: "echo.*"
  - match: "bigconst.*"
  - match: "hang.*"
modules:
  fs: { roots: [$T/root] }
clients: { uids: [0] }
EOF
start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# session NAME < LINES: run the host on these lines until it exits; stdout in $T/NAME.out.
session() {
	AGENTBROKER_WORKER="$WORKER" timeout 120 "$MCP" --broker "$SOCK" --modules "$T/modules" \
		>"$T/$1.out" 2>"$T/$1.err"
	echo $? >"$T/$1.rc"
}
# line NAME ID: the raw response line of session NAME whose id is ID (as text).
line() { grep -F "\"id\":$2," "$T/$1.out" | head -n 1; }
INIT='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-exact.sh","version":"1"}}}'
INITIALIZED='{"jsonrpc":"2.0","method":"notifications/initialized"}'
A199=$(head -c 199 /dev/zero | tr '\0' a)

{
	echo "$INIT"
	echo "$INITIALIZED"
	echo '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
	echo '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"bigconst.k","arguments":{"k":"b"}}}'
	echo '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"bigconst.k","arguments":{"k":"'"$A199"'"}}}'
	# ids
	for id in 9007199254740991 -9007199254740991 5000000000000001 1000000000000000 123; do
		echo '{"jsonrpc":"2.0","id":'"$id"',"method":"ping"}'
	done
	echo '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"hang.progress","arguments":{"steps":1},"_meta":{"progressToken":9007199254740991}}}'
	for id in 1e300 -1e400 18446744073709551616 9007199254740992; do
		echo '{"jsonrpc":"2.0","id":'"$id"',"method":"ping"}'
	done
	# UTF-8: "é" (2 bytes) straddles byte 100 of the method and byte 200 of the tool name
	printf '{"jsonrpc":"2.0","id":5,"method":"%s\xc3\xa9x"}\n' "$(head -c 99 /dev/zero | tr '\0' m)"
	printf '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"%s\xc3\xa9x","arguments":{}}}\n' "$A199"
	# regular expressions: refused at once, or bounded
	echo '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.search","arguments":{"path":"'"$T/root"'","pattern":"a+++++++++++++++++++++++"}}}'
	echo '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fs.search","arguments":{"path":"'"$T/root"'","pattern":"(a|aa)*$"}}}'
	echo '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"fs.search","arguments":{"path":"'"$T/root"'","pattern":"^(a+)+$"}}}'
} | session s
is "$(cat "$T/s.rc")" 0 "the host ran the session and exited at the end of input"
unlike "$(cat "$T/s.err")" 'Sanitizer|runtime error' "no sanitizer report from the host"

# --- a schema with values just past what messages show ---------------------------------------
like "$(jq -r 'select(.id == 1) | [.result.tools[].name] | join(" ")' "$T/s.out")" 'bigconst\.k' \
	"the module with a 199-byte const and a 200-byte enum value loads and its tool is listed"
like "$(jq -r 'select(.id == 2) | .result.content[0].text' "$T/s.out")" \
	"^Invalid arguments for bigconst.k: arguments.k: must be \"${A199}\\.\\.\\. \\(const\\)\\. Nothing was run" \
	"a wrong value gets the const cut at 200 bytes with ..."
is "$(jq -r 'select(.id == 3) | .result.content[0].text' "$T/s.out")" accepted "the const value itself is accepted"

# --- ids ----------------------------------------------------------------------------------------
for id in 9007199254740991 -9007199254740991 5000000000000001 1000000000000000 123; do
	l=$(line s "$id")
	like "$l" "^\\{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\"" "ping with id $id: answered with exactly that id"
done
ok "a progress token of 2^53-1 comes back exactly in notifications/progress" \
	grep -q '"method":"notifications/progress","params":{"progressToken":9007199254740991,' "$T/s.out"
nulls=$(jq -r 'select(.id == null) | .error.message' "$T/s.out" | grep -c 'id must be a string or an integer')
is "$nulls" 4 "1e300, -1e400, 2^64 and 2^53 are refused as ids (-32600, id null)"

# --- UTF-8 ---------------------------------------------------------------------------------------
ok "every response line is valid UTF-8" iconv -f UTF-8 -t UTF-8 "$T/s.out" -o /dev/null
is "$(jq -r 'select(.id == 5) | .error.message' "$T/s.out")" "Method not found: $(head -c 99 /dev/zero | tr '\0' m)" \
	"Method not found: the name is cut before the character that straddles byte 100"
is "$(jq -r 'select(.id == 6) | .error.message' "$T/s.out")" "Unknown tool: $A199" \
	"Unknown tool: the name is cut before the character that straddles byte 200"

# --- regular expressions -------------------------------------------------------------------------
like "$(jq -r 'select(.id == 7) | .result.content[0].text' "$T/s.out")" 'not a valid regular expression' \
	"fs.search: a+++... is refused at once"
for id in 8 9; do
	r=$(jq -c "select(.id == $id) | .result" "$T/s.out")
	like "$r" 'took too long' "fs.search pattern $id: the backtracking limit stops it (not a worker at 100% CPU)"
done

# --- HTTP ----------------------------------------------------------------------------------------
NET=$ABS_TOP_BUILDDIR/agentbroker-mcp-net
if [ -x "$NET" ] && command -v curl >/dev/null; then
	PORT=$((20000 + RANDOM % 20000))
	AGENTBROKER_WORKER="$WORKER" "$MCP" --broker "$SOCK" --modules "$T/modules" --http "127.0.0.1:$PORT" \
		>"$T/http.out" 2>"$T/http.err" &
	HPID=$!
	add_cleanup sh -c "kill $HPID 2>/dev/null"
	wait_for 10 grep -q "serving MCP over Streamable HTTP" "$T/http.err" || bail_out "no HTTP listener: $(tail -n 5 "$T/http.err")"
	TOKEN=$(ctl http-token --ttl 1h)
	META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
	for id in 9007199254740991 5000000000000001 1e300; do
		curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
			-H "Authorization: Bearer $TOKEN" -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' \
			-H 'Mcp-Name: echo.echo' --data-binary \
			'{"jsonrpc":"2.0","id":'"$id"',"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"x"},'"$META"'}}' \
			"http://127.0.0.1:$PORT/mcp" >"$T/http-$id.json"
	done
	like "$(cat "$T/http-9007199254740991.json")" '"id":9007199254740991,' "HTTP: id 2^53-1 comes back exactly"
	like "$(cat "$T/http-5000000000000001.json")" '"id":5000000000000001,' "HTTP: id 5000000000000001 comes back exactly"
	like "$(cat "$T/http-1e300.json")" '"id":null.*id must be a string or an integer' "HTTP: id 1e300 is refused"
	kill "$HPID" 2>/dev/null
	wait "$HPID" 2>/dev/null
	unlike "$(cat "$T/http.err")" 'Sanitizer|runtime error' "HTTP: no sanitizer report from the host"
else
	skip "HTTP ids" "agentbroker-mcp-net or curl is missing"
fi

done_testing
