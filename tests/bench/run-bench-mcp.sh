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
broker=$builddir/agentbrokerd
echo_so=$builddir/modules/.libs/echo.so
conformance=$srcdir/tests/conformance
profile=${BENCH_PROFILE:-}
BENCH_NAME=run-bench-mcp
. "$srcdir/tests/bench/lib.sh"

bench_require_root "audit records, journald"

# is_elf FILE: FILE starts with the ELF magic (a libtool wrapper is a shell script).
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

[ -x "$broker" ] || die "$broker not found: build first (make), or set ABS_TOP_BUILDDIR"
[ -f "$echo_so" ] || die "$echo_so not found: build first (make)"
host=$builddir/agentbroker-mcp host_libpath=
[ -x "$host" ] || die "$host not found: build first (make)"
if ! is_elf "$host"; then
	host=$builddir/.libs/agentbroker-mcp host_libpath=$builddir/.libs
	is_elf "$host" || die "neither $builddir/agentbroker-mcp nor $host is an ELF program"
fi
worker=$builddir/tests/bench/agentbroker-worker
if ! is_elf "$worker"; then
	worker=$builddir/agentbroker-worker
	is_elf "$worker" ||
		die "no ELF worker program: build tests/bench/agentbroker-worker (make check or make bench)"
fi
command -v node >/dev/null || die "node not found (scripts/setup installs it)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: the MCP SDK needs node >= 20"
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
# audit_lost: the kernel's count of audit records it dropped (backlog full, auditd too slow).
audit_lost() { auditctl -s | awk '$1 == "lost" {print $2}'; }
lost_before=$(audit_lost)

# --- temporary policy, module directory and broker ---------------------------------------------
bench_tmpdir
cat >"$tmp/policy.yaml" <<EOF
# agentbroker MCP benchmark policy (written by tests/bench/run-bench-mcp.sh)
tools:
  - match: "echo.*"
runs:
  max_calls: 0
  max_duration_s: 0
  max_open: 256
clients:
  uids: [0]
audit:
  failure: deny
EOF
# The host loads every .so of its module directories: give it echo alone (a copy: the loader
# refuses symlinks), so that it serves what the SDK server serves.
mkdir -m 0755 "$tmp/modules"
install -m 0644 "$echo_so" "$tmp/modules/echo.so"

bench_start_broker "$tmp/policy.yaml"
say "agentbrokerd $("$broker" --version | awk '{print $2}') running (pid $broker_pid) on $sock;" \
	"auditd pid $auditd_pid, journald pid $journald_pid, auditing $(auditctl -s | awk '$1 == "enabled" {print $2}')"
say "measured: host $host${host_libpath:+ (LD_LIBRARY_PATH=$host_libpath)}; worker $worker" \
	"($(file -b "$worker" | cut -d, -f1-2)); modules: echo.so"

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
# The scripts run from a copy beside a link to the conformance suite's node_modules (node
# resolves packages from the script's own directory).
mkdir "$tmp/js"
cp "$srcdir/tests/bench/bench_mcp.mjs" "$srcdir/tests/bench/sdk_echo_server.mjs" "$tmp/js/"
ln -s "$conformance/node_modules" "$tmp/js/node_modules"
export AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock AB_MODULES=$tmp/modules
export AB_WATCH="broker=$broker_pid,auditd=$auditd_pid,journald=$journald_pid${kauditd_pid:+,kauditd=$kauditd_pid}"
# Its text is shown as it comes; its JSON line is held back and printed last, with the checks
# made after the run (journal entries, audit records lost, journald rate limiting) added.
set +e
node "$tmp/js/bench_mcp.mjs" "$@" | tee "$tmp/bench.out" | grep --line-buffered -v '^{"bench"'
status=${PIPESTATUS[0]}
set -e
json=$(grep '^{"bench"' "$tmp/bench.out" | tail -n 1 || true)
calls=$(printf '%s' "$json" | node -e '
	let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
		try { console.log(JSON.parse(t).calls_done.agentbroker ?? ""); } catch { console.log(""); }
	});')

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
run_broker_pid=$broker_pid journal_counts=
bench_stop_broker
# Every call of the measured run went through the broker: its tool-call-begin and tool-call-end
# journal entries must all be there (a rate-limited or overloaded journald drops some silently).
if [ -n "$calls" ]; then
	journalctl --sync 2>/dev/null || true
	for op in tool-call-begin tool-call-end; do
		logged=$(journalctl --no-pager -q -o cat --since "@$bench_start" _PID="$run_broker_pid" \
			AGENTBROKER_OP=$op 2>/dev/null | wc -l)
		if [ -n "$profile" ]; then
			say "journal: $logged $op entries (the measured run made $calls calls, the profiled run more)"
		elif [ "$logged" -eq "$calls" ]; then
			say "journal: all $calls $op entries of the measured run are there"
		else
			say "WARNING: the journal has $logged $op entries of the broker, the run made $calls calls"
		fi
		journal_counts="$journal_counts\"$op\":$logged,"
	done
fi
lost_after=$(audit_lost)
if [ "$lost_after" -ne "$lost_before" ]; then
	say "WARNING: the kernel dropped $((lost_after - lost_before)) audit records during the run (auditctl -s: lost)"
else
	say "audit: the kernel dropped no record during the run (auditctl -s: lost $lost_after)"
fi
if [ -n "$json" ]; then
	printf '%s' "$json" | CHECKS="{${journal_counts}\"audit_lost\":$((lost_after - lost_before)),\"journald_suppressed\":$bench_suppressed}" \
		node -e 'let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
			const j = JSON.parse(t); j.checks = JSON.parse(process.env.CHECKS); console.log(JSON.stringify(j)); });'
fi
exit "$status"
