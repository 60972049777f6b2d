#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/integration/ctl.sh — agentbrokerctl against a real agentbrokerd (TAP, lib.sh).
#
# Starts a broker on a private socket with a private policy, then checks every command of
# agentbrokerctl and the output formats documented in man/agentbrokerctl.1: status (text
# and JSON), policy check (good file, errors with file:line:column, drop-ins), policy
# reload (success, failure keeping the old policy), run open/list/close, tokens (never the
# token itself), admin and client refusals for other uids, usage errors (exit 2),
# connection failures (exit 1), and `audit`, whose counts must match exactly the
# operations this test performed.
#
# Needs root (other uids via setpriv, CAP_AUDIT_WRITE for the broker), auditd and journald.
. "$(dirname "$0")/lib.sh"

require_services
require_group nogroup

NOT_CLIENT_UID=47911   # may reach the socket (group nogroup) but is not a client
CLIENT_UID=47912       # a client, but not an admin
SECRET_VALUE="ctl-canary-$$-$RANDOM$RANDOM"
# The broker logs to stderr here, not to the journal as under systemd.
unset NOTIFY_SOCKET JOURNAL_STREAM LISTEN_FDS LISTEN_FDNAMES CREDENTIALS_DIRECTORY

setup_testdir          # $T (mode 0755: other uids reach the socket inside) and $SOCK
POLICY=$T/policy.yaml

# run_as UID ARGS...: run the ctl as UID ("" = root), capturing stdout, stderr and the exit
# status in $out, $err and $rc.
run_as() {
	local uid=$1; shift
	if [ -n "$uid" ]; then
		setpriv --reuid="$uid" --regid=nogroup --clear-groups "$CTL" --socket "$SOCK" "$@" \
			>"$T/out" 2>"$T/err"
	else
		"$CTL" --socket "$SOCK" "$@" >"$T/out" 2>"$T/err"
	fi
	rc=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
}
# run_ctl ARGS...: run_as root.
run_ctl() { run_as "" "$@"; }

# check NAME WANT_RC [GREP_STDOUT [GREP_STDERR]]: the last ctl run exited with WANT_RC and
# its stdout/stderr match the extended regexes (empty = not checked).
check() {
	local name=$1 want=$2 re_out=${3:-} re_err=${4:-}
	if [ "$rc" -ne "$want" ]; then
		fail "$name" "exit status $rc, expected $want" "stdout: $out" "stderr: $err"
	elif [ -n "$re_out" ] && ! grep -Eq -- "$re_out" "$T/out"; then
		fail "$name" "stdout does not match: $re_out" "stdout: $out"
	elif [ -n "$re_err" ] && ! grep -Eq -- "$re_err" "$T/err"; then
		fail "$name" "stderr does not match: $re_err" "stderr: $err"
	else
		pass "$name"
	fi
}

# The canary must never appear in anything the ctl prints.
check_no_canary() {
	if grep -rqF -- "$SECRET_VALUE" "$T/out" "$T/err"; then
		fail "$1: the secret value is not printed"
	else
		pass "$1: the secret value is not printed"
	fi
}

write_policy() {
	cat >"$POLICY" <<-EOF
	secrets:
	  ctl_env_secret: { env: CTL_TEST_SECRET }
	  ctl_missing: { file: $T/no-such-secret }
	tools:
	  - match: "echo.*"
	    secrets:
	      ctl_env_secret: [read]
	  - match: "shell.*"
	    allow: false
	modules:
	  echo: { greeting: hello }
	clients:
	  uids: [$CLIENT_UID]
	broker:
	  socket_group: nogroup
	EOF
}

# ---------------------------------------------------------------------------------------
# Without a broker

run_ctl --version
check "--version prints the version" 0 '^agentbrokerctl [0-9]+\.[0-9]+\.[0-9]+$'
run_ctl --help
check "--help lists the commands" 0 'policy check' ''
run_ctl help audit
check "help audit shows the audit usage" 0 '^Usage: agentbrokerctl audit'
run_ctl run --help
check "run --help shows the run usage" 0 '^Usage: agentbrokerctl run open'

run_ctl
check "no command: usage error" 2 '' '^agentbrokerctl: no command given'
run_ctl frobnicate
check "unknown command: usage error" 2 '' "unknown command 'frobnicate'"
run_ctl status --bogus
check "unknown option: usage error" 2 '' "unknown option '--bogus'"
run_ctl run close
check "run close without RUN: usage error" 2 '' "^Usage: agentbrokerctl run open"
run_ctl --timeout 0 status
check "--timeout 0: usage error" 2 '' "invalid --timeout '0'"
run_ctl audit --since "next tuesday"
check "audit --since with a bad time: usage error" 2 '' "invalid --since 'next tuesday'"
run_ctl audit --format xml
check "audit --format xml: usage error" 2 '' "invalid --format 'xml'"

run_ctl status
check "status without a broker: exit 1" 1 '' "^agentbrokerctl: cannot connect to broker at $SOCK: No such file or directory: is agentbrokerd running\? "
AGENTBROKER_SOCKET=$T/env.sock "$CTL" status >"$T/out" 2>"$T/err"; rc=$?
out=$(cat "$T/out") err=$(cat "$T/err")
check "AGENTBROKER_SOCKET sets the socket" 1 '' "cannot connect to broker at $T/env.sock:"

write_policy
run_ctl policy check "$POLICY"
check "policy check of a good file" 0 "^$POLICY: OK \(2 secrets, 2 tool rules, 1 modules\)$"

mkdir "$T/bad" "$T/bad/policy.d"
printf 'tools:\n  - match: "echo.*"\n    rat: 5/s\n' >"$T/bad/policy.yaml"
printf 'tokens:\n  ttl_s: forever\n' >"$T/bad/policy.d/10-bad.yaml"
run_ctl policy check "$T/bad/policy.yaml"
check "policy check reports file:line:column errors of the main file" 1 '' \
	"^$T/bad/policy.yaml:3:5: unknown key 'rat'"
check "policy check reports errors of drop-ins" 1 '' "^$T/bad/policy.d/10-bad.yaml:2:10: "
if [ -s "$T/out" ]; then fail "policy check with errors prints nothing on stdout" "$out"
else pass "policy check with errors prints nothing on stdout"; fi
run_ctl policy check "$T/missing.yaml"
check "policy check of a missing file" 1 '' "$T/missing.yaml: .*No such file or directory"

# ---------------------------------------------------------------------------------------
# With a broker

CTL_TEST_SECRET=$SECRET_VALUE start_broker "$POLICY"
run_ctl status
check "status answers" 0 "^version: +[0-9.]+$"
check "status shows the pid" 0 "^pid: +$BROKER_PID$"
check "status shows the policy file" 0 "^policy files: +$POLICY$"
check "status shows an available secret" 0 '^secrets: +ctl_env_secret \(bytes, available\)$'
check "status shows an unavailable secret" 0 "^ +ctl_missing \(bytes, unavailable\): file '.*no-such-secret' does not exist$"
check "status shows no open run" 0 '^runs open: +0$'
check "status shows audit enabled" 0 '^audit: +enabled$'
check_no_canary "status"
run_ctl status --json
check "status --json has the reply's members" 0 '"secrets":' ''
check "status --json has no envelope" 0 '"pid":'
if grep -Eq '"(ok|v|id)":' "$T/out"; then fail "status --json leaves out v, id and ok" "$out"
else pass "status --json leaves out v, id and ok"; fi
check_no_canary "status --json"

run_ctl run open --label "ctl test run"
check "run open prints a run id alone" 0 '^[0-9a-f]{32}$'
RUN=$out
run_ctl run list
check "run list shows the run, open, with its label" 0 "^$RUN +open +0 +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +0 +0 +ctl test run$"
check "run list has its header" 0 '^RUN +STATE +OWNER +OPENED +CALLS +DENIED +LABEL$'
run_ctl run list --json
check "run list --json lists the run" 0 "\"run\":[[:space:]]*\"$RUN\""

# One allowed call (its token stays active) and one denied call, from one client process.
"$ABCLIENT" --socket "$SOCK" \
	"{\"op\":\"call-begin\",\"run\":\"$RUN\",\"tool\":\"echo.echo\",\"args_sha256\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"args_len\":2,\"ttl_s\":120}" \
	"{\"op\":\"call-begin\",\"run\":\"$RUN\",\"tool\":\"shell.exec\",\"args_sha256\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"args_len\":2}" \
	>"$T/calls" 2>&1
token=$(grep -o '"token":"abt_[^"]*"' "$T/calls" | head -1 | cut -d'"' -f4)
token_id=$(grep -o '"token_id":"[^"]*"' "$T/calls" | head -1 | cut -d'"' -f4)
if [ -n "$token" ] && [ -n "$token_id" ] && grep -q '"reason":"tool-not-allowed"' "$T/calls"; then
	pass "a call begins and a call is denied"
else
	fail "a call begins and a call is denied" "$(cat "$T/calls")"
fi

run_ctl tokens
check "tokens lists the call's token id, run, tool and call" 0 \
	"^$token_id +$RUN +echo\.echo +[0-9]+ +[0-9]+\.[0-9]s +0$"
check "tokens has its header" 0 '^TOKEN +RUN +TOOL +CALL +EXPIRES +USES$'
if [ -n "$token" ] && grep -qF -- "$token" "$T/out"; then fail "tokens never prints the token"
else pass "tokens never prints the token"; fi
run_ctl tokens --json
check "tokens --json lists the token id" 0 "\"token_id\":[[:space:]]*\"$token_id\""
if [ -n "$token" ] && grep -qF -- "${token#abt_}" "$T/out"; then fail "tokens --json never prints the token"
else pass "tokens --json never prints the token"; fi

# End the call (call-end needs the uid that began it, not the same process).
"$ABCLIENT" --socket "$SOCK" \
	"{\"op\":\"call-end\",\"token\":\"$token\",\"status\":\"ok\",\"result_bytes\":42,\"duration_ms\":7}" \
	>"$T/end" 2>&1
if grep -q '"ok":true' "$T/end"; then pass "the call ends"; else fail "the call ends" "$(cat "$T/end")"; fi
run_ctl tokens
if [ "$rc" -eq 0 ] && ! grep -q "$token_id" "$T/out"; then pass "call-end revoked the token"
else fail "call-end revoked the token" "$out"; fi

# Other uids.
run_as $NOT_CLIENT_UID status
check "a uid that is not a client is refused" 1 '' \
	'^agentbrokerctl: status failed: not-permitted \(client-not-allowed\)'
run_as $CLIENT_UID status
check "a client may ask for the status" 0 '^version:'
run_as $CLIENT_UID tokens
check "a client that is not an admin may not list tokens" 1 '' \
	'^agentbrokerctl: token-list failed: not-permitted \(not-admin\)'
run_as $CLIENT_UID policy reload
check "a client that is not an admin may not reload the policy" 1 '' \
	'^agentbrokerctl: policy-reload failed: not-permitted \(not-admin\)'
run_as $CLIENT_UID run list
if [ "$rc" -eq 0 ] && ! grep -q "$RUN" "$T/out"; then pass "a client does not see root's runs"
else fail "a client does not see root's runs" "$out"; fi
run_as $CLIENT_UID run close "$RUN"
check "a client may not close root's run" 1 '' 'run-close failed: not-permitted \(wrong-run-owner\)'

run_ctl run close "$RUN"
check "run close prints the run" 0 "^run: +$RUN$"
check "run close counts the call" 0 '^calls: +1$'
check "run close counts the denial" 0 '^denied: +1$'
check "run close counts the result bytes" 0 '^result bytes: +42$'
check "run close prints the duration" 0 '^duration: +[0-9]+ ms$'
run_ctl run close "$RUN"
check "closing a closed run is a broker error" 1 '' \
	"^agentbrokerctl: run-close failed: denied \(run-closed\): run $RUN is already closed$"
run_ctl run list
check "run list shows the run closed" 0 "^$RUN +closed "
run_ctl run close 0123456789abcdef0123456789abcdef
check "closing an unknown run is a broker error" 1 '' 'run-close failed: denied \(run-unknown\)'

# Policy reload: a bad file keeps the old policy; a good one with a drop-in is loaded.
loaded_before=$("$CTL" --socket "$SOCK" status --json | grep -o '"policy_loaded_at":[[:space:]]*[0-9]*')
cp "$POLICY" "$T/policy.good"
printf 'bogus_key: 1\n' >>"$POLICY"
sleep 1   # so that a (wrong) reload would change policy_loaded_at
run_ctl policy reload
check "policy reload of a bad file fails" 1 '' '^agentbrokerctl: policy-reload failed: bad-request \(policy-invalid\)$'
check "policy reload prints the file:line:column errors" 1 '' "^$POLICY:[0-9]+:1: unknown key 'bogus_key'"
loaded_after=$("$CTL" --socket "$SOCK" status --json | grep -o '"policy_loaded_at":[[:space:]]*[0-9]*')
if [ -n "$loaded_before" ] && [ "$loaded_before" = "$loaded_after" ]; then pass "the old policy stays in force"
else fail "the old policy stays in force" "$loaded_before / $loaded_after"; fi
cp "$T/policy.good" "$POLICY"
mkdir -p "$T/policy.d"
printf 'runs:\n  max_calls: 5\ntools:\n  - match: "fs.*"\n' >"$T/policy.d/50-limits.yaml"
run_ctl policy reload
check "policy reload prints the main file first" 0 "^$POLICY$"
check "policy reload prints the drop-in" 0 "^$T/policy.d/50-limits.yaml$"
if [ "$(head -1 "$T/out")" = "$POLICY" ] && [ "$(wc -l <"$T/out")" -eq 2 ]; then
	pass "policy reload prints one file per line, main file first"
else
	fail "policy reload prints one file per line, main file first" "$out"
fi
run_ctl policy check "$POLICY"
check "policy check counts the drop-in's rules too" 0 "^$POLICY: OK \(2 secrets, 3 tool rules, 1 modules\)$"

# ---------------------------------------------------------------------------------------
# The audit report: exactly what this test did to RUN.

for _ in $(seq 50); do   # auditd writes asynchronously
	"$CTL" audit --run "$RUN" >"$T/out" 2>/dev/null &&
		awk '$1 == "run-close" && $2 == 1 { f = 1 } END { exit !f }' "$T/out" && break
	sleep 0.1
done
run_ctl audit --run "$RUN"
check "audit --run reports the run" 0 "^Filter: +run $RUN, tool any, since any$"
decisions=$(awk '/^Decisions/ { d = 1; next } d && NF == 0 { exit } d && $1 != "OP" { print $1, $2, $3 }' "$T/out" | tr '\n' ',')
want="run-open 1 0,run-close 1 0,tool-call-begin 1 0,tool-call-end 1 0,tool-call-deny 0 1,secret-use 0 0,token-deny 0 0,policy-load 0 0,http-token-issue 0 0,http-token-deny 0 0,http-listener 0 0,tunnel-connect 0 0,tunnel-disconnect 0 0,tunnel-auth-fail 0 0,tool-call-reject 0 0,run-client 0 0,run-teardown 0 0,egress-connect 0 0,egress-close 0 0,egress-http 0 0,"
if [ "$decisions" = "$want" ]; then pass "audit counts exactly the operations of the run"
else fail "audit counts exactly the operations of the run" "got:  $decisions" "want: $want"; fi
check "audit lists the denial with its reason" 0 '^  tool-call-deny +tool-not-allowed +1$'
check "audit shows the run-close summary" 0 '^    run-close record: 1 calls, 1 denied, 42 bytes, [0-9]+ ms, 0 rejected by the host$'
check_no_canary "audit"
run_ctl audit --run "$RUN" --denied --format json
check "audit --denied --format json reports the one denial" 0 '^[[:space:]]*"records":[[:space:]]*1,$'
run_ctl audit --run "$RUN" --tool echo.echo --json
check "audit --tool keeps only that tool's records" 0 '^[[:space:]]*"records":[[:space:]]*2,$'
run_ctl audit --run "$RUN" --since "$(date -d '+1 hour' '+%Y-%m-%d %H:%M')"
check "audit --since a later time finds nothing" 0 '^Records: +0'
run_ctl audit --run "$RUN" --since -1h --file /var/log/audit/audit.log
check "audit --file reads that file" 0 '^Source: +/var/log/audit/audit.log$'
run_ctl audit --file "$T/no-such-log"
check "audit of a missing log file fails" 1 '' "^agentbrokerctl: cannot read the audit log $T/no-such-log: No such file or directory$"

# The broker is still there, and nothing it logged holds the secret.
run_ctl status
check "the broker still serves" 0 '^runs open: +0$'
if grep -qF -- "$SECRET_VALUE" "$BROKER_OUT" "$BROKER_ERR"; then fail "the broker's log never holds the secret value"
else pass "the broker's log never holds the secret value"; fi
stop_broker
done_testing
