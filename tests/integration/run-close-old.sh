#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Closing an old run after many newer runs were closed: the broker keeps only the newest
# AB_RUNS_CLOSED_KEPT (256) closed runs, so closing the old run frees it at once. The
# run-close reply and its audit record were built from the run after that (a use after free
# in agentbrokerd that the ASan build reports). Now they are taken before the close.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq

setup_testdir
cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "echo.*"
clients: { uids: [0] }
POLICY
start_broker "$T/policy.yaml"

old=$(ctl run open --label old-run) || bail_out "run open failed"
for ((i = 0; i < 300; i++)); do
	r=$(ctl run open --label "newer-$i") && ctl run close "$r" >/dev/null || break
done
is "$i" 300 "300 newer runs opened and closed"
out=$(ctl run close "$old" --json 2>"$T/close.err")
rc=$?
is "$rc" 0 "the old run closes" || diag "$(cat "$T/close.err")"
is "$(jq -r '.calls' <<<"$out" 2>/dev/null)" 0 "its reply carries its totals (0 calls)"
ok "the broker still answers" ctl status
_closed() { audit_search -i | grep -q "op=run-close.*run=$old"; }
ok "the old run's run-close record is written, with its id" wait_for 10 _closed
stop_broker
unlike "$(cat "$BROKER_ERR" 2>/dev/null)" "AddressSanitizer|runtime error" "no sanitizer report from agentbrokerd"
done_testing
