#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every operation of the broker leaves its audit record (AUDIT_TRUSTED_APP, found with
# ausearch) and its journal entry (AGENTBROKER_* fields), agentbrokerctl audit reports
# exactly what this test did, and the secret operations return values that verify:
# HMAC-SHA256 with openssl, the Ed25519 signature and the JWT with the key of the JWKS file.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq openssl base64 basenc sha256sum

setup_testdir
uniq=$(unique_id)

# --- policy and secrets -----------------------------------------------------------------
hk_value="hk-$uniq-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
printf '%s\n' "$hk_value" >"$T/hk"
openssl genpkey -algorithm ed25519 -out "$T/ek.pem" 2>/dev/null
chmod 0600 "$T/hk" "$T/ek.pem"
cat >"$T/policy.yaml" <<EOF
secrets:
  hk: { file: $T/hk }
  ek: { file: $T/ek.pem, type: ed25519 }
tools:
  - match: "echo.echo"
    secrets:
      hk: [read, sign]
      ek: [sign, mint-jwt]
  - match: "echo.other"
  - match: "blocked.*"
    allow: false
jwt: { issuer: itest-$uniq, max_ttl_s: 600, jwks_file: $T/jwks.json }
clients: { uids: [0] }
EOF

start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# --- one run, one call, every secret operation, the denials a run can have ---------------
args='{"x":1}'
args_sha=$(printf '%s' "$args" | sha256sum | cut -d' ' -f1)
data_text="payload-$uniq"
data_b64=$(printf '%s' "$data_text" | base64 -w0)
forged="abt_$(head -c 32 /dev/urandom | basenc --base64url | tr -d '=\n' | cut -c1-43)"
label="itest-audit-$uniq"

abclient_script <<EOF
{"op":"run-open","label":"$label"}
{"op":"call-begin","run":"{{run}}","tool":"echo.echo","args_sha256":"$args_sha","args_len":${#args},"args":"{\"x\":1}"}
{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"hk"}
{"op":"secret-sign","token":"{{token}}","tool":"echo.echo","secret":"hk","alg":"hmac-sha256","data":"$data_b64"}
{"op":"secret-sign","token":"{{token}}","tool":"echo.echo","secret":"ek","alg":"ed25519","data":"$data_b64"}
{"op":"mint-jwt","token":"{{token}}","tool":"echo.echo","secret":"ek","audience":"svc-$uniq","scope":"repo:read","ttl_s":120}
{"op":"secret-read","token":"{{token}}","tool":"echo.other","secret":"hk"}
{"op":"call-end","token":"{{token}}","status":"ok","result_bytes":123,"duration_ms":45}
{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"hk"}
{"op":"secret-read","token":"$forged","tool":"echo.echo","secret":"hk"}
{"op":"call-begin","run":"{{run}}","tool":"blocked.tool","args_sha256":"$args_sha","args_len":${#args}}
{"op":"run-close","run":"{{run}}"}
EOF
client_pid=$ABC_PID
is "$(reply_count)" 12 "12 replies to 12 requests"

run=$(reply 1 .run)
like "$run" '^[0-9a-f]{32}$' "run-open returns a run id"
token=$(reply 2 .token)
call=$(reply 2 .call)
like "$token" '^abt_[A-Za-z0-9_-]{43}$' "call-begin returns an abt_ token"
like "$call" '^[0-9]+$' "call-begin returns a call id"
is "$(reply 2 '.secrets | map(.name + ":" + (.ops | join(","))) | sort | join(" ")')" \
	"ek:sign,mint-jwt hk:read,sign" "call-begin lists the secrets and operations of the call"

# secret-read: the bytes of the file, without the trailing newline
is "$(reply 3 .value | base64 -d)" "$hk_value" "secret-read returns the secret's bytes"

# secret-sign hmac-sha256: verify with openssl
want_mac=$(printf '%s' "$data_text" | openssl dgst -sha256 -mac HMAC -macopt "key:$hk_value" -binary | base64 -w0)
is "$(reply 4 .signature)" "$want_mac" "HMAC-SHA256 signature equals openssl's"

# The JWKS file holds the public key of ek
jwks_x=$(jq -r '.keys[0].x' "$T/jwks.json")
jwks_kid=$(jq -r '.keys[0].kid' "$T/jwks.json")
is "$(jq -r '.keys | length' "$T/jwks.json")" 1 "the JWKS file holds one key"
is "$(jq -r '.keys[0] | .kty + " " + .crv + " " + .alg' "$T/jwks.json")" "OKP Ed25519 EdDSA" "JWKS key is an Ed25519 OKP key for EdDSA"
jwks_pub_raw_hex=$(b64url_decode "$jwks_x" | od -An -v -tx1 | tr -d ' \n')
pem_pub_raw_hex=$(openssl pkey -in "$T/ek.pem" -pubout -outform DER | tail -c 32 | od -An -v -tx1 | tr -d ' \n')
is "$jwks_pub_raw_hex" "$pem_pub_raw_hex" "JWKS x is the public key of the ek PEM"
ed25519_pub_pem_from_raw "$jwks_x" >"$T/jwks-pub.pem"

# secret-sign ed25519: verify with the JWKS key
printf '%s' "$data_text" >"$T/data.bin"
reply 5 .signature | base64 -d >"$T/sig.bin"
ok "Ed25519 signature verifies with the JWKS key" \
	openssl pkeyutl -verify -pubin -inkey "$T/jwks-pub.pem" -rawin -in "$T/data.bin" -sigfile "$T/sig.bin"
printf 'x%s' "$data_text" >"$T/data-tampered.bin"
ok "the same signature does not verify other data" \
	not openssl pkeyutl -verify -pubin -inkey "$T/jwks-pub.pem" -rawin -in "$T/data-tampered.bin" -sigfile "$T/sig.bin"

# mint-jwt: EdDSA JWT, signature over header.payload, claims
jwt=$(reply 6 .jwt)
IFS=. read -r jwt_h jwt_p jwt_s <<<"$jwt"
printf '%s.%s' "$jwt_h" "$jwt_p" >"$T/jwt-signed.bin"
b64url_decode "$jwt_s" >"$T/jwt-sig.bin"
ok "the JWT signature verifies with the JWKS key" \
	openssl pkeyutl -verify -pubin -inkey "$T/jwks-pub.pem" -rawin -in "$T/jwt-signed.bin" -sigfile "$T/jwt-sig.bin"
hdr=$(b64url_decode "$jwt_h")
claims=$(b64url_decode "$jwt_p")
is "$(jq -r '.alg + " " + .kid' <<<"$hdr")" "EdDSA $jwks_kid" "JWT header: alg EdDSA, kid of the JWKS key"
is "$(jq -r '[.iss, .aud, .sub, .scope, .run, .tool] | join(" ")' <<<"$claims")" \
	"itest-$uniq svc-$uniq run/$run/tool/echo.echo repo:read $run echo.echo" "JWT claims iss, aud, sub, scope, run, tool"
is "$(jq -r '.exp - .iat' <<<"$claims")" 120 "JWT exp - iat is the ttl asked for"
is "$(jq -r '.exp' <<<"$claims")" "$(reply 6 .exp)" "JWT exp equals the reply's exp"
like "$(jq -r '.jti' <<<"$claims")" '^[0-9a-f]{32}$' "JWT has a jti"

# the denials
is "$(reply 7 '.error + " " + .reason')" "denied wrong-tool" "a token presented for another tool is denied"
is "$(reply 8 .ok)" true "call-end succeeds"
is "$(reply 9 '.error + " " + .reason')" "denied token-revoked" "the token replayed after call-end is denied"
is "$(reply 10 '.error + " " + .reason')" "denied token-unknown" "a forged token is denied"
is "$(reply 11 '.error + " " + .reason')" "denied tool-not-allowed" "a tool the policy denies is denied"
is "$(reply 12 '[.calls, .denied, .result_bytes] | join(" ")')" "1 1 123" "run-close reports 1 call, 1 denied, 123 bytes"

# --- policy-load on SIGHUP and on agentbrokerctl policy reload ---------------------------
kill -HUP "$BROKER_PID"
wait_for 10 audit_count_is 2 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=success'
ok "agentbrokerctl policy reload succeeds" ctl policy reload
wait_for 10 audit_count_is 3 'op=policy-load' "detail=\"$T/policy.yaml\"" 'res=success'

# --- the audit records -------------------------------------------------------------------
r="run=\"$run\""
s="suid=0 spid=$client_pid"
wait_for 10 audit_count_is 10 "$r"
is "$(audit_count "$r")" 10 "10 audit records name the run"
is "$(audit_count "op=run-open" "$s" "$r" "detail=\"$label\"" 'res=success')" 1 "run-open record"
is "$(audit_count "op=tool-call-begin" "$s" "$r" "call=$call" 'tool="echo.echo"' "args_sha256=\"$args_sha\"" "args_len=${#args}" 'res=success')" \
	1 "tool-call-begin record with call id, tool and argument digest"
for use in 'secret="hk" sop="read"' 'secret="hk" sop="sign"' 'secret="ek" sop="sign"' 'secret="ek" sop="mint-jwt"'; do
	is "$(audit_count "op=secret-use" "$s" "$r" "call=$call" 'tool="echo.echo"' "$use" "token=\"$(reply 2 .token_id)\"" 'res=success')" \
		1 "secret-use record: $use"
done
is "$(audit_count "op=token-deny" "$s" "$r" "call=$call" 'reason="wrong-tool"' 'res=failed')" 1 "token-deny record: wrong-tool"
is "$(audit_count "op=tool-call-end" "$s" "$r" "call=$call" 'status="ok"' 'bytes=123' 'duration_ms=45' 'res=success')" \
	1 "tool-call-end record with status, bytes and duration"
is "$(audit_count "op=tool-call-deny" "$s" "$r" 'tool="blocked.tool"' 'reason="tool-not-allowed"' 'res=failed')" 1 "tool-call-deny record"
is "$(audit_count "op=run-close" "$s" "$r" 'calls=1' 'denied=1' 'bytes=123' 'res=success')" 1 "run-close record with the summary"
# Denials of tokens the broker cannot tie to a run: found by the caller's pid
is "$(audit_count "op=token-deny" "$s" 'reason="token-revoked"' 'secret="hk"' 'sop="read"' 'res=failed')" 1 "token-deny record: token-revoked"
is "$(audit_count "op=token-deny" "$s" 'reason="token-unknown"' 'secret="hk"' 'sop="read"' 'res=failed')" 1 "token-deny record: token-unknown"
is "$(audit_count "spid=$client_pid")" 12 "12 records for the client's 12 requests"
is "$(audit_count "$token")" 0 "no audit record holds the token"
is "$(audit_count "op=policy-load" "detail=\"$T/policy.yaml\"" 'res=success')" 3 \
	"3 policy-load records: start, SIGHUP, agentbrokerctl policy reload"

# --- the journal -------------------------------------------------------------------------
want_ops="run-close run-open secret-use secret-use secret-use secret-use token-deny tool-call-begin tool-call-deny tool-call-end"
wait_for 10 journal_count_is 10 "AGENTBROKER_RUN=$run"
is "$(journal_json "AGENTBROKER_RUN=$run" | jq -r .AGENTBROKER_OP | sort | tr '\n' ' ' | sed 's/ $//')" \
	"$want_ops" "journalctl AGENTBROKER_RUN= finds the run's 10 entries"
is "$(journal_json "AGENTBROKER_RUN=$run" | jq -r '[.AGENTBROKER_OP, .MESSAGE_ID] | join(" ")' | sort -u | cut -d' ' -f1 | uniq -d | wc -l)" \
	0 "each operation has one MESSAGE_ID"
is "$(journal_json "AGENTBROKER_RUN=$run" | jq -r .MESSAGE_ID | sort -u | wc -l)" 7 "7 operations, 7 distinct MESSAGE_IDs"
catalog=$ABS_TOP_SRCDIR/systemd/agentbroker.catalog
is "$(journal_json "AGENTBROKER_RUN=$run" | jq -r .MESSAGE_ID | sort -u | while read -r id; do
	grep -qx -- "-- $id" "$catalog" || echo "$id"
done)" "" "every MESSAGE_ID has its entry in systemd/agentbroker.catalog"
is "$(journal_json "AGENTBROKER_RUN=$run" AGENTBROKER_OP=secret-use | jq -r '[.AGENTBROKER_SECRET, .AGENTBROKER_OPERATION, .AGENTBROKER_CALL, .AGENTBROKER_PEER_PID] | join(":")' | sort | tr '\n' ' ')" \
	"ek:mint-jwt:$call:$client_pid ek:sign:$call:$client_pid hk:read:$call:$client_pid hk:sign:$call:$client_pid " \
	"secret-use entries name secret, operation, call and caller"
is "$(journal_json "AGENTBROKER_RUN=$run" AGENTBROKER_OP=tool-call-end | jq -r '[.AGENTBROKER_STATUS, .AGENTBROKER_RESULT_BYTES, .AGENTBROKER_DURATION_MS, .AGENTBROKER_RESULT] | join(" ")')" \
	"ok 123 45 success" "tool-call-end entry: status, bytes, duration"
is "$(journal_json "AGENTBROKER_RUN=$run" AGENTBROKER_OP=tool-call-deny | jq -r '[.AGENTBROKER_TOOL, .AGENTBROKER_REASON, .AGENTBROKER_RESULT] | join(" ")')" \
	"blocked.tool tool-not-allowed failed" "tool-call-deny entry: tool and reason"
wait_for 10 journal_count_is 3 AGENTBROKER_OP=token-deny "AGENTBROKER_PEER_PID=$client_pid" AGENTBROKER_SECRET=hk AGENTBROKER_OPERATION=read
is "$(journal_json AGENTBROKER_OP=token-deny "AGENTBROKER_PEER_PID=$client_pid" | jq -r .AGENTBROKER_REASON | sort | tr '\n' ' ')" \
	"token-revoked token-unknown wrong-tool " "token-deny entries with their reasons"
wait_for 10 journal_count_is 3 AGENTBROKER_OP=policy-load "AGENTBROKER_DETAIL=$T/policy.yaml"
is "$(journal_count AGENTBROKER_OP=policy-load "AGENTBROKER_DETAIL=$T/policy.yaml" AGENTBROKER_RESULT=success)" 3 \
	"3 policy-load entries: start, SIGHUP, agentbrokerctl policy reload"
is "$(journal_json "AGENTBROKER_RUN=$run" | grep -cF -- "$token")" 0 "no journal entry holds the token"

# --- agentbrokerctl audit ----------------------------------------------------------------
report=$(ctl audit --run "$run" --format json)
ok "agentbrokerctl audit --run --format json succeeds" test -n "$report"
is "$(jq -r '.runs | length' <<<"$report")" 1 "the report has the one run"
is "$(jq -r '.runs[0] | [.run, .user, .calls_begun, .calls_ended, .denied, .token_denied, .bytes, .duration_ms_total] | join(" ")' <<<"$report")" \
	"$run root 1 1 1 1 123 45" "run: 1 call begun and ended, 1 denied, 1 token denied, 123 bytes, 45 ms"
is "$(jq -r '.runs[0].secrets | map(.secret + "/" + .operation + "=" + (.used | tostring)) | sort | join(" ")' <<<"$report")" \
	"ek/mint-jwt=1 ek/sign=1 hk/read=1 hk/sign=1" "run: the four secret uses"
is "$(jq -r '.runs[0].denials | map(.op + "/" + .reason + "=" + (.count | tostring)) | sort | join(" ")' <<<"$report")" \
	"token-deny/wrong-tool=1 tool-call-deny/tool-not-allowed=1" "run: the two denials with their reasons"
is "$(jq -r '.runs[0].call_ends | map(.status + "=" + (.count | tostring)) | join(" ")' <<<"$report")" "ok=1" "run: one call ended ok"
is "$(jq -r '.runs[0].close | [.calls, .denied, .bytes] | join(" ")' <<<"$report")" "1 1 123" "run: the run-close summary"
is "$(jq -r '.decisions | map(.op + "=" + (.success | tostring) + "/" + (.failed | tostring)) | join(" ")' <<<"$report")" \
	"run-open=1/0 run-close=1/0 tool-call-begin=1/0 tool-call-end=1/0 tool-call-deny=0/1 secret-use=4/0 token-deny=0/1 policy-load=0/0 http-token-issue=0/0 http-token-deny=0/0 http-listener=0/0 tunnel-connect=0/0 tunnel-disconnect=0/0 tunnel-auth-fail=0/0 tool-call-reject=0/0 run-client=0/0 run-teardown=0/0 egress-connect=0/0 egress-close=0/0 egress-http=0/0" \
	"decisions of the run: exactly the operations performed"
denied_report=$(ctl audit --run "$run" --denied --format json)
is "$(jq -r '[.decisions[] | select(.success > 0)] | length' <<<"$denied_report")" 0 "--denied: no successful decision"
is "$(jq -r '.decisions | map(select(.failed > 0) | .op) | sort | join(" ")' <<<"$denied_report")" \
	"token-deny tool-call-deny" "--denied: the two denials"

# --- ausearch -i renders the records readably --------------------------------------------
interp=$(audit_search -i | grep -aF "run=$run")
is "$(grep -c . <<<"$interp")" 10 "ausearch -i shows the run's 10 records"
like "$(grep 'op=tool-call-begin' <<<"$interp")" "tool=echo\\.echo args_sha256=$args_sha args_len=${#args}" \
	"ausearch -i: tool, digest and length readable"
like "$(grep 'op=run-open' <<<"$interp")" "detail=$label( |$)" "ausearch -i: the run label readable"
like "$(grep 'op=token-deny' <<<"$interp")" 'reason=wrong-tool' "ausearch -i: the reason readable"
# ausearch -i (audit 3.0.9) does not translate uids in AUDIT_TRUSTED_APP records (neither suid
# nor the record's own uid): docs/audit.md says so, and that agentbrokerctl audit does (the
# report's run user above is "root"). When the platform's ausearch starts translating them,
# this check fails: update docs/audit.md and the check.
like "$(grep 'op=run-open' <<<"$interp")" ' suid=0 spid=[0-9]+ ' \
	"ausearch -i leaves suid as the number (docs/audit.md; agentbrokerctl audit shows the user name)"
spaced="label with spaces $uniq"
abclient_script <<<"{\"op\":\"run-open\",\"label\":\"$spaced\"}"
run2=$(reply 1 .run)
wait_for 10 audit_count_is 1 "run=\"$run2\""
like "$(audit_search -i | grep -aF "run=$run2")" "detail=$spaced exe=" "ausearch -i decodes a hex-encoded label (with spaces)"

stop_broker
done_testing
