/* SPDX-License-Identifier: MIT */
/* Unit tests for the call-token table (broker/tokens.c). */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "broker/tokens.h"
#include "policy/policy.h"

static struct ab_token *
claims(const char *run, const char *tool, uint64_t now, uint64_t ttl_ms)
{
        struct ab_token *t = ab_token_alloc();

        assert_non_null(t);
        strcpy(t->run, run);
        t->tool = strdup(tool);
        t->issued_ms = now;
        t->expires_ms = now + ttl_ms;
        return t;
}

static void
test_issue_lookup(void **state)
{
        struct ab_token_table *t;
        struct ab_token *tok, *found = NULL;
        char s[AB_TOKEN_LEN + 1], s2[AB_TOKEN_LEN + 1];

        assert_int_equal(ab_tokens_new(16, &t), 0);
        tok = claims("r1", "echo.echo", 1000, 30000);
        assert_int_equal(ab_token_add_grant(tok, "k", AB_OP_READ | AB_OP_SIGN), 0);
        assert_int_equal(ab_tokens_issue(t, tok, s), 0);
        assert_int_equal(strlen(s), AB_TOKEN_LEN);
        assert_memory_equal(s, "abt_", 4);
        assert_int_equal(strlen(tok->id), AB_TOKEN_ID_LEN);
        assert_int_equal(ab_tokens_count(t), 1);

        assert_int_equal(ab_tokens_lookup(t, s, 2000, &found), 0);
        assert_ptr_equal(found, tok);
        assert_int_equal(ab_token_grant_ops(found, "k"), AB_OP_READ | AB_OP_SIGN);
        assert_int_equal(ab_token_grant_ops(found, "other"), 0);

        /* Two tokens never collide and differ in their text. */
        assert_int_equal(ab_tokens_issue(t, claims("r1", "echo.echo", 1000, 30000), s2), 0);
        assert_string_not_equal(s, s2);
        assert_int_equal(ab_tokens_count(t), 2);
        ab_tokens_free(t);
}

static void
test_denials(void **state)
{
        struct ab_token_table *t;
        struct ab_token *tok, *found = NULL;
        char s[AB_TOKEN_LEN + 1], forged[AB_TOKEN_LEN + 1];

        assert_int_equal(ab_tokens_new(16, &t), 0);
        tok = claims("r1", "a.b", 0, 1000);
        assert_int_equal(ab_tokens_issue(t, tok, s), 0);

        /* Malformed: wrong prefix, wrong length, bad characters. */
        assert_int_equal(ab_tokens_lookup(t, "abt_short", 0, &found), -EBADMSG);
        memcpy(forged, s, sizeof(forged));
        forged[0] = 'x';
        assert_int_equal(ab_tokens_lookup(t, forged, 0, &found), -EBADMSG);
        memcpy(forged, s, sizeof(forged));
        forged[10] = '+';
        assert_int_equal(ab_tokens_lookup(t, forged, 0, &found), -EBADMSG);

        /* Forged: well formed, never issued (flip one character). */
        memcpy(forged, s, sizeof(forged));
        forged[20] = forged[20] == 'A' ? 'B' : 'A';
        assert_int_equal(ab_tokens_lookup(t, forged, 0, &found), -ENOENT);

        /* Expired: still found (so its call can end), but -ETIME. */
        found = NULL;
        assert_int_equal(ab_tokens_lookup(t, s, 1000, &found), -ETIME);
        assert_ptr_equal(found, tok);

        /* Revoked by call-end: a replay is told apart from a forgery. */
        ab_tokens_revoke(t, tok, AB_TOKEN_ENDED);
        assert_int_equal(ab_tokens_count(t), 0);
        assert_int_equal(ab_tokens_lookup(t, s, 10, &found), -ESTALE);
        ab_tokens_free(t);
}

static void
test_run_close_and_expire(void **state)
{
        struct ab_token_table *t;
        struct ab_token *found;
        char a[AB_TOKEN_LEN + 1], b[AB_TOKEN_LEN + 1], c[AB_TOKEN_LEN + 1];
        size_t reaped = 0;

        assert_int_equal(ab_tokens_new(16, &t), 0);
        assert_int_equal(ab_tokens_issue(t, claims("run-a", "x.y", 0, 1000), a), 0);
        assert_int_equal(ab_tokens_issue(t, claims("run-a", "x.y", 0, 1000), b), 0);
        assert_int_equal(ab_tokens_issue(t, claims("run-b", "x.y", 0, 1000), c), 0);
        assert_int_equal(ab_tokens_revoke_run(t, "run-a"), 2);
        assert_int_equal(ab_tokens_lookup(t, a, 0, &found), -EPIPE);
        assert_int_equal(ab_tokens_lookup(t, b, 0, &found), -EPIPE);
        assert_int_equal(ab_tokens_lookup(t, c, 0, &found), 0);

        /* Not reaped within the grace period, reaped after it. */
        assert_int_equal(ab_tokens_expire(t, 1000 + AB_TOKEN_REAP_GRACE_MS - 1, NULL, NULL), 0);
        reaped = ab_tokens_expire(t, 1000 + AB_TOKEN_REAP_GRACE_MS, NULL, NULL);
        assert_int_equal(reaped, 1);
        found = NULL;
        assert_int_equal(ab_tokens_lookup(t, c, 1000 + AB_TOKEN_REAP_GRACE_MS, &found), -ETIME);
        assert_null(found);
        ab_tokens_free(t);
}

static void
test_capacity_and_tombstones(void **state)
{
        struct ab_token_table *t;
        char s[AB_TOKEN_LEN + 1], first[AB_TOKEN_LEN + 1];
        struct ab_token *found;

        assert_int_equal(ab_tokens_new(4, &t), 0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(ab_tokens_issue(t, claims("r", "t.t", 0, 1000), s), 0);
        {
                struct ab_token *extra = claims("r", "t.t", 0, 1000);
                assert_int_equal(ab_tokens_issue(t, extra, s), -ENOSPC);
                ab_token_free(extra);
        }
        ab_tokens_free(t);

        /* The tombstone ring forgets the oldest revocation first. */
        assert_int_equal(ab_tokens_new(4, &t), 0);
        for (int i = 0; i < AB_TOMBSTONES_MAX + 1; i++) {
                struct ab_token *tok = claims("r", "t.t", 0, 1000);
                assert_int_equal(ab_tokens_issue(t, tok, s), 0);
                if (i == 0)
                        memcpy(first, s, sizeof(s));
                ab_tokens_revoke(t, tok, AB_TOKEN_ENDED);
        }
        assert_int_equal(ab_tokens_lookup(t, first, 0, &found), -ENOENT);
        assert_int_equal(ab_tokens_lookup(t, s, 0, &found), -ESTALE);
        ab_tokens_free(t);
}

static int
count_fn(const struct ab_token *tok, void *userdata)
{
        (*(int *)userdata)++;
        return 0;
}

static void
test_foreach(void **state)
{
        struct ab_token_table *t;
        char s[AB_TOKEN_LEN + 1];
        int n = 0;

        assert_int_equal(ab_tokens_new(64, &t), 0);
        for (int i = 0; i < 10; i++)
                assert_int_equal(ab_tokens_issue(t, claims("r", "t.t", 0, 1000), s), 0);
        ab_tokens_foreach(t, count_fn, &n);
        assert_int_equal(n, 10);
        ab_tokens_free(t);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_issue_lookup),
                cmocka_unit_test(test_denials),
                cmocka_unit_test(test_run_close_and_expire),
                cmocka_unit_test(test_capacity_and_tombstones),
                cmocka_unit_test(test_foreach),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
