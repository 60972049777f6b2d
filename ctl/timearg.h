/* SPDX-License-Identifier: MIT */
/* Parsing the TIME argument of `agentbrokerctl audit --since TIME`. */
#pragma once

#include <time.h>

/* Parse s into seconds since the epoch. Accepted forms:
 *   an epoch number ("1718000000");
 *   a local date and time "YYYY-MM-DD", "YYYY-MM-DD HH:MM" or "YYYY-MM-DD HH:MM:SS"
 *   (a 'T' may replace the space);
 *   "now", "recent" (10 minutes ago), "today" (local midnight), "yesterday"
 *   (the midnight before), "boot" (the time the system booted);
 *   a relative time "-N<unit>[N<unit>...]" with units s, m, h, d, w (e.g. "-1h", "-1h30m").
 * now and boot are the current time and the boot time, passed in so that tests are exact.
 * Returns 0, or -EINVAL (not a time, out of range) or -ERANGE (too far from now). */
int ab_ctl_parse_time(const char *s, time_t now, time_t boot, time_t *ret);
