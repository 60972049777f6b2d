/* SPDX-License-Identifier: MIT */
/* Run teardown (see teardown.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit_log.h"
#include "broker/handlers.h"
#include "broker/teardown.h"
#include "broker/tokens.h"
#include "common/clock.h"
#include "common/log.h"

#define TEARDOWN_DETAIL_MAX 400 /* the record's detail (audit caps it at 512) */
#define TEARDOWN_COUNT_MAX 1e12 /* largest number taken from a host's report */

/* A watched host exited: tear its runs down (and those of any other host that is gone). */
static void
host_exited(struct ab_pidwatches *set, void *userdata)
{
        (void)set;
        ab_teardown_check(userdata);
}

int
ab_teardown_watch(struct ab_state *st, struct ab_run *run, const struct ab_peer *peer)
{
        int fd, r;

        if (peer->pidfd < 0)
                return -ENOSYS;
        fd = fcntl(peer->pidfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        ab_teardown_unwatch(st, run);
        if (run->host_pidfd >= 0)
                close(run->host_pidfd);
        run->host_pidfd = fd;
        r = ab_pidwatch_add(st->watches, fd, host_exited, st, &run->host_watch);
        if (r < 0) {
                close(fd);
                run->host_pidfd = -1;
        }
        return r;
}

void
ab_teardown_unwatch(struct ab_state *st, struct ab_run *run)
{
        ab_pidwatch_remove(st->watches, run->host_watch);
        run->host_watch = NULL;
}

/* A count from the host's report, or -1 when absent or not a sane number. */
static long long
report_count(const cJSON *report, const char *name)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(report, name);

        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > TEARDOWN_COUNT_MAX)
                return -1;
        return (long long)v->valuedouble;
}

/* The run-teardown event of run, by (or its owner), for reason. */
static struct ab_event
teardown_event(const struct ab_run *run, const struct ab_peer *by, const char *reason, bool success)
{
        struct ab_event ev = ab_event_init(AB_EV_RUN_TEARDOWN, by ? by->uid : run->owner, by ? by->pid : 0);

        ev.success = success;
        ev.run = run->id;
        ev.reason = reason;
        return ev;
}

void
ab_teardown_record(struct ab_state *st, const struct ab_run *run, const struct ab_peer *by,
                   const char *reason, size_t tokens_revoked, const cJSON *report)
{
        struct ab_event ev = teardown_event(run, by, reason, true);
        char detail[TEARDOWN_DETAIL_MAX];

        if (report) {
                const char *cg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(report, "cgroup")),
                           *ck = cJSON_GetStringValue(
                                   cJSON_GetObjectItemCaseSensitive(report, "checkpoint"));
                long long left = report_count(report, "processes_left");

                if (!cg ||
                    (strcmp(cg, "removed") != 0 && strcmp(cg, "kept") != 0 && strcmp(cg, "none") != 0))
                        cg = "?";
                /* The tunnel's checkpoint of the run: absent when the host had none. */
                if (!cJSON_HasObjectItem(report, "checkpoint"))
                        ck = "none";
                else if (!ck || (strcmp(ck, "deleted") != 0 && strcmp(ck, "failed") != 0))
                        ck = "?";
                snprintf(
                        detail, sizeof(detail),
                        "processes_killed=%lld processes_left=%lld workspace_bytes=%lld cgroup=%s tokens_revoked=%zu "
                        "pids_max_hits=%lld oom_kills=%lld checkpoint=%s",
                        report_count(report, "processes_killed"), left,
                        report_count(report, "workspace_bytes"), cg, tokens_revoked,
                        report_count(report, "pids_max_hits"), report_count(report, "oom_kills"), ck);
                /* Loud, never silent: anything left makes the record a failure. */
                ev.success = left == 0 && strcmp(cg, "kept") != 0 && strcmp(cg, "?") != 0 &&
                             strcmp(ck, "failed") != 0 && strcmp(ck, "?") != 0;
        } else
                /* The host died: its workers died with it (PR_SET_PDEATHSIG, each the init of
                 * its pid namespace), and the kernel freed the workspace with the run's last
                 * namespace. What the broker did itself: */
                snprintf(detail, sizeof(detail),
                         "tokens_revoked=%zu workers=killed-by-kernel workspace=freed-by-kernel",
                         tokens_revoked);
        ev.detail = detail;
        if (!ev.success)
                log_warning("run %s was not torn down completely: %s", run->id, detail);
        (void)ab_audit_emit(st->audit, &ev);
}

void
ab_teardown_ask_host(struct ab_state *st, struct ab_run *run, const struct ab_peer *by, const char *reason,
                     size_t tokens_revoked)
{
        struct ab_event ev = teardown_event(run, by, reason, false);
        char detail[TEARDOWN_DETAIL_MAX];

        if (run->host_pidfd < 0)
                return;
        run->teardown_reason = reason;
        run->teardown_revoked = tokens_revoked;
        if (syscall(SYS_pidfd_send_signal, run->host_pidfd, SIGTERM, NULL, 0) == 0)
                return; /* its report comes with its own run-close */
        snprintf(detail, sizeof(detail),
                 "the host could not be asked to tear down (SIGTERM: %s): its workers "
                 "run until it exits; tokens_revoked=%zu",
                 strerror(errno), tokens_revoked);
        ev.detail = detail;
        log_warning("run %s: %s", run->id, detail);
        (void)ab_audit_emit(st->audit, &ev);
}

unsigned
ab_run_max_duration_s(const struct ab_policy *pol, const struct ab_run *run)
{
        const struct ab_policy_profile *pr = run->profile ? ab_policy_find_profile(pol, run->profile) : NULL;

        return pr && pr->max_duration_s ? pr->max_duration_s : pol->runs.max_duration_s;
}

/* Close every open run past its max_duration_s like run-close: its tokens revoked, its host (if
 * it has one) asked to tear the sandbox down, the run-close record with reason run-expired. */
static void
expire_runs(struct ab_state *st)
{
        uint64_t now = ab_now_ms();
        struct ab_run *run;

        /* From the head again after each close (see ab_teardown_check). */
        do {
                for (run = ab_runs_first(st->runs); run; run = run->next)
                        if (run->open && ab_run_expired(run, ab_run_max_duration_s(st->policy, run), now))
                                break;
                if (run) {
                        size_t revoked = ab_tokens_revoke_run(st->tokens, run->id);

                        log_info("run %s expired (max_duration_s %u)", run->id,
                                 ab_run_max_duration_s(st->policy, run));
                        run->expired = true;
                        ab_teardown_ask_host(st, run, NULL, "run-expired", revoked);
                        ab_handle_close_run(st, run, NULL, "run-expired");
                }
        } while (run);
}

void
ab_teardown_check(struct ab_state *st)
{
        struct ab_run *run;

        /* From the head again after each teardown: closing a run may free old closed runs
         * (runs.c keeps AB_RUNS_CLOSED_KEPT), so no pointer into the list survives it. */
        do {
                for (run = ab_runs_first(st->runs); run; run = run->next) {
                        struct pollfd p = { .fd = run->host_pidfd, .events = POLLIN };

                        if (run->open && run->host_pidfd >= 0 && poll(&p, 1, 0) == 1)
                                break;
                }
                if (run) {
                        size_t revoked = ab_tokens_revoke_run(st->tokens, run->id);

                        ab_teardown_unwatch(st, run);
                        close(run->host_pidfd);
                        run->host_pidfd = -1;
                        /* The record first: run may be freed once closed. */
                        ab_teardown_record(st, run, NULL, "host-died", revoked, NULL);
                        ab_handle_close_run(st, run, NULL, "host-died");
                }
        } while (run);
        expire_runs(st);
}
