#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-gateway.sh — the MCP gateway's overhead: the same third-party server
# (@modelcontextprotocol/server-everything, pinned in tests/package-lock.json) called
# with the same SDK client directly and through agentbroker-mcp (policy `servers:`), in one run
# of tests/bench/bench_gateway.mjs: p50/p90/p99 of sequential calls, calls/s with calls in
# flight, and the memory (VmRSS) agentbroker-mcp adds.
#
# Starts auditd and journald (scripts/start-services: full auditing), writes a temporary policy
# with the server and its echo tool allowed, starts agentbrokerd from the build directory on a
# temporary socket. Measured programs are real binaries, never libtool wrappers (lib-mcp.sh).
# Arguments go to bench_gateway.mjs, e.g. tests/bench/run-bench-gateway.sh --calls 1000.
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory). Exit status: bench_gateway.mjs's (0 measured, 1 failed); 77 when not root.
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
BENCH_NAME=run-bench-gateway
. "$srcdir/tests/bench/lib.sh"
. "$srcdir/tests/bench/lib-mcp.sh"

bench_require_root "audit records, journald"
bench_find_host
bench_require_node_sdk @modelcontextprotocol/server-everything
server=$srcdir/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js

bench_start_services
bench_watch_audit
bench_tmpdir
cat >"$tmp/policy.yaml" <<EOF
# agentbroker gateway benchmark policy (written by tests/bench/$BENCH_NAME.sh)
servers:
  every:
    command: $(command -v node)
    args: [$server, stdio]
    tools: [echo]
tools:
  - match: "every.echo"
runs: { max_calls: 0, max_duration_s: 0, max_open: 256 }
clients: { uids: [0] }
audit: { failure: deny }
EOF
mkdir -m 0755 "$tmp/modules"
bench_start_broker "$tmp/policy.yaml"
bench_say_started "; server: server-everything $(node -p "require('$srcdir/tests/node_modules/@modelcontextprotocol/server-everything/package.json').version")"

mkdir "$tmp/js"
cp "$srcdir/tests/bench/bench_gateway.mjs" "$srcdir/tests/bench/bench_util.mjs" "$tmp/js/"
ln -s "$srcdir/tests/node_modules" "$tmp/js/node_modules"
export AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock AB_MODULES=$tmp/modules AB_SERVER=$server
set +e
node "$tmp/js/bench_gateway.mjs" "$@"
status=$?
set -e
bench_stop_broker
lost=$(audit_lost)
say "audit records lost by the kernel during the run: $((lost - lost_before))"
exit "$status"
