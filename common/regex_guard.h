/* Guarding POSIX extended regular expressions taken from configuration (policy argument
 * constraints, tools' JSON Schema `pattern`): glibc's regcomp copies a subexpression for
 * each '+' and each count of {m,n}, so a short pattern can expand into a huge tree, and
 * back-references make matching exponential. Such patterns are refused before regcomp. */
#pragma once

#include <regex.h>
#include <stddef.h>

#define AB_REGEX_MAX_LEN 512        /* longest pattern accepted (bytes) */
#define AB_REGEX_MAX_COST 10000     /* nodes of the expanded expression (estimated) */
#define AB_REGEX_MAX_NESTING 32     /* nested groups */

/* Check pattern for what regcomp would blow up on: back-references, groups nested more
 * than AB_REGEX_MAX_NESTING deep, or an estimated expanded size over AB_REGEX_MAX_COST.
 * Syntax errors are left to regcomp. Returns NULL if acceptable, else a static string
 * saying why not (e.g. "back-references are not allowed"). The length is not checked. */
const char *ab_regex_check(const char *pattern);

/* Check pattern (length included: at most AB_REGEX_MAX_LEN bytes) with ab_regex_check,
 * then regcomp it with REG_EXTENDED | REG_NOSUB into *re. Returns 0 (the caller regfree()s
 * re), -EINVAL with why (NUL-terminated, cut to whylen) saying what is wrong, or -ENOMEM. */
int ab_regex_compile(regex_t *re, const char *pattern, char *why, size_t whylen);
