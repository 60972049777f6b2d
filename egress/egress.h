/* SPDX-License-Identifier: MIT */
/* agentbroker-egress internals: the broker check shared by TCP grants (agentbroker-egress.c)
 * and HTTP requests (http.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "policy/policy.h"

#define EG_HOST_MAX 253
#define EG_ADDRS_MAX 16             /* resolved addresses sent to the broker */
#define EG_CONNECT_TIMEOUT_MS 10000 /* a TCP connect for a grant */
#define EG_BROKER_TIMEOUT_MS 10000

struct eg_state;

/* What the broker granted: the grant id, the address to connect to, and for HTTP the limits
 * and the injected value (secret bytes: wiped by eg_grant_clear). */
struct eg_grant {
        char id[33];
        char address[64];
        int family;
        size_t max_response_bytes;
        unsigned timeout_ms;
        char *inject_header, *inject_query; /* one of them when a secret is injected */
        char *inject_value;                 /* the whole header or query value */
        size_t inject_len;
        size_t secret_off, secret_len; /* where the secret lies in inject_value */
        char *secret_name;
};

void eg_grant_clear(struct eg_grant *g);

/* Resolve host (a name or an IP literal) into at most EG_ADDRS_MAX numeric addresses, as a JSON
 * array of strings. Returns 0, -ENOENT (no address) or -ENOMEM. */
int eg_resolve(const char *host, unsigned port, cJSON **ret);

/* Ask the broker (egress-check) for scheme://host:port (method, path: HTTP only) on behalf of
 * the call whose token and tool are given. Returns 0 with *ret filled, -EPERM with
 * reason/message (a denial; reason at most 63 bytes), or -EIO (no broker). */
int eg_check(struct eg_state *st, const char *token, const char *tool, enum ab_egress_scheme scheme,
             const char *host, unsigned port, const char *method, const char *path, struct eg_grant *ret,
             char reason[64], char message[256]);

/* Tell the broker how a grant ended (egress-done). http_status 0 = none; reason NULL = fine. */
void eg_done(struct eg_state *st, const char *grant, uint64_t sent, uint64_t received, uint64_t duration_ms,
             unsigned http_status, const char *reason);

/* Run one {"t":"http"} request of the worker and answer it on fd (with the body in a memfd).
 * Returns 0, or -errno when the channel broke. */
int eg_http(struct eg_state *st, int fd, const cJSON *req);

/* Send a reply to the worker, tagged with the number of the request it answers ("n"), with
 * pass_fd (or -1). Returns 0 or -errno. */
int eg_send(int fd, cJSON *msg, int pass_fd);

/* Answer an error to the worker. */
int eg_reply_error(int fd, const char *error, const char *reason, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
