/* SPDX-License-Identifier: MIT */
/* Tunnel identity operations of agentbrokerd (docs/tunnel.md): identity, identity-jwt
 * and tunnel-event. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/handlers_shared.h"
#include "common/wire.h"

#define AB_SANDBOX_ID_MAX 256
#define AB_SESSION_MAX 128
#define AB_IDENTITY_JWT_TTL_S 60

/* The sandbox id: policy tunnel.sandbox_id, else the host name. */
static const char *
sandbox_id(const struct ab_policy *pol, char *buf, size_t size)
{
        if (pol->tunnel.sandbox_id)
                return pol->tunnel.sandbox_id;
        if (gethostname(buf, size) < 0 || !buf[0])
                snprintf(buf, size, "agentbroker");
        buf[size - 1] = '\0';
        return buf;
}

/* The policy's tunnel identity key, or NULL with err filled. */
static const struct ab_secret *
identity_secret(struct ab_state *st, struct ab_reply_error *err)
{
        const struct ab_secret *s;

        if (!st->policy->tunnel.identity) {
                fail(err, AB_ERR_DENIED, "no-identity",
                     "the policy names no tunnel.identity key: add `tunnel: { identity: NAME }` naming an "
                     "ed25519 secret of its own (e.g. `NAME: { credential: agentbroker.NAME, type: ed25519 }`, "
                     "generated with agentbrokerctl secret install), then agentbrokerctl policy reload "
                     "(agentbroker-policy(5), tunnel)");
                return NULL;
        }
        s = ab_secrets_find(st->secrets, st->policy->tunnel.identity);
        if (!s || !s->available || s->type != AB_SECRET_ED25519) {
                fail(err, AB_ERR_DENIED, "secret-unavailable",
                     "the tunnel identity key %s is not available (see the broker's log)",
                     st->policy->tunnel.identity);
                return NULL;
        }
        return s;
}

/* identity: the public half of the tunnel identity key, for registration with a control
 * plane. Any client may ask: nothing in it is secret. */
int
h_identity(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_secret *s = identity_secret(st, err);
        char host[AB_SANDBOX_ID_MAX + 1];
        cJSON *jwk = NULL;
        char *pem = NULL;

        if (!s)
                return -1;
        if (ab_jwk_public(s, &jwk, &pem) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot export the public key");
        if (!cJSON_AddItemToObject(reply, "jwk", jwk)) {
                cJSON_Delete(jwk);
                free(pem);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        if (!cJSON_AddStringToObject(reply, "pem", pem) ||
            !cJSON_AddStringToObject(reply, "sandbox_id", sandbox_id(st->policy, host, sizeof(host))) ||
            !cJSON_AddStringToObject(reply, "secret", st->policy->tunnel.identity)) {
                free(pem);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        free(pem);
        return 0;
}

/* identity-jwt {audience, session?, run?}: a dial credential for the tunnel, signed with the
 * tunnel identity key: header typ AB_JWT_TYP_DIAL (which no mint-jwt JWT has), iss = sub =
 * sandbox id, aud = audience (the control plane URL), exp = now + 60 s, a fresh jti, sid = session. Admin only (root, the broker's uid, the
 * admin group): the tunnel host runs as one of them. The secret-use record is written
 * before the JWT leaves. */
int
h_identity_jwt(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_secret *s;
        const char *aud, *session = NULL, *run = NULL;
        char host[AB_SANDBOX_ID_MAX + 1], jti[33];
        struct ab_event ev;
        int r;

        if (ab_wire_get_string(req, "audience", AB_AUDIENCE_MAX, &aud) < 0 || !aud[0])
                return bad_field(err, "audience");
        r = ab_wire_get_string(req, "session", AB_SESSION_MAX, &session);
        if (r == -EINVAL)
                return bad_field(err, "session");
        r = ab_wire_get_string(req, "run", 128, &run);
        if (r == -EINVAL)
                return bad_field(err, "run");
        s = identity_secret(st, err);
        if (!s)
                return -1;
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = run;
        ev.secret = st->policy->tunnel.identity;
        ev.operation = "mint-jwt";
        ev.detail = "tunnel identity-jwt";
        if (emit_or_deny(st, &ev, err) < 0)
                return -1;
        random_hex(jti, 16);
        struct ab_jwt_claims cl = {
                .issuer = sandbox_id(st->policy, host, sizeof(host)),
                .audience = aud,
                .run = run,
                .sid = session,
                .iat = (uint64_t)time(NULL),
                .jti = jti,
                .tunnel_dial = true,
        };
        cl.subject = cl.issuer;
        cl.exp = cl.iat + AB_IDENTITY_JWT_TTL_S;
        return mint_reply(s, &cl, reply, err, after);
}

/* tunnel-event {event: connect|disconnect|auth-fail, url, session, reason?, run?}: the tunnel
 * host reports its connection's life; written as tunnel-connect, tunnel-disconnect or
 * tunnel-auth-fail. Admin only, like identity-jwt. */
int
h_tunnel_event(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const reasons[] = {
                "closed",       "dial-failed", "ping-timeout", "shutdown",
                "jwt-rejected", "tls-verify",  "pin-mismatch", "identity-jwt"
        };
        static const char *const stages[] = { "tcp-connect", "tls-handshake", "upgrade-answer",
                                              "first-message" };
        const char *event, *url, *session, *reason = NULL, *run = NULL, *stage = NULL;
        char detail[AB_AUDIENCE_MAX + AB_SESSION_MAX + 64];
        struct ab_event ev;
        bool known = false;
        int r;

        if (ab_wire_get_string(req, "event", 32, &event) < 0)
                return bad_field(err, "event");
        if (ab_wire_get_string(req, "url", AB_AUDIENCE_MAX, &url) < 0)
                return bad_field(err, "url");
        if (ab_wire_get_string(req, "session", AB_SESSION_MAX, &session) < 0)
                return bad_field(err, "session");
        r = ab_wire_get_string(req, "reason", 64, &reason);
        if (r == -EINVAL)
                return bad_field(err, "reason");
        for (size_t i = 0; reason && i < AB_ELEMENTSOF(reasons); i++)
                known = known || strcmp(reason, reasons[i]) == 0;
        if (reason && !known)
                return bad_field(err, "reason");
        r = ab_wire_get_string(req, "run", 128, &run);
        if (r == -EINVAL)
                return bad_field(err, "run");
        r = ab_wire_get_string(req, "stage", 32, &stage);
        if (r == -EINVAL)
                return bad_field(err, "stage");
        known = false;
        for (size_t i = 0; stage && i < AB_ELEMENTSOF(stages); i++)
                known = known || strcmp(stage, stages[i]) == 0;
        if (stage && !known)
                return bad_field(err, "stage");
        if (strcmp(event, "connect") == 0)
                ev = event_for(AB_EV_TUNNEL_CONNECT, &c->peer);
        else if (strcmp(event, "disconnect") == 0 && reason)
                ev = event_for(AB_EV_TUNNEL_DISCONNECT, &c->peer);
        else if (strcmp(event, "auth-fail") == 0 && reason) {
                ev = event_for(AB_EV_TUNNEL_AUTH_FAIL, &c->peer);
                ev.success = false;
        } else
                return bad_field(err, "event");
        snprintf(detail, sizeof(detail), "url=%s session=%s%s%s", url, session, stage ? " stage=" : "",
                 stage ? stage : "");
        ev.run = run;
        ev.reason = reason;
        ev.detail = detail;
        return emit_or_deny(st, &ev, err);
}
