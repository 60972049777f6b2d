/* SPDX-License-Identifier: MIT */
/* Unit tests for host/brokerc/ against a scripted broker: a SOCK_SEQPACKET server thread that
 * decodes each request, checks what the protocol requires of it (the SHA-256 of the arguments
 * text, its length, the batch size of host-config), records it, and answers as
 * docs/protocol.md says, or closes the connection on purpose to show the reconnect. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "common/encode.h"
#include "common/wire.h"
#include "host/brokerc/brokerc.h"

#define GOOD_TOKEN "abt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

/* ---------- the scripted broker ---------- */

static struct {
        pthread_mutex_t lock;
        pthread_t thread;
        int listen_fd;
        int stop_pipe[2];
        char path[108];
        /* script */
        int close_after_reply; /* close the connection after the next N replies... */
        int drop_requests;     /* ...or close it on the next N requests without replying */
        int ignore_requests;   /* read the next N requests and never answer them */
        int bad_token;         /* answer call-begin with a malformed token */
        /* record */
        int connections;
        int requests;
        int host_config_requests;
        int max_host_config_batch;
        char *last[8];         /* last request text by op index */
        char check_error[256]; /* a protocol violation the server saw */
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *const ops[] = { "run-open", "run-close", "host-config", "call-begin", "call-end" };

static int
op_index(const char *op)
{
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
                if (strcmp(op, ops[i]) == 0)
                        return (int)i;
        return -1;
}

static void
violation(const char *what)
{
        if (!srv.check_error[0])
                snprintf(srv.check_error, sizeof(srv.check_error), "%s", what);
}

static cJSON *
denied(uint64_t id, const char *reason, const char *message)
{
        return ab_wire_reply_error(id, AB_ERR_DENIED, reason, message);
}

/* Answer one request (the server's lock is held). */
static cJSON *
answer(const cJSON *req, const char *op, uint64_t id)
{
        cJSON *reply = ab_wire_reply_ok(id);

        if (strcmp(op, "run-open") == 0) {
                const cJSON *label = cJSON_GetObjectItemCaseSensitive(req, "label");

                if (cJSON_IsString(label) && strcmp(label->valuestring, "deny") == 0) {
                        cJSON_Delete(reply);
                        return denied(id, "too-many-runs", "64 runs are open");
                }
                cJSON_AddStringToObject(reply, "run", "0123456789abcdef0123456789abcdef");
        } else if (strcmp(op, "run-close") == 0) {
                cJSON_AddNumberToObject(reply, "calls", 3);
        } else if (strcmp(op, "host-config") == 0) {
                const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "tools"), *n;
                cJSON *tools = cJSON_AddObjectToObject(reply, "tools");
                cJSON *modules = cJSON_AddObjectToObject(reply, "modules");
                int count = cJSON_GetArraySize(names);

                srv.host_config_requests++;
                if (count > srv.max_host_config_batch)
                        srv.max_host_config_batch = count;
                if (!cJSON_IsArray(names) || count > 256) {
                        cJSON_Delete(reply);
                        return ab_wire_reply_error(id, AB_ERR_BAD_REQUEST, NULL,
                                                   "missing or invalid field \"tools\"");
                }
                cJSON_ArrayForEach(n, names)
                {
                        cJSON *o;

                        if (strncmp(n->valuestring, "allowed", 7) != 0)
                                continue;
                        o = cJSON_AddObjectToObject(tools, n->valuestring);
                        cJSON_AddNumberToObject(o, "max_result_bytes", 1000);
                        cJSON_AddNumberToObject(o, "timeout_ms", 2000);
                }
                cJSON_AddItemToObject(modules, "fs", cJSON_Parse("{\"roots\":[\"/srv\"]}"));
        } else if (strcmp(op, "call-begin") == 0) {
                const cJSON *tool = cJSON_GetObjectItemCaseSensitive(req, "tool");
                const cJSON *sha = cJSON_GetObjectItemCaseSensitive(req, "args_sha256");
                const cJSON *len = cJSON_GetObjectItemCaseSensitive(req, "args_len");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(req, "args");

                if (!cJSON_IsString(sha) || strlen(sha->valuestring) != 64 || !cJSON_IsNumber(len))
                        violation("call-begin without args_sha256/args_len");
                if (cJSON_IsString(args)) {
                        unsigned char d[32];
                        unsigned int dl = 0;
                        char *hex = NULL;

                        EVP_Digest(args->valuestring, strlen(args->valuestring), d, &dl, EVP_sha256(), NULL);
                        ab_hex_encode(d, dl, &hex);
                        if (strcmp(hex, sha->valuestring) != 0)
                                violation("args_sha256 is not the SHA-256 of args");
                        if ((double)strlen(args->valuestring) != len->valuedouble)
                                violation("args_len is not the length of args");
                        free(hex);
                }
                if (strcmp(tool->valuestring, "denied.tool") == 0) {
                        cJSON_Delete(reply);
                        return denied(id, "tool-not-allowed", "no rule allows denied.tool");
                }
                if (strcmp(tool->valuestring, "weird.tool") == 0) {
                        cJSON_Delete(reply);
                        return denied(id, "a-reason-nobody-knows", "odd");
                }
                if (strcmp(tool->valuestring, "internal.tool") == 0) {
                        cJSON_Delete(reply);
                        return ab_wire_reply_error(id, AB_ERR_INTERNAL, NULL, "out of memory");
                }
                cJSON_AddStringToObject(reply, "token", srv.bad_token ? "abt_short" : GOOD_TOKEN);
                cJSON_AddStringToObject(reply, "token_id", "t1");
                cJSON_AddNumberToObject(reply, "call", 42);
                cJSON_AddNumberToObject(reply, "expires_in_ms", 30000);
        } else if (strcmp(op, "call-end") == 0) {
                const cJSON *tok = cJSON_GetObjectItemCaseSensitive(req, "token");

                if (!cJSON_IsString(tok) || strcmp(tok->valuestring, GOOD_TOKEN) != 0)
                        violation("call-end without the call's token");
        } else {
                cJSON_Delete(reply);
                return ab_wire_reply_error(id, AB_ERR_UNKNOWN_OP, NULL, "unknown operation");
        }
        return reply;
}

/* Serve one received datagram on conn. Returns false when the connection is to be closed. */
static bool
serve(int conn, const char *buf, size_t n)
{
        cJSON *req = NULL, *reply;
        const char *op = NULL, *err = NULL;
        char *out = NULL;
        size_t out_len;
        uint64_t id = 0;
        bool keep = true;
        int k;

        if (ab_wire_decode(buf, n, &req, &op, &err) < 0) {
                violation("a request that does not decode");
                return false;
        }
        pthread_mutex_lock(&srv.lock);
        srv.requests++;
        k = op_index(op);
        if (k >= 0) {
                free(srv.last[k]);
                srv.last[k] = strndup(buf, n);
        }
        if (srv.drop_requests > 0) {
                srv.drop_requests--;
                pthread_mutex_unlock(&srv.lock);
                cJSON_Delete(req);
                return false;
        }
        if (srv.ignore_requests > 0) {
                srv.ignore_requests--;
                pthread_mutex_unlock(&srv.lock);
                cJSON_Delete(req);
                return true;
        }
        id = (uint64_t)cJSON_GetObjectItemCaseSensitive(req, "id")->valuedouble;
        reply = answer(req, op, id);
        if (srv.close_after_reply > 0) {
                srv.close_after_reply--;
                keep = false;
        }
        pthread_mutex_unlock(&srv.lock);
        ab_wire_encode(reply, &out, &out_len);
        (void)send(conn, out, out_len, MSG_NOSIGNAL);
        cJSON_free(out);
        cJSON_Delete(reply);
        cJSON_Delete(req);
        return keep;
}

static void *
server_main(void *arg)
{
        static char buf[AB_MSG_MAX + 1];
        int conn = -1;

        for (;;) {
                struct pollfd p[3] = {
                        { .fd = srv.stop_pipe[0], .events = POLLIN },
                        { .fd = srv.listen_fd, .events = POLLIN },
                        { .fd = conn, .events = POLLIN },
                };

                if (poll(p, conn >= 0 ? 3 : 2, -1) < 0)
                        continue;
                if (p[0].revents)
                        break;
                if (p[1].revents & POLLIN) {
                        int c = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC);

                        if (c >= 0) {
                                if (conn >= 0)
                                        close(conn);
                                conn = c;
                                pthread_mutex_lock(&srv.lock);
                                srv.connections++;
                                pthread_mutex_unlock(&srv.lock);
                        }
                        continue;
                }
                if (conn >= 0 && p[2].revents) {
                        ssize_t n = recv(conn, buf, sizeof(buf), 0);

                        if (n <= 0 || !serve(conn, buf, (size_t)n)) {
                                close(conn);
                                conn = -1;
                        }
                }
        }
        if (conn >= 0)
                close(conn);
        return NULL;
}

static int
server_start(void **state)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(srv.path, sizeof(srv.path), "/tmp/test_brokerc.%d.sock", (int)getpid());
        unlink(srv.path);
        strcpy(sa.sun_path, srv.path);
        srv.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (srv.listen_fd < 0 || bind(srv.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(srv.listen_fd, 16) < 0 || pipe(srv.stop_pipe) < 0)
                return -1;
        return pthread_create(&srv.thread, NULL, server_main, NULL) == 0 ? 0 : -1;
}

static int
server_stop(void **state)
{
        if (write(srv.stop_pipe[1], "x", 1) != 1)
                return -1;
        pthread_join(srv.thread, NULL);
        close(srv.listen_fd);
        close(srv.stop_pipe[0]);
        close(srv.stop_pipe[1]);
        unlink(srv.path);
        for (size_t i = 0; i < sizeof(srv.last) / sizeof(srv.last[0]); i++)
                free(srv.last[i]);
        return 0;
}

/* The last request of op as parsed JSON (caller frees). */
static cJSON *
last_request(const char *op)
{
        cJSON *j;

        pthread_mutex_lock(&srv.lock);
        j = srv.last[op_index(op)] ? cJSON_Parse(srv.last[op_index(op)]) : NULL;
        pthread_mutex_unlock(&srv.lock);
        assert_non_null(j);
        return j;
}

static int
server_count(const int *field)
{
        int v;

        pthread_mutex_lock(&srv.lock);
        v = *field;
        pthread_mutex_unlock(&srv.lock);
        return v;
}

/* Change one of the server's script fields. */
static void
server_set(int *field, int value)
{
        pthread_mutex_lock(&srv.lock);
        *field = value;
        pthread_mutex_unlock(&srv.lock);
}

static void
assert_no_violation(void)
{
        pthread_mutex_lock(&srv.lock);
        if (srv.check_error[0])
                fail_msg("the broker saw: %s", srv.check_error);
        pthread_mutex_unlock(&srv.lock);
}

/* ---------- tests ---------- */

static void
test_connect_fails(void **state)
{
        struct hb_broker *b = NULL;

        assert_int_equal(hb_connect("/tmp/test_brokerc.nonexistent.sock", &b), -ENOENT);
        assert_null(b);
        hb_free(NULL);
}

static void
test_runs(void **state)
{
        struct hb_broker *b;
        const char *reason = NULL;
        char *run = NULL;
        cJSON *req;

        assert_int_equal(hb_connect(srv.path, &b), 0);
        assert_int_equal(hb_run_open(b, "my label", &run, &reason), 0);
        assert_string_equal(run, "0123456789abcdef0123456789abcdef");
        assert_null(reason);
        req = last_request("run-open");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "label")->valuestring, "my label");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(req, "v")->valueint, 1);
        cJSON_Delete(req);

        assert_int_equal(hb_run_close(b, run), 0);
        req = last_request("run-close");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "run")->valuestring, run);
        cJSON_Delete(req);
        free(run);

        run = NULL;
        assert_int_equal(hb_run_open(b, "deny", &run, &reason), -EPERM);
        assert_null(run);
        assert_string_equal(reason, "too-many-runs");
        hb_free(b);
        assert_no_violation();
}

static void
test_host_config(void **state)
{
        enum {
                N = 450
        };
        struct hb_broker *b;
        const char *names[N];
        char buf[N][32];
        cJSON *cfg = NULL;
        const cJSON *tools, *t;
        int before;

        for (int i = 0; i < N; i++) {
                snprintf(buf[i], sizeof(buf[i]), "%s.t%d", i % 3 == 0 ? "allowed" : "other", i);
                names[i] = buf[i];
        }
        assert_int_equal(hb_connect(srv.path, &b), 0);
        before = server_count(&srv.host_config_requests);
        assert_int_equal(hb_host_config(b, names, N, &cfg), 0);
        /* Batched below the broker's 256 members per array. */
        assert_int_equal(server_count(&srv.host_config_requests) - before, 3);
        assert_true(server_count(&srv.max_host_config_batch) <= 256);
        tools = cJSON_GetObjectItemCaseSensitive(cfg, "tools");
        assert_int_equal(cJSON_GetArraySize(tools), N / 3);
        t = cJSON_GetObjectItemCaseSensitive(tools, "allowed.t447");
        assert_non_null(t);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(t, "max_result_bytes")->valueint, 1000);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(t, "timeout_ms")->valueint, 2000);
        assert_null(cJSON_GetObjectItemCaseSensitive(tools, "other.t1"));
        assert_string_equal(
                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
                                           cJSON_GetObjectItemCaseSensitive(
                                                   cJSON_GetObjectItemCaseSensitive(cfg, "modules"), "fs"),
                                           "roots"),
                                   0)
                        ->valuestring,
                "/srv");
        cJSON_Delete(cfg);

        /* No tools: one request with an empty list, for the modules' configuration. */
        cfg = NULL;
        before = server_count(&srv.host_config_requests);
        assert_int_equal(hb_host_config(b, NULL, 0, &cfg), 0);
        assert_int_equal(server_count(&srv.host_config_requests) - before, 1);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cfg, "tools")), 0);
        assert_non_null(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "modules"), "fs"));
        cJSON_Delete(cfg);
        hb_free(b);
        assert_no_violation();
}

/* call-begin with args too large for one message: granted, sent with digest and length only. */
static void
expect_begin_without_args(struct hb_broker *b, const char *args)
{
        struct hb_grant g;
        char *reason = NULL, *message = NULL;
        cJSON *req;

        assert_int_equal(hb_call_begin(b, "run1", "fs.read_file", args, 4242, 0, &g, &reason, &message), 0);
        req = last_request("call-begin");
        assert_null(cJSON_GetObjectItemCaseSensitive(req, "args"));
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(req, "args_len")->valueint, strlen(args));
        cJSON_Delete(req);
        hb_grant_clear(&g);
}

static void
test_call_begin_end(void **state)
{
        static const char args[] = "{\"path\":\"/etc/hostname\",\"length\":10}";
        struct hb_broker *b;
        struct hb_grant g;
        char *reason = NULL, *message = NULL;
        cJSON *req;
        char *big;

        assert_int_equal(hb_connect(srv.path, &b), 0);
        assert_int_equal(hb_call_begin(b, "run1", "fs.read_file", args, 4242, 0, &g, &reason, &message), 0);
        assert_string_equal(g.token, GOOD_TOKEN);
        assert_int_equal(g.call, 42);
        assert_null(reason);
        assert_null(message);
        req = last_request("call-begin");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "run")->valuestring, "run1");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "tool")->valuestring, "fs.read_file");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "args")->valuestring, args);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(req, "args_len")->valueint, strlen(args));
        /* echo -n '{"path":"/etc/hostname","length":10}' | sha256sum */
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "args_sha256")->valuestring,
                            "b11deeedb5269f0db70c9216a2eea80be0d3a63de377907a104024c938cef279");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(req, "worker_pid")->valueint, 4242);
        cJSON_Delete(req);

        assert_int_equal(hb_call_end(b, &g, "ok", 123, 7), 0);
        req = last_request("call-end");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "token")->valuestring, GOOD_TOKEN);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(req, "status")->valuestring, "ok");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(req, "result_bytes")->valueint, 123);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(req, "duration_ms")->valueint, 7);
        cJSON_Delete(req);
        hb_grant_clear(&g);
        for (size_t i = 0; i < sizeof(g); i++)
                assert_int_equal(((unsigned char *)&g)[i], 0);
        assert_int_equal(hb_call_end(b, &g, "ok", 0, 0), -EINVAL); /* a cleared grant has no token */

        /* Denials: the reason is one of the protocol's (a new string), with the broker's message. */
        assert_int_equal(hb_call_begin(b, "run1", "denied.tool", "{}", 4242, 0, &g, &reason, &message),
                         -EPERM);
        assert_string_equal(reason, "tool-not-allowed");
        assert_string_equal(message, "no rule allows denied.tool");
        free(reason);
        free(message);
        reason = message = NULL;
        assert_int_equal(hb_call_begin(b, "run1", "weird.tool", "{}", 4242, 0, &g, &reason, &message),
                         -EPERM);
        assert_string_equal(reason, "denied");
        free(reason);
        free(message);
        reason = message = NULL;
        assert_int_equal(hb_call_begin(b, "run1", "internal.tool", "{}", 4242, 0, &g, &reason, &message),
                         -EIO);
        assert_null(reason);

        /* Arguments too large for a message go as digest and length alone. */
        big = malloc(70001);
        memset(big, 'a', 70000);
        big[0] = '"';
        big[69999] = '"';
        big[70000] = '\0';
        expect_begin_without_args(b, big);
        /* Just under the limit as text, but escaping makes it too large: the same. */
        memset(big, '\\', 60000);
        big[60000] = '\0';
        expect_begin_without_args(b, big);
        free(big);
        hb_grant_clear(&g);

        /* A malformed token in the reply is refused. */
        server_set(&srv.bad_token, 1);
        memset(&g, 0x55, sizeof(g));
        assert_int_equal(hb_call_begin(b, "run1", "fs.read_file", "{}", 4242, 0, &g, &reason, &message),
                         -EBADMSG);
        assert_int_equal(((unsigned char *)&g)[0], 0x55); /* untouched on failure */
        server_set(&srv.bad_token, 0);
        hb_free(b);
        assert_no_violation();
}

static void
test_reconnect(void **state)
{
        struct hb_broker *b;
        struct hb_grant g;
        char *reason = NULL, *message = NULL;
        int conns;

        assert_int_equal(hb_connect(srv.path, &b), 0);
        usleep(20000);
        conns = server_count(&srv.connections);
        /* The broker closes the connection after this reply (as its idle timeout would). */
        server_set(&srv.close_after_reply, 1);
        assert_int_equal(hb_call_begin(b, "run1", "fs.stat", "{}", 1, 0, &g, &reason, &message), 0);
        usleep(20000);
        /* The next request finds the connection closed, reconnects once and succeeds. */
        assert_int_equal(hb_call_end(b, &g, "ok", 1, 1), 0);
        assert_int_equal(server_count(&srv.connections), conns + 1);
        hb_grant_clear(&g);

        /* Closed again on the new connection before an answer: the request fails, no third try. */
        server_set(&srv.drop_requests, 2);
        assert_int_equal(hb_call_begin(b, "run1", "fs.stat", "{}", 1, 0, &g, &reason, &message),
                         -ECONNRESET);
        assert_int_equal(server_count(&srv.connections), conns + 2);
        /* And the client connects afresh for the request after that. */
        assert_int_equal(hb_call_begin(b, "run1", "fs.stat", "{}", 1, 0, &g, &reason, &message), 0);
        assert_string_equal(g.token, GOOD_TOKEN);
        hb_grant_clear(&g);
        hb_free(b);
        assert_no_violation();
}

/* ---------- asynchronous requests ---------- */

struct outcome {
        int calls; /* callbacks run */
        int r[64];
        uint64_t call[64];
        char reason[64][64];
};

static void
on_begin(void *userdata, int r, const struct hb_grant *g, const char *reason, const char *message)
{
        struct outcome *o = userdata;

        assert_true(o->calls < 64);
        o->r[o->calls] = r;
        o->call[o->calls] = g ? g->call : 0;
        if (r == 0)
                assert_string_equal(g->token, GOOD_TOKEN);
        snprintf(o->reason[o->calls], sizeof(o->reason[0]), "%s", reason ? reason : "");
        o->calls++;
}

static void
on_end(void *userdata, int r)
{
        struct outcome *o = userdata;

        o->r[o->calls++] = r;
}

/* Run the loop until o has n callbacks (or 5 s pass). */
static void
run_until(sd_event *e, const struct outcome *o, int n)
{
        for (int i = 0; i < 500 && o->calls < n; i++)
                assert_true(sd_event_run(e, 10000) >= 0);
        assert_int_equal(o->calls, n);
}

static void
test_async_pipelined(void **state)
{
        struct outcome begins = {}, ends = {};
        struct hb_request *q;
        struct hb_broker *b;
        struct hb_grant g = { .token = GOOD_TOKEN, .call = 42 };
        sd_event *e = NULL;
        int reqs, conns;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(hb_connect(srv.path, &b), 0);
        assert_int_equal(hb_attach_event(b, e), 0);
        usleep(20000);
        reqs = server_count(&srv.requests);
        conns = server_count(&srv.connections);

        /* 32 call-begins and call-ends go out at once, none waits for another's reply. */
        for (int i = 0; i < 32; i++) {
                assert_int_equal(hb_call_begin_async(b, "run1", i == 7 ? "denied.tool" : "fs.stat", "{}",
                                                     10 + i, 0, on_begin, &begins, &q),
                                 0);
                assert_non_null(q);
                assert_int_equal(hb_call_end_async(b, &g, "ok", (uint64_t)i, 1, on_end, &ends), 0);
        }
        assert_int_equal(hb_pending(b), 64);
        assert_int_equal(begins.calls, 0); /* nothing was answered inside the calls */
        run_until(e, &begins, 32);
        run_until(e, &ends, 32);
        assert_int_equal(hb_pending(b), 0);
        for (int i = 0; i < 32; i++) {
                assert_int_equal(begins.r[i], i == 7 ? -EPERM : 0);
                assert_int_equal(begins.call[i], i == 7 ? 0 : 42);
                assert_string_equal(begins.reason[i], i == 7 ? "tool-not-allowed" : "");
                assert_int_equal(ends.r[i], 0);
        }
        assert_int_equal(server_count(&srv.requests), reqs + 64);
        assert_int_equal(server_count(&srv.connections), conns + 1); /* one connection for all */

        /* A cancelled call-begin never reaches its callback; the broker grants it, so the
         * client ends the call there itself ("cancelled"). */
        assert_int_equal(hb_call_begin_async(b, "run1", "fs.stat", "{}", 1, 0, on_begin, &begins, &q), 0);
        hb_request_cancel(q);
        assert_int_equal(hb_flush(b, 2000), 0);
        assert_int_equal(begins.calls, 32);
        {
                cJSON *last = last_request("call-end");
                assert_string_equal(cJSON_GetObjectItemCaseSensitive(last, "status")->valuestring,
                                    "cancelled");
                cJSON_Delete(last);
        }
        assert_int_equal(server_count(&srv.requests), reqs + 66);
        hb_free(b);
        sd_event_unref(e);
        assert_no_violation();
}

static void
test_async_timeout_and_reconnect(void **state)
{
        struct outcome o = {};
        struct hb_broker *b;
        sd_event *e = NULL;
        int conns;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(hb_connect(srv.path, &b), 0);
        assert_int_equal(hb_attach_event(b, e), 0);
        hb_set_timeout_ms(b, 200);

        /* Unanswered: the request fails after its timeout, the loop never blocked. */
        server_set(&srv.ignore_requests, 1);
        assert_int_equal(hb_call_begin_async(b, "run1", "fs.stat", "{}", 1, 0, on_begin, &o, NULL), 0);
        assert_int_equal(sd_event_run(e, 50000) >= 0, 1);
        assert_int_equal(o.calls, 0);
        run_until(e, &o, 1);
        assert_int_equal(o.r[0], -ETIMEDOUT);

        /* The connection closed under two requests in flight: both fail, no retry... */
        usleep(20000);
        conns = server_count(&srv.connections);
        server_set(&srv.drop_requests, 1);
        /* (The server waits for its lock before it drops: both are sent by then.) */
        pthread_mutex_lock(&srv.lock);
        assert_int_equal(hb_call_begin_async(b, "run1", "fs.stat", "{}", 1, 0, on_begin, &o, NULL), 0);
        assert_int_equal(hb_call_begin_async(b, "run1", "fs.stat", "{}", 1, 0, on_begin, &o, NULL), 0);
        pthread_mutex_unlock(&srv.lock);
        run_until(e, &o, 3);
        assert_int_equal(o.r[1], -ECONNRESET);
        assert_int_equal(o.r[2], -ECONNRESET);
        /* ...and the next request gets a new connection. */
        assert_int_equal(hb_call_begin_async(b, "run1", "fs.stat", "{}", 1, 0, on_begin, &o, NULL), 0);
        run_until(e, &o, 4);
        assert_int_equal(o.r[3], 0);
        assert_int_equal(server_count(&srv.connections), conns + 1);
        hb_free(b);
        sd_event_unref(e);
        assert_no_violation();
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_connect_fails),
                cmocka_unit_test(test_runs),
                cmocka_unit_test(test_host_config),
                cmocka_unit_test(test_call_begin_end),
                cmocka_unit_test(test_reconnect),
                cmocka_unit_test(test_async_pipelined),
                cmocka_unit_test(test_async_timeout_and_reconnect),
        };

        return cmocka_run_group_tests(tests, server_start, server_stop);
}
