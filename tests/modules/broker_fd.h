/* SPDX-License-Identifier: MIT */
/* For test modules that act on their worker's own broker connection: find it among the
 * worker's descriptors (the one AF_UNIX SOCK_SEQPACKET socket). Header-only: each test module
 * is its own shared object. */
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#define TEST_BROKER_FD_SCAN_MAX 1024

/* The worker's broker connection (the AF_UNIX SOCK_SEQPACKET descriptor whose peer has a
 * path: the egress channel is an unnamed socketpair), or -1. */
static inline int
test_find_broker_fd(void)
{
        for (int fd = 3; fd < TEST_BROKER_FD_SCAN_MAX; fd++) {
                struct sockaddr_un peer = { 0 };
                socklen_t plen = sizeof(peer);
                int v = 0;
                socklen_t len = sizeof(v);

                if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || v != AF_UNIX)
                        continue;
                len = sizeof(v);
                if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_SEQPACKET &&
                    getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 && plen > sizeof(sa_family_t))
                        return fd;
        }
        return -1;
}
