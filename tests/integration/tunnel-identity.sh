#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A tool must not be able to mint the sandbox's tunnel dial credential (issue 10, finding 4).
# The attack: a policy that grants the tunnel identity key to sign.* let sign.jwt, with the
# control plane's URL as audience, return a JWT the control plane accepted as a dial. Now:
#   - the policy loader refuses any grant of tunnel.identity to a tool, and a second secret that
#     loads the same source (file:line:column errors; policy check and the broker both refuse);
#   - dial JWTs (identity-jwt) carry the JOSE typ agentbroker-dial+jwt, which mint-jwt never
#     sets; the reference control plane (tests/tunnel/controlplane.mjs, verifyJwt) requires it,
#     iss and sub: with a hand-made policy the loader cannot see through (the tools' key is a
#     copy of the identity key file), the tool-minted JWT verifies by signature but is refused,
#     while the broker's dial JWT is accepted.
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TUNNEL_DIR=$ABS_TOP_SRCDIR/tests/tunnel
URL="wss://127.0.0.1:9/mcp"

require_root
require_services
require_tools jq node openssl
require_built "$MCP" "$WORKER" "$ABCLIENT"
[ -f "$MODDIR/sign.so" ] || unmet "$MODDIR/sign.so is not built"
require_node_modules ws @modelcontextprotocol/sdk

setup_testdir
mkdir -m 0755 "$T/modules"
mkdir -m 0700 "$T/keys"
install -m 0755 "$MODDIR/sign.so" "$T/modules/"
openssl genpkey -algorithm ed25519 -out "$T/keys/identity" 2>/dev/null
chmod 0600 "$T/keys/identity"

# 1. The attack as the default policy used to write it: refused by the loader.
cat >"$T/grant.yaml" <<POLICY
secrets:
  identity: { file: $T/keys/identity, type: ed25519 }
tools:
  - match: "sign.*"
    secrets:
      identity: [sign, mint-jwt]
tunnel: { identity: identity, sandbox_id: sandbox-t1 }
POLICY
out=$(ctl policy check "$T/grant.yaml" 2>&1)
rc=$?
isnt "$rc" 0 "policy check refuses a grant of the tunnel identity to a tool"
like "$out" "grant.yaml:6:7: secret 'identity' is the tunnel identity \(tunnel.identity\): it cannot be granted to tools" \
	"with a file:line:column error"
cp "$T/keys/identity" "$T/keys/same"
cat >"$T/alias.yaml" <<POLICY
secrets:
  identity: { file: $T/keys/identity, type: ed25519 }
  tool_key: { file: $T/keys/identity, type: ed25519 }
tools:
  - match: "sign.*"
    secrets: { tool_key: [sign, mint-jwt] }
tunnel: { identity: identity, sandbox_id: sandbox-t1 }
POLICY
out=$(ctl policy check "$T/alias.yaml" 2>&1)
like "$out" "alias.yaml:3:3: secret 'tool_key' loads the same key as the tunnel identity 'identity'" \
	"and a second name for the identity key's source"

# 2. A policy the loader cannot see through: the tools' key is a copy of the identity key.
cat >"$T/policy.yaml" <<POLICY
secrets:
  identity: { file: $T/keys/identity, type: ed25519 }
  tool_key: { file: $T/keys/same, type: ed25519 }
tools:
  - match: "sign.*"
    secrets: { tool_key: [sign, mint-jwt] }
modules:
  sign: { jwt_key: tool_key }
clients: { uids: [0] }
tunnel: { identity: identity, sandbox_id: sandbox-t1 }
POLICY
start_broker "$T/policy.yaml"
ctl identity --json >"$T/identity.json" || bail_out "agentbrokerctl identity failed"

mcp_start
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"tunnel-identity.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
r=$(call 1 sign.jwt "{\"audience\":\"$URL\",\"ttl\":60}")
tool_jwt=$(jq -r '.result.content[0].text // empty' <<<"$r")
like "$tool_jwt" '^ey[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "sign.jwt mints a JWT for the control plane's URL"
mcp_stop

dial_jwt=$("$ABCLIENT" --socket "$SOCK" "{\"op\":\"identity-jwt\",\"audience\":\"$URL\",\"session\":\"s1\"}" | jq -r '.jwt // empty')
like "$dial_jwt" '^ey' "identity-jwt mints the broker's dial JWT"

# verify JWT: the reference control plane's verdicts (null = accepted) with the registered
# sandbox id as expected issuer and without one (the checks the docs used to list: signature,
# aud, exp, jti), and whether the JWT's signature alone checks out against the identity key.
verify() {
	JWT=$1 IDENTITY=$T/identity.json URL=$URL node --input-type=module -e "
import crypto from 'node:crypto';
import fs from 'node:fs';
import { verifyJwt } from '$TUNNEL_DIR/controlplane.mjs';
const id = JSON.parse(fs.readFileSync(process.env.IDENTITY, 'utf8'));
const publicKey = crypto.createPublicKey({ key: id.jwk, format: 'jwk' });
const [h, p, s] = process.env.JWT.split('.');
const sig = crypto.verify(null, Buffer.from(h + '.' + p), publicKey, Buffer.from(s, 'base64url'));
const opts = { publicKey, audience: process.env.URL, seen: new Set() };
const why = verifyJwt(process.env.JWT, { ...opts, issuer: id.sandbox_id });
const anyIssuer = verifyJwt(process.env.JWT, { ...opts, seen: new Set() });
console.log(JSON.stringify({ signature: sig, verdict: why, any_issuer: anyIssuer }));
"
}
v=$(verify "$dial_jwt")
is "$(jq -c . <<<"$v")" '{"signature":true,"verdict":null,"any_issuer":null}' \
	"the reference control plane accepts the broker's dial JWT"
v=$(verify "$tool_jwt")
is "$(jq -r .signature <<<"$v")" true "the tool-minted JWT carries a valid signature of the identity key (the copy)"
is "$(jq -r .any_issuer <<<"$v")" typ "but the control plane refuses it, even with no sandbox id to compare: no dial typ"
is "$(jq -r .verdict <<<"$v")" typ "and with the registered sandbox id"
hdr=$(cut -d. -f1 <<<"$tool_jwt" | tr '_-' '/+' | base64 -d 2>/dev/null)
is "$(jq -r .typ <<<"$hdr" 2>/dev/null)" JWT "a tool-minted JWT has typ JWT"
hdr=$(cut -d. -f1 <<<"$dial_jwt" | tr '_-' '/+' | base64 -d 2>/dev/null)
is "$(jq -r .typ <<<"$hdr" 2>/dev/null)" agentbroker-dial+jwt "a dial JWT has typ agentbroker-dial+jwt"

stop_broker
done_testing
