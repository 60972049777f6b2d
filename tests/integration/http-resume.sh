#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SSE resumption of agentbroker-mcp --http for 2025-11-25 sessions (docs/http.md): the events
# of a tools/call's SSE stream carry ids "STREAM-N", unique in the session; a stream cut
# before its end is kept (its call goes on), and a GET with Last-Event-ID resumes it: the
# events the client missed are replayed, then the stream goes on live to the response. Each
# case checks that the events seen before and after the cut are 1..M without a gap or a
# repeat, and that the result arrived exactly once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/http-lib.sh"

require_root
require_services
require_tools jq curl
require_built "$ABS_TOP_BUILDDIR/agentbroker-mcp" "$ABS_TOP_BUILDDIR/agentbroker-worker"

setup_testdir
start_mcp_http "$ABS_TOP_BUILDDIR/tests/modules/.libs/hang.so"
TOKEN=$(ctl http-token --ttl 1h)
[ -n "$TOKEN" ] || bail_out "agentbrokerctl http-token printed nothing"
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"http-resume","version":"1"}}}'

hcurl() { curl -sS -H "Authorization: Bearer $TOKEN" -H 'Accept: application/json, text/event-stream' "$@"; }
SID=$(hcurl -D - -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$INIT" "$URL" |
	tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')
like "$SID" '^[0-9a-f]{48}$' "a 2025-11-25 session"

# complete_events FILE: the complete events of an SSE capture ("ID<TAB>DATA" lines), the
# last one dropped when the capture was cut inside it.
complete_events() {
	local f=$1
	awk -v RS= -v cut="$( [ "$(tail -c 2 "$f" | od -An -c | tr -d ' ')" = '\n\n' ] && echo 0 || echo 1)" '
		{ ev[NR] = $0 } END {
			n = NR - cut
			for (i = 1; i <= n; i++) {
				id = ""; data = ""
				split(ev[i], l, "\n")
				for (j in l) {
					if (l[j] ~ /^id: /) id = substr(l[j], 5)
					if (l[j] ~ /^data: /) data = substr(l[j], 7)
				}
				print id "\t" data
			}
		}' "$f"
}

# call_cut ID STEPS INTERVAL CUT-S: a tools/call of hang.progress as SSE, cut after CUT-S seconds.
call_cut() {
	local b='{"jsonrpc":"2.0","id":'$1',"method":"tools/call","params":{"name":"hang.progress","arguments":{"steps":'$2',"interval_ms":'$3'},"_meta":{"progressToken":"t'$1'"}}}'
	hcurl -N --max-time "$4" -X POST -H 'Content-Type: application/json' -H "Mcp-Session-Id: $SID" \
		-H 'MCP-Protocol-Version: 2025-11-25' --data-binary "$b" "$URL" >"$T/part1.$1" 2>/dev/null
	return 0
}

# resume ID LAST: GET with Last-Event-ID LAST (retried while the cut connection is not seen
# closed yet: 503); the stream goes to $T/part2.ID; prints the final status.
resume() {
	local st i
	for ((i = 0; i < 40; i++)); do
		st=$(hcurl -N --max-time 60 -o "$T/part2.$1" -w '%{http_code}' -H "Mcp-Session-Id: $SID" \
			-H "Last-Event-ID: $2" "$URL")
		[ "$st" = 503 ] || break
		sleep 0.25
	done
	echo "$st"
}

# check_resumed ID STEPS WHAT: the events of part1 and part2 together.
check_resumed() {
	local id=$1 steps=$2 what=$3 ids streams
	{ complete_events "$T/part1.$id"; complete_events "$T/part2.$id"; } >"$T/all.$id"
	streams=$(cut -f1 "$T/all.$id" | cut -d- -f1 | sort -u | wc -l)
	is "$streams" 1 "$what: every event is of one stream"
	ids=$(cut -f1 "$T/all.$id" | cut -d- -f2 | tr '\n' ' ')
	is "$ids" "$(seq -s ' ' 1 $((steps + 1))) " "$what: events 1..$((steps + 1)), none missed, none repeated"
	is "$(cut -f2 "$T/all.$id" | jq -c 'select(.method == "notifications/progress") | .params.progress' | tr '\n' ' ')" \
		"$(seq -s ' ' 1 "$steps") " "$what: progress 1..$steps"
	is "$(cut -f2 "$T/all.$id" | jq -r 'select(.id == '"$id"' and .result) | .result.content[0].text' | grep -c .)" 1 \
		"$what: the result arrived exactly once"
}

# 1. Cut while the call runs; resume at once: the missed events, then live to the result.
call_cut 11 8 300 1
n1=$(complete_events "$T/part1.11" | grep -c .)
ok "case 1: the cut stream carried some events ($n1) but not the result" [ "$n1" -ge 1 ] && [ "$n1" -le 8 ]
LAST=$(complete_events "$T/part1.11" | tail -n 1 | cut -f1)
like "$LAST" '^[0-9]+-[0-9]+$' "case 1: event ids are STREAM-N ($LAST)"
is "$(resume 11 "$LAST")" 200 "case 1: GET with Last-Event-ID resumes the stream: 200"
check_resumed 11 8 "case 1 (resumed while the call runs)"

# 2. Cut, let the call finish while nobody listens, then resume: all of it from the replay.
call_cut 12 4 200 0.5
LAST=$(complete_events "$T/part1.12" | tail -n 1 | cut -f1)
sleep 2
if [ -n "$LAST" ]; then
	is "$(resume 12 "$LAST")" 200 "case 2: resumed after the call ended: 200"
	check_resumed 12 4 "case 2 (resumed after the call ended)"
	# The stream ended: nothing left to resume.
	is "$(hcurl -o /dev/null -w '%{http_code}' -H "Mcp-Session-Id: $SID" -H "Last-Event-ID: $LAST" "$URL")" 400 \
		"case 2: the finished stream cannot be resumed again: 400"
else
	fail "case 2: the cut stream carried no complete event within 0.5 s" "$(cat "$T/part1.12")"
fi

# 3. Errors.
is "$(hcurl -o /dev/null -w '%{http_code}' -H "Mcp-Session-Id: $SID" "$URL")" 405 "GET without Last-Event-ID: 405"
is "$(hcurl -o /dev/null -w '%{http_code}' -H "Mcp-Session-Id: $SID" -H 'Last-Event-ID: 999999-1' "$URL")" 400 \
	"Last-Event-ID of no stream: 400"
is "$(hcurl -o /dev/null -w '%{http_code}' -H "Mcp-Session-Id: $SID" -H 'Last-Event-ID: garbage' "$URL")" 400 \
	"a malformed Last-Event-ID: 400"
is "$(hcurl -o /dev/null -w '%{http_code}' -H "Mcp-Session-Id: $(printf '0%.0s' {1..48})" -H 'Last-Event-ID: 1-1' "$URL")" \
	404 "Last-Event-ID in an unknown session: 404"
# A stream of another session cannot be resumed from this one.
call_cut 13 6 300 0.8
LAST=$(complete_events "$T/part1.13" | tail -n 1 | cut -f1)
SID2=$(hcurl -D - -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$INIT" "$URL" |
	tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')
is "$(hcurl -o /dev/null -w '%{http_code}' -H "Mcp-Session-Id: $SID2" -H "Last-Event-ID: $LAST" "$URL")" 400 \
	"another session's stream: 400"
ok "the host is up" kill -0 "$MCP_PID"

stop_mcp_http
done_testing
