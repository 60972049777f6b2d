/* SPDX-License-Identifier: MIT */
/* Parsing the TIME argument of `agentbrokerctl audit --since TIME` (see timearg.h). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ctl/timearg.h"

#define RECENT_S (10 * 60)
/* Latest accepted time: 9999-12-31 23:59:59 UTC. Also bounds relative offsets. */
#define TIME_MAX_S INT64_C(253402300799)

/* Read exactly n decimal digits at *p into *ret and advance *p. Returns true on success. */
static bool
read_digits(const char **p, int n, int *ret)
{
        int v = 0;

        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static bool
is_leap(int y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
        static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Convert a broken-down local time to an epoch time. Returns 0 or -EINVAL. */
static int
local_to_epoch(struct tm *tm, time_t *ret)
{
        time_t t;

        tm->tm_isdst = -1;
        errno = 0;
        t = mktime(tm);
        if (t == (time_t)-1 && errno != 0)
                return -EINVAL;
        if (t < 0 || (int64_t)t > TIME_MAX_S)
                return -EINVAL;
        *ret = t;
        return 0;
}

/* "YYYY-MM-DD[( |T)HH:MM[:SS]]" in local time. Returns 0 or -EINVAL. */
static int
parse_date(const char *s, time_t *ret)
{
        int y, mo, d, h = 0, mi = 0, sec = 0;
        struct tm tm = { 0 };

        if (!read_digits(&s, 4, &y) || *s++ != '-' || !read_digits(&s, 2, &mo) || *s++ != '-' ||
            !read_digits(&s, 2, &d))
                return -EINVAL;
        if (*s == ' ' || *s == 'T') {
                s++;
                if (!read_digits(&s, 2, &h) || *s++ != ':' || !read_digits(&s, 2, &mi))
                        return -EINVAL;
                if (*s == ':') {
                        s++;
                        if (!read_digits(&s, 2, &sec))
                                return -EINVAL;
                }
        }
        if (*s != '\0')
                return -EINVAL;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
            sec > 59)
                return -EINVAL;

        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        return local_to_epoch(&tm, ret);
}

/* Local midnight days_back days before the day that contains now. Returns 0 or -EINVAL. */
static int
midnight(time_t now, int days_back, time_t *ret)
{
        struct tm tm;

        if (!localtime_r(&now, &tm))
                return -EINVAL;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_mday -= days_back;
        return local_to_epoch(&tm, ret);
}

/* "-N<unit>[N<unit>...]": the number of seconds it stands for. Returns 0, -EINVAL or -ERANGE. */
static int
parse_relative(const char *s, int64_t *ret)
{
        int64_t total = 0;

        if (*s++ != '-' || *s == '\0')
                return -EINVAL;
        while (*s) {
                int64_t n = 0, unit;

                if (*s < '0' || *s > '9')
                        return -EINVAL;
                while (*s >= '0' && *s <= '9') {
                        n = n * 10 + (*s++ - '0');
                        if (n > TIME_MAX_S)
                                return -ERANGE;
                }
                switch (*s++) {
                case 's': unit = 1; break;
                case 'm': unit = 60; break;
                case 'h': unit = 3600; break;
                case 'd': unit = 86400; break;
                case 'w': unit = 7 * 86400; break;
                default: return -EINVAL;
                }
                if (n > TIME_MAX_S / unit || total + n * unit > TIME_MAX_S)
                        return -ERANGE;
                total += n * unit;
        }
        *ret = total;
        return 0;
}

int
ab_ctl_parse_time(const char *s, time_t now, time_t boot, time_t *ret)
{
        time_t t;
        int r;

        if (!s || *s == '\0')
                return -EINVAL;

        if (strspn(s, "0123456789") == strlen(s)) {
                int64_t v = 0;
                for (const char *p = s; *p; p++) {
                        v = v * 10 + (*p - '0');
                        if (v > TIME_MAX_S)
                                return -ERANGE;
                }
                t = (time_t)v;
        } else if (strcmp(s, "now") == 0) {
                t = now;
        } else if (strcmp(s, "recent") == 0) {
                t = now - RECENT_S;
        } else if (strcmp(s, "today") == 0) {
                r = midnight(now, 0, &t);
                if (r < 0)
                        return r;
        } else if (strcmp(s, "yesterday") == 0) {
                r = midnight(now, 1, &t);
                if (r < 0)
                        return r;
        } else if (strcmp(s, "boot") == 0) {
                t = boot;
        } else if (s[0] == '-') {
                int64_t off;
                r = parse_relative(s, &off);
                if (r < 0)
                        return r;
                if ((int64_t)now < off)
                        return -ERANGE;
                t = now - (time_t)off;
        } else {
                r = parse_date(s, &t);
                if (r < 0)
                        return r;
        }

        if (t < 0)
                return -ERANGE;
        *ret = t;
        return 0;
}
