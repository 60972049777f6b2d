/* SPDX-License-Identifier: MIT */
/* Runs (see runs.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <openssl/rand.h>

#include "broker/runs.h"
#include "common/clock.h"
#include "common/encode.h"

struct ab_runs {
        struct ab_run *head; /* newest first */
        size_t n_open, n_closed;
};

int
ab_runs_new(struct ab_runs **ret)
{
        struct ab_runs *runs = calloc(1, sizeof(*runs));

        if (!runs)
                return -ENOMEM;
        *ret = runs;
        return 0;
}

static void
run_free(struct ab_run *run)
{
        if (!run)
                return;
        for (size_t i = 0; i < run->n_rates; i++)
                free(run->rates[i].tool);
        free(run->rates);
        free(run->label);
        free(run->profile);
        if (run->host_pidfd >= 0)
                close(run->host_pidfd);
        free(run);
}

void
ab_runs_free(struct ab_runs *runs)
{
        if (!runs)
                return;
        while (runs->head) {
                struct ab_run *n = runs->head->next;
                run_free(runs->head);
                runs->head = n;
        }
        free(runs);
}

int
ab_runs_open(struct ab_runs *runs, uid_t owner, const char *label, unsigned max_open, struct ab_run **ret)
{
        unsigned char raw[AB_RUN_ID_LEN / 2];
        struct ab_run *run;

        if (max_open && runs->n_open >= max_open)
                return -EUSERS;
        run = calloc(1, sizeof(*run));
        if (!run)
                return -ENOMEM;
        run->host_pidfd = -1;
        if (label && !(run->label = strdup(label))) {
                free(run);
                return -ENOMEM;
        }
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
                run_free(run);
                return -EIO;
        }
        ab_hex_encode_buf(raw, sizeof(raw), run->id);
        run->owner = owner;
        run->open = true;
        run->opened_ms = ab_now_ms();
        run->opened_at = (int64_t)time(NULL);
        run->next = runs->head;
        runs->head = run;
        runs->n_open++;
        *ret = run;
        return 0;
}

int
ab_run_set_profile(struct ab_run *run, const char *profile)
{
        char *p = strdup(profile);

        if (!p)
                return -ENOMEM;
        free(run->profile);
        run->profile = p;
        return 0;
}

struct ab_run *
ab_runs_find(struct ab_runs *runs, const char *id)
{
        for (struct ab_run *run = runs->head; run; run = run->next)
                if (strcmp(run->id, id) == 0)
                        return run;
        return NULL;
}

/* Drop the oldest closed runs beyond AB_RUNS_CLOSED_KEPT. */
static void
trim_closed(struct ab_runs *runs)
{
        struct ab_run **pp = &runs->head;
        size_t seen = 0;

        while (*pp) {
                struct ab_run *run = *pp;
                if (!run->open && ++seen > AB_RUNS_CLOSED_KEPT) {
                        *pp = run->next;
                        run_free(run);
                        runs->n_closed--;
                } else
                        pp = &run->next;
        }
}

void
ab_runs_close(struct ab_runs *runs, struct ab_run *run, uint64_t now_ms)
{
        if (!run->open)
                return;
        run->open = false;
        run->closed_ms = now_ms;
        runs->n_open--;
        runs->n_closed++;
        /* Rate buckets are of no use once closed. */
        for (size_t i = 0; i < run->n_rates; i++)
                free(run->rates[i].tool);
        free(run->rates);
        run->rates = NULL;
        run->n_rates = 0;
        if (runs->n_closed > AB_RUNS_CLOSED_KEPT)
                trim_closed(runs);
}

size_t
ab_runs_open_count(const struct ab_runs *runs)
{
        return runs->n_open;
}

struct ab_run *
ab_runs_first(struct ab_runs *runs)
{
        return runs->head;
}

bool
ab_run_expired(const struct ab_run *run, unsigned max_duration_s, uint64_t now_ms)
{
        return max_duration_s && now_ms - run->opened_ms > (uint64_t)max_duration_s * 1000;
}

bool
ab_run_calls_exhausted(const struct ab_run *run, unsigned max_calls)
{
        return max_calls && run->calls >= max_calls;
}

int
ab_run_rate_take(struct ab_run *run, const char *tool, double rate, unsigned burst, uint64_t now_ms)
{
        struct ab_rate_bucket *b = NULL;

        for (size_t i = 0; i < run->n_rates; i++)
                if (strcmp(run->rates[i].tool, tool) == 0) {
                        b = &run->rates[i];
                        break;
                }
        if (!b) {
                struct ab_rate_bucket *n;
                char *t;

                if (run->n_rates >= AB_RUN_RATE_TOOLS_MAX)
                        return -ENOSPC;
                t = strdup(tool);
                if (!t)
                        return -ENOMEM;
                n = realloc(run->rates, (run->n_rates + 1) * sizeof(*n));
                if (!n) {
                        free(t);
                        return -ENOMEM;
                }
                run->rates = n;
                b = &n[run->n_rates++];
                b->tool = t;
                b->tokens = burst;
                b->last_ms = now_ms;
        }
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
                b->tokens = burst;
        b->last_ms = now_ms;
        if (b->tokens < 1.0)
                return -EAGAIN;
        b->tokens -= 1.0;
        return 0;
}
