#!/usr/bin/env bash
# tests/bench/run-bench-sandbox.sh — what a run sandbox costs (issue 11, docs/architecture.md
# "Run sandboxes"), N times each (default 200), median and p99, all in one run:
#   provision  a host started with --profile (run-open, the builder, the cgroup, the first
#              worker in the sandbox) until the first tools/call result: stdin written at
#              once (initialize, initialized, echo.echo), time to the call's response line
#   teardown   the same host's stdin closed until it has exited: its cgroup killed and
#              removed, the namespaces and the workspace gone, run-close with the report
#   steady     sequential echo.echo calls on one host (after a warm-up call)
# each for:
#   sandboxed  this build with --profile bench (mounts, workspace, memory/pids/cpu, network none)
#   ns-only    this build without --profile (every worker in its own pid namespace)
#   reference  BENCH_REFERENCE_BUILD (e.g. a build of main: workers with no namespace), when set;
#              with this build's worker program when that build has no real one
# and the kernel's floor: `unshare --fork --pid --mount --net --user true`.
# The client is this bash script (one read per response line): its own cost is in every
# number alike. Needs root (a test broker with audit); prints one table.
# Usage: tests/bench/run-bench-sandbox.sh [N]   (ABS_TOP_BUILDDIR: the build; default ./)
set -uo pipefail

N=${1:-200}
srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=$(cd "${ABS_TOP_BUILDDIR:-$PWD}" && pwd)
ref=${BENCH_REFERENCE_BUILD:-}
[ "$(id -u)" -eq 0 ] || { echo "run-bench-sandbox: needs root" >&2; exit 77; }

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
POLICY
"$builddir/agentbrokerd" --foreground --policy "$T/policy.yaml" --socket "$T/broker.sock" 2>"$T/broker.err" &
BROKER=$!
for _ in $(seq 50); do [ -S "$T/broker.sock" ] && break; sleep 0.1; done

worker_of() {  # the real worker binary of a build (never libtool's wrapper script)
	local b=$1
	for w in "$b/tests/bench/agentbroker-worker" "$b/tests/bin/agentbroker-worker" "$b/agentbroker-worker"; do
		[ -x "$w" ] && head -c 4 "$w" | grep -q ELF && { echo "$w"; return; }
	done
	# A reference build without check programs (a build of main): its host with this build's
	# real worker program (the worker's own start is the same; the host's spawn is measured).
	if [ "$b" != "$builddir" ]; then worker_of "$builddir"; else echo "$b/agentbroker-worker"; fi
}

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
INITED='{"jsonrpc":"2.0","method":"notifications/initialized"}'
callmsg() { printf '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo.echo","arguments":{"text":"x"}}}' "$1"; }

# one_host BUILD ARGS...: provision + teardown of one host; appends to $T/prov and $T/down.
one_host() {
	local b=$1 line t0 t1 t2
	shift
	t0=$(now_us)
	coproc H { AGENTBROKER_WORKER=$(worker_of "$b") exec "$b/agentbroker-mcp" --broker "$T/broker.sock" --modules "$T/modules" "$@" 2>>"$T/host.err"; }
	printf '%s\n%s\n%s\n' "$INIT" "$INITED" "$(callmsg 2)" >&"${H[1]}"
	while IFS= read -r -u "${H[0]}" line; do [[ $line == *'"id":2'* ]] && break; done
	t1=$(now_us)
	eval "exec ${H[1]}>&-"
	wait "$H_PID"
	t2=$(now_us)
	echo $((t1 - t0)) >>"$T/prov.$MODE"
	echo $((t2 - t1)) >>"$T/down.$MODE"
}

# steady BUILD ARGS...: N sequential calls on one host; appends per-call µs to $T/steady.
steady() {
	local b=$1 line t0 i
	shift
	coproc H { AGENTBROKER_WORKER=$(worker_of "$b") exec "$b/agentbroker-mcp" --broker "$T/broker.sock" --modules "$T/modules" "$@" 2>>"$T/host.err"; }
	printf '%s\n%s\n%s\n' "$INIT" "$INITED" "$(callmsg 2)" >&"${H[1]}"
	while IFS= read -r -u "${H[0]}" line; do [[ $line == *'"id":2'* ]] && break; done
	for ((i = 10; i < N + 10; i++)); do
		t0=$(now_us)
		callmsg $i >&"${H[1]}"
		echo >&"${H[1]}"
		while IFS= read -r -u "${H[0]}" line; do [[ $line == *"\"id\":$i"* ]] && break; done
		echo $(($(now_us) - t0)) >>"$T/steady.$MODE"
	done
	eval "exec ${H[1]}>&-"
	wait "$H_PID"
}

# stats FILE: "median p99" in ms.
stats() {
	[ -s "$1" ] || { echo "- -"; return; }
	sort -n "$1" | awk '{ v[NR] = $1 } END { m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.99 + 0.999)];
		printf "%.2f %.2f", m / 1000, p / 1000 }'
}

modes=(sandboxed ns-only)
[ -n "$ref" ] && modes+=(reference)
for MODE in "${modes[@]}"; do
	case $MODE in
	sandboxed) b=$builddir; args=(--profile bench) ;;
	ns-only) b=$builddir; args=() ;;
	reference) b=$ref; args=() ;;
	esac
	for ((k = 0; k < N; k++)); do one_host "$b" "${args[@]}"; done
	steady "$b" "${args[@]}"
done
MODE=floor
for ((k = 0; k < N; k++)); do
	t0=$(now_us)
	unshare --fork --pid --mount --net --user true
	echo $(($(now_us) - t0)) >>"$T/prov.floor"
done

printf '%-10s %22s %22s %22s\n' "" "provision ms (med p99)" "teardown ms (med p99)" "steady call ms (med p99)"
for MODE in "${modes[@]}" floor; do
	printf '%-10s %22s %22s %22s\n' "$MODE" "$(stats "$T/prov.$MODE")" "$(stats "$T/down.$MODE")" "$(stats "$T/steady.$MODE")"
done
echo "($N runs each; host errors: $(grep -c -E 'error|refusing' "$T/host.err") lines)"
