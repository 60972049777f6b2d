#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/ci-no-skip.sh — the LOG_COMPILER of every test `make check` runs (Makefile.am):
#
#   tests/ci-no-skip.sh TEST [ARGS...]
#
# Runs TEST. Outside CI (CI is not "true") that is all it does. Under CI=true every test
# must really run, so the TEST's TAP output is rewritten on its way to automake's TAP
# driver: a skipped test ("ok N - ... # SKIP why", cmocka's skip() included), a test file
# skipped as a whole ("1..0 # SKIP why") and an expected failure ("not ok N - ... # TODO
# why", an XFAIL) become failures ("not ok"), with the reason kept in the description.
# tests/integration/lib.sh already fails instead of skipping under CI=true; this covers the
# unit tests (cmocka), the fuzz replays, the node suites and any other TAP producer.
# The exit status is TEST's.
[ "${CI:-}" = true ] || exec "$@"
set -o pipefail
"$@" | awk '
	# rewrite(LINE, AT): LINE with its directive (from the "#" at AT) turned into text.
	function rewrite(line, at, directive) {
		directive = substr(line, at + 1)
		sub(/^[ \t]*/, "", directive)
		line = substr(line, 1, at - 1)
		sub(/[ \t]+$/, "", line)
		sub(/^ok/, "not ok", line)
		return line " [under CI=true this counts as a failure: " directive "]"
	}
	{
		u = toupper($0)
		if (u ~ /^1\.\.0([ \t]|$)/ && u ~ /#[ \t]*SKIP/) {
			print "1..1"
			print "not ok 1 - the whole test was skipped, which under CI=true counts as a failure:" substr($0, index($0, "#") + 1)
		} else if (u ~ /^(NOT )?OK/ && match(u, /[^\\]#[ \t]*(SKIP|TODO)/)) {
			print rewrite($0, RSTART + 1)
		} else {
			print
		}
		fflush()
	}'
