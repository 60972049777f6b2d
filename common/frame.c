/* SPDX-License-Identifier: MIT */
/* Length-prefixed JSON frames between agentbroker-mcp and its module workers (common/frame.h).
 * A frame is a 4-byte big-endian length followed by that many bytes of one JSON object with a
 * string "t". Frames carry call tokens and secret values (redact frames), so every buffer that
 * held a frame's bytes is wiped before it is freed. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/json_cleanup.h"
#include "common/macros.h"
#include "common/secmem.h"

/* Forget the frame being read: wipe and free its body, reset the header. */
static void
reader_reset(struct ab_frame_reader *rd)
{
        if (rd->buf) {
                ab_freezero(rd->buf, rd->len + 1);
        }
        ab_wipe(rd->hdr, sizeof(rd->hdr));
        rd->buf = NULL;
        rd->hdr_got = 0;
        rd->len = rd->got = 0;
}

void
ab_frame_reader_clear(struct ab_frame_reader *rd)
{
        if (rd)
                reader_reset(rd);
}

cJSON *
ab_json_parse_exact(const char *s, size_t len)
{
        const char *end = NULL;
        cJSON *v;

        if (memchr(s, '\0', len))
                return NULL;
        v = cJSON_ParseWithLengthOpts(s, len, &end, false);
        if (!v)
                return NULL;
        while (end && end < s + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
                end++;
        if (end != s + len) {
                cJSON_Delete(v);
                return NULL;
        }
        return v;
}

/* Parse a complete body: one JSON object with a string member "t". Returns it or NULL. */
static cJSON *
parse_body(const char *buf, size_t len)
{
        cJSON *msg = ab_json_parse_exact(buf, len);

        if (msg && (!cJSON_IsObject(msg) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "t")))) {
                cJSON_Delete(msg);
                return NULL;
        }
        return msg;
}

/* Read into dst up to n bytes. Returns the count (> 0), 0 for "would block", -EPIPE on EOF or
 * -errno. */
static ssize_t
read_some(int fd, void *dst, size_t n)
{
        for (;;) {
                ssize_t k = read(fd, dst, n);

                if (k > 0)
                        return k;
                if (k == 0)
                        return -EPIPE;
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return 0;
                return -errno;
        }
}

int
ab_frame_read(int fd, struct ab_frame_reader *rd, cJSON **ret)
{
        ssize_t k;

        for (;;) {
                if (rd->hdr_got < AB_FRAME_HEADER) {
                        uint32_t len;

                        k = read_some(fd, rd->hdr + rd->hdr_got, AB_FRAME_HEADER - rd->hdr_got);
                        if (k <= 0)
                                return (int)k;
                        rd->hdr_got += (size_t)k;
                        if (rd->hdr_got < AB_FRAME_HEADER)
                                continue;
                        len = (uint32_t)rd->hdr[0] << 24 | (uint32_t)rd->hdr[1] << 16 |
                              (uint32_t)rd->hdr[2] << 8 | (uint32_t)rd->hdr[3];
                        if (len == 0 || len > AB_FRAME_MAX) {
                                reader_reset(rd);
                                return -EBADMSG;
                        }
                        rd->buf = malloc((size_t)len + 1);
                        if (!rd->buf) {
                                reader_reset(rd);
                                return -ENOMEM;
                        }
                        rd->len = len;
                        rd->got = 0;
                }

                k = read_some(fd, rd->buf + rd->got, rd->len - rd->got);
                if (k <= 0)
                        return (int)k;
                rd->got += (size_t)k;
                if (rd->got < rd->len)
                        continue;

                rd->buf[rd->len] = '\0';
                cJSON *msg = parse_body(rd->buf, rd->len);
                reader_reset(rd);
                if (!msg)
                        return -EBADMSG;
                *ret = msg;
                return 1;
        }
}

int
ab_frame_encode(const cJSON *msg, unsigned char **ret, size_t *ret_len)
{
        _cleanup_cjson_text_ char *body = cJSON_PrintUnformatted(msg);
        unsigned char *out;
        size_t len;

        if (!body)
                return -ENOMEM;
        len = strlen(body);
        if (len == 0 || len > AB_FRAME_MAX)
                return -E2BIG;
        out = malloc(AB_FRAME_HEADER + len);
        if (!out)
                return -ENOMEM;
        out[0] = (unsigned char)(len >> 24);
        out[1] = (unsigned char)(len >> 16);
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        memcpy(out + AB_FRAME_HEADER, body, len);
        *ret = out;
        *ret_len = AB_FRAME_HEADER + len;
        return 0;
}

/* Write all n bytes of buf to fd. Sockets are written with MSG_NOSIGNAL (a closed peer is
 * -EPIPE, not SIGPIPE); a non-blocking fd that is full is waited for with poll(). Returns 0 or
 * -errno. */
static int
write_all(int fd, const unsigned char *buf, size_t n)
{
        bool is_socket = true;

        while (n > 0) {
                ssize_t k = is_socket ? send(fd, buf, n, MSG_NOSIGNAL) : write(fd, buf, n);

                if (k < 0) {
                        if (errno == ENOTSOCK && is_socket) {
                                is_socket = false;
                                continue;
                        }
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                struct pollfd pfd = { .fd = fd, .events = POLLOUT };

                                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                                        return -errno;
                                continue;
                        }
                        return -errno;
                }
                buf += k;
                n -= (size_t)k;
        }
        return 0;
}

int
ab_frame_write(int fd, const cJSON *msg)
{
        unsigned char *frame = NULL;
        size_t len = 0;
        int r;

        r = ab_frame_encode(msg, &frame, &len);
        if (r < 0)
                return r;
        r = write_all(fd, frame, len);
        ab_freezero(frame, len);
        return r;
}
