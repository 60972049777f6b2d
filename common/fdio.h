/* SPDX-License-Identifier: MIT */
/* Non-blocking output on a descriptor: the one write-what-it-takes loop of the host's pipes
 * and sockets (workers, MCP servers, stdio). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Write buf[*off, len) to fd without blocking — send(2) with MSG_NOSIGNAL | MSG_DONTWAIT when
 * is_socket, else write(2) — retrying on EINTR and advancing *off by what was written.
 * Returns 1 when everything up to len is written, 0 when fd would block first, or -errno. */
int ab_fd_write_some(int fd, const void *buf, size_t len, size_t *off, bool is_socket);
