/* SPDX-License-Identifier: MIT */
/*
 * fs module: compact text. A growing text buffer, \xNN escaping of bytes that are not
 * UTF-8, human byte counts, and the compact rendering of a structuredContent object that
 * the fs tools send as their text block instead of a second copy of the JSON
 * (docs/result-shaping.md, "No result pays twice").
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"
#include "fs-internal.h"

int
fs_arg_bool(struct abm_call *call, const char *key, bool def, bool *ret, struct abm_error *err)
{
        bool v;
        int r = abm_json_get_bool(abm_call_args(call), key, &v);

        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0)
                return abm_error_set(err, -EINVAL, "'%s' must be true or false", key);
        *ret = v;
        return 0;
}

bool
fs_buf_put_escaped(struct ab_buf *b, const char *s, size_t n)
{
        size_t i = 0;
        bool escaped = false;

        while (i < n) {
                const char *nul = memchr(s + i, '\0', n - i);
                size_t run = nul ? (size_t)(nul - (s + i)) : n - i;
                run = ab_utf8_scan(s + i, run, false);
                ab_buf_put(b, s + i, run);
                i += run;
                if (i < n) {
                        ab_buf_printf(b, "\\x%02X", (unsigned char)s[i]);
                        escaped = true;
                        i++;
                }
        }
        return escaped;
}

size_t
fs_text_cost(const char *s, size_t n)
{
        return n + json_escape_extra(s, n);
}

const char *
fs_human_bytes(uint64_t n, char *buf, size_t size)
{
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double)n;
        size_t u = 0;

        if (n < 1024) {
                snprintf(buf, size, "%" PRIu64 " B", n);
                return buf;
        }
        v /= 1024;
        while (v >= 1024 && u + 1 < AB_ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

/* The ls -F style mark of an entry type: "/" for a directory, "@" a symlink, "|" a fifo,
 * "=" a socket, "" a file, " [type]" for the others. */
static const char *
fs_type_mark(const char *type)
{
        static const struct {
                const char *type, *mark;
        } marks[] = {
                { "file", "" },
                { "directory", "/" },
                { "symlink", "@" },
                { "fifo", "|" },
                { "socket", "=" },
                { "char-device", " [char-device]" },
                { "block-device", " [block-device]" },
                { "unknown", " [?]" },
        };

        for (size_t i = 0; i < AB_ELEMENTSOF(marks); i++)
                if (strcmp(type, marks[i].type) == 0)
                        return marks[i].mark;
        return "";
}

/* Append a scalar JSON value as text: strings bare, numbers as integers when they are. */
static void
fs_put_scalar(struct ab_buf *b, const cJSON *v)
{
        if (cJSON_IsString(v)) {
                ab_buf_put(b, v->valuestring, strlen(v->valuestring));
        } else if (cJSON_IsNumber(v)) {
                if (v->valuedouble == (double)(int64_t)v->valuedouble)
                        ab_buf_printf(b, "%" PRId64, (int64_t)v->valuedouble);
                else
                        ab_buf_printf(b, "%g", v->valuedouble);
        } else if (cJSON_IsBool(v)) {
                ab_buf_put(b, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5);
        } else {
                _cleanup_free_ char *j = cJSON_PrintUnformatted(v);
                if (j)
                        ab_buf_put(b, j, strlen(j));
                else
                        b->err = -ENOMEM;
        }
}

/* Append a name for a row: control characters as \xNN, so that one entry stays one line. */
static void
fs_put_name(struct ab_buf *b, const char *s)
{
        for (const char *p = s; *p;) {
                size_t run = strcspn(p, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
                                        "\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f");
                ab_buf_put(b, p, run);
                p += run;
                if (*p) {
                        ab_buf_printf(b, "\\x%02X", (unsigned char)*p);
                        p++;
                }
        }
}

/* One element of an array of objects as a row: its name or path with the type's mark, a
 * tab and its size, then any other member as key=value. */
static void
fs_render_row(struct ab_buf *b, const cJSON *item)
{
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "size");
        const cJSON *m;
        bool first = true;

        if (!cJSON_IsString(name))
                name = cJSON_GetObjectItemCaseSensitive(item, "path");
        if (cJSON_IsString(name)) {
                fs_put_name(b, name->valuestring);
                if (cJSON_IsString(type))
                        ab_buf_put(b, fs_type_mark(type->valuestring),
                                   strlen(fs_type_mark(type->valuestring)));
                first = false;
        }
        if (cJSON_IsNumber(size)) {
                ab_buf_put(b, "\t", 1);
                fs_put_scalar(b, size);
                first = false;
        }
        cJSON_ArrayForEach(m, item)
        {
                if (m == name || m == size || (m == type && cJSON_IsString(name)))
                        continue;
                if (cJSON_IsTrue(m) && strcmp(m->string, "escaped") == 0) {
                        ab_buf_put(b, " (not UTF-8: bytes shown as \\xNN)", 33);
                        continue;
                }
                if (!first)
                        ab_buf_put(b, " ", 1);
                ab_buf_printf(b, "%s=", m->string);
                fs_put_scalar(b, m);
                first = false;
        }
        ab_buf_put(b, "\n", 1);
}

char *
fs_render_compact(const cJSON *o)
{
        struct ab_buf b = { 0 };
        const cJSON *m, *cursor = NULL;
        bool first = true;

        /* the scalars on the first line */
        cJSON_ArrayForEach(m, o)
        {
                if (cJSON_IsArray(m))
                        continue;
                if (strcmp(m->string, "next_cursor") == 0) {
                        cursor = m;
                        continue;
                }
                ab_buf_printf(&b, "%s%s: ", first ? "" : ", ", m->string);
                fs_put_scalar(&b, m);
                first = false;
        }
        if (!first)
                ab_buf_put(&b, "\n", 1);
        /* each array: one row per element */
        cJSON_ArrayForEach(m, o)
        {
                const cJSON *item;
                if (!cJSON_IsArray(m))
                        continue;
                if (cJSON_GetArraySize(m) == 0)
                        ab_buf_printf(&b, "%s: none\n", m->string);
                cJSON_ArrayForEach(item, m)
                {
                        if (cJSON_IsObject(item)) {
                                fs_render_row(&b, item);
                        } else {
                                fs_put_scalar(&b, item);
                                ab_buf_put(&b, "\n", 1);
                        }
                }
        }
        if (cursor && cJSON_IsString(cursor))
                ab_buf_printf(&b, "[more: call again with cursor=%s]\n", cursor->valuestring);
        if (b.err || !b.p) {
                ab_buf_free(&b);
                return NULL;
        }
        return b.p;
}
