/* SPDX-License-Identifier: MIT */
/* Process-exit watches for agentbrokerd's epoll loop: a pidfd becomes readable when its
 * process exits; a watch calls its function once when that happens. Used to close a module
 * worker's pinned connection when the worker exits (a child that inherited the connection
 * must not keep it), and usable for any other process the broker must follow.
 *
 * Event-loop contract: a watch's epoll tag (ab_pidwatch_tag) has its low bit set, so it
 * cannot be mistaken for an aligned pointer or the small fixed tags. A removed or fired watch
 * is only freed by ab_pidwatch_reap, which the loop calls once no event of the current batch
 * can name it any more. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct ab_pidwatch;
struct ab_pidwatches;
/* Called once when the watched process has exited; set is the watch's set (container_of it
 * to reach the owner). */
typedef void (*ab_pidwatch_fn)(struct ab_pidwatches *set, void *userdata);

struct ab_pidwatches {
        int epfd;                      /* the loop's epoll descriptor */
        struct ab_pidwatch *graveyard; /* removed or fired, freed by ab_pidwatch_reap */
        uint64_t fired;                /* watches whose process exited */
        uint64_t errors;               /* watches that could not be set up */
};

/* Watch pidfd (borrowed: the caller keeps it open until the watch is removed or has fired)
 * and call fn(set, userdata) once when its process exits. *ret is the watch, for
 * ab_pidwatch_remove. Returns 0 or -errno (set->errors counts failures). */
int ab_pidwatch_add(struct ab_pidwatches *set, int pidfd, ab_pidwatch_fn fn, void *userdata,
                    struct ab_pidwatch **ret);
/* Stop watching. The watch must not have fired (a fired watch is gone already). Accepts NULL. */
void ab_pidwatch_remove(struct ab_pidwatches *set, struct ab_pidwatch *w);
/* Whether an epoll tag names a watch. */
bool ab_pidwatch_is_tag(uint64_t tag);
/* Handle an epoll event with a watch's tag: unless the watch was removed meanwhile, remove it
 * and call its function. */
void ab_pidwatch_dispatch(struct ab_pidwatches *set, uint64_t tag);
/* Free every removed or fired watch. Call when no pending event can name them. */
void ab_pidwatch_reap(struct ab_pidwatches *set);
/* An epoll tag's watch (for tests and dispatch). */
uint64_t ab_pidwatch_tag(const struct ab_pidwatch *w);

/* Open a pidfd for pid and check that it is still the process that started at starttime
 * (clock ticks, /proc/<pid>/stat field 22; 0 = do not check). Returns the pidfd, -ESRCH when
 * the process is gone or its pid was reused, or -errno. */
int ab_pidfd_open_checked(int pid, uint64_t starttime);
