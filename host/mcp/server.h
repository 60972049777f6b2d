/* SPDX-License-Identifier: MIT */
/* The MCP server core, independent of the transport: JSON-RPC 2.0 framing and errors, the
 * 2025-11-25 lifecycle (initialize, initialized, ping, logging/setLevel, cancellation) and the
 * 2026-07-28 stateless lifecycle (server/discover, per-request _meta), chosen per request as
 * the 2026-07-28 specification describes for dual-era servers; tools/list with cursors and
 * tools/call through the call pipeline (schema, broker, worker, shaping, audit).
 * docs/mcp.md says what is supported. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "host/brokerc/brokerc.h"
#include "host/workers/workers.h"

#define MCP_LINE_MAX (4 * 1024 * 1024) /* largest incoming message */
/* The refusal of a larger message (a fixed text: the transports send it where memory may be short). */
#define MCP_OVERSIZE_MESSAGE "Invalid Request: the message is larger than 4194304 bytes"
_Static_assert(MCP_LINE_MAX == 4194304, "MCP_OVERSIZE_MESSAGE names MCP_LINE_MAX");
#define MCP_INFLIGHT_MAX 256 /* concurrent tools/call per session */
/* In a tools/call result's _meta: true when the host refused the call before any tool code
 * ran, for a reason that passes (too many calls in flight, a full queue, no worker, the broker
 * unreachable, a rate limit): a retry may run it. The tunnel does not record such outcomes. */
#define MCP_META_NOT_RUN "io.agentbroker/notRun"
#define MCP_PAGE_SIZE 50 /* tools per tools/list page */

struct mcp_server;

struct mcp_transport_ops {
        /* Send one serialized JSON-RPC message (no trailing newline). Returns 0 or -errno. */
        int (*send)(void *userdata, const char *json, size_t len);
        /* Optional (may be NULL): the number of tools/call in flight dropped to zero. */
        void (*idle)(void *userdata);
        /* Optional (may be NULL): when set, every message is sent through this instead of send,
         * with the context of the request it belongs to (the ctx given to
         * mcp_server_receive_ctx() with that request; for a message answering no request, the
         * ctx of the message being received). Lets one server answer on many channels (HTTP). */
        int (*send_ctx)(void *userdata, void *ctx, const char *json, size_t len);
};

struct mcp_config {
        struct hw_registry *registry;
        struct hb_broker *broker;
        const char *run;         /* the run every call belongs to */
        const char *server_name; /* serverInfo.name */
        size_t page_size;        /* tools per tools/list page; 0: MCP_PAGE_SIZE */
        /* Many independent clients share this server (the stateless 2026-07-28 HTTP path):
         * request ids are only unique per context, so duplicate-id checks and
         * notifications/cancelled are scoped to the ctx of mcp_server_receive_ctx(). */
        bool shared;
        /* NULL, or a NULL-terminated list of modules whose tools are listed and called by
         * their bare names ("tool" for "<module>.tool"; the broker still sees the full
         * name). For fixtures that clients call by fixed names (the conformance suite). */
        const char *const *bare_modules;
};

int mcp_server_new(sd_event *event, const struct mcp_config *cfg, const struct mcp_transport_ops *ops,
                   void *userdata, struct mcp_server **ret);
/* Cancel every call in flight (their results are dropped) and free. Accepts NULL. The calls
 * end in the background: free the registry (which ends them) before the broker. */
void mcp_server_free(struct mcp_server *s);
/* Handle one received message (a JSON text of len bytes). Answers go through ops->send,
 * now or later. Returns 0, or -errno only for failures of the server itself. */
int mcp_server_receive(struct mcp_server *s, const char *msg, size_t len);
/* Like mcp_server_receive(), with the transport's context of this message: everything sent
 * for it (its response, its progress and log notifications) goes to ops->send_ctx with ctx. */
int mcp_server_receive_ctx(struct mcp_server *s, const char *msg, size_t len, void *ctx);

#define MCP_PARSE_WHY_MAX 160
/* Parse one message (len bytes) as the core takes it: well-formed UTF-8 without NUL bytes,
 * nesting and size within the core's limits, exactly one JSON value (whitespace may follow),
 * and the ids (id, params.requestId, params._meta.progressToken) kept exactly as sent
 * (host/mcp/rpcid.h). For a transport that looks into a message before the core does: it
 * parses once and hands the tree to mcp_server_receive_parsed(). Returns 0 with the tree in
 * *ret and in *ret_has_nul whether a string holds an escaped NUL (\u0000, which cJSON cuts
 * at); -EBADMSG with why (at most MCP_PARSE_WHY_MAX bytes are useful) saying what the core
 * answers (hand the text to mcp_server_receive(), which answers it); or -ENOMEM. */
int mcp_server_parse(const char *msg, size_t len, cJSON **ret, bool *ret_has_nul, char *why, size_t why_len);
/* Handle a message m (taken over) that mcp_server_parse() returned, with has_nul as it said,
 * and the transport's context ctx (NULL: none), as mcp_server_receive_ctx() handles its text.
 * The transport may have changed m (the tunnel puts its own id in). Returns 0, or -errno only
 * for failures of the server itself. */
int mcp_server_receive_parsed(struct mcp_server *s, cJSON *m, bool has_nul, void *ctx);
/* Cancel the tools/call requests received with ctx (no responses; call-end says "cancelled"):
 * the client of that context went away. */
void mcp_server_cancel_ctx(struct mcp_server *s, void *ctx);
/* Answer a message the transport could not even hand over (e.g. longer than MCP_LINE_MAX)
 * with an RPC_INVALID_REQUEST error whose id is null; message says why. Returns 0 or -errno. */
int mcp_server_refuse(struct mcp_server *s, const char *message);
/* The same with the message's id (a string or number item; NULL: null), when the transport
 * could read it (host/mcp/idpeek.h). Returns 0 or -errno. */
int mcp_server_refuse_id(struct mcp_server *s, const cJSON *id, const char *message);
/* Number of tools/call requests in flight. */
size_t mcp_server_inflight(const struct mcp_server *s);
/* Cancel every tools/call in flight as if the client had cancelled each (no responses; their
 * call-end says "cancelled"). ops->idle follows once they have ended. */
void mcp_server_cancel_all(struct mcp_server *s);
/* The configuration policy gives module (from the broker's host-config, refreshed at most every
 * few seconds), or NULL when there is none. Valid until the next call into the server. For the
 * registry's hw_config_fn. */
const cJSON *mcp_server_module_config(struct mcp_server *s, const char *module);
