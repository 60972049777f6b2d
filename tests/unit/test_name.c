/* SPDX-License-Identifier: MIT */
/* Unit tests for common/name.h and common/token.h: the name character set and its rules, the
 * length limits at their edges, and the call-token syntax. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/name.h"
#include "common/token.h"

static void
test_charset(void **state)
{
        (void)state;
        for (int c = 1; c < 256; c++) {
                bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '_' || c == '-';
                if (ab_name_char((char)c) != want)
                        fail_msg("byte 0x%02x: %d", c, !want);
        }
        assert_true(ab_name_valid("Abc_09-x", 48, 0));
        assert_false(ab_name_valid("a.b", 48, 0));
        assert_false(ab_name_valid("a b", 48, 0));
        assert_false(ab_name_valid("a/b", 48, 0));
        assert_false(ab_name_valid("\xc3\xa9", 48, 0));
        assert_false(ab_name_valid("", 48, 0));
        assert_false(ab_name_valid(NULL, 48, 0));
        assert_false(ab_name_valid_len("a\0b", 3, 48, 0)); /* a NUL inside */
        assert_true(ab_name_valid_len("ab!", 2, 48, 0));   /* only len bytes count */
}

static void
test_rules(void **state)
{
        (void)state;
        assert_true(ab_name_valid("-x", 48, 0));
        assert_false(ab_name_valid("-x", 48, AB_NAME_NO_LEADING_PUNCT));
        assert_false(ab_name_valid(".x", 48, AB_NAME_NO_LEADING_PUNCT | AB_NAME_DOT));
        assert_true(ab_name_valid("x.y", 48, AB_NAME_DOT));
        assert_true(ab_name_valid("x.y-", 48, AB_NAME_NO_LEADING_PUNCT | AB_NAME_DOT));
        assert_true(ab_name_valid("_x", 48, AB_NAME_NO_LEADING_PUNCT));
        assert_false(ab_name_valid("x.y", 48, AB_NAME_NO_LEADING_PUNCT));
}

static void
test_limits(void **state)
{
        char s[AB_NAME_MAX + 2];

        (void)state;
        memset(s, 'a', sizeof(s) - 1);
        s[sizeof(s) - 1] = '\0';
        s[AB_MODULE_NAME_MAX] = '\0';
        assert_true(ab_name_valid(s, AB_MODULE_NAME_MAX, 0));
        s[AB_MODULE_NAME_MAX] = 'a';
        s[AB_MODULE_NAME_MAX + 1] = '\0';
        assert_false(ab_name_valid(s, AB_MODULE_NAME_MAX, 0));
        s[AB_MODULE_NAME_MAX + 1] = 'a';
        s[AB_NAME_MAX] = '\0';
        assert_true(ab_name_valid(s, AB_NAME_MAX, 0));
        s[AB_NAME_MAX] = 'a';
        assert_false(ab_name_valid(s, AB_NAME_MAX, 0));
        assert_false(ab_name_valid("a", 0, 0));
}

static void
test_token(void **state)
{
        char t[AB_TOKEN_LEN + 2];

        (void)state;
        memcpy(t, AB_TOKEN_PREFIX, AB_TOKEN_PREFIX_LEN);
        memset(t + AB_TOKEN_PREFIX_LEN, 'A', AB_TOKEN_LEN - AB_TOKEN_PREFIX_LEN);
        t[AB_TOKEN_LEN] = '\0';
        assert_int_equal(AB_TOKEN_LEN, 47);
        assert_true(ab_token_well_formed(t));
        t[10] = '-';
        t[11] = '_';
        t[12] = '9';
        assert_true(ab_token_well_formed(t));
        t[12] = '+'; /* standard base64, not base64url */
        assert_false(ab_token_well_formed(t));
        t[12] = '=';
        assert_false(ab_token_well_formed(t));
        t[12] = 'z';
        t[0] = 'A'; /* wrong prefix */
        assert_false(ab_token_well_formed(t));
        t[0] = 'a';
        t[AB_TOKEN_LEN] = 'A'; /* one too long */
        t[AB_TOKEN_LEN + 1] = '\0';
        assert_false(ab_token_well_formed(t));
        t[AB_TOKEN_LEN - 1] = '\0'; /* one too short */
        assert_false(ab_token_well_formed(t));
        memset(t, 0, sizeof(t));
        assert_false(ab_token_well_formed(t));
        memcpy(t, "abt_", 4);
        assert_false(ab_token_well_formed(t));
        assert_false(ab_token_well_formed(NULL));
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_charset),
                cmocka_unit_test(test_rules),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_token),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
