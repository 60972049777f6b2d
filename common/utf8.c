/* Strict UTF-8 checks (see utf8.h). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

size_t ab_utf8_seq_len(const char *str, size_t avail) {
        const unsigned char *s = (const unsigned char *) str;
        unsigned char c;
        size_t n;
        uint32_t cp, min;

        if (avail == 0)
                return 0;
        c = s[0];
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                n = 2;
                cp = c & 0x1f;
                min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                cp = c & 0x0f;
                min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                cp = c & 0x07;
                min = 0x10000;
        } else
                return 0;       /* continuation byte, 0xc0/0xc1 or 0xf5..0xff */
        if (avail < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

bool ab_utf8_valid(const char *s, size_t len, size_t *ret_chars) {
        size_t i = 0, chars = 0;

        while (i < len) {
                size_t n;
                if ((unsigned char) s[i] < 0x80) {      /* fast path for ASCII */
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

size_t ab_utf8_floor(const char *s, size_t len, size_t pos) {
        size_t n;

        if (pos >= len)
                return len;
        /* A sequence is at most 4 bytes: back up over at most 3 continuation bytes. */
        n = pos;
        while (n > 0 && pos - n < 3 && ((unsigned char) s[n] & 0xc0) == 0x80)
                n--;
        if (n < pos && ab_utf8_seq_len(s + n, len - n) > pos - n)
                return n;       /* pos is inside the sequence starting at n */
        return pos;
}

int ab_utf8_cut(const char *s, size_t max) {
        size_t len;

        if (max > INT_MAX)
                max = INT_MAX;
        /* up to 3 bytes past max: the whole sequence that may straddle the cut */
        len = strnlen(s, max + 4);
        return (int)ab_utf8_floor(s, len, max);
}

int ab_utf8_repair(const char *s, size_t len, char **ret) {
        static const char replacement[] = "\xef\xbf\xbd";      /* U+FFFD */
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
