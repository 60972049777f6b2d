/* SPDX-License-Identifier: MIT */
/* agentbrokerctl trace: one line per tool call, from the journal entries the broker writes
 * for every decision (audit/audit_log.c: AGENTBROKER_OP, AGENTBROKER_RUN, ...). A call's
 * secret-use entries come before its tool-call-end: they are kept, per (run, call), until
 * the call's line is printed. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-journal.h>

#include "common/macros.h"
#include "ctl/trace.h"

#define TRACE_PENDING_MAX 1024 /* calls whose secret uses are kept until they end */
#define TRACE_SECRETS_MAX 512  /* bytes of "name(op)" text kept per call */
#define TRACE_VALUE_MAX 256    /* bytes of a field value shown */

static const char *const trace_ops[] = { "tool-call-begin", "tool-call-end", "tool-call-deny",
                                         "secret-use" };

/* A call begun and not yet ended: its secret uses so far. */
struct pending {
        char run[TRACE_VALUE_MAX];
        int64_t call;
        uint64_t seq; /* 0: free slot; else the order it was last used in */
        char secrets[TRACE_SECRETS_MAX];
};

struct trace {
        FILE *out;
        sd_journal *j;
        struct pending *pending; /* TRACE_PENDING_MAX slots */
        uint64_t seq;
};

/* Copy the value of journal field name of the current entry into buf (size bytes), control
 * characters and DEL replaced by '?', cut to fit. Returns true when the entry has it. */
static bool
field(sd_journal *j, const char *name, char *buf, size_t size)
{
        size_t nlen = strlen(name), len, n = 0;
        const void *data;

        buf[0] = '\0';
        if (sd_journal_get_data(j, name, &data, &len) < 0 || len <= nlen ||
            ((const char *)data)[nlen] != '=')
                return false;
        for (const unsigned char *p = (const unsigned char *)data + nlen + 1;
             len-- > nlen + 1 && n + 1 < size; p++)
                buf[n++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
        buf[n] = '\0';
        return true;
}

/* The numeric field name of the current entry, or -1. */
static int64_t
field_num(sd_journal *j, const char *name)
{
        char buf[32], *end;
        long long v;

        if (!field(j, name, buf, sizeof buf) || !*buf)
                return -1;
        errno = 0;
        v = strtoll(buf, &end, 10);
        return errno || *end || v < 0 ? -1 : v;
}

/* The slot of (run, call); with create, a new one (the least recently used slot is reused).
 * NULL when there is none. */
static struct pending *
pending_find(struct trace *t, const char *run, int64_t call, bool create)
{
        struct pending *oldest = &t->pending[0];

        for (size_t i = 0; i < TRACE_PENDING_MAX; i++) {
                struct pending *p = &t->pending[i];
                if (p->seq && p->call == call && strcmp(p->run, run) == 0)
                        return p;
                if (p->seq < oldest->seq)
                        oldest = p;
        }
        if (!create)
                return NULL;
        *oldest = (struct pending){ .call = call, .seq = ++t->seq };
        snprintf(oldest->run, sizeof oldest->run, "%s", run);
        return oldest;
}

/* Print the line of the current entry (a tool-call-end, tool-call-deny or failed
 * tool-call-begin). Returns 0 or -EIO. */
static int
print_call(struct trace *t, const char *op, bool success, const char *run, int64_t call)
{
        char tool[TRACE_VALUE_MAX], reason[TRACE_VALUE_MAX], status[TRACE_VALUE_MAX], when[64];
        int64_t bytes, ms, redactions;
        struct pending *p = call >= 0 ? pending_find(t, run, call, false) : NULL;
        uint64_t usec = 0;
        time_t sec;
        struct tm tm;

        (void)sd_journal_get_realtime_usec(t->j, &usec);
        sec = (time_t)(usec / 1000000);
        if (!localtime_r(&sec, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm))
                snprintf(when, sizeof when, "@%" PRIu64, usec / 1000000);
        field(t->j, "AGENTBROKER_TOOL", tool, sizeof tool);
        field(t->j, "AGENTBROKER_REASON", reason, sizeof reason);
        field(t->j, "AGENTBROKER_STATUS", status, sizeof status);
        bytes = field_num(t->j, "AGENTBROKER_RESULT_BYTES");
        ms = field_num(t->j, "AGENTBROKER_DURATION_MS");
        redactions = field_num(t->j, "AGENTBROKER_REDACTIONS");

        fprintf(t->out, "%s.%03u  run %s  call ", when, (unsigned)(usec / 1000 % 1000), *run ? run : "-");
        if (call >= 0)
                fprintf(t->out, "%" PRId64, call);
        else
                fputc('-', t->out);
        fprintf(t->out, "  %s  ", *tool ? tool : "-");
        if (strcmp(op, "tool-call-end") == 0) {
                fprintf(t->out, "allowed  secrets %s  %s", p && *p->secrets ? p->secrets : "-",
                        *status ? status : "-");
                if (bytes >= 0)
                        fprintf(t->out, "  %" PRId64 " bytes", bytes);
                if (ms >= 0)
                        fprintf(t->out, "  %" PRId64 " ms", ms);
                if (redactions >= 0)
                        fprintf(t->out, "  redactions %" PRId64, redactions);
        } else
                fprintf(t->out, "denied (%s)", *reason ? reason : success ? "denied" : "failed");
        fputc('\n', t->out);
        if (p)
                p->seq = 0;
        return fflush(t->out) != 0 || ferror(t->out) ? -EIO : 0;
}

/* Handle the current entry. Returns 0 or -EIO. */
static int
handle_entry(struct trace *t)
{
        char op[32], run[TRACE_VALUE_MAX], res[16];
        int64_t call;
        bool success;

        if (!field(t->j, "AGENTBROKER_OP", op, sizeof op))
                return 0;
        field(t->j, "AGENTBROKER_RUN", run, sizeof run);
        success = field(t->j, "AGENTBROKER_RESULT", res, sizeof res) && strcmp(res, "success") == 0;
        call = field_num(t->j, "AGENTBROKER_CALL");

        if (strcmp(op, "tool-call-begin") == 0) {
                if (!success)
                        return print_call(t, op, success, run, call);
                if (call >= 0)
                        (void)pending_find(t, run, call, true);
                return 0;
        }
        if (strcmp(op, "secret-use") == 0) {
                char secret[TRACE_VALUE_MAX], sop[32];
                struct pending *p = call >= 0 ? pending_find(t, run, call, true) : NULL;
                size_t used;

                if (!p)
                        return 0;
                field(t->j, "AGENTBROKER_SECRET", secret, sizeof secret);
                field(t->j, "AGENTBROKER_OPERATION", sop, sizeof sop);
                used = strlen(p->secrets);
                snprintf(p->secrets + used, sizeof p->secrets - used, "%s%s(%s%s)", used ? "," : "", secret,
                         sop, success ? "" : ",refused");
                return 0;
        }
        return print_call(t, op, success, run, call);
}

int
ab_trace(FILE *out, const struct ab_trace_options *o)
{
        _cleanup_free_ struct pending *pending = calloc(TRACE_PENDING_MAX, sizeof(*pending));
        struct trace t = { .out = out, .pending = pending };
        char match[64 + TRACE_VALUE_MAX];
        int r;

        if (!pending)
                return -ENOMEM;
        r = o->directory ? sd_journal_open_directory(&t.j, o->directory, 0)
                         : sd_journal_open(&t.j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return r;
        for (size_t i = 0; i < AB_ELEMENTSOF(trace_ops); i++) {
                snprintf(match, sizeof match, "AGENTBROKER_OP=%s", trace_ops[i]);
                if ((r = sd_journal_add_match(t.j, match, 0)) < 0)
                        goto out;
        }
        if (o->run) {
                if (strlen(o->run) >= TRACE_VALUE_MAX) {
                        r = -EINVAL;
                        goto out;
                }
                snprintf(match, sizeof match, "AGENTBROKER_RUN=%s", o->run);
                if ((r = sd_journal_add_match(t.j, match, 0)) < 0)
                        goto out;
        }
        if (o->since)
                r = sd_journal_seek_realtime_usec(t.j, (uint64_t)o->since * 1000000);
        else if (o->follow) {
                r = sd_journal_seek_tail(t.j);
                if (r >= 0)
                        r = sd_journal_previous(t.j);
        } else
                r = sd_journal_seek_head(t.j);
        if (r < 0)
                goto out;
        for (;;) {
                r = sd_journal_next(t.j);
                if (r < 0)
                        goto out;
                if (r == 0) {
                        if (!o->follow)
                                break;
                        r = sd_journal_wait(t.j, UINT64_MAX);
                        if (r < 0)
                                goto out;
                        continue;
                }
                r = handle_entry(&t);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        sd_journal_close(t.j);
        return r;
}
