/* The MCP gateway (host/gateway.h): server processes, their MCP client sessions, restarts
 * with backoff, and the calls of their tools for the registry (host/workers.c, external tools). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/secmem.h"
#include "common/spawn.h"
#include "host/gateway.h"
#include "host/lines.h"
#include "host/redact.h"
#include "host/sandbox.h"
#include "host/calls.h"
#include "host/mcp.h"
#include "host/mcpclient.h"

#define GW_STOP_GRACE_MS 2000          /* a server must exit this long after its stdin closed */
#define GW_ENV_MAX 512                 /* environment entries of a server */


enum server_state {
        S_STOPPED,             /* not started (lazy), or between restarts (backoff timer armed) */
        S_STARTING,            /* initialize / tools/list under way */
        S_READY,
        S_FAILED,              /* too many failed starts: calls fail at once */
};

struct gw_secret {
        char *var;
        char *name;            /* the secret's name, for redaction */
        struct ab_secbuf *value;
};

struct gw_call;

struct gw_server {
        struct gateway *gw;
        char *name;
        cJSON *cfg;                    /* its host-config entry */
        bool lazy;
        unsigned start_timeout_ms;
        struct gw_secret *secrets;
        size_t n_secrets;
        bool secrets_ok;               /* every secret was fetched (and is remembered for redaction) */
        struct hs_redactor *redactor;  /* its secrets: redacted from all it says (results, stderr) */
        int err_fd;                    /* the read end of its stderr, or -1 */
        sd_event_source *err_io;
        struct hl_lines err_lines;
        enum server_state state;
        pid_t pid;
        sd_event_source *child, *timer;
        struct mc_client *mc;
        uint64_t started_usec, ready_usec;
        unsigned failures;
        unsigned timeouts_in_row;
        cJSON *listing;                /* tools collected from tools/list pages, or NULL */
        unsigned pages;
        bool list_again;               /* list_changed while listing */
        uint64_t listed_usec;
        struct gw_call *calls;
        size_t n_calls;
};

struct gw_call {
        struct gw_server *s;
        struct hw_call *hc;
        struct gw_call *prev, *next;
        uint64_t rpc_id;               /* the tools/call request at the server */
        uint64_t token;                /* our progressToken */
        bool ready, sent;
        sd_event_source *timer;
};

struct gateway {
        sd_event *event;
        struct hw_registry *registry;
        struct hb_broker *broker;
        char *run;
        char *worker_path;
        struct gw_server **servers;
        size_t n_servers;
        uint64_t next_token;
};

static void server_down(struct gw_server *s, const char *why);
static void server_retry_later(struct gw_server *s, const char *why);
static int server_start(struct gw_server *s);
static void server_list_tools(struct gw_server *s, const char *cursor);

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
static void
call_end(struct gw_call *k, cJSON *result, const char *failure, const char *message)
{
        struct hw_call *hc = k->hc;
        struct gw_server *s = k->s;

        if (k->sent && s->mc)
                mc_forget(s->mc, k->rpc_id);
        call_unlink_free(k);
        hw_external_done(hc, result, failure, message);
}

/* The server is ready: the calls waiting for it may go to the broker. */
static void
calls_release(struct gw_server *s)
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

        k->sent = false;       /* answered: nothing to forget */
        if (r < 0) {
                /* The connection died: server_down() ends the call with the reason. */
                k->sent = true;
                return;
        }
        s->timeouts_in_row = 0;
        if (error) {
                const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
                const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");

                snprintf(text, sizeof text, "The %s server answered the call with a JSON-RPC error %d: %.300s",
                         s->name, cJSON_IsNumber(code) ? code->valueint : 0,
                         cJSON_IsString(msg) ? msg->valuestring : "(no message)");
                call_end(k, error_result(text), NULL, NULL);
                return;
        }
        if (!cJSON_IsObject(result) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(result, "content"))) {
                cJSON_Delete(result);
                snprintf(text, sizeof text, "The %s server returned a malformed result (not an object with a "
                         "content array).", s->name);
                call_end(k, error_result(text), NULL, NULL);
                return;
        }
        /* Only what a CallToolResult carries goes on. */
        for (cJSON *m = result->child, *next; m; m = next) {
                next = m->next;
                if (strcmp(m->string, "content") != 0 && strcmp(m->string, "structuredContent") != 0 &&
                    strcmp(m->string, "isError") != 0)
                        cJSON_Delete(cJSON_DetachItemViaPointer(result, m));
        }
        call_end(k, result, NULL, NULL);
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
        call_end(k, NULL, "timeout", "the server did not answer within the call's timeout");
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
         * messages are redacted with them (host/workers.c). */
        hw_external_set_redactor(hc, s->redactor);
        if (s->state == S_STOPPED)
                (void)server_start(s);
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
            !cJSON_AddItemToObject(p, "arguments", args ? cJSON_Duplicate(args, true) : cJSON_CreateObject()) ||
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
        call_end(k, NULL, aborted ? "aborted" : "cancelled",
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
static void
server_wait_started(struct gw_server *s)
{
        if (s->state != S_STARTING || !s->mc)
                return;
        if (mc_wait(s->mc, s->started_usec + (uint64_t)s->start_timeout_ms * 1000, not_starting, s) == -ETIMEDOUT) {
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
                if (server_start(s) == 0)
                        server_wait_started(s);
        }
}

static const struct hw_external_ops ext_ops = {
        .start = ext_start,
        .send = ext_send,
        .stop = ext_stop,
        .want = ext_want,
};

/* ---------- server processes ---------- */

/* Log one line of s's stderr (NULL: one too long, dropped), redacted with its secrets: a
 * server that prints its environment must not put a secret into the host's log. */
static void
server_log_stderr_line(void *userdata, const char *line)
{
        struct gw_server *s = userdata;
        _cleanup_free_ char *red = NULL;

        if (!line) {
                log_warning("server %s: a line of more than %d bytes on its stderr was dropped", s->name, HL_LINE_MAX);
                return;
        }
        if (hs_redact_text(s->redactor, line, &red) < 0) {
                log_warning("server %s: a line of its stderr was dropped: no memory to redact it", s->name);
                return;
        }
        log_info("server %s: stderr: %s", s->name, red ? red : line);
}

/* Stop reading s's stderr: what is buffered is logged, the pipe closed. */
static void
server_stderr_close(struct gw_server *s)
{
        if (s->err_fd < 0)
                return;
        hl_lines_end(&s->err_lines, server_log_stderr_line, s);
        s->err_io = sd_event_source_disable_unref(s->err_io);
        close(s->err_fd);
        s->err_fd = -1;
}

/* s wrote to its stderr: log its lines (at most 64 KiB a round, so a flood cannot starve the
 * loop); at the end of the pipe, close it. */
static int
on_server_stderr(sd_event_source *src AB_UNUSED, int fd, uint32_t revents AB_UNUSED, void *userdata)
{
        struct gw_server *s = userdata;
        char buf[4096];

        for (size_t total = 0; total < 65536;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n > 0) {
                        hl_lines_feed(&s->err_lines, buf, (size_t)n, server_log_stderr_line, s);
                        explicit_bzero(buf, (size_t)n);
                        total += (size_t)n;
                } else if (n < 0 && errno == EINTR)
                        continue;
                else if (n < 0 && errno == EAGAIN)
                        return 0;
                else {
                        server_stderr_close(s);
                        return 0;
                }
        }
        return 0;
}

/* Start the server's process as module workers are started (host/workers.c): in the run's
 * sandbox (its own pid namespace inside the run's namespaces, the profile's root, mounts,
 * network and cgroup), as agentbroker-worker, which confines itself as a module worker does
 * (no capabilities, no_new_privs, the seccomp filter) and then executes the server (--exec),
 * with stdin, stdout and stderr the given pipe ends (each moved to a number the spawn takes),
 * every other descriptor closed and envp as its whole environment. This is the one place a
 * server process is created. Returns 0 with *ret_pid, or -errno (logged). */
static int
gw_spawn(struct gateway *gw, const char *name, const char *cwd, char *const *cmd, char *const *envp, int *child_in,
         int *child_out, int *child_err, pid_t *ret_pid)
{
        struct hs_spawn_fds fds;
        char why[512];
        size_t n = 0, k = 0;
        char **argv;
        int r;

        /* (each is consumed: -1 after a failure, so the caller's cleanup skips it) */
        int *ends[] = { child_in, child_out, child_err };

        for (size_t i = 0; i < 3; i++) {
                *ends[i] = ab_fd_move_high(*ends[i], HS_SPAWN_FD_MIN);
                if (*ends[i] < 0) {
                        r = *ends[i];
                        *ends[i] = -1;
                        return r;
                }
        }
        while (cmd[n])
                n++;
        argv = calloc(n + 8, sizeof(*argv));
        if (!argv)
                return -ENOMEM;
        argv[k++] = gw->worker_path;
        argv[k++] = (char *)"--exec";
        argv[k++] = (char *)"--name";
        argv[k++] = (char *)name;
        argv[k++] = (char *)"--cwd";
        argv[k++] = (char *)(cwd ? cwd : "/");
        argv[k++] = (char *)"--";
        memcpy(argv + k, cmd, n * sizeof(*argv));
        fds = (struct hs_spawn_fds){ .in = *child_in, .out = *child_out, .err = *child_err,
                                     .fd3 = -1, .fd4 = -1, .fd5 = -1 };
        r = hw_registry_spawn(gw->registry, argv, envp, &fds, ret_pid, why, sizeof(why));
        if (r < 0)
                log_error("server %s: %s", name, why);
        free(argv);
        return r;
}

/* A new "NAME=value" string (wiped and freed by env_free). */
static char *
env_entry(const char *name, const void *value, size_t len)
{
        size_t nl = strlen(name);
        char *e = malloc(nl + len + 2);

        if (!e)
                return NULL;
        memcpy(e, name, nl);
        e[nl] = '=';
        memcpy(e + nl + 1, value, len);
        e[nl + 1 + len] = '\0';
        return e;
}

static void
env_free(char **env)
{
        for (size_t i = 0; env && env[i]; i++)
                ab_strfreezero(env[i]);
        free(env);
}

/* The server's environment: PATH, LANG, TZ and HOME of the host, policy's env, its secrets.
 * NULL on OOM. */
static char **
server_env(const struct gw_server *s)
{
        static const char *const keep[] = { "PATH", "LANG", "TZ", "HOME" };
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(s->cfg, "env"), *e;
        char **v = calloc(GW_ENV_MAX + 1, sizeof(*v));
        size_t n = 0;

        if (!v)
                return NULL;
        for (size_t i = 0; i < AB_ELEMENTSOF(keep); i++) {
                const char *val = getenv(keep[i]);

                if (val && !(v[n++] = env_entry(keep[i], val, strlen(val))))
                        goto fail;
        }
        cJSON_ArrayForEach(e, env)
                if (cJSON_IsString(e) && n < GW_ENV_MAX &&
                    !(v[n++] = env_entry(e->string, e->valuestring, strlen(e->valuestring))))
                        goto fail;
        for (size_t i = 0; i < s->n_secrets && n < GW_ENV_MAX; i++)
                if (s->secrets[i].value &&
                    !(v[n++] = env_entry(s->secrets[i].var, s->secrets[i].value->data, s->secrets[i].value->len)))
                        goto fail;
        return v;
fail:
        env_free(v);
        return NULL;
}

/* The command line: command, then args. NULL on OOM (strings borrowed from cfg). */
static char **
server_cmd(const struct gw_server *s)
{
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(s->cfg, "args"), *a;
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(s->cfg, "command");
        char **v = calloc((size_t)cJSON_GetArraySize(args) + 2, sizeof(*v));
        size_t n = 0;

        if (!v || !cJSON_IsString(cmd)) {
                free(v);
                return NULL;
        }
        v[n++] = cmd->valuestring;
        cJSON_ArrayForEach(a, args)
                if (cJSON_IsString(a))
                        v[n++] = a->valuestring;
        return v;
}

static void
server_secrets_clear(struct gw_server *s)
{
        for (size_t i = 0; i < s->n_secrets; i++) {
                free(s->secrets[i].var);
                free(s->secrets[i].name);
                ab_secbuf_free(s->secrets[i].value);
        }
        s->secrets = (free(s->secrets), NULL);
        s->n_secrets = 0;
}

/* Fetch the secrets policy passes to s, anew at each start (a rotated secret is picked up):
 * server-env, which the broker audits as secret-use with operation "env". Returns 0, or
 * -errno when one cannot be fetched (logged: the server is not started). */
static int
server_fetch_secrets(struct gw_server *s)
{
        const cJSON *vars = cJSON_GetObjectItemCaseSensitive(s->cfg, "secrets"), *v;
        size_t n = (size_t)cJSON_GetArraySize(vars);

        server_secrets_clear(s);
        if (n == 0)
                return 0;
        s->secrets = calloc(n, sizeof(*s->secrets));
        if (!s->secrets)
                return -ENOMEM;
        cJSON_ArrayForEach(v, vars) {
                struct gw_secret *g = &s->secrets[s->n_secrets];
                unsigned char *value = NULL;
                size_t len = 0;
                int r;

                if (!cJSON_IsString(v))
                        continue;
                s->n_secrets++;
                /* The redactor names it by the variable: the secret's name is the broker's. */
                g->var = strdup(v->valuestring);
                g->name = strdup(v->valuestring);
                if (!g->var || !g->name)
                        return -ENOMEM;
                r = hb_server_env(s->gw->broker, s->gw->run, s->name, v->valuestring, &value, &len);
                if (r < 0) {
                        log_error("server %s: the broker does not give the secret for %s: %s", s->name,
                                  v->valuestring, strerror(-r));
                        return r;
                }
                r = ab_secbuf_from(value, len, &g->value);
                ab_freezero(value, len);
                if (r < 0)
                        return r;
                /* Remembered for redaction (kept across restarts: an old value is still
                 * redacted after a rotation), or the server is not started: a value that
                 * could not be redacted must not be handed to it (fail closed). */
                r = s->redactor ? 0 : hs_redactor_new(&s->redactor);
                if (r == 0)
                        r = hs_redactor_add(s->redactor, g->name, g->value->data, g->value->len);
                if (r < 0) {
                        log_error("server %s: the secret for %s cannot be remembered for redaction (%s): the "
                                  "server is not started", s->name, g->var, strerror(-r));
                        return r;
                }
        }
        return 0;
}

static int on_child(sd_event_source *src, const siginfo_t *si, void *userdata);
static int on_start_timeout(sd_event_source *src, uint64_t usec, void *userdata);

/* Whether policy's allow-list of s names tool. */
static bool
allowed(const struct gw_server *s, const char *tool)
{
        const cJSON *t;

        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(s->cfg, "tools"))
                if (cJSON_IsString(t) && strcmp(t->valuestring, tool) == 0)
                        return true;
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
                        log_warning("server %s: refusing tool %s: its description is larger than %d bytes", s->name,
                                    name->valuestring, GW_TOOL_DESC_MAX);
                        continue;
                }
                cJSON_AddItemToArray(keep, cJSON_DetachItemViaPointer(s->listing, t));
        }
        cJSON_ArrayForEach(want, cJSON_GetObjectItemCaseSensitive(s->cfg, "tools")) {
                bool found = false;

                cJSON_ArrayForEach(t, keep)
                        found = found || strcmp(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring,
                                                want->valuestring) == 0;
                if (!found)
                        log_warning("server %s: policy exposes tool %s, which the server does not offer", s->name,
                                    want->valuestring);
        }
        s->listing = (cJSON_Delete(s->listing), NULL);
        r = hw_external_set_tools(s->gw->registry, s->name, keep, &served);
        cJSON_Delete(keep);
        if (r < 0)
                log_error("server %s: cannot serve its tools: %s", s->name, strerror(-r));
        s->listed_usec = mcp_now_usec();
        if (s->state == S_STARTING) {
                s->state = S_READY;
                s->ready_usec = s->listed_usec;
                s->timer = sd_event_source_disable_unref(s->timer);
                log_info("server %s ready in %" PRIu64 " ms (pid %d): %zu of its %zu tools served", s->name,
                         (s->ready_usec - s->started_usec) / 1000, (int)s->pid, served, offered);
                calls_release(s);
        } else
                log_info("server %s: tool list changed: %zu of its %zu tools served", s->name, served, offered);
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
                return;     /* the connection died: server_down() follows */
        }
        if (error || !cJSON_IsArray(tools)) {
                cJSON_Delete(result);
                log_error("server %s: tools/list failed: %s", s->name, error ? "it answered with an error"
                                                                               : "the result has no tools array");
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
                log_warning("server %s: more than %d pages of tools: the rest is ignored", s->name, GW_LIST_PAGES_MAX);
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
        log_info("server %s: %.64s %.32s, protocol %.32s", s->name, cJSON_IsString(iname) ? iname->valuestring : "?",
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
static int
server_start(struct gw_server *s)
{
        struct gateway *gw = s->gw;
        const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(s->cfg, "cwd");
        _cleanup_free_ char **cmd = server_cmd(s);
        char **env = NULL;
        int to_child[2] = { -1, -1 }, from_child[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
        cJSON *p = NULL, *info;
        int r;

        s->timer = sd_event_source_disable_unref(s->timer);
        if (s->pid > 0 || s->mc)
                return -EBUSY;     /* the last process is not reaped yet: on_child restarts it */
        r = server_fetch_secrets(s);
        if (r < 0) {
                server_retry_later(s, "its secrets could not be fetched from the broker");
                return r;
        }
        env = server_env(s);
        if (!cmd || !env) {
                r = -ENOMEM;
                goto fail;
        }
        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
            fcntl(err_pipe[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                goto fail;
        }
        server_stderr_close(s);        /* a previous process's, if it is still open */
        s->started_usec = mcp_now_usec();
        r = gw_spawn(gw, s->name, cJSON_IsString(cwd) ? cwd->valuestring : NULL, cmd, env, &to_child[0], &from_child[1],
                     &err_pipe[1], &s->pid);
        env_free(AB_TAKE_PTR(env));
        if (r < 0)
                goto fail;
        close(to_child[0]);
        close(from_child[1]);
        close(err_pipe[1]);
        to_child[0] = from_child[1] = err_pipe[1] = -1;
        s->err_fd = AB_TAKE_FD(err_pipe[0]);
        if (sd_event_add_io(gw->event, &s->err_io, s->err_fd, EPOLLIN, on_server_stderr, s) < 0) {
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
        r = mc_client_new(gw->event, AB_TAKE_FD(from_child[0]), AB_TAKE_FD(to_child[1]), s->name, &client_ops, s, &s->mc);
        if (r < 0) {
                (void)kill(s->pid, SIGKILL);
                return r;      /* on_child schedules the restart */
        }
        s->state = S_STARTING;
        (void)sd_event_add_time_relative(gw->event, &s->timer, CLOCK_MONOTONIC, (uint64_t)s->start_timeout_ms * 1000,
                                         10000, on_start_timeout, s);
        p = cJSON_CreateObject();
        if (!p || !cJSON_AddStringToObject(p, "protocolVersion", GW_PROTOCOL_VERSION) ||
            !cJSON_AddObjectToObject(p, "capabilities") || !(info = cJSON_AddObjectToObject(p, "clientInfo")) ||
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
        env_free(env);
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
                        call_end(k, NULL, "crashed", msg);
                else
                        call_end(k, NULL, "unavailable", msg);
        }
        if (s->pid > 0)
                (void)kill(s->pid, SIGKILL);
}

static int
on_restart(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct gw_server *s = userdata;

        s->timer = sd_event_source_disable_unref(s->timer);
        (void)server_start(s);
        return 0;
}

static int
on_start_timeout(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct gw_server *s = userdata;

        s->timer = sd_event_source_disable_unref(s->timer);
        log_error("server %s: no answer to initialize and tools/list within %u ms", s->name, s->start_timeout_ms);
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
        uint64_t now = mcp_now_usec(), backoff;
        char msg[256];

        snprintf(msg, sizeof msg, "the %s server could not be started (%s)", s->name, why);
        while (s->calls)
                call_end(s->calls, NULL, "unavailable", msg);
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
        (void)sd_event_add_time_relative(s->gw->event, &s->timer, CLOCK_MONOTONIC, backoff * 1000, 10000, on_restart, s);
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
                call_end(s->calls, NULL, "stopped", "the host is stopping");
        mc_client_free(s->mc);        /* its stdin closes: a server should exit now */
        s->child = sd_event_source_disable_unref(s->child);
        s->timer = sd_event_source_disable_unref(s->timer);
        server_stderr_close(s);
        if (s->pid > 0) {
                uint64_t deadline = mcp_now_usec() + GW_STOP_GRACE_MS * 1000ull;
                bool gone = false;

                (void)kill(s->pid, SIGTERM);
                while (!gone && mcp_now_usec() < deadline) {
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
        server_secrets_clear(s);
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
        cJSON_ArrayForEach(e, servers) {
                struct gw_server *s;
                const cJSON *to = cJSON_GetObjectItemCaseSensitive(e, "start_timeout_ms");

                if (gw->n_servers >= GW_SERVERS_MAX) {
                        log_error("more than %d servers: server %s and the ones after it are not served",
                                  GW_SERVERS_MAX, e->string);
                        break;
                }
                if (hw_registry_has_module(registry, e->string)) {
                        log_error("server %s: a module of that name is loaded; the server is not served", e->string);
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
                                              ? (unsigned)to->valuedouble : 10000;
                gw->servers[gw->n_servers++] = s;
                if (!s->name || !s->cfg) {
                        gw_free(gw);
                        return -ENOMEM;
                }
        }
        r = hw_registry_set_external(registry, &ext_ops, gw);
        if (r < 0) {
                gw_free(gw);
                return r;
        }
        /* Start the servers that start with the host, then wait for each (they start in parallel). */
        for (size_t i = 0; i < gw->n_servers; i++)
                if (!gw->servers[i]->lazy && gw->servers[i]->state == S_STOPPED)
                        (void)server_start(gw->servers[i]);
        for (size_t i = 0; i < gw->n_servers; i++) {
                struct gw_server *s = gw->servers[i];

                server_wait_started(s);
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
