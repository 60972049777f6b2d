#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-http.sh — the HTTP benchmark (`make bench`, after the MCP host's):
# agentbroker-mcp --http 127.0.0.1:PORT with the real broker and full auditing, and the
# official MCP TypeScript SDK's Streamable HTTP server, both serving echo.echo with a bearer
# token, side by side in one run of tests/bench/bench_http.mjs with the same load client
# (tests/bench/bench_http: C, libcurl multi, HTTP/1.1 keep-alive): sequential and 32 in flight,
# JSON and SSE answers, the 2025-11-25 (session) and 2026-07-28 (stateless) eras; calls/s,
# latency p50/p90/p99, CPU per call of every process that does the work (/proc/PID/stat), the
# ratio to the SDK server, and PASS/MISS against the targets of issue 4 (docs/http.md).
#
# Starts auditd and journald (scripts/start-services: full auditing), writes a temporary policy
# allowing echo.* (no run budget, no rate limit; clients: root), starts agentbrokerd from the
# build directory in the foreground on a temporary socket, gives the host a module directory
# holding only the build's echo.so, and takes the bearer token from `agentbrokerctl http-token`.
# Measured programs are real binaries, never libtool wrapper scripts (as in run-bench-mcp.sh).
# The SDK comes from tests/node_modules (pinned by tests/package.json and its lock file).
#
# Arguments go to bench_http.mjs, e.g.  tests/bench/run-bench-http.sh --calls 1000 --cases 2026-json
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory); BENCH_PROFILE=perf: a second run of agentbroker-mcp alone, its in-flight phases
# profiled (perf record -g of the host, its workers and the broker), and the report.
# After the run: the broker must stop cleanly, the journal must hold one tool-call-begin and one
# tool-call-end entry of the broker per call made, the kernel must have lost no audit record and
# journald must not have rate-limited; these checks are added to bench_http.mjs's JSON line,
# printed last. Exit status: bench_http.mjs's (0 measured, 1 failed, 3 target missed with
# --check-targets); 77 when not root or when the client was not built (no libcurl).
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
client=$builddir/tests/bench/bench_http
profile=${BENCH_PROFILE:-}
BENCH_NAME=run-bench-http
. "$srcdir/tests/bench/lib.sh"
. "$srcdir/tests/bench/lib-mcp.sh"

bench_require_root "audit records, journald"
if ! [ -x "$client" ]; then
	say "skipped: $client was not built (configure found no libcurl >= 7.83: install libcurl4-openssl-dev, reconfigure, make check)"
	exit 77
fi
bench_find_host
ctl=$builddir/agentbrokerctl
is_elf "$ctl" || ctl=$builddir/.libs/agentbrokerctl
is_elf "$ctl" || die "no agentbrokerctl program in $builddir"
bench_require_node_sdk
case "$profile" in
"") ;;
perf) command -v perf >/dev/null || die "BENCH_PROFILE=perf: perf not found" ;;
*) die "BENCH_PROFILE must be perf, not '$profile'" ;;
esac

# --- auditd, journald, the temporary policy, module directory and broker ------------------------
bench_start_services
bench_watch_audit
bench_tmpdir
bench_echo_setup
bench_start_broker "$tmp/policy.yaml"
bench_say_started "; client $client"

# --- the benchmark -------------------------------------------------------------------------------
bench_js_dir bench_http.mjs bench_util.mjs sdk_http_echo_server.mjs sdk_echo_tool.mjs
export AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock AB_MODULES=$tmp/modules
export AB_CTL=$ctl AB_CLIENT=$client
export AB_WATCH="broker=$broker_pid,journald=$journald_pid,auditd=$auditd_pid${kauditd_pid:+,kauditd=$kauditd_pid}"
# Its text is shown as it comes; its JSON line is held back and printed last, with the checks
# made after the run added.
set +e
node "$tmp/js/bench_http.mjs" "$@" | tee "$tmp/bench.out" | grep --line-buffered -v '^{"bench"'
status=${PIPESTATUS[0]}
set -e

if [ "$profile" = perf ] && [ "$status" -ne 1 ]; then
	echo
	say "profiling: perf record -g of agentbroker-mcp, its workers and agentbrokerd during the in-flight phases"
	node "$tmp/js/bench_http.mjs" --servers agentbroker --attach "perf record -q -g -o $tmp/perf.data -p {pids},$broker_pid" \
		"$@" >"$tmp/profile-run.txt" 2>&1 || { cat "$tmp/profile-run.txt"; die "the profiled run failed"; }
	bench_perf_report "$tmp/perf.data"
fi

# --- the broker, the journal, the audit backlog ---------------------------------------------------
say "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_finish "$tmp/bench.out" "$profile"
exit "$status"
