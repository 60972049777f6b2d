/* SPDX-License-Identifier: MIT */
/* An MCP client connection to one server process over its stdin/stdout (host/gateway/gateway.c):
 * newline-delimited JSON-RPC 2.0 (cJSON), requests matched to their responses by id,
 * notifications handed up, the server's own requests answered (ping with {}, anything else
 * RPC_METHOD_NOT_FOUND: we offer no sampling, roots or elicitation). Everything the server controls is
 * bounded: line size, requests waiting, output queued, lines handled per wakeup. A server
 * that breaks the framing (a line that is not JSON-RPC, a line over MC_LINE_MAX) is a dead
 * connection: closed() says why and every pending request fails. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#define MC_LINE_MAX (16 * 1024 * 1024) /* longest message from the server */
#define MC_OUT_MAX (64 * 1024 * 1024)  /* bytes queued towards the server */
#define MC_PENDING_MAX 2048            /* requests waiting for a response */
#define MC_LINES_PER_WAKEUP 64         /* messages handled per io event before yielding */

struct mc_client;

struct mc_client_ops {
        /* A notification from the server (params may be NULL). */
        void (*notification)(void *userdata, const char *method, const cJSON *params);
        /* The connection is dead (why: a static or short text). Pending requests have failed
         * (their callbacks ran with -ECONNRESET) before this runs. */
        void (*closed)(void *userdata, const char *why);
};

/* The response to a request: r 0 with result (owned by the callee) or error (the JSON-RPC
 * error object, borrowed); r < 0 when the connection died first. */
typedef void (*mc_response_fn)(void *userdata, int r, cJSON *result, const cJSON *error);

/* Take over in_fd (the server's stdout) and out_fd (its stdin), made non-blocking. name is
 * used in log lines. Returns 0 or -errno (the descriptors are closed then too). */
int mc_client_new(sd_event *event, int in_fd, int out_fd, const char *name, const struct mc_client_ops *ops,
                  void *userdata, struct mc_client **ret);
/* Close and free. Pending callbacks do not run. Never call it from inside one of the
 * client's own callbacks. Accepts NULL. */
void mc_client_free(struct mc_client *c);
/* Send a request (params consumed, may be NULL). *ret_id (may be NULL): its id, for
 * mc_forget(). Returns 0 or -errno (cb will not run). */
int mc_request(struct mc_client *c, const char *method, cJSON *params, mc_response_fn cb, void *userdata,
               uint64_t *ret_id);
/* Send a notification (params consumed, may be NULL). Returns 0 or -errno. */
int mc_notify(struct mc_client *c, const char *method, cJSON *params);
/* Forget the request id: its callback will not run. */
void mc_forget(struct mc_client *c, uint64_t id);
/* Block (poll, without the event loop) until done(userdata) is true, the connection dies
 * or deadline_usec (CLOCK_MONOTONIC) passes, handling messages as they come. Returns 0
 * (done), -ETIMEDOUT or -ECONNRESET. */
int mc_wait(struct mc_client *c, uint64_t deadline_usec, bool (*done)(void *userdata), void *userdata);
/* Whether the connection is alive. */
bool mc_alive(const struct mc_client *c);
