/* SPDX-License-Identifier: MIT */
/* The tools/call pipeline of the MCP server (internal to host/mcp/server.c): argument validation,
 * call-begin at the broker, dispatch to a module worker, progress, logging, redaction,
 * result shaping, the response and call-end. Calls run concurrently; each ends exactly once
 * (a response, or none when the client cancelled it) and every call the broker began gets
 * its call-end. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "common/clock.h"
#include "host/brokerc/brokerc.h"
#include "host/tool/shape.h"
#include "host/workers/workers.h"

/* What one request carries besides its method and params. */
struct mcp_request {
        cJSON *id;             /* the request id (string or integer), owned */
        bool modern;           /* served under 2026-07-28 (per-request _meta) */
        int log_level;         /* modern: lowest syslog priority sent as notifications/message
                                        * (from _meta io.modelcontextprotocol/logLevel), -1: none */
        cJSON *progress_token; /* _meta.progressToken, owned, or NULL */
        void *ctx;             /* the transport's context of the request (not owned) */
        bool has_nul;          /* the message held an escaped NUL (\u0000) in a string */
};

void mcp_request_free(struct mcp_request *rq);

/* How the pipeline reaches the server around it. Every callback gets userdata. */
struct mcp_calls_host {
        struct hw_registry *registry;
        struct hb_broker *broker; /* must outlive the registry's last call */
        const char *run;
        void *userdata;
        /* Send result (consumed) as the response to rq; *ret_bytes: bytes of the serialized
         * result object. Returns 0 or -errno. */
        int (*respond)(void *userdata, const struct mcp_request *rq, cJSON *result, size_t *ret_bytes);
        /* Send a JSON-RPC error for rq. */
        int (*respond_error)(void *userdata, const struct mcp_request *rq, int code, const char *message);
        /* Send a notification (params consumed) about the request rq. */
        int (*notify)(void *userdata, const struct mcp_request *rq, const char *method, cJSON *params);
        /* The tool's limits from policy (defaults when policy names none). */
        void (*limits)(void *userdata, const char *tool, size_t *ret_max_bytes, unsigned *ret_timeout_ms);
        /* Legacy session's logging level (lowest syslog priority sent), -1: none. */
        int (*session_log_level)(void *userdata);
        /* Called when the number of calls in flight drops to zero. May be NULL. */
        void (*idle)(void *userdata);
        /* Request ids are unique per rq->ctx only (many clients share the server). */
        bool ids_per_ctx;
};

struct mcp_calls;

int mcp_calls_new(const struct mcp_calls_host *host, struct mcp_calls **ret);
/* Cancel every call in flight and free. The calls finish in the background (their results
 * are dropped, their call-end is still sent): the registry must be freed (or its loop run)
 * before the broker. Accepts NULL. */
void mcp_calls_free(struct mcp_calls *c);

/* Start a tools/call for rq (taken over, also on failure) with params. Errors that are
 * JSON-RPC errors (unknown tool, bad params, duplicate id) and results known at once
 * (invalid arguments, too many calls) are answered before this returns; everything else
 * later. Returns 0, or -errno only for failures of the server itself. */
int mcp_calls_start(struct mcp_calls *c, struct mcp_request *rq, const cJSON *params);

/* notifications/cancelled: stop the call whose request id is id, received with ctx (ctx is
 * NULL unless host.ids_per_ctx); no response is sent for it. Unknown ids (finished calls,
 * typos) are ignored. */
void mcp_calls_cancel_in(struct mcp_calls *c, const cJSON *id, void *ctx);
/* Cancel every call received with ctx. */
void mcp_calls_cancel_ctx(struct mcp_calls *c, void *ctx);
/* Cancel every call in flight (no responses). */
void mcp_calls_cancel_all(struct mcp_calls *c);

/* Calls in flight (accepted and not yet ended). */
size_t mcp_calls_count(const struct mcp_calls *c);

/* RFC 5424 level names (MCP LoggingLevel) <-> syslog priorities 0..7. */
int mcp_log_level_from_name(const char *name);
const char *mcp_log_level_name(int prio);
