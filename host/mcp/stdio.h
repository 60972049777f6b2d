/* SPDX-License-Identifier: MIT */
/* The MCP stdio transport: newline-delimited JSON-RPC messages read from one descriptor
 * (stdin) and written to another (stdout), on the sd-event loop, never blocking it.
 *
 * Input is split on '\n' (a trailing '\r' is JSON whitespace); a line longer than
 * MCP_LINE_MAX is answered with an RPC_INVALID_REQUEST error (with its id when its first 64 KiB show it, else
 * null; host/mcp/idpeek.h) and skipped up to its newline.
 * Output goes through a queue written as the peer reads; input is paused while more than
 * MCP_STDIO_QUEUE_HIGH bytes wait, and a queue past MCP_STDIO_QUEUE_MAX (a peer that does not
 * read) ends the session with an error. At end of input the session waits for the calls in
 * flight (cancelling them after MCP_STDIO_EOF_GRACE_MS), flushes its output and exits the
 * event loop with status 0. A write error (EPIPE: the peer is gone) exits it with status 1. */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>

#include "host/mcp/server.h"

#define MCP_STDIO_QUEUE_MAX (64u * 1024 * 1024)
#define MCP_STDIO_QUEUE_HIGH (16u * 1024 * 1024)
#define MCP_STDIO_QUEUE_LOW (4u * 1024 * 1024)
#define MCP_STDIO_EOF_GRACE_MS 10000

struct mcp_stdio;

/* The transport ops for mcp_server_new(), with the struct mcp_stdio as userdata. */
extern const struct mcp_transport_ops mcp_stdio_ops;

/* Set up the transport on in_fd and out_fd (made non-blocking; their flags are restored by
 * mcp_stdio_free). Nothing is read before mcp_stdio_start(). Returns 0 or -errno. */
int mcp_stdio_new(sd_event *event, int in_fd, int out_fd, struct mcp_stdio **ret);
/* Start reading: every message goes to server. Returns 0 or -errno. */
int mcp_stdio_start(struct mcp_stdio *t, struct mcp_server *server);
/* Stop reading and drop the server (before it is freed). Output still queued stays queued. */
void mcp_stdio_detach(struct mcp_stdio *t);
/* Write what is queued, waiting up to timeout_ms (for the end of the program). Returns 0,
 * -ETIMEDOUT or -errno. */
int mcp_stdio_flush(struct mcp_stdio *t, int timeout_ms);
/* Free (restores the descriptors' flags; does not close them). Accepts NULL. */
void mcp_stdio_free(struct mcp_stdio *t);
