/* SPDX-License-Identifier: MIT */
/* The host's broker client, asynchronous requests on the sd-event loop: call-begin,
 * call-end and notes sent without blocking the loop, with timeouts and orphaned ends. */
#include "config.h"

#include "common/secmem.h"
#include "common/clock.h"
#include "host/brokerc/internal.h"

/* ---------- asynchronous requests ---------- */

enum req_kind {
        REQ_BEGIN,
        REQ_END,
        REQ_NOTE
};

struct hb_request {
        struct hb_broker *b;
        struct hb_request *next;
        enum req_kind kind;
        const char *op; /* static: the operation, for log lines */
        uint64_t id;
        uint64_t deadline; /* CLOCK_MONOTONIC usec */
        char *msg;         /* the encoded request until sent (wiped) */
        size_t len;
        bool sent;
        bool retried;   /* already re-sent on a new connection */
        bool cancelled; /* nobody waits for it (a begin: end it when granted) */
        int submit_err; /* failed while being submitted */
        hb_begin_fn begin_cb;
        hb_end_fn end_cb;
        void *userdata;
};

static void
req_free(struct hb_request *q)
{
        if (!q)
                return;
        if (q->msg) {
                ab_wipe(q->msg, q->len);
                cJSON_free(q->msg);
        }
        free(q);
}

/* Take q out of the FIFO. */
static void
req_unlink(struct hb_broker *b, struct hb_request *q)
{
        struct hb_request **pp = &b->head, *prev = NULL;

        while (*pp && *pp != q) {
                prev = *pp;
                pp = &(*pp)->next;
        }
        if (!*pp)
                return;
        *pp = q->next;
        if (b->tail == q)
                b->tail = prev;
        if (b->unsent == q)
                b->unsent = q->next;
        q->next = NULL;
        b->n_pending--;
}

size_t
hb_pending(const struct hb_broker *b)
{
        return b ? b->n_pending : 0;
}

/* The slack of the timeout timer: an eighth of the timeout, at most 250 ms. sd-event arms its
 * timerfd at a round time inside [deadline, deadline + slack], so requests sent close together
 * share one arming instead of a timerfd_settime each. */
static uint64_t
timer_accuracy(const struct hb_broker *b)
{
        uint64_t a = b->timeout_usec / 8;

        return a > 250000 ? 250000 : a ? a : 1;
}

void
hb_set_timeout_ms(struct hb_broker *b, unsigned ms)
{
        if (!b)
                return;
        b->timeout_usec = (uint64_t)ms * 1000;
        if (b->timer)
                (void)sd_event_source_set_time_accuracy(b->timer, timer_accuracy(b));
}

static int async_submit(struct hb_broker *b, struct hb_request *q, const cJSON *fields, const char *op);

/* A granted call-begin that nobody waits for any more: end the call at once. */
static void
end_orphan(struct hb_broker *b, const struct hb_grant *g)
{
        cJSON *fields = NULL;
        struct hb_request *q;
        int r;

        r = hb_end_fields(g, "cancelled", 0, 0, &fields);
        q = r >= 0 ? calloc(1, sizeof(*q)) : NULL;
        if (q) {
                q->kind = REQ_END;
                r = async_submit(b, q, fields, "call-end");
        } else if (r >= 0)
                r = -ENOMEM;
        if (fields)
                hb_wipe_member(fields, "token");
        cJSON_Delete(fields);
        if (r < 0)
                log_warning("broker: call-end of cancelled call %" PRIu64 " failed: %s", g->call,
                            strerror(-r));
}

/* Complete q (already unlinked) with err or reply (consumed; NULL when err < 0) and free it. */
static void
req_complete(struct hb_broker *b, struct hb_request *q, int err, cJSON *reply)
{
        const char *op = q->op;
        int r = err;

        if (reply)
                r = hb_reply_status(op, reply, &reply);
        if (q->kind == REQ_NOTE) {
                b->n_notes--;
                cJSON_Delete(reply);
                if (r < 0)
                        log_warning("broker: %s failed: %s", op, strerror(-r));
        } else if (q->kind == REQ_END) {
                cJSON_Delete(reply);
                if (q->end_cb)
                        q->end_cb(q->userdata, r);
                else if (r < 0)
                        log_warning("broker: call-end failed: %s", strerror(-r));
        } else {
                struct hb_grant g = {};

                if (r == 0) {
                        r = hb_begin_grant(reply, &g);
                        if (r == 0 && q->cancelled)
                                end_orphan(b, &g);
                        if (r == 0 && !q->cancelled)
                                q->begin_cb(q->userdata, 0, &g, NULL, NULL);
                        else if (!q->cancelled)
                                q->begin_cb(q->userdata, r, NULL, NULL, NULL);
                        hb_grant_clear(&g);
                } else if (r == -EPERM || r == -EACCES) {
                        _cleanup_free_ char *reason = NULL, *message = NULL;

                        r = hb_deny_strings(reply, &reason, &message);
                        cJSON_Delete(reply);
                        if (!q->cancelled)
                                q->begin_cb(q->userdata, r < 0 ? r : -EPERM, NULL, reason, message);
                } else if (!q->cancelled)
                        q->begin_cb(q->userdata, r, NULL, NULL, NULL);
        }
        req_free(q);
}

/* Fail q (in the FIFO) with err: its callback runs, unless it is the request being
 * submitted, whose submitter returns the error instead. */
static void
req_fail(struct hb_broker *b, struct hb_request *q, int err)
{
        req_unlink(b, q);
        if (q == b->submitting) {
                q->submit_err = err;
                return;
        }
        req_complete(b, q, err, NULL);
}

/* Re-arm the timeout timer for the oldest request. With none pending it stays as it is: when
 * it fires, nothing is due and it stays off (a timer switched off and on around every request
 * costs two timerfd_settime calls per request). */
static void
timer_update(struct hb_broker *b)
{
        if (!b->timer || !b->head)
                return;
        (void)sd_event_source_set_time(b->timer, b->head->deadline);
        (void)sd_event_source_set_enabled(b->timer, SD_EVENT_ONESHOT);
}

/* Fail every request whose time is up (the FIFO is in deadline order). */
static void
expire(struct hb_broker *b, uint64_t now)
{
        while (b->head && b->head->deadline <= now) {
                struct hb_request *q = b->head;

                req_unlink(b, q);
                log_warning("broker: no answer to a %s request within %" PRIu64 " ms", q->op,
                            b->timeout_usec / 1000);
                req_complete(b, q, -ETIMEDOUT, NULL);
        }
}

void
hb_async_close(struct hb_broker *b)
{
        b->io = sd_event_source_disable_unref(b->io);
        if (b->afd >= 0)
                close(b->afd);
        b->afd = -1;
        b->gen++;
}

/* The connection died: fail the requests sent on it with err; those not yet sent stay for a
 * new connection. */
static void
async_conn_failed(struct hb_broker *b, int err)
{
        hb_async_close(b);
        while (b->head && b->head != b->unsent) {
                struct hb_request *q = b->head;

                req_unlink(b, q);
                req_complete(b, q, err, NULL);
        }
}

/* Fail every request (sent or not) with err. */
void
hb_async_fail_all(struct hb_broker *b, int err)
{
        while (b->head)
                req_fail(b, b->head, err);
}

static int on_async_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Open the asynchronous connection. Returns 0 or -errno. */
static int
async_connect(struct hb_broker *b)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int r;

        if (strlen(b->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, b->path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket connects at once (or fails: EAGAIN when the backlog is full). */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        if (b->event) {
                r = sd_event_add_io(b->event, &b->io, fd, EPOLLIN, on_async_io, b);
                if (r < 0)
                        return r;
                (void)sd_event_source_set_description(b->io, "broker-async");
        }
        b->afd = AB_TAKE_FD(fd);
        return 0;
}

/* Send what waits to be sent, connecting (once more per request) as needed. */
static void
async_send(struct hb_broker *b)
{
        while (b->unsent) {
                struct hb_request *q = b->unsent;
                ssize_t n;
                int r;

                if (b->afd < 0) {
                        r = async_connect(b);
                        if (r < 0) {
                                log_warning("broker: cannot connect to %s: %s", b->path, strerror(-r));
                                hb_async_fail_all(b, r);
                                return;
                        }
                }
                n = send(b->afd, q->msg, q->len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (b->io)
                                (void)sd_event_source_set_io_events(b->io, EPOLLIN | EPOLLOUT);
                        return;
                }
                if (n < 0) {
                        r = errno == EPIPE ? -ECONNRESET : -errno;
                        /* A dead connection: those in flight fail, this one gets one new connection. */
                        async_conn_failed(b, r);
                        if (q->retried)
                                req_fail(b, q, r);
                        else
                                q->retried = true;
                        continue;
                }
                ab_wipe(q->msg, q->len);
                cJSON_free(q->msg);
                q->msg = NULL;
                q->sent = true;
                b->unsent = q->next;
        }
        if (b->io)
                (void)sd_event_source_set_io_events(b->io, EPOLLIN);
}

/* Read and dispatch every reply that is there. */
static void
async_receive(struct hb_broker *b)
{
        uint64_t gen = b->gen;

        while (b->afd >= 0 && gen == b->gen) {
                struct hb_request *q;
                const cJSON *rid;
                cJSON *reply;
                ssize_t n = recv(b->afd, b->rbuf, AB_MSG_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        /* EOF (the broker's idle timeout, a restart) or an error. */
                        async_conn_failed(b, n == 0 ? -ECONNRESET : -errno);
                        return;
                }
                if ((size_t)n > AB_MSG_MAX) {
                        async_conn_failed(b, -EBADMSG);
                        return;
                }
                reply = cJSON_ParseWithLength(b->rbuf, (size_t)n);
                ab_wipe(b->rbuf, (size_t)n);
                if (!reply || !cJSON_IsObject(reply)) {
                        cJSON_Delete(reply);
                        async_conn_failed(b, -EBADMSG);
                        return;
                }
                rid = cJSON_GetObjectItemCaseSensitive(reply, "id");
                q = NULL;
                if (cJSON_IsNumber(rid)) {
                        for (struct hb_request *p = b->head; p && p != b->unsent; p = p->next)
                                if ((double)p->id == rid->valuedouble ||
                                    (rid->valuedouble == 0 && p == b->head)) {
                                        q = p;
                                        break;
                                }
                }
                if (!q) {
                        /* The late reply of a request that timed out. */
                        cJSON_Delete(reply);
                        continue;
                }
                req_unlink(b, q);
                req_complete(b, q, 0, reply);
        }
}

static int
on_async_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct hb_broker *b = userdata;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                async_receive(b);
        if (b->unsent)
                async_send(b);
        timer_update(b);
        return 0;
}

static int
on_async_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hb_broker *b = userdata;

        expire(b, ab_now_us());
        timer_update(b);
        return 0;
}

int
hb_attach_event(struct hb_broker *b, sd_event *event)
{
        int r;

        if (!b || !event)
                return -EINVAL;
        if (b->event)
                return -EBUSY;
        if (!b->rbuf && !(b->rbuf = malloc(AB_MSG_MAX + 1)))
                return -ENOMEM;
        r = sd_event_add_time(event, &b->timer, CLOCK_MONOTONIC, UINT64_MAX, timer_accuracy(b),
                              on_async_timer, b);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(b->timer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(b->timer, "broker-timeout");
        b->event = sd_event_ref(event);
        return 0;
}

/* Encode op with fields as request q (taken over, also on failure) and queue it for
 * sending. Returns 0 or -errno. */
static int
async_submit(struct hb_broker *b, struct hb_request *q, const cJSON *fields, const char *op)
{
        cJSON *req = ab_wire_request(op, b->next_id);
        const cJSON *child;
        int r = -ENOMEM;

        q->op = op;
        if (!req)
                goto fail;
        cJSON_ArrayForEach(child, fields)
        {
                cJSON *dup = cJSON_Duplicate(child, true);

                if (!dup || !cJSON_AddItemToObject(req, child->string, dup)) {
                        cJSON_Delete(dup);
                        goto fail;
                }
        }
        r = ab_wire_encode(req, &q->msg, &q->len);
        if (r == -E2BIG && strcmp(op, "call-begin") == 0 && cJSON_GetObjectItemCaseSensitive(req, "args")) {
                /* Too large with the text: the digest and length go alone (as hb_call_begin does). */
                cJSON_DeleteItemFromObjectCaseSensitive(req, "args");
                r = ab_wire_encode(req, &q->msg, &q->len);
        }
        if (r < 0)
                goto fail;
        hb_wipe_member(req, "token");
        cJSON_Delete(req);
        q->b = b;
        q->id = b->next_id++;
        q->deadline = ab_now_us() + b->timeout_usec;
        if (b->tail)
                b->tail->next = q;
        else
                b->head = q;
        b->tail = q;
        if (!b->unsent)
                b->unsent = q;
        b->n_pending++;
        b->submitting = q;
        async_send(b);
        b->submitting = NULL;
        timer_update(b);
        if (q->submit_err < 0) {
                r = q->submit_err;
                req_free(q);
                return r;
        }
        return 0;
fail:
        if (req)
                hb_wipe_member(req, "token");
        cJSON_Delete(req);
        req_free(q);
        return r;
}

int
hb_call_begin_async(struct hb_broker *b, const char *run, const char *tool, const char *args_json,
                    pid_t worker_pid, unsigned ttl_s, hb_begin_fn cb, void *userdata,
                    struct hb_request **ret_req)
{
        cJSON *fields = NULL;
        struct hb_request *q;
        int r;

        if (!b || !run || !tool || !cb)
                return -EINVAL;
        if (ret_req)
                *ret_req = NULL;
        if (!b->event) {
                /* No event loop: blocking, the callback runs now. */
                _cleanup_free_ char *reason = NULL, *message = NULL;
                struct hb_grant g;

                r = hb_call_begin(b, run, tool, args_json, worker_pid, ttl_s, &g, &reason, &message);
                cb(userdata, r, r == 0 ? &g : NULL, reason, message);
                if (r == 0)
                        hb_grant_clear(&g);
                return 0;
        }
        r = hb_begin_fields(run, tool, args_json, worker_pid, ttl_s, &fields);
        if (r < 0)
                return r;
        q = calloc(1, sizeof(*q));
        if (!q) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        q->kind = REQ_BEGIN;
        q->begin_cb = cb;
        q->userdata = userdata;
        r = async_submit(b, q, fields, "call-begin");
        cJSON_Delete(fields);
        if (r < 0)
                return r;
        if (ret_req)
                *ret_req = q;
        return 0;
}

void
hb_request_cancel(struct hb_request *q)
{
        if (q)
                q->cancelled = true;
}

int
hb_call_end_async(struct hb_broker *b, const struct hb_grant *g, const char *status, uint64_t result_bytes,
                  uint64_t duration_ms, hb_end_fn cb, void *userdata)
{
        cJSON *fields = NULL;
        struct hb_request *q;
        int r;

        if (!b || !g || !status || !g->token[0])
                return -EINVAL;
        if (!b->event) {
                r = hb_call_end(b, g, status, result_bytes, duration_ms);
                if (cb)
                        cb(userdata, r);
                else if (r < 0)
                        log_warning("broker: call-end of call %" PRIu64 " failed: %s", g->call,
                                    strerror(-r));
                return 0;
        }
        r = hb_end_fields(g, status, result_bytes, duration_ms, &fields);
        if (r < 0)
                return r;
        q = calloc(1, sizeof(*q));
        if (q) {
                q->kind = REQ_END;
                q->end_cb = cb;
                q->userdata = userdata;
                r = async_submit(b, q, fields, "call-end");
        } else
                r = -ENOMEM;
        hb_wipe_member(fields, "token");
        cJSON_Delete(fields);
        return r;
}

int
hb_flush(struct hb_broker *b, int timeout_ms)
{
        uint64_t deadline;

        if (!b)
                return 0;
        deadline = ab_now_us() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
        while (b->head) {
                struct pollfd p;
                uint64_t now = ab_now_us();
                int r;

                expire(b, now);
                if (!b->head)
                        break;
                if (now >= deadline)
                        return -ETIMEDOUT;
                if (b->unsent)
                        async_send(b);
                if (b->afd < 0)
                        continue; /* all failed, or a new connection comes with the next send */
                p = (struct pollfd){ .fd = b->afd, .events = POLLIN | (b->unsent ? POLLOUT : 0) };
                r = poll(&p, 1, (int)((deadline - now + 999) / 1000));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)))
                        async_receive(b);
        }
        timer_update(b);
        return 0;
}

/* Send fields as op without waiting for the reply (a failure is logged); blocking when no
 * event loop is attached. Returns 0, -EAGAIN (HB_NOTES_PENDING_MAX are waiting already) or
 * -errno. */
static int
note_async(struct hb_broker *b, cJSON *fields, const char *op)
{
        struct hb_request *q;
        cJSON *reply = NULL;
        int r;

        if (!b->event) {
                r = hb_request_sync(b, fields, op, NULL, &reply);
                cJSON_Delete(reply);
                return r;
        }
        if (b->n_notes >= HB_NOTES_PENDING_MAX)
                return -EAGAIN; /* the broker is not keeping up: do not queue without bound */
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->kind = REQ_NOTE;
        r = async_submit(b, q, fields, op);
        if (r == 0)
                b->n_notes++;
        return r;
}

/* s as UTF-8 (invalid bytes repaired) cut to at most max bytes at a character boundary, in
 * *ret (a new string). Returns 0 or -ENOMEM. */
static int
utf8_cut(const char *s, size_t max, char **ret)
{
        char *fixed = NULL, *out;
        const char *src;
        size_t len;

        if (ab_utf8_repair(s, strlen(s), &fixed) < 0)
                return -ENOMEM;
        src = fixed ? fixed : s;
        len = strlen(src);
        if (len > max)
                len = ab_utf8_floor(src, len, max);
        out = strndup(src, len);
        free(fixed);
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

int
hb_call_reject_async(struct hb_broker *b, const char *run, const char *tool, const char *reason,
                     const char *args_json)
{
        _cleanup_free_ char *name = NULL;
        cJSON *fields = NULL;
        int r;

        if (!b || !run || !tool || !reason)
                return -EINVAL;
        r = utf8_cut(tool, HB_SECRET_NAME_MAX, &name);
        if (r < 0)
                return r;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            !cJSON_AddStringToObject(fields, "tool", name[0] ? name : "(empty)") ||
            !cJSON_AddStringToObject(fields, "reason", reason) ||
            (args_json && hb_add_args_digest(fields, args_json, strlen(args_json)) < 0))
                r = -ENOMEM;
        else
                r = note_async(b, fields, "call-reject");
        cJSON_Delete(fields);
        return r;
}

int
hb_run_client_async(struct hb_broker *b, const char *run, const char *name, const char *version)
{
        _cleanup_free_ char *n = NULL, *v = NULL;
        cJSON *fields = NULL;
        int r;

        if (!b || !run)
                return -EINVAL;
        if ((name && utf8_cut(name, HB_SECRET_NAME_MAX, &n) < 0) ||
            (version && utf8_cut(version, 64, &v) < 0))
                return -ENOMEM;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            (n && n[0] && !cJSON_AddStringToObject(fields, "client", n)) ||
            (v && v[0] && !cJSON_AddStringToObject(fields, "client_version", v)))
                r = -ENOMEM;
        else
                r = note_async(b, fields, "run-client");
        cJSON_Delete(fields);
        return r;
}
