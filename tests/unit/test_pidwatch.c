/* SPDX-License-Identifier: MIT */
/* Unit tests: process-exit watches on pidfds in an epoll loop (broker/pidwatch.c), the way
 * agentbrokerd's loop uses them: dispatch after the batch, free only by reap. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/peer.h"
#include "broker/pidwatch.h"

/* A child that sleeps until killed. Returns its pid. */
static pid_t
sleeper(void)
{
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                for (;;)
                        pause();
        }
        return pid;
}

static void
count_fired(struct ab_pidwatches *set, void *userdata)
{
        (void)set;
        (*(int *)userdata)++;
}

/* Wait up to 5 s for epoll events; dispatch the watches' ones. Returns how many there were. */
static int
run_once(struct ab_pidwatches *set)
{
        struct epoll_event ev[8];
        int n = epoll_wait(set->epfd, ev, 8, 5000), watches = 0;

        for (int i = 0; i < n; i++)
                if (ab_pidwatch_is_tag(ev[i].data.u64)) {
                        ab_pidwatch_dispatch(set, ev[i].data.u64);
                        watches++;
                }
        ab_pidwatch_reap(set);
        return watches;
}

static void
test_fires_once_at_exit(void **state)
{
        struct ab_pidwatches set = { .epfd = epoll_create1(EPOLL_CLOEXEC) };
        struct ab_pidwatch *w = NULL;
        pid_t pid = sleeper();
        uint64_t st = 0;
        int fired = 0, fd;

        (void)state;
        assert_int_equal(ab_proc_starttime(pid, &st), 0);
        fd = ab_pidfd_open_checked(pid, st);
        assert_true(fd >= 0);
        assert_int_equal(ab_pidwatch_add(&set, fd, count_fired, &fired, &w), 0);
        assert_false(ab_pidwatch_is_tag(1) || ab_pidwatch_is_tag(3));
        assert_true(ab_pidwatch_is_tag(ab_pidwatch_tag(w)));
        /* Alive: nothing. */
        assert_int_equal(epoll_wait(set.epfd, &(struct epoll_event){ 0 }, 1, 100), 0);
        kill(pid, SIGKILL);
        assert_int_equal(run_once(&set), 1);
        assert_int_equal(fired, 1);
        assert_int_equal(set.fired, 1);
        /* Fired watches are gone: the (still open, not yet reaped) pidfd raises nothing more. */
        assert_int_equal(epoll_wait(set.epfd, &(struct epoll_event){ 0 }, 1, 100), 0);
        waitpid(pid, NULL, 0);
        close(fd);
        close(set.epfd);
}

static void
test_removed_before_dispatch(void **state)
{
        struct ab_pidwatches set = { .epfd = epoll_create1(EPOLL_CLOEXEC) };
        struct ab_pidwatch *w = NULL;
        struct epoll_event ev;
        pid_t pid = sleeper();
        int fired = 0, fd = ab_pidfd_open_checked(pid, 0);

        (void)state;
        assert_true(fd >= 0);
        assert_int_equal(ab_pidwatch_add(&set, fd, count_fired, &fired, &w), 0);
        kill(pid, SIGKILL);
        /* The exit is in this batch, but its owner removes the watch first (a connection
         * closed earlier in the batch): dispatch must not call it, nor touch freed memory. */
        assert_int_equal(epoll_wait(set.epfd, &ev, 1, 5000), 1);
        ab_pidwatch_remove(&set, w);
        ab_pidwatch_dispatch(&set, ev.data.u64);
        ab_pidwatch_reap(&set);
        assert_int_equal(fired, 0);
        ab_pidwatch_remove(&set, NULL);
        waitpid(pid, NULL, 0);
        close(fd);
        close(set.epfd);
}

static void
test_errors(void **state)
{
        struct ab_pidwatches set = { .epfd = epoll_create1(EPOLL_CLOEXEC) };
        struct ab_pidwatch *w = NULL;
        pid_t pid = sleeper();
        uint64_t st = 0;
        int fired = 0;

        (void)state;
        assert_int_equal(ab_pidwatch_add(&set, -1, count_fired, &fired, &w), -EINVAL);
        assert_int_equal(ab_pidwatch_add(&set, 0x7fff, count_fired, &fired, &w), -EBADF);
        assert_int_equal(set.errors, 2);
        assert_null(w);
        /* A start time that does not match: the pid was reused. */
        assert_int_equal(ab_proc_starttime(pid, &st), 0);
        assert_int_equal(ab_pidfd_open_checked(pid, st + 1), -ESRCH);
        assert_int_equal(ab_pidfd_open_checked(0, 0), -EINVAL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        assert_true(ab_pidfd_open_checked(pid, st) < 0);
        close(set.epfd);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fires_once_at_exit),
                cmocka_unit_test(test_removed_before_dispatch),
                cmocka_unit_test(test_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
