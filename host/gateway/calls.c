/* SPDX-License-Identifier: MIT */
/* The gateway's calls: the tools of the MCP servers of policy run for the registry as
 * external tools (host/workers/external.c), with their timeouts and results. */
#include "config.h"

#include "host/gateway/internal.h"

/* ---------- calls ---------- */

static void
call_unlink_free(struct gw_call *k)
{
        struct gw_server *s = k->s;

        if (k->prev)
                k->prev->next = k->next;
        else
                s->calls = k->next;
        if (k->next)
                k->next->prev = k->prev;
        s->n_calls--;
        sd_event_source_disable_unref(k->timer);
        hw_external_set_data(k->hc, NULL);
        free(k);
}

/* End call k with result (consumed) or failure, and free it. */
void
gw_call_end(struct gw_call *k, cJSON *result, const char *failure, const char *message)
{
        struct hw_call *hc = k->hc;
        struct gw_server *s = k->s;

        if (k->sent && s->mc)
                mc_forget(s->mc, k->rpc_id);
        call_unlink_free(k);
        hw_external_done(hc, result, failure, message);
}

/* The server is ready: the calls waiting for it may go to the broker. */
void
gw_calls_release(struct gw_server *s)
{
        for (struct gw_call *k = s->calls; k; k = k->next)
                if (!k->ready) {
                        k->ready = true;
                        hw_external_ready(k->hc, s->pid);
                }
}

/* An isError CallToolResult with text. NULL on OOM. */
static cJSON *
error_result(const char *text)
{
        cJSON *r = cJSON_CreateObject();
        cJSON *content = r ? cJSON_AddArrayToObject(r, "content") : NULL;
        cJSON *b = content ? cJSON_CreateObject() : NULL;

        if (!b || !cJSON_AddItemToArray(content, b)) {
                cJSON_Delete(b);
                cJSON_Delete(r);
                return NULL;
        }
        if (!cJSON_AddStringToObject(b, "type", "text") || !cJSON_AddStringToObject(b, "text", text) ||
            !cJSON_AddBoolToObject(r, "isError", true)) {
                cJSON_Delete(r);
                return NULL;
        }
        return r;
}

/* The server's answer to a tools/call: a CallToolResult (only content, structuredContent and
 * isError are kept), or an isError result of ours quoting its JSON-RPC error or saying the
 * result is malformed. The server's secrets are remembered for redaction first. */
static void
on_call_response(void *userdata, int r, cJSON *result, const cJSON *error)
{
        struct gw_call *k = userdata;
        struct gw_server *s = k->s;
        char text[512];

        k->sent = false; /* answered: nothing to forget */
        if (r < 0) {
                /* The connection died: server_down() ends the call with the reason. */
                k->sent = true;
                return;
        }
        s->timeouts_in_row = 0;
        if (error) {
                const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
                const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");

                snprintf(text, sizeof text,
                         "The %s server answered the call with a JSON-RPC error %d: %.300s", s->name,
                         cJSON_IsNumber(code) ? code->valueint : 0,
                         cJSON_IsString(msg) ? msg->valuestring : "(no message)");
                gw_call_end(k, error_result(text), NULL, NULL);
                return;
        }
        if (!cJSON_IsObject(result) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(result, "content"))) {
                cJSON_Delete(result);
                snprintf(text, sizeof text,
                         "The %s server returned a malformed result (not an object with a "
                         "content array).",
                         s->name);
                gw_call_end(k, error_result(text), NULL, NULL);
                return;
        }
        /* Only what a CallToolResult carries goes on. */
        for (cJSON *m = result->child, *next; m; m = next) {
                next = m->next;
                if (strcmp(m->string, "content") != 0 && strcmp(m->string, "structuredContent") != 0 &&
                    strcmp(m->string, "isError") != 0)
                        cJSON_Delete(cJSON_DetachItemViaPointer(result, m));
        }
        gw_call_end(k, result, NULL, NULL);
}

/* A call outlived its timeout: the server is told to cancel it and it ends as "timeout"; a
 * server whose calls time out GW_HUNG_TIMEOUTS times in a row is killed (and restarted). */
static int
on_call_timeout(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct gw_call *k = userdata;
        struct gw_server *s = k->s;
        cJSON *p = cJSON_CreateObject();

        if (p && cJSON_AddNumberToObject(p, "requestId", (double)k->rpc_id) &&
            cJSON_AddStringToObject(p, "reason", "timeout"))
                (void)mc_notify(s->mc, "notifications/cancelled", p);
        else
                cJSON_Delete(p);
        log_warning("server %s: a call timed out", s->name);
        gw_call_end(k, NULL, "timeout", "the server did not answer within the call's timeout");
        if (++s->timeouts_in_row >= GW_HUNG_TIMEOUTS && s->pid > 0) {
                log_warning("server %s: %u calls in a row timed out: killing it (it is restarted)", s->name,
                            s->timeouts_in_row);
                (void)kill(s->pid, SIGKILL);
        }
        return 0;
}

/* ---------- the registry's external provider ---------- */

static struct gw_server *
find_server(struct gateway *gw, const char *name)
{
        for (size_t i = 0; i < gw->n_servers; i++)
                if (strcmp(gw->servers[i]->name, name) == 0)
                        return gw->servers[i];
        return NULL;
}

/* The registry starts a call of one of our tools: it is ready at once when its server is, waits
 * while it starts (a lazy or restarting one is started), or ends at once ("unavailable") while
 * the server waits for its restart or has failed. Returns 0 or -EAGAIN/-ENOMEM. */
static int
ext_start(void *userdata, struct hw_call *hc, const char *module, const char *tool)
{
        struct gateway *gw = userdata;
        struct gw_server *s = find_server(gw, module);
        struct gw_call *k;

        if (!s) {
                hw_external_done(hc, NULL, "unavailable", "no such server");
                return 0;
        }
        if (s->n_calls >= GW_CALLS_MAX)
                return -EAGAIN;
        /* Down and not yet reaped, or waiting for its restart. */
        if (s->state == S_FAILED || (s->state == S_STOPPED && (s->timer || s->pid > 0))) {
                char msg[256];

                snprintf(msg, sizeof msg, "the %s server %s", s->name,
                         s->state == S_FAILED ? "is unavailable (it failed to start; see the host's log)"
                                              : "is restarting after a failure; retry in a few seconds");
                hw_external_done(hc, NULL, "unavailable", msg);
                return 0;
        }
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->s = s;
        k->hc = hc;
        k->token = ++gw->next_token;
        k->next = s->calls;
        if (s->calls)
                s->calls->prev = k;
        s->calls = k;
        s->n_calls++;
        hw_external_set_data(hc, k);
        /* The server's secrets may come back in what it says: its result, progress and error
         * messages are redacted with them (host/workers/). */
        hw_external_set_redactor(hc, s->redactor);
        if (s->state == S_STOPPED)
                (void)gw_server_start(s);
        if (s->state == S_READY) {
                k->ready = true;
                hw_external_ready(hc, s->pid);
        }
        return 0;
}

/* Send the call (the broker began it) to its server as tools/call with our progress token, and
 * arm its timeout. Returns 0, or -errno (the call is forgotten here; the registry ends it). */
static int
ext_send(void *userdata, struct hw_call *hc, const cJSON *args, size_t max_bytes, unsigned timeout_ms)
{
        struct gw_call *k = hw_external_data(hc);
        struct gw_server *s;
        cJSON *p, *meta;
        int r;

        if (!k)
                return -EINVAL;
        s = k->s;
        r = -ECONNRESET;
        if (s->state != S_READY || !mc_alive(s->mc))
                goto fail;
        r = -ENOMEM;
        p = cJSON_CreateObject();
        meta = p ? cJSON_AddObjectToObject(p, "_meta") : NULL;
        if (!meta || !cJSON_AddStringToObject(p, "name", hw_external_tool(hc)) ||
            !cJSON_AddItemToObject(p, "arguments",
                                   args ? cJSON_Duplicate(args, true) : cJSON_CreateObject()) ||
            !cJSON_AddNumberToObject(meta, "progressToken", (double)k->token)) {
                cJSON_Delete(p);
                goto fail;
        }
        r = sd_event_add_time_relative(s->gw->event, &k->timer, CLOCK_MONOTONIC, (uint64_t)timeout_ms * 1000,
                                       10000, on_call_timeout, k);
        if (r < 0) {
                cJSON_Delete(p);
                goto fail;
        }
        r = mc_request(s->mc, "tools/call", p, on_call_response, k, &k->rpc_id);
        if (r < 0)
                goto fail;
        k->sent = true;
        return 0;
fail:
        /* The registry ends the call ("crashed"): forget it here. */
        call_unlink_free(k);
        return r;
}

/* The client cancelled the call, or the broker denied it (aborted: never sent): a sent call is
 * cancelled at the server (notifications/cancelled); either way it ends now. */
static void
ext_stop(void *userdata, struct hw_call *hc, bool aborted)
{
        struct gw_call *k = hw_external_data(hc);

        if (!k) {
                hw_external_done(hc, NULL, aborted ? "aborted" : "cancelled", "the call was stopped");
                return;
        }
        if (k->sent) {
                cJSON *p = cJSON_CreateObject();

                if (p && cJSON_AddNumberToObject(p, "requestId", (double)k->rpc_id) &&
                    cJSON_AddStringToObject(p, "reason", "cancelled by the client"))
                        (void)mc_notify(k->s->mc, "notifications/cancelled", p);
                else
                        cJSON_Delete(p);
        }
        gw_call_end(k, NULL, aborted ? "aborted" : "cancelled",
                    aborted ? "the call was not sent to the server" : "the call was cancelled");
}

static bool
not_starting(void *userdata)
{
        const struct gw_server *s = userdata;

        return s->state != S_STARTING;
}

/* Wait (blocking, bounded by its start timeout) until a starting server is ready or has
 * failed; one that does not answer in time is killed (and restarted with backoff). */
void
gw_server_wait_started(struct gw_server *s)
{
        if (s->state != S_STARTING || !s->mc)
                return;
        if (mc_wait(s->mc, s->started_usec + (uint64_t)s->start_timeout_ms * 1000, not_starting, s) ==
            -ETIMEDOUT) {
                log_error("server %s: no answer to initialize and tools/list within %u ms", s->name,
                          s->start_timeout_ms);
                (void)kill(s->pid, SIGKILL);
        }
}

/* Start what starts lazily and wait for it (bounded by its start timeout). */
static void
ext_want(void *userdata)
{
        struct gateway *gw = userdata;

        for (size_t i = 0; i < gw->n_servers; i++) {
                struct gw_server *s = gw->servers[i];

                if (!s->lazy || s->state != S_STOPPED || s->timer || s->pid > 0 || s->started_usec)
                        continue;
                if (gw_server_start(s) == 0)
                        gw_server_wait_started(s);
        }
}

const struct hw_external_ops gw_ext_ops = {
        .start = ext_start,
        .send = ext_send,
        .stop = ext_stop,
        .want = ext_want,
};
