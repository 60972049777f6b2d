/* SPDX-License-Identifier: MIT */
/* The host's failure mode (host/mcp/failmode.c): answer every MCP request with an error that
 * names why the host cannot serve tools, instead of exiting before `initialize`. */
#pragma once

#include <stddef.h>

/* Say why the broker refused run-open (reason: its reason code, may be NULL) in buf. */
void mcp_fail_describe_run_open(const char *reason, char *buf, size_t size);

/* Read newline-delimited JSON-RPC from in_fd until its end and answer each request (a message
 * with an id) on out_fd with the error {code RPC_SERVER_NOT_READY, message cause}; notifications get no
 * answer, over-long lines (4 MiB) are skipped. Blocking. Returns 0 at the end of the input,
 * -EIO when the output fails, -ENOMEM. */
int mcp_fail_serve(int in_fd, int out_fd, const char *cause);
