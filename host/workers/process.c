/* SPDX-License-Identifier: MIT */
/* Worker processes: spawn (agentbroker-worker with the module's descriptor as fd 3 and
 * a control socket as fd 4), frames in and out, stderr, exit and kill. */
#include "config.h"

#include "host/sandbox/env.h"
#include "common/fdio.h"
#include "common/secmem.h"
#include "host/workers/internal.h"
static void worker_read_stderr(struct hw_worker *w, size_t max);
static int worker_io_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* A new string formatted like printf, or NULL on OOM. */
char *AB_PRINTF(1, 2) hw_strdup_printf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

/* Describe a wait status as "signal SIGSEGV" or "exit status 3" into buf. */
static void
describe_exit(int code, int status, char *buf, size_t size)
{
        if (code == CLD_KILLED || code == CLD_DUMPED) {
                const char *abbrev = sigabbrev_np(status);

                if (abbrev)
                        snprintf(buf, size, "signal SIG%s%s", abbrev,
                                 code == CLD_DUMPED ? ", core dumped" : "");
                else
                        snprintf(buf, size, "signal %d", status);
        } else
                snprintf(buf, size, "exit status %d", status);
}

/* Move both descriptors of a pair to HW_FD_MIN or above (closing the old ones; a failed one
 * becomes -1) and make fds[0], the host's end, non-blocking. Returns 0 or -errno. */
static int
fd_pair_prepare(int fds[2])
{
        int fl;

        for (int i = 0; i < 2; i++) {
                fds[i] = ab_fd_move_high(fds[i], HW_FD_MIN);
                if (fds[i] < 0) {
                        int r = fds[i];
                        fds[i] = -1;
                        return r;
                }
        }
        fl = fcntl(fds[0], F_GETFL);
        if (fl < 0 || fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* ---------- calls: completion ---------- */

/* Wipe the token of a call frame and free it. */
void
hw_frame_wipe_free(cJSON *frame)
{
        cJSON *tok = cJSON_GetObjectItemCaseSensitive(frame, "token");

        if (cJSON_IsString(tok))
                ab_wipe(tok->valuestring, strlen(tok->valuestring));
        cJSON_Delete(frame);
}

/* ---------- workers ---------- */

struct hw_worker *
hw_worker_free(struct hw_worker *w)
{
        if (!w)
                return NULL;
        worker_read_stderr(w, HW_STDERR_DRAIN_MAX); /* what it wrote last (a crash report): logged */
        sd_event_source_disable_unref(w->io);
        sd_event_source_disable_unref(w->timer);
        sd_event_source_disable_unref(w->child);
        if (w->fd >= 0)
                close(w->fd);
        ab_frame_reader_clear(&w->reader);
        if (w->out) {
                ab_freezero(w->out, w->out_len);
        }
        sd_event_source_disable_unref(w->err_io);
        if (w->err_fd >= 0)
                close(w->err_fd);
        hl_lines_wipe(&w->err_lines);
        hs_redactor_free(w->redactor);
        free(w);
        return NULL;
}

void
hw_worker_unlink(struct hw_worker *w)
{
        struct hw_module *m = w->m;

        if (w->prev)
                w->prev->next = w->next;
        else if (m->workers == w)
                m->workers = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
}

static void
worker_close_channel(struct hw_worker *w)
{
        w->io = sd_event_source_disable_unref(w->io);
        if (w->fd >= 0) {
                close(w->fd);
                w->fd = -1;
        }
        if (w->out) {
                ab_freezero(w->out, w->out_len);
                w->out = NULL;
                w->out_len = w->out_off = 0;
        }
        ab_frame_reader_clear(&w->reader);
}

/* End the calls bound to w and not sent (w is going away): their tokens name w's process,
 * so they cannot run elsewhere. Their done comes on the deferred source. */
static void
worker_release_bound(struct hw_worker *w)
{
        while (w->bound_head)
                hw_call_fail_later(
                        w->bound_head, "crashed",
                        "the %s module's worker stopped (another call on it failed) before this call ran; "
                        "it was not run and may be retried",
                        w->m->name);
}

/* Kill w (SIGKILL) and close its channel; it stays listed as dying until its child source
 * reaps it. The call it ran, if any, is detached (the caller ends it); calls bound to it and
 * not sent end as "crashed" (worker_release_bound). */
void
hw_worker_kill(struct hw_worker *w)
{
        if (w->state == W_DYING)
                return;
        worker_release_bound(w);
        w->state = W_DYING;
        if (w->pid > 0)
                (void)kill(w->pid, SIGKILL);
        w->timer = sd_event_source_disable_unref(w->timer);
        worker_close_channel(w);
        if (w->call) {
                w->call->w = NULL;
                w->call = NULL;
        }
}

/* Update the io source's event mask to the pending output. */
static void
worker_update_events(struct hw_worker *w)
{
        if (w->io)
                (void)sd_event_source_set_io_events(w->io, EPOLLIN | (w->out ? EPOLLOUT : 0));
}

/* Write as much pending output as the socket takes. Returns 0 (all or some written) or
 * -errno (the channel is broken). */
int
hw_worker_flush(struct hw_worker *w)
{
        int r = w->out ? ab_fd_write_some(w->fd, w->out, w->out_len, &w->out_off, true) : 0;

        if (r < 0)
                return r;
        if (w->out && w->out_off == w->out_len) {
                ab_freezero(w->out, w->out_len);
                w->out = NULL;
                w->out_len = w->out_off = 0;
        }
        worker_update_events(w);
        return 0;
}

/* Encode msg as a frame and queue it for w, writing what the socket takes now.
 * Returns 0, -E2BIG, -ENOMEM or -errno of the socket. */
int
hw_worker_send(struct hw_worker *w, const cJSON *msg)
{
        unsigned char *buf = NULL;
        size_t len;
        int r;

        if (w->fd < 0)
                return -EPIPE;
        r = ab_frame_encode(msg, &buf, &len);
        if (r < 0)
                return r;
        if (!w->out) {
                w->out = buf;
                w->out_len = len;
                w->out_off = 0;
        } else {
                size_t rest = w->out_len - w->out_off;
                unsigned char *nb = malloc(rest + len);

                if (!nb) {
                        ab_freezero(buf, len);
                        return -ENOMEM;
                }
                memcpy(nb, w->out + w->out_off, rest);
                memcpy(nb + rest, buf, len);
                ab_freezero(buf, len);
                ab_freezero(w->out, w->out_len);
                w->out = nb;
                w->out_len = rest + len;
                w->out_off = 0;
        }
        return hw_worker_flush(w);
}

/* Build the init frame for a new worker of m. Returns NULL on OOM. */
static cJSON *
init_frame(struct hw_module *m)
{
        struct hw_registry *reg = m->reg;
        const cJSON *config = reg->config ? reg->config(reg->config_userdata, m->name) : NULL;
        cJSON *msg = cJSON_CreateObject(), *c;

        if (!msg)
                return NULL;
        c = cJSON_IsObject(config) ? cJSON_Duplicate(config, true) : cJSON_CreateObject();
        if (!cJSON_AddStringToObject(msg, "t", "init") || !c || !cJSON_AddItemToObject(msg, "config", c)) {
                if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(msg, "config")))
                        cJSON_Delete(c);
                cJSON_Delete(msg);
                return NULL;
        }
        if (reg->broker_path && !cJSON_AddStringToObject(msg, "broker", reg->broker_path)) {
                cJSON_Delete(msg);
                return NULL;
        }
        return msg;
}

/* The run's sandbox, created on first use with namespaces only when the owner set none
 * (hw_registry_set_sandbox). Returns 0 or -errno (logged). */
static int
registry_sandbox(struct hw_registry *reg)
{
        char why[512];
        int k;

        if (reg->sb)
                return 0;
        k = hs_sandbox_new(NULL, NULL, reg->worker_path, reg->broker_path, why, sizeof(why), &reg->sb);
        if (k < 0) {
                log_error("%s", why);
                return k;
        }
        reg->own_sb = true;
        return 0;
}

int
hw_registry_spawn(struct hw_registry *reg, char *const argv[], char *const envp[],
                  const struct hs_spawn_fds *fds, pid_t *ret_pid, char *why, size_t why_len)
{
        int k;

        if (!reg || !argv || !envp || !fds || !ret_pid)
                return -EINVAL;
        k = registry_sandbox(reg);
        if (k < 0) {
                snprintf(why, why_len, "the run's sandbox cannot be created: %s", strerror(-k));
                return k;
        }
        return hs_sandbox_spawn(reg->sb, reg->worker_path, argv, envp, fds, ret_pid, why, why_len);
}

/* Spawn a worker process for m: socketpair, posix_spawn of the worker executable with the
 * module file as fd 3, the socket as fd 4, /dev/null as stdin/stdout, a pipe the host reads
 * as stderr, every other descriptor closed and a minimal environment; queue the init frame.
 * *ret is a new worker in state W_STARTING (not yet in m's list, no event sources). Returns 0
 * or -errno. */
int
hw_worker_spawn(struct hw_module *m, struct hw_worker **ret)
{
        static const char *const keep_env[] = { "PATH", "LANG", "TZ" };
        struct hw_registry *reg = m->reg;
        struct hs_env env = {};
        char *argv[] = { reg->worker_path,
                         (char *)"--module-fd",
                         (char *)"3",
                         (char *)"--control-fd",
                         (char *)"4",
                         (char *)"--name",
                         m->name,
                         NULL,
                         NULL,
                         NULL };
        struct hw_worker *w = NULL;
        struct hs_spawn_fds fds;
        cJSON *init = NULL;
        char why[512];
        int sv[2] = { -1, -1 }, ep[2] = { -1, -1 }, efd = -1, r;
        pid_t pid;

        r = registry_sandbox(reg);
        if (r < 0)
                return r;
        r = hs_env_init(&env, AB_ELEMENTSOF(keep_env));
        if (r == 0)
                r = hs_env_keep(&env, keep_env, AB_ELEMENTSOF(keep_env), 0);
        if (r < 0)
                goto out;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                goto out;
        }
        r = fd_pair_prepare(sv);
        if (r < 0)
                goto out;
        /* Its stderr is a pipe the host reads and logs line by line, redacted (a module's own
         * writes to stderr must not reach the host's log, the journal, with a secret in them). */
        if (pipe2(ep, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        r = fd_pair_prepare(ep);
        if (r < 0)
                goto out;
        if (reg->egress_path) {
                /* The worker's network (egress.h): agentbroker-egress runs beside the worker,
                 * outside its sandbox, with the host's rights, started at the worker's first
                 * request on its fd 5. */
                r = hx_egress_spawn(reg->event, reg->egress_path, reg->broker_path, HW_FD_MIN + 1, &efd);
                if (r < 0)
                        goto out;
                argv[7] = (char *)"--egress-fd";
                argv[8] = (char *)"5";
        }
        if (r < 0)
                goto out;
        r = -EBADF;
        if (m->fd < HW_FD_MIN)
                goto out;
        fds = (struct hs_spawn_fds){
                .in = -1, .out = -1, .err = ep[1], .fd3 = m->fd, .fd4 = sv[1], .fd5 = efd
        };
        r = hs_sandbox_spawn(reg->sb, reg->worker_path, argv, env.envp, &fds, &pid, why, sizeof(why));
        reg->spawn_end_usec = ab_now_us();
        if (r < 0) {
                log_warning("module %s: %s", m->name, why);
                goto out;
        }
        close(sv[1]);
        sv[1] = -1;
        close(ep[1]);
        ep[1] = -1;

        w = calloc(1, sizeof(*w));
        if (!w) {
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                r = -ENOMEM;
                goto out;
        }
        w->m = m;
        w->pid = pid;
        w->fd = AB_TAKE_FD(sv[0]);
        w->err_fd = AB_TAKE_FD(ep[0]);
        w->state = W_STARTING;
        init = init_frame(m);
        r = init ? hw_worker_send(w, init) : -ENOMEM;
        cJSON_Delete(init);
        /* A broken channel shows up as EOF when the hello is read; only local failures count. */
        if (r == -ENOMEM || r == -E2BIG) {
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                w = hw_worker_free(w);
                goto out;
        }
        r = 0;
        *ret = AB_TAKE_PTR(w);
out:
        for (int i = 0; i < 2; i++) {
                if (sv[i] >= 0)
                        close(sv[i]);
                if (ep[i] >= 0)
                        close(ep[i]);
        }
        if (efd >= 0)
                close(efd); /* the egress process exits when the worker's copy closes */
        hs_env_done(&env);
        return r;
}

/* Wait for pid to exit after SIGKILL and describe how it ended (blocking: used only at load). */
void
hw_reap_describe(pid_t pid, bool kill_it, char *buf, size_t size)
{
        siginfo_t si = { 0 };

        if (kill_it)
                (void)kill(pid, SIGKILL);
        while (waitid(P_PID, (id_t)pid, &si, WEXITED) < 0 && errno == EINTR)
                ;
        describe_exit(si.si_code, si.si_status, buf, size);
}

static int worker_child_handler(sd_event_source *s, const siginfo_t *si, void *userdata);
static int worker_stderr_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Attach w's event sources (io on its socket and a child source) and link it into its
 * module. Returns 0 or -errno. */
int
hw_worker_attach(struct hw_worker *w)
{
        struct hw_module *m = w->m;
        int r;

        r = sd_event_add_io(m->reg->event, &w->io, w->fd, EPOLLIN | (w->out ? EPOLLOUT : 0),
                            worker_io_handler, w);
        if (r < 0)
                return r;
        r = sd_event_add_child(m->reg->event, &w->child, w->pid, WEXITED, worker_child_handler, w);
        if (r < 0) {
                w->io = sd_event_source_disable_unref(w->io);
                return r;
        }
        /* After its frames: a redact frame is handled before the stderr bytes written after it. */
        r = sd_event_add_io(m->reg->event, &w->err_io, w->err_fd, EPOLLIN, worker_stderr_handler, w);
        if (r >= 0)
                r = sd_event_source_set_priority(w->err_io, SD_EVENT_PRIORITY_NORMAL + 1);
        if (r < 0) {
                w->err_io = sd_event_source_disable_unref(w->err_io);
                w->child = sd_event_source_disable_unref(w->child);
                w->io = sd_event_source_disable_unref(w->io);
                return r;
        }
        w->next = m->workers;
        if (m->workers)
                m->workers->prev = w;
        m->workers = w;
        return 0;
}

/* ---------- a worker's stderr ---------- */

/* Log one line w wrote to its stderr (NULL: one too long, dropped), redacted with its
 * redactor (not at all when there is no memory to redact it). */
static void
worker_log_stderr_line(void *userdata, const char *line)
{
        struct hw_worker *w = userdata;
        _cleanup_free_ char *red = NULL;

        if (!line) {
                log_warning("module %s: a line of more than %d bytes on a worker's stderr was dropped",
                            w->m->name, HL_LINE_MAX);
                return;
        }
        if (hw_worker_redact(w, NULL, line, &red) < 0) {
                log_warning("module %s: a line of a worker's stderr was dropped: no memory to redact it",
                            w->m->name);
                return;
        }
        log_info("module %s: stderr: %s", w->m->name, red ? red : line);
}

/* Read at most max bytes of what w wrote to its stderr and log its lines; at the end of the
 * pipe (or an error) close it, logging a last line without a newline. */
static void
worker_read_stderr(struct hw_worker *w, size_t max)
{
        char buf[4096];
        size_t total = 0;

        while (w->err_fd >= 0 && total < max) {
                ssize_t n = read(w->err_fd, buf, sizeof(buf));

                if (n > 0) {
                        hl_lines_feed(&w->err_lines, buf, (size_t)n, worker_log_stderr_line, w);
                        ab_wipe(buf, (size_t)n);
                        total += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                hl_lines_end(&w->err_lines, worker_log_stderr_line, w);
                w->err_io = sd_event_source_disable_unref(w->err_io);
                close(w->err_fd);
                w->err_fd = -1;
        }
}

static int
worker_stderr_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        worker_read_stderr(userdata, HW_STDERR_READ_MAX);
        return 0;
}

/* A "log" frame: logged (redacted) and passed to the running call. Returns 0, or -EBADMSG
 * after w was killed as garbage. */
static int
frame_log(struct hw_worker *w, cJSON *msg)
{
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        const cJSON *level = cJSON_GetObjectItemCaseSensitive(msg, "level");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");
        _cleanup_free_ char *red = NULL;
        const char *line;
        int lvl;

        if (!cJSON_IsNumber(level) || !cJSON_IsString(text)) {
                hw_worker_garbage(w, "a log message without level or text");
                return -EBADMSG;
        }
        lvl = level->valuedouble < LOG_ERR     ? LOG_ERR
              : level->valuedouble > LOG_DEBUG ? LOG_DEBUG
                                               : (int)level->valuedouble;
        /* Redacted whole, before anything is logged or cut. */
        if (hw_worker_redact(w, c && c->state == C_RUNNING ? c : NULL, text->valuestring, &red) < 0) {
                log_warning("module %s: a log line was dropped: no memory to redact it", m->name);
                return 0;
        }
        line = red ? red : text->valuestring;
        ab_log(lvl, "module %s: %.*s", m->name, HW_LOG_MESSAGE_MAX, line);
        if (c && c->state == C_RUNNING && c->ops.log)
                c->ops.log(c->userdata, lvl, line);
        return 0;
}

/* A frame before the hello: the hello, or "fail" (the module's init failed). Returns 0,
 * or -EBADMSG after w was killed. */
static int
frame_starting(struct hw_worker *w, cJSON *msg, const char *t)
{
        struct hw_module *m = w->m;
        const char *why = NULL;
        char what[600];

        if (strcmp(t, "hello") == 0) {
                if (hw_check_hello(m, msg, NULL, NULL, &why) < 0) {
                        hw_worker_garbage(w, why);
                        return -EBADMSG;
                }
                w->timer = sd_event_source_disable_unref(w->timer);
                m->start_failures = 0;
                hw_worker_set_idle(w);
                hw_module_schedule_dispatch(m);
                return 0;
        }
        if (strcmp(t, "fail") == 0) {
                const cJSON *err = cJSON_GetObjectItemCaseSensitive(msg, "error");

                snprintf(what, sizeof(what), "its initialisation failed: %.*s",
                         AB_UTF8_CUT(cJSON_IsString(err) ? err->valuestring : "no reason given", 512));
                hw_worker_kill(w);
                hw_module_mark_start_failure(m, what);
                return -EBADMSG;
        }
        hw_worker_garbage(w, "an unexpected message before its hello");
        return -EBADMSG;
}

/* A "progress" frame: passed (redacted) to the running call. Returns 0, or -EBADMSG after w
 * was killed as garbage. */
static int
frame_progress(struct hw_worker *w, cJSON *msg)
{
        struct hw_call *c = w->call;
        const cJSON *progress = cJSON_GetObjectItemCaseSensitive(msg, "progress");
        const cJSON *total = cJSON_GetObjectItemCaseSensitive(msg, "total");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");
        _cleanup_free_ char *red = NULL;

        if (!hw_frame_id_matches(w, msg) || !cJSON_IsNumber(progress) || (total && !cJSON_IsNumber(total)) ||
            (text && !cJSON_IsNull(text) && !cJSON_IsString(text))) {
                hw_worker_garbage(w, "an invalid progress message");
                return -EBADMSG;
        }
        if (c->state != C_RUNNING || !c->ops.progress)
                return 0;
        if (cJSON_IsString(text) && hw_worker_redact(w, c, text->valuestring, &red) < 0)
                return 0; /* no memory to redact it: not sent */
        c->ops.progress(c->userdata, progress->valuedouble, total ? total->valuedouble : 0,
                        red                    ? red
                        : cJSON_IsString(text) ? text->valuestring
                                               : NULL);
        return 0;
}

/* A "redact" frame: a secret the call read, remembered for redaction once the broker vouched
 * for it. Returns 0, or -EBADMSG after w was killed. */
static int
frame_redact(struct hw_worker *w, cJSON *msg)
{
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(msg, "name");
        cJSON *value = cJSON_GetObjectItemCaseSensitive(msg, "value");
        unsigned char *bytes = NULL;
        size_t len = 0;
        int r;

        if (!hw_frame_id_matches(w, msg) || !cJSON_IsString(name) || !cJSON_IsString(value) ||
            strlen(name->valuestring) == 0 || strlen(name->valuestring) > HW_SECRET_NAME_MAX) {
                if (cJSON_IsString(value))
                        ab_wipe(value->valuestring, strlen(value->valuestring));
                hw_worker_garbage(w, "an invalid redact message");
                return -EBADMSG;
        }
        r = ab_base64_decode(value->valuestring, &bytes, &len);
        ab_wipe(value->valuestring, strlen(value->valuestring));
        if (r == -EINVAL) {
                hw_worker_garbage(w, "a redact message whose value is not base64");
                return -EBADMSG;
        }
        if (r < 0) {
                /* Without memory the secret cannot be remembered: its result must not go out. */
                hw_worker_kill(w);
                hw_call_end_by_worker(c, "crashed", "the host ran out of memory during the call");
                hw_module_schedule_dispatch(m);
                return -EBADMSG;
        }
        /* Only a value the broker vouched for goes into the table: a module cannot fill
         * it with made-up entries (nor name a secret its call may not read). */
        if (!c->ops.redact || c->ops.redact(c->userdata, name->valuestring, bytes, len) < 0) {
                ab_freezero(bytes, len);
                hw_worker_garbage(w, "a redact message that is not a secret its call read");
                return -EBADMSG;
        }
        r = w->redactor ? 0 : hs_redactor_new(&w->redactor);
        if (r == 0)
                r = hs_redactor_add(w->redactor, name->valuestring, bytes, len);
        ab_freezero(bytes, len);
        if (r < 0) {
                /* Fail closed: the value cannot be redacted, so nothing more from this
                 * worker may go out. */
                char why[300];

                snprintf(why, sizeof(why), "the secret '%s' it read cannot be remembered for redaction: %s",
                         name->valuestring, r == -ENOSPC ? "the worker's table is full" : strerror(-r));
                log_warning("module %s: killing worker %d: %s", m->name, (int)w->pid, why);
                hw_worker_kill(w);
                hw_call_end_by_worker(c, "unredactable", why);
                hw_module_schedule_dispatch(m);
                return -EBADMSG;
        }
        return 0;
}

/* A "result" frame: the call's result, redacted, ends the call. Returns 0, or -EBADMSG after
 * w was killed as garbage. */
static int
frame_result(struct hw_worker *w, cJSON *msg)
{
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        cJSON *result = NULL;
        int r;

        if (!c || (c->state != C_RUNNING && c->state != C_CANCELLING)) {
                hw_worker_garbage(w, c ? "a result before the call was sent" : "a result while idle");
                return -EBADMSG;
        }
        if (!hw_frame_id_matches(w, msg)) {
                hw_worker_garbage(w, "a result for another call");
                return -EBADMSG;
        }
        if (c->state == C_CANCELLING) {
                hw_call_detach(c);
                hw_worker_settle(w);
                hw_call_finish_now(c, NULL, "cancelled", "the call was cancelled");
                return 0;
        }
        r = hw_result_from_frame(msg, &result);
        if (r == 0) {
                /* Every string of it, before anyone sees it. */
                struct hs_redact_stats st = { 0 };

                r = hs_redact_result(result, w->redactor, &st);
                if (r < 0)
                        result = (cJSON_Delete(result), NULL);
                else
                        hw_call_note_redactions(c, w->redactor, &st);
                if (r == -EINVAL)
                        r = -EBADMSG;
        }
        if (r == -EBADMSG) {
                hw_worker_garbage(w, "a malformed result");
                return -EBADMSG;
        }
        hw_module_note_service(m, hw_service_time(c, msg), false);
        /* The next waiting call goes out before this one is answered. */
        hw_call_detach(c);
        hw_worker_settle(w);
        if (r < 0)
                hw_call_finish_now(c, NULL, "crashed", "the host ran out of memory reading the result");
        else
                hw_call_finish_now(c, result, NULL, NULL);
        return 0;
}

/* Handle one frame from w. Returns 0, or -EBADMSG after w was killed as garbage (the caller
 * stops reading). */
static int
worker_handle_frame(struct hw_worker *w, cJSON *msg)
{
        const char *t = cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;

        if (strcmp(t, "log") == 0)
                return frame_log(w, msg);
        if (w->state == W_STARTING)
                return frame_starting(w, msg, t);
        if (strcmp(t, "progress") == 0)
                return frame_progress(w, msg);
        if (strcmp(t, "redact") == 0)
                return frame_redact(w, msg);
        if (strcmp(t, "result") == 0)
                return frame_result(w, msg);
        if (strcmp(t, "hello") == 0 || strcmp(t, "fail") == 0)
                hw_worker_garbage(w, "a second hello");
        else
                hw_worker_garbage(w, "a message of unknown type");
        return -EBADMSG;
}

static int
worker_eof_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hw_worker *w = userdata;
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        bool starting = w->state == W_STARTING;

        log_warning("module %s: worker %d closed its control channel but did not exit: killing it", m->name,
                    (int)w->pid);
        hw_worker_kill(w);
        if (starting)
                hw_module_mark_start_failure(m, "it closed its control channel");
        else if (c) {
                char msg[256];

                snprintf(msg, sizeof(msg),
                         "the %s module's worker crashed (it closed its control channel) during the call",
                         m->name);
                hw_call_end_by_worker(c, "crashed", msg);
        }
        hw_module_schedule_dispatch(m);
        return 0;
}

/* w's socket reached EOF (or broke): stop reading and give the process a moment to exit, so
 * that its exit status (e.g. the signal that killed it) can be reported. */
void
hw_worker_eof(struct hw_worker *w)
{
        worker_close_channel(w);
        w->timer = sd_event_source_disable_unref(w->timer);
        if (sd_event_add_time_relative(w->m->reg->event, &w->timer, CLOCK_MONOTONIC,
                                       (uint64_t)HW_EOF_GRACE_MS * 1000, HW_TIMER_ACCURACY_US,
                                       worker_eof_timeout, w) < 0)
                worker_eof_timeout(NULL, 0, w);
}

static int
worker_io_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct hw_worker *w = userdata;

        if (revents & EPOLLOUT) {
                if (hw_worker_flush(w) < 0) {
                        hw_worker_eof(w);
                        return 0;
                }
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        for (unsigned i = 0; i < HW_FRAMES_PER_WAKEUP; i++) {
                cJSON *msg = NULL;
                int r = ab_frame_read(w->fd, &w->reader, &msg);

                if (r == 0)
                        return 0;
                if (r == -EBADMSG) {
                        hw_worker_garbage(w, "a malformed frame");
                        return 0;
                }
                if (r < 0) {
                        hw_worker_eof(w);
                        return 0;
                }
                r = worker_handle_frame(w, msg);
                cJSON_Delete(msg);
                if (r < 0 || w->state == W_DYING || w->fd < 0)
                        return 0;
        }
        return 0;
}

static int
worker_child_handler(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        struct hw_worker *w = userdata;
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        bool starting = w->state == W_STARTING, dying = w->state == W_DYING;
        char status[64];

        describe_exit(si->si_code, si->si_status, status, sizeof(status));
        worker_release_bound(w);
        hw_worker_unlink(w);
        w->call = NULL;
        if (c)
                c->w = NULL;
        w->pid = 0; /* reaped by sd-event after this returns */
        hw_worker_free(w);

        if (!dying) {
                if (starting) {
                        char what[96];

                        snprintf(what, sizeof(what), "it exited before its hello (%s)", status);
                        hw_module_mark_start_failure(m, what);
                } else
                        log_warning("module %s: a worker exited (%s)%s", m->name, status,
                                    c ? " during a call" : "");
        }
        if (c) {
                char msg[256];

                snprintf(msg, sizeof(msg), "the %s module's worker crashed (%s) during the call", m->name,
                         status);
                hw_call_end_by_worker(c, "crashed", msg);
        }
        if (m->queue_head)
                hw_module_schedule_dispatch(m);
        return 0;
}

int
hw_worker_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hw_worker *w = userdata;
        struct hw_module *m = w->m;

        w->timer = sd_event_source_disable_unref(w->timer);
        hw_worker_kill(w);
        hw_module_mark_start_failure(m, "it did not answer in time");
        return 0;
}
