/* SPDX-License-Identifier: MIT */
/* Unit tests: the replay buffer of a 2025-11-25 SSE stream (host/net/http/replay.c): events
 * kept in order, the oldest dropped past MCP_HTTP_REPLAY_MAX per stream (never the newest),
 * the stream no longer resumable past MCP_HTTP_REPLAY_TOTAL_MAX for the process, and the
 * byte counts of the stream and of the process kept exact throughout. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/net/http/internal.h"

struct fixture {
        struct http *h;
        struct req q;
        char *big; /* EVENT_BIG bytes of event text */
};

#define EVENT_BIG (256u * 1024)

static int
setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);

        assert_non_null(f);
        f->h = calloc(1, sizeof *f->h);
        f->big = malloc(EVENT_BIG);
        assert_non_null(f->h);
        assert_non_null(f->big);
        memset(f->big, 'e', EVENT_BIG);
        f->q.h = f->h;
        *state = f;
        return 0;
}

static int
teardown(void **state)
{
        struct fixture *f = *state;

        mcp_http_replay_drop_all(&f->q);
        assert_int_equal(f->h->replay_total, 0);
        free(f->big);
        free(f->h);
        free(f);
        return 0;
}

/* The numbers of the events q keeps, oldest first, as "1 2 3". */
static void
kept(const struct req *q, char *buf, size_t len)
{
        size_t at = 0;

        buf[0] = '\0';
        for (const struct event *e = q->replay_head; e && at < len; e = e->next)
                at += (size_t)snprintf(buf + at, len - at, "%s%llu", at ? " " : "",
                                       (unsigned long long)e->n);
}

static void
test_keeps_in_order(void **state)
{
        struct fixture *f = *state;
        char buf[64];

        assert_int_equal(mcp_http_replay_keep(&f->q, 1, "id: 1\ndata: a\n\n", 15), 0);
        assert_int_equal(mcp_http_replay_keep(&f->q, 2, "id: 2\ndata: bb\n\n", 16), 0);
        assert_int_equal(mcp_http_replay_keep(&f->q, 3, "id: 3\ndata: c\n\n", 15), 0);
        kept(&f->q, buf, sizeof buf);
        assert_string_equal(buf, "1 2 3");
        assert_memory_equal(f->q.replay_head->next->text, "id: 2\ndata: bb\n\n", 16);
        assert_int_equal(f->q.replay_bytes, 46);
        assert_int_equal(f->h->replay_total, 46);
        assert_int_equal(f->q.replay_dropped, 0);
        assert_int_equal(f->q.replay_tail->n, 3);
}

static void
test_stream_cap_drops_oldest(void **state)
{
        struct fixture *f = *state;
        const size_t per_stream = MCP_HTTP_REPLAY_MAX / EVENT_BIG; /* events that fit: 4 */
        char buf[64];

        for (uint64_t n = 1; n <= per_stream + 2; n++)
                assert_int_equal(mcp_http_replay_keep(&f->q, n, f->big, EVENT_BIG), 0);
        /* 6 kept one after the other: 1 and 2 went, so the client can resume after 2 at best. */
        kept(&f->q, buf, sizeof buf);
        assert_string_equal(buf, "3 4 5 6");
        assert_int_equal(f->q.replay_dropped, 2);
        assert_true(f->q.replay_bytes <= MCP_HTTP_REPLAY_MAX);
        assert_int_equal(f->q.replay_bytes, per_stream * EVENT_BIG);
        assert_int_equal(f->h->replay_total, f->q.replay_bytes);
}

static void
test_newest_kept_even_when_larger_than_the_cap(void **state)
{
        struct fixture *f = *state;
        size_t len = MCP_HTTP_REPLAY_MAX + 10;
        char *huge = malloc(len);
        char buf[64];

        assert_non_null(huge);
        memset(huge, 'h', len);
        assert_int_equal(mcp_http_replay_keep(&f->q, 1, "id: 1\n\n", 7), 0);
        assert_int_equal(mcp_http_replay_keep(&f->q, 2, huge, len), 0);
        kept(&f->q, buf, sizeof buf);
        assert_string_equal(buf, "2");
        assert_int_equal(f->q.replay_dropped, 1);
        assert_int_equal(f->q.replay_bytes, len);
        assert_int_equal(f->h->replay_total, len);
        free(huge);
}

static void
test_process_cap_ends_resumption(void **state)
{
        struct fixture *f = *state;
        char buf[64];

        /* Other streams of the process hold all but 100 bytes of the total. */
        f->h->replay_total = MCP_HTTP_REPLAY_TOTAL_MAX - 100;
        assert_int_equal(mcp_http_replay_keep(&f->q, 1, "id: 1\ndata: a\n\n", 15), 0);
        assert_int_equal(f->h->replay_total, MCP_HTTP_REPLAY_TOTAL_MAX - 85);
        /* The next one does not fit: the stream keeps nothing, and nothing before event 2. */
        assert_int_equal(mcp_http_replay_keep(&f->q, 2, f->big, 200), 0);
        kept(&f->q, buf, sizeof buf);
        assert_string_equal(buf, "");
        assert_null(f->q.replay_tail);
        assert_int_equal(f->q.replay_bytes, 0);
        assert_int_equal(f->q.replay_dropped, 2);
        assert_int_equal(f->h->replay_total, MCP_HTTP_REPLAY_TOTAL_MAX - 100);
        f->h->replay_total -= MCP_HTTP_REPLAY_TOTAL_MAX - 100;
}

static void
test_drop_all(void **state)
{
        struct fixture *f = *state;

        for (uint64_t n = 1; n <= 3; n++)
                assert_int_equal(mcp_http_replay_keep(&f->q, n, "x", 1), 0);
        mcp_http_replay_drop_all(&f->q);
        assert_null(f->q.replay_head);
        assert_null(f->q.replay_tail);
        assert_int_equal(f->q.replay_bytes, 0);
        assert_int_equal(f->q.replay_dropped, 3);
        assert_int_equal(f->h->replay_total, 0);
        /* Kept again afterwards, from the next event on. */
        assert_int_equal(mcp_http_replay_keep(&f->q, 4, "y", 1), 0);
        assert_int_equal(f->q.replay_head->n, 4);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_keeps_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stream_cap_drops_oldest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newest_kept_even_when_larger_than_the_cap, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_process_cap_ends_resumption, setup, teardown),
                cmocka_unit_test_setup_teardown(test_drop_all, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
