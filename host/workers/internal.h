/* SPDX-License-Identifier: MIT */
/* Module workers, seen from the host: what the parts of host/workers/ share (the
 * registry, module, worker and call structures, the limits, the functions one part calls in
 * another). Not for use outside host/workers/; host/workers/workers.h is the interface. */
#ifndef AB_HOST_WORKERS_INTERNAL_H
#define AB_HOST_WORKERS_INTERNAL_H

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

#include "common/clock.h"
#include "common/encode.h"
#include "common/frame.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/name.h"
#include "common/secmem.h"
#include "host/sandbox/sandbox.h"
#include "common/spawn.h"
#include "common/utf8.h"
#include "host/sandbox/egress.h"
#include "host/tool/shape.h"
#include "host/tool/lines.h"
#include "host/workers/workers.h"

#define HW_START_FAILURES_MAX 5     /* consecutive failed starts before a module is unavailable */
#define HW_CANCEL_GRACE_MS 2000     /* a cancelled call's worker is killed after this */
#define HW_EOF_GRACE_MS 1000        /* a worker that closed its socket must exit within this */
#define HW_DEFAULT_TIMEOUT_MS 60000 /* hw_call_send with timeout_ms 0 */
#define HW_FRAMES_PER_WAKEUP 64     /* frames read per io event before yielding to the loop */
#define HW_FD_MIN \
        6                          /* descriptors passed to workers live at >= 5 in the host,
                                        * so dup2 onto 3 and 4 never clobbers one of them */
#define HW_TIMER_ACCURACY_US 10000 /* 10 ms: timeouts need no more precision */
#define HW_GROW_AFTER_US \
        1500 /* the pool grows for a call that had to wait this long,
                                        * or when every worker runs a call older than this */
#define HW_GROW_ACCURACY_US 250
#define HW_IDLE_STOP_US (10 * 1000000ull) /* workers beyond the first stop after this idle time */
#define HW_PIPELINE_MAX 64                /* calls bound to one worker (one sent, the rest waiting) */
#define HW_PIPELINE_SAMPLES 8   /* a module's calls measured before calls are bound to busy workers */
#define HW_PIPELINE_FAST_US 500 /* ... and only while its calls take less than this (moving average) */
#define HW_PIPELINE_STUCK_US \
        100000                         /* nor to a worker whose running call is older than this (above
                                        * the stalls of a busy machine: tens of ms on the test VMs) */
#define HW_MODULE_BYTES_MAX (64 << 20) /* largest module file (copied into sealed memory at load) */
#define HW_PIPELINE_SAMPLE_MAX_US 2000 /* one result weighs at most this in the average */
#define HW_SECRET_NAME_MAX 128
#define HW_LOG_MESSAGE_MAX 4096
#define HW_STDERR_READ_MAX (64 * 1024)    /* stderr bytes read per wakeup */
#define HW_STDERR_DRAIN_MAX (1024 * 1024) /* ... and when the worker is freed */

enum worker_state {
        W_STARTING, /* init sent, waiting for hello */
        W_IDLE,
        W_BUSY,  /* a call is bound to it (reserved, waiting or running) */
        W_DYING, /* killed or exiting: waiting to be reaped */
};

enum call_state {
        C_QUEUED,     /* waiting for a worker */
        C_RESERVED,   /* a worker is assigned; the owner sends or aborts */
        C_WAITING,    /* the owner sent it; its worker runs another call: its frame waits */
        C_RUNNING,    /* the call frame was sent */
        C_CANCELLING, /* cancel sent; waiting for the result or the grace timer */
        C_FINISHING,  /* done is pending on the deferred source */
};

struct hw_module;

struct hw_worker {
        struct hw_module *m;
        struct hw_worker *prev, *next;
        pid_t pid;
        int fd; /* control socket, non-blocking; -1 once closed */
        enum worker_state state;
        sd_event_source *io, *child, *timer;
        struct ab_frame_reader reader;
        uint64_t since_usec; /* busy: when its call was assigned; idle: since when */
        unsigned char *out;  /* bytes not yet written (may hold a token: wiped) */
        size_t out_len, out_off;
        struct hw_call *call;                    /* the call sent to it (running or cancelling), or NULL */
        struct hw_call *bound_head, *bound_tail; /* calls bound to it, not sent yet (reserved, waiting) */
        size_t n_bound;
        struct hs_redactor *redactor; /* the secrets its calls read (made at the first), or NULL */
        int err_fd;                   /* read end of its stderr pipe (non-blocking), -1 once closed */
        sd_event_source *err_io;
        struct hl_lines err_lines; /* the stderr line being read (wiped) */
};

struct tool_entry {
        struct hw_tool pub; /* first: hw_tool pointers are tool_entry pointers */
        char *bare;         /* the tool's name inside its module */
        struct hw_module *m;
        unsigned refs; /* calls holding it (hw_call.tool) */
        bool retired;  /* replaced (external tools): freed when refs drops to 0 */
};

struct hw_module {
        struct hw_registry *reg;
        char *name;
        char *path; /* for log lines */
        int fd;     /* the module file, passed to every worker as fd 3 */
        struct hw_worker *workers;
        struct hw_call *queue_head, *queue_tail;
        size_t n_queued;
        unsigned start_failures;
        bool unavailable;
        bool dispatch_pending;
        sd_event_source *grow_timer; /* re-decide growth when a queued call has waited enough */
        sd_event_source *idle_timer; /* stop workers idle for HW_IDLE_STOP_US */
        uint64_t service_us;         /* moving average (1/8) of its calls' time in a worker */
        unsigned service_samples;
        bool external; /* its tools are served by the external provider (gateway) */
};

struct hw_call {
        struct hw_registry *reg;
        struct hw_module *m;
        struct tool_entry *tool;
        struct hw_call_ops ops;
        void *userdata;
        struct hw_worker *w;
        struct hw_call *prev, *next; /* in the module's queue, its worker's bound list or the
                                        * registry's finishing list */
        uint64_t id;
        uint64_t queued_usec; /* when it was queued */
        uint64_t sent_usec;   /* when its frame was sent to the worker */
        cJSON *frame;         /* waiting: the call frame (holds the token: wiped) */
        enum call_state state;
        unsigned timeout_ms;
        sd_event_source *timer;
        const char *failure; /* for a pending done */
        char *message;
        uint64_t redactions;           /* spans of its worker's output redacted */
        char *redacted[HS_REDACT_MAX]; /* the names of those secrets */
        size_t n_redacted;
        cJSON *result;                          /* external calls: the result for a pending done */
        void *ext_data;                         /* external calls: the provider's data */
        const struct hs_redactor *ext_redactor; /* external calls: what their output is redacted with */
};

struct hw_registry {
        sd_event *event;
        char *worker_path;
        char *broker_path;
        struct hs_sandbox *sb;   /* the run's sandbox every worker starts in (host/sandbox/sandbox.h) */
        uint64_t spawn_end_usec; /* when the last worker start returned */
        bool own_sb;             /* created here (namespaces only): freed with the registry */
        char *egress_path;       /* agentbroker-egress started with each worker, or NULL */
        hw_config_fn config;
        void *config_userdata;
        struct hw_module **modules;
        size_t n_modules;
        struct tool_entry **tools; /* sorted by name */
        size_t n_tools;
        uint64_t next_call_id;
        sd_event_source *defer;
        struct hw_call *finishing_head, *finishing_tail;
        bool freeing;
        hw_refusal_fn on_refusal; /* told of modules refused at start (their init failed ...) */
        void *refusal_userdata;
        struct hw_external_ops ext; /* the provider of external tools (host/gateway/gateway.c) */
        void *ext_userdata;
        uint64_t generation; /* bumped whenever the set of tools changes */
};

/* Shared between the parts (defined in one, used in another). */
/* A new string formatted like printf, or NULL on OOM. */
char *AB_PRINTF(1, 2) hw_strdup_printf(const char *fmt, ...);

/* Wipe the token of a call frame and free it. */
void hw_frame_wipe_free(cJSON *frame);

void hw_call_free(struct hw_call *c);

void hw_clist_remove(struct hw_call **head, struct hw_call **tail, size_t *n, struct hw_call *c);

void hw_queue_remove(struct hw_module *m, struct hw_call *c);

void hw_bound_append(struct hw_worker *w, struct hw_call *c);

/* Detach c from its worker (the worker stays in its current state): the call it runs, or one
 * bound to it and not sent. A waiting frame is wiped. */
void hw_call_detach(struct hw_call *c);

/* Tell c's owner what was redacted from its worker's output (if anything), then that c ended. */
void hw_call_done(struct hw_call *c, cJSON *result, const char *failure, const char *message);

/* End c now: call done and free it. c must be detached from queue and worker. */
void hw_call_finish_now(struct hw_call *c, cJSON *result, const char *failure, const char *message);

void hw_registry_schedule(struct hw_registry *reg);

/* End c with failure on the deferred source (used when the owner itself asked, so that done
 * never runs inside the owner's own call into this file). c must be off any queue. */
void AB_PRINTF(3, 4) hw_call_fail_later(struct hw_call *c, const char *failure, const char *fmt, ...);

/* The message of a call that ended because its worker died or misbehaved. */
void hw_call_end_by_worker(struct hw_call *c, const char *failure, const char *message);

struct hw_worker *hw_worker_free(struct hw_worker *w);

void hw_worker_unlink(struct hw_worker *w);

/* Kill w (SIGKILL) and close its channel; it stays listed as dying until its child source
 * reaps it. The call it ran, if any, is detached (the caller ends it); calls bound to it and
 * not sent end as "crashed" (worker_release_bound). */
void hw_worker_kill(struct hw_worker *w);

/* Write as much pending output as the socket takes. Returns 0 (all or some written) or
 * -errno (the channel is broken). */
int hw_worker_flush(struct hw_worker *w);

/* Encode msg as a frame and queue it for w, writing what the socket takes now.
 * Returns 0, -E2BIG, -ENOMEM or -errno of the socket. */
int hw_worker_send(struct hw_worker *w, const cJSON *msg);

/* Spawn a worker process for m: socketpair, posix_spawn of the worker executable with the
 * module file as fd 3, the socket as fd 4, /dev/null as stdin/stdout, a pipe the host reads
 * as stderr, every other descriptor closed and a minimal environment; queue the init frame.
 * *ret is a new worker in state W_STARTING (not yet in m's list, no event sources). Returns 0
 * or -errno. */
int hw_worker_spawn(struct hw_module *m, struct hw_worker **ret);

void hw_tool_entry_free(struct tool_entry *t);

int hw_tool_cmp(const void *a, const void *b);

/* Build the served tool from one entry of a hello's "tools" array. Returns 0 with *ret set,
 * -EINVAL with *ret_err (a new string) when the tool is refused, or -ENOMEM. */
int hw_tool_from_hello(struct hw_module *m, const cJSON *desc, struct tool_entry **ret, char **ret_err);

/* Check a hello from a worker of m. With tools non-NULL (the first worker), build the
 * module's tools into *tools / *n_tools, refusing (with a log line) each tool that does not
 * compile or repeats a name. Returns 0, -EBADMSG (not a usable hello: *ret_why says why,
 * static) or -ENOMEM. */
int hw_check_hello(struct hw_module *m, const cJSON *msg, struct tool_entry ***tools, size_t *n_tools,
                   const char **ret_why);

/* Wait for pid to exit after SIGKILL and describe how it ended (blocking: used only at load). */
void hw_reap_describe(pid_t pid, bool kill_it, char *buf, size_t size);

/* Attach w's event sources (io on its socket and a child source) and link it into its
 * module. Returns 0 or -errno. */
int hw_worker_attach(struct hw_worker *w);

void hw_module_free(struct hw_module *m);

/* Workers of m that are reserved for or running a call. */
size_t hw_module_busy(const struct hw_module *m);

/* Bind c to w (idle, or busy with calls it will run first) and tell c's owner. */
void hw_call_assign(struct hw_call *c, struct hw_worker *w);

/* A worker of m for a new call, or NULL (the call queues): an idle worker; else, while m's
 * calls are measured fast (HW_PIPELINE_SAMPLES calls averaging under HW_PIPELINE_FAST_US), the
 * least loaded busy worker whose running call (if any) started less than HW_PIPELINE_STUCK_US
 * ago and that has fewer than HW_PIPELINE_MAX calls bound. A call bound to a busy worker waits
 * for it after its call-begin, which is the point: the broker round trip of the next calls
 * overlaps the current call, and a fast module needs one worker, not one per call in flight. */
struct hw_worker *hw_module_pick_worker(struct hw_module *m);

/* Fold the time one call spent in a worker into m's moving average. A result counts at most
 * HW_PIPELINE_SAMPLE_MAX_US: a fast call that lost its CPU for a while on a busy machine does
 * not stop the pipelining by itself (two such in a row do not either; a module whose calls
 * are all that slow stops it at once). A timeout (timed_out) counts in full. */
void hw_module_note_service(struct hw_module *m, uint64_t us, bool timed_out);

void hw_module_fail_queue(struct hw_module *m, const char *failure, const char *message);

void hw_module_mark_start_failure(struct hw_module *m, const char *what);

/* Assign queued calls of m to idle workers (FIFO) and start workers for the rest, up to
 * HW_POOL_MAX. Runs on the loop. */
void hw_module_dispatch(struct hw_module *m);

void hw_module_schedule_dispatch(struct hw_module *m);

/* w's call ended normally or w became ready: make it idle and serve the queue. */
void hw_worker_set_idle(struct hw_worker *w);

/* Kill w because it misbehaved (what: for the log) and end its call with "garbage". */
void hw_worker_garbage(struct hw_worker *w, const char *what);

/* The frame's "id" matches w's current call. */
bool hw_frame_id_matches(const struct hw_worker *w, const cJSON *msg);

/* Turn a result frame into a CallToolResult. Returns 0 with *ret, -EBADMSG or -ENOMEM. */
int hw_result_from_frame(cJSON *msg, cJSON **ret);

/* How long c's call took in its worker: the "us" its result reports (how long the tool's
 * call hook ran; a worker on a busy machine waits for a CPU before and after that, which says
 * nothing about the module), capped by the time since the call was sent; that time when the
 * result has none. */
uint64_t hw_service_time(const struct hw_call *c, const cJSON *msg);

/* Add what st says was redacted from c's output to c's record (the names from red, the
 * redactor that did it). c may be NULL (output outside a call). */
void hw_call_note_redactions(struct hw_call *c, const struct hs_redactor *red,
                             const struct hs_redact_stats *st);

/* Redact text (from w, during call c or NULL) with w's redactor: *ret is a new string, or
 * NULL when nothing matched. Returns 0 or -ENOMEM. */
int hw_worker_redact(struct hw_worker *w, struct hw_call *c, const char *text, char **ret);

/* w's socket reached EOF (or broke): stop reading and give the process a moment to exit, so
 * that its exit status (e.g. the signal that killed it) can be reported. */
void hw_worker_eof(struct hw_worker *w);

int hw_worker_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata);

/* w's call ended, or a call bound to it went away: send the next waiting call; else w stays
 * busy while calls are bound to it, or becomes idle. */
void hw_worker_settle(struct hw_worker *w);

/* A call of an external tool: the provider reserves (ready), runs and ends it. */
int hw_external_start(struct hw_call *c);

int hw_external_send(struct hw_call *c, const cJSON *args, size_t max_bytes, unsigned timeout_ms);

/* Abort (not sent) or cancel (sent) an external call: the provider ends it with done. */
void hw_external_stop(struct hw_call *c);

#endif /* AB_HOST_WORKERS_INTERNAL_H */
