/* SPDX-License-Identifier: MIT */
/* The gateway's server processes: spawn with the environment and secrets policy names,
 * their stderr logged redacted. */
#include "config.h"

#include "common/secmem.h"
#include "host/gateway/internal.h"

/* ---------- server processes ---------- */

/* Log one line of s's stderr (NULL: one too long, dropped), redacted with its secrets: a
 * server that prints its environment must not put a secret into the host's log. */
static void
server_log_stderr_line(void *userdata, const char *line)
{
        struct gw_server *s = userdata;
        _cleanup_free_ char *red = NULL;

        if (!line) {
                log_warning("server %s: a line of more than %d bytes on its stderr was dropped", s->name,
                            HL_LINE_MAX);
                return;
        }
        if (hs_redact_text(s->redactor, line, &red) < 0) {
                log_warning("server %s: a line of its stderr was dropped: no memory to redact it", s->name);
                return;
        }
        log_info("server %s: stderr: %s", s->name, red ? red : line);
}

/* Stop reading s's stderr: what is buffered is logged, the pipe closed. */
void
gw_server_stderr_close(struct gw_server *s)
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
int
gw_on_server_stderr(sd_event_source *src AB_UNUSED, int fd, uint32_t revents AB_UNUSED, void *userdata)
{
        struct gw_server *s = userdata;
        char buf[4096];

        for (size_t total = 0; total < 65536;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n > 0) {
                        hl_lines_feed(&s->err_lines, buf, (size_t)n, server_log_stderr_line, s);
                        ab_wipe(buf, (size_t)n);
                        total += (size_t)n;
                } else if (n < 0 && errno == EINTR)
                        continue;
                else if (n < 0 && errno == EAGAIN)
                        return 0;
                else {
                        gw_server_stderr_close(s);
                        return 0;
                }
        }
        return 0;
}

/* Start the server's process as module workers are started (host/workers/): in the run's
 * sandbox (its own pid namespace inside the run's namespaces, the profile's root, mounts,
 * network and cgroup), as agentbroker-worker, which confines itself as a module worker does
 * (no capabilities, no_new_privs, the seccomp filter) and then executes the server (--exec),
 * with stdin, stdout and stderr the given pipe ends (each moved to a number the spawn takes),
 * every other descriptor closed and envp as its whole environment. This is the one place a
 * server process is created. Returns 0 with *ret_pid, or -errno (logged). */
int
gw_spawn(struct gateway *gw, const char *name, const char *cwd, char *const *cmd, char *const *envp,
         int *child_in, int *child_out, int *child_err, pid_t *ret_pid)
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
        fds = (struct hs_spawn_fds){
                .in = *child_in, .out = *child_out, .err = *child_err, .fd3 = -1, .fd4 = -1, .fd5 = -1
        };
        r = hw_registry_spawn(gw->registry, argv, envp, &fds, ret_pid, why, sizeof(why));
        if (r < 0)
                log_error("server %s: %s", name, why);
        free(argv);
        return r;
}

/* The server's environment into *ret: PATH, LANG, TZ and HOME of the host, policy's env, its
 * secrets (at most GW_ENV_MAX entries; those past it are left out). Returns 0 or -ENOMEM. */
int
gw_server_env(const struct gw_server *s, struct hs_env *ret)
{
        static const char *const keep[] = { "PATH", "LANG", "TZ", "HOME" };
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(s->cfg, "env"), *e;
        struct hs_env v;
        int r;

        r = hs_env_init(&v, GW_ENV_MAX);
        if (r < 0)
                return r;
        /* Once v is full (-ENOSPC), the rest is left out. */
        r = hs_env_keep(&v, keep, AB_ELEMENTSOF(keep), 0);
        cJSON_ArrayForEach(e, env) if (r == 0 && cJSON_IsString(e)) r =
                hs_env_add(&v, e->string, e->valuestring, strlen(e->valuestring));
        for (size_t i = 0; i < s->n_secrets && r == 0; i++)
                if (s->secrets[i].value)
                        r = hs_env_add(&v, s->secrets[i].var, s->secrets[i].value->data,
                                       s->secrets[i].value->len);
        if (r < 0 && r != -ENOSPC) {
                hs_env_done(&v);
                return r;
        }
        *ret = v;
        return 0;
}

/* The command line: command, then args. NULL on OOM (strings borrowed from cfg). */
char **
gw_server_cmd(const struct gw_server *s)
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
        cJSON_ArrayForEach(a, args) if (cJSON_IsString(a)) v[n++] = a->valuestring;
        return v;
}

void
gw_server_secrets_clear(struct gw_server *s)
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
int
gw_server_fetch_secrets(struct gw_server *s)
{
        const cJSON *vars = cJSON_GetObjectItemCaseSensitive(s->cfg, "secrets"), *v;
        size_t n = (size_t)cJSON_GetArraySize(vars);

        gw_server_secrets_clear(s);
        if (n == 0)
                return 0;
        s->secrets = calloc(n, sizeof(*s->secrets));
        if (!s->secrets)
                return -ENOMEM;
        cJSON_ArrayForEach(v, vars)
        {
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
                        log_error(
                                "server %s: the secret for %s cannot be remembered for redaction (%s): the "
                                "server is not started",
                                s->name, g->var, strerror(-r));
                        return r;
                }
        }
        return 0;
}
