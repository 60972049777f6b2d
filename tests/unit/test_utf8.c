/* SPDX-License-Identifier: MIT */
/* Unit tests for common/utf8.c: RFC 3629's well-formed byte sequences (overlong forms,
 * surrogates, code points past U+10FFFF and stray continuation bytes refused), the scan with
 * and without a partial tail, the boundary floor and cut, and the repair. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/utf8.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* Each boundary of RFC 3629's table (section 4) and one step past it. */
static void
test_seq_len(void **state)
{
        (void)state;
        assert_int_equal(ab_utf8_seq_len(S("")), 0);
        assert_int_equal(ab_utf8_seq_len(S("a")), 1);
        assert_int_equal(ab_utf8_seq_len(S("\x7f")), 1);
        assert_int_equal(ab_utf8_seq_len(S("\xc2\x80")), 2);         /* U+0080 */
        assert_int_equal(ab_utf8_seq_len(S("\xdf\xbf")), 2);         /* U+07FF */
        assert_int_equal(ab_utf8_seq_len(S("\xc0\x80")), 0);         /* overlong NUL */
        assert_int_equal(ab_utf8_seq_len(S("\xc1\xbf")), 0);         /* overlong */
        assert_int_equal(ab_utf8_seq_len(S("\xe0\xa0\x80")), 3);     /* U+0800 */
        assert_int_equal(ab_utf8_seq_len(S("\xe0\x9f\xbf")), 0);     /* overlong */
        assert_int_equal(ab_utf8_seq_len(S("\xed\x9f\xbf")), 3);     /* U+D7FF */
        assert_int_equal(ab_utf8_seq_len(S("\xed\xa0\x80")), 0);     /* U+D800 surrogate */
        assert_int_equal(ab_utf8_seq_len(S("\xed\xbf\xbf")), 0);     /* U+DFFF surrogate */
        assert_int_equal(ab_utf8_seq_len(S("\xee\x80\x80")), 3);     /* U+E000 */
        assert_int_equal(ab_utf8_seq_len(S("\xef\xbf\xbf")), 3);     /* U+FFFF */
        assert_int_equal(ab_utf8_seq_len(S("\xf0\x90\x80\x80")), 4); /* U+10000 */
        assert_int_equal(ab_utf8_seq_len(S("\xf0\x8f\xbf\xbf")), 0); /* overlong */
        assert_int_equal(ab_utf8_seq_len(S("\xf4\x8f\xbf\xbf")), 4); /* U+10FFFF */
        assert_int_equal(ab_utf8_seq_len(S("\xf4\x90\x80\x80")), 0); /* U+110000 */
        assert_int_equal(ab_utf8_seq_len(S("\xf5\x80\x80\x80")), 0);
        assert_int_equal(ab_utf8_seq_len(S("\xff")), 0);
        assert_int_equal(ab_utf8_seq_len(S("\x80")), 0);         /* stray continuation */
        assert_int_equal(ab_utf8_seq_len(S("\xe2\x82")), 0);     /* cut short */
        assert_int_equal(ab_utf8_seq_len(S("\xe2\x28\xa1")), 0); /* not a continuation */
        assert_int_equal(ab_utf8_seq_len(S("\xe2\x82\x28")), 0);
        /* only avail bytes are read: the rest of a longer buffer does not count */
        assert_int_equal(ab_utf8_seq_len("\xe2\x82\xac", 2), 0);
}

static void
test_valid(void **state)
{
        size_t chars = 99;

        (void)state;
        assert_true(ab_utf8_valid(S(""), &chars));
        assert_int_equal(chars, 0);
        assert_true(ab_utf8_valid(S("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), &chars));
        assert_int_equal(chars, 4);
        chars = 99;
        assert_false(ab_utf8_valid(S("ab\xed\xa0\x80"), &chars));
        assert_int_equal(chars, 99);                 /* untouched on failure */
        assert_true(ab_utf8_valid(S("a\0b"), NULL)); /* NUL is a character */
}

/* The first bad offset; with a partial tail, only a start that can still become well-formed
 * is forgiven at the end. */
static void
test_scan(void **state)
{
        (void)state;
        assert_int_equal(ab_utf8_scan(S(""), false), 0);
        assert_int_equal(ab_utf8_scan(S("abc"), false), 3);
        assert_int_equal(ab_utf8_scan(S("ab\xff"
                                        "cd"),
                                      false),
                         2);
        assert_int_equal(ab_utf8_scan(S("\xc3\xa9\x80"), false), 2);
        assert_int_equal(ab_utf8_scan(S("x\xe2\x82\xac"), false), 4);
        assert_int_equal(ab_utf8_scan(S("x\xe2\x82"), false), 1);
        assert_int_equal(ab_utf8_scan(S("x\xe2\x82"), true), 3);
        assert_int_equal(ab_utf8_scan(S("x\xf0"), true), 2);
        assert_int_equal(ab_utf8_scan(S("x\xf0\x9f\x98"), true), 4);
        /* not a possible start: refused even at the end */
        assert_int_equal(ab_utf8_scan(S("x\xe0\x80"), true), 1); /* overlong */
        assert_int_equal(ab_utf8_scan(S("x\xed\xa0"), true), 1); /* surrogate */
        assert_int_equal(ab_utf8_scan(S("x\xf4\x90"), true), 1); /* past U+10FFFF */
        assert_int_equal(ab_utf8_scan(S("x\xc0"), true), 1);
        assert_int_equal(ab_utf8_scan(S("x\xe2\x41"), true), 1);
        assert_int_equal(ab_utf8_scan(S("x\x80"), true), 1);
        /* a partial sequence is only forgiven at the very end */
        assert_int_equal(ab_utf8_scan(S("x\xe2\x82y"), true), 1);
}

static void
test_floor_and_cut(void **state)
{
        static const char s[] = "ab\xe2\x82\xac"
                                "c"; /* a b EURO c */
        char buf[8];

        (void)state;
        assert_int_equal(ab_utf8_floor(s, 6, 0), 0);
        assert_int_equal(ab_utf8_floor(s, 6, 2), 2);
        assert_int_equal(ab_utf8_floor(s, 6, 3), 2);
        assert_int_equal(ab_utf8_floor(s, 6, 4), 2);
        assert_int_equal(ab_utf8_floor(s, 6, 5), 5);
        assert_int_equal(ab_utf8_floor(s, 6, 6), 6);
        assert_int_equal(ab_utf8_floor(s, 6, 100), 6);
        /* bytes that are not UTF-8 are not backed over */
        assert_int_equal(ab_utf8_floor("a\x80\x80\x80\x80", 5, 3), 3);
        assert_int_equal(ab_utf8_cut(s, 3), 2);
        assert_int_equal(ab_utf8_cut(s, 5), 5);
        assert_int_equal(ab_utf8_cut(s, 100), 6);
        assert_int_equal(ab_utf8_cut("", 0), 0);
        snprintf(buf, sizeof(buf), "%.*s|", AB_UTF8_CUT(s, 4));
        assert_string_equal(buf, "ab|");
}

static void
test_repair(void **state)
{
        char *out = (char *)1;

        (void)state;
        assert_int_equal(ab_utf8_repair(S("ok \xc3\xa9"), &out), 0);
        assert_null(out);
        assert_int_equal(ab_utf8_repair(S("a\xff"
                                          "b\xed\xa0\x80"),
                                        &out),
                         0);
        assert_non_null(out);
        assert_string_equal(out, "a\xef\xbf\xbd"
                                 "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
        assert_true(ab_utf8_valid(out, strlen(out), NULL));
        free(out);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_seq_len), cmocka_unit_test(test_valid),
                cmocka_unit_test(test_scan),    cmocka_unit_test(test_floor_and_cut),
                cmocka_unit_test(test_repair),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
