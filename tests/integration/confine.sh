#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The module worker's confinement (docs/architecture.md, "Module workers: confinement"), end
# to end with the real broker, auditd and journald. The escape test module (tests/modules/
# escape.c) tries, from module code, to leave its worker's confinement, and reports the errno
# or the broker's reply; every attempt must fail exactly as designed and the host must keep
# serving:
#   - a new AF_UNIX connection to the broker socket (and netlink, packet, a domain with high
#     bits set) and AF_INET too: EPERM from the seccomp filter (a module's only network is what
#     agentbroker-egress hands it: tests/integration/egress.sh);
#   - non-token operations on the worker's own broker connection (policy-reload, run-open,
#     call-begin, identity-jwt, http-token-issue, token-list, status, and egress-check/egress-done:
#     module code cannot present its token for egress itself): not-permitted with
#     reason worker-confined, each with a token-deny audit record and journal entry;
#   - ptrace(PTRACE_ATTACH) of the host and of a sibling worker, /proc/<pid>/mem of both (no
#     such entry: every worker has its own pid namespace and /proc), process_vm_readv of the
#     host, io_uring_setup, prctl(PR_SET_DUMPABLE, 1), unshare and mount: refused;
#   - no capabilities, although the host runs as root here.
# Secrets still work through the pinned connection (escape's own sign, sign.hmac_sha256), and
# a worker whose broker connection is gone answers a secret call with an isError result,
# exits, and is replaced by a fresh worker that has a connection again.
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs
TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs

require_root
require_services
require_tools jq od timeout pgrep openssl awk
require_built "$MCP" "$WORKER"
for so in "$MODDIR/echo.so" "$MODDIR/sign.so" "$TMODDIR/escape.so"; do
	[ -f "$so" ] || unmet "$so is not built (make check builds the test modules)"
done
# (The filter is the same in the sanitizer build, where the worker runs without LeakSanitizer:
# worker/agentbroker-worker.c.)

setup_testdir
mkdir -m 0755 "$T/modules"
install -m 0755 "$MODDIR/echo.so" "$MODDIR/sign.so" "$TMODDIR/escape.so" "$T/modules/"
HMAC_KEY="confine-$(unique_id)"
cat >"$T/policy.yaml" <<POLICY
secrets:
  hmac: { env: AB_TEST_HMAC }
tools:
  - match: "echo.*"
  - match: "escape.*"
    secrets: { hmac: [sign] }
  - match: "sign.*"
    secrets: { hmac: [sign] }
clients: { uids: [0] }
POLICY
AB_TEST_HMAC=$HMAC_KEY start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

mcp_start
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"confine.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"

# try ID ARGS_JSON: escape.try; prints its text. (No pipeline: the host's coprocess
# descriptors are not open in a pipeline's subshell.)
try() {
	local r
	r=$(call "$1" escape.try "$2")
	jq -r '.result.content[0].text' <<<"$r"
}

# The host and a sibling worker (echo's) to aim at.
r=$(call 1 echo.echo '{"text":"sibling"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" sibling "echo.echo answers (its worker is the sibling)"
is "$(try 2 '{"action":"caps"}')" "caps rc=0 errno=0 CapEff=0000000000000000" \
	"the escape worker has no capabilities (the host runs as root)"
ECHO_PID=$(worker_of echo) ESCAPE_PID=$(worker_of escape)
isnt "$ECHO_PID" "" "the echo worker is found (pid $ECHO_PID; escape's: $ESCAPE_PID)"
is "$(awk '/^CapEff:/ {print $2}' "/proc/$ECHO_PID/status")" 0000000000000000 "the echo worker has no capabilities either"
is "$(awk '/^Uid:/ {print $2}' "/proc/$MCP_PID/status")" 0 "(the host runs as uid 0: only the confinement stops its workers)"
is "$(try 3 '{"action":"secret"}')" "secret rc=0 errno=0" "the escape worker signs with its scoped secret (the pinned connection works)"

# --- sockets ------------------------------------------------------------------------------------
is "$(try 10 "{\"action\":\"unix\",\"path\":\"$SOCK\"}")" "unix rc=-1 errno=EPERM" \
	"a new AF_UNIX connection to the broker socket: EPERM (seccomp)"
is "$(try 11 '{"action":"unix_hibits"}')" "unix_hibits rc=-1 errno=EPERM" \
	"socket() with AF_UNIX under high bits of the domain argument: EPERM"
is "$(try 12 '{"action":"netlink"}')" "netlink rc=-1 errno=EPERM" "socket(AF_NETLINK): EPERM"
is "$(try 13 '{"action":"packet"}')" "packet rc=-1 errno=EPERM" "socket(AF_PACKET): EPERM"
is "$(try 14 '{"action":"inet"}')" "inet rc=-1 errno=EPERM" \
	"socket(AF_INET): EPERM (a module has no network of its own; agentbroker-egress hands it connections)"
is "$(try 15 '{"action":"io_uring"}')" "io_uring rc=-1 errno=EPERM" "io_uring_setup: EPERM"

# --- other processes ----------------------------------------------------------------------------
is "$(try 20 "{\"action\":\"ptrace\",\"pid\":$MCP_PID}")" "ptrace rc=-1 errno=EPERM" "ptrace(PTRACE_ATTACH) of the host: EPERM"
is "$(try 21 "{\"action\":\"ptrace\",\"pid\":$ECHO_PID}")" "ptrace rc=-1 errno=EPERM" \
	"ptrace(PTRACE_ATTACH) of a sibling worker (another module): EPERM"
is "$(try 22 "{\"action\":\"proc_mem\",\"pid\":$MCP_PID}")" "proc_mem rc=-1 errno=ENOENT" \
	"open /proc/<host>/mem: ENOENT (the worker's /proc shows only its own pid namespace)"
is "$(try 23 "{\"action\":\"proc_mem\",\"pid\":$ECHO_PID}")" "proc_mem rc=-1 errno=ENOENT" \
	"open /proc/<sibling worker>/mem: ENOENT"
is "$(try 24 "{\"action\":\"vm_read\",\"pid\":$MCP_PID}")" "vm_read rc=-1 errno=EPERM" "process_vm_readv of the host: EPERM"
is "$(try 26 '{"action":"userns"}')" "userns rc=-1 errno=EPERM" "unshare(CLONE_NEWUSER): EPERM (seccomp: the sandbox's namespaces stay as made)"
is "$(try 27 '{"action":"mount"}')" "mount rc=-1 errno=EPERM" "mount of a proc over /proc: EPERM"
is "$(try 25 '{"action":"dumpable"}')" "dumpable rc=-1 errno=EPERM" "prctl(PR_SET_DUMPABLE, 1): EPERM (seccomp)"

# --- the worker's own broker connection ---------------------------------------------------------
OPS=(policy-reload run-open call-begin identity-jwt http-token-issue token-list status egress-check egress-done)
n=30
for op in "${OPS[@]}"; do
	n=$((n + 1))
	out=$(try $n "{\"action\":\"broker\",\"op\":\"$op\"}")
	reply=${out#broker rc=0 reply=}
	is "$(jq -r '[.ok, .error, .reason] | map(tostring) | join(" ")' <<<"$reply" 2>/dev/null)" \
		"false not-permitted worker-confined" "$op on the worker's broker connection: not-permitted (worker-confined)"
	ok "... recorded: a token-deny audit record with reason=worker-confined, detail=$op" \
		wait_for 10 _audit_has " pid=$BROKER_PID uid=" op=token-deny 'reason="worker-confined"' "detail=\"$op\"" "spid=$ESCAPE_PID "
done
# (Other brokers may write records at the same time: count this broker's only.)
is "$(audit_count " pid=$BROKER_PID uid=" op=policy-load)" 1 "no policy reload happened (only the broker's start loaded the policy)"
is "$(audit_count " pid=$BROKER_PID uid=" op=http-token-issue)" 0 "no HTTP bearer token was issued"
is "$(audit_count " pid=$BROKER_PID uid=" op=secret-use 'detail="tunnel identity-jwt"')" 0 "no dial JWT was minted"
ok "the journal has the ${#OPS[@]} refusals too (AGENTBROKER_REASON=worker-confined)" \
	wait_for 10 eval '[ "$(journal_json AGENTBROKER_REASON=worker-confined _PID=$BROKER_PID | grep -c .)" -eq ${#OPS[@]} ]'

# --- still serving, and secrets still work ------------------------------------------------------
r=$(call 50 sign.hmac_sha256 '{"key":"hmac","message":"hello"}')
want=$(printf '%s' hello | openssl dgst -sha256 -hmac "$HMAC_KEY" -r | cut -d' ' -f1)
is "$(jq -r '.result.structuredContent.mac' <<<"$r")" "$want" \
	"sign.hmac_sha256 still works through its confined worker (the broker's HMAC-SHA256)"
r=$(call 51 echo.echo '{"text":"still serving"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "still serving" "the host keeps serving after the escape attempts"

# --- a worker that lost its broker connection -----------------------------------------------------
ESCAPE_PID=$(worker_of escape)
is "$(try 60 '{"action":"drop"}')" "drop rc=0 errno=0" "the escape worker shuts its broker connection down (pid $ESCAPE_PID)"
r=$(call 61 escape.try '{"action":"secret"}')
is "$(jq -r .result.isError <<<"$r")" true "a secret call on a worker without a broker connection: isError"
like "$(jq -r '.result.content[0].text' <<<"$r")" "no broker connection" "... saying that the worker has no broker connection"
ok "... and that worker exits after answering" wait_for 10 not test -e "/proc/$ESCAPE_PID/status"
is "$(try 62 '{"action":"secret"}')" "secret rc=0 errno=0" "the next call gets a fresh worker with a broker connection"
isnt "$(worker_of escape)" "$ESCAPE_PID" "... (a new process)"

mcp_stop
is "$MCP_RC" 0 "the host exits with status 0 at the end of its input"
unlike "$(cat "$T/mcp.err")" 'Sanitizer|runtime error' "no sanitizer report from the host or its workers"
stop_broker
done_testing
