#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A glob rule's rate (issue 10, finding 5): by default every tool the glob matches has its own
# bucket, so `match: "lim.*", rate: 1/min` allowed one call of lim.a AND one of lim.b AND one of
# every other tool of the module in a minute. `rate_scope: rule` makes the tools of the rule
# share one bucket: the second call, of another tool, is denied (rate-limited, audited).
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq sha256sum
require_built "$ABCLIENT"

setup_testdir
cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "lim.*"
    rate: 1/min
    burst: 1
  - match: "shared.*"
    rate: 1/min
    burst: 1
    rate_scope: rule
clients: { uids: [0] }
POLICY
start_broker "$T/policy.yaml"

args='{}'
args_sha=$(printf '%s' "$args" | sha256sum | cut -d' ' -f1)
begin() { # begin TOOL: a call-begin request line in run {{run}}
	printf '{"op":"call-begin","run":"{{run}}","tool":"%s","args_sha256":"%s","args_len":%d}\n' "$1" "$args_sha" "${#args}"
}

abclient_script <<REQ
{"op":"run-open","label":"rate-scope"}
$(begin lim.a)
$(begin lim.b)
$(begin lim.a)
$(begin shared.a)
$(begin shared.b)
$(begin shared.c)
REQ
run=$(reply 1 .run)
is "$(reply 2 .ok),$(reply 3 .ok)" "true,true" "rate_scope tool (the default): lim.a and lim.b each have a bucket"
is "$(reply 4 .reason)" rate-limited "a second lim.a call is limited"
is "$(reply 5 .ok)" true "rate_scope rule: the first call of the rule's tools is allowed"
is "$(reply 6 '[.ok, .reason] | @csv')" 'false,"rate-limited"' "a call of another of its tools is limited: one shared bucket"
like "$(reply 6 .message)" "the tools of rule shared\.\* share 1/60 calls/s|the tools of rule shared\.\* share 0\.0166" \
	"the message names the rule"
is "$(reply 7 .reason)" rate-limited "and a third"
ok "the denial is audited" wait_for 10 _audit_has op=tool-call-deny "run=\"$run\"" 'tool="shared.b"' 'reason="rate-limited"'

printf 'tools:\n  - match: "x.*"\n    rate_scope: rule\n  - match: "y.*"\n    rate: 1/s\n    rate_scope: all\n' >"$T/bad.yaml"
out=$(ctl policy check "$T/bad.yaml" 2>&1)
like "$out" "3:17: rate_scope without rate" "rate_scope without rate is an error"
like "$out" "6:17: rate_scope must be tool or rule, not 'all'" "and an unknown scope"

stop_broker
done_testing
