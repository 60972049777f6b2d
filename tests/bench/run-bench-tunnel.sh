#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-tunnel.sh — the MCP tunnel benchmark (`make bench`, after the MCP
# host's): round-trip latency and throughput of echo.echo over agentbroker-mcp --tunnel on
# loopback TLS, and the bytes on the wire per call (tests/bench/bench_tunnel.mjs says what
# is measured and how).
#
# Starts auditd and journald (scripts/start-services: full auditing), makes a CA and a server
# certificate for 127.0.0.1 (openssl) and the sandbox's Ed25519 identity key, writes a
# temporary policy (echo.* allowed, no run budget, the tunnel identity; clients: root), starts
# agentbrokerd from the build directory in the foreground with the key in its credentials
# directory, and gives the host a module directory holding only the build's echo.so. The host
# and worker are real binaries, as in run-bench-mcp.sh. The control plane is a lean Node
# WebSocket server (the `ws` package of tests/node_modules, pinned by tests/package-lock.json)
# that verifies the dial JWT with tests/tunnel/controlplane.mjs's verifyJwt and drives raw
# JSON-RPC (not the MCP SDK's Client).
#
# Arguments go to bench_tunnel.mjs, e.g.  tests/bench/run-bench-tunnel.sh --calls 1000
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory). After the run: the broker must stop cleanly, the journal must hold one
# tool-call-begin and one tool-call-end entry of the broker per call made, the kernel must have
# lost no audit record; these checks are added to bench_tunnel.mjs's JSON line, printed last.
# Exit status: bench_tunnel.mjs's (0 measured, 1 failed); 77 when not root.
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
ctl=$builddir/agentbrokerctl
tunnel=$srcdir/tests/tunnel
BENCH_NAME=run-bench-tunnel
. "$srcdir/tests/bench/lib.sh"
. "$srcdir/tests/bench/lib-mcp.sh"

bench_require_root "audit records, journald, the broker's credentials"

bench_find_host
[ -x "$ctl" ] || die "$ctl not found: build first (make)"
command -v openssl >/dev/null || die "openssl not found"
bench_require_node_sdk ws

# --- auditd and journald ---------------------------------------------------------------------
bench_start_services
bench_watch_audit

# --- certificates, identity, policy, broker --------------------------------------------------
bench_tmpdir
mkdir -m 0700 "$tmp/creds"
openssl genpkey -algorithm ed25519 -out "$tmp/creds/identity" 2>/dev/null
chmod 0400 "$tmp/creds/identity"
bash "$tunnel/make-certs.sh" "$tmp" || die "openssl could not make the certificates"
bench_echo_setup "secrets:
  identity: { credential: identity, type: ed25519 }
tunnel: { identity: identity, sandbox_id: bench-sandbox }"

export CREDENTIALS_DIRECTORY=$tmp/creds
bench_start_broker "$tmp/policy.yaml"
unset CREDENTIALS_DIRECTORY
"$ctl" --socket "$sock" identity --json >"$tmp/identity.json" || die "agentbrokerctl identity failed"
bench_say_started "; modules: echo.so"

# --- the benchmark -------------------------------------------------------------------------------
# The scripts run from a copy beside a link to tests/node_modules.
mkdir "$tmp/js"
cp "$srcdir/tests/bench/bench_tunnel.mjs" "$tunnel/controlplane.mjs" "$tmp/js/"
ln -s "$srcdir/tests/node_modules" "$tmp/js/node_modules"
AB_JWK=$(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1])).jwk))' "$tmp/identity.json")
AB_SANDBOX_ID=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).sandbox_id)' "$tmp/identity.json")
export AB_JWK AB_SANDBOX_ID AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock \
	AB_MODULES=$tmp/modules AB_CERT=$tmp/server.pem AB_KEY=$tmp/server.key AB_CA=$tmp/ca.pem
# Its text is shown as it comes; its JSON line is held back and printed last, with the checks
# made after the run (journal entries, audit records lost, journald rate limiting) added.
set +e
node "$tmp/js/bench_tunnel.mjs" "$@" | tee "$tmp/bench.out" | grep --line-buffered -v '^{"bench"'
status=${PIPESTATUS[0]}
set -e

# --- the broker, the journal, the audit backlog ---------------------------------------------------
bench_finish "$tmp/bench.out" "" calls_done
exit "$status"
