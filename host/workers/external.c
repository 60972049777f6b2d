/* SPDX-License-Identifier: MIT */
/* External modules (the gateway's MCP servers): a module whose calls another component
 * runs, seen by the registry like a module of workers. */
#include "config.h"

#include "host/workers/internal.h"

/* ---------- external tools (host/gateway/gateway.c) ---------- */

/* A call of an external tool: the provider reserves (ready), runs and ends it. */
int
hw_external_start(struct hw_call *c)
{
        struct hw_registry *reg = c->reg;
        int k;

        c->state = C_QUEUED;
        if (!reg->ext.start) {
                hw_call_fail_later(c, "unavailable", "the %s server is not served", c->m->name);
                return 0;
        }
        k = reg->ext.start(reg->ext_userdata, c, c->m->name, c->tool->bare);
        if (k < 0) {
                c->tool->refs--;
                free(c);
                return k;
        }
        return 0;
}

int
hw_external_send(struct hw_call *c, const cJSON *args, size_t max_bytes, unsigned timeout_ms)
{
        struct hw_registry *reg = c->reg;
        int k;

        if (c->state != C_RESERVED || (args && !cJSON_IsObject(args)))
                return -EINVAL;
        c->state = C_RUNNING;
        c->timeout_ms = timeout_ms ? timeout_ms : HW_DEFAULT_TIMEOUT_MS;
        k = reg->ext.send(reg->ext_userdata, c, args, max_bytes, c->timeout_ms);
        if (k < 0)
                hw_external_done(c, NULL, "crashed", "the call could not be sent to the server");
        return k;
}

/* Abort (not sent) or cancel (sent) an external call: the provider ends it with done. */
void
hw_external_stop(struct hw_call *c)
{
        struct hw_registry *reg = c->reg;

        if (c->state == C_FINISHING || c->state == C_CANCELLING)
                return;
        if (c->state == C_RUNNING)
                c->state = C_CANCELLING;
        reg->ext.stop(reg->ext_userdata, c, c->state != C_CANCELLING);
}

int
hw_registry_set_external(struct hw_registry *reg, const struct hw_external_ops *ops, void *userdata)
{
        if (!reg)
                return -EINVAL;
        if (ops)
                reg->ext = *ops;
        else
                memset(&reg->ext, 0, sizeof(reg->ext));
        reg->ext_userdata = ops ? userdata : NULL;
        return 0;
}

/* The pseudo-module that holds the external tools of name, created on first use. */
static struct hw_module *
external_module(struct hw_registry *reg, const char *name)
{
        struct hw_module *m, **nm;

        for (size_t i = 0; i < reg->n_modules; i++)
                if (strcmp(reg->modules[i]->name, name) == 0)
                        return reg->modules[i]->external ? reg->modules[i] : NULL;
        nm = realloc(reg->modules, (reg->n_modules + 1) * sizeof(*nm));
        if (!nm)
                return NULL;
        reg->modules = nm;
        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->reg = reg;
        m->fd = -1;
        m->external = true;
        m->name = strdup(name);
        m->path = hw_strdup_printf("server %s", name);
        if (!m->name || !m->path) {
                hw_module_free(m);
                return NULL;
        }
        reg->modules[reg->n_modules++] = m;
        return m;
}

int
hw_external_set_tools(struct hw_registry *reg, const char *name, const cJSON *tools, size_t *ret_served)
{
        struct tool_entry **v = NULL, **keep;
        struct hw_module *m;
        const cJSON *item;
        size_t n = 0, k = 0;
        int ret;

        if (!reg || !name || (tools && !cJSON_IsArray(tools)) || !ab_name_valid(name, AB_MODULE_NAME_MAX, 0))
                return -EINVAL;
        m = external_module(reg, name);
        if (!m)
                return -ENOMEM;
        v = calloc((size_t)cJSON_GetArraySize(tools) + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        cJSON_ArrayForEach(item, tools)
        {
                struct tool_entry *t = NULL;
                char *err = NULL;
                bool dup = false;

                ret = hw_tool_from_hello(m, item, &t, &err);
                if (ret == -EINVAL) {
                        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(item, "name");

                        log_warning("%s: refusing tool %.64s: %s", m->path,
                                    cJSON_IsString(nm) ? nm->valuestring : "(unnamed)",
                                    err ? err : "invalid");
                        free(err);
                        continue;
                }
                if (ret < 0)
                        goto fail;
                for (size_t i = 0; i < n; i++)
                        dup = dup || strcmp(v[i]->pub.name, t->pub.name) == 0;
                if (dup || (hw_tool_find(reg, t->pub.name) &&
                            ((struct tool_entry *)hw_tool_find(reg, t->pub.name))->m != m)) {
                        log_warning("%s: refusing tool %s: a tool of that name is served already", m->path,
                                    t->pub.name);
                        hw_tool_entry_free(t);
                        continue;
                }
                t->m = m;
                v[n++] = t;
        }
        keep = realloc(reg->tools, (reg->n_tools + n + 1) * sizeof(*keep));
        if (!keep) {
                ret = -ENOMEM;
                goto fail;
        }
        reg->tools = keep;
        /* Retire the module's old tools (freed once no call holds them), add the new ones. */
        for (size_t i = 0; i < reg->n_tools; i++) {
                struct tool_entry *t = reg->tools[i];

                if (t->m != m)
                        reg->tools[k++] = t;
                else if (t->refs == 0)
                        hw_tool_entry_free(t);
                else
                        t->retired = true;
        }
        memcpy(reg->tools + k, v, n * sizeof(*v));
        reg->n_tools = k + n;
        qsort(reg->tools, reg->n_tools, sizeof(*reg->tools), hw_tool_cmp);
        reg->generation++;
        free(v);
        if (ret_served)
                *ret_served = n;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                hw_tool_entry_free(v[i]);
        free(v);
        return ret;
}

void
hw_external_ready(struct hw_call *c, pid_t pid)
{
        if (!c || c->state != C_QUEUED)
                return;
        c->state = C_RESERVED;
        if (c->ops.ready)
                c->ops.ready(c->userdata, pid);
}

void
hw_external_progress(struct hw_call *c, double progress, double total, const char *message)
{
        _cleanup_free_ char *red = NULL;
        struct hs_redact_stats st = { 0 };

        if (!c || c->state != C_RUNNING || !c->ops.progress)
                return;
        if (message && hs_redact_text_stats(c->ext_redactor, message, &red, &st) < 0)
                return; /* no memory to redact it: not sent */
        hw_call_note_redactions(c, c->ext_redactor, &st);
        c->ops.progress(c->userdata, progress, total, red ? red : message);
}

void
hw_external_set_redactor(struct hw_call *c, const struct hs_redactor *red)
{
        if (c)
                c->ext_redactor = red;
}

void
hw_external_done(struct hw_call *c, cJSON *result, const char *failure, const char *message)
{
        static const char *const failures[] = { "crashed", "timeout", "garbage",    "cancelled",
                                                "aborted", "stopped", "unavailable" };
        _cleanup_free_ char *red = NULL;
        const char *f = NULL;

        if (!c || c->state == C_FINISHING) {
                cJSON_Delete(result);
                return;
        }
        for (size_t i = 0; failure && i < AB_ELEMENTSOF(failures); i++)
                if (strcmp(failure, failures[i]) == 0)
                        f = failures[i];
        if (failure && !f)
                f = "crashed";
        if (c->state == C_CANCELLING && f && strcmp(f, "aborted") != 0)
                f = "cancelled";
        if (c->ext_redactor) {
                /* The provider's output is redacted like a worker's: the result, and the
                 * message (it may quote what the provider said). Fails closed. */
                struct hs_redact_stats st = { 0 };

                if ((result && hs_redact_result(result, c->ext_redactor, &st) < 0) ||
                    (message && hs_redact_text_stats(c->ext_redactor, message, &red, &st) < 0)) {
                        cJSON_Delete(result);
                        result = NULL;
                        f = "crashed";
                        message = "its output could not be redacted (out of memory)";
                } else {
                        hw_call_note_redactions(c, c->ext_redactor, &st);
                        if (red)
                                message = red;
                }
        }
        c->result = result;
        /* Delivered on the deferred source, never inside the provider's or the owner's call. */
        hw_call_fail_later(c, f, "%s", message ? message : f ? f : "");
        if (!f)
                c->failure = NULL;
}

void *
hw_external_data(const struct hw_call *c)
{
        return c ? c->ext_data : NULL;
}

void
hw_external_set_data(struct hw_call *c, void *data)
{
        if (c)
                c->ext_data = data;
}

const char *
hw_external_tool(const struct hw_call *c)
{
        return c ? c->tool->bare : NULL;
}
