/* SPDX-License-Identifier: MIT */
/* Unit tests: aggregated HTTP authentication denials (host/net/http/deny.c). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/net/http/deny.h"

#define SEC 1000000ull

struct reports {
        char lines[MCP_HTTP_DENY_SLOTS + 4][160];
        size_t n;
};

static void
collect(void *userdata, const char *source, const char *reason, unsigned count, unsigned seconds)
{
        struct reports *r = userdata;

        assert_true(r->n < sizeof(r->lines) / sizeof(r->lines[0]));
        snprintf(r->lines[r->n++], sizeof(r->lines[0]), "%s %s %u %u", source, reason, count, seconds);
}

static void
test_aggregates_per_source_and_reason(void **state)
{
        struct mcp_http_denials *d = NULL;
        struct reports r = { 0 };

        (void)state;
        assert_int_equal(mcp_http_denials_new(&d), 0);
        for (int i = 0; i < 150; i++)
                mcp_http_denials_note(d, "127.0.0.1", "no-token", 100 * SEC + (uint64_t)i);
        mcp_http_denials_note(d, "127.0.0.1", "token-malformed", 101 * SEC);
        mcp_http_denials_note(d, "::1", "no-token", 102 * SEC);
        /* Nothing before the interval has passed. */
        mcp_http_denials_flush(d, 105 * SEC, false, collect, &r);
        assert_int_equal(r.n, 0);
        /* The first pair's interval is over: one report with its count. */
        mcp_http_denials_flush(d, 110 * SEC, false, collect, &r);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "127.0.0.1 no-token 150 10");
        /* A new denial after that starts a new interval. */
        mcp_http_denials_note(d, "127.0.0.1", "no-token", 111 * SEC);
        mcp_http_denials_flush(d, 112 * SEC, true, collect, &r);
        assert_int_equal(r.n, 4);
        assert_string_equal(r.lines[1], "127.0.0.1 no-token 1 1");
        assert_string_equal(r.lines[2], "127.0.0.1 token-malformed 1 11");
        assert_string_equal(r.lines[3], "::1 no-token 1 10");
        /* Flushed: nothing left. */
        mcp_http_denials_flush(d, 200 * SEC, true, collect, &r);
        assert_int_equal(r.n, 4);
        mcp_http_denials_free(d);
        mcp_http_denials_free(NULL);
}

static void
test_overflow(void **state)
{
        struct mcp_http_denials *d = NULL;
        struct reports r = { 0 };
        char src[32];

        (void)state;
        assert_int_equal(mcp_http_denials_new(&d), 0);
        for (int i = 0; i < MCP_HTTP_DENY_SLOTS + 10; i++) {
                snprintf(src, sizeof(src), "10.0.0.%d", i);
                mcp_http_denials_note(d, src, "no-token", SEC);
        }
        mcp_http_denials_flush(d, 2 * SEC, true, collect, &r);
        /* Every slot, and the rest counted once under "other". */
        assert_int_equal(r.n, MCP_HTTP_DENY_SLOTS + 1);
        assert_string_equal(r.lines[MCP_HTTP_DENY_SLOTS], "other no-token 10 1");
        mcp_http_denials_free(d);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_aggregates_per_source_and_reason),
                cmocka_unit_test(test_overflow),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
