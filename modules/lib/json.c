/* SPDX-License-Identifier: MIT */
/* The abm_json_* accessors (a struct abm_json is a cJSON node, read-only to modules) and the
 * library's UTF-8 and JSON-wiping helpers. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/utf8.h"
#include "modules/lib/internal.h"
#include "common/secmem.h"

static const cJSON *
J(const struct abm_json *v)
{
        return (const cJSON *)v;
}

/* Look up key in obj and check its type with is. Returns 0 with *ret, -EINVAL when obj is not
 * an object, key is NULL or the member has another type, -ENOENT when absent. */
static int
member(const struct abm_json *obj, const char *key, cJSON_bool (*is)(const cJSON *), const cJSON **ret)
{
        const cJSON *item;

        if (!cJSON_IsObject(J(obj)) || !key)
                return -EINVAL;
        item = cJSON_GetObjectItemCaseSensitive(J(obj), key);
        if (!item)
                return -ENOENT;
        if (!is(item))
                return -EINVAL;
        *ret = item;
        return 0;
}

ABM_API int
abm_json_get_string(const struct abm_json *obj, const char *key, const char **ret)
{
        const cJSON *item;
        int r = member(obj, key, cJSON_IsString, &item);

        if (r == 0)
                *ret = item->valuestring;
        return r;
}

ABM_API int
abm_json_get_int(const struct abm_json *obj, const char *key, int64_t *ret)
{
        const cJSON *item;
        int r = member(obj, key, cJSON_IsNumber, &item);
        double d;

        if (r < 0)
                return r;
        d = item->valuedouble;
        /* -2^63 <= d < 2^63, and integral (NaN fails both comparisons). */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || (double)(int64_t)d != d)
                return -EINVAL;
        *ret = (int64_t)d;
        return 0;
}

ABM_API int
abm_json_get_number(const struct abm_json *obj, const char *key, double *ret)
{
        const cJSON *item;
        int r = member(obj, key, cJSON_IsNumber, &item);

        if (r == 0)
                *ret = item->valuedouble;
        return r;
}

ABM_API int
abm_json_get_bool(const struct abm_json *obj, const char *key, bool *ret)
{
        const cJSON *item;
        int r = member(obj, key, cJSON_IsBool, &item);

        if (r == 0)
                *ret = cJSON_IsTrue(item);
        return r;
}

ABM_API int
abm_json_get_object(const struct abm_json *obj, const char *key, const struct abm_json **ret)
{
        const cJSON *item;
        int r = member(obj, key, cJSON_IsObject, &item);

        if (r == 0)
                *ret = (const struct abm_json *)item;
        return r;
}

ABM_API int
abm_json_get_array(const struct abm_json *obj, const char *key, const struct abm_json **ret)
{
        const cJSON *item;
        int r = member(obj, key, cJSON_IsArray, &item);

        if (r == 0)
                *ret = (const struct abm_json *)item;
        return r;
}

ABM_API size_t
abm_json_array_size(const struct abm_json *arr)
{
        if (!cJSON_IsArray(J(arr)))
                return 0;
        return (size_t)cJSON_GetArraySize(J(arr));
}

ABM_API const struct abm_json *
abm_json_array_at(const struct abm_json *arr, size_t i)
{
        const cJSON *item;

        if (!cJSON_IsArray(J(arr)))
                return NULL;
        cJSON_ArrayForEach(item, J(arr)) if (i-- == 0) return (const struct abm_json *)item;
        return NULL;
}

ABM_API const char *
abm_json_string(const struct abm_json *v)
{
        return cJSON_IsString(J(v)) ? J(v)->valuestring : NULL;
}

/* ---- UTF-8 ---- */

bool
abmi_utf8_check(const char *s, size_t len, size_t *ret_escaped)
{
        const unsigned char *p = (const unsigned char *)s, *end = p + len;
        size_t escaped = 0;

        while (p < end) {
                unsigned char c = *p;

                if (c < 0x80) {
                        if (c == 0)
                                return false;
                        /* As cJSON's print_string_ptr escapes. */
                        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' ||
                            c == '\t')
                                escaped += 2;
                        else if (c < 0x20)
                                escaped += 6;
                        else
                                escaped += 1;
                        p++;
                        continue;
                }
                size_t n = ab_utf8_seq_len((const char *)p, (size_t)(end - p));
                if (n == 0)
                        return false;
                escaped += n;
                p += n;
        }
        if (ret_escaped)
                *ret_escaped = escaped;
        return true;
}

void
abmi_utf8_trim(char *s)
{
        size_t len = strlen(s);

        /* A sequence is at most 4 bytes: its lead byte is among the last 4. */
        for (size_t back = 1; back <= 4 && back <= len; back++) {
                unsigned char c = (unsigned char)s[len - back];

                if (c < 0x80)
                        return; /* ASCII: the tail is complete */
                if (c >= 0xc0) {
                        if (ab_utf8_seq_len(s + len - back, back) != back)
                                s[len - back] = '\0';
                        return;
                }
        }
}

void
abmi_utf8_sanitize(char *dst, size_t dst_size, const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t o = 0;

        if (dst_size == 0)
                return;
        while (*p) {
                size_t n = ab_utf8_seq_len((const char *)p, strnlen((const char *)p, 4));

                if (o + (n ? n : 1) >= dst_size)
                        break;
                if (n == 0) {
                        dst[o++] = '?';
                        p++;
                        continue;
                }
                memcpy(dst + o, p, n);
                o += n;
                p += n;
        }
        dst[o] = '\0';
}

/* ---- wiping ---- */

/* Wipe the strings this node owns (not references to constant strings). */
static void
wipe_node(cJSON *v)
{
        if (v->valuestring && !(v->type & cJSON_IsReference))
                ab_wipe(v->valuestring, strlen(v->valuestring));
        if (v->string && !(v->type & cJSON_StringIsConst))
                ab_wipe(v->string, strlen(v->string));
}

static void
wipe_tree(cJSON *v)
{
        for (; v; v = v->next) {
                wipe_node(v);
                if (v->child && !(v->type & cJSON_IsReference))
                        wipe_tree(v->child);
        }
}

void
abmi_json_wipe_delete(cJSON *v)
{
        if (!v)
                return;
        /* Only this node and its children: not its siblings. */
        wipe_node(v);
        if (v->child && !(v->type & cJSON_IsReference))
                wipe_tree(v->child);
        cJSON_Delete(v);
}
