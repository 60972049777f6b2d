/* SPDX-License-Identifier: MIT */
/* Fuzz target: the MCP core's message intake (host/mcp/server.c, host/mcp/calls.c): each input line is
 * one message from the client, in one session (so the 2025-11-25 lifecycle, initialize,
 * initialized, ping, logging/setLevel, tools/list, tools/call, cancellations, and the
 * stateless 2026-07-28 requests with _meta all meet the session's state). Every message the
 * host sends must be valid UTF-8 JSON-RPC 2.0 (fuzz_host_check_sent). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/mcp/server.h"
#include "tests/fuzz/mcp_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
sent(void *userdata, const char *json, size_t len)
{
        (void)userdata;
        fuzz_host_check_sent(json, len);
        return 0;
}

static const struct mcp_transport_ops ops = { .send = sent };

static void
receive(const char *line, size_t len, void *arg)
{
        (void)mcp_server_receive(arg, line, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_host *h = fuzz_host_get();
        struct mcp_config cfg = {
                .registry = h->registry, .broker = h->broker, .run = "fuzz-run", .page_size = 2
        };
        struct mcp_server *s = NULL;

        if (mcp_server_new(h->event, &cfg, &ops, NULL, &s) < 0)
                abort();
        fuzz_host_lines(data, size, receive, s);
        while (sd_event_run(h->event, 0) > 0)
                ;
        mcp_server_free(s);
        return 0;
}
