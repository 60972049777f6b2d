/* SPDX-License-Identifier: MIT */
/* Unit tests for common/clock.h: the units agree with each other and with clock_gettime(2),
 * the monotonic readings never go back, and the coarse and CPU clocks can be read. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "common/clock.h"

/* ms <= us/1000 <= ns/1e6 read in that order, and each against clock_gettime. */
static void
test_units_agree(void **state)
{
        struct timespec ts;
        uint64_t ms, us, ns, raw;

        (void)state;
        ms = ab_now_ms();
        us = ab_now_us();
        ns = ab_now_ns();
        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        raw = (uint64_t)ts.tv_sec * AB_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
        assert_true(ms <= us / 1000);
        assert_true(us <= ns / 1000);
        assert_true(ns <= raw);
        /* the same clock: the readings are close (generous, for a loaded machine) */
        assert_true(raw - ms * AB_NSEC_PER_MSEC < 60 * AB_NSEC_PER_SEC);
}

/* Monotonic: successive readings never decrease. */
static void
test_monotonic(void **state)
{
        uint64_t prev_ns = ab_now_ns(), prev_ms = ab_now_ms();

        (void)state;
        for (int i = 0; i < 10000; i++) {
                uint64_t ns = ab_now_ns(), ms = ab_now_ms();
                assert_true(ns >= prev_ns);
                assert_true(ms >= prev_ms);
                prev_ns = ns;
                prev_ms = ms;
        }
}

/* Other clocks by id; an invalid id reads as 0 rather than garbage. */
static void
test_clock_ids(void **state)
{
        (void)state;
        assert_true(ab_clock_ns(CLOCK_MONOTONIC_COARSE) > 0);
        assert_true(ab_clock_ns(CLOCK_THREAD_CPUTIME_ID) > 0);
        assert_true(ab_clock_ns(CLOCK_REALTIME) / AB_NSEC_PER_SEC >= (uint64_t)time(NULL) - 1);
        assert_int_equal(ab_clock_ns((clockid_t)-1000), 0);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_units_agree),
                cmocka_unit_test(test_monotonic),
                cmocka_unit_test(test_clock_ids),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
