/* SPDX-License-Identifier: MIT */
/* The tunnel connection's life (sd-event thread): dials and the deadlines of their stages,
 * backoff, pings, the connection coming up and going down, audit of these events. */
#include "config.h"

#include "host/net/tunnel/internal.h"

/* Have the broker audit event with reason; stage: where a failed dial stopped, or NULL. */
void
mcp_tunnel_audit_event(struct mcp_tunnel *t, const char *event, const char *reason, const char *stage)
{
        int r = hb_tunnel_event(t->broker, event, t->url, t->session, reason, stage, t->run);

        if (r < 0)
                log_warning("the broker did not record tunnel-%s: %s", event, strerror(-r));
}

uint64_t
mcp_tunnel_now_usec(struct mcp_tunnel *t)
{
        uint64_t now = 0;

        (void)sd_event_now(t->event, CLOCK_MONOTONIC, &now);
        return now;
}

/* Arm the timer src (created with cb if need be) to fire once, ms from now. Returns 0 or -errno. */
static int
arm_timer(struct mcp_tunnel *t, sd_event_source **src, uint64_t ms, sd_event_time_handler_t cb)
{
        uint64_t when = mcp_tunnel_now_usec(t) + ms * 1000;
        int r;

        if (!*src)
                return sd_event_add_time(t->event, src, CLOCK_MONOTONIC, when, 1000, cb, t);
        r = sd_event_source_set_time(*src, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(*src, SD_EVENT_ONESHOT);
        return r;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata);

/* The dial in progress entered stage: its deadline starts now. */
void
mcp_tunnel_enter_stage(struct mcp_tunnel *t, enum dial_stage stage)
{
        int r;

        t->stage = stage;
        r = arm_timer(t, &t->deadline_src, t->stage_ms[stage], on_deadline);
        if (r < 0)
                log_error("tunnel: cannot arm the %s deadline: %s", stage_names[stage], strerror(-r));
        log_debug("tunnel: dial %" PRIu64 ": %s (deadline %u ms)", t->live_gen, stage_names[stage],
                  t->stage_ms[stage]);
}

/* May this failed dial be logged and audited? At most DIAL_FAIL_LOG_BURST per
 * DIAL_FAIL_LOG_WINDOW_MS; the others are counted, and the count is logged when the window
 * has passed or the tunnel is up again. Returns true or false. */
static bool
dial_fail_report_ok(struct mcp_tunnel *t)
{
        uint64_t now = mcp_tunnel_now_usec(t);

        if (now - t->fail_window >= (uint64_t)DIAL_FAIL_LOG_WINDOW_MS * 1000) {
                if (t->fail_suppressed)
                        log_warning("tunnel: %u more dials failed in %d s without a log line each",
                                    t->fail_suppressed, DIAL_FAIL_LOG_WINDOW_MS / 1000);
                t->fail_window = now;
                t->fail_logged = t->fail_suppressed = 0;
        }
        if (t->fail_logged < DIAL_FAIL_LOG_BURST) {
                t->fail_logged++;
                return true;
        }
        t->fail_suppressed++;
        return false;
}

/* The dial in progress failed at its stage (why: what happened; auth: the tunnel-auth-fail
 * reason, or NULL): log and audit it (auth failures always, the others rate-limited), forget
 * its connection, and schedule the next dial. */
void
mcp_tunnel_dial_failed(struct mcp_tunnel *t, const char *why, const char *auth)
{
        const char *stage = stage_names[t->stage];

        t->live_gen = 0;
        if (t->deadline_src)
                (void)sd_event_source_set_enabled(t->deadline_src, SD_EVENT_OFF);
        if (auth) {
                log_error("tunnel: %s refused (%s) at %s: %s", t->url, auth, stage, why);
                mcp_tunnel_audit_event(t, "auth-fail", auth, stage);
        } else if (dial_fail_report_ok(t)) {
                log_warning("tunnel: dial %" PRIu64 " to %s failed at %s: %s%s", t->dials, t->url, stage,
                            why,
                            t->fail_logged == DIAL_FAIL_LOG_BURST
                                    ? " (further failures this minute: counted, not logged)"
                                    : "");
                mcp_tunnel_audit_event(t, "disconnect", "dial-failed", stage);
        }
        mcp_tunnel_schedule_dial(t);
}

/* A stage of the dial took too long: drop it, whatever the library is doing with it. */
static int
on_deadline(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;
        char why[96];

        if (t->state != ST_DIALING)
                return 0;
        pthread_mutex_lock(&t->sh.lock);
        t->sh.kill_gen = t->live_gen;
        pthread_mutex_unlock(&t->sh.lock);
        mcp_tunnel_kick(t);
        snprintf(why, sizeof why, "%s in %u ms",
                 t->stage == STAGE_FIRST_MESSAGE ? "no MCP message from the control plane" : "no progress",
                 t->stage_ms[t->stage]);
        mcp_tunnel_dial_failed(t, why, NULL);
        return 0;
}

int
mcp_tunnel_on_dial_timer(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;
        char *jwt = NULL;
        int r;

        t->retry_src = sd_event_source_disable_unref(t->retry_src);
        if (t->state == ST_STOPPED)
                return 0;
        t->dials++;
        log_info("tunnel: dial attempt %" PRIu64 " to %s", t->dials, t->url);
        r = hb_identity_jwt(t->broker, t->url, t->session, t->run, &jwt);
        if (r < 0) {
                log_error("tunnel: the broker would not mint the dial JWT: %s", strerror(-r));
                mcp_tunnel_audit_event(t, "auth-fail", "identity-jwt", NULL);
                mcp_tunnel_schedule_dial(t);
                return 0;
        }
        t->live_gen = t->dials;
        pthread_mutex_lock(&t->sh.lock);
        ab_strfreezero(t->sh.jwt);
        t->sh.jwt = jwt;
        t->sh.dial = true;
        t->sh.dial_gen = t->live_gen;
        pthread_mutex_unlock(&t->sh.lock);
        t->state = ST_DIALING;
        mcp_tunnel_enter_stage(t, STAGE_CONNECT);
        mcp_tunnel_kick(t);
        return 0;
}

/* Dial again after a full-jitter delay: uniform in [0, min(max, min * 2^attempts)]. */
void
mcp_tunnel_schedule_dial(struct mcp_tunnel *t)
{
        uint64_t cap = t->backoff_min_ms, delay;
        uint32_t rnd = 0;
        int r;

        if (t->state == ST_STOPPED)
                return;
        t->state = ST_IDLE;
        t->live_gen = 0;
        if (t->deadline_src)
                (void)sd_event_source_set_enabled(t->deadline_src, SD_EVENT_OFF);
        for (unsigned i = 0; i < t->attempts && cap < t->backoff_max_ms; i++)
                cap *= 2;
        if (cap > t->backoff_max_ms)
                cap = t->backoff_max_ms;
        if (RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1)
                rnd = (uint32_t)random();
        delay = (uint64_t)rnd % (cap + 1);
        t->attempts++;
        log_info("tunnel: next dial in %" PRIu64 " ms (backoff cap %" PRIu64 " ms)", delay, cap);
        t->retry_src = sd_event_source_disable_unref(t->retry_src);
        r = sd_event_add_time_relative(t->event, &t->retry_src, CLOCK_MONOTONIC, delay * 1000, 1000,
                                       mcp_tunnel_on_dial_timer, t);
        if (r < 0)
                log_error("tunnel: cannot arm the dial timer: %s", strerror(-r));
}

static int
on_healthy(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;

        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        if (t->state == ST_UP) {
                log_debug("tunnel: healthy for %u ms: backoff reset", t->healthy_ms);
                t->attempts = 0;
        }
        return 0;
}

/* Ask the lws thread to drop the connection now (no closing handshake): reason is audited. */
static void
kill_connection(struct mcp_tunnel *t, const char *reason)
{
        t->close_reason = reason;
        t->close_asked = mcp_tunnel_now_usec(t);
        pthread_mutex_lock(&t->sh.lock);
        t->sh.kill_gen = t->live_gen;
        pthread_mutex_unlock(&t->sh.lock);
        mcp_tunnel_kick(t);
}

static int
on_ping_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct mcp_tunnel *t = userdata;

        if (t->state != ST_UP || t->close_reason)
                return 0;
        if (t->missed_pongs >= 2) {
                /* Once: the timer stays off until the next connection (on_connected()). */
                (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
                log_warning("tunnel: two pings went unanswered: the connection is dead");
                kill_connection(t, "ping-timeout");
                return 0;
        }
        t->missed_pongs++;
        pthread_mutex_lock(&t->sh.lock);
        t->sh.ping = true;
        pthread_mutex_unlock(&t->sh.lock);
        mcp_tunnel_kick(t);
        sd_event_source_set_time(s, usec + (uint64_t)t->ping_ms * 1000);
        sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* The first MCP message of a dial arrived: the tunnel is up. */
void
mcp_tunnel_on_connected(struct mcp_tunnel *t)
{
        uint64_t now;
        size_t n = 0;

        t->state = ST_UP;
        t->missed_pongs = 0;
        t->close_reason = NULL;
        if (t->deadline_src)
                (void)sd_event_source_set_enabled(t->deadline_src, SD_EVENT_OFF);
        if (t->fail_suppressed) {
                log_warning("tunnel: %u more dials had failed without a log line each", t->fail_suppressed);
                t->fail_suppressed = 0;
        }
        log_info("tunnel: connected to %s (session %s)", t->url, t->session);
        mcp_tunnel_audit_event(t, "connect", NULL, NULL);
        sd_event_now(t->event, CLOCK_MONOTONIC, &now);
        t->ping_src = sd_event_source_disable_unref(t->ping_src);
        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        (void)sd_event_add_time(t->event, &t->ping_src, CLOCK_MONOTONIC, now + (uint64_t)t->ping_ms * 1000,
                                1000, on_ping_timer, t);
        (void)sd_event_add_time(t->event, &t->healthy_src, CLOCK_MONOTONIC,
                                now + (uint64_t)t->healthy_ms * 1000, 1000, on_healthy, t);
        /* Results that finished while disconnected go first. */
        while (t->pend_head) {
                struct omsg *m = t->pend_head;
                t->pend_head = m->next;
                m->next = NULL;
                t->pend_bytes -= m->len;
                mcp_tunnel_deliver(t, m);
                n++;
        }
        t->pend_tail = NULL;
        if (n)
                log_info("tunnel: %zu queued results sent", n);
}

void
mcp_tunnel_on_closed(struct mcp_tunnel *t, const char *reason)
{
        struct omsg *m, *keep_head = NULL, *keep_tail = NULL;

        t->ping_src = sd_event_source_disable_unref(t->ping_src);
        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        t->live_gen = 0;
        /* What was not written yet waits for the next connection (responses only). */
        pthread_mutex_lock(&t->sh.lock);
        m = t->sh.out_head;
        t->sh.out_head = t->sh.out_tail = NULL;
        t->sh.ping = t->sh.close = false;
        t->sh.kill_gen = 0;
        pthread_mutex_unlock(&t->sh.lock);
        while (m) {
                struct omsg *n = m->next;
                if (m->response) {
                        m->off = 0;
                        m->next = NULL;
                        if (keep_tail)
                                keep_tail->next = m;
                        else
                                keep_head = m;
                        keep_tail = m;
                        t->pend_bytes += m->len;
                } else
                        free(m);
                m = n;
        }
        if (keep_head) {
                keep_tail->next = t->pend_head;
                if (!t->pend_head)
                        t->pend_tail = keep_tail;
                t->pend_head = keep_head;
        }
        reason = t->close_reason ? t->close_reason : reason;
        t->close_reason = NULL;
        log_notice("tunnel: disconnected (%s)", reason);
        mcp_tunnel_audit_event(t, "disconnect", reason, NULL);
        mcp_tunnel_schedule_dial(t);
}
