#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Redaction fails closed (issue 10, finding 3). A leaky test module (tests/modules/leak.c) tries
# every way around the host's redaction, through agentbroker-mcp, the real broker, auditd and
# journald:
#   - the JSON of structuredContent in a text block with the secret after it (the duplicate
#     check parsed leniently and left the block as the module wrote it);
#   - the secret in a resource_link URI, in _meta, in annotations, in a progress message and in
#     a log line (which the host wrote to its stderr, the journal under systemd);
#   - made-up "redact" frames to fill the table before the real secret is read;
#   - more secrets than the table holds (past it a secret went out with a warning);
#   - a secret read in one HTTP session and returned by the same worker in another session.
# No response, notification or host log line may carry a secret value; each call-end record says
# how many redactions were made and of which secrets.
. "$(dirname "$0")/lib.sh"

TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
N_MANY=66   # secrets read by one worker: more than its table holds (64)

require_root
require_services
require_tools jq curl
require_built "$MCP" "$WORKER"
[ -f "$TMODDIR/leak.so" ] || unmet "$TMODDIR/leak.so is not built (make check builds the test modules)"

setup_testdir
mkdir -m 0755 "$T/modules"
install -m 0755 "$TMODDIR/leak.so" "$T/modules/"

# Printable values with characters that base64 and URL encoding change.
LEAK_VALUE="leak+$(unique_id)/v?a=l&ue"
FRESH_VALUE="fresh+$(unique_id)/v?a=l&ue"
XS_VALUE="xs+$(unique_id)/v?a=l&ue"
{
	echo 'secrets:'
	echo '  leaky: { env: AB_TEST_LEAKY }'
	echo '  fresh: { env: AB_TEST_FRESH }'
	echo '  xsession: { env: AB_TEST_XS }'
	for ((i = 1; i <= N_MANY; i++)); do printf '  s%02d: { env: AB_TEST_S%02d }\n' "$i" "$i"; done
	echo 'tools:'
	echo '  - match: "leak.read"'
	echo '    secrets:'
	for ((i = 1; i <= N_MANY; i++)); do printf '      s%02d: [read]\n' "$i"; done
	echo '  - match: "leak.*"'
	echo '    secrets: { leaky: [read], fresh: [read], xsession: [read] }'
	echo 'clients: { uids: [0] }'
} >"$T/policy.yaml"
declare -A MANY
for ((i = 1; i <= N_MANY; i++)); do
	v="many$i+$(unique_id)/x"
	MANY[$i]=$v
	export "$(printf 'AB_TEST_S%02d' "$i")=$v"
done
AB_TEST_LEAKY=$LEAK_VALUE AB_TEST_FRESH=$FRESH_VALUE AB_TEST_XS=$XS_VALUE start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

mcp_start
mcp_init redact-leaks.sh
request 1 logging/setLevel '{"level":"debug"}' >/dev/null

# leaks TEXT VALUE: whether TEXT holds VALUE raw, URL-encoded or base64-encoded.
leaks() {
	local b64 url
	b64=$(printf '%s' "$2" | base64 -w0)
	url=$(jq -rn --arg v "$2" '$v | @uri')
	grep -qF -e "$2" -e "$b64" -e "$url" <<<"$1"
}

# --- the duplicate of structuredContent with text after it ------------------------------------
r=$(call 10 leak.trailing '{"secret":"leaky"}')
ok "leak.trailing: the secret after structuredContent's JSON does not reach the client" not leaks "$r" "$LEAK_VALUE"
is "$(jq -r '.result.content[0].text' <<<"$r")" '{"a":1} [REDACTED:leaky]' "leak.trailing: the text block is redacted"

# --- resource_link URI, _meta, annotations ---------------------------------------------------
r=$(call 11 leak.extras '{"secret":"leaky"}')
is "$(jq -r '.result.content[0].type' <<<"$r")" resource_link "leak.extras: a resource_link block"
ok "leak.extras: no form of the secret in the URI, _meta or annotations" not leaks "$r" "$LEAK_VALUE"
is "$(jq -r '.result.content[0] | [.uri, ._meta.key, .annotations.audience[0]] | join(" ")' <<<"$r")" \
	"https://api.example.invalid/?key=[REDACTED:leaky] [REDACTED:leaky] [REDACTED:leaky]" \
	"leak.extras: URI, _meta and annotations are [REDACTED:leaky]"

# --- progress and log messages ----------------------------------------------------------------
: >"$T/mcp.out"
r=$(request 12 tools/call '{"name":"leak.progress","arguments":{"secret":"leaky"},"_meta":{"progressToken":"p12"}}')
is "$(jq -r '.result.content[0].text' <<<"$r")" progressed "leak.progress answers"
prog=$(grep '"notifications/progress"' "$T/mcp.out")
is "$(jq -r '.params.message' <<<"$prog")" "halfway with [REDACTED:leaky]" "leak.progress: the progress message is redacted"
ok "leak.progress: no form of the secret in the notification" not leaks "$prog" "$LEAK_VALUE"

: >"$T/mcp.out"
r=$(call 13 leak.log '{"secret":"leaky"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" logged "leak.log answers"
msg=$(grep '"notifications/message"' "$T/mcp.out")
is "$(jq -r '.params.data' <<<"$msg")" "the key is [REDACTED:leaky]" "leak.log: the MCP log message is redacted"
like "$(cat "$T/mcp.err")" "module leak: the key is \[REDACTED:leaky\]" "leak.log: the host's own log line is redacted"
ok "leak.log: no form of the secret in the host's log (its stderr: the journal under systemd)" \
	not leaks "$(cat "$T/mcp.err")" "$LEAK_VALUE"

r=$(call 14 leak.stderr '{"secret":"leaky"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" written "leak.stderr answers"
wait_for 10 grep -q 'stderr: debug: the key is' "$T/mcp.err"
like "$(cat "$T/mcp.err")" "module leak: stderr: debug: the key is \[REDACTED:leaky\]" \
	"leak.stderr: the worker's stderr is logged by the host, redacted"
like "$(cat "$T/mcp.err")" "module leak: a line of more than 4096 bytes on a worker's stderr was dropped" \
	"leak.stderr: a line too long to log whole is dropped, not cut"
ok "leak.stderr: no form of the secret in the host's log" not leaks "$(cat "$T/mcp.err")" "$LEAK_VALUE"

# --- made-up redact frames --------------------------------------------------------------------
r=$(call 20 leak.fake '{"secret":"fresh","count":64}')
ok "leak.fake: the secret read after 64 made-up entries does not reach the client" not leaks "$r" "$FRESH_VALUE"
is "$(jq -r '.result.isError' <<<"$r")" true "leak.fake: the call ends as an error"
like "$(jq -r '.result.content[0].text' <<<"$r")" 'invalid message' "leak.fake: its worker was stopped for the made-up frame"
like "$(cat "$T/mcp.err")" 'killing worker [0-9]+: a redact message that is not a secret its call read' \
	"leak.fake: the host logs why it killed the worker"
r=$(call 21 leak.fake '{"secret":"fresh","count":0}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "after 0 made-up entries: [REDACTED:fresh]" \
	"leak.fake without made-up frames: the real value is vouched for and redacted"

# --- more secrets than the table holds ------------------------------------------------------
leaked=0 refused=0 after_ok=0
for ((i = 1; i <= N_MANY; i++)); do
	r=$(call $((100 + i)) leak.read "$(printf '{"secret":"s%02d"}' "$i")")
	leaks "$r" "${MANY[$i]}" && leaked=$((leaked + 1))
	if jq -e '.result.isError == true' <<<"$r" >/dev/null; then
		grep -qF 'cannot be remembered for redaction' <<<"$r" && refused=$((refused + 1))
	elif [ "$refused" -gt 0 ]; then
		after_ok=$((after_ok + 1))
	fi
done
is "$leaked" 0 "$N_MANY secrets read by one worker: none reaches the client"
ok "a secret the worker's full table cannot remember ends its call as an error ($refused)" test "$refused" -ge 1
ok "calls after that run on a fresh worker and are redacted ($after_ok)" test "$after_ok" -ge 1
like "$(cat "$T/mcp.err")" "killing worker [0-9]+: the secret 's[0-9]+' it read cannot be remembered for redaction" \
	"the host logs the worker it restarted"

# --- audit: redactions per call -----------------------------------------------------------------
rec=$(audit_find tool-call-end "$RUN" 'tool="leak.trailing"')
is "$(audit_field "$rec" redactions)" 1 "tool-call-end of leak.trailing: redactions=1"
is "$(audit_field "$rec" redacted)" leaky "tool-call-end of leak.trailing: redacted=leaky"
rec=$(audit_find tool-call-end "$RUN" 'tool="leak.extras"')
is "$(audit_field "$rec" redactions)" 3 "tool-call-end of leak.extras: redactions=3"
ok "the journal entry of a call-end carries AGENTBROKER_REDACTIONS" \
	journal_find AGENTBROKER_RUN="$RUN" AGENTBROKER_TOOL=leak.trailing AGENTBROKER_REDACTIONS=1

ok "the host's log holds no secret value" not leaks "$(cat "$T/mcp.err")" "$FRESH_VALUE"
mcp_stop
is "$MCP_RC" 0 "agentbroker-mcp exits 0"

# --- one worker, two HTTP sessions -------------------------------------------------------------
PORT=$((20000 + RANDOM % 20000))
URL="http://127.0.0.1:$PORT/mcp"
AGENTBROKER_WORKER=$WORKER "$MCP" --broker "$SOCK" --modules "$T/modules" --http "127.0.0.1:$PORT" \
	>"$T/http.out" 2>"$T/http.err" &
HTTP_PID=$!
add_cleanup sh -c "kill $HTTP_PID 2>/dev/null"
wait_for 10 grep -q "serving MCP over Streamable HTTP" "$T/http.err" ||
	bail_out "agentbroker-mcp --http did not start: $(tail -n 5 "$T/http.err")"
TOKEN=$(ctl http-token --ttl 1h)
# post SESSION BODY: one JSON-RPC request (SESSION empty for initialize); the body on stdout,
# the response headers in $T/hdrs.
post() {
	local sid=()
	[ -n "$1" ] && sid=(-H "Mcp-Session-Id: $1" -H 'MCP-Protocol-Version: 2025-11-25')
	curl -sS --max-time 30 -D "$T/hdrs" -X POST -H 'Content-Type: application/json' \
		-H 'Accept: application/json, text/event-stream' -H "Authorization: Bearer $TOKEN" "${sid[@]}" \
		--data-binary "$2" "$URL" | sed -n 's/^data: //; /^{/p'
}
session() {
	post '' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"'"$1"'","version":"1"}}}' >/dev/null
	tr -d '\r' <"$T/hdrs" | sed -n 's/^Mcp-Session-Id: //Ip' | head -n 1
}
A=$(session alice)
B=$(session bob)
isnt "$A" "$B" "two HTTP sessions ($A, $B)"
HTTP_RUN=$(sed -n 's/.*info: run \([^ ]*\).*/\1/p' "$T/http.err" | head -n 1)
ok "each HTTP session's MCP client is audited: run-client alice" audit_find run-client "$HTTP_RUN" 'client="alice"'
ok "... and run-client bob, in the same run" audit_find run-client "$HTTP_RUN" 'client="bob"'
r=$(post "$A" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"leak.stash","arguments":{"secret":"xsession"}}}')
is "$(jq -r '.result.content[0].text' <<<"$r")" stashed "session A: leak.stash read the secret"
r=$(post "$B" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"leak.recall","arguments":{}}}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "recalled: [REDACTED:xsession]" \
	"session B: the same worker's copy of session A's secret is redacted"
ok "session B: no form of session A's secret" not leaks "$r" "$XS_VALUE"
kill "$HTTP_PID"
wait "$HTTP_PID" 2>/dev/null
ok "the HTTP host's log holds no secret value" not leaks "$(cat "$T/http.err")" "$XS_VALUE"

done_testing
