#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The tunnel's dial deadlines (docs/tunnel.md): tests/tunnel/deadlines.test.mjs with the set-up
# of run.sh (broker, certificates, node_modules). TAP.
TUNNEL_TEST=deadlines.test.mjs exec bash "${ABS_TOP_SRCDIR:-$(dirname "$0")/../..}/tests/tunnel/run.sh"
