/* SPDX-License-Identifier: MIT */
/* JSON + SCM_RIGHTS over SOCK_SEQPACKET (see fdpass.h). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/frame.h"
#include "common/secmem.h"

int
ab_fdpass_send(int fd, const cJSON *msg, int pass_fd)
{
        char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
        struct msghdr mh = { 0 };
        struct iovec iov;
        char *text = cJSON_PrintUnformatted(msg);
        size_t len;
        ssize_t n;
        int r = 0;

        if (!text)
                return -ENOMEM;
        len = strlen(text);
        if (len > AB_FDPASS_MSG_MAX) {
                r = -E2BIG;
                goto out;
        }
        iov = (struct iovec){ .iov_base = text, .iov_len = len };
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if (pass_fd >= 0) {
                struct cmsghdr *cm;

                mh.msg_control = cbuf;
                mh.msg_controllen = sizeof(cbuf);
                cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
        }
        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                r = -errno;
        else if ((size_t)n != len)
                r = -EIO;
out:
        ab_strfreezero(text);
        return r;
}

int
ab_fdpass_recv(int fd, int timeout_ms, cJSON **ret, int *ret_fd)
{
        char cbuf[CMSG_SPACE(4 * sizeof(int))];
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        struct msghdr mh = { 0 };
        struct iovec iov;
        char *buf;
        ssize_t n;
        int got_fd = -1, r;
        cJSON *msg;

        do
                r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        buf = malloc(AB_FDPASS_MSG_MAX + 1);
        if (!buf)
                return -ENOMEM;
        iov = (struct iovec){ .iov_base = buf, .iov_len = AB_FDPASS_MSG_MAX + 1 };
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof(cbuf);
        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                r = -errno;
                goto out;
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int f;
                        memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                        if (got_fd < 0)
                                got_fd = f;
                        else
                                close(f);
                }
        }
        if (n == 0) {
                r = -ECONNRESET;
                goto out;
        }
        if ((size_t)n > AB_FDPASS_MSG_MAX || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                r = -EBADMSG;
                goto out;
        }
        msg = ab_json_parse_exact(buf, (size_t)n);
        if (!cJSON_IsObject(msg)) {
                cJSON_Delete(msg);
                r = -EBADMSG;
                goto out;
        }
        *ret = msg;
        *ret_fd = got_fd;
        got_fd = -1;
        r = 0;
out:
        if (got_fd >= 0)
                close(got_fd);
        ab_freezero(buf, n > 0 ? (size_t)n : 0);
        return r;
}
