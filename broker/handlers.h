/* SPDX-License-Identifier: MIT */
/* Request handlers of agentbrokerd: one function per protocol operation (docs/protocol.md),
 * dispatched through a table that says which operations are admin-only. */
#pragma once

#include <cjson/cJSON.h>

#include "common/wire.h"

#include "broker/conn.h"
#include "broker/state.h"

struct ab_reply_error {
        const char *code;           /* AB_ERR_* */
        const char *reason;         /* denial reason, or NULL */
        char message[AB_FIELD_MAX]; /* human-readable, never a secret (a policy's error list) */
};

/* Things the server must do after sending a reply. */
struct ab_reply_after {
        cJSON *wipe;     /* a string item of the reply holding secret bytes */
        bool close_conn; /* close the connection after the reply */
};

/* Handle one decoded request from connection c. On success fills reply (already an ok
 * envelope) and returns 0; on failure fills err and returns -1. */
int ab_handle_request(struct ab_state *st, struct ab_conn *c, const char *op, const cJSON *req, cJSON *reply,
                      struct ab_reply_error *err, struct ab_reply_after *after);

/* Called by housekeeping when a token is reaped without its call having ended: writes the
 * tool-call-end record (status "abandoned") so every begin has its end. */
void ab_handle_token_reaped(const struct ab_token *tok, void *state);

/* Close run (its tokens revoked) and write its run-close record; by is who closed it, why
 * the reason (NULL: asked to). */
void ab_handle_close_run(struct ab_state *st, struct ab_run *run, const struct ab_peer *by, const char *why);
