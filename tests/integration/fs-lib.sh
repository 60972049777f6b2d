# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2154 # T and SOCK are set by lib.sh
# tests/integration/fs-lib.sh — sourced by the fs module's tests (fs-escape.sh, fs-context.sh)
# after lib.sh: one agentbroker-mcp session driven with raw JSON-RPC lines over stdio.
#
#   fs_require TOOL...          # MCP, WORKER, FS_SO; root, services, TOOLs, the build
#   fs_host_start MODULE_DIR    # starts the host (a coproc) on $SOCK; stopped at exit
#   rpc METHOD PARAMS_JSON      # RESP: the response
#   call TOOL ARGS_JSON         # tools/call
#   r JQ; text; sc JQ           # parts of RESP

# fs_require TOOL...: the programs under test (MCP, WORKER: the real worker program, not the
# libtool wrapper; FS_SO), and what the test needs: root, auditd/journald, TOOLs, the build.
fs_require() {
	MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
	WORKER=$ABS_TOP_BUILDDIR/tests/bin/agentbroker-worker
	FS_SO=$ABS_TOP_BUILDDIR/modules/.libs/fs.so
	require_root
	require_services
	require_tools "$@"
	require_built "$MCP" "$WORKER"
	[ -f "$FS_SO" ] || unmet "$FS_SO is not built"
}

# fs_host_start MODULE_DIR: agentbroker-mcp serving the modules of MODULE_DIR, its stderr in
# $T/host.err.
fs_host_start() {
	local moddir=$1
	coproc HOST { AGENTBROKER_WORKER=$WORKER exec "$MCP" --broker "$SOCK" --modules "$moddir" 2>"$T/host.err"; }
	# shellcheck disable=SC2153 # HOST_PID is set by coproc
	host_pid=$HOST_PID HOST_IN=${HOST[1]} HOST_OUT=${HOST[0]}  # bash unsets HOST_* when it exits
	add_cleanup stop_host
	_id=0 RESP=''
}
stop_host() { kill "$host_pid" 2>/dev/null || true; }

# rpc METHOD PARAMS_JSON: send a request; RESP is its response (other messages are skipped).
rpc() {
	local line
	_id=$((_id + 1))
	RESP=''
	jq -cn --arg m "$1" --argjson p "$2" --argjson id "$_id" '{jsonrpc: "2.0", id: $id, method: $m, params: $p}' \
		>&"$HOST_IN" || return 1
	while IFS= read -r -t 60 line <&"$HOST_OUT"; do
		if jq -e --argjson id "$_id" 'has("id") and .id == $id and (has("method") | not)' <<<"$line" >/dev/null 2>&1; then
			RESP=$line
			return 0
		fi
	done
	diag "no response to request $_id ($1); host stderr:" "$(tail -n 20 "$T/host.err")"
	return 1
}
# call TOOL ARGS_JSON: tools/call; RESP is the response.
call() { rpc tools/call "$(jq -cn --arg n "$1" --argjson a "$2" '{name: $n, arguments: $a}')"; }
# r JQ: jq -r JQ of the last response.
r() { jq -r "$1" <<<"$RESP"; }
# text: the text blocks of the last result, joined.
text() { jq -r '[.result.content[]? | select(.type == "text") | .text] | join("")' <<<"$RESP"; }
# sc JQ: jq -r JQ of the last result's structuredContent.
sc() { jq -r ".result.structuredContent | $1" <<<"$RESP"; }
