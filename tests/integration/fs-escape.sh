#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The fs module's confinement, end to end: agentbroker-mcp (with the real broker deciding
# every call) serving fs.so, driven over stdio with JSON-RPC. Every way out of the configured
# roots is refused with an isError result that leaks nothing of the file outside: `..`,
# absolute paths outside the roots (also a root's name as a mere prefix), symlinks out of
# the root (absolute and relative, to files and to directories), /proc/self/root and /proc
# magic links, very long paths and names, NUL bytes. Legitimate reads, listings, stats and
# searches inside the roots work, page by page, and the host serves on after every refusal.
# The module runs with `structured_output: true`, so that the pages are checked on
# structuredContent (the default, compact text only: fs-context.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
fs_require jq sha256sum timeout

setup_testdir
uniq=$(unique_id)
marker="OUTSIDE-$uniq"

# --- the tree -------------------------------------------------------------------------------
R=$T/root R2=$T/root2
mkdir -p "$R/sub" "$R/many" "$R/deep" "$R2" "$T/outside" "$T/root-evil" "$T/modules"
echo "$marker" >"$T/outside/secret.txt"
echo "$marker" >"$T/root-evil/secret.txt"
printf 'hello from the root\n' >"$R/hello.txt"
printf 'second root\n' >"$R2/other.txt"
for i in $(seq 1 400); do printf 'line %04d of the big file\n' "$i"; done >"$R/big.txt"
printf 'caf\xc3\xa9 \xe2\x82\xac\n%.0s' $(seq 1 300) >"$R/utf8.txt"
cp /bin/true "$R/true.bin"
for i in $(seq 1 37); do echo "$i" >"$R/sub/entry-$(printf '%02d' "$i").txt"; done
mkdir "$R/sub/dir-a" "$R/sub/dir-b"
for i in $(seq 0 149); do : >"$R/many/m$(printf '%03d' "$i")"; done
d=$R/deep
for i in $(seq 1 20); do d=$d/d$i; done
mkdir -p "$d" && : >"$d/deepest-match"
: >"$R/deep/d1/d2/shallow-match"
ln -s hello.txt "$R/link-inside"                     # stays inside: allowed
ln -s ../hello.txt "$R/sub/link-up-inside"           # .. but still inside: allowed
ln -s "$T/outside/secret.txt" "$R/link-abs"          # absolute, out of the root
ln -s ../outside/secret.txt "$R/link-rel"            # relative, out of the root
ln -s ../outside "$R/link-dir-rel"                   # a directory out of the root
ln -s ../.. "$R/sub/up"                              # climbs out through a directory
ln -s /proc/self/root "$R/link-proc"                 # a magic link
ln -s "$R/hello.txt" "$R/link-abs-inside"            # absolute, even to inside: refused
ln -s ../root/hello.txt "$R2/cross-root"             # from root2 into root: out of root2
install -m 0644 "$FS_SO" "$T/modules/fs.so"

cat >"$T/policy.yaml" <<EOF
tools:
  - match: "fs.*"
    max_result_bytes: 2048
modules:
  fs: { roots: [$R, $R2], structured_output: true }   # the pages are read from structuredContent
clients: { uids: [0] }
EOF
start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# --- one MCP session for the whole test ------------------------------------------------------
fs_host_start "$T/modules"

# page_through TOOL ARGS_JSON ITEMS_JQ: call TOOL with ARGS_JSON, then again with each
# next_cursor until there is none. ITEMS: ITEMS_JQ of every page's structuredContent, one a
# line; MOST: the most items a page had; PAGES: the number of calls; BAD: what went wrong.
page_through() {
	local tool=$1 args=$2 items=$3 cursor='' page n
	ITEMS='' MOST=0 BAD=''
	for ((PAGES = 1; PAGES <= 30; PAGES++)); do
		call "$tool" "$(jq -c --arg c "$cursor" 'if $c == "" then . else . + {cursor: $c} end' <<<"$args")"
		[ "$(r '.result.isError // false')" = false ] || { BAD="page $PAGES is an error: $(text)"; return; }
		page=$(sc "$items")
		n=$(grep -c . <<<"$page")
		[ "$n" -le "$MOST" ] || MOST=$n
		ITEMS+=$page$'\n'
		cursor=$(sc '.next_cursor // ""')
		[ -n "$cursor" ] || return
	done
	BAD="more than 30 pages"
}

# refused DESC TOOL ARGS_JSON [REGEX]: the call ends with an isError result (never a JSON-RPC
# error, never a result with content), that names no content from outside the roots, and
# whose message matches REGEX when given.
refused() {
	local desc=$1 tool=$2 args=$3 regex=${4:-}
	if ! call "$tool" "$args"; then
		fail "$desc: refused" "no response"
		return
	fi
	if [ "$(r '.result.isError // false')" != true ]; then
		fail "$desc: refused with an isError result" "response: $(head -c 600 <<<"$RESP")"
		return
	fi
	if grep -qF -- "$uniq" <<<"$RESP"; then
		fail "$desc: refused without leaking the file outside" "response: $(head -c 600 <<<"$RESP")"
		return
	fi
	if [ -n "$regex" ] && ! grep -Eq -- "$regex" <<<"$(text)"; then
		fail "$desc: refused, saying why" "message: $(text)" "should match: $regex"
		return
	fi
	pass "$desc: refused ($(text | head -c 100))"
}

rpc initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fs-escape.sh","version":"1"}}' ||
	bail_out "the host does not answer initialize"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$HOST_IN"
is "$(r '.result.serverInfo.name')" agentbroker-mcp "initialize answered"
rpc tools/list '{}'
is "$(r '[.result.tools[].name] | join(" ")')" \
	"fs.grep fs.list_dir fs.read_file fs.read_json fs.search fs.stat fs.summarize_log fs.tree" "the fs tools are listed"
is "$(r '[.result.tools[] | .annotations | [.readOnlyHint, .destructiveHint, .idempotentHint, .openWorldHint] | map(tostring) | join(",")] | unique | join(" ")')" \
	"true,false,true,false" "every fs tool is annotated read-only, not destructive, idempotent, closed-world"
is "$(r '[.result.tools[] | select(.outputSchema) | .name] | join(" ")')" "fs.list_dir fs.search fs.stat" \
	"list_dir, search and stat declare an output schema"

# --- legitimate use -------------------------------------------------------------------------
call fs.read_file '{"path":"hello.txt"}'
is "$(text)" "hello from the root" "read_file of a relative path reads from the first root"
call fs.read_file "$(jq -cn --arg p "$R/hello.txt" '{path: $p}')"
is "$(text)" "hello from the root" "read_file of an absolute path under the first root"
call fs.read_file "$(jq -cn --arg p "$R2/other.txt" '{path: $p}')"
is "$(text)" "second root" "read_file under the second root"
call fs.read_file '{"path":"link-inside"}'
is "$(text)" "hello from the root" "a relative symlink that stays inside the root is followed"
call fs.read_file '{"path":"sub/link-up-inside"}'
is "$(text)" "hello from the root" "a symlink with .. that stays inside the root is followed"
call fs.read_file '{"path":"sub/../hello.txt"}'
is "$(text)" "hello from the root" ".. that stays inside the root is allowed"
call fs.read_file '{"path":"true.bin"}'
like "$(text)" "binary file, [0-9]+ bytes, type: ELF" "a binary file is described, not dumped"
is "$(r '.result.isError // false')" false "a binary file is not an error"

# read_file pagination: follow the notes until the whole file has been read.
got='' offset=0 pages=0 bad=''
for ((pages = 1; pages <= 20; pages++)); do
	call fs.read_file "$(jq -cn --argjson o "$offset" '{path: "big.txt", offset: $o}')"
	[ "$(r '.result.isError // false')" = false ] || { bad="page $pages is an error: $(text)"; break; }
	page=$(jq -j '.result.content[0].text' <<<"$RESP"; printf x) # keeps trailing newlines
	page=${page%x}
	note=$(r '.result.content[1].text // ""')
	[ "$(printf '%s' "$RESP" | wc -c)" -le 2048 ] || bad="page $pages is larger than max_result_bytes"
	got+=$page
	[ -n "$note" ] || break
	next=$(sed -n -E 's/^\[([0-9]+) more bytes: call fs\.read_file with offset=([0-9]+)\]$/\2/p' <<<"$note")
	[ -n "$next" ] || { bad="page $pages has an unexpected note: $note"; break; }
	offset=$next
done
is "$bad" "" "read_file pages stay within max_result_bytes and end with a note giving the next offset"
ok "read_file took several pages ($pages)" test "$pages" -gt 2
is "$(printf '%s' "$got" | sha256sum | cut -d' ' -f1)" "$(sha256sum <"$R/big.txt" | cut -d' ' -f1)" \
	"the pages put together are the file"

# UTF-8: pages are cut at character boundaries.
got='' offset=0 bad=''
for ((pages = 1; pages <= 20; pages++)); do
	call fs.read_file "$(jq -cn --argjson o "$offset" '{path: "utf8.txt", offset: $o}')"
	[ "$(r '.result.isError // false')" = false ] || { bad="page $pages is an error: $(text)"; break; }
	page=$(jq -j '.result.content[0].text' <<<"$RESP"; printf x)
	got+=${page%x}
	next=$(r '.result.content[1].text // ""' | sed -n -E 's/.*offset=([0-9]+)\]$/\1/p')
	[ -n "$next" ] || break
	offset=$next
done
is "$bad" "" "utf8.txt reads page by page"
is "$(printf '%s' "$got" | sha256sum | cut -d' ' -f1)" "$(sha256sum <"$R/utf8.txt" | cut -d' ' -f1)" \
	"multi-byte characters survive the page boundaries"
call fs.read_file '{"path":"utf8.txt","offset":4}'
like "$(text)" "inside a multi-byte UTF-8 character.*offset=5" "an offset inside a character is refused, with the right one"

call fs.stat '{"path":"hello.txt"}'
is "$(sc '[.type, .size, .symlink, .mode] | map(tostring) | join(" ")')" "file 20 false 0644" "stat of a file"
call fs.stat '{"path":"link-inside"}'
is "$(sc '[.type, .size, .symlink] | map(tostring) | join(" ")')" "file 20 true" "stat follows a symlink inside the root"
call fs.stat "$(jq -cn --arg p "$R2" '{path: $p}')"
is "$(sc .type)" directory "stat of the second root itself"

# list_dir pagination: sorted names, limit and cursor.
page_through fs.list_dir '{"path":"sub","limit":10}' '.entries[] | .name'
names=$ITEMS pages=$PAGES bad=$BAD
[ "$MOST" -le 10 ] || bad="a page has $MOST entries"
is "$bad" "" "list_dir pages hold at most limit entries"
n_sub=$(find "$R/sub" -mindepth 1 -maxdepth 1 | wc -l)
is "$pages" $(((n_sub + 9) / 10)) "list_dir of $n_sub entries takes $(((n_sub + 9) / 10)) pages of 10"
is "$(printf '%s' "$names" | grep -c .)" "$n_sub" "every entry is listed once"
is "$(printf '%s' "$names" | sed '/^$/d')" "$(cd "$R/sub" && find . -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort)" \
	"list_dir is sorted by name"
is "$(sc .total)" "$n_sub" "list_dir reports the directory's total"
call fs.list_dir '{"path":"."}'
is "$(sc '.entries[] | select(.name == "link-abs") | .type')" symlink "list_dir shows a symlink as a symlink (not its target)"
is "$(sc '.entries[] | select(.name == "hello.txt") | .size')" 20 "list_dir gives a file's size"
call fs.list_dir '{"path":"sub","cursor":"not/base64!"}'
is "$(r .result.isError)" true "a forged cursor is refused"

# search: a regex over names, recursive, paginated, symlinks not followed.
page_through fs.search '{"path":".","pattern":"^m[0-9]+$"}' '.matches[] | .path'
matches=$ITEMS pages=$PAGES bad=$BAD
is "$bad" "" "search pages"
ok "search of 150 matches takes more than one page ($pages)" test "$pages" -gt 1
is "$(printf '%s' "$matches" | sed '/^$/d' | sort -u | grep -c .)" 150 "every match is found once"
is "$(printf '%s' "$matches" | sed '/^$/d' | head -n 1)" "./many/m000" "search paths are usable paths"
call fs.search '{"path":".","pattern":"match$"}'
is "$(sc '[.matches[].path] | join(" ")')" "./deep/d1/d2/shallow-match" "search stops 16 levels down"
ok "search counts the directories it did not enter" test "$(sc .not_searched)" -ge 1
call fs.search '{"path":".","pattern":"secret"}'
is "$(sc '.matches | length')" 0 "search does not follow symlinks out of the root"
call fs.search "$(jq -cn --arg p "$R2" '{path: $p, pattern: "."}')"
is "$(sc '[.matches[].path] | join(" ")')" "$R2/cross-root $R2/other.txt" "search under the second root"
refused "search with a back-reference" fs.search '{"path":".","pattern":"(a)\\1"}' "back-references"

# --- escapes -------------------------------------------------------------------------------
OUTSIDE='outside the allowed roots'
refused "read_file ../outside" fs.read_file '{"path":"../outside/secret.txt"}' "$OUTSIDE"
refused "read_file ROOT/../outside" fs.read_file "$(jq -cn --arg p "$R/../outside/secret.txt" '{path: $p}')" "$OUTSIDE"
refused "read_file sub/../../outside" fs.read_file '{"path":"sub/../../outside/secret.txt"}' "$OUTSIDE"
refused "read_file of an absolute path outside every root" fs.read_file \
	"$(jq -cn --arg p "$T/outside/secret.txt" '{path: $p}')" "$OUTSIDE"
refused "read_file /etc/passwd" fs.read_file '{"path":"/etc/passwd"}' "$OUTSIDE"
refused "read_file ROOT-evil (the root's name as a mere prefix)" fs.read_file \
	"$(jq -cn --arg p "$T/root-evil/secret.txt" '{path: $p}')" "$OUTSIDE"
refused "read_file ROOT2/../root (out of the second root, into the first)" fs.read_file \
	"$(jq -cn --arg p "$R2/../root/hello.txt" '{path: $p}')" "$OUTSIDE"
refused "read_file through an absolute symlink out of the root" fs.read_file '{"path":"link-abs"}' "$OUTSIDE"
refused "read_file through an absolute symlink, even to inside" fs.read_file '{"path":"link-abs-inside"}' "$OUTSIDE"
refused "read_file through a relative symlink out of the root" fs.read_file '{"path":"link-rel"}' "$OUTSIDE"
refused "read_file through a symlinked directory out of the root" fs.read_file \
	'{"path":"link-dir-rel/secret.txt"}' "$OUTSIDE"
refused "read_file through a symlink that climbs out (sub/up -> ../..)" fs.read_file \
	'{"path":"sub/up/outside/secret.txt"}' "$OUTSIDE"
refused "read_file through a symlink from the second root into the first" fs.read_file \
	"$(jq -cn --arg p "$R2/cross-root" '{path: $p}')" "$OUTSIDE"
refused "read_file /proc/self/root/..." fs.read_file \
	"$(jq -cn --arg p "/proc/self/root$T/outside/secret.txt" '{path: $p}')" "$OUTSIDE"
refused "read_file /proc/self/root/etc/passwd" fs.read_file '{"path":"/proc/self/root/etc/passwd"}' "$OUTSIDE"
refused "read_file through a symlink to /proc/self/root" fs.read_file \
	"$(jq -cn --arg p "link-proc$T/outside/secret.txt" '{path: $p}')" "$OUTSIDE"
refused "read_file /proc/self/cwd" fs.read_file '{"path":"/proc/self/cwd/hello.txt"}' "$OUTSIDE"
refused "stat through an absolute symlink out of the root" fs.stat '{"path":"link-abs"}' "$OUTSIDE"
refused "stat .." fs.stat '{"path":".."}' "$OUTSIDE"
refused "list_dir .." fs.list_dir '{"path":".."}' "$OUTSIDE"
refused "list_dir /" fs.list_dir '{"path":"/"}' "$OUTSIDE"
refused "list_dir through a symlinked directory out of the root" fs.list_dir '{"path":"link-dir-rel"}' "$OUTSIDE"
refused "list_dir ROOT/.." fs.list_dir "$(jq -cn --arg p "$R/.." '{path: $p}')" "$OUTSIDE"
refused "search .." fs.search '{"path":"..","pattern":"secret"}' "$OUTSIDE"
refused "search through a symlink out of the root" fs.search '{"path":"link-dir-rel","pattern":"."}' "$OUTSIDE"
refused "search from /" fs.search '{"path":"/","pattern":"secret"}' "$OUTSIDE"

# very long paths and names
long=$(printf 'a/%.0s' $(seq 1 2600))x           # 5201 characters: past the schema's maxLength
refused "a path of 5201 characters" fs.read_file "$(jq -cn --arg p "$long" '{path: $p}')"
long=$(printf '\xc3\xa9%.0s' $(seq 1 2100))       # 2100 characters but 4200 bytes: past PATH_MAX
refused "a path of 4200 bytes (2100 characters)" fs.read_file "$(jq -cn --arg p "$long" '{path: $p}')" "too long"
long=$(printf 'n%.0s' $(seq 1 300))               # one name of 300 bytes: past NAME_MAX
refused "a name of 300 bytes" fs.read_file "$(jq -cn --arg p "$long" '{path: $p}')" "too long"
long=$(printf '../%.0s' $(seq 1 1300))etc/passwd  # 3910 bytes of ..
refused "a path of 1300 .. components" fs.read_file "$(jq -cn --arg p "$long" '{path: $p}')" "$OUTSIDE"

# NUL bytes: a C string would stop at the NUL and read hello.txt, or escape after it. The
# host must refuse a string argument holding an escaped NUL (cJSON keeps only what comes
# before it, and the module never sees the rest).
refused "a path with a NUL byte (hello.txt\\u0000../outside)" fs.read_file \
	'{"path":"hello.txt\u0000../outside/secret.txt"}'
refused "a path with a NUL byte after the root" fs.read_file \
	"$(jq -cn --arg p "$R" '{path: ($p + "\u0000/../outside/secret.txt")}')"
refused "a pattern with a NUL byte" fs.search '{"path":".","pattern":"hello\u0000"}'
refused "an empty path" fs.read_file '{"path":""}'

# the tools of issue 14: the same confinement
refused "grep .." fs.grep '{"path":"..","pattern":"OUTSIDE"}' "$OUTSIDE"
refused "grep through an absolute symlink out of the root" fs.grep '{"path":"link-abs","pattern":"O"}' "$OUTSIDE"
refused "grep through a symlinked directory out of the root" fs.grep '{"path":"link-dir-rel","pattern":"O"}' "$OUTSIDE"
refused "grep /proc/self/root/etc" fs.grep '{"path":"/proc/self/root/etc","pattern":"root"}' "$OUTSIDE"
call fs.grep "$(jq -cn --arg m "$marker" '{path: ".", pattern: $m, fixed: true}')"
is "$(r '.result.isError // false') $(text | grep -c "$uniq")" "false 0" \
	"grep below the root follows no symlink out of it (the marker outside is not found)"
refused "tree .." fs.tree '{"path":".."}' "$OUTSIDE"
refused "tree through a symlink that climbs out" fs.tree '{"path":"sub/up"}' "$OUTSIDE"
call fs.tree '{"path":".","depth":3}'
is "$(r '.result.isError // false') $(text | grep -c "secret")" "false 0" "tree shows no name from outside the root"
refused "read_file by lines through a relative symlink out" fs.read_file '{"path":"link-rel","start_line":1}' "$OUTSIDE"
refused "read_file by tail through /proc/self/root" fs.read_file '{"path":"link-proc/etc/passwd","tail_lines":1}'
refused "read_json through an absolute symlink out" fs.read_json '{"path":"link-abs","select":[""]}' "$OUTSIDE"
refused "summarize_log of ../outside" fs.summarize_log '{"path":"../outside/secret.txt"}' "$OUTSIDE"

# --- the host serves on ----------------------------------------------------------------------
call fs.read_file '{"path":"hello.txt"}'
is "$(text)" "hello from the root" "after every refusal, the host still serves fs calls"
ok "the host is still running" kill -0 "$host_pid"

exec {HOST_IN}>&-
rc=0
wait "$host_pid" || rc=$?
is "$rc" 0 "the host exits 0 at the end of its input"
problems=$(grep -E 'Sanitizer|runtime error' "$T/host.err" | head -n 5)
is "$problems" "" "no sanitizer report from the host or its workers"
stop_broker
done_testing
