/* SPDX-License-Identifier: MIT */
/* hang: test-only tools that take time, for timeouts, cancellation, progress and
 * concurrency tests.
 *   hang.forever {}                 sleeps forever and never looks at cancellation: the host
 *                                   must kill the worker when the call's timeout passes
 *   hang.slow {ms}                  sleeps ms milliseconds, checking abm_call_cancelled every
 *                                   10 ms; returns "slept" (or fails as cancelled)
 *   hang.progress {steps, interval_ms?}  reports progress 1..steps of steps, interval_ms
 *                                   (default 10) apart; returns "done: N steps" */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <agentbroker/module.h>

static const char forever_schema[] =
        "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";
static const char slow_schema[] =
        "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":3600000}},"
        "\"required\":[\"ms\"],\"additionalProperties\":false}";
static const char progress_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"steps\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000},"
        "\"interval_ms\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":10000}},"
        "\"required\":[\"steps\"],\"additionalProperties\":false}";

/* Sleep ms milliseconds (restarted after signals). */
static void
sleep_ms(int64_t ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int
hang_forever(struct abm_call *call, struct abm_error *err)
{
        for (;;)
                pause();
        return abm_error_set(err, -EIO, "unreachable");
}

static int
hang_slow(struct abm_call *call, struct abm_error *err)
{
        int64_t ms = 0, done = 0;

        if (abm_json_get_int(abm_call_args(call), "ms", &ms) < 0 || ms < 0)
                return abm_error_set(err, -EINVAL, "ms must be a non-negative integer");
        while (done < ms) {
                if (abm_call_cancelled(call))
                        return abm_error_set(err, -ECANCELED, "cancelled after %lld of %lld ms",
                                             (long long)done, (long long)ms);
                int64_t step = ms - done < 10 ? ms - done : 10;
                sleep_ms(step);
                done += step;
        }
        return abm_call_text(call, "slept", (size_t)-1);
}

static int
hang_progress(struct abm_call *call, struct abm_error *err)
{
        int64_t steps = 0, interval = 10;
        char message[64];

        if (abm_json_get_int(abm_call_args(call), "steps", &steps) < 0 || steps < 1)
                return abm_error_set(err, -EINVAL, "steps must be a positive integer");
        if (abm_json_get_int(abm_call_args(call), "interval_ms", &interval) == -EINVAL || interval < 0)
                return abm_error_set(err, -EINVAL, "interval_ms must be a non-negative integer");
        for (int64_t i = 1; i <= steps; i++) {
                snprintf(message, sizeof(message), "step %lld of %lld", (long long)i, (long long)steps);
                int r = abm_call_progress(call, (double)i, (double)steps, message);
                if (r < 0)
                        return abm_error_set(err, r,
                                             r == -ECANCELED ? "cancelled at step %lld"
                                                             : "progress failed at step %lld",
                                             (long long)i);
                sleep_ms(interval);
        }
        return abm_call_textf(call, "done: %lld steps", (long long)steps);
}

static const struct abm_tool hang_tools[] = {
        {
                .name = "forever",
                .description = "Test only: sleeps forever and ignores cancellation.",
                .input_schema = forever_schema,
                .call = hang_forever,
        },
        {
                .name = "slow",
                .description =
                        "Test only: sleeps ms milliseconds, stopping early when cancelled; returns \"slept\".",
                .input_schema = slow_schema,
                .annotations = { ABM_HINT_TRUE, ABM_HINT_FALSE, ABM_HINT_TRUE, ABM_HINT_FALSE },
                .call = hang_slow,
        },
        {
                .name = "progress",
                .description = "Test only: reports steps progress notifications, interval_ms apart.",
                .input_schema = progress_schema,
                .annotations = { ABM_HINT_TRUE, ABM_HINT_FALSE, ABM_HINT_TRUE, ABM_HINT_FALSE },
                .call = hang_progress,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "hang",
        .version = "test",
        .tools = hang_tools,
        .n_tools = sizeof(hang_tools) / sizeof(hang_tools[0]),
};
