/* SPDX-License-Identifier: MIT */
/* A blocking client for the broker's SOCK_SEQPACKET socket. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/client.h"
#include "common/json_cleanup.h"
#include "common/clock.h"
#include "common/macros.h"
#include "common/wire.h"
#include "common/secmem.h"

struct ab_client {
        int fd;
        uint64_t next_id;
        char *buf; /* receive buffer, AB_MSG_MAX + 1 bytes */
};

int
ab_client_connect(const char *path, struct ab_client **ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct ab_client *c;
        _cleanup_close_ int fd = -1;

        if (!path || strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->buf = malloc(AB_MSG_MAX + 1);
        if (!c->buf) {
                free(c);
                return -ENOMEM;
        }
        c->fd = AB_TAKE_FD(fd);
        c->next_id = 1;
        *ret = c;
        return 0;
}

void
ab_client_free(struct ab_client *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        if (c->buf) {
                /* Replies may have carried secret bytes (secret-read). */
                ab_freezero(c->buf, AB_MSG_MAX + 1);
        }
        free(c);
}

cJSON *
ab_client_request(struct ab_client *c, const char *op)
{
        return ab_wire_request(op, c->next_id++);
}

int
ab_client_call(struct ab_client *c, const cJSON *req, int timeout_ms, cJSON **ret)
{
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(req, "id");
        int64_t deadline = (int64_t)ab_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
        _cleanup_cjson_text_ char *out = NULL;
        size_t out_len;
        double want_id;
        int r;

        if (!cJSON_IsNumber(idv))
                return -EINVAL;
        want_id = idv->valuedouble;
        r = ab_wire_encode(req, &out, &out_len);
        if (r < 0)
                return r;
        do
                r = send(c->fd, out, out_len, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return errno == EPIPE ? -ECONNRESET : -errno;
        ab_wipe(out, out_len); /* sent: the request may have carried secret bytes */

        for (;;) {
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                int64_t left = deadline - (int64_t)ab_now_ms();
                cJSON *reply = NULL;
                const cJSON *rid;
                ssize_t n;

                if (timeout_ms >= 0 && left <= 0)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, timeout_ms < 0 ? -1 : (int)left);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                n = recv(c->fd, c->buf, AB_MSG_MAX + 1, MSG_TRUNC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                if ((size_t)n > AB_MSG_MAX)
                        return -EBADMSG;
                /* Replies carry no "op": parse without the request envelope checks. */
                reply = cJSON_ParseWithLength(c->buf, (size_t)n);
                ab_wipe(c->buf, (size_t)n);
                if (!reply || !cJSON_IsObject(reply)) {
                        cJSON_Delete(reply);
                        return -EBADMSG;
                }
                rid = cJSON_GetObjectItemCaseSensitive(reply, "id");
                if (cJSON_IsNumber(rid) && (rid->valuedouble == want_id || rid->valuedouble == 0)) {
                        *ret = reply;
                        return 0;
                }
                /* A stale reply to an earlier, timed-out request: drop it. */
                cJSON_Delete(reply);
        }
}
