/* SPDX-License-Identifier: MIT */
/* The one regular-expression engine of agentbroker: PCRE2 behind a small API, with limits on
 * everything a pattern or a subject can make cost. Every pattern agentbroker compiles goes
 * through here: policy argument constraints (policy/), tools' JSON Schema `pattern` (host/),
 * and patterns from tool arguments (modules/fs). The syntax is PCRE2's, set up to behave like
 * ECMA-262 where they differ (`$` only at the very end, `\uHHHH`); back-references are
 * refused. docs/result-shaping.md ("Regular expressions") describes the accepted subset.
 *
 * Cost is bounded by construction: a pattern is at most AB_REGEX_MAX_LEN bytes, nests at most
 * AB_REGEX_MAX_NESTING groups and compiles to at most AB_REGEX_MAX_COMPILED bytes; a search
 * stops with -ETIME once it has backtracked AB_REGEX_MATCH_LIMIT times or used
 * AB_REGEX_MATCH_CPU_MS of CPU time, and with -E2BIG past its depth or heap limit. */
#pragma once

#include <stddef.h>

#define AB_REGEX_MAX_LEN 1024               /* longest pattern accepted (bytes) */
#define AB_REGEX_MAX_NESTING 32             /* nested parentheses */
#define AB_REGEX_MAX_COMPILED (64 * 1024)   /* compiled size of a pattern (bytes) */
#define AB_REGEX_MATCH_LIMIT 1000000        /* backtracking points of one search */
#define AB_REGEX_DEPTH_LIMIT 100000         /* nested backtracking points of one search */
#define AB_REGEX_HEAP_LIMIT_KIB (16 * 1024) /* backtracking memory of one search (KiB) */
#define AB_REGEX_MATCH_CPU_MS \
        90 /* CPU time of one search (ms): checked between matcher steps, so a search ends within 100 ms */

/* Flags of ab_regex_compile. */
#define AB_REGEX_ICASE (1u << 0)   /* case-insensitive */
#define AB_REGEX_LITERAL (1u << 1) /* the pattern is a plain string, no metacharacters */

struct ab_regex;

/* Compile pattern[0..len) (it may contain NUL bytes) with flags (AB_REGEX_*) into *ret_re.
 * Returns 0, -EINVAL with err (NUL-terminated, cut to errlen; err may be NULL) saying why the
 * pattern is refused (syntax, with its offset; too long; too deeply nested; too large;
 * back-references), or -ENOMEM. */
int ab_regex_compile(const char *pattern, size_t len, unsigned flags, struct ab_regex **ret_re, char *err,
                     size_t errlen);

/* Search subject[0..len) (any bytes: invalid UTF-8 never matches a character) for the first
 * match of re. Returns 1 with *ret_start and *ret_end (either may be NULL) the match's byte
 * offsets, 0 if there is none, -ETIME if the search ran out of its backtracking or CPU-time
 * budget, -E2BIG if it ran out of its depth or heap limit, -ELOOP if it recursed without
 * advancing (in each case the subject is neither accepted nor rejected: the caller fails
 * closed), -ENOMEM, or -EINVAL. Thread-safe. */
int ab_regex_search(const struct ab_regex *re, const char *subject, size_t len, size_t *ret_start,
                    size_t *ret_end);

/* A short message for a negative ab_regex_search result, for errors shown to a peer. */
const char *ab_regex_strerror(int r);

/* Free re; NULL is accepted. */
void ab_regex_free(struct ab_regex *re);
