#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What an operator sees without systemd and when something is wrong: agentbrokerd
# --credentials-dir reads credentials under the names the unit and the credential store use
# (agentbroker.NAME); `agentbrokerctl status` (text and --json) gives a missing secret's
# reason and says when the audit trail is failing (a broker without CAP_AUDIT_WRITE);
# agentbroker-mcp then answers initialize and every call with an error naming the cause
# instead of exiting; a user outside the socket's group is told which group it needs.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq setpriv
require_user nobody

setup_testdir
uniq=$(unique_id)

# --- --credentials-dir: the credential store's names, no systemd -----------------------------
mkdir -m 0700 "$T/credstore"
printf 'hmac-%s' "$uniq" >"$T/credstore/agentbroker.sign_hmac"
chmod 0600 "$T/credstore/agentbroker.sign_hmac"
mkdir -m 0755 "$T/modules"
cat >"$T/policy.yaml" <<EOF
secrets:
  sign_hmac: { credential: agentbroker.sign_hmac }
  gone: { credential: agentbroker.gone }
tools:
  - match: "echo.*"
clients: { uids: [0] }
EOF
CREDENTIALS_DIRECTORY=/nonexistent start_broker "$T/policy.yaml" --credentials-dir "$T/credstore"
status=$(ctl status)
like "$status" 'sign_hmac \(bytes, available\)' \
	"--credentials-dir: agentbroker.sign_hmac is read from the directory (over \$CREDENTIALS_DIRECTORY)"
like "$status" "gone \\(bytes, unavailable\\): credential 'agentbroker.gone' \\($T/credstore/agentbroker.gone\\) does not exist" \
	"status gives a missing secret's reason"
is "$(ctl status --json | jq -r '.secrets[] | select(.name == "gone") | .reason')" \
	"credential 'agentbroker.gone' ($T/credstore/agentbroker.gone) does not exist" "status --json gives it too"
is "$(ctl status --json | jq -r '.secrets[] | select(.name == "sign_hmac") | has("reason")')" false \
	"an available secret has no reason"
like "$status" 'audit: +enabled$' "with CAP_AUDIT_WRITE the audit trail is enabled"
unlike "$(cat "$BROKER_ERR")" "hmac-$uniq" "the secret's value is in no log line"

# --- agentbrokerctl secret install: a module's secret, under the same name -----------------------
printf 'api-%s\n' "$uniq" >"$T/api.key"
out=$("$CTL" secret install api_key "$T/api.key" --credstore "$T/credstore" --dropin-dir "$T/dropin")
is "$(stat -c '%a' "$T/credstore/agentbroker.api_key")" 600 "secret install writes CREDSTORE/agentbroker.NAME, mode 0600"
ok "... with the file's bytes" cmp -s "$T/api.key" "$T/credstore/agentbroker.api_key"
is "$(grep -v '^#' "$T/dropin/agentbroker-secret-api_key.conf")" "[Service]
LoadCredential=agentbroker.api_key:agentbroker.api_key" "... and a drop-in that passes it to agentbroker.service"
like "$out" 'api_key: \{ credential: agentbroker\.api_key' "... and prints the policy line that names it"
unlike "$out" "api-$uniq" "... never the value"
"$CTL" secret install api_key "$T/api.key" --credstore "$T/credstore" --dropin-dir "$T/dropin" 2>"$T/err"
is "$?" 1 "an existing secret is not replaced"
like "$(cat "$T/err")" 'exists already' "... and says so"
"$CTL" secret install ../x "$T/api.key" --credstore "$T/credstore" 2>/dev/null
is "$?" 2 "a name with a path in it is a usage error"
: >"$T/empty"
"$CTL" secret install e "$T/empty" --credstore "$T/credstore" 2>/dev/null
is "$?" 1 "an empty file is refused"
sed -i 's/^  gone: .*/&\n  api_key: { credential: agentbroker.api_key }/' "$T/policy.yaml"
ctl policy reload >/dev/null
like "$(ctl status)" 'api_key \(bytes, available\)' "after a reload the broker has it (--credentials-dir)"

# --- a user outside the socket's group -------------------------------------------------------------
chgrp root "$SOCK"
chmod 0660 "$SOCK"
install -m 0755 "$CTL" "$T/agentbrokerctl"
out=$(as_user nobody "$T/agentbrokerctl" --socket "$SOCK" status 2>&1)
like "$out" "cannot connect to broker at $SOCK: Permission denied: uid 65534 is not in the group 'root' that may use the socket" \
	"a user who may not use the socket is told which group it needs"
stop_broker

# --- a broker that cannot write audit records ----------------------------------------------------
# Without CAP_AUDIT_WRITE (as the packaged unit's user without its AmbientCapabilities=),
# the kernel refuses every record with EPERM; audit.failure is deny (the default).
cat >"$T/brokerd-noaudit" <<EOF
#!/bin/sh
exec setpriv --bounding-set=-audit_write --inh-caps=-audit_write -- "$BROKERD" "\$@"
EOF
chmod 0755 "$T/brokerd-noaudit"
real_brokerd=$BROKERD
BROKERD=$T/brokerd-noaudit
start_broker "$T/policy.yaml" --credentials-dir "$T/credstore"
BROKERD=$real_brokerd
status=$(ctl status)
like "$status" 'audit: +failing: audit records cannot be written: Operation not permitted \(the broker needs CAP_AUDIT_WRITE\); audit.failure is deny' \
	"status says the audit trail is failing, why, and that operations are denied"
is "$(ctl status --json | jq -r .audit)" failing "status --json: audit is failing"
like "$(ctl status --json | jq -r .audit_error)" 'CAP_AUDIT_WRITE' "status --json: audit_error says why"
ctl run open >/dev/null 2>"$T/run-open.err"
like "$(cat "$T/run-open.err")" 'audit-failed' "a run cannot be opened (fail closed)"

# The host: answers initialize and a call with the cause, then exits at the end of its input.
mcp_start
init=$(request 1 initialize '{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}')
is "$(jq -r .error.code <<<"$init")" -32002 "the host answers initialize with an error (-32002) instead of exiting"
like "$(jq -r .error.message <<<"$init")" 'audit-failed.*audit.failure: deny.*CAP_AUDIT_WRITE' \
	"... naming the cause: the broker cannot write its audit trail"
printf '{"jsonrpc":"2.0","method":"notifications/initialized"}\n' >&"$MCP_IN"
resp=$(call 2 echo.echo '{"text":"x"}')
like "$(jq -r .error.message <<<"$resp")" 'audit-failed' "a tools/call gets the same error"
mcp_stop
is "$MCP_RC" 1 "the host exits (status 1) at the end of its input"
is "$(grep -c . "$T/mcp.out")" 2 "two requests, two answers (the notification got none)"
stop_broker

# --- the host, with no broker at all --------------------------------------------------------------
mcp_start
init=$(request 1 initialize '{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}')
like "$(jq -r .error.message <<<"$init")" "cannot connect to broker at $SOCK: No such file or directory: is agentbrokerd running" \
	"no broker: initialize is answered with the reason"
mcp_stop

done_testing
