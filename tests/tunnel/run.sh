#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The tunnel tests (docs/tunnel.md): a real broker with a tunnel identity, agentbroker-mcp
# --tunnel dialling the reference control plane (tests/tunnel/controlplane.mjs) through the
# fault proxy (faultproxy.mjs) over loopback TLS with a CA and server certificate made here
# with openssl. tunnel.test.mjs prints TAP. Needs root, auditd/journald (lib.sh), node and
# ws and the MCP SDK in tests/node_modules (scripts/setup: npm ci in tests/).
. "$ABS_TOP_SRCDIR/tests/integration/lib.sh" 2>/dev/null || . "$(dirname "$0")/../integration/lib.sh"

MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
WORKER=$ABS_TOP_BUILDDIR/tests/bin/agentbroker-worker
[ -x "$WORKER" ] || WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
HERE=$ABS_TOP_SRCDIR/tests/tunnel

require_root
require_services
require_tools node openssl jq journalctl
require_built "$MCP" "$WORKER"
require_node_modules ws @modelcontextprotocol/sdk
[ -f "$ABS_TOP_BUILDDIR/tests/modules/.libs/effect.so" ] || unmet "the test module effect.so is not built"

setup_testdir
mkdir -m 0700 "$T/creds" "$T/mods"
mkdir -p "$T/root"
printf 'hello through the tunnel\n' >"$T/root/hello.txt"
cp "$ABS_TOP_BUILDDIR"/modules/.libs/{echo,fs,sign}.so "$ABS_TOP_BUILDDIR/tests/modules/.libs/effect.so" "$T/mods/"
chmod 0644 "$T"/mods/*.so
openssl rand -hex 32 | tr -d '\n' >"$T/creds/sign_hmac"
openssl genpkey -algorithm ed25519 -out "$T/creds/identity" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$T/creds/sign_key" 2>/dev/null
chmod 0400 "$T"/creds/*

# A CA, a server certificate for 127.0.0.1 signed by it, and a second CA nobody trusts.
bash "$HERE/make-certs.sh" "$T" || bail_out "openssl could not make the test certificates"

cat >"$T/policy.yaml" <<POLICY
secrets:
  sign_hmac: { credential: sign_hmac, type: bytes }
  identity: { credential: identity, type: ed25519 }
  sign_key: { credential: sign_key, type: ed25519 }
tools:
  - match: "echo.*"
    max_result_bytes: 1048576
    max_args_bytes: 262144
  - match: "effect.*"
    timeout_ms: 60000
  - match: "fs.*"
  - match: "sign.*"
    secrets:
      sign_hmac: [sign]
      sign_key: [sign, mint-jwt]
modules:
  fs: { roots: [$T/root] }
  sign: { jwt_key: sign_key }
clients: { uids: [0] }
tunnel: { identity: identity, sandbox_id: sandbox-test-1 }
POLICY
CREDENTIALS_DIRECTORY=$T/creds start_broker "$T/policy.yaml"
if ! "$CTL" --socket "$SOCK" identity --json >"$T/identity.json"; then
	diag "agentbrokerd's stderr:"
	diag "$(tail -n 40 "$BROKER_ERR")"
	bail_out "agentbrokerctl identity failed"
fi

export T SOCK MCP WORKER CTL
export MODDIR=$T/mods
cd "$HERE" && node "${TUNNEL_TEST:-tunnel.test.mjs}"
