#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The fs tools that answer compactly (issue 14), end to end: agentbroker-mcp (with the real
# broker deciding every call) serving fs.so, driven over stdio with JSON-RPC. fs.grep,
# fs.tree, fs.read_file by lines, fs.read_json and fs.summarize_log give the answer and little
# else, within max_result_bytes (the host never has to cut them), page with cursors the host
# passes through, and handle binary files, huge lines, invalid UTF-8 and bad patterns with a
# clear isError message. fs.list_dir, fs.stat and fs.search answer with a compact text alone
# by default (no outputSchema, no structuredContent: the text holds the facts and the
# cursor); with `structured_output: true` they declare output schemas and add
# structuredContent beside the compact text, or beside the JSON with `structured_text: json`;
# another value of structured_output keeps the module from being served.
# (Confinement of the same tools: fs-escape.sh.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
fs_require jq grep sha256sum

setup_testdir
R=$T/root MAX=4096
mkdir -p "$R/logs" "$R/src/a" "$R/src/b" "$T/modules"
install -m 0644 "$FS_SO" "$T/modules/fs.so"
# a log: 2,000 lines, 7 ERROR lines, a line of invalid UTF-8 past the first 8 KiB, a huge line
for i in $(seq 1 2000); do
	case $((i % 300)) in
	7) printf '2026-03-01T10:00:%02dZ ERROR [w-%d] payment %d failed after %d ms\n' $((i % 60)) $((i % 4)) "$i" $((i * 3)) ;;
	*) printf '2026-03-01T10:00:%02dZ INFO [w-%d] request %d served\n' $((i % 60)) $((i % 4)) "$i" ;;
	esac
done >"$R/logs/app.log"
printf 'bad \xff byte ERROR\n' >>"$R/logs/app.log"
{ printf 'ERROR at the start '; head -c 300000 /dev/zero | tr '\0' 'z'; printf '\n'; } >>"$R/logs/app.log"
for i in $(seq 1 30); do echo "int f$i; /* ERROR */" >"$R/src/a/f$(printf '%02d' "$i").c"; done
echo 'int b;' >"$R/src/b/b.c"
cp /bin/true "$R/src/b/true.bin"
{ echo 'id,name,value'; for i in $(seq 1 500); do echo "$i,item-$i,$((i * 7))"; done; } >"$R/table.csv"
jq -n '[range(1; 31) | {number: ., title: "issue \(.)", state: (if . % 3 == 0 then "closed" else "open" end), body: ("x" * 500)}]' \
	>"$R/issues.json"
printf '{"a": [1, 2,, 3]}\n' >"$R/bad.json"

write_policy() {
	cat >"$T/policy.yaml" <<EOF
tools:
  - match: "fs.*"
    max_result_bytes: $MAX
modules:
  fs: { roots: [$R]$1 }
clients: { uids: [0] }
EOF
}
write_policy ''
start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"
fs_host_start "$T/modules"
INIT='{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fs-context.sh","version":"1"}}'
rpc initialize "$INIT" || bail_out "the host does not answer initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$HOST_IN"

# fits: the last result is not an error, within MAX bytes, and the host did not cut it.
fits() {
	local desc=$1 size
	size=$(printf '%s' "$(r .result)" | wc -c)
	if [ "$(r '.result.isError // false')" != false ]; then
		fail "$desc" "isError: $(text | head -c 300)"
	elif [ "$size" -gt "$MAX" ] || text | grep -q '^\[truncated'; then
		fail "$desc" "the result is $size bytes or was truncated by the host"
	else
		pass "$desc ($size bytes)"
	fi
}
# errs DESC REGEX: the last result is an isError result whose text matches REGEX.
errs() {
	if [ "$(r '.result.isError // false')" = true ] && grep -Eq -- "$2" <<<"$(text)"; then
		pass "$1 ($(text | head -c 120))"
	else
		fail "$1" "response: $(head -c 400 <<<"$RESP")" "should match: $2"
	fi
}

rpc tools/list '{}'
is "$(r '[.result.tools[] | select(.name | test("^fs\\.(grep|tree|read_json|summarize_log)$")) | select(.outputSchema | not) | .name] | join(" ")')" \
	"fs.grep fs.read_json fs.summarize_log fs.tree" "the new tools are listed, text-only (no output schema)"

# --- fs.grep ------------------------------------------------------------------------------------
call fs.grep '{"path":"logs/app.log","pattern":"ERROR","fixed":true,"max_matches":7}'
fits "grep of a log"
want=$(grep -n -F ERROR "$R/logs/app.log" | head -n 7)
is "$(text | sed -n '2,8p')" "$want" "grep answers the matching lines with their numbers, as grep -n"
like "$(text | head -n 1)" '^logs/app\.log \(7 matches so far\)$' "the file's header counts its matches"
like "$(text)" 'stopped by max_matches: call fs\.grep again with cursor=' "max_matches stops the call with a cursor"
cursor=$(text | sed -n -E 's/.*cursor=([A-Za-z0-9_-]+)\]$/\1/p')
call fs.grep "$(jq -cn --arg c "$cursor" '{path: "logs/app.log", pattern: "ERROR", fixed: true, cursor: $c}')"
fits "grep with the cursor"
like "$(text)" '^logs/app\.log \(2 matches\)' "the cursor resumes at the line where the call stopped"
like "$(text)" $'\n2001:bad \\\\xFF byte ERROR\n' "invalid UTF-8 is shown as \\xNN"
like "$(text)" $'\n2002:ERROR at the start zzzz' "a huge line is shown cut"
ok "the huge line's window is short" test "$(text | grep -c '^2002:')" -eq 1 -a "$(text | grep '^2002:' | wc -c)" -lt 500
call fs.grep '{"path":"src","pattern":"f(1|2)[0-9];"}'
fits "grep below a directory"
is "$(text | grep -c '(1 match)')" 20 "grep finds the lines in every file below the directory"
like "$(text)" '1 binary file skipped' "a binary file is skipped and counted"
call fs.grep '{"path":"logs/app.log","pattern":"(ERROR"}'
errs "a bad pattern is an isError result" 'pattern is not a valid regular expression: .*missing'
call fs.grep '{"path":"logs/app.log","pattern":"x","cursor":"@@"}'
errs "a forged cursor is refused" 'invalid cursor'

# --- fs.read_file by lines ----------------------------------------------------------------------
call fs.read_file '{"path":"table.csv","start_line":1,"max_lines":101}'
fits "the header and 100 rows"
is "$(jq -j '.result.content[0].text' <<<"$RESP" | sha256sum)" "$(head -n 101 "$R/table.csv" | sha256sum)" \
	"start_line/max_lines answer exactly those lines"
csv_size=$(stat -c %s "$R/table.csv")
is "$(jq -r '.result.content[1].text' <<<"$RESP")" \
	"[lines 1-101 of 'table.csv' (bytes 0-$(head -n 101 "$R/table.csv" | wc -c) of $csv_size); more follow: start_line=102]" \
	"the note names the next line"
got='' next=1 pages=0
while [ -n "$next" ] && [ "$pages" -lt 20 ]; do
	call fs.read_file "$(jq -cn --argjson s "$next" '{path: "table.csv", start_line: $s}')"
	pages=$((pages + 1))
	[ "$(printf '%s' "$(r .result)" | wc -c)" -le "$MAX" ] || break
	got+=$(jq -j '.result.content[0].text' <<<"$RESP"; printf x)
	got=${got%x}
	next=$(r '.result.content[1].text' | sed -n -E 's/.*more follow: start_line=([0-9]+)\]$/\1/p')
done
is "$(printf '%s' "$got" | sha256sum)" "$(sha256sum <"$R/table.csv")" "pages of whole lines, each within the result size, are the file ($pages pages)"
call fs.read_file '{"path":"table.csv","tail_lines":2}'
is "$(text)" $'499,item-499,3493\n500,item-500,3500\n'"[the last 2 lines of 'table.csv' (lines 500-501), from byte $((csv_size - $(tail -n 2 "$R/table.csv" | wc -c))) to the end]" \
	"tail_lines answers the last lines with their numbers"
call fs.read_file '{"path":"logs/app.log","start_line":2002}'
fits "a line longer than the result"
like "$(text)" 'line 2002 of .* is longer than this result allows: its first [0-9]+ bytes are shown' "is shown cut, saying where the rest is"
call fs.read_file '{"path":"src/b/true.bin","tail_lines":3}'
like "$(text)" 'is a binary file, [0-9]+ bytes, type: ELF' "a binary file is described"

# --- fs.tree, fs.read_json, fs.summarize_log ----------------------------------------------------
call fs.tree '{"path":".","depth":2,"max_files":2}'
fits "tree"
like "$(text)" $'^\\./  4 dirs, 36 files, ' "the first line counts everything below"
like "$(text)" $'\nsrc/  2 dirs, 32 files, [0-9.]+ KiB\n  a/  30 files, [0-9]+ B\n  b/  2 files, ' \
	"folders at the cut carry their counts"
like "$(text)" $'\n\\.\\.\\. 1 more file, ' "files past max_files are summed up"
call fs.read_json '{"path":"issues.json","select":["[*].{number,title,state}"]}'
fits "read_json"
is "$(text)" "$(jq -c '[.[] | {number, title, state}]' "$R/issues.json")" "a projection answers only the selected members"
call fs.read_json '{"path":"bad.json","select":["/a"]}'
errs "invalid JSON is an isError result naming the place" 'not valid JSON: error near line 1, column 13'
call fs.summarize_log '{"path":"logs/app.log"}'
fits "summarize_log"
like "$(text)" $'\nlevels: ERROR 8, INFO 1994, \\(none\\) 1\n' "the summary counts the lines per level"
like "$(text)" $'\n7 ERROR \\[w-<n>\\] payment <n> failed after <n> ms\n  e\\.g\\. ' "and names the ERROR template with its count"
ok "the summary is at most 4 KiB" test "$(text | wc -c)" -le 4096

# --- the compact text of a structured result, structured_output ---------------------------------
# by default: text alone, holding every fact and the cursor
call fs.list_dir '{"path":"src/b"}'
is "$(text)" $'path: src/b, total: 2\nb.c\t7\ntrue.bin\t'"$(stat -c %s "$R/src/b/true.bin")" \
	"list_dir's text block is a compact rendering"
is "$(r '.result | has("structuredContent")')" false "and, by default, the result has no structuredContent"
call fs.list_dir '{"path":"src/a","limit":20}'
cursor=$(text | sed -n 's/^\[more: call again with cursor=\(.*\)\]$/\1/p')
ok "a page of list_dir names its cursor in the text" test -n "$cursor"
call fs.list_dir "$(jq -cn --arg c "$cursor" '{path: "src/a", limit: 20, cursor: $c}')"
is "$(text | tail -n +2 | cut -f1 | grep . | paste -sd' ')" "f21.c f22.c f23.c f24.c f25.c f26.c f27.c f28.c f29.c f30.c" \
	"the cursor from the text gives the next page"
call fs.stat '{"path":"table.csv"}'
like "$(text)" "^path: table.csv, type: file, size: $(stat -c %s "$R/table.csv"), mode: 0644, uid: 0, gid: 0, nlink: 1, mtime: [0-9T:-]+Z, symlink: false" \
	"stat's text holds every fact"
is "$(r '.result | has("structuredContent")')" false "without structuredContent"
call fs.search '{"path":"src","pattern":"^b"}'
is "$(text)" $'path: src, pattern: ^b, scanned: 34, not_searched: 0\nsrc/b/\nsrc/b/b.c\t7' "search's text holds every match"
is "$(r '.result | has("structuredContent")')" false "without structuredContent"
exec {HOST_IN}>&-
wait "$host_pid" || true
is "$(grep -E 'Sanitizer|runtime error' "$T/host.err" | head -n 5)" "" "no sanitizer report from the host or its workers"
stop_broker

# restart EXTRA: the broker and a host again, with `EXTRA` added to the fs configuration.
restart() {
	write_policy "$1"
	start_broker "$T/policy.yaml"
	fs_host_start "$T/modules"
	rpc initialize "$INIT" || bail_out "the host does not answer initialize"
	printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$HOST_IN"
}
# finish DESC: close the host, check its log for sanitizer reports, stop the broker.
finish() {
	exec {HOST_IN}>&-
	wait "$host_pid" || true
	is "$(grep -E 'Sanitizer|runtime error' "$T/host.err" | head -n 5)" "" "no sanitizer report ($1)"
	stop_broker
}

# with structured_output: true, output schemas and structuredContent beside the compact text
restart ', structured_output: true'
rpc tools/list '{}'
is "$(r '[.result.tools[] | select(.outputSchema) | .name] | join(" ")')" "fs.list_dir fs.search fs.stat" \
	"structured_output: true: list_dir, search and stat declare an output schema"
call fs.list_dir '{"path":"src/b"}'
is "$(text)" $'path: src/b, total: 2\nb.c\t7\ntrue.bin\t'"$(stat -c %s "$R/src/b/true.bin")" \
	"structured_output: true: the same compact text"
is "$(sc '.entries | map(.name) | join(" ")')" "b.c true.bin" "and structuredContent is there"
call fs.stat '{"path":"table.csv"}'
is "$(sc '.size')" "$(stat -c %s "$R/table.csv")" "stat's structuredContent too"
finish "structured_output: true"

# with structured_text: json too, the text block is the JSON (the host adds it)
restart ', structured_output: true, structured_text: json'
call fs.list_dir '{"path":"src/b"}'
is "$(text | jq -c .)" "$(r '.result.structuredContent' | jq -c .)" "structured_text: json sends the JSON as the text block"
finish "structured_text: json"

# a value that is not a boolean: init fails, the module is not served, the log says why
restart ', structured_output: maybe'
rpc tools/list '{}'
is "$(r '[.result.tools[] | select(.name | startswith("fs."))] | length')" 0 "structured_output: maybe: no fs tool is served"
like "$(cat "$T/host.err")" 'structured_output must be true or false' "and the host log says why"
finish "a bad structured_output"
done_testing
