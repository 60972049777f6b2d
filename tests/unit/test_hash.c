/* SPDX-License-Identifier: MIT */
/* Unit tests for common/hash.h: the published 64-bit FNV-1a test vectors, and the string and
 * byte forms agree. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/hash.h"

/* FNV-1a 64 of "", "a" and "foobar" (the reference vectors). */
static void
test_vectors(void **state)
{
        (void)state;
        assert_true(ab_hash_str("") == 0xcbf29ce484222325ULL);
        assert_true(ab_hash_str("a") == 0xaf63dc4c8601ec8cULL);
        assert_true(ab_hash_str("foobar") == 0x85944171f73967e8ULL);
}

/* The byte form over a string's bytes is the string form; a NUL inside counts as a byte. */
static void
test_bytes_and_str_agree(void **state)
{
        static const char s[] = "tool-call-begin";

        (void)state;
        assert_true(ab_hash_bytes(s, strlen(s)) == ab_hash_str(s));
        assert_true(ab_hash_bytes("a\0b", 3) != ab_hash_str("a"));
        assert_true(ab_hash_str("ab") != ab_hash_str("ba"));
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors),
                cmocka_unit_test(test_bytes_and_str_agree),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
