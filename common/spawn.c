/* SPDX-License-Identifier: MIT */
/* Starting helper programs (see spawn.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include "common/spawn.h"

int
ab_fd_move_high(int fd, int fd_min)
{
        int nfd, r;

        if (fd < 0)
                return -EBADF;
        if (fd >= fd_min)
                return fd;
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, fd_min);
        r = nfd < 0 ? -errno : nfd;
        close(fd);
        return r;
}

int
ab_spawn_helper(const char *path, char *const argv[], char *const envp[], int fd3, pid_t *ret_pid)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        pid_t pid;
        int r;

        if (!path || !argv || !envp || fd3 < 3 || !ret_pid)
                return -EINVAL;
        r = -posix_spawn_file_actions_init(&fa);
        if (r < 0)
                return r;
        r = -posix_spawnattr_init(&attr);
        if (r < 0) {
                posix_spawn_file_actions_destroy(&fa);
                return r;
        }
        sigemptyset(&none);
        sigfillset(&all);
        r = -posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = -posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        if (r == 0)
                r = -posix_spawn_file_actions_adddup2(&fa, fd3, 3);
        if (r == 0)
                r = -posix_spawn_file_actions_addclosefrom_np(&fa, 4);
        if (r == 0)
                r = -posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = -posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = -posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = -posix_spawn(&pid, path, &fa, &attr, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r == 0)
                *ret_pid = pid;
        return r;
}
