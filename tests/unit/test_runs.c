/* SPDX-License-Identifier: MIT */
/* Unit tests: runs (broker/runs.c): opening under the open-run limit, ids, closing and the
 * bounded memory of closed runs, the duration and call budgets, and the per-tool rate
 * buckets with their limits. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "broker/runs.h"

static int
setup(void **state)
{
        struct ab_runs *runs = NULL;

        assert_int_equal(ab_runs_new(&runs), 0);
        *state = runs;
        return 0;
}

static int
teardown(void **state)
{
        ab_runs_free(*state);
        return 0;
}

/* A run open for uid 1000, with no open-run limit. */
static struct ab_run *
open_one(struct ab_runs *runs)
{
        struct ab_run *run = NULL;

        assert_int_equal(ab_runs_open(runs, 1000, "label", 0, &run), 0);
        assert_non_null(run);
        return run;
}

static void
test_open_find_close(void **state)
{
        struct ab_runs *runs = *state;
        struct ab_run *a = open_one(runs), *b = open_one(runs);

        assert_int_equal(strlen(a->id), AB_RUN_ID_LEN);
        assert_int_equal(strspn(a->id, "0123456789abcdef"), AB_RUN_ID_LEN);
        assert_string_not_equal(a->id, b->id);
        assert_string_equal(a->label, "label");
        assert_int_equal(a->owner, 1000);
        assert_true(a->open);
        assert_int_equal(a->host_pidfd, -1);
        assert_ptr_equal(ab_runs_first(runs), b); /* newest first */
        assert_ptr_equal(b->next, a);
        assert_ptr_equal(ab_runs_find(runs, a->id), a);
        assert_null(ab_runs_find(runs, "0123456789abcdef0123456789abcdef"));
        assert_null(ab_runs_find(runs, ""));
        assert_int_equal(ab_runs_open_count(runs), 2);

        ab_runs_close(runs, a, 4242);
        assert_false(a->open);
        assert_int_equal(a->closed_ms, 4242);
        assert_int_equal(ab_runs_open_count(runs), 1);
        assert_ptr_equal(ab_runs_find(runs, a->id), a); /* closed runs stay findable */
        /* Closing again changes nothing (the open count is not taken twice). */
        ab_runs_close(runs, a, 9999);
        assert_int_equal(a->closed_ms, 4242);
        assert_int_equal(ab_runs_open_count(runs), 1);
}

static void
test_no_label_and_profile(void **state)
{
        struct ab_runs *runs = *state;
        struct ab_run *run = NULL;

        assert_int_equal(ab_runs_open(runs, 0, NULL, 0, &run), 0);
        assert_null(run->label);
        assert_null(run->profile);
        assert_int_equal(ab_run_set_profile(run, "first"), 0);
        assert_string_equal(run->profile, "first");
        assert_int_equal(ab_run_set_profile(run, "second"), 0);
        assert_string_equal(run->profile, "second");
}

static void
test_max_open(void **state)
{
        struct ab_runs *runs = *state;
        struct ab_run *a = NULL, *b = NULL, *c = NULL, *keep = c;

        assert_int_equal(ab_runs_open(runs, 1, NULL, 2, &a), 0);
        assert_int_equal(ab_runs_open(runs, 1, NULL, 2, &b), 0);
        assert_int_equal(ab_runs_open(runs, 1, NULL, 2, &c), -EUSERS);
        assert_ptr_equal(c, keep); /* *ret untouched on failure */
        assert_int_equal(ab_runs_open_count(runs), 2);
        /* The limit counts open runs only: a closed one makes room. */
        ab_runs_close(runs, a, 1);
        assert_int_equal(ab_runs_open(runs, 1, NULL, 2, &c), 0);
        assert_non_null(c);
        /* max_open 1 with two open: refused; 0 means no limit. */
        assert_int_equal(ab_runs_open(runs, 1, NULL, 1, &a), -EUSERS);
        for (int i = 0; i < 300; i++)
                open_one(runs);
        assert_int_equal(ab_runs_open_count(runs), 302);
}

static void
test_closed_kept_bounded(void **state)
{
        struct ab_runs *runs = *state;
        enum {
                EXTRA = 10,
                N = AB_RUNS_CLOSED_KEPT + EXTRA
        };
        static char ids[N][AB_RUN_ID_LEN + 1];
        struct ab_run *open_run = open_one(runs);

        for (size_t i = 0; i < N; i++) {
                struct ab_run *run = open_one(runs);

                snprintf(ids[i], sizeof(ids[i]), "%s", run->id);
                ab_runs_close(runs, run, i);
        }
        /* The oldest closed runs are forgotten, the last AB_RUNS_CLOSED_KEPT remembered. */
        for (size_t i = 0; i < EXTRA; i++)
                assert_null(ab_runs_find(runs, ids[i]));
        for (size_t i = EXTRA; i < N; i++)
                assert_non_null(ab_runs_find(runs, ids[i]));
        /* An open run is never dropped, however old. */
        assert_ptr_equal(ab_runs_find(runs, open_run->id), open_run);
        assert_int_equal(ab_runs_open_count(runs), 1);
        size_t n = 0;
        for (struct ab_run *run = ab_runs_first(runs); run; run = run->next)
                n++;
        assert_int_equal(n, AB_RUNS_CLOSED_KEPT + 1);
}

static void
test_expiry(void **state)
{
        struct ab_run *run = open_one(*state);
        uint64_t t0 = run->opened_ms;

        /* 0: no limit, whatever the age. */
        assert_false(ab_run_expired(run, 0, t0));
        assert_false(ab_run_expired(run, 0, UINT64_MAX));
        /* Expired only once strictly more than the duration has passed. */
        assert_false(ab_run_expired(run, 5, t0));
        assert_false(ab_run_expired(run, 5, t0 + 4999));
        assert_false(ab_run_expired(run, 5, t0 + 5000));
        assert_true(ab_run_expired(run, 5, t0 + 5001));
        /* The largest duration does not overflow into an early expiry. */
        assert_false(ab_run_expired(run, UINT_MAX, t0 + (uint64_t)UINT_MAX * 1000));
        assert_true(ab_run_expired(run, UINT_MAX, t0 + (uint64_t)UINT_MAX * 1000 + 1));
        assert_false(ab_run_expired(run, UINT_MAX, t0 + 1000));
}

static void
test_calls_budget(void **state)
{
        struct ab_run *run = open_one(*state);

        /* 0: no limit, even after as many calls as a counter holds. */
        run->calls = UINT64_MAX;
        assert_false(ab_run_calls_exhausted(run, 0));
        run->calls = 0;
        assert_false(ab_run_calls_exhausted(run, 1));
        run->calls = 1;
        assert_true(ab_run_calls_exhausted(run, 1));
        run->calls = 9;
        assert_false(ab_run_calls_exhausted(run, 10));
        run->calls = 10;
        assert_true(ab_run_calls_exhausted(run, 10));
        run->calls = 11;
        assert_true(ab_run_calls_exhausted(run, 10));
        run->calls = (uint64_t)UINT_MAX - 1;
        assert_false(ab_run_calls_exhausted(run, UINT_MAX));
        run->calls = UINT_MAX;
        assert_true(ab_run_calls_exhausted(run, UINT_MAX));
}

static void
test_rate_burst_and_refill(void **state)
{
        struct ab_run *run = open_one(*state);
        uint64_t t = 1000000;

        /* A fresh bucket holds burst calls. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t), 0);
        assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t), -EAGAIN);
        assert_int_equal(run->n_rates, 1);
        /* One call per second comes back: not before. */
        assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t + 999), -EAGAIN);
        assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t + 1000), 0);
        assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t + 1000), -EAGAIN);
        /* A long pause refills to burst, no further. */
        t += 1000 * 1000;
        for (int i = 0; i < 3; i++)
                assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t), 0);
        assert_int_equal(ab_run_rate_take(run, "t", 1.0, 3, t), -EAGAIN);
}

static void
test_rate_fractional_and_zero_burst(void **state)
{
        struct ab_run *run = open_one(*state);
        uint64_t t = 5000;

        /* 0.5 calls/s: after the burst of 1, the next call two seconds later. */
        assert_int_equal(ab_run_rate_take(run, "slow", 0.5, 1, t), 0);
        assert_int_equal(ab_run_rate_take(run, "slow", 0.5, 1, t + 1000), -EAGAIN);
        assert_int_equal(ab_run_rate_take(run, "slow", 0.5, 1, t + 2000), 0);
        /* A burst of 0 never allows a call, however long one waits. */
        assert_int_equal(ab_run_rate_take(run, "never", 100.0, 0, t), -EAGAIN);
        assert_int_equal(ab_run_rate_take(run, "never", 100.0, 0, t + 1000000), -EAGAIN);
}

static void
test_rate_buckets_per_tool(void **state)
{
        struct ab_run *run = open_one(*state);

        assert_int_equal(ab_run_rate_take(run, "a", 1.0, 1, 0), 0);
        assert_int_equal(ab_run_rate_take(run, "a", 1.0, 1, 0), -EAGAIN);
        /* Another tool (or a rule's shared key) has its own bucket. */
        assert_int_equal(ab_run_rate_take(run, "b", 1.0, 1, 0), 0);
        assert_int_equal(ab_run_rate_take(run, "rule a*", 1.0, 1, 0), 0);
        assert_int_equal(run->n_rates, 3);
}

static void
test_rate_tools_limit(void **state)
{
        struct ab_runs *runs = *state;
        struct ab_run *run = open_one(runs);
        char name[32];

        for (int i = 0; i < AB_RUN_RATE_TOOLS_MAX; i++) {
                snprintf(name, sizeof(name), "tool%d", i);
                assert_int_equal(ab_run_rate_take(run, name, 1.0, 2, 0), 0);
        }
        assert_int_equal(run->n_rates, AB_RUN_RATE_TOOLS_MAX);
        /* One more tool is refused; the tracked ones keep working. */
        assert_int_equal(ab_run_rate_take(run, "one-too-many", 1.0, 2, 0), -ENOSPC);
        assert_int_equal(run->n_rates, AB_RUN_RATE_TOOLS_MAX);
        assert_int_equal(ab_run_rate_take(run, "tool0", 1.0, 2, 0), 0);
        assert_int_equal(ab_run_rate_take(run, "tool0", 1.0, 2, 0), -EAGAIN);
        /* Closing the run drops its buckets. */
        ab_runs_close(runs, run, 1);
        assert_int_equal(run->n_rates, 0);
        assert_null(run->rates);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_find_close, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_label_and_profile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_max_open, setup, teardown),
                cmocka_unit_test_setup_teardown(test_closed_kept_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_calls_budget, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rate_burst_and_refill, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rate_fractional_and_zero_burst, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rate_buckets_per_tool, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rate_tools_limit, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
