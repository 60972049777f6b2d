#!/usr/bin/env bash
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
# The SDK comes from tests/conformance/node_modules (pinned by tests/conformance/package.json
# and its lock file; scripts/setup installs it with npm ci).
#
# Arguments go to bench_mcp.mjs, e.g.  tests/bench/run-bench-mcp.sh --spawns 10 --calls 1000
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory); BENCH_PROFILE=perf|strace: after the measured run, a second run of the in-flight
# phase with the raw client against agentbroker-mcp alone, profiled (perf record -g of the host,
# its workers and the broker, or strace -c -f of the host and its workers), and its report.
# After the run: the broker must stop cleanly, the journal must hold one tool-call-begin and one
# tool-call-end entry of the broker per call made, the kernel must have lost no audit record and
# journald must not have rate-limited; these checks are added to bench_mcp.mjs's JSON line, which
# is printed last. Exit status: bench_mcp.mjs's (0 measured, 1 failed, 3 target missed with
# --check-targets); 77 when not root.
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
broker=$builddir/agentbrokerd
echo_so=$builddir/modules/.libs/echo.so
conformance=$srcdir/tests/conformance
profile=${BENCH_PROFILE:-}
BENCH_NAME=run-bench-mcp
. "$srcdir/tests/bench/lib.sh"
. "$srcdir/tests/bench/lib-host.sh"

bench_require_root "audit records, journald"

bench_host_programs
why=$(cd "$conformance" && node -e '
	const want = require("./package.json").dependencies["@modelcontextprotocol/sdk"];
	let have = "none";
	try { have = require("./node_modules/@modelcontextprotocol/sdk/package.json").version; } catch {}
	if (have !== want) console.log(`@modelcontextprotocol/sdk ${have} is installed in tests/conformance, package.json pins ${want}`);
' 2>&1)
[ -z "$why" ] || die "$why (run scripts/setup, or npm ci in tests/conformance)"
case "$profile" in
"") ;;
perf|strace) command -v "$profile" >/dev/null || die "BENCH_PROFILE=$profile: $profile not found" ;;
*) die "BENCH_PROFILE must be perf or strace, not '$profile'" ;;
esac

# --- auditd and journald ---------------------------------------------------------------------
bench_start_services
auditd_pid=$(pgrep -x auditd | head -1)
journald_pid=$(pgrep -x systemd-journal | head -1)
kauditd_pid=$(pgrep -x kauditd | head -1 || true)
lost_before=$(audit_lost)

# --- temporary policy, module directory and broker ---------------------------------------------
bench_tmpdir
# The host loads every .so of its module directories: it gets echo alone, so that it serves
# what the SDK server serves.
bench_echo_setup

bench_start_broker "$tmp/policy.yaml"
say "agentbrokerd $("$broker" --version | awk '{print $2}') running (pid $broker_pid) on $sock;" \
	"auditd pid $auditd_pid, journald pid $journald_pid, auditing $(auditctl -s | awk '$1 == "enabled" {print $2}')"
say "measured: host $host${host_libpath:+ (LD_LIBRARY_PATH=$host_libpath)}; worker $worker" \
	"($(file -b "$worker" | cut -d, -f1-2)); modules: echo.so"

# --- the benchmark -------------------------------------------------------------------------------
# The scripts run from a copy beside a link to the conformance suite's node_modules (node
# resolves packages from the script's own directory).
mkdir "$tmp/js"
cp "$srcdir/tests/bench/bench_mcp.mjs" "$srcdir/tests/bench/sdk_echo_server.mjs" "$tmp/js/"
ln -s "$conformance/node_modules" "$tmp/js/node_modules"
export AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock AB_MODULES=$tmp/modules
export AB_WATCH="broker=$broker_pid,auditd=$auditd_pid,journald=$journald_pid${kauditd_pid:+,kauditd=$kauditd_pid}"
# Its JSON line is printed last, with the checks made after the run (journal entries, audit
# records lost, journald rate limiting) added.
bench_run_js "$tmp/js/bench_mcp.mjs" calls_done.agentbroker "$@"

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
	perf)
		say "perf: CPU time by process (comm)"
		perf report -i "$tmp/perf.data" --stdio --no-children -g none --sort comm 2>/dev/null \
			| grep -E '^ +[0-9]' | head -10 || true
		say "perf: self time by process, library and function (top 45)"
		perf report -i "$tmp/perf.data" --stdio --no-children -g none --sort comm,dso,symbol 2>/dev/null \
			| grep -E '^ +[0-9]' | head -45 || true ;;
	strace)
		say "strace -c: system calls of agentbroker-mcp and its workers"
		cat "$tmp/strace.txt" ;;
	esac
fi

# --- the broker, the journal, the audit backlog ---------------------------------------------------
run_broker_pid=$broker_pid
bench_stop_broker
# Every call of the measured run went through the broker: its tool-call-begin and tool-call-end
# journal entries must all be there (a rate-limited or overloaded journald drops some silently).
bench_journal_checks "$calls" "${profile:+the measured run made $calls calls, the profiled run more}"
bench_print_checked "$json" "$journal_counts" "$lost_before"
exit "$status"
