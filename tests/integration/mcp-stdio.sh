#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# agentbroker-mcp over stdio, driven with raw JSON-RPC lines: every JSON-RPC error path, the
# 2025-11-25 and 2026-07-28 lifecycles, tools/list pagination and cursors, a call that works,
# one with invalid arguments, one policy denies, a truncated result, and the end of input.
# The real broker decides every call (docs/mcp.md).
. "$(dirname "$0")/lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs

require_root
require_services
require_tools jq head
require_built "$MCP" "$WORKER"
[ -f "$MODDIR/echo.so" ] && [ -f "$MODDIR/fs.so" ] || unmet "the shipped modules are not built in $MODDIR"

setup_testdir
mkdir -p "$T/root"
head -c 1000 /dev/zero | tr '\0' 'a' >"$T/root/big.txt"
cat >"$T/policy.yaml" <<EOF
tools:
  - match: "echo.*"
    max_result_bytes: 300
  - match: "fs.*"
    max_result_bytes: 400
  - match: "fs.search"
    allow: false
  # the listings below name the four original fs tools: the others are denied here
  - match: "fs.[gt]*"
    allow: false
  - match: "fs.read_json"
    allow: false
  - match: "fs.summarize_log"
    allow: false
modules:
  fs: { roots: [$T/root] }
clients: { uids: [0] }
EOF
start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# session NAME [ENV=VALUE...] < LINES: run the host on these input lines until it exits;
# stdout in $T/NAME.out, stderr in $T/NAME.err, exit status in $T/NAME.rc.
session() {
	local name=$1 rc
	shift
	env "$@" AGENTBROKER_WORKER="$WORKER" timeout 60 "$MCP" --broker "$SOCK" --modules "$MODDIR" \
		>"$T/$name.out" 2>"$T/$name.err"
	rc=$?
	echo "$rc" >"$T/$name.rc"
	[ "$rc" -eq 0 ] || diag "agentbroker-mcp ($name) exited with $rc; stderr:" "$(tail -n 20 "$T/$name.err")"
}
# resp NAME ID [JQ]: the response of session NAME whose id is ID (a JSON literal), or jq -r JQ of it.
resp() {
	jq -c --argjson id "$2" 'select(has("id") and .id == $id and (has("method") | not))' "$T/$1.out" |
		head -n 1 | jq -r "${3:-.}"
}
# null_errors NAME: the error codes of the responses with id null, in order, space-separated.
null_errors() { jq -r 'select(has("id") and .id == null) | .error.code' "$T/$1.out" | tr '\n' ' ' | sed 's/ $//'; }

INIT='{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-stdio.sh","version":"1"}}}'
INITIALIZED='{"jsonrpc":"2.0","method":"notifications/initialized"}'
META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcp-stdio.sh","version":"1"}}'

# --- JSON-RPC framing errors -----------------------------------------------------------------
deep=$(printf '[%.0s' $(seq 1 70))1$(printf ']%.0s' $(seq 1 70))
{
	echo '{"jsonrpc":"2.0","id":1,"method":"ping"'                       # cut short
	echo '{"jsonrpc":"2.0","id":2,"method":"ping"} trailing'             # trailing garbage
	printf '{"jsonrpc":"2.0","id":3,"method":"ping","x":"\xff\xfe"}\n'   # not UTF-8
	echo "$deep"                                                         # nested 70 deep
	echo '[{"jsonrpc":"2.0","id":4,"method":"ping"}]'                    # a batch
	echo '42'                                                            # not an object
	echo '{"jsonrpc":"2.0","id":null,"method":"ping"}'                   # id null
	echo '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}'                # id an object
	echo '{"jsonrpc":"2.0","id":1.5,"method":"ping"}'                    # id fractional
	echo '{"jsonrpc":"1.0","id":5,"method":"ping"}'                      # wrong jsonrpc
	echo '{"id":6,"method":"ping"}'                                      # no jsonrpc
	echo '{"jsonrpc":"2.0","id":7,"method":42}'                          # method not a string
	echo '{"jsonrpc":"2.0","id":8}'                                      # no method
	echo '{"jsonrpc":"2.0","id":9,"method":"no/such/method"}'            # unknown method
	echo '{"jsonrpc":"2.0","id":10,"method":"ping","params":[1]}'        # params an array
	echo '{"jsonrpc":"2.0","id":11,"method":"ping","params":{"_meta":5}}' # _meta not an object
	echo '{"jsonrpc":"2.0","method":"notifications/whatever"}'           # notification: no answer
	echo '{"jsonrpc":"2.0","method":"no/such/notification","params":[1]}' # bad notification: no answer
	echo '{"jsonrpc":"2.0","id":99,"result":{}}'                         # a response: ignored
	echo ''                                                              # blank line: ignored
	echo '{"jsonrpc":"2.0","id":"last","method":"ping"}'
} | session framing
is "$(cat "$T/framing.rc")" 0 "framing: the host exits with status 0 at the end of input"
ok "framing: every stdout line is a JSON-RPC 2.0 object" \
	jq -e -s 'length > 0 and all(type == "object" and .jsonrpc == "2.0")' "$T/framing.out"
is "$(null_errors framing)" "-32700 -32700 -32700 -32700 -32600 -32600 -32600 -32600 -32600" \
	"framing: cut-short, trailing garbage, bad UTF-8, too deep -> -32700; batch, non-object, bad ids -> -32600 (id null)"
is "$(resp framing 5 .error.code)" -32600 "framing: jsonrpc \"1.0\" -> -32600 with the request id"
is "$(resp framing 6 .error.code)" -32600 "framing: no jsonrpc member -> -32600 with the request id"
is "$(resp framing 7 .error.code)" -32600 "framing: method not a string -> -32600 with the request id"
is "$(resp framing 8 .error.code)" -32600 "framing: no method -> -32600 with the request id"
is "$(resp framing 9 .error.code)" -32601 "framing: unknown method -> -32601 with the request id"
like "$(resp framing 9 .error.message)" 'no/such/method' "framing: the -32601 message names the method"
is "$(resp framing 10 .error.code)" -32602 "framing: params an array -> -32602"
is "$(resp framing 11 .error.code)" -32602 "framing: params._meta not an object -> -32602"
is "$(resp framing '"last"' '.result | tojson')" '{}' "framing: ping before initialize -> {}"
is "$(wc -l <"$T/framing.out")" 17 "framing: 17 answers for 17 requests: notifications and responses got none"
unlike "$(cat "$T/framing.err")" 'AddressSanitizer|runtime error' "framing: no sanitizer report"

# --- oversize line: refused (with its id when its first bytes show it), skipped, and the next
# line served ------------------------------------------------------------------------------
{
	printf '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"'
	head -c $((4 * 1024 * 1024 + 100)) /dev/zero | tr '\0' 'x'
	echo '"}}'
	echo '{"jsonrpc":"2.0","id":2,"method":"ping"}'
	printf '{"jsonrpc":"2.0","method":"ping","params":{"pad":"'
	head -c $((4 * 1024 * 1024 + 100)) /dev/zero | tr '\0' 'x'
	echo '"},"id":3}'
	printf '{"jsonrpc":"2.0","id":"big-4","method":"ping","params":{"pad":"'
	head -c $((4 * 1024 * 1024 + 100)) /dev/zero | tr '\0' 'x'
	echo '"}}'
} | session oversize
is "$(resp oversize 1 .error.code)" -32600 "oversize: a line over 4 MiB -> -32600 with its id, read from its first bytes"
is "$(resp oversize 2 '.result | tojson')" '{}' "oversize: the line after it is served"
is "$(resp oversize '"big-4"' .error.code)" -32600 "oversize: a string id too"
is "$(null_errors oversize)" -32600 "oversize: an id after the first 64 KiB -> id null"
is "$(jq -s 'map(select(.id == 1)) | length' "$T/oversize.out")" 1 "oversize: the oversize request gets one answer"
# From a regular file the host reads 64 KiB at a time: the oversize line's end and its newline
# arrive in the same read as the next line.
{
	printf '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"'
	head -c $((4 * 1024 * 1024 + 100)) /dev/zero | tr '\0' 'x'
	echo '"}}'
	echo '{"jsonrpc":"2.0","id":2,"method":"ping"}'
} >"$T/oversize.in"
session oversize2 <"$T/oversize.in"
is "$(resp oversize2 1 .error.code)" -32600 "oversize: from a file too, a line over 4 MiB -> -32600 with its id"
is "$(resp oversize2 2 '.result | tojson')" '{}' "oversize: from a file, the line after it is served"
is "$(jq -s 'map(select(.id == 1)) | length' "$T/oversize2.out")" 1 "oversize: from a file, the oversize request gets one answer"

# --- legacy lifecycle -------------------------------------------------------------------------
{
	echo '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
	echo '{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"capabilities":{}}}'
	echo '{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
	echo "$INITIALIZED"
	echo '{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}'
	echo '{"jsonrpc":"2.0","id":5,"method":"ping"}'
	echo '{"jsonrpc":"2.0","id":6,"method":"logging/setLevel","params":{"level":"loud"}}'
	echo '{"jsonrpc":"2.0","id":7,"method":"logging/setLevel","params":{"level":"debug"}}'
	echo '{"jsonrpc":"2.0","id":8,"method":"server/discover"}'
	echo '{"jsonrpc":"2.0","id":9,"method":"resources/list"}'
	echo '{"jsonrpc":"2.0","id":10,"method":"prompts/list"}'
	echo '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12345}}'
	echo '{"jsonrpc":"2.0","id":11,"method":"tools/list"}'
} | session legacy
is "$(resp legacy 1 .error.code)" -32600 "legacy: tools/list before initialize -> -32600"
like "$(resp legacy 1 .error.message)" 'initialize' "legacy: the message says to initialize first"
is "$(resp legacy 2 .error.code)" -32602 "legacy: initialize without protocolVersion -> -32602"
is "$(resp legacy 3 .result.protocolVersion)" 2025-06-18 "legacy: a supported version (2025-06-18) is echoed"
is "$(resp legacy 3 '.result.capabilities | tojson')" '{"tools":{"listChanged":false},"logging":{}}' \
	"legacy: capabilities are tools and logging"
is "$(resp legacy 3 .result.serverInfo.name)" agentbroker-mcp "legacy: serverInfo.name"
isnt "$(resp legacy 3 '.result.instructions // ""')" '' "legacy: instructions are given"
is "$(resp legacy 3 '.result | has("resultType")')" false "legacy: results carry no resultType"
is "$(resp legacy 4 .error.code)" -32600 "legacy: a second initialize -> -32600"
is "$(resp legacy 5 '.result | tojson')" '{}' "legacy: ping -> {}"
is "$(resp legacy 6 .error.code)" -32602 "legacy: logging/setLevel with an unknown level -> -32602"
is "$(resp legacy 7 '.result | tojson')" '{}' "legacy: logging/setLevel debug -> {}"
is "$(resp legacy 8 .error.code)" -32602 "legacy: server/discover without the 2026-07-28 _meta -> -32602"
is "$(resp legacy 9 .error.code)" -32601 "legacy: resources/list (not offered) -> -32601"
is "$(resp legacy 10 .error.code)" -32601 "legacy: prompts/list (not offered) -> -32601"
is "$(resp legacy 11 '[.result.tools[].name] | join(" ")')" "echo.echo fs.list_dir fs.read_file fs.stat" \
	"legacy: tools/list shows the tools policy allows, sorted (fs.search denied, sign.* unmatched)"
is "$(resp legacy 11 '.result | has("nextCursor")')" false "legacy: one page, no nextCursor"
is "$(resp legacy 11 '[.result.tools[] | (.inputSchema.type == "object") and (.description | length > 0)] | all')" true \
	"legacy: every tool has a description and an object inputSchema"
is "$(wc -l <"$T/legacy.out")" 11 "legacy: 11 answers (notifications, an unknown cancel: none)"

# --- a second session: an unknown version is answered with our latest ------------------------
echo '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01","capabilities":{}}}' |
	session downgrade
is "$(resp downgrade 1 .result.protocolVersion)" 2025-11-25 "legacy: an unknown version gets the latest, 2025-11-25"

# --- tools/call (legacy) ----------------------------------------------------------------------
{
	echo "$INIT"
	echo "$INITIALIZED"
	echo '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"hello"}}}'
	echo '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nope.nope","arguments":{}}}'
	echo '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}'
	echo '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo.echo","arguments":[1]}}'
	echo '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":5}}}'
	echo '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"a","extra":1}}}'
	echo '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo.echo","arguments":{}}}'
	echo '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fs.search","arguments":{"path":".","pattern":"a"}}}'
	echo "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"echo.echo\",\"arguments\":{\"text\":\"$(head -c 1000 /dev/zero | tr '\0' b)\"}}}"
	echo '{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"fs.read_file","arguments":{"path":"big.txt"}}}'
	echo '{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"progress"},"_meta":{"progressToken":"p1"}}}'
} | session calls
is "$(cat "$T/calls.rc")" 0 "calls: the host exits with status 0 once the calls are answered"
is "$(resp calls 1 '.result.content[0].text')" hello "calls: echo.echo returns its text"
is "$(resp calls 1 '.result.isError // false')" false "calls: echo.echo is not an error"
is "$(resp calls 2 .error.code)" -32602 "calls: unknown tool -> -32602"
is "$(resp calls 2 .error.message)" "Unknown tool: nope.nope" "calls: the message names the unknown tool"
is "$(resp calls 3 .error.code)" -32602 "calls: no tool name -> -32602"
is "$(resp calls 4 .error.code)" -32602 "calls: arguments not an object -> -32602"
is "$(resp calls 5 .result.isError)" true "calls: text of the wrong type -> isError result"
like "$(resp calls 5 '.result.content[0].text')" 'Invalid arguments for echo\.echo: arguments\.text' \
	"calls: the message names the argument"
is "$(resp calls 6 .result.isError)" true "calls: an unexpected argument -> isError result"
like "$(resp calls 6 '.result.content[0].text')" 'extra' "calls: the message names the unexpected property"
is "$(resp calls 7 .result.isError)" true "calls: a missing required argument -> isError result"
like "$(resp calls 7 '.result.content[0].text')" 'text' "calls: the message names the missing argument"
is "$(resp calls 8 .result.isError)" true "calls: a call policy denies -> isError result"
like "$(resp calls 8 '.result.content[0].text')" '^denied by policy: tool-not-allowed' \
	"calls: the denial says 'denied by policy' and the broker's reason"
is "$(resp calls 9 .result.isError)" null "calls: a result over the tool's max_result_bytes (300) is still a result"
like "$(resp calls 9 '.result.content[-1].text')" '^\[truncated: [0-9]+ of 1000 bytes shown' \
	"calls: it is cut, with a note saying how much was shown"
like "$(resp calls 9 '.result.content[0].text')" '^b+$' "calls: what is shown is the start of the text"
ok "calls: the cut result fits in max_result_bytes" \
	test "$(resp calls 9 '.result | tojson | utf8bytelength')" -le 300
like "$(resp calls 11 '.result.content | map(.text) | join("")')" 'offset=[0-9]+' \
	"calls: fs.read_file pages itself within its max_result_bytes, saying the next offset"
ok "calls: the fs.read_file page fits in max_result_bytes (400)" \
	test "$(resp calls 11 '.result | tojson | utf8bytelength')" -le 400
is "$(resp calls 10 '.result.content[0].text')" progress "calls: a call with a progressToken is answered"
is "$(jq -s '[.[] | select(.method == "notifications/progress")] | length' "$T/calls.out")" 0 \
	"calls: echo reports no progress, so no progress notification"
is "$(wc -l <"$T/calls.out")" 12 "calls: one answer per request"

# --- pagination -------------------------------------------------------------------------------
{
	echo "$INIT"
	echo '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
	echo '{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"not-a-cursor!"}}'
	echo '{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":42}}'
	echo "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\",\"params\":{\"cursor\":\"$(printf 'v1.999999.echo.echo' | basenc --base64url | tr -d '=')\"}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\",\"params\":{\"cursor\":\"$(printf 'hello' | basenc --base64url | tr -d '=')\"}}"
} | session pages1 AGENTBROKER_MCP_PAGE_SIZE=2
is "$(resp pages1 1 '[.result.tools[].name] | join(" ")')" "echo.echo fs.list_dir" "pages: page 1 holds the first 2 tools"
cursor=$(resp pages1 1 '.result.nextCursor // ""')
isnt "$cursor" '' "pages: page 1 has a nextCursor"
is "$(resp pages1 2 .error.code)" -32602 "pages: a cursor that is not base64url -> -32602"
is "$(resp pages1 3 .error.code)" -32602 "pages: a cursor that is not a string -> -32602"
is "$(resp pages1 4 .error.code)" -32602 "pages: a cursor from another generation -> -32602"
like "$(resp pages1 4 .error.message)" 'stale' "pages: the message says the cursor is stale"
is "$(resp pages1 5 .error.code)" -32602 "pages: a cursor we did not issue -> -32602"
{
	echo "$INIT"
	echo '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
	echo "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{\"cursor\":\"$cursor\"}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":{$META,\"cursor\":\"$cursor\"}}"
} | session pages2 AGENTBROKER_MCP_PAGE_SIZE=2
is "$(resp pages2 1 .result.nextCursor)" "$cursor" "pages: the same list gives the same cursor in a new process"
is "$(resp pages2 2 '[.result.tools[].name] | join(" ")')" "fs.read_file fs.stat" "pages: page 2 holds the rest"
is "$(resp pages2 2 '.result | has("nextCursor")')" false "pages: the last page has no nextCursor"
is "$(resp pages2 3 '[.result.tools[].name] | join(" ")')" "fs.read_file fs.stat" \
	"pages: a legacy cursor pages a 2026-07-28 list too"

# --- 2026-07-28 stateless requests (no initialize at all) --------------------------------------
{
	echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{$META}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{$META}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{$META,\"name\":\"echo.echo\",\"arguments\":{\"text\":\"modern\"}}}"
	echo '{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}'
	echo '{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"1900-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}'
	echo '{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":7,"io.modelcontextprotocol/clientCapabilities":{}}}}'
	echo "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"params\":{$META}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"initialize\",\"params\":{$META,\"protocolVersion\":\"2025-11-25\"}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"logging/setLevel\",\"params\":{$META,\"level\":\"debug\"}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"resources/list\",\"params\":{$META}}"
	echo '{"jsonrpc":"2.0","id":11,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/logLevel":"chatty"}}}'
	echo "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":{$META,\"name\":\"fs.search\",\"arguments\":{\"path\":\".\",\"pattern\":\"a\"}}}"
	echo "{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"tools/call\",\"params\":{$META,\"name\":\"echo.echo\",\"arguments\":{\"text\":1}}}"
	echo '{"jsonrpc":"2.0","id":14,"method":"tools/list"}'
} | session modern
is "$(cat "$T/modern.rc")" 0 "modern: the host exits with status 0"
is "$(resp modern 1 '.result.supportedVersions | index("2026-07-28") != null')" true \
	"modern: server/discover lists 2026-07-28"
is "$(resp modern 1 '.result.supportedVersions | index("2025-11-25") != null')" true \
	"modern: server/discover lists the legacy 2025-11-25 too"
is "$(resp modern 1 '.result.capabilities | tojson')" '{"tools":{"listChanged":false},"logging":{}}' \
	"modern: server/discover's capabilities match initialize's"
is "$(resp modern 1 '[.result.resultType, .result._meta["io.modelcontextprotocol/serverInfo"].name] | join(" ")')" \
	"complete agentbroker-mcp" "modern: resultType complete and serverInfo in _meta"
is "$(resp modern 1 '[(.result.ttlMs | type), .result.cacheScope] | join(" ")')" "number public" \
	"modern: server/discover carries ttlMs and cacheScope"
is "$(resp modern 2 '[.result.tools[].name] | join(" ")')" "echo.echo fs.list_dir fs.read_file fs.stat" \
	"modern: tools/list without initialize"
is "$(resp modern 2 '[.result.resultType, .result.cacheScope, (.result.ttlMs >= 0 | tostring)] | join(" ")')" \
	"complete private true" "modern: tools/list carries resultType, cacheScope private and ttlMs"
is "$(resp modern 3 '[.result.resultType, .result.content[0].text] | join(" ")')" "complete modern" \
	"modern: tools/call answers with resultType complete"
is "$(resp modern 4 .error.code)" -32602 "modern: no clientCapabilities -> -32602"
like "$(resp modern 4 .error.message)" 'clientCapabilities' "modern: the message names the missing key"
is "$(resp modern 5 .error.code)" -32022 "modern: an unsupported version -> -32022"
is "$(resp modern 5 '.error.data.requested')" 1900-01-01 "modern: -32022 data.requested"
is "$(resp modern 5 '.error.data.supported | index("2026-07-28") != null')" true "modern: -32022 data.supported"
is "$(resp modern 6 .error.code)" -32602 "modern: a protocol version that is not a string -> -32602"
is "$(resp modern 7 .error.code)" -32601 "modern: ping is not a 2026-07-28 method -> -32601"
is "$(resp modern 8 .error.code)" -32601 "modern: initialize with the 2026-07-28 _meta -> -32601"
is "$(resp modern 9 .error.code)" -32601 "modern: logging/setLevel with the 2026-07-28 _meta -> -32601"
is "$(resp modern 10 .error.code)" -32601 "modern: resources/list -> -32601"
is "$(resp modern 11 .error.code)" -32602 "modern: an unknown logLevel -> -32602"
like "$(resp modern 12 '.result.content[0].text')" '^denied by policy: tool-not-allowed' "modern: a denied call"
is "$(resp modern 12 .result.resultType)" complete "modern: a denied call is a complete result"
is "$(resp modern 13 .result.isError)" true "modern: invalid arguments -> isError result"
is "$(resp modern 14 .error.code)" -32600 "modern: a legacy request without initialize is still refused"
is "$(wc -l <"$T/modern.out")" 14 "modern: one answer per request"

# --- many calls at once; cancellation of one ---------------------------------------------------
{
	echo "$INIT"
	for i in $(seq 1 40); do
		echo "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"tools/call\",\"params\":{\"name\":\"echo.echo\",\"arguments\":{\"text\":\"c$i\"}}}"
	done
	echo '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"never-sent"}}'
} | session many
is "$(jq -s '[.[] | select(.result.content[0].text != null)] | length' "$T/many.out")" 40 "many: 40 calls, 40 results"
is "$(jq -s '[.[] | select((.id | type) == "number") | (.result.content[0].text == "c\(.id)")] | all' "$T/many.out")" \
	true "many: each result belongs to its request"

stop_broker
done_testing
