/* SPDX-License-Identifier: MIT */
/* Fuzz target: the result shaper and redactor (host/tool/shape.c) on worker output with registered
 * secrets. The input is a line (the raw bytes of a second secret), then the result JSON in
 * which "$S" stands for the secret and "$B" for the raw one. The secret is made from the
 * line (letters and digits, at least one of each case and a digit, so that no text the host
 * writes can contain it). The JSON is made into a CallToolResult as the host makes one of a
 * worker's result frame (the first content, structuredContent and isError, of the types it
 * accepts). After shaping, no string value of the result (text blocks,
 * structuredContent values, anything) may contain the secret: a leak aborts. Member names
 * are not redacted (docs/result-shaping.md), so inputs with the secret in a name are only
 * shaped, not checked. */
#define _GNU_SOURCE
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "host/tool/shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET_LEN_MAX 40

/* Whether any member name in j contains secret. */
static bool
name_has(const cJSON *j, const char *secret)
{
        const cJSON *e;

        cJSON_ArrayForEach(e, j)
        {
                if (e->string && strstr(e->string, secret))
                        return true;
                if (name_has(e, secret))
                        return true;
        }
        return false;
}

/* Abort if any string value in j contains secret. */
static void
check_values(const cJSON *j, const char *secret)
{
        const cJSON *e;

        if (cJSON_IsString(j) && strstr(j->valuestring, secret)) {
                fprintf(stderr, "fuzz_shape: the secret %s is in the shaped result: %.200s\n", secret,
                        j->valuestring);
                abort();
        }
        cJSON_ArrayForEach(e, j) check_values(e, secret);
}

/* text with every "$S" replaced by a and every "$B" by b (a new string). */
static char *
substitute(const char *text, size_t len, const char *a, const char *b)
{
        size_t cap = len * (SECRET_LEN_MAX > 2 ? SECRET_LEN_MAX : 2) / 2 + 1, o = 0;
        char *out = malloc(cap + 1);

        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                const char *rep = NULL;
                if (text[i] == '$' && i + 1 < len && (text[i + 1] == 'S' || text[i + 1] == 'B'))
                        rep = text[i + 1] == 'S' ? a : b;
                if (rep) {
                        size_t n = strlen(rep);
                        memcpy(out + o, rep, n);
                        o += n;
                        i += 2;
                } else {
                        out[o++] = text[i++];
                }
        }
        out[o] = '\0';
        return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        static const size_t max_bytes[] = { 64, 300, 4096, 32 * 1024 };
        const char *nl = memchr(data, '\n', size);
        size_t line_len = nl ? (size_t)(nl - (const char *)data) : 0, n;
        char secret[SECRET_LEN_MAX + 1] = "Qz7", raw[SECRET_LEN_MAX + 1];
        struct hs_redactor *r = NULL;
        char *text = NULL;
        cJSON *parsed = NULL, *result = NULL, *content, *structured, *is_error, *b;
        bool truncated;

        if (!nl || line_len > SECRET_LEN_MAX - 3)
                return 0;
        /* the secret: "Qz7" and the line mapped onto letters and digits, at least 8 bytes */
        for (n = 0; n < line_len; n++)
                secret[3 + n] = alnum[data[n] % (sizeof(alnum) - 1)];
        for (; n < 5; n++)
                secret[3 + n] = alnum[(n * 7) % (sizeof(alnum) - 1)];
        secret[3 + n] = '\0';
        memcpy(raw, data, line_len);
        raw[line_len] = '\0';
        if (hs_redactor_new(&r) < 0)
                return 0;
        if (hs_redactor_add(r, "key", (const unsigned char *)secret, strlen(secret)) < 0)
                goto out;
        (void)hs_redactor_add(r, "raw", (const unsigned char *)raw, strlen(raw)); /* any bytes */
        text = substitute(nl + 1, size - line_len - 1, secret, raw);
        if (!text)
                goto out;
        parsed = cJSON_Parse(text);
        /* what the host makes of a worker's result frame (host/workers/ result_from_frame):
         * the first content (an array of objects with a string type), the first
         * structuredContent (an object), the first isError (a boolean); anything else in the
         * frame is dropped, and a frame with these of the wrong type is refused */
        content = cJSON_GetObjectItemCaseSensitive(parsed, "content");
        structured = cJSON_GetObjectItemCaseSensitive(parsed, "structuredContent");
        is_error = cJSON_GetObjectItemCaseSensitive(parsed, "isError");
        if (!cJSON_IsObject(parsed) || (content && !cJSON_IsArray(content)) ||
            (structured && !cJSON_IsNull(structured) && !cJSON_IsObject(structured)) ||
            (is_error && !cJSON_IsBool(is_error)))
                goto out;
        cJSON_ArrayForEach(
                b, content) if (!cJSON_IsObject(b) ||
                                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(b, "type"))) goto out;
        result = cJSON_CreateObject();
        if (!result ||
            !cJSON_AddItemToObject(result, "content",
                                   content ? cJSON_Duplicate(content, true) : cJSON_CreateArray()) ||
            (cJSON_IsObject(structured) &&
             !cJSON_AddItemToObject(result, "structuredContent", cJSON_Duplicate(structured, true))) ||
            (cJSON_IsTrue(is_error) && !cJSON_AddBoolToObject(result, "isError", true)))
                goto out;
        if (cJSON_IsTrue(is_error) && cJSON_GetArraySize(content) == 0) { /* the frame's error text */
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(parsed, "error");
                cJSON *block = cJSON_CreateObject();

                if (!cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(result, "content"), block) ||
                    !cJSON_AddStringToObject(block, "type", "text") ||
                    !cJSON_AddStringToObject(block, "text",
                                             cJSON_IsString(e) ? e->valuestring : "the tool failed"))
                        goto out;
        }
        if (name_has(result, secret))
                goto out;
        if (hs_shape_result(result, max_bytes[size % 4], r, NULL, "ask for less", &truncated) == 0)
                check_values(result, secret);
out:
        cJSON_Delete(parsed);
        cJSON_Delete(result);
        free(text);
        hs_redactor_free(r);
        return 0;
}
