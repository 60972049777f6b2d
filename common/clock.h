/* SPDX-License-Identifier: MIT */
/* Clock readings in one unit each (header-only, so that modules, which link no common code by
 * default, use the same helpers as the daemons). CLOCK_MONOTONIC unless a clock is named. */
#pragma once

#include <stdint.h>
#include <time.h>

#define AB_NSEC_PER_USEC UINT64_C(1000)
#define AB_NSEC_PER_MSEC UINT64_C(1000000)
#define AB_NSEC_PER_SEC UINT64_C(1000000000)

/* Nanoseconds on clock id (0 if the clock cannot be read: the ids used here always can). */
static inline uint64_t
ab_clock_ns(clockid_t id)
{
        struct timespec ts;

        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (uint64_t)ts.tv_sec * AB_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Nanoseconds, microseconds and milliseconds on the monotonic clock. */
static inline uint64_t
ab_now_ns(void)
{
        return ab_clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t
ab_now_us(void)
{
        return ab_now_ns() / AB_NSEC_PER_USEC;
}

static inline uint64_t
ab_now_ms(void)
{
        return ab_now_ns() / AB_NSEC_PER_MSEC;
}
