/* SPDX-License-Identifier: MIT */
/* Unit tests for host/mcp/rpcid.c: which ids are valid (strings, integers within +-(2^53-1), never
 * a conversion of an out-of-range double), and integer ids replaced by their exact digits so
 * that cJSON prints them as they came (it printed 9007199254740991 as 9.00719925474099e+15). */
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

#include "host/mcp/rpcid.h"

/* Parse {"id":<id_text>}, make its id exact, and print the object again. */
static char *
round_trip(const char *id_text)
{
        char in[128], *out;
        cJSON *m;

        snprintf(in, sizeof(in), "{\"id\":%s,\"method\":\"ping\"}", id_text);
        m = cJSON_Parse(in);
        assert_non_null(m);
        assert_int_equal(mcp_id_exact(m, "id"), 0);
        /* the member keeps its name (and the members after it stay reachable) */
        assert_non_null(cJSON_GetObjectItemCaseSensitive(m, "id"));
        assert_non_null(cJSON_GetObjectItemCaseSensitive(m, "method"));
        out = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
        assert_non_null(out);
        return out;
}

static void
expect_round_trip(const char *id_text, const char *want_id)
{
        char want[128], *got = round_trip(id_text);

        snprintf(want, sizeof(want), "{\"id\":%s,\"method\":\"ping\"}", want_id);
        assert_string_equal(got, want);
        free(got);
}

static void
test_exact(void **state)
{
        expect_round_trip("9007199254740991", "9007199254740991");
        expect_round_trip("-9007199254740991", "-9007199254740991");
        expect_round_trip("5000000000000001", "5000000000000001");
        expect_round_trip("1000000000000000", "1000000000000000");
        expect_round_trip("0", "0");
        expect_round_trip("-0", "0");
        expect_round_trip("1e3", "1000");
        expect_round_trip("\"abc\"", "\"abc\"");
        /* not valid ids: left as they are (the core refuses them) */
        expect_round_trip("1.5", "1.5");
        expect_round_trip("null", "null");
        {
                cJSON *m = cJSON_Parse("{\"id\":9007199254740992}");
                assert_int_equal(mcp_id_exact(m, "id"), 0);
                assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "id")));
                cJSON_Delete(m);
        }
}

static void
test_valid(void **state)
{
        static const char *const good[] = { "0",     "-1",  "9007199254740991", "-9007199254740991",
                                            "\"x\"", "\"\"" };
        static const char *const bad[] = { "1.5",
                                           "1e300",
                                           "-1e400",
                                           "1e400",
                                           "18446744073709551616",
                                           "9007199254740992",
                                           "-9007199254740992",
                                           "null",
                                           "true",
                                           "[]",
                                           "{}" };
        size_t i;

        for (i = 0; i < sizeof(good) / sizeof(*good); i++) {
                cJSON *j = cJSON_Parse(good[i]);
                assert_true(mcp_id_valid(j));
                cJSON_Delete(j);
        }
        for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                cJSON *j = cJSON_Parse(bad[i]);
                if (mcp_id_valid(j))
                        fail_msg("%s is a valid id", bad[i]);
                cJSON_Delete(j);
        }
        assert_false(mcp_id_valid(NULL));
        assert_int_equal(mcp_id_exact(NULL, "id"), 0);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exact),
                cmocka_unit_test(test_valid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
