#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Egress (docs/architecture.md, "Egress"; docs/policy.md, "egress"), end to end with the real
# broker, auditd, journald, agentbroker-egress and servers on loopback started here
# (egress-server.py: HTTPS with a test CA that records every request, and a TCP echo server):
#   - a module's own socket() gets EPERM (the worker's seccomp filter), so its only network
#     is what agentbroker-egress hands it;
#   - a TCP grant to an allowed destination works and is audited (egress-connect, then
#     egress-close with the bytes); a destination not in the rules, and a name that resolves
#     to loopback without a rule naming the range, are refused and audited; with
#     `addresses: [127.0.0.0/8]` the same name is allowed;
#   - an HTTPS request with an injected secret: the server receives the right Authorization
#     header; the secret is in no tool result (the server's echo of it comes back redacted),
#     not in the worker's memory saved during a call, not in the host's log, the
#     journal or the audit log; egress-http and secret-use sop=inject are audited;
#   - path and method rules; a redirect outside the rules is not followed, one inside is;
#     an oversize body is cut (truncated=1); a slow server is cut at the timeout;
#   - the http module: a named endpoint with typed parameters and field selection on a 40 KB
#     JSON answer (bytes before and after are reported).
. "$(dirname "$0")/lib.sh"

TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs

require_root
require_services
require_tools jq od timeout pgrep openssl python3
require_built "$MCP" "$WORKER" "$EGRESS"
[ -f "$TMODDIR/netprobe.so" ] || unmet "$TMODDIR/netprobe.so is not built (make check builds the test modules)"

setup_testdir
mkdir -m 0755 "$T/modules" "$T/srv"
install -m 0755 "$TMODDIR/netprobe.so" "$T/modules/"
[ -f "$MODDIR/http.so" ] && install -m 0755 "$MODDIR/http.so" "$T/modules/"
bash "$ABS_TOP_SRCDIR/tests/tunnel/make-certs.sh" "$T/srv" || bail_out "cannot make the test certificates"
python3 "$ABS_TOP_SRCDIR/tests/integration/egress-server.py" "$T/srv/server.pem" "$T/srv/server.key" "$T/srv" \
	2>"$T/srv/server.err" &
SRV_PID=$!
add_cleanup kill "$SRV_PID"
wait_for 10 test -s "$T/srv/ports" || bail_out "the test servers did not start: $(cat "$T/srv/server.err")"
read -r HTTPS TCP <"$T/srv/ports"
export SSL_CERT_FILE=$T/srv/ca.pem
API_KEY="sk-egress-$(unique_id)$(unique_id)"

cat >"$T/policy.yaml" <<POLICY
secrets:
  api_key: { env: AB_TEST_API_KEY }
tools:
  - match: "netprobe.a"
    secrets: { api_key: [inject] }
    egress:
      - { scheme: tcp, host: 127.0.0.1, port: $TCP }
      - { scheme: tcp, host: localhost, port: $TCP }
      - scheme: https
        host: 127.0.0.1
        port: $HTTPS
        methods: [GET, HEAD]
        paths: [/v1/]
        inject: { secret: api_key, header: Authorization, value: "Bearer {secret}" }
        max_response_bytes: 65536
        timeout_ms: 2000
      - { scheme: https, host: localhost, port: $HTTPS, paths: [/v1/] }
  - match: "netprobe.b"
    egress:
      - { scheme: tcp, host: localhost, port: $TCP, addresses: [127.0.0.0/8] }
      - { scheme: https, host: localhost, port: $HTTPS, paths: [/v1/], addresses: [127.0.0.0/8] }
  - match: "http.*"
    secrets: { api_key: [inject] }
    egress:
      - scheme: https
        host: 127.0.0.1
        port: $HTTPS
        paths: [/v1/items/]
        inject: { secret: api_key, header: Authorization, value: "Bearer {secret}" }
modules:
  http:
    endpoints:
      - name: get_item
        description: "Fetch one item by id."
        method: GET
        url: "https://127.0.0.1:$HTTPS/v1/items/{id}"
        params:
          - { name: id, type: integer, minimum: 1, maximum: 1000000, description: "the item's id" }
        fields: [id, name, owner.login]
clients: { uids: [0] }
POLICY
AB_TEST_API_KEY=$API_KEY start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID); servers on https $HTTPS, tcp $TCP"

mcp_start
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"egress.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"

# probe ID TOOL ARGS: the text of a netprobe call.
probe() {
	local r
	r=$(call "$1" "netprobe.$2" "$3")
	jq -r '.result.content[0].text // .error.message' <<<"$r" | tee -a "$T/results.txt"
}

# --- a module's own network --------------------------------------------------------------------
is "$(probe 1 a "{\"op\":\"raw\",\"host\":\"127.0.0.1\",\"port\":$TCP}")" "raw rc=-1 errno=EPERM step=socket" \
	"the module's own socket(AF_INET) is refused (EPERM): it has no network of its own"

# --- TCP grants ----------------------------------------------------------------------------------
is "$(probe 2 a "{\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":$TCP,\"send\":\"hello\"}")" \
	"connect rc=0 reply=echo:hello" "a granted TCP connection to 127.0.0.1:$TCP works (the echo server answers)"
rec=$(audit_find egress-connect "tool=\"netprobe.a\"" "port=$TCP" 'res=success') || true
is "$(audit_field "$rec" address)" 127.0.0.1 "egress-connect res=success records host, port and the address connected to"
rec=$(audit_find egress-close "tool=\"netprobe.a\"" "port=$TCP") || true
is "$(audit_field "$rec" sent):$(audit_field "$rec" received)" "5:10" \
	"egress-close records the connection's bytes when the call ends (5 sent, 10 received)"
like "$(probe 3 a "{\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":$HTTPS}")" "errno=EPERM denial=egress-not-allowed" \
	"a destination not in the rules (tcp to the HTTPS port) is refused"
ok "... and audited (egress-connect res=failed reason=egress-not-allowed)" \
	audit_find egress-connect "tool=\"netprobe.a\"" "port=$HTTPS" 'reason="egress-not-allowed"' 'res=failed'
like "$(probe 4 a "{\"op\":\"connect\",\"host\":\"localhost\",\"port\":$TCP}")" "errno=EPERM denial=address-private" \
	"a name that resolves to loopback is refused without a rule naming the range (address-private)"
ok "... and audited (reason=address-private)" audit_find egress-connect "tool=\"netprobe.a\"" 'host="localhost"' 'reason="address-private"'
is "$(probe 5 b "{\"op\":\"connect\",\"host\":\"localhost\",\"port\":$TCP,\"send\":\"b\"}")" "connect rc=0 reply=echo:b" \
	"the same name is allowed by a rule with addresses: [127.0.0.0/8] (connected to the checked address)"

# --- HTTPS with an injected secret ---------------------------------------------------------------
out=$(probe 10 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/v1/whoami?x=1\"}")
like "$out" "http rc=0 status=200" "an HTTPS request through agentbroker-egress (test CA) answers 200"
is "$(jq -r 'select(.path | startswith("/v1/whoami")) | .headers.Authorization' "$T/srv/requests.jsonl" | head -n 1)" \
	"Bearer $API_KEY" "the server received Authorization: Bearer <the secret> (injected from the policy)"
like "$out" '"auth": "Bearer \[redacted\]"' "the server's echo of the secret comes back redacted"
like "$out" '"auth_b64": "\[redacted\]"' "... its base64 form too"
like "$out" '"auth_hex": "\[redacted\]"' "... and its hex form"
unlike "$out" "$(printf %s "$API_KEY" | base64 -w0 | tr -d =)" "the module never sees the secret's base64"
like "$out" "redactions=3" "... and the response says so (redactions=3)"
rec=$(audit_find egress-http 'path="/v1/whoami"' 'http_status=200') || true
is "$(audit_field "$rec" method):$(audit_field "$rec" secret):$(audit_field "$rec" sop)" "GET:api_key:inject" \
	"egress-http records method, host, path without the query, status, bytes, duration, secret name, sop=inject"
unlike "$rec" "x=1" "... and never the query string"
ok "secret-use sop=inject is audited" audit_find secret-use "tool=\"netprobe.a\"" 'sop="inject"'

like "$(probe 11 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/admin\"}")" "denial=path-not-allowed" \
	"a path outside the entry's prefixes is refused"
like "$(probe 12 a "{\"op\":\"http\",\"method\":\"DELETE\",\"url\":\"https://127.0.0.1:$HTTPS/v1/ok\"}")" \
	"denial=method-not-allowed" "a method the entry does not list is refused"
like "$(probe 13 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/v1/../admin\"}")" "denial=path-" \
	"a dot segment cannot leave the path prefix"
like "$(probe 14 a "{\"op\":\"http\",\"url\":\"https://localhost:$HTTPS/v1/ok\"}")" "denial=address-private" \
	"HTTPS to a name that resolves to loopback: refused without an addresses rule"
like "$(probe 15 b "{\"op\":\"http\",\"url\":\"https://localhost:$HTTPS/v1/ok\"}")" "http rc=0 status=200" \
	"... allowed with addresses: [127.0.0.0/8]"
before=$(grep -c '"/v1/ok"' "$T/srv/requests.jsonl")
like "$(probe 16 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/v1/redirect?to=https://localhost:$HTTPS/v1/ok\"}")" \
	"denial=address-private" "a redirect to a destination outside the rules is not followed"
is "$(grep -c '"/v1/ok"' "$T/srv/requests.jsonl")" "$before" "... the redirect's target got no request"
like "$(probe 17 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/v1/redirect?to=/v1/ok\"}")" \
	"http rc=0 status=200" "a redirect inside the rules is followed (checked like the first request)"
like "$(probe 18 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/v1/big?n=300000\"}")" \
	"status=200 bytes=65536 received=[0-9]+ truncated=1" "a 300 KB body is cut at max_response_bytes (65536) and marked truncated"
t0=$(date +%s%N)
like "$(probe 19 a "{\"op\":\"http\",\"url\":\"https://127.0.0.1:$HTTPS/v1/slow?s=6\"}")" "errno=ETIMEDOUT denial=timeout" \
	"a slow server (6 s) is cut at the entry's timeout_ms (2000)"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "... after $ms ms, not 6 s" test "$ms" -lt 5500
ok "egress-http records reason=timeout" audit_find egress-http 'path="/v1/slow"' 'reason="timeout"'

# --- the secret is nowhere the module or the logs can see -----------------------------------------
WPID=$(worker_of netprobe)
printf '{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"netprobe.a","arguments":{"op":"http","url":"https://127.0.0.1:%s/v1/slow?s=1.5&marker=GCOREMARK"}}}\n' \
	"$HTTPS" >&"$MCP_IN"
sleep 0.5
# The worker's whole memory during the call. gcore (gdb) hangs attaching to a seccomp-confined
# worker on the test VMs, so the test saves what gcore would through /proc/<pid>/mem (root
# may: CAP_SYS_PTRACE), without stopping the worker (tests/integration/save-memory.py).
python3 "$_lib_dir/save-memory.py" "$WPID" "$T/worker.core" >"$T/gcore.log" 2>&1
got30=
while IFS= read -r -t 20 -u "$MCP_OUT" line; do
	printf '%s\n' "$line" >>"$T/mcp.out"
	if jq -e '.id == 30' <<<"$line" >/dev/null 2>&1; then got30=$line; break; fi
done
like "$(jq -r '.result.content[0].text' <<<"$got30")" "http rc=0 status=200" "the call during which the worker's memory was saved answers"
core=$T/worker.core
if [ -s "$core" ]; then
	ok "the worker's memory saved during the call ($(stat -c %s "$core") bytes) holds the call's URL (the search works)" \
		grep -qa GCOREMARK "$core"
	is "$(grep -ca "$API_KEY" "$core")" 0 "the secret is not in the worker's memory during the call"
else
	fail "the worker's memory could be read during the call" "$(tail -n 3 "$T/gcore.log")"
	fail "the secret is not in the worker's memory during the call (nothing read)"
fi
is "$(grep -c "$API_KEY" "$T/results.txt" "$T/mcp.out" | awk -F: '{s+=$2} END {print s}')" 0 \
	"the secret is in no tool result"
is "$(grep -c "$API_KEY" "$T/mcp.err")" 0 "the secret is not in the host's (and workers', egress's) log"
is "$(journal_json | grep -c "$API_KEY")" 0 "the secret is not in the journal"
is "$(audit_search | grep -c "$API_KEY")" 0 "the secret is not in the audit log"

# --- the http module: a named endpoint ----------------------------------------------------------
if [ -f "$T/modules/http.so" ]; then
	r=$(request 40 tools/list)
	schema=$(jq -c '.result.tools[] | select(.name == "http.get_item") | .inputSchema' <<<"$r")
	is "$(jq -c '{t: .properties.id.type, req: .required, add: .additionalProperties}' <<<"$schema")" \
		'{"t":"integer","req":["id"],"add":false}' "http.get_item's input schema is generated from the URL template's parameters"
	r=$(call 41 http.get_item '{"id":42}')
	text=$(jq -r '.result.content[0].text' <<<"$r")
	is "$(jq -c '.result.structuredContent.data' <<<"$r")" '{"id":"42","name":"widget","owner":{"login":"octo"}}' \
		"field selection returns only id, name and owner.login"
	before=$(jq -r '.result.structuredContent.bytes_before' <<<"$r") after=$(jq -r '.result.structuredContent.bytes_after' <<<"$r")
	ok "a $before-byte JSON answer came back as $after bytes" test "$before" -gt 40000 -a "$after" -lt 100
	diag "field selection: $before bytes before, $after after"
	is "$(jq -r 'select(.path == "/v1/items/42") | .headers.Authorization' "$T/srv/requests.jsonl")" "Bearer $API_KEY" \
		"the endpoint tool sends the right Authorization header"
	unlike "$text" "$API_KEY" "... and its result does not hold the secret"
	r=$(call 42 http.get_item '{"id":"1/../../admin"}')
	ok "a parameter of the wrong type is refused by the schema" jq -e '.error or .result.isError' <<<"$r"
	r=$(call 43 http.get_item '{"id":1,"extra":1}')
	ok "an unknown parameter is refused (additionalProperties: false)" jq -e '.error or .result.isError' <<<"$r"
else
	skip "http module" "modules/.libs/http.so is not built"
fi

mcp_stop
is "$MCP_RC" 0 "the host exits cleanly"
done_testing
