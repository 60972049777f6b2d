/* SPDX-License-Identifier: MIT */
/* Unit tests for common/jsonscan.c: depth at and past the limit, brackets inside strings and
 * after escapes, the value count, NUL bytes, the UTF-8 check only where asked for, and the
 * escaped-NUL flag. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/jsonscan.h"

static const struct ab_json_scan_limits strict = { .max_depth = 3, .max_values = 5, .utf8 = true };
static const struct ab_json_scan_limits loose = { .max_depth = 3 };

#define SCAN(lim, lit, nul) ab_json_scan((lit), sizeof(lit) - 1, (lim), (nul))

static void
test_depth(void **state)
{
        (void)state;
        assert_int_equal(SCAN(&loose, "[[[1]]]", NULL), AB_JSON_SCAN_OK);
        assert_int_equal(SCAN(&loose, "[[[[1]]]]", NULL), AB_JSON_SCAN_DEPTH);
        assert_int_equal(SCAN(&loose, "{\"a\":{\"b\":[{}]}}", NULL), AB_JSON_SCAN_DEPTH);
        /* closing brackets give the depth back; a stray one does not go below zero */
        assert_int_equal(SCAN(&loose, "]]]][[[1]]][[[2]]]", NULL), AB_JSON_SCAN_OK);
        /* brackets in strings do not count, escaped quotes do not end them */
        assert_int_equal(SCAN(&loose, "[\"[[[[\",\"\\\"[[[[\"]", NULL), AB_JSON_SCAN_OK);
        assert_int_equal(SCAN(&loose, "[\"\\\\\",[[[1]]]]", NULL), AB_JSON_SCAN_DEPTH);
        assert_int_equal(SCAN(&loose, "", NULL), AB_JSON_SCAN_OK);
}

static void
test_values(void **state)
{
        (void)state;
        assert_int_equal(SCAN(&strict, "[1,2,3,4]", NULL), AB_JSON_SCAN_OK);   /* 1 + 3 */
        assert_int_equal(SCAN(&strict, "[1,2,3,4,5]", NULL), AB_JSON_SCAN_OK); /* 5 */
        assert_int_equal(SCAN(&strict, "[1,2,3,4,5,6]", NULL), AB_JSON_SCAN_VALUES);
        assert_int_equal(SCAN(&strict, "[\",,,,,,,,\"]", NULL), AB_JSON_SCAN_OK);
        assert_int_equal(SCAN(&loose, "[1,2,3,4,5,6,7,8,9,10]", NULL), AB_JSON_SCAN_OK); /* no limit */
}

static void
test_nul_and_utf8(void **state)
{
        static const char nul[] = "[\"a\0b\"]";

        (void)state;
        assert_int_equal(ab_json_scan(nul, sizeof(nul) - 1, &loose, NULL), AB_JSON_SCAN_NUL);
        assert_int_equal(ab_json_scan(nul, sizeof(nul) - 1, &strict, NULL), AB_JSON_SCAN_NUL);
        assert_int_equal(SCAN(&strict, "[\"\xc3\xa9\xe2\x82\xac\"]", NULL), AB_JSON_SCAN_OK);
        assert_int_equal(SCAN(&strict, "[\"\xff\"]", NULL), AB_JSON_SCAN_UTF8);
        assert_int_equal(SCAN(&strict, "[\"\xed\xa0\x80\"]", NULL), AB_JSON_SCAN_UTF8);
        assert_int_equal(SCAN(&strict, "[\"\xe2\x82", NULL), AB_JSON_SCAN_UTF8);
        assert_int_equal(SCAN(&loose, "[\"\xff\"]", NULL), AB_JSON_SCAN_OK); /* not asked */
}

static void
test_escaped_nul(void **state)
{
        bool nul = false;

        (void)state;
        assert_int_equal(SCAN(&strict, "[\"a\\u0000b\"]", &nul), AB_JSON_SCAN_OK);
        assert_true(nul);
        nul = false;
        assert_int_equal(SCAN(&strict, "[\"a\\u0001\",\"\\\\u0000\"]", &nul), AB_JSON_SCAN_OK);
        assert_false(nul); /* \u0001, and an escaped backslash before u0000 */
        assert_int_equal(SCAN(&strict, "[\"a\\u000", &nul), AB_JSON_SCAN_OK);
        assert_false(nul); /* cut short */
        assert_int_equal(SCAN(&strict, "[\"a\\u0000\"]", NULL), AB_JSON_SCAN_OK);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_depth),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_nul_and_utf8),
                cmocka_unit_test(test_escaped_nul),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
