#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Watching the tool calls: `agentbrokerctl trace` prints one line per call from the journal
# (run, call number, tool, decision, secrets used, status, bytes, duration), --follow prints
# calls as they happen, and `agentbrokerctl audit --calls` gives a run's per-call timeline
# from the audit log, in order. The host says which tools the policy hides, and a module
# whose init failed reaches `agentbrokerctl status`.
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs

require_root
require_services
require_tools jq journalctl
require_built "$MCP" "$WORKER"
[ -f "$MODDIR/echo.so" ] && [ -f "$MODDIR/sign.so" ] && [ -f "$MODDIR/fs.so" ] ||
	unmet "the shipped modules are not built in $MODDIR"

setup_testdir
mkdir -m 0755 "$T/modules" "$T/root"
cp "$MODDIR/echo.so" "$MODDIR/sign.so" "$MODDIR/fs.so" "$T/modules/"
printf 'key-%s' "$(unique_id)" >"$T/hmac"
chmod 0600 "$T/hmac"
cat >"$T/policy.yaml" <<EOF
secrets:
  sign_hmac: { file: $T/hmac }
tools:
  - match: "echo.*"
    rate: 1/s
    burst: 2
  - match: "sign.hmac_sha256"
    secrets:
      sign_hmac: [sign]
modules:
  fs: { roots: [$T/root] }
clients: { uids: [0] }
EOF
start_broker "$T/policy.yaml"

mcp_start
request 1 initialize '{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"trace","version":"1"}}' >/dev/null
printf '{"jsonrpc":"2.0","method":"notifications/initialized"}\n' >&"$MCP_IN"
run=$(ctl run list --json | jq -r --arg l "agentbroker-mcp[$MCP_PID]" '.runs[] | select(.label == $l) | .run')
ok "the host opened a run ($run)" test -n "$run"

# --follow in the background, from a second before the first call (plain --follow starts at
# the end of the journal whenever it gets there: under load, after the first calls).
"$CTL" trace --follow --since "$(($(date +%s) - 1))" --run "$run" >"$T/follow.out" 2>"$T/follow.err" &
follow_pid=$!
add_cleanup kill "$follow_pid"

like "$(call 2 echo.echo '{"text":"hello"}')" '"text":"hello"' "call 1: echo.echo"
like "$(call 3 sign.hmac_sha256 '{"key":"sign_hmac","message":"m"}')" '"isError":false|"result"' "call 2: sign.hmac_sha256 with the secret sign_hmac"
call 4 echo.echo '{"text":"again"}' >/dev/null
call 5 echo.echo '{"text":"too fast"}' >"$T/denied.json"
like "$(cat "$T/denied.json")" 'rate-limited|rate limit' "a third echo.echo within the second is denied (rate 1/s, burst 2)"
mcp_stop

_trace_lines() { [ "$("$CTL" trace --run "$run" | grep -c .)" -ge 4 ]; }
ok "trace --run prints one line per call (journald has them all)" wait_for 20 _trace_lines
trace=$("$CTL" trace --run "$run")
diag "$trace"
is "$(grep -c . <<<"$trace")" 4 "four lines: three calls ended, one denied"
like "$(sed -n 1p <<<"$trace")" "^[0-9-]+ [0-9:.]+  run $run  call [0-9]+  echo\\.echo  allowed  secrets -  ok  [0-9]+ bytes  [0-9]+ ms" \
	"an echo call: time, run, call number, tool, allowed, no secret, ok, bytes, duration"
like "$(grep sign.hmac_sha256 <<<"$trace")" "allowed  secrets sign_hmac\\(sign\\)  ok  [0-9]+ bytes" \
	"the signing call names the secret it used and the operation"
like "$(tail -n 1 <<<"$trace")" "echo\\.echo  denied \\(rate-limited\\)" "the denied call: denied, with the reason"
calls=$(sed -E 's/.*  call ([0-9-]+)  .*/\1/' <<<"$trace" | head -n 3 | tr '\n' ' ')
like "$calls" '^[0-9]+ [0-9]+ [0-9]+ $' "the ended calls carry their call numbers ($calls)"
_followed() { [ "$(grep -c . "$T/follow.out")" -ge 4 ]; }
ok "trace --follow printed the same four lines as they happened" wait_for 10 _followed
[ -s "$T/follow.err" ] && diag "trace --follow: $(cat "$T/follow.err")"
is "$(cat "$T/follow.out")" "$trace" "... identical to trace --run"
is "$("$CTL" trace --run no-such-run | grep -c .)" 0 "trace of an unknown run prints nothing"

# audit --calls: the same run from the audit log.
_audit_calls() { [ "$("$CTL" audit --calls --run "$run" --format json | jq '.calls | length')" -ge 8 ]; }
ok "audit --calls --run lists the run's call records" wait_for 20 _audit_calls
json=$("$CTL" audit --calls --run "$run" --format json)
is "$(jq -r '[.calls[].op] | join(" ")' <<<"$json")" \
	"tool-call-begin tool-call-end tool-call-begin secret-use tool-call-end tool-call-begin tool-call-end tool-call-deny" \
	"in log order: begin/end, begin/secret-use/end, begin/end, deny"
is "$(jq -r '[.calls[] | select(.op == "secret-use") | .secret + ":" + .operation] | join(" ")' <<<"$json")" "sign_hmac:sign" \
	"the secret use names the secret and the operation"
text=$("$CTL" audit --calls --run "$run")
like "$text" "tool-call-end +echo\\.echo +ok, [0-9]+ bytes, [0-9]+ ms" "the text timeline: an end with status, bytes, duration"
like "$text" "tool-call-deny +echo\\.echo +denied: rate-limited" "... and the denial with its reason"
like "$text" "8 call records" "... and counts the records"

# The host says which tools the policy hides (no rule allows fs.*).
like "$(cat "$T/mcp.err")" 'policy allows [0-9]+ of [0-9]+ tools \(hidden by policy, no rule allows them: fs\.' \
	"the host's log names the tools the policy hides"

# A module whose init fails reaches `agentbrokerctl status`: the hosts report what they
# serve and what they refused (module-report).
like "$(ctl status)" 'modules: +echo \(served\)' "status: the host reported the modules it serves"
like "$(ctl status)" '^ +fs \(served\)$' "... fs among them (its root exists)"
rmdir "$T/root"
mcp_start
request 1 initialize '{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"trace","version":"1"}}' >/dev/null
mcp_stop
like "$(ctl status)" "^ +fs \\(refused: init failed: root '$T/root' cannot be opened as a directory: No such file or directory\\)\$" \
	"a host whose fs module failed its init (missing root): status says fs is refused, and why"
is "$(ctl status --json | jq -r '.modules[] | select(.name == "fs") | "\(.served) \(.host_pid)"')" "false $MCP_PID" \
	"status --json: served false, with the reporting host's pid"
like "$(cat "$T/mcp.err")" "refusing module .*/fs.so: init failed: root '$T/root' cannot be opened" "... and the host's log says it too"

done_testing
