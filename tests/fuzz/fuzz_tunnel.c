/* SPDX-License-Identifier: MIT */
/* Fuzz target: the tunnel's message handling (host/net/tunnel/tunnel.c): each input line is one text
 * message from the control plane, handed to the tunnel's handler (mcp_tunnel_inject) with an
 * MCP core behind it, as over a connection: ids mapped to internal ones and back, idempotency
 * keys and the call store, cancellations by the control plane's ids. Nothing is dialled;
 * what the tunnel would send stays queued. One tunnel per process (setting up libwebsockets
 * takes about 0.2 s), with a small store (16 calls, 64 KiB) that inputs share; a server per
 * input. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "host/mcp/server.h"
#include "host/net/tunnel/tunnel.h"
#include "tests/fuzz/mcp_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct target {
        struct mcp_tunnel *t;
        struct mcp_server *s;
};

static void
receive(const char *line, size_t len, void *arg)
{
        struct target *x = arg;

        mcp_tunnel_inject(x->t, x->s, line, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct mcp_tunnel *tunnel;
        struct fuzz_host *h = fuzz_host_get();
        struct mcp_tunnel_config tcfg = {
                .url = "ws://127.0.0.1:9/fuzz",
                .allow_plain = true,
                .session = "fuzz-session",
                .store_max_entries = 16,
                .store_max_bytes = 64 * 1024,
                .broker = h->broker,
                .run = "fuzz-run",
        };
        struct mcp_config cfg = {
                .registry = h->registry, .broker = h->broker, .run = "fuzz-run", .page_size = 2
        };
        struct target x = { NULL, NULL };

        if (!tunnel && mcp_tunnel_new(h->event, &tcfg, &tunnel) < 0)
                abort();
        x.t = tunnel;
        if (mcp_server_new(h->event, &cfg, &mcp_tunnel_ops, x.t, &x.s) < 0)
                abort();
        fuzz_host_lines(data, size, receive, &x);
        while (sd_event_run(h->event, 0) > 0)
                ;
        mcp_server_free(x.s);
        return 0;
}
