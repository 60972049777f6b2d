#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# agentbroker-mcp end to end with the real broker, auditd and journald: every tools/call that
# the broker allows leaves exactly one tool-call-begin and one tool-call-end audit record (and
# journal entry) with the same call id and the status of how it ended; every call the broker
# denies leaves exactly one tool-call-deny and no begin. The test modules, through the host:
# a segfault, a hang past the tool's timeout and garbage on the worker pipe are isError results
# and the host keeps serving; a secret the tool is not scoped for is refused with the broker's
# reason; a secret in a result comes back as [REDACTED:<name>] in every encoding; a module with
# the wrong ABI major and a group-writable module are refused at load, with a log line.
# The session is driven with raw JSON-RPC lines, one request at a time (docs/mcp.md).
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
TEST_MODULES=(hang crash garbage unscoped leak effect badabi groupwritable)

require_root
require_services
require_tools jq base64 od timeout
require_built "$MCP" "$WORKER"
[ -f "$MODDIR/echo.so" ] || unmet "$MODDIR/echo.so is not built"
for m in "${TEST_MODULES[@]}"; do
	[ -f "$TMODDIR/$m.so" ] || unmet "$TMODDIR/$m.so is not built (make check builds the test modules)"
done

setup_testdir
# The host loads copies, so that one can be made group-writable without touching the build.
mkdir -m 0755 "$T/modules"
install -m 0755 "$MODDIR/echo.so" "$T/modules/"
for m in "${TEST_MODULES[@]}"; do install -m 0755 "$TMODDIR/$m.so" "$T/modules/"; done
chmod g+w "$T/modules/groupwritable.so"

# A secret leak.read may read (printable, with characters that base64 and URL encoding change)
# and one that no tool is scoped for.
LEAK_VALUE="leak+$(unique_id)/v?a=l&ue"
cat >"$T/policy.yaml" <<EOF
secrets:
  leaky: { env: AB_TEST_LEAKY }
  guarded: { env: AB_TEST_GUARDED }
tools:
  - match: "echo.*"
    args:
      text: { max_length: 64 }
  - match: "hang.*"
    timeout_ms: 500
  - match: "crash.*"
  - match: "garbage.*"
  - match: "unscoped.*"
  - match: "leak.*"
    secrets: { leaky: [read] }
  - match: "effect.*"
    allow: false
  - match: "groupwritable.*"
  - match: "badabi.*"
clients: { uids: [0] }
EOF
AB_TEST_LEAKY=$LEAK_VALUE AB_TEST_GUARDED="guarded-$(unique_id)" start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

mcp_start
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-audit.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
wait_for 10 grep -q 'info: run ' "$T/mcp.err"
RUN=$(sed -n 's/.*info: run \([^ ]*\).*/\1/p' "$T/mcp.err" | head -n 1)
isnt "$RUN" "" "the host opened a run at the broker ($RUN)"

# --- loading: the wrong ABI major and the group-writable module are refused -------------------
like "$(cat "$T/mcp.err")" "badabi\.so.*(ABI|major)" "a module with the wrong ABI major is refused with a log line"
like "$(cat "$T/mcp.err")" "groupwritable\.so.*(group|writable)" "a group-writable module is refused with a log line naming it"
r=$(request 1 tools/list)
tools=$(jq -r '[.result.tools[].name] | join(" ")' <<<"$r")
is "$tools" "crash.segv echo.echo garbage.write hang.forever hang.progress hang.slow leak.extras leak.fake leak.log leak.progress leak.read leak.recall leak.stash leak.stderr leak.trailing unscoped.read" \
	"tools/list: the allowed tools of the loaded modules (no badabi.*, groupwritable.*; effect.* denied)"
r=$(call 2 badabi.never '{}')
is "$(jq -r .error.code <<<"$r")" -32602 "a tool of the refused badabi module is an unknown tool"
r=$(call 3 groupwritable.ping '{}')
is "$(jq -r .error.code <<<"$r")" -32602 "a tool of the refused group-writable module is an unknown tool"

# --- calls the broker allows --------------------------------------------------------------------
r=$(call 10 echo.echo '{"text":"first"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" first "echo.echo answers"

r=$(call 11 crash.segv '{}')
is "$(jq -r .result.isError <<<"$r")" true "crash.segv: an isError result"
like "$(jq -r '.result.content[0].text' <<<"$r")" 'crashed' "crash.segv: the result says the worker crashed"
r=$(call 12 echo.echo '{"text":"after the crash"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "after the crash" "the host keeps serving after a crash"

t0=$(date +%s%N)
r=$(call 13 hang.forever '{}')
elapsed=$((($(date +%s%N) - t0) / 1000000))
is "$(jq -r .result.isError <<<"$r")" true "hang.forever past its timeout_ms (500): an isError result"
like "$(jq -r '.result.content[0].text' <<<"$r")" 'within 500 ms|timed? ?out|timeout' "hang.forever: the result says it timed out"
ok "hang.forever: answered within 5 s of the call ($elapsed ms)" test "$elapsed" -lt 5000
r=$(call 14 hang.slow '{"ms":10}')
is "$(jq -r '.result.content[0].text' <<<"$r")" slept "the hang module serves again after the timeout"

n=20
for kind in bytes notjson wrongid; do
	n=$((n + 1))
	r=$(call $n garbage.write "{\"kind\":\"$kind\"}")
	is "$(jq -r .result.isError <<<"$r")" true "garbage.write ($kind): an isError result"
	like "$(jq -r '.result.content[0].text' <<<"$r")" 'garbage|protocol|invalid|crashed' "garbage.write ($kind): the result says what happened"
done
r=$(call 25 echo.echo '{"text":"after the garbage"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "after the garbage" "the host keeps serving after garbage"

r=$(call 30 unscoped.read '{"secret":"guarded"}')
is "$(jq -r .result.isError <<<"$r")" true "unscoped.read: a secret the tool is not scoped for is an isError result"
like "$(jq -r '.result.content[0].text' <<<"$r")" 'denied: secret-not-scoped' "unscoped.read: the result gives the broker's denial reason (secret-not-scoped)"
unlike "$(jq -r '.result.content[0].text' <<<"$r")" 'UNEXPECTED' "unscoped.read: the broker did not hand out the secret"

r=$(call 31 leak.read '{"secret":"leaky"}')
text=$(jq -r '.result.content | map(.text) | join("\n")' <<<"$r")
is "$(jq -r '.result.isError // false' <<<"$r")" false "leak.read: a result"
b64=$(printf '%s' "$LEAK_VALUE" | base64 -w0)
b64url=$(printf '%s' "$b64" | tr '+/' '-_' | tr -d '=')
hex=$(printf '%s' "$LEAK_VALUE" | od -An -tx1 | tr -d ' \n')
HEX=$(tr 'a-f' 'A-F' <<<"$hex")
url=$(jq -rn --arg v "$LEAK_VALUE" '$v | @uri')
is "$(grep -cF "[REDACTED:leaky]" <<<"$text")" 6 "leak.read: raw, base64, base64url, hex, HEX and URL forms are [REDACTED:leaky] in the text"
is "$(jq -r '.result.structuredContent | [.raw, .base64, .hex, .nested.list[0], .nested.list[1]] | unique | join(" ")' <<<"$r")" \
	"[REDACTED:leaky]" "leak.read: every form in structuredContent is [REDACTED:leaky]"
leaked=''
for form in "$LEAK_VALUE" "$b64" "$b64url" "$hex" "$HEX" "$url"; do
	grep -qF -- "$form" <<<"$r" && leaked="$leaked $form"
done
is "$leaked" "" "leak.read: no form of the secret reaches the client"

r=$(call 32 hang.progress '{"steps":3,"interval_ms":1}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "done: 3 steps" "hang.progress answers"

# --- calls the broker denies --------------------------------------------------------------------
r=$(call 40 effect.append "{\"file\":\"$T/effect.txt\",\"text\":\"x\"}")
is "$(jq -r .result.isError <<<"$r")" true "effect.append (allow: false): an isError result"
like "$(jq -r '.result.content[0].text' <<<"$r")" '^denied by policy: tool-not-allowed' "effect.append: denied by policy, with the reason"
ok "effect.append: nothing ran (no file appended to)" test ! -e "$T/effect.txt"
long=$(head -c 100 /dev/zero | tr '\0' y)
r=$(call 41 echo.echo "{\"text\":\"$long\"}")
like "$(jq -r '.result.content[0].text' <<<"$r")" '^denied by policy: args-constraint' \
	"echo.echo with a text over the policy's max_length: denied by the broker (args-constraint)"

mcp_stop
is "$MCP_RC" 0 "the host exits with status 0 at the end of its input"
# (crash.segv's store through NULL is deliberate: UBSan builds report it, from the worker.)
unlike "$(grep -Ev 'tests/modules/crash\.c:[0-9]+:[0-9]+: runtime error: store to null pointer' "$T/mcp.err")" \
	'Sanitizer|runtime error' "no sanitizer report from the host or its workers"

# --- the audit trail of the run -----------------------------------------------------------------
# Calls begun (allowed by the broker): echo x3, crash, hang.forever, hang.slow, garbage x3,
# unscoped, leak, hang.progress. Denied: effect.append, echo.echo (args).
BEGUN=12 DENIED=2
wait_for 15 audit_count_is "$BEGUN" op=tool-call-end "run=\"$RUN\""
sleep 1 # a duplicate record would show up by now
begins=$(audit_records op=tool-call-begin "run=\"$RUN\"")
ends=$(audit_records op=tool-call-end "run=\"$RUN\"")
denies=$(audit_records op=tool-call-deny "run=\"$RUN\"")
is "$(grep -c . <<<"$begins")" "$BEGUN" "audit: $BEGUN tool-call-begin records, one per allowed call"
is "$(grep -c . <<<"$ends")" "$BEGUN" "audit: $BEGUN tool-call-end records"
is "$(grep -c . <<<"$denies")" "$DENIED" "audit: $DENIED tool-call-deny records, one per denied call"

# Each begin has exactly one end with the same call id and tool.
ids() { while IFS= read -r rec; do audit_field "$rec" call; done <<<"$1" | sort -n; }
begin_ids=$(ids "$begins")
end_ids=$(ids "$ends")
is "$(sort -n <<<"$begin_ids" | uniq -d)" "" "audit: no call id begun twice"
is "$(sort -n <<<"$end_ids" | uniq -d)" "" "audit: no call id ended twice"
is "$end_ids" "$begin_ids" "audit: the begin and end records have the same call ids"
mismatch=''
while IFS= read -r b; do
	id=$(audit_field "$b" call)
	e=$(grep -E " call=$id " <<<"$ends")
	[ "$(audit_field "$b" tool)" = "$(audit_field "$e" tool)" ] || mismatch="$mismatch $id"
done <<<"$begins"
is "$mismatch" "" "audit: each call's begin and end name the same tool"

# How each call ended.
status_of() { grep -F "tool=\"$1\"" <<<"$ends" | while IFS= read -r rec; do audit_field "$rec" status; done | sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }'; }
is "$(status_of echo.echo)" "ok:3" "audit: the 3 echo.echo calls ended ok"
is "$(status_of crash.segv)" "crashed:1" "audit: crash.segv ended crashed"
is "$(status_of hang.forever)" "timeout:1" "audit: hang.forever ended timeout"
is "$(status_of garbage.write)" "crashed:3" "audit: the 3 garbage.write calls ended crashed"
is "$(status_of unscoped.read)" "error:1" "audit: unscoped.read ended error"
is "$(status_of leak.read)" "ok:1" "audit: leak.read ended ok"
is "$(status_of hang.slow) $(status_of hang.progress)" "ok:1 ok:1" "audit: hang.slow and hang.progress ended ok"

# Denied calls: a deny record each, and no begin.
is "$(grep -cF 'tool="effect.append"' <<<"$denies")" 1 "audit: one tool-call-deny for effect.append"
like "$(grep -F 'tool="effect.append"' <<<"$denies")" 'reason="tool-not-allowed"' "audit: its reason is tool-not-allowed"
is "$(grep -cF 'tool="effect.append"' <<<"$begins")" 0 "audit: no tool-call-begin for effect.append"
is "$(grep -cF 'tool="echo.echo"' <<<"$denies")" 1 "audit: one tool-call-deny for the echo.echo call over max_length"
like "$(grep -F 'tool="echo.echo"' <<<"$denies")" 'reason="args-constraint"' "audit: its reason is args-constraint"
is "$(grep -cF 'tool="echo.echo"' <<<"$begins")" 3 "audit: tool-call-begin only for the 3 allowed echo.echo calls"

# The secrets: leak.read's read was used (secret-use); unscoped.read's was refused (token-deny).
like "$(audit_records op=secret-use "run=\"$RUN\"")" 'tool="leak.read" secret="leaky" sop="read"' \
	"audit: a secret-use record for leak.read reading leaky"
like "$(audit_records op=token-deny "run=\"$RUN\"")" 'tool="unscoped.read" secret="guarded"' \
	"audit: a token-deny record for unscoped.read asking for guarded"
is "$(audit_records "run=\"$RUN\"" | grep -cF -- "$LEAK_VALUE")" 0 "audit: the secret value is in no record"

# The run itself: opened and closed by the host, with its totals.
like "$(audit_find run-close "run=\"$RUN\"")" "calls=$BEGUN denied=$DENIED" "audit: the host closed its run; run-close counts $BEGUN calls and $DENIED denials"

# The journal has the same events.
wait_for 10 journal_count_is "$BEGUN" AGENTBROKER_RUN="$RUN" AGENTBROKER_OP=tool-call-end
is "$(journal_count AGENTBROKER_RUN="$RUN" AGENTBROKER_OP=tool-call-begin)" "$BEGUN" "journal: $BEGUN tool-call-begin entries"
is "$(journal_count AGENTBROKER_RUN="$RUN" AGENTBROKER_OP=tool-call-end)" "$BEGUN" "journal: $BEGUN tool-call-end entries"
is "$(journal_count AGENTBROKER_RUN="$RUN" AGENTBROKER_OP=tool-call-deny)" "$DENIED" "journal: $DENIED tool-call-deny entries"
is "$(journal_field AGENTBROKER_CALL AGENTBROKER_RUN="$RUN" AGENTBROKER_OP=tool-call-end | sort -n)" "$end_ids" \
	"journal: the same call ids as the audit records"

stop_broker
done_testing
