#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What the model attempted, in the audit trail (issue 10, finding 6), with the real broker,
# auditd and journald:
#   - calls the host refuses itself (unknown tool, arguments against the input schema, NUL in
#     arguments, params that are not a tool call) are tool-call-reject records with the tool
#     name (cut at a character boundary), the reason and the arguments' digest, and the run's
#     run-close counts them (rejected=);
#   - tool-call-end says how many redactions were made and of which secrets (redactions=,
#     redacted=);
#   - run-open carries the host's login uid and audit session, read by the broker from /proc
#     (login_uid=, login_ses=), and run-client the MCP client's clientInfo;
#   - agentbrokerctl audit shows all of these.
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs

require_root
require_services
require_tools jq sha256sum
require_built "$MCP" "$WORKER"
[ -f "$MODDIR/echo.so" ] || unmet "$MODDIR/echo.so is not built"
for m in leak conformance; do
	[ -f "$TMODDIR/$m.so" ] || unmet "$TMODDIR/$m.so is not built (make check builds the test modules)"
done
[ -w /proc/self/loginuid ] || unmet "/proc/self/loginuid cannot be written (audit loginuid is immutable)"

setup_testdir
mkdir -m 0755 "$T/modules"
install -m 0755 "$MODDIR/echo.so" "$TMODDIR/leak.so" "$TMODDIR/conformance.so" "$T/modules/"
LEAK_VALUE="leak+$(unique_id)/v"
cat >"$T/policy.yaml" <<EOF
secrets:
  leaky: { env: AB_TEST_LEAKY }
tools:
  - match: "echo.*"
  - match: "leak.*"
    secrets: { leaky: [read] }
  - match: "conformance.test_missing_capability"
clients: { uids: [0] }
EOF
AB_TEST_LEAKY=$LEAK_VALUE start_broker "$T/policy.yaml"

# The host in a login session of its own (login uid 4242): the records must lead to it.
MCP_LOGINUID=4242 mcp_start
mcp_init attempts-client 7.1
SES=$(cat "/proc/$MCP_PID/sessionid")
is "$(cat "/proc/$MCP_PID/loginuid")" 4242 "the host runs with login uid 4242 (session $SES)"

# --- run-open and run-client: who ----------------------------------------------------------
rec=$(audit_find run-open "$RUN")
is "$(audit_field "$rec" login_uid)" 4242 "run-open: login_uid of the host, read by the broker"
is "$(audit_field "$rec" login_ses)" "$SES" "run-open: login_ses of the host"
rec=$(audit_find run-client "$RUN")
is "$(audit_field "$rec" client)" attempts-client "run-client: clientInfo.name"
is "$(audit_field "$rec" client_ver)" 7.1 "run-client: clientInfo.version"
is "$(audit_field "$rec" login_uid)" 4242 "run-client: login_uid"
ok "run-client in the journal: AGENTBROKER_CLIENT_NAME, AGENTBROKER_LOGIN_UID" \
	journal_find AGENTBROKER_RUN="$RUN" AGENTBROKER_CLIENT_NAME=attempts-client AGENTBROKER_LOGIN_UID=4242

# --- calls the host refuses ----------------------------------------------------------------
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
r=$(call 1 nosuch.tool '{"a":1}')
is "$(jq -r .error.code <<<"$r")" -32602 "an unknown tool: a JSON-RPC error"
rec=$(audit_find tool-call-reject "$RUN" 'tool="nosuch.tool"')
is "$(audit_field "$rec" reason)" unknown-tool "tool-call-reject: reason=unknown-tool"
is "$(audit_field "$rec" args_sha256)" "$(sha '{"a":1}')" "tool-call-reject: the arguments' digest"
is "$(audit_field "$rec" args_len)" 7 "tool-call-reject: the arguments' length"
like "$rec" 'res=failed' "tool-call-reject: res=failed"

r=$(call 2 echo.echo '{"text":5}')
is "$(jq -r .result.isError <<<"$r")" true "arguments against the input schema: an isError result"
rec=$(audit_find tool-call-reject "$RUN" 'tool="echo.echo"' 'reason="invalid-args"')
is "$(audit_field "$rec" args_sha256)" "$(sha '{"text":5}')" "schema failure: reason=invalid-args, with the digest"

r=$(call 3 echo.echo '{"text":"a\u0000b"}')
is "$(jq -r .result.isError <<<"$r")" true "a NUL in the arguments: an isError result"
ok "NUL in the arguments: reason=args-nul" audit_find tool-call-reject "$RUN" 'reason="args-nul"'

r=$(request 4 tools/call '{"name":7}')
is "$(jq -r .error.code <<<"$r")" -32602 "params.name not a string: a JSON-RPC error"
ok "params.name not a string: reason=invalid-params" audit_find tool-call-reject "$RUN" 'reason="invalid-params"'

r=$(call 6 conformance.test_missing_capability '{}')
is "$(jq -r .error.code <<<"$r")" -32021 "a tool needing a client capability the client lacks: -32021"
ok "missing capability: reason=missing-capability" \
	audit_find tool-call-reject "$RUN" 'tool="conformance.test_missing_capability"' 'reason="missing-capability"'

# A 400-byte name of two-byte characters: cut to at most 128 bytes, never inside a character.
long=$(printf 'é%.0s' {1..200})
r=$(call 5 "$long" '{}')
is "$(jq -r .error.code <<<"$r")" -32602 "a 400-byte unknown tool name: a JSON-RPC error"
rec=$(audit_search -i | grep 'op=tool-call-reject' | grep "$RUN" | grep 'tool=é' | head -n 1)
name=$(sed -n 's/.*tool=\(é*\) .*/\1/p' <<<"$rec")
is "$(printf '%s' "$name" | wc -c)" 128 "the long name is in the record, cut to 128 bytes of whole characters"

# --- redactions ---------------------------------------------------------------------------------
r=$(call 10 leak.read '{"secret":"leaky"}')
is "$(jq -r '.result.isError // false' <<<"$r")" false "leak.read answers"
rec=$(audit_find tool-call-end "$RUN" 'tool="leak.read"')
is "$(audit_field "$rec" redactions)" 11 "tool-call-end: redactions=11 (6 forms in text, 5 in structuredContent)"
is "$(audit_field "$rec" redacted)" leaky "tool-call-end: redacted=leaky"
ok "tool-call-end in the journal: AGENTBROKER_REDACTIONS, AGENTBROKER_REDACTED" \
	journal_find AGENTBROKER_RUN="$RUN" AGENTBROKER_TOOL=leak.read AGENTBROKER_REDACTIONS=11 AGENTBROKER_REDACTED=leaky
r=$(call 11 echo.echo '{"text":"nothing secret"}')
rec=$(audit_find tool-call-end "$RUN" 'tool="echo.echo"')
is "$(audit_field "$rec" redactions)" "" "tool-call-end of a call with nothing redacted: no redactions field"

# --- run-close: the totals ------------------------------------------------------------------
mcp_stop
is "$MCP_RC" 0 "agentbroker-mcp exits 0"
rec=$(audit_find run-close "$RUN")
is "$(audit_field "$rec" rejected)" 6 "run-close: rejected=6 (the calls the host refused)"
is "$(audit_field "$rec" calls)" 2 "run-close: calls=2 (refused calls are not calls begun)"

# --- agentbrokerctl audit ------------------------------------------------------------------
report=$(ctl audit --run "$RUN" --format json)
is "$(jq -r '.runs[0].rejected' <<<"$report")" 6 "audit --format json: the run's rejected count"
is "$(jq -r '.runs[0].redactions' <<<"$report")" 11 "audit --format json: the run's redactions"
is "$(jq -r '.runs[0].redacted[0].secret' <<<"$report")" leaky "audit --format json: the secret redacted"
is "$(jq -r '.runs[0].clients[0] | "\(.name) \(.version)"' <<<"$report")" "attempts-client 7.1" \
	"audit --format json: the MCP client"
is "$(jq -r '.runs[0].login | "\(.uid) \(.session)"' <<<"$report")" "4242 $SES" "audit --format json: login uid and session"
is "$(jq -r '.runs[0].close.rejected' <<<"$report")" 6 "audit --format json: run-close's rejected"
is "$(jq -r '[.runs[0].denials[] | select(.op == "tool-call-reject") | .count] | add' <<<"$report")" 6 \
	"audit --format json: the refusals by reason"
text=$(ctl audit --run "$RUN")
like "$text" 'REJECTED +REDACTED' "audit: REJECTED and REDACTED columns"
like "$text" "login: uid 4242, session $SES" "audit: the run's login uid and session"
like "$text" 'clients: attempts-client 7.1 \(1\)' "audit: the run's MCP client"
like "$text" 'redacted: leaky \(1\)' "audit: the secrets redacted"
like "$text" 'tool-call-reject unknown-tool \(2\)' "audit: the refusals by reason"

done_testing
