# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/integration/lib.sh — sourced by the integration tests (bash, TAP output).
#
#   . "$(dirname "$0")/lib.sh"
#   require_root; require_services; setup_testdir
#   start_broker "$T/policy.yaml"
#   is "$(ctl status --format json | jq -r .runs_open)" 0 "no run open"
#   done_testing
#
# The tests run under automake's TAP driver from `make check`, which exports
# ABS_TOP_SRCDIR and ABS_TOP_BUILDDIR. Run by hand, they default to the source tree and
# its build/ directory (scripts/setup builds there). A test that cannot run here
# (not root, no auditd/journald, a missing tool) skips as a whole with the reason —
# except under CI=true, where every test must really run, so it fails instead (skip and
# todo too; tests/ci-no-skip.sh does the same for every other test of make check).
#
# Helpers that poll (wait_for, audit_*, journal_*) wait for records to appear: auditd
# and journald write asynchronously, usually within a second.

# --- locations -----------------------------------------------------------------------
_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${ABS_TOP_SRCDIR:=$(cd "$_lib_dir/../.." && pwd)}"
if [ -z "${ABS_TOP_BUILDDIR:-}" ]; then
	if [ -x "$ABS_TOP_SRCDIR/build/agentbrokerd" ]; then
		ABS_TOP_BUILDDIR=$ABS_TOP_SRCDIR/build
	else
		ABS_TOP_BUILDDIR=$ABS_TOP_SRCDIR
	fi
fi
export ABS_TOP_SRCDIR ABS_TOP_BUILDDIR
export PATH="$PATH:/usr/sbin:/sbin"
BROKERD=$ABS_TOP_BUILDDIR/agentbrokerd
CTL=$ABS_TOP_BUILDDIR/agentbrokerctl
ABCLIENT=$ABS_TOP_BUILDDIR/tests/integration/abclient
TEST_NAME=$(basename "$0" .sh)
# Epoch second the test started; audit and journal searches start one second earlier.
TEST_START=$(date +%s)

# --- TAP -----------------------------------------------------------------------------
_tap_n=0 _tap_failed=0 _tap_planned='' _tap_todo=''

# plan N: announce N tests (optional: done_testing prints the plan when none was given).
plan() { _tap_planned=$1; echo "1..$1"; }

# diag TEXT...: print each TEXT (and each line in it) as a TAP diagnostic line.
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }

# _tap_emit OK DESC [DIAG...]: print one result line (honours todo) and count it.
_tap_emit() {
	local good=$1 desc=$2 line
	shift 2
	_tap_n=$((_tap_n + 1))
	desc=${desc//#/\\#}
	line="ok $_tap_n - $desc"
	[ "$good" -eq 1 ] || line="not $line"
	if [ -n "$_tap_todo" ]; then
		line="$line # TODO $_tap_todo"
	elif [ "$good" -ne 1 ]; then
		_tap_failed=$((_tap_failed + 1))
	fi
	echo "$line"
	[ "$good" -eq 1 ] || [ $# -eq 0 ] || diag "$@"
	[ "$good" -eq 1 ]
}

# pass DESC: a passing test.
pass() { _tap_emit 1 "$1"; }

# fail DESC [DIAG...] / not_ok DESC [DIAG...]: a failing test, with diagnostics.
fail() { _tap_emit 0 "$@"; }
not_ok() { _tap_emit 0 "$@"; }

# ok DESC [CMD...]: passes without CMD; with CMD, passes when CMD exits 0 (its output
# is shown as diagnostics when it fails).
ok() {
	local desc=$1 out rc
	shift
	[ $# -eq 0 ] && { _tap_emit 1 "$desc"; return; }
	out=$("$@" 2>&1); rc=$?
	if [ $rc -eq 0 ]; then
		_tap_emit 1 "$desc"
	else
		_tap_emit 0 "$desc" "command failed (exit $rc): $*" "${out:+$(printf '%s\n' "$out" | tail -n 20)}"
	fi
}

# not CMD...: succeeds when CMD fails (for `ok DESC not CMD...`).
not() { ! "$@"; }

# is GOT WANT DESC: passes when GOT equals WANT exactly.
is() {
	if [ "$1" == "$2" ]; then
		_tap_emit 1 "$3"
	else
		_tap_emit 0 "$3" "got:      '$1'" "expected: '$2'"
	fi
}

# isnt GOT UNWANTED DESC: passes when GOT differs from UNWANTED.
isnt() {
	if [ "$1" != "$2" ]; then
		_tap_emit 1 "$3"
	else
		_tap_emit 0 "$3" "got the unwanted value: '$1'"
	fi
}

# like GOT REGEX DESC: passes when a line of GOT matches the extended regex REGEX.
like() {
	if grep -Eq -- "$2" <<<"$1"; then
		_tap_emit 1 "$3"
	else
		_tap_emit 0 "$3" "got:        '$1'" "should match: $2"
	fi
}

# unlike GOT REGEX DESC: passes when no line of GOT matches REGEX.
unlike() {
	if ! grep -Eq -- "$2" <<<"$1"; then
		_tap_emit 1 "$3"
	else
		_tap_emit 0 "$3" "got:            '$1'" "should not match: $2"
	fi
}

# skip DESC REASON: a skipped test; under CI=true, where every test must run, a failure.
skip() {
	if [ "${CI:-}" = true ]; then
		_tap_emit 0 "$1" "skipped under CI=true, which counts as a failure: $2"
		return 0
	fi
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - ${1//#/\\#} # SKIP $2"
}

# todo REASON CMD...: run a check (is/like/ok ...) whose failure is expected for REASON;
# under CI=true an expected failure (XFAIL) is a failure like any other.
todo() {
	local reason=$1 rc
	shift
	[ "${CI:-}" = true ] || _tap_todo=$reason
	"$@"; rc=$?
	_tap_todo=
	return $rc
}

# skip_all REASON: the whole test cannot run here; prints "1..0 # SKIP" and exits.
skip_all() { echo "1..0 # SKIP $*"; exit 0; }

# bail_out REASON: stop the test at once as an error ("Bail out!").
bail_out() { echo "Bail out! $*"; exit 1; }

# done_testing: print the plan if none was given, and exit. The exit status is 0 even when
# tests failed: the "not ok" lines already say so, and a non-zero status would make the
# TAP driver count one more failure (ERROR) for the same cause.
done_testing() {
	if [ -z "$_tap_planned" ]; then
		echo "1..$_tap_n"
	elif [ "$_tap_planned" -ne "$_tap_n" ]; then
		diag "planned $_tap_planned tests but ran $_tap_n"
	fi
	[ "$_tap_failed" -eq 0 ] || diag "$_tap_failed of $_tap_n tests failed"
	exit 0
}

# --- requirements ----------------------------------------------------------------------

# unmet REASON: a requirement is missing: skip the whole test, or fail under CI=true.
unmet() {
	if [ "${CI:-}" = true ]; then
		bail_out "requirement not met under CI: $*"
	fi
	skip_all "$*"
}

# require_root: the test needs uid 0.
require_root() { [ "$(id -u)" -eq 0 ] || unmet "needs root"; }

# require_tools TOOL...: the test needs these commands.
require_tools() {
	local t missing=()
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
	[ ${#missing[@]} -eq 0 ] || unmet "missing tools: ${missing[*]} (scripts/setup installs them)"
}

# require_user NAME / require_group NAME: the test needs this user / group to exist.
require_user() { getent passwd "$1" >/dev/null || unmet "no user '$1'"; }
require_group() { getent group "$1" >/dev/null || unmet "no group '$1'"; }

# require_built PATH...: the test needs these programs of the build.
require_built() {
	local p
	for p in "$@"; do [ -x "$p" ] || unmet "$p is not built"; done
}

# services_problem: prints why auditd/journald cannot serve the tests (nothing if they can).
services_problem() {
	local pid enabled
	command -v auditctl >/dev/null || { echo "auditctl not installed"; return; }
	pid=$(auditctl -s 2>/dev/null | awk '$1 == "pid" { print $2 }')
	enabled=$(auditctl -s 2>/dev/null | awk '$1 == "enabled" { print $2 }')
	if [ -z "$pid" ] || [ "$pid" = 0 ] || [ ! -d "/proc/$pid" ]; then
		echo "auditd is not running (run scripts/start-services)"
	elif [ "$enabled" != 1 ] && [ "$enabled" != 2 ]; then
		echo "kernel auditing is off (auditctl -s: enabled ${enabled:-?}; run scripts/start-services)"
	elif [ ! -S /run/systemd/journal/socket ] || ! pgrep -x systemd-journal >/dev/null; then
		echo "journald is not running (run scripts/start-services)"
	fi
}

# require_services: root, auditd with kernel auditing enabled, journald, jq, and the built
# broker, ctl and abclient.
require_services() {
	local why
	require_root
	why=$(services_problem)
	[ -z "$why" ] || unmet "$why"
	require_tools ausearch journalctl jq setpriv
	require_built "$BROKERD" "$CTL" "$ABCLIENT"
}

# --- the per-test directory and cleanup ---------------------------------------------------
_cleanups=()

# add_cleanup CMD...: run CMD at exit (last added runs first), before $T is removed.
add_cleanup() { _cleanups+=("$(printf '%q ' "$@")"); }

_lib_exit() {
	local rc=$? i
	trap - EXIT
	[ -n "${BROKER_PID:-}" ] && { _stop_broker_quiet || rc=1; }
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
	if [ -n "${T:-}" ] && [ -d "$T" ] && [ -z "${KEEP_TESTDIR:-}" ]; then
		rm -rf "$T"
	elif [ -n "${T:-}" ]; then
		echo "# kept test directory $T" >&2
	fi
	exit "$rc"
}
trap _lib_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# setup_testdir: create the per-test directory $T (mode 0755, removed at exit unless
# KEEP_TESTDIR is set); $SOCK is the broker's socket path in it.
setup_testdir() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/ab-$TEST_NAME.XXXXXX") || bail_out "mktemp failed"
	chmod 0755 "$T"
	SOCK=$T/broker.sock
	export T SOCK
}

# unique_id: print a fresh 16-hex-digit id (for labels, secret values, names).
unique_id() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }

# wait_for SECS CMD...: run CMD every 0.2 s until it succeeds or SECS pass; its status.
wait_for() {
	local deadline=$(($(date +%s%N) / 1000000 + $1 * 1000))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ $(($(date +%s%N) / 1000000)) -lt "$deadline" ] || { "$@" >/dev/null 2>&1; return; }
		sleep 0.2
	done
}

# --- the broker ---------------------------------------------------------------------------
BROKER_PID='' BROKER_OUT='' BROKER_ERR=''

# start_broker POLICY [ARGS...]: start agentbrokerd in the foreground on $SOCK with stdout
# and stderr in $BROKER_OUT and $BROKER_ERR; waits until the socket exists (bails out if
# it does not within 20 s). Sets BROKER_PID. Stopped at exit.
start_broker() {
	local policy=$1 i
	shift
	[ -n "${T:-}" ] || setup_testdir
	[ -z "$BROKER_PID" ] || bail_out "start_broker: a broker is already running (pid $BROKER_PID)"
	BROKER_OUT=$T/broker.out BROKER_ERR=$T/broker.err
	rm -f "$SOCK"
	"$BROKERD" --foreground --policy "$policy" --socket "$SOCK" "$@" \
		</dev/null >>"$BROKER_OUT" 2>>"$BROKER_ERR" &
	BROKER_PID=$!
	for ((i = 0; i < 200; i++)); do
		# Ready when it answers (the socket file appears at bind, before listen and the loop).
		[ -S "$SOCK" ] && "$ABS_TOP_BUILDDIR/agentbrokerctl" --socket "$SOCK" --timeout 2000 status \
			>/dev/null 2>&1 && return 0
		if ! kill -0 "$BROKER_PID" 2>/dev/null; then
			wait "$BROKER_PID"
			diag "agentbrokerd exited with status $? before creating $SOCK; stderr:"
			diag "$(tail -n 30 "$BROKER_ERR")"
			BROKER_PID=
			bail_out "agentbrokerd did not start"
		fi
		sleep 0.1
	done
	diag "$(tail -n 30 "$BROKER_ERR")"
	bail_out "agentbrokerd did not create $SOCK within 20 s"
}

# broker_problems: print sanitizer reports found in the broker's stderr (nothing if none).
broker_problems() {
	[ -n "$BROKER_ERR" ] && [ -f "$BROKER_ERR" ] || return 0
	grep -E -A 30 'ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer' \
		"$BROKER_ERR" | head -n 60
}

# _stop_broker_quiet: SIGTERM the broker, wait up to 10 s (then SIGKILL); 0 when it
# exited with status 0 and no sanitizer report, else prints diagnostics and returns 1.
_stop_broker_quiet() {
	local pid=$BROKER_PID rc i problems
	[ -n "$pid" ] || return 0
	BROKER_PID=
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		diag "agentbrokerd (pid $pid) did not exit within 10 s of SIGTERM; killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	rc=$?
	problems=$(broker_problems)
	if [ "$rc" -ne 0 ] || [ -n "$problems" ]; then
		diag "agentbrokerd exited with status $rc"
		[ -z "$problems" ] || diag "$problems"
		[ -n "$problems" ] || diag "$(tail -n 20 "$BROKER_ERR" 2>/dev/null)"
		return 1
	fi
	return 0
}

# stop_broker: stop the broker; a test result "agentbrokerd stops cleanly" (exit status 0
# on SIGTERM, no sanitizer report).
stop_broker() {
	[ -n "$BROKER_PID" ] || { fail "stop_broker: no broker running"; return 1; }
	if _stop_broker_quiet; then
		pass "agentbrokerd stops cleanly on SIGTERM"
	else
		fail "agentbrokerd stops cleanly on SIGTERM"
	fi
}

# ctl ARGS...: run agentbrokerctl on the test's broker socket.
ctl() { "$CTL" --socket "$SOCK" "$@"; }

# _setpriv_args USER[:GROUP]: set the array _sp to the setpriv command that runs as USER,
# with USER's groups, or GROUP as the primary group.
_setpriv_args() {
	local user=${1%%:*} group=${1#*:}
	[ "$group" != "$user" ] || group=$(id -gn "$user")
	_sp=(setpriv --reuid="$user" --regid="$group" --init-groups --)
}

# as_user USER[:GROUP] CMD...: run CMD as USER, with USER's groups, or GROUP as the primary
# group (e.g. daemon:nogroup to reach a socket of group nogroup).
as_user() {
	local _sp
	_setpriv_args "$1"
	shift
	"${_sp[@]}" "$@"
}

# --- abclient: scripted protocol sessions ---------------------------------------------------
ABC_PID='' ABC_OUT=''

# abclient_script [ABCLIENT ARGS...] < REQUESTS: send the request lines on stdin (see
# tests/integration/abclient.c: {{run}}/{{token}} substitution, !sleep MS, ...) over one
# connection; the replies are read with reply/reply_count. Sets ABC_PID, the client's
# pid (the spid of its audit records).
abclient_script() { _abclient "" "$@"; }

# abclient_script_as USER[:GROUP] [ABCLIENT ARGS...] < REQUESTS: the same, as USER (as_user).
abclient_script_as() { local user=$1; shift; _abclient "$user" "$@"; }

_abclient() {
	local user=$1 rc _sp=()
	shift
	[ -n "${T:-}" ] || setup_testdir
	[ -z "$user" ] || _setpriv_args "$user"  # run directly, so that $! is the client's pid
	ABC_OUT=$T/abclient.out
	cat >"$T/abclient.in"
	local client=$ABCLIENT
	if [ -n "$user" ]; then
		# The build tree may be out of USER's reach (a clone under /root): run a copy in $T.
		[ -x "$T/abclient" ] || install -m 0755 "$ABCLIENT" "$T/abclient"
		client=$T/abclient
	fi
	"${_sp[@]}" "$client" --socket "$SOCK" "$@" <"$T/abclient.in" >"$ABC_OUT" 2>"$T/abclient.err" &
	ABC_PID=$!
	wait "$ABC_PID"
	rc=$?
	[ $rc -eq 0 ] || diag "abclient exited with status $rc: $(tail -n 5 "$T/abclient.err")"
	return $rc
}

# reply N [JQ]: print reply N (from 1) of the last abclient_script, or jq -r JQ of it.
reply() {
	[ -f "${ABC_OUT:-}" ] || return 1
	sed -n "${1}p" "$ABC_OUT" | jq -r "${2:-.}"
}

# reply_count: the number of replies of the last abclient_script.
reply_count() {
	if [ -f "${ABC_OUT:-}" ]; then grep -c . "$ABC_OUT"; else echo 0; fi
	return 0
}

# broker_status_pid: the pid the broker reports in a status reply (empty if no reply).
broker_status_pid() {
	"$ABCLIENT" --socket "$SOCK" '{"op":"status"}' 2>/dev/null | head -n 1 | jq -r '.pid // empty'
}

# --- agentbroker-mcp sessions driven one request at a time ---------------------------------------
MCP=$ABS_TOP_BUILDDIR/agentbroker-mcp
# The worker as a real executable (tests/bin, built by make check), else the libtool wrapper.
WORKER=$ABS_TOP_BUILDDIR/tests/bin/agentbroker-worker
[ -x "$WORKER" ] || WORKER=$ABS_TOP_BUILDDIR/agentbroker-worker
# agentbroker-egress likewise (each worker's network).
EGRESS=$ABS_TOP_BUILDDIR/tests/bin/agentbroker-egress
[ -x "$EGRESS" ] || EGRESS=$ABS_TOP_BUILDDIR/agentbroker-egress

# mcp_start: start the host on the test broker with the modules in $T/modules (and the
# options in the array MCP_EXTRA, if set), as a coprocess
# (stdout lines in $T/mcp.out, stderr in $T/mcp.err; MCP_PID, MCP_IN, MCP_OUT). With
# MCP_LOGINUID set, the host runs in a new audit login session of that login uid (needs root).
mcp_start() {
	coproc MCPH {
		[ -z "${MCP_LOGINUID:-}" ] || echo "$MCP_LOGINUID" >/proc/self/loginuid
		AGENTBROKER_WORKER=$WORKER AGENTBROKER_EGRESS=$EGRESS exec "$MCP" --broker "$SOCK" --modules "$T/modules" "${MCP_EXTRA[@]}" 2>"$T/mcp.err"
	}
	MCP_PID=$MCPH_PID
	MCP_IN=${MCPH[1]} MCP_OUT=${MCPH[0]}
	: >"$T/mcp.out"
}

# request ID METHOD [PARAMS_JSON]: send a request, wait up to 30 s for its response (other
# lines go to $T/mcp.out too) and print the response; returns 1 when none came.
request() {
	local id=$1 method=$2 params=${3:-} line
	if [ -n "$params" ]; then
		printf '{"jsonrpc":"2.0","id":%s,"method":"%s","params":%s}\n' "$id" "$method" "$params" >&"$MCP_IN"
	else
		printf '{"jsonrpc":"2.0","id":%s,"method":"%s"}\n' "$id" "$method" >&"$MCP_IN"
	fi
	while IFS= read -r -t 30 -u "$MCP_OUT" line; do
		printf '%s\n' "$line" >>"$T/mcp.out"
		if jq -e --argjson id "$id" 'has("id") and .id == $id and (has("method") | not)' <<<"$line" >/dev/null 2>&1; then
			printf '%s\n' "$line"
			return 0
		fi
	done
	diag "no response to request $id ($method); host stderr:" "$(tail -n 20 "$T/mcp.err")"
	return 1
}

# mcp_init CLIENT_NAME [VERSION]: initialize the session started by mcp_start as that client
# (protocol 2025-11-25; one TAP check that the host answered), send notifications/initialized
# and wait for the host's run; sets RUN.
mcp_init() {
	local r
	r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"'"$1"'","version":"'"${2:-1}"'"}}')
	is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize"
	printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
	wait_for 10 grep -q 'info: run ' "$T/mcp.err"
	RUN=$(sed -n 's/.*info: run \([^ ]*\).*/\1/p' "$T/mcp.err" | head -n 1)
}

# worker_of MODULE: the pid of the host's worker for MODULE (the first found).
worker_of() {
	local p
	for p in $(pgrep -P "$MCP_PID"); do
		case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in
		*"--name $1 "* | *"--name $1") echo "$p"; return 0 ;;
		esac
	done
	return 1
}

# call ID TOOL ARGS_JSON: a tools/call; prints the response.
call() { request "$1" tools/call "{\"name\":\"$2\",\"arguments\":$3}"; }

# mcp_stop: close the host's stdin and wait (up to 30 s) for it to exit; its exit status in MCP_RC.
mcp_stop() {
	exec {MCP_IN}>&-
	if ! timeout 30 tail --pid="$MCP_PID" -f /dev/null; then
		diag "agentbroker-mcp did not exit within 30 s of the end of its input; killing it"
		kill -KILL "$MCP_PID" 2>/dev/null
	fi
	wait "$MCP_PID" 2>/dev/null
	MCP_RC=$?
}

# --- audit (ausearch) ---------------------------------------------------------------------

# audit_search [AUSEARCH ARGS...]: the AUDIT_TRUSTED_APP records since the test started
# (raw lines; pass -i to interpret). Prints nothing when there is none.
# shellcheck disable=SC2120 # callers may pass ausearch options
audit_search() {
	local since=$((TEST_START - 1)) fmt=(--format raw) a
	for a in "$@"; do [ "$a" = -i ] && fmt=(); done
	# ausearch reads stdin when it is not a terminal unless told to read the logs; it
	# parses -ts with the locale's date format, hence C on both sides.
	LC_ALL=C ausearch --input-logs -m TRUSTED_APP -ts "$(LC_ALL=C date -d "@$since" +%x)" \
		"$(date -d "@$since" +%T)" "${fmt[@]}" "$@" </dev/null 2>/dev/null | grep -v '^----$'
	return 0
}

# _audit_grep PATTERN...: the lines of stdin holding every fixed-string PATTERN.
_audit_grep() {
	local p lines
	lines=$(cat)
	for p in "$@"; do
		lines=$(grep -F -- "$p" <<<"$lines") || return 0
	done
	printf '%s\n' "$lines"
}

# audit_records PATTERN...: the records since the test started that hold every PATTERN
# (fixed strings, e.g. 'op=token-deny' "run=\"$run\"" 'res=failed').
# shellcheck disable=SC2119 # audit_search takes ausearch options, not patterns
audit_records() { audit_search | _audit_grep "$@"; }

# audit_count PATTERN...: how many records since the test started hold every PATTERN.
audit_count() { audit_records "$@" | grep -c .; }

# audit_count_is N PATTERN...: true when exactly N records hold every PATTERN (for wait_for).
audit_count_is() { local n=$1; shift; [ "$(audit_count "$@")" -eq "$n" ]; }

# audit_find OP RUN [PATTERN...]: wait up to 10 s for records with op=OP naming run RUN
# (and every PATTERN); print them; 0 when found.
audit_find() {
	local op=$1 run=$2
	shift 2
	wait_for 10 _audit_has "op=$op" "$run" "$@" || return 1
	audit_records "op=$op" "$run" "$@"
}
_audit_has() { [ "$(audit_count "$@")" -gt 0 ]; }

# audit_field RECORD FIELD: the value of FIELD= in one raw record (quotes removed).
audit_field() {
	sed -n -E "s/.*[ (']$2=(\"[^\"]*\"|[^ ']*).*/\\1/p" <<<"$1" | head -n 1 | tr -d '"'
}

# --- journal (journalctl) -------------------------------------------------------------------

# journal_json MATCH...: the journal entries since the test started that match every
# FIELD=VALUE (journalctl matches), one JSON object per line.
journal_json() {
	journalctl --no-pager -q -o json --since "@$((TEST_START - 1))" "$@" 2>/dev/null
	return 0
}

# journal_count MATCH...: how many entries since the test started match.
journal_count() { journal_json "$@" | grep -c .; }

# journal_count_is N MATCH...: true when exactly N entries match (for wait_for).
journal_count_is() { local n=$1; shift; [ "$(journal_count "$@")" -eq "$n" ]; }

# journal_find MATCH...: wait up to 10 s for entries matching every MATCH; print them as
# JSON lines; 0 when found.
journal_find() {
	wait_for 10 _journal_has "$@" || return 1
	journal_json "$@"
}
_journal_has() { [ "$(journal_count "$@")" -gt 0 ]; }

# journal_field FIELD MATCH...: the values of FIELD in the matching entries, one a line.
journal_field() {
	local field=$1
	shift
	journal_json "$@" | jq -r --arg f "$field" '.[$f] // empty'
}

# --- npm packages ---------------------------------------------------------------------------
# The tests' one npm project: tests/package.json pins every package, scripts/setup installs them
# into tests/node_modules (npm ci there), and scripts under tests/*/ resolve them from there
# (node looks in the node_modules of each parent directory).
NODE_MODULES=$ABS_TOP_SRCDIR/tests/node_modules

# require_node_modules PKG...: the test needs node and these npm packages, installed at the
# versions tests/package.json pins.
require_node_modules() {
	local why
	require_tools node
	why=$(cd "$ABS_TOP_SRCDIR/tests" && node -e '
		const want = require("./package.json").dependencies;
		for (const name of process.argv.slice(1)) {
			let have = "none";
			try { have = require(`./node_modules/${name}/package.json`).version; } catch {}
			if (have !== want[name]) console.log(`${name} ${have} is installed, tests/package.json pins ${want[name]}`);
		}' "$@" 2>&1)
	[ -z "$why" ] || unmet "$why (run scripts/setup, or npm ci in tests/)"
}

# --- encodings ------------------------------------------------------------------------------

# b64url_decode TEXT: print the bytes of unpadded base64url TEXT.
b64url_decode() {
	local s=$1
	case $((${#s} % 4)) in
	2) s="$s==" ;;
	3) s="$s=" ;;
	esac
	printf '%s' "$s" | basenc --base64url -d
}

# ed25519_pub_pem_from_raw X: a PEM public key from the base64url raw Ed25519 key X (a JWK's x).
ed25519_pub_pem_from_raw() {
	echo "-----BEGIN PUBLIC KEY-----"
	{ printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; b64url_decode "$1"; } | base64 -w 64
	echo "-----END PUBLIC KEY-----"
}
