/* SPDX-License-Identifier: MIT */
/* The growing buffer of buf.h. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

/* Make room for n more bytes and the NUL (the caller has bounded n by max). With b->wipe the
 * old storage is copied and wiped rather than left to realloc. Returns 0 or -ENOMEM. */
static int
grow(struct ab_buf *b, size_t n)
{
        size_t need, cap;
        char *q;

        if (n > SIZE_MAX - 1 - b->len)
                return -ENOMEM;
        need = b->len + n + 1;
        if (b->p && need <= b->cap)
                return 0;
        cap = b->cap ? b->cap : AB_BUF_FIRST_CAP;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (b->max && cap > b->max + 1)
                cap = b->max + 1 > need ? b->max + 1 : need;
        if (b->wipe) {
                q = malloc(cap);
                if (!q)
                        return -ENOMEM;
                if (b->p) {
                        memcpy(q, b->p, b->len + 1);
                        explicit_bzero(b->p, b->cap);
                        free(b->p);
                }
        } else {
                q = realloc(b->p, cap);
                if (!q)
                        return -ENOMEM;
        }
        b->p = q;
        b->cap = cap;
        return 0;
}

void
ab_buf_put(struct ab_buf *b, const void *s, size_t n)
{
        size_t keep = n;

        if (b->err)
                return;
        if (b->max && keep > b->max - b->len)
                keep = b->max - b->len;
        if (grow(b, keep) < 0) {
                b->err = -ENOMEM;
                return;
        }
        if (keep)
                memcpy(b->p + b->len, s, keep);
        b->len += keep;
        b->p[b->len] = '\0';
        if (keep < n)
                b->err = -E2BIG;
}

void
ab_buf_puts(struct ab_buf *b, const char *s)
{
        ab_buf_put(b, s, strlen(s));
}

void
ab_buf_printf(struct ab_buf *b, const char *fmt, ...)
{
        char small[256], *big;
        va_list ap;
        int n;

        if (b->err)
                return;
        va_start(ap, fmt);
        n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0) {
                b->err = -ENOMEM;
                return;
        }
        if ((size_t)n < sizeof(small)) {
                ab_buf_put(b, small, (size_t)n);
                if (b->wipe)
                        explicit_bzero(small, sizeof(small));
                return;
        }
        if (b->wipe)
                explicit_bzero(small, sizeof(small));
        big = malloc((size_t)n + 1);
        if (!big) {
                b->err = -ENOMEM;
                return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        ab_buf_put(b, big, (size_t)n);
        if (b->wipe)
                explicit_bzero(big, (size_t)n + 1);
        free(big);
}

void
ab_buf_free(struct ab_buf *b)
{
        if (!b)
                return;
        if (b->p && b->wipe)
                explicit_bzero(b->p, b->cap);
        free(b->p);
        *b = (struct ab_buf){ .max = b->max, .wipe = b->wipe };
}
