#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/conformance/run.sh — the MCP conformance suite: agentbroker-mcp driven over stdio by the
# official MCP TypeScript SDK clients (@modelcontextprotocol/sdk 1.x for the 2025-11-25 session,
# @modelcontextprotocol/client 2.x for 2026-07-28), pinned by tests/package-lock.json and installed by
# scripts/setup (npm ci in tests/). The cases are in conformance.test.mjs; node's test runner prints them
# as TAP, passed through as they are, one TAP test per case.
#
# It starts its own agentbrokerd from the build with a policy allowing the shipped modules and
# the test modules hang and crash, secrets for sign, an fs root with a few files and a JWKS
# file; the host loads the build's modules (modules/.libs and tests/modules/.libs).
. "$(dirname "$0")/../integration/lib.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
# The worker as a real executable (tests/bin, built by make check), else the libtool wrapper.
WORKER=$ABS_TOP_BUILDDIR/tests/bin/agentbroker-worker
[ -x "$WORKER" ] || WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs

require_root
require_services
require_tools node
require_built "$MCP" "$WORKER"
for m in "$MODDIR/echo.so" "$MODDIR/fs.so" "$MODDIR/sign.so" "$TMODDIR/hang.so" "$TMODDIR/crash.so"; do
	[ -f "$m" ] || unmet "$m is not built (make check builds the test modules)"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
# Checked with node 20 and with Debian 12's nodejs 18.20.4 (the SDK packages declare node >= 20
# for their server parts, which the suite does not load).
[ "$node_major" -ge 18 ] || unmet "node $(node --version) is too old: the MCP SDK clients need node >= 18"
# The installed packages must be the pinned ones (scripts/setup runs npm ci in tests/).
require_node_modules @modelcontextprotocol/client @modelcontextprotocol/sdk

setup_testdir
# The fs module's root: a text file, a nested one, a binary file.
mkdir -p "$T/root/sub"
printf 'hello from the conformance suite\nsecond line\n' >"$T/root/hello.txt"
printf 'nested file\n' >"$T/root/sub/nested.txt"
printf '\x00\x01\x02binary\xff' >"$T/root/blob.bin"

HMAC_SECRET=$(unique_id)$(unique_id)
cat >"$T/policy.yaml" <<EOF
secrets:
  conf_hmac: { env: AB_CONF_HMAC }
  conf_identity: { env: AB_CONF_ED25519, type: ed25519 }
tools:
  - match: "echo.*"
  - match: "fs.*"
  - match: "hang.*"
  - match: "crash.*"
  - match: "sign.hmac_sha256"
    secrets: { conf_hmac: [sign] }
  - match: "sign.jwt"
    secrets: { conf_identity: [mint-jwt] }
modules:
  # structured_output: the SDK clients check fs's structuredContent against its outputSchema
  fs: { roots: [$T/root], structured_output: true }
  sign: { jwt_key: conf_identity }
jwt: { issuer: agentbroker-conformance, max_ttl_s: 600, jwks_file: $T/jwks.json }
clients: { uids: [0] }
EOF
# The broker reads the secrets from its environment (and drops them from it).
AB_CONF_HMAC=$HMAC_SECRET AB_CONF_ED25519=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n') \
	start_broker "$T/policy.yaml"
wait_for 10 test -s "$T/jwks.json" || bail_out "the broker did not write its JWKS file $T/jwks.json"

export AB_MCP=$MCP AB_WORKER=$WORKER AB_SOCK=$SOCK AB_MODULES=$MODDIR:$TMODDIR AB_FS_ROOT=$T/root
export AB_HMAC_KEY=conf_hmac AB_HMAC_SECRET=$HMAC_SECRET AB_JWKS=$T/jwks.json
export AB_TOOLS=crash.segv,echo.echo,fs.grep,fs.list_dir,fs.read_file,fs.read_json,fs.search,fs.stat,fs.summarize_log,fs.tree,hang.forever,hang.progress,hang.slow,sign.hmac_sha256,sign.jwt

# node's TAP goes to stdout as it is. Its exit status is not ours: failures are already counted
# by their "not ok" lines; only a run that failed without saying why is an error.
cd "$HERE" || bail_out "cannot cd to $HERE"
node --test --test-reporter=tap conformance.test.mjs | tee "$T/node.tap"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/node.tap"; then
	echo "Bail out! node --test exited with status $rc without a failing test"
	exit 1
fi
# The broker must stop cleanly (lib.sh's exit handler makes the exit status 1 otherwise).
exit 0
