/* SPDX-License-Identifier: MIT */
/* A growing byte buffer, kept NUL-terminated, with an optional bound and a sticky error: a
 * run of appends is checked once at the end (ab_buf's err) instead of after each append. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/macros.h"

#define AB_BUF_FIRST_CAP 256 /* the first allocation (bytes, NUL included) */

struct ab_buf {
        char *p; /* NUL-terminated; NULL until the first append */
        size_t len, cap;
        size_t max; /* most bytes kept (NUL excluded); 0: no bound */
        bool wipe;  /* storage given up (grown out of, freed) is wiped first */
        int err;    /* sticky: 0; -ENOMEM; -E2BIG (an append passed max: the
                                      * bytes that fit were kept, later appends do nothing) */
};

/* Append s[0..n). After an error it does nothing. */
void ab_buf_put(struct ab_buf *b, const void *s, size_t n);
/* Append the NUL-terminated s. */
void ab_buf_puts(struct ab_buf *b, const char *s);
/* Append printf-formatted text (cut at max like ab_buf_put). */
void ab_buf_printf(struct ab_buf *b, const char *fmt, ...) AB_PRINTF(2, 3);
/* Free the storage (wiped first when b->wipe) and reset b to empty, keeping max and wipe.
 * b may be NULL. */
void ab_buf_free(struct ab_buf *b);
