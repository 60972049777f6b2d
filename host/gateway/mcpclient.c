/* SPDX-License-Identifier: MIT */
/* The MCP client connection to one server process (host/gateway/mcpclient.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "common/macros.h"
#include "host/mcp/jsonrpc.h"
#include "host/mcp/calls.h"
#include "host/mcp/server.h"
#include "host/gateway/mcpclient.h"

#define MC_READ_CHUNK 65536

struct pending {
        uint64_t id;
        mc_response_fn cb;
        void *userdata;
        struct pending *next;
};

struct mc_client {
        sd_event *event;
        char *name;
        struct mc_client_ops ops;
        void *userdata;
        int in_fd, out_fd;
        sd_event_source *in_src, *out_src;
        char *in; /* bytes read, not yet a whole line */
        size_t in_len, in_cap;
        char *out; /* bytes queued for the server */
        size_t out_len, out_off;
        struct pending *pending;
        size_t n_pending;
        uint64_t next_id;
        sd_event_source *more_src; /* whole lines left after MC_LINES_PER_WAKEUP */
        bool dead;
};

static void
out_update(struct mc_client *c)
{
        if (c->out_src)
                (void)sd_event_source_set_enabled(c->out_src,
                                                  c->out_len > c->out_off ? SD_EVENT_ON : SD_EVENT_OFF);
}

/* Write what is queued, without blocking. Returns 0 or -errno (the pipe broke). */
static int
out_flush(struct mc_client *c)
{
        int r = ab_fd_write_some(c->out_fd, c->out, c->out_len, &c->out_off, false);

        if (r < 0)
                return r;
        if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        out_update(c);
        return 0;
}

/* Mark the connection dead: fail every pending request, then tell the owner. */
static void
client_die(struct mc_client *c, const char *why)
{
        if (c->dead)
                return;
        c->dead = true;
        c->in_src = sd_event_source_disable_unref(c->in_src);
        c->out_src = sd_event_source_disable_unref(c->out_src);
        c->more_src = sd_event_source_disable_unref(c->more_src);
        while (c->pending) {
                struct pending *p = c->pending;

                c->pending = p->next;
                c->n_pending--;
                p->cb(p->userdata, -ECONNRESET, NULL, NULL);
                free(p);
        }
        log_info("server %s: connection closed: %s", c->name, why);
        if (c->ops.closed)
                c->ops.closed(c->userdata, why);
}

/* Queue msg (consumed) as one line. Returns 0 or -errno. */
static int
send_msg(struct mc_client *c, cJSON *msg)
{
        char *text;
        size_t n;
        int r;

        if (!msg)
                return -ENOMEM;
        if (c->dead) {
                cJSON_Delete(msg);
                return -ECONNRESET;
        }
        text = cJSON_PrintUnformatted(msg);
        cJSON_Delete(msg);
        if (!text)
                return -ENOMEM;
        n = strlen(text);
        if (c->out_len - c->out_off + n + 1 > MC_OUT_MAX) {
                cJSON_free(text);
                return -ENOBUFS;
        }
        if (c->out_len + n + 1 > 0) {
                char *nb = realloc(c->out, c->out_len + n + 1);

                if (!nb) {
                        cJSON_free(text);
                        return -ENOMEM;
                }
                c->out = nb;
        }
        memcpy(c->out + c->out_len, text, n);
        c->out[c->out_len + n] = '\n';
        c->out_len += n + 1;
        cJSON_free(text);
        r = out_flush(c);
        if (r < 0) {
                client_die(c, "the server's stdin is closed");
                return -ECONNRESET;
        }
        return 0;
}

static cJSON *
envelope(void)
{
        cJSON *m = cJSON_CreateObject();

        if (m && !cJSON_AddStringToObject(m, "jsonrpc", JSONRPC_VERSION)) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}

int
mc_request(struct mc_client *c, const char *method, cJSON *params, mc_response_fn cb, void *userdata,
           uint64_t *ret_id)
{
        struct pending *p;
        cJSON *m;
        int r;

        if (!c || !method || !cb) {
                cJSON_Delete(params);
                return -EINVAL;
        }
        if (c->dead || c->n_pending >= MC_PENDING_MAX) {
                cJSON_Delete(params);
                return c->dead ? -ECONNRESET : -EAGAIN;
        }
        p = calloc(1, sizeof(*p));
        m = envelope();
        if (!p || !m || !cJSON_AddNumberToObject(m, "id", (double)(c->next_id + 1)) ||
            !cJSON_AddStringToObject(m, "method", method) ||
            (params && !cJSON_AddItemToObject(m, "params", params))) {
                if (!cJSON_GetObjectItemCaseSensitive(m, "params"))
                        cJSON_Delete(params);
                cJSON_Delete(m);
                free(p);
                return -ENOMEM;
        }
        p->id = ++c->next_id;
        p->cb = cb;
        p->userdata = userdata;
        r = send_msg(c, m);
        if (r < 0) {
                free(p);
                return r;
        }
        p->next = c->pending;
        c->pending = p;
        c->n_pending++;
        if (ret_id)
                *ret_id = p->id;
        return 0;
}

int
mc_notify(struct mc_client *c, const char *method, cJSON *params)
{
        cJSON *m = envelope();

        if (!c || !m || !cJSON_AddStringToObject(m, "method", method) ||
            (params && !cJSON_AddItemToObject(m, "params", params))) {
                if (!cJSON_GetObjectItemCaseSensitive(m, "params"))
                        cJSON_Delete(params);
                cJSON_Delete(m);
                return c ? -ENOMEM : -EINVAL;
        }
        return send_msg(c, m);
}

void
mc_forget(struct mc_client *c, uint64_t id)
{
        for (struct pending **pp = c ? &c->pending : NULL; pp && *pp; pp = &(*pp)->next)
                if ((*pp)->id == id) {
                        struct pending *p = *pp;

                        *pp = p->next;
                        c->n_pending--;
                        free(p);
                        return;
                }
}

bool
mc_alive(const struct mc_client *c)
{
        return c && !c->dead;
}

/* Answer a request the server sent us: ping with {}, anything else with RPC_METHOD_NOT_FOUND. */
static void
answer_server_request(struct mc_client *c, const cJSON *id, const char *method)
{
        cJSON *m = envelope(), *e;

        if (!m || !cJSON_AddItemToObject(m, "id", cJSON_Duplicate(id, true))) {
                cJSON_Delete(m);
                return;
        }
        if (strcmp(method, "ping") == 0) {
                if (!cJSON_AddObjectToObject(m, "result")) {
                        cJSON_Delete(m);
                        return;
                }
        } else {
                log_debug("server %s: refusing its request %.64s", c->name, method);
                e = cJSON_AddObjectToObject(m, "error");
                if (!e || !cJSON_AddNumberToObject(e, "code", RPC_METHOD_NOT_FOUND) ||
                    !cJSON_AddStringToObject(e, "message",
                                             "Method not found: agentbroker offers no client features "
                                             "(sampling, roots, elicitation) to servers")) {
                        cJSON_Delete(m);
                        return;
                }
        }
        (void)send_msg(c, m);
}

/* Handle one message. Returns 0, or -EBADMSG with *ret_why set when it breaks JSON-RPC. */
static int
handle_line(struct mc_client *c, const char *line, size_t len, const char **ret_why)
{
        const cJSON *id, *method, *result, *error;
        cJSON *msg;

        if (len == 0 || (len == 1 && line[0] == '\r'))
                return 0; /* blank lines are tolerated */
        msg = cJSON_ParseWithLength(line, len);
        if (!msg || !cJSON_IsObject(msg)) {
                cJSON_Delete(msg);
                *ret_why = "it wrote a line that is not a JSON-RPC message";
                return -EBADMSG;
        }
        id = cJSON_GetObjectItemCaseSensitive(msg, "id");
        method = cJSON_GetObjectItemCaseSensitive(msg, "method");
        result = cJSON_GetObjectItemCaseSensitive(msg, "result");
        error = cJSON_GetObjectItemCaseSensitive(msg, "error");
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc"))) {
                cJSON_Delete(msg);
                *ret_why = "it wrote a message without \"jsonrpc\": \"2.0\"";
                return -EBADMSG;
        }
        if (method) {
                if (!cJSON_IsString(method)) {
                        cJSON_Delete(msg);
                        *ret_why = "it wrote a message whose method is not a string";
                        return -EBADMSG;
                }
                if (id && !cJSON_IsNull(id))
                        answer_server_request(c, id, method->valuestring);
                else if (c->ops.notification)
                        c->ops.notification(c->userdata, method->valuestring,
                                            cJSON_GetObjectItemCaseSensitive(msg, "params"));
                cJSON_Delete(msg);
                return 0;
        }
        if (cJSON_IsNumber(id) && (result || cJSON_IsObject(error))) {
                for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
                        struct pending *p = *pp;

                        if ((double)p->id != id->valuedouble)
                                continue;
                        *pp = p->next;
                        c->n_pending--;
                        if (result)
                                p->cb(p->userdata, 0, cJSON_DetachItemViaPointer(msg, (cJSON *)result),
                                      NULL);
                        else
                                p->cb(p->userdata, 0, NULL, error);
                        free(p);
                        break;
                }
                cJSON_Delete(msg);
                return 0; /* responses to forgotten requests are dropped */
        }
        cJSON_Delete(msg);
        *ret_why = "it wrote a message that is neither a request, a notification nor a response";
        return -EBADMSG;
}

/* Read what is there and handle up to MC_LINES_PER_WAKEUP whole lines. Returns 1 when more
 * may be waiting, 0, or -errno when the connection died (already reported). */
static int
read_some(struct mc_client *c)
{
        unsigned lines = 0;

        for (;;) {
                char *nl;
                ssize_t n;

                /* Whole lines first. */
                while (c->in_len && (nl = memchr(c->in, '\n', c->in_len))) {
                        size_t len = (size_t)(nl - c->in);
                        const char *why = NULL;
                        int r;

                        r = handle_line(c, c->in, len, &why);
                        if (r < 0) {
                                client_die(c, why);
                                return r;
                        }
                        if (c->dead)
                                return -ECONNRESET;
                        memmove(c->in, nl + 1, c->in_len - len - 1);
                        c->in_len -= len + 1;
                        if (++lines >= MC_LINES_PER_WAKEUP)
                                return 1;
                }
                if (c->in_len >= MC_LINE_MAX) {
                        client_die(c, "it wrote a message longer than the limit (16 MiB)");
                        return -EMSGSIZE;
                }
                if (c->in_cap - c->in_len < MC_READ_CHUNK) {
                        size_t cap = c->in_cap ? c->in_cap * 2 : MC_READ_CHUNK * 2;
                        char *nb;

                        if (cap > MC_LINE_MAX + MC_READ_CHUNK)
                                cap = MC_LINE_MAX + MC_READ_CHUNK;
                        nb = realloc(c->in, cap);
                        if (!nb) {
                                client_die(c, "out of memory");
                                return -ENOMEM;
                        }
                        c->in = nb;
                        c->in_cap = cap;
                }
                n = read(c->in_fd, c->in + c->in_len, c->in_cap - c->in_len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        client_die(c, "reading its stdout failed");
                        return -errno;
                }
                if (n == 0) {
                        client_die(c, "it closed its stdout (exited?)");
                        return -ECONNRESET;
                }
                c->in_len += (size_t)n;
        }
}

static int
more_handler(sd_event_source *s, void *userdata)
{
        struct mc_client *c = userdata;

        if (read_some(c) == 1 && c->more_src)
                (void)sd_event_source_set_enabled(c->more_src, SD_EVENT_ONESHOT);
        return 0;
}

static int
in_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        return more_handler(NULL, userdata);
}

static int
out_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct mc_client *c = userdata;

        if (out_flush(c) < 0)
                client_die(c, "the server's stdin is closed");
        return 0;
}

int
mc_client_new(sd_event *event, int in_fd, int out_fd, const char *name, const struct mc_client_ops *ops,
              void *userdata, struct mc_client **ret)
{
        struct mc_client *c = calloc(1, sizeof(*c));
        int r;

        if (!c) {
                close(in_fd);
                close(out_fd);
                return -ENOMEM;
        }
        c->in_fd = in_fd;
        c->out_fd = out_fd;
        c->event = sd_event_ref(event);
        c->name = strdup(name);
        c->ops = *ops;
        c->userdata = userdata;
        if (!c->name) {
                r = -ENOMEM;
                goto fail;
        }
        if (fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK) < 0 ||
            fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &c->in_src, in_fd, EPOLLIN, in_handler, c);
        if (r >= 0)
                r = sd_event_add_io(event, &c->out_src, out_fd, EPOLLOUT, out_handler, c);
        if (r >= 0)
                r = sd_event_add_defer(event, &c->more_src, more_handler, c);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_enabled(c->more_src, SD_EVENT_OFF);
        out_update(c);
        *ret = c;
        return 0;
fail:
        mc_client_free(c);
        return r;
}

void
mc_client_free(struct mc_client *c)
{
        if (!c)
                return;
        sd_event_source_disable_unref(c->more_src);
        sd_event_source_disable_unref(c->in_src);
        sd_event_source_disable_unref(c->out_src);
        while (c->pending) {
                struct pending *p = c->pending;

                c->pending = p->next;
                free(p);
        }
        if (c->in_fd >= 0)
                close(c->in_fd);
        if (c->out_fd >= 0)
                close(c->out_fd);
        free(c->in);
        free(c->out);
        free(c->name);
        sd_event_unref(c->event);
        free(c);
}

int
mc_wait(struct mc_client *c, uint64_t deadline_usec, bool (*done)(void *userdata), void *userdata)
{
        while (!done(userdata)) {
                if (!c->dead && c->in_len && memchr(c->in, '\n', c->in_len)) {
                        if (read_some(c) < 0)
                                return -ECONNRESET;
                        continue;
                }
                struct pollfd pfd[2] = {
                        { .fd = c->in_fd, .events = POLLIN },
                        { .fd = c->out_fd, .events = c->out_len > c->out_off ? POLLOUT : 0 },
                };
                uint64_t now = ab_now_us();
                int r;

                if (c->dead)
                        return -ECONNRESET;
                if (now >= deadline_usec)
                        return -ETIMEDOUT;
                r = poll(pfd, 2, (int)((deadline_usec - now + 999) / 1000));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r <= 0)
                        continue;
                if ((pfd[1].revents & (POLLOUT | POLLERR | POLLHUP)) && out_flush(c) < 0) {
                        client_die(c, "the server's stdin is closed");
                        return -ECONNRESET;
                }
                if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
                        if (read_some(c) < 0)
                                return -ECONNRESET;
        }
        /* Lines left in the buffer are handled by the event loop. */
        if (!c->dead && c->more_src && c->in_len && memchr(c->in, '\n', c->in_len))
                (void)sd_event_source_set_enabled(c->more_src, SD_EVENT_ONESHOT);
        return 0;
}
