/* SPDX-License-Identifier: MIT */
/* The broker protocol codec (docs/protocol.md): envelope checks and typed field access. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/frame.h"
#include "common/jsonscan.h"
#include "common/limits.h"
#include "common/wire.h"

/* Check nesting depth and member counts of a parsed value, recursively.
 * Returns 0 or -EBADMSG. */
static int
check_shape(const cJSON *v, unsigned depth)
{
        const cJSON *c;
        unsigned n = 0;

        if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
                return 0;
        if (depth > AB_MSG_MAX_DEPTH)
                return -EBADMSG;
        cJSON_ArrayForEach(c, v)
        {
                if (++n > AB_MSG_MAX_MEMBERS)
                        return -EBADMSG;
                if (check_shape(c, depth + 1) < 0)
                        return -EBADMSG;
        }
        return 0;
}

int
ab_wire_get_u64(const cJSON *msg, const char *key, uint64_t max, uint64_t *ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, key);
        double d;

        if (!v)
                return -ENOENT;
        if (!cJSON_IsNumber(v))
                return -EINVAL;
        d = v->valuedouble;
        if (!isfinite(d) || d < 0 || d > (double)max || d != floor(d))
                return -EINVAL;
        *ret = (uint64_t)d;
        return 0;
}

int
ab_wire_get_string(const cJSON *msg, const char *key, size_t max_len, const char **ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, key);

        if (!v)
                return -ENOENT;
        if (!cJSON_IsString(v) || !v->valuestring)
                return -EINVAL;
        if (strlen(v->valuestring) > max_len)
                return -EINVAL;
        *ret = v->valuestring;
        return 0;
}

int
ab_wire_get_bool(const cJSON *msg, const char *key, bool *ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, key);

        if (!v)
                return -ENOENT;
        if (!cJSON_IsBool(v))
                return -EINVAL;
        *ret = cJSON_IsTrue(v);
        return 0;
}

/* What a message may be before cJSON sees it: no NUL, nested at most AB_MSG_MAX_DEPTH. */
static const struct ab_json_scan_limits scan_limits = { .max_depth = AB_MSG_MAX_DEPTH };

int
ab_wire_decode(const void *buf, size_t len, cJSON **ret, const char **ret_op, const char **ret_err)
{
        cJSON *msg = NULL;
        const char *op, *err = NULL;
        uint64_t v, id;
        int r;

        if (len > AB_MSG_MAX) {
                err = "message too large";
                r = -E2BIG;
                goto out;
        }
        if (len == 0 || ab_json_scan(buf, len, &scan_limits, NULL) != AB_JSON_SCAN_OK) {
                err = "message is empty, contains NUL bytes or is nested too deeply";
                r = -EBADMSG;
                goto out;
        }
        msg = ab_json_parse_exact(buf, len);
        if (!msg || !cJSON_IsObject(msg)) {
                err = "message is not a JSON object";
                r = -EBADMSG;
                goto out;
        }
        if (check_shape(msg, 1) < 0) {
                err = "message nests too deeply or has too many members";
                r = -EBADMSG;
                goto out;
        }
        if (ab_wire_get_u64(msg, "id", AB_JSON_INT_MAX, &id) < 0) {
                err = "missing or invalid \"id\"";
                r = -EBADMSG;
                goto out;
        }
        if (ab_wire_get_u64(msg, "v", UINT32_MAX, &v) < 0) {
                err = "missing or invalid \"v\"";
                r = -EBADMSG;
                goto out;
        }
        if (ab_wire_get_string(msg, "op", AB_NAME_MAX, &op) < 0 || op[0] == '\0') {
                err = "missing or invalid \"op\"";
                r = -EBADMSG;
                goto out;
        }
        if (v != AB_PROTO_VERSION) {
                /* Hand the message back so the caller can answer this id. */
                *ret = msg;
                *ret_op = op;
                if (ret_err)
                        *ret_err = "unsupported protocol version";
                return -EPROTO;
        }
        *ret = msg;
        *ret_op = op;
        return 0;
out:
        cJSON_Delete(msg);
        if (ret_err)
                *ret_err = err;
        return r;
}

int
ab_wire_encode(const cJSON *msg, char **ret, size_t *ret_len)
{
        char *s = cJSON_PrintUnformatted(msg);
        size_t n;

        if (!s)
                return -ENOMEM;
        n = strlen(s);
        if (n > AB_MSG_MAX) {
                cJSON_free(s);
                return -E2BIG;
        }
        *ret = s;
        *ret_len = n;
        return 0;
}

/* Start an envelope with v and id. */
static cJSON *
envelope(uint64_t id)
{
        cJSON *m = cJSON_CreateObject();

        if (!m)
                return NULL;
        if (!cJSON_AddNumberToObject(m, "v", AB_PROTO_VERSION) ||
            !cJSON_AddNumberToObject(m, "id", (double)id)) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}

cJSON *
ab_wire_request(const char *op, uint64_t id)
{
        cJSON *m = envelope(id);

        if (m && !cJSON_AddStringToObject(m, "op", op)) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}

cJSON *
ab_wire_reply_ok(uint64_t id)
{
        cJSON *m = envelope(id);

        if (m && !cJSON_AddTrueToObject(m, "ok")) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}

cJSON *
ab_wire_reply_error(uint64_t id, const char *code, const char *reason, const char *message)
{
        cJSON *m = envelope(id);

        if (!m)
                return NULL;
        if (!cJSON_AddFalseToObject(m, "ok") || !cJSON_AddStringToObject(m, "error", code) ||
            (reason && !cJSON_AddStringToObject(m, "reason", reason)) ||
            (message && !cJSON_AddStringToObject(m, "message", message))) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}
