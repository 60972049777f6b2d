#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The secret canary: secrets with unique values are used in every way (read, HMAC and
# Ed25519 signatures, mint-jwt, refused uses, a reload), then the audit log, the journal
# (journalctl and the journal files themselves), the broker's stdout and stderr, its memory
# (what gcore would save) and a forced core dump are searched for the values in every encoding: found
# nowhere. The broker also holds its secrets in locked memory and cannot dump core.
. "$(dirname "$0")/lib.sh"

require_root
require_services
require_tools jq openssl base64 basenc od python3

setup_testdir
uniq=$(unique_id)

# --- the canaries ------------------------------------------------------------------------
canary="abcanary-$uniq-$(head -c 16 /dev/urandom | od -An -v -tx1 | tr -d ' \n')"
printf '%s\n' "$canary" >"$T/canary.bin"
# An Ed25519 key whose seed is random, as PEM: its PEM body and its seed are canaries too.
# Its raw seed is searched for with grep -P, line by line: pick a seed without \n and NUL.
for _ in 1 2 3 4 5 6 7 8 9 10; do
	openssl genpkey -algorithm ed25519 -out "$T/canary-ed.pem" 2>/dev/null
	ed_seed=$(openssl pkey -in "$T/canary-ed.pem" -outform DER | tail -c 32 | od -An -v -tx1 | tr -d ' \n')
	grep -qE '^(..)*(00|0a)' <<<"$ed_seed" || break
done
chmod 0600 "$T/canary.bin" "$T/canary-ed.pem"
ed_seed_re=$(sed 's/../\\x&/g' <<<"$ed_seed")
# raw_seed_count FILE...: how many times the raw bytes of the Ed25519 seed occur
raw_seed_count() { cat "$@" | LC_ALL=C grep -c -aP -- "$ed_seed_re"; }
ed_pem_body=$(grep -v -- '-----' "$T/canary-ed.pem" | tr -d '\n')
canary_env="abcanary-env-$uniq-$(head -c 16 /dev/urandom | od -An -v -tx1 | tr -d ' \n')"

# Every form a value could leak in: plain, hex (both cases), base64, base64url, and the
# base64 shifted by one and two bytes (a value embedded in a longer base64 text).
forms_of() { # forms_of TEXT_HEX: prints the search strings for the bytes given in hex
	local hex=$1 bin
	bin=$(mktemp "$T/form.XXXXXX")
	printf '%b' "$(sed 's/../\\x&/g' <<<"$hex")" >"$bin"
	printf '%s\n' "$hex" "${hex^^}"
	base64 -w0 <"$bin" | cut -c1-40; echo
	basenc --base64url -w0 <"$bin" | tr -d '=' | cut -c1-40; echo
	{ printf 'x'; cat "$bin"; } | base64 -w0 | cut -c5-40; echo
	{ printf 'xy'; cat "$bin"; } | base64 -w0 | cut -c5-40; echo
	rm -f "$bin"
}
to_hex() { od -An -v -tx1 | tr -d ' \n'; }
{
	printf '%s\n' "$canary" "$canary_env" "$ed_pem_body" "${ed_pem_body:16:40}"
	forms_of "$(printf '%s' "$canary" | to_hex)"
	forms_of "$(printf '%s' "$canary_env" | to_hex)"
	forms_of "$ed_seed"
} | sort -u | grep -v '^$' >"$T/needles"
# (base64 and base64url forms coincide when they hold no + or /)
ok "at least 16 distinct search strings for the three canaries" test "$(wc -l <"$T/needles")" -ge 16

cat >"$T/policy.yaml" <<EOF
secrets:
  canary: { file: $T/canary.bin }
  canary_env: { env: AB_CANARY_ENV }
  canary_ed: { file: $T/canary-ed.pem, type: ed25519 }
tools:
  - match: "canary.use"
    secrets:
      canary: [read, sign]
      canary_env: [read, sign]
      canary_ed: [sign, mint-jwt]
  - match: "canary.other"
jwt: { jwks_file: $T/jwks.json }
clients: { uids: [0] }
EOF

# Cores, if any, go to $T: core_pattern is relative (the broker's working directory is $T)
# or is pointed there for the duration of the test.
core_pattern_old=$(cat /proc/sys/kernel/core_pattern)
restore_core_pattern() { printf '%s\n' "$core_pattern_old" >/proc/sys/kernel/core_pattern; }
case "$core_pattern_old" in
'|'* | /*)
	echo "$T/core.%e.%p" >/proc/sys/kernel/core_pattern || bail_out "cannot set core_pattern"
	add_cleanup restore_core_pattern
	;;
esac
since=$(date +%s)
# The launcher (this shell) allows cores: the broker itself must refuse them.
cd "$T" || bail_out "cannot enter $T"
ulimit -c unlimited || bail_out "cannot allow core dumps"
AB_CANARY_ENV=$canary_env start_broker "$T/policy.yaml" --debug
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# --- use the canaries in every way -------------------------------------------------------
args='{}'
args_sha=$(printf '%s' "$args" | sha256sum | cut -d' ' -f1)
data_b64=$(printf 'data-%s' "$uniq" | base64 -w0)
use() { # use SECRET: every operation on SECRET with token {{token}}
	cat <<EOF
{"op":"secret-read","token":"{{token}}","tool":"canary.use","secret":"$1"}
{"op":"secret-sign","token":"{{token}}","tool":"canary.use","secret":"$1","alg":"hmac-sha256","data":"$data_b64"}
{"op":"secret-sign","token":"{{token}}","tool":"canary.use","secret":"$1","alg":"ed25519","data":"$data_b64"}
{"op":"mint-jwt","token":"{{token}}","tool":"canary.use","secret":"$1","audience":"aud-$uniq"}
{"op":"secret-read","token":"{{token}}","tool":"canary.other","secret":"$1"}
EOF
}
abclient_script <<EOF
{"op":"run-open","label":"canary-$uniq"}
{"op":"call-begin","run":"{{run}}","tool":"canary.use","args_sha256":"$args_sha","args_len":2}
$(use canary)
$(use canary_env)
{"op":"call-end","token":"{{token}}","status":"ok","result_bytes":1,"duration_ms":1}
{"op":"call-begin","run":"{{run}}","tool":"canary.use","args_sha256":"$args_sha","args_len":2}
$(use canary_ed)
{"op":"call-end","token":"{{token}}","status":"error","result_bytes":0,"duration_ms":2}
{"op":"run-close","run":"{{run}}"}
EOF
is "$(reply 3 '.value | @base64d')" "$canary" "secret-read returns the file canary"
like "$(reply 4 .signature)" '^[A-Za-z0-9+/]{43}=$' "HMAC signature with the file canary"
is "$(reply 8 '.value | @base64d')" "$canary_env" "secret-read returns the environment canary"
like "$(reply 17 .signature)" '^[A-Za-z0-9+/]{86}==$' "Ed25519 signature with the canary key"
like "$(reply 18 .jwt)" '^eyJ' "JWT minted with the canary key"
is "$(jq -r .ok "$ABC_OUT" | grep -c true)" 12 "12 of 21 requests succeed, the 9 others are refused"
ok "the broker wiped the environment canary from its environment block" \
	not grep -qaF -- "$canary_env" "/proc/$BROKER_PID/environ"
kill -HUP "$BROKER_PID"
wait_for 10 audit_count_is 2 'op=policy-load' "detail=\"$T/policy.yaml\""
ctl status >/dev/null

# --- memory: locked, not dumpable ----------------------------------------------------------
vmlck=$(awk '/^VmLck:/ { print $2 }' "/proc/$BROKER_PID/status")
ok "the broker holds locked memory (VmLck ${vmlck:-?} kB)" test "${vmlck:-0}" -gt 0
ok "some of the broker's memory is excluded from core dumps (MADV_DONTDUMP)" \
	grep -q '^VmFlags:.* dd' "/proc/$BROKER_PID/smaps"
is "$(awk '/^Max core file size/ { print $5 }' "/proc/$BROKER_PID/limits")" 0 "the broker's core size limit is 0"

# The broker's memory, saved as gcore would (ptrace rights, as root: tests/integration/
# save-memory.py reads /proc/<pid>/mem with the broker stopped: every readable mapping but
# those the broker excluded from dumps, MADV_DONTDUMP; gcore itself cannot cope with the
# sanitizer build's shadow memory). The canaries must not be anywhere in it.
dump=$T/memory.$BROKER_PID
# found_where DUMP GREP_ARGS...: for each match in DUMP, its offset and the mapping it is in.
found_where() {
	local file=$1
	shift
	grep -a -b -o "$@" "$file" | cut -d: -f1 | sort -n | awk '
		NR == FNR { off[NR] = $1; map[NR] = $0; n = NR; next }
		{ for (i = n; i > 0; i--) if (off[i] + 0 <= $1 + 0) { print $1 " in " map[i]; break } }' "$file.map" -
}
if python3 "$_lib_dir/save-memory.py" --stop "$BROKER_PID" "$dump" >"$T/save-memory.log" 2>&1 && [ -s "$dump" ]; then
	ok "the broker's memory is saved ($(cat "$T/save-memory.log")), and it runs on" \
		wait_for 5 not grep -q '^State:.*stopped' "/proc/$BROKER_PID/status"
	ok "the saved memory holds the broker's policy path (the search works)" grep -qaF "$T/policy.yaml" "$dump"
	if grep -q __asan_init "$BROKERD"; then
		# The sanitizer runtime reads /proc/self/environ into a buffer of its own before main
		# (sanitizer_common's GetEnv) and keeps it: a verbatim copy of the environment block
		# the broker started with, which the broker cannot wipe. Blank exactly that: the
		# broker's environment block (/proc/<pid>/environ: its canary bytes wiped in place)
		# with the canary put back, and nothing else.
		is "$(python3 - "$BROKER_PID" "$dump" "$canary_env" <<'PY'
import sys
pid, dump, canary = sys.argv[1], sys.argv[2], sys.argv[3].encode()
env = open("/proc/%s/environ" % pid, "rb").read()
name = b"AB_CANARY_ENV="
if env.find(name) < 0:
    sys.exit("AB_CANARY_ENV is not in the broker's environment block")
at = env.find(name) + len(name)
block = env[:at] + canary + env[at + len(canary):]
data = bytearray(open(dump, "rb").read())
n, i = 0, data.find(block)
while i >= 0:
    data[i:i + len(block)] = bytes(len(block))
    n, i = n + 1, data.find(block, i + len(block))
open(dump, "wb").write(data)
print(n)
PY
)" 1 "sanitizer build: the runtime's one copy of the broker's initial environment block is left out of the search"
	fi
	is "$(grep -a -o -F -f "$T/needles" "$dump" | sort | uniq -c | sed 's/^ *//' | tr '\n' ' ')" "" \
		"no canary in the broker's memory (shown: count and string found)" ||
		diag "where (offset in the saved memory: the mapping it is in):" "$(found_where "$dump" -F -f "$T/needles")"
	is "$(raw_seed_count "$dump")" 0 "the raw Ed25519 seed is not in the broker's memory" ||
		diag "where:" "$(LC_ALL=C found_where "$dump" -P -- "$ed_seed_re")"
else
	fail "the broker's memory is saved" "$(tail -n 5 "$T/save-memory.log")"
fi
[ -n "${KEEP_TESTDIR:-}" ] || rm -f "$dump" "$dump.map"

# A forced core: SIGABRT (which, unlike SIGSEGV, sanitizers leave to the kernel). The
# launcher allowed cores; the broker must leave none.
(cd "$T" && ulimit -c unlimited && exec sleep 60) &
control_pid=$!
sleep 0.2
kill -ABRT "$control_pid"
wait "$control_pid" 2>/dev/null
ok "control: a process started the same way leaves a core in $T" \
	wait_for 5 sh -c "ls '$T' | grep -q '^core'"
rm -f "$T"/core*
broker_pid=$BROKER_PID
# (stderr off meanwhile: bash would report the job's death there)
exec 3>&2 2>/dev/null
kill -ABRT "$broker_pid"
wait "$broker_pid"
broker_rc=$?
exec 2>&3 3>&-
is "$broker_rc" $((128 + 6)) "the broker died of SIGABRT"
BROKER_PID=
sleep 1
is "$(ls "$T" | grep -c '^core')" 0 "the broker killed with SIGABRT leaves no core"

# --- search everything for the canaries ---------------------------------------------------
sleep 1   # let auditd and journald write what they have
is "$(cat "$BROKER_OUT" "$BROKER_ERR" | grep -c -a -F -f "$T/needles")" 0 "no canary in the broker's stdout/stderr"
is "$(raw_seed_count "$BROKER_OUT" "$BROKER_ERR")" 0 "no raw Ed25519 seed in the broker's stdout/stderr"
ok "the broker's stderr has its log" grep -q 'serving on' "$BROKER_ERR"
is "$(audit_search --format raw | grep -c -F -f "$T/needles")" 0 "no canary in the audit records since the test started"
is "$(cat /var/log/audit/audit.log* 2>/dev/null | grep -c -a -F -f "$T/needles")" 0 "no canary in the audit log files"
ok "the audit log has this test's records" test "$(audit_count "detail=\"$T/policy.yaml\"")" -ge 2
journalctl --flush >/dev/null 2>&1 || true
journalctl --no-pager -o export --since "@$since" >"$T/journal.export" 2>/dev/null
ok "the journal export of the test window has this test's entries" grep -qaF "AGENTBROKER_DETAIL=$T/policy.yaml" "$T/journal.export"
is "$(grep -c -a -F -f "$T/needles" "$T/journal.export")" 0 "no canary in the journal (journalctl -o export)"
journal_files=$(find /run/log/journal /var/log/journal -name '*.journal' 2>/dev/null)
ok "journal files exist" test -n "$journal_files"
# shellcheck disable=SC2086 # one argument per file
is "$(journalctl --no-pager -o export $(printf -- '--file=%s ' $journal_files) --since "@$since" 2>/dev/null | grep -c -a -F -f "$T/needles")" \
	0 "no canary in the journal files (journalctl --file)"
# shellcheck disable=SC2086
is "$(cat $journal_files | grep -c -a -F -f "$T/needles")" 0 "no canary in the raw bytes of the journal files"
# shellcheck disable=SC2086
is "$(raw_seed_count $journal_files)" 0 "no raw Ed25519 seed in the journal files"
ok "the raw seed search finds the seed where it is (control)" \
	test "$(openssl pkey -in "$T/canary-ed.pem" -outform DER | raw_seed_count)" -eq 1
ok "the search finds a canary where one is (control)" grep -qaF -f "$T/needles" "$T/canary.bin"

done_testing
