#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-mcp.sh — the MCP host benchmark (`make bench`, after the broker's):
# agentbroker-mcp and the official MCP TypeScript SDK's own stdio server, both serving
# echo.echo, side by side in one run of tests/bench/bench_mcp.mjs with the same client code
# (the SDK's Client, and a minimal raw JSON-lines client).
#
# Starts auditd and journald (scripts/start-services: full auditing), writes a temporary policy
# allowing echo.* (no run budget, no rate limit; clients: root), starts agentbrokerd from the
# build directory in the foreground on a temporary socket, and gives the host a module directory
# holding only the build's echo.so. Measured programs, real binaries, never libtool wrapper
# scripts (a wrapper adds a shell start to the cold start and to every worker spawn):
#   host    <build>/agentbroker-mcp when it is an ELF file, else <build>/.libs/agentbroker-mcp
#           with LD_LIBRARY_PATH=<build>/.libs
#   worker  <build>/tests/bench/agentbroker-worker: worker/agentbroker-worker.c linked with
#           -no-install (the build's library path built in, no wrapper), else
#           <build>/agentbroker-worker when that is an ELF file
# The SDK comes from tests/node_modules (pinned by tests/package.json and its lock file;
# scripts/setup installs it with npm ci in tests/).
#
# Arguments go to bench_mcp.mjs, e.g.  tests/bench/run-bench-mcp.sh --spawns 10 --calls 1000
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory); BENCH_PROFILE=perf|strace: after the measured run, a second run of the in-flight
# phase with the raw client against agentbroker-mcp alone, profiled (perf record -g of the host,
# its workers and the broker, or strace -c -f of the host and its workers), and its report.
# Before the run, bench_broker --mode floor measures the floor of a sequential call (printed
# after the run). After the run: the broker must stop cleanly, the journal must hold one tool-call-begin and one
# tool-call-end entry of the broker per call made, the kernel must have lost no audit record and
# journald must not have rate-limited; these checks are added to bench_mcp.mjs's JSON line, which
# is printed last. Exit status: bench_mcp.mjs's (0 measured, 1 failed, 3 target missed with
# --check-targets); 77 when not root.
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
profile=${BENCH_PROFILE:-}
BENCH_NAME=run-bench-mcp
. "$srcdir/tests/bench/lib.sh"
. "$srcdir/tests/bench/lib-mcp.sh"

bench_require_root "audit records, journald"
bench_find_host
bench_require_node_sdk
case "$profile" in
"") ;;
perf|strace) command -v "$profile" >/dev/null || die "BENCH_PROFILE=$profile: $profile not found" ;;
*) die "BENCH_PROFILE must be perf or strace, not '$profile'" ;;
esac

# --- auditd, journald, the temporary policy, module directory and broker ------------------------
bench_start_services
bench_watch_audit
bench_tmpdir
bench_echo_setup
bench_start_broker "$tmp/policy.yaml"
bench_say_started "($(file -b "$worker" | cut -d, -f1-2)); modules: echo.so"

# --- the floor ---------------------------------------------------------------------------------
# What a sequential call cannot beat on this machine, measured now by bench_broker --mode floor
# (bare SOCK_SEQPACKET round trips between two processes, unpinned, on one CPU and across two;
# raw audit records and journal entries): agentbroker-mcp's call is 3 round trips (client ->
# host -> broker -> host -> worker -> host -> client) plus the audit record and journal entry
# that call-begin writes before its reply (call-end's go out after the response); the SDK
# server's is 1 round trip. Printed after the run, next to the measured p50.
floor_json=
if [ -x "$builddir/tests/bench/bench_broker" ]; then
	floor_json=$("$builddir/tests/bench/bench_broker" --mode floor --floor-ops 3000 2>/dev/null | grep '^{"bench"' | tail -n 1 || true)
	[ -n "$floor_json" ] || say "WARNING: bench_broker --mode floor failed: no floor is printed"
else
	say "no $builddir/tests/bench/bench_broker (make check builds it): no floor is printed"
fi

# --- the benchmark -------------------------------------------------------------------------------
bench_js_dir bench_mcp.mjs bench_util.mjs sdk_echo_server.mjs sdk_echo_tool.mjs
export AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock AB_MODULES=$tmp/modules
export AB_WATCH="broker=$broker_pid,auditd=$auditd_pid,journald=$journald_pid${kauditd_pid:+,kauditd=$kauditd_pid}"
# Its text is shown as it comes; its JSON line is held back and printed last, with the checks
# made after the run (journal entries, audit records lost, journald rate limiting) added.
set +e
node "$tmp/js/bench_mcp.mjs" "$@" | tee "$tmp/bench.out" | grep --line-buffered -v '^{"bench"'
status=${PIPESTATUS[0]}
set -e

json=$(grep '^{"bench"' "$tmp/bench.out" | tail -n 1 || true)
if [ -n "$floor_json" ] && [ -n "$json" ]; then
	echo
	FLOOR="$floor_json" BENCH="$json" node -e '
		const fl = JSON.parse(process.env.FLOOR).floor, b = JSON.parse(process.env.BENCH);
		const f = (x) => x.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
		const audit = fl.audit_record.p50_us, journal = fl.journal_entry.p50_us;
		console.log("== floor of a sequential call (p50s measured now by bench_broker --mode floor, " + fl.ops + " of each)");
		console.log("agentbroker-mcp: 3 round trips (client -> host -> broker -> host -> worker -> host -> client)");
		console.log("  + 1 audit record + 1 journal entry (call-begin writes them before its reply; call-end after the response)");
		// bench_broker leaves out what it cannot pin (one CPU allowed: no "across CPUs").
		const rows = [["unpinned", fl.socket_rtt_unpinned], ["same CPU", fl.socket_rtt_same_cpu],
			["across CPUs", fl.socket_rtt_across_cpus]].filter(([, m]) => m).map(([n, m]) => [n, m.p50_us]);
		for (const [n, rtt] of rows)
			console.log(`  ${n.padEnd(12)} 3 x ${f(rtt)} + ${f(audit)} + ${f(journal)} = ${f(3 * rtt + audit + journal)} us` +
				`   SDK server (1 round trip): ${f(rtt)} us`);
		for (const [kind, r] of Object.entries(b.results)) {
			if (!r.agentbroker) continue;
			const ab = r.agentbroker.seq_us.p50, fu = 3 * fl.socket_rtt_unpinned.p50_us + audit + journal;
			console.log(`  measured p50 (${kind} client): agentbroker-mcp ${f(ab)} us = ${(ab / fu).toFixed(2)} x its unpinned floor` +
				(r.sdk ? `; SDK server ${f(r.sdk.seq_us.p50)} us = ${(r.sdk.seq_us.p50 / fl.socket_rtt_unpinned.p50_us).toFixed(2)} x its unpinned floor` : ""));
		}'
fi

if [ -n "$profile" ] && [ "$status" -ne 1 ]; then
	echo
	case "$profile" in
	perf)
		say "profiling: perf record -g of agentbroker-mcp, its workers and agentbrokerd during the in-flight phase (raw client)"
		attach="perf record -q -g -o $tmp/perf.data -p {pids},$broker_pid" ;;
	strace)
		say "profiling: strace -c -f of agentbroker-mcp and its workers during the in-flight phase (raw client)"
		attach="strace -c -f -o $tmp/strace.txt -p {pids}" ;;
	esac
	node "$tmp/js/bench_mcp.mjs" --clients raw --servers agentbroker --spawns 1 --attach "$attach" \
		--attach-phase throughput "$@" >"$tmp/profile-run.txt" 2>&1 ||
		{ cat "$tmp/profile-run.txt"; die "the profiled run failed"; }
	grep -E '^ +calls/s' "$tmp/profile-run.txt" | sed -n 2p | sed 's/^ */  (profiled run) in flight /' || true
	case "$profile" in
	perf) bench_perf_report "$tmp/perf.data" ;;
	strace)
		say "strace -c: system calls of agentbroker-mcp and its workers"
		cat "$tmp/strace.txt" ;;
	esac
fi

# --- the broker, the journal, the audit backlog ---------------------------------------------------
bench_finish "$tmp/bench.out" "$profile"
exit "$status"
