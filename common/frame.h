/* SPDX-License-Identifier: MIT */
/* Frames between the host and its module workers (docs/module-workers.md). A SOCK_STREAM socketpair carries
 * frames: a 4-byte big-endian length, then that many bytes of one JSON object with a "t"
 * (type) member. Used by agentbroker-mcp (host/workers/) and the worker side
 * (modules/lib/worker.c).
 *
 * host -> worker:
 *   {"t":"init","config":{...},"broker":"/run/agentbroker/broker.sock"}      first frame
 *   {"t":"call","id":N,"tool":"name","args":{...},"token":"abt_..","run":"..","max_bytes":N}
 *   {"t":"cancel","id":N}
 * worker -> host:
 *   {"t":"hello","abi":N,"module":"echo","version":"..","tools":[{"name","title","description",
 *        "inputSchema":{},"outputSchema":{},"annotations":{"readOnlyHint":true,...}}]}
 *                                                                           answer to init
 *   {"t":"fail","error":"..."}                           init failed: the module is not served
 *   {"t":"progress","id":N,"progress":x,"total":y,"message":".."}
 *   {"t":"log","level":L,"message":".."}
 *   {"t":"redact","id":N,"name":"secret","value":"<base64>"}   a secret this call redeemed (accepted
 *                                           only when it matches the broker's digest for the call)
 *   {"t":"result","id":N,"isError":bool,"content":[{"type":"text","text":".."}],
 *        "structuredContent":<json>,"error":".."}
 * A worker runs one call at a time. Anything else (bad frame, wrong id, oversize, a second
 * result) is "garbage": the host kills the worker. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#define AB_FRAME_MAX (16 * 1024 * 1024 + 64 * 1024) /* largest frame either side accepts */
#define AB_FRAME_HEADER 4

/* Incremental frame reader for a non-blocking stream socket. */
struct ab_frame_reader {
        unsigned char hdr[AB_FRAME_HEADER];
        size_t hdr_got;
        char *buf; /* body being read (len + 1 bytes, NUL-terminated when complete) */
        size_t len, got;
};

/* Read what is available from fd. Returns 1 with *ret a parsed JSON object (caller frees)
 * when a whole frame arrived, 0 when more bytes are needed (EAGAIN), -EPIPE on EOF, -EBADMSG
 * for an oversized frame or one that is not a JSON object with a string "t", or -errno. */
int ab_frame_read(int fd, struct ab_frame_reader *rd, cJSON **ret);
/* Release the reader's buffer (wiping it). */
void ab_frame_reader_clear(struct ab_frame_reader *rd);
/* Encode msg as one frame into a new buffer (*ret_len bytes). Returns 0, -E2BIG or -ENOMEM. */
int ab_frame_encode(const cJSON *msg, unsigned char **ret, size_t *ret_len);
/* Write a whole frame to a blocking fd (a non-blocking one is waited for with poll). Returns
 * 0 or -errno (-EPIPE when the peer is gone: sockets are written with MSG_NOSIGNAL). */
int ab_frame_write(int fd, const cJSON *msg);
/* Parse s[0..len) as exactly one JSON value: whitespace around it is allowed, anything else
 * after it or a NUL byte inside is not (cJSON alone accepts both). Returns it or NULL. */
cJSON *ab_json_parse_exact(const char *s, size_t len);
