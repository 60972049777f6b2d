/* SPDX-License-Identifier: MIT */
/* Non-blocking output on a descriptor (see fdio.h). */
#include "config.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdio.h"

int
ab_fd_write_some(int fd, const void *buf, size_t len, size_t *off, bool is_socket)
{
        const char *p = buf;

        while (*off < len) {
                ssize_t n = is_socket ? send(fd, p + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT)
                                      : write(fd, p + *off, len - *off);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                *off += (size_t)n;
        }
        return 1;
}
