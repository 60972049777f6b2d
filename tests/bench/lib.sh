# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/bench/lib.sh — sourced by the benchmark scripts (run-bench.sh, run-bench-mcp.sh):
# auditd and journald, a temporary directory, a broker from the build directory in the
# foreground, and the checks after the run (the broker's exit and log, journald's rate limit).
#
#   BENCH_NAME=run-bench-mcp; . "$(dirname "$0")/lib.sh"
#   bench_require_root; bench_start_services; bench_tmpdir
#   bench_start_broker "$tmp/policy.yaml"      # sets broker_pid and sock
#   ...
#   bench_stop_broker                           # fails when the broker did not stop cleanly
#
# Needs: srcdir and builddir set by the caller; broker=$builddir/agentbrokerd.

# say / die: messages prefixed with the script's name.
say() { printf '%s: %s\n' "$BENCH_NAME" "$*"; }
die() { printf '%s: FAILED: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

broker_pid=
tmp=

# bench_require_root WHY: exit 77 (skipped) unless root.
bench_require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		say "skipped: needs root ($1)"
		exit 77
	fi
}

# bench_start_services: auditd and journald running, kernel auditing on (scripts/start-services).
bench_start_services() {
	export PATH="$PATH:/usr/sbin:/sbin"
	if [ -x "$srcdir/scripts/start-services" ]; then
		"$srcdir/scripts/start-services" || die "scripts/start-services could not start auditd and journald"
	else
		pgrep -x systemd-journal >/dev/null || die "journald is not running"
		pgrep -x auditd >/dev/null || die "auditd is not running"
		auditctl -s | grep -q '^enabled [12]' || die "kernel auditing is off (auditctl -e 1)"
	fi
}

# The EXIT trap: run the caller's bench_on_exit (if defined), stop the broker, remove $tmp.
_bench_cleanup() {
	if declare -F bench_on_exit >/dev/null; then bench_on_exit || true; fi
	if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
		kill -TERM "$broker_pid" 2>/dev/null || true
		wait "$broker_pid" 2>/dev/null || true
	fi
	[ -z "$tmp" ] || rm -rf "$tmp"
}

# bench_tmpdir: a new temporary directory in $tmp, removed at exit (with the broker stopped).
bench_tmpdir() {
	tmp=$(mktemp -d "/tmp/agentbroker-$BENCH_NAME.XXXXXX")
	trap _bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

# bench_start_broker POLICY: agentbrokerd in the foreground on $tmp/broker.sock (sock), its
# stderr in $tmp/broker.log; waits up to 10 s for the socket. Sets broker_pid and bench_start
# (the epoch second before the start, for the journal check).
bench_start_broker() {
	sock=$tmp/broker.sock
	bench_start=$(date +%s)
	env -u NOTIFY_SOCKET -u JOURNAL_STREAM -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES \
		"$broker" --foreground --policy "$1" --socket "$sock" 2>"$tmp/broker.log" </dev/null &
	broker_pid=$!
	for _ in $(seq 100); do
		[ -S "$sock" ] && break
		kill -0 "$broker_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! [ -S "$sock" ] || ! kill -0 "$broker_pid" 2>/dev/null; then
		sed 's/^/  broker: /' "$tmp/broker.log" >&2
		die "agentbrokerd did not come up on $sock"
	fi
}

# bench_stop_broker: SIGTERM the broker; fail unless it exits 0. Then report the error and
# warning lines of its log and journald's rate-limiting notices since the broker started (their
# count in bench_suppressed).
bench_stop_broker() {
	local status=0 problems
	kill -TERM "$broker_pid" 2>/dev/null || true
	wait "$broker_pid" || status=$?
	broker_pid=
	echo
	if [ "$status" -ne 0 ]; then
		sed 's/^/  broker: /' "$tmp/broker.log"
		die "agentbrokerd exited with status $status"
	fi
	problems=$(grep -ciE 'error|warn|fail' "$tmp/broker.log" || true)
	say "agentbrokerd stopped cleanly; its log has $(wc -l <"$tmp/broker.log") lines, $problems with error/warning"
	[ "$problems" -eq 0 ] || grep -iE 'error|warn|fail' "$tmp/broker.log" | head -5 | sed 's/^/  broker: /'
	bench_suppressed=$(journalctl --no-pager -q -o cat --since "@$bench_start" _COMM=systemd-journal 2>/dev/null \
		| grep -ci 'suppressed' || true)
	if [ "$bench_suppressed" -gt 0 ]; then
		say "WARNING: journald reported $bench_suppressed 'Suppressed' (rate-limited) notices during the run:"
		journalctl --no-pager -q -o cat --since "@$bench_start" _COMM=systemd-journal | grep -i suppressed | head -3
	else
		say "journald: no rate-limiting ('Suppressed') notices during the run"
	fi
}
