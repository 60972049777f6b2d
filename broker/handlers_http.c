/* SPDX-License-Identifier: MIT */
/* HTTP operations of agentbrokerd (docs/http.md): the bearer tokens of agentbroker-mcp
 * --http (http-token-issue, http-token-check, kept in broker/httptokens.c), the records of
 * its listener (http-listener) and of the requests it refused (http-auth-deny). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/handlers_shared.h"
#include "common/secmem.h"
#include "common/wire.h"

/* The connection's own run (opened on it, still open), or NULL. */
static const struct ab_run *
conn_own_run(struct ab_state *st, const struct ab_conn *c)
{
        const struct ab_run *run = c->own_run[0] ? ab_runs_find(st->runs, c->own_run) : NULL;

        return run && run->open ? run : NULL;
}

/* Whether c may write the records of an HTTP listener: an admin, or a host on the connection
 * that opened its (still open) run. */
static bool
may_report_http(struct ab_state *st, const struct ab_conn *c)
{
        return peer_is_admin(st, &c->peer) || conn_own_run(st, c);
}

/* http-token-issue {ttl_s?}: a new bearer token for agentbroker-mcp --http, live for ttl_s
 * (a number or its decimal text, 1..AB_HTTP_TOKEN_TTL_MAX_S). The token goes out in the reply
 * (wiped after sending); the broker keeps its hash. Admins only. */
int
h_http_token_issue(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                   struct ab_reply_error *err, struct ab_reply_after *after)
{
        const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(req, "ttl_s");
        unsigned char hash[32];
        char token[AB_HTTP_TOKEN_LEN + 1], id[AB_HTTP_TOKEN_ID_LEN + 1], detail[32];
        AB_WIPE_ON_EXIT(token);
        uint64_t now = ab_now_ms(), ttl_s = AB_HTTP_TOKEN_TTL_DEFAULT_S;
        struct ab_event ev;
        cJSON *item;
        int r;

        if (ttl) {
                /* A number, or its decimal text. */
                double v = -1;
                char *end = NULL;

                if (cJSON_IsNumber(ttl))
                        v = ttl->valuedouble;
                else if (cJSON_IsString(ttl) && ttl->valuestring[0] >= '0' && ttl->valuestring[0] <= '9' &&
                         strlen(ttl->valuestring) <= 12) {
                        v = (double)strtoull(ttl->valuestring, &end, 10);
                        if (*end)
                                v = -1;
                }
                if (v < 1 || v > AB_HTTP_TOKEN_TTL_MAX_S || v != (double)(uint64_t)v)
                        return fail(err, AB_ERR_BAD_REQUEST, NULL,
                                    "ttl_s must be a whole number of seconds, 1..%d",
                                    AB_HTTP_TOKEN_TTL_MAX_S);
                ttl_s = (uint64_t)v;
        }
        r = ab_http_tokens_mint(st->http_tokens, now, token, hash, id);
        if (r == -ENOSPC)
                return fail(err, AB_ERR_DENIED, "too-many-tokens", "%d HTTP tokens are live already",
                            AB_HTTP_TOKENS_MAX);
        if (r == -ENOMEM)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "no randomness or no SHA-256");
        snprintf(detail, sizeof detail, "ttl=%" PRIu64 "s", ttl_s);
        ev = event_for(AB_EV_HTTP_TOKEN_ISSUE, &c->peer);
        ev.token_id = id;
        ev.detail = detail;
        if (emit_or_deny(st, &ev, err) < 0)
                return -1;
        if (ab_http_tokens_add(st->http_tokens, hash, now, now + ttl_s * 1000u) < 0)
                return fail(err, AB_ERR_DENIED, "too-many-tokens", "%d HTTP tokens are live already",
                            AB_HTTP_TOKENS_MAX);
        item = cJSON_CreateString(token);
        if (item && !cJSON_AddItemToObject(reply, "token", item)) {
                ab_wipe(item->valuestring, strlen(item->valuestring));
                cJSON_Delete(item);
                item = NULL;
        }
        after->wipe = item; /* wiped once the reply is sent, or dropped */
        if (!item || !cJSON_AddStringToObject(reply, "token_id", id) ||
            !cJSON_AddNumberToObject(reply, "expires_in_ms", (double)(ttl_s * 1000u))) {
                ab_http_tokens_forget(st->http_tokens, hash);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        return 0;
}

/* http-token-check {token, aggregate?}: whether a presented bearer token is live; a refusal
 * is recorded (unless the host aggregates its refusals, see http-auth-deny). */
int
h_http_token_check(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                   struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *token = NULL, *reason;
        char id[AB_HTTP_TOKEN_ID_LEN + 1];
        uint64_t now = ab_now_ms(), expires_ms = 0;
        struct ab_event ev;
        int r;

        r = ab_wire_get_string(req, "token", 256, &token);
        if (r < 0 || !token)
                return bad_field(err, "token");
        r = ab_http_tokens_check(st->http_tokens, token, now, id, &expires_ms);
        if (r == -EIO)
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot hash the token");
        if (r == 0) {
                if (!cJSON_AddNumberToObject(reply, "expires_in_ms", (double)(expires_ms - now)))
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                return 0;
        }
        reason = r == -EBADMSG ? "token-malformed" : r == -ETIME ? "token-expired" : "token-unknown";
        /* A host that aggregates its denials (aggregate: true) reports them with
         * http-auth-deny; anyone else's refusal is recorded here, one by one. */
        if (!(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "aggregate")) && may_report_http(st, c))) {
                ev = event_for(AB_EV_HTTP_TOKEN_DENY, &c->peer);
                ev.success = false;
                ev.reason = reason;
                ev.token_id = id;
                (void)ab_audit_emit(st->audit, &ev);
        }
        return fail(err, AB_ERR_DENIED, reason, "the HTTP bearer token is refused: %s", reason);
}

/* http-auth-deny {source, reason, count, seconds}: a host reports, aggregated, the requests it
 * refused for want of a valid token from one source over an interval (docs/http.md): one
 * http-token-deny record instead of one per request. Admins or a host with its own run. */
int
h_http_auth_deny(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                 struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const reasons[] = { "no-token", "token-malformed", "token-unknown",
                                               "token-expired", "denied" };
        const struct ab_run *run = conn_own_run(st, c);
        const char *source = NULL, *reason = NULL;
        uint64_t count = 0, seconds = 0;
        char detail[160];
        struct ab_event ev;
        bool known = false;

        if (!may_report_http(st, c))
                return fail(err, AB_ERR_NOT_PERMITTED, "no-own-run",
                            "http-auth-deny needs an open run opened on this connection, or an admin");
        if (ab_wire_get_string(req, "source", 64, &source) < 0 || !source || !source[0])
                return bad_field(err, "source");
        if (ab_wire_get_string(req, "reason", 32, &reason) < 0 || !reason)
                return bad_field(err, "reason");
        for (size_t i = 0; i < AB_ELEMENTSOF(reasons); i++)
                known = known || strcmp(reason, reasons[i]) == 0;
        if (!known)
                return bad_field(err, "reason");
        if (ab_wire_get_u64(req, "count", UINT32_MAX, &count) < 0 || count == 0)
                return bad_field(err, "count");
        if (ab_wire_get_u64(req, "seconds", 86400, &seconds) < 0)
                return bad_field(err, "seconds");
        snprintf(detail, sizeof(detail), "source=%s denied=%" PRIu64 " in %" PRIu64 "s", source, count,
                 seconds);
        ev = event_for(AB_EV_HTTP_TOKEN_DENY, &c->peer);
        ev.success = false;
        ev.reason = reason;
        ev.run = run ? run->id : NULL;
        ev.detail = detail;
        return emit_or_deny(st, &ev, err);
}

/* http-listener {address, auth, run?}: a host records the Streamable HTTP listener it
 * started. Admins; a connection that opened a run that is still open (the host's own run); or
 * one that names an open run of its own uid (a host started with --run), which then becomes
 * the run this connection speaks for. A plain client cannot write listener records that point
 * at nobody. */
int
h_http_listener(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *address = NULL, *auth = NULL, *named = NULL;
        const struct ab_run *run = conn_own_run(st, c);
        char detail[256];
        struct ab_event ev;
        int r;

        r = ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &named);
        if (r == -EINVAL)
                return bad_field(err, "run");
        if (!run && named) {
                const struct ab_run *n = ab_runs_find(st->runs, named);

                if (n && n->open && n->owner == c->peer.uid)
                        run = n;
        }
        if (!run && !peer_is_admin(st, &c->peer))
                return fail(err, AB_ERR_NOT_PERMITTED, "no-own-run",
                            "http-listener needs an open run of this connection or of its uid, or an admin");
        if (ab_wire_get_string(req, "address", 128, &address) < 0 || !address)
                return bad_field(err, "address");
        if (ab_wire_get_string(req, "auth", 32, &auth) < 0 || !auth ||
            (strcmp(auth, "bearer") != 0 && strcmp(auth, "insecure-no-auth") != 0))
                return bad_field(err, "auth");
        snprintf(detail, sizeof detail, "address=%s auth=%s", address, auth);
        ev = event_for(AB_EV_HTTP_LISTENER, &c->peer);
        ev.run = run ? run->id : NULL;
        ev.detail = detail;
        if (emit_or_deny(st, &ev, err) < 0)
                return -1;
        if (run)
                snprintf(c->own_run, sizeof(c->own_run), "%s", run->id);
        return 0;
}
