# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/integration/http-lib.sh — sourced (after lib.sh) by the tests of agentbroker-mcp --http.
#
# start_mcp_http MODULE-FILE... [-- MCP-ARGS...]: copy the module files into $T/mods, start
# the broker with a policy allowing their tools, and agentbroker-mcp --http on a random
# loopback port with MCP-ARGS (its environment is the caller's: prefix variables). Sets
# MCP_PID, PORT and URL; bails out when the listener does not come up.
start_mcp_http() {
	local mods=() f
	while [ $# -gt 0 ] && [ "$1" != -- ]; do mods+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	mkdir -p "$T/mods"
	{
		echo 'tools:'
		for f in "${mods[@]}"; do
			cp "$f" "$T/mods/"
			echo "  - match: \"$(basename "$f" .so).*\""
		done
		echo 'clients: { uids: [0] }'
	} >"$T/policy.yaml"
	chmod 0755 "$T/mods"/*.so
	start_broker "$T/policy.yaml"
	PORT=$((20000 + RANDOM % 20000))
	AGENTBROKER_WORKER="$ABS_TOP_BUILDDIR/agentbroker-worker" "$ABS_TOP_BUILDDIR/agentbroker-mcp" --broker "$SOCK" \
		--modules "$T/mods" --http "127.0.0.1:$PORT" "$@" >"$T/mcp.out" 2>"$T/mcp.err" &
	MCP_PID=$!
	add_cleanup sh -c "kill $MCP_PID 2>/dev/null"
	URL="http://127.0.0.1:$PORT/mcp"
	wait_for 10 grep -q "serving MCP over Streamable HTTP" "$T/mcp.err" ||
		bail_out "agentbroker-mcp did not start: $(tail -n 5 "$T/mcp.err")"
}

# stop_mcp_http: stop agentbroker-mcp (before the broker stops at exit); one TAP check: it
# exited with status 0 and wrote no sanitizer report (the ASan/UBSan build).
stop_mcp_http() {
	local rc
	kill "$MCP_PID" 2>/dev/null
	wait "$MCP_PID" 2>/dev/null
	rc=$?
	if [ "$rc" -eq 0 ] && ! grep -q 'Sanitizer\|runtime error' "$T/mcp.err"; then
		pass "agentbroker-mcp stopped cleanly"
	else
		fail "agentbroker-mcp stopped cleanly" "exit status $rc" "$(grep -A 20 'Sanitizer\|runtime error' "$T/mcp.err" | head -n 40)"
	fi
}
