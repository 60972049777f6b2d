#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Orphans must not exhaust the broker (issue 10, finding 2). The attack: the orphan test module
# (tests/modules/orphan.c) leaves, on every call, a detached child that keeps its worker's
# pinned broker connection and nothing else; the worker exits and the host starts a new one.
# With the broker started as systemd starts services (soft RLIMIT_NOFILE 1024), ORPHANS calls
# (default 560) used to leave that many connections (two descriptors each) behind for good:
# `agentbrokerctl status` failed and no new host could connect. Now:
#   - the broker raises its soft RLIMIT_NOFILE to the hard limit;
#   - it closes a worker's connection when the worker exits (pidfd watch), whoever holds it
#     (tests/unit/test_pidwatch);
#   - and since every worker is pid 1 of a pid namespace of its own (the run's sandbox,
#     docs/architecture.md), an orphan no longer outlives its worker at all: the kernel kills
#     it with the namespace, so the connection's last holder is gone too;
#   - after the attack, admin status and a fresh host work and the broker holds few
#     descriptors;
#   - broker.max_connections_per_uid: one uid cannot take more connections than that; the
#     refusals are logged and counted in status while other uids still connect.
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
ORPHANS=${ORPHANS:-560}

require_root
require_services
require_tools jq pgrep setpriv
require_user nobody
require_built "$MCP" "$WORKER" "$ABCLIENT"
for so in "$MODDIR/echo.so" "$TMODDIR/orphan.so"; do
	[ -f "$so" ] || unmet "$so is not built (make check builds the test modules)"
done

setup_testdir
chmod 0755 "$T"
mkdir -m 0755 "$T/modules"
install -m 0755 "$MODDIR/echo.so" "$TMODDIR/orphan.so" "$T/modules/"
TAG="abo-$(unique_id | cut -c1-10)"

# End exactly the orphans of this run (named $TAG), by pid.
kill_orphans() {
	local p
	for p in $(pgrep -x "$TAG"); do kill -KILL "$p" 2>/dev/null; done
}
add_cleanup kill_orphans

# fds PID: the number of open descriptors of PID.
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | grep -c .; }

cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "echo.*"
  - match: "orphan.*"
clients: { uids: [0, nobody] }
broker: { max_connections_per_uid: 600 }
POLICY

# As systemd starts a service (DefaultLimitNOFILE=1024:524288), with a smaller hard limit.
ulimit -Sn 1024 && ulimit -Hn 4096 || bail_out "cannot set RLIMIT_NOFILE"
start_broker "$T/policy.yaml"
soft=$(awk '/^Max open files/ { print $4 }' "/proc/$BROKER_PID/limits")
is "$soft" 4096 "the broker raised its soft RLIMIT_NOFILE to the hard limit"

mcp_start
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"orphans.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"

# The attack: one orphan per call. A response per call, read without a jq per line.
answered=0
for ((i = 1; i <= ORPHANS; i++)); do
	printf '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"orphan.leave","arguments":{"tag":"%s"}}}\n' \
		"$i" "$TAG" >&"$MCP_IN"
	while IFS= read -r -t 60 -u "$MCP_OUT" line; do
		case $line in *"\"id\":$i,"* | *"\"id\":$i}"*) answered=$((answered + 1)); break ;; esac
	done
done
is "$answered" "$ORPHANS" "the host answered all $ORPHANS orphan.leave calls (each worker exits)"
_no_orphans() { ! pgrep -x "$TAG" >/dev/null; }
ok "no orphan outlived its worker (each died with its worker's pid namespace)" wait_for 20 _no_orphans

# The broker closes those connections as the workers exit (the last ones within a moment).
wait_for 20 bash -c "[ \$(find /proc/$BROKER_PID/fd -mindepth 1 -maxdepth 1 | grep -c .) -lt 200 ]"
n=$(fds "$BROKER_PID")
ok "the broker holds $n descriptors after $ORPHANS orphans (not two per orphan)" [ "$n" -lt 200 ]

ctl status --json >"$T/status.json" 2>"$T/status.err"
ok "admin agentbrokerctl status works after the attack" [ -s "$T/status.json" ] || diag "$(cat "$T/status.err")"
open=$(jq -r '.connections.open' "$T/status.json")
ok "status: $open connections open (the host's, its live workers', this one): none left by the $ORPHANS workers" \
	[ "$open" -le 8 ]
is "$(jq -r '.connections.accept_errors' "$T/status.json")" 0 "status: no accept errors"

# A fresh host connects and serves.
mcp_stop
mcp_start
r=$(request 1 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"orphans.sh","version":"2"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "a fresh host starts after the attack"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
r=$(call 2 echo.echo '{"text":"still here"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "still here" "and its tool calls work (a new worker connects)"
mcp_stop
kill_orphans

# Per-uid cap: nobody may hold at most 4 connections; a fifth is refused, root still connects.
stop_broker
cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "echo.*"
clients: { uids: [0, nobody] }
broker: { max_connections_per_uid: 4, socket_group: nogroup }
POLICY
start_broker "$T/policy.yaml"
install -m 0755 "$ABCLIENT" "$T/abclient"
holders=()
for ((i = 0; i < 4; i++)); do
	setpriv --reuid=nobody --regid=nogroup --init-groups -- "$T/abclient" --socket "$SOCK" \
		'{"op":"status"}' '!sleep 30000' >"$T/hold$i.out" 2>&1 &
	holders+=($!)
done
add_cleanup kill "${holders[@]}"
wait_for 20 bash -c "[ \$(cat $T/hold*.out 2>/dev/null | grep -c version) -eq 4 ]"
is "$(cat "$T"/hold*.out | grep -c '"version"')" 4 "uid nobody holds 4 connections (its cap)"
abclient_script_as nobody <<<'{"op":"status"}'
like "$(reply 1)" "abclient_error" "its fifth connection is refused"
r=$("$ABCLIENT" --socket "$SOCK" '{"op":"status"}')
is "$(jq -r .connections.refused_per_uid <<<"$r")" 1 "root still connects; status counts the refusal"
like "$(cat "$BROKER_ERR")" "connection of uid 65534 .* refused: it has 4 open, broker.max_connections_per_uid" \
	"the refusal is logged"
kill "${holders[@]}" 2>/dev/null
wait "${holders[@]}" 2>/dev/null

stop_broker
done_testing
