/* SPDX-License-Identifier: MIT */
/* Unit tests for the broker protocol codec (common/wire.c). */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/wire.h"

static int
decode(const char *s, cJSON **ret, const char **ret_op)
{
        const char *err = NULL;
        cJSON *m = NULL;
        const char *op = NULL;
        int r = ab_wire_decode(s, strlen(s), &m, &op, &err);

        if (r == 0 || r == -EPROTO) {
                assert_non_null(m);
                if (ret) {
                        *ret = m;
                        if (ret_op)
                                *ret_op = op;
                } else
                        cJSON_Delete(m);
        } else
                assert_non_null(err);
        return r;
}

static void
test_valid(void **state)
{
        cJSON *m;
        const char *op, *s;
        uint64_t id;

        assert_int_equal(decode("{\"v\":1,\"op\":\"status\",\"id\":7}", &m, &op), 0);
        assert_string_equal(op, "status");
        assert_int_equal(ab_wire_get_u64(m, "id", 100, &id), 0);
        assert_int_equal(id, 7);
        assert_int_equal(ab_wire_get_string(m, "missing", 10, &s), -ENOENT);
        assert_int_equal(ab_wire_get_string(m, "op", 3, &s), -EINVAL); /* too long */
        assert_int_equal(ab_wire_get_u64(m, "op", 100, &id), -EINVAL); /* wrong type */
        cJSON_Delete(m);
        /* Trailing whitespace is fine. */
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":0}\n ", NULL, NULL), 0);
}

static void
test_envelope_errors(void **state)
{
        cJSON *m = NULL;
        const char *op;

        assert_int_equal(decode("", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("[]", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\"}", NULL, NULL), -EBADMSG);         /* no id */
        assert_int_equal(decode("{\"v\":1,\"id\":1}", NULL, NULL), -EBADMSG);             /* no op */
        assert_int_equal(decode("{\"v\":1,\"op\":\"\",\"id\":1}", NULL, NULL), -EBADMSG); /* empty op */
        assert_int_equal(decode("{\"v\":1,\"op\":7,\"id\":1}", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":-1}", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":1.5}", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":1e300}", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":1} trailing", NULL, NULL), -EBADMSG);
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":1", NULL, NULL), -EBADMSG);
        /* Wrong version: the message comes back so its id can be answered. */
        assert_int_equal(decode("{\"v\":2,\"op\":\"x\",\"id\":5}", &m, &op), -EPROTO);
        cJSON_Delete(m);
}

static void
test_limits(void **state)
{
        char deep[256] = "{\"v\":1,\"op\":\"x\",\"id\":1,\"a\":";
        char *big, *many;
        size_t n;

        /* Nesting: 1 (envelope) + 7 arrays is fine, 1 + 8 is not. */
        strcat(deep, "[[[[[[[1]]]]]]]}");
        assert_int_equal(decode(deep, NULL, NULL), 0);
        strcpy(deep, "{\"v\":1,\"op\":\"x\",\"id\":1,\"a\":[[[[[[[[1]]]]]]]]}");
        assert_int_equal(decode(deep, NULL, NULL), -EBADMSG);
        /* Brackets inside strings do not count. */
        assert_int_equal(decode("{\"v\":1,\"op\":\"x\",\"id\":1,\"s\":\"[[[[[[[[[[[[\"}", NULL, NULL), 0);

        /* Too many members. */
        many = malloc(8192);
        strcpy(many, "{\"v\":1,\"op\":\"x\",\"id\":1,\"a\":[");
        for (int i = 0; i < 300; i++)
                strcat(many, i ? ",1" : "1");
        strcat(many, "]}");
        assert_int_equal(decode(many, NULL, NULL), -EBADMSG);
        free(many);

        /* Size. */
        n = AB_MSG_MAX + 10;
        big = malloc(n + 1);
        memset(big, ' ', n);
        memcpy(big, "{\"v\":1,\"op\":\"x\",\"id\":1}", 23);
        big[n] = '\0';
        assert_int_equal(decode(big, NULL, NULL), -E2BIG);
        free(big);

        /* NUL bytes inside the datagram. */
        {
                const char nul[] = "{\"v\":1,\"op\":\"x\",\"id\":1}\0junk";
                cJSON *m = NULL;
                const char *op, *err;
                assert_int_equal(ab_wire_decode(nul, sizeof(nul) - 1, &m, &op, &err), -EBADMSG);
        }
}

static void
test_replies(void **state)
{
        cJSON *r = ab_wire_reply_error(9, AB_ERR_DENIED, "token-expired", "expired");
        char *s;
        size_t len;

        assert_non_null(r);
        assert_int_equal(ab_wire_encode(r, &s, &len), 0);
        assert_string_equal(
                s,
                "{\"v\":1,\"id\":9,\"ok\":false,\"error\":\"denied\",\"reason\":\"token-expired\",\"message\":\"expired\"}");
        assert_int_equal(strlen(s), len);
        cJSON_free(s);
        cJSON_Delete(r);

        r = ab_wire_reply_ok(3);
        assert_int_equal(ab_wire_encode(r, &s, &len), 0);
        assert_string_equal(s, "{\"v\":1,\"id\":3,\"ok\":true}");
        cJSON_free(s);
        /* A reply that would exceed the limit is refused. */
        {
                char *pad = malloc(AB_MSG_MAX + 1);
                memset(pad, 'a', AB_MSG_MAX);
                pad[AB_MSG_MAX] = '\0';
                cJSON_AddStringToObject(r, "pad", pad);
                free(pad);
                assert_int_equal(ab_wire_encode(r, &s, &len), -E2BIG);
        }
        cJSON_Delete(r);

        r = ab_wire_request("status", 12);
        assert_int_equal(ab_wire_encode(r, &s, &len), 0);
        assert_string_equal(s, "{\"v\":1,\"id\":12,\"op\":\"status\"}");
        cJSON_free(s);
        cJSON_Delete(r);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_envelope_errors),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_replies),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
