/* SPDX-License-Identifier: MIT */
/* The call state machine (queued -> reserved -> running -> done): queues, timeouts,
 * results and redaction of a worker's frames, cancellation. */
#include "config.h"

#include "host/workers/internal.h"

void
hw_call_free(struct hw_call *c)
{
        if (!c)
                return;
        hw_frame_wipe_free(c->frame);
        sd_event_source_disable_unref(c->timer);
        free(c->message);
        for (size_t i = 0; i < c->n_redacted; i++)
                free(c->redacted[i]);
        cJSON_Delete(c->result);
        if (c->tool && --c->tool->refs == 0 && c->tool->retired)
                hw_tool_entry_free(c->tool);
        free(c);
}

/* Calls are kept in doubly linked lists (a module's queue, a worker's bound calls, the
 * registry's finishing list) through their prev/next; n counts the members (may be NULL). */
static void
clist_append(struct hw_call **head, struct hw_call **tail, size_t *n, struct hw_call *c)
{
        c->prev = *tail;
        c->next = NULL;
        if (*tail)
                (*tail)->next = c;
        else
                *head = c;
        *tail = c;
        if (n)
                (*n)++;
}

void
hw_clist_remove(struct hw_call **head, struct hw_call **tail, size_t *n, struct hw_call *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                *head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                *tail = c->prev;
        c->prev = c->next = NULL;
        if (n)
                (*n)--;
}

void
hw_queue_remove(struct hw_module *m, struct hw_call *c)
{
        hw_clist_remove(&m->queue_head, &m->queue_tail, &m->n_queued, c);
}

static void
queue_append(struct hw_module *m, struct hw_call *c)
{
        clist_append(&m->queue_head, &m->queue_tail, &m->n_queued, c);
        c->queued_usec = ab_now_us();
}

void
hw_bound_append(struct hw_worker *w, struct hw_call *c)
{
        clist_append(&w->bound_head, &w->bound_tail, &w->n_bound, c);
}

static void
bound_remove(struct hw_worker *w, struct hw_call *c)
{
        hw_clist_remove(&w->bound_head, &w->bound_tail, &w->n_bound, c);
}

/* Detach c from its worker (the worker stays in its current state): the call it runs, or one
 * bound to it and not sent. A waiting frame is wiped. */
void
hw_call_detach(struct hw_call *c)
{
        if (c->w) {
                if (c->w->call == c)
                        c->w->call = NULL;
                else if (c->state == C_RESERVED || c->state == C_WAITING)
                        bound_remove(c->w, c);
                c->w = NULL;
        }
        c->frame = (hw_frame_wipe_free(c->frame), NULL);
        c->timer = sd_event_source_disable_unref(c->timer);
}

/* Tell c's owner what was redacted from its worker's output (if anything), then that c ended. */
void
hw_call_done(struct hw_call *c, cJSON *result, const char *failure, const char *message)
{
        if (c->redactions && c->ops.redacted)
                c->ops.redacted(c->userdata, c->redactions, (const char *const *)c->redacted, c->n_redacted);
        if (c->ops.done)
                c->ops.done(c->userdata, result, failure, message);
        else
                cJSON_Delete(result);
}

/* End c now: call done and free it. c must be detached from queue and worker. */
void
hw_call_finish_now(struct hw_call *c, cJSON *result, const char *failure, const char *message)
{
        hw_call_detach(c);
        c->state = C_FINISHING;
        hw_call_done(c, result, failure, message);
        hw_call_free(c);
}

/* End c with a printf-formatted failure message, now. */
static void AB_PRINTF(3, 4) call_fail_now(struct hw_call *c, const char *failure, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        hw_call_finish_now(c, NULL, failure, msg);
}

/* End c with failure on the deferred source (used when the owner itself asked, so that done
 * never runs inside the owner's own call into this file). c must be off any queue. */
void AB_PRINTF(3, 4) hw_call_fail_later(struct hw_call *c, const char *failure, const char *fmt, ...)
{
        struct hw_registry *reg = c->reg;
        va_list ap;

        hw_call_detach(c);
        c->state = C_FINISHING;
        c->failure = failure;
        free(c->message);
        va_start(ap, fmt);
        if (vasprintf(&c->message, fmt, ap) < 0)
                c->message = NULL;
        va_end(ap);
        clist_append(&reg->finishing_head, &reg->finishing_tail, NULL, c);
        hw_registry_schedule(reg);
}

/* The message of a call that ended because its worker died or misbehaved. */
void
hw_call_end_by_worker(struct hw_call *c, const char *failure, const char *message)
{
        if (c->state == C_CANCELLING)
                hw_call_finish_now(c, NULL, "cancelled", "the call was cancelled");
        else
                hw_call_finish_now(c, NULL, failure, message);
}

/* The frame's "id" matches w's current call. */
bool
hw_frame_id_matches(const struct hw_worker *w, const cJSON *msg)
{
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");

        return w->call && cJSON_IsNumber(id) && id->valuedouble >= 0 &&
               id->valuedouble <= (double)AB_JSON_INT_MAX && (uint64_t)id->valuedouble == w->call->id &&
               (double)w->call->id == id->valuedouble;
}

/* Turn a result frame into a CallToolResult. Returns 0 with *ret, -EBADMSG or -ENOMEM. */
int
hw_result_from_frame(cJSON *msg, cJSON **ret)
{
        cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        cJSON *structured = cJSON_GetObjectItemCaseSensitive(msg, "structuredContent");
        const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(msg, "isError");
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");
        const cJSON *item;
        cJSON *res;

        if (content && !cJSON_IsArray(content))
                return -EBADMSG;
        cJSON_ArrayForEach(item, content)
        {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");

                if (!cJSON_IsObject(item) || !cJSON_IsString(type))
                        return -EBADMSG;
        }
        if (structured && !cJSON_IsNull(structured) && !cJSON_IsObject(structured))
                return -EBADMSG;
        if (is_error && !cJSON_IsBool(is_error))
                return -EBADMSG;
        if (error && !cJSON_IsNull(error) && !cJSON_IsString(error))
                return -EBADMSG;

        res = cJSON_CreateObject();
        if (!res)
                return -ENOMEM;
        if (content)
                content = cJSON_DetachItemViaPointer(msg, content);
        else
                content = cJSON_CreateArray();
        if (!content || !cJSON_AddItemToObject(res, "content", content)) {
                cJSON_Delete(content);
                goto oom;
        }
        if (cJSON_IsTrue(is_error) && cJSON_GetArraySize(content) == 0) {
                cJSON *block = cJSON_CreateObject();

                if (!block || !cJSON_AddItemToArray(content, block)) {
                        cJSON_Delete(block);
                        goto oom;
                }
                if (!cJSON_AddStringToObject(block, "type", "text") ||
                    !cJSON_AddStringToObject(block, "text",
                                             cJSON_IsString(error) ? error->valuestring : "the tool failed"))
                        goto oom;
        }
        if (cJSON_IsObject(structured)) {
                structured = cJSON_DetachItemViaPointer(msg, structured);
                if (!cJSON_AddItemToObject(res, "structuredContent", structured)) {
                        cJSON_Delete(structured);
                        goto oom;
                }
        }
        if (cJSON_IsTrue(is_error) && !cJSON_AddBoolToObject(res, "isError", true))
                goto oom;
        *ret = res;
        return 0;
oom:
        cJSON_Delete(res);
        return -ENOMEM;
}

/* How long c's call took in its worker: the "us" its result reports (how long the tool's
 * call hook ran; a worker on a busy machine waits for a CPU before and after that, which says
 * nothing about the module), capped by the time since the call was sent; that time when the
 * result has none. */
uint64_t
hw_service_time(const struct hw_call *c, const cJSON *msg)
{
        const cJSON *us = cJSON_GetObjectItemCaseSensitive(msg, "us");
        uint64_t wall = ab_now_us() - c->sent_usec;

        if (cJSON_IsNumber(us) && us->valuedouble >= 0 && us->valuedouble < (double)wall)
                return (uint64_t)us->valuedouble;
        return wall;
}

/* Add what st says was redacted from c's output to c's record (the names from red, the
 * redactor that did it). c may be NULL (output outside a call). */
void
hw_call_note_redactions(struct hw_call *c, const struct hs_redactor *red, const struct hs_redact_stats *st)
{
        if (!c || st->count == 0)
                return;
        c->redactions += st->count;
        for (size_t i = 0; i < HS_REDACT_MAX; i++) {
                const char *name = hs_redactor_name(red, i);
                bool known = false;

                if (!name || !(st->secrets & (UINT64_C(1) << i)))
                        continue;
                for (size_t k = 0; k < c->n_redacted && !known; k++)
                        known = strcmp(c->redacted[k], name) == 0;
                if (!known && c->n_redacted < HS_REDACT_MAX && (c->redacted[c->n_redacted] = strdup(name)))
                        c->n_redacted++;
        }
}

/* Redact text (from w, during call c or NULL) with w's redactor: *ret is a new string, or
 * NULL when nothing matched. Returns 0 or -ENOMEM. */
int
hw_worker_redact(struct hw_worker *w, struct hw_call *c, const char *text, char **ret)
{
        struct hs_redact_stats st = { 0 };
        int r = hs_redact_text_stats(w->redactor, text, ret, &st);

        if (r == 0)
                hw_call_note_redactions(c, w->redactor, &st);
        return r;
}

/* ---------- calls ---------- */

static int
call_timeout_handler(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hw_call *c = userdata;
        struct hw_worker *w = c->w;
        struct hw_module *m = c->m;

        c->timer = sd_event_source_disable_unref(c->timer);
        if (c->state == C_RUNNING)
                hw_module_note_service(m, ab_now_us() - c->sent_usec, true);
        if (w) {
                log_warning("module %s: killing worker %d: %s", m->name, (int)w->pid,
                            c->state == C_CANCELLING ? "it did not stop a cancelled call"
                                                     : "the call timed out");
                hw_worker_kill(w);
        }
        if (c->state == C_CANCELLING)
                hw_call_finish_now(c, NULL, "cancelled", "the call was cancelled");
        else
                call_fail_now(c, "timeout", "the call did not finish within %u ms", c->timeout_ms);
        hw_module_schedule_dispatch(m);
        return 0;
}

int
hw_call_start(struct hw_registry *reg, const char *tool, const struct hw_call_ops *ops, void *userdata,
              struct hw_call **ret)
{
        const struct hw_tool *t;
        struct hw_module *m;
        struct hw_call *c;
        struct hw_worker *w;

        if (!reg || !tool || !ops || !ret)
                return -EINVAL;
        if (reg->freeing)
                return -ESHUTDOWN;
        t = hw_tool_find(reg, tool);
        if (!t)
                return -ENOENT;
        m = ((struct tool_entry *)t)->m;
        /* Calls waiting for a worker that is starting or could still be started are not
         * queued in the sense of HW_QUEUE_MAX: only those beyond the full pool count. */
        if (!m->unavailable && m->n_queued >= HW_QUEUE_MAX + (HW_POOL_MAX - hw_module_busy(m)))
                return -EAGAIN;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->reg = reg;
        c->m = m;
        c->tool = (struct tool_entry *)t;
        c->ops = *ops;
        c->userdata = userdata;
        c->id = ++reg->next_call_id;
        c->tool->refs++;
        *ret = c;

        if (m->external)
                return hw_external_start(c);
        if (m->unavailable) {
                hw_call_fail_later(
                        c, "unavailable",
                        "the %s module is unavailable: its workers failed to start %u times in a row",
                        m->name, m->start_failures);
                return 0;
        }
        if (!m->queue_head && (w = hw_module_pick_worker(m))) {
                hw_call_assign(c, w);
                return 0;
        }
        c->state = C_QUEUED;
        queue_append(m, c);
        hw_module_schedule_dispatch(m);
        return 0;
}

/* The slack of a call's timeout timer: a sixteenth of the timeout, between HW_TIMER_ACCURACY_US
 * and 1 s (a 30 s timeout fires within 30-31 s). sd-event arms its timerfd at a round time
 * inside the slack, so calls started close together share one arming. */
static uint64_t
call_timer_accuracy(unsigned timeout_ms)
{
        uint64_t a = (uint64_t)timeout_ms * 1000 / 16;

        return a < HW_TIMER_ACCURACY_US ? HW_TIMER_ACCURACY_US : a > 1000000 ? 1000000 : a;
}

/* Send c's waiting frame to its worker, which runs no other call, and start its timeout.
 * Returns 0, or -errno when it could not be sent (c then ends as "crashed" on the deferred
 * source and the worker stays usable). */
static int
call_transmit(struct hw_call *c)
{
        struct hw_worker *w = c->w;
        cJSON *frame;
        int r;

        r = sd_event_add_time_relative(c->reg->event, &c->timer, CLOCK_MONOTONIC,
                                       (uint64_t)c->timeout_ms * 1000, call_timer_accuracy(c->timeout_ms),
                                       call_timeout_handler, c);
        if (r < 0)
                goto fail;
        bound_remove(w, c);
        frame = AB_TAKE_PTR(c->frame);
        w->call = c;
        c->state = C_RUNNING;
        c->sent_usec = w->since_usec = ab_now_us();
        r = hw_worker_send(w, frame);
        hw_frame_wipe_free(frame);
        if (r == -ENOMEM || r == -E2BIG)
                goto fail; /* nothing reached the worker: it stays usable */
        /* A broken channel is reported by the worker's exit ("crashed"). */
        if (r < 0 && w->fd >= 0)
                hw_worker_eof(w);
        return 0;
fail:
        hw_call_fail_later(c, "crashed", "the call could not be sent to the %s module's worker: %s",
                           c->m->name, strerror(-r));
        return r;
}

/* w's call ended, or a call bound to it went away: send the next waiting call; else w stays
 * busy while calls are bound to it, or becomes idle. */
void
hw_worker_settle(struct hw_worker *w)
{
        for (;;) {
                struct hw_call *c;

                if (w->state != W_BUSY || w->call)
                        return;
                for (c = w->bound_head; c && c->state != C_WAITING; c = c->next)
                        ;
                if (!c)
                        break;
                if (call_transmit(c) == 0)
                        return;
        }
        if (!w->bound_head)
                hw_worker_set_idle(w);
}

int
hw_call_send(struct hw_call *c, const cJSON *args, const char *token, const char *run, size_t max_bytes,
             unsigned timeout_ms)
{
        struct hw_worker *w;
        cJSON *msg = NULL, *a;
        int r;

        if (c && c->m->external)
                return hw_external_send(c, args, max_bytes, timeout_ms);
        if (!c || c->state != C_RESERVED || !c->w)
                return -EINVAL;
        if (args && !cJSON_IsObject(args))
                return -EINVAL;
        w = c->w;
        if (timeout_ms == 0)
                timeout_ms = HW_DEFAULT_TIMEOUT_MS;

        r = -ENOMEM;
        msg = cJSON_CreateObject();
        if (!msg || !cJSON_AddStringToObject(msg, "t", "call") ||
            !cJSON_AddNumberToObject(msg, "id", (double)c->id) ||
            !cJSON_AddStringToObject(msg, "tool", c->tool->pub.name))
                goto fail;
        a = args ? cJSON_Duplicate(args, true) : cJSON_CreateObject();
        if (!a || !cJSON_AddItemToObject(msg, "args", a)) {
                cJSON_Delete(a);
                goto fail;
        }
        if (token && !cJSON_AddStringToObject(msg, "token", token))
                goto fail;
        if (run && !cJSON_AddStringToObject(msg, "run", run))
                goto fail;
        if (!cJSON_AddNumberToObject(msg, "max_bytes", (double)max_bytes))
                goto fail;
        c->frame = AB_TAKE_PTR(msg);
        c->timeout_ms = timeout_ms;
        c->state = C_WAITING;
        /* Sent now when the worker runs no other call; else when it is done with it (its
         * timeout starts then). */
        if (!w->call && w->state == W_BUSY) {
                r = call_transmit(c);
                if (r < 0)
                        hw_worker_settle(w); /* idle again unless other calls are bound to it */
                return r;
        }
        return 0;

fail:
        hw_frame_wipe_free(msg);
        hw_call_fail_later(c, "crashed", "the call could not be sent to the %s module's worker: %s",
                           c->m->name, strerror(-r));
        hw_worker_settle(w);
        return r;
}

/* End a call that was not sent (queued, or bound to a worker: reserved or waiting) with
 * failure, on the deferred source. Returns false when c was sent or is ending already. */
static bool
call_end_unsent(struct hw_call *c, const char *failure, const char *message)
{
        struct hw_worker *w = c->w;

        if (c->state == C_QUEUED)
                hw_queue_remove(c->m, c);
        else if (c->state == C_RESERVED || c->state == C_WAITING) {
                hw_call_detach(c);
                if (w)
                        hw_worker_settle(w);
        } else
                return false;
        hw_call_fail_later(c, failure, "%s", message);
        return true;
}

void
hw_call_abort(struct hw_call *c)
{
        if (!c)
                return;
        if (c->m->external) {
                hw_external_stop(c);
                return;
        }
        /* Aborting a call that was sent already is cancelling it. */
        if (!call_end_unsent(c, "aborted", "the call was not sent"))
                hw_call_cancel(c);
}

void
hw_call_cancel(struct hw_call *c)
{
        cJSON *msg;
        int r = -ENOMEM;

        if (c && c->m->external) {
                hw_external_stop(c);
                return;
        }
        if (!c || call_end_unsent(c, "cancelled", "the call was cancelled") || c->state != C_RUNNING)
                return;

        c->state = C_CANCELLING;
        c->timer = sd_event_source_disable_unref(c->timer);
        msg = cJSON_CreateObject();
        if (msg && cJSON_AddStringToObject(msg, "t", "cancel") &&
            cJSON_AddNumberToObject(msg, "id", (double)c->id))
                r = c->w ? hw_worker_send(c->w, msg) : -EPIPE;
        cJSON_Delete(msg);
        if (r >= 0 || r == -EPIPE || r == -ECONNRESET)
                r = sd_event_add_time_relative(c->reg->event, &c->timer, CLOCK_MONOTONIC,
                                               (uint64_t)HW_CANCEL_GRACE_MS * 1000, HW_TIMER_ACCURACY_US,
                                               call_timeout_handler, c);
        if (r < 0) {
                /* Neither a cancel nor its grace timer: stop the worker now. */
                struct hw_module *m = c->m;

                if (c->w)
                        hw_worker_kill(c->w);
                hw_call_fail_later(c, "cancelled", "the call was cancelled");
                hw_module_schedule_dispatch(m);
        }
}
