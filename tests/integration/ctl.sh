#!/bin/bash
# tests/integration/ctl.sh — agentbrokerctl against a real agentbrokerd (TAP).
#
# Starts a broker on a private socket with a private policy, then checks every command of
# agentbrokerctl and the output formats documented in man/agentbrokerctl.1: status (text
# and JSON), policy check (good file, errors with file:line:column, drop-ins), policy
# reload (success, failure keeping the old policy), run open/list/close, tokens (never the
# token itself), admin and client refusals for other uids, usage errors (exit 2),
# connection failures (exit 1), and `audit`, whose counts must match exactly the
# operations this test performed (needs auditd with kernel auditing enabled: those checks
# are skipped otherwise).
#
# Needs root (other uids via setpriv, CAP_AUDIT_WRITE for the broker); skips otherwise.
set -u

top_builddir=${ABS_TOP_BUILDDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CTL=$top_builddir/agentbrokerctl
BROKER=$top_builddir/agentbrokerd
ABCLIENT=$top_builddir/tests/integration/abclient
export PATH="$PATH:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (a second and third uid via setpriv, CAP_AUDIT_WRITE)"
	exit 0
fi
for f in "$CTL" "$BROKER" "$ABCLIENT"; do
	if [ ! -x "$f" ]; then
		echo "1..0 # SKIP $f is not built"
		exit 0
	fi
done
if ! getent group nogroup >/dev/null; then
	echo "1..0 # SKIP no group 'nogroup' to give the socket to"
	exit 0
fi
have_audit=0
if pgrep -x auditd >/dev/null && auditctl -s 2>/dev/null | grep -q '^enabled 1'; then
	have_audit=1
fi

NOT_CLIENT_UID=47911   # may reach the socket (group nogroup) but is not a client
CLIENT_UID=47912       # a client, but not an admin
SECRET_VALUE="ctl-canary-$$-$RANDOM$RANDOM"

dir=$(mktemp -d /tmp/ctl-test.XXXXXX)
chmod 755 "$dir"       # other uids must reach the socket inside
SOCK=$dir/broker.sock
POLICY=$dir/policy.yaml
broker_pid=

cleanup() {
	if [ -n "$broker_pid" ]; then
		kill "$broker_pid" 2>/dev/null
		wait "$broker_pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)) failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# Run the ctl as uid ($1, "" = root), capturing stdout, stderr and the exit status in
# $out, $err and $rc.
run_as() {
	local uid=$1; shift
	if [ -n "$uid" ]; then
		setpriv --reuid="$uid" --regid=nogroup --clear-groups "$CTL" --socket "$SOCK" "$@" \
			>"$dir/out" 2>"$dir/err"
	else
		"$CTL" --socket "$SOCK" "$@" >"$dir/out" 2>"$dir/err"
	fi
	rc=$?
	out=$(cat "$dir/out")
	err=$(cat "$dir/err")
}
ctl() { run_as "" "$@"; }

# check NAME WANT_RC [GREP_STDOUT [GREP_STDERR]]: the last ctl run exited with WANT_RC and
# its stdout/stderr match the extended regexes (empty = not checked).
check() {
	local name=$1 want=$2 re_out=${3:-} re_err=${4:-}
	if [ "$rc" -ne "$want" ]; then
		not_ok "$name" "exit status $rc, expected $want" "stdout: $out" "stderr: $err"
	elif [ -n "$re_out" ] && ! grep -Eq -- "$re_out" "$dir/out"; then
		not_ok "$name" "stdout does not match: $re_out" "stdout: $out"
	elif [ -n "$re_err" ] && ! grep -Eq -- "$re_err" "$dir/err"; then
		not_ok "$name" "stderr does not match: $re_err" "stderr: $err"
	else
		ok "$name"
	fi
}

# The canary must never appear in anything the ctl prints.
check_no_canary() {
	if grep -rqF -- "$SECRET_VALUE" "$dir/out" "$dir/err"; then
		not_ok "$1: the secret value is not printed"
	else
		ok "$1: the secret value is not printed"
	fi
}

write_policy() {
	cat >"$POLICY" <<-EOF
	secrets:
	  ctl_env_secret: { env: CTL_TEST_SECRET }
	  ctl_missing: { file: $dir/no-such-secret }
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

ctl --version
check "--version prints the version" 0 '^agentbrokerctl [0-9]+\.[0-9]+\.[0-9]+$'
ctl --help
check "--help lists the commands" 0 'policy check' ''
ctl help audit
check "help audit shows the audit usage" 0 '^Usage: agentbrokerctl audit'
ctl run --help
check "run --help shows the run usage" 0 '^Usage: agentbrokerctl run open'

ctl
check "no command: usage error" 2 '' '^agentbrokerctl: no command given'
ctl frobnicate
check "unknown command: usage error" 2 '' "unknown command 'frobnicate'"
ctl status --bogus
check "unknown option: usage error" 2 '' "unknown option '--bogus'"
ctl run close
check "run close without RUN: usage error" 2 '' "^Usage: agentbrokerctl run open"
ctl --timeout 0 status
check "--timeout 0: usage error" 2 '' "invalid --timeout '0'"
ctl audit --since "next tuesday"
check "audit --since with a bad time: usage error" 2 '' "invalid --since 'next tuesday'"
ctl audit --format xml
check "audit --format xml: usage error" 2 '' "invalid --format 'xml'"

ctl status
check "status without a broker: exit 1" 1 '' "^agentbrokerctl: cannot connect to broker at $SOCK: No such file or directory: is agentbrokerd running\? "
AGENTBROKER_SOCKET=$dir/env.sock "$CTL" status >"$dir/out" 2>"$dir/err"; rc=$?
out=$(cat "$dir/out") err=$(cat "$dir/err")
check "AGENTBROKER_SOCKET sets the socket" 1 '' "cannot connect to broker at $dir/env.sock:"

write_policy
ctl policy check "$POLICY"
check "policy check of a good file" 0 "^$POLICY: OK \(2 secrets, 2 tool rules, 1 modules\)$"

mkdir "$dir/bad" "$dir/bad/policy.d"
printf 'tools:\n  - match: "echo.*"\n    rat: 5/s\n' >"$dir/bad/policy.yaml"
printf 'tokens:\n  ttl_s: forever\n' >"$dir/bad/policy.d/10-bad.yaml"
ctl policy check "$dir/bad/policy.yaml"
check "policy check reports file:line:column errors of the main file" 1 '' \
	"^$dir/bad/policy.yaml:3:5: unknown key 'rat'"
check "policy check reports errors of drop-ins" 1 '' "^$dir/bad/policy.d/10-bad.yaml:2:10: "
if [ -s "$dir/out" ]; then not_ok "policy check with errors prints nothing on stdout" "$out"
else ok "policy check with errors prints nothing on stdout"; fi
ctl policy check "$dir/missing.yaml"
check "policy check of a missing file" 1 '' "$dir/missing.yaml: .*No such file or directory"

# ---------------------------------------------------------------------------------------
# With a broker

CTL_TEST_SECRET=$SECRET_VALUE env -u NOTIFY_SOCKET -u JOURNAL_STREAM -u LISTEN_FDS \
	-u LISTEN_FDNAMES -u CREDENTIALS_DIRECTORY \
	"$BROKER" --foreground --policy "$POLICY" --socket "$SOCK" >"$dir/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 50); do
	[ -S "$SOCK" ] && "$CTL" --socket "$SOCK" status >/dev/null 2>&1 && break
	sleep 0.1
done
ctl status
check "status answers" 0 "^version: +[0-9.]+$"
if [ "$rc" -ne 0 ]; then
	echo "Bail out! the broker did not start: $(tr '\n' ' ' <"$dir/broker.log")"
	exit 1
fi
check "status shows the pid" 0 "^pid: +$broker_pid$"
check "status shows the policy file" 0 "^policy files: +$POLICY$"
check "status shows an available secret" 0 '^secrets: +ctl_env_secret \(bytes, available\)$'
check "status shows an unavailable secret" 0 "^ +ctl_missing \(bytes, unavailable\): file '.*no-such-secret' does not exist$"
check "status shows no open run" 0 '^runs open: +0$'
if [ $have_audit = 1 ]; then
	check "status shows audit enabled" 0 '^audit: +enabled$'
else
	skip "status shows audit enabled" "auditd is not running with auditing enabled"
fi
check_no_canary "status"
ctl status --json
check "status --json has the reply's members" 0 '"secrets":' ''
check "status --json has no envelope" 0 '"pid":'
if grep -Eq '"(ok|v|id)":' "$dir/out"; then not_ok "status --json leaves out v, id and ok" "$out"
else ok "status --json leaves out v, id and ok"; fi
check_no_canary "status --json"

ctl run open --label "ctl test run"
check "run open prints a run id alone" 0 '^[0-9a-f]{32}$'
RUN=$out
ctl run list
check "run list shows the run, open, with its label" 0 "^$RUN +open +0 +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +0 +0 +ctl test run$"
check "run list has its header" 0 '^RUN +STATE +OWNER +OPENED +CALLS +DENIED +LABEL$'
ctl run list --json
check "run list --json lists the run" 0 "\"run\":[[:space:]]*\"$RUN\""

# One allowed call (its token stays active) and one denied call, from one client process.
"$ABCLIENT" --socket "$SOCK" \
	"{\"op\":\"call-begin\",\"run\":\"$RUN\",\"tool\":\"echo.echo\",\"args_sha256\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"args_len\":2,\"ttl_s\":120}" \
	"{\"op\":\"call-begin\",\"run\":\"$RUN\",\"tool\":\"shell.exec\",\"args_sha256\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"args_len\":2}" \
	>"$dir/calls" 2>&1
token=$(grep -o '"token":"abt_[^"]*"' "$dir/calls" | head -1 | cut -d'"' -f4)
token_id=$(grep -o '"token_id":"[^"]*"' "$dir/calls" | head -1 | cut -d'"' -f4)
if [ -n "$token" ] && [ -n "$token_id" ] && grep -q '"reason":"tool-not-allowed"' "$dir/calls"; then
	ok "a call begins and a call is denied"
else
	not_ok "a call begins and a call is denied" "$(cat "$dir/calls")"
fi

ctl tokens
check "tokens lists the call's token id, run, tool and call" 0 \
	"^$token_id +$RUN +echo\.echo +[0-9]+ +[0-9]+\.[0-9]s +0$"
check "tokens has its header" 0 '^TOKEN +RUN +TOOL +CALL +EXPIRES +USES$'
if [ -n "$token" ] && grep -qF -- "$token" "$dir/out"; then not_ok "tokens never prints the token"
else ok "tokens never prints the token"; fi
ctl tokens --json
check "tokens --json lists the token id" 0 "\"token_id\":[[:space:]]*\"$token_id\""
if [ -n "$token" ] && grep -qF -- "${token#abt_}" "$dir/out"; then not_ok "tokens --json never prints the token"
else ok "tokens --json never prints the token"; fi

# End the call (call-end needs the uid that began it, not the same process).
"$ABCLIENT" --socket "$SOCK" \
	"{\"op\":\"call-end\",\"token\":\"$token\",\"status\":\"ok\",\"result_bytes\":42,\"duration_ms\":7}" \
	>"$dir/end" 2>&1
if grep -q '"ok":true' "$dir/end"; then ok "the call ends"; else not_ok "the call ends" "$(cat "$dir/end")"; fi
ctl tokens
if [ "$rc" -eq 0 ] && ! grep -q "$token_id" "$dir/out"; then ok "call-end revoked the token"
else not_ok "call-end revoked the token" "$out"; fi

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
if [ "$rc" -eq 0 ] && ! grep -q "$RUN" "$dir/out"; then ok "a client does not see root's runs"
else not_ok "a client does not see root's runs" "$out"; fi
run_as $CLIENT_UID run close "$RUN"
check "a client may not close root's run" 1 '' 'run-close failed: not-permitted \(wrong-run-owner\)'

ctl run close "$RUN"
check "run close prints the run" 0 "^run: +$RUN$"
check "run close counts the call" 0 '^calls: +1$'
check "run close counts the denial" 0 '^denied: +1$'
check "run close counts the result bytes" 0 '^result bytes: +42$'
check "run close prints the duration" 0 '^duration: +[0-9]+ ms$'
ctl run close "$RUN"
check "closing a closed run is a broker error" 1 '' \
	"^agentbrokerctl: run-close failed: denied \(run-closed\): run $RUN is already closed$"
ctl run list
check "run list shows the run closed" 0 "^$RUN +closed "
ctl run close 0123456789abcdef0123456789abcdef
check "closing an unknown run is a broker error" 1 '' 'run-close failed: denied \(run-unknown\)'

# Policy reload: a bad file keeps the old policy; a good one with a drop-in is loaded.
loaded_before=$("$CTL" --socket "$SOCK" status --json | grep -o '"policy_loaded_at":[[:space:]]*[0-9]*')
cp "$POLICY" "$dir/policy.good"
printf 'bogus_key: 1\n' >>"$POLICY"
sleep 1   # so that a (wrong) reload would change policy_loaded_at
ctl policy reload
check "policy reload of a bad file fails" 1 '' '^agentbrokerctl: policy-reload failed: bad-request \(policy-invalid\)$'
check "policy reload prints the file:line:column errors" 1 '' "^$POLICY:[0-9]+:1: unknown key 'bogus_key'"
loaded_after=$("$CTL" --socket "$SOCK" status --json | grep -o '"policy_loaded_at":[[:space:]]*[0-9]*')
if [ -n "$loaded_before" ] && [ "$loaded_before" = "$loaded_after" ]; then ok "the old policy stays in force"
else not_ok "the old policy stays in force" "$loaded_before / $loaded_after"; fi
cp "$dir/policy.good" "$POLICY"
mkdir -p "$dir/policy.d"
printf 'runs:\n  max_calls: 5\ntools:\n  - match: "fs.*"\n' >"$dir/policy.d/50-limits.yaml"
ctl policy reload
check "policy reload prints the main file first" 0 "^$POLICY$"
check "policy reload prints the drop-in" 0 "^$dir/policy.d/50-limits.yaml$"
if [ "$(head -1 "$dir/out")" = "$POLICY" ] && [ "$(wc -l <"$dir/out")" -eq 2 ]; then
	ok "policy reload prints one file per line, main file first"
else
	not_ok "policy reload prints one file per line, main file first" "$out"
fi
ctl policy check "$POLICY"
check "policy check counts the drop-in's rules too" 0 "^$POLICY: OK \(2 secrets, 3 tool rules, 1 modules\)$"

# ---------------------------------------------------------------------------------------
# The audit report: exactly what this test did to RUN.

if [ $have_audit = 1 ]; then
	for _ in $(seq 50); do   # auditd writes asynchronously
		"$CTL" audit --run "$RUN" >"$dir/out" 2>/dev/null &&
			awk '$1 == "run-close" && $2 == 1 { f = 1 } END { exit !f }' "$dir/out" && break
		sleep 0.1
	done
	ctl audit --run "$RUN"
	check "audit --run reports the run" 0 "^Filter: +run $RUN, tool any, since any$"
	decisions=$(awk '/^Decisions/ { d = 1; next } d && NF == 0 { exit } d && $1 != "OP" { print $1, $2, $3 }' "$dir/out" | tr '\n' ',')
	want="run-open 1 0,run-close 1 0,tool-call-begin 1 0,tool-call-end 1 0,tool-call-deny 0 1,secret-use 0 0,token-deny 0 0,policy-load 0 0,http-token-issue 0 0,http-token-deny 0 0,http-listener 0 0,tunnel-connect 0 0,tunnel-disconnect 0 0,tunnel-auth-fail 0 0,tool-call-reject 0 0,run-client 0 0,run-teardown 0 0,egress-connect 0 0,egress-close 0 0,egress-http 0 0,"
	if [ "$decisions" = "$want" ]; then ok "audit counts exactly the operations of the run"
	else not_ok "audit counts exactly the operations of the run" "got:  $decisions" "want: $want"; fi
	check "audit lists the denial with its reason" 0 '^  tool-call-deny +tool-not-allowed +1$'
	check "audit shows the run-close summary" 0 '^    run-close record: 1 calls, 1 denied, 42 bytes, [0-9]+ ms, 0 rejected by the host$'
	check_no_canary "audit"
	ctl audit --run "$RUN" --denied --format json
	check "audit --denied --format json reports the one denial" 0 '^[[:space:]]*"records":[[:space:]]*1,$'
	ctl audit --run "$RUN" --tool echo.echo --json
	check "audit --tool keeps only that tool's records" 0 '^[[:space:]]*"records":[[:space:]]*2,$'
	ctl audit --run "$RUN" --since "$(date -d '+1 hour' '+%Y-%m-%d %H:%M')"
	check "audit --since a later time finds nothing" 0 '^Records: +0'
	ctl audit --run "$RUN" --since -1h --file /var/log/audit/audit.log
	check "audit --file reads that file" 0 '^Source: +/var/log/audit/audit.log$'
else
	for t in "audit --run reports the run" "audit counts exactly the operations of the run" \
		"audit lists the denial with its reason" "audit shows the run-close summary" \
		"audit: the secret value is not printed" "audit --denied --format json reports the one denial" \
		"audit --tool keeps only that tool's records" "audit --since a later time finds nothing" \
		"audit --file reads that file"; do
		skip "$t" "auditd is not running with auditing enabled"
	done
fi
ctl audit --file "$dir/no-such-log"
check "audit of a missing log file fails" 1 '' "^agentbrokerctl: cannot read the audit log $dir/no-such-log: No such file or directory$"

# The broker is still there, and nothing it logged holds the secret.
ctl status
check "the broker still serves" 0 '^runs open: +0$'
if grep -qF -- "$SECRET_VALUE" "$dir/broker.log"; then not_ok "the broker's log never holds the secret value"
else ok "the broker's log never holds the secret value"; fi

echo "1..$n"
[ $failed -eq 0 ]
