/* SPDX-License-Identifier: MIT */
/* Secret operations of agentbrokerd (docs/protocol.md): secret-read, secret-sign,
 * mint-jwt, each on a call token's grant; the key never leaves the broker except by
 * secret-read. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/handlers_shared.h"
#include "common/encode.h"
#include "common/secmem.h"
#include "common/wire.h"

#define AB_SIGN_DATA_MAX (16 * 1024)

struct secret_req {
        const char *token, *tool, *secret;
        struct ab_token *tok;
        const struct ab_secret *s;
};

/* The checks every secret operation shares, in order: token, presenter, tool, scope,
 * operation, uses, availability, the secret's type (want_type, or -1 for any that fits op);
 * then the secret-use record. Returns 0 or -1. */
static int
secret_prologue(struct ab_state *st, struct ab_conn *c, const cJSON *req, unsigned op, int want_type,
                struct secret_req *sr, struct ab_reply_error *err)
{
        const char *opname = ab_policy_op_to_string(op);
        struct ab_token *tok = NULL;
        struct ab_event ev;
        unsigned ops;
        int r;

        if (ab_wire_get_string(req, "token", AB_TOKEN_LEN + 1, &sr->token) < 0)
                return bad_field(err, "token");
        if (ab_wire_get_string(req, "tool", AB_NAME_MAX, &sr->tool) < 0)
                return bad_field(err, "tool");
        if (ab_wire_get_string(req, "secret", AB_NAME_MAX, &sr->secret) < 0)
                return bad_field(err, "secret");

        r = ab_tokens_lookup(st->tokens, sr->token, ab_now_ms(), &tok);
        if (r < 0)
                return deny_token(st, c, r == -ETIME ? tok : NULL, token_reason(r), sr->secret, opname,
                                  sr->tool, err, "%s: %s", opname, token_reason(r));
        /* The presenter must be the bound process, still alive (not exited, pid not reused). */
        if (c->peer.uid != tok->presenter.uid || !ab_peer_same_process(&c->peer, &tok->presenter))
                return deny_token(st, c, tok, "wrong-peer", sr->secret, opname, NULL, err,
                                  "%s: the token is bound to another process", opname);
        if (ab_peer_check_alive(&tok->presenter) < 0 || ab_peer_check_alive(&c->peer) < 0)
                return deny_token(st, c, tok, "wrong-peer", sr->secret, opname, NULL, err,
                                  "%s: the process the token is bound to has exited", opname);
        if (strcmp(sr->tool, tok->tool) != 0)
                return deny_token(st, c, tok, "wrong-tool", sr->secret, opname, NULL, err,
                                  "%s: the token was issued for another tool", opname);
        ops = ab_token_grant_ops(tok, sr->secret);
        if (!ops)
                return deny_token(st, c, tok, "secret-not-scoped", sr->secret, opname, NULL, err,
                                  "%s: secret %s is not scoped to tool %s", opname, sr->secret, tok->tool);
        if (!(ops & op))
                return deny_token(st, c, tok, "op-not-allowed", sr->secret, opname, NULL, err,
                                  "%s: tool %s may not %s secret %s", opname, tok->tool, opname, sr->secret);
        if (tok->max_uses && tok->uses >= tok->max_uses)
                return deny_token(st, c, tok, "token-exhausted", sr->secret, opname, NULL, err,
                                  "%s: the token's %u uses are spent", opname, tok->max_uses);
        sr->s = ab_secrets_find(st->secrets, sr->secret);
        if (!sr->s || !sr->s->available)
                return deny_token(st, c, tok, "secret-unavailable", sr->secret, opname, NULL, err,
                                  "%s: secret %s is not available (see the broker's log)", opname,
                                  sr->secret);
        if ((op == AB_OP_MINT_JWT && sr->s->type != AB_SECRET_ED25519) ||
            (op == AB_OP_READ && sr->s->type != AB_SECRET_BYTES) ||
            (want_type >= 0 && sr->s->type != (enum ab_secret_type)want_type))
                return deny_token(st, c, tok, "op-not-allowed", sr->secret, opname, NULL, err,
                                  "%s: secret %s is of the wrong type for this operation", opname,
                                  sr->secret);

        /* Logged before the client receives any secret material. */
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.secret = sr->secret;
        ev.operation = opname;
        ev.token_id = tok->id;
        if (emit_or_deny(st, &ev, err) < 0)
                return -1;
        tok->uses++;
        sr->tok = tok;
        return 0;
}

int
h_secret_read(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        struct secret_req sr = { 0 };
        char *b64 = NULL;
        cJSON *item;

        if (secret_prologue(st, c, req, AB_OP_READ, -1, &sr, err) < 0)
                return -1;
        if (ab_base64_encode(sr.s->value->data, sr.s->value->len, &b64) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        item = cJSON_AddStringToObject(reply, "value", b64);
        ab_strfreezero(b64);
        if (!item)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        after->wipe = item;
        return 0;
}

int
h_secret_sign(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        struct secret_req sr = { 0 };
        const char *alg, *data64;
        unsigned char *data = NULL, sig[64];
        size_t data_len = 0, sig_len;
        char *sig64 = NULL;
        bool hmac;
        int r;

        if (ab_wire_get_string(req, "alg", 32, &alg) < 0 ||
            (strcmp(alg, "hmac-sha256") != 0 && strcmp(alg, "ed25519") != 0))
                return bad_field(err, "alg");
        if (ab_wire_get_string(req, "data", (AB_SIGN_DATA_MAX / 3 + 1) * 4, &data64) < 0 ||
            ab_base64_decode(data64, &data, &data_len) < 0 || data_len > AB_SIGN_DATA_MAX) {
                free(data);
                return bad_field(err, "data");
        }
        hmac = strcmp(alg, "hmac-sha256") == 0;
        if (secret_prologue(st, c, req, AB_OP_SIGN, hmac ? AB_SECRET_BYTES : AB_SECRET_ED25519, &sr, err) <
            0) {
                free(data);
                return -1;
        }
        if (hmac) {
                r = ab_secret_hmac_sha256(sr.s, data, data_len, sig);
                sig_len = 32;
        } else {
                r = ab_secret_ed25519_sign(sr.s, data, data_len, sig);
                sig_len = 64;
        }
        free(data);
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "signing failed: %s", strerror(-r));
        if (ab_base64_encode(sig, sig_len, &sig64) < 0 ||
            !cJSON_AddStringToObject(reply, "signature", sig64)) {
                free(sig64);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        free(sig64);
        return 0;
}

/* Mint the JWT of claims cl with key s into reply ("jwt", "exp"); the jwt member is wiped
 * after sending. Shared by mint-jwt and identity-jwt. Returns 0 or -1 with err filled. */
int
mint_reply(const struct ab_secret *s, const struct ab_jwt_claims *cl, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        _cleanup_strfreezero_ char *jwt = NULL;
        int r;

        r = ab_jwt_mint(s, cl, &jwt);
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot mint the JWT: %s", strerror(-r));
        if (!cJSON_AddStringToObject(reply, "jwt", jwt) ||
            !cJSON_AddNumberToObject(reply, "exp", (double)cl->exp))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        after->wipe = cJSON_GetObjectItemCaseSensitive(reply, "jwt");
        return 0;
}

int
h_mint_jwt(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy *pol = st->policy;
        struct secret_req sr = { 0 };
        const char *aud, *scope = NULL;
        uint64_t ttl = 60;
        char jti[33], sub[AB_RUN_ID_LEN + AB_NAME_MAX + 16];
        int r;

        if (ab_wire_get_string(req, "audience", AB_AUDIENCE_MAX, &aud) < 0 || !aud[0])
                return bad_field(err, "audience");
        r = ab_wire_get_string(req, "scope", AB_SCOPE_MAX, &scope);
        if (r == -EINVAL)
                return bad_field(err, "scope");
        r = ab_wire_get_u64(req, "ttl_s", UINT32_MAX, &ttl);
        if (r == -EINVAL || ttl == 0)
                return bad_field(err, "ttl_s");
        if (ttl > pol->jwt.max_ttl_s)
                return fail(err, AB_ERR_BAD_REQUEST, "ttl-too-long",
                            "ttl_s %llu exceeds the policy's jwt.max_ttl_s (%u)", (unsigned long long)ttl,
                            pol->jwt.max_ttl_s);
        if (secret_prologue(st, c, req, AB_OP_MINT_JWT, -1, &sr, err) < 0)
                return -1;
        random_hex(jti, 16);
        snprintf(sub, sizeof(sub), "run/%s/tool/%s", sr.tok->run, sr.tok->tool);
        struct ab_jwt_claims cl = {
                .issuer = pol->jwt.issuer ? pol->jwt.issuer : "agentbroker",
                .subject = sub,
                .audience = aud,
                .scope = scope,
                .run = sr.tok->run,
                .tool = sr.tok->tool,
                .iat = (uint64_t)time(NULL),
                .jti = jti,
        };
        cl.exp = cl.iat + ttl;
        return mint_reply(sr.s, &cl, reply, err, after);
}
