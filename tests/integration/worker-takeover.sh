#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Issue 10 finding 1, performed: a module attacks the workers of other modules through the
# moment between a worker's exec and its confinement, leaves processes behind, signals
# kill(0)/kill(-1), and rewrites another module's file. With every worker started in its own
# pid namespace inside the run's user and mount namespaces (host/sandbox/sandbox.c) and modules
# pinned in sealed memory at load (host/workers/):
#   - a spy forked by module "race" polls ns_last_pid and opens /proc/<pid>/mem read-write
#     of every new "victim" worker while victim's worker is restarted 300 times: it never
#     even sees one (named=0), never opens one (opened=0);
#   - processes a module starts with setsid + fork (the spy, an orphan) die with its worker;
#   - kill(0, SIGKILL) and kill(-1, SIGKILL) from a module leave the host and a canary in its
#     process group alive;
#   - a module that overwrites victim.so changes nothing victim's restarted workers run.
. "$(dirname "$0")/lib.sh"

TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
RESPAWNS=${RESPAWNS:-300}

require_root
require_services
require_tools jq pgrep pkill setpriv setsid
require_built "$MCP" "$WORKER"
for so in "$TMODDIR/race.so" "$TMODDIR/victim.so" "$MODDIR/echo.so"; do
	[ -f "$so" ] || unmet "$so is not built (make check builds the test modules)"
done

setup_testdir
# The host runs under a uid of its own (nothing else runs as KUID; the attack works against
# any non-root host: against root, the victim's capabilities stop the spy until it drops
# them), in a session of its own, with a canary process of that uid in its process group:
# kill(-1) from a worker reaches at most KUID's processes and kill(0) at most that session, so
# a build without the fix loses only its host and canary. The modules belong to KUID, as a
# user's own modules would: any module of that host can write them.
KUID=$((61000 + $$ % 3000))
pgrep -u "$KUID" >/dev/null && unmet "uid $KUID has processes; cannot use it for this test"
mkdir -m 0755 "$T/modules"
install -m 0644 -o "$KUID" -g "$KUID" "$TMODDIR/race.so" "$TMODDIR/victim.so" "$MODDIR/echo.so" "$T/modules/"
cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "race.*"
  - match: "victim.*"
  - match: "echo.*"
clients: { uids: [0, $KUID] }
POLICY
start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"
chmod 0777 "$SOCK"
CANARY="abcanary-$$-$RANDOM"
: >"$T/mcp.err"
chmod 0666 "$T/mcp.err"
coproc KH {
	exec setpriv --reuid="$KUID" --regid="$KUID" --clear-groups setsid bash -c '
		(exec -a "$1" sleep 600) &
		AGENTBROKER_WORKER=$2 exec "$3" --broker "$4" --modules "$5" 2>>"$6"' _ \
		"$CANARY" "$WORKER" "$MCP" "$SOCK" "$T/modules" "$T/mcp.err"
}
MCP_PID=$KH_PID MCP_IN=${KH[1]} MCP_OUT=${KH[0]}
: >"$T/mcp.out"
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"worker-takeover.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "a host as uid $KUID answers initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"

# text ID TOOL ARGS: the first text block of a call's result (or its error message).
text() {
	local r
	r=$(call "$1" "$2" "$3") || return 1
	jq -r '.result.content[0].text // .error.message' <<<"$r"
}

# --- the exec-time race, RESPAWNS times -----------------------------------------------------
like "$(text 1 race.do '{"action":"spy","target":"victim"}')" '^spy pid=' "race starts a spy (setsid + fork)"
id=10
start=$(date +%s)
for ((i = 0; i < RESPAWNS; i++)); do
	call $((id++)) victim.do '{"action":"exit"}' >/dev/null
	out=$(text $((id++)) victim.do '{"action":"ping"}')
	[ "$out" = pong ] || { diag "respawn $i: victim answered '$out'"; break; }
done
is "$i" "$RESPAWNS" "victim's worker was restarted $RESPAWNS times and answered each time ($(($(date +%s) - start)) s)"
rep=$(text $((id++)) race.do '{"action":"report"}')
diag "spy: $rep"
like "$rep" 'looped=1 ' "the spy polled ns_last_pid throughout"
like "$rep" ' spy=1$' "the spy is still alive (its worker is)"
like "$rep" ' named=0 ' "the spy never saw one of the $RESPAWNS victim workers (no name: they are in other pid namespaces)"
like "$rep" ' opened=0 read=0 ' "the spy never opened a victim worker's /proc/<pid>/mem, never read from one"

# --- nothing a module starts outlives its worker --------------------------------------------
like "$(text $((id++)) race.do '{"action":"orphan"}')" '^orphan pid=' "race starts an orphan (setsid + fork)"
ok "... which runs (aborphan)" wait_for 10 pgrep -u "$KUID" -x aborphan
ok "... as does the spy (abspy)" pgrep -u "$KUID" -x abspy
call $((id++)) race.do '{"action":"exit"}' >/dev/null
ok "race's worker ended: its orphan died with it" wait_for 10 not pgrep -u "$KUID" -x aborphan
ok "... and so did its spy" wait_for 10 not pgrep -u "$KUID" -x abspy

# --- a module rewrites another module's file -------------------------------------------------
out=$(text $((id++)) race.do "{\"action\":\"tamper\",\"path\":\"$T/modules/victim.so\",\"from\":\"$T/modules/echo.so\"}")
diag "tamper: $out"
ok "victim.so now holds echo's code on disk" cmp -s "$T/modules/victim.so" "$T/modules/echo.so"
call $((id++)) victim.do '{"action":"exit"}' >/dev/null
is "$(text $((id++)) victim.do '{"action":"ping"}')" pong \
	"victim's next worker still runs the code loaded at start (pinned in sealed memory)"

# --- kill(0) and kill(-1) from a module -----------------------------------------------------
like "$(text $((id++)) race.do '{"action":"kill_pgrp"}')" 'kill_pgrp rc=0' "kill(0, SIGKILL) from a module returns (its worker is not in the host's process group)"
is "$(text $((id++)) echo.echo '{"text":"after kill(0)"}')" "after kill(0)" "the host still answers after kill(0, SIGKILL)"
ok "... and the canary beside the host lives" pgrep -f "$CANARY"
out=$(text $((id++)) race.do '{"action":"kill_all"}')
like "$out" 'kill_all rc=' "kill(-1, SIGKILL) from a module returns ($out)"
is "$(text $((id++)) echo.echo '{"text":"after kill(-1)"}')" "after kill(-1)" "the host still answers after kill(-1, SIGKILL)"
ok "... and the canary beside the host lives" pgrep -f "$CANARY"
ok "... and the host is the same process" test -d "/proc/$MCP_PID"

exec {MCP_IN}>&-
wait "$MCP_PID" 2>/dev/null
is "$?" 0 "the host exits with status 0 at the end of its input"
pkill -KILL -u "$KUID" 2>/dev/null    # the canary (and on a build without the fix, what outlived its worker)
unlike "$(cat "$T/mcp.err")" 'Sanitizer|runtime error' "no sanitizer report from the host or its workers"
stop_broker
done_testing
