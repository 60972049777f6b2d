#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/abi/check-symbols.sh — libagentbroker-module exports exactly its public API (TAP).
#
# The functions declared in include/agentbroker/module.h are the public API: each must be
# exported, in the version node AGENTBROKER_MODULE_1.0 (or AGENTBROKER_MODULE_1.1 for the functions
# added in ABI 1.1: abm_call_connect, abm_call_http, abm_call_tool), as a function. The worker's entry
# point abm__worker_main is the only other export, in AGENTBROKER_MODULE_PRIVATE. Nothing else
# is: not the internals the library is built from (common/, modules/lib/), nor the libraries
# it links (cJSON). Every shipped module (modules/.libs/*.so) exports only its descriptor.
set -u

top_srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${ABS_TOP_BUILDDIR:-$top_srcdir}
LIB=$top_builddir/.libs/libagentbroker-module.so
HDR=$top_srcdir/include/agentbroker/module.h
PUBLIC_NODE=AGENTBROKER_MODULE_1.0
MINOR_NODE=AGENTBROKER_MODULE_1.1
MINOR_API="abm_call_connect abm_call_http abm_call_tool"
PRIVATE_NODE=AGENTBROKER_MODULE_PRIVATE

n=0
ok() { # ok GOOD DESCRIPTION [DIAGNOSTIC...]
	local good=$1 desc=$2
	shift 2
	n=$((n + 1))
	if [ "$good" -eq 1 ]; then
		echo "ok $n - $desc"
	else
		echo "not ok $n - $desc"
		[ $# -eq 0 ] || printf '# %s\n' "$@"
	fi
}
check() { # check DESCRIPTION COMMAND...: ok when the command succeeds
	local desc=$1
	shift
	if "$@"; then ok 1 "$desc"; else ok 0 "$desc"; fi
}

if ! command -v nm >/dev/null || ! command -v readelf >/dev/null; then
	echo "1..0 # SKIP nm and readelf (binutils) are needed"
	exit 0
fi
if [ ! -f "$LIB" ]; then
	echo "1..0 # SKIP $LIB is not built"
	exit 0
fi

# The API: every function declared at the start of a line of the header, e.g.
#   int abm_call_text(struct abm_call *call, ...
#   const struct abm_json *abm_call_args(const struct abm_call *call);
api=$(sed -nE 's/^[a-z][^(]*[ *](abm_[a-z0-9_]+)\(.*/\1/p' "$HDR" | sort -u)
# What the library exports: "name@@NODE TYPE" for each defined dynamic symbol.
exports=$(nm -D --defined-only --with-symbol-versions "$LIB" | awk '{ print $3, $2 }' | sort)
public=$(awk -v node="$PUBLIC_NODE" '$1 ~ "@@" node "$" { sub(/@@.*/, "", $1); print $1 }' <<<"$exports" | sort)
minor=$(awk -v node="$MINOR_NODE" '$1 ~ "@@" node "$" { sub(/@@.*/, "", $1); print $1 }' <<<"$exports" | sort)
api_minor=$(tr ' ' '\n' <<<"$MINOR_API" | sort)
api=$(comm -23 <(echo "$api") <(echo "$api_minor"))
private=$(awk -v node="$PRIVATE_NODE" '$1 ~ "@@" node "$" { sub(/@@.*/, "", $1); print $1 }' <<<"$exports" | sort)
others=$(awk -v a="$PUBLIC_NODE" -v b="$PRIVATE_NODE" -v c="$MINOR_NODE" \
	'$1 != a && $1 != b && $1 != c && $1 !~ ("@@" a "$") && $1 !~ ("@@" b "$") && $1 !~ ("@@" c "$")' <<<"$exports")
functions=$(awk '$2 != "T" && $2 != "A"' <<<"$exports")

echo "1..11"
count=$(wc -w <<<"$api")
check "the header declares the API ($count functions)" test "$count" -ge 20
ok "$([ "$public" = "$api" ] && echo 1 || echo 0)" \
	"exported in $PUBLIC_NODE: exactly the functions of module.h" \
	"missing: $(comm -23 <(echo "$api") <(echo "$public") | tr '\n' ' ')" \
	"extra: $(comm -13 <(echo "$api") <(echo "$public") | tr '\n' ' ')"
ok "$([ "$minor" = "$api_minor" ] && echo 1 || echo 0)" \
	"exported in $MINOR_NODE: exactly the functions added in ABI 1.1 ($MINOR_API)" "got: $(tr '\n' ' ' <<<"$minor")"
ok "$([ "$private" = "abm__worker_main" ] && echo 1 || echo 0)" \
	"exported in $PRIVATE_NODE: only abm__worker_main" "got: $(tr '\n' ' ' <<<"$private")"
ok "$([ -z "$others" ] && echo 1 || echo 0)" "nothing else is exported (no unversioned symbol, no other node)" \
	"$others"
ok "$([ -z "$functions" ] && echo 1 || echo 0)" "every export is a function" "$functions"
internals=
for s in ab_wire_decode ab_frame_read ab_client_connect ab_secbuf_new ab_log abmi_call_new abmi_current \
	cJSON_Parse cJSON_Delete; do
	if nm -D --defined-only "$LIB" | awk '{ sub(/@.*/, "", $3); print $3 }' | grep -qx "$s"; then
		internals="$internals $s"
	fi
done
ok "$([ -z "$internals" ] && echo 1 || echo 0)" "internals (ab_wire_decode, ab_frame_read, abmi_*, cJSON_*) are not exported" \
	"exported:$internals"
check "the version nodes are defined" bash -c "readelf -V '$LIB' | grep -q 'Name: $PUBLIC_NODE' && readelf -V '$LIB' | grep -q 'Name: $PRIVATE_NODE' && readelf -V '$LIB' | grep -q 'Name: $MINOR_NODE'"
check "the soname is libagentbroker-module.so.1 (ABI major 1; package libagentbroker-module1)" bash -c "readelf -d '$LIB' | grep -q 'SONAME.*\\[libagentbroker-module.so.1\\]'"
check "the library is linked with BIND_NOW (-z now)" bash -c "readelf -d '$LIB' | grep -Eq 'BIND_NOW|FLAGS_1.*NOW'"

# Shipped modules: only the descriptor is exported (they are built with -fvisibility=hidden).
bad=
for so in "$top_builddir"/modules/.libs/*.so; do
	[ -e "$so" ] || continue
	syms=$(nm -D --defined-only "$so" | awk '{ print $3 }' | grep -v -E '^__(odr_)?asan' | tr '\n' ' ')   # sanitizer builds add __odr_asan.* aliases
	[ "$syms" = "agentbroker_module " ] || bad="$bad $(basename "$so"): $syms;"
done
ok "$([ -z "$bad" ] && echo 1 || echo 0)" "every module in modules/.libs exports only agentbroker_module" "$bad"
exit 0
