/* SPDX-License-Identifier: MIT */
/* Strict UTF-8 checks (see utf8.h). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* The sequence at s (avail >= 1 bytes): its length when well-formed; with partial, avail when
 * the avail bytes (fewer than the sequence needs) can start a well-formed one; else 0. The
 * ranges of RFC 3629 section 4: the second byte's range excludes overlong forms, surrogates
 * and code points above U+10FFFF. */
static size_t
seq_len(const unsigned char *s, size_t avail, bool partial)
{
        unsigned char c = s[0], lo = 0x80, hi = 0xbf;
        size_t n;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0; /* overlong below */
                else if (c == 0xed)
                        hi = 0x9f; /* surrogates above */
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90; /* overlong below */
                else if (c == 0xf4)
                        hi = 0x8f; /* past U+10FFFF above */
        } else
                return 0; /* continuation byte, 0xc0/0xc1 or 0xf5..0xff */
        if (avail < n && !partial)
                return 0;
        if (avail >= 2 && (s[1] < lo || s[1] > hi))
                return 0;
        for (size_t i = 2; i < n && i < avail; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return avail < n ? avail : n;
}

size_t
ab_utf8_seq_len(const char *s, size_t avail)
{
        if (avail == 0)
                return 0;
        return seq_len((const unsigned char *)s, avail, false);
}

size_t
ab_utf8_scan(const char *s, size_t len, bool partial_tail)
{
        size_t i = 0;

        while (i < len) {
                size_t n;
                if ((unsigned char)s[i] < 0x80) { /* fast path for ASCII */
                        i++;
                        continue;
                }
                n = seq_len((const unsigned char *)s + i, len - i, partial_tail);
                if (n == 0)
                        return i;
                i += n;
        }
        return len;
}

bool
ab_utf8_valid(const char *s, size_t len, size_t *ret_chars)
{
        size_t i = 0, chars = 0;

        while (i < len) {
                size_t n;
                if ((unsigned char)s[i] < 0x80) { /* fast path for ASCII */
                        i++;
                        chars++;
                        continue;
                }
                n = ab_utf8_seq_len(s + i, len - i);
                if (n == 0)
                        return false;
                i += n;
                chars++;
        }
        if (ret_chars)
                *ret_chars = chars;
        return true;
}

size_t
ab_utf8_floor(const char *s, size_t len, size_t pos)
{
        size_t n;

        if (pos >= len)
                return len;
        /* A sequence is at most 4 bytes: back up over at most 3 continuation bytes. */
        n = pos;
        while (n > 0 && pos - n < 3 && ((unsigned char)s[n] & 0xc0) == 0x80)
                n--;
        if (n < pos && ab_utf8_seq_len(s + n, len - n) > pos - n)
                return n; /* pos is inside the sequence starting at n */
        return pos;
}

int
ab_utf8_cut(const char *s, size_t max)
{
        size_t len;

        if (max > INT_MAX)
                max = INT_MAX;
        /* up to 3 bytes past max: the whole sequence that may straddle the cut */
        len = strnlen(s, max + 4);
        return (int)ab_utf8_floor(s, len, max);
}

int
ab_utf8_repair(const char *s, size_t len, char **ret)
{
        static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
        size_t i = 0, bad = 0, o = 0;
        char *out;

        while (i < len) {
                size_t n = ab_utf8_seq_len(s + i, len - i);
                if (n == 0) {
                        bad++;
                        n = 1;
                }
                i += n;
        }
        if (bad == 0) {
                *ret = NULL;
                return 0;
        }
        if (len > (SIZE_MAX - 1) - 2 * bad)
                return -ENOMEM;
        out = malloc(len + 2 * bad + 1);
        if (!out)
                return -ENOMEM;
        for (i = 0; i < len;) {
                size_t n = ab_utf8_seq_len(s + i, len - i);
                if (n == 0) {
                        memcpy(out + o, replacement, 3);
                        o += 3;
                        i++;
                } else {
                        memcpy(out + o, s + i, n);
                        o += n;
                        i += n;
                }
        }
        out[o] = '\0';
        *ret = out;
        return 0;
}
