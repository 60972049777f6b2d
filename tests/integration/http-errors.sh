#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every HTTP error of agentbroker-mcp --http (docs/http.md), with curl against a listener that
# requires bearer tokens: 401 (no, malformed, unknown, expired token; audited), 403 (Host,
# Origin), the 2025-11-25 session errors (400 missing, 404 unknown/ended, DELETE, invalid
# MCP-Protocol-Version), the 2026-07-28 errors (405 GET/DELETE, 400 + -32020 header
# mismatches, 400 + -32022 unsupported version, 404 + -32601 unknown method), 413 bodies, too
# large headers, the session cap (eviction) and idle session expiry. Then abuse, each while
# another client keeps being served: slowloris clients, a client that never reads its SSE
# stream, a 100 MiB body, 1,000 sessions opened and abandoned. The host stays up and its
# VmRSS stays within a stated bound.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/http-lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker

require_root
require_services
require_tools jq curl ss node
require_built "$MCP" "$WORKER"

setup_testdir
IDLE=4
# A small ASan quarantine (in the sanitizer build) so that freed memory does not count as held.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16 AGENTBROKER_MCP_HTTP_SESSION_IDLE=$IDLE \
	start_mcp_http "$ABS_TOP_BUILDDIR/modules/.libs/echo.so" "$ABS_TOP_BUILDDIR/tests/modules/.libs/hang.so" \
	"$ABS_TOP_BUILDDIR/tests/modules/.libs/conformance.so"
TOKEN=$(ctl http-token --ttl 1h)
[ -n "$TOKEN" ] || bail_out "agentbrokerctl http-token printed nothing"

M26=2026-07-28
META26='"_meta":{"io.modelcontextprotocol/protocolVersion":"'$M26'","io.modelcontextprotocol/clientCapabilities":{}}'
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"http-errors","version":"1"}}}'
LIST='{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

# req METHOD [CURL-ARGS...]: one request with the token; the body is in $T/body, the response
# headers in $T/hdrs; prints the status.
req() {
	local m=$1
	shift
	curl -sS -o "$T/body" -D "$T/hdrs" -w '%{http_code}' -X "$m" --max-time 30 \
		-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' "$@" "$URL"
}
authreq() { req "$@" -H "Authorization: Bearer $TOKEN"; }
hdr() { tr -d '\r' <"$T/hdrs" | sed -n "s/^$1: //Ip" | head -n 1; }
body() { cat "$T/body"; }
# new_session: initialize; prints the Mcp-Session-Id.
new_session() {
	local st
	st=$(authreq POST --data-binary "$INIT") && [ "$st" = 200 ] || return 1
	hdr Mcp-Session-Id
}
# call26 ID TEXT: a 2026-07-28 echo.echo call; prints the text it returned (empty on failure).
call26() {
	curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
		-H "Authorization: Bearer $TOKEN" -H "MCP-Protocol-Version: $M26" -H 'Mcp-Method: tools/call' \
		-H 'Mcp-Name: echo.echo' --data-binary \
		'{"jsonrpc":"2.0","id":'"$1"',"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"'"$2"'"},'"$META26"'}}' \
		"$URL" | jq -r '.result.content[0].text // empty' 2>/dev/null
}
# served N WHAT: N calls of another client all succeed (run during an abuse).
served() {
	local n=$1 what=$2 i good=0
	for ((i = 1; i <= n; i++)); do
		[ "$(call26 "$i" "served-$i")" = "served-$i" ] && good=$((good + 1))
	done
	is "$good" "$n" "another client is served during $what ($n calls)"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$MCP_PID/status"; }
alive() { kill -0 "$MCP_PID" 2>/dev/null; }

# --- 401: tokens -------------------------------------------------------------------------------
is "$(req POST --data-binary "$INIT")" 401 "no token: 401"
like "$(hdr WWW-Authenticate)" '^Bearer realm="agentbroker"' "401 carries WWW-Authenticate: Bearer"
is "$(req POST -H 'Authorization: Basic dXNlcjpwYXNz' --data-binary "$INIT")" 401 "a Basic Authorization header: 401"
is "$(req POST -H "Authorization: Bearer abh_$(printf 'A%.0s' {1..43})" --data-binary "$INIT")" 401 "an unknown token: 401"
like "$(hdr WWW-Authenticate)" 'error="invalid_token"' "the unknown token's 401 says invalid_token"
is "$(req POST -H 'Authorization: Bearer not-a-token!' --data-binary "$INIT")" 401 "a malformed token: 401"
is "$(req POST -H "Authorization: Bearer $(printf 'x%.0s' {1..300})" --data-binary "$INIT")" 401 "an overlong token: 401"
SHORT=$(ctl http-token --ttl 1s)
sleep 2.2
is "$(req POST -H "Authorization: Bearer $SHORT" --data-binary "$INIT")" 401 "an expired token: 401"
is "$(authreq POST --data-binary "$INIT")" 200 "a valid token: 200"
# Aggregated per source and reason: each is written once its interval (10 s) has passed.
ok "refusals are audited: token-unknown" wait_for 25 _audit_has op=http-token-deny token-unknown
ok "refusals are audited: token-expired" wait_for 25 _audit_has op=http-token-deny token-expired
ok "refusals are audited: token-malformed" wait_for 25 _audit_has op=http-token-deny token-malformed

# --- 403: DNS rebinding ------------------------------------------------------------------------
is "$(authreq POST -H 'Host: evil.example' --data-binary "$INIT")" 403 "a foreign Host: 403"
is "$(authreq POST -H "Host: 127.0.0.1:$((PORT + 1))" --data-binary "$INIT")" 403 "Host with another port: 403"
is "$(authreq POST -H 'Origin: http://evil.example' --data-binary "$INIT")" 403 "a foreign Origin: 403"
is "$(authreq POST -H 'Origin: null' --data-binary "$INIT")" 403 "Origin null: 403"
is "$(authreq POST -H "Origin: http://localhost:$PORT" --data-binary "$INIT")" 200 "our own Origin: 200"
is "$(req POST -H 'Host: evil.example' --data-binary "$INIT")" 403 "a foreign Host is refused before the token check"

# --- 2025-11-25 sessions ---------------------------------------------------------------------
SID=$(new_session)
like "$SID" '^[0-9a-f]{48}$' "initialize: an Mcp-Session-Id of 48 hex digits"
is "$(authreq POST --data-binary "$LIST")" 400 "no Mcp-Session-Id: 400"
is "$(jq -r .error.code "$T/body")" -32600 "no Mcp-Session-Id: JSON-RPC -32600"
is "$(authreq POST -H "Mcp-Session-Id: $(printf '0%.0s' {1..48})" --data-binary "$LIST")" 404 "an unknown session: 404"
is "$(authreq POST -H "Mcp-Session-Id: nonsense" --data-binary "$LIST")" 404 "a malformed session id: 404"
is "$(authreq POST -H "Mcp-Session-Id: $SID" -H 'MCP-Protocol-Version: 2025-11-25' --data-binary "$LIST")" 200 \
	"the session serves tools/list"
is "$(jq -r '[.result.tools[].name | select(startswith("conformance.") | not)] | sort | join(" ")' "$T/body")" \
	"echo.echo hang.forever hang.progress hang.slow" "tools/list: the tools of echo and hang"
is "$(authreq POST -H "Mcp-Session-Id: $SID" -H 'MCP-Protocol-Version: bogus' --data-binary "$LIST")" 400 \
	"an invalid MCP-Protocol-Version: 400"
is "$(authreq POST -H "Mcp-Session-Id: $SID" -H 'MCP-Protocol-Version: 2024-01-01' --data-binary "$LIST")" 400 \
	"an unsupported MCP-Protocol-Version: 400"
is "$(authreq POST -H "Mcp-Session-Id: $SID" --data-binary '{"jsonrpc":"2.0","method":"notifications/initialized"}')" 202 \
	"a notification: 202"
is "$(authreq POST -H "Mcp-Session-Id: $SID" --data-binary "$INIT")" 400 "initialize again in a session: 400"
is "$(authreq DELETE)" 400 "DELETE without Mcp-Session-Id: 400"
is "$(authreq DELETE -H "Mcp-Session-Id: $SID")" 200 "DELETE ends the session: 200"
is "$(authreq POST -H "Mcp-Session-Id: $SID" --data-binary "$LIST")" 404 "the ended session: 404"
is "$(authreq DELETE -H "Mcp-Session-Id: $SID")" 404 "DELETE of the ended session: 404"
is "$(authreq PUT -H "Mcp-Session-Id: $SID")" 405 "PUT: 405"
like "$(hdr Allow)" POST "405 carries Allow"

# Idle expiry: AGENTBROKER_MCP_HTTP_SESSION_IDLE=4 s here.
SID=$(new_session)
is "$(authreq POST -H "Mcp-Session-Id: $SID" --data-binary "$LIST")" 200 "a fresh session answers"
sleep $((IDLE + 3))
is "$(authreq POST -H "Mcp-Session-Id: $SID" --data-binary "$LIST")" 404 "a session unused for ${IDLE}+ s has ended: 404"

# --- 2026-07-28 ----------------------------------------------------------------------------------
h26=(-H "MCP-Protocol-Version: $M26")
is "$(authreq GET "${h26[@]}")" 405 "2026-07-28 GET: 405"
is "$(authreq DELETE "${h26[@]}")" 405 "2026-07-28 DELETE: 405"
CALL='{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"x"},'$META26'}}'
is "$(authreq POST "${h26[@]}" -H 'Mcp-Method: tools/list' -H 'Mcp-Name: echo.echo' --data-binary "$CALL")" 400 \
	"Mcp-Method mismatch: 400"
is "$(jq -r '[.error.code, .id] | join(" ")' "$T/body")" "-32020 7" "Mcp-Method mismatch: -32020 with the request's id"
is "$(authreq POST "${h26[@]}" -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo.other' --data-binary "$CALL")" 400 \
	"Mcp-Name mismatch: 400"
is "$(jq -r .error.code "$T/body")" -32020 "Mcp-Name mismatch: -32020"
is "$(authreq POST "${h26[@]}" -H 'Mcp-Method: tools/call' --data-binary "$CALL")" 400 "no Mcp-Name: 400"
is "$(jq -r .error.code "$T/body")" -32020 "no Mcp-Name: -32020"
is "$(authreq POST "${h26[@]}" -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo.echo' --data-binary "$CALL")" 200 \
	"matching headers: 200"
is "$(sed -n 's/^data: //p' "$T/body" | tail -n 1 | jq -r '.result.content[0].text')" x \
	"matching headers: the call's result (the last event of its SSE stream)"
is "$(authreq POST -H 'MCP-Protocol-Version: 2099-01-01' -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo.echo' \
	--data-binary "${CALL//$M26/2099-01-01}")" 400 "an unsupported version: 400"
is "$(jq -r '[.error.code, .error.data.requested, (.error.data.supported | index("2026-07-28") != null)] | join(" ")' "$T/body")" \
	"-32022 2099-01-01 true" "an unsupported version: -32022 with data.requested and data.supported"
is "$(authreq POST "${h26[@]}" -H 'Mcp-Method: no/such' --data-binary '{"jsonrpc":"2.0","id":9,"method":"no/such","params":{'"$META26"'}}')" \
	404 "an unknown method: 404"
is "$(jq -r .error.code "$T/body")" -32601 "an unknown method: -32601"

# --- a tool needing a client capability (-32021) ------------------------------------------------
NEED='{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"conformance.test_missing_capability","arguments":{}}}'
SID=$(new_session)
# last_msg: the response in $T/body: a JSON body, or the last event of an SSE stream.
last_msg() { if grep -q '^data: ' "$T/body"; then sed -n 's/^data: //p' "$T/body" | tail -n 1; else body; fi; }
is "$(authreq POST -H "Mcp-Session-Id: $SID" --data-binary "$NEED")" 200 \
	"2025 session without sampling: the error is a 200 JSON-RPC answer"
is "$(last_msg | jq -c '[.error.code, .error.data.requiredCapabilities]')" '[-32021,{"sampling":{}}]' \
	"2025 session without sampling: -32021, requiredCapabilities {sampling: {}}"
INIT_S='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"http-errors","version":"1"}}}'
st=$(authreq POST --data-binary "$INIT_S")
SSID=$(hdr Mcp-Session-Id)
is "$st" 200 "a 2025 session declaring sampling"
authreq POST -H "Mcp-Session-Id: $SSID" --data-binary "$NEED" >/dev/null
is "$(last_msg | jq -r '.result.content[0].text')" "The client declared sampling" \
	"2025 session with sampling: the tool runs"
is "$(authreq POST "${h26[@]}" -H 'Mcp-Method: tools/call' -H 'Mcp-Name: conformance.test_missing_capability' \
	--data-binary '{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"conformance.test_missing_capability","arguments":{},'"$META26"'}}')" \
	400 "2026-07-28 without sampling: 400"
is "$(jq -r .error.code "$T/body")" -32021 "2026-07-28 without sampling: -32021"

# --- size limits ---------------------------------------------------------------------------------
head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$T/5mib"
is "$(authreq POST --data-binary @"$T/5mib")" 413 "a 5 MiB body (Content-Length): 413"
is "$(authreq POST -H 'Transfer-Encoding: chunked' --data-binary @"$T/5mib")" 413 "a 5 MiB chunked body: 413"
BIGH=$(head -c $((40 * 1024)) /dev/zero | tr '\0' 'h')
is "$(authreq POST -H "X-Big: $BIGH" --data-binary "$INIT")" 431 "40 KiB of headers: 431"
BIGH=$BIGH$BIGH$BIGH
is "$(authreq POST -H "X-Big: $BIGH" --data-binary "$INIT" 2>/dev/null)" 431 \
	"120 KiB of headers (past MHD's 64 KiB connection memory): 431 from MHD"
is "$(authreq POST --data-binary "$INIT")" 200 "the listener still serves after the size errors"

# --- caps -------------------------------------------------------------------------------------------
# 256 tools/call in flight for the shared 2026-07-28 server: 256 hang.slow calls on raw
# connections (never read), then the 257th is refused with an isError result.
slow_body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hang.slow","arguments":{"ms":120000},'$META26'}}'
slow_fds=()
for ((i = 0; i < 256; i++)); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || break
	printf 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nMCP-Protocol-Version: %s\r\nMcp-Method: tools/call\r\nMcp-Name: hang.slow\r\nContent-Length: %s\r\n\r\n%s' \
		"$PORT" "$TOKEN" "$M26" "${#slow_body}" "$slow_body" >&"$fd"
	slow_fds+=("$fd")
done
is "${#slow_fds[@]}" 256 "256 slow calls sent on 256 connections"
call26_raw() {
	curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
		-H "Authorization: Bearer $TOKEN" -H "MCP-Protocol-Version: $M26" -H 'Mcp-Method: tools/call' \
		-H 'Mcp-Name: echo.echo' --data-binary \
		'{"jsonrpc":"2.0","id":257,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"one more"},'"$META26"'}}' \
		"$URL" >"$T/last26"
	grep -q "too many calls in flight" "$T/last26"
}
ok "the 257th call in flight is refused: \"too many calls in flight\"" wait_for 20 call26_raw
is "$(jq -r .result.isError "$T/last26")" true "the refusal is an isError result"
for fd in "${slow_fds[@]}"; do exec {fd}>&-; done
_served_again() { [ "$(call26 258 again)" = again ]; }
ok "closing the 256 streams cancels their calls: calls are served again" wait_for 30 _served_again
ok "the host is up after the in-flight cap" alive

# 512 idle connections (the per-IP limit): none has shown a token, so only the newest 64 are
# kept (MCP_HTTP_UNAUTH_MAX) and a client with a token still gets in (tests/integration/
# http-lockout.sh); idle ones are cut after 3 s.
conn_fds=()
for ((i = 0; i < 512; i++)); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || break
	conn_fds+=("$fd")
done
is "${#conn_fds[@]}" 512 "512 idle connections opened"
sleep 0.5
is "$(authreq POST --data-binary "$INIT" 2>/dev/null)" 200 "a client with a token is served past 512 idle connections from 127.0.0.1"
for fd in "${conn_fds[@]}"; do exec {fd}>&-; done
_init_ok() { [ "$(authreq POST --data-binary "$INIT" 2>/dev/null)" = 200 ]; }
ok "once they are closed, clients are served again" wait_for 20 _init_ok

# --- abuse, each while another client is served --------------------------------------------------
served 3 "warm-up"
RSS0=$(rss_kib)
diag "VmRSS before the abuse: $RSS0 KiB"

# Slowloris: 8 connections trickle their request headers byte by byte, 0.3 s apart.
slowloris() {
	trap '' PIPE
	local req="POST /mcp HTTP/1.1"$'\r\n'"Host: 127.0.0.1:$PORT"$'\r\n'"Content-Type: application/json"$'\r\n'"X-Slow: $(printf 'z%.0s' {1..200})"$'\r\n' i
	exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
	for ((i = 0; i < ${#req}; i++)); do
		printf '%s' "${req:i:1}" >&3 2>/dev/null || { echo cut >"$T/slow.$1"; return 0; }
		sleep 0.3
	done
	echo finished >"$T/slow.$1"
}
slow_pids=()
for i in 1 2 3 4 5 6 7 8; do
	slowloris "$i" &
	slow_pids+=($!)
done
sleep 1
served 5 "8 slowloris connections"
for p in "${slow_pids[@]}"; do wait "$p"; done
is "$(cat "$T"/slow.* | sort | uniq -c | awk '{ print $1, $2 }')" "8 cut" \
	"the server cut all 8 slowloris connections (headers not complete within 3 s)"
ok "the host is up after slowloris" alive

# A client that never reads its SSE stream: a tools/call of hang.progress with 1,000 progress
# events, requested as SSE on a raw connection that is never read.
noread() {
	local b='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hang.progress","arguments":{"steps":1000,"interval_ms":1},"_meta":{"progressToken":"p"}}}'
	exec 4<>"/dev/tcp/127.0.0.1/$PORT" || return 1
	printf 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nMcp-Session-Id: %s\r\nContent-Length: %s\r\n\r\n%s' \
		"$PORT" "$TOKEN" "$1" "${#b}" "$b" >&4
	sleep 8
	exec 4<&-
}
NSID=$(new_session)
noread "$NSID" &
nr_pid=$!
sleep 1
served 5 "a client that never reads its SSE stream"
wait "$nr_pid"
ok "the host is up after the non-reading client" alive

# A 100 MiB body, sent as fast as curl can (chunked: no Content-Length to refuse it by).
head -c $((100 * 1024 * 1024)) /dev/zero >"$T/100mib"
curl -sS -o /dev/null -w '%{http_code}' --max-time 120 -X POST -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$T/100mib" "$URL" \
	>"$T/big.status" 2>"$T/big.err" &
big_pid=$!
served 5 "a 100 MiB body"
wait "$big_pid"
st=$(cat "$T/big.status")
is "$st" 413 "the 100 MiB body was read, dropped and refused with 413" "$(cat "$T/big.err")"
rm -f "$T/100mib"
ok "the host is up after the 100 MiB body" alive

# 1,000 sessions opened and abandoned (the table holds 256: the idlest are evicted).
FIRST=$(new_session)
(
	for i in $(seq 1 1000); do
		curl -sS -o /dev/null -w '%{http_code}\n' --max-time 30 -X POST -H "Authorization: Bearer $TOKEN" \
			-H 'Content-Type: application/json' -H 'Accept: application/json' --data-binary "$INIT" "$URL"
	done >"$T/sessions.status"
) &
sess_pid=$!
served 5 "1,000 sessions being opened"
wait "$sess_pid"
is "$(sort "$T/sessions.status" | uniq -c | awk '{ print $1, $2 }')" "1000 200" "all 1,000 initialize requests got 200"
is "$(authreq POST -H "Mcp-Session-Id: $FIRST" --data-binary "$LIST")" 404 "the first, idlest session was evicted: 404"
LAST=$(new_session)
is "$(authreq POST -H "Mcp-Session-Id: $LAST" --data-binary "$LIST")" 200 "a new session still works"
ok "the host is up after 1,000 sessions" alive

sleep $((IDLE + 3))                # the abandoned sessions expire
served 3 "the end"
RSS1=$(rss_kib)
diag "VmRSS after the abuse: $RSS1 KiB (before: $RSS0 KiB)"
# Bound: 64 MiB more than before (a 100 MiB body, 1,000 sessions and an unread stream must not
# be held; the body limit is 4 MiB and the unread-stream limit 8 MiB).
ok "VmRSS grew by less than 64 MiB ($RSS0 -> $RSS1 KiB)" [ $((RSS1 - RSS0)) -lt $((64 * 1024)) ]

stop_mcp_http
done_testing
