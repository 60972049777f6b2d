/* Memory for secrets: page-aligned, mlock'd, excluded from core dumps, wiped on free. */
#pragma once

#include <stddef.h>

struct ab_secbuf {
        unsigned char *data;   /* len bytes of secret */
        size_t len;
        size_t map_len;        /* size of the mapping behind data */
};

/* Allocate a locked, non-dumpable buffer of len bytes (len may be 0).
 * Returns 0 or -errno (-ENOMEM; mlock failing is logged once, not fatal). */
int ab_secbuf_new(size_t len, struct ab_secbuf **ret);
/* Copy len bytes into a new secure buffer. Returns 0 or -errno. */
int ab_secbuf_from(const void *src, size_t len, struct ab_secbuf **ret);
/* Wipe and unmap. Accepts NULL. */
void ab_secbuf_free(struct ab_secbuf *b);
static inline void ab_secbuf_freep(struct ab_secbuf **b) { ab_secbuf_free(*b); }

/* Process hardening for a process that holds secrets: PR_SET_DUMPABLE=0, RLIMIT_CORE=0.
 * Returns 0 or -errno. */
int ab_process_harden(void);

/* Wipe then free a heap buffer of n bytes. Accepts NULL. */
void ab_freezero(void *p, size_t n);
/* Wipe then free a NUL-terminated heap string. Accepts NULL. */
void ab_strfreezero(char *s);
