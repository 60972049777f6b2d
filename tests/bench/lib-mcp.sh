# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # srcdir, builddir, tmp, sock, broker_pid... are shared with lib.sh and the caller
# tests/bench/lib-mcp.sh — sourced after lib.sh by the benchmarks of agentbroker-mcp
# (run-bench-mcp.sh over stdio, run-bench-http.sh over Streamable HTTP): the measured programs,
# node and the pinned SDK, auditd/journald/kauditd, the echo policy and module directory, and
# the checks after the run (one journal entry per call and phase, no audit record lost).
#
#   bench_find_host                 # sets host, host_libpath, worker
#   bench_require_node_sdk [PKG...]
#   bench_start_services; bench_watch_audit    # sets auditd_pid, journald_pid, kauditd_pid
#   bench_tmpdir; bench_echo_setup  # $tmp/policy.yaml, $tmp/modules/echo.so
#   bench_start_broker "$tmp/policy.yaml"
#   ...
#   bench_finish "$tmp/bench.out" "$profiled"  # stops the broker, checks, prints the JSON line
#
# Needs: srcdir and builddir set by the caller, lib.sh sourced.

# is_elf FILE: FILE starts with the ELF magic (a libtool wrapper is a shell script).
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

# bench_find_host: the measured programs, real binaries, never libtool wrapper scripts (a wrapper
# adds a shell start to the cold start and to every worker spawn):
#   host    <build>/agentbroker-mcp when it is an ELF file, else <build>/.libs/agentbroker-mcp
#           with host_libpath=<build>/.libs
#   worker  <build>/tests/bench/agentbroker-worker (linked -no-install), else
#           <build>/agentbroker-worker when that is an ELF file
# Also checks the broker and the echo module (echo_so) are built.
bench_find_host() {
	broker=$builddir/agentbrokerd
	echo_so=$builddir/modules/.libs/echo.so
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
}

# bench_require_node_sdk [PKG...]: node >= 20, and the SDK and the PKGs installed in
# tests/node_modules at the versions tests/package.json pins (scripts/setup runs npm ci in tests/).
bench_require_node_sdk() {
	local node_major why
	command -v node >/dev/null || die "node not found (scripts/setup installs it)"
	node_major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: the MCP SDK needs node >= 20"
	# shellcheck disable=SC2016 # JavaScript in single quotes
	why=$(cd "$srcdir/tests" && node -e '
		const want = require("./package.json").dependencies;
		for (const name of ["@modelcontextprotocol/sdk", ...process.argv.slice(1)]) {
			let have = "none";
			try { have = require(`./node_modules/${name}/package.json`).version; } catch {}
			if (have !== want[name]) console.log(`${name} ${have} is installed in tests/node_modules, tests/package.json pins ${want[name]}`);
		}' "$@" 2>&1)
	[ -z "$why" ] || die "$why (run scripts/setup, or npm ci in tests/)"
}

# audit_lost: the kernel's count of audit records it dropped (backlog full, auditd too slow).
audit_lost() { auditctl -s | awk '$1 == "lost" {print $2}'; }

# bench_watch_audit: after bench_start_services: auditd_pid, journald_pid, kauditd_pid (may be
# empty) and lost_before (the kernel's lost count before the run).
bench_watch_audit() {
	auditd_pid=$(pgrep -x auditd | head -1)
	journald_pid=$(pgrep -x systemd-journal | head -1)
	kauditd_pid=$(pgrep -x kauditd | head -1 || true)
	lost_before=$(audit_lost)
}

# bench_echo_setup [EXTRA]: $tmp/policy.yaml allowing echo.* (no run budget, no rate limit;
# clients: root; audit failure denies), with the YAML text EXTRA appended (e.g. secrets and a
# tunnel identity), and $tmp/modules holding a copy of the build's echo.so alone (the host loads
# every .so of its module directories; the loader refuses symlinks).
bench_echo_setup() {
	cat >"$tmp/policy.yaml" <<EOF
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
EOF
	mkdir -m 0755 "$tmp/modules"
	install -m 0644 "$echo_so" "$tmp/modules/echo.so"
}

# bench_say_started: one line about the broker and the audit services, one about the programs.
bench_say_started() {
	say "agentbrokerd $("$broker" --version | awk '{print $2}') running (pid $broker_pid) on $sock;" \
		"auditd pid $auditd_pid, journald pid $journald_pid, auditing $(auditctl -s | awk '$1 == "enabled" {print $2}')"
	say "measured: host $host${host_libpath:+ (LD_LIBRARY_PATH=$host_libpath)}; worker $worker$*"
}

# bench_js_dir FILE...: $tmp/js with copies of FILEs (from tests/bench) beside a link to
# tests/node_modules (node resolves packages from the script's own directory).
bench_js_dir() {
	local f
	mkdir "$tmp/js"
	for f in "$@"; do cp "$srcdir/tests/bench/$f" "$tmp/js/"; done
	ln -s "$srcdir/tests/node_modules" "$tmp/js/node_modules"
}

# bench_perf_report DATA: perf's CPU time by process, then self time by process, library and
# function (top 45) of perf.data file DATA.
bench_perf_report() {
	say "perf: CPU time by process (comm)"
	perf report -i "$1" --stdio --no-children -g none --sort comm 2>/dev/null | grep -E '^ +[0-9]' | head -10 || true
	say "perf: self time by process, library and function (top 45)"
	perf report -i "$1" --stdio --no-children -g none --sort comm,dso,symbol 2>/dev/null \
		| grep -E '^ +[0-9]' | head -45 || true
}

# bench_finish OUT PROFILED [FIELD]: stop the broker (lib.sh: it must exit 0), then check the run
# whose output is in OUT: its JSON line (the last line starting {"bench") counts in FIELD
# (default calls_done.agentbroker) the calls made to agentbroker-mcp, and the journal must hold that many
# tool-call-begin and tool-call-end entries of the broker (a rate-limited or overloaded journald
# drops some silently; PROFILED non-empty: a profiled run made more, only reported); the kernel
# must have lost no audit record. Prints the JSON line last, with these checks added.
bench_finish() {
	local out=$1 profiled=$2 field=${3:-calls_done.agentbroker} json calls run_broker_pid=$broker_pid
	local journal_counts='' logged op lost_after
	json=$(grep '^{"bench"' "$out" | tail -n 1 || true)
	calls=$(printf '%s' "$json" | FIELD=$field node -e '
		let t = ""; process.stdin.on("data", (d) => (t += d)).on("end", () => {
			try {
				const v = process.env.FIELD.split(".").reduce((o, k) => o?.[k], JSON.parse(t));
				console.log(v ?? "");
			} catch { console.log(""); }
		});')
	bench_stop_broker
	if [ -n "$calls" ]; then
		journalctl --sync 2>/dev/null || true
		for op in tool-call-begin tool-call-end; do
			logged=$(journalctl --no-pager -q -o cat --since "@$bench_start" _PID="$run_broker_pid" \
				AGENTBROKER_OP=$op 2>/dev/null | wc -l)
			if [ -n "$profiled" ]; then
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
}
