/* SPDX-License-Identifier: MIT */
/* A blocking client for the broker socket, used by agentbrokerctl, tests, benchmarks and the host. */
#pragma once

#include <cjson/cJSON.h>
#include <stdint.h>

#define AB_DEFAULT_SOCKET "/run/agentbroker/broker.sock"

struct ab_client;

/* Connect to the broker's SOCK_SEQPACKET socket at path. Returns 0 or -errno. */
int ab_client_connect(const char *path, struct ab_client **ret);
/* Close and free. Accepts NULL. */
void ab_client_free(struct ab_client *c);
static inline void
ab_client_freep(struct ab_client **c)
{
        ab_client_free(*c);
}

/* Allocate the next request id and return a new request envelope for op (NULL on OOM). */
cJSON *ab_client_request(struct ab_client *c, const char *op);
/* Send req (not consumed) and wait up to timeout_ms for the reply with the same id.
 * *ret is the whole reply, whether "ok" is true or false. Returns 0, -ETIMEDOUT, -ECONNRESET,
 * -EBADMSG (reply not decodable) or -errno. */
int ab_client_call(struct ab_client *c, const cJSON *req, int timeout_ms, cJSON **ret);
