/* SPDX-License-Identifier: MIT */
/* Small shared helpers: cleanup attributes, array sizes, likely/unlikely. */
#pragma once

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AB_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define AB_UNUSED __attribute__((unused))
#define AB_PRINTF(a, b) __attribute__((format(printf, a, b)))

static inline void
ab_freep(void *p)
{
        free(*(void **)p);
}
static inline void
ab_closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(ab_freep)
#define _cleanup_close_ _cleanup_(ab_closep)

/* Take ownership of a pointer: return it and set the source to NULL. */
#define AB_TAKE_PTR(p)                  \
        ({                              \
                __typeof__(p) _p = (p); \
                (p) = NULL;             \
                _p;                     \
        })
#define AB_TAKE_FD(fd)          \
        ({                      \
                int _fd = (fd); \
                (fd) = -1;      \
                _fd;            \
        })
