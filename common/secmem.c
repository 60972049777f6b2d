/* SPDX-License-Identifier: MIT */
/* Secure memory for secrets and process hardening. */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secmem.h"

static atomic_bool mlock_warned;

/* Map a fresh page-aligned anonymous region for len bytes (at least one page), lock it
 * (a failure is logged once and tolerated), and exclude it from core dumps and from
 * children after fork. Returns 0 or -ENOMEM. */
int
ab_secbuf_new(size_t len, struct ab_secbuf **ret)
{
        long page = sysconf(_SC_PAGESIZE);
        size_t pg = page > 0 ? (size_t)page : 4096;
        size_t map_len;
        struct ab_secbuf *b;
        void *p;

        if (len > SIZE_MAX - pg)
                return -ENOMEM;
        map_len = len == 0 ? pg : (len + pg - 1) / pg * pg;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
                free(b);
                return -ENOMEM;
        }
        if (mlock(p, map_len) < 0) {
                int e = errno;
                if (!atomic_exchange(&mlock_warned, true))
                        log_warning("cannot lock secret memory (%s); secrets may be swapped out",
                                    strerror(e));
        }
        (void)madvise(p, map_len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
        (void)madvise(p, map_len, MADV_WIPEONFORK);
#endif
        b->data = p;
        b->len = len;
        b->map_len = map_len;
        *ret = b;
        return 0;
}

int
ab_secbuf_from(const void *src, size_t len, struct ab_secbuf **ret)
{
        struct ab_secbuf *b;
        int r = ab_secbuf_new(len, &b);
        if (r < 0)
                return r;
        if (len > 0)
                memcpy(b->data, src, len);
        *ret = b;
        return 0;
}

void
ab_secbuf_free(struct ab_secbuf *b)
{
        if (!b)
                return;
        if (b->data) {
                ab_wipe(b->data, b->map_len);
                (void)munlock(b->data, b->map_len);
                (void)munmap(b->data, b->map_len);
        }
        free(b);
}

int
ab_process_harden(void)
{
        struct rlimit rl = { 0, 0 };
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return -errno;
        if (setrlimit(RLIMIT_CORE, &rl) < 0)
                return -errno;
        return 0;
}

void
ab_freezero(void *p, size_t n)
{
        if (!p)
                return;
        ab_wipe(p, n);
        free(p);
}

void
ab_strfreezero(char *s)
{
        if (!s)
                return;
        ab_freezero(s, strlen(s));
}
