/* SPDX-License-Identifier: MIT */
/* The MCP Streamable HTTP transport (agentbroker-mcp --http ADDR), on libmicrohttpd driven by
 * the sd-event loop (MHD's epoll descriptor is watched; MHD_run on readiness and timeouts).
 *
 * One endpoint serves both eras, as the 2026-07-28 specification describes for dual-era
 * servers: a request whose MCP-Protocol-Version is 2026-07-28 goes statelessly to one shared
 * mcp_server (responses routed per HTTP request); anything else belongs to a 2025-11-25
 * session (Mcp-Session-Id), one mcp_server per session. docs/http.md describes the
 * behaviour, the limits and the security checks; keep the two in step. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "host/net/http/deny.h"
#include "host/mcp/server.h"

#define MCP_HTTP_BODY_MAX (4u * 1024 * 1024) /* request body (= MCP_LINE_MAX) */
#define MCP_HTTP_HEADERS_MAX (32u * 1024)    /* request line and headers */
#define MCP_HTTP_SESSIONS_MAX 256            /* legacy sessions; the idlest is evicted */
#define MCP_HTTP_CONNECTIONS_MAX 1024
#define MCP_HTTP_PER_IP_MAX 512
#define MCP_HTTP_STREAM_QUEUE_MAX (8u * 1024 * 1024) /* unread bytes of one response stream */
#define MCP_HTTP_HEADER_DEADLINE_S 3       /* a new connection's first headers must arrive within */
#define MCP_HTTP_UNAUTH_MAX 64             /* connections without a valid token yet; the oldest goes */
#define MCP_HTTP_IDLE_TIMEOUT_S 30         /* a silent connection is closed after */
#define MCP_HTTP_SESSION_IDLE_S 600        /* an unused session ends after */
#define MCP_HTTP_TOKEN_CACHE_S 5           /* a token the broker accepted is trusted for */
#define MCP_HTTP_REPLAY_MAX (1024u * 1024) /* events kept per stream for Last-Event-ID */
#define MCP_HTTP_REPLAY_TOTAL_MAX (64u * 1024 * 1024) /* ... and for all streams of the process */
#define MCP_HTTP_DETACHED_MAX 16                      /* cut streams kept per session for resumption */

struct mcp_http;

/* Ask the broker whether a bearer token is valid. Returns 0 (valid; *ret_ttl_s: seconds it
 * stays valid), -EPERM (refused; *ret_reason: static text) or -errno (the broker failed). */
typedef int (*mcp_http_token_check_fn)(void *userdata, const char *token, unsigned *ret_ttl_s,
                                       const char **ret_reason);

struct mcp_http_config {
        const char *address;   /* "127.0.0.1:PORT", "[::1]:PORT", "localhost:PORT" or "unix:/PATH" */
        bool insecure_no_auth; /* no bearer token (loopback only) */
        mcp_http_token_check_fn check_token;
        void *check_userdata;                   /* also report_denials' */
        mcp_http_deny_report_fn report_denials; /* aggregated 401s, per source and reason (may be NULL) */
        unsigned session_idle_s;                /* 0: MCP_HTTP_SESSION_IDLE_S */
        struct mcp_config mcp;                  /* the template of every mcp_server */
};

/* Parse addr: 0 and whether it is a loopback TCP address or a Unix socket; -EINVAL when it is
 * neither (wildcards and other interfaces are refused). */
int mcp_http_address_ok(const char *addr);

/* Bind and start serving. Returns 0 or -errno (-EINVAL: bad address or options). */
int mcp_http_new(sd_event *event, const struct mcp_http_config *cfg, struct mcp_http **ret);
/* The shared (2026-07-28) server, for module configuration lookups. */
struct mcp_server *mcp_http_server(struct mcp_http *h);
/* The address actually bound ("127.0.0.1:40123" for port 0), valid while h lives. */
const char *mcp_http_bound(const struct mcp_http *h);
/* Stop listening, end every session (their calls are cancelled) and free. Accepts NULL. */
void mcp_http_free(struct mcp_http *h);
