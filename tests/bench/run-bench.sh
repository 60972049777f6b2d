#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench.sh — run the broker benchmark (`make bench`).
#
# Starts auditd and journald (scripts/start-services), writes a temporary policy (tool
# bench.hmac may sign with the bytes secret bench_key, read from a 0600 file; no run budget,
# no rate limit; clients: root), starts agentbrokerd from the build directory in the
# foreground on a temporary socket, runs tests/bench/bench_broker --mode all against it,
# stops the broker and prints everything. Needs root (audit records, CPU pinning of the
# broker). Arguments are passed on to bench_broker, e.g.
#   tests/bench/run-bench.sh --cycles 5000 --parallel-cycles 20000
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory); BENCH_PROFILE=perf|strace also profiles the broker during the run and prints
# where its time went (perf report / strace -c).
# Exit status: bench_broker's (0 measured, 1 failed, 3 target missed with --check-targets);
# 77 when not root.
set -euo pipefail

say() { printf 'run-bench: %s\n' "$*"; }
die() { printf 'run-bench: FAILED: %s\n' "$*" >&2; exit 1; }

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
broker=$builddir/agentbrokerd
bench=$builddir/tests/bench/bench_broker
profile=${BENCH_PROFILE:-}

if [ "$(id -u)" -ne 0 ]; then
	say "skipped: needs root (audit records, journald, pinning the broker to a CPU)"
	exit 77
fi
[ -x "$broker" ] || die "$broker not found: build first (make agentbrokerd), or set ABS_TOP_BUILDDIR"
[ -x "$bench" ] || die "$bench not found: build first (make tests/bench/bench_broker)"
command -v openssl >/dev/null || die "openssl not found"
case "$profile" in
""|perf|strace) ;;
*) die "BENCH_PROFILE must be perf or strace, not '$profile'" ;;
esac
[ -z "$profile" ] || command -v "$profile" >/dev/null || die "BENCH_PROFILE=$profile: $profile not found"

# --- auditd and journald ---------------------------------------------------------------
if [ -x "$srcdir/scripts/start-services" ]; then
	"$srcdir/scripts/start-services" || die "scripts/start-services could not start auditd and journald"
else
	pgrep -x systemd-journal >/dev/null || die "journald is not running"
	pgrep -x auditd >/dev/null || die "auditd is not running"
	auditctl -s | grep -q '^enabled [12]' || die "kernel auditing is off (auditctl -e 1)"
fi

# --- temporary policy, key and broker ------------------------------------------------------
tmp=$(mktemp -d /tmp/agentbroker-bench.XXXXXX)
broker_pid=
prof_pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$prof_pid" ] && kill -0 "$prof_pid" 2>/dev/null; then
		kill -INT "$prof_pid" 2>/dev/null || true
		wait "$prof_pid" 2>/dev/null || true
	fi
	if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
		kill -TERM "$broker_pid" 2>/dev/null || true
		wait "$broker_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(umask 077 && openssl rand -hex 32 | tr -d '\n' >"$tmp/bench_key")
chmod 0600 "$tmp/bench_key"
# The broker signs "hello" with the key file's bytes (the 64 hex characters as text).
expect_sig=$(printf hello | openssl dgst -sha256 -hmac "$(cat "$tmp/bench_key")" -binary | openssl base64 -A)

cat >"$tmp/policy.yaml" <<EOF
# agentbroker benchmark policy (written by tests/bench/run-bench.sh)
secrets:
  bench_key:
    file: $tmp/bench_key
    type: bytes
tools:
  - match: bench.hmac
    secrets:
      bench_key: [sign]
runs:
  max_calls: 0
  max_duration_s: 0
  max_open: 64
tokens:
  ttl_s: 30
  max_ttl_s: 300
  max_uses: 16
clients:
  uids: [0]
audit:
  failure: deny
EOF

sock=$tmp/broker.sock
start=$(date +%s)
env -u NOTIFY_SOCKET -u JOURNAL_STREAM -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES \
	"$broker" --foreground --policy "$tmp/policy.yaml" --socket "$sock" 2>"$tmp/broker.log" </dev/null &
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
say "agentbrokerd $("$broker" --version | awk '{print $2}') running (pid $broker_pid) on $sock"

case "$profile" in
perf)
	perf record -q -g -p "$broker_pid" -o "$tmp/perf.data" >"$tmp/prof.log" 2>&1 &
	prof_pid=$!
	sleep 0.5 ;;
strace)
	strace -c -f -p "$broker_pid" -o "$tmp/strace.txt" 2>"$tmp/prof.log" &
	prof_pid=$!
	sleep 0.5 ;;
esac

# --- the benchmark ---------------------------------------------------------------------------
set +e
"$bench" --socket "$sock" --mode all --expect-signature "$expect_sig" "$@" | tee "$tmp/bench.out"
status=${PIPESTATUS[0]}
set -e

if [ -n "$prof_pid" ]; then
	kill -INT "$prof_pid" 2>/dev/null || true
	wait "$prof_pid" 2>/dev/null || true
	prof_pid=
	echo
	case "$profile" in
	perf)
		say "perf: where agentbrokerd's time went (self time, top entries)"
		perf report -i "$tmp/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null \
			| grep -v '^#' | grep -E '^ +[0-9]' | head -40 ;;
	strace)
		say "strace -c: agentbrokerd's system calls"
		cat "$tmp/strace.txt" ;;
	esac
fi

# --- the broker, the journal -----------------------------------------------------------------
bench_broker_pid=$broker_pid
kill -TERM "$broker_pid" 2>/dev/null || true
broker_status=0
wait "$broker_pid" || broker_status=$?
broker_pid=
echo
if [ "$broker_status" -ne 0 ]; then
	sed 's/^/  broker: /' "$tmp/broker.log"
	die "agentbrokerd exited with status $broker_status"
fi
problems=$(grep -ciE 'error|warn|fail' "$tmp/broker.log" || true)
say "agentbrokerd stopped cleanly; its log has $(wc -l <"$tmp/broker.log") lines, $problems with error/warning"
[ "$problems" -eq 0 ] || grep -iE 'error|warn|fail' "$tmp/broker.log" | head -5 | sed 's/^/  broker: /'
# Every call the benchmark began must have its tool-call-begin entry in the journal (a
# rate-limited or overloaded journald would drop some silently).
begun=$(sed -n 's/.*calls begun over the broker socket.*: \([0-9][0-9]*\)$/\1/p' "$tmp/bench.out")
if [ -n "$begun" ]; then
	journalctl --sync 2>/dev/null || true
	logged=$(journalctl --no-pager -q -o cat --since "@$start" _PID="$bench_broker_pid" \
		AGENTBROKER_OP=tool-call-begin 2>/dev/null | wc -l)
	if [ "$logged" -eq "$begun" ]; then
		say "journal: all $begun tool-call-begin entries of the run are there"
	else
		say "WARNING: journal has $logged tool-call-begin entries of the broker, the benchmark began $begun calls"
	fi
fi
suppressed=$(journalctl --no-pager -q -o cat --since "@$start" _COMM=systemd-journal 2>/dev/null \
	| grep -ci 'suppressed' || true)
if [ "$suppressed" -gt 0 ]; then
	say "WARNING: journald reported $suppressed 'Suppressed' (rate-limited) notices during the run:"
	journalctl --no-pager -q -o cat --since "@$start" _COMM=systemd-journal | grep -i suppressed | head -3
else
	say "journald: no rate-limiting ('Suppressed') notices during the run"
fi
exit "$status"
