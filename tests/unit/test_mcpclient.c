/* SPDX-License-Identifier: MIT */
/* Unit tests for host/gateway/mcpclient.c, the host's MCP client session with a server process, with
 * the test itself as the server on a pair of pipes: requests matched to responses, forgotten
 * requests, notifications, the server's own requests (ping answered, anything else -32601),
 * and the ways a server kills its session: a line that is not JSON-RPC, a line longer than
 * MC_LINE_MAX, end of output. Driven by mc_wait() (no event loop runs). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "host/mcp/calls.h"
#include "host/gateway/mcpclient.h"

struct fixture {
        sd_event *event;
        struct mc_client *c;
        int to_client;     /* we write the server's output here */
        FILE *from_client; /* what the client sent */
        char notified[64];
        char closed[256];
        int responses;
        int last_r;
        cJSON *last_result;
        bool last_error;
};

static void
on_notification(void *userdata, const char *method, const cJSON *params)
{
        struct fixture *f = userdata;

        snprintf(f->notified, sizeof f->notified, "%s", method);
}

static void
on_closed(void *userdata, const char *why)
{
        struct fixture *f = userdata;

        snprintf(f->closed, sizeof f->closed, "%s", why);
}

static const struct mc_client_ops ops = { .notification = on_notification, .closed = on_closed };

static void
on_response(void *userdata, int r, cJSON *result, const cJSON *error)
{
        struct fixture *f = userdata;

        f->responses++;
        f->last_r = r;
        cJSON_Delete(f->last_result);
        f->last_result = result;
        f->last_error = error != NULL;
}

static int
setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        int in[2], out[2];

        assert_non_null(f);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);  /* server -> client */
        assert_int_equal(pipe2(out, O_CLOEXEC), 0); /* client -> server */
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(mc_client_new(f->event, in[0], out[1], "test", &ops, f, &f->c), 0);
        f->to_client = in[1];
        f->from_client = fdopen(out[0], "r");
        assert_non_null(f->from_client);
        *state = f;
        return 0;
}

static int
teardown(void **state)
{
        struct fixture *f = *state;

        mc_client_free(f->c);
        if (f->to_client >= 0)
                close(f->to_client);
        fclose(f->from_client);
        cJSON_Delete(f->last_result);
        sd_event_unref(f->event);
        free(f);
        return 0;
}

static void
server_says(struct fixture *f, const char *line)
{
        size_t n = strlen(line);

        assert_int_equal(write(f->to_client, line, n), (ssize_t)n);
}

/* The next message the client sent, parsed. */
static cJSON *
client_said(struct fixture *f)
{
        char buf[4096];

        assert_non_null(fgets(buf, sizeof buf, f->from_client));
        return cJSON_Parse(buf);
}

static bool
got_response(void *userdata)
{
        return ((struct fixture *)userdata)->responses > 0;
}

static bool
is_closed(void *userdata)
{
        return ((struct fixture *)userdata)->closed[0] != '\0';
}

static bool
never(void *userdata)
{
        return false;
}

static uint64_t
soon(unsigned ms)
{
        return ab_now_us() + ms * 1000ull;
}

static void
test_request_response(void **state)
{
        struct fixture *f = *state;
        cJSON *req, *p = cJSON_CreateObject();
        uint64_t id = 0;
        char line[256];

        cJSON_AddStringToObject(p, "cursor", "c1");
        assert_int_equal(mc_request(f->c, "tools/list", p, on_response, f, &id), 0);
        req = client_said(f);
        assert_string_equal(cJSON_GetObjectItem(req, "jsonrpc")->valuestring, "2.0");
        assert_string_equal(cJSON_GetObjectItem(req, "method")->valuestring, "tools/list");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "params"), "cursor")->valuestring,
                            "c1");
        assert_int_equal((uint64_t)cJSON_GetObjectItem(req, "id")->valuedouble, id);
        cJSON_Delete(req);
        /* A response to an id never sent is dropped; ours is delivered. */
        snprintf(line, sizeof line,
                 "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{}}\n"
                 "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{\"tools\":[]}}\n",
                 (unsigned long long)id + 100, (unsigned long long)id);
        server_says(f, line);
        assert_int_equal(mc_wait(f->c, soon(5000), got_response, f), 0);
        assert_int_equal(f->responses, 1);
        assert_int_equal(f->last_r, 0);
        assert_true(cJSON_IsArray(cJSON_GetObjectItem(f->last_result, "tools")));
        assert_true(mc_alive(f->c));

        /* An error response; then a forgotten request's response is dropped. */
        assert_int_equal(mc_request(f->c, "tools/call", NULL, on_response, f, &id), 0);
        cJSON_Delete(client_said(f));
        snprintf(line, sizeof line,
                 "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"error\":{\"code\":-32602,\"message\":\"no\"}}\n",
                 (unsigned long long)id);
        server_says(f, line);
        f->responses = 0;
        assert_int_equal(mc_wait(f->c, soon(5000), got_response, f), 0);
        assert_true(f->last_error);
        assert_int_equal(mc_request(f->c, "tools/call", NULL, on_response, f, &id), 0);
        cJSON_Delete(client_said(f));
        mc_forget(f->c, id);
        snprintf(line, sizeof line, "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{}}\n",
                 (unsigned long long)id);
        server_says(f, line);
        f->responses = 0;
        assert_int_equal(mc_wait(f->c, soon(300), never, f), -ETIMEDOUT);
        assert_int_equal(f->responses, 0);
        assert_true(mc_alive(f->c));
}

static void
test_server_requests_and_notifications(void **state)
{
        struct fixture *f = *state;
        cJSON *a, *b;

        server_says(f,
                    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n"
                    "\n"
                    "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}\n"
                    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\",\"params\":{}}\n");
        assert_int_equal(mc_wait(f->c, soon(300), never, f), -ETIMEDOUT);
        assert_string_equal(f->notified, "notifications/tools/list_changed");
        a = client_said(f);
        b = client_said(f);
        assert_string_equal(cJSON_GetObjectItem(a, "id")->valuestring, "p");
        assert_true(cJSON_IsObject(cJSON_GetObjectItem(a, "result")));
        assert_int_equal(cJSON_GetObjectItem(b, "id")->valueint, 7);
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "error"), "code")->valueint, -32601);
        cJSON_Delete(a);
        cJSON_Delete(b);
        assert_true(mc_alive(f->c));
}

static void
test_garbage_kills(void **state)
{
        struct fixture *f = *state;

        assert_int_equal(mc_request(f->c, "tools/call", NULL, on_response, f, NULL), 0);
        server_says(f, "Starting server on stdio...\n");
        assert_int_equal(mc_wait(f->c, soon(5000), is_closed, f), -ECONNRESET);
        assert_non_null(strstr(f->closed, "not a JSON-RPC message"));
        assert_int_equal(f->responses, 1); /* the pending request failed first */
        assert_int_equal(f->last_r, -ECONNRESET);
        assert_false(mc_alive(f->c));
        assert_int_equal(mc_request(f->c, "tools/list", NULL, on_response, f, NULL), -ECONNRESET);
}

static void
test_not_jsonrpc_kills(void **state)
{
        struct fixture *f = *state;

        server_says(f, "{\"id\":1,\"result\":{}}\n");
        assert_int_equal(mc_wait(f->c, soon(5000), is_closed, f), -ECONNRESET);
        assert_non_null(strstr(f->closed, "jsonrpc"));
}

static void
test_long_line_kills(void **state)
{
        struct fixture *f = *state;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                static char chunk[65536];
                size_t left = MC_LINE_MAX + sizeof chunk;

                memset(chunk, 'x', sizeof chunk);
                while (left > 0) {
                        ssize_t n = write(f->to_client, chunk, left < sizeof chunk ? left : sizeof chunk);
                        if (n <= 0)
                                _exit(0);
                        left -= (size_t)n;
                }
                _exit(0);
        }
        assert_int_equal(mc_wait(f->c, soon(20000), is_closed, f), -ECONNRESET);
        assert_non_null(strstr(f->closed, "longer than the limit"));
        close(f->to_client);
        f->to_client = -1;
        assert_int_equal(waitpid(pid, NULL, 0), pid);
}

static void
test_eof_kills(void **state)
{
        struct fixture *f = *state;

        assert_int_equal(mc_request(f->c, "initialize", NULL, on_response, f, NULL), 0);
        close(f->to_client);
        f->to_client = -1;
        assert_int_equal(mc_wait(f->c, soon(5000), is_closed, f), -ECONNRESET);
        assert_non_null(strstr(f->closed, "closed its stdout"));
        assert_int_equal(f->last_r, -ECONNRESET);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_request_response, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_requests_and_notifications, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage_kills, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_jsonrpc_kills, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_line_kills, setup, teardown),
                cmocka_unit_test_setup_teardown(test_eof_kills, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
