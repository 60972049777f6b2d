/* Module workers, seen from the host: module file checks, agentbroker-worker processes
 * spawned with the module's descriptor as fd 3 and a control socket as fd 4, a pool of
 * workers per module, and the call state machine (queued -> reserved -> running ->
 * done) driven by sd-event sources: io on each control socket, a child source per worker,
 * timers for call timeouts, cancellation grace and hello timeouts, and one deferred source
 * that delivers completions and dispatches queued calls outside of the owner's own calls. */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/encode.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/secmem.h"
#include "host/sandbox.h"
#include "common/spawn.h"
#include "common/utf8.h"
#include "host/egress.h"
#include "host/shape.h"
#include "host/lines.h"
#include "host/workers.h"

#define HW_START_FAILURES_MAX 5        /* consecutive failed starts before a module is unavailable */
#define HW_CANCEL_GRACE_MS 2000        /* a cancelled call's worker is killed after this */
#define HW_EOF_GRACE_MS 1000           /* a worker that closed its socket must exit within this */
#define HW_DEFAULT_TIMEOUT_MS 60000    /* hw_call_send with timeout_ms 0 */
#define HW_FRAMES_PER_WAKEUP 64        /* frames read per io event before yielding to the loop */
#define HW_FD_MIN 6                    /* descriptors passed to workers live at >= 5 in the host,
                                        * so dup2 onto 3 and 4 never clobbers one of them */
#define HW_TIMER_ACCURACY_US 10000     /* 10 ms: timeouts need no more precision */
#define HW_GROW_AFTER_US 1500          /* the pool grows for a call that had to wait this long,
                                        * or when every worker runs a call older than this */
#define HW_GROW_ACCURACY_US 250
#define HW_IDLE_STOP_US (10 * 1000000ull) /* workers beyond the first stop after this idle time */
#define HW_PIPELINE_MAX 64             /* calls bound to one worker (one sent, the rest waiting) */
#define HW_PIPELINE_SAMPLES 8          /* a module's calls measured before calls are bound to busy workers */
#define HW_PIPELINE_FAST_US 500        /* ... and only while its calls take less than this (moving average) */
#define HW_PIPELINE_STUCK_US 100000    /* nor to a worker whose running call is older than this (above
                                        * the stalls of a busy machine: tens of ms on the test VMs) */
#define HW_MODULE_BYTES_MAX (64 << 20) /* largest module file (copied into sealed memory at load) */
#define HW_PIPELINE_SAMPLE_MAX_US 2000 /* one result weighs at most this in the average */
#define HW_SECRET_NAME_MAX 128
#define HW_LOG_MESSAGE_MAX 4096
#define HW_STDERR_READ_MAX (64 * 1024) /* stderr bytes read per wakeup */
#define HW_STDERR_DRAIN_MAX (1024 * 1024) /* ... and when the worker is freed */

enum worker_state {
        W_STARTING,            /* init sent, waiting for hello */
        W_IDLE,
        W_BUSY,                /* a call is bound to it (reserved, waiting or running) */
        W_DYING,               /* killed or exiting: waiting to be reaped */
};

enum call_state {
        C_QUEUED,              /* waiting for a worker */
        C_RESERVED,            /* a worker is assigned; the owner sends or aborts */
        C_WAITING,             /* the owner sent it; its worker runs another call: its frame waits */
        C_RUNNING,             /* the call frame was sent */
        C_CANCELLING,          /* cancel sent; waiting for the result or the grace timer */
        C_FINISHING,           /* done is pending on the deferred source */
};

struct hw_module;

struct hw_worker {
        struct hw_module *m;
        struct hw_worker *prev, *next;
        pid_t pid;
        int fd;                        /* control socket, non-blocking; -1 once closed */
        enum worker_state state;
        sd_event_source *io, *child, *timer;
        struct ab_frame_reader reader;
        uint64_t since_usec;           /* busy: when its call was assigned; idle: since when */
        unsigned char *out;            /* bytes not yet written (may hold a token: wiped) */
        size_t out_len, out_off;
        struct hw_call *call;          /* the call sent to it (running or cancelling), or NULL */
        struct hw_call *bound_head, *bound_tail; /* calls bound to it, not sent yet (reserved, waiting) */
        size_t n_bound;
        struct hs_redactor *redactor;  /* the secrets its calls read (made at the first), or NULL */
        int err_fd;                    /* read end of its stderr pipe (non-blocking), -1 once closed */
        sd_event_source *err_io;
        struct hl_lines err_lines;     /* the stderr line being read (wiped) */
};

struct tool_entry {
        struct hw_tool pub;            /* first: hw_tool pointers are tool_entry pointers */
        char *bare;                    /* the tool's name inside its module */
        struct hw_module *m;
        unsigned refs;                 /* calls holding it (hw_call.tool) */
        bool retired;                  /* replaced (external tools): freed when refs drops to 0 */
};

struct hw_module {
        struct hw_registry *r;
        char *name;
        char *path;                    /* for log lines */
        int fd;                        /* the module file, passed to every worker as fd 3 */
        struct hw_worker *workers;
        struct hw_call *queue_head, *queue_tail;
        size_t n_queued;
        unsigned start_failures;
        bool unavailable;
        bool dispatch_pending;
        sd_event_source *grow_timer;   /* re-decide growth when a queued call has waited enough */
        sd_event_source *idle_timer;   /* stop workers idle for HW_IDLE_STOP_US */
        uint64_t service_us;           /* moving average (1/8) of its calls' time in a worker */
        unsigned service_samples;
        bool external;                 /* its tools are served by the external provider (gateway) */
};

struct hw_call {
        struct hw_registry *r;
        struct hw_module *m;
        struct tool_entry *tool;
        struct hw_call_ops ops;
        void *userdata;
        struct hw_worker *w;
        struct hw_call *prev, *next;   /* in the module's queue, its worker's bound list or the
                                        * registry's finishing list */
        uint64_t id;
        uint64_t queued_usec;          /* when it was queued */
        uint64_t sent_usec;            /* when its frame was sent to the worker */
        cJSON *frame;                  /* waiting: the call frame (holds the token: wiped) */
        enum call_state state;
        unsigned timeout_ms;
        sd_event_source *timer;
        const char *failure;           /* for a pending done */
        char *message;
        uint64_t redactions;           /* spans of its worker's output redacted */
        char *redacted[HS_REDACT_MAX]; /* the names of those secrets */
        size_t n_redacted;
        cJSON *result;                 /* external calls: the result for a pending done */
        void *ext_data;                /* external calls: the provider's data */
        const struct hs_redactor *ext_redactor; /* external calls: what their output is redacted with */
};

struct hw_registry {
        sd_event *event;
        char *worker_path;
        char *broker_path;
        struct hs_sandbox *sb;         /* the run's sandbox every worker starts in (host/sandbox.h) */
        uint64_t spawn_end_usec;       /* when the last worker start returned */
        bool own_sb;                   /* created here (namespaces only): freed with the registry */
        char *egress_path;             /* agentbroker-egress started with each worker, or NULL */
        hw_config_fn config;
        void *config_userdata;
        struct hw_module **modules;
        size_t n_modules;
        struct tool_entry **tools;     /* sorted by name */
        size_t n_tools;
        uint64_t next_call_id;
        sd_event_source *defer;
        struct hw_call *finishing_head, *finishing_tail;
        bool freeing;
        hw_refusal_fn on_refusal;      /* told of modules refused at start (their init failed ...) */
        void *refusal_userdata;
        struct hw_external_ops ext;    /* the provider of external tools (host/gateway.c) */
        void *ext_userdata;
        uint64_t generation;           /* bumped whenever the set of tools changes */
};

static void worker_kill(struct hw_worker *w);
static void tool_entry_free(struct tool_entry *t);
static void worker_settle(struct hw_worker *w);
static void worker_read_stderr(struct hw_worker *w, size_t max);
static void module_schedule_dispatch(struct hw_module *m);
static int worker_io_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* ---------- small helpers ---------- */

static bool
valid_name(const char *s, size_t len)
{
        if (len == 0 || len > 48)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isascii((unsigned char)s[i]) ||
                    !(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

/* A new string formatted like printf, or NULL on OOM. */
static char * AB_PRINTF(1, 2)
strdup_printf(const char *fmt, ...)
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
                        snprintf(buf, size, "signal SIG%s%s", abbrev, code == CLD_DUMPED ? ", core dumped" : "");
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

static uint64_t
now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t
now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- calls: completion ---------- */

/* Wipe the token of a call frame and free it. */
static void
frame_wipe_free(cJSON *frame)
{
        cJSON *tok = cJSON_GetObjectItemCaseSensitive(frame, "token");

        if (cJSON_IsString(tok))
                explicit_bzero(tok->valuestring, strlen(tok->valuestring));
        cJSON_Delete(frame);
}

static void
call_free(struct hw_call *c)
{
        if (!c)
                return;
        frame_wipe_free(c->frame);
        sd_event_source_disable_unref(c->timer);
        free(c->message);
        for (size_t i = 0; i < c->n_redacted; i++)
                free(c->redacted[i]);
        cJSON_Delete(c->result);
        if (c->tool && --c->tool->refs == 0 && c->tool->retired)
                tool_entry_free(c->tool);
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

static void
clist_remove(struct hw_call **head, struct hw_call **tail, size_t *n, struct hw_call *c)
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

static void
queue_remove(struct hw_module *m, struct hw_call *c)
{
        clist_remove(&m->queue_head, &m->queue_tail, &m->n_queued, c);
}

static void
queue_append(struct hw_module *m, struct hw_call *c)
{
        clist_append(&m->queue_head, &m->queue_tail, &m->n_queued, c);
        c->queued_usec = now_usec();
}

static void
bound_append(struct hw_worker *w, struct hw_call *c)
{
        clist_append(&w->bound_head, &w->bound_tail, &w->n_bound, c);
}

static void
bound_remove(struct hw_worker *w, struct hw_call *c)
{
        clist_remove(&w->bound_head, &w->bound_tail, &w->n_bound, c);
}

/* Detach c from its worker (the worker stays in its current state): the call it runs, or one
 * bound to it and not sent. A waiting frame is wiped. */
static void
call_detach(struct hw_call *c)
{
        if (c->w) {
                if (c->w->call == c)
                        c->w->call = NULL;
                else if (c->state == C_RESERVED || c->state == C_WAITING)
                        bound_remove(c->w, c);
                c->w = NULL;
        }
        c->frame = (frame_wipe_free(c->frame), NULL);
        c->timer = sd_event_source_disable_unref(c->timer);
}

/* Tell c's owner what was redacted from its worker's output (if anything), then that c ended. */
static void
call_done(struct hw_call *c, cJSON *result, const char *failure, const char *message)
{
        if (c->redactions && c->ops.redacted)
                c->ops.redacted(c->userdata, c->redactions, (const char *const *)c->redacted, c->n_redacted);
        if (c->ops.done)
                c->ops.done(c->userdata, result, failure, message);
        else
                cJSON_Delete(result);
}

/* End c now: call done and free it. c must be detached from queue and worker. */
static void
call_finish_now(struct hw_call *c, cJSON *result, const char *failure, const char *message)
{
        call_detach(c);
        c->state = C_FINISHING;
        call_done(c, result, failure, message);
        call_free(c);
}

/* End c with a printf-formatted failure message, now. */
static void AB_PRINTF(3, 4)
call_fail_now(struct hw_call *c, const char *failure, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        call_finish_now(c, NULL, failure, msg);
}

static void
registry_schedule(struct hw_registry *r)
{
        if (r->defer && !r->freeing)
                (void)sd_event_source_set_enabled(r->defer, SD_EVENT_ONESHOT);
}

/* End c with failure on the deferred source (used when the owner itself asked, so that done
 * never runs inside the owner's own call into this file). c must be off any queue. */
static void AB_PRINTF(3, 4)
call_fail_later(struct hw_call *c, const char *failure, const char *fmt, ...)
{
        struct hw_registry *r = c->r;
        va_list ap;

        call_detach(c);
        c->state = C_FINISHING;
        c->failure = failure;
        free(c->message);
        va_start(ap, fmt);
        if (vasprintf(&c->message, fmt, ap) < 0)
                c->message = NULL;
        va_end(ap);
        clist_append(&r->finishing_head, &r->finishing_tail, NULL, c);
        registry_schedule(r);
}

/* The message of a call that ended because its worker died or misbehaved. */
static void
call_end_by_worker(struct hw_call *c, const char *failure, const char *message)
{
        if (c->state == C_CANCELLING)
                call_finish_now(c, NULL, "cancelled", "the call was cancelled");
        else
                call_finish_now(c, NULL, failure, message);
}

/* ---------- workers ---------- */

static struct hw_worker *
worker_free(struct hw_worker *w)
{
        if (!w)
                return NULL;
        worker_read_stderr(w, HW_STDERR_DRAIN_MAX);   /* what it wrote last (a crash report): logged */
        sd_event_source_disable_unref(w->io);
        sd_event_source_disable_unref(w->timer);
        sd_event_source_disable_unref(w->child);
        if (w->fd >= 0)
                close(w->fd);
        ab_frame_reader_clear(&w->reader);
        if (w->out) {
                explicit_bzero(w->out, w->out_len);
                free(w->out);
        }
        sd_event_source_disable_unref(w->err_io);
        if (w->err_fd >= 0)
                close(w->err_fd);
        hl_lines_wipe(&w->err_lines);
        hs_redactor_free(w->redactor);
        free(w);
        return NULL;
}

static void
worker_unlink(struct hw_worker *w)
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
                explicit_bzero(w->out, w->out_len);
                free(w->out);
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
                call_fail_later(w->bound_head, "crashed",
                                "the %s module's worker stopped (another call on it failed) before this call ran; "
                                "it was not run and may be retried", w->m->name);
}

/* Kill w (SIGKILL) and close its channel; it stays listed as dying until its child source
 * reaps it. The call it ran, if any, is detached (the caller ends it); calls bound to it and
 * not sent end as "crashed" (worker_release_bound). */
static void
worker_kill(struct hw_worker *w)
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
static int
worker_flush(struct hw_worker *w)
{
        while (w->out && w->out_off < w->out_len) {
                ssize_t n = send(w->fd, w->out + w->out_off, w->out_len - w->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                w->out_off += (size_t)n;
        }
        if (w->out && w->out_off == w->out_len) {
                explicit_bzero(w->out, w->out_len);
                free(w->out);
                w->out = NULL;
                w->out_len = w->out_off = 0;
        }
        worker_update_events(w);
        return 0;
}

/* Encode msg as a frame and queue it for w, writing what the socket takes now.
 * Returns 0, -E2BIG, -ENOMEM or -errno of the socket. */
static int
worker_send(struct hw_worker *w, const cJSON *msg)
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
                        explicit_bzero(buf, len);
                        free(buf);
                        return -ENOMEM;
                }
                memcpy(nb, w->out + w->out_off, rest);
                memcpy(nb + rest, buf, len);
                explicit_bzero(buf, len);
                free(buf);
                explicit_bzero(w->out, w->out_len);
                free(w->out);
                w->out = nb;
                w->out_len = rest + len;
                w->out_off = 0;
        }
        return worker_flush(w);
}

/* Build the init frame for a new worker of m. Returns NULL on OOM. */
static cJSON *
init_frame(struct hw_module *m)
{
        struct hw_registry *r = m->r;
        const cJSON *config = r->config ? r->config(r->config_userdata, m->name) : NULL;
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
        if (r->broker_path && !cJSON_AddStringToObject(msg, "broker", r->broker_path)) {
                cJSON_Delete(msg);
                return NULL;
        }
        return msg;
}

/* The run's sandbox, created on first use with namespaces only when the owner set none
 * (hw_registry_set_sandbox). Returns 0 or -errno (logged). */
static int
registry_sandbox(struct hw_registry *r)
{
        char why[512];
        int k;

        if (r->sb)
                return 0;
        k = hs_sandbox_new(NULL, NULL, r->worker_path, r->broker_path, why, sizeof(why), &r->sb);
        if (k < 0) {
                log_error("%s", why);
                return k;
        }
        r->own_sb = true;
        return 0;
}

int
hw_registry_spawn(struct hw_registry *r, char *const argv[], char *const envp[], const struct hs_spawn_fds *fds,
                  pid_t *ret_pid, char *why, size_t why_len)
{
        int k;

        if (!r || !argv || !envp || !fds || !ret_pid)
                return -EINVAL;
        k = registry_sandbox(r);
        if (k < 0) {
                snprintf(why, why_len, "the run's sandbox cannot be created: %s", strerror(-k));
                return k;
        }
        return hs_sandbox_spawn(r->sb, r->worker_path, argv, envp, fds, ret_pid, why, why_len);
}

/* Spawn a worker process for m: socketpair, posix_spawn of the worker executable with the
 * module file as fd 3, the socket as fd 4, /dev/null as stdin/stdout, a pipe the host reads
 * as stderr, every other descriptor closed and a minimal environment; queue the init frame.
 * *ret is a new worker in state W_STARTING (not yet in m's list, no event sources). Returns 0
 * or -errno. */
static int
worker_spawn(struct hw_module *m, struct hw_worker **ret)
{
        static const char *const keep_env[] = { "PATH", "LANG", "TZ" };
        struct hw_registry *r = m->r;
        char *envp[AB_ELEMENTSOF(keep_env) + 1];
        char *env_alloc[AB_ELEMENTSOF(keep_env)] = { NULL };
        size_t n_env = 0;
        char *argv[] = { r->worker_path, (char *)"--module-fd", (char *)"3", (char *)"--control-fd", (char *)"4",
                         (char *)"--name", m->name, NULL, NULL, NULL };
        struct hw_worker *w = NULL;
        struct hs_spawn_fds fds;
        cJSON *init = NULL;
        char why[512];
        int sv[2] = { -1, -1 }, ep[2] = { -1, -1 }, efd = -1, r_;
        pid_t pid;

        r_ = registry_sandbox(r);
        if (r_ < 0)
                return r_;
        for (size_t i = 0; i < AB_ELEMENTSOF(keep_env); i++) {
                const char *v = getenv(keep_env[i]);

                if (!v)
                        continue;
                env_alloc[n_env] = strdup_printf("%s=%s", keep_env[i], v);
                if (!env_alloc[n_env]) {
                        r_ = -ENOMEM;
                        goto out;
                }
                envp[n_env] = env_alloc[n_env];
                n_env++;
        }
        envp[n_env] = NULL;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r_ = -errno;
                goto out;
        }
        r_ = fd_pair_prepare(sv);
        if (r_ < 0)
                goto out;
        /* Its stderr is a pipe the host reads and logs line by line, redacted (a module's own
         * writes to stderr must not reach the host's log, the journal, with a secret in them). */
        if (pipe2(ep, O_CLOEXEC) < 0) {
                r_ = -errno;
                goto out;
        }
        r_ = fd_pair_prepare(ep);
        if (r_ < 0)
                goto out;
        if (r->egress_path) {
                /* The worker's network (egress.h): agentbroker-egress runs beside the worker,
                 * outside its sandbox, with the host's rights, started at the worker's first
                 * request on its fd 5. */
                r_ = hx_egress_spawn(r->event, r->egress_path, r->broker_path, HW_FD_MIN + 1, &efd);
                if (r_ < 0)
                        goto out;
                argv[7] = (char *)"--egress-fd";
                argv[8] = (char *)"5";
        }
        if (r_ < 0)
                goto out;
        r_ = -EBADF;
        if (m->fd < HW_FD_MIN)
                goto out;
        fds = (struct hs_spawn_fds){ .in = -1, .out = -1, .err = ep[1], .fd3 = m->fd, .fd4 = sv[1], .fd5 = efd };
        r_ = hs_sandbox_spawn(r->sb, r->worker_path, argv, envp, &fds, &pid, why, sizeof(why));
        r->spawn_end_usec = now_usec();
        if (r_ < 0) {
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
                r_ = -ENOMEM;
                goto out;
        }
        w->m = m;
        w->pid = pid;
        w->fd = AB_TAKE_FD(sv[0]);
        w->err_fd = AB_TAKE_FD(ep[0]);
        w->state = W_STARTING;
        init = init_frame(m);
        r_ = init ? worker_send(w, init) : -ENOMEM;
        cJSON_Delete(init);
        /* A broken channel shows up as EOF when the hello is read; only local failures count. */
        if (r_ == -ENOMEM || r_ == -E2BIG) {
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                w = worker_free(w);
                goto out;
        }
        r_ = 0;
        *ret = AB_TAKE_PTR(w);
out:
        for (int i = 0; i < 2; i++) {
                if (sv[i] >= 0)
                        close(sv[i]);
                if (ep[i] >= 0)
                        close(ep[i]);
        }
        if (efd >= 0)
                close(efd);     /* the egress process exits when the worker's copy closes */
        for (size_t i = 0; i < n_env; i++)
                free(env_alloc[i]);
        return r_;
}

/* ---------- module load: hello and tools ---------- */

static void
tool_entry_free(struct tool_entry *t)
{
        if (!t)
                return;
        free(t->pub.name);
        free(t->pub.module);
        free(t->bare);
        cJSON_Delete(t->pub.descriptor);
        hs_schema_free(t->pub.input);
        hs_schema_free(t->pub.output);
        free(t);
}

static int
tool_cmp(const void *a, const void *b)
{
        const struct tool_entry *const *x = a, *const *y = b;

        return strcmp((*x)->pub.name, (*y)->pub.name);
}

static bool
registry_has_tool(const struct hw_registry *r, const char *name)
{
        return hw_tool_find(r, name) != NULL;
}

/* Compile schema member key of the worker's tool description, which must be an object schema
 * of type "object". Returns 0 (*ret NULL when absent and optional), -EINVAL with the reason
 * in *ret_err (a new string), or -ENOMEM. */
static int
compile_tool_schema(const cJSON *desc, const char *key, bool required, cJSON **ret_copy, struct hs_schema **ret,
                    char **ret_err)
{
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(desc, key);
        const cJSON *type;
        struct hs_schema *compiled = NULL;
        char *err = NULL;
        cJSON *copy;
        int r;

        if (!s || (!required && cJSON_IsNull(s))) {
                if (required) {
                        *ret_err = strdup_printf("%s is missing", key);
                        return *ret_err ? -EINVAL : -ENOMEM;
                }
                *ret_copy = NULL;
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsObject(s)) {
                *ret_err = strdup_printf("%s is not an object", key);
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        type = cJSON_GetObjectItemCaseSensitive(s, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "object") != 0) {
                *ret_err = strdup_printf("%s must have \"type\": \"object\"", key);
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        r = hs_schema_compile(s, &compiled, &err);
        if (r < 0) {
                if (r == -EINVAL) {
                        *ret_err = strdup_printf("%s: %s", key, err ? err : "invalid schema");
                        free(err);
                        return *ret_err ? -EINVAL : -ENOMEM;
                }
                free(err);
                return r;
        }
        copy = cJSON_Duplicate(s, true);
        if (!copy) {
                hs_schema_free(compiled);
                return -ENOMEM;
        }
        *ret_copy = copy;
        *ret = compiled;
        return 0;
}

/* Build the served tool from one entry of a hello's "tools" array. Returns 0 with *ret set,
 * -EINVAL with *ret_err (a new string) when the tool is refused, or -ENOMEM. */
static int
tool_from_hello(struct hw_module *m, const cJSON *desc, struct tool_entry **ret, char **ret_err)
{
        static const char *const hints[] = { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" };
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(desc, "name");
        const cJSON *title = cJSON_GetObjectItemCaseSensitive(desc, "title");
        const cJSON *description = cJSON_GetObjectItemCaseSensitive(desc, "description");
        const cJSON *annotations = cJSON_GetObjectItemCaseSensitive(desc, "annotations");
        struct tool_entry *t = NULL;
        cJSON *in_copy = NULL, *out_copy = NULL, *d = NULL;
        const char *bare;
        size_t mlen = strlen(m->name);
        int r;

        if (!cJSON_IsObject(desc) || !cJSON_IsString(name)) {
                *ret_err = strdup("the tool has no name");
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        bare = name->valuestring;
        /* Accept "tool" and "<module>.tool". */
        if (strncmp(bare, m->name, mlen) == 0 && bare[mlen] == '.')
                bare += mlen + 1;
        if (!valid_name(bare, strlen(bare))) {
                *ret_err = strdup("the tool name must match [A-Za-z0-9_-]{1,48}");
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        if ((title && !cJSON_IsNull(title) && !cJSON_IsString(title)) ||
            (description && !cJSON_IsNull(description) && !cJSON_IsString(description))) {
                *ret_err = strdup("title and description must be strings");
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        if (annotations && !cJSON_IsNull(annotations) && !cJSON_IsObject(annotations)) {
                *ret_err = strdup("annotations must be an object");
                return *ret_err ? -EINVAL : -ENOMEM;
        }

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->m = m;
        t->bare = strdup(bare);
        t->pub.module = strdup(m->name);
        t->pub.name = strdup_printf("%s.%s", m->name, bare);
        if (!t->bare || !t->pub.module || !t->pub.name) {
                r = -ENOMEM;
                goto fail;
        }
        r = compile_tool_schema(desc, "inputSchema", true, &in_copy, &t->pub.input, ret_err);
        if (r < 0)
                goto fail;
        r = compile_tool_schema(desc, "outputSchema", false, &out_copy, &t->pub.output, ret_err);
        if (r < 0)
                goto fail;

        r = -ENOMEM;
        d = cJSON_CreateObject();
        if (!d || !cJSON_AddStringToObject(d, "name", t->pub.name))
                goto fail;
        if (cJSON_IsString(title) && !cJSON_AddStringToObject(d, "title", title->valuestring))
                goto fail;
        if (cJSON_IsString(description) && !cJSON_AddStringToObject(d, "description", description->valuestring))
                goto fail;
        if (!cJSON_AddItemToObject(d, "inputSchema", in_copy))
                goto fail;
        in_copy = NULL;
        if (out_copy) {
                if (!cJSON_AddItemToObject(d, "outputSchema", out_copy))
                        goto fail;
                out_copy = NULL;
        }
        if (cJSON_IsObject(annotations)) {
                cJSON *a = cJSON_CreateObject();

                if (!a || !cJSON_AddItemToObject(d, "annotations", a)) {
                        cJSON_Delete(a);
                        goto fail;
                }
                for (size_t i = 0; i < AB_ELEMENTSOF(hints); i++) {
                        const cJSON *h = cJSON_GetObjectItemCaseSensitive(annotations, hints[i]);

                        if (cJSON_IsBool(h) && !cJSON_AddBoolToObject(a, hints[i], cJSON_IsTrue(h)))
                                goto fail;
                }
                if (cJSON_GetArraySize(a) == 0)
                        cJSON_DeleteItemFromObjectCaseSensitive(d, "annotations");
        }
        t->pub.descriptor = d;
        *ret = t;
        return 0;
fail:
        cJSON_Delete(in_copy);
        cJSON_Delete(out_copy);
        cJSON_Delete(d);
        tool_entry_free(t);
        return r;
}

/* Check a hello from a worker of m. With tools non-NULL (the first worker), build the
 * module's tools into *tools / *n_tools, refusing (with a log line) each tool that does not
 * compile or repeats a name. Returns 0, -EBADMSG (not a usable hello: *ret_why says why,
 * static) or -ENOMEM. */
static int
check_hello(struct hw_module *m, const cJSON *msg, struct tool_entry ***tools, size_t *n_tools, const char **ret_why)
{
        const cJSON *module = cJSON_GetObjectItemCaseSensitive(msg, "module");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(msg, "tools");
        const cJSON *item;
        struct tool_entry **v = NULL;
        size_t n = 0;
        int r;

        if (!cJSON_IsString(module) || strcmp(module->valuestring, m->name) != 0) {
                *ret_why = "the module's descriptor names another module than its file name";
                return -EBADMSG;
        }
        if (!cJSON_IsArray(list)) {
                *ret_why = "the hello has no tool list";
                return -EBADMSG;
        }
        if (!tools)
                return 0;
        if (cJSON_GetArraySize(list) > 128) {
                *ret_why = "the module declares more than 128 tools";
                return -EBADMSG;
        }
        cJSON_ArrayForEach(item, list) {
                struct tool_entry *t = NULL;
                char *err = NULL;
                bool dup = false;

                r = tool_from_hello(m, item, &t, &err);
                if (r == -EINVAL) {
                        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(item, "name");

                        log_warning("module %s: refusing tool %.*s: %s", m->path,
                                    AB_UTF8_CUT(cJSON_IsString(nm) ? nm->valuestring : "(unnamed)", 64),
                                    err ? err : "invalid");
                        free(err);
                        continue;
                }
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < n; i++)
                        if (strcmp(v[i]->pub.name, t->pub.name) == 0)
                                dup = true;
                if (dup || registry_has_tool(m->r, t->pub.name)) {
                        log_warning("module %s: refusing tool %s: a tool of that name is served already", m->path,
                                    t->pub.name);
                        tool_entry_free(t);
                        continue;
                }
                struct tool_entry **nv = realloc(v, (n + 1) * sizeof(*v));
                if (!nv) {
                        tool_entry_free(t);
                        r = -ENOMEM;
                        goto fail;
                }
                v = nv;
                v[n++] = t;
        }
        if (n == 0) {
                free(v);
                *ret_why = "the module has no tool that can be served";
                return -EBADMSG;
        }
        *tools = v;
        *n_tools = n;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                tool_entry_free(v[i]);
        free(v);
        return r;
}

static int result_from_frame(cJSON *msg, cJSON **ret);

/* See workers.h: check_hello and result_from_frame on one frame, for the fuzz target. */
int
hw_check_worker_frame(const cJSON *msg)
{
        struct hw_module m = { .name = (char *)"fuzz", .path = (char *)"fuzz.so", .fd = -1 };
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "t");
        struct tool_entry **tools = NULL;
        size_t n = 0;
        const char *why = NULL;
        cJSON *copy, *res = NULL;
        int r;

        if (!cJSON_IsString(t))
                return -EBADMSG;
        if (strcmp(t->valuestring, "hello") == 0) {
                r = check_hello(&m, msg, &tools, &n, &why);
                for (size_t i = 0; i < n; i++)
                        tool_entry_free(tools[i]);
                free(tools);
                return r;
        }
        if (strcmp(t->valuestring, "result") != 0)
                return 0;
        copy = cJSON_Duplicate(msg, true);
        if (!copy)
                return -ENOMEM;
        r = result_from_frame(copy, &res);
        cJSON_Delete(res);
        cJSON_Delete(copy);
        return r;
}

/* Wait (blocking, bounded by HW_HELLO_TIMEOUT_MS) for w's init frame to be written and its
 * hello to arrive; log frames before it go to the host log. Returns 0 with *ret the hello,
 * or -errno with *ret_why (static) set. */
static int
worker_wait_hello(struct hw_worker *w, cJSON **ret, const char **ret_why)
{
        int64_t deadline = now_ms() + HW_HELLO_TIMEOUT_MS;

        for (;;) {
                struct pollfd pfd = { .fd = w->fd, .events = POLLIN | (w->out ? POLLOUT : 0) };
                int64_t left = deadline - now_ms();
                cJSON *msg = NULL;
                const char *t;
                int r;

                if (left <= 0) {
                        *ret_why = "its worker did not answer in time";
                        return -ETIMEDOUT;
                }
                r = poll(&pfd, 1, (int)left);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        *ret_why = "poll failed";
                        return -errno;
                }
                if (r == 0)
                        continue;
                if (pfd.revents & POLLOUT) {
                        r = worker_flush(w);
                        if (r < 0 && !(pfd.revents & POLLIN)) {
                                *ret_why = "its worker closed its control channel";
                                return -EPIPE;
                        }
                }
                if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                for (;;) {
                        r = ab_frame_read(w->fd, &w->reader, &msg);
                        if (r == 0)
                                break;
                        if (r == -EPIPE || r == -ECONNRESET) {
                                *ret_why = "its worker exited before answering";
                                return -EPIPE;
                        }
                        if (r < 0) {
                                *ret_why = "its worker sent an invalid message";
                                return r == -ENOMEM ? r : -EBADMSG;
                        }
                        t = cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;
                        if (strcmp(t, "hello") == 0 || strcmp(t, "fail") == 0) {
                                *ret = msg;
                                return 0;
                        }
                        if (strcmp(t, "log") == 0) {
                                const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");

                                if (cJSON_IsString(text))
                                        log_info("module %s: %.*s", w->m->name, HW_LOG_MESSAGE_MAX,
                                                 text->valuestring);
                                cJSON_Delete(msg);
                                continue;
                        }
                        cJSON_Delete(msg);
                        *ret_why = "its worker sent an unexpected message before its hello";
                        return -EBADMSG;
                }
        }
}

/* Wait for pid to exit after SIGKILL and describe how it ended (blocking: used only at load). */
static void
reap_describe(pid_t pid, bool kill_it, char *buf, size_t size)
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
static int
worker_attach(struct hw_worker *w)
{
        struct hw_module *m = w->m;
        int r;

        r = sd_event_add_io(m->r->event, &w->io, w->fd, EPOLLIN | (w->out ? EPOLLOUT : 0), worker_io_handler, w);
        if (r < 0)
                return r;
        r = sd_event_add_child(m->r->event, &w->child, w->pid, WEXITED, worker_child_handler, w);
        if (r < 0) {
                w->io = sd_event_source_disable_unref(w->io);
                return r;
        }
        /* After its frames: a redact frame is handled before the stderr bytes written after it. */
        r = sd_event_add_io(m->r->event, &w->err_io, w->err_fd, EPOLLIN, worker_stderr_handler, w);
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

static void
module_free(struct hw_module *m)
{
        if (!m)
                return;
        sd_event_source_disable_unref(m->grow_timer);
        sd_event_source_disable_unref(m->idle_timer);
        if (m->fd >= 0)
                close(m->fd);
        free(m->name);
        free(m->path);
        free(m);
}

/* Pin a module's code at load: copy the checked file into a memfd sealed against any change
 * (F_SEAL_WRITE, SHRINK, GROW, SEAL). Every worker of the module, also those started later,
 * loads this copy: whoever can write the file afterwards (the host's uid, which a module runs
 * as) cannot change the code another module's worker runs. *fdp is replaced by the memfd
 * (the file's descriptor is closed). Returns 0 or -errno. */
static int
module_pin(int file_fd, const char *name, int *fdp)
{
        _cleanup_close_ int mfd = -1;
        char buf[65536];
        off_t off = 0;
        ssize_t n;

        mfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0)
                return -errno;
        for (;;) {
                n = pread(file_fd, buf, sizeof(buf), off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                off += n;
                if (off > HW_MODULE_BYTES_MAX)
                        return -EFBIG;
                for (ssize_t done = 0; done < n;) {
                        ssize_t w = write(mfd, buf + done, (size_t)(n - done));

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return -errno;
                        done += w;
                }
        }
        if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return -errno;
        close(*fdp);
        *fdp = AB_TAKE_FD(mfd);
        return 0;
}

/* Open and check one module file, start its first worker, wait for its hello and add its
 * tools. Failures are logged and return a negative errno (the caller carries on). */
/* Refuse module m whose first worker started but will not serve: log why (at most 512
 * bytes of it) and tell the registry's refusal callback. */
static void
refuse_started(struct hw_module *m, const char *why)
{
        log_warning("refusing module %s: %.*s", m->path, AB_UTF8_CUT(why, 512));
        if (m->r->on_refusal)
                m->r->on_refusal(m->r->refusal_userdata, m->name, why);
}

void
hw_registry_on_refusal(struct hw_registry *r, hw_refusal_fn fn, void *userdata)
{
        if (!r)
                return;
        r->on_refusal = fn;
        r->refusal_userdata = userdata;
}

static int
module_load(struct hw_registry *r, int dirfd, const char *dir, const char *file)
{
        size_t flen = strlen(file);
        struct hw_module *m = NULL;
        struct hw_worker *w = NULL;
        struct tool_entry **tools = NULL;
        size_t n_tools = 0;
        cJSON *hello = NULL;
        const char *why = NULL;
        char status[64];
        struct stat st;
        int fd = -1, ret;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->r = r;
        m->fd = -1;
        m->path = strdup_printf("%s/%s", dir, file);
        m->name = strndup(file, flen - 3);
        if (!m->path || !m->name) {
                ret = -ENOMEM;
                goto out;
        }
        if (!valid_name(m->name, strlen(m->name))) {
                log_warning("refusing module %s: the file name must be <name>.so with a name of [A-Za-z0-9_-]{1,48}",
                            m->path);
                ret = -EINVAL;
                goto out;
        }
        for (size_t i = 0; i < r->n_modules; i++)
                if (strcmp(r->modules[i]->name, m->name) == 0) {
                        log_warning("skipping module %s: a module named %s was loaded already from %s", m->path,
                                    m->name, r->modules[i]->path);
                        ret = -EEXIST;
                        goto out;
                }
        if (r->n_modules >= HW_MODULES_MAX) {
                log_warning("refusing module %s: %d modules are loaded already", m->path, HW_MODULES_MAX);
                ret = -ENOSPC;
                goto out;
        }

        fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                ret = -errno;
                if (ret == -ELOOP)
                        log_warning("refusing module %s: it is a symbolic link", m->path);
                else
                        log_warning("refusing module %s: cannot open it: %s", m->path, strerror(-ret));
                goto out;
        }
        if (fstat(fd, &st) < 0) {
                ret = -errno;
                log_warning("refusing module %s: cannot stat it: %s", m->path, strerror(-ret));
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                log_warning("refusing module %s: it is not a regular file", m->path);
                ret = -EPERM;
                goto out;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                log_warning("refusing module %s: it is owned by uid %u, not by root or the host's uid %u", m->path,
                            (unsigned)st.st_uid, (unsigned)geteuid());
                ret = -EPERM;
                goto out;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                log_warning("refusing module %s: it is %s-writable (mode %04o)", m->path,
                            (st.st_mode & S_IWOTH) ? "world" : "group", (unsigned)(st.st_mode & 07777));
                ret = -EPERM;
                goto out;
        }
        if (st.st_size > HW_MODULE_BYTES_MAX) {
                log_warning("refusing module %s: it is larger than %d MiB", m->path, HW_MODULE_BYTES_MAX >> 20);
                ret = -EFBIG;
                goto out;
        }
        ret = module_pin(fd, m->name, &fd);
        if (ret < 0) {
                log_warning("refusing module %s: cannot copy it into sealed memory: %s", m->path, strerror(-ret));
                goto out;
        }
        m->fd = ab_fd_move_high(AB_TAKE_FD(fd), HW_FD_MIN);
        if (m->fd < 0) {
                ret = m->fd;
                log_warning("refusing module %s: %s", m->path, strerror(-ret));
                goto out;
        }

        ret = worker_spawn(m, &w);
        if (ret < 0) {
                log_warning("refusing module %s: cannot start %s: %s", m->path, r->worker_path, strerror(-ret));
                goto out;
        }
        ret = worker_wait_hello(w, &hello, &why);
        if (ret < 0) {
                char what[128];

                reap_describe(w->pid, true, status, sizeof(status));
                snprintf(what, sizeof what, "its worker exited before answering (%s)", status);
                refuse_started(m, ret == -EPIPE ? what : why);
                goto out;
        }
        if (strcmp(cJSON_GetObjectItemCaseSensitive(hello, "t")->valuestring, "fail") == 0) {
                const cJSON *err = cJSON_GetObjectItemCaseSensitive(hello, "error");

                reap_describe(w->pid, true, status, sizeof(status));
                refuse_started(m, cJSON_IsString(err) ? err->valuestring : "its initialisation failed");
                ret = -EINVAL;
                goto out;
        }
        ret = check_hello(m, hello, &tools, &n_tools, &why);
        if (ret < 0) {
                reap_describe(w->pid, true, status, sizeof(status));
                if (ret == -EBADMSG)
                        refuse_started(m, why);
                goto out;
        }

        struct hw_module **nm = realloc(r->modules, (r->n_modules + 1) * sizeof(*nm));
        if (!nm) {
                ret = -ENOMEM;
                goto fail_worker;
        }
        r->modules = nm;
        struct tool_entry **nt = realloc(r->tools, (r->n_tools + n_tools) * sizeof(*nt));
        if (!nt) {
                ret = -ENOMEM;
                goto fail_worker;
        }
        r->tools = nt;
        w->state = W_IDLE;
        w->since_usec = now_usec();
        ret = worker_attach(w);
        if (ret < 0)
                goto fail_worker;
        w = NULL;
        memcpy(r->tools + r->n_tools, tools, n_tools * sizeof(*tools));
        r->n_tools += n_tools;
        qsort(r->tools, r->n_tools, sizeof(*r->tools), tool_cmp);
        free(tools);
        tools = NULL;
        n_tools = 0;
        r->modules[r->n_modules++] = AB_TAKE_PTR(m);
        ret = 0;
        goto out;

fail_worker:
        reap_describe(w->pid, true, status, sizeof(status));
        log_warning("refusing module %s: %s", m->path, strerror(-ret));
out:
        cJSON_Delete(hello);
        for (size_t i = 0; i < n_tools; i++)
                tool_entry_free(tools[i]);
        free(tools);
        worker_free(w);
        if (fd >= 0)
                close(fd);
        module_free(m);
        return ret;
}

static int
str_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int
hw_registry_load_dir(struct hw_registry *r, const char *dir)
{
        char **names = NULL;
        size_t n = 0, loaded = 0;
        struct dirent *de;
        DIR *d;
        int ret = 0;

        if (!r || !dir)
                return -EINVAL;
        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                ret = -errno;
                log_warning("cannot read module directory %s: %s", dir, strerror(-ret));
                return ret;
        }
        while ((errno = 0, de = readdir(d))) {
                size_t len = strlen(de->d_name);
                char **nv;

                if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
                        continue;
                if (n >= 4096) {
                        log_warning("module directory %s: more than 4096 entries, the rest is ignored", dir);
                        break;
                }
                nv = realloc(names, (n + 1) * sizeof(*nv));
                if (!nv) {
                        ret = -ENOMEM;
                        goto out;
                }
                names = nv;
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        ret = -ENOMEM;
                        goto out;
                }
                n++;
        }
        if (errno != 0) {
                ret = -errno;
                log_warning("cannot read module directory %s: %s", dir, strerror(-ret));
                goto out;
        }
        if (n > 1)
                qsort(names, n, sizeof(*names), str_cmp);   /* names is NULL when the directory is empty */
        for (size_t i = 0; i < n; i++) {
                int k = module_load(r, dirfd(d), dir, names[i]);

                if (k == -ENOMEM) {
                        ret = k;
                        goto out;
                }
                if (k == 0)
                        loaded++;
        }
        ret = (int)loaded;
out:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return ret;
}

/* ---------- pools and dispatch ---------- */

static void
module_counts(const struct hw_module *m, size_t *ret_live, size_t *ret_starting, struct hw_worker **ret_idle)
{
        size_t live = 0, starting = 0;
        struct hw_worker *idle = NULL;

        for (struct hw_worker *w = m->workers; w; w = w->next) {
                if (w->state == W_DYING)
                        continue;
                live++;
                if (w->state == W_STARTING)
                        starting++;
                else if (w->state == W_IDLE && !idle)
                        idle = w;
        }
        *ret_live = live;
        *ret_starting = starting;
        if (ret_idle)
                *ret_idle = idle;
}

/* Workers of m that are reserved for or running a call. */
static size_t
module_busy(const struct hw_module *m)
{
        size_t n = 0;

        for (const struct hw_worker *w = m->workers; w; w = w->next)
                if (w->state == W_BUSY)
                        n++;
        return n;
}

/* Bind c to w (idle, or busy with calls it will run first) and tell c's owner. */
static void
call_assign(struct hw_call *c, struct hw_worker *w)
{
        if (w->state == W_IDLE)
                w->since_usec = now_usec();
        w->state = W_BUSY;
        bound_append(w, c);
        c->w = w;
        c->state = C_RESERVED;
        if (c->ops.ready)
                c->ops.ready(c->userdata, w->pid);
}

/* A worker of m for a new call, or NULL (the call queues): an idle worker; else, while m's
 * calls are measured fast (HW_PIPELINE_SAMPLES calls averaging under HW_PIPELINE_FAST_US), the
 * least loaded busy worker whose running call (if any) started less than HW_PIPELINE_STUCK_US
 * ago and that has fewer than HW_PIPELINE_MAX calls bound. A call bound to a busy worker waits
 * for it after its call-begin, which is the point: the broker round trip of the next calls
 * overlaps the current call, and a fast module needs one worker, not one per call in flight. */
static struct hw_worker *
module_pick_worker(struct hw_module *m)
{
        struct hw_worker *best = NULL;
        size_t best_load = SIZE_MAX;
        uint64_t now;

        for (struct hw_worker *w = m->workers; w; w = w->next)
                if (w->state == W_IDLE)
                        return w;
        if (m->service_samples < HW_PIPELINE_SAMPLES || m->service_us >= HW_PIPELINE_FAST_US)
                return NULL;
        now = now_usec();
        for (struct hw_worker *w = m->workers; w; w = w->next) {
                size_t load = w->n_bound + (w->call ? 1 : 0);

                if (w->state != W_BUSY || w->fd < 0 || load >= HW_PIPELINE_MAX)
                        continue;
                if (w->call && now - w->since_usec >= HW_PIPELINE_STUCK_US)
                        continue;
                if (load < best_load) {
                        best = w;
                        best_load = load;
                }
        }
        return best;
}

/* Fold the time one call spent in a worker into m's moving average. A result counts at most
 * HW_PIPELINE_SAMPLE_MAX_US: a fast call that lost its CPU for a while on a busy machine does
 * not stop the pipelining by itself (two such in a row do not either; a module whose calls
 * are all that slow stops it at once). A timeout (timed_out) counts in full. */
static void
module_note_service(struct hw_module *m, uint64_t us, bool timed_out)
{
        if (!timed_out && us > HW_PIPELINE_SAMPLE_MAX_US)
                us = HW_PIPELINE_SAMPLE_MAX_US;
        if (m->service_samples++ == 0)
                m->service_us = us;
        else
                m->service_us = m->service_us - m->service_us / 8 + us / 8;
}

static int worker_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata);

/* Start one more worker for m, asynchronously (its hello arrives on the loop). */
static int
module_start_worker(struct hw_module *m)
{
        struct hw_worker *w = NULL;
        int r;

        r = worker_spawn(m, &w);
        if (r < 0)
                return r;
        r = worker_attach(w);
        if (r < 0) {
                (void)kill(w->pid, SIGKILL);
                (void)waitpid(w->pid, NULL, 0);
                worker_free(w);
                return r;
        }
        r = sd_event_add_time_relative(m->r->event, &w->timer, CLOCK_MONOTONIC,
                                       (uint64_t)HW_HELLO_TIMEOUT_MS * 1000, HW_TIMER_ACCURACY_US,
                                       worker_hello_timeout, w);
        if (r < 0) {
                /* Without a hello timer the worker would be trusted to answer: stop it. */
                worker_kill(w);
                return r;
        }
        return 0;
}

static void
module_fail_queue(struct hw_module *m, const char *failure, const char *message)
{
        while (m->queue_head) {
                struct hw_call *c = m->queue_head;

                queue_remove(m, c);
                call_finish_now(c, NULL, failure, message);
        }
}

static void
module_mark_start_failure(struct hw_module *m, const char *what)
{
        m->start_failures++;
        log_warning("module %s: a worker failed to start (%s)", m->name, what);
        if (m->start_failures >= HW_START_FAILURES_MAX && !m->unavailable) {
                char msg[256];

                m->unavailable = true;
                log_error("module %s is unavailable: %u workers in a row failed to start", m->name,
                          m->start_failures);
                snprintf(msg, sizeof(msg), "the %s module is unavailable: its workers failed to start %u times in a row",
                         m->name, m->start_failures);
                module_fail_queue(m, "unavailable", msg);
                return;
        }
        module_schedule_dispatch(m);
}

static void module_dispatch(struct hw_module *m);

static int
module_grow_timer_handler(sd_event_source *s, uint64_t usec, void *userdata)
{
        module_dispatch(userdata);
        return 0;
}

/* How many workers m should have starting for its queue (no idle worker is left): none
 * while its calls have not waited HW_GROW_AFTER_US and one of its workers took its call
 * less than that ago (it is likely to be free soon: a microsecond tool needs one worker);
 * else one per queued call that waited that long (all queued calls when every worker is
 * held by an older call, or when there is none). A timer re-decides when the next queued
 * call reaches that age. */
static size_t
module_grow_wanted(struct hw_module *m, size_t live)
{
        uint64_t now = now_usec(), youngest = 0, next = UINT64_MAX;
        size_t waited = 0;
        bool all_old = true;
        int r;

        for (const struct hw_worker *w = m->workers; w; w = w->next) {
                /* (Nor is the time the loop spent starting a worker time its call ran.) */
                uint64_t since = w->since_usec > m->r->spawn_end_usec ? w->since_usec : m->r->spawn_end_usec;

                if (w->state == W_BUSY && now - since < HW_GROW_AFTER_US) {
                        all_old = false;
                        if (since > youngest)
                                youngest = since;
                }
        }
        if (live == 0 || all_old)
                return m->n_queued;
        for (const struct hw_call *c = m->queue_head; c; c = c->next) {
                /* Time the loop spent starting a worker (in its sandbox: milliseconds) is not
                 * time this call waited for one to be free. */
                uint64_t since = c->queued_usec > m->r->spawn_end_usec ? c->queued_usec : m->r->spawn_end_usec;

                if (now - since >= HW_GROW_AFTER_US)
                        waited++;
                else {
                        next = since + HW_GROW_AFTER_US;
                        break;
                }
        }
        /* Also when the youngest busy call gets old. */
        if (youngest + HW_GROW_AFTER_US < next)
                next = youngest + HW_GROW_AFTER_US;
        if (waited < m->n_queued && next != UINT64_MAX) {
                if (!m->grow_timer)
                        r = sd_event_add_time(m->r->event, &m->grow_timer, CLOCK_MONOTONIC, next, HW_GROW_ACCURACY_US,
                                              module_grow_timer_handler, m);
                else {
                        r = sd_event_source_set_time(m->grow_timer, next);
                        if (r >= 0)
                                r = sd_event_source_set_enabled(m->grow_timer, SD_EVENT_ONESHOT);
                }
                if (r < 0)
                        return m->n_queued;   /* no timer to wait with: grow now */
        }
        return waited;
}

/* Assign queued calls of m to idle workers (FIFO) and start workers for the rest, up to
 * HW_POOL_MAX. Runs on the loop. */
static void
module_dispatch(struct hw_module *m)
{
        size_t live, starting, want;

        m->dispatch_pending = false;
        if (m->unavailable) {
                char msg[256];

                snprintf(msg, sizeof(msg), "the %s module is unavailable: its workers failed to start %u times in a row",
                         m->name, m->start_failures);
                module_fail_queue(m, "unavailable", msg);
                return;
        }
        for (;;) {
                struct hw_call *c = m->queue_head;
                struct hw_worker *w;

                if (!c)
                        return;
                w = module_pick_worker(m);
                if (!w)
                        break;
                queue_remove(m, c);
                call_assign(c, w);
        }
        module_counts(m, &live, &starting, NULL);
        if (live >= HW_POOL_MAX || starting >= m->n_queued)
                return;
        want = module_grow_wanted(m, live);
        while (live < HW_POOL_MAX && starting < want) {
                int r = module_start_worker(m);

                if (r < 0) {
                        char what[128];

                        snprintf(what, sizeof(what), "cannot start %s: %s", m->r->worker_path, strerror(-r));
                        module_mark_start_failure(m, what);
                        return;
                }
                live++;
                starting++;
        }
}

static void
module_schedule_dispatch(struct hw_module *m)
{
        m->dispatch_pending = true;
        registry_schedule(m->r);
}

/* Call done for every call whose completion was deferred, in order, and free them. */
static void
registry_deliver_finished(struct hw_registry *r)
{
        while (r->finishing_head) {
                struct hw_call *c = r->finishing_head;

                clist_remove(&r->finishing_head, &r->finishing_tail, NULL, c);
                call_done(c, AB_TAKE_PTR(c->result), c->failure, c->message ? c->message : c->failure);
                call_free(c);
        }
}

/* The deferred source: deliver pending completions, then dispatch modules. */
static int
registry_defer_handler(sd_event_source *s, void *userdata)
{
        struct hw_registry *r = userdata;

        registry_deliver_finished(r);
        for (size_t i = 0; i < r->n_modules; i++)
                if (r->modules[i]->dispatch_pending)
                        module_dispatch(r->modules[i]);
        return 0;
}

/* ---------- idle workers ---------- */

static int module_idle_timer_handler(sd_event_source *s, uint64_t usec, void *userdata);

/* Arm m's idle timer for the earliest time an idle worker beyond the first may be stopped;
 * disable it when m has no worker to spare. */
static void
module_arm_idle_timer(struct hw_module *m)
{
        uint64_t first = UINT64_MAX;
        size_t live = 0;
        int r;

        for (const struct hw_worker *w = m->workers; w; w = w->next) {
                if (w->state == W_DYING)
                        continue;
                live++;
                if (w->state == W_IDLE && w->since_usec < first)
                        first = w->since_usec;
        }
        if (live <= 1 || first == UINT64_MAX || m->r->freeing) {
                if (m->idle_timer)
                        (void)sd_event_source_set_enabled(m->idle_timer, SD_EVENT_OFF);
                return;
        }
        if (m->idle_timer && sd_event_source_get_enabled(m->idle_timer, NULL) > 0)
                return;   /* armed for an earlier one already: it re-arms itself */
        if (!m->idle_timer)
                r = sd_event_add_time(m->r->event, &m->idle_timer, CLOCK_MONOTONIC, first + HW_IDLE_STOP_US,
                                      HW_TIMER_ACCURACY_US * 10, module_idle_timer_handler, m);
        else {
                r = sd_event_source_set_time(m->idle_timer, first + HW_IDLE_STOP_US);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->idle_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_debug("module %s: no idle timer: %s", m->name, strerror(-r));
}

/* Stop the workers of m that have been idle for HW_IDLE_STOP_US, keeping one live worker. */
static int
module_idle_timer_handler(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hw_module *m = userdata;
        uint64_t now = now_usec();
        size_t live = 0;

        for (const struct hw_worker *w = m->workers; w; w = w->next)
                if (w->state != W_DYING)
                        live++;
        for (struct hw_worker *w = m->workers; w && live > 1; w = w->next)
                if (w->state == W_IDLE && now - w->since_usec >= HW_IDLE_STOP_US) {
                        log_debug("module %s: stopping idle worker %d", m->name, (int)w->pid);
                        worker_kill(w);   /* reaped by its child source */
                        live--;
                }
        module_arm_idle_timer(m);
        return 0;
}

/* ---------- worker events ---------- */

/* w's call ended normally or w became ready: make it idle and serve the queue. */
static void
worker_set_idle(struct hw_worker *w)
{
        w->state = W_IDLE;
        w->since_usec = now_usec();
        w->call = NULL;
        if (w->m->queue_head)
                module_schedule_dispatch(w->m);
        else
                module_arm_idle_timer(w->m);
}

/* Kill w because it misbehaved (what: for the log) and end its call with "garbage". */
static void
worker_garbage(struct hw_worker *w, const char *what)
{
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        bool starting = w->state == W_STARTING;

        log_warning("module %s: killing worker %d: %s", m->name, (int)w->pid, what);
        worker_kill(w);
        if (starting) {
                module_mark_start_failure(m, what);
                return;
        }
        if (c) {
                char msg[512];

                snprintf(msg, sizeof(msg), "the %s module's worker sent an invalid message (%s)", m->name, what);
                call_end_by_worker(c, "garbage", msg);
        }
        module_schedule_dispatch(m);
}

/* The frame's "id" matches w's current call. */
static bool
frame_id_matches(const struct hw_worker *w, const cJSON *msg)
{
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");

        return w->call && cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble <= 9007199254740992.0 &&
               (uint64_t)id->valuedouble == w->call->id && (double)w->call->id == id->valuedouble;
}

/* Turn a result frame into a CallToolResult. Returns 0 with *ret, -EBADMSG or -ENOMEM. */
static int
result_from_frame(cJSON *msg, cJSON **ret)
{
        cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        cJSON *structured = cJSON_GetObjectItemCaseSensitive(msg, "structuredContent");
        const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(msg, "isError");
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");
        const cJSON *item;
        cJSON *res;

        if (content && !cJSON_IsArray(content))
                return -EBADMSG;
        cJSON_ArrayForEach(item, content) {
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
                    !cJSON_AddStringToObject(block, "text", cJSON_IsString(error) ? error->valuestring : "the tool failed"))
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
static uint64_t
service_time(const struct hw_call *c, const cJSON *msg)
{
        const cJSON *us = cJSON_GetObjectItemCaseSensitive(msg, "us");
        uint64_t wall = now_usec() - c->sent_usec;

        if (cJSON_IsNumber(us) && us->valuedouble >= 0 && us->valuedouble < (double)wall)
                return (uint64_t)us->valuedouble;
        return wall;
}

/* Add what st says was redacted from c's output to c's record (the names from red, the
 * redactor that did it). c may be NULL (output outside a call). */
static void
call_note_redactions(struct hw_call *c, const struct hs_redactor *red, const struct hs_redact_stats *st)
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
static int
worker_redact(struct hw_worker *w, struct hw_call *c, const char *text, char **ret)
{
        struct hs_redact_stats st = { 0 };
        int r = hs_redact_text_stats(w->redactor, text, ret, &st);

        if (r == 0)
                call_note_redactions(c, w->redactor, &st);
        return r;
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
                log_warning("module %s: a line of more than %d bytes on a worker's stderr was dropped", w->m->name,
                            HL_LINE_MAX);
                return;
        }
        if (worker_redact(w, NULL, line, &red) < 0) {
                log_warning("module %s: a line of a worker's stderr was dropped: no memory to redact it", w->m->name);
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
                        explicit_bzero(buf, (size_t)n);
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

/* Handle one frame from w. Returns 0, or -EBADMSG after w was killed as garbage (the caller
 * stops reading). */
static int
worker_handle_frame(struct hw_worker *w, cJSON *msg)
{
        const char *t = cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;

        if (strcmp(t, "log") == 0) {
                const cJSON *level = cJSON_GetObjectItemCaseSensitive(msg, "level");
                const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");
                _cleanup_free_ char *red = NULL;
                const char *line;
                int lvl;

                if (!cJSON_IsNumber(level) || !cJSON_IsString(text)) {
                        worker_garbage(w, "a log message without level or text");
                        return -EBADMSG;
                }
                lvl = level->valuedouble < LOG_ERR ? LOG_ERR : level->valuedouble > LOG_DEBUG ? LOG_DEBUG
                                                                                              : (int)level->valuedouble;
                /* Redacted whole, before anything is logged or cut. */
                if (worker_redact(w, c && c->state == C_RUNNING ? c : NULL, text->valuestring, &red) < 0) {
                        log_warning("module %s: a log line was dropped: no memory to redact it", m->name);
                        return 0;
                }
                line = red ? red : text->valuestring;
                ab_log(lvl, "module %s: %.*s", m->name, HW_LOG_MESSAGE_MAX, line);
                if (c && c->state == C_RUNNING && c->ops.log)
                        c->ops.log(c->userdata, lvl, line);
                return 0;
        }

        if (w->state == W_STARTING) {
                const char *why = NULL;
                char what[600];

                if (strcmp(t, "hello") == 0) {
                        if (check_hello(m, msg, NULL, NULL, &why) < 0) {
                                worker_garbage(w, why);
                                return -EBADMSG;
                        }
                        w->timer = sd_event_source_disable_unref(w->timer);
                        m->start_failures = 0;
                        worker_set_idle(w);
                        module_schedule_dispatch(m);
                        return 0;
                }
                if (strcmp(t, "fail") == 0) {
                        const cJSON *err = cJSON_GetObjectItemCaseSensitive(msg, "error");

                        snprintf(what, sizeof(what), "its initialisation failed: %.*s",
                                 AB_UTF8_CUT(cJSON_IsString(err) ? err->valuestring : "no reason given", 512));
                        worker_kill(w);
                        module_mark_start_failure(m, what);
                        return -EBADMSG;
                }
                worker_garbage(w, "an unexpected message before its hello");
                return -EBADMSG;
        }

        if (strcmp(t, "progress") == 0) {
                const cJSON *progress = cJSON_GetObjectItemCaseSensitive(msg, "progress");
                const cJSON *total = cJSON_GetObjectItemCaseSensitive(msg, "total");
                const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");
                _cleanup_free_ char *red = NULL;

                if (!frame_id_matches(w, msg) || !cJSON_IsNumber(progress) || (total && !cJSON_IsNumber(total)) ||
                    (text && !cJSON_IsNull(text) && !cJSON_IsString(text))) {
                        worker_garbage(w, "an invalid progress message");
                        return -EBADMSG;
                }
                if (c->state != C_RUNNING || !c->ops.progress)
                        return 0;
                if (cJSON_IsString(text) && worker_redact(w, c, text->valuestring, &red) < 0)
                        return 0;       /* no memory to redact it: not sent */
                c->ops.progress(c->userdata, progress->valuedouble, total ? total->valuedouble : 0,
                                red ? red : cJSON_IsString(text) ? text->valuestring : NULL);
                return 0;
        }

        if (strcmp(t, "redact") == 0) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(msg, "name");
                cJSON *value = cJSON_GetObjectItemCaseSensitive(msg, "value");
                unsigned char *bytes = NULL;
                size_t len = 0;
                int r;

                if (!frame_id_matches(w, msg) || !cJSON_IsString(name) || !cJSON_IsString(value) ||
                    strlen(name->valuestring) == 0 || strlen(name->valuestring) > HW_SECRET_NAME_MAX) {
                        if (cJSON_IsString(value))
                                explicit_bzero(value->valuestring, strlen(value->valuestring));
                        worker_garbage(w, "an invalid redact message");
                        return -EBADMSG;
                }
                r = ab_base64_decode(value->valuestring, &bytes, &len);
                explicit_bzero(value->valuestring, strlen(value->valuestring));
                if (r == -EINVAL) {
                        worker_garbage(w, "a redact message whose value is not base64");
                        return -EBADMSG;
                }
                if (r < 0) {
                        /* Without memory the secret cannot be remembered: its result must not go out. */
                        worker_kill(w);
                        call_end_by_worker(c, "crashed", "the host ran out of memory during the call");
                        module_schedule_dispatch(m);
                        return -EBADMSG;
                }
                /* Only a value the broker vouched for goes into the table: a module cannot fill
                 * it with made-up entries (nor name a secret its call may not read). */
                if (!c->ops.redact || c->ops.redact(c->userdata, name->valuestring, bytes, len) < 0) {
                        ab_freezero(bytes, len);
                        worker_garbage(w, "a redact message that is not a secret its call read");
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
                        worker_kill(w);
                        call_end_by_worker(c, "unredactable", why);
                        module_schedule_dispatch(m);
                        return -EBADMSG;
                }
                return 0;
        }

        if (strcmp(t, "result") == 0) {
                cJSON *result = NULL;
                int r;

                if (!c || (c->state != C_RUNNING && c->state != C_CANCELLING)) {
                        worker_garbage(w, c ? "a result before the call was sent" : "a result while idle");
                        return -EBADMSG;
                }
                if (!frame_id_matches(w, msg)) {
                        worker_garbage(w, "a result for another call");
                        return -EBADMSG;
                }
                if (c->state == C_CANCELLING) {
                        call_detach(c);
                        worker_settle(w);
                        call_finish_now(c, NULL, "cancelled", "the call was cancelled");
                        return 0;
                }
                r = result_from_frame(msg, &result);
                if (r == 0) {
                        /* Every string of it, before anyone sees it. */
                        struct hs_redact_stats st = { 0 };

                        r = hs_redact_result(result, w->redactor, &st);
                        if (r < 0)
                                result = (cJSON_Delete(result), NULL);
                        else
                                call_note_redactions(c, w->redactor, &st);
                        if (r == -EINVAL)
                                r = -EBADMSG;
                }
                if (r == -EBADMSG) {
                        worker_garbage(w, "a malformed result");
                        return -EBADMSG;
                }
                module_note_service(m, service_time(c, msg), false);
                /* The next waiting call goes out before this one is answered. */
                call_detach(c);
                worker_settle(w);
                if (r < 0)
                        call_finish_now(c, NULL, "crashed", "the host ran out of memory reading the result");
                else
                        call_finish_now(c, result, NULL, NULL);
                return 0;
        }

        if (strcmp(t, "hello") == 0 || strcmp(t, "fail") == 0)
                worker_garbage(w, "a second hello");
        else
                worker_garbage(w, "a message of unknown type");
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
        worker_kill(w);
        if (starting)
                module_mark_start_failure(m, "it closed its control channel");
        else if (c) {
                char msg[256];

                snprintf(msg, sizeof(msg), "the %s module's worker crashed (it closed its control channel) during the call",
                         m->name);
                call_end_by_worker(c, "crashed", msg);
        }
        module_schedule_dispatch(m);
        return 0;
}

/* w's socket reached EOF (or broke): stop reading and give the process a moment to exit, so
 * that its exit status (e.g. the signal that killed it) can be reported. */
static void
worker_eof(struct hw_worker *w)
{
        worker_close_channel(w);
        w->timer = sd_event_source_disable_unref(w->timer);
        if (sd_event_add_time_relative(w->m->r->event, &w->timer, CLOCK_MONOTONIC, (uint64_t)HW_EOF_GRACE_MS * 1000,
                                       HW_TIMER_ACCURACY_US, worker_eof_timeout, w) < 0)
                worker_eof_timeout(NULL, 0, w);
}

static int
worker_io_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct hw_worker *w = userdata;

        if (revents & EPOLLOUT) {
                if (worker_flush(w) < 0) {
                        worker_eof(w);
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
                        worker_garbage(w, "a malformed frame");
                        return 0;
                }
                if (r < 0) {
                        worker_eof(w);
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
        worker_unlink(w);
        w->call = NULL;
        if (c)
                c->w = NULL;
        w->pid = 0;                    /* reaped by sd-event after this returns */
        worker_free(w);

        if (!dying) {
                if (starting) {
                        char what[96];

                        snprintf(what, sizeof(what), "it exited before its hello (%s)", status);
                        module_mark_start_failure(m, what);
                } else
                        log_warning("module %s: a worker exited (%s)%s", m->name, status, c ? " during a call" : "");
        }
        if (c) {
                char msg[256];

                snprintf(msg, sizeof(msg), "the %s module's worker crashed (%s) during the call", m->name, status);
                call_end_by_worker(c, "crashed", msg);
        }
        if (m->queue_head)
                module_schedule_dispatch(m);
        return 0;
}

static int
worker_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hw_worker *w = userdata;
        struct hw_module *m = w->m;

        w->timer = sd_event_source_disable_unref(w->timer);
        worker_kill(w);
        module_mark_start_failure(m, "it did not answer in time");
        return 0;
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
                module_note_service(m, now_usec() - c->sent_usec, true);
        if (w) {
                log_warning("module %s: killing worker %d: %s", m->name, (int)w->pid,
                            c->state == C_CANCELLING ? "it did not stop a cancelled call" : "the call timed out");
                worker_kill(w);
        }
        if (c->state == C_CANCELLING)
                call_finish_now(c, NULL, "cancelled", "the call was cancelled");
        else
                call_fail_now(c, "timeout", "the call did not finish within %u ms", c->timeout_ms);
        module_schedule_dispatch(m);
        return 0;
}

static int external_start(struct hw_call *c);
static int external_send(struct hw_call *c, const cJSON *args, size_t max_bytes, unsigned timeout_ms);
static void external_stop(struct hw_call *c);

int
hw_call_start(struct hw_registry *r, const char *tool, const struct hw_call_ops *ops, void *userdata,
              struct hw_call **ret)
{
        const struct hw_tool *t;
        struct hw_module *m;
        struct hw_call *c;
        struct hw_worker *w;

        if (!r || !tool || !ops || !ret)
                return -EINVAL;
        if (r->freeing)
                return -ESHUTDOWN;
        t = hw_tool_find(r, tool);
        if (!t)
                return -ENOENT;
        m = ((struct tool_entry *)t)->m;
        /* Calls waiting for a worker that is starting or could still be started are not
         * queued in the sense of HW_QUEUE_MAX: only those beyond the full pool count. */
        if (!m->unavailable && m->n_queued >= HW_QUEUE_MAX + (HW_POOL_MAX - module_busy(m)))
                return -EAGAIN;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->r = r;
        c->m = m;
        c->tool = (struct tool_entry *)t;
        c->ops = *ops;
        c->userdata = userdata;
        c->id = ++r->next_call_id;
        c->tool->refs++;
        *ret = c;

        if (m->external)
                return external_start(c);
        if (m->unavailable) {
                call_fail_later(c, "unavailable", "the %s module is unavailable: its workers failed to start %u times in a row",
                                m->name, m->start_failures);
                return 0;
        }
        if (!m->queue_head && (w = module_pick_worker(m))) {
                call_assign(c, w);
                return 0;
        }
        c->state = C_QUEUED;
        queue_append(m, c);
        module_schedule_dispatch(m);
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

        r = sd_event_add_time_relative(c->r->event, &c->timer, CLOCK_MONOTONIC, (uint64_t)c->timeout_ms * 1000,
                                       call_timer_accuracy(c->timeout_ms), call_timeout_handler, c);
        if (r < 0)
                goto fail;
        bound_remove(w, c);
        frame = AB_TAKE_PTR(c->frame);
        w->call = c;
        c->state = C_RUNNING;
        c->sent_usec = w->since_usec = now_usec();
        r = worker_send(w, frame);
        frame_wipe_free(frame);
        if (r == -ENOMEM || r == -E2BIG)
                goto fail;      /* nothing reached the worker: it stays usable */
        /* A broken channel is reported by the worker's exit ("crashed"). */
        if (r < 0 && w->fd >= 0)
                worker_eof(w);
        return 0;
fail:
        call_fail_later(c, "crashed", "the call could not be sent to the %s module's worker: %s", c->m->name,
                        strerror(-r));
        return r;
}

/* w's call ended, or a call bound to it went away: send the next waiting call; else w stays
 * busy while calls are bound to it, or becomes idle. */
static void
worker_settle(struct hw_worker *w)
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
                worker_set_idle(w);
}

int
hw_call_send(struct hw_call *c, const cJSON *args, const char *token, const char *run, size_t max_bytes,
             unsigned timeout_ms)
{
        struct hw_worker *w;
        cJSON *msg = NULL, *a;
        int r;

        if (c && c->m->external)
                return external_send(c, args, max_bytes, timeout_ms);
        if (!c || c->state != C_RESERVED || !c->w)
                return -EINVAL;
        if (args && !cJSON_IsObject(args))
                return -EINVAL;
        w = c->w;
        if (timeout_ms == 0)
                timeout_ms = HW_DEFAULT_TIMEOUT_MS;

        r = -ENOMEM;
        msg = cJSON_CreateObject();
        if (!msg || !cJSON_AddStringToObject(msg, "t", "call") || !cJSON_AddNumberToObject(msg, "id", (double)c->id) ||
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
                        worker_settle(w);   /* idle again unless other calls are bound to it */
                return r;
        }
        return 0;

fail:
        frame_wipe_free(msg);
        call_fail_later(c, "crashed", "the call could not be sent to the %s module's worker: %s", c->m->name,
                        strerror(-r));
        worker_settle(w);
        return r;
}

/* End a call that was not sent (queued, or bound to a worker: reserved or waiting) with
 * failure, on the deferred source. Returns false when c was sent or is ending already. */
static bool
call_end_unsent(struct hw_call *c, const char *failure, const char *message)
{
        struct hw_worker *w = c->w;

        if (c->state == C_QUEUED)
                queue_remove(c->m, c);
        else if (c->state == C_RESERVED || c->state == C_WAITING) {
                call_detach(c);
                if (w)
                        worker_settle(w);
        } else
                return false;
        call_fail_later(c, failure, "%s", message);
        return true;
}

void
hw_call_abort(struct hw_call *c)
{
        if (!c)
                return;
        if (c->m->external) {
                external_stop(c);
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
                external_stop(c);
                return;
        }
        if (!c || call_end_unsent(c, "cancelled", "the call was cancelled") || c->state != C_RUNNING)
                return;

        c->state = C_CANCELLING;
        c->timer = sd_event_source_disable_unref(c->timer);
        msg = cJSON_CreateObject();
        if (msg && cJSON_AddStringToObject(msg, "t", "cancel") && cJSON_AddNumberToObject(msg, "id", (double)c->id))
                r = c->w ? worker_send(c->w, msg) : -EPIPE;
        cJSON_Delete(msg);
        if (r >= 0 || r == -EPIPE || r == -ECONNRESET)
                r = sd_event_add_time_relative(c->r->event, &c->timer, CLOCK_MONOTONIC,
                                               (uint64_t)HW_CANCEL_GRACE_MS * 1000, HW_TIMER_ACCURACY_US,
                                               call_timeout_handler, c);
        if (r < 0) {
                /* Neither a cancel nor its grace timer: stop the worker now. */
                struct hw_module *m = c->m;

                if (c->w)
                        worker_kill(c->w);
                call_fail_later(c, "cancelled", "the call was cancelled");
                module_schedule_dispatch(m);
        }
}

/* ---------- registry ---------- */

int
hw_registry_new(sd_event *event, const char *worker_path, const char *broker_path, hw_config_fn config,
                void *config_userdata, struct hw_registry **ret)
{
        struct hw_registry *r;
        sigset_t ss;
        int k;

        if (!event || !worker_path || !ret)
                return -EINVAL;
        /* sd_event_add_child needs SIGCHLD blocked; workers get an empty mask at spawn. */
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(event);
        /* Absolute: a worker starts with its cwd at the sandbox's root. */
        if (worker_path[0] != '/') {
                char cwd[PATH_MAX];

                r->worker_path = getcwd(cwd, sizeof(cwd)) ? strdup_printf("%s/%s", cwd, worker_path) : NULL;
        } else
                r->worker_path = strdup(worker_path);
        r->broker_path = broker_path ? strdup(broker_path) : NULL;
        r->config = config;
        r->config_userdata = config_userdata;
        if (!r->worker_path || (broker_path && !r->broker_path)) {
                hw_registry_free(r);
                return -ENOMEM;
        }
        k = sd_event_add_defer(event, &r->defer, registry_defer_handler, r);
        if (k < 0) {
                hw_registry_free(r);
                return k;
        }
        (void)sd_event_source_set_enabled(r->defer, SD_EVENT_OFF);
        *ret = r;
        return 0;
}

int
hw_registry_set_egress(struct hw_registry *r, const char *egress_path)
{
        char *p = egress_path ? strdup(egress_path) : NULL;

        if (egress_path && !p)
                return -ENOMEM;
        free(r->egress_path);
        r->egress_path = p;
        return 0;
}

void
hw_registry_free(struct hw_registry *r)
{
        if (!r)
                return;
        r->freeing = true;
        r->defer = sd_event_source_disable_unref(r->defer);

        /* Completions already decided go out as decided. */
        registry_deliver_finished(r);

        for (size_t i = 0; i < r->n_modules; i++) {
                struct hw_module *m = r->modules[i];

                m->unavailable = true;
                module_fail_queue(m, "stopped", "the host is stopping");
                while (m->workers) {
                        struct hw_worker *w = m->workers;
                        struct hw_call *c = w->call;
                        pid_t pid = w->pid;

                        worker_unlink(w);
                        if (pid > 0)
                                (void)kill(pid, SIGKILL);
                        w->child = sd_event_source_disable_unref(w->child);
                        if (pid > 0)
                                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                                        ;
                        w->call = NULL;
                        while (w->bound_head)
                                call_finish_now(w->bound_head, NULL, "stopped", "the host is stopping");
                        worker_free(w);
                        if (c) {
                                c->w = NULL;
                                call_finish_now(c, NULL, "stopped", "the host is stopping");
                        }
                }
        }
        /* Calls that done callbacks above cancelled or aborted. */
        registry_deliver_finished(r);
        for (size_t i = 0; i < r->n_tools; i++)
                tool_entry_free(r->tools[i]);
        free(r->tools);
        for (size_t i = 0; i < r->n_modules; i++)
                module_free(r->modules[i]);
        free(r->modules);
        free(r->worker_path);
        free(r->broker_path);
        if (r->own_sb)
                hs_sandbox_free(r->sb);
        free(r->egress_path);
        sd_event_unref(r->event);
        free(r);
}

void
hw_registry_set_sandbox(struct hw_registry *r, struct hs_sandbox *sb)
{
        if (r->own_sb)
                hs_sandbox_free(r->sb);
        r->sb = sb;
        r->own_sb = false;
}

size_t
hw_tools_count(const struct hw_registry *r)
{
        return r ? r->n_tools : 0;
}

const struct hw_tool *
hw_tool_at(const struct hw_registry *r, size_t i)
{
        if (!r || i >= r->n_tools)
                return NULL;
        return &r->tools[i]->pub;
}

static int
tool_name_cmp(const void *key, const void *elem)
{
        const struct tool_entry *const *t = elem;

        return strcmp(key, (*t)->pub.name);
}

const struct hw_tool *
hw_tool_find(const struct hw_registry *r, const char *name)
{
        struct tool_entry **t;

        if (!r || !name || r->n_tools == 0)
                return NULL;
        t = bsearch(name, r->tools, r->n_tools, sizeof(*r->tools), tool_name_cmp);
        return t ? &(*t)->pub : NULL;
}

size_t
hw_registry_workers(const struct hw_registry *r, pid_t *pids, size_t max)
{
        size_t n = 0;

        if (!r)
                return 0;
        for (size_t i = 0; i < r->n_modules; i++)
                for (const struct hw_worker *w = r->modules[i]->workers; w; w = w->next) {
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

/* ---------- external tools (host/gateway.c) ---------- */

/* A call of an external tool: the provider reserves (ready), runs and ends it. */
static int
external_start(struct hw_call *c)
{
        struct hw_registry *r = c->r;
        int k;

        c->state = C_QUEUED;
        if (!r->ext.start) {
                call_fail_later(c, "unavailable", "the %s server is not served", c->m->name);
                return 0;
        }
        k = r->ext.start(r->ext_userdata, c, c->m->name, c->tool->bare);
        if (k < 0) {
                c->tool->refs--;
                free(c);
                return k;
        }
        return 0;
}

static int
external_send(struct hw_call *c, const cJSON *args, size_t max_bytes, unsigned timeout_ms)
{
        struct hw_registry *r = c->r;
        int k;

        if (c->state != C_RESERVED || (args && !cJSON_IsObject(args)))
                return -EINVAL;
        c->state = C_RUNNING;
        c->timeout_ms = timeout_ms ? timeout_ms : HW_DEFAULT_TIMEOUT_MS;
        k = r->ext.send(r->ext_userdata, c, args, max_bytes, c->timeout_ms);
        if (k < 0)
                hw_external_done(c, NULL, "crashed", "the call could not be sent to the server");
        return k;
}

/* Abort (not sent) or cancel (sent) an external call: the provider ends it with done. */
static void
external_stop(struct hw_call *c)
{
        struct hw_registry *r = c->r;

        if (c->state == C_FINISHING || c->state == C_CANCELLING)
                return;
        if (c->state == C_RUNNING)
                c->state = C_CANCELLING;
        r->ext.stop(r->ext_userdata, c, c->state != C_CANCELLING);
}

int
hw_registry_set_external(struct hw_registry *r, const struct hw_external_ops *ops, void *userdata)
{
        if (!r)
                return -EINVAL;
        if (ops)
                r->ext = *ops;
        else
                memset(&r->ext, 0, sizeof(r->ext));
        r->ext_userdata = ops ? userdata : NULL;
        return 0;
}

void
hw_registry_want(struct hw_registry *r)
{
        if (r && r->ext.want && !r->freeing)
                r->ext.want(r->ext_userdata);
}

uint64_t
hw_registry_generation(const struct hw_registry *r)
{
        return r ? r->generation : 0;
}

/* The pseudo-module that holds the external tools of name, created on first use. */
static struct hw_module *
external_module(struct hw_registry *r, const char *name)
{
        struct hw_module *m, **nm;

        for (size_t i = 0; i < r->n_modules; i++)
                if (strcmp(r->modules[i]->name, name) == 0)
                        return r->modules[i]->external ? r->modules[i] : NULL;
        nm = realloc(r->modules, (r->n_modules + 1) * sizeof(*nm));
        if (!nm)
                return NULL;
        r->modules = nm;
        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->r = r;
        m->fd = -1;
        m->external = true;
        m->name = strdup(name);
        m->path = strdup_printf("server %s", name);
        if (!m->name || !m->path) {
                module_free(m);
                return NULL;
        }
        r->modules[r->n_modules++] = m;
        return m;
}

int
hw_external_set_tools(struct hw_registry *r, const char *name, const cJSON *tools, size_t *ret_served)
{
        struct tool_entry **v = NULL, **keep;
        struct hw_module *m;
        const cJSON *item;
        size_t n = 0, k = 0;
        int ret;

        if (!r || !name || (tools && !cJSON_IsArray(tools)) || !valid_name(name, strlen(name)))
                return -EINVAL;
        m = external_module(r, name);
        if (!m)
                return -ENOMEM;
        v = calloc((size_t)cJSON_GetArraySize(tools) + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        cJSON_ArrayForEach(item, tools) {
                struct tool_entry *t = NULL;
                char *err = NULL;
                bool dup = false;

                ret = tool_from_hello(m, item, &t, &err);
                if (ret == -EINVAL) {
                        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(item, "name");

                        log_warning("%s: refusing tool %.64s: %s", m->path,
                                    cJSON_IsString(nm) ? nm->valuestring : "(unnamed)", err ? err : "invalid");
                        free(err);
                        continue;
                }
                if (ret < 0)
                        goto fail;
                for (size_t i = 0; i < n; i++)
                        dup = dup || strcmp(v[i]->pub.name, t->pub.name) == 0;
                if (dup || (hw_tool_find(r, t->pub.name) && ((struct tool_entry *)hw_tool_find(r, t->pub.name))->m != m)) {
                        log_warning("%s: refusing tool %s: a tool of that name is served already", m->path,
                                    t->pub.name);
                        tool_entry_free(t);
                        continue;
                }
                t->m = m;
                v[n++] = t;
        }
        keep = realloc(r->tools, (r->n_tools + n + 1) * sizeof(*keep));
        if (!keep) {
                ret = -ENOMEM;
                goto fail;
        }
        r->tools = keep;
        /* Retire the module's old tools (freed once no call holds them), add the new ones. */
        for (size_t i = 0; i < r->n_tools; i++) {
                struct tool_entry *t = r->tools[i];

                if (t->m != m)
                        r->tools[k++] = t;
                else if (t->refs == 0)
                        tool_entry_free(t);
                else
                        t->retired = true;
        }
        memcpy(r->tools + k, v, n * sizeof(*v));
        r->n_tools = k + n;
        qsort(r->tools, r->n_tools, sizeof(*r->tools), tool_cmp);
        r->generation++;
        free(v);
        if (ret_served)
                *ret_served = n;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                tool_entry_free(v[i]);
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
                return;         /* no memory to redact it: not sent */
        call_note_redactions(c, c->ext_redactor, &st);
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
        static const char *const failures[] = { "crashed", "timeout", "garbage", "cancelled", "aborted",
                                                "stopped", "unavailable" };
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
                        call_note_redactions(c, c->ext_redactor, &st);
                        if (red)
                                message = red;
                }
        }
        c->result = result;
        /* Delivered on the deferred source, never inside the provider's or the owner's call. */
        call_fail_later(c, f, "%s", message ? message : f ? f : "");
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

bool
hw_registry_has_module(const struct hw_registry *r, const char *name)
{
        for (size_t i = 0; r && name && i < r->n_modules; i++)
                if (strcmp(r->modules[i]->name, name) == 0)
                        return true;
        return false;
}
