/* SPDX-License-Identifier: MIT */
/* The MCP server core: what server.c and methods.c share. Not for use outside host/mcp/;
 * host/mcp/server.h is the interface.
 *
 * JSON-RPC 2.0 framing and errors, the two lifecycles (2025-11-25 initialize handshake,
 * 2026-07-28 per-request _meta) chosen per request, tools/list from the registry filtered by
 * policy, and tools/call through host/mcp/calls.c. docs/mcp.md describes the behaviour; keep
 * the two in step. */
#ifndef AB_HOST_MCP_SERVER_INTERNAL_H
#define AB_HOST_MCP_SERVER_INTERNAL_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/encode.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "host/mcp/jsonrpc.h"
#include "host/mcp/calls.h"
#include "host/mcp/server.h"
#include "host/mcp/rpcid.h"
#include "host/tool/shape.h"

#define MODERN_VERSION "2026-07-28"
#define META_PROTOCOL_VERSION "io.modelcontextprotocol/protocolVersion"
#define META_CLIENT_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"
#define META_CLIENT_INFO "io.modelcontextprotocol/clientInfo"
#define META_LOG_LEVEL "io.modelcontextprotocol/logLevel"
#define META_SERVER_INFO "io.modelcontextprotocol/serverInfo"

#define POLICY_TTL_MS 3000       /* host-config is asked again after this (also tools/list ttlMs) */
#define DISCOVER_TTL_MS 60000    /* server/discover ttlMs: it never changes while we run */
#define DEFAULT_TIMEOUT_MS 30000 /* a tool's timeout when policy names none */
#define MAX_DEPTH 64             /* nesting of an incoming message */
#define MAX_VALUES 200000        /* JSON values in an incoming message */
#define CURSOR_MAX 512           /* bytes of a decoded cursor */

/* In a tool's inputSchema (a vendor keyword the schema compiler ignores): the client
 * capabilities a call needs, e.g. ["sampling"]. docs/mcp.md. */
#define SCHEMA_CLIENT_CAPABILITIES "x-agentbroker-client-capabilities"

/* Legacy (initialize) versions, newest first. */
static const char *const legacy_versions[] = { "2025-11-25", "2025-06-18", "2025-03-26" };

static const char instructions[] =
        "Tools served by agentbroker-mcp, named <module>.<tool>. Every call is checked against the "
        "broker's policy and audited before it runs: a call that policy refuses comes back as an "
        "isError result starting with \"denied by policy:\" and the reason, and is not worth retrying "
        "unchanged. Results larger than the tool's limit are cut with a note saying how to get the "
        "rest; secret values never appear in results.";

struct mcp_server {
        bool msg_has_nul; /* the message being handled holds an escaped NUL */
        sd_event *event;
        struct hw_registry *registry;
        struct hb_broker *broker;
        char *run;
        char *server_name;
        size_t page_size;
        const struct mcp_transport_ops *ops;
        void *userdata;
        struct mcp_calls *calls;
        bool shared;
        char **bare_modules; /* NULL-terminated, or NULL */
        void *ctx;           /* the context messages are sent with now */

        /* Legacy session (stdio process) state. */
        bool initialized;      /* initialize answered */
        bool client_ready;     /* notifications/initialized received */
        int session_log_level; /* logging/setLevel: lowest priority sent, -1 none */
        cJSON *client_caps;    /* initialize's params.capabilities, or NULL */
        cJSON *client_info;    /* the last clientInfo told to the broker (run-client), or NULL */

        /* The last host-config reply {"tools":{...},"modules":{...}} and when it came. */
        cJSON *policy;
        uint64_t policy_usec;
        uint64_t generation;          /* bumped when the set of allowed tools changes */
        uint64_t registry_generation; /* hw_registry_generation() of the last host-config */
        bool policy_failing;
};

/* Shared between the parts (defined in one, used in another). */
/* Send a JSON-RPC error for id (NULL: null). data (consumed) may be NULL. */
int mcp_server_send_error_data(struct mcp_server *s, const cJSON *id, int code, const char *message,
                               cJSON *data);

int mcp_server_send_error(struct mcp_server *s, const cJSON *id, int code, const char *fmt, ...);

/* Send result (consumed) as the response to rq. *ret_bytes (may be NULL): bytes of the
 * serialized result object. */
int mcp_server_send_result(struct mcp_server *s, const struct mcp_request *rq, cJSON *result,
                           size_t *ret_bytes);

/* Ask the broker which tools policy allows (with their limits) and the modules'
 * configuration, unless the last answer is younger than POLICY_TTL_MS (or force).
 * On failure the previous answer stays (none at first: no tool is listed).
 * Returns 0 or -errno. */
int mcp_server_policy_refresh(struct mcp_server *s, bool force);

const cJSON *mcp_server_policy_tool(const struct mcp_server *s, const char *name);

/* A request without the 2026-07-28 _meta: the initialize session's rules. rq is taken. */
int mcp_server_handle_legacy(struct mcp_server *s, struct mcp_request *rq, const char *method,
                             const cJSON *params);

/* A request with io.modelcontextprotocol/protocolVersion in _meta: served statelessly
 * under 2026-07-28. rq is taken. */
int mcp_server_handle_modern(struct mcp_server *s, struct mcp_request *rq, const char *method,
                             const cJSON *params, const cJSON *meta);

void mcp_server_handle_notification(struct mcp_server *s, const char *method, const cJSON *params);

#endif /* AB_HOST_MCP_SERVER_INTERNAL_H */
