#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The broker as systemd runs it: socket activation (systemd-socket-activate --seqpacket),
# sd_notify (READY=1, STATUS=, RELOADING=1 with MONOTONIC_USEC on SIGHUP, WATCHDOG=1,
# STOPPING=1) to a fake NOTIFY_SOCKET, secrets from $CREDENTIALS_DIRECTORY, a missing
# secret and a secret file with mode 0644 reported at start (the broker still serves, their
# uses are denied with secret-unavailable), a run's max_duration_s, and what
# agentbrokerctl status, run list, tokens and run close print.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq systemd-socket-activate

setup_testdir
uniq=$(unique_id)

# --- credentials, secrets and policy ---------------------------------------------------------
mkdir -m 0700 "$T/creds"
cred_value="cred-$uniq-$(head -c 8 /dev/urandom | od -An -v -tx1 | tr -d ' \n')"
printf '%s' "$cred_value" >"$T/creds/hk"
chmod 0400 "$T/creds/hk"
chmod 0500 "$T/creds"
printf 'loose-%s\n' "$uniq" >"$T/loose"
chmod 0644 "$T/loose"
cat >"$T/policy.yaml" <<EOF
secrets:
  hk: { credential: hk }
  missing: { credential: not-there }
  loose: { file: $T/loose }
tools:
  - match: "echo.echo"
    secrets:
      hk: [read]
      missing: [read]
      loose: [read]
runs: { max_duration_s: 2 }
clients: { uids: [0] }
EOF

# --- socket activation with a fake NOTIFY_SOCKET -----------------------------------------------
notify_log=$T/notify.log
"$ABCLIENT" --notify-listen "$T/notify.sock" >"$notify_log" 2>&1 &
notify_pid=$!
add_cleanup kill "$notify_pid"
wait_for 5 test -S "$T/notify.sock"
SOCK=$T/activated.sock
systemd-socket-activate --listen="$SOCK" --seqpacket --fdname=broker \
	-E NOTIFY_SOCKET="$T/notify.sock" -E WATCHDOG_USEC=200000 -E CREDENTIALS_DIRECTORY="$T/creds" \
	"$BROKERD" --policy "$T/policy.yaml" >"$T/activate.log" 2>&1 &
# systemd-socket-activate execs the broker in place: this pid becomes the broker's.
BROKER_PID=$!
BROKER_ERR=$T/activate.log
wait_for 5 test -S "$SOCK"
is "$(stat -c %F "$SOCK")" socket "systemd-socket-activate listens on $SOCK"
is "$(grep -c . "$notify_log")" 0 "nothing is notified before the first connection"
since=$(date +%s)
# The first connection makes systemd-socket-activate exec the broker with the socket.
abclient_script <<<'{"op":"status"}'
is "$(reply 1 .pid)" "$BROKER_PID" "the broker, started by the first connection, answers on the passed socket"
wait_for 5 grep -q 'READY=1' "$notify_log"
ready_line=$(grep -m1 'READY=1' "$notify_log")
like "$ready_line" 'READY=1' "READY=1 is notified"
like "$ready_line" 'STATUS=[^"\\]+' "a STATUS= line comes with READY=1"
unlike "$ready_line" '/run/agentbroker/broker\.sock' "STATUS= does not name a socket the broker is not listening on"

# Watchdog: WATCHDOG_USEC=200000 (and no WATCHDOG_PID) asks for a ping at least every 200 ms.
sleep 1
n1=$(grep -c 'WATCHDOG=1' "$notify_log")
sleep 1
n2=$(grep -c 'WATCHDOG=1' "$notify_log")
ok "WATCHDOG=1 is sent at least every 200 ms ($((n2 - n1)) pings in 1 s)" test $((n2 - n1)) -ge 5

# SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
lines_before=$(wc -l <"$notify_log")
kill -HUP "$BROKER_PID"
wait_for 5 sh -c "tail -n +$((lines_before + 1)) '$notify_log' | grep -v WATCHDOG | grep -q READY=1"
reload_lines=$(tail -n +$((lines_before + 1)) "$notify_log" | grep -v '^"WATCHDOG=1"$')
reloading=$(grep -m1 'RELOADING=1' <<<"$reload_lines")
like "$reloading" 'RELOADING=1' "SIGHUP: RELOADING=1"
mono=$(sed -n 's/.*MONOTONIC_USEC=\([0-9]*\).*/\1/p' <<<"$reloading")
uptime_us=$(awk '{ printf "%.0f", $1 * 1000000 }' /proc/uptime)
ok "RELOADING=1 carries MONOTONIC_USEC close to CLOCK_MONOTONIC (${mono:-none} vs ${uptime_us})" \
	test -n "$mono" -a "${mono:-0}" -gt $((uptime_us - 60000000)) -a "${mono:-0}" -le "$uptime_us"
like "$(grep -A100 'RELOADING=1' <<<"$reload_lines" | tail -n +2 | tr '\n' ' ')" 'READY=1' "READY=1 follows RELOADING=1"
wait_for 10 audit_count_is 2 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=success'
is "$(audit_count 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=success')" 2 "policy-load records: start and SIGHUP"

# --- secrets: credential, missing, mode 0644 -------------------------------------------------
status=$(ctl status --json)
is "$(jq -r '.secrets | map(.name + ":" + .type + ":" + (.available | tostring)) | join(" ")' <<<"$status")" \
	"hk:bytes:true missing:bytes:false loose:bytes:false" "status: the credential is available, the missing and the 0644 secret are not"
# Under systemd the broker logs to the journal.
wait_for 10 sh -c "journalctl --no-pager -o cat _PID=$BROKER_PID | grep -q 'not-there'"
broker_journal=$(journalctl --no-pager -o cat "_PID=$BROKER_PID")
like "$broker_journal" "secret 'missing' unavailable:.*not-there.*does not exist" "the missing secret is reported at start, with its source"
like "$broker_journal" "secret 'loose' unavailable:.*$T/loose.*mode 0644" "the 0644 secret file is refused with a clear error"
unlike "$broker_journal" "loose-$uniq" "the refused file's content is not logged"

args_sha=$(printf '{}' | sha256sum | cut -d' ' -f1)
abclient_script <<EOF
{"op":"run-open","label":"lifecycle $uniq"}
{"op":"call-begin","run":"{{run}}","tool":"echo.echo","args_sha256":"$args_sha","args_len":2}
{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"hk"}
{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"missing"}
{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"loose"}
EOF
run=$(reply 1 .run)
token=$(reply 2 .token)
token_id=$(reply 2 .token_id)
is "$(reply 3 '.value | @base64d')" "$cred_value" "the credential from \$CREDENTIALS_DIRECTORY is read"
is "$(reply 4 '.error + " " + .reason')" "denied secret-unavailable" "a use of the missing secret is denied: secret-unavailable"
is "$(reply 5 '.error + " " + .reason')" "denied secret-unavailable" "a use of the 0644 secret is denied: secret-unavailable"
wait_for 10 audit_count_is 2 'op=token-deny' "run=\"$run\"" 'reason="secret-unavailable"'
is "$(audit_count 'op=token-deny' "run=\"$run\"" 'reason="secret-unavailable"' 'secret="missing"')" 1 "token-deny record for the missing secret"
is "$(audit_count 'op=token-deny' "run=\"$run\"" 'reason="secret-unavailable"' 'secret="loose"')" 1 "token-deny record for the 0644 secret"

# --- agentbrokerctl status, run list, tokens ---------------------------------------------------
status_text=$(ctl status)
like "$status_text" "pid: +$BROKER_PID" "agentbrokerctl status: the pid"
like "$status_text" "policy files: +$T/policy.yaml" "agentbrokerctl status: the policy file"
like "$status_text" "runs open: +1" "agentbrokerctl status: one run open"
like "$status_text" "tokens active: +1" "agentbrokerctl status: one token active"
like "$status_text" "audit: +enabled" "agentbrokerctl status: audit enabled"
like "$status_text" "missing \\(bytes, (unavailable|not available)\\)" "agentbrokerctl status: the missing secret"
runs_text=$(ctl run list)
like "$runs_text" "$run +open +0 .*lifecycle $uniq" "agentbrokerctl run list: the run, open, owner 0, its label"
tokens_text=$(ctl tokens)
like "$tokens_text" "$token_id +$run +echo\\.echo" "agentbrokerctl tokens: the token's short id, run and tool"
unlike "$tokens_text" "${token#abt_}" "agentbrokerctl tokens never shows the token"
is "$(ctl tokens --json | jq -r '.tokens | map(.token_id + " " + .run + " " + .tool + " " + (.uses | tostring)) | join(",")')" \
	"$token_id $run echo.echo 1" "agentbrokerctl tokens --json: id, run, tool, uses"

# --- run budget: max_duration_s ------------------------------------------------------------------
abclient_script <<EOF
{"op":"run-open","label":"budget $uniq"}
{"op":"call-begin","run":"{{run}}","tool":"echo.echo","args_sha256":"$args_sha","args_len":2}
!sleep 2300
{"op":"call-begin","run":"{{run}}","tool":"echo.echo","args_sha256":"$args_sha","args_len":2}
EOF
run_budget=$(reply 1 .run)
is "$(reply 2 .ok)" true "a call within max_duration_s is allowed"
is "$(reply 3 '.error + " " + .reason')" "denied run-expired" "a call after max_duration_s is denied: run-expired"
wait_for 10 audit_count_is 1 'op=tool-call-deny' "run=\"$run_budget\"" 'reason="run-expired"'
is "$(audit_count 'op=tool-call-deny' "run=\"$run_budget\"" 'reason="run-expired"' 'res=failed')" 1 "tool-call-deny record: run-expired"

# The first run is past max_duration_s too: the broker closed it by itself (run expiry).
ok "the broker closed the first run at its max_duration_s (run-close, reason run-expired)" \
	wait_for 10 _audit_has op=run-close "run=\"$run\"" 'reason="run-expired"' 'calls=1'
like "$(ctl run close "$run" 2>&1)" "already closed" "agentbrokerctl run close of the expired run: already closed"
like "$(ctl run list)" "$run +closed" "agentbrokerctl run list: the run is closed"
is "$(ctl tokens --json | jq -r ".tokens | map(select(.run == \"$run\")) | length")" 0 "closing the run revoked its token"

# --- stop ------------------------------------------------------------------------------------------
stop_broker
like "$(tr '\n' ' ' <"$notify_log")" 'STOPPING=1' "STOPPING=1 is notified"
ok "the broker leaves the activated socket it does not own in place" test -S "$SOCK"

done_testing
