/* SPDX-License-Identifier: MIT */
/* Fuzz target: the host side of the worker protocol: the frame reader (common/frame.c,
 * ab_frame_read on a non-blocking socket, the bytes arriving in pieces whose sizes come from
 * the input) and the host's checks of each frame (host/workers/ hw_check_worker_frame:
 * a hello's tools and schemas, a result made into a CallToolResult). Worker output is
 * module code's: hostile. The first input byte picks the piece size. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syslog.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/log.h"
#include "host/workers/workers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read every complete frame available on fd and check it. Returns ab_frame_read's last. */
static int
drain(int fd, struct ab_frame_reader *rd)
{
        cJSON *msg;
        int r;

        while ((r = ab_frame_read(fd, rd, &msg)) == 1) {
                (void)hw_check_worker_frame(msg);
                cJSON_Delete(msg);
        }
        return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ab_frame_reader rd = { .hdr_got = 0 };
        size_t piece, off = 1;
        int sv[2], r = 0;

        static bool quiet;

        if (!quiet) { /* the host logs every refused tool: not while fuzzing */
                ab_log_set_max_level(getenv("FUZZ_VERBOSE") ? LOG_DEBUG : LOG_CRIT);
                quiet = true;
        }
        if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                return 0;
        piece = (size_t)data[0] * 61 + 1;
        while (off < size && r >= 0) {
                size_t n = size - off < piece ? size - off : piece;
                ssize_t w = write(sv[1], data + off, n);

                if (w > 0)
                        off += (size_t)w;
                r = drain(sv[0], &rd);
                if (w < 0 && r == 0 && errno != EAGAIN)
                        break;
        }
        if (r >= 0) {
                shutdown(sv[1], SHUT_WR);
                r = drain(sv[0], &rd);
                if (r == 0) /* a socket at EOF never says "more bytes needed" */
                        abort();
        }
        ab_frame_reader_clear(&rd);
        close(sv[0]);
        close(sv[1]);
        return 0;
}
