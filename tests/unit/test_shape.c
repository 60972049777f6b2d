/* SPDX-License-Identifier: MIT */
/* Unit tests for host/tool/shape.c: the redactor (every encoded form, base64 inside longer
 * base64, overlapping and nested secrets, short values, limits, bounded growth) and
 * hs_shape_result (redaction of text, resources and structuredContent, the duplicate text
 * of structuredContent, the size cap exactly at the limit, UTF-8 boundaries, the note,
 * structuredContent with and without an output schema, isError), plus common/utf8.c. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/encode.h"
#include "common/utf8.h"
#include "host/tool/schema.h"
#include "host/tool/shape.h"

#define HINT "Call t.read again with offset=N."

static struct hs_redactor *
redactor(void)
{
        struct hs_redactor *r = NULL;
        assert_int_equal(hs_redactor_new(&r), 0);
        assert_non_null(r);
        return r;
}

static void
add(struct hs_redactor *r, const char *name, const char *value)
{
        assert_int_equal(hs_redactor_add(r, name, (const unsigned char *)value, strlen(value)), 0);
}

/* Redact text and compare with want (NULL: nothing may match). */
static void
redacts(const struct hs_redactor *r, const char *text, const char *want)
{
        char *out = (char *)1;

        assert_int_equal(hs_redact_text(r, text, &out), 0);
        if (!want) {
                if (out)
                        fail_msg("expected no match in '%s', got '%s'", text, out);
                return;
        }
        if (!out)
                fail_msg("expected '%s' from '%s', nothing matched", want, text);
        if (strcmp(out, want) != 0)
                fail_msg(" got: %s\nwant: %s", out, want);
        free(out);
}

static char *
upper_hex(const char *lower)
{
        char *s = strdup(lower);
        assert_non_null(s);
        for (char *p = s; *p; p++)
                *p = (char)toupper((unsigned char)*p);
        return s;
}

static char *
url_encode(const unsigned char *v, size_t n)
{
        char *s = malloc(3 * n + 1), *o = s;
        assert_non_null(s);
        for (size_t i = 0; i < n; i++) {
                if (isalnum(v[i]) || v[i] == '-' || v[i] == '.' || v[i] == '_' || v[i] == '~')
                        *o++ = (char)v[i];
                else
                        o += sprintf(o, "%%%02X", v[i]);
        }
        *o = '\0';
        return s;
}

static void
test_redact_forms(void **state)
{
        /* bytes chosen so that base64 and base64url differ ('+' and '/'), hex has letters,
         * and URL encoding has work to do (space, '/', '?', multi-byte UTF-8) */
        static const char secret[] = "p\xfb\xffss w/rd?\xc3\xa9~x!";
        const unsigned char *v = (const unsigned char *)secret;
        size_t n = strlen(secret);
        struct hs_redactor *r = redactor();
        char *b64, *b64url, *hex, *HEX, *url;
        const char *forms[6];

        add(r, "api_key", secret);
        assert_int_equal(ab_base64_encode(v, n, &b64), 0);
        assert_int_equal(ab_base64url_encode(v, n, &b64url), 0);
        assert_int_equal(ab_hex_encode(v, n, &hex), 0);
        HEX = upper_hex(hex);
        url = url_encode(v, n);
        assert_string_not_equal(b64, b64url);
        assert_true(strchr(b64, '=') != NULL); /* the padded form is the one redacted */
        assert_string_not_equal(hex, HEX);
        assert_string_equal(url, "p%FB%FFss%20w%2Frd%3F%C3%A9~x%21");
        forms[0] = secret;
        forms[1] = b64;
        forms[2] = b64url;
        forms[3] = hex;
        forms[4] = HEX;
        forms[5] = url;
        for (size_t i = 0; i < 6; i++) {
                char *text;
                assert_true(asprintf(&text, "before %s after", forms[i]) > 0);
                redacts(r, text, "before [REDACTED:api_key] after");
                free(text);
                assert_true(asprintf(&text, "%s%s", forms[i], forms[i]) > 0); /* back to back */
                redacts(r, text, "[REDACTED:api_key][REDACTED:api_key]");
                free(text);
                redacts(r, forms[i], "[REDACTED:api_key]"); /* whole text */
        }
        redacts(r, "nothing to see here", NULL);
        redacts(r, "p\xfb\xffss w/rd", NULL); /* a prefix is not the secret */
        free(b64);
        free(b64url);
        free(hex);
        free(HEX);
        free(url);
        hs_redactor_free(r);
}

/* The secret inside a longer text that was base64-encoded whole (e.g. "user:password" in
 * a Basic authorization header) at each of the three alignments. */
static void
test_redact_base64_inside(void **state)
{
        static const char secret[] = "correct horse battery staple";
        struct hs_redactor *r = redactor();

        add(r, "pw", secret);
        for (int url = 0; url < 2; url++)
                for (size_t shift = 0; shift < 3; shift++) {
                        char plain[128], *enc, *out = NULL;
                        memset(plain, 'u', shift + 3);
                        plain[shift + 3] = ':';
                        strcpy(plain + shift + 4, secret);
                        strcat(plain, "@host");
                        assert_int_equal(
                                (url ? ab_base64url_encode : ab_base64_encode)(plain, strlen(plain), &enc),
                                0);
                        assert_int_equal(hs_redact_text(r, enc, &out), 0);
                        assert_non_null(out);
                        assert_non_null(strstr(out, "[REDACTED:pw]"));
                        /* what is left of the encoding does not decode to a readable part of
                         * the secret: at most 2 characters on each side of the cut */
                        assert_true(strlen(out) <=
                                    strlen(enc) - strlen(secret) * 4 / 3 + 4 + strlen("[REDACTED:pw]"));
                        free(enc);
                        free(out);
                }
        hs_redactor_free(r);
}

static void
test_redact_short_and_limits(void **state)
{
        struct hs_redactor *r = redactor();
        char name[130], *big;

        /* shorter than 4 bytes: ignored */
        assert_int_equal(hs_redactor_add(r, "pin", (const unsigned char *)"123", 3), 0);
        assert_int_equal(hs_redactor_add(r, "empty", (const unsigned char *)"", 0), 0);
        redacts(r, "pin 123 here", NULL);
        /* 4 bytes: redacted */
        add(r, "pin4", "1234");
        redacts(r, "pin 1234 here", "pin [REDACTED:pin4] here");
        redacts(r, "31323334", "[REDACTED:pin4]"); /* hex */
        redacts(r, "MTIzNA==", "[REDACTED:pin4]"); /* base64 */
        redacts(r, "MTIzNA", "[REDACTED:pin4]");   /* base64url */
        redacts(r, "123", NULL);
        redacts(r, "", NULL);

        /* names */
        assert_int_equal(hs_redactor_add(r, "", (const unsigned char *)"abcd", 4), -EINVAL);
        memset(name, 'n', 129);
        name[129] = '\0';
        assert_int_equal(hs_redactor_add(r, name, (const unsigned char *)"abcd", 4), -EINVAL);
        name[128] = '\0';
        assert_int_equal(hs_redactor_add(r, name, (const unsigned char *)"abcdefgh", 8), 0);
        assert_int_equal(hs_redactor_add(r, "bad\nname", (const unsigned char *)"abcd", 4), -EINVAL);
        assert_int_equal(hs_redactor_add(r, "bad\xff", (const unsigned char *)"abcd", 4), -EINVAL);

        /* value size */
        big = malloc(64 * 1024 + 1);
        assert_non_null(big);
        memset(big, 'b', 64 * 1024 + 1);
        assert_int_equal(hs_redactor_add(r, "big", (unsigned char *)big, 64 * 1024 + 1), -E2BIG);
        assert_int_equal(hs_redactor_add(r, "big", (unsigned char *)big, 64 * 1024), 0);
        free(big);
        hs_redactor_free(r);

        /* at most HS_REDACT_MAX values; the same name and value again is free */
        r = redactor();
        for (int i = 0; i < HS_REDACT_MAX; i++) {
                char v[32];
                snprintf(v, sizeof(v), "value-%04d", i);
                add(r, "s", v);
        }
        add(r, "s", "value-0007");
        assert_int_equal(hs_redactor_add(r, "s", (const unsigned char *)"value-9999", 10), -ENOSPC);
        redacts(r, "value-0063 value-0000 value-9999", "[REDACTED:s] [REDACTED:s] value-9999");
        hs_redactor_free(r);

        /* no redactor, no values */
        redacts(NULL, "anything", NULL);
        r = redactor();
        redacts(r, "anything", NULL);
        hs_redactor_free(r);
}

static void
test_redact_overlapping(void **state)
{
        struct hs_redactor *r = redactor();

        add(r, "A", "abcdefgh");
        add(r, "B", "efghijkl");
        add(r, "C", "abcdefghXYZ"); /* A is a prefix of C: the longest match wins */
        redacts(r, "xxabcdefghijklyy", "xx[REDACTED:A][REDACTED:B]yy");
        redacts(r, "xxabcdefghXYZyy", "xx[REDACTED:C]yy");
        redacts(r, "abcdefghabcdefgh", "[REDACTED:A][REDACTED:A]");
        redacts(r, "efghijklabcdefgh", "[REDACTED:B][REDACTED:A]");
        /* a chain: A overlaps B, which overlaps D */
        add(r, "D", "klmnopqr");
        redacts(r, "-abcdefghijklmnopqr-", "-[REDACTED:A][REDACTED:B][REDACTED:D]-");
        /* a secret inside another one's match adds nothing */
        add(r, "E", "cdef");
        redacts(r, "abcdefgh", "[REDACTED:A]");
        redacts(r, "xcdefx", "x[REDACTED:E]x");
        hs_redactor_free(r);
}

static void
test_redact_growth_cap(void **state)
{
        struct hs_redactor *r = redactor();
        char name[101], *text, *out = NULL;
        size_t n = 100000;

        memset(name, 'N', 100);
        name[100] = '\0';
        assert_int_equal(hs_redactor_add(r, name, (const unsigned char *)"abcd", 4), 0);
        text = malloc(4 * n + 1);
        assert_non_null(text);
        for (size_t i = 0; i < n; i++)
                memcpy(text + 4 * i, "abcd", 4);
        text[4 * n] = '\0';
        assert_int_equal(hs_redact_text(r, text, &out), 0);
        assert_non_null(out);
        assert_null(strstr(out, "abcd"));
        assert_true(strlen(out) <= 2 * 4 * n); /* growth at most the text's length */
        assert_true(strncmp(out, "[REDACTED:NNN", 13) == 0);
        assert_string_equal(out + strlen(out) - 8, "********");
        free(out);
        free(text);
        hs_redactor_free(r);
}

/* A binary secret (not UTF-8) is matched on its raw bytes before UTF-8 repair. */
static void
test_redact_binary(void **state)
{
        struct hs_redactor *r = redactor();
        cJSON *res =
                cJSON_Parse("{\"content\":[{\"type\":\"text\",\"text\":\"k=\xde\xad\xbe\xef\x01\xff!\"}]}");
        bool t = true;

        assert_non_null(res);
        assert_int_equal(hs_redactor_add(r, "bin", (const unsigned char *)"\xde\xad\xbe\xef\x01\xff", 6), 0);
        assert_int_equal(hs_shape_result(res, 0, r, NULL, NULL, &t), 0);
        assert_false(t);
        assert_string_equal(
                cJSON_GetArrayItem(cJSON_GetObjectItem(res, "content"), 0)->child->next->valuestring,
                "k=[REDACTED:bin]!");
        cJSON_Delete(res);
        hs_redactor_free(r);
}

/* ---- hs_shape_result ---- */

static cJSON *
parse(const char *text)
{
        cJSON *j = cJSON_Parse(text);
        if (!j)
                fail_msg("test JSON does not parse: %s", text);
        return j;
}

static size_t
size_of(const cJSON *j)
{
        char *s = cJSON_PrintUnformatted(j);
        size_t n;
        assert_non_null(s);
        n = strlen(s);
        free(s);
        return n;
}

static const char *
block_text(const cJSON *res, int i)
{
        const cJSON *b = cJSON_GetArrayItem(cJSON_GetObjectItem(res, "content"), i);
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(b, "text"));
        assert_non_null(t);
        return t;
}

static int
n_blocks(const cJSON *res)
{
        return cJSON_GetArraySize(cJSON_GetObjectItem(res, "content"));
}

static cJSON *
text_result(const char *text)
{
        cJSON *res = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(res, "content");
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", text);
        cJSON_AddItemToArray(content, b);
        return res;
}

static void
test_shape_untouched(void **state)
{
        cJSON *res = parse("{\"content\":[{\"type\":\"text\",\"text\":\"hello\"},"
                           "{\"type\":\"image\",\"data\":\"AAAA\",\"mimeType\":\"image/png\"}],"
                           "\"structuredContent\":{\"a\":1}}");
        char *before = cJSON_PrintUnformatted(res), *after;
        bool t = true;

        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), 0);
        assert_false(t);
        after = cJSON_PrintUnformatted(res);
        assert_string_equal(before, after);
        free(before);
        free(after);
        /* ret_truncated may be NULL */
        assert_int_equal(hs_shape_result(res, 1000, NULL, NULL, NULL, NULL), 0);
        cJSON_Delete(res);
}

static void
test_shape_redacts(void **state)
{
        struct hs_redactor *r = redactor();
        cJSON *res = parse(
                "{\"content\":["
                "  {\"type\":\"text\",\"text\":\"token is tok-123456, b64 dG9rLTEyMzQ1Ng==\"},"
                "  {\"type\":\"resource\",\"resource\":{\"uri\":\"file:///x\",\"text\":\"x tok-123456 y\"}},"
                "  {\"type\":\"image\",\"data\":\"tok-123456\",\"mimeType\":\"image/png\"}],"
                " \"structuredContent\":{\"list\":[\"tok-123456\",{\"deep\":\"a tok-123456\"}],"
                "                        \"tok-123456\":5, \"n\":123456},"
                " \"isError\":true}");
        const cJSON *sc;
        bool t = true;

        add(r, "tok", "tok-123456");
        assert_int_equal(hs_shape_result(res, 0, r, NULL, NULL, &t), 0);
        assert_false(t);
        assert_string_equal(block_text(res, 0), "token is [REDACTED:tok], b64 [REDACTED:tok]");
        assert_string_equal(
                cJSON_GetObjectItem(
                        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(res, "content"), 1),
                                            "resource"),
                        "text")
                        ->valuestring,
                "x [REDACTED:tok] y");
        /* every string a worker sends is redacted, image data too */
        assert_string_equal(
                cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(res, "content"), 2), "data")
                        ->valuestring,
                "[REDACTED:tok]");
        sc = cJSON_GetObjectItem(res, "structuredContent");
        assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "list"), 0)->valuestring,
                            "[REDACTED:tok]");
        assert_string_equal(
                cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "list"), 1), "deep")
                        ->valuestring,
                "a [REDACTED:tok]");
        /* member names are redacted too; numbers are not */
        assert_null(cJSON_GetObjectItemCaseSensitive(sc, "tok-123456"));
        assert_non_null(cJSON_GetObjectItemCaseSensitive(sc, "[REDACTED:tok]"));
        assert_int_equal(cJSON_GetObjectItem(sc, "n")->valueint, 123456);
        /* isError passes through */
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        cJSON_Delete(res);
        hs_redactor_free(r);
}

/* A text block that repeats structuredContent stays the same JSON after redaction, even
 * where the secret appears escaped in the text (so a plain text replace would miss it). */
static void
test_shape_duplicate_text(void **state)
{
        struct hs_redactor *r = redactor();
        cJSON *res = parse(
                "{\"content\":["
                "  {\"type\":\"text\",\"text\":\"{\\n  \\\"key\\\": \\\"se\\\\\\\"cret\\\\/1\\\",\\n  \\\"n\\\": 1\\n}\"},"
                "  {\"type\":\"text\",\"text\":\"the key is se\\\"cret/1\"}],"
                " \"structuredContent\":{\"n\":1,\"key\":\"se\\\"cret/1\"}}");
        cJSON *parsed;
        bool t = true;

        add(r, "k", "se\"cret/1");
        /* the text is pretty-printed JSON with the secret escaped as se\"cret\/1 */
        assert_null(strstr(block_text(res, 0), "se\"cret/1"));
        assert_int_equal(hs_shape_result(res, 0, r, NULL, NULL, &t), 0);
        assert_false(t);
        assert_string_equal(block_text(res, 0), "{\"n\":1,\"key\":\"[REDACTED:k]\"}");
        parsed = parse(block_text(res, 0));
        assert_true(cJSON_Compare(parsed, cJSON_GetObjectItem(res, "structuredContent"), true));
        cJSON_Delete(parsed);
        assert_string_equal(block_text(res, 1), "the key is [REDACTED:k]");
        cJSON_Delete(res);

        /* nothing to redact in structuredContent: the duplicate is printed again all the same */
        res = parse("{\"content\":[{\"type\":\"text\",\"text\":\"{ \\\"a\\\" : 1 }\"}],"
                    " \"structuredContent\":{\"a\":1}}");
        assert_int_equal(hs_shape_result(res, 0, r, NULL, NULL, &t), 0);
        assert_string_equal(block_text(res, 0), "{\"a\":1}");
        cJSON_Delete(res);
        hs_redactor_free(r);
}

/* The attack: text after the JSON of structuredContent. A lenient parse called the block a
 * duplicate and left it as the module wrote it, secret and all. */
static void
test_shape_duplicate_trailing_text(void **state)
{
        struct hs_redactor *r = redactor();
        cJSON *res = parse("{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"a\\\":1} tok-123456\"},"
                           "  {\"type\":\"text\",\"text\":\"{\\\"a\\\":1}\\n \"}],"
                           " \"structuredContent\":{\"a\":1}}");
        struct hs_redact_stats st = { 0 };

        add(r, "tok", "tok-123456");
        assert_int_equal(hs_redact_result(res, r, &st), 0);
        assert_string_equal(block_text(res, 0), "{\"a\":1} [REDACTED:tok]");
        /* trailing whitespace only: still the same JSON, printed again */
        assert_string_equal(block_text(res, 1), "{\"a\":1}");
        assert_int_equal(st.count, 1);
        assert_int_equal(st.secrets, 1);
        cJSON_Delete(res);
        hs_redactor_free(r);
}

/* Every string a worker can put in a result: _meta, resource_link URIs, annotations, names. */
static void
test_shape_redacts_everything(void **state)
{
        struct hs_redactor *r = redactor();
        cJSON *res = parse(
                "{\"content\":["
                "  {\"type\":\"resource_link\",\"uri\":\"https://x/?k=tok-123456\",\"name\":\"n\","
                "   \"_meta\":{\"m\":\"tok-123456\"},\"annotations\":{\"audience\":[\"tok-123456\"]}},"
                "  {\"type\":\"resource\",\"resource\":{\"uri\":\"file:///tok-123456\",\"blob\":\"dG9rLTEyMzQ1Ng==\"}}],"
                " \"_meta\":{\"tok-123456\":\"x\",\"v\":\"746f6b2d313233343536\"}}");
        struct hs_redact_stats st = { 0 };
        char *text;

        add(r, "tok", "tok-123456");
        assert_int_equal(hs_redact_result(res, r, &st), 0);
        text = cJSON_PrintUnformatted(res);
        assert_null(strstr(text, "tok-123456"));
        assert_null(strstr(text, "dG9rLTEyMzQ1Ng"));
        assert_null(strstr(text, "746f6b2d313233343536"));
        assert_int_equal(st.count, 7);
        free(text);
        cJSON_Delete(res);
        hs_redactor_free(r);
}

/* Build a one-text-block result whose serialization is exactly size bytes + len(text). */
static void
check_cut(const char *text, size_t max, const char *hint)
{
        cJSON *res = text_result(text);
        size_t full = size_of(res), shown_len;
        const char *shown, *note;
        char want_note[256];
        bool t = false;

        assert_int_equal(hs_shape_result(res, max, NULL, NULL, hint, &t), 0);
        if (full <= max) {
                assert_false(t);
                assert_int_equal(size_of(res), full);
                cJSON_Delete(res);
                return;
        }
        assert_true(t);
        assert_true(size_of(res) <= max);
        if (n_blocks(res) == 2) {
                shown = block_text(res, 0);
                note = block_text(res, 1);
        } else {
                assert_int_equal(n_blocks(res), 1);
                shown = "";
                note = block_text(res, 0);
        }
        shown_len = strlen(shown);
        assert_true(shown_len < strlen(text));
        assert_memory_equal(shown, text, shown_len);        /* a prefix */
        assert_true(ab_utf8_valid(shown, shown_len, NULL)); /* never a split character */
        snprintf(want_note, sizeof(want_note), "[truncated: %zu of %zu bytes shown. %s]", shown_len,
                 strlen(text),
                 hint ? hint
                      : "Request a smaller part, e.g. with the tool's offset, "
                        "cursor or limit arguments.");
        assert_string_equal(note, want_note);
        cJSON_Delete(res);
}

static void
test_shape_exact_limit(void **state)
{
        char text[2001];
        cJSON *res;
        size_t full;

        memset(text, 'x', 2000);
        text[2000] = '\0';
        res = text_result(text);
        full = size_of(res);
        cJSON_Delete(res);

        check_cut(text, full, HINT); /* exactly at the limit: untouched */
        check_cut(text, full + 1, HINT);
        /* one byte over: cut, and the result fills the limit exactly */
        for (size_t max = full - 1; max >= 256; max -= (max > 1900 ? 1 : 37)) {
                bool t = false;
                res = text_result(text);
                assert_int_equal(hs_shape_result(res, max, NULL, NULL, HINT, &t), 0);
                assert_true(t);
                assert_int_equal(n_blocks(res), 2);
                assert_int_equal(size_of(res), max); /* ASCII: every byte of budget used */
                cJSON_Delete(res);
                check_cut(text, max, HINT);
                check_cut(text, max, NULL);
        }
}

static void
test_shape_multibyte_boundaries(void **state)
{
        /* 1-, 2-, 3- and 4-byte characters and characters JSON escapes (2 and 6 bytes) */
        static const char unit[] = "a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\"\n\x01\\";
        char text[sizeof(unit) * 60];
        cJSON *res;
        size_t full;

        text[0] = '\0';
        for (int i = 0; i < 59; i++)
                strcat(text, unit);
        res = text_result(text);
        full = size_of(res);
        cJSON_Delete(res);
        for (size_t max = 256; max <= full + 2; max++) {
                bool t = false;
                check_cut(text, max, HINT);
                res = text_result(text);
                assert_int_equal(hs_shape_result(res, max, NULL, NULL, HINT, &t), 0);
                if (t) { /* never more than a 6-byte escape short of the limit */
                        assert_true(size_of(res) <= max);
                        if (n_blocks(res) == 2)
                                assert_true(size_of(res) + 6 >= max);
                }
                cJSON_Delete(res);
        }
}

static void
test_shape_last_block_first(void **state)
{
        char a[101], b[5001], note[160];
        cJSON *res = text_result(""), *content = cJSON_GetObjectItem(res, "content");
        cJSON *blk = cJSON_CreateObject();
        size_t base;
        bool t;

        memset(a, 'A', 100);
        a[100] = '\0';
        memset(b, 'B', 5000);
        b[5000] = '\0';
        cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetArrayItem(content, 0), "text"), a);
        cJSON_AddStringToObject(blk, "type", "text");
        cJSON_AddStringToObject(blk, "text", b);
        cJSON_AddItemToArray(content, blk);
        base = size_of(res) - 5100;

        /* room for A and part of B */
        assert_int_equal(hs_shape_result(res, 1000, NULL, NULL, HINT, &t), 0);
        assert_true(t);
        assert_int_equal(n_blocks(res), 3);
        assert_string_equal(block_text(res, 0), a);
        assert_true(strlen(block_text(res, 1)) > 0 && strlen(block_text(res, 1)) < 5000);
        snprintf(note, sizeof(note), "[truncated: %zu of 5100 bytes shown. " HINT "]",
                 100 + strlen(block_text(res, 1)));
        assert_string_equal(block_text(res, 2), note);
        assert_int_equal(size_of(res), 1000);
        cJSON_Delete(res);

        /* room for part of A only: B's block goes, A is cut */
        res = text_result(a);
        content = cJSON_GetObjectItem(res, "content");
        blk = cJSON_CreateObject();
        cJSON_AddStringToObject(blk, "type", "text");
        cJSON_AddStringToObject(blk, "text", b);
        cJSON_AddItemToArray(content, blk);
        assert_int_equal(hs_shape_result(res, base + 40 + 80, NULL, NULL, "x", &t), 0);
        assert_true(t);
        assert_int_equal(n_blocks(res), 2);
        assert_true(strlen(block_text(res, 0)) < 100);
        assert_memory_equal(block_text(res, 0), a, strlen(block_text(res, 0)));
        assert_true(strncmp(block_text(res, 1), "[truncated: ", 12) == 0);
        cJSON_Delete(res);
}

static cJSON *
big_structured_result(size_t n_items, bool with_text)
{
        cJSON *res = parse("{\"content\":[], \"structuredContent\":{\"items\":[]}}");
        cJSON *items = cJSON_GetObjectItem(cJSON_GetObjectItem(res, "structuredContent"), "items");
        for (size_t i = 0; i < n_items; i++)
                cJSON_AddItemToArray(items, cJSON_CreateString("some item of the listing"));
        if (with_text) {
                char *dup = cJSON_PrintUnformatted(cJSON_GetObjectItem(res, "structuredContent"));
                cJSON *b = cJSON_CreateObject();
                cJSON_AddStringToObject(b, "type", "text");
                cJSON_AddStringToObject(b, "text", dup);
                cJSON_AddItemToArray(cJSON_GetObjectItem(res, "content"), b);
                free(dup);
        }
        return res;
}

static void
test_shape_structured_too_big(void **state)
{
        struct hs_schema *schema = NULL;
        cJSON *sj = parse("{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\","
                          "\"items\":{\"type\":\"string\"}}},\"required\":[\"items\"]}");
        cJSON *res;
        size_t sc_size;
        char want[200];
        bool t = false;

        assert_int_equal(hs_schema_compile(sj, &schema, NULL), 0);
        cJSON_Delete(sj);

        /* no output schema: structuredContent is dropped, the text (its duplicate) is cut */
        res = big_structured_result(200, true);
        sc_size = size_of(cJSON_GetObjectItem(res, "structuredContent"));
        assert_int_equal(hs_shape_result(res, 4096, NULL, NULL, HINT, &t), 0);
        assert_true(t);
        assert_null(cJSON_GetObjectItem(res, "structuredContent"));
        assert_int_equal(n_blocks(res), 2);
        snprintf(want, sizeof(want),
                 "[truncated: %zu of %zu bytes shown; structuredContent (%zu bytes) "
                 "omitted. " HINT "]",
                 strlen(block_text(res, 0)), sc_size, sc_size);
        assert_string_equal(block_text(res, 1), want);
        assert_true(size_of(res) <= 4096);
        assert_true(size_of(res) >= 4090);
        assert_null(cJSON_GetObjectItem(res, "isError"));
        cJSON_Delete(res);

        /* no text at all */
        res = big_structured_result(200, false);
        assert_int_equal(hs_shape_result(res, 1024, NULL, NULL, NULL, &t), 0);
        assert_true(t);
        assert_null(cJSON_GetObjectItem(res, "structuredContent"));
        assert_int_equal(n_blocks(res), 1);
        snprintf(want, sizeof(want),
                 "[truncated: 0 of 0 bytes shown; structuredContent (%zu bytes) "
                 "omitted. Request a smaller part, e.g. with the tool's offset, cursor or limit arguments.]",
                 sc_size);
        assert_string_equal(block_text(res, 0), want);
        cJSON_Delete(res);

        /* with an output schema: the result becomes an error explaining the limit */
        res = big_structured_result(200, true);
        {
                size_t full = size_of(res);
                assert_int_equal(hs_shape_result(res, 4096, NULL, schema, HINT, &t), 0);
                assert_true(t);
                assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
                assert_null(cJSON_GetObjectItem(res, "structuredContent"));
                assert_int_equal(n_blocks(res), 1);
                snprintf(want, sizeof(want),
                         "The result was withheld: it is %zu bytes, more than this "
                         "tool's limit of 4096 bytes, and it cannot be shortened",
                         full);
                assert_true(strncmp(block_text(res, 0), want, strlen(want)) == 0);
                assert_non_null(strstr(block_text(res, 0), "output schema"));
                assert_non_null(strstr(block_text(res, 0), HINT));
        }
        cJSON_Delete(res);

        /* with a schema, structuredContent that fits is kept and its duplicate text cut */
        res = big_structured_result(100, true);
        {
                size_t sc = size_of(cJSON_GetObjectItem(res, "structuredContent"));
                assert_int_equal(hs_shape_result(res, sc + 600, NULL, schema, HINT, &t), 0);
                assert_true(t);
                assert_non_null(cJSON_GetObjectItem(res, "structuredContent"));
                assert_null(cJSON_GetObjectItem(res, "isError"));
                assert_int_equal(size_of(res), sc + 600);
                assert_true(strncmp(block_text(res, n_blocks(res) - 1), "[truncated: ", 12) == 0);
        }
        cJSON_Delete(res);

        /* an error result is not held to the output schema: structuredContent is dropped */
        res = big_structured_result(200, true);
        cJSON_AddTrueToObject(res, "isError");
        assert_int_equal(hs_shape_result(res, 4096, NULL, schema, HINT, &t), 0);
        assert_true(t);
        assert_null(cJSON_GetObjectItem(res, "structuredContent"));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        assert_non_null(strstr(block_text(res, 1), "structuredContent"));
        cJSON_Delete(res);
        hs_schema_free(schema);
}

static void
test_shape_output_schema(void **state)
{
        struct hs_redactor *r = redactor();
        struct hs_schema *schema = NULL;
        cJSON *sj = parse("{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\","
                          "\"pattern\":\"^[0-9a-f]{8}$\"}}}");
        cJSON *res;
        bool t = true;

        assert_int_equal(hs_schema_compile(sj, &schema, NULL), 0);
        cJSON_Delete(sj);

        res = parse("{\"content\":[],\"structuredContent\":{\"id\":\"0badf00d\"}}");
        assert_int_equal(hs_shape_result(res, 0, r, schema, NULL, &t), 0);
        assert_false(t);
        assert_null(cJSON_GetObjectItem(res, "isError"));
        cJSON_Delete(res);

        /* redaction breaks the pattern: never send structuredContent the schema rejects */
        add(r, "id", "0badf00d");
        res = parse("{\"content\":[{\"type\":\"text\",\"text\":\"id 0badf00d\"}],"
                    "\"structuredContent\":{\"id\":\"0badf00d\"}}");
        assert_int_equal(hs_shape_result(res, 0, r, schema, NULL, &t), 0);
        assert_false(t);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        assert_null(cJSON_GetObjectItem(res, "structuredContent"));
        assert_string_equal(block_text(res, 0),
                            "The tool's result does not match its output schema: "
                            "structuredContent.id: must match the pattern '^[0-9a-f]{8}$'");
        cJSON_Delete(res);

        /* a secret in a name that the message would quote is redacted there too */
        {
                struct hs_schema *closed = NULL;
                sj = parse("{\"additionalProperties\":false}");
                assert_int_equal(hs_schema_compile(sj, &closed, NULL), 0);
                cJSON_Delete(sj);
                res = parse("{\"content\":[],\"structuredContent\":{\"0badf00d\":1}}");
                assert_int_equal(hs_shape_result(res, 0, r, closed, NULL, &t), 0);
                assert_string_equal(block_text(res, 0),
                                    "The tool's result does not match its output schema: "
                                    "structuredContent: unexpected property '[REDACTED:id]' "
                                    "(additionalProperties is false)");
                cJSON_Delete(res);
                hs_schema_free(closed);
        }
        hs_schema_free(schema);
        hs_redactor_free(r);
}

/* The host's own error results keep to the limit too (their text is cut, without a note). */
static void
test_shape_errors_fit_limit(void **state)
{
        static const char prefix[] = "The tool's result does not match its output schema: "
                                     "structuredContent.a_rather_long_property_name_number_1: required; ";
        struct hs_schema *schema = NULL;
        cJSON *sj = parse(
                "{\"required\":[\"a_rather_long_property_name_number_1\",\"a_rather_long_property_name_number_2\","
                "\"a_rather_long_property_name_number_3\",\"a_rather_long_property_name_number_4\"]}");
        char hint[301];
        cJSON *res;
        bool t = true;

        assert_int_equal(hs_schema_compile(sj, &schema, NULL), 0);
        cJSON_Delete(sj);
        res = parse("{\"content\":[],\"structuredContent\":{\"v\":\"\u00e9\u00e9\u00e9\"}}");
        assert_int_equal(hs_shape_result(res, 1024, NULL, schema, NULL, &t), 0);
        assert_true(strlen(block_text(res, 0)) > 256); /* the whole message */
        assert_true(strncmp(block_text(res, 0), prefix, strlen(prefix)) == 0);
        cJSON_Delete(res);
        res = parse("{\"content\":[],\"structuredContent\":{\"v\":\"\u00e9\u00e9\u00e9\"}}");
        assert_int_equal(hs_shape_result(res, 256, NULL, schema, NULL, &t), 0);
        assert_false(t);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        assert_true(strncmp(block_text(res, 0), prefix, strlen(prefix)) == 0);
        assert_int_equal(size_of(res), 256);
        cJSON_Delete(res);

        hs_schema_free(schema);
        sj = parse("{\"type\":\"object\"}");
        assert_int_equal(hs_schema_compile(sj, &schema, NULL), 0);
        cJSON_Delete(sj);
        memset(hint, 'h', 300);
        hint[300] = '\0';
        res = big_structured_result(100, true);
        assert_int_equal(hs_shape_result(res, 256, NULL, schema, hint, &t), 0);
        assert_true(t);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        assert_true(strncmp(block_text(res, 0), "The result was withheld: it is ", 31) == 0);
        assert_int_equal(size_of(res), 256);
        cJSON_Delete(res);
        hs_schema_free(schema);
}

static void
test_shape_is_error(void **state)
{
        char text[3001];
        cJSON *res;
        bool t;

        memset(text, 'e', 3000);
        text[3000] = '\0';
        res = text_result(text);
        cJSON_AddTrueToObject(res, "isError");
        assert_int_equal(hs_shape_result(res, 1024, NULL, NULL, NULL, &t), 0);
        assert_true(t);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        assert_int_equal(size_of(res), 1024);
        cJSON_Delete(res);

        res = text_result(text);
        cJSON_AddFalseToObject(res, "isError");
        assert_int_equal(hs_shape_result(res, 1024, NULL, NULL, NULL, &t), 0);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(res, "isError")));
        cJSON_Delete(res);
}

static void
test_shape_non_text_too_big(void **state)
{
        char *data = malloc(10001);
        cJSON *res = text_result("caption"), *b = cJSON_CreateObject();
        bool t = false;

        assert_non_null(data);
        memset(data, 'A', 10000);
        data[10000] = '\0';
        cJSON_AddStringToObject(b, "type", "image");
        cJSON_AddStringToObject(b, "data", data);
        cJSON_AddStringToObject(b, "mimeType", "image/png");
        cJSON_AddItemToArray(cJSON_GetObjectItem(res, "content"), b);
        assert_int_equal(hs_shape_result(res, 2048, NULL, NULL, NULL, &t), 0);
        assert_true(t);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")));
        assert_non_null(strstr(block_text(res, 0), "its content other than text alone exceeds the limit"));
        assert_true(size_of(res) <= 2048);
        cJSON_Delete(res);
        free(data);
}

static void
test_shape_resource_cut(void **state)
{
        char *text = malloc(5001);
        cJSON *res = parse("{\"content\":[{\"type\":\"resource\",\"resource\":{\"uri\":\"file:///a\","
                           "\"mimeType\":\"text/plain\",\"text\":\"\"}}]}");
        bool t;

        assert_non_null(text);
        memset(text, 'r', 5000);
        text[5000] = '\0';
        cJSON_SetValuestring(
                cJSON_GetObjectItem(
                        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(res, "content"), 0),
                                            "resource"),
                        "text"),
                text);
        assert_int_equal(hs_shape_result(res, 1000, NULL, NULL, HINT, &t), 0);
        assert_true(t);
        assert_int_equal(size_of(res), 1000);
        assert_int_equal(n_blocks(res), 2);
        assert_true(strncmp(block_text(res, 1), "[truncated: ", 12) == 0);
        cJSON_Delete(res);
        free(text);
}

static void
test_shape_repairs_utf8(void **state)
{
        cJSON *res = parse("{\"content\":[{\"type\":\"text\",\"text\":\"a\xff"
                           "b\xc3\"}],"
                           "\"structuredContent\":{\"s\":\"\xed\xa0\x80x\"}}");
        bool t;

        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), 0);
        assert_string_equal(block_text(res, 0), "a\xef\xbf\xbd"
                                                "b\xef\xbf\xbd");
        assert_string_equal(
                cJSON_GetObjectItem(cJSON_GetObjectItem(res, "structuredContent"), "s")->valuestring,
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx");
        cJSON_Delete(res);
}

static void
test_shape_bad_input(void **state)
{
        cJSON *res = parse("[1]");
        bool t;

        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), -EINVAL);
        cJSON_Delete(res);
        res = parse("{\"content\":{}}");
        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), -EINVAL);
        cJSON_Delete(res);
        res = parse("{}");
        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), -EINVAL);
        cJSON_Delete(res);
        /* blocks of unknown shape are left as they are */
        res = parse("{\"content\":[5, {\"type\":7}, {\"type\":\"text\"}, {\"type\":\"text\",\"text\":1}]}");
        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), 0);
        assert_int_equal(n_blocks(res), 4);
        cJSON_Delete(res);
}

static void
test_shape_default_limit(void **state)
{
        char *text = malloc(HS_DEFAULT_MAX_RESULT_BYTES + 1);
        cJSON *res;
        bool t;

        assert_non_null(text);
        memset(text, 'd', HS_DEFAULT_MAX_RESULT_BYTES);
        text[HS_DEFAULT_MAX_RESULT_BYTES] = '\0';
        res = text_result(text);
        assert_int_equal(hs_shape_result(res, 0, NULL, NULL, NULL, &t), 0);
        assert_true(t);
        assert_int_equal(size_of(res), HS_DEFAULT_MAX_RESULT_BYTES);
        cJSON_Delete(res);
        free(text);
}

/* Secrets are redacted before the size cap: a cut never leaves part of a secret that a
 * whole-text match would have caught. */
static void
test_shape_redact_then_cut(void **state)
{
        struct hs_redactor *r = redactor();
        char text[3000] = "";
        cJSON *res;
        bool t;

        add(r, "key", "KEY-abcdefghijklmnop");
        for (int i = 0; i < 100; i++)
                strcat(text, "KEY-abcdefghijklmnop ");
        res = text_result(text);
        assert_int_equal(hs_shape_result(res, 700, r, NULL, NULL, &t), 0);
        assert_true(t);
        assert_null(strstr(block_text(res, 0), "KEY-"));
        assert_non_null(strstr(block_text(res, 0), "[REDACTED:key] [REDACTED:key]"));
        cJSON_Delete(res);
        hs_redactor_free(r);
}

static void
test_utf8_helpers(void **state)
{
        static const char s[] = "a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80z"; /* a é 日 😀 z */
        size_t len = strlen(s), chars = 0;
        static const size_t floors[] = { 0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11 };
        char *fixed = (char *)1;

        assert_true(ab_utf8_valid(s, len, &chars));
        assert_int_equal(chars, 5);
        for (size_t pos = 0; pos <= len; pos++)
                assert_int_equal(ab_utf8_floor(s, len, pos), floors[pos]);
        assert_int_equal(ab_utf8_floor(s, len, 100), len);
        /* ab_utf8_cut: s is NUL-terminated; a cut never splits a character, whatever its
         * width, and a string that fits is shown whole */
        for (size_t max = 0; max <= len + 2; max++)
                assert_int_equal(ab_utf8_cut(s, max), floors[max < len ? max : len]);
        assert_int_equal(ab_utf8_cut("", 0), 0);
        assert_int_equal(ab_utf8_cut("ab\xf0\x9f\x98\x80", 3), 2); /* 4 bytes at 2..5 */
        assert_int_equal(ab_utf8_cut("ab\xf0\x9f\x98\x80", 5), 2);
        assert_int_equal(ab_utf8_cut("ab\xf0\x9f\x98\x80", 6), 6);
        assert_int_equal(ab_utf8_cut("ab\xf0\x9f\x98\x80z", 6), 6);
        {
                char text[40];
                snprintf(text, sizeof(text), "x%.*s|", AB_UTF8_CUT("\xc3\xa9\xc3\xa9", 3));
                assert_string_equal(text, "x\xc3\xa9|");
        }
        assert_int_equal(ab_utf8_repair(s, len, &fixed), 0);
        assert_null(fixed);
        assert_int_equal(ab_utf8_repair("\xff\xc3x", 3, &fixed), 0);
        assert_string_equal(fixed, "\xef\xbf\xbd\xef\xbf\xbdx");
        free(fixed);
        assert_int_equal(ab_utf8_seq_len("\xc2\x80", 2), 2);
        assert_int_equal(ab_utf8_seq_len("\xc2\x80", 1), 0);
        assert_int_equal(ab_utf8_seq_len("\xc1\xbf", 2), 0);
        assert_int_equal(ab_utf8_seq_len("\xef\xbf\xbf", 3), 3);
        assert_int_equal(ab_utf8_seq_len("\xed\x9f\xbf", 3), 3);     /* U+D7FF */
        assert_int_equal(ab_utf8_seq_len("\xed\xa0\x80", 3), 0);     /* U+D800 */
        assert_int_equal(ab_utf8_seq_len("\xf0\x8f\xbf\xbf", 4), 0); /* overlong */
        assert_int_equal(ab_utf8_seq_len("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
        assert_int_equal(ab_utf8_seq_len("", 0), 0);
}

/* A hint written from what the cut kept (hs_shape_result_hinted): the callback gets the text
 * bytes shown, its hint goes into the note, the tool's text (here the host's old offset
 * placeholder) is not searched or rewritten; a hint longer than planned is refused. */
static char *
hint_from_shown(void *userdata, size_t text_shown)
{
        char *h = NULL;

        *(size_t *)userdata = text_shown;
        if (asprintf(&h, "next=%zu", text_shown) < 0)
                return NULL;
        return h;
}

static char *
hint_too_long(void *userdata, size_t text_shown)
{
        (void)userdata;
        (void)text_shown;
        return strdup("a hint longer than the one the note was planned with");
}

static void
test_shape_hint_from_kept(void **state)
{
        char text[1021], want[64];
        cJSON *res;
        size_t got = SIZE_MAX;
        bool t = false;

        (void)state;
        memset(text, '<', 20);
        memset(text + 20, 'x', 1000);
        text[1020] = '\0';
        res = text_result(text);
        assert_int_equal(hs_shape_result_hinted(res, 300, NULL, NULL, "next=99999999999999999999",
                                                hint_from_shown, &got, &t),
                         0);
        assert_true(t);
        assert_int_equal(n_blocks(res), 2);
        assert_int_equal(got, strlen(block_text(res, 0)));
        assert_memory_equal(block_text(res, 0), "<<<<<<<<<<<<<<<<<<<<x", 21);
        snprintf(want, sizeof want, "next=%zu]", got);
        assert_non_null(strstr(block_text(res, 1), want));
        assert_true(size_of(res) <= 300);
        cJSON_Delete(res);

        res = text_result(text);
        assert_int_equal(hs_shape_result_hinted(res, 300, NULL, NULL, "short", hint_too_long, NULL, &t),
                         -ERANGE);
        cJSON_Delete(res);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_redact_forms),
                cmocka_unit_test(test_redact_base64_inside),
                cmocka_unit_test(test_redact_short_and_limits),
                cmocka_unit_test(test_redact_overlapping),
                cmocka_unit_test(test_redact_growth_cap),
                cmocka_unit_test(test_redact_binary),
                cmocka_unit_test(test_shape_untouched),
                cmocka_unit_test(test_shape_redacts),
                cmocka_unit_test(test_shape_duplicate_text),
                cmocka_unit_test(test_shape_duplicate_trailing_text),
                cmocka_unit_test(test_shape_redacts_everything),
                cmocka_unit_test(test_shape_exact_limit),
                cmocka_unit_test(test_shape_multibyte_boundaries),
                cmocka_unit_test(test_shape_last_block_first),
                cmocka_unit_test(test_shape_structured_too_big),
                cmocka_unit_test(test_shape_output_schema),
                cmocka_unit_test(test_shape_errors_fit_limit),
                cmocka_unit_test(test_shape_is_error),
                cmocka_unit_test(test_shape_non_text_too_big),
                cmocka_unit_test(test_shape_resource_cut),
                cmocka_unit_test(test_shape_repairs_utf8),
                cmocka_unit_test(test_shape_bad_input),
                cmocka_unit_test(test_shape_default_limit),
                cmocka_unit_test(test_shape_redact_then_cut),
                cmocka_unit_test(test_shape_hint_from_kept),
                cmocka_unit_test(test_utf8_helpers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
