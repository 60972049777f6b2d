/* Egress operations of agentbrokerd (docs/protocol.md, "egress-check", "egress-done"):
 * agentbroker-egress presents a module call's token, the broker decides the destination by the
 * tool rule's egress entries, writes egress-connect (and secret-use sop=inject), and records
 * what the connection or request did when it ends. Also the helpers of handlers.c they share. */
#pragma once

#include <stdarg.h>
#include <cjson/cJSON.h>

#include "audit/audit_log.h"
#include "broker/handlers.h"
#include "broker/tokens.h"
#include "common/macros.h"

/* From handlers.c. */
int AB_PRINTF(4, 5) fail(struct ab_reply_error *err, const char *code, const char *reason, const char *fmt, ...);
int bad_field(struct ab_reply_error *err, const char *field);
struct ab_event event_for(enum ab_event_type type, const struct ab_peer *p);
int emit_or_deny(struct ab_state *st, const struct ab_event *ev, struct ab_reply_error *err);
const char *token_reason(int r);
int deny_token(struct ab_state *st, struct ab_conn *c, const struct ab_token *tok, const char *reason,
               const char *secret, const char *operation, const char *tool, struct ab_reply_error *err,
               const char *fmt, ...);

int ab_h_egress_check(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                      struct ab_reply_error *err, struct ab_reply_after *after);
int ab_h_egress_done(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                     struct ab_reply_error *err, struct ab_reply_after *after);
