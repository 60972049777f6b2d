#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The documentation says what the code does. Both sides are derived, never listed here, so
# that an option, command, audit operation or policy section added later is checked too:
#  - every long option in each program's --help (and, for agentbrokerctl, in the help of each
#    of its commands) is in the program's manual page;
#  - every command and subcommand agentbrokerctl --help lists has an entry in agentbrokerctl(1);
#  - the audit operations the code writes (event_ops in audit/audit_log.c) are exactly those
#    of the Events table of docs/audit.md, of the MESSAGE_ID table there and of the list in
#    agentbrokerd(8) (between its `.\" audit-ops-begin` and `.\" audit-ops-end` comments),
#    and each MESSAGE_ID has an entry in the journal catalog (systemd/agentbroker.catalog);
#  - every top-level policy key the loader accepts (top_keys in policy/policy_load.c) has a
#    section in agentbroker-policy(5) and in docs/policy.md;
#  - docs/architecture.md names no file outside the project, and its layout table has a row
#    for every top-level folder of the sources Makefile.am builds.
# Needs no root and no service: run at package build time too (make check-build-time).
. "$(dirname "$0")/../integration/lib.sh"

SRC=$ABS_TOP_SRCDIR
require_built "$ABS_TOP_BUILDDIR/agentbrokerd" "$ABS_TOP_BUILDDIR/agentbrokerctl" "$ABS_TOP_BUILDDIR/agentbroker-mcp"

# long_options: the --options in standard input, sorted and unique (roff's \- read as -).
long_options() { sed 's/\\-/-/g' | grep -oE -- '--[a-z][a-z0-9]*(-[a-z0-9]+)*' | sort -u; }
# missing WANT HAVE: the lines of WANT that are not in HAVE (both sorted), space-separated.
missing() { comm -23 <(sort -u <<<"$1") <(sort -u <<<"$2") | tr '\n' ' ' | sed 's/ $//'; }

# --- options: --help against the manual page -----------------------------------------------------
check_options() {
	local prog=$1 man=$2 help=$3 want have
	want=$(long_options <<<"$help")
	have=$(long_options <"$SRC/man/$man")
	ok "$prog --help lists options ($(wc -w <<<"$want"))" test -n "$want"
	is "$(missing "$want" "$have")" "" "every option of $prog --help is in $man"
}
check_options agentbrokerd agentbrokerd.8 "$("$ABS_TOP_BUILDDIR/agentbrokerd" --help)"
check_options agentbroker-mcp agentbroker-mcp.1 "$("$ABS_TOP_BUILDDIR/agentbroker-mcp" --help)"

CTL_HELP=$("$ABS_TOP_BUILDDIR/agentbrokerctl" --help)
# The commands: the lines of the Commands: block, "  NAME [SUB] ..." (SUB: a lower-case word).
commands=$(sed -n '/^Commands:/,/^$/p' <<<"$CTL_HELP" | sed -n 's/^  \([a-z][a-z-]*\)\( [a-z][a-z-]*\)\{0,1\}.*/\1\2/p')
ok "agentbrokerctl --help lists commands ($(wc -l <<<"$commands"))" test "$(wc -l <<<"$commands")" -ge 5
all_help=$CTL_HELP
while read -r cmd sub; do
	all_help+=$'\n'$("$ABS_TOP_BUILDDIR/agentbrokerctl" help "$cmd")
	# An entry: a .B/.BR line that starts with the command (and subcommand), quoted or not.
	pat="^\\.BR? +\"?$(sed 's/-/\\\\-/g' <<<"$cmd${sub:+ $sub}")(\"| |$)"
	ok "agentbrokerctl(1) has an entry for '$cmd${sub:+ $sub}'" grep -qE "$pat" "$SRC/man/agentbrokerctl.1"
done <<<"$commands"
check_options "agentbrokerctl (and each command's help)" agentbrokerctl.1 "$all_help"

# --- audit operations ---------------------------------------------------------------------------------
code_ops=$(sed -n '/event_ops\[_AB_EV_MAX\] = {/,/^};/p' "$SRC/audit/audit_log.c" |
	sed -n 's/.*\[AB_EV_[A-Z0-9_]*\] *= *"\([a-z0-9-]*\)".*/\1/p' | sort)
ok "the code's audit operations are found ($(wc -l <<<"$code_ops"))" test "$(wc -l <<<"$code_ops")" -ge 8
events=$(sed -n '/^## Events/,/^## /p' "$SRC/docs/audit.md" | sed -n 's/^| `\([a-z0-9-]*\)` |.*/\1/p' | sort)
is "$(missing "$code_ops" "$events")" "" "docs/audit.md's Events table has every operation the code writes"
is "$(missing "$events" "$code_ops")" "" "... and none the code does not write"
ids=$(sed -n '/^| event | `MESSAGE_ID` |/,/^$/p' "$SRC/docs/audit.md" | sed -n 's/^| `\([a-z0-9-]*\)` | `[0-9a-f]\{32\}` |$/\1/p' | sort)
is "$(missing "$code_ops" "$ids")" "" "docs/audit.md's MESSAGE_ID table has every operation"
is "$(missing "$ids" "$code_ops")" "" "... and none other"
man_ops=$(sed -n '/^\.\\" audit-ops-begin/,/^\.\\" audit-ops-end/p' "$SRC/man/agentbrokerd.8" | sed 's/\\-/-/g' |
	grep -v '^\.\\"' | grep -oE '[a-z]+(-[a-z]+)+|[a-z]+' | grep -vxE 'and|or' | sort -u)
is "$(missing "$code_ops" "$man_ops")" "" "agentbrokerd(8) lists every audit operation"
is "$(missing "$man_ops" "$code_ops")" "" "... and none other"
code_ids=$(sed -n '/event_message_ids\[_AB_EV_MAX\] = {/,/^};/p' "$SRC/audit/audit_log.c" | grep -oE '[0-9a-f]{32}' | sort)
catalog_ids=$(sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$SRC/systemd/agentbroker.catalog" | sort)
is "$(wc -l <<<"$code_ids")" "$(wc -l <<<"$code_ops")" "the code has a MESSAGE_ID per operation"
is "$(missing "$code_ids" "$catalog_ids")" "" "the journal catalog explains every MESSAGE_ID the code writes"

# --- policy sections --------------------------------------------------------------------------------------
keys=$(sed -n '/^static const struct keydef top_keys\[\] = {/,/^};/p' "$SRC/policy/policy_load.c" |
	grep -oE '\{ *"[a-z_]+", *section_' | sed 's/.*"\([a-z_]*\)".*/\1/')
ok "the policy loader's top-level keys are found ($(wc -l <<<"$keys"))" test "$(wc -l <<<"$keys")" -ge 5
for k in $keys; do
	ok "agentbroker-policy(5) has a section for '$k:'" grep -qxE "\\.SS \"?$k\"?" "$SRC/man/agentbroker-policy.5"
	ok "docs/policy.md has a section for '$k:'" grep -qxE "## \`$k\`.*" "$SRC/docs/policy.md"
done

# --- docs/architecture.md ------------------------------------------------------------------------------------
unlike "$(cat "$SRC/docs/architecture.md")" '/work/|/home/|/tmp/' "docs/architecture.md names no file outside the project"
# The folders of the sources the build names (Makefile.am: .c and .h files).
for d in $(grep -oE '(^|[[:space:]=])[a-z]+/[A-Za-z0-9_./@-]+\.[ch]([[:space:]]|$)' "$SRC/Makefile.am" |
	sed -E 's/^[[:space:]=]*//; s|/.*||' | sort -u); do
	ok "docs/architecture.md's layout table has a row for $d/" grep -qE "^\| \`$d/\` \|" "$SRC/docs/architecture.md"
done

done_testing
