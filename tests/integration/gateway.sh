#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The MCP gateway (host/gateway/gateway.c, docs/gateway.md) end to end with the real broker, auditd
# and journald: two third-party MCP servers pinned in tests/package-lock.json
# (@modelcontextprotocol/server-filesystem, @modelcontextprotocol/server-everything) and a
# misbehaving server of our own (tests/gateway/bad-server.mjs) run behind agentbroker-mcp.
# Shown: only the allow-listed tools are listed; calls work over raw JSON-RPC, from the
# official SDK client over stdio and over Streamable HTTP; every call has its begin and end
# audit records; a call policy denies never reaches the server; a secret passed to a server as
# an environment variable (audited as secret-use sop=env) and echoed back is redacted; the
# result cap cuts a large read_text_file answer with a note; a server's crash, hang, garbage,
# flood, oversized line, and requests to the client are handled and the server is restarted;
# a lazy server starts at the first tools/list; a tool whose schema cannot be enforced is
# refused with a log line.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/http-lib.sh"

GW=$ABS_TOP_SRCDIR/tests/gateway
NM=$NODE_MODULES/@modelcontextprotocol

require_root
require_services
require_tools jq node timeout
require_built "$MCP" "$WORKER"
[ -f "$ABS_TOP_BUILDDIR/modules/.libs/echo.so" ] || unmet "the echo module is not built"
require_node_modules @modelcontextprotocol/server-filesystem @modelcontextprotocol/server-everything \
	@modelcontextprotocol/sdk
NODE=$(command -v node)

setup_testdir
mkdir -m 0755 "$T/modules" "$T/data"
install -m 0755 "$ABS_TOP_BUILDDIR/modules/.libs/echo.so" "$T/modules/"
printf 'hello from the data directory\n' >"$T/data/small.txt"
# 64 KiB of text in lines (more than the 4096-byte cap of fs.read_text_file below).
for i in $(seq 1 1024); do printf 'line %04d %053d\n' "$i" 0; done >"$T/data/big.txt"
chmod -R a+rX "$T/data"

SECRET_VALUE="gw-$(unique_id)-s3cr3t"
# What the profile "gw" mounts into its run's sandbox: outside /tmp (the sandbox provides its
# own /tmp, so a mount may not go there), the probe server and a file it may read.
D=$(mktemp -d /var/tmp/ab-gateway.XXXXXX) || bail_out "mktemp in /var/tmp failed"
add_cleanup rm -rf "$D"
cp "$GW/bad-server.mjs" "$D/"
printf 'mounted\n' >"$D/small.txt"
chmod -R go+rX "$D"
cat >"$T/policy.yaml" <<EOF
secrets:
  apikey: { env: AB_TEST_GW_KEY }
  missing: { env: AB_TEST_GW_UNSET }
servers:
  fs:
    command: $NODE
    args: [$NM/server-filesystem/dist/index.js, $T/data]
    tools: [read_text_file, list_directory, get_file_info]
  every:
    command: $NODE
    args: [$NM/server-everything/dist/index.js, stdio]
    tools: [echo, get-sum, get-env, trigger-long-running-operation]
    secrets: { API_KEY: apikey }
  bad:
    command: $NODE
    args: [$GW/bad-server.mjs]
    tools: [ok, denied, crash, hang, garbage, flood, ask, progress, huge, badschema, change, added, bigdesc]
    secrets: { BAD_KEY: apikey }
  locked:
    command: $NODE
    args: [$GW/bad-server.mjs]
    tools: [ok]
    secrets: { K: missing }
  lazy:
    command: $NODE
    args: [$GW/bad-server.mjs]
    tools: [ok]
    start: lazy
  probe:
    command: $NODE
    args: [$D/bad-server.mjs]
    tools: [probe]
    env: { PROBE_PATHS: "$D/small.txt:$T/outside.txt:/etc/passwd:$T/policy.yaml" }
  leaky:
    command: $NODE
    args: [$GW/bad-server.mjs]
    tools: [leak]
    secrets: { API_KEY: apikey }
tools:
  - match: "echo.*"
  - match: "fs.*"
  - match: "fs.read_text_file"
    max_result_bytes: 4096
  - match: "fs.list_directory"
    allow: false
  - match: "every.*"
  - match: "bad.*"
  - match: "bad.hang"
    timeout_ms: 1500
  - match: "bad.denied"
    allow: false
  - match: "lazy.*"
  - match: "leaky.*"
  - match: "probe.*"
  - match: "locked.*"
profiles:
  gw:
    mounts:
      - { source: $D, target: $D }
    network: none
clients: { uids: [0] }
EOF
AB_TEST_GW_KEY=$SECRET_VALUE start_broker "$T/policy.yaml"
is "$(broker_status_pid)" "$BROKER_PID" "broker started: it answers status with its pid ($BROKER_PID)"

# ready_count NAME: how many times server NAME became ready (started or restarted).
ready_count() { grep -c "server $1 ready in" "$T/mcp.err"; }

export AB_TEST_GW_MARKER=host-only
mcp_start
r=$(request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"gateway.sh","version":"1"}}')
is "$(jq -r .result.protocolVersion <<<"$r")" 2025-11-25 "the host answers initialize once its servers are ready"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
RUN=$(sed -n 's/.*info: run \([^ ]*\).*/\1/p' "$T/mcp.err" | head -n 1)
isnt "$RUN" "" "the host opened a run ($RUN)"
like "$(cat "$T/mcp.err")" "server fs ready in [0-9]+ ms \(pid [0-9]+\): 3 of its [0-9]+ tools served" \
	"the filesystem server started with the host; its start time is logged"
like "$(cat "$T/mcp.err")" "server every ready in [0-9]+ ms" "the everything server started with the host"
unlike "$(cat "$T/mcp.err")" "server lazy" "the lazy server did not start with the host"
like "$(cat "$T/mcp.err")" 'server bad: refusing tool badschema: inputSchema: .*' \
	"a tool whose input schema cannot be enforced is refused, with the reason"
like "$(cat "$T/mcp.err")" 'server bad: refusing tool bigdesc: its description is larger than 65536 bytes' \
	"a tool with an oversized description is refused"
e=$(audit_find secret-use "$RUN" 'sop="env"' 'tool="every"' 'secret="apikey"')
isnt "$e" "" "the secret passed to the every server at its start is audited as secret-use sop=env"
like "$(cat "$T/mcp.err")" "server locked: the broker does not give the secret for K" \
	"a server whose secret the broker cannot give is not started, with a log line"
ok "... the broker's refusal is audited (token-deny, sop=env, secret-unavailable)" \
	audit_find token-deny "$RUN" 'sop="env"' 'tool="locked"' 'reason="secret-unavailable"'
unlike "$(cat "$T/mcp.err")" "bad-server: call" "(no call has reached a server yet)"

# --- tools/list: the allow-list and policy ---------------------------------------------------
r=$(request 1 tools/list)
is "$(jq -r '[.result.tools[].name] | join(" ")' <<<"$r")" \
	"bad.ask bad.change bad.crash bad.flood bad.garbage bad.hang bad.huge bad.ok bad.progress echo.echo every.echo every.get-env every.get-sum every.trigger-long-running-operation fs.get_file_info fs.read_text_file lazy.ok leaky.leak probe.probe" \
	"tools/list: the module's tool beside the exposed tools of each server (not fs.list_directory or bad.denied: policy denies them; not badschema)"
like "$(cat "$T/mcp.err")" "server lazy ready in" "the lazy server started at the first tools/list"
is "$(jq -r '.result.tools[] | select(.name=="fs.read_text_file") | .inputSchema.required[0]' <<<"$r")" path \
	"a served tool carries the server's input schema"

# --- calls -----------------------------------------------------------------------------------
r=$(call 1 echo.echo '{"text":"module"}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "module" "the module's tool answers beside the servers'"
r=$(call 2 every.echo '{"message":"hi there"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "Echo: hi there" "every.echo answers through the host"
r=$(call 3 every.get-sum '{"a":2,"b":40}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "42" "every.get-sum answers"
r=$(call 4 every.get-sum '{"a":"2","b":40}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "Invalid arguments for every.get-sum: arguments.a" \
	"arguments that break the server's schema are refused by the host's validator"
r=$(call 5 fs.read_text_file "{\"path\":\"$T/data/small.txt\"}")
is "$(jq -r '.result.content[0].text' <<<"$r")" "hello from the data directory" "fs.read_text_file reads a file"
r=$(call 6 fs.read_text_file "{\"path\":\"$T/data/big.txt\"}")
ok "the result cap cuts a large read_text_file answer" [ "$(jq -c .result <<<"$r" | wc -c)" -le 4200 ]
like "$(jq -r '[.result.content[].text] | join("") | gsub("\n"; " ")' <<<"$r")" "^line 0001 .*\[truncated: [0-9]+ of [0-9]+ bytes shown" \
	"the cut answer starts with the file and ends with a note saying how much was shown"
like "$(jq -r '.result.content[-1].text' <<<"$r")" "Call fs.read_text_file again with head=N .* or tail=N" \
	"... and how to get a part that fits (the tool's head and tail arguments)"
unlike "$(jq -c .result <<<"$r")" '"isError":true' "the cut answer is not an error"

# --- a secret the server got, echoed back ----------------------------------------------------
r=$(call 7 every.get-env '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" 'API_KEY.*\[REDACTED:API_KEY\]' \
	"a secret passed to the server and echoed back by its tool is redacted"
unlike "$r" "$SECRET_VALUE" "the secret's value never reaches the client"
# The server says its secret on its stderr, in a progress message and in a JSON-RPC error.
r=$(request 70 tools/call '{"name":"leaky.leak","arguments":{},"_meta":{"progressToken":"leak"}}')
like "$(jq -r '.result.content[0].text' <<<"$r")" 'the key \[REDACTED:API_KEY\] was refused' \
	"a secret in a server's JSON-RPC error message is redacted"
like "$(grep '"notifications/progress"' "$T/mcp.out")" 'using \[REDACTED:API_KEY\]' "... and in its progress message"
unlike "$(cat "$T/mcp.out")" "$SECRET_VALUE" "... and its value reaches the client nowhere"
wait_for 10 grep -q "server leaky: stderr: bad-server: my key is \[REDACTED:API_KEY\]" "$T/mcp.err"
like "$(cat "$T/mcp.err")" "server leaky: stderr: bad-server: my key is \[REDACTED:API_KEY\]" \
	"a secret a server writes to its stderr is redacted before the host logs it"
unlike "$(cat "$T/mcp.err")" "$SECRET_VALUE" "... the host's log never has the value"

# --- policy: a denied call never reaches the server ------------------------------------------
r=$(call 8 bad.denied '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "denied by policy: tool-not-allowed" "a call policy denies is refused"
r=$(call 9 fs.list_directory "{\"path\":\"$T/data\"}")
like "$(jq -r '.result.content[0].text' <<<"$r")" "denied by policy" "fs.list_directory (exposed, denied by policy) is refused"
r=$(call 10 bad.ok '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid [0-9]+" "bad.ok answers"
BAD_INSTANCE=$(jq -r '.result.content[0].text' <<<"$r" | sed 's/.*instance //')
# Its pid as the host sees it (the server is pid 1 of a pid namespace of its own).
BAD_PID=$(sed -n 's/.*server bad ready in [0-9]* ms (pid \([0-9]*\)).*/\1/p' "$T/mcp.err" | tail -n 1)
st=$(cat "/proc/$BAD_PID/status" 2>/dev/null)
like "$st" "^Seccomp:[[:space:]]+2" "the server runs under the module workers' seccomp filter (agentbroker-worker --exec)"
like "$st" "^NoNewPrivs:[[:space:]]+1" "... with no_new_privs"
like "$st" "^CapEff:[[:space:]]+0+$" "... and no capabilities (the host runs as root)"
like "$(tr '\0' '\n' <"/proc/$BAD_PID/environ")" "^PATH=" "the server's environment has PATH"
unlike "$(tr '\0' '\n' <"/proc/$BAD_PID/environ")" "^AB_TEST_GW_MARKER=" "... and nothing else of the host's (only PATH, LANG, TZ, HOME and policy's)"
like "$(cat "$T/mcp.err")" "bad-server: call ok" "the server logs each call it receives"
unlike "$(cat "$T/mcp.err")" "bad-server: call denied" "the denied call never reached the server"
ok "the denied call has its tool-call-deny record" audit_find tool-call-deny "$RUN" 'tool="bad.denied"'
is "$(audit_count 'op=tool-call-begin' "$RUN" 'tool="bad.denied"')" 0 "... and no tool-call-begin"

# --- progress, requests to the client, floods ------------------------------------------------
r=$(request 11 tools/call '{"name":"bad.progress","arguments":{},"_meta":{"progressToken":"p1"}}')
is "$(jq -r '.result.content[0].text' <<<"$r")" progressed "bad.progress answers"
is "$(grep -c '"progressToken":"p1"' "$T/mcp.out")" 3 "its three progress reports reach the client under the client's token"
r=$(request 40 tools/call '{"name":"every.trigger-long-running-operation","arguments":{"duration":1,"steps":3},"_meta":{"progressToken":"lr"}}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "Long running operation completed" "server-everything's long-running operation completes"
is "$(grep -c '"progressToken":"lr"' "$T/mcp.out")" 3 "... its 3 progress reports reach the client (a real server's progress)"
printf '%s\n' '{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"every.trigger-long-running-operation","arguments":{"duration":20,"steps":2}}}' >&"$MCP_IN"
ok "a long call of a real server is under way" \
	wait_for 10 audit_count_is 2 'op=tool-call-begin' "$RUN" 'tool="every.trigger-long-running-operation"'
sleep 0.5
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41}}' >&"$MCP_IN"
ok "... the client cancels it: its call-end says cancelled" \
	audit_find tool-call-end "$RUN" 'tool="every.trigger-long-running-operation"' 'status="cancelled"'
r=$(call 42 every.echo '{"message":"after cancel"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "Echo: after cancel" "... and the server goes on serving"
unlike "$(cat "$T/mcp.out")" '"id":41,' "... with no response for the cancelled call"
r=$(call 12 bad.ask '{}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "asked: -32601" "a server's request to the client (sampling) is refused with -32601"
r=$(call 13 bad.flood '{}')
is "$(jq -r '.result.content[0].text' <<<"$r")" flooded "20000 notifications from a server are absorbed; its call answers"
r=$(call 14 every.echo '{"message":"still here"}')
is "$(jq -r '.result.content[0].text' <<<"$r")" "Echo: still here" "the other servers keep serving"

# --- list_changed ----------------------------------------------------------------------------
r=$(call 15 bad.change '{}')
is "$(jq -r '.result.content[0].text' <<<"$r")" changed "bad.change adds a tool and sends notifications/tools/list_changed"
ok "the host lists the server's tools again" wait_for 10 grep -q "server bad: tool list changed: 11 of its 15 tools served" "$T/mcp.err"
r=$(request 16 tools/list)
like "$(jq -r '[.result.tools[].name] | join(" ")' <<<"$r")" "bad.added bad.ask" "the new allow-listed tool is listed"
r=$(call 17 bad.added '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid" "... and can be called"

# --- failures: crash, hang, garbage, an oversized line ---------------------------------------
r=$(call 20 bad.crash '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "bad.crash failed: .*the bad server failed \(.*\); the host restarts it" \
	"a crash ends the call in flight with a clear error"
ok "the crashed server is restarted (with backoff)" wait_for 30 sh -c "[ \$(grep -c 'server bad ready in' '$T/mcp.err') -ge 2 ]"
r=$(call 21 bad.ok '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid" "after the restart the server answers again"
isnt "$(jq -r '.result.content[0].text' <<<"$r" | sed 's/.*instance //')" "$BAD_INSTANCE" "... from a new process"

r=$(call 22 bad.hang '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "bad.hang did not finish within its time limit of 1500 ms" \
	"a call the server never answers is cut at the tool's timeout"
r=$(call 23 bad.ok '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid" "the server still serves other calls after a timeout"

printf '%s\n' '{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"bad.hang","arguments":{}}}' >&"$MCP_IN"
ok "a call the client cancels is cancelled at the server" \
	wait_for 10 sh -c "[ \$(grep -c 'bad-server: call hang' '$T/mcp.err') -ge 2 ]"
printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":30}}' >&"$MCP_IN"
ok "... the server gets notifications/cancelled for it" wait_for 10 grep -q "bad-server: cancelled [0-9]* (cancelled by the client)" "$T/mcp.err"
r=$(call 31 bad.ok '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid" "... the server goes on serving"
unlike "$(cat "$T/mcp.out")" '"id":30,' "... and the cancelled call gets no response"
ok "... its call-end says cancelled" audit_find tool-call-end "$RUN" 'tool="bad.hang"' 'status="cancelled"'

r=$(call 24 bad.garbage '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "not a JSON-RPC message" "garbage from the server ends the call with a clear error"
ok "the server is restarted after garbage" wait_for 30 sh -c "[ \$(grep -c 'server bad ready in' '$T/mcp.err') -ge 3 ]"
r=$(call 25 bad.ok '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid" "... and answers again"

r=$(call 26 bad.huge '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "longer than the limit" "a 17 MiB line from the server ends the call with a clear error"
ok "the server is restarted after the oversized line" wait_for 30 sh -c "[ \$(grep -c 'server bad ready in' '$T/mcp.err') -ge 4 ]"
r=$(call 27 bad.ok '{}')
like "$(jq -r '.result.content[0].text' <<<"$r")" "ok from pid" "... and answers again"

ok "each start of a server fetches its secrets anew, audited each time (4 starts of bad)" \
	[ "$(audit_count 'op=secret-use' "$RUN" 'sop="env"' 'tool="bad"')" -ge 4 ]
r=$(call 28 locked.ok '{}')
is "$(jq -r .error.code <<<"$r")" -32602 "the locked server's tools are not served"

# --- audit: every call the broker began has its end ------------------------------------------
for t in every.echo every.get-sum fs.read_text_file every.get-env bad.ok bad.progress bad.ask bad.flood \
	bad.crash bad.hang bad.garbage bad.huge; do
	b=$(audit_count 'op=tool-call-begin' "$RUN" "tool=\"$t\"")
	wait_for 10 audit_count_is "$b" 'op=tool-call-end' "$RUN" "tool=\"$t\""
	e=$(audit_count 'op=tool-call-end' "$RUN" "tool=\"$t\"")
	ok "$t: $b tool-call-begin records, as many tool-call-end" [ "$b" -gt 0 -a "$b" -eq "$e" ]
done
is "$(audit_count 'op=tool-call-end' "$RUN" 'tool="bad.crash"' 'status="crashed"')" 1 "the crash's call-end says crashed"
is "$(audit_count 'op=tool-call-end' "$RUN" 'tool="bad.hang"' 'status="timeout"')" 1 "the hang's call-end says timeout"

mcp_stop
is "$MCP_RC" 0 "agentbroker-mcp exits with status 0 at the end of its input"
unlike "$(cat "$T/mcp.err")" "Sanitizer|runtime error" "no sanitizer report from the host"
ok "the servers are stopped with the host" not pgrep -f "$GW/bad-server.mjs"

# --- the official SDK client, over stdio and over Streamable HTTP ----------------------------
CALLS='[{"name":"every.echo","arguments":{"message":"from the sdk"}},{"name":"fs.read_text_file","arguments":{"path":"'$T/data/small.txt'"}},{"name":"every.get-env"}]'
out=$(cd "$GW" && AGENTBROKER_WORKER=$WORKER timeout 120 node sdk-client.mjs --calls "$CALLS" -- "$MCP" --broker "$SOCK" \
	--modules "$T/modules" 2>"$T/sdk.err")
like "$(jq -r '.tools | join(" ")' <<<"$out")" "every.echo .*fs.read_text_file" "the SDK client over stdio lists the servers' tools"
is "$(jq -r '.results[0].content[0].text' <<<"$out")" "Echo: from the sdk" "the SDK client over stdio calls every.echo"
is "$(jq -r '.results[1].content[0].text' <<<"$out")" "hello from the data directory" "... and fs.read_text_file"
like "$(jq -r '.results[2].content[0].text' <<<"$out")" 'REDACTED:API_KEY' "... and gets the secret redacted"

PORT=$((20000 + RANDOM % 20000))
AGENTBROKER_WORKER=$WORKER "$ABS_TOP_BUILDDIR/agentbroker-mcp" --broker "$SOCK" --modules "$T/modules" \
	--http "127.0.0.1:$PORT" --insecure-no-auth >"$T/http.out" 2>"$T/mcp.err" &
MCP_PID=$!
add_cleanup sh -c "kill $MCP_PID 2>/dev/null"
wait_for 30 grep -q "serving MCP over Streamable HTTP" "$T/mcp.err" || bail_out "agentbroker-mcp --http did not start"
out=$(cd "$GW" && timeout 120 node sdk-client.mjs --url "http://127.0.0.1:$PORT/mcp" --calls "$CALLS" 2>"$T/sdk.err")
is "$(jq -r '.results[0].content[0].text' <<<"$out")" "Echo: from the sdk" "the SDK client over HTTP calls every.echo"
is "$(jq -r '.results[1].content[0].text' <<<"$out")" "hello from the data directory" "... and fs.read_text_file"
like "$(jq -r '.results[2].content[0].text' <<<"$out")" 'REDACTED:API_KEY' "... and gets the secret redacted"
HRUN=$(sed -n 's/.*info: run \([^ ]*\).*/\1/p' "$T/mcp.err" | head -n 1)
wait_for 10 audit_count_is 1 'op=tool-call-end' "$HRUN" 'tool="every.get-env"'
is "$(audit_count 'op=tool-call-begin' "$HRUN")" 3 "the HTTP calls have 3 tool-call-begin records"
is "$(audit_count 'op=tool-call-end' "$HRUN")" 3 "... and 3 tool-call-end records"
stop_mcp_http

# --- the run's sandbox: a server sees only the profile's mounts -------------------------------
printf 'not for the servers\n' >"$T/outside.txt"
MCP_EXTRA=(--profile gw)
mcp_start
MCP_EXTRA=()
mcp_init gateway-sandbox
r=$(call 80 probe.probe '{}')
is "$(jq -r '.result.content[0].text' <<<"$r")" \
	"$D/small.txt=readable $T/outside.txt=ENOENT /etc/passwd=ENOENT $T/policy.yaml=ENOENT" \
	"a server in a profile's run sees the profile's mounts and nothing else of the host's files"
PROBE_PID=$(pgrep -f "$D/bad-server.mjs" | head -n 1)
isnt "$(readlink "/proc/$PROBE_PID/ns/pid")" "$(readlink /proc/self/ns/pid)" "... in a pid namespace of its own"
isnt "$(readlink "/proc/$PROBE_PID/ns/net")" "$(readlink /proc/self/ns/net)" "... and the run's network namespace"
mcp_stop
is "$MCP_RC" 0 "the profile's host exits with status 0"
done_testing
