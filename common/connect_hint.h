/* SPDX-License-Identifier: MIT */
/* Why a client could not connect to the broker's socket (common/connect_hint.c). */
#pragma once

#include <stddef.h>

/* Say why connecting to the broker's socket path failed (err: a negative errno) in buf,
 * "cannot connect to the broker at PATH: ERROR" and a hint: for EACCES/EPERM the socket's
 * group, which the caller's user must be a member of; for ENOENT/ECONNREFUSED how to start
 * the broker. */
void ab_describe_connect_error(const char *path, int err, char *buf, size_t size);
