/* SPDX-License-Identifier: MIT */
/* Egress operations of agentbrokerd (docs/protocol.md, "egress-check", "egress-done"):
 * agentbroker-egress presents a module call's token, the broker decides the destination by the
 * tool rule's egress entries, writes egress-connect (and secret-use sop=inject), and records
 * what the connection or request did when it ends. */
#pragma once

#include <stdarg.h>
#include <cjson/cJSON.h>

#include "audit/audit_log.h"
#include "broker/handlers_shared.h"
#include "broker/tokens.h"
#include "common/macros.h"

int ab_h_egress_check(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                      struct ab_reply_error *err, struct ab_reply_after *after);
int ab_h_egress_done(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                     struct ab_reply_error *err, struct ab_reply_after *after);
