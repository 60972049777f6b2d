#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-egress.sh — what agentbroker-egress adds on loopback (issue 12's targets:
# ≤ 1 ms p50 added for a connection grant, ≤ 2 ms for an injected HTTP request).
#
# Starts agentbrokerd from the build directory (full auditing: every grant and request writes
# egress-connect, egress-close/egress-http and secret-use records), a plain HTTP and TCP echo
# server on 127.0.0.1 (tests/integration/egress-server.py) and tests/bench/bench_egress, which
# begins one call and speaks a worker's side of the channel to a real agentbroker-egress:
# egress-http vs libcurl directly against the same server, and connection grants vs connect(),
# alternated in the same run. Prints bench_egress's JSON line. Arguments: [--requests N].
# Exit status: 0 measured, 1 failed, 77 when not root.
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "run-bench-egress: skipped: needs root (audit records)"; exit 77; }
egress=$builddir/tests/bin/agentbroker-egress
[ -x "$egress" ] || egress=$builddir/agentbroker-egress
client=$builddir/tests/bench/bench_egress
[ -x "$client" ] || { echo "run-bench-egress: $client is not built (make check builds it)"; exit 1; }

T=$(mktemp -d /tmp/ab-bench-egress.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
bash "$srcdir/scripts/start-services" >/dev/null 2>&1 || true

python3 "$srcdir/tests/integration/egress-server.py" - - "$T" 2>"$T/server.err" &
pids+=($!)
for _ in $(seq 50); do [ -s "$T/ports" ] && break; sleep 0.1; done
read -r HTTP TCP <"$T/ports"
cat >"$T/policy.yaml" <<POLICY
secrets:
  api_key: { env: AB_BENCH_KEY }
tools:
  - match: "bench.net"
    secrets: { api_key: [inject] }
    egress:
      - scheme: http
        host: 127.0.0.1
        port: $HTTP
        paths: [/v1/]
        inject: { secret: api_key, header: Authorization, value: "Bearer {secret}" }
      - { scheme: tcp, host: 127.0.0.1, port: $TCP }
tokens: { max_uses: 1000000, ttl_s: 300 }
clients: { uids: [0] }
POLICY
AB_BENCH_KEY="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
	"$builddir/agentbrokerd" --foreground --policy "$T/policy.yaml" --socket "$T/broker.sock" \
	>"$T/broker.out" 2>"$T/broker.err" &
pids+=($!)
for _ in $(seq 50); do [ -S "$T/broker.sock" ] && break; sleep 0.1; done
echo "# egress benchmark: HTTP on 127.0.0.1:$HTTP (python http.server), TCP echo on 127.0.0.1:$TCP, $(nproc) CPUs"
"$client" --broker "$T/broker.sock" --egress "$egress" --http-port "$HTTP" --tcp-port "$TCP" "$@"
