/* SPDX-License-Identifier: MIT */
/* The id of an oversized JSON-RPC message from its first bytes (see idpeek.h). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/frame.h"
#include "host/mcp/idpeek.h"

#define ID_KEY_TOKEN_MAX 16 /* "id" with both letters \u-escaped is 14 bytes */

static bool
is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The index just past the string token that starts at buf[i] (a '"'), or 0 when it does not
 * end within n bytes or holds a raw control character (not JSON). */
static size_t
string_end(const char *buf, size_t i, size_t n)
{
        for (size_t j = i + 1; j < n; j++) {
                if (buf[j] == '\\')
                        j++;
                else if (buf[j] == '"')
                        return j + 1;
                else if ((unsigned char)buf[j] < 0x20)
                        return 0;
        }
        return 0;
}

/* Whether the key token buf[0..len) (quotes included) decodes to "id". */
static bool
key_is_id(const char *buf, size_t len)
{
        cJSON *k;
        bool id;

        if (len > ID_KEY_TOKEN_MAX)
                return false;
        k = ab_json_parse_exact(buf, len);
        id = cJSON_IsString(k) && strcmp(k->valuestring, "id") == 0;
        cJSON_Delete(k);
        return id;
}

/* Decode the id value that starts at buf[i]: a string, or a number that ends before n (a
 * number cut off by the end of the prefix could be a different number). */
static int
id_value(const char *buf, size_t i, size_t n, cJSON **ret_id)
{
        size_t end = 0;
        cJSON *v;

        if (i >= n)
                return -ENOENT;
        if (buf[i] == '"')
                end = string_end(buf, i, n);
        else if (buf[i] == '-' || (buf[i] >= '0' && buf[i] <= '9')) {
                end = i;
                while (end < n && buf[end] && strchr("0123456789+-.eE", buf[end]))
                        end++;
                if (end >= n)
                        return -ENOENT;
        } else if (n - i >= 4 && memcmp(buf + i, "null", 4) == 0)
                return -ENOENT;
        else
                return -EINVAL;
        if (end == 0)
                return -ENOENT;
        v = ab_json_parse_exact(buf + i, end - i);
        if (!v)
                return -EINVAL;
        if (!cJSON_IsString(v) && !cJSON_IsNumber(v)) {
                cJSON_Delete(v);
                return -EINVAL;
        }
        *ret_id = v;
        return 0;
}

int
mcp_peek_id(const char *buf, size_t len, cJSON **ret_id)
{
        size_t n = len < MCP_ID_PEEK_MAX ? len : MCP_ID_PEEK_MAX, i = 0;
        unsigned depth = 0;
        bool expect_key = false;

        while (i < n && is_ws(buf[i]))
                i++;
        if (i >= n || buf[i] != '{')
                return i >= n ? -ENOENT : -EINVAL;
        while (i < n) {
                char c = buf[i];

                if (c == '"') {
                        size_t end = string_end(buf, i, n);

                        if (end == 0)
                                return -ENOENT;
                        if (depth == 1 && expect_key) {
                                bool id = key_is_id(buf + i, end - i);

                                for (i = end; i < n && is_ws(buf[i]); i++)
                                        ;
                                if (i >= n)
                                        return -ENOENT;
                                if (buf[i] != ':')
                                        return -EINVAL;
                                for (i++; i < n && is_ws(buf[i]); i++)
                                        ;
                                if (id)
                                        return id_value(buf, i, n, ret_id);
                                expect_key = false;
                                continue;
                        }
                        i = end;
                        continue;
                }
                if (c == '{' || c == '[') {
                        if (++depth > MCP_ID_PEEK_DEPTH)
                                return -E2BIG;
                        expect_key = c == '{' && depth == 1;
                } else if (c == '}' || c == ']') {
                        if (depth-- <= 1)
                                return -ENOENT; /* the object ended without an id */
                } else if (c == ',' && depth == 1)
                        expect_key = true;
                i++;
        }
        return -ENOENT;
}
