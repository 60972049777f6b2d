/* SPDX-License-Identifier: MIT */
/* The MCP gateway (host/gateway/gateway.h): server processes' lifecycle, their MCP client
 * sessions, tool lists, restarts with backoff. */
#include "config.h"

#include "host/gateway/internal.h"

static void server_down(struct gw_server *s, const char *why);
static void server_retry_later(struct gw_server *s, const char *why);
static void server_list_tools(struct gw_server *s, const char *cursor);

static int on_child(sd_event_source *src, const siginfo_t *si, void *userdata);
static int on_start_timeout(sd_event_source *src, uint64_t usec, void *userdata);

/* Whether policy's allow-list of s names tool. */
static bool
allowed(const struct gw_server *s, const char *tool)
{
        const cJSON *t;

        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(
                                      s->cfg, "tools")) if (cJSON_IsString(t) &&
                                                            strcmp(t->valuestring, tool) == 0) return true;
        return false;
}

/* Whether a tool's description (serialized) is at most GW_TOOL_DESC_MAX bytes: every
 * tools/list of the host carries it. */
static bool
descriptor_fits(const cJSON *tool)
{
        char *text = cJSON_PrintUnformatted(tool);
        bool fits = text && strlen(text) <= GW_TOOL_DESC_MAX;

        cJSON_free(text);
        return fits;
}

/* The tools of a finished listing: keep the allowed ones, hand them to the registry. */
static void
server_listed(struct gw_server *s)
{
        cJSON *keep = cJSON_CreateArray(), *t, *next;
        const cJSON *want;
        size_t offered = (size_t)cJSON_GetArraySize(s->listing), served = 0;
        int r;

        if (!keep) {
                server_down(s, "out of memory");
                return;
        }
        for (t = s->listing->child; t; t = next) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");

                next = t->next;
                if (!cJSON_IsString(name) || !allowed(s, name->valuestring))
                        continue;
                /* Its outputSchema is not served: a result cut to the tool's cap (as module results
                 * are) could not stay valid against it. structuredContent still passes, and is
                 * dropped when it does not fit. */
                cJSON_DeleteItemFromObjectCaseSensitive(t, "outputSchema");
                if (!descriptor_fits(t)) {
                        log_warning("server %s: refusing tool %s: its description is larger than %d bytes",
                                    s->name, name->valuestring, GW_TOOL_DESC_MAX);
                        continue;
                }
                cJSON_AddItemToArray(keep, cJSON_DetachItemViaPointer(s->listing, t));
        }
        cJSON_ArrayForEach(want, cJSON_GetObjectItemCaseSensitive(s->cfg, "tools"))
        {
                bool found = false;

                cJSON_ArrayForEach(t, keep) found =
                        found || strcmp(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring,
                                        want->valuestring) == 0;
                if (!found)
                        log_warning("server %s: policy exposes tool %s, which the server does not offer",
                                    s->name, want->valuestring);
        }
        s->listing = (cJSON_Delete(s->listing), NULL);
        r = hw_external_set_tools(s->gw->registry, s->name, keep, &served);
        cJSON_Delete(keep);
        if (r < 0)
                log_error("server %s: cannot serve its tools: %s", s->name, strerror(-r));
        s->listed_usec = ab_now_us();
        if (s->state == S_STARTING) {
                s->state = S_READY;
                s->ready_usec = s->listed_usec;
                s->timer = sd_event_source_disable_unref(s->timer);
                log_info("server %s ready in %" PRIu64 " ms (pid %d): %zu of its %zu tools served", s->name,
                         (s->ready_usec - s->started_usec) / 1000, (int)s->pid, served, offered);
                gw_calls_release(s);
        } else
                log_info("server %s: tool list changed: %zu of its %zu tools served", s->name, served,
                         offered);
        if (s->list_again) {
                s->list_again = false;
                server_list_tools(s, NULL);
        }
}

/* A page of the server's tools/list: collect it, ask for the next (at most GW_LIST_PAGES_MAX),
 * then hand the allowed tools to the registry. A failed listing kills a starting server. */
static void
on_list_page(void *userdata, int r, cJSON *result, const cJSON *error)
{
        struct gw_server *s = userdata;
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(result, "tools");
        const cJSON *cursor = cJSON_GetObjectItemCaseSensitive(result, "nextCursor");
        cJSON *t;

        if (r < 0) {
                cJSON_Delete(result);
                return; /* the connection died: server_down() follows */
        }
        if (error || !cJSON_IsArray(tools)) {
                cJSON_Delete(result);
                log_error("server %s: tools/list failed: %s", s->name,
                          error ? "it answered with an error" : "the result has no tools array");
                s->listing = (cJSON_Delete(s->listing), NULL);
                if (s->state == S_STARTING && s->pid > 0)
                        (void)kill(s->pid, SIGKILL);
                return;
        }
        while ((t = tools->child)) {
                cJSON_DetachItemViaPointer((cJSON *)tools, t);
                if (cJSON_GetArraySize(s->listing) >= GW_TOOLS_MAX * 4) {
                        cJSON_Delete(t);
                        continue;
                }
                cJSON_AddItemToArray(s->listing, t);
        }
        if (cJSON_IsString(cursor) && cursor->valuestring[0] && ++s->pages < GW_LIST_PAGES_MAX) {
                server_list_tools(s, cursor->valuestring);
                cJSON_Delete(result);
                return;
        }
        if (cJSON_IsString(cursor) && cursor->valuestring[0])
                log_warning("server %s: more than %d pages of tools: the rest is ignored", s->name,
                            GW_LIST_PAGES_MAX);
        cJSON_Delete(result);
        server_listed(s);
}

/* Ask for (a page of) the server's tools. */
static void
server_list_tools(struct gw_server *s, const char *cursor)
{
        cJSON *p = NULL;
        int r;

        if (!cursor) {
                if (s->listing) {
                        s->list_again = true;
                        return;
                }
                s->listing = cJSON_CreateArray();
                s->pages = 0;
                if (!s->listing)
                        return;
        } else if (!(p = cJSON_CreateObject()) || !cJSON_AddStringToObject(p, "cursor", cursor)) {
                cJSON_Delete(p);
                return;
        }
        r = mc_request(s->mc, "tools/list", p, on_list_page, s, NULL);
        if (r < 0) {
                log_error("server %s: cannot ask for its tools: %s", s->name, strerror(-r));
                s->listing = (cJSON_Delete(s->listing), NULL);
        }
}

/* The answer to initialize: log what the server is, send notifications/initialized, list its
 * tools. An error kills it (it is restarted with backoff). */
static void
on_initialized(void *userdata, int r, cJSON *result, const cJSON *error)
{
        struct gw_server *s = userdata;
        const cJSON *version = cJSON_GetObjectItemCaseSensitive(result, "protocolVersion");
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(result, "serverInfo");
        const cJSON *iname = cJSON_GetObjectItemCaseSensitive(info, "name");
        const cJSON *iver = cJSON_GetObjectItemCaseSensitive(info, "version");

        if (r < 0) {
                cJSON_Delete(result);
                return;
        }
        if (error || !cJSON_IsString(version)) {
                log_error("server %s: initialize failed: %s", s->name,
                          error ? "it answered with an error" : "no protocolVersion in its answer");
                cJSON_Delete(result);
                if (s->pid > 0)
                        (void)kill(s->pid, SIGKILL);
                return;
        }
        log_info("server %s: %.64s %.32s, protocol %.32s", s->name,
                 cJSON_IsString(iname) ? iname->valuestring : "?",
                 cJSON_IsString(iver) ? iver->valuestring : "?", version->valuestring);
        cJSON_Delete(result);
        (void)mc_notify(s->mc, "notifications/initialized", NULL);
        server_list_tools(s, NULL);
}

/* A notification from the server: progress of one of our calls (by our token), list_changed
 * (list again), log messages (not forwarded); anything else is ignored. */
static void
on_notification(void *userdata, const char *method, const cJSON *params)
{
        struct gw_server *s = userdata;

        if (strcmp(method, "notifications/progress") == 0) {
                const cJSON *tok = cJSON_GetObjectItemCaseSensitive(params, "progressToken");
                const cJSON *prog = cJSON_GetObjectItemCaseSensitive(params, "progress");
                const cJSON *total = cJSON_GetObjectItemCaseSensitive(params, "total");
                const cJSON *msg = cJSON_GetObjectItemCaseSensitive(params, "message");

                if (!cJSON_IsNumber(tok) || !cJSON_IsNumber(prog))
                        return;
                for (struct gw_call *k = s->calls; k; k = k->next)
                        if (k->sent && (double)k->token == tok->valuedouble) {
                                hw_external_progress(k->hc, prog->valuedouble,
                                                     cJSON_IsNumber(total) ? total->valuedouble : 0,
                                                     cJSON_IsString(msg) ? msg->valuestring : NULL);
                                break;
                        }
        } else if (strcmp(method, "notifications/tools/list_changed") == 0) {
                if (s->state == S_READY)
                        server_list_tools(s, NULL);
        } else if (strcmp(method, "notifications/message") == 0) {
                log_debug("server %s: log message", s->name);
        }
}

static void
on_closed(void *userdata, const char *why)
{
        struct gw_server *s = userdata;

        server_down(s, why);
}

static const struct mc_client_ops client_ops = {
        .notification = on_notification,
        .closed = on_closed,
};

/* Start the server's process and its MCP session (initialize, then tools/list); the state is
 * S_STARTING until its tools are known. Returns 0 or -errno (logged; a restart is scheduled). */
int
gw_server_start(struct gw_server *s)
{
        struct gateway *gw = s->gw;
        const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(s->cfg, "cwd");
        _cleanup_free_ char **cmd = gw_server_cmd(s);
        struct hs_env env = {};
        int to_child[2] = { -1, -1 }, from_child[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
        cJSON *p = NULL, *info;
        int r;

        s->timer = sd_event_source_disable_unref(s->timer);
        if (s->pid > 0 || s->mc)
                return -EBUSY; /* the last process is not reaped yet: on_child restarts it */
        r = gw_server_fetch_secrets(s);
        if (r < 0) {
                server_retry_later(s, "its secrets could not be fetched from the broker");
                return r;
        }
        if (!cmd || gw_server_env(s, &env) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0 ||
            pipe2(err_pipe, O_CLOEXEC) < 0 || fcntl(err_pipe[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                goto fail;
        }
        gw_server_stderr_close(s); /* a previous process's, if it is still open */
        s->started_usec = ab_now_us();
        r = gw_spawn(gw, s->name, cJSON_IsString(cwd) ? cwd->valuestring : NULL, cmd, env.envp, &to_child[0],
                     &from_child[1], &err_pipe[1], &s->pid);
        hs_env_done(&env);
        if (r < 0)
                goto fail;
        close(to_child[0]);
        close(from_child[1]);
        close(err_pipe[1]);
        to_child[0] = from_child[1] = err_pipe[1] = -1;
        s->err_fd = AB_TAKE_FD(err_pipe[0]);
        if (sd_event_add_io(gw->event, &s->err_io, s->err_fd, EPOLLIN, gw_on_server_stderr, s) < 0) {
                log_warning("server %s: its stderr cannot be read; it is discarded", s->name);
                close(s->err_fd);
                s->err_fd = -1;
        }
        r = sd_event_add_child(gw->event, &s->child, s->pid, WEXITED, on_child, s);
        if (r < 0) {
                (void)kill(s->pid, SIGKILL);
                (void)waitpid(s->pid, NULL, 0);
                s->pid = 0;
                goto fail;
        }
        r = mc_client_new(gw->event, AB_TAKE_FD(from_child[0]), AB_TAKE_FD(to_child[1]), s->name,
                          &client_ops, s, &s->mc);
        if (r < 0) {
                (void)kill(s->pid, SIGKILL);
                return r; /* on_child schedules the restart */
        }
        s->state = S_STARTING;
        (void)sd_event_add_time_relative(gw->event, &s->timer, CLOCK_MONOTONIC,
                                         (uint64_t)s->start_timeout_ms * 1000, 10000, on_start_timeout, s);
        p = cJSON_CreateObject();
        if (!p || !cJSON_AddStringToObject(p, "protocolVersion", GW_PROTOCOL_VERSION) ||
            !cJSON_AddObjectToObject(p, "capabilities") ||
            !(info = cJSON_AddObjectToObject(p, "clientInfo")) ||
            !cJSON_AddStringToObject(info, "name", "agentbroker-mcp") ||
            !cJSON_AddStringToObject(info, "version", PACKAGE_VERSION)) {
                cJSON_Delete(p);
                (void)kill(s->pid, SIGKILL);
                return -ENOMEM;
        }
        r = mc_request(s->mc, "initialize", p, on_initialized, s, NULL);
        if (r < 0)
                (void)kill(s->pid, SIGKILL);
        log_debug("server %s: started, pid %d", s->name, (int)s->pid);
        return r;
fail:
        hs_env_done(&env);
        for (int i = 0; i < 2; i++) {
                if (to_child[i] >= 0)
                        close(to_child[i]);
                if (from_child[i] >= 0)
                        close(from_child[i]);
                if (err_pipe[i] >= 0)
                        close(err_pipe[i]);
        }
        log_error("server %s: cannot start %s: %s", s->name,
                  cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s->cfg, "command")), strerror(-r));
        server_retry_later(s, strerror(-r));
        return r;
}

/* The connection to the server died (or it exited): every call in flight ends with a clear
 * error. The restart is scheduled once the process is reaped (on_child). */
static void
server_down(struct gw_server *s, const char *why)
{
        char msg[512];

        if (s->state == S_STOPPED || s->state == S_FAILED)
                return;
        s->state = S_STOPPED;
        s->listing = (cJSON_Delete(s->listing), NULL);
        s->list_again = false;
        snprintf(msg, sizeof msg, "the %s server failed (%s); the host restarts it", s->name, why);
        while (s->calls) {
                struct gw_call *k = s->calls;

                if (k->sent)
                        gw_call_end(k, NULL, "crashed", msg);
                else
                        gw_call_end(k, NULL, "unavailable", msg);
        }
        if (s->pid > 0)
                (void)kill(s->pid, SIGKILL);
}

static int
on_restart(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct gw_server *s = userdata;

        s->timer = sd_event_source_disable_unref(s->timer);
        (void)gw_server_start(s);
        return 0;
}

static int
on_start_timeout(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct gw_server *s = userdata;

        s->timer = sd_event_source_disable_unref(s->timer);
        log_error("server %s: no answer to initialize and tools/list within %u ms", s->name,
                  s->start_timeout_ms);
        server_down(s, "it did not start in time");
        return 0;
}

/* The server's process exited (crash, kill, end): its calls end, its session is freed and the
 * restart is scheduled. */
static int
on_child(sd_event_source *src, const siginfo_t *si, void *userdata)
{
        struct gw_server *s = userdata;
        char why[96];

        if (si->si_code == CLD_EXITED)
                snprintf(why, sizeof why, "it exited with status %d", si->si_status);
        else
                snprintf(why, sizeof why, "it was killed by signal %d", si->si_status);
        s->child = sd_event_source_disable_unref(s->child);
        s->pid = 0;
        server_down(s, why);
        mc_client_free(AB_TAKE_PTR(s->mc));
        server_retry_later(s, why);
        return 0;
}

/* A start failed or the server went down (why): end the calls waiting for it and start it
 * again after the backoff, or give up after GW_START_FAILURES_MAX failures in a row. */
static void
server_retry_later(struct gw_server *s, const char *why)
{
        uint64_t now = ab_now_us(), backoff;
        char msg[256];

        snprintf(msg, sizeof msg, "the %s server could not be started (%s)", s->name, why);
        while (s->calls)
                gw_call_end(s->calls, NULL, "unavailable", msg);
        s->state = S_STOPPED;
        s->timer = sd_event_source_disable_unref(s->timer);
        if (s->ready_usec && now - s->ready_usec >= GW_STABLE_MS * 1000ull)
                s->failures = 0;
        s->ready_usec = 0;
        if (++s->failures >= GW_START_FAILURES_MAX) {
                log_error("server %s: %s; it failed %u times in a row and is not restarted", s->name, why,
                          s->failures);
                s->state = S_FAILED;
                return;
        }
        backoff = (uint64_t)GW_BACKOFF_MIN_MS << (s->failures - 1);
        if (backoff > GW_BACKOFF_MAX_MS)
                backoff = GW_BACKOFF_MAX_MS;
        log_warning("server %s: %s; restarting it in %" PRIu64 " ms", s->name, why, backoff);
        (void)sd_event_add_time_relative(s->gw->event, &s->timer, CLOCK_MONOTONIC, backoff * 1000, 10000,
                                         on_restart, s);
}

/* ---------- setup and teardown ---------- */

/* Stop a server at the host's exit: its calls end ("stopped"), its stdin closes, SIGTERM, then
 * SIGKILL after GW_STOP_GRACE_MS; its secrets are wiped. */
static void
server_free(struct gw_server *s)
{
        if (!s)
                return;
        while (s->calls)
                gw_call_end(s->calls, NULL, "stopped", "the host is stopping");
        mc_client_free(s->mc); /* its stdin closes: a server should exit now */
        s->child = sd_event_source_disable_unref(s->child);
        s->timer = sd_event_source_disable_unref(s->timer);
        gw_server_stderr_close(s);
        if (s->pid > 0) {
                uint64_t deadline = ab_now_us() + GW_STOP_GRACE_MS * 1000ull;
                bool gone = false;

                (void)kill(s->pid, SIGTERM);
                while (!gone && ab_now_us() < deadline) {
                        pid_t p = waitpid(s->pid, NULL, WNOHANG);

                        gone = p == s->pid || (p < 0 && errno != EINTR);
                        if (!gone)
                                (void)usleep(10000);
                }
                if (!gone) {
                        (void)kill(s->pid, SIGKILL);
                        (void)waitpid(s->pid, NULL, 0);
                }
        }
        gw_server_secrets_clear(s);
        hs_redactor_free(s->redactor);
        hl_lines_wipe(&s->err_lines);
        cJSON_Delete(s->listing);
        cJSON_Delete(s->cfg);
        free(s->name);
        free(s);
}

int
gw_new(sd_event *event, struct hw_registry *registry, struct hb_broker *broker, const char *run,
       const char *worker_path, const cJSON *servers, struct gateway **ret)
{
        struct gateway *gw;
        const cJSON *e;
        int r;

        if (!cJSON_IsObject(servers) || !servers->child) {
                *ret = NULL;
                return 0;
        }
        gw = calloc(1, sizeof(*gw));
        if (!gw)
                return -ENOMEM;
        gw->event = sd_event_ref(event);
        gw->registry = registry;
        gw->broker = broker;
        gw->run = strdup(run);
        gw->worker_path = strdup(worker_path);
        gw->servers = calloc(GW_SERVERS_MAX, sizeof(*gw->servers));
        if (!gw->run || !gw->worker_path || !gw->servers) {
                gw_free(gw);
                return -ENOMEM;
        }
        cJSON_ArrayForEach(e, servers)
        {
                struct gw_server *s;
                const cJSON *to = cJSON_GetObjectItemCaseSensitive(e, "start_timeout_ms");

                if (gw->n_servers >= GW_SERVERS_MAX) {
                        log_error("more than %d servers: server %s and the ones after it are not served",
                                  GW_SERVERS_MAX, e->string);
                        break;
                }
                if (hw_registry_has_module(registry, e->string)) {
                        log_error("server %s: a module of that name is loaded; the server is not served",
                                  e->string);
                        continue;
                }
                s = calloc(1, sizeof(*s));
                if (!s) {
                        gw_free(gw);
                        return -ENOMEM;
                }
                s->gw = gw;
                s->err_fd = -1;
                s->name = strdup(e->string);
                s->cfg = cJSON_Duplicate(e, true);
                s->lazy = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "start")) &&
                          strcmp(cJSON_GetObjectItemCaseSensitive(e, "start")->valuestring, "lazy") == 0;
                s->start_timeout_ms = cJSON_IsNumber(to) && to->valuedouble >= 1 && to->valuedouble <= 300000
                                              ? (unsigned)to->valuedouble
                                              : 10000;
                gw->servers[gw->n_servers++] = s;
                if (!s->name || !s->cfg) {
                        gw_free(gw);
                        return -ENOMEM;
                }
        }
        r = hw_registry_set_external(registry, &gw_ext_ops, gw);
        if (r < 0) {
                gw_free(gw);
                return r;
        }
        /* Start the servers that start with the host, then wait for each (they start in parallel). */
        for (size_t i = 0; i < gw->n_servers; i++)
                if (!gw->servers[i]->lazy && gw->servers[i]->state == S_STOPPED)
                        (void)gw_server_start(gw->servers[i]);
        for (size_t i = 0; i < gw->n_servers; i++) {
                struct gw_server *s = gw->servers[i];

                gw_server_wait_started(s);
        }
        *ret = gw;
        return 0;
}

void
gw_free(struct gateway *gw)
{
        if (!gw)
                return;
        if (gw->registry)
                (void)hw_registry_set_external(gw->registry, NULL, NULL);
        for (size_t i = 0; i < gw->n_servers; i++)
                server_free(gw->servers[i]);
        free(gw->servers);
        free(gw->run);
        free(gw->worker_path);
        sd_event_unref(gw->event);
        free(gw);
}
