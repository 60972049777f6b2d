/* SPDX-License-Identifier: MIT */
/* The security team's view: read agentbroker's records back from the audit log with
 * libauparse and summarise them per run, tool and decision. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

struct ab_report_filter {
        const char *run;  /* only this run, or NULL */
        const char *tool; /* only this tool, or NULL */
        time_t since;     /* only records at or after this time, 0 = all */
        bool denied_only; /* only denials (tool-call-deny, token-deny) */
        bool calls;       /* the per-call timeline instead of the summary */
};

enum ab_report_format {
        AB_REPORT_TEXT,
        AB_REPORT_JSON
};

/* Read the audit log (log_file, or the system log when NULL) and print the summary to out.
 * Returns 0, -ENOENT/-EACCES (log not readable), -ENOMEM, or -errno. */
int ab_audit_report(FILE *out, const char *log_file, const struct ab_report_filter *f,
                    enum ab_report_format fmt);
