/* SPDX-License-Identifier: MIT */
/* The replay buffer of a 2025-11-25 SSE stream: the events sent, kept (bounded) so that
 * a client reconnecting with Last-Event-ID gets those it missed. */
#include "config.h"

#include "host/net/http/internal.h"

/* Forget every event a stream kept for replay (its events up to the last are then no longer
 * resumable). */
void
mcp_http_replay_drop_all(struct req *q)
{
        while (q->replay_head) {
                struct event *e = q->replay_head;
                q->replay_head = e->next;
                q->h->replay_total -= e->len;
                q->replay_bytes -= e->len;
                q->replay_dropped = e->n;
                free(e);
        }
        q->replay_tail = NULL;
}

/* Keep one event of a 2025-11-25 SSE stream for replay, dropping the oldest past
 * MCP_HTTP_REPLAY_MAX bytes. Past MCP_HTTP_REPLAY_TOTAL_MAX for the whole process (many
 * sessions, each with cut streams), the stream keeps nothing more: it can no longer be
 * resumed (400), its call goes on. Returns 0 or -ENOMEM. */
int
mcp_http_replay_keep(struct req *q, uint64_t n, const char *text, size_t len)
{
        struct event *e;

        if (q->h->replay_total + len > MCP_HTTP_REPLAY_TOTAL_MAX) {
                if (q->replay_head)
                        log_warning(
                                "http: %zu bytes kept for stream resumption: a stream stops being resumable",
                                q->h->replay_total);
                mcp_http_replay_drop_all(q);
                q->replay_dropped = n;
                return 0;
        }
        e = malloc(sizeof *e + len);
        if (!e)
                return -ENOMEM;
        e->next = NULL;
        e->n = n;
        e->len = len;
        memcpy(e->text, text, len);
        if (q->replay_tail)
                q->replay_tail->next = e;
        else
                q->replay_head = e;
        q->replay_tail = e;
        q->replay_bytes += len;
        q->h->replay_total += len;
        while (q->replay_bytes > MCP_HTTP_REPLAY_MAX && q->replay_head != e) {
                struct event *old = q->replay_head;
                q->replay_head = old->next;
                q->replay_bytes -= old->len;
                q->h->replay_total -= old->len;
                q->replay_dropped = old->n;
                free(old);
        }
        return 0;
}
