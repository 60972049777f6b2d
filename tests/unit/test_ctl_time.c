/* SPDX-License-Identifier: MIT */
/* Unit tests for ab_ctl_parse_time (agentbrokerctl audit --since TIME). */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>

#include "ctl/timearg.h"

#define NOW ((time_t)1718000000) /* 2024-06-10 06:13:20 UTC */
#define BOOT ((time_t)1717990000)

static void
set_tz(const char *tz)
{
        setenv("TZ", tz, 1);
        tzset();
}

static time_t
parse_ok(const char *s, time_t now)
{
        time_t t = -1;
        int r = ab_ctl_parse_time(s, now, BOOT, &t);
        if (r != 0)
                fail_msg("'%s' was rejected: %d", s, r);
        return t;
}

static int
parse_err(const char *s)
{
        time_t t = 12345;
        int r = ab_ctl_parse_time(s, NOW, BOOT, &t);
        assert_int_equal(t, 12345); /* untouched on failure */
        return r;
}

static void
test_epoch(void **state)
{
        set_tz("UTC");
        assert_int_equal(parse_ok("1718000000", NOW), 1718000000);
        assert_int_equal(parse_ok("0", NOW), 0);
        assert_int_equal(parse_ok("253402300799", NOW), INT64_C(253402300799));
        assert_int_equal(parse_err("253402300800"), -ERANGE);
        assert_int_equal(parse_err("99999999999999999999999"), -ERANGE);
}

static void
test_dates_utc(void **state)
{
        set_tz("UTC");
        assert_int_equal(parse_ok("2024-06-10", NOW), 1717977600);
        assert_int_equal(parse_ok("2024-06-10 12:34", NOW), 1717977600 + 12 * 3600 + 34 * 60);
        assert_int_equal(parse_ok("2024-06-10 12:34:56", NOW), 1718022896);
        assert_int_equal(parse_ok("2024-06-10T12:34:56", NOW), 1718022896);
        assert_int_equal(parse_ok("2024-02-29", NOW), 1709164800);
        assert_int_equal(parse_ok("2024-06-10 23:59:59", NOW), 1717977600 + 86399);
}

static void
test_dates_local(void **state)
{
        /* US Eastern with its DST rule, as a POSIX TZ string (no tzdata needed): EDT in June. */
        set_tz("EST5EDT,M3.2.0,M11.1.0");
        assert_int_equal(parse_ok("2024-06-10", NOW), 1717977600 + 4 * 3600);
        assert_int_equal(parse_ok("2024-01-10", NOW), 1704844800 + 5 * 3600);
        set_tz("UTC");
}

static void
test_bad_dates(void **state)
{
        static const char *const bad[] = {
                "2023-02-29",
                "2024-13-01",
                "2024-00-10",
                "2024-06-31",
                "2024-06-00",
                "2024-06-10 24:00",
                "2024-06-10 12:60",
                "2024-06-10 12:30:60",
                "2024-6-10",
                "24-06-10",
                "2024-06-10 ",
                "2024-06-10 12",
                "2024-06-10 12:3",
                "2024-06-10x",
                "2024/06/10",
                "1969-12-31",
                "tomorrow",
                "",
                "now ",
                " now",
                "1h",
                "+1h",
        };
        set_tz("UTC");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = parse_err(bad[i]);
                if (r != -EINVAL)
                        fail_msg("'%s': expected -EINVAL, got %d", bad[i], r);
        }
        assert_int_equal(ab_ctl_parse_time(NULL, NOW, BOOT, &(time_t){ 0 }), -EINVAL);
}

static void
test_keywords(void **state)
{
        set_tz("UTC");
        assert_int_equal(parse_ok("now", NOW), NOW);
        assert_int_equal(parse_ok("recent", NOW), NOW - 600);
        assert_int_equal(parse_ok("today", NOW), 1717977600);
        assert_int_equal(parse_ok("yesterday", NOW), 1717977600 - 86400);
        assert_int_equal(parse_ok("boot", NOW), BOOT);
}

static void
test_keywords_dst(void **state)
{
        /* 2024-03-11 12:00 UTC is 08:00 EDT, the day after the switch to DST: today's
         * midnight is at 04:00 UTC, yesterday's (still EST) at 05:00 UTC the day before. */
        set_tz("EST5EDT,M3.2.0,M11.1.0");
        assert_int_equal(parse_ok("today", 1710158400), 1710129600);
        assert_int_equal(parse_ok("yesterday", 1710158400), 1710046800);
        set_tz("UTC");
}

static void
test_relative(void **state)
{
        set_tz("UTC");
        assert_int_equal(parse_ok("-1h", NOW), NOW - 3600);
        assert_int_equal(parse_ok("-30m", NOW), NOW - 1800);
        assert_int_equal(parse_ok("-45s", NOW), NOW - 45);
        assert_int_equal(parse_ok("-2d", NOW), NOW - 2 * 86400);
        assert_int_equal(parse_ok("-1w", NOW), NOW - 7 * 86400);
        assert_int_equal(parse_ok("-1h30m", NOW), NOW - 5400);
        assert_int_equal(parse_ok("-0s", NOW), NOW);
        assert_int_equal(parse_err("-"), -EINVAL);
        assert_int_equal(parse_err("-1"), -EINVAL);
        assert_int_equal(parse_err("-h"), -EINVAL);
        assert_int_equal(parse_err("-1x"), -EINVAL);
        assert_int_equal(parse_err("-1h-1m"), -EINVAL);
        assert_int_equal(parse_err("-1 h"), -EINVAL);
        /* further back than the epoch, or overflowing */
        assert_int_equal(parse_err("-3000w"), -ERANGE);
        assert_int_equal(parse_err("-99999999999999999999w"), -ERANGE);
        assert_int_equal(parse_err("-9999999999999w"), -ERANGE);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_epoch),       cmocka_unit_test(test_dates_utc),
                cmocka_unit_test(test_dates_local), cmocka_unit_test(test_bad_dates),
                cmocka_unit_test(test_keywords),    cmocka_unit_test(test_keywords_dst),
                cmocka_unit_test(test_relative),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
