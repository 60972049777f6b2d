# shellcheck shell=bash
# tests/bench/lib-host.sh — sourced after lib.sh by the MCP host's benchmarks
# (run-bench-mcp.sh, run-bench-tunnel.sh): the measured programs, and the checks after the run.
#
#   bench_host_programs       # sets host, host_libpath, worker; checks broker, echo_so, node
#   lost_before=$(audit_lost)
#   run_broker_pid=$broker_pid; bench_stop_broker
#   bench_journal_checks "$calls"           # sets journal_counts
#   bench_print_checked "$json" "$journal_counts" "$lost_before"
#
# Needs: builddir, broker and echo_so set by the caller.
# shellcheck disable=SC2154,SC2034 # (builddir, broker, echo_so, tmp, bench_start: set by the caller and
# lib.sh; host, host_libpath, worker, status, json, calls: set here for the caller)

# is_elf FILE: FILE starts with the ELF magic (a libtool wrapper is a shell script).
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

# bench_host_programs: the real binaries, never libtool wrapper scripts (a wrapper adds a shell
# start to the cold start and to every worker spawn):
#   host    <build>/agentbroker-mcp when it is an ELF file, else <build>/.libs/agentbroker-mcp
#           with host_libpath=<build>/.libs (for LD_LIBRARY_PATH)
#   worker  <build>/tests/bench/agentbroker-worker (linked -no-install), else
#           <build>/agentbroker-worker when that is an ELF file
# Also checks that the broker and echo.so are built and node (>= 20) is there.
bench_host_programs() {
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
	local node_major
	node_major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: the MCP SDK needs node >= 20"
}

# bench_echo_setup [POLICY_YAML]: $tmp/policy.yaml allowing echo.* (no run budget, no rate
# limit; clients: root; audit failure: deny), with POLICY_YAML appended, and $tmp/modules
# holding the build's echo.so alone (a copy: the loader refuses symlinks).
bench_echo_setup() {
	cat >"$tmp/policy.yaml" <<POLICY
# agentbroker benchmark policy (written by tests/bench/$BENCH_NAME.sh)
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
${1:-}
POLICY
	mkdir -m 0755 "$tmp/modules"
	install -m 0644 "$echo_so" "$tmp/modules/echo.so"
}

# bench_run_js SCRIPT CALLS_FIELD [ARGS...]: node SCRIPT ARGS; its text is shown as it comes,
# its JSON line ({"bench":...}) is held back (in json) to be printed last with the checks made
# after the run. Sets status (the script's exit status), json, and calls: the JSON's field
# CALLS_FIELD (a dotted path, e.g. calls_done.agentbroker), or empty.
bench_run_js() {
	local script=$1 field=$2
	shift 2
	set +e
	node "$script" "$@" | tee "$tmp/bench.out" | grep --line-buffered -v '^{"bench"'
	status=${PIPESTATUS[0]}
	set -e
	json=$(grep '^{"bench"' "$tmp/bench.out" | tail -n 1 || true)
	calls=$(printf '%s' "$json" | FIELD=$field node -e '
		let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
			try {
				let v = JSON.parse(t);
				for (const k of process.env.FIELD.split(".")) v = v?.[k];
				console.log(v ?? "");
			} catch { console.log(""); }
		});')
}

# audit_lost: the kernel's count of audit records it dropped (backlog full, auditd too slow).
audit_lost() { auditctl -s | awk '$1 == "lost" {print $2}'; }

# bench_journal_count OP: the journal entries with AGENTBROKER_OP=OP of the broker that ran
# (run_broker_pid) since it started (bench_start).
bench_journal_count() {
	journalctl --no-pager -q -o cat --since "@$bench_start" _PID="$run_broker_pid" \
		AGENTBROKER_OP="$1" 2>/dev/null | wc -l
}

# bench_journal_checks CALLS [NOTE]: after the broker stopped, check that the journal holds one
# tool-call-begin and one tool-call-end entry of it per call made (CALLS; nothing when empty),
# or with NOTE, just report the counts with NOTE. Sets journal_counts ('"op":N,' pairs).
bench_journal_checks() {
	local op logged
	journal_counts=
	[ -n "$1" ] || return 0
	journalctl --sync 2>/dev/null || true
	for op in tool-call-begin tool-call-end; do
		logged=$(bench_journal_count "$op")
		if [ -n "${2:-}" ]; then
			say "journal: $logged $op entries ($2)"
		elif [ "$logged" -eq "$1" ]; then
			say "journal: all $1 $op entries of the measured run are there"
		else
			say "WARNING: the journal has $logged $op entries of the broker, the run made $1 calls"
		fi
		journal_counts="$journal_counts\"$op\":$logged,"
	done
}

# bench_print_checked JSON JOURNAL_COUNTS LOST_BEFORE: report the kernel's lost audit records
# since LOST_BEFORE, then print the benchmark's JSON line (if any) with "checks" added:
# JOURNAL_COUNTS ('"op":N,' pairs), audit_lost and journald_suppressed (bench_suppressed).
bench_print_checked() {
	local lost_after
	lost_after=$(audit_lost)
	if [ "$lost_after" -ne "$3" ]; then
		say "WARNING: the kernel dropped $((lost_after - $3)) audit records during the run (auditctl -s: lost)"
	else
		say "audit: the kernel dropped no record during the run (auditctl -s: lost $lost_after)"
	fi
	[ -n "$1" ] || return 0
	printf '%s' "$1" | CHECKS="{$2\"audit_lost\":$((lost_after - $3)),\"journald_suppressed\":$bench_suppressed}" \
		node -e 'let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
			const j = JSON.parse(t); j.checks = JSON.parse(process.env.CHECKS); console.log(JSON.stringify(j)); });'
}
