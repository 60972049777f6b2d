/* SPDX-License-Identifier: MIT */
/* The security team's view of the audit trail: read agentbroker's AUDIT_TRUSTED_APP records
 * back with libauparse (the system log with its rotated predecessors, or one file), keep the
 * ones that carry our marker (op=<one of our verbs> ab_ver=1), apply the filter and summarise
 * them per run, per tool and per decision, as text tables or as JSON (docs/audit.md).
 *
 * Memory is bounded: at most REPORT_RUNS_MAX runs and REPORT_TOOLS_MAX tools are itemised and
 * each of them keeps at most REPORT_ENTRIES_MAX reasons/secrets/statuses; what does not fit is
 * still counted in the totals and the report says how much was left out. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <auparse.h>
#include <cjson/cJSON.h>
#include <libaudit.h>

#include "audit/audit_log.h"
#include "audit/report.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/macros.h"

#define REPORT_RUNS_MAX 10000
#define REPORT_TOOLS_MAX 1000
#define REPORT_ENTRIES_MAX 64       /* reasons / secrets / statuses per run or tool */
#define REPORT_DENIALS_MAX 256      /* distinct (op, reason) pairs overall */
#define REPORT_WRITERS_MAX 16       /* distinct exe= values */
#define REPORT_POLICY_LOADS_MAX 100 /* the most recent policy-load records */
#define REPORT_UIDS_MAX 64          /* uid -> user name cache */
#define VALUE_MAX 512               /* longest decoded value kept (the emitter's largest cap) */
#define SHOWN_MAX 1024              /* longest sanitized value printed */
#define REPORT_TIMELINE_MAX 100000  /* --calls: the most call records kept */

#define AUDITD_CONF "/etc/audit/auditd.conf"
#define AUDIT_LOG_DEFAULT "/var/log/audit/audit.log"

/* ------------------------------------------------------------------------------------------ */
/* Small containers                                                                           */

struct stamp {
        time_t sec;
        unsigned ms;
        bool set;
};

/* A counted (key, key2) pair: a denial reason (key2 = op), a secret (key2 = operation), a
 * status. count = successes / occurrences, failed = failed uses (secrets only). */
struct counter {
        char *key;
        char *key2;
        uint64_t count;
        uint64_t failed;
};

struct counters {
        struct counter *v;
        size_t n, cap;
        uint64_t dropped; /* occurrences of pairs beyond the limit */
};

/* Add one occurrence of (key, key2) to c, keeping at most max distinct pairs.
 * Returns 0 or -ENOMEM. */
static int
counters_add(struct counters *c, size_t max, const char *key, const char *key2, bool failed)
{
        struct counter *e;

        if (!key)
                key = "?";
        for (size_t i = 0; i < c->n; i++) {
                e = &c->v[i];
                if (strcmp(e->key, key) == 0 &&
                    ((!e->key2 && !key2) || (e->key2 && key2 && strcmp(e->key2, key2) == 0)))
                        goto found;
        }
        if (c->n >= max) {
                c->dropped++;
                return 0;
        }
        if (c->n == c->cap) {
                size_t ncap = c->cap ? c->cap * 2 : 4;
                struct counter *nv = reallocarray(c->v, ncap, sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                c->v = nv;
                c->cap = ncap;
        }
        e = &c->v[c->n];
        *e = (struct counter){ .key = strdup(key), .key2 = key2 ? strdup(key2) : NULL };
        if (!e->key || (key2 && !e->key2)) {
                free(e->key);
                free(e->key2);
                return -ENOMEM;
        }
        c->n++;
found:
        if (failed)
                e->failed++;
        else
                e->count++;
        return 0;
}

static void
counters_done(struct counters *c)
{
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].key);
                free(c->v[i].key2);
        }
        free(c->v);
}

static int
counter_cmp(const void *a, const void *b)
{
        const struct counter *x = a, *y = b;
        uint64_t nx = x->count + x->failed, ny = y->count + y->failed;
        int r;

        if (nx != ny)
                return nx > ny ? -1 : 1;
        r = strcmp(x->key, y->key);
        if (r == 0 && x->key2 && y->key2)
                r = strcmp(x->key2, y->key2);
        return r;
}

static void
counters_sort(struct counters *c)
{
        if (c->n > 1)
                qsort(c->v, c->n, sizeof(c->v[0]), counter_cmp);
}

/* Per run and per tool statistics. Both start with the key so one hash table serves. */
struct stats {
        char *key;
        uint64_t begun, ended, denied, token_denied, bytes, dur_total, dur_max;
        uint64_t rejected, redactions; /* tool-call-reject records; redactions= of call ends */
        struct counters denials, secrets, statuses;
        struct counters redacted; /* secret names redacted from call results */
        struct counters clients;  /* runs: MCP clients (run-client: name, version) */
};

struct run_stats {
        struct stats s; /* first: s.key is the run id */
        struct stamp opened, closed;
        bool has_uid;
        uid_t uid;
        bool has_close;
        int64_t close_calls, close_denied, close_bytes, close_duration, close_rejected;
        bool has_login; /* login uid and session of run-open (else a run-client) */
        int64_t login_uid, login_ses;
};

struct tool_stats {
        struct stats s; /* first: s.key is the tool name */
};

/* Insertion-ordered elements (each starting with struct stats) with an open-addressing
 * index over their keys. */
struct table {
        char *items;
        size_t elem, n, cap, max;
        uint32_t *slots; /* item index + 1, 0 = empty */
        size_t nslots;
        uint64_t dropped; /* records about keys beyond max */
};

static struct stats *
table_at(const struct table *t, size_t i)
{
        return (struct stats *)(t->items + i * t->elem);
}

static int
table_rehash(struct table *t, size_t nslots)
{
        uint32_t *slots = calloc(nslots, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
                size_t h = ab_hash_str(table_at(t, i)->key) & (nslots - 1);
                while (slots[h])
                        h = (h + 1) & (nslots - 1);
                slots[h] = (uint32_t)(i + 1);
        }
        free(t->slots);
        t->slots = slots;
        t->nslots = nslots;
        return 0;
}

/* Find or create the element for key. Returns 1 with *ret set, 0 when the table is full
 * (counted in t->dropped), or -ENOMEM. */
static int
table_get(struct table *t, const char *key, struct stats **ret)
{
        size_t h;
        int r;

        if (t->nslots) {
                h = ab_hash_str(key) & (t->nslots - 1);
                for (; t->slots[h]; h = (h + 1) & (t->nslots - 1)) {
                        struct stats *s = table_at(t, t->slots[h] - 1);
                        if (strcmp(s->key, key) == 0) {
                                *ret = s;
                                return 1;
                        }
                }
        }
        if (t->n >= t->max) {
                t->dropped++;
                return 0;
        }
        if ((t->n + 1) * 2 > t->nslots) {
                r = table_rehash(t, t->nslots ? t->nslots * 2 : 64);
                if (r < 0)
                        return r;
        }
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 16;
                char *items = reallocarray(t->items, ncap, t->elem);
                if (!items)
                        return -ENOMEM;
                t->items = items;
                t->cap = ncap;
        }
        struct stats *s = table_at(t, t->n);
        memset(s, 0, t->elem);
        s->key = strdup(key);
        if (!s->key)
                return -ENOMEM;
        h = ab_hash_str(key) & (t->nslots - 1);
        while (t->slots[h])
                h = (h + 1) & (t->nslots - 1);
        t->slots[h] = (uint32_t)(t->n + 1);
        t->n++;
        *ret = s;
        return 1;
}

static void
table_done(struct table *t)
{
        for (size_t i = 0; i < t->n; i++) {
                struct stats *s = table_at(t, i);
                free(s->key);
                counters_done(&s->denials);
                counters_done(&s->secrets);
                counters_done(&s->statuses);
                counters_done(&s->redacted);
                counters_done(&s->clients);
        }
        free(t->items);
        free(t->slots);
}

/* ------------------------------------------------------------------------------------------ */
/* One parsed record                                                                          */

struct rec {
        enum ab_event_type type;
        bool success;
        struct stamp time;
        bool has_peer;
        uid_t suid;
        pid_t spid;
        const char *run, *tool, *secret, *sop, *reason, *status, *token, *detail, *exe;
        const char *redacted, *client, *client_ver;
        int64_t call, args_len, bytes, duration_ms, calls, denied, rejected, redactions, login_uid,
                login_ses;
        /* storage for the decoded strings */
        char buf[12][VALUE_MAX + 1];
};

/* Decode a value as audit_encode_nv_string() wrote it: "text" (quotes removed) or upper-case
 * hex of the bytes. A value in neither form (some other writer) is copied as it is. The result
 * is cut to size - 1 bytes. */
static void
decode_value(const char *raw, char *out, size_t size)
{
        size_t len = strlen(raw), n = 0;

        if (raw[0] == '"') {
                const char *end = strchr(raw + 1, '"');
                n = end ? (size_t)(end - raw - 1) : len - 1;
                n = n < size - 1 ? n : size - 1;
                memcpy(out, raw + 1, n);
        } else if (len > 0 && len % 2 == 0 && strspn(raw, "0123456789ABCDEFabcdef") == len) {
                for (size_t i = 0; i < len && n < size - 1; i += 2) {
                        char pair[3] = { raw[i], raw[i + 1], 0 };
                        out[n++] = (char)strtoul(pair, NULL, 16);
                }
        } else {
                n = len < size - 1 ? len : size - 1;
                memcpy(out, raw, n);
        }
        out[n] = 0;
}

/* A bare decimal number field; -1 when it is missing or not a number. */
static int64_t
parse_num(const char *raw)
{
        char *end;
        long long v;

        if (!raw || *raw < '0' || *raw > '9')
                return -1;
        errno = 0;
        v = strtoll(raw, &end, 10);
        if (errno || *end)
                return -1;
        return v;
}

enum rec_kind {
        REC_OURS,
        REC_FOREIGN,
        REC_UNKNOWN_VERSION
};

/* Parse the current record (a TRUSTED_APP record) into r. */
static enum rec_kind
parse_record(auparse_state_t *au, struct rec *rec)
{
        const char *op = NULL, *ver = NULL, *res = NULL, *suid = NULL, *spid = NULL;
        struct {
                const char *name;
                const char **dst;
        } strs[] = {
                { "run", &rec->run },       { "tool", &rec->tool },
                { "secret", &rec->secret }, { "sop", &rec->sop },
                { "reason", &rec->reason }, { "status", &rec->status },
                { "token", &rec->token },   { "detail", &rec->detail },
                { "exe", &rec->exe },       { "redacted", &rec->redacted },
                { "client", &rec->client }, { "client_ver", &rec->client_ver },
        };
        struct {
                const char *name;
                int64_t *dst;
        } nums[] = {
                { "call", &rec->call },
                { "args_len", &rec->args_len },
                { "bytes", &rec->bytes },
                { "calls", &rec->calls },
                { "duration_ms", &rec->duration_ms },
                { "denied", &rec->denied },
                { "rejected", &rec->rejected },
                { "redactions", &rec->redactions },
                { "login_uid", &rec->login_uid },
                { "login_ses", &rec->login_ses },
        };
        _Static_assert(AB_ELEMENTSOF(strs) <= AB_ELEMENTSOF(rec->buf), "rec buffers");

        rec->run = rec->tool = rec->secret = rec->sop = rec->reason = rec->status = rec->token =
                rec->detail = rec->exe = rec->redacted = rec->client = rec->client_ver = NULL;
        for (size_t i = 0; i < AB_ELEMENTSOF(nums); i++)
                *nums[i].dst = -1;

        if (auparse_first_field(au) <= 0)
                return REC_FOREIGN;
        do {
                const char *name = auparse_get_field_name(au), *val = auparse_get_field_str(au);
                size_t i;

                if (!name || !val)
                        continue;
                if (strcmp(name, "op") == 0 && !op)
                        op = val;
                else if (strcmp(name, "ab_ver") == 0)
                        ver = val;
                else if (strcmp(name, "res") == 0)
                        res = val;
                else if (strcmp(name, "suid") == 0)
                        suid = val;
                else if (strcmp(name, "spid") == 0)
                        spid = val;
                else {
                        for (i = 0; i < AB_ELEMENTSOF(strs); i++)
                                if (strcmp(name, strs[i].name) == 0) {
                                        decode_value(val, rec->buf[i], sizeof(rec->buf[i]));
                                        *strs[i].dst = rec->buf[i];
                                        break;
                                }
                        if (i == AB_ELEMENTSOF(strs))
                                for (i = 0; i < AB_ELEMENTSOF(nums); i++)
                                        if (strcmp(name, nums[i].name) == 0) {
                                                *nums[i].dst = parse_num(val);
                                                break;
                                        }
                }
        } while (auparse_next_field(au) > 0);

        if (!op || !ver || ab_event_from_op(op, &rec->type) < 0)
                return REC_FOREIGN;
        if (parse_num(ver) != AB_AUDIT_VERSION)
                return REC_UNKNOWN_VERSION;
        rec->success =
                res && (strcmp(res, "success") == 0 || strcmp(res, "yes") == 0 || strcmp(res, "1") == 0);
        rec->has_peer = parse_num(suid) >= 0 && parse_num(spid) > 0;
        if (rec->has_peer) {
                rec->suid = (uid_t)parse_num(suid);
                rec->spid = (pid_t)parse_num(spid);
        }
        rec->time = (struct stamp){ auparse_get_time(au), auparse_get_milli(au), true };
        return REC_OURS;
}

/* ------------------------------------------------------------------------------------------ */
/* The summary                                                                                */

struct policy_load {
        struct stamp time;
        bool success;
        char *detail;
};

struct report {
        const struct ab_report_filter *f;
        char source[512];
        bool rotated;
        uint64_t records, foreign, unknown_version;
        struct stamp first, last;
        uint64_t decisions[_AB_EV_MAX][2]; /* [type][success] */
        struct counters denials, writers;
        struct table runs, tools;
        struct policy_load loads[REPORT_POLICY_LOADS_MAX];
        size_t n_loads, next_load;
        uint64_t loads_dropped;
        struct {
                uid_t uid;
                char *name; /* NULL: no such user */
        } users[REPORT_UIDS_MAX];
        size_t n_users;
        cJSON *timeline;           /* --calls: the call records in log order */
        uint64_t timeline_dropped; /* beyond REPORT_TIMELINE_MAX */
};

/* Add each name of a comma-separated list (call-end's redacted=) to c. Returns 0 or -ENOMEM. */
static int
counters_add_list(struct counters *c, size_t max, const char *list)
{
        char name[VALUE_MAX + 1];

        while (list && *list) {
                size_t n = strcspn(list, ",");
                if (n > 0) {
                        snprintf(name, sizeof(name), "%.*s", (int)n, list);
                        if (counters_add(c, max, name, NULL, false) < 0)
                                return -ENOMEM;
                }
                list += n + (list[n] == ',');
        }
        return 0;
}

static bool
denial(const struct rec *rec)
{
        return rec->type == AB_EV_CALL_DENY || rec->type == AB_EV_TOKEN_DENY;
}

static bool
rec_matches(const struct report *rp, const struct rec *rec)
{
        const struct ab_report_filter *f = rp->f;

        if (!f)
                return true;
        if (f->since && rec->time.sec < f->since)
                return false;
        if (f->run && (!rec->run || strcmp(f->run, rec->run) != 0))
                return false;
        if (f->tool && (!rec->tool || strcmp(f->tool, rec->tool) != 0))
                return false;
        if (f->denied_only && !denial(rec))
                return false;
        return true;
}

/* Account one call-related record to a run's or a tool's statistics. */
static int
stats_add(struct stats *s, const struct rec *rec)
{
        int ret = 0;

        switch (rec->type) {
        case AB_EV_CALL_BEGIN:
                if (rec->success)
                        s->begun++;
                break;
        case AB_EV_CALL_END:
                s->ended++;
                if (rec->bytes > 0)
                        s->bytes += (uint64_t)rec->bytes;
                if (rec->duration_ms > 0) {
                        s->dur_total += (uint64_t)rec->duration_ms;
                        if ((uint64_t)rec->duration_ms > s->dur_max)
                                s->dur_max = (uint64_t)rec->duration_ms;
                }
                ret = counters_add(&s->statuses, REPORT_ENTRIES_MAX, rec->status ? rec->status : "?", NULL,
                                   false);
                if (ret == 0 && rec->redactions > 0) {
                        s->redactions += (uint64_t)rec->redactions;
                        ret = counters_add_list(&s->redacted, REPORT_ENTRIES_MAX, rec->redacted);
                }
                break;
        case AB_EV_CALL_REJECT:
                s->rejected++;
                ret = counters_add(&s->denials, REPORT_ENTRIES_MAX, rec->reason, ab_event_op(rec->type),
                                   false);
                break;
        case AB_EV_RUN_CLIENT:
                ret = counters_add(&s->clients, REPORT_ENTRIES_MAX, rec->client ? rec->client : "(unnamed)",
                                   rec->client_ver ? rec->client_ver : "", false);
                break;
        case AB_EV_CALL_DENY:
                s->denied++;
                ret = counters_add(&s->denials, REPORT_ENTRIES_MAX, rec->reason, ab_event_op(rec->type),
                                   false);
                break;
        case AB_EV_TOKEN_DENY:
                s->token_denied++;
                ret = counters_add(&s->denials, REPORT_ENTRIES_MAX, rec->reason, ab_event_op(rec->type),
                                   false);
                break;
        case AB_EV_SECRET_USE:
                ret = counters_add(&s->secrets, REPORT_ENTRIES_MAX, rec->secret, rec->sop ? rec->sop : "?",
                                   !rec->success);
                break;
        default: break;
        }
        return ret;
}

/* Account one of our records that passed the filter. Returns 0 or -ENOMEM. */
static int
report_add(struct report *rp, const struct rec *rec)
{
        struct stats *s;
        int k;

        rp->records++;
        if (!rp->first.set)
                rp->first = rec->time;
        rp->last = rec->time;
        rp->decisions[rec->type][rec->success ? 1 : 0]++;
        if (counters_add(&rp->writers, REPORT_WRITERS_MAX, rec->exe ? rec->exe : "?", NULL, false) < 0)
                return -ENOMEM;
        if (denial(rec) || (!rec->success && rec->reason))
                if (counters_add(&rp->denials, REPORT_DENIALS_MAX, rec->reason, ab_event_op(rec->type),
                                 false) < 0)
                        return -ENOMEM;

        if (rec->type == AB_EV_POLICY_LOAD) {
                struct policy_load *pl = &rp->loads[rp->next_load];
                if (rp->n_loads == REPORT_POLICY_LOADS_MAX) {
                        free(pl->detail);
                        rp->loads_dropped++;
                } else
                        rp->n_loads++;
                *pl = (struct policy_load){ rec->time, rec->success,
                                            strdup(rec->detail ? rec->detail : "") };
                if (!pl->detail)
                        return -ENOMEM;
                rp->next_load = (rp->next_load + 1) % REPORT_POLICY_LOADS_MAX;
        }

        if (rec->run) {
                k = table_get(&rp->runs, rec->run, &s);
                if (k < 0)
                        return k;
                if (k > 0) {
                        struct run_stats *run = (struct run_stats *)s;
                        if (rec->login_uid >= 0 && (rec->type == AB_EV_RUN_OPEN ||
                                                    (rec->type == AB_EV_RUN_CLIENT && !run->has_login))) {
                                run->has_login = true;
                                run->login_uid = rec->login_uid;
                                run->login_ses = rec->login_ses;
                        }
                        if (rec->type == AB_EV_RUN_OPEN) {
                                run->opened = rec->time;
                                if (rec->has_peer) {
                                        run->has_uid = true;
                                        run->uid = rec->suid;
                                }
                        } else if (rec->type == AB_EV_RUN_CLOSE) {
                                run->closed = rec->time;
                                run->has_close = true;
                                run->close_calls = rec->calls;
                                run->close_denied = rec->denied;
                                run->close_rejected = rec->rejected;
                                run->close_bytes = rec->bytes;
                                run->close_duration = rec->duration_ms;
                        }
                        if (!run->has_uid && rec->has_peer) {
                                run->has_uid = true;
                                run->uid = rec->suid;
                        }
                        if (stats_add(s, rec) < 0)
                                return -ENOMEM;
                }
        }
        if (rec->tool) {
                k = table_get(&rp->tools, rec->tool, &s);
                if (k < 0)
                        return k;
                if (k > 0 && stats_add(s, rec) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static void
report_done(struct report *rp)
{
        cJSON_Delete(rp->timeline);
        counters_done(&rp->denials);
        counters_done(&rp->writers);
        table_done(&rp->runs);
        table_done(&rp->tools);
        for (size_t i = 0; i < rp->n_loads; i++)
                free(rp->loads[i].detail);
        for (size_t i = 0; i < rp->n_users; i++)
                free(rp->users[i].name);
}

/* The user name of uid (cached; looked up only while printing), or NULL. */
static const char *
user_name(struct report *rp, uid_t uid)
{
        struct passwd *pw;

        for (size_t i = 0; i < rp->n_users; i++)
                if (rp->users[i].uid == uid)
                        return rp->users[i].name;
        pw = getpwuid(uid);
        if (rp->n_users == REPORT_UIDS_MAX)
                return NULL;
        rp->users[rp->n_users].uid = uid;
        rp->users[rp->n_users].name = pw ? strdup(pw->pw_name) : NULL;
        return rp->users[rp->n_users++].name;
}

static int
tool_cmp(const void *a, const void *b)
{
        return strcmp(((const struct tool_stats *)a)->s.key, ((const struct tool_stats *)b)->s.key);
}

/* Sort what is printed: tools by name, every counter list by count. Runs keep log order. */
static void
report_sort(struct report *rp)
{
        struct table *tabs[] = { &rp->runs, &rp->tools };

        counters_sort(&rp->denials);
        counters_sort(&rp->writers);
        for (size_t t = 0; t < AB_ELEMENTSOF(tabs); t++)
                for (size_t i = 0; i < tabs[t]->n; i++) {
                        struct stats *s = table_at(tabs[t], i);
                        counters_sort(&s->denials);
                        counters_sort(&s->secrets);
                        counters_sort(&s->statuses);
                }
        /* the index is not used after this point */
        if (rp->tools.n > 1)
                qsort(rp->tools.items, rp->tools.n, rp->tools.elem, tool_cmp);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading the log                                                                            */

/* The log_file of auditd.conf (what AUSOURCE_LOGS reads), or the default. */
static void
system_log_path(char *out, size_t size)
{
        FILE *f = fopen(AUDITD_CONF, "re");
        char line[1024];

        snprintf(out, size, "%s", AUDIT_LOG_DEFAULT);
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                char *p = line + strspn(line, " \t");
                if (strncmp(p, "log_file", 8) != 0)
                        continue;
                p += 8;
                p += strspn(p, " \t");
                if (*p != '=')
                        continue;
                p++;
                p += strspn(p, " \t");
                p[strcspn(p, " \t\r\n")] = 0;
                if (*p == '/')
                        snprintf(out, size, "%s", p);
                break;
        }
        fclose(f);
}

/* --calls: keep a call record (begun, denied, ended, a secret use or a denied token) as a
 * JSON object of its fields, in log order. Returns 0 or -ENOMEM. */
static int
timeline_add(struct report *rp, const struct rec *rec)
{
        char when[40];
        cJSON *e;
        struct tm tm;

        if (rec->type != AB_EV_CALL_BEGIN && rec->type != AB_EV_CALL_END && rec->type != AB_EV_CALL_DENY &&
            rec->type != AB_EV_SECRET_USE && rec->type != AB_EV_TOKEN_DENY)
                return 0;
        if (!rp->timeline && !(rp->timeline = cJSON_CreateArray()))
                return -ENOMEM;
        if (cJSON_GetArraySize(rp->timeline) >= REPORT_TIMELINE_MAX) {
                rp->timeline_dropped++;
                return 0;
        }
        if (!gmtime_r(&rec->time.sec, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm))
                snprintf(when, sizeof(when), "@%lld", (long long)rec->time.sec);
        snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03uZ", rec->time.ms % 1000);
        e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(rp->timeline, e))
                goto oom;
        if (!cJSON_AddStringToObject(e, "time", when) ||
            !cJSON_AddStringToObject(e, "op", ab_event_op(rec->type)) ||
            !cJSON_AddStringToObject(e, "result", rec->success ? "success" : "failed"))
                return -ENOMEM;
        const struct {
                const char *name, *v;
        } strs[] = { { "run", rec->run },       { "tool", rec->tool },     { "reason", rec->reason },
                     { "status", rec->status }, { "secret", rec->secret }, { "operation", rec->sop },
                     { "token", rec->token } };
        const struct {
                const char *name;
                int64_t v;
        } nums[] = { { "call", rec->call }, { "bytes", rec->bytes }, { "duration_ms", rec->duration_ms } };
        for (size_t i = 0; i < AB_ELEMENTSOF(strs); i++)
                if (strs[i].v && !cJSON_AddStringToObject(e, strs[i].name, strs[i].v))
                        return -ENOMEM;
        for (size_t i = 0; i < AB_ELEMENTSOF(nums); i++)
                if (nums[i].v >= 0 && !cJSON_AddNumberToObject(e, nums[i].name, (double)nums[i].v))
                        return -ENOMEM;
        return 0;
oom:
        cJSON_Delete(e);
        return -ENOMEM;
}

/* Walk the log and fill rp. Returns 0, -ENOENT/-EACCES/-errno when it cannot be read,
 * -EIO when auparse fails part way, -ENOMEM. */
static int
report_read(struct report *rp, const char *log_file)
{
        auparse_state_t *au;
        struct rec *rec = NULL;
        struct stat st;
        int fd, k, ret = 0;

        if (log_file)
                snprintf(rp->source, sizeof(rp->source), "%s", log_file);
        else
                system_log_path(rp->source, sizeof(rp->source));
        rp->rotated = !log_file;

        /* auparse says little about why a log cannot be read: check first */
        fd = open(rp->source, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                ret = -errno;
                log_debug("cannot open the audit log %s: %s", rp->source, strerror(errno));
                return ret;
        }
        if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
                ret = S_ISDIR(st.st_mode) ? -EISDIR : -errno;
                close(fd);
                return ret;
        }
        close(fd);

        errno = 0;
        au = log_file ? auparse_init(AUSOURCE_FILE, log_file) : auparse_init(AUSOURCE_LOGS, NULL);
        if (!au)
                return errno ? -errno : -EIO;
        /* decode values ourselves (decode_value); auparse's own escaping is not used */
        auparse_set_escape_mode(au, AUPARSE_ESC_RAW);

        rec = malloc(sizeof(*rec));
        if (!rec) {
                ret = -ENOMEM;
                goto out;
        }
        while ((k = auparse_next_event(au)) > 0) {
                do {
                        if (auparse_get_type(au) != AUDIT_TRUSTED_APP)
                                continue;
                        switch (parse_record(au, rec)) {
                        case REC_FOREIGN: rp->foreign++; continue;
                        case REC_UNKNOWN_VERSION: rp->unknown_version++; continue;
                        case REC_OURS: break;
                        }
                        if (!rec_matches(rp, rec))
                                continue;
                        ret = rp->f && rp->f->calls ? timeline_add(rp, rec) : report_add(rp, rec);
                        if (ret < 0)
                                goto out;
                } while (auparse_next_record(au) > 0);
        }
        if (k < 0) {
                log_error("error while reading the audit log %s", rp->source);
                ret = -EIO;
        }
out:
        free(rec);
        auparse_destroy(au);
        return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Output helpers                                                                             */

/* ISO 8601 UTC with milliseconds, or "-" when unset. */
static const char *
fmt_time(const struct stamp *t, char *buf, size_t size)
{
        struct tm tm;

        if (!t->set || !gmtime_r(&t->sec, &tm)) {
                snprintf(buf, size, "-");
                return buf;
        }
        size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, size - n, ".%03uZ", t->ms % 1000);
        return buf;
}

static const char *
shown(const char *s, char *buf)
{
        ab_audit_sanitize(s, s ? strlen(s) : 0, buf, SHOWN_MAX);
        return buf;
}

#define TABLE_COLS_MAX 13

/* Terminal columns of a (sanitized, valid UTF-8) string: one per character. */
static size_t
display_width(const char *s)
{
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xC0) != 0x80)
                        w++;
        return w;
}

/* A text table: cells added row by row, printed with every column as wide as its widest
 * cell; align[i] is 'r' for right-aligned (numeric) columns. */
struct text_table {
        size_t cols;
        const char *align;
        char **cells;
        size_t n, cap;
        bool oom;
};

static void AB_PRINTF(2, 3) tt_add(struct text_table *t, const char *fmt, ...)
{
        va_list ap;
        char *s;

        if (t->oom)
                return;
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : t->cols * 16;
                char **nc = reallocarray(t->cells, ncap, sizeof(*nc));
                if (!nc) {
                        t->oom = true;
                        return;
                }
                t->cells = nc;
                t->cap = ncap;
        }
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (!s) {
                t->oom = true;
                return;
        }
        t->cells[t->n++] = s;
}

/* Print the table with two spaces of indent. Returns 0 or -ENOMEM (a cell was lost). */
static int
tt_print(FILE *out, const struct text_table *t)
{
        size_t width[TABLE_COLS_MAX] = { 0 };

        if (t->oom)
                return -ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
                size_t w = display_width(t->cells[i]);
                if (w > width[i % t->cols])
                        width[i % t->cols] = w;
        }
        for (size_t i = 0; i < t->n; i++) {
                size_t c = i % t->cols, pad = width[c] - display_width(t->cells[i]);
                bool last = c == t->cols - 1;

                fputs("  ", out);
                if (t->align[c] == 'r')
                        fprintf(out, "%*s%s", (int)pad, "", t->cells[i]);
                else if (last)
                        fputs(t->cells[i], out);
                else
                        fprintf(out, "%s%*s", t->cells[i], (int)pad, "");
                if (last)
                        fputc('\n', out);
        }
        return 0;
}

static void
tt_done(struct text_table *t)
{
        for (size_t i = 0; i < t->n; i++)
                free(t->cells[i]);
        free(t->cells);
}

enum counters_kind {
        KIND_DENIALS,
        KIND_SECRETS,
        KIND_STATUSES,
        KIND_CLIENTS
};

/* One "label: a (n), b (m)" line of a run's or tool's details; nothing when c is empty. */
static void
print_counters(FILE *out, const char *label, const struct counters *c, enum counters_kind kind)
{
        char a[SHOWN_MAX], b[SHOWN_MAX];

        if (c->n == 0)
                return;
        fprintf(out, "    %s: ", label);
        for (size_t i = 0; i < c->n; i++) {
                const struct counter *e = &c->v[i];
                const char *sep = i ? ", " : "";
                switch (kind) {
                case KIND_DENIALS:
                        fprintf(out, "%s%s %s (%" PRIu64 ")", sep, shown(e->key2, b), shown(e->key, a),
                                e->count);
                        break;
                case KIND_SECRETS:
                        fprintf(out, "%s%s/%s (%" PRIu64 " used", sep, shown(e->key, a), shown(e->key2, b),
                                e->count);
                        if (e->failed)
                                fprintf(out, ", %" PRIu64 " refused", e->failed);
                        fputc(')', out);
                        break;
                case KIND_STATUSES:
                        fprintf(out, "%s%s (%" PRIu64 ")", sep, shown(e->key, a), e->count);
                        break;
                case KIND_CLIENTS:
                        fprintf(out, "%s%s %s (%" PRIu64 ")", sep, shown(e->key, a), shown(e->key2, b),
                                e->count);
                        break;
                }
        }
        if (c->dropped)
                fprintf(out, ", and %" PRIu64 " more not itemised", c->dropped);
        fputc('\n', out);
}

static const char *
fmt_user(struct report *rp, bool has_uid, uid_t uid, char *buf, size_t size)
{
        const char *name;
        char tmp[256];

        if (!has_uid) {
                snprintf(buf, size, "-");
                return buf;
        }
        name = user_name(rp, uid);
        if (name) {
                ab_audit_sanitize(name, strlen(name), tmp, sizeof(tmp));
                snprintf(buf, size, "%s (%u)", tmp, (unsigned)uid);
        } else
                snprintf(buf, size, "%u", (unsigned)uid);
        return buf;
}

/* The statistics columns shared by the run and tool tables. */
static void
tt_add_stats(struct text_table *t, const struct stats *s)
{
        tt_add(t, "%" PRIu64, s->begun);
        tt_add(t, "%" PRIu64, s->ended);
        tt_add(t, "%" PRIu64, s->rejected);
        tt_add(t, "%" PRIu64, s->redactions);
        tt_add(t, "%" PRIu64, s->denied);
        tt_add(t, "%" PRIu64, s->token_denied);
        tt_add(t, "%" PRIu64, s->bytes);
        tt_add(t, "%" PRIu64, s->dur_total);
        tt_add(t, "%" PRIu64, s->dur_max);
}

static bool
stats_have_details(const struct stats *s)
{
        return s->denials.n || s->secrets.n || s->statuses.n || s->redacted.n || s->clients.n;
}

static void
print_stats_details(FILE *out, const struct stats *s)
{
        print_counters(out, "denials", &s->denials, KIND_DENIALS);
        print_counters(out, "secrets", &s->secrets, KIND_SECRETS);
        print_counters(out, "call ends", &s->statuses, KIND_STATUSES);
        print_counters(out, "redacted", &s->redacted, KIND_STATUSES);
        print_counters(out, "clients", &s->clients, KIND_CLIENTS);
}

/* A login uid or session id as recorded: 4294967295 means unset (no login session). */
static const char *
fmt_login(int64_t v, char *buf, size_t size)
{
        if (v == 4294967295LL)
                snprintf(buf, size, "unset");
        else
                snprintf(buf, size, "%" PRId64, v);
        return buf;
}

/* The runs table, then the details of each run that has any. Returns 0 or -errno. */
static int
print_text_runs(FILE *out, struct report *rp)
{
        char t1[64], t2[64], a[SHOWN_MAX], b[SHOWN_MAX];
        int r;

        fprintf(out, "\nRuns (%zu)\n", rp->runs.n);
        if (rp->runs.n == 0) {
                fprintf(out, "  none\n");
                return 0;
        }
        struct text_table t = { .cols = 13, .align = "llllrrrrrrrrr" };
        const char *hdr[] = { "RUN",   "USER",     "OPENED",   "CLOSED", "BEGUN",
                              "ENDED", "REJECTED", "REDACTED", "DENIED", "TOKEN-DENIED",
                              "BYTES", "TOTAL-MS", "MAX-MS" };
        for (size_t i = 0; i < AB_ELEMENTSOF(hdr); i++)
                tt_add(&t, "%s", hdr[i]);
        for (size_t i = 0; i < rp->runs.n; i++) {
                struct run_stats *run = (struct run_stats *)table_at(&rp->runs, i);
                tt_add(&t, "%s", shown(run->s.key, a));
                tt_add(&t, "%s", fmt_user(rp, run->has_uid, run->uid, b, sizeof(b)));
                tt_add(&t, "%s", fmt_time(&run->opened, t1, sizeof(t1)));
                tt_add(&t, "%s", fmt_time(&run->closed, t2, sizeof(t2)));
                tt_add_stats(&t, &run->s);
        }
        r = tt_print(out, &t);
        tt_done(&t);
        if (r < 0)
                return r;
        for (size_t i = 0; i < rp->runs.n; i++) {
                struct run_stats *run = (struct run_stats *)table_at(&rp->runs, i);
                if (!stats_have_details(&run->s) && !run->has_close && !run->has_login)
                        continue;
                fprintf(out, "  run %s:\n", shown(run->s.key, a));
                if (run->has_login)
                        fprintf(out, "    login: uid %s, session %s\n",
                                fmt_login(run->login_uid, t1, sizeof(t1)),
                                fmt_login(run->login_ses, t2, sizeof(t2)));
                print_stats_details(out, &run->s);
                if (run->has_close) {
                        fprintf(out,
                                "    run-close record: %" PRId64 " calls, %" PRId64 " denied, %" PRId64
                                " bytes, %" PRId64 " ms",
                                run->close_calls, run->close_denied, run->close_bytes, run->close_duration);
                        if (run->close_rejected >= 0)
                                fprintf(out, ", %" PRId64 " rejected by the host", run->close_rejected);
                        fputc('\n', out);
                }
        }
        return 0;
}

/* The tools table, then the details of each tool that has any. Returns 0 or -errno. */
static int
print_text_tools(FILE *out, struct report *rp)
{
        char a[SHOWN_MAX];
        int r;

        fprintf(out, "\nTools (%zu)\n", rp->tools.n);
        if (rp->tools.n == 0) {
                fprintf(out, "  none\n");
                return 0;
        }
        struct text_table t = { .cols = 10, .align = "lrrrrrrrrr" };
        const char *hdr[] = { "TOOL",   "BEGUN",        "ENDED", "REJECTED", "REDACTED",
                              "DENIED", "TOKEN-DENIED", "BYTES", "TOTAL-MS", "MAX-MS" };
        for (size_t i = 0; i < AB_ELEMENTSOF(hdr); i++)
                tt_add(&t, "%s", hdr[i]);
        for (size_t i = 0; i < rp->tools.n; i++) {
                struct stats *s = table_at(&rp->tools, i);
                tt_add(&t, "%s", shown(s->key, a));
                tt_add_stats(&t, s);
        }
        r = tt_print(out, &t);
        tt_done(&t);
        if (r < 0)
                return r;
        for (size_t i = 0; i < rp->tools.n; i++) {
                struct stats *s = table_at(&rp->tools, i);
                if (!stats_have_details(s))
                        continue;
                fprintf(out, "  tool %s:\n", shown(s->key, a));
                print_stats_details(out, s);
        }
        return 0;
}

/* The whole report as text. Returns 0 or -errno. */
static int
print_text(FILE *out, struct report *rp)
{
        const struct ab_report_filter *f = rp->f;
        char t1[64], t2[64], a[SHOWN_MAX], b[SHOWN_MAX];
        int r = 0;

        fprintf(out, "agentbroker audit report\n");
        fprintf(out, "Source:    %s%s\n", shown(rp->source, a),
                rp->rotated ? " (with its rotated logs)" : "");
        if (f && (f->run || f->tool || f->since || f->denied_only)) {
                struct stamp since = { f->since, 0, f->since != 0 };
                fprintf(out, "Filter:    run %s, tool %s, since %s%s\n", f->run ? shown(f->run, a) : "any",
                        f->tool ? shown(f->tool, b) : "any",
                        f->since ? fmt_time(&since, t1, sizeof(t1)) : "any",
                        f->denied_only ? ", denials only" : "");
        }
        fprintf(out, "Records:   %" PRIu64, rp->records);
        if (rp->records)
                fprintf(out, ", %s to %s", fmt_time(&rp->first, t1, sizeof(t1)),
                        fmt_time(&rp->last, t2, sizeof(t2)));
        fputc('\n', out);
        for (size_t i = 0; i < rp->writers.n; i++)
                fprintf(out, "%s%s (%" PRIu64 " records)\n",
                        i ? "           " : "Writers:   ", shown(rp->writers.v[i].key, a),
                        rp->writers.v[i].count);
        if (rp->foreign || rp->unknown_version)
                fprintf(out,
                        "Skipped:   %" PRIu64 " TRUSTED_APP records of other programs, %" PRIu64
                        " with an unknown ab_ver\n",
                        rp->foreign, rp->unknown_version);

        /* decisions */
        {
                struct text_table t = { .cols = 3, .align = "lrr" };
                fprintf(out, "\nDecisions\n");
                tt_add(&t, "OP");
                tt_add(&t, "SUCCESS");
                tt_add(&t, "FAILED");
                for (size_t i = 0; i < _AB_EV_MAX; i++) {
                        tt_add(&t, "%s", ab_event_op((enum ab_event_type)i));
                        tt_add(&t, "%" PRIu64, rp->decisions[i][1]);
                        tt_add(&t, "%" PRIu64, rp->decisions[i][0]);
                }
                r = tt_print(out, &t);
                tt_done(&t);
                if (r < 0)
                        return r;
        }

        /* denials by reason */
        fprintf(out, "\nDenials and failures by reason\n");
        if (rp->denials.n == 0)
                fprintf(out, "  none\n");
        else {
                struct text_table t = { .cols = 3, .align = "llr" };
                tt_add(&t, "OP");
                tt_add(&t, "REASON");
                tt_add(&t, "COUNT");
                for (size_t i = 0; i < rp->denials.n; i++) {
                        tt_add(&t, "%s", shown(rp->denials.v[i].key2, a));
                        tt_add(&t, "%s", shown(rp->denials.v[i].key, a));
                        tt_add(&t, "%" PRIu64, rp->denials.v[i].count);
                }
                r = tt_print(out, &t);
                tt_done(&t);
                if (r < 0)
                        return r;
                if (rp->denials.dropped)
                        fprintf(out, "  and %" PRIu64 " more not itemised\n", rp->denials.dropped);
        }

        r = print_text_runs(out, rp);
        if (r < 0)
                return r;

        r = print_text_tools(out, rp);
        if (r < 0)
                return r;

        /* policy loads */
        if (rp->n_loads) {
                struct text_table t = { .cols = 3, .align = "lll" };
                size_t start = rp->n_loads < REPORT_POLICY_LOADS_MAX ? 0 : rp->next_load;
                fprintf(out, "\nPolicy loads\n");
                tt_add(&t, "TIME");
                tt_add(&t, "RESULT");
                tt_add(&t, "DETAIL");
                for (size_t i = 0; i < rp->n_loads; i++) {
                        const struct policy_load *pl = &rp->loads[(start + i) % REPORT_POLICY_LOADS_MAX];
                        tt_add(&t, "%s", fmt_time(&pl->time, t1, sizeof(t1)));
                        tt_add(&t, "%s", pl->success ? "success" : "failed");
                        tt_add(&t, "%s", shown(pl->detail, a));
                }
                r = tt_print(out, &t);
                tt_done(&t);
                if (r < 0)
                        return r;
                if (rp->loads_dropped)
                        fprintf(out, "  (%" PRIu64 " older policy loads not shown)\n", rp->loads_dropped);
        }

        if (rp->runs.dropped || rp->tools.dropped || rp->writers.dropped) {
                fprintf(out, "\nLimits\n");
                if (rp->runs.dropped)
                        fprintf(out,
                                "  more than %d runs: %" PRIu64 " records of further runs are counted "
                                "in the totals only\n",
                                REPORT_RUNS_MAX, rp->runs.dropped);
                if (rp->tools.dropped)
                        fprintf(out,
                                "  more than %d tools: %" PRIu64 " records of further tools are counted "
                                "in the totals only\n",
                                REPORT_TOOLS_MAX, rp->tools.dropped);
                if (rp->writers.dropped)
                        fprintf(out, "  more than %d writing programs: %" PRIu64 " records not attributed\n",
                                REPORT_WRITERS_MAX, rp->writers.dropped);
        }
        return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON                                                                                       */

/* Add a sanitized string member (null when s is NULL). Returns false on ENOMEM. */
static bool
json_str(cJSON *o, const char *name, const char *s)
{
        char buf[SHOWN_MAX];
        if (!s)
                return cJSON_AddNullToObject(o, name) != NULL;
        return cJSON_AddStringToObject(o, name, shown(s, buf)) != NULL;
}

static bool
json_num(cJSON *o, const char *name, double v)
{
        return cJSON_AddNumberToObject(o, name, v) != NULL;
}

static bool
json_time(cJSON *o, const char *name, const struct stamp *t)
{
        char buf[64];
        if (!t->set)
                return cJSON_AddNullToObject(o, name) != NULL;
        return cJSON_AddStringToObject(o, name, fmt_time(t, buf, sizeof(buf))) != NULL;
}

/* An array of counter objects under name. */
static bool
json_counters(cJSON *o, const char *name, const struct counters *c, enum counters_kind kind)
{
        cJSON *arr = cJSON_AddArrayToObject(o, name);
        if (!arr)
                return false;
        for (size_t i = 0; i < c->n; i++) {
                const struct counter *e = &c->v[i];
                cJSON *item = cJSON_CreateObject();
                bool ok;
                if (!item || !cJSON_AddItemToArray(arr, item))
                        return cJSON_Delete(item), false;
                switch (kind) {
                case KIND_DENIALS:
                        ok = json_str(item, "op", e->key2) && json_str(item, "reason", e->key) &&
                             json_num(item, "count", (double)e->count);
                        break;
                case KIND_SECRETS:
                        ok = json_str(item, "secret", e->key) && json_str(item, "operation", e->key2) &&
                             json_num(item, "used", (double)e->count) &&
                             json_num(item, "refused", (double)e->failed);
                        break;
                case KIND_CLIENTS:
                        ok = json_str(item, "name", e->key) && json_str(item, "version", e->key2) &&
                             json_num(item, "sessions", (double)e->count);
                        break;
                default:
                        ok = json_str(item, strcmp(name, "redacted") == 0 ? "secret" : "status", e->key) &&
                             json_num(item, "count", (double)e->count);
                        break;
                }
                if (!ok)
                        return false;
        }
        return true;
}

static bool
json_stats(cJSON *o, const struct stats *s)
{
        return json_num(o, "calls_begun", (double)s->begun) &&
               json_num(o, "calls_ended", (double)s->ended) &&
               json_num(o, "rejected", (double)s->rejected) &&
               json_num(o, "redactions", (double)s->redactions) &&
               json_num(o, "denied", (double)s->denied) &&
               json_num(o, "token_denied", (double)s->token_denied) &&
               json_num(o, "bytes", (double)s->bytes) &&
               json_num(o, "duration_ms_total", (double)s->dur_total) &&
               json_num(o, "duration_ms_max", (double)s->dur_max) &&
               json_counters(o, "denials", &s->denials, KIND_DENIALS) &&
               json_counters(o, "secrets", &s->secrets, KIND_SECRETS) &&
               json_counters(o, "call_ends", &s->statuses, KIND_STATUSES) &&
               json_counters(o, "redacted", &s->redacted, KIND_STATUSES) &&
               json_num(o, "entries_not_itemised",
                        (double)(s->denials.dropped + s->secrets.dropped + s->statuses.dropped +
                                 s->redacted.dropped));
}

/* Build the JSON document of docs/audit.md. Returns NULL on ENOMEM. */
static cJSON *
build_json(struct report *rp)
{
        const struct ab_report_filter *f = rp->f;
        cJSON *root = cJSON_CreateObject(), *o, *arr, *item;
        struct stamp since = { f ? f->since : 0, 0, f && f->since };

        if (!root)
                return NULL;
        if (!json_num(root, "version", 1) || !json_str(root, "source", rp->source) ||
            !cJSON_AddBoolToObject(root, "rotated_logs", rp->rotated))
                goto oom;

        o = cJSON_AddObjectToObject(root, "filter");
        if (!o || !json_str(o, "run", f ? f->run : NULL) || !json_str(o, "tool", f ? f->tool : NULL) ||
            !json_time(o, "since", &since) || !cJSON_AddBoolToObject(o, "denied_only", f && f->denied_only))
                goto oom;

        if (!json_num(root, "records", (double)rp->records) || !json_time(root, "first", &rp->first) ||
            !json_time(root, "last", &rp->last))
                goto oom;
        o = cJSON_AddObjectToObject(root, "skipped");
        if (!o || !json_num(o, "other_programs", (double)rp->foreign) ||
            !json_num(o, "unknown_version", (double)rp->unknown_version))
                goto oom;

        arr = cJSON_AddArrayToObject(root, "writers");
        if (!arr)
                goto oom;
        for (size_t i = 0; i < rp->writers.n; i++) {
                item = cJSON_CreateObject();
                if (!item || !cJSON_AddItemToArray(arr, item) ||
                    !json_str(item, "exe", rp->writers.v[i].key) ||
                    !json_num(item, "records", (double)rp->writers.v[i].count))
                        goto oom;
        }

        arr = cJSON_AddArrayToObject(root, "decisions");
        if (!arr)
                goto oom;
        for (size_t i = 0; i < _AB_EV_MAX; i++) {
                item = cJSON_CreateObject();
                if (!item || !cJSON_AddItemToArray(arr, item) ||
                    !json_str(item, "op", ab_event_op((enum ab_event_type)i)) ||
                    !json_num(item, "success", (double)rp->decisions[i][1]) ||
                    !json_num(item, "failed", (double)rp->decisions[i][0]))
                        goto oom;
        }
        if (!json_counters(root, "denials", &rp->denials, KIND_DENIALS))
                goto oom;

        arr = cJSON_AddArrayToObject(root, "runs");
        if (!arr)
                goto oom;
        for (size_t i = 0; i < rp->runs.n; i++) {
                struct run_stats *run = (struct run_stats *)table_at(&rp->runs, i);
                const char *name = run->has_uid ? user_name(rp, run->uid) : NULL;

                item = cJSON_CreateObject();
                if (!item || !cJSON_AddItemToArray(arr, item) || !json_str(item, "run", run->s.key))
                        goto oom;
                if (!(run->has_uid ? json_num(item, "uid", run->uid)
                                   : !!cJSON_AddNullToObject(item, "uid")) ||
                    !json_str(item, "user", name) || !json_time(item, "opened", &run->opened) ||
                    !json_time(item, "closed", &run->closed) || !json_stats(item, &run->s) ||
                    !json_counters(item, "clients", &run->s.clients, KIND_CLIENTS))
                        goto oom;
                if (run->has_login) {
                        o = cJSON_AddObjectToObject(item, "login");
                        if (!o || !json_num(o, "uid", (double)run->login_uid) ||
                            !json_num(o, "session", (double)run->login_ses))
                                goto oom;
                } else if (!cJSON_AddNullToObject(item, "login"))
                        goto oom;
                if (run->has_close) {
                        o = cJSON_AddObjectToObject(item, "close");
                        if (!o || !json_num(o, "calls", (double)run->close_calls) ||
                            !json_num(o, "denied", (double)run->close_denied) ||
                            (run->close_rejected >= 0 &&
                             !json_num(o, "rejected", (double)run->close_rejected)) ||
                            !json_num(o, "bytes", (double)run->close_bytes) ||
                            !json_num(o, "duration_ms", (double)run->close_duration))
                                goto oom;
                } else if (!cJSON_AddNullToObject(item, "close"))
                        goto oom;
        }

        arr = cJSON_AddArrayToObject(root, "tools");
        if (!arr)
                goto oom;
        for (size_t i = 0; i < rp->tools.n; i++) {
                struct stats *s = table_at(&rp->tools, i);
                item = cJSON_CreateObject();
                if (!item || !cJSON_AddItemToArray(arr, item) || !json_str(item, "tool", s->key) ||
                    !json_stats(item, s))
                        goto oom;
        }

        arr = cJSON_AddArrayToObject(root, "policy_loads");
        if (!arr)
                goto oom;
        for (size_t i = 0; i < rp->n_loads; i++) {
                size_t start = rp->n_loads < REPORT_POLICY_LOADS_MAX ? 0 : rp->next_load;
                const struct policy_load *pl = &rp->loads[(start + i) % REPORT_POLICY_LOADS_MAX];
                item = cJSON_CreateObject();
                if (!item || !cJSON_AddItemToArray(arr, item) || !json_time(item, "time", &pl->time) ||
                    !cJSON_AddBoolToObject(item, "success", pl->success) ||
                    !json_str(item, "detail", pl->detail))
                        goto oom;
        }

        o = cJSON_AddObjectToObject(root, "limits");
        if (!o || !json_num(o, "runs_max", REPORT_RUNS_MAX) || !json_num(o, "tools_max", REPORT_TOOLS_MAX) ||
            !json_num(o, "records_of_runs_not_itemised", (double)rp->runs.dropped) ||
            !json_num(o, "records_of_tools_not_itemised", (double)rp->tools.dropped) ||
            !json_num(o, "denials_not_itemised", (double)rp->denials.dropped) ||
            !json_num(o, "writers_not_itemised", (double)rp->writers.dropped) ||
            !json_num(o, "policy_loads_not_shown", (double)rp->loads_dropped))
                goto oom;
        return root;
oom:
        cJSON_Delete(root);
        return NULL;
}

/* --calls as text: one line per call record, in log order: time, run, call, op, tool, and
 * what the record says (reason; secret and operation; status, bytes and duration).
 * Returns 0 or -ENOMEM. */
static int
print_timeline(FILE *out, struct report *rp)
{
        struct text_table t = { .cols = 6, .align = "lllrll" };
        char b[6][SHOWN_MAX];
        const cJSON *e;
        int r;

        fprintf(out, "Source: %s\n", shown(rp->source, b[0]));
        tt_add(&t, "TIME");
        tt_add(&t, "RUN");
        tt_add(&t, "CALL");
        tt_add(&t, "OP");
        tt_add(&t, "TOOL");
        tt_add(&t, "DETAIL");
        cJSON_ArrayForEach(e, rp->timeline)
        {
                const char *run = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "run"));
                const char *tool = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "tool"));
                const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "op"));
                const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "reason"));
                const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "status"));
                const char *secret = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "secret"));
                const char *sop = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "operation"));
                const cJSON *call = cJSON_GetObjectItemCaseSensitive(e, "call");
                const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(e, "bytes");
                const cJSON *ms = cJSON_GetObjectItemCaseSensitive(e, "duration_ms");
                bool ok = strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "result")),
                                 "success") == 0;

                tt_add(&t, "%s", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "time")));
                tt_add(&t, "%s", run ? shown(run, b[1]) : "-");
                if (cJSON_IsNumber(call))
                        tt_add(&t, "%.0f", call->valuedouble);
                else
                        tt_add(&t, "-");
                tt_add(&t, "%s", op);
                tt_add(&t, "%s", tool ? shown(tool, b[2]) : "-");
                if (secret)
                        tt_add(&t, "%s %s (%s)%s%s", ok ? "used" : "refused", shown(secret, b[3]),
                               sop ? shown(sop, b[4]) : "?", reason ? ": " : "",
                               reason ? shown(reason, b[5]) : "");
                else if (status)
                        tt_add(&t, "%s, %.0f bytes, %.0f ms", shown(status, b[3]),
                               cJSON_IsNumber(bytes) ? bytes->valuedouble : 0,
                               cJSON_IsNumber(ms) ? ms->valuedouble : 0);
                else if (reason)
                        tt_add(&t, "%s: %s", ok ? "allowed" : "denied", shown(reason, b[3]));
                else
                        tt_add(&t, "%s", ok ? "allowed" : "failed");
        }
        r = tt_print(out, &t);
        tt_done(&t);
        if (r < 0)
                return r;
        fprintf(out, "%d call records", cJSON_GetArraySize(rp->timeline));
        if (rp->timeline_dropped)
                fprintf(out, " (%llu more not shown: at most %d)", (unsigned long long)rp->timeline_dropped,
                        REPORT_TIMELINE_MAX);
        fputc('\n', out);
        return 0;
}

/* --calls as JSON: {"source", "calls": [...], "dropped"}. Returns a new object or NULL. */
static cJSON *
build_timeline_json(struct report *rp)
{
        cJSON *doc = cJSON_CreateObject();

        if (!doc || !cJSON_AddStringToObject(doc, "source", rp->source) ||
            !cJSON_AddItemToObject(doc, "calls", rp->timeline ? rp->timeline : cJSON_CreateArray()) ||
            !cJSON_AddNumberToObject(doc, "dropped", (double)rp->timeline_dropped)) {
                cJSON_Delete(doc);
                return NULL;
        }
        rp->timeline = NULL; /* now the document's */
        return doc;
}

/* ------------------------------------------------------------------------------------------ */

int
ab_audit_report(FILE *out, const char *log_file, const struct ab_report_filter *f, enum ab_report_format fmt)
{
        struct report *rp;
        int r;

        if (!out || (fmt != AB_REPORT_TEXT && fmt != AB_REPORT_JSON))
                return -EINVAL;
        rp = calloc(1, sizeof(*rp));
        if (!rp)
                return -ENOMEM;
        rp->f = f;
        rp->runs = (struct table){ .elem = sizeof(struct run_stats), .max = REPORT_RUNS_MAX };
        rp->tools = (struct table){ .elem = sizeof(struct tool_stats), .max = REPORT_TOOLS_MAX };

        r = report_read(rp, log_file);
        if (r < 0)
                goto out;
        report_sort(rp);

        if (fmt == AB_REPORT_JSON) {
                cJSON *doc = f && f->calls ? build_timeline_json(rp) : build_json(rp);
                char *s = doc ? cJSON_Print(doc) : NULL;
                cJSON_Delete(doc);
                if (!s) {
                        r = -ENOMEM;
                        goto out;
                }
                fputs(s, out);
                fputc('\n', out);
                free(s);
        } else
                r = f && f->calls ? print_timeline(out, rp) : print_text(out, rp);
        if (r >= 0 && (fflush(out) != 0 || ferror(out)))
                r = -EIO;
out:
        report_done(rp);
        free(rp);
        return r;
}
