/* SPDX-License-Identifier: MIT */
/* agentbrokerctl trace: the tool-call trace from the journal (ctl/trace.c). */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

struct ab_trace_options {
        const char *run;       /* only this run, or NULL */
        time_t since;          /* only entries at or after this time (epoch seconds), 0 = all */
        bool follow;           /* start at the end of the journal and wait for new calls */
        const char *directory; /* read this journal directory instead of the system's, or NULL */
};

/* Print one line per tool call to out, from the broker's journal entries (tool-call-begin,
 * -end, -deny and secret-use, AGENTBROKER_* fields): time, run, call number, tool, decision,
 * secrets used, bytes returned, duration, status and redactions when the entry has them. A
 * call's line is printed when it ends or is denied. With follow, waits for new entries until
 * interrupted or out fails. Returns 0, or -errno (the journal cannot be opened or read; out
 * cannot be written: -EIO). */
int ab_trace(FILE *out, const struct ab_trace_options *o);
