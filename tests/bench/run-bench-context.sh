#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/bench/run-bench-context.sh — what the tasks an agent does most cost in tool results
# (issue 14): the fs module behind agentbroker-mcp and the reference filesystem server
# (@modelcontextprotocol/server-filesystem, pinned by tests/package-lock.json; scripts/setup
# installs it with npm ci), both driven by the official SDK client (tests/node_modules)
# on the same deterministic corpus, which bench_context.mjs generates in a temporary directory:
#   src/          10,000 files: 10 folders x 10 folders x 100 files, plus small/ (20 files)
#   logs/app.log  5 MiB of INFO/DEBUG/WARN lines with 20 ERROR lines
#   data/issues.json  a 40 KB JSON array of 30 issue objects
#   data/table.csv    a 2 MB CSV
# For each task and server it prints the calls made, the result bytes (each result as the
# client got it, serialized: content and structuredContent), the text bytes (the content blocks'
# text alone) and the bytes of the bare answer, the ratio reference/ours, and whether our
# result meets the issue's target. Exit status: 0 all targets met, 3 a target missed, 1 failed,
# 77 when not root (the broker writes audit records).
#
# Starts auditd and journald (scripts/start-services), writes a temporary policy allowing fs.*
# (max_result_bytes 1 MiB, as policy/default.yaml) with the corpus as the fs root, and starts
# agentbrokerd from the build directory on a temporary socket.
# Environment: ABS_TOP_SRCDIR, ABS_TOP_BUILDDIR (default: this script's tree and the current
# directory). Arguments go to bench_context.mjs (--keep-corpus DIR keeps the corpus there).
set -euo pipefail

srcdir=${ABS_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ABS_TOP_BUILDDIR:-$PWD}
builddir=$(cd "$builddir" && pwd)
BENCH_NAME=run-bench-context
. "$srcdir/tests/bench/lib.sh"
. "$srcdir/tests/bench/lib-mcp.sh"

bench_require_root "audit records, journald"
bench_find_host
bench_require_node_sdk @modelcontextprotocol/server-filesystem
fs_so=$builddir/modules/.libs/fs.so
[ -f "$fs_so" ] || die "$fs_so not found: build first (make)"
ref=$srcdir/tests/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js

bench_start_services
bench_watch_audit
bench_tmpdir
mkdir -m 0755 "$tmp/modules" "$tmp/corpus"
install -m 0644 "$fs_so" "$tmp/modules/fs.so"
cat >"$tmp/policy.yaml" <<EOF
# agentbroker benchmark policy (written by tests/bench/$BENCH_NAME.sh)
tools:
  - match: "fs.*"
    max_result_bytes: 1048576
modules:
  fs:
    roots: [$tmp/corpus]
    # structured_output: false, the default: fs.list_dir answers with its compact text alone
runs:
  max_calls: 0
  max_duration_s: 0
clients:
  uids: [0]
EOF
bench_start_broker "$tmp/policy.yaml"
say "agentbrokerd running (pid $broker_pid); host $host; worker $worker; reference server $ref"

bench_js_dir bench_context.mjs bench_util.mjs
export AB_MCP=$host AB_MCP_LIBPATH=$host_libpath AB_WORKER=$worker AB_SOCK=$sock AB_MODULES=$tmp/modules
export AB_CORPUS=$tmp/corpus AB_REF_SERVER=$ref
set +e
node "$tmp/js/bench_context.mjs" "$@"
status=$?
set -e
bench_stop_broker
exit "$status"
