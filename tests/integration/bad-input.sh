#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Bad input never crashes the broker: truncated, oversized, wrongly typed and random
# messages each get an error reply (the broker keeps its pid and answers status after),
# and invalid policy files never replace a good one — neither through agentbrokerctl
# policy reload nor through SIGHUP — and their errors name file:line:column.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq

setup_testdir
uniq=$(unique_id)

printf 'hk-%s\n' "$uniq" >"$T/hk"
chmod 0600 "$T/hk"
good_policy() {
	cat >"$T/policy.yaml" <<EOF
secrets:
  hk: { file: $T/hk }
clients: { uids: [0] }
tools:
  - match: "echo.echo"
    secrets:
      hk: [read, sign]
EOF
}
good_policy
start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

still_serving() { # still_serving DESC: the same broker answers status
	is "$(broker_status_pid)" "$BROKER_PID" "$1: the broker still serves (same pid)"
}

# --- malformed messages: each gets its error reply ---------------------------------------------
sha=$(printf '{}' | sha256sum | cut -d' ' -f1)
deep8=$(printf '[%.0s' 1 2 3 4 5 6 7)1$(printf ']%.0s' 1 2 3 4 5 6 7)
deep9=$(printf '[%.0s' 1 2 3 4 5 6 7 8)1$(printf ']%.0s' 1 2 3 4 5 6 7 8)
many=$(for i in $(seq 300); do printf ',"m%d":%d' "$i" "$i"; done)
long_label=$(printf 'x%.0s' $(seq 200))
# each case: the request line, then the expected "ok error id" of its reply
cases=(
	'!verbatim {"v":1,"op":"status","id":5'                       'false bad-request 0'
	'!verbatim {"v":1,"op":"status","id":5}}'                     'false bad-request 0'
	'!verbatim  '                                                 'false bad-request 0'
	'!verbatim not json at all'                                   'false bad-request 0'
	'!verbatim [1,2,3]'                                           'false bad-request 0'
	'!verbatim "status"'                                          'false bad-request 0'
	'!verbatim {"v":"1","op":"status","id":1}'                    'false bad-request 0'
	'!verbatim {"op":"status","id":1}'                            'false bad-request 0'
	'!verbatim {"v":1,"op":5,"id":1}'                             'false bad-request 0'
	'!verbatim {"v":1,"op":"status","id":"1"}'                    'false bad-request 0'
	'!verbatim {"v":1,"op":"status","id":-1}'                     'false bad-request 0'
	'!verbatim {"v":1,"op":"status","id":1.5}'                    'false bad-request 0'
	'!verbatim {"v":2,"op":"status","id":7}'                      'false unsupported-version 7'
	'!verbatim {"v":1,"op":"no-such-op","id":8}'                  'false unknown-op 8'
	"!verbatim {\"v\":1,\"op\":\"status\",\"id\":9,\"x\":$deep9}" 'false bad-request 0'
	"!verbatim {\"v\":1,\"op\":\"status\",\"id\":10,\"x\":$deep8}" 'true null 10'
	"!verbatim {\"v\":1,\"op\":\"status\",\"id\":11$many}"        'false bad-request 0'
	"{\"op\":\"run-open\",\"id\":12,\"label\":\"$long_label\"}"   'false bad-request 12'
	'{"op":"run-open","id":13,"label":7}'                         'false bad-request 13'
	"{\"op\":\"call-begin\",\"id\":14,\"run\":7,\"tool\":\"echo.echo\",\"args_sha256\":\"$sha\",\"args_len\":2}" 'false bad-request 14'
	"{\"op\":\"call-begin\",\"id\":15,\"run\":\"{{run}}\",\"tool\":\"echo.echo\",\"args_sha256\":\"$sha\",\"args_len\":\"2\"}" 'false bad-request 15'
	"{\"op\":\"call-begin\",\"id\":16,\"run\":\"{{run}}\",\"tool\":\"echo.echo\",\"args_sha256\":\"xyz\",\"args_len\":2}" 'false bad-request 16'
	"{\"op\":\"call-begin\",\"id\":17,\"run\":\"{{run}}\",\"tool\":\"echo.echo\",\"args_sha256\":\"$sha\",\"args_len\":-2}" 'false bad-request 17'
	"{\"op\":\"call-begin\",\"id\":18,\"run\":\"{{run}}\",\"tool\":\"echo.echo\",\"args_sha256\":\"$sha\",\"args_len\":3,\"args\":\"{}\"}" 'false denied 18'
	'{"op":"call-end","id":19,"token":"{{token}}","status":"fine","result_bytes":0,"duration_ms":0}' 'false bad-request 19'
	'{"op":"secret-sign","id":20,"token":"{{token}}","tool":"echo.echo","secret":"hk","alg":"hmac-sha256","data":"%%%not-base64"}' 'false bad-request 20'
	'{"op":"secret-sign","id":21,"token":"{{token}}","tool":"echo.echo","secret":"hk","alg":"rsa","data":"aGk="}' 'false bad-request 21'
	"{\"op\":\"secret-sign\",\"id\":22,\"token\":\"{{token}}\",\"tool\":\"echo.echo\",\"secret\":\"hk\",\"alg\":\"hmac-sha256\",\"data\":\"$(head -c 20000 /dev/zero | base64 -w0)\"}" 'false bad-request 22'
	'{"op":"secret-read","id":23,"token":["{{token}}"],"tool":"echo.echo","secret":"hk"}' 'false bad-request 23'
	'{"op":"mint-jwt","id":24,"token":"{{token}}","tool":"echo.echo","secret":"hk","audience":""}' 'false bad-request 24'
	'{"op":"secret-read","id":25,"token":"{{token}}","tool":"echo.echo","secret":"hk"}' 'true null 25'
)
{
	printf '%s\n' '{"op":"run-open","label":"bad-input"}'
	printf '{"op":"call-begin","run":"{{run}}","tool":"echo.echo","args_sha256":"%s","args_len":2}\n' "$sha"
	for ((i = 0; i < ${#cases[@]}; i += 2)); do
		printf '%s\n' "${cases[i]}"
	done
} >"$T/malformed.txt"
abclient_script <"$T/malformed.txt"
is "$(reply_count)" $((${#cases[@]} / 2 + 2)) "every malformed message got a reply"
for ((i = 0; i < ${#cases[@]}; i += 2)); do
	n=$((i / 2 + 3))
	is "$(reply "$n" '[.ok, .error, .id] | map(tostring) | join(" ")')" "${cases[i + 1]}" \
		"reply to: $(printf '%.70s' "${cases[i]}")"
done
still_serving "malformed messages"

# Sizes: the limit is 65,536 bytes; larger messages get too-large.
msg_of_size() { # msg_of_size N: a valid status request of exactly N bytes
	local pre='{"v":1,"op":"status","id":3,"pad":"' post='"}'
	printf '%s' "$pre"
	head -c $(($1 - ${#pre} - ${#post})) /dev/zero | tr '\0' x
	printf '%s' "$post"
}
for size in 65536 65537 200000; do
	msg_of_size "$size" >"$T/msg$size"
done
printf '!raw %s\n' "$T/msg65536" "$T/msg65537" "$T/msg200000" | abclient_script
is "$(reply 1 '[.ok, .id] | map(tostring) | join(" ")')" "true 3" "a message of exactly 65,536 bytes is served"
is "$(reply 2 '[.ok, .error] | map(tostring) | join(" ")')" "false too-large" "65,537 bytes: too-large"
is "$(reply 3 '[.ok, .error] | map(tostring) | join(" ")')" "false too-large" "200,000 bytes: too-large"
printf '{"v":1,"op":"status","id":1}\0{"v":1}' >"$T/nul.bin"
printf '{"v":1,"op":"status","id":1,"x":"\xff\xfe\xc0\x80"}' >"$T/utf8.bin"
printf '{"v":1,"op":"call-begin","id":2,"run":"0123","tool":"echo.\xff\x01\x1b[31m","args_sha256":"%s","args_len":2}' "$sha" >"$T/tool.bin"
printf '!raw %s\n' "$T/nul.bin" "$T/utf8.bin" "$T/tool.bin" | abclient_script
is "$(reply 1 '[.ok, .error] | map(tostring) | join(" ")')" "false bad-request" "a message with a NUL byte: bad-request"
like "$(reply 2 '[.ok, .id] | map(tostring) | join(" ")')" '^(true|false) [01]$' "invalid UTF-8 in an unused member gets a reply"
is "$(reply 3 '[.ok, .error, .id] | map(tostring) | join(" ")')" "false denied 2" "control characters in a tool name: denied, not a crash"
# A zero-length message reads like the end of the connection: the broker may close it, but
# must go on serving the others.
printf '%s\n' '!verbatim ' '{"op":"status"}' | abclient_script
is "$(reply 2 .pid)" "$BROKER_PID" "after a zero-length message the client can go on (on a new connection if need be)"
still_serving "sizes and bytes"

# --- random and mutated messages ---------------------------------------------------------------
fuzz_seed=${AB_FUZZ_SEED:-20261127}
"$ABCLIENT" --socket "$SOCK" --random 2000 --seed "$fuzz_seed" --quiet \
	'{"op":"run-open","label":"fuzz"}' \
	"{\"op\":\"call-begin\",\"run\":\"{{run}}\",\"tool\":\"echo.echo\",\"args_sha256\":\"$sha\",\"args_len\":2}" \
	>"$T/fuzz.out" 2>"$T/fuzz.err"
summary=$(tail -1 "$T/fuzz.out")
diag "fuzz (seed $fuzz_seed): $summary"
is "$(jq -r '[.sent, .replies, .timeouts, .closed, .send_failed, .bad_replies] | join(" ")' <<<"$summary")" \
	"2002 2002 0 0 0 0" "2,000 random messages (seed $fuzz_seed): every one answered, no timeout or dropped connection"
ok "most random messages are refused" test "$(jq -r .errors <<<"$summary")" -gt 1000
still_serving "2,000 random messages"
is "$(broker_problems)" "" "no sanitizer report in the broker's log"

# --- invalid policies never replace the good one -------------------------------------------------
begin_req="{\"op\":\"call-begin\",\"run\":\"{{run}}\",\"tool\":\"%s\",\"args_sha256\":\"$sha\",\"args_len\":2}"
# policy_in_force DESC: echo.echo is still allowed and new.tool (only in the bad files) is not
policy_in_force() {
	abclient_script <<EOF
{"op":"run-open","label":"policy"}
$(printf "$begin_req" echo.echo)
$(printf "$begin_req" new.tool)
EOF
	is "$(reply 2 .ok) $(reply 3 .reason)" "true tool-not-allowed" "$1: the old policy is in force"
}
loaded_at=$(ctl status --json | jq -r .policy_loaded_at)
# ctl_rc ARGS...: run agentbrokerctl; its status and stderr in CTL_RC and CTL_ERR
ctl_rc() { ctl "$@" >/dev/null 2>"$T/ctl.err"; CTL_RC=$?; CTL_ERR=$(cat "$T/ctl.err"); }
regex_quote() { sed 's:[][\.*^$+?(){}|]:\\&:g' <<<"$1"; }

# bad_policy KIND: writes an invalid policy (which would allow new.tool) and prints the
# expected "file:line:column" of its first error
bad_policy() {
	good_policy
	case $1 in
	unknown-key)
		printf '  - match: "new.tool"\n    rat: 5/s\n' >>"$T/policy.yaml"
		echo "$T/policy.yaml:9:5" ;;
	type-error)
		printf '  - match: "new.tool"\ntokens:\n  ttl_s: "30"\n' >>"$T/policy.yaml"
		echo "$T/policy.yaml:10:10" ;;
	yaml-syntax)
		printf '  - match: "new.tool"\n    secrets: [\n' >>"$T/policy.yaml"
		echo "$T/policy.yaml:10:1" ;;
	unknown-secret)
		printf '  - match: "new.tool"\n    secrets:\n      nosuch: [read]\n' >>"$T/policy.yaml"
		echo "$T/policy.yaml:10:7" ;;
	bad-op)
		printf '  - match: "new.tool"\n    secrets:\n      hk: [read, write]\n' >>"$T/policy.yaml"
		echo "$T/policy.yaml:10:18" ;;
	alias)
		printf '  - match: &n "new.tool"\n  - match: *n\n' >>"$T/policy.yaml"
		echo "$T/policy.yaml:9:12" ;;
	dropin)
		mkdir -p "$T/policy.d"
		printf 'tools:\n  - match: "new.tool"\n    allow: yes\n' >"$T/policy.d/50-bad.yaml"
		echo "$T/policy.d/50-bad.yaml:3:12" ;;
	esac
}
for kind in unknown-key type-error yaml-syntax unknown-secret bad-op alias dropin; do
	where=$(bad_policy "$kind")
	ctl_rc policy reload
	is "$CTL_RC" 1 "policy reload with a bad policy ($kind) fails"
	like "$CTL_ERR" "$(regex_quote "$where"): " "policy reload ($kind): the error names $where"
	policy_in_force "policy reload ($kind)"
	rm -rf "$T/policy.d"
done
is "$(ctl status --json | jq -r .policy_loaded_at)" "$loaded_at" "no failed reload replaced the policy"

for kind in type-error dropin; do
	where=$(bad_policy "$kind")
	failed_before=$(audit_count 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=failed')
	kill -HUP "$BROKER_PID"
	wait_for 10 audit_count_is $((failed_before + 1)) 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=failed'
	is "$(audit_count 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=failed' 'reason="policy-invalid"')" \
		$((failed_before + 1)) "SIGHUP with a bad policy ($kind): a failed policy-load record"
	like "$(cat "$BROKER_ERR")" "$(regex_quote "$where"): " "SIGHUP ($kind): the broker's log names $where"
	policy_in_force "SIGHUP ($kind)"
	rm -rf "$T/policy.d"
done
where=$(bad_policy unknown-key)
like "$(ctl policy check "$T/policy.yaml" 2>&1)" "$(regex_quote "$where"): unknown key" \
	"agentbrokerctl policy check reports the same error"

# A missing main file is refused as well.
mv "$T/policy.yaml" "$T/policy.yaml.away"
ctl_rc policy reload
is "$CTL_RC" 1 "policy reload with the policy file missing fails"
mv "$T/policy.yaml.away" "$T/policy.yaml"
policy_in_force "missing policy file"

# And a good file is taken.
good_policy
printf '  - match: "new.tool"\n' >>"$T/policy.yaml"
ok "policy reload with a good policy succeeds" ctl policy reload
abclient_script <<EOF
{"op":"run-open","label":"policy"}
$(printf "$begin_req" new.tool)
EOF
is "$(reply 2 .ok)" true "the good policy is in force: new.tool is allowed"
still_serving "all of it"

stop_broker
done_testing
