/* SPDX-License-Identifier: MIT */
/* The module registry: creation and teardown, the tool table's lookups, the deferred
 * source that delivers completions outside of the owner's own calls, and the counts. host/workers/workers.h. */
#include "config.h"

#include "host/workers/internal.h"

void
hw_registry_schedule(struct hw_registry *reg)
{
        if (reg->defer && !reg->freeing)
                (void)sd_event_source_set_enabled(reg->defer, SD_EVENT_ONESHOT);
}

/* Call done for every call whose completion was deferred, in order, and free them. */
static void
registry_deliver_finished(struct hw_registry *reg)
{
        while (reg->finishing_head) {
                struct hw_call *c = reg->finishing_head;

                hw_clist_remove(&reg->finishing_head, &reg->finishing_tail, NULL, c);
                hw_call_done(c, AB_TAKE_PTR(c->result), c->failure, c->message ? c->message : c->failure);
                hw_call_free(c);
        }
}

/* The deferred source: deliver pending completions, then dispatch modules. */
static int
registry_defer_handler(sd_event_source *s, void *userdata)
{
        struct hw_registry *reg = userdata;

        registry_deliver_finished(reg);
        for (size_t i = 0; i < reg->n_modules; i++)
                if (reg->modules[i]->dispatch_pending)
                        hw_module_dispatch(reg->modules[i]);
        return 0;
}

/* ---------- registry ---------- */

int
hw_registry_new(sd_event *event, const char *worker_path, const char *broker_path, hw_config_fn config,
                void *config_userdata, struct hw_registry **ret)
{
        struct hw_registry *reg;
        sigset_t ss;
        int k;

        if (!event || !worker_path || !ret)
                return -EINVAL;
        /* sd_event_add_child needs SIGCHLD blocked; workers get an empty mask at spawn. */
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        reg = calloc(1, sizeof(*reg));
        if (!reg)
                return -ENOMEM;
        reg->event = sd_event_ref(event);
        /* Absolute: a worker starts with its cwd at the sandbox's root. */
        if (worker_path[0] != '/') {
                char cwd[PATH_MAX];

                reg->worker_path =
                        getcwd(cwd, sizeof(cwd)) ? hw_strdup_printf("%s/%s", cwd, worker_path) : NULL;
        } else
                reg->worker_path = strdup(worker_path);
        reg->broker_path = broker_path ? strdup(broker_path) : NULL;
        reg->config = config;
        reg->config_userdata = config_userdata;
        if (!reg->worker_path || (broker_path && !reg->broker_path)) {
                hw_registry_free(reg);
                return -ENOMEM;
        }
        k = sd_event_add_defer(event, &reg->defer, registry_defer_handler, reg);
        if (k < 0) {
                hw_registry_free(reg);
                return k;
        }
        (void)sd_event_source_set_enabled(reg->defer, SD_EVENT_OFF);
        *ret = reg;
        return 0;
}

int
hw_registry_set_egress(struct hw_registry *reg, const char *egress_path)
{
        char *p = egress_path ? strdup(egress_path) : NULL;

        if (egress_path && !p)
                return -ENOMEM;
        free(reg->egress_path);
        reg->egress_path = p;
        return 0;
}

void
hw_registry_free(struct hw_registry *reg)
{
        if (!reg)
                return;
        reg->freeing = true;
        reg->defer = sd_event_source_disable_unref(reg->defer);

        /* Completions already decided go out as decided. */
        registry_deliver_finished(reg);

        for (size_t i = 0; i < reg->n_modules; i++) {
                struct hw_module *m = reg->modules[i];

                m->unavailable = true;
                hw_module_fail_queue(m, "stopped", "the host is stopping");
                while (m->workers) {
                        struct hw_worker *w = m->workers;
                        struct hw_call *c = w->call;
                        pid_t pid = w->pid;

                        hw_worker_unlink(w);
                        if (pid > 0)
                                (void)kill(pid, SIGKILL);
                        w->child = sd_event_source_disable_unref(w->child);
                        if (pid > 0)
                                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                                        ;
                        w->call = NULL;
                        while (w->bound_head)
                                hw_call_finish_now(w->bound_head, NULL, "stopped", "the host is stopping");
                        hw_worker_free(w);
                        if (c) {
                                c->w = NULL;
                                hw_call_finish_now(c, NULL, "stopped", "the host is stopping");
                        }
                }
        }
        /* Calls that done callbacks above cancelled or aborted. */
        registry_deliver_finished(reg);
        for (size_t i = 0; i < reg->n_tools; i++)
                hw_tool_entry_free(reg->tools[i]);
        free(reg->tools);
        for (size_t i = 0; i < reg->n_modules; i++)
                hw_module_free(reg->modules[i]);
        free(reg->modules);
        free(reg->worker_path);
        free(reg->broker_path);
        if (reg->own_sb)
                hs_sandbox_free(reg->sb);
        free(reg->egress_path);
        sd_event_unref(reg->event);
        free(reg);
}

void
hw_registry_set_sandbox(struct hw_registry *reg, struct hs_sandbox *sb)
{
        if (reg->own_sb)
                hs_sandbox_free(reg->sb);
        reg->sb = sb;
        reg->own_sb = false;
}

size_t
hw_tools_count(const struct hw_registry *reg)
{
        return reg ? reg->n_tools : 0;
}

const struct hw_tool *
hw_tool_at(const struct hw_registry *reg, size_t i)
{
        if (!reg || i >= reg->n_tools)
                return NULL;
        return &reg->tools[i]->pub;
}

static int
tool_name_cmp(const void *key, const void *elem)
{
        const struct tool_entry *const *t = elem;

        return strcmp(key, (*t)->pub.name);
}

const struct hw_tool *
hw_tool_find(const struct hw_registry *reg, const char *name)
{
        struct tool_entry **t;

        if (!reg || !name || reg->n_tools == 0)
                return NULL;
        t = bsearch(name, reg->tools, reg->n_tools, sizeof(*reg->tools), tool_name_cmp);
        return t ? &(*t)->pub : NULL;
}

size_t
hw_registry_workers(const struct hw_registry *reg, pid_t *pids, size_t max)
{
        size_t n = 0;

        if (!reg)
                return 0;
        for (size_t i = 0; i < reg->n_modules; i++)
                for (const struct hw_worker *w = reg->modules[i]->workers; w; w = w->next) {
                        if (w->state == W_DYING || w->pid <= 0)
                                continue;
                        if (pids && n >= max)
                                return n;
                        if (pids)
                                pids[n] = w->pid;
                        n++;
                }
        return n;
}

void
hw_registry_want(struct hw_registry *reg)
{
        if (reg && reg->ext.want && !reg->freeing)
                reg->ext.want(reg->ext_userdata);
}

uint64_t
hw_registry_generation(const struct hw_registry *reg)
{
        return reg ? reg->generation : 0;
}

bool
hw_registry_has_module(const struct hw_registry *reg, const char *name)
{
        for (size_t i = 0; reg && name && i < reg->n_modules; i++)
                if (strcmp(reg->modules[i]->name, name) == 0)
                        return true;
        return false;
}
