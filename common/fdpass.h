/* SPDX-License-Identifier: MIT */
/* JSON messages over a SOCK_SEQPACKET socket, one message per datagram, with an optional
 * descriptor passed alongside (SCM_RIGHTS): the worker <-> agentbroker-egress channel. */
#pragma once

#include <stddef.h>
#include <cjson/cJSON.h>

#define AB_FDPASS_MSG_MAX (128 * 1024) /* largest message on the egress channel */

/* Send msg (printed unformatted) and, when pass_fd >= 0, that descriptor. Returns 0 or -errno
 * (-E2BIG past AB_FDPASS_MSG_MAX). The printed text is wiped: it may hold a token. */
int ab_fdpass_send(int fd, const cJSON *msg, int pass_fd);
/* Wait up to timeout_ms (-1: forever) for one message; *ret_fd gets a passed descriptor
 * (O_CLOEXEC) or -1; any further descriptors are closed. Returns 0, -ECONNRESET (end of
 * file), -ETIMEDOUT, -EBADMSG (not a JSON object, or cut), -errno. */
int ab_fdpass_recv(int fd, int timeout_ms, cJSON **ret, int *ret_fd);
