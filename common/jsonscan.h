/* SPDX-License-Identifier: MIT */
/* A cheap scan of JSON text before cJSON parses it: cJSON recurses once per nesting level and
 * ends a string at an escaped NUL, so the depth, the number of values, NUL bytes and (where
 * the text must be UTF-8) the encoding are checked first, in one pass without allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct ab_json_scan_limits {
        unsigned max_depth; /* deepest nesting of objects and arrays */
        size_t max_values;  /* most values, counted as '{', '[' and ',' (0: no limit) */
        bool utf8;          /* the text must be well-formed UTF-8 */
};

enum ab_json_scan_fault {
        AB_JSON_SCAN_OK = 0,
        AB_JSON_SCAN_NUL,    /* a NUL byte */
        AB_JSON_SCAN_UTF8,   /* not well-formed UTF-8 (with limits->utf8) */
        AB_JSON_SCAN_DEPTH,  /* nested deeper than limits->max_depth */
        AB_JSON_SCAN_VALUES, /* more than limits->max_values values */
};

/* Scan s[0..len) under limits. Returns the first fault found, or AB_JSON_SCAN_OK. When
 * ret_escaped_nul is not NULL it is set to true if a string holds "\u0000" (and left alone
 * otherwise). Strings are followed only well enough to skip their brackets: the text is not
 * validated as JSON. */
enum ab_json_scan_fault ab_json_scan(const char *s, size_t len, const struct ab_json_scan_limits *limits,
                                     bool *ret_escaped_nul);
