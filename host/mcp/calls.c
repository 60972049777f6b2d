/* SPDX-License-Identifier: MIT */
/* The tools/call pipeline (host/mcp/calls.h): validate -> call-begin -> worker -> shape ->
 * respond -> call-end, with progress, logging, redaction and cancellation. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "host/mcp/jsonrpc.h"
#include "host/mcp/calls.h"
#include "host/mcp/server.h"

/* The placeholder put in a truncation hint where the next offset goes; replaced by the real
 * number (never longer) once shaping has said how much was shown. */

struct call {
        struct mcp_calls *owner; /* NULL once orphaned by mcp_calls_free() */
        struct call *prev, *next;
        struct mcp_request *rq;
        const struct hw_tool *tool;
        cJSON *args; /* validated arguments (owned) */
        char *args_text;
        struct hw_call *hw;
        struct hb_broker *broker; /* for call-end, also when orphaned */
        struct hb_grant grant;
        struct hb_request *begin_req; /* call-begin on its way to the broker */
        bool began;                   /* the broker began the call: call-end is owed */
        bool starting;                /* inside hw_call_start(): callbacks are deferred */
        bool ready_pending, done_pending, pending_failure_oom;
        pid_t ready_pid;
        cJSON *pending_result;
        char *pending_failure, *pending_message;
        bool cancelled;   /* by the client (or at shutdown): no response */
        char *deny;       /* isError text when the call may not run */
        bool deny_passes; /* ... for a reason that passes (MCP_META_NOT_RUN) */
        size_t max_bytes;
        unsigned timeout_ms;
        bool any_progress;
        double last_progress;
        uint64_t begin_usec;
        uint64_t redactions; /* spans redacted from its worker's output */
        char **redacted;     /* ... and the secrets they were */
        size_t n_redacted;
};

struct mcp_calls {
        struct mcp_calls_host host;
        struct call *head;
        size_t count;
        uint64_t reject_failures; /* call-reject requests that could not be sent */
};

static const char *const level_names[] = {
        "emergency", "alert", "critical", "error", "warning", "notice", "info", "debug",
};

int
mcp_log_level_from_name(const char *name)
{
        if (!name)
                return -EINVAL;
        for (size_t i = 0; i < AB_ELEMENTSOF(level_names); i++)
                if (strcmp(name, level_names[i]) == 0)
                        return (int)i;
        return -EINVAL;
}

const char *
mcp_log_level_name(int prio)
{
        if (prio < 0)
                prio = 0;
        if (prio >= (int)AB_ELEMENTSOF(level_names))
                prio = (int)AB_ELEMENTSOF(level_names) - 1;
        return level_names[prio];
}

void
mcp_request_free(struct mcp_request *rq)
{
        if (!rq)
                return;
        cJSON_Delete(rq->id);
        cJSON_Delete(rq->progress_token);
        free(rq);
}

/* A CallToolResult with isError and one text block of the formatted message, or NULL (OOM). */
static cJSON *AB_PRINTF(1, 2) error_result(const char *fmt, ...)
{
        _cleanup_free_ char *text = NULL;
        cJSON *r, *content, *block;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (n < 0) {
                text = NULL;
                return NULL;
        }
        r = cJSON_CreateObject();
        content = cJSON_AddArrayToObject(r, "content");
        block = cJSON_CreateObject();
        if (!r || !content || !block || !cJSON_AddItemToArray(content, block) ||
            !cJSON_AddStringToObject(block, "type", "text") ||
            !cJSON_AddStringToObject(block, "text", text) || !cJSON_AddBoolToObject(r, "isError", true)) {
                cJSON_Delete(block);
                cJSON_Delete(r);
                return NULL;
        }
        return r;
}

/* Mark result (an isError result of ours, or NULL) as refused before it ran, for a reason
 * that passes (MCP_META_NOT_RUN in its _meta). Returns result, or NULL (OOM: freed). */
static cJSON *
not_run(cJSON *result)
{
        cJSON *meta;

        if (!result)
                return NULL;
        meta = cJSON_GetObjectItemCaseSensitive(result, "_meta");
        if (!meta && !(meta = cJSON_AddObjectToObject(result, "_meta"))) {
                cJSON_Delete(result);
                return NULL;
        }
        if (!cJSON_AddBoolToObject(meta, MCP_META_NOT_RUN, true)) {
                cJSON_Delete(result);
                return NULL;
        }
        return result;
}

/* The request id as text for log lines (a new string, or NULL). */
static char *
id_text(const struct mcp_request *rq)
{
        return rq && rq->id ? cJSON_PrintUnformatted(rq->id) : NULL;
}

static void
call_free(struct call *c)
{
        if (!c)
                return;
        mcp_request_free(c->rq);
        cJSON_Delete(c->args);
        free(c->args_text);
        cJSON_Delete(c->pending_result);
        free(c->pending_failure);
        free(c->pending_message);
        free(c->deny);
        for (size_t i = 0; i < c->n_redacted; i++)
                free(c->redacted[i]);
        free(c->redacted);
        hb_grant_clear(&c->grant);
        free(c);
}

static void
call_unlink(struct call *c)
{
        struct mcp_calls *o = c->owner;

        if (!o)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                o->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        o->count--;
}

/* call-end for a call the broker began, without waiting for the broker's answer (a failure
 * is logged when it comes). */
static void
call_end(struct call *c, const char *status, uint64_t bytes)
{
        uint64_t ms = (ab_now_us() - c->begin_usec) / 1000u;
        int r;

        if (!c->began)
                return;
        c->began = false;
        c->grant.redactions = c->redactions;
        c->grant.redacted = (const char *const *)c->redacted;
        c->grant.n_redacted = c->n_redacted;
        r = hb_call_end_async(c->broker, &c->grant, status, bytes, ms, NULL, NULL);
        if (r < 0)
                log_warning("call-end of %s (call %" PRIu64 ", status %s) failed: %s", c->tool->name,
                            c->grant.call, status, strerror(-r));
        hb_grant_clear(&c->grant);
}

/* The call-end status for a worker failure. */
static const char *
failure_status(const char *failure)
{
        if (strcmp(failure, "timeout") == 0)
                return "timeout";
        if (strcmp(failure, "crashed") == 0 || strcmp(failure, "garbage") == 0)
                return "crashed";
        if (strcmp(failure, "unredactable") == 0)
                return "error";
        if (strcmp(failure, "cancelled") == 0 || strcmp(failure, "stopped") == 0)
                return "cancelled";
        return "error";
}

/* The isError result that tells the client what happened to the call. */
static cJSON *
failure_result(const struct call *c, const char *failure, const char *message)
{
        const char *name = c->tool->name;
        const char *detail = message && *message ? message : "no detail";

        if (strcmp(failure, "timeout") == 0)
                return error_result(
                        "%s did not finish within its time limit of %u ms and was stopped. Retry "
                        "with a smaller request; the limit is the tool's timeout_ms in policy.",
                        name, c->timeout_ms);
        if (strcmp(failure, "crashed") == 0)
                return error_result(
                        "%s failed: the module's worker process crashed (%s). The host started a "
                        "fresh worker; the call did not complete and may be retried.",
                        name, detail);
        if (strcmp(failure, "garbage") == 0)
                return error_result(
                        "%s failed: the module's worker sent an invalid message and was stopped (%s). "
                        "The call did not complete and may be retried.",
                        name, detail);
        if (strcmp(failure, "unredactable") == 0)
                return error_result(
                        "%s failed: %s. Its output was withheld and the module's worker restarted; "
                        "the call did not complete.",
                        name, detail);
        if (strcmp(failure, "unavailable") == 0)
                return error_result("%s is unavailable: its module has no working worker (%s).", name,
                                    detail);
        if (strcmp(failure, "stopped") == 0)
                return error_result("%s was stopped: the host is shutting down.", name);
        if (strcmp(failure, "cancelled") == 0)
                return error_result("%s was cancelled before it finished.", name);
        return error_result("%s was not run (%s: %s).", name, failure, detail);
}

/* The hint of a tool with an "offset" property: call again with offset next. New string or NULL. */
static char *
offset_hint(const struct call *c, uint64_t next)
{
        char *hint;

        if (asprintf(&hint, "Call %s again with offset=%" PRIu64 " to get the rest.", c->tool->name, next) <
            0)
                return NULL;
        return hint;
}

/* The shaper's hs_hint_fn for a tool with an "offset" property: the next offset is the
 * call's offset plus the text bytes the cut result shows. */
static char *
next_offset_hint(void *userdata, size_t text_shown)
{
        const struct call *c = userdata;
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(c->args, "offset");
        uint64_t start = 0;

        if (cJSON_IsNumber(off) && off->valuedouble >= 0 && off->valuedouble < 1.8e19)
                start = (uint64_t)off->valuedouble;
        return offset_hint(c, start + text_shown);
}

/* How to get the rest of a truncated result, from the tool's own arguments: a tool with an
 * "offset" property is told the next offset (*ret_fn writes it once the shaper knows what it
 * kept; the hint returned, with the widest offset, is what the note is planned with), one
 * with a "cursor" property to page with its cursor, one with "head"/"tail" (as the MCP
 * filesystem server's read tools have) to ask for fewer lines. New string or NULL (generic
 * hint); *ret_fn is NULL unless the hint is written later. */
static char *
more_hint(const struct call *c, hs_hint_fn *ret_fn)
{
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(c->tool->descriptor, "inputSchema");
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
        char *hint = NULL;

        *ret_fn = NULL;
        if (cJSON_GetObjectItemCaseSensitive(props, "offset")) {
                hint = offset_hint(c, UINT64_MAX);
                if (hint)
                        *ret_fn = next_offset_hint;
        } else if (cJSON_GetObjectItemCaseSensitive(props, "cursor")) {
                if (asprintf(&hint,
                             "Call %s again with a smaller page (its limit argument, if any) and page "
                             "on with its cursor argument to get the rest.",
                             c->tool->name) < 0)
                        return NULL;
        } else if (cJSON_GetObjectItemCaseSensitive(props, "head") &&
                   cJSON_GetObjectItemCaseSensitive(props, "tail")) {
                if (asprintf(&hint,
                             "Call %s again with head=N (the first N lines) or tail=N (the last N lines) "
                             "to get a part that fits.",
                             c->tool->name) < 0)
                        return NULL;
        }
        return hint;
}

/* MCP: a tool that returns structuredContent SHOULD also return it serialized in a text block
 * (for clients that do not read structuredContent). Add that block when the module gave none. */
static void
mirror_structured(cJSON *result)
{
        cJSON *content = cJSON_GetObjectItemCaseSensitive(result, "content");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");
        cJSON *block;
        char *text;

        if (!sc || !cJSON_IsArray(content) || cJSON_GetArraySize(content) > 0)
                return;
        text = cJSON_PrintUnformatted(sc);
        block = text ? cJSON_CreateObject() : NULL;
        if (block && cJSON_AddStringToObject(block, "type", "text") &&
            cJSON_AddStringToObject(block, "text", text))
                cJSON_AddItemToArray(content, block);
        else
                cJSON_Delete(block);
        cJSON_free(text);
}

/* Send the response for a call whose outcome is result (consumed; a real tool result when
 * tool_result, else an isError result of ours): shape it, respond. *ret_bytes: bytes sent. */
static void
respond_result(struct mcp_calls *o, struct call *c, cJSON *result, bool tool_result, size_t *ret_bytes)
{
        _cleanup_free_ char *hint = NULL;
        hs_hint_fn hint_fn = NULL;
        int r;

        *ret_bytes = 0;
        if (!result) {
                log_error("%s: out of memory building the result", c->tool->name);
                o->host.respond_error(o->host.userdata, c->rq, RPC_INTERNAL_ERROR,
                                      "Internal error: out of memory");
                return;
        }
        hint = tool_result ? more_hint(c, &hint_fn) : NULL;
        if (tool_result)
                mirror_structured(result);
        /* The worker layer redacted the result already, with its worker's redactor. */
        r = hs_shape_result_hinted(result, c->max_bytes, NULL, tool_result ? c->tool->output : NULL, hint,
                                   hint_fn, c, NULL);
        if (r == -EINVAL && tool_result) {
                cJSON_Delete(result);
                log_warning("%s: the worker's result has no content array", c->tool->name);
                respond_result(
                        o, c,
                        error_result("%s returned a malformed result (no content array).", c->tool->name),
                        false, ret_bytes);
                return;
        }
        if (r < 0) {
                cJSON_Delete(result);
                log_error("%s: shaping the result failed: %s", c->tool->name, strerror(-r));
                o->host.respond_error(o->host.userdata, c->rq, RPC_INTERNAL_ERROR,
                                      "Internal error: shaping the result failed");
                return;
        }
        r = o->host.respond(o->host.userdata, c->rq, result, ret_bytes);
        if (r < 0)
                log_warning("%s: sending the result failed: %s", c->tool->name, strerror(-r));
}

/* The call ended (worker done): answer the client unless it cancelled, end the call at the
 * broker, free. */
static void
call_finish(struct call *c, cJSON *result, const char *failure, const char *message)
{
        struct mcp_calls *o = c->owner;
        const char *status;
        size_t bytes = 0;

        if (!failure)
                status = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "isError")) ? "error" : "ok";
        else
                status = failure_status(failure);
        if (!o || c->cancelled) {
                /* Nobody gets an answer; the broker still learns how it ended. */
                cJSON_Delete(result);
                call_end(c, c->began && (!failure || strcmp(failure, "aborted") == 0) ? "cancelled" : status,
                         0);
                if (o) {
                        call_unlink(c);
                        log_debug("%s: call cancelled, no response sent", c->tool->name);
                }
                call_free(c);
                goto idle;
        }
        call_unlink(c);
        if (c->deny) {
                cJSON_Delete(result);
                respond_result(o, c,
                               c->deny_passes ? not_run(error_result("%s", c->deny))
                                              : error_result("%s", c->deny),
                               false, &bytes);
        } else if (failure) {
                cJSON_Delete(result);
                log_warning("%s (call %" PRIu64 "): %s%s%s", c->tool->name, c->grant.call, failure,
                            message ? ": " : "", message ? message : "");
                respond_result(o, c, failure_result(c, failure, message), false, &bytes);
        } else
                respond_result(o, c, result, true, &bytes);
        call_end(c, status, bytes);
        call_free(c);
idle:
        if (o && o->count == 0 && o->host.idle)
                o->host.idle(o->host.userdata);
}

/* The broker answered the call-begin of c (see hb_begin_fn): send the call to its worker, or
 * give the worker back. The call may be freed when this returns. */
static void
on_begun(void *userdata, int r, const struct hb_grant *grant, const char *reason, const char *message)
{
        struct call *c = userdata;
        struct mcp_calls *o = c->owner;

        c->begin_req = NULL;
        if (r == -EPERM) {
                log_info("%s: denied by policy: %s%s%s", c->tool->name, reason ? reason : "denied",
                         message ? ": " : "", message ? message : "");
                if (asprintf(&c->deny, "denied by policy: %s: %s", reason ? reason : "denied",
                             message && *message ? message
                                                 : "the broker's policy does not allow this call") < 0)
                        c->deny = NULL;
                if (!c->deny)
                        c->deny = strdup("denied by policy");
                c->deny_passes = reason && strcmp(reason, "rate-limited") == 0;
                hw_call_abort(c->hw);
                return;
        }
        if (r < 0) {
                log_error("%s: call-begin failed: %s", c->tool->name, strerror(-r));
                if (asprintf(&c->deny,
                             "%s was not run: the broker did not answer the call-begin request (%s). "
                             "Retry later.",
                             c->tool->name, strerror(-r)) < 0)
                        c->deny = strdup("the broker did not answer: the call was not run");
                c->deny_passes = true;
                hw_call_abort(c->hw);
                return;
        }
        c->grant = *grant;
        c->began = true;
        c->begin_usec = ab_now_us();
        if (!o || c->cancelled) {
                hw_call_abort(c->hw); /* done follows and ends the call at the broker */
                return;
        }
        /* From here the worker's done callback ends the call, possibly before this returns. */
        r = hw_call_send(c->hw, c->args, c->grant.token, o->host.run, c->max_bytes, c->timeout_ms);
        if (r < 0)
                log_warning("sending the call to a worker failed: %s", strerror(-r));
}

/* A worker is reserved: ask the broker (the answer comes to on_begun()). The call may be
 * freed when this returns. */
static void
call_ready(struct call *c, pid_t pid)
{
        struct mcp_calls *o = c->owner;
        int r;

        if (!o || c->cancelled) {
                hw_call_abort(c->hw);
                return;
        }
        /* The token must outlive the call: its timeout plus a margin (the broker caps it at
         * tokens.max_ttl_s). Without an event loop at the broker client, on_begun() runs
         * before this returns. */
        r = hb_call_begin_async(o->host.broker, o->host.run, c->tool->name, c->args_text, pid,
                                c->timeout_ms / 1000 + 5, on_begun, c, &c->begin_req);
        if (r < 0)
                on_begun(c, r, NULL, NULL, NULL);
}

static void
on_ready(void *userdata, pid_t worker_pid)
{
        struct call *c = userdata;

        if (c->starting) {
                c->ready_pending = true;
                c->ready_pid = worker_pid;
                return;
        }
        call_ready(c, worker_pid);
}

static void
on_progress(void *userdata, double progress, double total, const char *message)
{
        struct call *c = userdata;
        struct mcp_calls *o = c->owner;
        cJSON *p;

        if (!o || c->cancelled || !c->rq->progress_token)
                return;
        if (c->any_progress && !(progress > c->last_progress))
                return; /* progress must increase: drop the rest */
        c->any_progress = true;
        c->last_progress = progress;
        p = cJSON_CreateObject();
        if (!p || !cJSON_AddItemToObject(p, "progressToken", cJSON_Duplicate(c->rq->progress_token, true)) ||
            !cJSON_AddNumberToObject(p, "progress", progress) ||
            (total > 0 && !cJSON_AddNumberToObject(p, "total", total)) ||
            (message && !cJSON_AddStringToObject(p, "message", message))) {
                cJSON_Delete(p);
                return;
        }
        o->host.notify(o->host.userdata, c->rq, "notifications/progress", p);
}

static void
on_log(void *userdata, int level, const char *message)
{
        struct call *c = userdata;
        struct mcp_calls *o = c->owner;
        int threshold;
        cJSON *p;

        if (!o || c->cancelled || !message)
                return;
        threshold = c->rq->modern ? c->rq->log_level : o->host.session_log_level(o->host.userdata);
        if (threshold < 0 || level > threshold)
                return;
        p = cJSON_CreateObject();
        if (!p || !cJSON_AddStringToObject(p, "level", mcp_log_level_name(level)) ||
            !cJSON_AddStringToObject(p, "logger", c->tool->name) ||
            !cJSON_AddStringToObject(p, "data", message)) {
                cJSON_Delete(p);
                return;
        }
        o->host.notify(o->host.userdata, c->rq, "notifications/message", p);
}

/* The worker says the call read secret: true only if the broker vouched for that value. */
static int
on_redact(void *userdata, const char *secret, const unsigned char *value, size_t len)
{
        struct call *c = userdata;

        return c->began && hb_grant_vouches(&c->grant, secret, value, len) ? 0 : -EPERM;
}

/* What was redacted from the call's output, for its call-end record. */
static void
on_redacted(void *userdata, uint64_t count, const char *const *names, size_t n)
{
        struct call *c = userdata;

        c->redactions = count;
        c->redacted = calloc(n ? n : 1, sizeof(*c->redacted));
        if (!c->redacted)
                return; /* the count still goes out */
        for (size_t i = 0; i < n; i++)
                if ((c->redacted[c->n_redacted] = strdup(names[i])))
                        c->n_redacted++;
}

static void
on_done(void *userdata, cJSON *result, const char *failure, const char *message)
{
        struct call *c = userdata;

        c->hw = NULL; /* the registry frees it after this callback */
        if (c->begin_req) {
                /* Ended (cancelled, stopped) while the broker decides: the broker client ends
                 * the call there if it is granted. */
                hb_request_cancel(c->begin_req);
                c->begin_req = NULL;
        }
        if (c->starting) {
                c->done_pending = true;
                c->pending_result = result;
                c->pending_failure = failure ? strdup(failure) : NULL;
                c->pending_message = message ? strdup(message) : NULL;
                if (failure && !c->pending_failure)
                        c->pending_failure_oom = true;
                return;
        }
        call_finish(c, result, failure, message);
}

static const struct hw_call_ops call_ops = {
        .ready = on_ready,
        .progress = on_progress,
        .log = on_log,
        .redact = on_redact,
        .redacted = on_redacted,
        .done = on_done,
};

int
mcp_calls_new(const struct mcp_calls_host *host, struct mcp_calls **ret)
{
        struct mcp_calls *o = calloc(1, sizeof *o);

        if (!o)
                return -ENOMEM;
        o->host = *host;
        *ret = o;
        return 0;
}

void
mcp_calls_free(struct mcp_calls *o)
{
        struct call *c, *next;

        if (!o)
                return;
        for (c = o->head; c; c = next) {
                next = c->next;
                c->owner = NULL;
                c->prev = c->next = NULL;
                c->cancelled = true;
                if (c->hw)
                        hw_call_cancel(c->hw); /* may end (and free) c at once */
        }
        free(o);
}

size_t
mcp_calls_count(const struct mcp_calls *o)
{
        return o ? o->count : 0;
}

/* The call in flight with request id (received with ctx, when ids are unique per ctx only). */
static struct call *
find_call(const struct mcp_calls *o, const cJSON *id, void *ctx)
{
        for (struct call *c = o->head; c; c = c->next)
                if ((!o->host.ids_per_ctx || c->rq->ctx == ctx) && cJSON_Compare(c->rq->id, id, true))
                        return c;
        return NULL;
}

/* Answer rq at once with an isError result (no broker, no worker) and free rq. */
static int
respond_now(struct mcp_calls *o, struct mcp_request *rq, cJSON *result)
{
        size_t bytes;
        int r;

        if (!result)
                r = o->host.respond_error(o->host.userdata, rq, RPC_INTERNAL_ERROR,
                                          "Internal error: out of memory");
        else
                r = o->host.respond(o->host.userdata, rq, result, &bytes);
        mcp_request_free(rq);
        return r < 0 && r != -EPIPE ? r : 0;
}

/* Tell the broker that the host refused a call of tool for reason before asking it (it is
 * audited as tool-call-reject and counted in the run), with the digest of args (may be NULL). */
static void
audit_reject(struct mcp_calls *o, const char *tool, const char *reason, const cJSON *args)
{
        _cleanup_free_ char *text = args ? cJSON_PrintUnformatted(args) : NULL;
        int r = hb_call_reject_async(o->host.broker, o->host.run, tool, reason, text);

        /* A client flooding refused calls must not flood the log too: the first failure, then
         * every 1000th. */
        if (r < 0 && o->reject_failures++ % 1000 == 0)
                log_warning("call-reject (%s) at the broker failed: %s (%" PRIu64 " so far)", reason,
                            strerror(-r), o->reject_failures);
}

static int reject(struct mcp_calls *o, struct mcp_request *rq, int code, const char *fmt, ...)
        AB_PRINTF(4, 5);

/* Answer rq with a JSON-RPC error and free rq. */
static int
reject(struct mcp_calls *o, struct mcp_request *rq, int code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                msg = NULL;
        r = o->host.respond_error(o->host.userdata, rq, code, msg ? msg : "Internal error");
        mcp_request_free(rq);
        return r < 0 && r != -EPIPE ? r : 0;
}

int
mcp_calls_start(struct mcp_calls *o, struct mcp_request *rq, const cJSON *params)
{
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
        const struct hw_tool *tool;
        _cleanup_free_ char *err = NULL;
        struct call *c;
        int r;

        if (!cJSON_IsString(name)) {
                audit_reject(o, "(no name)", "invalid-params", args);
                return reject(o, rq, RPC_INVALID_PARAMS,
                              "Invalid params: params.name must be the tool name (a string)");
        }
        if (args && !cJSON_IsObject(args) && !cJSON_IsNull(args)) {
                audit_reject(o, name->valuestring, "invalid-params", args);
                return reject(o, rq, RPC_INVALID_PARAMS,
                              "Invalid params: params.arguments must be an object");
        }
        tool = hw_tool_find(o->host.registry, name->valuestring);
        if (!tool) {
                audit_reject(o, name->valuestring, "unknown-tool", args);
                return reject(o, rq, RPC_INVALID_PARAMS, "Unknown tool: %.*s",
                              AB_UTF8_CUT(name->valuestring, 200));
        }
        /* cJSON cuts a string at an escaped NUL: the tool would get a shorter value than the
         * client sent (a path "a\u0000/../b" would become "a"). Refuse such arguments. */
        if (rq->has_nul) {
                audit_reject(o, tool->name, "args-nul", args);
                return respond_now(o, rq,
                                   error_result("Invalid arguments for %s: strings must not contain NUL "
                                                "characters (\\u0000). Nothing was run.",
                                                tool->name));
        }
        if (find_call(o, rq->id, rq->ctx)) {
                _cleanup_free_ char *idt = id_text(rq);
                audit_reject(o, tool->name, "duplicate-id", args);
                return reject(o, rq, RPC_INVALID_REQUEST,
                              "Invalid Request: request id %.*s is already used by a call in flight",
                              AB_UTF8_CUT(idt ? idt : "?", 100));
        }
        if (o->count >= MCP_INFLIGHT_MAX) {
                audit_reject(o, tool->name, "too-many-calls", args);
                log_warning("%s: refused, %zu calls in flight", tool->name, o->count);
                return respond_now(o, rq,
                                   not_run(error_result("%s was not run: too many calls in flight (%d). "
                                                        "Wait for some to finish and retry.",
                                                        tool->name, MCP_INFLIGHT_MAX)));
        }

        c = calloc(1, sizeof *c);
        if (!c) {
                mcp_request_free(rq);
                return -ENOMEM;
        }
        c->rq = rq;
        c->tool = tool;
        c->broker = o->host.broker;
        c->args = args && cJSON_IsObject(args) ? cJSON_Duplicate(args, true) : cJSON_CreateObject();
        if (!c->args) {
                call_free(c);
                return -ENOMEM;
        }
        r = hs_schema_validate(tool->input, c->args, "arguments", &err);
        if (r == -EINVAL) {
                audit_reject(o, tool->name, "invalid-args", c->args);
                log_info("%s: invalid arguments: %s", tool->name, err ? err : "?");
                c->rq = NULL;
                call_free(c);
                return respond_now(o, rq,
                                   error_result("Invalid arguments for %s: %s. Nothing was run; fix the "
                                                "arguments (see the tool's inputSchema) and call again.",
                                                tool->name,
                                                err ? err : "they do not match the input schema"));
        }
        if (r < 0) {
                call_free(c);
                return r;
        }
        c->args_text = cJSON_PrintUnformatted(c->args);
        if (!c->args_text) {
                call_free(c);
                return -ENOMEM;
        }
        o->host.limits(o->host.userdata, tool->name, &c->max_bytes, &c->timeout_ms);

        c->owner = o;
        c->next = o->head;
        if (o->head)
                o->head->prev = c;
        o->head = c;
        o->count++;

        c->starting = true;
        r = hw_call_start(o->host.registry, tool->name, &call_ops, c, &c->hw);
        c->starting = false;
        if (r < 0) {
                cJSON *res;
                call_unlink(c);
                audit_reject(o, tool->name, r == -EAGAIN ? "queue-full" : "no-worker", c->args);
                if (r == -EAGAIN)
                        res = not_run(
                                error_result("%s was not run: the module's call queue is full (%d waiting). "
                                             "Retry later.",
                                             tool->name, HW_QUEUE_MAX));
                else
                        res = not_run(error_result("%s was not run: no worker could be reserved (%s).",
                                                   tool->name, strerror(-r)));
                rq = AB_TAKE_PTR(c->rq);
                call_free(c);
                r = respond_now(o, rq, res);
                if (o->count == 0 && o->host.idle)
                        o->host.idle(o->host.userdata);
                return r;
        }
        if (c->done_pending) {
                cJSON *res = AB_TAKE_PTR(c->pending_result);
                call_finish(c, res, c->pending_failure_oom ? "crashed" : c->pending_failure,
                            c->pending_message);
        } else if (c->ready_pending)
                call_ready(c, c->ready_pid);
        return 0;
}

void
mcp_calls_cancel_in(struct mcp_calls *o, const cJSON *id, void *ctx)
{
        struct call *c = find_call(o, id, ctx);

        if (!c || c->cancelled)
                return;
        c->cancelled = true;
        log_debug("%s: cancelled by the client", c->tool->name);
        if (c->hw)
                hw_call_cancel(c->hw); /* done follows, possibly at once */
}

void
mcp_calls_cancel_ctx(struct mcp_calls *o, void *ctx)
{
        struct call *c, *next;

        for (c = o->head; c; c = next) {
                next = c->next;
                if (c->cancelled || c->rq->ctx != ctx)
                        continue;
                c->cancelled = true;
                log_debug("%s: cancelled: the client's stream closed", c->tool->name);
                if (c->hw)
                        hw_call_cancel(c->hw);
        }
}

void
mcp_calls_cancel_all(struct mcp_calls *o)
{
        struct call *c, *next;

        for (c = o->head; c; c = next) {
                next = c->next;
                if (c->cancelled)
                        continue;
                c->cancelled = true;
                if (c->hw)
                        hw_call_cancel(c->hw);
        }
}
