/* SPDX-License-Identifier: MIT */
/* One tool call inside a worker: its arguments, the results the module adds, progress,
 * cancellation, logging, and the secret operations it makes through the broker with the
 * call's token. Everything the call held is wiped when it ends (abmi_call_free). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/client.h"
#include "common/encode.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/wire.h"
#include "modules/lib/internal.h"

#define SIGN_DATA_MAX (16u * 1024) /* the broker's limit on data to sign */
#define AUDIENCE_MAX 512           /* the broker's limits on mint-jwt fields */
#define SCOPE_MAX 1024
#define JWT_MAX 8192

struct abmi_worker *abmi_current;

/* ---- errors ---- */

ABM_API int
abm_error_set(struct abm_error *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (code >= 0)
                code = -EIO;
        if (err && fmt) {
                va_start(ap, fmt);
                (void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
                abmi_utf8_trim(err->message);
        }
        return code;
}

/* ---- arguments ---- */

ABM_API const struct abm_json *
abm_call_args(const struct abm_call *call)
{
        return call ? (const struct abm_json *)call->args : NULL;
}

/* Printed on first use; NULL only when out of memory. */
ABM_API const char *
abm_call_args_text(const struct abm_call *call)
{
        struct abm_call *c = (struct abm_call *)call;

        if (!c)
                return NULL;
        if (!c->args_text)
                c->args_text = cJSON_PrintUnformatted(c->args);
        return c->args_text;
}

ABM_API size_t
abm_call_max_result_bytes(const struct abm_call *call)
{
        return call ? call->max_bytes : 0;
}

/* ---- results ---- */

/* Whether cost more bytes fit under the hard cap on results. */
static bool
results_fit(const struct abm_call *call, size_t cost)
{
        size_t used = call->text_bytes + call->structured_bytes;

        return cost <= ABMI_RESULTS_MAX && used <= ABMI_RESULTS_MAX - cost;
}

ABM_API int
abm_call_text(struct abm_call *call, const char *text, size_t len)
{
        char *copy = NULL;
        cJSON *block = NULL, *str;
        size_t escaped, cost;
        int r = -ENOMEM;

        if (!call || !text)
                return -EINVAL;
        if (len == (size_t)-1)
                len = strlen(text);
        if (!abmi_utf8_check(text, len, &escaped))
                return -EINVAL;
        cost = escaped + 2 + ABMI_BLOCK_OVERHEAD;
        if (!results_fit(call, cost))
                return -E2BIG;

        /* cJSON wants a NUL-terminated string: text with an explicit length may not be. */
        copy = malloc(len + 1);
        if (!copy)
                goto out;
        memcpy(copy, text, len);
        copy[len] = '\0';
        block = cJSON_CreateObject();
        if (!block || !cJSON_AddStringToObject(block, "type", "text"))
                goto out;
        str = cJSON_CreateString(copy);
        if (!str)
                goto out;
        cJSON_AddItemToObject(block, "text", str);
        if (!cJSON_AddItemToArray(call->content, block))
                goto out;
        block = NULL;
        call->text_bytes += cost;
        r = 0;
out:
        abmi_json_wipe_delete(block);
        ab_freezero(copy, len + 1);
        return r;
}

ABM_API int
abm_call_textf(struct abm_call *call, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;
        int n, r;

        if (!call || !fmt)
                return -EINVAL;
        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        r = abm_call_text(call, s, (size_t)n);
        ab_freezero(s, (size_t)n + 1);
        return r;
}

ABM_API int
abm_call_content(struct abm_call *call, const char *block_json)
{
        static const char *const types[] = { "text", "image", "audio", "resource", "resource_link" };
        const cJSON *type;
        cJSON *v;
        char *printed;
        size_t len, cost;
        bool known = false;

        if (!call || !block_json)
                return -EINVAL;
        len = strlen(block_json);
        if (len > ABMI_RESULTS_MAX)
                return -E2BIG;
        if (!abmi_utf8_check(block_json, len, NULL))
                return -EINVAL;
        v = ab_json_parse_exact(block_json, len);
        if (!v)
                return -EINVAL;
        type = cJSON_GetObjectItemCaseSensitive(v, "type");
        for (size_t i = 0; cJSON_IsString(type) && i < sizeof types / sizeof types[0]; i++)
                if (strcmp(type->valuestring, types[i]) == 0)
                        known = true;
        if (!cJSON_IsObject(v) || !known) {
                abmi_json_wipe_delete(v);
                return -EINVAL; /* MCP: a content block is an object of a known type */
        }
        printed = cJSON_PrintUnformatted(v);
        if (!printed) {
                abmi_json_wipe_delete(v);
                return -ENOMEM;
        }
        cost = strlen(printed) + 1;
        ab_wipe(printed, cost - 1);
        cJSON_free(printed);
        if (!results_fit(call, cost)) {
                abmi_json_wipe_delete(v);
                return -E2BIG;
        }
        if (!cJSON_AddItemToArray(call->content, v)) {
                abmi_json_wipe_delete(v);
                return -ENOMEM;
        }
        call->text_bytes += cost;
        return 0;
}

ABM_API int
abm_call_structured(struct abm_call *call, const char *json)
{
        cJSON *v;
        char *printed;
        size_t len, printed_len;

        if (!call || !json)
                return -EINVAL;
        len = strlen(json);
        if (len > ABMI_RESULTS_MAX)
                return -E2BIG;
        if (!abmi_utf8_check(json, len, NULL))
                return -EINVAL;
        v = ab_json_parse_exact(json, len);
        if (!v)
                return -EINVAL; /* also -ENOMEM, which cJSON does not tell apart */
        if (!cJSON_IsObject(v)) {
                abmi_json_wipe_delete(v);
                return -EINVAL; /* MCP: structuredContent is an object */
        }
        /* The size it takes in the result frame, as printed. */
        printed = cJSON_PrintUnformatted(v);
        if (!printed) {
                abmi_json_wipe_delete(v);
                return -ENOMEM;
        }
        printed_len = strlen(printed);
        ab_wipe(printed, printed_len);
        cJSON_free(printed);

        /* It replaces any earlier structuredContent: count without that one. */
        size_t old_bytes = call->structured_bytes;
        call->structured_bytes = 0;
        bool fits = results_fit(call, printed_len);
        call->structured_bytes = old_bytes;
        if (!fits) {
                abmi_json_wipe_delete(v);
                return -E2BIG;
        }
        abmi_json_wipe_delete(call->structured);
        call->structured = v;
        call->structured_bytes = printed_len;
        return 0;
}

/* ---- talking to the host ---- */

int
abmi_send(struct abmi_worker *w, const cJSON *msg)
{
        int r;

        if (w->host_gone)
                return -EPIPE;
        r = ab_frame_write(w->host_fd, msg);
        if (r == -EPIPE || r == -ECONNRESET)
                w->host_gone = true;
        return r;
}

/* Read what the host sent while the call runs. The only frame it may send then is
 * {"t":"cancel","id":N}; a cancel for an earlier call is ignored. EOF or anything else ends
 * the call as cancelled (and the worker after it). */
static void
poll_host(struct abm_call *call)
{
        struct abmi_worker *w = call->worker;

        while (!w->host_gone && !w->broken) {
                cJSON *msg = NULL;
                const cJSON *id;
                const char *t;
                int r = ab_frame_read(w->host_fd, &w->reader, &msg);

                if (r == 0)
                        return;
                if (r < 0) {
                        if (r == -EPIPE)
                                w->host_gone = true;
                        else {
                                ab_log(LOG_ERR, "%s: bad frame from the host: %s", w->name, strerror(-r));
                                w->broken = true;
                        }
                        break;
                }
                t = cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;
                id = cJSON_GetObjectItemCaseSensitive(msg, "id");
                if (strcmp(t, "cancel") == 0) {
                        if (cJSON_IsNumber(id) && id->valuedouble == (double)call->id)
                                call->cancelled = true;
                } else {
                        ab_log(LOG_ERR, "%s: unexpected \"%.16s\" frame from the host during a call",
                               w->name, t);
                        w->broken = true;
                }
                abmi_json_wipe_delete(msg);
        }
        call->cancelled = true;
}

ABM_API bool
abm_call_cancelled(struct abm_call *call)
{
        if (!call)
                return false;
        if (!call->cancelled && call->worker)
                poll_host(call);
        return call->cancelled;
}

ABM_API int
abm_call_progress(struct abm_call *call, double progress, double total, const char *message)
{
        char text[ABMI_MESSAGE_MAX];
        cJSON *msg;
        int r;

        if (!call)
                return -EINVAL;
        if (abm_call_cancelled(call))
                return -ECANCELED;
        if (!isfinite(progress) || !isfinite(total))
                return -EINVAL;
        if (call->have_progress && !(progress > call->last_progress))
                return -EINVAL; /* MCP: progress must increase */
        if (!call->worker)
                return -EIO;

        msg = cJSON_CreateObject();
        if (!msg || !cJSON_AddStringToObject(msg, "t", "progress") ||
            !cJSON_AddNumberToObject(msg, "id", (double)call->id) ||
            !cJSON_AddNumberToObject(msg, "progress", progress) ||
            (total > 0 && !cJSON_AddNumberToObject(msg, "total", total))) {
                cJSON_Delete(msg);
                return -ENOMEM;
        }
        if (message) {
                abmi_utf8_sanitize(text, sizeof(text), message);
                if (!cJSON_AddStringToObject(msg, "message", text)) {
                        cJSON_Delete(msg);
                        return -ENOMEM;
                }
        }
        r = abmi_send(call->worker, msg);
        cJSON_Delete(msg);
        if (r < 0)
                return call->worker->host_gone ? -ECANCELED : r;
        call->have_progress = true;
        call->last_progress = progress;
        return 0;
}

ABM_API void
abm_log(enum abm_log_level level, const char *fmt, ...)
{
        struct abmi_worker *w = abmi_current;
        char raw[ABMI_MESSAGE_MAX], text[ABMI_MESSAGE_MAX];
        int lvl = (int)level;
        cJSON *msg;
        va_list ap;

        if (!fmt)
                return;
        if (lvl < ABM_LOG_ERROR)
                lvl = ABM_LOG_ERROR;
        if (lvl > ABM_LOG_DEBUG)
                lvl = ABM_LOG_DEBUG;
        va_start(ap, fmt);
        (void)vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        abmi_utf8_trim(raw);
        abmi_utf8_sanitize(text, sizeof(text), raw);

        if (!w || w->host_gone) {
                ab_log(lvl, "%s", text);
                return;
        }
        msg = cJSON_CreateObject();
        if (msg && cJSON_AddStringToObject(msg, "t", "log") && cJSON_AddNumberToObject(msg, "level", lvl) &&
            cJSON_AddStringToObject(msg, "message", text))
                (void)abmi_send(w, msg);
        cJSON_Delete(msg);
}

/* ---- secrets, through the broker ---- */

void
abmi_broker_close(struct abmi_worker *w)
{
        ab_client_free(w->broker);
        w->broker = NULL;
}

/* Connect to the broker unless connected. Returns 0 or -EIO. */
static int
broker_connect(struct abmi_worker *w)
{
        const char *path = w->broker_path ? w->broker_path : AB_DEFAULT_SOCKET;
        int r;

        if (w->broker)
                return 0;
        if (w->confined) {
                /* confine.c: the connection made before the module loaded is the only one. */
                ab_log(LOG_ERR,
                       "%s: no broker connection (unreachable at start or lost): the worker exits after this call",
                       w->name);
                w->broker_lost = true;
                return -EIO;
        }
        r = ab_client_connect(path, &w->broker);
        if (r < 0) {
                ab_log(LOG_ERR, "%s: cannot connect to the broker at %s: %s", w->name, path, strerror(-r));
                return -EIO;
        }
        return 0;
}

/* Check a secret name the way the broker does. */
static bool
secret_name_ok(const char *name)
{
        return name && name[0] && strnlen(name, AB_NAME_MAX + 1) <= AB_NAME_MAX;
}

/* A secret operation's request: the envelope with the call's token, the tool's full name and
 * the secret. Returns 0 with *ret (free with abmi_json_wipe_delete), or -errno. */
static int
broker_request(struct abm_call *call, const char *op, const char *secret, cJSON **ret)
{
        cJSON *req;
        int r;

        call->have_denial = false;
        if (!call->worker || !call->token)
                return -EIO;
        r = broker_connect(call->worker);
        if (r < 0)
                return r;
        req = ab_client_request(call->worker->broker, op);
        if (!req || !cJSON_AddStringToObject(req, "token", call->token) ||
            !cJSON_AddStringToObject(req, "tool", call->tool_name) ||
            !cJSON_AddStringToObject(req, "secret", secret)) {
                abmi_json_wipe_delete(req);
                return -ENOMEM;
        }
        *ret = req;
        return 0;
}

/* Remember the reason of a refused operation (printable ASCII only: it comes from the broker). */
static void
set_denial(struct abm_call *call, const char *reason)
{
        size_t i = 0;

        for (; reason && reason[i] && i < sizeof(call->denial) - 1; i++)
                call->denial[i] = (reason[i] > ' ' && reason[i] < 0x7f) ? reason[i] : '?';
        call->denial[i] = '\0';
        call->have_denial = i > 0;
}

/* Send req (which is wiped and freed) and wait for the reply. A connection the broker closed
 * (idle timeout, restart) is reopened once. Returns 0 with the successful reply in *ret (free
 * with abmi_json_wipe_delete); -EPERM (denied: the reason is kept for abm_call_denial),
 * -ENOENT (the secret is not available), -EINVAL (refused as a bad request), -EIO. */
static int
broker_roundtrip(struct abm_call *call, cJSON *req, cJSON **ret)
{
        struct abmi_worker *w = call->worker;
        const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "op"));
        const cJSON *ok, *error, *reason;
        cJSON *reply = NULL;
        int r;

        r = ab_client_call(w->broker, req, ABMI_BROKER_TIMEOUT_MS, &reply);
        if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN) {
                abmi_broker_close(w);
                r = broker_connect(w);
                if (r == 0)
                        r = ab_client_call(w->broker, req, ABMI_BROKER_TIMEOUT_MS, &reply);
        }
        if (r < 0) {
                ab_log(LOG_ERR, "%s: broker request %s failed: %s", w->name, op ? op : "?", strerror(-r));
                abmi_broker_close(w);
                w->broker_lost = w->confined; /* it cannot be reopened: exit after this call */
                abmi_json_wipe_delete(req);
                return -EIO;
        }
        abmi_json_wipe_delete(req);

        ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
        if (cJSON_IsTrue(ok)) {
                *ret = reply;
                return 0;
        }
        error = cJSON_GetObjectItemCaseSensitive(reply, "error");
        reason = cJSON_GetObjectItemCaseSensitive(reply, "reason");
        set_denial(call, cJSON_GetStringValue(reason));
        if (cJSON_IsString(error) && (strcmp(error->valuestring, AB_ERR_DENIED) == 0 ||
                                      strcmp(error->valuestring, AB_ERR_NOT_PERMITTED) == 0))
                r = (cJSON_IsString(reason) && strcmp(reason->valuestring, "secret-unavailable") == 0)
                            ? -ENOENT
                            : -EPERM;
        else if (cJSON_IsString(error) && strcmp(error->valuestring, AB_ERR_BAD_REQUEST) == 0)
                r = -EINVAL;
        else {
                ab_log(LOG_ERR, "%s: broker request %s failed: %s", w->name, op ? op : "?",
                       cJSON_IsString(error) ? error->valuestring : "malformed reply");
                r = -EIO;
        }
        abmi_json_wipe_delete(reply);
        return r;
}

/* Tell the host a secret value this call redeemed, so that it can redact it from results. */
static int
send_redact(struct abm_call *call, const char *name, const char *value_b64)
{
        cJSON *msg = cJSON_CreateObject();
        int r = -ENOMEM;

        if (msg && cJSON_AddStringToObject(msg, "t", "redact") &&
            cJSON_AddNumberToObject(msg, "id", (double)call->id) &&
            cJSON_AddStringToObject(msg, "name", name) && cJSON_AddStringToObject(msg, "value", value_b64))
                r = abmi_send(call->worker, msg);
        abmi_json_wipe_delete(msg);
        return r < 0 ? -EIO : 0;
}

ABM_API int
abm_call_secret_read(struct abm_call *call, const char *name, const unsigned char **ret, size_t *ret_len)
{
        struct ab_secbuf *value = NULL, **list;
        unsigned char *bytes = NULL;
        size_t len = 0;
        cJSON *req = NULL, *reply = NULL;
        const char *b64;
        int r;

        if (!call || !secret_name_ok(name) || !ret || !ret_len)
                return -EINVAL;
        r = broker_request(call, "secret-read", name, &req);
        if (r < 0)
                return r;
        r = broker_roundtrip(call, req, &reply);
        if (r < 0)
                return r;
        b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "value"));
        if (!b64 || ab_base64_decode(b64, &bytes, &len) < 0) {
                ab_log(LOG_ERR, "%s: the broker's secret-read reply has no valid value", call->worker->name);
                r = -EIO;
                goto out;
        }
        /* In locked memory, NUL-terminated for modules that want a string. */
        r = ab_secbuf_new(len + 1, &value);
        if (r < 0)
                goto out;
        memcpy(value->data, bytes, len);
        value->data[len] = '\0';
        value->len = len;
        list = realloc(call->secrets, (call->n_secrets + 1) * sizeof(*list));
        if (!list) {
                r = -ENOMEM;
                goto out;
        }
        call->secrets = list;
        /* The host learns the value before the module sees it: no result can carry it unredacted. */
        r = send_redact(call, name, b64);
        if (r < 0)
                goto out;
        call->secrets[call->n_secrets++] = value;
        *ret = value->data;
        *ret_len = len;
        value = NULL;
out:
        ab_secbuf_free(value);
        ab_freezero(bytes, len);
        abmi_json_wipe_delete(reply);
        return r;
}

ABM_API int
abm_call_sign(struct abm_call *call, const char *name, const char *alg, const void *data, size_t len,
              unsigned char sig[64], size_t *ret_len)
{
        cJSON *req = NULL, *reply = NULL;
        char *data64 = NULL;
        unsigned char *s = NULL;
        size_t want, s_len = 0;
        const char *sig64;
        int r;

        if (!call || !secret_name_ok(name) || !alg || !sig || !ret_len || (len > 0 && !data))
                return -EINVAL;
        if (strcmp(alg, "hmac-sha256") == 0)
                want = 32;
        else if (strcmp(alg, "ed25519") == 0)
                want = 64;
        else
                return -EINVAL;
        if (len > SIGN_DATA_MAX)
                return -EINVAL;
        if (ab_base64_encode(data ? data : "", len, &data64) < 0)
                return -ENOMEM;
        r = broker_request(call, "secret-sign", name, &req);
        if (r < 0)
                goto out;
        if (!cJSON_AddStringToObject(req, "alg", alg) || !cJSON_AddStringToObject(req, "data", data64)) {
                abmi_json_wipe_delete(req);
                r = -ENOMEM;
                goto out;
        }
        r = broker_roundtrip(call, req, &reply);
        if (r < 0)
                goto out;
        sig64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "signature"));
        if (!sig64 || ab_base64_decode(sig64, &s, &s_len) < 0 || s_len != want) {
                ab_log(LOG_ERR, "%s: the broker's secret-sign reply has no valid signature",
                       call->worker->name);
                r = -EIO;
                goto out;
        }
        memcpy(sig, s, s_len);
        *ret_len = s_len;
out:
        ab_freezero(s, s_len);
        ab_strfreezero(data64);
        abmi_json_wipe_delete(reply);
        return r;
}

ABM_API int
abm_call_mint_jwt_exp(struct abm_call *call, const char *name, const char *audience, const char *scope,
                      unsigned ttl_s, const char **ret, int64_t *ret_exp)
{
        cJSON *req = NULL, *reply = NULL;
        const cJSON *exp;
        const char *jwt;
        char *copy = NULL, **list;
        int r;

        if (!call || !secret_name_ok(name) || !audience || !audience[0] ||
            strnlen(audience, AUDIENCE_MAX + 1) > AUDIENCE_MAX ||
            (scope && strnlen(scope, SCOPE_MAX + 1) > SCOPE_MAX) || !ret)
                return -EINVAL;
        r = broker_request(call, "mint-jwt", name, &req);
        if (r < 0)
                return r;
        if (!cJSON_AddStringToObject(req, "audience", audience) ||
            (scope && !cJSON_AddStringToObject(req, "scope", scope)) ||
            (ttl_s > 0 && !cJSON_AddNumberToObject(req, "ttl_s", ttl_s))) {
                abmi_json_wipe_delete(req);
                return -ENOMEM;
        }
        r = broker_roundtrip(call, req, &reply);
        if (r < 0)
                return r;
        jwt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "jwt"));
        exp = cJSON_GetObjectItemCaseSensitive(reply, "exp");
        if (!jwt || !jwt[0] || strnlen(jwt, JWT_MAX + 1) > JWT_MAX || !cJSON_IsNumber(exp) ||
            !(exp->valuedouble >= 0 && exp->valuedouble < (double)AB_JSON_INT_MAX)) {
                ab_log(LOG_ERR, "%s: the broker's mint-jwt reply has no valid JWT", call->worker->name);
                r = -EIO;
                goto out;
        }
        list = realloc(call->jwts, (call->n_jwts + 1) * sizeof(*list));
        if (!list || !(copy = strdup(jwt))) {
                if (list)
                        call->jwts = list;
                r = -ENOMEM;
                goto out;
        }
        call->jwts = list;
        call->jwts[call->n_jwts++] = copy;
        *ret = copy;
        if (ret_exp)
                *ret_exp = (int64_t)exp->valuedouble;
out:
        abmi_json_wipe_delete(reply);
        return r;
}

ABM_API int
abm_call_mint_jwt(struct abm_call *call, const char *name, const char *audience, const char *scope,
                  unsigned ttl_s, const char **ret)
{
        return abm_call_mint_jwt_exp(call, name, audience, scope, ttl_s, ret, NULL);
}

ABM_API const char *
abm_call_denial(const struct abm_call *call)
{
        return call && call->have_denial ? call->denial : NULL;
}

/* ---- the call's life ---- */

/* Find a tool of the module by its short or full ("<module>.<tool>") name. */
static const struct abm_tool *
find_tool(const struct abmi_worker *w, const char *name)
{
        size_t mlen = strlen(w->name);
        const char *dot = strchr(name, '.');

        if (dot) {
                if ((size_t)(dot - name) != mlen || strncmp(name, w->name, mlen) != 0)
                        return NULL;
                name = dot + 1;
        }
        for (size_t i = 0; i < w->module->n_tools; i++)
                if (strcmp(w->module->tools[i].name, name) == 0)
                        return &w->module->tools[i];
        return NULL;
}

int
abmi_call_new(struct abmi_worker *w, const cJSON *frame, struct abm_call **ret, struct abm_error *err)
{
        struct abm_call *call;
        const char *tool, *token;
        uint64_t max_bytes = AB_DEFAULT_MAX_RESULT_BYTES;
        cJSON *args;
        int r;

        call = calloc(1, sizeof(*call));
        if (!call)
                return abm_error_set(err, -ENOMEM, "out of memory");
        call->worker = w;
        r = -EINVAL;
        if (ab_wire_get_u64(frame, "id", AB_JSON_INT_MAX, &call->id) < 0) {
                abm_error_set(err, r, "call frame without a valid id");
                goto fail;
        }
        if (ab_wire_get_string(frame, "tool", 2 * ABM_NAME_MAX + 1, &tool) < 0) {
                abm_error_set(err, r, "call frame without a valid tool");
                goto fail;
        }
        call->tool = find_tool(w, tool);
        if (!call->tool) {
                r = abm_error_set(err, -ENOENT, "module %s has no tool %s", w->name, tool);
                goto fail;
        }
        snprintf(call->tool_name, sizeof(call->tool_name), "%s.%s", w->name, call->tool->name);
        if (ab_wire_get_string(frame, "token", AB_NAME_MAX, &token) < 0) {
                abm_error_set(err, r, "call frame without a valid token");
                goto fail;
        }
        r = ab_wire_get_u64(frame, "max_bytes", SIZE_MAX, &max_bytes);
        if (r == -EINVAL) {
                abm_error_set(err, r, "call frame with an invalid max_bytes");
                goto fail;
        }
        call->max_bytes = (size_t)max_bytes;

        args = cJSON_GetObjectItemCaseSensitive(frame, "args");
        if (args && !cJSON_IsObject(args)) {
                r = abm_error_set(err, -EINVAL, "call frame whose args are not an object");
                goto fail;
        }
        r = -ENOMEM;
        call->args = args ? cJSON_Duplicate(args, true) : cJSON_CreateObject();
        call->token = strdup(token);
        call->content = cJSON_CreateArray();
        if (!call->args || !call->token || !call->content) {
                abm_error_set(err, r, "out of memory");
                goto fail;
        }
        *ret = call;
        return 0;
fail:
        abmi_call_free(call);
        return r;
}

/* The message the result carries for a hook that returned rc < 0. */
static void
error_message(int rc, const struct abm_error *err, bool lost, char *buf, size_t size)
{
        char raw[ABM_ERROR_MAX];

        if (rc == -ECANCELED) {
                snprintf(buf, size, "cancelled");
                return;
        }
        /* The module wrote err: do not trust it to be terminated or UTF-8. */
        memcpy(raw, err->message, sizeof(raw));
        raw[sizeof(raw) - 1] = '\0';
        abmi_utf8_sanitize(buf, size, raw);
        if (!buf[0])
                snprintf(buf, size, "the tool failed: %s", strerror(-rc));
        if (lost) {
                size_t n = strlen(buf);
                snprintf(buf + n, size - n,
                         " (the worker has no broker connection: secrets cannot be used; "
                         "a fresh worker serves the next call)");
        }
}

cJSON *
abmi_call_result(struct abm_call *call, int rc, const struct abm_error *err)
{
        cJSON *msg = cJSON_CreateObject();

        if (!msg || !cJSON_AddStringToObject(msg, "t", "result") ||
            !cJSON_AddNumberToObject(msg, "id", (double)call->id) ||
            !cJSON_AddBoolToObject(msg, "isError", rc < 0))
                goto fail;
        if (rc < 0) {
                char message[ABM_ERROR_MAX];
                cJSON *content, *block;

                /* Partial results of a failed call are dropped: only the message is shown. */
                error_message(rc, err, call->worker && call->worker->broker_lost, message, sizeof(message));
                content = cJSON_AddArrayToObject(msg, "content");
                block = cJSON_CreateObject();
                if (!content || !block || !cJSON_AddItemToArray(content, block) ||
                    !cJSON_AddStringToObject(block, "type", "text") ||
                    !cJSON_AddStringToObject(block, "text", message) ||
                    !cJSON_AddStringToObject(msg, "error", message))
                        goto fail;
                return msg;
        }
        /* Move the results into the frame; abmi_call_free() no longer sees them. */
        if (!cJSON_AddItemToObject(msg, "content", call->content))
                goto fail;
        call->content = NULL;
        if (call->structured) {
                if (!cJSON_AddItemToObject(msg, "structuredContent", call->structured))
                        goto fail;
                call->structured = NULL;
        }
        return msg;
fail:
        abmi_json_wipe_delete(msg);
        return NULL;
}

void
abmi_call_free(struct abm_call *call)
{
        if (!call)
                return;
        abmi_json_wipe_delete(call->args);
        ab_strfreezero(call->args_text);
        ab_strfreezero(call->token);
        abmi_json_wipe_delete(call->content);
        abmi_json_wipe_delete(call->structured);
        for (size_t i = 0; i < call->n_secrets; i++)
                ab_secbuf_free(call->secrets[i]);
        free(call->secrets);
        for (size_t i = 0; i < call->n_jwts; i++)
                ab_strfreezero(call->jwts[i]);
        free(call->jwts);
        abmi_egress_end(call);
        ab_freezero(call, sizeof(*call));
}

void
abmi_call_set_denial(struct abm_call *call, const char *reason)
{
        set_denial(call, reason);
}
