/* SPDX-License-Identifier: MIT */
/* Unit tests for libagentbroker-module's call side (modules/lib/json.c, modules/lib/call.c):
 * the JSON accessors, call frames, results (UTF-8, the hard cap, structuredContent), error
 * messages, progress, cancellation and logging as frames to a host socket, and the secret
 * operations against a scripted broker in a child process (reply codes, the denial reason,
 * the redact frame, reconnecting after the broker closed the connection). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/encode.h"
#include "common/frame.h"
#include "common/wire.h"
#include "modules/lib/internal.h"

#define TOKEN "abt_test"

static int
noop_call(struct abm_call *call, struct abm_error *err)
{
        return 0;
}

static const struct abm_tool tools[] = {
        { .name = "tool1", .input_schema = "{\"type\":\"object\"}", .call = noop_call },
        { .name = "tool2", .input_schema = "{\"type\":\"object\"}", .call = noop_call },
};
static const struct abm_module module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "tmod",
        .version = "1",
        .tools = tools,
        .n_tools = 2,
};

struct fixture {
        struct abmi_worker w;
        int host; /* the host's end of the socketpair */
        struct ab_frame_reader reader;
        struct abm_call *call;
        pid_t broker;
        char dir[64], sock[128];
};

/* ---- a scripted broker ---- */

/* Answer one request, by the secret it names:
 *   good     success (secret-read: the bytes "pa\0ss"; secret-sign: a MAC or signature of the
 *            right length; mint-jwt: "h.p.s" expiring at 1234, or 999 when ttl_s was sent)
 *   denied   denied / secret-not-scoped      gone   denied / secret-unavailable
 *   bad      bad-request / ttl-too-long      short  a 16-byte signature
 *   flaky    the first time: close the connection without answering
 * A request without the call's token or the tool's full name gets an internal error. */
static cJSON *
broker_answer(const cJSON *req, bool *ret_close)
{
        static bool flaked;
        const char *op = cJSON_GetStringValue(cJSON_GetObjectItem(req, "op"));
        const char *secret = cJSON_GetStringValue(cJSON_GetObjectItem(req, "secret"));
        const char *token = cJSON_GetStringValue(cJSON_GetObjectItem(req, "token"));
        const char *tool = cJSON_GetStringValue(cJSON_GetObjectItem(req, "tool"));
        uint64_t id = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(req, "id"));
        cJSON *reply;
        char *b64 = NULL;

        *ret_close = false;
        if (!op || !secret || !token || strcmp(token, TOKEN) != 0 || !tool ||
            strcmp(tool, "tmod.tool1") != 0)
                return ab_wire_reply_error(id, AB_ERR_INTERNAL, NULL, "wrong fields");
        if (strcmp(secret, "denied") == 0)
                return ab_wire_reply_error(id, AB_ERR_DENIED, "secret-not-scoped", "no");
        if (strcmp(secret, "gone") == 0)
                return ab_wire_reply_error(id, AB_ERR_DENIED, "secret-unavailable", "no");
        if (strcmp(secret, "bad") == 0)
                return ab_wire_reply_error(id, AB_ERR_BAD_REQUEST, "ttl-too-long", "no");
        if (strcmp(secret, "flaky") == 0 && !flaked) {
                flaked = true;
                *ret_close = true;
                return NULL;
        }
        reply = ab_wire_reply_ok(id);
        if (strcmp(op, "secret-read") == 0) {
                ab_base64_encode("pa\0ss", 5, &b64);
                cJSON_AddStringToObject(reply, "value", b64);
        } else if (strcmp(op, "secret-sign") == 0) {
                unsigned char sig[64];
                const char *alg = cJSON_GetStringValue(cJSON_GetObjectItem(req, "alg"));
                size_t n = strcmp(secret, "short") == 0 ? 16 : strcmp(alg, "ed25519") == 0 ? 64 : 32;

                memset(sig, 0xab, sizeof(sig));
                ab_base64_encode(sig, n, &b64);
                cJSON_AddStringToObject(reply, "signature", b64);
        } else if (strcmp(op, "mint-jwt") == 0) {
                cJSON_AddStringToObject(reply, "jwt", "h.p.s");
                cJSON_AddNumberToObject(reply, "exp", cJSON_GetObjectItem(req, "ttl_s") ? 999 : 1234);
        }
        free(b64);
        return reply;
}

static void
broker_serve(int lfd)
{
        char buf[AB_MSG_MAX + 1];

        for (;;) {
                int c = accept(lfd, NULL, NULL);

                if (c < 0)
                        _exit(1);
                for (;;) {
                        ssize_t n = recv(c, buf, sizeof(buf) - 1, 0);
                        cJSON *req, *reply;
                        bool close_it;
                        char *out;

                        if (n <= 0)
                                break;
                        req = cJSON_ParseWithLength(buf, (size_t)n);
                        reply = broker_answer(req, &close_it);
                        cJSON_Delete(req);
                        if (close_it)
                                break;
                        out = cJSON_PrintUnformatted(reply);
                        (void)send(c, out, strlen(out), MSG_NOSIGNAL);
                        free(out);
                        cJSON_Delete(reply);
                }
                close(c);
        }
}

/* ---- fixture ---- */

static int
setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int sv[2], lfd;

        assert_non_null(f);
        /* The broker first, so that it holds no copy of the host socket (EOF tests). */
        strcpy(f->dir, "/tmp/test_module_call.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->sock, sizeof(f->sock), "%s/broker.sock", f->dir);
        assert_true(strlen(f->sock) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, f->sock, strlen(f->sock) + 1);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        assert_true(lfd >= 0);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 4), 0);
        f->broker = fork();
        assert_true(f->broker >= 0);
        if (f->broker == 0)
                broker_serve(lfd);
        close(lfd);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
        assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
        f->w.name = "tmod";
        f->w.module = &module;
        f->w.host_fd = sv[0];
        f->host = sv[1];
        f->w.broker_path = strdup(f->sock);
        abmi_current = &f->w;
        *state = f;
        return 0;
}

static int
teardown(void **state)
{
        struct fixture *f = *state;

        abmi_current = NULL;
        abmi_call_free(f->call);
        abmi_broker_close(&f->w);
        free(f->w.broker_path);
        ab_frame_reader_clear(&f->w.reader);
        ab_frame_reader_clear(&f->reader);
        close(f->w.host_fd);
        if (f->host >= 0)
                close(f->host);
        kill(f->broker, SIGKILL);
        waitpid(f->broker, NULL, 0);
        unlink(f->sock);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* Start a call of tmod.tool1 from a call frame. */
static struct abm_call *
start_call(struct fixture *f, const char *args)
{
        char text[4096];
        struct abm_error err = { { 0 } };
        cJSON *frame;

        snprintf(text, sizeof(text),
                 "{\"t\":\"call\",\"id\":5,\"tool\":\"tmod.tool1\",\"args\":%s,\"token\":\"" TOKEN
                 "\",\"run\":\"r\",\"max_bytes\":1000}",
                 args);
        frame = cJSON_Parse(text);
        assert_non_null(frame);
        assert_int_equal(abmi_call_new(&f->w, frame, &f->call, &err), 0);
        cJSON_Delete(frame);
        return f->call;
}

/* The next frame the worker sent to the host, or NULL when there is none. */
static cJSON *
host_read(struct fixture *f)
{
        cJSON *msg = NULL;
        int r = ab_frame_read(f->host, &f->reader, &msg);

        assert_true(r >= 0);
        return r == 1 ? msg : NULL;
}

static void
host_send(struct fixture *f, const char *json)
{
        cJSON *msg = cJSON_Parse(json);

        assert_non_null(msg);
        assert_int_equal(ab_frame_write(f->host, msg), 0);
        cJSON_Delete(msg);
}

static const char *
str(const cJSON *o, const char *key)
{
        return cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
}

/* ---- JSON accessors ---- */

static void
test_json(void **state)
{
        cJSON *v =
                cJSON_Parse("{\"s\":\"x\",\"i\":-9223372036854775808,\"big\":9223372036854775808,\"f\":1.5,"
                            "\"b\":true,\"o\":{\"k\":\"v\"},\"a\":[1,\"two\",3],\"n\":null}");
        const struct abm_json *j = (const struct abm_json *)v, *o, *a;
        const char *s;
        int64_t i;
        double d;
        bool b;

        assert_non_null(v);
        assert_int_equal(abm_json_get_string(j, "s", &s), 0);
        assert_string_equal(s, "x");
        assert_int_equal(abm_json_get_string(j, "i", &s), -EINVAL);
        assert_int_equal(abm_json_get_string(j, "missing", &s), -ENOENT);
        assert_int_equal(abm_json_get_string(NULL, "s", &s), -EINVAL);
        assert_int_equal(abm_json_get_int(j, "i", &i), 0);
        assert_true(i == INT64_MIN);
        assert_int_equal(abm_json_get_int(j, "big", &i), -EINVAL); /* 2^63 */
        assert_int_equal(abm_json_get_int(j, "f", &i), -EINVAL);   /* not integral */
        assert_int_equal(abm_json_get_int(j, "n", &i), -EINVAL);
        assert_int_equal(abm_json_get_number(j, "f", &d), 0);
        assert_true(d == 1.5);
        assert_int_equal(abm_json_get_bool(j, "b", &b), 0);
        assert_true(b);
        assert_int_equal(abm_json_get_bool(j, "s", &b), -EINVAL);
        assert_int_equal(abm_json_get_object(j, "o", &o), 0);
        assert_int_equal(abm_json_get_string(o, "k", &s), 0);
        assert_string_equal(s, "v");
        assert_int_equal(abm_json_get_object(j, "a", &o), -EINVAL);
        assert_int_equal(abm_json_get_array(j, "a", &a), 0);
        assert_int_equal(abm_json_array_size(a), 3);
        assert_int_equal(abm_json_array_size(o), 0);
        assert_string_equal(abm_json_string(abm_json_array_at(a, 1)), "two");
        assert_null(abm_json_string(abm_json_array_at(a, 0)));
        assert_null(abm_json_array_at(a, 3));
        assert_null(abm_json_array_at(j, 0));
        /* An array is not an object. */
        assert_int_equal(abm_json_get_string(a, "s", &s), -EINVAL);
        cJSON_Delete(v);
}

/* ---- call frames ---- */

static void
test_call_frames(void **state)
{
        static const char *const bad[] = {
                "{\"t\":\"call\",\"tool\":\"tool1\",\"token\":\"t\"}", /* no id */
                "{\"t\":\"call\",\"id\":-1,\"tool\":\"tool1\",\"token\":\"t\"}",
                "{\"t\":\"call\",\"id\":1,\"tool\":\"tool1\"}", /* no token */
                "{\"t\":\"call\",\"id\":1,\"tool\":\"nope\",\"token\":\"t\"}",
                "{\"t\":\"call\",\"id\":1,\"tool\":\"other.tool1\",\"token\":\"t\"}", /* other module */
                "{\"t\":\"call\",\"id\":1,\"tool\":\"tmod.\",\"token\":\"t\"}",
                "{\"t\":\"call\",\"id\":1,\"tool\":\"tool1\",\"token\":\"t\",\"args\":[1]}", /* args not an object */
                "{\"t\":\"call\",\"id\":1,\"tool\":\"tool1\",\"token\":\"t\",\"max_bytes\":\"x\"}",
        };
        struct fixture *f = *state;
        struct abm_error err;
        struct abm_call *call = NULL;
        cJSON *frame;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(&err, 0, sizeof(err));
                frame = cJSON_Parse(bad[i]);
                assert_non_null(frame);
                assert_true(abmi_call_new(&f->w, frame, &call, &err) < 0);
                assert_null(call);
                assert_true(err.message[0] != '\0');
                cJSON_Delete(frame);
        }
        /* The short name works too; args default to {} and max_bytes to 32 KiB. */
        frame = cJSON_Parse("{\"t\":\"call\",\"id\":9007199254740992,\"tool\":\"tool2\",\"token\":\"t\"}");
        assert_int_equal(abmi_call_new(&f->w, frame, &call, &err), 0);
        assert_true(call->tool == &tools[1]);
        assert_string_equal(call->tool_name, "tmod.tool2");
        assert_int_equal(abm_call_max_result_bytes(call), 32768);
        assert_string_equal(abm_call_args_text(call), "{}");
        assert_true(call->id == 9007199254740992ull);
        abmi_call_free(call);
        cJSON_Delete(frame);

        call = start_call(f, "{\"path\":\"/x\",\"n\":[1,2]}");
        assert_int_equal(abm_call_max_result_bytes(call), 1000);
        assert_string_equal(abm_call_args_text(call), "{\"path\":\"/x\",\"n\":[1,2]}");
}

/* ---- results ---- */

static void
test_text(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        static const char *const invalid[] = {
                "\xff",
                "\xc0\x80",
                "\xe0\x80\x80",
                "\xed\xa0\x80" /* surrogate */,
                "\xf4\x90\x80\x80" /* > U+10FFFF */,
                "\xc3",
                "a\xe2\x82",
        };
        cJSON *result, *content;

        for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
                assert_int_equal(abm_call_text(call, invalid[i], (size_t)-1), -EINVAL);
        assert_int_equal(abm_call_text(call, "a\0b", 3), -EINVAL); /* NUL inside */
        assert_int_equal(abm_call_text(NULL, "a", 1), -EINVAL);
        assert_int_equal(abm_call_text(call, NULL, 1), -EINVAL);
        assert_int_equal(abm_call_text(call, "h\xc3\xa9 \xf0\x9f\x98\x80", (size_t)-1), 0);
        assert_int_equal(abm_call_text(call, "abcdef", 3), 0); /* only len bytes */
        assert_int_equal(abm_call_textf(call, "%d-%s", 42, "x"), 0);
        assert_int_equal(abm_call_structured(call, "{\"k\":1}"), 0);

        result = abmi_call_result(call, 0, NULL);
        assert_non_null(result);
        assert_string_equal(str(result, "t"), "result");
        assert_false(cJSON_IsTrue(cJSON_GetObjectItem(result, "isError")));
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(result, "id")) == 5);
        content = cJSON_GetObjectItem(result, "content");
        assert_int_equal(cJSON_GetArraySize(content), 3);
        assert_string_equal(str(cJSON_GetArrayItem(content, 0), "type"), "text");
        assert_string_equal(str(cJSON_GetArrayItem(content, 0), "text"), "h\xc3\xa9 \xf0\x9f\x98\x80");
        assert_string_equal(str(cJSON_GetArrayItem(content, 1), "text"), "abc");
        assert_string_equal(str(cJSON_GetArrayItem(content, 2), "text"), "42-x");
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(
                            cJSON_GetObjectItem(result, "structuredContent"), "k")) == 1);
        /* The results moved into the frame. */
        assert_null(call->content);
        assert_null(call->structured);
        cJSON_Delete(result);
}

static void
test_cap(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        size_t chunk = 1024 * 1024, n = 0;
        char *big = malloc(chunk + 1);
        unsigned char *frame = NULL;
        size_t frame_len = 0;
        cJSON *result;
        int r;

        /* Quotes escape to two bytes each: the cap counts what the frame will carry. */
        assert_non_null(big);
        memset(big, '"', chunk);
        big[chunk] = '\0';
        while ((r = abm_call_text(call, big, chunk)) == 0)
                n++;
        assert_int_equal(r, -E2BIG);
        assert_int_equal(n, ABMI_RESULTS_MAX / (2 * chunk + 2 + ABMI_BLOCK_OVERHEAD));
        /* Something small still fits, structuredContent too, until the cap. */
        assert_int_equal(abm_call_text(call, "tail", 4), 0);
        assert_int_equal(abm_call_structured(call, "{\"a\":1}"), 0);
        /* The frame stays within AB_FRAME_MAX. */
        result = abmi_call_result(call, 0, NULL);
        assert_non_null(result);
        assert_int_equal(ab_frame_encode(result, &frame, &frame_len), 0);
        assert_true(frame_len <= AB_FRAME_HEADER + AB_FRAME_MAX);
        free(frame);
        cJSON_Delete(result);
        free(big);
}

static void
test_structured(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        cJSON *result;

        assert_int_equal(abm_call_structured(call, "[1]"), -EINVAL);         /* not an object */
        assert_int_equal(abm_call_structured(call, "{\"a\":1} x"), -EINVAL); /* trailing garbage */
        assert_int_equal(abm_call_structured(call, "{\"a\":"), -EINVAL);
        assert_int_equal(abm_call_structured(call, "{\"a\":\"\xff\"}"), -EINVAL); /* not UTF-8 */
        assert_int_equal(abm_call_structured(call, NULL), -EINVAL);
        assert_int_equal(abm_call_structured(call, " {\"a\":1} "), 0);
        assert_int_equal(abm_call_structured(call, "{\"b\":\"\\u00e9\"}"), 0); /* replaces the first */
        result = abmi_call_result(call, 0, NULL);
        assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(result, "structuredContent"), "a"));
        assert_string_equal(str(cJSON_GetObjectItem(result, "structuredContent"), "b"), "\xc3\xa9");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(result, "content")), 0);
        cJSON_Delete(result);
}

static void
test_errors(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        struct abm_error err = { { 0 } };
        char longer[2 * ABM_ERROR_MAX];
        cJSON *result, *content;

        assert_int_equal(abm_call_text(call, "partial", (size_t)-1), 0);
        assert_int_equal(abm_error_set(&err, -ENOENT, "no such file: %s", "/x"), -ENOENT);
        result = abmi_call_result(call, -ENOENT, &err);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(result, "isError")));
        assert_string_equal(str(result, "error"), "no such file: /x");
        /* Partial results of a failed call are dropped: the message is the content. */
        content = cJSON_GetObjectItem(result, "content");
        assert_int_equal(cJSON_GetArraySize(content), 1);
        assert_string_equal(str(cJSON_GetArrayItem(content, 0), "text"), "no such file: /x");
        assert_null(cJSON_GetObjectItem(result, "structuredContent"));
        cJSON_Delete(result);

        /* No message: one made from the code. Cancelled: "cancelled". */
        memset(&err, 0, sizeof(err));
        result = abmi_call_result(call, -EACCES, &err);
        assert_string_equal(str(result, "error"), "the tool failed: Permission denied");
        cJSON_Delete(result);
        result = abmi_call_result(call, -ECANCELED, &err);
        assert_string_equal(str(result, "error"), "cancelled");
        cJSON_Delete(result);

        /* A message the module left unterminated and not UTF-8 is repaired. */
        memset(err.message, '\xff', sizeof(err.message));
        result = abmi_call_result(call, -EIO, &err);
        assert_true(abmi_utf8_check(str(result, "error"), strlen(str(result, "error")), NULL));
        assert_true(strlen(str(result, "error")) < ABM_ERROR_MAX);
        cJSON_Delete(result);

        /* abm_error_set: a code that is not negative becomes -EIO; a long message is cut at
         * a character boundary. */
        assert_int_equal(abm_error_set(&err, 0, "x"), -EIO);
        assert_int_equal(abm_error_set(NULL, -EPERM, "x"), -EPERM);
        memset(longer, 0, sizeof(longer));
        for (size_t i = 0; i + 2 < sizeof(longer); i += 2)
                memcpy(longer + i, "\xc3\xa9", 2);
        abm_error_set(&err, -EINVAL, "%s", longer); /* 511 bytes: half a character at the end */
        assert_true(strlen(err.message) < ABM_ERROR_MAX);
        assert_true(abmi_utf8_check(err.message, strlen(err.message), NULL));
}

/* ---- progress, cancellation, logging ---- */

static void
test_progress(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        cJSON *msg;

        assert_int_equal(abm_call_progress(call, 1, 10, "one"), 0);
        assert_int_equal(abm_call_progress(call, 1, 10, NULL), -EINVAL); /* must increase */
        assert_int_equal(abm_call_progress(call, 0.5, 10, NULL), -EINVAL);
        assert_int_equal(abm_call_progress(call, NAN, 10, NULL), -EINVAL);
        assert_int_equal(abm_call_progress(call, 2, INFINITY, NULL), -EINVAL);
        assert_int_equal(abm_call_progress(call, 2.5, 0, "bad \xff"), 0);
        msg = host_read(f);
        assert_string_equal(str(msg, "t"), "progress");
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "id")) == 5);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "progress")) == 1);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "total")) == 10);
        assert_string_equal(str(msg, "message"), "one");
        cJSON_Delete(msg);
        msg = host_read(f);
        assert_null(cJSON_GetObjectItem(msg, "total")); /* unknown total */
        assert_string_equal(str(msg, "message"), "bad ?");
        cJSON_Delete(msg);
        assert_null(host_read(f));
}

static void
test_cancel(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");

        assert_false(abm_call_cancelled(call));
        host_send(f, "{\"t\":\"cancel\",\"id\":4}"); /* an earlier call's: ignored */
        assert_false(abm_call_cancelled(call));
        assert_false(f->w.broken);
        host_send(f, "{\"t\":\"cancel\",\"id\":5}");
        assert_true(abm_call_cancelled(call));
        assert_int_equal(abm_call_progress(call, 1, 0, NULL), -ECANCELED);
        assert_false(f->w.broken);
        assert_false(f->w.host_gone);
        abmi_call_free(call);

        /* Another frame during a call breaks the protocol; EOF means the host is gone. Both
         * end the call as cancelled. */
        f->call = NULL;
        call = start_call(f, "{}");
        host_send(f, "{\"t\":\"call\",\"id\":6,\"tool\":\"tool1\",\"token\":\"t\"}");
        assert_true(abm_call_cancelled(call));
        assert_true(f->w.broken);
        abmi_call_free(call);
        f->call = NULL;
        f->w.broken = false;
        call = start_call(f, "{}");
        close(f->host);
        f->host = -1;
        assert_true(abm_call_cancelled(call));
        assert_true(f->w.host_gone);
        assert_int_equal(abm_call_progress(call, 1, 0, NULL), -ECANCELED);
}

static void
test_log(void **state)
{
        struct fixture *f = *state;
        char longer[2 * ABMI_MESSAGE_MAX];
        cJSON *msg;

        abm_log(ABM_LOG_WARNING, "n=%d %s", 3, "ok");
        abm_log((enum abm_log_level)0, "too high");
        abm_log((enum abm_log_level)99, "bad \xc3");
        memset(longer, 'x', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        abm_log(ABM_LOG_INFO, "%s", longer);
        msg = host_read(f);
        assert_string_equal(str(msg, "t"), "log");
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "level")) == ABM_LOG_WARNING);
        assert_string_equal(str(msg, "message"), "n=3 ok");
        cJSON_Delete(msg);
        msg = host_read(f);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "level")) == ABM_LOG_ERROR);
        cJSON_Delete(msg);
        msg = host_read(f);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "level")) == ABM_LOG_DEBUG);
        assert_string_equal(str(msg, "message"), "bad "); /* the cut sequence is dropped */
        cJSON_Delete(msg);
        msg = host_read(f);
        assert_int_equal(strlen(str(msg, "message")), ABMI_MESSAGE_MAX - 1);
        cJSON_Delete(msg);
}

/* ---- secrets ---- */

static void
test_secret_read(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        const unsigned char *v;
        size_t len;
        cJSON *msg;

        assert_int_equal(abm_call_secret_read(call, "good", &v, &len), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(v, "pa\0ss", 5);
        assert_int_equal(v[5], '\0');
        assert_null(abm_call_denial(call));
        /* The host was told before the module got the value. */
        msg = host_read(f);
        assert_string_equal(str(msg, "t"), "redact");
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(msg, "id")) == 5);
        assert_string_equal(str(msg, "name"), "good");
        assert_string_equal(str(msg, "value"), "cGEAc3M=");
        cJSON_Delete(msg);
        assert_int_equal(call->n_secrets, 1);

        assert_int_equal(abm_call_secret_read(call, "denied", &v, &len), -EPERM);
        assert_string_equal(abm_call_denial(call), "secret-not-scoped");
        assert_int_equal(abm_call_secret_read(call, "gone", &v, &len), -ENOENT);
        assert_string_equal(abm_call_denial(call), "secret-unavailable");
        assert_null(host_read(f));
        /* A success clears the denial; bad names never reach the broker. */
        assert_int_equal(abm_call_secret_read(call, "good", &v, &len), 0);
        assert_null(abm_call_denial(call));
        cJSON_Delete(host_read(f));
        assert_int_equal(abm_call_secret_read(call, "", &v, &len), -EINVAL);
        assert_int_equal(abm_call_secret_read(call, NULL, &v, &len), -EINVAL);
}

static void
test_secret_read_host_gone(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        const unsigned char *v = NULL;
        size_t len = 0;

        /* No redact frame can be sent: the value is not handed out. */
        close(f->host);
        f->host = -1;
        assert_int_equal(abm_call_secret_read(call, "good", &v, &len), -EIO);
        assert_null(v);
        assert_int_equal(call->n_secrets, 0);
}

static void
test_sign(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        unsigned char sig[64];
        size_t len = 0;

        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "msg", 3, sig, &len), 0);
        assert_int_equal(len, 32);
        assert_int_equal(sig[0], 0xab);
        assert_int_equal(abm_call_sign(call, "good", "ed25519", "msg", 3, sig, &len), 0);
        assert_int_equal(len, 64);
        assert_int_equal(abm_call_sign(call, "good", "ed25519", NULL, 0, sig, &len), 0);
        assert_int_equal(abm_call_sign(call, "short", "hmac-sha256", "msg", 3, sig, &len), -EIO);
        assert_int_equal(abm_call_sign(call, "denied", "hmac-sha256", "msg", 3, sig, &len), -EPERM);
        assert_string_equal(abm_call_denial(call), "secret-not-scoped");
        assert_int_equal(abm_call_sign(call, "good", "rsa", "msg", 3, sig, &len), -EINVAL);
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", NULL, 3, sig, &len), -EINVAL);
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "m", 16 * 1024 + 1, sig, &len), -EINVAL);
        /* Signing sends no redact frame. */
        assert_null(host_read(f));
}

static void
test_mint_jwt(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        const char *jwt = NULL;
        int64_t exp = 0;

        assert_int_equal(abm_call_mint_jwt_exp(call, "good", "aud", "read", 0, &jwt, &exp), 0);
        assert_string_equal(jwt, "h.p.s");
        assert_int_equal(exp, 1234); /* no ttl_s sent */
        assert_int_equal(abm_call_mint_jwt_exp(call, "good", "aud", NULL, 60, &jwt, &exp), 0);
        assert_int_equal(exp, 999); /* ttl_s sent */
        assert_int_equal(abm_call_mint_jwt(call, "good", "aud", NULL, 0, &jwt), 0);
        assert_int_equal(call->n_jwts, 3);
        assert_int_equal(abm_call_mint_jwt(call, "bad", "aud", NULL, 9999, &jwt), -EINVAL);
        assert_string_equal(abm_call_denial(call), "ttl-too-long");
        assert_int_equal(abm_call_mint_jwt(call, "good", "", NULL, 0, &jwt), -EINVAL);
        assert_null(host_read(f));
}

static void
test_broker_reconnect(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        unsigned char sig[64];
        size_t len;

        /* The broker drops the connection once (as after its idle timeout): the request is
         * sent again on a new one. */
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "m", 1, sig, &len), 0);
        assert_int_equal(abm_call_sign(call, "flaky", "hmac-sha256", "m", 1, sig, &len), 0);
        assert_int_equal(len, 32);
        /* No broker at all: -EIO. */
        free(f->w.broker_path);
        f->w.broker_path = strdup("/nonexistent/broker.sock");
        abmi_broker_close(&f->w);
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "m", 1, sig, &len), -EIO);
}

/* A confined worker (confine.c) cannot open a broker connection: with none from its start
 * (the broker was unreachable) or after the broker dropped it, a secret operation is -EIO,
 * the worker is marked to exit after the call, and the call's isError message says why. */
static void
test_broker_confined(void **state)
{
        struct fixture *f = *state;
        struct abm_call *call = start_call(f, "{}");
        struct abm_error err = { { 0 } };
        unsigned char sig[64];
        size_t len;
        cJSON *result;
        const char *text;

        /* Connected before confinement (as confine.c does), then the broker drops it. */
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "m", 1, sig, &len), 0);
        f->w.confined = true;
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "m", 1, sig, &len), 0);
        assert_false(f->w.broker_lost);
        assert_int_equal(abm_call_sign(call, "flaky", "hmac-sha256", "m", 1, sig, &len), -EIO);
        assert_true(f->w.broker_lost);
        assert_null(f->w.broker);

        /* Never connected (unreachable at start): no connection is attempted. */
        f->w.broker_lost = false;
        assert_int_equal(abm_call_sign(call, "good", "hmac-sha256", "m", 1, sig, &len), -EIO);
        assert_true(f->w.broker_lost);
        assert_null(f->w.broker);

        abm_error_set(&err, -EIO, "signing failed");
        result = abmi_call_result(call, -EIO, &err);
        assert_non_null(result);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(result, "isError")));
        text = str(result, "error");
        assert_non_null(text);
        assert_non_null(strstr(text, "signing failed (the worker has no broker connection"));
        cJSON_Delete(result);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json),
                cmocka_unit_test_setup_teardown(test_call_frames, setup, teardown),
                cmocka_unit_test_setup_teardown(test_text, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_structured, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
                cmocka_unit_test_setup_teardown(test_log, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_read_host_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sign, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mint_jwt, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broker_reconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broker_confined, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
