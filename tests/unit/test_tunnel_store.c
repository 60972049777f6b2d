/* SPDX-License-Identifier: MIT */
/* Unit tests: the tunnel's call store and its checkpoint (host/net/tunnel/store.c): calls by
 * key, outcomes kept within the entry and byte bounds (oldest first, running calls never), a
 * checkpoint compacted and appended to, then loaded by the next host: the session id, the
 * recorded outcomes, running calls become lost (never run again), cancelled ones forgotten,
 * a torn last line ignored. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/net/tunnel/internal.h"

/* A tunnel with only what the store uses: bounds, no checkpoint unless path. */
static struct mcp_tunnel *
tunnel_new(size_t max_entries, size_t max_bytes, const char *path)
{
        struct mcp_tunnel *t = calloc(1, sizeof *t);

        assert_non_null(t);
        t->max_entries = max_entries;
        t->max_bytes = max_bytes;
        t->ckpt_fd = -1;
        t->ckpt_path = path ? strdup(path) : NULL;
        return t;
}

static void
tunnel_free(struct mcp_tunnel *t)
{
        for (size_t b = 0; b < HASH_BUCKETS; b++)
                while (t->buckets[b])
                        mcp_tunnel_store_remove(t, t->buckets[b]);
        assert_int_equal(t->n_done, 0);
        assert_int_equal(t->done_bytes, 0);
        if (t->ckpt_fd >= 0)
                close(t->ckpt_fd);
        free(t->ckpt_path);
        free(t);
}

/* Add key and finish it as done with outcome. */
static struct tcall *
done(struct mcp_tunnel *t, const char *key, const char *outcome)
{
        struct tcall *c = mcp_tunnel_store_add(t, key);

        assert_non_null(c);
        mcp_tunnel_store_finish(t, c, TC_DONE, strdup(outcome));
        return c;
}

static void
test_find_add_remove(void **state)
{
        struct mcp_tunnel *t = tunnel_new(10, 1 << 20, NULL);
        struct tcall *a, *b;

        (void)state;
        assert_null(mcp_tunnel_store_find(t, "k:a"));
        a = mcp_tunnel_store_add(t, "k:a");
        b = mcp_tunnel_store_add(t, "s:sess:1");
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(a->state, TC_RUNNING);
        assert_ptr_equal(mcp_tunnel_store_find(t, "k:a"), a);
        assert_ptr_equal(mcp_tunnel_store_find(t, "s:sess:1"), b);
        assert_null(mcp_tunnel_store_find(t, "k:b"));
        mcp_tunnel_store_remove(t, a);
        assert_null(mcp_tunnel_store_find(t, "k:a"));
        assert_ptr_equal(mcp_tunnel_store_find(t, "s:sess:1"), b);
        tunnel_free(t);
}

static void
test_bounded_by_entries(void **state)
{
        struct mcp_tunnel *t = tunnel_new(3, 1 << 20, NULL);
        struct tcall *running = mcp_tunnel_store_add(t, "k:running");
        char key[32];

        (void)state;
        assert_non_null(running);
        for (int i = 1; i <= 5; i++) {
                snprintf(key, sizeof key, "k:%d", i);
                done(t, key, "\"result\":{}");
        }
        /* The three newest outcomes are kept; the running call is never dropped. */
        assert_int_equal(t->n_done, 3);
        assert_null(mcp_tunnel_store_find(t, "k:1"));
        assert_null(mcp_tunnel_store_find(t, "k:2"));
        for (int i = 3; i <= 5; i++) {
                snprintf(key, sizeof key, "k:%d", i);
                assert_non_null(mcp_tunnel_store_find(t, key));
        }
        assert_ptr_equal(mcp_tunnel_store_find(t, "k:running"), running);
        assert_string_equal(t->done_head->key, "k:3");
        assert_string_equal(t->done_tail->key, "k:5");
        tunnel_free(t);
}

static void
test_bounded_by_bytes(void **state)
{
        /* Each entry weighs its key + outcome + 64: 3 + 1000 + 64 here. */
        struct mcp_tunnel *t = tunnel_new(100, 2 * 1067 + 10, NULL);
        char *big = malloc(1001);
        struct tcall *c;

        (void)state;
        assert_non_null(big);
        memset(big, 'o', 1000);
        big[1000] = '\0';
        done(t, "k:1", big);
        done(t, "k:2", big);
        assert_int_equal(t->n_done, 2);
        assert_int_equal(t->done_bytes, 2 * 1067);
        done(t, "k:3", big);
        assert_int_equal(t->n_done, 2);
        assert_null(mcp_tunnel_store_find(t, "k:1"));
        /* One outcome larger than the whole bound is still kept: it is the newest. */
        c = mcp_tunnel_store_add(t, "k:4");
        big = realloc(big, 4001);
        assert_non_null(big);
        memset(big, 'p', 4000);
        big[4000] = '\0';
        mcp_tunnel_store_finish(t, c, TC_DONE, big);
        assert_int_equal(t->n_done, 1);
        assert_ptr_equal(t->done_head, c);
        tunnel_free(t);
}

static void
test_checkpoint_round_trip(void **state)
{
        char dir[] = "/tmp/test_tunnel_store.XXXXXX", path[64];
        struct mcp_tunnel *t, *t2;
        struct tcall *c, *running, *cancelled;
        FILE *f;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/ckpt.json", dir);
        t = tunnel_new(10, 1 << 20, path);
        snprintf(t->session, sizeof t->session, "%s", "sess-1");
        done(t, "k:done", "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"<<\\\"x\\\"\"}]}");
        done(t, "k:failed", "\"error\":{\"code\":-32603,\"message\":\"m\"}");
        running = mcp_tunnel_store_add(t, "k:running");
        cancelled = mcp_tunnel_store_add(t, "k:cancelled");
        assert_non_null(running);
        assert_non_null(cancelled);
        assert_int_equal(mcp_tunnel_ckpt_compact(t), 0);
        assert_true(t->ckpt_fd >= 0);
        mcp_tunnel_ckpt_append(t, cancelled, "cancelled");
        tunnel_free(t);
        /* A torn last line, as a crash mid-append leaves it. */
        f = fopen(path, "a");
        assert_non_null(f);
        fputs("{\"k\":\"k:torn\",\"o\":{\"res", f);
        fclose(f);

        t2 = tunnel_new(10, 1 << 20, path);
        assert_int_equal(mcp_tunnel_ckpt_load(t2), 0);
        assert_string_equal(t2->session, "sess-1");
        c = mcp_tunnel_store_find(t2, "k:done");
        assert_non_null(c);
        assert_int_equal(c->state, TC_DONE);
        assert_string_equal(c->outcome,
                            "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"<<\\\"x\\\"\"}]}");
        c = mcp_tunnel_store_find(t2, "k:failed");
        assert_non_null(c);
        assert_string_equal(c->outcome, "\"error\":{\"code\":-32603,\"message\":\"m\"}");
        c = mcp_tunnel_store_find(t2, "k:running");
        assert_non_null(c);
        assert_int_equal(c->state, TC_LOST);
        assert_null(c->outcome);
        assert_null(mcp_tunnel_store_find(t2, "k:cancelled"));
        assert_null(mcp_tunnel_store_find(t2, "k:torn"));
        assert_int_equal(t2->n_done, 3);
        tunnel_free(t2);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void
test_checkpoint_absent_and_not_a_file(void **state)
{
        char dir[] = "/tmp/test_tunnel_store.XXXXXX", path[64];
        struct mcp_tunnel *t;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/none.json", dir);
        t = tunnel_new(10, 1 << 20, path);
        assert_int_equal(mcp_tunnel_ckpt_load(t), 0); /* none yet: a new session */
        assert_int_equal(t->n_done, 0);
        tunnel_free(t);
        t = tunnel_new(10, 1 << 20, dir); /* a directory is refused */
        assert_int_equal(mcp_tunnel_ckpt_load(t), -EINVAL);
        tunnel_free(t);
        assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_find_add_remove),
                cmocka_unit_test(test_bounded_by_entries),
                cmocka_unit_test(test_bounded_by_bytes),
                cmocka_unit_test(test_checkpoint_round_trip),
                cmocka_unit_test(test_checkpoint_absent_and_not_a_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
