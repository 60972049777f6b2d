/* The host's broker client: run-open/close, host-config, call-begin and call-end over
 * common/client.h, each with HB_TIMEOUT_MS. A connection the broker closed (its idle timeout)
 * is re-opened once per request before the request fails. Tokens are wiped from every copy
 * this file makes (request objects, reply objects, grants). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/client.h"
#include "common/encode.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/wire.h"
#include "host/brokerc.h"

#define HB_TOKEN_LEN 47                /* "abt_" + 43 base64url characters */
#define HB_CONFIG_BATCH 200            /* tool names per host-config request (the broker takes 256 members) */

struct hb_broker {
        char *path;
        struct ab_client *client;      /* NULL after a failed reconnect */
};

/* The reasons the broker gives for a denial (docs/protocol.md): a reply's reason is mapped to
 * one of these static strings, anything else to "denied". */
static const char *const known_reasons[] = {
        "client-not-allowed", "not-admin", "too-many-runs", "run-unknown", "run-closed", "wrong-run-owner",
        "run-expired", "tool-not-allowed", "budget-exhausted", "rate-limited", "args-too-large", "args-mismatch",
        "args-constraint", "worker-invalid", "too-many-tokens", "audit-failed", "token-malformed",
        "token-unknown", "token-revoked", "token-expired", "token-exhausted", "wrong-peer", "wrong-tool",
        "secret-not-scoped", "op-not-allowed", "secret-unavailable", "ttl-too-long", "policy-invalid",
};

static const char *
static_reason(const cJSON *reply)
{
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(reply, "reason");

        if (cJSON_IsString(r))
                for (size_t i = 0; i < AB_ELEMENTSOF(known_reasons); i++)
                        if (strcmp(r->valuestring, known_reasons[i]) == 0)
                                return known_reasons[i];
        return "denied";
}

/* Wipe a string member of obj in place (a token in a request or reply). */
static void
wipe_member(cJSON *obj, const char *key)
{
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (cJSON_IsString(v) && v->valuestring)
                explicit_bzero(v->valuestring, strlen(v->valuestring));
}

int
hb_connect(const char *path, struct hb_broker **ret)
{
        struct hb_broker *b;
        int r;

        if (!path || !ret)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->path = strdup(path);
        if (!b->path) {
                free(b);
                return -ENOMEM;
        }
        r = ab_client_connect(path, &b->client);
        if (r < 0) {
                free(b->path);
                free(b);
                return r;
        }
        *ret = b;
        return 0;
}

void
hb_free(struct hb_broker *b)
{
        if (!b)
                return;
        ab_client_free(b->client);
        free(b->path);
        free(b);
}

/* The errno for an error reply's "error" code. */
static int
error_to_errno(const cJSON *reply)
{
        static const struct {
                const char *code;
                int err;
        } map[] = {
                { AB_ERR_DENIED, EPERM },         { AB_ERR_NOT_PERMITTED, EACCES }, { AB_ERR_BAD_REQUEST, EINVAL },
                { AB_ERR_TOO_LARGE, E2BIG },      { AB_ERR_UNKNOWN_OP, EOPNOTSUPP }, { AB_ERR_UNSUPPORTED_VERSION, EPROTO },
                { AB_ERR_INTERNAL, EIO },
        };
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");

        if (cJSON_IsString(e))
                for (size_t i = 0; i < AB_ELEMENTSOF(map); i++)
                        if (strcmp(e->valuestring, map[i].code) == 0)
                                return -map[i].err;
        return -EIO;
}

/* Send a request for op made by fill (which adds the fields; may be NULL) and wait for the
 * reply. A connection closed by the broker is re-opened once and the request sent again.
 * Returns 0 with *ret the successful reply; -EPERM (denied) or -EACCES (not-permitted) with
 * *ret the error reply; other -errno without a reply. wipe_key: a request member wiped
 * before the request is freed (or NULL). */
static int
request(struct hb_broker *b, cJSON *req_fields, const char *op, const char *wipe_key, cJSON **ret)
{
        cJSON *reply = NULL;
        int r = -ECONNRESET;

        for (int attempt = 0; attempt < 2; attempt++) {
                cJSON *req;
                const cJSON *child;

                if (!b->client) {
                        r = ab_client_connect(b->path, &b->client);
                        if (r < 0)
                                return r;
                }
                req = ab_client_request(b->client, op);
                if (!req)
                        return -ENOMEM;
                /* Copy the fields in (the envelope comes first, as the protocol shows it). */
                cJSON_ArrayForEach(child, req_fields) {
                        cJSON *dup = cJSON_Duplicate(child, true);

                        if (!dup || !cJSON_AddItemToObject(req, child->string, dup)) {
                                cJSON_Delete(dup);
                                if (wipe_key)
                                        wipe_member(req, wipe_key);
                                cJSON_Delete(req);
                                return -ENOMEM;
                        }
                }
                r = ab_client_call(b->client, req, HB_TIMEOUT_MS, &reply);
                if (wipe_key)
                        wipe_member(req, wipe_key);
                cJSON_Delete(req);
                if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN) {
                        /* Closed by the broker (idle timeout, restart): once more on a new connection. */
                        ab_client_free(b->client);
                        b->client = NULL;
                        continue;
                }
                if (r == -ETIMEDOUT) {
                        /* A late reply would be taken for the next request's: start afresh. */
                        ab_client_free(b->client);
                        b->client = NULL;
                }
                if (r < 0)
                        return r;
                break;
        }
        if (r < 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                r = error_to_errno(reply);
                if (r == -EPERM || r == -EACCES) {
                        *ret = reply;
                        return r;
                }
                {
                        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(reply, "message");

                        log_warning("broker: %s failed: %s%s%.256s", op,
                                    cJSON_IsString(cJSON_GetObjectItemCaseSensitive(reply, "error"))
                                            ? cJSON_GetObjectItemCaseSensitive(reply, "error")->valuestring
                                            : "error",
                                    cJSON_IsString(msg) ? ": " : "", cJSON_IsString(msg) ? msg->valuestring : "");
                }
                cJSON_Delete(reply);
                return r;
        }
        *ret = reply;
        return 0;
}

int
hb_run_open(struct hb_broker *b, const char *label, char **ret, const char **ret_reason)
{
        cJSON *fields = NULL, *reply = NULL;
        const cJSON *run;
        char *s;
        int r;

        if (!b || !ret)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || (label && !cJSON_AddStringToObject(fields, "label", label))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "run-open", NULL, &reply);
        cJSON_Delete(fields);
        if (r == -EPERM || r == -EACCES) {
                if (ret_reason)
                        *ret_reason = static_reason(reply);
                cJSON_Delete(reply);
                return -EPERM;
        }
        if (r < 0)
                return r;
        run = cJSON_GetObjectItemCaseSensitive(reply, "run");
        if (!cJSON_IsString(run) || !run->valuestring[0] || strlen(run->valuestring) > AB_NAME_MAX) {
                cJSON_Delete(reply);
                return -EBADMSG;
        }
        s = strdup(run->valuestring);
        cJSON_Delete(reply);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int
hb_run_close(struct hb_broker *b, const char *run)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !run)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "run-close", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

/* One host-config request for names[0..n). Merges the reply's "tools" into tools and, when
 * modules is still NULL, takes the reply's "modules". Returns 0 or -errno. */
static int
host_config_batch(struct hb_broker *b, const char *const *names, size_t n, cJSON *tools, cJSON **modules)
{
        cJSON *fields, *arr, *reply = NULL, *t, *m;
        int r;

        fields = cJSON_CreateObject();
        arr = fields ? cJSON_AddArrayToObject(fields, "tools") : NULL;
        if (!arr) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                cJSON *s = cJSON_CreateString(names[i]);

                if (!s || !cJSON_AddItemToArray(arr, s)) {
                        cJSON_Delete(s);
                        cJSON_Delete(fields);
                        return -ENOMEM;
                }
        }
        r = request(b, fields, "host-config", NULL, &reply);
        cJSON_Delete(fields);
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        t = cJSON_GetObjectItemCaseSensitive(reply, "tools");
        m = cJSON_GetObjectItemCaseSensitive(reply, "modules");
        if (!cJSON_IsObject(t) || (m && !cJSON_IsObject(m))) {
                cJSON_Delete(reply);
                return -EBADMSG;
        }
        while (t->child) {
                cJSON *item = cJSON_DetachItemViaPointer(t, t->child);

                if (!cJSON_IsObject(item) || cJSON_GetObjectItemCaseSensitive(tools, item->string)) {
                        cJSON_Delete(item);
                        continue;
                }
                cJSON_AddItemToObject(tools, item->string, item);
        }
        if (!*modules)
                *modules = m ? cJSON_DetachItemViaPointer(reply, m) : cJSON_CreateObject();
        cJSON_Delete(reply);
        return *modules ? 0 : -ENOMEM;
}

int
hb_host_config(struct hb_broker *b, const char *const *tools, size_t n, cJSON **ret)
{
        cJSON *out = NULL, *t, *modules = NULL;
        size_t i = 0;
        int r;

        if (!b || !ret || (n > 0 && !tools))
                return -EINVAL;
        out = cJSON_CreateObject();
        t = out ? cJSON_AddObjectToObject(out, "tools") : NULL;
        if (!t) {
                cJSON_Delete(out);
                return -ENOMEM;
        }
        /* The broker takes at most 256 members in an array: ask in batches. */
        do {
                size_t k = n - i < HB_CONFIG_BATCH ? n - i : HB_CONFIG_BATCH;

                r = host_config_batch(b, tools + i, k, t, &modules);
                if (r < 0) {
                        cJSON_Delete(modules);
                        cJSON_Delete(out);
                        return r;
                }
                i += k;
        } while (i < n);
        cJSON_AddItemToObject(out, "modules", modules);
        *ret = out;
        return 0;
}

/* Whether s is a call token: "abt_" and 43 base64url characters. */
static bool
token_ok(const char *s)
{
        if (strlen(s) != HB_TOKEN_LEN || strncmp(s, "abt_", 4) != 0)
                return false;
        for (const char *p = s + 4; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_'))
                        return false;
        return true;
}

int
hb_call_begin(struct hb_broker *b, const char *run, const char *tool, const char *args_json, pid_t worker_pid,
              unsigned ttl_s, struct hb_grant *ret, char **ret_reason, char **ret_message)
{
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        _cleanup_free_ char *hex = NULL;
        cJSON *fields = NULL, *reply = NULL;
        const cJSON *token, *call;
        size_t len;
        int r;

        if (!b || !run || !tool || !ret)
                return -EINVAL;
        if (!args_json)
                args_json = "{}";
        len = strlen(args_json);
        if (!EVP_Digest(args_json, len, digest, &dlen, EVP_sha256(), NULL))
                return -EIO;
        r = ab_hex_encode(digest, dlen, &hex);
        if (r < 0)
                return r;

        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) || !cJSON_AddStringToObject(fields, "tool", tool) ||
            !cJSON_AddStringToObject(fields, "args_sha256", hex) ||
            !cJSON_AddNumberToObject(fields, "args_len", (double)len) ||
            (worker_pid > 0 && !cJSON_AddNumberToObject(fields, "worker_pid", (double)worker_pid)) ||
            (ttl_s > 0 && !cJSON_AddNumberToObject(fields, "ttl_s", ttl_s))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        /* The text itself, so that the broker can check argument constraints; when it does not
         * fit in a message the digest and length go alone (the broker then decides by size). */
        if (len <= AB_MSG_MAX) {
                if (!cJSON_AddStringToObject(fields, "args", args_json)) {
                        cJSON_Delete(fields);
                        return -ENOMEM;
                }
        }
        r = request(b, fields, "call-begin", NULL, &reply);
        if (r == -E2BIG && cJSON_GetObjectItemCaseSensitive(fields, "args")) {
                cJSON_DeleteItemFromObjectCaseSensitive(fields, "args");
                r = request(b, fields, "call-begin", NULL, &reply);
        }
        cJSON_Delete(fields);
        if (r == -EPERM || r == -EACCES) {
                const cJSON *msg = cJSON_GetObjectItemCaseSensitive(reply, "message");
                char *reason = strdup(static_reason(reply));
                char *message = strdup(cJSON_IsString(msg) ? msg->valuestring : "");

                cJSON_Delete(reply);
                if (!reason || !message) {
                        free(reason);
                        free(message);
                        return -ENOMEM;
                }
                if (ret_reason)
                        *ret_reason = reason;
                else
                        free(reason);
                if (ret_message)
                        *ret_message = message;
                else
                        free(message);
                return -EPERM;
        }
        if (r < 0)
                return r;

        token = cJSON_GetObjectItemCaseSensitive(reply, "token");
        call = cJSON_GetObjectItemCaseSensitive(reply, "call");
        if (!cJSON_IsString(token) || !token_ok(token->valuestring) || !cJSON_IsNumber(call) || call->valuedouble < 0 ||
            call->valuedouble > 9007199254740992.0) {
                wipe_member(reply, "token");
                cJSON_Delete(reply);
                return -EBADMSG;
        }
        explicit_bzero(ret, sizeof(*ret));
        memcpy(ret->token, token->valuestring, HB_TOKEN_LEN + 1);
        ret->call = (uint64_t)call->valuedouble;
        wipe_member(reply, "token");
        cJSON_Delete(reply);
        return 0;
}

int
hb_call_end(struct hb_broker *b, const struct hb_grant *g, const char *status, uint64_t result_bytes,
            uint64_t duration_ms)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !g || !status || !g->token[0])
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "token", g->token) ||
            !cJSON_AddStringToObject(fields, "status", status) ||
            !cJSON_AddNumberToObject(fields, "result_bytes", (double)result_bytes) ||
            !cJSON_AddNumberToObject(fields, "duration_ms", (double)duration_ms)) {
                wipe_member(fields, "token");
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "call-end", "token", &reply);
        wipe_member(fields, "token");
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

void
hb_grant_clear(struct hb_grant *g)
{
        if (g)
                explicit_bzero(g, sizeof(*g));
}

int
hb_http_token_check(struct hb_broker *b, const char *token, unsigned *ret_ttl_s, const char **ret_reason)
{
        cJSON *fields, *reply = NULL;
        const cJSON *ttl;
        int r;

        if (!b || !token)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "token", token)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "http-token-check", "token", &reply);
        cJSON_Delete(fields);
        if (r == -EPERM) {
                *ret_reason = static_reason(reply);
                cJSON_Delete(reply);
                return r;
        }
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        ttl = cJSON_GetObjectItemCaseSensitive(reply, "expires_in_ms");
        *ret_ttl_s = cJSON_IsNumber(ttl) && ttl->valuedouble > 0 ? (unsigned)(ttl->valuedouble / 1000.0) : 0;
        cJSON_Delete(reply);
        return 0;
}

int
hb_http_listener(struct hb_broker *b, const char *address, const char *auth)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !address || !auth)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "address", address) ||
            !cJSON_AddStringToObject(fields, "auth", auth)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "http-listener", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

int
hb_identity_jwt(struct hb_broker *b, const char *audience, const char *session, const char *run, char **ret_jwt)
{
        cJSON *fields, *reply = NULL;
        const cJSON *jwt;
        char *s;
        int r;

        if (!b || !audience || !ret_jwt)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "audience", audience) ||
            (session && !cJSON_AddStringToObject(fields, "session", session)) ||
            (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "identity-jwt", NULL, &reply);
        cJSON_Delete(fields);
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        jwt = cJSON_GetObjectItemCaseSensitive(reply, "jwt");
        s = cJSON_IsString(jwt) && jwt->valuestring[0] ? strdup(jwt->valuestring) : NULL;
        wipe_member(reply, "jwt");
        cJSON_Delete(reply);
        if (!s)
                return cJSON_IsString(jwt) ? -ENOMEM : -EBADMSG;
        *ret_jwt = s;
        return 0;
}

int
hb_tunnel_event(struct hb_broker *b, const char *event, const char *url, const char *session, const char *reason,
                const char *run)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !event || !url || !session)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "event", event) || !cJSON_AddStringToObject(fields, "url", url) ||
            !cJSON_AddStringToObject(fields, "session", session) ||
            (reason && !cJSON_AddStringToObject(fields, "reason", reason)) ||
            (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "tunnel-event", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}
