/* SPDX-License-Identifier: MIT */
/* The MCP tunnel transport (docs/tunnel.md): agentbroker-mcp dials out to a control plane
 * over WebSocket + TLS (libwebsockets, subprotocol "mcp", one JSON-RPC message per text
 * message) and serves MCP on that connection; it reconnects with full-jitter backoff under a
 * stable session id, and a call never runs twice: calls are keyed (the control plane's
 * io.agentbroker/idempotencyKey in _meta, else session id + request id); a re-sent call joins
 * the running one or gets the recorded result, and results are kept in a bounded checkpoint
 * file (0600) so a restarted host answers re-sent calls of its run.
 *
 * Debian's libwebsockets 4.1.6 is built without LWS_WITH_EXTERNAL_POLL, so lws runs in a
 * thread of its own and talks to the sd-event thread through two locked queues, an eventfd
 * (lws -> sd-event) and lws_cancel_service() (sd-event -> lws). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "host/brokerc/brokerc.h"
#include "host/mcp/server.h"

#define MCP_TUNNEL_META_KEY "io.agentbroker/idempotencyKey"
#define MCP_TUNNEL_KEY_MAX 256       /* bytes of an idempotency key */
#define MCP_TUNNEL_CHUNK (64 * 1024) /* a large message goes out in frames of this size */

struct mcp_tunnel_config {
        const char *url;         /* wss://HOST[:PORT]/PATH (ws:// only to loopback with allow_plain) */
        const char *ca_file;     /* PEM CA bundle the control plane's certificate must chain to;
                                              * NULL: the system's */
        const char *pin_sha256;  /* SHA-256 of the certificate (DER), hex, ':' allowed; or NULL */
        bool allow_plain;        /* accept ws:// to a loopback address */
        unsigned ping_ms;        /* 0: 15000 */
        unsigned backoff_min_ms; /* 0: 1000 */
        unsigned backoff_max_ms; /* 0: 30000 */
        unsigned healthy_ms;     /* backoff resets after this long connected; 0: 30000 */
        /* Deadlines of a dial's stages (docs/tunnel.md); a dial that misses one is dropped and
         * counts as failed. 0: 10000 each. */
        unsigned connect_timeout_ms;       /* TCP connect */
        unsigned tls_timeout_ms;           /* TLS handshake, from the TCP connection */
        unsigned upgrade_timeout_ms;       /* the answer to the WebSocket upgrade request */
        unsigned first_message_timeout_ms; /* the control plane's first MCP message after the 101 */
        const char *session;               /* the session id; NULL: from the checkpoint, else new */
        const char *checkpoint;            /* checkpoint file, or NULL for none */
        size_t store_max_entries;          /* 0: 4096 */
        size_t store_max_bytes;            /* 0: 64 MiB */
        struct hb_broker *broker;          /* for identity-jwt and tunnel-event */
        const char *run;
};

struct mcp_tunnel;

/* The transport ops for mcp_server_new(), with the struct mcp_tunnel as userdata. */
extern const struct mcp_transport_ops mcp_tunnel_ops;

/* Check the configuration, load the checkpoint, set up libwebsockets and its thread. Nothing
 * is dialled before mcp_tunnel_start(). Returns 0, -EINVAL (with a logged reason) or -errno. */
int mcp_tunnel_new(sd_event *event, const struct mcp_tunnel_config *cfg, struct mcp_tunnel **ret);
/* Start dialling; every message goes to server. Returns 0 or -errno. */
int mcp_tunnel_start(struct mcp_tunnel *t, struct mcp_server *server);
/* Hand text to the message handler as if the control plane had sent it, with server attached
 * and nothing dialled: what it answers stays queued for a connection (tests/fuzz/fuzz_tunnel.c). */
void mcp_tunnel_inject(struct mcp_tunnel *t, struct mcp_server *server, const char *text, size_t len);
/* Delete the checkpoint file path and its temporary file (path.tmp); absent files are fine.
 * Returns 0 or -errno (the first failure). */
int mcp_tunnel_checkpoint_delete(const char *path);

/* Stop: close the connection (audited as "shutdown"), drop the server, write the checkpoint. */
void mcp_tunnel_detach(struct mcp_tunnel *t);
/* Free (stops the lws thread). Accepts NULL. */
void mcp_tunnel_free(struct mcp_tunnel *t);
