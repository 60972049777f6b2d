#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Argument constraints on paths (issue 10, finding 5): `pattern: "^<root>/public/"` is textual,
# so "<root>/public/../private.txt" matched it and fs.read_file read the private file (the fs
# module's own root is the whole tree). `beneath:` normalises the path first (absolute, "//" and
# "." dropped, ".." refused) and then compares: the same call is denied with args-constraint
# and a tool-call-deny record, while paths inside still work.
. "$(dirname "$0")/lib.sh"

MODDIR=$ABS_TOP_BUILDDIR/modules/.libs

require_root
require_services
require_tools jq
require_built "$MCP" "$WORKER"
[ -f "$MODDIR/fs.so" ] || unmet "$MODDIR/fs.so is not built"

setup_testdir
mkdir -m 0755 "$T/modules" "$T/root" "$T/root/public"
install -m 0755 "$MODDIR/fs.so" "$T/modules/"
echo "public text" >"$T/root/public/ok.txt"
echo "private text" >"$T/root/private.txt"

# run_with CONSTRAINT: a broker and host whose fs.* rule constrains path with CONSTRAINT;
# reads ../private.txt through public/ and public/ok.txt; writes both [isError, text] to
# $T/out, one a line. (Not in a subshell: the host's coprocess descriptors would be lost.)
run_with() {
	cat >"$T/policy.yaml" <<POLICY
tools:
  - match: "fs.*"
    args:
      path: $1
modules:
  fs: { roots: [$T/root] }
clients: { uids: [0] }
POLICY
	start_broker "$T/policy.yaml"
	mcp_start
	request 0 initialize '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"args-beneath.sh","version":"1"}}' >/dev/null
	printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$MCP_IN"
	local r1 r2
	r1=$(call 1 fs.read_file "{\"path\":\"$T/root/public/../private.txt\"}")
	r2=$(call 2 fs.read_file "{\"path\":\"$T/root//public/./ok.txt\"}")
	jq -c '[.result.isError, .result.content[0].text]' <<<"$r1" >"$T/out"
	jq -c '[.result.isError, .result.content[0].text]' <<<"$r2" >>"$T/out"
	mcp_stop
	stop_broker
}

run_with "{ pattern: \"^$T/root/public/\" }"
out=$(cat "$T/out")
like "$(sed -n 1p <<<"$out")" "private text" "pattern: the textual match lets public/../private.txt through (the attack)"

run_with "{ beneath: $T/root/public }"
out=$(cat "$T/out")
like "$(sed -n 1p <<<"$out")" "^\[true,.*not an absolute path \(without '..'\) beneath the rule's directories" \
	"beneath: public/../private.txt is denied"
unlike "$out" "private text" "and nothing of the private file comes back"
like "$(sed -n 2p <<<"$out")" "public text" "beneath: a path inside (with // and .) is read"
ok "the denial is audited (tool-call-deny, args-constraint)" \
	wait_for 10 _audit_has op=tool-call-deny 'reason="args-constraint"'
done_testing
