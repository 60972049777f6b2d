/* SPDX-License-Identifier: MIT */
/* The MCP stdio transport (host/mcp/stdio.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/macros.h"
#include "host/mcp/idpeek.h"
#include "host/mcp/stdio.h"

#define READ_CHUNK (64 * 1024)
#define READ_PER_DISPATCH (1024 * 1024) /* then let other sources run */

struct mcp_stdio {
        sd_event *event;
        int in_fd, out_fd;
        int in_flags, out_flags;  /* to restore, or -1 */
        sd_event_source *in_src;  /* io source, or a defer source for a regular file */
        sd_event_source *out_src; /* io source (EPOLLOUT), NULL: blocking writes */
        sd_event_source *grace_src;
        struct mcp_server *server;

        char *ibuf;               /* input not yet split into lines */
        size_t ilen, icap, iscan; /* iscan: ibuf[0..iscan) holds no newline */
        bool discarding;          /* skipping the rest of an oversize line */
        bool eof, paused, started;

        char *obuf; /* output queue: obuf[ohead..olen) */
        size_t ohead, olen, ocap;
        bool failed, finished;
};

static void maybe_finish(struct mcp_stdio *t);
static int process_lines(struct mcp_stdio *t);

/* End the session: exit the event loop with status (once). */
static void
finish(struct mcp_stdio *t, int status)
{
        if (t->finished)
                return;
        t->finished = true;
        if (t->in_src)
                sd_event_source_set_enabled(t->in_src, SD_EVENT_OFF);
        sd_event_exit(t->event, status);
}

static void
fail(struct mcp_stdio *t)
{
        t->failed = true;
        t->olen = t->ohead = 0;
        if (t->out_src)
                sd_event_source_set_enabled(t->out_src, SD_EVENT_OFF);
        finish(t, 1);
}

static void
set_input(struct mcp_stdio *t, bool on)
{
        if (t->in_src && !t->finished)
                sd_event_source_set_enabled(t->in_src,
                                            on && !t->eof && !t->paused ? SD_EVENT_ON : SD_EVENT_OFF);
}

/* Write what the queue holds until it is empty or the descriptor would block. Returns 0 or
 * -errno (the session has then failed). */
static int
write_some(struct mcp_stdio *t)
{
        while (t->ohead < t->olen) {
                ssize_t n = write(t->out_fd, t->obuf + t->ohead, t->olen - t->ohead);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN && t->out_src) {
                                sd_event_source_set_enabled(t->out_src, SD_EVENT_ON);
                                return 0;
                        }
                        if (errno == EAGAIN) {
                                /* Not pollable yet would block (unusual): wait for it. */
                                struct pollfd p = { .fd = t->out_fd, .events = POLLOUT };
                                (void)poll(&p, 1, 100);
                                continue;
                        }
                        log_error("writing to the client failed: %s; ending the session", strerror(errno));
                        fail(t);
                        return -errno;
                }
                t->ohead += (size_t)n;
        }
        t->ohead = t->olen = 0;
        if (t->out_src)
                sd_event_source_set_enabled(t->out_src, SD_EVENT_OFF);
        return 0;
}

/* After output progress: resume paused input below the low mark; finish when due. */
static void
after_output(struct mcp_stdio *t)
{
        if (t->paused && t->olen - t->ohead < MCP_STDIO_QUEUE_LOW) {
                t->paused = false;
                process_lines(t);
                set_input(t, true);
        }
        maybe_finish(t);
}

static int
on_output(sd_event_source *s AB_UNUSED, int fd AB_UNUSED, uint32_t revents AB_UNUSED, void *userdata)
{
        struct mcp_stdio *t = userdata;

        if (write_some(t) < 0)
                return 0;
        if (t->ohead > 0 && t->ohead >= t->ocap / 2) {
                memmove(t->obuf, t->obuf + t->ohead, t->olen - t->ohead);
                t->olen -= t->ohead;
                t->ohead = 0;
        }
        after_output(t);
        return 0;
}

/* mcp_transport_ops.send: queue one message and its newline, and write what can be written. */
static int
stdio_send(void *userdata, const char *json, size_t len)
{
        struct mcp_stdio *t = userdata;
        size_t queued, need;
        bool was_empty;

        if (t->failed)
                return -EPIPE;
        queued = t->olen - t->ohead;
        if (queued + len + 1 > MCP_STDIO_QUEUE_MAX) {
                log_error(
                        "more than %u MiB of output are waiting: the client does not read its side of stdout; "
                        "ending the session",
                        MCP_STDIO_QUEUE_MAX / (1024 * 1024));
                fail(t);
                return -ENOBUFS;
        }
        was_empty = queued == 0;
        if (t->ohead > 0 && t->olen + len + 1 > t->ocap) {
                memmove(t->obuf, t->obuf + t->ohead, queued);
                t->olen = queued;
                t->ohead = 0;
        }
        need = t->olen + len + 1;
        if (need > t->ocap) {
                size_t cap = t->ocap ? t->ocap : 64 * 1024;
                char *p;
                while (cap < need)
                        cap *= 2;
                p = realloc(t->obuf, cap);
                if (!p)
                        return -ENOMEM;
                t->obuf = p;
                t->ocap = cap;
        }
        memcpy(t->obuf + t->olen, json, len);
        t->obuf[t->olen + len] = '\n';
        t->olen += len + 1;
        if (was_empty && write_some(t) < 0)
                return -EPIPE;
        if (!t->paused && t->olen - t->ohead > MCP_STDIO_QUEUE_HIGH) {
                log_debug("output queue above %u MiB: pausing input", MCP_STDIO_QUEUE_HIGH / (1024 * 1024));
                t->paused = true;
                set_input(t, false);
        }
        return 0;
}

/* mcp_transport_ops.idle: no call in flight any more. */
static void
stdio_idle(void *userdata)
{
        maybe_finish(userdata);
}

const struct mcp_transport_ops mcp_stdio_ops = {
        .send = stdio_send,
        .idle = stdio_idle,
};

static int
on_grace(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_stdio *t = userdata;

        if (t->server && mcp_server_inflight(t->server) > 0) {
                log_notice("input ended %d s ago and %zu calls are still running: cancelling them",
                           MCP_STDIO_EOF_GRACE_MS / 1000, mcp_server_inflight(t->server));
                mcp_server_cancel_all(t->server);
        }
        maybe_finish(t);
        return 0;
}

/* At end of input: exit once no call is in flight and the output is written; cancel the
 * calls still running after the grace period. */
static void
maybe_finish(struct mcp_stdio *t)
{
        if (!t->eof || t->finished || t->paused || t->ilen > 0)
                return;
        if (t->server && mcp_server_inflight(t->server) > 0) {
                if (!t->grace_src &&
                    sd_event_add_time_relative(t->event, &t->grace_src, CLOCK_MONOTONIC,
                                               (uint64_t)MCP_STDIO_EOF_GRACE_MS * 1000, 0, on_grace, t) < 0)
                        mcp_server_cancel_all(t->server);
                return;
        }
        if (t->olen > t->ohead)
                return;
        log_debug("input ended, nothing in flight: done");
        finish(t, 0);
}

/* Hand one line (without its newline) to the server; blank lines are skipped. */
static void
handle_line(struct mcp_stdio *t, const char *line, size_t len)
{
        size_t i;
        int r;

        for (i = 0; i < len; i++)
                if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
                        break;
        if (i == len || !t->server)
                return;
        r = mcp_server_receive(t->server, line, len);
        if (r < 0)
                log_error("handling a message failed: %s", strerror(-r));
}

/* Refuse an oversize message whose first len bytes are at msg: with its id when its first
 * bytes show it (so the client's pending request ends now), else with id null. */
static void
oversize(struct mcp_stdio *t, const char *msg, size_t len)
{
        cJSON *id = NULL;

        log_warning("a message longer than %d bytes was refused and skipped", MCP_LINE_MAX);
        if (t->server) {
                (void)mcp_peek_id(msg, len, &id);
                mcp_server_refuse_id(t->server, id, MCP_OVERSIZE_MESSAGE);
        }
        cJSON_Delete(id);
}

/* Split the buffered input into lines and handle them, unless paused. Returns 0. */
static int
process_lines(struct mcp_stdio *t)
{
        size_t start = 0;

        while (!t->paused && !t->finished) {
                char *nl = memchr(t->ibuf + t->iscan, '\n', t->ilen - t->iscan);
                size_t end;

                if (!nl) {
                        t->iscan = t->ilen;
                        break;
                }
                end = (size_t)(nl - t->ibuf);
                if (t->discarding)
                        t->discarding = false;
                else if (end - start > MCP_LINE_MAX)
                        oversize(t, t->ibuf + start,
                                 end - start); /* its newline came in the same read as its end */
                else
                        handle_line(t, t->ibuf + start, end - start);
                start = end + 1;
                t->iscan = start;
        }
        if (start > 0) {
                memmove(t->ibuf, t->ibuf + start, t->ilen - start);
                t->ilen -= start;
                t->iscan -= start;
        }
        if (t->ilen > MCP_LINE_MAX && !t->paused) {
                /* No newline within the limit: refuse the message, skip to its end. */
                if (!t->discarding)
                        oversize(t, t->ibuf, t->ilen);
                t->discarding = true;
                t->ilen = t->iscan = 0;
        }
        if (t->eof && !t->paused && t->ilen > 0) {
                /* A last message without its newline. */
                if (!t->discarding)
                        handle_line(t, t->ibuf, t->ilen);
                t->ilen = t->iscan = 0;
        }
        return 0;
}

/* Read what is available (up to READ_PER_DISPATCH) and handle complete lines. */
static int
read_input(struct mcp_stdio *t)
{
        size_t total = 0;

        while (!t->eof && !t->paused && !t->finished && total < READ_PER_DISPATCH) {
                ssize_t n;

                if (t->icap - t->ilen < READ_CHUNK) {
                        size_t cap = t->icap * 2 > t->ilen + READ_CHUNK ? t->icap * 2 : t->ilen + READ_CHUNK;
                        char *p = realloc(t->ibuf, cap);
                        if (!p) {
                                log_error("out of memory reading input");
                                return -ENOMEM;
                        }
                        t->ibuf = p;
                        t->icap = cap;
                }
                n = read(t->in_fd, t->ibuf + t->ilen, READ_CHUNK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        log_error("reading the client's input failed: %s; treating it as its end",
                                  strerror(errno));
                        n = 0;
                }
                if (n == 0) {
                        log_debug("end of input");
                        t->eof = true;
                        set_input(t, false);
                        break;
                }
                t->ilen += (size_t)n;
                total += (size_t)n;
                if (t->discarding) {
                        /* Drop the oversize line's bytes up to its newline. */
                        char *nl = memchr(t->ibuf, '\n', t->ilen);
                        if (!nl) {
                                t->ilen = t->iscan = 0;
                                continue;
                        }
                        memmove(t->ibuf, nl, t->ibuf + t->ilen - nl);
                        t->ilen = (size_t)(t->ibuf + t->ilen - nl);
                        t->iscan = 0;
                        /* The newline left at the front ends the discarded line. */
                }
                process_lines(t);
        }
        process_lines(t);
        /* Give back memory held for a large message once it is gone. */
        if (t->ilen == 0 && t->icap > 4 * READ_CHUNK) {
                free(t->ibuf);
                t->ibuf = NULL;
                t->icap = 0;
        }
        maybe_finish(t);
        return 0;
}

static int
on_input(sd_event_source *s AB_UNUSED, int fd AB_UNUSED, uint32_t revents AB_UNUSED, void *userdata)
{
        read_input(userdata);
        return 0;
}

static int
on_input_defer(sd_event_source *s AB_UNUSED, void *userdata)
{
        read_input(userdata);
        return 0;
}

int
mcp_stdio_new(sd_event *event, int in_fd, int out_fd, struct mcp_stdio **ret)
{
        struct mcp_stdio *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->event = sd_event_ref(event);
        t->in_fd = in_fd;
        t->out_fd = out_fd;
        t->in_flags = fcntl(in_fd, F_GETFL);
        t->out_flags = fcntl(out_fd, F_GETFL);
        if (t->in_flags < 0 || t->out_flags < 0) {
                r = -errno;
                t->in_flags = t->out_flags = -1;
                goto fail;
        }
        if (fcntl(in_fd, F_SETFL, t->in_flags | O_NONBLOCK) < 0 ||
            fcntl(out_fd, F_SETFL, t->out_flags | O_NONBLOCK) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &t->out_src, out_fd, EPOLLOUT, on_output, t);
        if (r == -EPERM)
                t->out_src = NULL; /* a regular file or /dev/null: writes never wait */
        else if (r < 0)
                goto fail;
        else
                sd_event_source_set_enabled(t->out_src, SD_EVENT_OFF);
        *ret = t;
        return 0;
fail:
        mcp_stdio_free(t);
        return r;
}

int
mcp_stdio_start(struct mcp_stdio *t, struct mcp_server *server)
{
        int r;

        t->server = server;
        r = sd_event_add_io(t->event, &t->in_src, t->in_fd, EPOLLIN, on_input, t);
        if (r == -EPERM) {
                /* A regular file: always readable; read it a chunk per loop iteration. */
                r = sd_event_add_defer(t->event, &t->in_src, on_input_defer, t);
                if (r >= 0)
                        r = sd_event_source_set_enabled(t->in_src, SD_EVENT_ON);
        }
        if (r < 0)
                return r;
        t->started = true;
        return 0;
}

void
mcp_stdio_detach(struct mcp_stdio *t)
{
        if (!t)
                return;
        t->server = NULL;
        t->in_src = sd_event_source_disable_unref(t->in_src);
        t->grace_src = sd_event_source_disable_unref(t->grace_src);
}

int
mcp_stdio_flush(struct mcp_stdio *t, int timeout_ms)
{
        uint64_t start = ab_now_ms();

        while (!t->failed && t->olen > t->ohead) {
                struct pollfd p = { .fd = t->out_fd, .events = POLLOUT };
                long left;

                left = timeout_ms - (long)(ab_now_ms() - start);
                if (left <= 0)
                        return -ETIMEDOUT;
                if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
                        return -errno;
                if (write_some(t) < 0)
                        return -EPIPE;
        }
        return t->failed ? -EPIPE : 0;
}

void
mcp_stdio_free(struct mcp_stdio *t)
{
        if (!t)
                return;
        mcp_stdio_detach(t);
        t->out_src = sd_event_source_disable_unref(t->out_src);
        if (t->in_flags >= 0)
                (void)fcntl(t->in_fd, F_SETFL, t->in_flags);
        if (t->out_flags >= 0)
                (void)fcntl(t->out_fd, F_SETFL, t->out_flags);
        free(t->ibuf);
        free(t->obuf);
        sd_event_unref(t->event);
        free(t);
}
