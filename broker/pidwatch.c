/* SPDX-License-Identifier: MIT */
/* Process-exit watches on pidfds in agentbrokerd's epoll loop (see pidwatch.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker/peer.h"
#include "broker/pidwatch.h"
#include "common/macros.h"

#define PIDWATCH_TAG_BIT ((uint64_t)1)

struct ab_pidwatch {
        int pidfd; /* borrowed */
        ab_pidwatch_fn fn;
        void *userdata;
        bool gone;                /* removed or fired: in the graveyard */
        struct ab_pidwatch *next; /* graveyard link */
};

uint64_t
ab_pidwatch_tag(const struct ab_pidwatch *w)
{
        return (uint64_t)(uintptr_t)w | PIDWATCH_TAG_BIT;
}

bool
ab_pidwatch_is_tag(uint64_t tag)
{
        /* malloc'ed watches and connections are aligned: only a watch's tag has the bit set;
         * the loop's fixed tags (1, 2, 3) are below any pointer and never reach here as one. */
        return (tag & PIDWATCH_TAG_BIT) && tag > 0xffff;
}

int
ab_pidwatch_add(struct ab_pidwatches *set, int pidfd, ab_pidwatch_fn fn, void *userdata,
                struct ab_pidwatch **ret)
{
        struct ab_pidwatch *w;
        struct epoll_event e = { .events = EPOLLIN };

        if (pidfd < 0 || !fn) {
                set->errors++;
                return -EINVAL;
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
                set->errors++;
                return -ENOMEM;
        }
        *w = (struct ab_pidwatch){ .pidfd = pidfd, .fn = fn, .userdata = userdata };
        e.data.u64 = ab_pidwatch_tag(w);
        if (epoll_ctl(set->epfd, EPOLL_CTL_ADD, pidfd, &e) < 0) {
                int r = -errno;
                free(w);
                set->errors++;
                return r;
        }
        *ret = w;
        return 0;
}

/* Take w out of epoll and put it in the graveyard. */
static void
bury(struct ab_pidwatches *set, struct ab_pidwatch *w)
{
        (void)epoll_ctl(set->epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
        w->gone = true;
        w->pidfd = -1;
        w->next = set->graveyard;
        set->graveyard = w;
}

void
ab_pidwatch_remove(struct ab_pidwatches *set, struct ab_pidwatch *w)
{
        if (!w || w->gone)
                return;
        bury(set, w);
}

void
ab_pidwatch_dispatch(struct ab_pidwatches *set, uint64_t tag)
{
        struct ab_pidwatch *w = (struct ab_pidwatch *)(uintptr_t)(tag & ~PIDWATCH_TAG_BIT);

        if (w->gone)
                return;
        bury(set, w);
        set->fired++;
        w->fn(set, w->userdata);
}

void
ab_pidwatch_reap(struct ab_pidwatches *set)
{
        while (set->graveyard) {
                struct ab_pidwatch *w = set->graveyard;
                set->graveyard = w->next;
                free(w);
        }
}

int
ab_pidfd_open_checked(int pid, uint64_t starttime)
{
        _cleanup_close_ int fd = -1;
        uint64_t st;

        if (pid <= 0)
                return -EINVAL;
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return -errno;
        /* The pid may have been reused before the pidfd was opened: compare start times. */
        if (starttime && (ab_proc_starttime(pid, &st) < 0 || st != starttime))
                return -ESRCH;
        return AB_TAKE_FD(fd);
}
