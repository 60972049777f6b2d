/* SPDX-License-Identifier: MIT */
/* The broker protocol codec: one JSON object per SOCK_SEQPACKET message (docs/protocol.md).
 * This file only checks framing and the envelope; each operation checks its own fields. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "common/limits.h"
#include "common/name.h"

#define AB_PROTO_VERSION 1
#define AB_MSG_MAX (64 * 1024) /* largest message either side sends or accepts */
#define AB_MSG_MAX_DEPTH 8     /* deepest nesting of objects/arrays in a message */
#define AB_MSG_MAX_MEMBERS 256 /* most members in any one object or array */
#define AB_FIELD_MAX 4096      /* longest ordinary string field (names, ids, reasons) */

/* Error codes carried in a reply's "error" member. */
#define AB_ERR_BAD_REQUEST "bad-request"
#define AB_ERR_TOO_LARGE "too-large"
#define AB_ERR_UNSUPPORTED_VERSION "unsupported-version"
#define AB_ERR_UNKNOWN_OP "unknown-op"
#define AB_ERR_NOT_PERMITTED "not-permitted"
#define AB_ERR_DENIED "denied"
#define AB_ERR_INTERNAL "internal"

/* Decode and check one received message: a JSON object no deeper than AB_MSG_MAX_DEPTH,
 * with "v" (integer, must be AB_PROTO_VERSION), "op" (string of at most AB_NAME_MAX) and
 * "id" (integer 0..2^53). On success *ret is the object, *ret_op points inside it.
 * Returns 0; -E2BIG (too large), -EPROTO (wrong version: *ret is still set when the id
 * could be read, so the caller can answer it), -EBADMSG (not valid JSON / envelope),
 * -ENOMEM. ret_err gets a static description on failure. */
int ab_wire_decode(const void *buf, size_t len, cJSON **ret, const char **ret_op, const char **ret_err);

/* Serialise a message without whitespace. Fails with -E2BIG when it exceeds AB_MSG_MAX.
 * Returns 0 or -errno; *ret_len excludes the terminating NUL. */
int ab_wire_encode(const cJSON *msg, char **ret, size_t *ret_len);

/* Build a request envelope {"v":1,"op":op,"id":id}. Returns NULL on OOM. */
cJSON *ab_wire_request(const char *op, uint64_t id);
/* Build a success reply {"v":1,"id":id,"ok":true}. Returns NULL on OOM. */
cJSON *ab_wire_reply_ok(uint64_t id);
/* Build an error reply {"v":1,"id":id,"ok":false,"error":code,"reason":reason,"message":msg}.
 * reason and message may be NULL. Returns NULL on OOM. */
cJSON *ab_wire_reply_error(uint64_t id, const char *code, const char *reason, const char *message);

/* Field accessors for decoded messages. Each returns 0, -ENOENT (missing, when !required
 * callers treat that as absent) or -EINVAL (wrong type, too long, out of range). */
int ab_wire_get_string(const cJSON *msg, const char *key, size_t max_len, const char **ret);
int ab_wire_get_u64(const cJSON *msg, const char *key, uint64_t max, uint64_t *ret);
int ab_wire_get_bool(const cJSON *msg, const char *key, bool *ret);
