/* SPDX-License-Identifier: MIT */
/* Memory for secrets: page-aligned, mlock'd, excluded from core dumps, wiped on free. */
#pragma once

#include <stddef.h>
#include <string.h>

#include "common/macros.h"

/* Wipe n bytes at p, in a way the compiler cannot drop (explicit_bzero). The one wipe for
 * secret bytes in our own buffers; OPENSSL_cleanse is used only next to OpenSSL objects.
 * Accepts NULL (as OPENSSL_cleanse does). */
static inline void
ab_wipe(void *p, size_t n)
{
        if (p)
                explicit_bzero(p, n);
}

/* Wipe a variable (an array, a struct) when the scope it is declared in ends, on every path:
 *     unsigned char key[32];
 *     AB_WIPE_ON_EXIT(key);
 * The guard is declared after the variable, so it runs before the variable goes. */
struct ab_wipe_guard {
        void *p;
        size_t n;
};
static inline void
ab_wipe_guardp(struct ab_wipe_guard *g)
{
        ab_wipe(g->p, g->n);
}
#define AB_WIPE_CONCAT_(a, b) a##b
#define AB_WIPE_CONCAT(a, b) AB_WIPE_CONCAT_(a, b)
#define AB_WIPE_ON_EXIT(var)                                                          \
        _cleanup_(ab_wipe_guardp) struct ab_wipe_guard AB_WIPE_CONCAT(ab_wipe_guard_, \
                                                                      __LINE__) = { &(var), sizeof(var) }

struct ab_secbuf {
        unsigned char *data; /* len bytes of secret */
        size_t len;
        size_t map_len; /* size of the mapping behind data */
};

/* Allocate a locked, non-dumpable buffer of len bytes (len may be 0).
 * Returns 0 or -errno (-ENOMEM; mlock failing is logged once, not fatal). */
int ab_secbuf_new(size_t len, struct ab_secbuf **ret);
/* Copy len bytes into a new secure buffer. Returns 0 or -errno. */
int ab_secbuf_from(const void *src, size_t len, struct ab_secbuf **ret);
/* Wipe and unmap. Accepts NULL. */
void ab_secbuf_free(struct ab_secbuf *b);
static inline void
ab_secbuf_freep(struct ab_secbuf **b)
{
        ab_secbuf_free(*b);
}
/* A secure buffer freed (wiped and unmapped) when its scope ends. */
#define _cleanup_secbuf_ _cleanup_(ab_secbuf_freep)

/* Process hardening for a process that holds secrets: PR_SET_DUMPABLE=0, RLIMIT_CORE=0.
 * Returns 0 or -errno. */
int ab_process_harden(void);

/* Wipe then free a heap buffer of n bytes. Accepts NULL. */
void ab_freezero(void *p, size_t n);
/* Wipe then free a NUL-terminated heap string. Accepts NULL. */
void ab_strfreezero(char *s);
static inline void
ab_strfreezerop(char **s)
{
        ab_strfreezero(*s);
}
/* A heap string holding a secret, wiped and freed when its scope ends. */
#define _cleanup_strfreezero_ _cleanup_(ab_strfreezerop)
