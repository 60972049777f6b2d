#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run sandboxes (issue 11; docs/architecture.md, "Run sandboxes"; docs/policy.md, "profiles"),
# end to end with the real kernel: a host started with --profile runs every worker in the
# profile's sandbox. The probe test module (tests/modules/probe.c) looks from inside:
#   - /proc shows only the worker's own pid namespace; / holds only the libraries, the worker,
#     the broker socket, /dev's few nodes, /proc, the workspace and the profile's mounts;
#   - the workspace is writable and read back; a read-only mount cannot be written; what is
#     outside the mounts does not exist; TCP and UDP to 127.0.0.1 fail (network none);
#   - a fork bomb stops at the profile's pids limit, a memory hog at its memory limit, and the
#     host keeps serving;
#   - two runs of the same profile in parallel each write /workspace/same.txt and read back
#     only their own; run A's module cannot name (/proc/<pid>/mem: ENOENT) or ptrace either
#     host or run B's worker, and its kill(-1) leaves both hosts serving;
#   - agentbrokerctl run open --profile: recorded; an unknown profile refused; a profile's tool
#     list enforced at call-begin (tool-not-in-profile);
#   - when the host exits, the run's cgroup is gone, and so is every process of the run, and
#     one run-teardown record says what was removed; after kill -9 of a host the broker writes
#     the run-teardown record itself within 2 s and no process of the run is left;
#   - after agentbrokerctl run close, after the run's max_duration_s (expiry) and after kill -9
#     of its host, a token issued to a call of the run is refused (token-revoked, audited);
#     an expired run is torn down like a closed one: processes, cgroup and mount namespace
#     (its workspace) gone, one run-teardown record (reason run-expired);
#   - the tunnel checkpoint of a host's own run is deleted at its teardown (checkpoint=deleted).
# The cgroup is v1 here (memory, pids and cpu controllers; no systemd) or v2 where the host's
# cgroup is delegated; created only below the cgroup this test runs in.
. "$(dirname "$0")/lib.sh"

TMODDIR=$ABS_TOP_BUILDDIR/tests/modules/.libs
MODDIR=$ABS_TOP_BUILDDIR/modules/.libs

require_root
require_services
require_tools jq pgrep mkfifo
require_built "$MCP" "$WORKER"
for so in "$TMODDIR/probe.so" "$TMODDIR/race.so" "$TMODDIR/escape.so" "$MODDIR/echo.so"; do
	[ -f "$so" ] || unmet "$so is not built (make check builds the test modules)"
done

setup_testdir
mkdir -m 0755 "$T/modules" "$T/data" "$T/rw" "$T/outside"
install -m 0644 "$TMODDIR/probe.so" "$TMODDIR/race.so" "$TMODDIR/escape.so" "$MODDIR/echo.so" "$T/modules/"
echo "read-only data" >"$T/data/file.txt"
echo "host secret" >"$T/outside/secret.txt"
cat >"$T/policy.yaml" <<POLICY
secrets:
  sk: { env: AB_TEST_SANDBOX_SECRET }
tools:
  - match: "probe.*"
  - match: "race.*"
  - match: "escape.*"
  - match: "echo.*"
    secrets: { sk: [read] }
clients: { uids: [0] }
profiles:
  t:
    mounts:
      - { source: $T/data, target: /data }
      - { source: $T/rw, target: /srv/rw, read_only: false }
    workspace: 16M
    memory: 64M
    pids: 32
    cpu: 0.5
    network: none
  narrow:
    tools: ["echo.*"]
  short:
    workspace: 4M
    pids: 64
    max_duration_s: 8
POLICY
AB_TEST_SANDBOX_SECRET="sandbox-$(unique_id)" start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# start_host NAME [PROFILE [ARGS...]]: a host with --profile PROFILE (default t) as coprocess NAME
# (fds in NAME_IN/NAME_OUT, pid in NAME_PID).
start_host() {
	local name=$1
	HOST_PROFILE=${2:-t}
	HOST_ARGS=("${@:3}")
	eval "coproc $name { AGENTBROKER_WORKER=\$WORKER exec \"\$MCP\" --broker \"\$SOCK\" --modules \"\$T/modules\" --profile \"\$HOST_PROFILE\" \"\${HOST_ARGS[@]}\" 2>\"\$T/$name.err\"; }"
}
# token_begin TAG RUN: an abclient session (pid TOK_PID, its input on fd TOK_FD, replies in
# $T/TAG.out) that began a call of echo.echo in RUN and read the secret with the call's token.
token_begin() {
	TOK_TAG=$1
	mkfifo "$T/$1.in"
	"$ABCLIENT" --socket "$SOCK" --timeout 10000 <"$T/$1.in" >"$T/$1.out" 2>/dev/null &
	TOK_PID=$!
	exec {TOK_FD}>"$T/$1.in"
	printf '%s\n' "{\"op\":\"call-begin\",\"run\":\"$2\",\"tool\":\"echo.echo\",\"args_sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"args_len\":0}" \
		'{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"sk"}' >&"$TOK_FD"
	wait_for 10 eval '[ "$(wc -l <"$T/$TOK_TAG.out")" -ge 2 ]'
	is "$(sed -n 2p "$T/$1.out" | jq -r '.ok')" true "a token issued to a call of run $2 reads the run's secret"
}
# token_refused RUN WHEN: the same token presented again by the same process is refused with
# token-revoked, and the refusal audited.
token_refused() {
	local r
	printf '%s\n' '{"op":"secret-read","token":"{{token}}","tool":"echo.echo","secret":"sk"}' >&"$TOK_FD"
	exec {TOK_FD}>&-
	wait "$TOK_PID" 2>/dev/null
	r=$(sed -n 3p "$T/$TOK_TAG.out")
	is "$(jq -r '.error + " " + .reason' <<<"$r")" "denied token-revoked" "$2: the token is refused (token-revoked)"
	ok "... and the refusal audited (token-deny reason=token-revoked)" \
		wait_for 10 _audit_has op=token-deny "spid=$TOK_PID" 'reason="token-revoked"'
}
# teardown_detail RUN: the detail of RUN's run-teardown entry in the journal.
teardown_detail() {
	wait_for 10 journal_count_is 1 MESSAGE_ID=57935e9a2f94401cbc7bd3cd6d0bdc15 AGENTBROKER_RUN="$1"
	journal_json MESSAGE_ID=57935e9a2f94401cbc7bd3cd6d0bdc15 AGENTBROKER_RUN="$1" | jq -r .AGENTBROKER_DETAIL | head -n 1
}
# mntns_users INODE: pids of processes in the mount namespace mnt:[INODE].
mntns_users() {
	local p out=''
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "mnt:[$1]" ] && out="$out ${p#/proc/}"
	done
	echo "$out"
}
# use NAME: direct request/call at host NAME.
use() {
	local fds="$1[@]" pid="$1_PID"
	read -r MCP_OUT MCP_IN <<<"${!fds}"
	MCP_PID=${!pid}
}
init() {
	r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sandbox.sh","version":"1"}}')
	is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "$1 answers initialize"
	printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
}
# alive PID...: those of PIDs that still run (a zombie waiting for its parent does not).
alive() {
	local p out=''
	for p in "$@"; do
		[ -r "/proc/$p/status" ] && [ "$(awk '/^State:/ { print $2 }' "/proc/$p/status" 2>/dev/null)" != Z ] &&
			out="$out $p"
	done
	echo "$out"
}
# probe ID ARGS: probe.do's text.
probe() {
	local r
	r=$(call "$1" probe.do "$2") || return 1
	jq -r '.result.content[0].text // .error.message' <<<"$r"
}

: >"$T/mcp.out"
start_host A
use A
init "host A (profile t)"
RUN_A=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/A.err" | head -n 1)
like "$(cat "$T/A.err")" "sandbox of profile t" "host A built the run's sandbox ($(grep -o 'cgroup .*' "$T/A.err" | head -n 1))"
CG=$(sed -n 's/.*sandbox of profile t, cgroup \(.*\)$/\1/p' "$T/A.err" | head -n 1)
ok "the run's cgroup exists: $CG" test -d "$CG"
ok "... below this test's own cgroup" eval 'case "$CG" in */agentbroker-run-$RUN_A | */run-$RUN_A) true ;; *) false ;; esac'

# --- what a worker sees ---------------------------------------------------------------------
is "$(probe 1 '{"action":"ps"}')" "pids=1" "/proc lists only the worker itself (pid 1 of its own namespace)"
root=$(probe 2 '{"action":"ls","path":"/"}')
diag "/: $root"
unlike "$root" '(^| )(home|root|var|boot|sys|run|opt|mnt|bin|sbin)( |$)' "/ has none of the host's /home, /var, /sys, /run, /bin ..."
is "$(probe 14 '{"action":"ls","path":"/etc"}')" "ls rc=0 ld.so.cache" "/etc holds only the dynamic loader's cache"
like "$root" ' data .* proc .* workspace' "/ has the profile's mount, /proc and the workspace"
is "$(probe 3 '{"action":"ls","path":"/dev"}')" "ls rc=0 full null random urandom zero" "/dev holds null, zero, full, random, urandom only"
is "$(probe 4 '{"action":"read","path":"/data/file.txt"}')" "read rc=0 read-only data" "the read-only mount is readable"
is "$(probe 5 '{"action":"write","path":"/data/x","text":"no"}')" "write rc=-1 errno=EROFS" "... and not writable"
is "$(probe 6 '{"action":"write","path":"/srv/rw/out.txt","text":"rw"}')" "write rc=0 errno=0" "the read-write mount is writable"
is "$(cat "$T/rw/out.txt" 2>/dev/null)" "rw" "... the file is on the host"
is "$(probe 7 "{\"action\":\"read\",\"path\":\"$T/outside/secret.txt\"}")" "read rc=-1 errno=ENOENT" "a host file outside the profile's mounts does not exist"
is "$(probe 8 '{"action":"read","path":"/etc/passwd"}')" "read rc=-1 errno=ENOENT" "/etc/passwd does not exist"
is "$(probe 9 '{"action":"write","path":"/workspace/note.txt","text":"A"}')" "write rc=0 errno=0" "the workspace is writable"
is "$(probe 10 '{"action":"read","path":"/workspace/note.txt"}')" "read rc=0 A" "... and reads back"
is "$(probe 11 '{"action":"write","path":"/newfile","text":"x"}')" "write rc=-1 errno=EROFS" "the root itself is read-only"
# No network of its own, twice over: the worker's filter refuses socket() (its only network is
# what agentbroker-egress hands it), and the run's network namespace has nothing but lo.
like "$(probe 12 '{"action":"tcp","n":22}')" 'tcp rc=-1 errno=EPERM' "TCP to 127.0.0.1: no socket of its own (EPERM)"
like "$(probe 13 '{"action":"udp","n":53}')" 'udp rc=-1 errno=EPERM' "UDP to 127.0.0.1: EPERM"
netdev=$(probe 14 '{"action":"read","path":"/proc/self/net/dev"}')
ifs=$(sed -n 's/^ *\([A-Za-z0-9_.@-]*\):.*/\1/p' <<<"$netdev" | tr '\n' ' ')
is "$ifs" "lo " "network none: the run's network namespace has no interface but lo (127.0.0.1 is unreachable there)" ||
	diag "/proc/self/net/dev in the worker: $netdev"

# --- limits ---------------------------------------------------------------------------------
out=$(probe 20 '{"action":"forkbomb","n":1000}')
like "$out" '^forked=[0-9]+ errno=EAGAIN$' "a fork bomb stops at the pids limit ($out)"
k=${out#forked=}; k=${k%% *}
ok "... below 32 processes" test "$k" -lt 32
r=$(call 21 echo.echo '{"text":"alive"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" alive "the host keeps serving"
out=$(probe 22 '{"action":"memhog","n":256}')
is "$out" "memhog signal=KILL" "a child touching 256 MiB is killed at the 64 MiB memory limit"
r=$(call 23 echo.echo '{"text":"alive"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" alive "the host keeps serving"

# --- two runs in parallel ------------------------------------------------------------------------
start_host B 2>/dev/null    # (bash warns that coprocess A still exists: both run on purpose)
use B
init "host B (profile t, a second run)"
RUN_B=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/B.err" | head -n 1)
isnt "$RUN_B" "$RUN_A" "... a run of its own ($RUN_B)"
is "$(probe 30 '{"action":"write","path":"/workspace/same.txt","text":"from B"}')" "write rc=0 errno=0" "B writes /workspace/same.txt"
use A
is "$(probe 31 '{"action":"write","path":"/workspace/same.txt","text":"from A"}')" "write rc=0 errno=0" "A writes /workspace/same.txt"
is "$(probe 32 '{"action":"read","path":"/workspace/same.txt"}')" "read rc=0 from A" "A reads back its own"
is "$(probe 33 '{"action":"read","path":"/workspace/note.txt"}')" "read rc=0 A" "A's earlier file is still there (the workspace lives as long as the run)"
use B
is "$(probe 34 '{"action":"read","path":"/workspace/same.txt"}')" "read rc=0 from B" "B reads back its own"
is "$(probe 35 '{"action":"read","path":"/workspace/note.txt"}')" "read rc=-1 errno=ENOENT" "B does not see A's files"

# --- run A against run B and the hosts --------------------------------------------------------
use B
r=$(call 36 probe.do '{"action":"ps"}')
WB=$(pgrep -P "$B_PID" | head -n 1)
use A
# try ID ARGS: escape.try's text.
try() { local r; r=$(call "$1" escape.try "$2"); jq -r '.result.content[0].text' <<<"$r"; }
for target in "host A:$A_PID" "host B:$B_PID" "a worker of run B:$WB"; do
	name=${target%%:*} pid=${target##*:}
	like "$(try 37 "{\"action\":\"proc_mem\",\"pid\":$pid}")" 'proc_mem rc=-1 errno=ENOENT' "run A opens /proc/<$name>/mem: ENOENT (no such pid in its namespace)"
	like "$(try 38 "{\"action\":\"ptrace\",\"pid\":$pid}")" 'ptrace rc=-1 errno=(EPERM|ESRCH)' "run A ptraces $name: refused"
done
r=$(call 40 race.do '{"action":"kill_all"}')
like "$(jq -r '.result.content[0].text' <<<"$r")" 'kill_all rc=' "run A's module sends kill(-1, SIGKILL)"
r=$(call 41 echo.echo '{"text":"A alive"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "A alive" "host A still serves"
use B
r=$(call 42 echo.echo '{"text":"B alive"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "B alive" "host B and its run still serve"
use A

# --- profiles at run-open: agentbrokerctl, and a profile's tool subset ----------------------------
RUN_C=$("$CTL" --socket "$SOCK" run open --label sandbox.sh --profile narrow)
like "$RUN_C" '^[0-9a-f]{32}$' "agentbrokerctl run open --profile narrow opens a run ($RUN_C)"
ok "... recorded with its profile in the run-open record" wait_for 10 _audit_has op=run-open "$RUN_C" "profile=narrow"
out=$("$CTL" --socket "$SOCK" run open --profile nope 2>&1)
like "$out" 'unknown-profile' "run open --profile nope: refused (unknown-profile)"
r=$("$ABCLIENT" --socket "$SOCK" "{\"op\":\"call-begin\",\"run\":\"$RUN_C\",\"tool\":\"probe.do\",\"args_sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"args_len\":0}" 2>/dev/null | head -n 1)
is "$(jq -r .reason <<<"$r")" tool-not-in-profile "call-begin of probe.do in a run of profile narrow: tool-not-in-profile"
r=$("$ABCLIENT" --socket "$SOCK" "{\"op\":\"call-begin\",\"run\":\"$RUN_C\",\"tool\":\"echo.echo\",\"args_sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"args_len\":0}" 2>/dev/null | head -n 1)
is "$(jq -r .ok <<<"$r")" true "call-begin of echo.echo in that run: allowed"
"$CTL" --socket "$SOCK" run close "$RUN_C" >/dev/null

# --- teardown: agentbrokerctl run close of a run its host still serves --------------------------
start_host C 2>/dev/null
use C
init "host C (profile t, a third run)"
RUN_CC=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/C.err" | head -n 1)
CG_C=$(sed -n 's/.*sandbox of profile t, cgroup \(.*\)$/\1/p' "$T/C.err" | head -n 1)
is "$(probe 50 '{"action":"write","path":"/workspace/c.txt","text":"C"}')" "write rc=0 errno=0" "run C writes its workspace"
PIDS_C=$(cat "$CG_C/cgroup.procs" 2>/dev/null | tr '\n' ' ')
isnt "$PIDS_C" "" "run C's cgroup holds its processes ($PIDS_C)"
HOST_C=$C_PID
token_begin tokC "$RUN_CC"
ok "agentbrokerctl run close $RUN_CC" "$CTL" --socket "$SOCK" run close "$RUN_CC"
ok "... its host tears the sandbox down and exits" timeout 10 tail --pid="$HOST_C" -f /dev/null
token_refused "$RUN_CC" "after run close"
# shellcheck disable=SC2086
is "$(alive $PIDS_C)" "" "... no process of run C is left"
ok "... its cgroup is removed" not test -d "$CG_C"
rec=$(audit_find run-teardown "$RUN_CC")
like "$rec" 'reason="run-close"' "... one run-teardown record (reason run-close)"
like "$rec" 'res=success' "... res=success"
like "$(teardown_detail "$RUN_CC")" 'tokens_revoked=1 ' "... counting the revoked token"
exec {MCP_IN}>&-
wait "$HOST_C" 2>/dev/null

# --- teardown: the run expires (profile short: max_duration_s 8) ------------------------------------
start_host D short 2>/dev/null
use D
init "host D (profile short, max_duration_s 8)"
HOST_D=$D_PID
RUN_D=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/D.err" | head -n 1)
CG_D=$(sed -n 's/.*sandbox of profile short, cgroup \(.*\)$/\1/p' "$T/D.err" | head -n 1)
is "$(probe 60 '{"action":"write","path":"/workspace/d.txt","text":"D"}')" "write rc=0 errno=0" "run D writes its workspace"
PIDS_D=$(cat "$CG_D/cgroup.procs" 2>/dev/null | tr '\n' ' ')
isnt "$PIDS_D" "" "run D's cgroup holds its processes ($PIDS_D)"
MNT_D=$(readlink "/proc/${PIDS_D%% *}/ns/mnt" | tr -dc 0-9)
isnt "$(mntns_users "$MNT_D")" "" "... in the run's mount namespace mnt:[$MNT_D] (its workspace)"
token_begin tokD "$RUN_D"
ok "the broker tears run D down when it expires (run-teardown, reason run-expired)" \
	wait_for 20 _audit_has op=run-teardown "$RUN_D" 'reason="run-expired"'
ok "... its host exits" timeout 10 tail --pid="$HOST_D" -f /dev/null
# shellcheck disable=SC2086
is "$(alive $PIDS_D)" "" "... no process of run D is left"
ok "... its cgroup is removed" not test -d "$CG_D"
is "$(mntns_users "$MNT_D")" "" "... no process is left in its mount namespace (the workspace tmpfs went with it)"
like "$(audit_find run-teardown "$RUN_D")" 'res=success' "... the run-teardown record: res=success"
detail=$(teardown_detail "$RUN_D")
diag "run D teardown: $detail"
like "$detail" 'processes_left=0 ' "... no process left"
wsb=$(sed -n 's/.*workspace_bytes=\([0-9]*\).*/\1/p' <<<"$detail")
ok "... the workspace's bytes counted ($wsb)" test "${wsb:-0}" -gt 0
like "$detail" 'tokens_revoked=1 ' "... the revoked token counted"
ok "... and one journal entry" wait_for 10 journal_count_is 1 MESSAGE_ID=57935e9a2f94401cbc7bd3cd6d0bdc15 AGENTBROKER_RUN="$RUN_D"
ok "the run-close record says why (reason run-expired)" _audit_has op=run-close "$RUN_D" 'reason="run-expired"'
token_refused "$RUN_D" "after the run expired"
exec {MCP_IN}>&-
wait "$D_PID" 2>/dev/null

# --- teardown: the tunnel checkpoint of a host's own run ------------------------------------------
# (The control plane is not listening: the host keeps dialling; its checkpoint exists from the start.)
start_host E t --tunnel ws://127.0.0.1:9/ --tunnel-insecure-loopback --tunnel-checkpoint "$T/ckpt-E.json" 2>/dev/null
HOST_E=$E_PID
ok "host E (profile t, --tunnel) opens its run" wait_for 20 grep -q 'info: run ' "$T/E.err"
RUN_E=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/E.err" | head -n 1)
ok "... and writes its tunnel checkpoint" wait_for 20 test -s "$T/ckpt-E.json"
ok "agentbrokerctl run close $RUN_E" "$CTL" --socket "$SOCK" run close "$RUN_E"
ok "... its host tears the sandbox down and exits" timeout 10 tail --pid="$HOST_E" -f /dev/null
ok "... the run's tunnel checkpoint is deleted" not test -e "$T/ckpt-E.json"
like "$(teardown_detail "$RUN_E")" 'checkpoint=deleted' "... and the run-teardown record says so (checkpoint=deleted)"
like "$(audit_find run-teardown "$RUN_E")" 'res=success' "... res=success"
wait "$HOST_E" 2>/dev/null
# ... and when the host is killed (kill -9) before it can delete it, its keeper does.
start_host F t --tunnel ws://127.0.0.1:9/ --tunnel-insecure-loopback --tunnel-checkpoint "$T/ckpt-F.json" 2>/dev/null
HOST_F=$F_PID
ok "host F (profile t, --tunnel) opens its run" wait_for 20 grep -q 'info: run ' "$T/F.err"
RUN_F=$(sed -n 's/.*info: run \([0-9a-f]*\)$/\1/p' "$T/F.err" | head -n 1)
ok "... and writes its tunnel checkpoint" wait_for 20 test -s "$T/ckpt-F.json"
KEEPER_F=$(pgrep -P "$HOST_F" -x ab-ckpt-keeper | head -n 1)
isnt "$KEEPER_F" "" "... beside its checkpoint keeper (pid $KEEPER_F)"
kill -KILL "$HOST_F"
ok "after kill -9 of host F, the broker tears run F down (reason host-died)" \
	wait_for 10 _audit_has op=run-teardown "$RUN_F" 'reason="host-died"'
ok "... and the run's tunnel checkpoint is deleted by its keeper" wait_for 5 not test -e "$T/ckpt-F.json"
ok "... which then exits" wait_for 5 not kill -0 "$KEEPER_F"
wait "$HOST_F" 2>/dev/null
find /sys/fs/cgroup -maxdepth 6 -type d \( -name "agentbroker-run-$RUN_F" -o -name "run-$RUN_F" \) \
	-exec rmdir {} + 2>/dev/null
use A

# --- teardown: the host exits ----------------------------------------------------------------------
use A
r=$(call 40 race.do '{"action":"orphan"}')
like "$(jq -r '.result.content[0].text' <<<"$r")" '^orphan pid=' "a module of run A leaves a process behind (setsid + fork)"
PIDS_A=$(cat "$CG/cgroup.procs" 2>/dev/null | tr '\n' ' ')
isnt "$PIDS_A" "" "run A's cgroup holds its processes ($PIDS_A)"
exec {MCP_IN}>&-
wait "$MCP_PID" 2>/dev/null
is "$?" 0 "host A exits at the end of its input"
# shellcheck disable=SC2086
is "$(alive $PIDS_A)" "" "no process of run A is left"
ok "run A's cgroup is removed" not test -d "$CG"
rec=$(audit_find run-teardown "$RUN_A")
like "$rec" 'reason="host-exit"' "one run-teardown record for run A (reason host-exit)"
like "$rec" 'res=success' "... res=success"
ok "... and one journal entry" wait_for 10 journal_count_is 1 MESSAGE_ID=57935e9a2f94401cbc7bd3cd6d0bdc15 AGENTBROKER_RUN="$RUN_A"
detail=$(teardown_detail "$RUN_A")
diag "run A teardown: $detail"
wsb=$(sed -n 's/.*workspace_bytes=\([0-9]*\).*/\1/p' <<<"$detail")
ok "... with the bytes of workspace deleted ($wsb)" test "${wsb:-0}" -gt 0
like "$detail" 'processes_left=0 ' "... no process left"
like "$detail" 'cgroup=removed ' "... the cgroup removed"
like "$detail" 'pids_max_hits=[1-9]' "... the fork bomb's refusals counted (pids.max)"
like "$detail" 'oom_kills=[1-9]' "... the memory hog's OOM kill counted"

# --- teardown: the host is killed (kill -9) ---------------------------------------------------
use B
CG_B=$(sed -n 's/.*sandbox of profile t, cgroup \(.*\)$/\1/p' "$T/B.err" | head -n 1)
PIDS_B=$(cat "$CG_B/cgroup.procs" 2>/dev/null | tr '\n' ' ')
isnt "$PIDS_B" "" "run B's cgroup holds its processes ($PIDS_B)"
token_begin tokB "$RUN_B"
t0=$(date +%s.%N)
kill -KILL "$MCP_PID"
ok "the broker tears run B down by itself after kill -9 of its host (run-teardown, reason host-died)" \
	wait_for 10 _audit_has op=run-teardown "$RUN_B" 'reason="host-died"'
t1=$(audit_records op=run-teardown "$RUN_B" | sed -n 's/.*msg=audit(\([0-9.]*\):.*/\1/p' | head -n 1)
ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
ok "... the record was written ${ms} ms after the kill (within 2 s)" test "$ms" -lt 2000
ok "... the run is closed (run-close record, reason host-died)" _audit_has op=run-close "$RUN_B" 'reason="host-died"'
# shellcheck disable=SC2086
ok "no process of run B is left (the kernel killed its workers and their pid namespaces)" \
	wait_for 5 eval '[ -z "$(alive $PIDS_B)" ]'
like "$(teardown_detail "$RUN_B")" 'tokens_revoked=1 ' "... the record counts the revoked token"
token_refused "$RUN_B" "after kill -9 of the host"

exec {MCP_IN}>&-
wait "$MCP_PID" 2>/dev/null
# (The host's cgroups stay after its death: the broker cannot remove another uid's. Ours here.)
find /sys/fs/cgroup -maxdepth 6 -type d \( -name "agentbroker-run-$RUN_B" -o -name "run-$RUN_B" \) \
	-exec rmdir {} + 2>/dev/null
unlike "$(cat "$T/A.err" "$T/B.err" "$T/C.err" "$T/D.err" "$T/E.err" "$T/F.err")" 'Sanitizer|runtime error' "no sanitizer report from the hosts or their workers"
stop_broker
done_testing
