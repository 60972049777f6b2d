#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The denial table: every way a call or a token can be refused is refused with its own
# reason, audited with that reason, and the broker keeps serving after each.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq setpriv basenc
require_user nobody
require_user daemon
require_group nogroup

setup_testdir
uniq=$(unique_id)
# nobody reaches the socket: $T is mode 0755, the socket (0660) belongs to nogroup.

printf 'hk-%s\n' "$uniq" >"$T/hk"
printf 'other-%s\n' "$uniq" >"$T/other"
chmod 0600 "$T/hk" "$T/other"
cat >"$T/policy.yaml" <<EOF
secrets:
  hk: { file: $T/hk }
  other: { file: $T/other }
tools:
  - match: "echo.echo"
    secrets:
      hk: [read]
  - match: "echo.other"
    secrets:
      other: [read]
  - match: "limited.tool"
    rate: 1/min
    burst: 1
runs: { max_calls: 3 }
tokens: { ttl_s: 30, max_ttl_s: 60 }
clients: { uids: [0, nobody] }
broker: { socket_group: nogroup }
EOF

start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"
is "$(stat -c '%a %G' "$SOCK")" "660 nogroup" "the socket is mode 0660, group nogroup"

args='{}'
args_sha=$(printf '%s' "$args" | sha256sum | cut -d' ' -f1)
begin() { # begin TOOL [EXTRA_JSON_MEMBERS]: a call-begin request line in run {{run}}
	printf '{"op":"call-begin","run":"{{run}}","tool":"%s","args_sha256":"%s","args_len":%d%s}\n' \
		"$1" "$args_sha" "${#args}" "${2:+,$2}"
}
read_req() { # read_req TOKEN TOOL SECRET
	printf '{"op":"secret-read","token":"%s","tool":"%s","secret":"%s"}\n' "$1" "$2" "$3"
}

# check_denial N DESC ERROR REASON AUDIT_OP [AUDIT_PATTERN...]: reply N of the last
# abclient_script is the error with that reason; its record (by the client's pid) carries
# the reason and res=failed; the broker still answers status with the same pid.
check_denial() {
	local n=$1 desc=$2 error=$3 reason=$4 op=$5
	shift 5
	is "$(reply "$n" '[.ok, .error, .reason] | map(tostring) | join(" ")')" "false $error $reason" \
		"$desc: refused with $error/$reason"
	wait_for 10 audit_count_is 1 "op=$op" "spid=$ABC_PID" "reason=\"$reason\"" 'res=failed' "$@"
	is "$(audit_count "op=$op" "spid=$ABC_PID" "reason=\"$reason\"" 'res=failed' "$@")" 1 \
		"$desc: $op record with reason=$reason"
	is "$(broker_status_pid)" "$BROKER_PID" "$desc: the broker still serves"
}

# --- expired, replayed, forged, malformed tokens; wrong tool, unscoped secret, wrong op -----
forged="abt_$(head -c 32 /dev/urandom | basenc --base64url | tr -d '=\n' | cut -c1-43)"
abclient_script <<EOF
{"op":"run-open","label":"denials-$uniq"}
$(begin echo.echo '"ttl_s":1')
!sleep 1300
$(read_req '{{token}}' echo.echo hk)
{"op":"call-end","token":"{{token}}","status":"timeout","result_bytes":0,"duration_ms":1300}
$(begin echo.echo)
$(read_req '{{token}}' echo.echo hk)
$(read_req '{{token}}' echo.other hk)
$(read_req '{{token}}' echo.echo other)
{"op":"secret-sign","token":"{{token}}","tool":"echo.echo","secret":"hk","alg":"hmac-sha256","data":"aGk="}
{"op":"call-end","token":"{{token}}","status":"ok","result_bytes":3,"duration_ms":1}
$(read_req '{{token}}' echo.echo hk)
$(read_req "$forged" echo.echo hk)
$(read_req abt_tooshort echo.echo hk)
EOF
run=$(reply 1 .run)
is "$(reply_count)" 13 "13 replies to 13 requests"
check_denial 3 "expired token" denied token-expired token-deny "run=\"$run\"" 'secret="hk"' 'sop="read"'
is "$(reply 4 .ok)" true "an expired token may still end its call"
is "$(reply 6 .ok)" true "a fresh token reads the secret"
check_denial 7 "token for another tool" denied wrong-tool token-deny "run=\"$run\"" 'secret="hk"'
check_denial 8 "unscoped secret" denied secret-not-scoped token-deny "run=\"$run\"" 'secret="other"'
check_denial 9 "wrong operation" denied op-not-allowed token-deny "run=\"$run\"" 'secret="hk"' 'sop="sign"'
is "$(reply 10 .ok)" true "call-end"
check_denial 11 "token replayed after call-end" denied token-revoked token-deny 'secret="hk"'
check_denial 12 "forged token" denied token-unknown token-deny 'secret="hk"'
check_denial 13 "malformed token" denied token-malformed token-deny 'secret="hk"'

# --- a token presented by another uid, and by another process of the same uid ------------
abclient_script <<EOF
{"op":"run-open","label":"denials-peer-$uniq"}
$(begin echo.echo)
EOF
run_peer=$(reply 1 .run)
peer_token=$(reply 2 .token)
like "$peer_token" '^abt_' "a token for the peer checks"
# The process that began the call has exited: its token is bound to it.
abclient_script <<<"$(read_req "$peer_token" echo.echo hk)"
check_denial 1 "token presented by another process of the same uid" denied wrong-peer token-deny "run=\"$run_peer\""
abclient_script_as nobody <<<"$(read_req "$peer_token" echo.echo hk)"
check_denial 1 "token presented by another uid (nobody)" denied wrong-peer token-deny "run=\"$run_peer\"" 'suid=65534'
abclient_script_as nobody <<<'{"op":"call-end","token":"'"$peer_token"'","status":"ok","result_bytes":0,"duration_ms":0}'
check_denial 1 "call-end by another uid (nobody)" denied wrong-peer token-deny "run=\"$run_peer\"" 'suid=65534'
# nobody is a client: it may open and use its own run
abclient_script_as nobody <<EOF
{"op":"run-open","label":"nobody-$uniq"}
$(begin echo.echo)
$(read_req '{{token}}' echo.echo hk)
EOF
is "$(reply 3 '.value | @base64d')" "hk-$uniq" "nobody (in clients.uids) reads a secret with its own token"

# --- a closed run ------------------------------------------------------------------------
abclient_script <<EOF
{"op":"run-open","label":"denials-closed-$uniq"}
$(begin echo.echo)
{"op":"run-close","run":"{{run}}"}
$(begin echo.echo)
$(read_req '{{token}}' echo.echo hk)
EOF
run_closed=$(reply 1 .run)
is "$(reply 3 .ok)" true "run-close"
check_denial 4 "call-begin in a closed run" denied run-closed tool-call-deny "run=\"$run_closed\""
check_denial 5 "token of a closed run" denied token-revoked token-deny 'secret="hk"'

# --- rate limit and run budget -------------------------------------------------------------
abclient_script <<EOF
{"op":"run-open","label":"denials-rate-$uniq"}
$(begin limited.tool)
$(begin limited.tool)
EOF
is "$(reply 2 .ok)" true "the first call of a rate-limited tool is allowed"
check_denial 3 "rate limit hit" denied rate-limited tool-call-deny "run=\"$(reply 1 .run)\"" 'tool="limited.tool"'

abclient_script <<EOF
{"op":"run-open","label":"denials-budget-$uniq"}
$(begin echo.echo)
$(begin echo.echo)
$(begin echo.echo)
$(begin echo.echo)
EOF
is "$(reply 2 .ok) $(reply 3 .ok) $(reply 4 .ok)" "true true true" "runs.max_calls (3) calls are allowed"
check_denial 5 "run budget exhausted" denied budget-exhausted tool-call-deny "run=\"$(reply 1 .run)\""

# --- a client uid not in clients ---------------------------------------------------------
# daemon, with nogroup as its group to reach the socket, is not in clients.uids: the
# broker, not the file mode, has to refuse it.
abclient_script_as daemon:nogroup <<<'{"op":"status"}
!sleep 200
{"op":"status"}'
check_denial 1 "client uid not in clients (daemon)" not-permitted client-not-allowed token-deny "suid=$(id -u daemon)"
like "$(reply 2 .abclient_error)" '^(connection-closed|send-failed)$' "the broker closes the refused client's connection"

is "$(broker_status_pid)" "$BROKER_PID" "the broker served the whole table without restarting"
stop_broker
done_testing
