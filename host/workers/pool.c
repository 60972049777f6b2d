/* SPDX-License-Identifier: MIT */
/* A module's pool of workers: dispatch of queued calls to workers, growth when calls wait,
 * the idle timer that stops workers beyond the first, start failures. */
#include "config.h"

#include "host/workers/internal.h"

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
size_t
hw_module_busy(const struct hw_module *m)
{
        size_t n = 0;

        for (const struct hw_worker *w = m->workers; w; w = w->next)
                if (w->state == W_BUSY)
                        n++;
        return n;
}

/* Bind c to w (idle, or busy with calls it will run first) and tell c's owner. */
void
hw_call_assign(struct hw_call *c, struct hw_worker *w)
{
        if (w->state == W_IDLE)
                w->since_usec = ab_now_us();
        w->state = W_BUSY;
        hw_bound_append(w, c);
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
struct hw_worker *
hw_module_pick_worker(struct hw_module *m)
{
        struct hw_worker *best = NULL;
        size_t best_load = SIZE_MAX;
        uint64_t now;

        for (struct hw_worker *w = m->workers; w; w = w->next)
                if (w->state == W_IDLE)
                        return w;
        if (m->service_samples < HW_PIPELINE_SAMPLES || m->service_us >= HW_PIPELINE_FAST_US)
                return NULL;
        now = ab_now_us();
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
void
hw_module_note_service(struct hw_module *m, uint64_t us, bool timed_out)
{
        if (!timed_out && us > HW_PIPELINE_SAMPLE_MAX_US)
                us = HW_PIPELINE_SAMPLE_MAX_US;
        if (m->service_samples++ == 0)
                m->service_us = us;
        else
                m->service_us = m->service_us - m->service_us / 8 + us / 8;
}

/* Start one more worker for m, asynchronously (its hello arrives on the loop). */
static int
module_start_worker(struct hw_module *m)
{
        struct hw_worker *w = NULL;
        int r;

        r = hw_worker_spawn(m, &w);
        if (r < 0)
                return r;
        r = hw_worker_attach(w);
        if (r < 0) {
                (void)kill(w->pid, SIGKILL);
                (void)waitpid(w->pid, NULL, 0);
                hw_worker_free(w);
                return r;
        }
        r = sd_event_add_time_relative(m->reg->event, &w->timer, CLOCK_MONOTONIC,
                                       (uint64_t)HW_HELLO_TIMEOUT_MS * 1000, HW_TIMER_ACCURACY_US,
                                       hw_worker_hello_timeout, w);
        if (r < 0) {
                /* Without a hello timer the worker would be trusted to answer: stop it. */
                hw_worker_kill(w);
                return r;
        }
        return 0;
}

void
hw_module_fail_queue(struct hw_module *m, const char *failure, const char *message)
{
        while (m->queue_head) {
                struct hw_call *c = m->queue_head;

                hw_queue_remove(m, c);
                hw_call_finish_now(c, NULL, failure, message);
        }
}

void
hw_module_mark_start_failure(struct hw_module *m, const char *what)
{
        m->start_failures++;
        log_warning("module %s: a worker failed to start (%s)", m->name, what);
        if (m->start_failures >= HW_START_FAILURES_MAX && !m->unavailable) {
                char msg[256];

                m->unavailable = true;
                log_error("module %s is unavailable: %u workers in a row failed to start", m->name,
                          m->start_failures);
                snprintf(msg, sizeof(msg),
                         "the %s module is unavailable: its workers failed to start %u times in a row",
                         m->name, m->start_failures);
                hw_module_fail_queue(m, "unavailable", msg);
                return;
        }
        hw_module_schedule_dispatch(m);
}

static int
module_grow_timer_handler(sd_event_source *s, uint64_t usec, void *userdata)
{
        hw_module_dispatch(userdata);
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
        uint64_t now = ab_now_us(), youngest = 0, next = UINT64_MAX;
        size_t waited = 0;
        bool all_old = true;
        int r;

        for (const struct hw_worker *w = m->workers; w; w = w->next) {
                /* (Nor is the time the loop spent starting a worker time its call ran.) */
                uint64_t since =
                        w->since_usec > m->reg->spawn_end_usec ? w->since_usec : m->reg->spawn_end_usec;

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
                uint64_t since =
                        c->queued_usec > m->reg->spawn_end_usec ? c->queued_usec : m->reg->spawn_end_usec;

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
                        r = sd_event_add_time(m->reg->event, &m->grow_timer, CLOCK_MONOTONIC, next,
                                              HW_GROW_ACCURACY_US, module_grow_timer_handler, m);
                else {
                        r = sd_event_source_set_time(m->grow_timer, next);
                        if (r >= 0)
                                r = sd_event_source_set_enabled(m->grow_timer, SD_EVENT_ONESHOT);
                }
                if (r < 0)
                        return m->n_queued; /* no timer to wait with: grow now */
        }
        return waited;
}

/* Assign queued calls of m to idle workers (FIFO) and start workers for the rest, up to
 * HW_POOL_MAX. Runs on the loop. */
void
hw_module_dispatch(struct hw_module *m)
{
        size_t live, starting, want;

        m->dispatch_pending = false;
        if (m->unavailable) {
                char msg[256];

                snprintf(msg, sizeof(msg),
                         "the %s module is unavailable: its workers failed to start %u times in a row",
                         m->name, m->start_failures);
                hw_module_fail_queue(m, "unavailable", msg);
                return;
        }
        for (;;) {
                struct hw_call *c = m->queue_head;
                struct hw_worker *w;

                if (!c)
                        return;
                w = hw_module_pick_worker(m);
                if (!w)
                        break;
                hw_queue_remove(m, c);
                hw_call_assign(c, w);
        }
        module_counts(m, &live, &starting, NULL);
        if (live >= HW_POOL_MAX || starting >= m->n_queued)
                return;
        want = module_grow_wanted(m, live);
        while (live < HW_POOL_MAX && starting < want) {
                int r = module_start_worker(m);

                if (r < 0) {
                        char what[128];

                        snprintf(what, sizeof(what), "cannot start %s: %s", m->reg->worker_path,
                                 strerror(-r));
                        hw_module_mark_start_failure(m, what);
                        return;
                }
                live++;
                starting++;
        }
}

void
hw_module_schedule_dispatch(struct hw_module *m)
{
        m->dispatch_pending = true;
        hw_registry_schedule(m->reg);
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
        if (live <= 1 || first == UINT64_MAX || m->reg->freeing) {
                if (m->idle_timer)
                        (void)sd_event_source_set_enabled(m->idle_timer, SD_EVENT_OFF);
                return;
        }
        if (m->idle_timer && sd_event_source_get_enabled(m->idle_timer, NULL) > 0)
                return; /* armed for an earlier one already: it re-arms itself */
        if (!m->idle_timer)
                r = sd_event_add_time(m->reg->event, &m->idle_timer, CLOCK_MONOTONIC,
                                      first + HW_IDLE_STOP_US, HW_TIMER_ACCURACY_US * 10,
                                      module_idle_timer_handler, m);
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
        uint64_t now = ab_now_us();
        size_t live = 0;

        for (const struct hw_worker *w = m->workers; w; w = w->next)
                if (w->state != W_DYING)
                        live++;
        for (struct hw_worker *w = m->workers; w && live > 1; w = w->next)
                if (w->state == W_IDLE && now - w->since_usec >= HW_IDLE_STOP_US) {
                        log_debug("module %s: stopping idle worker %d", m->name, (int)w->pid);
                        hw_worker_kill(w); /* reaped by its child source */
                        live--;
                }
        module_arm_idle_timer(m);
        return 0;
}

/* ---------- worker events ---------- */

/* w's call ended normally or w became ready: make it idle and serve the queue. */
void
hw_worker_set_idle(struct hw_worker *w)
{
        w->state = W_IDLE;
        w->since_usec = ab_now_us();
        w->call = NULL;
        if (w->m->queue_head)
                hw_module_schedule_dispatch(w->m);
        else
                module_arm_idle_timer(w->m);
}

/* Kill w because it misbehaved (what: for the log) and end its call with "garbage". */
void
hw_worker_garbage(struct hw_worker *w, const char *what)
{
        struct hw_module *m = w->m;
        struct hw_call *c = w->call;
        bool starting = w->state == W_STARTING;

        log_warning("module %s: killing worker %d: %s", m->name, (int)w->pid, what);
        hw_worker_kill(w);
        if (starting) {
                hw_module_mark_start_failure(m, what);
                return;
        }
        if (c) {
                char msg[512];

                snprintf(msg, sizeof(msg), "the %s module's worker sent an invalid message (%s)", m->name,
                         what);
                hw_call_end_by_worker(c, "garbage", msg);
        }
        hw_module_schedule_dispatch(m);
}
