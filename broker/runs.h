/* SPDX-License-Identifier: MIT */
/* Runs: a unit of agent work. Open runs carry budgets (calls, duration) and per-tool rate
 * buckets; closed runs are kept (bounded) so late presentations and listings can name them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ab_pidwatch;

#define AB_RUN_ID_LEN 32
#define AB_RUNS_CLOSED_KEPT 256   /* closed runs remembered for run-list and denials */
#define AB_RUN_RATE_TOOLS_MAX 256 /* distinct rate-limited tools tracked per run */

struct ab_rate_bucket {
        char *tool;
        double tokens;
        uint64_t last_ms;
};

struct ab_run {
        char id[AB_RUN_ID_LEN + 1];
        char *label;
        char *profile;  /* the policy profile it was opened with, or NULL */
        int host_pidfd; /* the process whose end tears the run down (broker/teardown.c), or -1 */
        struct ab_pidwatch *host_watch; /* its exit watch while the run is open, or NULL */
        const char *teardown_reason;    /* why the broker asked its host to tear down (static), or NULL */
        size_t teardown_revoked;        /* tokens revoked when it did (for the host's late report) */
        uid_t owner;
        bool open;
        bool expired;                  /* closed by the broker at its max_duration_s */
        uint64_t opened_ms, closed_ms; /* monotonic */
        int64_t opened_at;             /* realtime, seconds */
        uint64_t calls, denied, result_bytes, active;
        uint64_t rejected; /* calls the host refused before call-begin (call-reject) */
        struct ab_rate_bucket *rates;
        size_t n_rates;
        struct ab_run *next;
};

struct ab_runs;

int ab_runs_new(struct ab_runs **ret);
void ab_runs_free(struct ab_runs *runs);
/* Open a new run for owner; refuses with -EUSERS when max_open runs are open (0 = no limit).
 * Returns 0, -EUSERS, -ENOMEM or -EIO. */
int ab_runs_open(struct ab_runs *runs, uid_t owner, const char *label, unsigned max_open,
                 struct ab_run **ret);
/* Record the profile run was opened with. Returns 0 or -ENOMEM. */
int ab_run_set_profile(struct ab_run *run, const char *profile);
/* Find an open or remembered closed run. NULL if unknown. */
struct ab_run *ab_runs_find(struct ab_runs *runs, const char *id);
/* Mark run closed at now_ms (it stays findable while among the last AB_RUNS_CLOSED_KEPT). */
void ab_runs_close(struct ab_runs *runs, struct ab_run *run, uint64_t now_ms);
size_t ab_runs_open_count(const struct ab_runs *runs);
/* First run of the list (newest first); iterate with ->next. */
struct ab_run *ab_runs_first(struct ab_runs *runs);

/* Whether run has outlived max_duration_s seconds (0 = no limit) at monotonic now_ms. A run
 * is expired only once strictly more than the duration has passed. */
bool ab_run_expired(const struct ab_run *run, unsigned max_duration_s, uint64_t now_ms);
/* Whether run has used its budget of max_calls calls (0 = no limit). */
bool ab_run_calls_exhausted(const struct ab_run *run, unsigned max_calls);

/* Take one call from run's token bucket for tool (rate per second, burst). Returns 0 if
 * allowed, -EAGAIN if the bucket is empty, -ENOSPC if too many tools are tracked. */
int ab_run_rate_take(struct ab_run *run, const char *tool, double rate, unsigned burst, uint64_t now_ms);
