/* SPDX-License-Identifier: MIT */
/* What the request handlers of agentbrokerd share (broker/handlers*.c): replies with errors,
 * audit events, peer checks, token denials, and every handler the dispatch table in
 * broker/handlers.c names. A handler fills reply and returns 0, or fills err and returns -1. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "audit/audit_log.h"
#include "broker/handlers.h"
#include "broker/secrets.h"
#include "broker/state.h"
#include "broker/tokens.h"
#include "common/macros.h"

#define AB_AUDIENCE_MAX 512
#define AB_SCOPE_MAX 1024

/* broker/handlers.c */
/* Fill err and return -1, for use as `return fail(err, ...)`. */
int AB_PRINTF(4, 5)
        fail(struct ab_reply_error *err, const char *code, const char *reason, const char *fmt, ...);
/* fail() for a missing or invalid request field. */
int bad_field(struct ab_reply_error *err, const char *field);
/* Whether the peer may make admin requests: root, the broker's uid, or the admin group. */
bool peer_is_admin(const struct ab_state *st, const struct ab_peer *p);
/* An event with the caller filled in and every optional number unset. */
struct ab_event event_for(enum ab_event_type type, const struct ab_peer *p);
/* Emit ev; returns -1 with err filled when audit failed and policy says deny, else 0. */
int emit_or_deny(struct ab_state *st, const struct ab_event *ev, struct ab_reply_error *err);
/* Copy a peer identity, duplicating its pidfd. Returns 0 or -errno. */
int peer_dup(const struct ab_peer *src, struct ab_peer *ret);
/* 2 * nbytes random hex characters and a NUL into out (a label, never a secret). */
void random_hex(char *out, size_t nbytes);

/* broker/handlers_calls.c */
/* The denial reason of an ab_tokens_lookup error. */
const char *token_reason(int r);
/* Refuse a presented token: write the token-deny record and fill err. Returns -1. */
int deny_token(struct ab_state *st, struct ab_conn *c, const struct ab_token *tok, const char *reason,
               const char *secret, const char *operation, const char *tool, struct ab_reply_error *err,
               const char *fmt, ...);

/* broker/handlers_secrets.c */
/* Mint the JWT of claims cl with s into reply's "jwt" (wiped after sending). Returns 0 or -1. */
int mint_reply(const struct ab_secret *s, const struct ab_jwt_claims *cl, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after);

/* The handlers, one per operation (docs/protocol.md). */
#define AB_HANDLER(name)                                                                 \
        int name(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply, \
                 struct ab_reply_error *err, struct ab_reply_after *after)
/* broker/handlers.c */
AB_HANDLER(h_status);
AB_HANDLER(h_token_list);
AB_HANDLER(h_policy_reload);
/* broker/handlers_runs.c */
AB_HANDLER(h_run_open);
AB_HANDLER(h_run_close);
AB_HANDLER(h_run_list);
/* broker/handlers_calls.c */
AB_HANDLER(h_call_begin);
AB_HANDLER(h_call_end);
AB_HANDLER(h_call_reject);
AB_HANDLER(h_run_client);
/* broker/handlers_secrets.c */
AB_HANDLER(h_secret_read);
AB_HANDLER(h_secret_sign);
AB_HANDLER(h_mint_jwt);
/* broker/handlers_host.c */
AB_HANDLER(h_host_config);
AB_HANDLER(h_server_env);
/* broker/handlers_identity.c */
AB_HANDLER(h_identity);
AB_HANDLER(h_identity_jwt);
AB_HANDLER(h_tunnel_event);
/* broker/handlers_http.c */
AB_HANDLER(h_http_token_issue);
AB_HANDLER(h_http_token_check);
AB_HANDLER(h_http_auth_deny);
AB_HANDLER(h_http_listener);
