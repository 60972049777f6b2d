#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-sandbox.sh — what a run sandbox costs (issue 11, docs/architecture.md
# "Run sandboxes"), median and p99, every mode in the same run, interleaved in blocks of 20 so
# that the machine's load falls on all alike. The client is bench_sandbox.mjs (node, raw
# JSON-RPC over the host's stdio; times from process.hrtime in that one process):
#   provision (run)   the host's run-open returned (it logs that moment with --debug, on the
#                     monotonic clock the client reads too; not a reference build's host) until the
#                     first tools/call result from a new worker in the run's sandbox: the
#                     builder (namespaces, root, workspace), the cgroup, the worker's start
#                     and its first call (initialize, initialized and echo.echo were written
#                     at once when the host started)
#   provision (host)  the same, from the spawn of agentbroker-mcp: a whole host start
#   teardown          SIGTERM (what the broker sends the host of a run that is closed or
#                     expires) until the host has exited: it exits after the run's processes
#                     are gone (SIGKILL through pidfds, each exit waited for), its cgroup is
#                     removed and the namespaces holding the workspace are closed
#   steady            sequential echo.echo calls on one host after a warm-up call (N*5 of them)
# for each mode:
#   sandboxed   this build, --profile bench (mounts, workspace, memory/pids/cpu, network none)
#   sandbox-nocpu  the same profile without its cpu limit (the run not in a cpu cgroup)
#   no-profile  this build without --profile: today's worker start without a run profile
#               (each worker still in its own pid namespace; no root, no cgroup)
#   reference   BENCH_REFERENCE_BUILD (e.g. a build of an older commit), when set; with this
#               build's worker program when that build has no real one
# and the kernel's floor: `unshare --fork --pid --mount --net --user true` spawned by the same
# client. agentbroker-egress is the build's (started only at a worker's first egress request:
# echo makes none). Needs root (a test broker) and node. Prints one table and `uptime`.
# Usage: tests/bench/run-bench-sandbox.sh [N]   (N provisions per mode, default 200; ABS_TOP_BUILDDIR: the build)
set -uo pipefail

N=${1:-200}
BLOCK=20
srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=$(cd "${ABS_TOP_BUILDDIR:-$PWD}" && pwd)
ref=${BENCH_REFERENCE_BUILD:-}
[ "$(id -u)" -eq 0 ] || { echo "run-bench-sandbox: needs root" >&2; exit 77; }
command -v node >/dev/null || { echo "run-bench-sandbox: needs node" >&2; exit 77; }
command -v jq >/dev/null || { echo "run-bench-sandbox: needs jq" >&2; exit 77; }
CLIENT=$srcdir/tests/bench/bench_sandbox.mjs

T=$(mktemp -d /tmp/ab-bench-sandbox.XXXXXX)
trap 'kill "$BROKER" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
mkdir -m 0755 "$T/modules" "$T/data"
install -m 0644 "$builddir/modules/.libs/echo.so" "$T/modules/"
cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "echo.*"
clients: { uids: [0] }
profiles:
  bench:
    mounts: [ { source: $T/data, target: /data } ]
    workspace: 16M
    memory: 256M
    pids: 64
    cpu: 1
    network: none
  bench-nocpu:
    mounts: [ { source: $T/data, target: /data } ]
    workspace: 16M
    memory: 256M
    pids: 64
    network: none
POLICY
"$builddir/agentbrokerd" --foreground --policy "$T/policy.yaml" --socket "$T/broker.sock" 2>"$T/broker.err" &
BROKER=$!
for _ in $(seq 50); do [ -S "$T/broker.sock" ] && break; sleep 0.1; done

worker_of() {  # the real worker binary of a build (never libtool's wrapper script)
	local b=$1
	for w in "$b/tests/bench/agentbroker-worker" "$b/tests/bin/agentbroker-worker" "$b/agentbroker-worker"; do
		[ -x "$w" ] && head -c 4 "$w" | grep -q ELF && { echo "$w"; return; }
	done
	# A reference build without check programs: its host with this build's real worker
	# program (the worker's own start is the same; the host's spawn is measured).
	if [ "$b" != "$builddir" ]; then worker_of "$builddir"; else echo "$b/agentbroker-worker"; fi
}
egress_of() {
	local b=$1
	for e in "$b/tests/bin/agentbroker-egress" "$b/agentbroker-egress"; do
		[ -x "$e" ] && head -c 4 "$e" | grep -q ELF && { echo "$e"; return; }
	done
	echo /nonexistent
}

# client MODE COUNT BUILD HOST-ARGS...: run bench_sandbox.mjs; appends its JSON line to $T/out.$MODE_NAME.
client() {
	local m=$1 count=$2 b=$3
	shift 3
	AGENTBROKER_WORKER=$(worker_of "$b") AGENTBROKER_EGRESS=$(egress_of "$b") \
		node "$CLIENT" "$m" "$count" -- "$b/agentbroker-mcp" --broker "$T/broker.sock" --modules "$T/modules" "$@" \
		2>>"$T/host.err" >>"$T/out.$NAME" || { echo "run-bench-sandbox: $NAME $m failed:" >&2; tail -n 20 "$T/host.err" >&2; exit 1; }
}

modes=(sandboxed sandbox-nocpu no-profile)
[ -n "$ref" ] && modes+=(reference)
args_of() {
	case $1 in
	sandboxed) B=$builddir; ARGS=(--profile bench) ;;
	sandbox-nocpu) B=$builddir; ARGS=(--profile bench-nocpu) ;;
	no-profile) B=$builddir; ARGS=() ;;
	reference) B=$ref; ARGS=() ;;
	esac
}
for ((done_ = 0; done_ < N; done_ += BLOCK)); do
	n=$((N - done_ < BLOCK ? N - done_ : BLOCK))
	for NAME in "${modes[@]}"; do
		args_of "$NAME"
		client provision "$n" "$B" "${ARGS[@]}"
	done
	NAME=floor
	node "$CLIENT" floor "$n" -- unshare --fork --pid --mount --net --user true >>"$T/out.floor" ||
		{ echo "run-bench-sandbox: unshare failed" >&2; exit 1; }
done
# Steady calls: each mode's host in turn, five blocks of N calls each.
for ((r = 0; r < 5; r++)); do
	for NAME in "${modes[@]}"; do
		args_of "$NAME"
		client steady "$N" "$B" "${ARGS[@]}"
	done
done

# stats NAME KEY: "median p99" in ms of every value of KEY in $T/out.NAME.
stats() {
	jq -s -r --arg k "$2" '[.[][$k] // empty | .[]] | sort | if length == 0 then "- -" else
		(length as $n | [.[(($n + 1) / 2 | floor) - 1], .[(($n * 0.99) | ceil) - 1]] | map(. / 1000 * 100 | round / 100) |
		"\(.[0]) \(.[1])") end' "$T/out.$1"
}
median() { jq -s -r --arg k "$2" '[.[][$k] // empty | .[]] | sort | .[((length + 1) / 2 | floor) - 1]' "$T/out.$1"; }

printf '%-13s %24s %24s %22s %26s\n' "" "provision run ms (med p99)" "provision host (med p99)" "teardown ms (med p99)" "steady call ms (med p99)"
for NAME in "${modes[@]}"; do
	printf '%-13s %24s %24s %22s %26s\n' "$NAME" "$(stats "$NAME" run)" "$(stats "$NAME" host)" "$(stats "$NAME" down)" "$(stats "$NAME" steady)"
done
printf '%-13s %24s %24s %22s %26s\n' floor "-" "$(stats floor floor)" "-" "-"
pct() { awk -v s="$(median "$1" steady)" -v u="$(median no-profile steady)" 'BEGIN { printf "%+.1f%%", (s / u - 1) * 100 }'; }
echo "($N provisions per mode, $((N * 5)) steady calls per mode; steady median vs no-profile: sandboxed $(pct sandboxed), sandbox-nocpu $(pct sandbox-nocpu);" \
	"host errors: $(grep -c -E 'error|refusing' "$T/host.err") lines; load: $(uptime | sed 's/.*load average/load average/'))"
