#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Token-less clients must not lock out a client with a valid token (issue 10, finding 5).
# The attack: 512 connections from loopback (the per-IP limit) that each sent one request
# without a token (401, kept alive) or nothing at all, and stayed: a client with a valid token
# could not connect until they timed out. Now connections that have not shown a valid token
# have a budget of their own (64; the oldest goes when a new one comes), a 401 closes its
# connection, and their headers must arrive within 3 s. Token-less denials are not a broker
# round trip each: they are counted per source and written as aggregated http-token-deny
# records (the first of an interval at once, the rest as one record with their count).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/http-lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
ATTACKERS=${ATTACKERS:-512}

require_root
require_services
require_tools jq curl
require_built "$MCP" "$WORKER"

setup_testdir
start_mcp_http "$ABS_TOP_BUILDDIR/modules/.libs/echo.so"
TOKEN=$(ctl http-token --ttl 1h)
[ -n "$TOKEN" ] || bail_out "agentbrokerctl http-token printed nothing"
M26=2026-07-28
META26='"_meta":{"io.modelcontextprotocol/protocolVersion":"'$M26'","io.modelcontextprotocol/clientCapabilities":{}}'

# call26 ID TEXT: a 2026-07-28 echo.echo call with the token (5 s at most); prints its text.
call26() {
	curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
		-H "Authorization: Bearer $TOKEN" -H "MCP-Protocol-Version: $M26" -H 'Mcp-Method: tools/call' \
		-H 'Mcp-Name: echo.echo' --data-binary \
		'{"jsonrpc":"2.0","id":'"$1"',"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"'"$2"'"},'"$META26"'}}' \
		"$URL" 2>/dev/null | jq -r '.result.content[0].text // empty' 2>/dev/null
}
is "$(call26 1 before)" before "a client with a token is served"

# The attack, held open by this shell: connections that send nothing (as a token-less client
# that never completes a request), as many as the per-IP limit.
fds=()
opened=0
for ((i = 0; i < ATTACKERS; i++)); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || continue
	fds+=("$fd")
	opened=$((opened + 1))
done
ok "the attack opened $ATTACKERS connections" [ "$opened" -ge "$ATTACKERS" ]

# While they are held (well within the old 10 s header deadline and 30 s idle timeout):
good=0
for i in 1 2 3 4 5; do
	[ "$(call26 "$((i + 1))" "during-$i")" = "during-$i" ] && good=$((good + 1))
done
is "$good" 5 "the client with a token is served while $ATTACKERS token-less connections are held"
for fd in "${fds[@]}"; do exec {fd}>&-; done

# A flood of token-less requests (no Authorization header, a Basic one, a malformed bearer).
FLOOD=200
REQ=$'GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:'"$PORT"$'\r\nAccept: text/event-stream\r\nConnection: close\r\n'
sent=0
for ((i = 0; i < FLOOD; i++)); do
	case $((i % 3)) in
	0) extra='' ;;
	1) extra=$'Authorization: Basic dXNlcjpwYXNz\r\n' ;;
	2) extra=$'Authorization: Bearer not-a-token!\r\n' ;;
	esac
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || continue
	printf '%s%s\r\n' "$REQ" "$extra" >&"$fd" && sent=$((sent + 1))
	timeout 5 cat <&"$fd" >/dev/null 2>&1
	exec {fd}>&-
done
is "$sent" "$FLOOD" "$FLOOD token-less requests sent (each answered 401)"

_audit_has_decoded() { [ "$(audit_search -i | _audit_grep "$@" | grep -c .)" -gt 0 ]; }
# Audit: the token-less denials of this source come as few records, one of them with a count.
ok "token-less denials are audited (http-token-deny, source 127.0.0.1)" \
	wait_for 20 _audit_has_decoded op=http-token-deny "source=127.0.0.1"
ok "aggregated: one record carries the count of the others" \
	wait_for 20 _audit_has_decoded op=http-token-deny "source=127.0.0.1" "denied="
# The flood may span several 10 s windows on a loaded machine: each window's record comes
# when it ends, so wait until the counts add up (or 30 s) before judging them.
_denied_sum() {
	audit_search -i | _audit_grep op=http-token-deny "source=127.0.0.1" | grep -o 'denied=[0-9]*' | cut -d= -f2 |
		awk '{ s += $1 } END { print s + 0 }'
}
_denied_all() { [ "$(_denied_sum)" -ge "$FLOOD" ]; }
wait_for 30 _denied_all
n=$(audit_search -i | _audit_grep op=http-token-deny "source=127.0.0.1" | grep -c .)
# (The source's earlier token-less requests, above, are counted in the same records.)
sum=$(_denied_sum)
ok "and there are few records ($n) for $sum denials (one per reason and 10 s window)" [ "$n" -le 20 ]
ok "their counts cover the $FLOOD denials of the flood ($sum)" [ "$sum" -ge "$FLOOD" ]
ok "by reason: no-token and token-malformed" \
	_audit_has_decoded op=http-token-deny "source=127.0.0.1" "reason=no-token"
ok "and token-malformed (refused by the host, no broker round trip)" \
	_audit_has_decoded op=http-token-deny "source=127.0.0.1" "reason=token-malformed"
is "$(call26 9 after)" after "the client is still served after the attack"
stop_mcp_http
done_testing
