/* SPDX-License-Identifier: MIT */
/* Unit tests: the HTTP bearer-token table (broker/httptokens.c): token form, check results
 * (live, unknown, malformed, expired), the live-token limit and forgetting. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "broker/httptokens.h"

static int
setup(void **state)
{
        struct ab_http_tokens *t = NULL;

        assert_int_equal(ab_http_tokens_new(&t), 0);
        *state = t;
        return 0;
}

static int
teardown(void **state)
{
        ab_http_tokens_free(*state);
        return 0;
}

static void
test_issue_and_check(void **state)
{
        struct ab_http_tokens *t = *state;
        char token[AB_HTTP_TOKEN_LEN + 1], other[AB_HTTP_TOKEN_LEN + 1];
        char id[AB_HTTP_TOKEN_ID_LEN + 1], id2[AB_HTTP_TOKEN_ID_LEN + 1];
        unsigned char hash[32], hash2[32];
        uint64_t exp = 0;

        assert_int_equal(ab_http_tokens_mint(t, 1000, token, hash, id), 0);
        assert_int_equal(strlen(token), AB_HTTP_TOKEN_LEN);
        assert_memory_equal(token, AB_HTTP_TOKEN_PREFIX, strlen(AB_HTTP_TOKEN_PREFIX));
        assert_int_equal(strlen(id), AB_HTTP_TOKEN_ID_LEN);
        /* Minted is not live yet. */
        assert_int_equal(ab_http_tokens_check(t, token, 1000, id2, &exp), -ENOENT);
        assert_string_equal(id2, id);
        assert_int_equal(ab_http_tokens_add(t, hash, 1000, 61000), 0);
        assert_int_equal(ab_http_tokens_check(t, token, 1000, id2, &exp), 0);
        assert_int_equal(exp, 61000);
        /* Live until just before its expiry, expired from it on. */
        assert_int_equal(ab_http_tokens_check(t, token, 60999, id2, &exp), 0);
        assert_int_equal(ab_http_tokens_check(t, token, 61000, id2, &exp), -ETIME);
        /* Another token, never added, is unknown; changing one character makes it unknown too. */
        assert_int_equal(ab_http_tokens_mint(t, 1000, other, hash2, id2), 0);
        assert_string_not_equal(other, token);
        assert_int_equal(ab_http_tokens_check(t, other, 1000, id2, &exp), -ENOENT);
        token[10] = token[10] == 'A' ? 'B' : 'A';
        assert_int_equal(ab_http_tokens_check(t, token, 1000, id2, &exp), -ENOENT);
}

static void
test_malformed(void **state)
{
        struct ab_http_tokens *t = *state;
        char id[AB_HTTP_TOKEN_ID_LEN + 1];
        uint64_t exp = 7;

        assert_int_equal(ab_http_tokens_check(t, "", 0, id, &exp), -EBADMSG);
        assert_string_equal(id, "?");
        assert_int_equal(ab_http_tokens_check(t, "abh_short", 0, id, &exp), -EBADMSG);
        assert_int_equal(
                ab_http_tokens_check(t, "abt_0123456789012345678901234567890123456789012", 0, id, &exp),
                -EBADMSG);
        /* One character too many. */
        assert_int_equal(
                ab_http_tokens_check(t, "abh_01234567890123456789012345678901234567890123", 0, id, &exp),
                -EBADMSG);
        assert_int_equal(exp, 7); /* untouched on failure */
}

static void
test_limit_and_forget(void **state)
{
        struct ab_http_tokens *t = *state;
        char token[AB_HTTP_TOKEN_LEN + 1], first[AB_HTTP_TOKEN_LEN + 1], id[AB_HTTP_TOKEN_ID_LEN + 1];
        unsigned char hash[32], first_hash[32];
        uint64_t exp;

        for (int i = 0; i < AB_HTTP_TOKENS_MAX; i++) {
                assert_int_equal(ab_http_tokens_mint(t, 0, token, hash, id), 0);
                assert_int_equal(ab_http_tokens_add(t, hash, 0, 5000), 0);
                if (i == 0) {
                        memcpy(first, token, sizeof(first));
                        memcpy(first_hash, hash, sizeof(first_hash));
                }
        }
        /* Full while they live: no new token. */
        assert_int_equal(ab_http_tokens_mint(t, 4999, token, hash, id), -ENOSPC);
        assert_int_equal(ab_http_tokens_add(t, hash, 4999, 9000), -ENOSPC);
        /* A forgotten one frees its slot and is unknown. */
        ab_http_tokens_forget(t, first_hash);
        assert_int_equal(ab_http_tokens_check(t, first, 0, id, &exp), -ENOENT);
        assert_int_equal(ab_http_tokens_mint(t, 0, token, hash, id), 0);
        assert_int_equal(ab_http_tokens_add(t, hash, 0, 5000), 0);
        assert_int_equal(ab_http_tokens_mint(t, 0, token, hash, id), -ENOSPC);
        /* Expired ones free their slots. */
        assert_int_equal(ab_http_tokens_mint(t, 5000, token, hash, id), 0);
        assert_int_equal(ab_http_tokens_add(t, hash, 5000, 6000), 0);
        assert_int_equal(ab_http_tokens_check(t, token, 5000, id, &exp), 0);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_issue_and_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limit_and_forget, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
