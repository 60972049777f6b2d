/* SPDX-License-Identifier: MIT */
/* UTF-8 (RFC 3629, strict: no overlong forms, no surrogates, nothing above U+10FFFF).
 * JSON text must be UTF-8, but cJSON copies raw bytes of strings as they come: these
 * helpers check, count, cut and repair such strings. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Length (1..4) of the well-formed sequence at s (avail bytes readable), or 0 if the bytes
 * at s do not start one (avail == 0 also gives 0). */
size_t ab_utf8_seq_len(const char *s, size_t avail);
/* Offset of the first byte of s[0..len) that does not start a well-formed sequence, or len
 * when all of s is well-formed. With partial_tail, a sequence cut short by the end of s whose
 * bytes so far can start a well-formed one counts as well-formed (for a buffer whose text
 * goes on past its end). */
size_t ab_utf8_scan(const char *s, size_t len, bool partial_tail);
/* Whether s[0..len) is well-formed UTF-8; if so and ret_chars is not NULL, *ret_chars is
 * its number of code points. */
bool ab_utf8_valid(const char *s, size_t len, size_t *ret_chars);
/* The largest n <= pos such that s[0..n) does not end inside a sequence of well-formed
 * s[0..len) (pos > len counts as len). */
size_t ab_utf8_floor(const char *s, size_t len, size_t pos);
/* How many bytes of the NUL-terminated s to show where at most max fit: strlen(s) when that
 * is at most max, else the longest prefix of at most max bytes that does not end inside a
 * UTF-8 sequence. As an int (max is capped at INT_MAX), for "%.*s": every place that echoes
 * a peer's text cut to a size (errors, logs, audit details) cuts it with this, so the result
 * stays valid UTF-8. AB_UTF8_CUT(s, max) expands to both printf arguments. */
int ab_utf8_cut(const char *s, size_t max);
#define AB_UTF8_CUT(s, max) ab_utf8_cut((s), (max)), (s)
/* Copy s[0..len) into a new NUL-terminated string with every byte that does not belong to
 * a well-formed sequence replaced by U+FFFD. Sets *ret to NULL when s is already
 * well-formed. Returns 0 or -ENOMEM. */
int ab_utf8_repair(const char *s, size_t len, char **ret);
