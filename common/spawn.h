/* SPDX-License-Identifier: MIT */
/* Starting helper programs: descriptor placement and a clean posix_spawn. */
#pragma once

#include <sys/types.h>

/* Move fd to a number >= fd_min (close-on-exec). fd is consumed either way. Returns the new
 * descriptor (fd itself when already high enough) or -errno. */
int ab_fd_move_high(int fd, int fd_min);

/* posix_spawn path with stdin and stdout on /dev/null, stderr inherited, fd3 as descriptor 3
 * (fd3 must be >= 3), every other descriptor closed, an empty signal mask and default signal
 * dispositions. Returns 0 with *ret_pid, or -errno. */
int ab_spawn_helper(const char *path, char *const argv[], char *const envp[], int fd3, pid_t *ret_pid);
