/* SPDX-License-Identifier: MIT */
/* Unit tests for common/fdio.c: ab_fd_write_some writes everything a descriptor takes, stops
 * without blocking when it is full (advancing the offset by what went), and reports a broken
 * peer as -EPIPE without a SIGPIPE (sockets) or with SIGPIPE ignored (pipes). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/fdio.h"

/* Everything fits: returns 1, the offset reaches the end, the reader gets the bytes. */
static void
test_all_written(void **state)
{
        int p[2];
        char got[16] = { 0 };
        size_t off = 2;

        (void)state;
        assert_int_equal(pipe2(p, O_NONBLOCK), 0);
        assert_int_equal(ab_fd_write_some(p[1], "xxhello", 7, &off, false), 1);
        assert_int_equal(off, 7);
        assert_int_equal(read(p[0], got, sizeof(got)), 5);
        assert_string_equal(got, "hello");
        close(p[0]);
        close(p[1]);
}

/* A full pipe: returns 0 with off at what the pipe took, then 1 once drained. */
static void
test_would_block(void **state)
{
        enum {
                BIG = 1 << 20
        };
        char *buf = calloc(1, BIG), *sink = malloc(BIG);
        int p[2];
        size_t off = 0;
        ssize_t n;

        (void)state;
        assert_non_null(buf);
        assert_non_null(sink);
        assert_int_equal(pipe2(p, O_NONBLOCK), 0);
        assert_int_equal(ab_fd_write_some(p[1], buf, BIG, &off, false), 0);
        assert_true(off > 0 && off < BIG);
        while (off < BIG) {
                while ((n = read(p[0], sink, BIG)) > 0)
                        ;
                assert_true(ab_fd_write_some(p[1], buf, BIG, &off, false) >= 0);
        }
        assert_int_equal(off, BIG);
        close(p[0]);
        close(p[1]);
        free(buf);
        free(sink);
}

/* A socket whose peer is gone: -EPIPE, and no SIGPIPE (the test would die of it). */
static void
test_broken_socket(void **state)
{
        int sv[2];
        size_t off = 0;

        (void)state;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(ab_fd_write_some(sv[0], "x", 1, &off, true), -EPIPE);
        assert_int_equal(off, 0);
        close(sv[0]);
}

/* A pipe whose reader is gone, SIGPIPE ignored as the host does: -EPIPE. */
static void
test_broken_pipe(void **state)
{
        int p[2];
        size_t off = 0;

        (void)state;
        signal(SIGPIPE, SIG_IGN);
        assert_int_equal(pipe(p), 0);
        close(p[0]);
        assert_int_equal(ab_fd_write_some(p[1], "x", 1, &off, false), -EPIPE);
        close(p[1]);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_all_written),
                cmocka_unit_test(test_would_block),
                cmocka_unit_test(test_broken_socket),
                cmocka_unit_test(test_broken_pipe),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
