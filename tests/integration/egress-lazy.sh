#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# agentbroker-egress is started at a worker's first egress request, not with the worker
# (docs/architecture.md, "Egress"; host/sandbox/egress.c): a worker that never uses the network has no
# egress process beside it; one that does has exactly one, which ends with the worker's host.
#   - the echo module's worker serves calls: no agentbroker-egress among the host's children;
#   - a netprobe call that only tries its own socket() (EPERM) still starts none;
#   - a netprobe connect (refused by the rules, but through agentbroker-egress) starts one,
#     the refusal is audited (egress-connect) as with an egress started with the worker;
#   - the next request reuses it; after the host exits none is left.
. "$(dirname "$0")/lib.sh"

TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs

require_root
require_services
require_tools jq pgrep
require_built "$MCP" "$WORKER" "$EGRESS"
for so in "$TMODDIR/netprobe.so" "$MODDIR/echo.so"; do
	[ -f "$so" ] || unmet "$so is not built (make check builds the test modules)"
done

setup_testdir
mkdir -m 0755 "$T/modules"
install -m 0755 "$TMODDIR/netprobe.so" "$MODDIR/echo.so" "$T/modules/"
cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "echo.*"
  - match: "netprobe.a"
    egress:
      - { scheme: tcp, host: 127.0.0.1, port: 9 }
clients: { uids: [0] }
POLICY
start_broker "$T/policy.yaml"
pass "broker started (pid $BROKER_PID)"

# egress_children: the pids of the host's children that run agentbroker-egress.
egress_children() {
	local p out=''
	for p in $(pgrep -P "$MCP_PID"); do
		case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in
		*"--fd 3 --broker "*) out="$out $p" ;;
		esac
	done
	echo "${out# }"
}

mcp_start
mcp_init egress-lazy.sh
r=$(call 1 echo.echo '{"text":"hi"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" hi "the echo module's worker answers"
ok "... its worker runs" worker_of echo
is "$(egress_children)" "" "no agentbroker-egress beside a worker that never used egress"

r=$(call 2 netprobe.a '{"op":"raw","host":"127.0.0.1","port":9}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "raw rc=-1 errno=EPERM step=socket" "netprobe's own socket() is refused"
ok "... its worker runs" worker_of netprobe
is "$(egress_children)" "" "... and still no agentbroker-egress (no request on its egress channel)"

r=$(call 3 netprobe.a '{"op":"connect","host":"127.0.0.1","port":10}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "errno=EPERM denial=egress-not-allowed" \
	"netprobe's first egress request (a port the rules do not name) is answered: refused"
ok "... by the broker through agentbroker-egress (egress-connect res=failed)" \
	wait_for 10 _audit_has op=egress-connect 'tool="netprobe.a"' 'port=10' 'reason="egress-not-allowed"'
EG=$(egress_children)
like "$EG" '^[0-9]+$' "exactly one agentbroker-egress now runs beside the netprobe worker ($EG)"
r=$(call 4 netprobe.a '{"op":"connect","host":"127.0.0.1","port":11}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "errno=EPERM denial=egress-not-allowed" "a second request is answered"
is "$(egress_children)" "$EG" "... by the same agentbroker-egress"
r=$(call 5 echo.echo '{"text":"again"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" again "the echo worker still serves ..."
is "$(egress_children)" "$EG" "... without an egress process of its own"

mcp_stop
is "$MCP_RC" 0 "the host exits at the end of its input"
ok "no agentbroker-egress is left" wait_for 5 eval '! kill -0 '"$EG"' 2>/dev/null'
unlike "$(cat "$T/mcp.err")" 'Sanitizer|runtime error' "no sanitizer report"
stop_broker
done_testing
