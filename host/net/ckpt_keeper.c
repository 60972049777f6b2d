/* SPDX-License-Identifier: MIT */
/* The keeper of a host's own run's tunnel checkpoint (see ckpt_keeper.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macros.h"
#include "host/net/ckpt_keeper.h"

#define KEEPER_MSG_MAX 512 /* the line it writes on stderr when it deleted something */

/* The child: only async-signal-safe calls (the host may have threads). Never returns. */
static _Noreturn void
keeper_main(int fd, const char *path, const char *tmp, const char *msg, size_t msg_len)
{
        struct sigaction sa = { .sa_handler = SIG_IGN };
        char b[64];
        ssize_t n;
        bool deleted = false;

        (void)sigaction(SIGTERM, &sa, NULL);
        (void)sigaction(SIGINT, &sa, NULL);
        (void)sigaction(SIGHUP, &sa, NULL);
        (void)sigaction(SIGPIPE, &sa, NULL);
        (void)prctl(PR_SET_NAME, "ab-ckpt-keeper", 0, 0, 0);
        /* Nothing of the host's but stderr: stdin and stdout go to /dev/null, so that a client
         * waiting for the host's end of stdout does not wait for the keeper. */
        if (fd != 3) {
                if (dup2(fd, 3) < 0)
                        _exit(1);
                fd = 3;
        }
        n = open("/dev/null", O_RDWR);
        if (n >= 0) {
                (void)dup2((int)n, 0);
                (void)dup2((int)n, 1);
        }
        (void)syscall(SYS_close_range, 4U, ~0U, 0U);
        for (;;) {
                n = read(fd, b, sizeof(b));
                if (n == 0 || (n < 0 && errno != EINTR))
                        break;
        }
        if (unlink(path) == 0)
                deleted = true;
        if (unlink(tmp) == 0)
                deleted = true;
        if (deleted)
                (void)!write(2, msg, msg_len);
        _exit(0);
}

int
ckpt_keeper_start(const char *path, int *ret_fd)
{
        _cleanup_free_ char *tmp = NULL;
        char msg[KEEPER_MSG_MAX];
        int p[2], len;
        pid_t pid;

        if (asprintf(&tmp, "%s.tmp", path) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        len = snprintf(msg, sizeof(msg),
                       "agentbroker-mcp: run teardown: tunnel checkpoint %s deleted after its host ended\n",
                       path);
        if (len < 0 || (size_t)len >= sizeof(msg))
                len = (int)strlen(msg);
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;

                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                close(p[1]);
                keeper_main(p[0], path, tmp, msg, (size_t)len);
        }
        close(p[0]);
        *ret_fd = p[1];
        return 0;
}
