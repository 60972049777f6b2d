#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What a plain (non-admin) client may see and write (issue 10, finding 5):
#   - status: version and uptime only; the policy files, secret names and counters are for
#     admins;
#   - host-config: only the configuration of modules policy allows a tool of (a module no rule
#     allows, here `internal`, stays the admin's);
#   - http-listener records: only on a connection that opened a run that is still open (the
#     host's own run, named in the record), or by an admin; a plain client without one is
#     refused (not-permitted, no-own-run) and nothing is written.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq setpriv
require_user nobody
require_built "$ABCLIENT"

setup_testdir
MARK="scope-$(unique_id)"
cat >"$T/policy.yaml" <<POLICY
secrets:
  hidden_name_$MARK: { env: AB_TEST_SCOPE }
tools:
  - match: "fs.*"
modules:
  fs: { roots: [/srv/agentbroker] }
  internal: { url: "https://internal-$MARK.example" }
clients: { uids: [0, nobody] }
broker: { socket_group: nogroup }
POLICY
AB_TEST_SCOPE=x start_broker "$T/policy.yaml"

# status
abclient_script_as nobody <<<'{"op":"status"}'
is "$(reply 1 '[.ok, .admin, (.version | type)] | @csv')" 'true,false,"string"' "status answers a plain client: version, not admin"
unlike "$(reply 1)" "$MARK" "without secret names"
is "$(reply 1 '[has("secrets"), has("policy_files"), has("connections"), has("pid")] | @csv')" \
	"false,false,false,false" "nor policy files, counters or the broker's pid"
abclient_script <<<'{"op":"status"}'
like "$(reply 1 '.secrets[].name')" "hidden_name_$MARK" "an admin's status lists the secrets"
is "$(reply 1 .admin)" true "and says admin"

# host-config
abclient_script_as nobody <<<'{"op":"host-config","tools":["fs.read_file"]}'
is "$(reply 1 '.modules | keys | @csv')" '"fs"' "host-config gives a plain client only the modules policy allows a tool of"
unlike "$(reply 1)" "internal-$MARK" "not the internal module's configuration"
is "$(reply 1 '.tools | keys | @csv')" '"fs.read_file"' "and the allowed tools, as before"
abclient_script <<<'{"op":"host-config","tools":[]}'
is "$(reply 1 '.modules | keys | @csv')" '"fs","internal"' "an admin gets every module's configuration"

# http-listener
abclient_script_as nobody <<<'{"op":"http-listener","address":"127.0.0.1:1","auth":"insecure-no-auth"}'
is "$(reply 1 '[.error, .reason] | @csv')" '"not-permitted","no-own-run"' \
	"http-listener from a plain client without a run of its own is refused"
abclient_script_as nobody <<REQ
{"op":"run-open","label":"scope"}
{"op":"http-listener","address":"127.0.0.2:2","auth":"bearer"}
{"op":"run-close","run":"{{run}}"}
{"op":"http-listener","address":"127.0.0.3:3","auth":"bearer"}
REQ
run=$(reply 1 .run)
is "$(reply 2 .ok)" true "on the connection that opened a run, it is recorded"
is "$(reply 4 .reason)" no-own-run "not once that run is closed"
# The detail is hex-encoded in raw records (it has a space): search the interpreted ones.
_audit_has_decoded() { [ "$(audit_search -i | _audit_grep "$@" | grep -c .)" -gt 0 ]; }
ok "the record names the host's run" wait_for 10 _audit_has op=http-listener "run=\"$run\""
ok "it is the listener recorded" _audit_has_decoded op=http-listener "address=127.0.0.2:2"
ok "the refused ones wrote nothing" not _audit_has_decoded op=http-listener "address=127.0.0.1:1"
ok "nor after the run closed" not _audit_has_decoded op=http-listener "address=127.0.0.3:3"
abclient_script_as nobody <<<'{"op":"run-open","label":"scope-2"}'
run2=$(reply 1 .run)
abclient_script_as nobody <<REQ
{"op":"http-listener","address":"127.0.0.5:5","auth":"bearer","run":"$run2"}
REQ
is "$(reply 1 .ok)" true "on another connection, naming an open run of its own uid (a host started with --run)"
abclient_script <<<'{"op":"run-open","label":"scope-root"}'
root_run=$(reply 1 .run)
abclient_script_as nobody <<REQ
{"op":"http-listener","address":"127.0.0.6:6","auth":"bearer","run":"$root_run"}
REQ
is "$(reply 1 .reason)" no-own-run "not naming another uid's run"
abclient_script <<<'{"op":"http-listener","address":"127.0.0.4:4","auth":"bearer"}'
is "$(reply 1 .ok)" true "an admin may record a listener without a run"

stop_broker
done_testing
