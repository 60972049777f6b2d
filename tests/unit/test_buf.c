/* SPDX-License-Identifier: MIT */
/* Unit tests for common/buf.c: appends keep the text NUL-terminated, the bound keeps what fits
 * and makes the error sticky, printf longer than its stack buffer, wiping buffers, reset. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <cmocka.h>

#include "common/buf.h"

/* free and realloc are wrapped (-Wl,--wrap, Makefile.am): while watch is set, every block
 * given back to the allocator is searched for it, and realloc moves by malloc + copy + free
 * so that the block it gives up is searched too. */
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
static const char *watch;
static int unwiped;

void
__wrap_free(void *p)
{
        if (p && watch && memmem(p, malloc_usable_size(p), watch, strlen(watch)))
                unwiped++;
        __real_free(p);
}

void *
__wrap_realloc(void *p, size_t n)
{
        void *q;
        size_t old;

        if (!watch)
                return __real_realloc(p, n);
        q = malloc(n);
        if (!q)
                return NULL;
        if (p) {
                old = malloc_usable_size(p);
                memcpy(q, p, old < n ? old : n);
                __wrap_free(p);
        }
        return q;
}

static void
test_grow(void **state)
{
        struct ab_buf b = { 0 };

        (void)state;
        ab_buf_put(&b, "", 0); /* an empty append still gives a string */
        assert_non_null(b.p);
        assert_string_equal(b.p, "");
        for (int i = 0; i < 1000; i++)
                ab_buf_printf(&b, "%d,", i % 10);
        assert_int_equal(b.err, 0);
        assert_int_equal(b.len, 2000);
        assert_int_equal(strlen(b.p), 2000);
        assert_true(b.cap > b.len);
        assert_memory_equal(b.p + 1980, "0,1,2,3,4,", 10);
        ab_buf_puts(&b, "end");
        assert_string_equal(b.p + 2000, "end");
        ab_buf_put(&b, "a\0b", 3); /* bytes, NUL included, are kept */
        assert_int_equal(b.len, 2006);
        assert_memory_equal(b.p + 2003, "a\0b", 4);
        ab_buf_free(&b);
        assert_null(b.p);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.cap, 0);
        ab_buf_free(NULL);
}

static void
test_bound(void **state)
{
        struct ab_buf b = { .max = 10 };

        (void)state;
        ab_buf_puts(&b, "0123456");
        assert_int_equal(b.err, 0);
        ab_buf_puts(&b, "789"); /* exactly at the bound: still fine */
        assert_int_equal(b.err, 0);
        assert_string_equal(b.p, "0123456789");
        ab_buf_puts(&b, "x");
        assert_int_equal(b.err, -E2BIG);
        assert_string_equal(b.p, "0123456789");
        assert_true(b.cap <= b.max + 1);
        ab_buf_free(&b);
        assert_int_equal(b.max, 10); /* the bound survives a reset */
        assert_int_equal(b.err, 0);

        ab_buf_puts(&b, "abcdefgh");
        ab_buf_printf(&b, "%s", "ijklmnop"); /* what fits is kept */
        assert_int_equal(b.err, -E2BIG);
        assert_string_equal(b.p, "abcdefghij");
        ab_buf_puts(&b, ""); /* sticky: nothing more happens */
        ab_buf_printf(&b, "more");
        assert_int_equal(b.err, -E2BIG);
        assert_int_equal(b.len, 10);
        ab_buf_free(&b);
}

static void
test_printf_long(void **state)
{
        struct ab_buf b = { 0 };
        char big[3000];

        (void)state;
        memset(big, 'q', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        ab_buf_printf(&b, "<%s>", big);
        assert_int_equal(b.err, 0);
        assert_int_equal(b.len, sizeof(big) + 1);
        assert_int_equal(b.p[0], '<');
        assert_int_equal(b.p[b.len - 1], '>');

        struct ab_buf c = { .max = 100 };
        ab_buf_printf(&c, "%s", big);
        assert_int_equal(c.err, -E2BIG);
        assert_int_equal(c.len, 100);
        ab_buf_free(&b);
        ab_buf_free(&c);
}

static void
test_wipe(void **state)
{
        struct ab_buf b = { .wipe = true, .max = 1 << 20 };

        (void)state;
        for (int i = 0; i < 5000; i++)
                ab_buf_put(&b, "secret!", 7); /* grows several times */
        assert_int_equal(b.err, 0);
        assert_int_equal(b.len, 35000);
        assert_memory_equal(b.p + 34993, "secret!", 7);
        assert_memory_equal(b.p, "secret!secret!", 14);
        ab_buf_printf(&b, "%s", "x");
        ab_buf_free(&b);
        assert_null(b.p);
        assert_true(b.wipe);
}

/* A wiping buffer gives no block holding its text back unwiped, while it grows or when freed
 * (the egress response body, which can hold an echoed secret, is one); a buffer without wipe
 * does (realloc leaves the old copy in freed memory): the check sees residue. */
static void
test_wipe_no_residue(void **state)
{
        struct ab_buf b = { .wipe = true }, c = { 0 };
        char big[600];

        (void)state;
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        watch = "s3cr3t-value";
        unwiped = 0;
        for (int i = 0; i < 300; i++)
                ab_buf_put(&b, "s3cr3t-value", 12);
        ab_buf_printf(&b, "%s s3cr3t-value", big); /* the printf path's heap copy */
        assert_int_equal(b.err, 0);
        ab_buf_free(&b);
        assert_int_equal(unwiped, 0);

        for (int i = 0; i < 300; i++)
                ab_buf_put(&c, "s3cr3t-value", 12);
        ab_buf_free(&c);
        watch = NULL;
        assert_true(unwiped > 0);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_grow),
                cmocka_unit_test(test_bound),
                cmocka_unit_test(test_printf_long),
                cmocka_unit_test(test_wipe),
                cmocka_unit_test(test_wipe_no_residue),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
