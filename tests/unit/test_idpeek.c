/* SPDX-License-Identifier: MIT */
/* Unit tests: the id of an oversized JSON-RPC message from its first bytes (host/mcp/idpeek.c). */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/mcp/idpeek.h"

/* peek(text) must give the id whose JSON is want (NULL: the error r). */
static void
expect_id(const char *text, size_t len, const char *want, int r)
{
        cJSON *id = NULL;
        char *got;

        assert_int_equal(mcp_peek_id(text, len, &id), want ? 0 : r);
        if (!want) {
                assert_null(id);
                return;
        }
        got = cJSON_PrintUnformatted(id);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
        cJSON_Delete(id);
}

#define EXPECT(text, want) expect_id(text, strlen(text), want, 0)
#define EXPECT_ERR(text, r) expect_id(text, strlen(text), NULL, r)

static void
test_peek_found(void **state)
{
        (void)state;
        /* The start of an oversized call: cut off in the middle of its arguments. */
        EXPECT("{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"tools/call\",\"params\":{\"arguments\":{\"pad\":\"xxxx",
               "42");
        EXPECT("  {\"id\":\"abc\",\"method\":\"x\"", "\"abc\"");
        EXPECT("{\"jsonrpc\":\"2.0\" , \"method\" : \"m\" , \"id\" : -7 ,", "-7");
        /* Members before it are skipped whole, whatever they hold. */
        EXPECT("{\"params\":{\"id\":1,\"a\":[{\"id\":2},\"id\",\"}\\\"]\"]},\"id\":3,", "3");
        EXPECT("{\"x\":\"id\",\"id\":\"a\\\"b\"}", "\"a\\\"b\"");
        /* An escaped key that reads "id". */
        EXPECT("{\"\\u0069\\u0064\":5,", "5");
        /* The first of two, as a full parse would take. */
        EXPECT("{\"id\":1,\"id\":2}", "1");
}

static void
test_peek_not_found(void **state)
{
        (void)state;
        /* After the bytes looked at, cut in the middle, or not there at all. */
        EXPECT_ERR("{\"jsonrpc\":\"2.0\",\"params\":{\"pad\":\"xxxxxxxx", -ENOENT);
        EXPECT_ERR("{\"jsonrpc\":\"2.0\",\"id\":12", -ENOENT); /* 12 or 123...? */
        EXPECT_ERR("{\"jsonrpc\":\"2.0\",\"id\":\"ab", -ENOENT);
        EXPECT_ERR("{\"jsonrpc\":\"2.0\",\"id\"", -ENOENT);
        EXPECT_ERR("{\"a\":1}{\"id\":1}", -ENOENT);
        EXPECT_ERR("{\"id\":null,", -ENOENT);
        EXPECT_ERR("", -ENOENT);
        EXPECT_ERR("   ", -ENOENT);
        /* Not an object, or not a usable id. */
        EXPECT_ERR("[{\"id\":1}]", -EINVAL);
        EXPECT_ERR("42", -EINVAL);
        EXPECT_ERR("{\"id\":{\"a\":1},", -EINVAL);
        EXPECT_ERR("{\"id\":true,", -EINVAL);
        EXPECT_ERR("{\"id\":1.2.3,", -EINVAL);
        EXPECT_ERR("{\"id\" 1,", -EINVAL);
        EXPECT_ERR("{\"id\":\"a\001b\",", -ENOENT); /* a raw control character: not a string */
}

static void
test_peek_limits(void **state)
{
        size_t n = MCP_ID_PEEK_MAX + 100;
        char *buf = malloc(n + 1);
        char deep[2 * MCP_ID_PEEK_DEPTH + 64];
        size_t o = 0;

        (void)state;
        assert_non_null(buf);
        /* An id beyond the first MCP_ID_PEEK_MAX bytes is not looked for. */
        memset(buf, ' ', n);
        memcpy(buf, "{\"pad\":\"", 8);
        memcpy(buf + MCP_ID_PEEK_MAX + 10, "\",\"id\":9}", 9);
        buf[n] = '\0';
        for (size_t i = 8; i < MCP_ID_PEEK_MAX + 10; i++)
                buf[i] = 'x';
        expect_id(buf, n, NULL, -ENOENT);
        free(buf);
        /* Nesting deeper than MCP_ID_PEEK_DEPTH before the id. */
        o += (size_t)snprintf(deep + o, sizeof(deep) - o, "{\"a\":");
        for (int i = 0; i < MCP_ID_PEEK_DEPTH; i++)
                deep[o++] = '[';
        deep[o] = '\0';
        EXPECT_ERR(deep, -E2BIG);
        /* A length shorter than the text: only len bytes count. */
        expect_id("{\"id\":7,\"x\":1}", 5, NULL, -ENOENT);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_peek_found),
                cmocka_unit_test(test_peek_not_found),
                cmocka_unit_test(test_peek_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
