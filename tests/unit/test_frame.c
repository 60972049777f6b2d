/* SPDX-License-Identifier: MIT */
/* Unit tests for the host <-> worker frames (common/frame.c): round trips over a socketpair,
 * frames arriving a byte at a time, several frames in one write, oversized and empty frames,
 * bodies that are not a JSON object with a string "t", and end of file. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/frame.h"

struct pair {
        int rd, wr; /* rd is non-blocking, as the host's and worker's are */
        struct ab_frame_reader reader;
};

static int
setup(void **state)
{
        struct pair *p = calloc(1, sizeof(*p));
        int sv[2];

        assert_non_null(p);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
        p->rd = sv[0];
        p->wr = sv[1];
        *state = p;
        return 0;
}

static int
teardown(void **state)
{
        struct pair *p = *state;

        ab_frame_reader_clear(&p->reader);
        close(p->rd);
        if (p->wr >= 0)
                close(p->wr);
        free(p);
        return 0;
}

static void
write_bytes(int fd, const void *buf, size_t n)
{
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
}

/* Write a frame header announcing len bytes. */
static void
write_header(int fd, uint32_t len)
{
        unsigned char h[4] = { len >> 24, len >> 16, len >> 8, len };

        write_bytes(fd, h, sizeof(h));
}

/* Write a raw body with its header. */
static void
write_raw(int fd, const char *body)
{
        write_header(fd, (uint32_t)strlen(body));
        write_bytes(fd, body, strlen(body));
}

static void
test_round_trip(void **state)
{
        struct pair *p = *state;
        cJSON *msg = cJSON_Parse(
                "{\"t\":\"call\",\"id\":42,\"tool\":\"echo\",\"args\":{\"text\":\"h\\u00e9\\n\\\"x\\\"\"},"
                "\"token\":\"abt_x\",\"max_bytes\":32768}");
        cJSON *got = NULL;

        assert_non_null(msg);
        assert_int_equal(ab_frame_write(p->wr, msg), 0);
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 1);
        assert_non_null(got);
        assert_true(cJSON_Compare(msg, got, true));
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(got, "args"), "text")->valuestring,
                            "h\xc3\xa9\n\"x\"");
        /* The reader is back at a frame boundary: nothing more to read. */
        assert_int_equal(p->reader.hdr_got, 0);
        assert_null(p->reader.buf);
        cJSON_Delete(got);
        got = NULL;
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 0);
        assert_null(got);
        cJSON_Delete(msg);
}

static void
test_encode(void **state)
{
        cJSON *msg = cJSON_Parse("{\"t\":\"cancel\",\"id\":7}");
        unsigned char *buf = NULL;
        size_t len = 0;

        assert_non_null(msg);
        assert_int_equal(ab_frame_encode(msg, &buf, &len), 0);
        assert_int_equal(len, 4 + strlen("{\"t\":\"cancel\",\"id\":7}"));
        assert_memory_equal(buf, "\0\0\0\x15", 4);
        assert_memory_equal(buf + 4, "{\"t\":\"cancel\",\"id\":7}", len - 4);
        free(buf);
        cJSON_Delete(msg);
}

static void
test_several_in_one_write(void **state)
{
        struct pair *p = *state;
        cJSON *got = NULL;

        /* Three frames in the socket at once come out one per call, in order. */
        write_raw(p->wr, "{\"t\":\"a\"}");
        write_raw(p->wr, "{\"t\":\"b\",\"n\":2}");
        write_raw(p->wr, " {\"t\":\"c\"}\n");
        for (int i = 0; i < 3; i++) {
                char want[2] = { (char)('a' + i), 0 };

                assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 1);
                assert_string_equal(cJSON_GetObjectItem(got, "t")->valuestring, want);
                cJSON_Delete(got);
                got = NULL;
        }
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 0);
}

static void
test_partial(void **state)
{
        struct pair *p = *state;
        cJSON *msg = cJSON_Parse("{\"t\":\"progress\",\"id\":1,\"progress\":0.5,\"message\":\"half way\"}");
        unsigned char *buf = NULL;
        size_t len = 0;
        cJSON *got = NULL;

        assert_int_equal(ab_frame_encode(msg, &buf, &len), 0);
        /* One byte at a time: every read but the last needs more. */
        for (size_t i = 0; i < len; i++) {
                write_bytes(p->wr, buf + i, 1);
                if (i + 1 < len) {
                        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 0);
                        assert_null(got);
                        assert_int_equal(p->reader.hdr_got, i + 1 < 4 ? i + 1 : 4);
                        if (i + 1 >= 4)
                                assert_int_equal(p->reader.got, i + 1 - 4);
                }
        }
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 1);
        assert_true(cJSON_Compare(msg, got, true));
        cJSON_Delete(got);
        free(buf);
        cJSON_Delete(msg);
}

static void
test_oversize(void **state)
{
        struct pair *p = *state;
        cJSON *got = NULL, *big;
        unsigned char *buf = NULL;
        size_t len = 0;
        char *s;

        /* A header past the cap is refused before any body is read. */
        write_header(p->wr, AB_FRAME_MAX + 1);
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EBADMSG);
        assert_null(got);
        assert_null(p->reader.buf);
        assert_int_equal(p->reader.hdr_got, 0);

        /* So is an empty frame. */
        write_header(p->wr, 0);
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EBADMSG);

        /* And encoding a message past the cap fails with -E2BIG. */
        s = malloc(AB_FRAME_MAX + 1);
        assert_non_null(s);
        memset(s, 'x', AB_FRAME_MAX);
        s[AB_FRAME_MAX] = '\0';
        big = cJSON_CreateObject();
        assert_non_null(cJSON_AddStringToObject(big, "t", "result"));
        assert_non_null(cJSON_AddStringToObject(big, "text", s));
        assert_int_equal(ab_frame_encode(big, &buf, &len), -E2BIG);
        assert_int_equal(ab_frame_write(p->wr, big), -E2BIG);
        assert_null(buf);
        cJSON_Delete(big);
        free(s);
}

static void
test_largest(void **state)
{
        struct pair *p = *state;
        size_t n = AB_FRAME_MAX - strlen("{\"t\":\"\"}");
        cJSON *msg = cJSON_CreateObject(), *got = NULL;
        char *s = malloc(n + 1);
        unsigned char *buf = NULL;
        size_t len = 0, off = 0;
        int r = 0;

        /* A frame of exactly AB_FRAME_MAX bytes is accepted, however it is split up. */
        assert_non_null(s);
        memset(s, 'y', n);
        s[n] = '\0';
        assert_non_null(cJSON_AddStringToObject(msg, "t", s));
        assert_int_equal(ab_frame_encode(msg, &buf, &len), 0);
        assert_int_equal(len, 4 + AB_FRAME_MAX);
        while (off < len) {
                ssize_t k = write(p->wr, buf + off, len - off < 65536 ? len - off : 65536);

                assert_true(k > 0);
                off += (size_t)k;
                r = ab_frame_read(p->rd, &p->reader, &got);
                assert_true(r == 0 || (r == 1 && off == len));
        }
        assert_int_equal(r, 1);
        assert_int_equal(strlen(cJSON_GetObjectItem(got, "t")->valuestring), n);
        cJSON_Delete(got);
        cJSON_Delete(msg);
        free(buf);
        free(s);
}

static void
test_not_an_object(void **state)
{
        static const char *const bad[] = {
                "[1,2]", /* not an object */
                "\"t\"",
                "{\"x\":1}", /* no "t" */
                "{\"t\":1}", /* "t" not a string */
                "{\"t\":null}",
                "{\"t\":\"a\"",                /* truncated JSON */
                "{\"t\":\"a\"} {\"t\":\"b\"}", /* two values */
                "{\"t\":\"a\"}x",              /* trailing garbage */
                "not json",
        };
        struct pair *p = *state;
        cJSON *got = NULL;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                write_raw(p->wr, bad[i]);
                assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EBADMSG);
                assert_null(got);
                assert_null(p->reader.buf);
        }
        /* A NUL inside the body is refused too (cJSON would stop there). */
        write_header(p->wr, 12);
        write_bytes(p->wr, "{\"t\":\"a\"}\0xx", 12);
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EBADMSG);
        /* A good frame after them still reads (each bad one was consumed whole). */
        write_raw(p->wr, "{\"t\":\"ok\"}");
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 1);
        assert_string_equal(cJSON_GetObjectItem(got, "t")->valuestring, "ok");
        cJSON_Delete(got);
}

static void
test_parse_exact(void **state)
{
        cJSON *v;

        v = ab_json_parse_exact(" [1, \"a\"]\n", 10);
        assert_non_null(v);
        assert_true(cJSON_IsArray(v));
        cJSON_Delete(v);
        v = ab_json_parse_exact("{\"t\":\"x\"}trailing", 9); /* only the first 9 bytes count */
        assert_non_null(v);
        cJSON_Delete(v);
        assert_null(ab_json_parse_exact("1 2", 3));
        assert_null(ab_json_parse_exact("{} x", 4));
        assert_null(ab_json_parse_exact("\"a\0b\"", 5));
        assert_null(ab_json_parse_exact("", 0));
        assert_null(ab_json_parse_exact("   ", 3));
}

static void
test_eof(void **state)
{
        struct pair *p = *state;
        cJSON *got = NULL;

        /* EOF at a frame boundary. */
        close(p->wr);
        p->wr = -1;
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EPIPE);
        assert_null(got);
}

static void
test_eof_mid_frame(void **state)
{
        struct pair *p = *state;
        cJSON *got = NULL;

        /* EOF inside the header, then (another pair) inside the body. */
        write_bytes(p->wr, "\0\0", 2);
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 0);
        close(p->wr);
        p->wr = -1;
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EPIPE);
        teardown(state);

        setup(state);
        p = *state;
        write_header(p->wr, 100);
        write_bytes(p->wr, "{\"t\":", 5);
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), 0);
        assert_non_null(p->reader.buf);
        close(p->wr);
        p->wr = -1;
        assert_int_equal(ab_frame_read(p->rd, &p->reader, &got), -EPIPE);
        assert_null(got);
        /* Clearing a reader mid-frame frees its buffer; clearing twice is fine. */
        ab_frame_reader_clear(&p->reader);
        assert_null(p->reader.buf);
        assert_int_equal(p->reader.hdr_got, 0);
        ab_frame_reader_clear(&p->reader);
        ab_frame_reader_clear(NULL);
}

static void
test_write_to_closed_peer(void **state)
{
        struct pair *p = *state;
        cJSON *msg = cJSON_Parse("{\"t\":\"log\",\"level\":6,\"message\":\"m\"}");

        /* A closed peer is -EPIPE, not a SIGPIPE that kills the test. */
        close(p->rd);
        p->rd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(ab_frame_write(p->wr, msg), -EPIPE);
        cJSON_Delete(msg);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test(test_encode),
                cmocka_unit_test_setup_teardown(test_several_in_one_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_partial, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
                cmocka_unit_test_setup_teardown(test_largest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_an_object, setup, teardown),
                cmocka_unit_test(test_parse_exact),
                cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
                cmocka_unit_test_setup_teardown(test_eof_mid_frame, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_to_closed_peer, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
