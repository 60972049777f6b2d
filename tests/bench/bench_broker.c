/* SPDX-License-Identifier: MIT */
/* bench_broker: measures agentbrokerd over its real socket and, in the same run, the floor
 * its call cycles cannot beat.
 *
 *  - cycles: full call cycles (call-begin, secret-sign with hmac-sha256, call-end: three
 *    round trips, each writing its audit record and journal entry in the broker), once
 *    sequentially on one connection (unpinned, and with the bench and the broker pinned to
 *    one CPU and to two different CPUs) and once with N concurrent clients (one thread and
 *    one connection and run each);
 *  - floor: the same count of bare SOCK_SEQPACKET round trips to a forked echo process
 *    (unpinned, same CPU, across CPUs), raw audit_log_user_message(AUDIT_TRUSTED_APP) calls
 *    and raw sd_journal_send() calls. Floor of one cycle = 3 round trips + 3 audit records +
 *    3 journal entries;
 *  - tokens: the in-process token table, ab_tokens_issue + ab_tokens_lookup + ab_tokens_revoke.
 *
 * Every reply is checked ("ok": true, a well-formed token, the same HMAC every time, the
 * run's call count at run-close): a benchmark that measured errors would be worse than none,
 * so any failure stops it with a message and exit status 1. The report is aligned text
 * followed by one JSON line. tests/bench/run-bench.sh sets up a broker and runs this. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <cjson/cJSON.h>
#include <libaudit.h>
#include <openssl/crypto.h>
#include <systemd/sd-journal.h>

#include "broker/tokens.h"
#include "common/client.h"
#include "common/macros.h"

#define CALL_TIMEOUT_MS 10000
/* SHA-256 of the two bytes "{}": the arguments of every benchmark call. */
#define ARGS_SHA256 "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#define SIGN_DATA_B64 "aGVsbG8=" /* "hello" */
#define HMAC_B64_LEN 44          /* base64 of 32 bytes */
/* Bare round trips carry messages about as large as the cycle's (requests 130-190 bytes,
 * replies 40-200 bytes). */
#define FLOOR_REQ_BYTES 160
#define FLOOR_REPLY_BYTES 110
#define FLOOR_WARMUP 1000
#define OPS_PER_CYCLE 3

/* Targets from the issue. */
#define TARGET_SEQ_RATIO 1.5           /* sequential cycle <= 1.5 x the same-run floor */
#define TARGET_CONCURRENT_RATE 10000.0 /* cycles/s with 16 clients */
#define TARGET_TOKEN_RATE 500000.0     /* token mint+verify per second, in-process */

enum {
        MODE_CYCLES = 1 << 0,
        MODE_FLOOR = 1 << 1,
        MODE_TOKENS = 1 << 2,
        MODE_ALL = MODE_CYCLES | MODE_FLOOR | MODE_TOKENS,
};

struct opts {
        const char *socket;
        const char *secret, *tool;
        const char *expect_sig;        /* base64 HMAC the broker must return, or NULL */
        unsigned long cycles;          /* sequential cycles per placement */
        unsigned long parallel_cycles; /* cycles over all concurrent clients */
        unsigned long floor_ops;       /* operations per floor measurement (0: 3 x cycles) */
        unsigned long token_iters;
        unsigned long warmup; /* untimed cycles before each timed phase */
        unsigned clients;
        unsigned mode;
        bool pin;           /* also measure with pinned CPUs */
        bool check_targets; /* exit 3 when a target is missed */
};

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                          */

static _Noreturn void AB_PRINTF(1, 2) die(const char *fmt, ...)
{
        va_list ap;

        fflush(stdout);
        fputs("bench_broker: FAILED: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

static uint64_t
now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *
xcalloc(size_t n, size_t size)
{
        void *p = calloc(n ? n : 1, size);

        if (!p)
                die("out of memory");
        return p;
}

static int
cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/* Latency summary of n samples (ns), in microseconds. */
struct stats {
        unsigned long n;
        double mean, p50, p90, p99, p999, max;
};

/* Summarise n latencies in ns (sorts them in place). */
static struct stats
stats_of(uint64_t *ns, unsigned long n)
{
        struct stats s = { .n = n };
        long double sum = 0;

        if (n == 0)
                return s;
        qsort(ns, n, sizeof(*ns), cmp_u64);
        for (unsigned long i = 0; i < n; i++)
                sum += ns[i];
        s.mean = (double)(sum / n) / 1000.0;
        s.p50 = ns[(n - 1) * 50 / 100] / 1000.0;
        s.p90 = ns[(n - 1) * 90 / 100] / 1000.0;
        s.p99 = ns[(n - 1) * 99 / 100] / 1000.0;
        s.p999 = ns[(n - 1) * 999 / 1000] / 1000.0;
        s.max = ns[n - 1] / 1000.0;
        return s;
}

/* A JSON object {n, mean_us, p50_us, ...} for s; dies on OOM. */
static cJSON *
stats_json(const struct stats *s)
{
        cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddNumberToObject(o, "n", (double)s->n) ||
            !cJSON_AddNumberToObject(o, "mean_us", s->mean) ||
            !cJSON_AddNumberToObject(o, "p50_us", s->p50) || !cJSON_AddNumberToObject(o, "p90_us", s->p90) ||
            !cJSON_AddNumberToObject(o, "p99_us", s->p99) ||
            !cJSON_AddNumberToObject(o, "p999_us", s->p999) || !cJSON_AddNumberToObject(o, "max_us", s->max))
                die("out of memory");
        return o;
}

static void
json_add(cJSON *parent, const char *key, cJSON *item)
{
        if (!item || !cJSON_AddItemToObject(parent, key, item))
                die("out of memory");
}

static void
json_num(cJSON *parent, const char *key, double v)
{
        if (!cJSON_AddNumberToObject(parent, key, v))
                die("out of memory");
}

/* ------------------------------------------------------------------------------------ */
/* CPU placement                                                                          */

/* The first two CPUs this process may run on (cpu[1] = -1 when there is only one). */
static void
usable_cpus(int cpu[2])
{
        cpu_set_t set;
        int k = 0;

        cpu[0] = cpu[1] = -1;
        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                die("sched_getaffinity: %s", strerror(errno));
        for (int i = 0; i < CPU_SETSIZE && k < 2; i++)
                if (CPU_ISSET(i, &set))
                        cpu[k++] = i;
}

/* Pin pid (0 = the calling thread) to cpu, saving its previous mask in *saved. */
static int
pin(pid_t pid, int cpu, cpu_set_t *saved)
{
        cpu_set_t set;

        if (sched_getaffinity(pid, sizeof(*saved), saved) < 0)
                return -errno;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return sched_setaffinity(pid, sizeof(set), &set) < 0 ? -errno : 0;
}

static void
unpin(pid_t pid, const cpu_set_t *saved)
{
        if (sched_setaffinity(pid, sizeof(*saved), saved) < 0 && pid == 0)
                die("cannot restore the CPU affinity: %s", strerror(errno));
}

/* ------------------------------------------------------------------------------------ */
/* CPU accounting of the processes involved: where a phase's CPU time went                */

enum {
        P_BROKER,
        P_JOURNALD,
        P_AUDITD,
        P_KAUDITD,
        P_SELF,
        P_OTHER,
        P__MAX
};
static const char *const proc_names[P__MAX] = {
        "broker", "journald", "auditd", "kauditd", "bench", "other"
};
#define PIDS_MAX 8
/* The processes of each kind (more than one journald may run; all are counted). P_OTHER is
 * everything else: all busy CPU time of the machine minus the processes above. */
static pid_t procs[P__MAX][PIDS_MAX];

/* utime + stime of pid in clock ticks, or -1 when it cannot be read. */
static long long
proc_ticks(pid_t pid)
{
        char path[64], buf[1024], *p;
        unsigned long long ut, st;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return -1;
        return (long long)(ut + st);
}

/* Busy (not idle, not iowait) clock ticks of all CPUs together, from /proc/stat; -1 on error. */
static long long
machine_busy_ticks(void)
{
        unsigned long long v[8] = { 0 };
        FILE *f = fopen("/proc/stat", "re");
        int n;

        if (!f)
                return -1;
        n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
        fclose(f);
        if (n != 8)
                return -1;
        /* user nice system [idle iowait] irq softirq steal */
        return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

/* Fill pids (PIDS_MAX) with the processes whose comm is name. */
static void
find_processes(const char *name, pid_t pids[PIDS_MAX])
{
        DIR *d = opendir("/proc");
        struct dirent *de;
        int k = 0;

        if (!d)
                return;
        while ((de = readdir(d)) && k < PIDS_MAX) {
                char path[300], comm[64] = "";
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                FILE *f;

                if (*end || pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
                f = fopen(path, "re");
                if (!f)
                        continue;
                if (fgets(comm, sizeof(comm), f))
                        comm[strcspn(comm, "\n")] = '\0';
                fclose(f);
                if (strcmp(comm, name) == 0)
                        pids[k++] = (pid_t)pid;
        }
        closedir(d);
}

struct cpu_snap {
        long long ticks[P__MAX]; /* -1 = not known */
        uint64_t t_ns;
};

static struct cpu_snap
cpu_snap(void)
{
        struct cpu_snap s = { .t_ns = now_ns() };
        long long busy = machine_busy_ticks(), known = 0;

        for (int i = 0; i < P__MAX; i++) {
                s.ticks[i] = -1;
                for (int j = 0; j < PIDS_MAX && procs[i][j]; j++) {
                        long long t = proc_ticks(procs[i][j]);
                        if (t >= 0)
                                s.ticks[i] = (s.ticks[i] < 0 ? 0 : s.ticks[i]) + t;
                }
                if (s.ticks[i] > 0)
                        known += s.ticks[i];
        }
        s.ticks[P_OTHER] = busy < 0 ? -1 : busy - known;
        return s;
}

/* Print and record the CPU time each process spent between a and b, per unit of work. */
static void
cpu_report(const struct cpu_snap *a, const struct cpu_snap *b, unsigned long units, const char *unit,
           cJSON *parent)
{
        long hz = sysconf(_SC_CLK_TCK);
        double wall_s = (double)(b->t_ns - a->t_ns) / 1e9;
        cJSON *o = cJSON_CreateObject();

        if (!o)
                die("out of memory");
        printf("      cpu per %s:", unit);
        for (int i = 0; i < P__MAX; i++) {
                double us;
                if (a->ticks[i] < 0 || b->ticks[i] < 0)
                        continue;
                us = (double)(b->ticks[i] - a->ticks[i]) / (double)hz * 1e6 / (double)units;
                if (us < 0)
                        us = 0; /* "other" is a difference of two tick counts: noise */
                printf(" %s %.1f us", proc_names[i], us);
                json_num(o, proc_names[i], us);
        }
        printf("  (%.2f s wall, %.0f ms ticks)\n", wall_s, 1000.0 / (double)hz);
        json_add(parent, "cpu_us_per_unit", o);
}

/* The kernel's count of lost audit records, or -1 when it cannot be read. */
static long long
audit_lost(void)
{
        struct audit_reply rep;
        long long lost = -1;
        int fd = audit_open();

        if (fd < 0)
                return -1;
        if (audit_request_status(fd) > 0)
                for (int i = 0; i < 8; i++) {
                        if (audit_get_reply(fd, &rep, GET_REPLY_BLOCKING, 0) <= 0)
                                break;
                        if (rep.type == AUDIT_GET && rep.status) {
                                lost = rep.status->lost;
                                break;
                        }
                }
        audit_close(fd);
        return lost;
}

/* ------------------------------------------------------------------------------------ */
/* Broker connection and one call cycle                                                   */

struct conn {
        const struct opts *o;
        struct ab_client *c;
        char run[33];
        unsigned long calls;        /* call-begins made in the run */
        char sig[HMAC_B64_LEN + 1]; /* the HMAC every secret-sign must return */
};

/* Calls begun (and so tool-call-begin records written) over all closed runs. */
static atomic_ulong calls_begun;

static cJSON *
new_req(struct conn *k, const char *op)
{
        cJSON *req = ab_client_request(k->c, op);

        if (!req)
                die("out of memory");
        return req;
}

static void
add_str(cJSON *req, const char *key, const char *v)
{
        if (!cJSON_AddStringToObject(req, key, v))
                die("out of memory");
}

static void
add_num(cJSON *req, const char *key, double v)
{
        if (!cJSON_AddNumberToObject(req, key, v))
                die("out of memory");
}

static const char *
reply_str(const cJSON *reply, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(reply, key);

        return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Send req (consumed), wait for the reply and stop the benchmark unless it has "ok": true.
 * Returns the reply, which the caller frees. */
static cJSON *
call_ok(struct conn *k, cJSON *req, const char *op)
{
        cJSON *reply = NULL;
        int r = ab_client_call(k->c, req, CALL_TIMEOUT_MS, &reply);

        cJSON_Delete(req);
        if (r < 0)
                die("%s: no reply from the broker on %s: %s", op, k->o->socket, strerror(-r));
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                const char *e = reply_str(reply, "error"), *why = reply_str(reply, "reason"),
                           *msg = reply_str(reply, "message");
                die("%s was refused: error %s, reason %s: %s", op, e ? e : "?", why ? why : "-",
                    msg ? msg : "-");
        }
        return reply;
}

/* Connect, check the broker is usable for the benchmark (status), open a run. */
static void
conn_open(struct conn *k, const struct opts *o, const char *label)
{
        cJSON *reply;
        const char *run;
        int r;

        memset(k, 0, sizeof(*k));
        k->o = o;
        if (o->expect_sig)
                memcpy(k->sig, o->expect_sig, sizeof(k->sig));
        r = ab_client_connect(o->socket, &k->c);
        if (r < 0)
                die("cannot connect to %s: %s (is agentbrokerd running there?)", o->socket, strerror(-r));
        cJSON *req = new_req(k, "run-open");
        add_str(req, "label", label);
        reply = call_ok(k, req, "run-open");
        run = reply_str(reply, "run");
        if (!run || strlen(run) != 32)
                die("run-open: the reply has no 32-character run id");
        memcpy(k->run, run, sizeof(k->run));
        cJSON_Delete(reply);
}

/* Close the run, checking the broker counted exactly the calls we began; disconnect. */
static void
conn_close(struct conn *k)
{
        cJSON *req = new_req(k, "run-close"), *reply;
        const cJSON *calls;

        add_str(req, "run", k->run);
        reply = call_ok(k, req, "run-close");
        calls = cJSON_GetObjectItemCaseSensitive(reply, "calls");
        if (!cJSON_IsNumber(calls) || calls->valuedouble != (double)k->calls)
                die("run-close: the broker counted %g calls in run %s, the benchmark began %lu",
                    cJSON_IsNumber(calls) ? calls->valuedouble : -1.0, k->run, k->calls);
        atomic_fetch_add(&calls_begun, k->calls);
        cJSON_Delete(reply);
        ab_client_free(k->c);
        k->c = NULL;
}

/* One full call cycle: call-begin, secret-sign with the returned token, call-end.
 * Writes the latency of each step (ns) to lat[0..2]. */
static void
cycle(struct conn *k, uint64_t lat[OPS_PER_CYCLE])
{
        const struct opts *o = k->o;
        char token[AB_TOKEN_LEN + 1];
        const char *s;
        cJSON *req, *reply;
        uint64_t t0, t1, t2, t3;

        t0 = now_ns();
        req = new_req(k, "call-begin");
        add_str(req, "run", k->run);
        add_str(req, "tool", o->tool);
        add_str(req, "args_sha256", ARGS_SHA256);
        add_num(req, "args_len", 2);
        reply = call_ok(k, req, "call-begin");
        k->calls++;
        s = reply_str(reply, "token");
        if (!s || strlen(s) != AB_TOKEN_LEN || strncmp(s, AB_TOKEN_PREFIX, strlen(AB_TOKEN_PREFIX)) != 0)
                die("call-begin: the reply has no well-formed token");
        memcpy(token, s, sizeof(token));
        cJSON_Delete(reply);
        t1 = now_ns();

        req = new_req(k, "secret-sign");
        add_str(req, "token", token);
        add_str(req, "tool", o->tool);
        add_str(req, "secret", o->secret);
        add_str(req, "alg", "hmac-sha256");
        add_str(req, "data", SIGN_DATA_B64);
        reply = call_ok(k, req, "secret-sign");
        s = reply_str(reply, "signature");
        if (!s || strlen(s) != HMAC_B64_LEN)
                die("secret-sign: the reply has no %d-character signature", HMAC_B64_LEN);
        if (!k->sig[0])
                memcpy(k->sig, s, sizeof(k->sig));
        if (strcmp(s, k->sig) != 0)
                die("secret-sign returned HMAC %s, expected %s%s", s, k->sig,
                    o->expect_sig ? " (--expect-signature)" : " (as on this connection's first call)");
        cJSON_Delete(reply);
        t2 = now_ns();

        req = new_req(k, "call-end");
        add_str(req, "token", token);
        add_str(req, "status", "ok");
        add_num(req, "result_bytes", HMAC_B64_LEN);
        add_num(req, "duration_ms", (double)((t2 - t0) / 1000000));
        cJSON_Delete(call_ok(k, req, "call-end"));
        t3 = now_ns();
        explicit_bzero(token, sizeof(token));

        lat[0] = t1 - t0;
        lat[1] = t2 - t1;
        lat[2] = t3 - t2;
}

/* Ask the broker for its status; check audit is on and the secret is loaded. Returns its pid. */
static pid_t
broker_check(const struct opts *o)
{
        struct conn k = { .o = o };
        const cJSON *secrets, *item, *pid;
        const char *audit;
        cJSON *reply;
        bool found = false;
        int r;

        r = ab_client_connect(o->socket, &k.c);
        if (r < 0)
                die("cannot connect to %s: %s (is agentbrokerd running there?)", o->socket, strerror(-r));
        reply = call_ok(&k, new_req(&k, "status"), "status");
        pid = cJSON_GetObjectItemCaseSensitive(reply, "pid");
        audit = reply_str(reply, "audit");
        if (!cJSON_IsNumber(pid) || pid->valuedouble < 1)
                die("status: the reply has no pid");
        if (!audit || strcmp(audit, "enabled") != 0)
                die("status: the broker reports audit \"%s\": start auditd (scripts/start-services) so the "
                    "cycles include their audit records",
                    audit ? audit : "?");
        secrets = cJSON_GetObjectItemCaseSensitive(reply, "secrets");
        cJSON_ArrayForEach(item, secrets)
        {
                const char *name = reply_str(item, "name");
                if (name && strcmp(name, o->secret) == 0) {
                        found = true;
                        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "available")))
                                die("status: secret %s is not available in the broker (see its log)",
                                    o->secret);
                }
        }
        if (!found)
                die("status: the broker's policy has no secret %s", o->secret);
        r = (int)pid->valuedouble;
        cJSON_Delete(reply);
        ab_client_free(k.c);
        return (pid_t)r;
}

/* ------------------------------------------------------------------------------------ */
/* Output                                                                                 */

static void
section(const char *title, const char *cols)
{
        printf("\n%-46s %s\n", title, cols);
}

/* One latency row: mean, p50, p99 in us. */
static void
lat_row(const char *label, const struct stats *s)
{
        printf("  %-44s %9.2f us %9.2f us %9.2f us\n", label, s->mean, s->p50, s->p99);
}

struct target {
        const char *key, *label, *unit;
        double value, target;
        bool at_most; /* value must be <= target (else >=) */
        bool measured;
};

static void
target_print(const struct target *t, cJSON *targets, bool *all_ok)
{
        double ratio;
        bool ok;
        cJSON *o;

        if (!t->measured) {
                printf("  %-44s %12s %-10s target %s %-12g %s\n", t->label, "-", t->unit,
                       t->at_most ? "<=" : ">=", t->target, "not measured in this mode");
                return;
        }
        ratio = t->value / t->target;
        ok = t->at_most ? ratio <= 1.0 : ratio >= 1.0;
        *all_ok = *all_ok && ok;
        printf("  %-44s %12.2f %-10s target %s %-12g ratio %.2f  %s\n", t->label, t->value, t->unit,
               t->at_most ? "<=" : ">=", t->target, ratio, ok ? "PASS" : "MISS");
        o = cJSON_CreateObject();
        if (!o)
                die("out of memory");
        json_num(o, "value", t->value);
        json_num(o, "target", t->target);
        if (!cJSON_AddStringToObject(o, "cmp", t->at_most ? "<=" : ">=") ||
            !cJSON_AddStringToObject(o, "unit", t->unit) || !cJSON_AddBoolToObject(o, "pass", ok))
                die("out of memory");
        json_num(o, "ratio", ratio);
        json_add(targets, t->key, o);
}

/* ------------------------------------------------------------------------------------ */
/* Floor: bare round trips, raw audit records, raw journal entries                        */

/* Echo: answer every message with FLOOR_REPLY_BYTES until the peer hangs up. */
static _Noreturn void
echo_server(int fd)
{
        char buf[4096], reply[FLOOR_REPLY_BYTES];

        memset(reply, 'r', sizeof(reply));
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        _exit(n == 0 ? 0 : 1);
                if (send(fd, reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply))
                        _exit(1);
        }
}

/* n bare SOCK_SEQPACKET round trips to a forked echo process; cpu_self/cpu_echo pin the two
 * sides (-1 = leave unpinned). Returns the latencies' summary. */
static struct stats
floor_socket(unsigned long n, int cpu_self, int cpu_echo)
{
        char req[FLOOR_REQ_BYTES], buf[4096];
        uint64_t *lat = xcalloc(n, sizeof(*lat));
        cpu_set_t saved;
        struct stats s;
        int sv[2], status;
        pid_t pid;

        memset(req, 'q', sizeof(req));
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair: %s", strerror(errno));
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                die("fork: %s", strerror(errno));
        if (pid == 0) {
                close(sv[0]);
                echo_server(sv[1]);
        }
        close(sv[1]);
        if (cpu_echo >= 0 && pin(pid, cpu_echo, &saved) < 0)
                die("cannot pin the echo process to CPU %d: %s", cpu_echo, strerror(errno));
        if (cpu_self >= 0 && pin(0, cpu_self, &saved) < 0)
                die("cannot pin the benchmark to CPU %d: %s", cpu_self, strerror(errno));
        for (unsigned long i = 0; i < n + FLOOR_WARMUP; i++) {
                uint64_t t0 = now_ns();
                ssize_t r;
                if (send(sv[0], req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req))
                        die("floor: send to the echo process: %s", strerror(errno));
                do
                        r = recv(sv[0], buf, sizeof(buf), 0);
                while (r < 0 && errno == EINTR);
                if (r != FLOOR_REPLY_BYTES)
                        die("floor: the echo process answered %zd bytes (%s)", r,
                            r < 0 ? strerror(errno) : "");
                if (i >= FLOOR_WARMUP)
                        lat[i - FLOOR_WARMUP] = now_ns() - t0;
        }
        if (cpu_self >= 0)
                unpin(0, &saved);
        close(sv[0]);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                die("floor: the echo process failed");
        s = stats_of(lat, n);
        free(lat);
        return s;
}

/* A made-up run id and a record of the size of the broker's tool-call-begin record. */
static void
floor_record(char *buf, size_t size, unsigned long i)
{
        snprintf(buf, size,
                 "op=bench-floor run=0123456789abcdef0123456789abcdef call=%lu tool=\"bench.hmac\" "
                 "args_sha256=" ARGS_SHA256 " args_len=2 suid=0 spid=%d",
                 i, (int)getpid());
}

/* n raw audit_log_user_message(AUDIT_TRUSTED_APP) calls, with the broker's arguments
 * (no hostname, no address, tty "" so libaudit does no lookups). */
static struct stats
floor_audit(unsigned long n)
{
        uint64_t *lat = xcalloc(n, sizeof(*lat));
        char msg[512];
        struct stats s;
        int fd = audit_open();

        if (fd < 0)
                die("audit_open: %s", strerror(errno));
        for (unsigned long i = 0; i < n; i++) {
                uint64_t t0;
                int r;
                floor_record(msg, sizeof(msg), i);
                t0 = now_ns();
                errno = 0;
                r = audit_log_user_message(fd, AUDIT_TRUSTED_APP, msg, NULL, NULL, "", 1);
                lat[i] = now_ns() - t0;
                if (r <= 0)
                        die("audit_log_user_message: %s (auditd running, auditing enabled? see scripts/start-services)",
                            strerror(r < 0   ? -r
                                     : errno ? errno
                                             : EIO));
        }
        audit_close(fd);
        s = stats_of(lat, n);
        free(lat);
        return s;
}

/* n raw sd_journal_send() calls with as many fields as the broker's tool-call-begin entry. */
static struct stats
floor_journal(unsigned long n)
{
        uint64_t *lat = xcalloc(n, sizeof(*lat));
        struct stats s;
        int pid = (int)getpid();

        for (unsigned long i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                int r = sd_journal_send(
                        "MESSAGE_ID=5a1c6b0e3d2f4c8e9b7a6d5c4b3a2f10", "PRIORITY=6",
                        "MESSAGE=bench floor: tool call bench.hmac begun in run 0123456789abcdef0123456789abcdef, "
                        "call %lu (uid 0, pid %d)",
                        i, pid, "SYSLOG_IDENTIFIER=bench_broker", "BENCH_OP=tool-call-begin",
                        "BENCH_RESULT=success", "BENCH_PEER_UID=0", "BENCH_PEER_PID=%d", pid,
                        "BENCH_RUN=0123456789abcdef0123456789abcdef", "BENCH_CALL=%lu", i,
                        "BENCH_TOOL=bench.hmac", "BENCH_ARGS_SHA256=" ARGS_SHA256, "BENCH_ARGS_LEN=2", NULL);
                lat[i] = now_ns() - t0;
                if (r < 0)
                        die("sd_journal_send: %s (is journald running? see scripts/start-services)",
                            strerror(-r));
        }
        s = stats_of(lat, n);
        free(lat);
        return s;
}

/* Measure fn(n), print its row and the CPU each process spent per operation, record both
 * under key in parent. Returns the latencies' summary. */
static struct stats
floor_op(struct stats (*fn)(unsigned long), unsigned long n, const char *label, const char *unit,
         const char *key, cJSON *parent)
{
        struct cpu_snap a = cpu_snap(), b;
        struct stats s = fn(n);
        cJSON *j;

        b = cpu_snap();
        lat_row(label, &s);
        j = stats_json(&s);
        cpu_report(&a, &b, n, unit, j);
        json_add(parent, key, j);
        return s;
}

/* ------------------------------------------------------------------------------------ */
/* Cycles                                                                                 */

struct seq_result {
        bool done;
        struct stats cycle, op[OPS_PER_CYCLE];
        double rate; /* cycles/s */
};

/* cycles sequential cycles on one connection after a warm-up. cpu_self/cpu_broker pin the
 * benchmark thread and the broker (-1 = unpinned). */
static struct seq_result
run_sequential(const struct opts *o, const char *label, int cpu_self, int cpu_broker, cJSON *json)
{
        unsigned long n = o->cycles;
        uint64_t *lat = xcalloc(n, sizeof(*lat)), *op[OPS_PER_CYCLE];
        uint64_t l[OPS_PER_CYCLE], t0, t1;
        struct seq_result res = { .done = true };
        cpu_set_t saved_self, saved_broker;
        struct cpu_snap a, b;
        struct conn k;

        for (int j = 0; j < OPS_PER_CYCLE; j++)
                op[j] = xcalloc(n, sizeof(*op[j]));
        if (cpu_broker >= 0 && pin(procs[P_BROKER][0], cpu_broker, &saved_broker) < 0)
                die("cannot pin the broker (pid %d) to CPU %d: %s", (int)procs[P_BROKER][0], cpu_broker,
                    strerror(errno));
        if (cpu_self >= 0 && pin(0, cpu_self, &saved_self) < 0)
                die("cannot pin the benchmark to CPU %d: %s", cpu_self, strerror(errno));
        conn_open(&k, o, label);
        for (unsigned long i = 0; i < o->warmup; i++)
                cycle(&k, l);
        a = cpu_snap();
        t0 = now_ns();
        for (unsigned long i = 0; i < n; i++) {
                cycle(&k, l);
                lat[i] = l[0] + l[1] + l[2];
                for (int j = 0; j < OPS_PER_CYCLE; j++)
                        op[j][i] = l[j];
        }
        t1 = now_ns();
        b = cpu_snap();
        conn_close(&k);
        if (cpu_self >= 0)
                unpin(0, &saved_self);
        if (cpu_broker >= 0)
                unpin(procs[P_BROKER][0], &saved_broker);

        res.rate = (double)n / ((double)(t1 - t0) / 1e9);
        res.cycle = stats_of(lat, n);
        for (int j = 0; j < OPS_PER_CYCLE; j++)
                res.op[j] = stats_of(op[j], n);
        printf("  %-44s %9.0f /s  mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f us\n", label,
               res.rate, res.cycle.mean, res.cycle.p50, res.cycle.p90, res.cycle.p99, res.cycle.p999,
               res.cycle.max);
        printf("      per step p50/p99: call-begin %.2f/%.2f  secret-sign %.2f/%.2f  call-end %.2f/%.2f us\n",
               res.op[0].p50, res.op[0].p99, res.op[1].p50, res.op[1].p99, res.op[2].p50, res.op[2].p99);
        json_num(json, "cycles_per_s", res.rate);
        json_add(json, "cycle", stats_json(&res.cycle));
        json_add(json, "call_begin", stats_json(&res.op[0]));
        json_add(json, "secret_sign", stats_json(&res.op[1]));
        json_add(json, "call_end", stats_json(&res.op[2]));
        cpu_report(&a, &b, n, "cycle", json);
        free(lat);
        for (int j = 0; j < OPS_PER_CYCLE; j++)
                free(op[j]);
        return res;
}

struct worker {
        pthread_t thread;
        const struct opts *o;
        pthread_barrier_t *barrier;
        unsigned long n, index;
        uint64_t *lat; /* n cycle latencies */
};

static void *
worker_main(void *userdata)
{
        struct worker *w = userdata;
        uint64_t l[OPS_PER_CYCLE];
        char label[64];
        struct conn k;

        snprintf(label, sizeof(label), "bench concurrent client %lu", w->index);
        conn_open(&k, w->o, label);
        for (unsigned long i = 0; i < w->o->warmup / w->o->clients + 1; i++)
                cycle(&k, l);
        pthread_barrier_wait(w->barrier); /* start */
        for (unsigned long i = 0; i < w->n; i++) {
                cycle(&k, l);
                w->lat[i] = l[0] + l[1] + l[2];
        }
        pthread_barrier_wait(w->barrier); /* done */
        conn_close(&k);
        return NULL;
}

/* parallel_cycles cycles spread over clients threads, one connection and run each.
 * Returns cycles per second over the wall time from the common start to the last finish. */
static double
run_concurrent(const struct opts *o, cJSON *json)
{
        struct worker *w = xcalloc(o->clients, sizeof(*w));
        unsigned long total = 0, off = 0;
        pthread_barrier_t barrier;
        struct cpu_snap a, b;
        uint64_t *all, t0, t1;
        struct stats s;
        double rate;
        char label[64];

        if (pthread_barrier_init(&barrier, NULL, o->clients + 1) != 0)
                die("pthread_barrier_init failed");
        for (unsigned i = 0; i < o->clients; i++) {
                w[i].o = o;
                w[i].barrier = &barrier;
                w[i].index = i;
                w[i].n = o->parallel_cycles / o->clients + (i < o->parallel_cycles % o->clients);
                w[i].lat = xcalloc(w[i].n, sizeof(*w[i].lat));
                total += w[i].n;
                if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
                        die("pthread_create failed");
        }
        pthread_barrier_wait(&barrier);
        a = cpu_snap();
        t0 = now_ns();
        pthread_barrier_wait(&barrier);
        t1 = now_ns();
        b = cpu_snap();
        all = xcalloc(total, sizeof(*all));
        for (unsigned i = 0; i < o->clients; i++) {
                pthread_join(w[i].thread, NULL);
                memcpy(all + off, w[i].lat, w[i].n * sizeof(*all));
                off += w[i].n;
                free(w[i].lat);
        }
        pthread_barrier_destroy(&barrier);
        rate = (double)total / ((double)(t1 - t0) / 1e9);
        s = stats_of(all, total);
        snprintf(label, sizeof(label), "%u concurrent clients, %lu cycles", o->clients, total);
        printf("  %-44s %9.0f /s  mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f us\n", label,
               rate, s.mean, s.p50, s.p90, s.p99, s.p999, s.max);
        json_num(json, "clients", o->clients);
        json_num(json, "cycles_per_s", rate);
        json_add(json, "cycle", stats_json(&s));
        cpu_report(&a, &b, total, "cycle", json);
        free(all);
        free(w);
        return rate;
}

/* ------------------------------------------------------------------------------------ */
/* Tokens                                                                                 */

/* iters x (alloc + ab_tokens_issue + ab_tokens_lookup + ab_tokens_revoke) in-process.
 * Returns the rate per second. */
static double
run_tokens(const struct opts *o, cJSON *json)
{
        struct ab_token_table *t = NULL;
        char token[AB_TOKEN_LEN + 1];
        uint64_t t0, t1;
        double rate;
        int r;

        r = ab_tokens_new(AB_TOKENS_MAX_DEFAULT, &t);
        if (r < 0)
                die("ab_tokens_new: %s", strerror(-r));
        t0 = now_ns();
        for (unsigned long i = 0; i < o->token_iters; i++) {
                struct ab_token *tok = ab_token_alloc(), *found = NULL;
                uint64_t now = ab_now_ms();

                if (!tok)
                        die("out of memory");
                tok->call = i;
                tok->issued_ms = now;
                tok->expires_ms = now + 30000;
                r = ab_tokens_issue(t, tok, token);
                if (r < 0)
                        die("ab_tokens_issue: %s", strerror(-r));
                r = ab_tokens_lookup(t, token, ab_now_ms(), &found);
                if (r < 0 || found != tok)
                        die("ab_tokens_lookup did not find the token just issued (%s)",
                            r < 0 ? strerror(-r) : "other token");
                ab_tokens_revoke(t, tok, AB_TOKEN_ENDED);
        }
        t1 = now_ns();
        /* The last token must now be known as revoked, not forged. */
        r = ab_tokens_lookup(t, token, ab_now_ms(), &(struct ab_token *){ NULL });
        if (o->token_iters > 0 && r != -ESTALE)
                die("ab_tokens_lookup of a revoked token returned %d, expected -ESTALE", r);
        OPENSSL_cleanse(token, sizeof(token));
        ab_tokens_free(t);
        rate = (double)o->token_iters / ((double)(t1 - t0) / 1e9);
        printf("  %-44s %9.0f /s  (%.3f us each, %lu iterations)\n", "issue + lookup + revoke", rate,
               1e6 / rate, o->token_iters);
        json_num(json, "per_s", rate);
        json_num(json, "iterations", (double)o->token_iters);
        return rate;
}

/* ------------------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
        fprintf(f,
                "Usage: bench_broker [OPTIONS]\n"
                "Benchmark agentbrokerd over its socket against the same-run floor.\n\n"
                "  -s, --socket PATH          broker socket (default %s)\n"
                "  -n, --cycles N             sequential cycles per placement (default 20000)\n"
                "  -P, --parallel-cycles N    cycles over all concurrent clients (default 100000)\n"
                "  -c, --clients N            concurrent clients (default 16)\n"
                "  -F, --floor-ops N          operations per floor measurement (default 3 x cycles)\n"
                "  -T, --token-iters N        in-process token iterations (default 1000000)\n"
                "  -w, --warmup N             untimed cycles before each phase (default 500)\n"
                "  -S, --secret NAME          bytes secret to sign with (default bench_key)\n"
                "  -t, --tool NAME            tool to call (default bench.hmac)\n"
                "  -e, --expect-signature B64 the HMAC-SHA256 of \"hello\" the broker must return\n"
                "  -m, --mode MODE            cycles|floor|tokens|all (default all)\n"
                "      --no-pin               skip the pinned (same CPU / across CPUs) measurements\n"
                "      --check-targets        exit with status 3 when a target is missed\n"
                "  -h, --help                 show this help\n",
                AB_DEFAULT_SOCKET);
}

static unsigned long
parse_count(const char *s, const char *what, unsigned long min)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > 100000000UL) {
                fprintf(stderr, "bench_broker: invalid %s '%s'\n", what, s);
                exit(2);
        }
        return v;
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
        enum {
                OPT_NO_PIN = 256,
                OPT_CHECK
        };
        static const struct option lo[] = { { "socket", required_argument, NULL, 's' },
                                            { "cycles", required_argument, NULL, 'n' },
                                            { "parallel-cycles", required_argument, NULL, 'P' },
                                            { "clients", required_argument, NULL, 'c' },
                                            { "floor-ops", required_argument, NULL, 'F' },
                                            { "token-iters", required_argument, NULL, 'T' },
                                            { "warmup", required_argument, NULL, 'w' },
                                            { "secret", required_argument, NULL, 'S' },
                                            { "tool", required_argument, NULL, 't' },
                                            { "expect-signature", required_argument, NULL, 'e' },
                                            { "mode", required_argument, NULL, 'm' },
                                            { "no-pin", no_argument, NULL, OPT_NO_PIN },
                                            { "check-targets", no_argument, NULL, OPT_CHECK },
                                            { "help", no_argument, NULL, 'h' },
                                            {} };
        int c;

        while ((c = getopt_long(argc, argv, "s:n:P:c:F:T:w:S:t:e:m:h", lo, NULL)) != -1) {
                switch (c) {
                case 's': o->socket = optarg; break;
                case 'n': o->cycles = parse_count(optarg, "cycle count", 1); break;
                case 'P': o->parallel_cycles = parse_count(optarg, "parallel cycle count", 1); break;
                case 'c': o->clients = (unsigned)parse_count(optarg, "client count", 1); break;
                case 'F': o->floor_ops = parse_count(optarg, "floor operation count", 1); break;
                case 'T': o->token_iters = parse_count(optarg, "token iteration count", 1); break;
                case 'w': o->warmup = parse_count(optarg, "warm-up count", 0); break;
                case 'S': o->secret = optarg; break;
                case 't': o->tool = optarg; break;
                case 'e': o->expect_sig = optarg; break;
                case 'm':
                        if (strcmp(optarg, "cycles") == 0)
                                o->mode = MODE_CYCLES;
                        else if (strcmp(optarg, "floor") == 0)
                                o->mode = MODE_FLOOR;
                        else if (strcmp(optarg, "tokens") == 0)
                                o->mode = MODE_TOKENS;
                        else if (strcmp(optarg, "all") == 0)
                                o->mode = MODE_ALL;
                        else {
                                fprintf(stderr,
                                        "bench_broker: unknown mode '%s' (cycles|floor|tokens|all)\n",
                                        optarg);
                                exit(2);
                        }
                        break;
                case OPT_NO_PIN: o->pin = false; break;
                case OPT_CHECK: o->check_targets = true; break;
                case 'h': usage(stdout); exit(0);
                default: usage(stderr); exit(2);
                }
        }
        if (optind < argc) {
                fprintf(stderr, "bench_broker: unexpected argument '%s'\n", argv[optind]);
                exit(2);
        }
        if (o->clients > 1024) {
                fprintf(stderr, "bench_broker: at most 1024 clients (the broker's connection limit)\n");
                exit(2);
        }
        if (o->expect_sig && strlen(o->expect_sig) != HMAC_B64_LEN) {
                fprintf(stderr, "bench_broker: --expect-signature must be %d base64 characters\n",
                        HMAC_B64_LEN);
                exit(2);
        }
        if (!o->floor_ops)
                o->floor_ops = OPS_PER_CYCLE * o->cycles;
}

/* Which placements to measure: unpinned always; same CPU and across CPUs when pinning. */
enum {
        PL_FREE,
        PL_SAME,
        PL_ACROSS,
        PL__MAX
};
static const char *const pl_names[PL__MAX] = { "unpinned", "same CPU", "across CPUs" };
static const char *const pl_keys[PL__MAX] = { "unpinned", "same_cpu", "across_cpus" };

int
main(int argc, char **argv)
{
        struct opts o = {
                .socket = AB_DEFAULT_SOCKET,
                .secret = "bench_key",
                .tool = "bench.hmac",
                .cycles = 20000,
                .parallel_cycles = 100000,
                .clients = 16,
                .token_iters = 1000000,
                .warmup = 500,
                .mode = MODE_ALL,
                .pin = true,
        };
        struct stats rtt[PL__MAX] = { 0 }, aud = { 0 }, jnl = { 0 };
        struct seq_result seq[PL__MAX] = { 0 };
        double floor_cycle[PL__MAX] = { 0 }, conc_rate = 0, tok_rate = 0;
        bool have_pl[PL__MAX] = { true, false, false }, all_ok = true;
        cJSON *json, *floor_j = NULL, *seq_j = NULL, *targets;
        long long lost0 = -1, lost1 = -1;
        struct cpu_snap run0, run1;
        int cpu[2];
        char buf[160];

        parse_args(argc, argv, &o);
        setvbuf(stdout, NULL, _IOLBF, 0);
        usable_cpus(cpu);
        if (o.pin) {
                have_pl[PL_SAME] = true;
                have_pl[PL_ACROSS] = cpu[1] >= 0;
        }
        json = cJSON_CreateObject();
        targets = cJSON_CreateObject();
        if (!json || !targets || !cJSON_AddStringToObject(json, "bench", "agentbroker") ||
            !cJSON_AddStringToObject(json, "version", PACKAGE_VERSION))
                die("out of memory");

        procs[P_SELF][0] = getpid();
        find_processes("systemd-journal", procs[P_JOURNALD]);
        find_processes("auditd", procs[P_AUDITD]);
        find_processes("kauditd", procs[P_KAUDITD]);
        if (o.mode & MODE_CYCLES)
                procs[P_BROKER][0] = broker_check(&o);
        if ((o.mode & (MODE_CYCLES | MODE_FLOOR)) && (!procs[P_JOURNALD][0] || !procs[P_AUDITD][0]))
                die("journald (%s) and auditd (%s) must be running: see scripts/start-services",
                    procs[P_JOURNALD][0] ? "running" : "not found",
                    procs[P_AUDITD][0] ? "running" : "not found");

        printf("agentbroker benchmark %s: %ld CPUs online", PACKAGE_VERSION, sysconf(_SC_NPROCESSORS_ONLN));
        if (procs[P_BROKER][0])
                printf("; agentbrokerd pid %d on %s", (int)procs[P_BROKER][0], o.socket);
        printf("; auditd pid %d; journald pid", (int)procs[P_AUDITD][0]);
        for (int j = 0; j < PIDS_MAX && procs[P_JOURNALD][j]; j++)
                printf("%s %d", j ? "," : "", (int)procs[P_JOURNALD][j]);
        if (procs[P_JOURNALD][1])
                printf(" (WARNING: more than one journald runs)");
        {
                double load[3];
                if (getloadavg(load, 3) == 3)
                        printf("; load average %.2f %.2f %.2f", load[0], load[1], load[2]);
        }
        printf("\n");
        if (o.mode & MODE_CYCLES)
                printf("cycle = call-begin + secret-sign (%s, hmac-sha256) + call-end of tool %s: 3 round trips,\n"
                       "        3 audit records (tool-call-begin, secret-use, tool-call-end), 3 journal entries\n"
                       "sequential: %lu cycles per placement (+%lu warm-up); concurrent: %lu cycles over %u clients\n",
                       o.secret, o.tool, o.cycles, o.warmup, o.parallel_cycles, o.clients);
        if (o.mode & MODE_FLOOR)
                printf("floor: %lu of each operation; floor of a cycle = 3 round trips + 3 audit records + 3 journal entries\n",
                       o.floor_ops);
        if (o.pin && cpu[1] < 0)
                printf("(only one CPU usable: no across-CPU measurements)\n");
        json_num(json, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));
        lost0 = audit_lost();
        run0 = cpu_snap();

        if (o.mode & MODE_FLOOR) {
                floor_j = cJSON_CreateObject();
                if (!floor_j)
                        die("out of memory");
                json_num(floor_j, "ops", (double)o.floor_ops);
                section("Floor (same run)", "     mean         p50         p99");
                for (int p = 0; p < PL__MAX; p++) {
                        if (!have_pl[p])
                                continue;
                        rtt[p] = floor_socket(o.floor_ops, p == PL_FREE ? -1 : cpu[0],
                                              p == PL_FREE   ? -1
                                              : p == PL_SAME ? cpu[0]
                                                             : cpu[1]);
                        snprintf(buf, sizeof(buf), "socket round trip, %s", pl_names[p]);
                        lat_row(buf, &rtt[p]);
                        snprintf(buf, sizeof(buf), "socket_rtt_%s", pl_keys[p]);
                        json_add(floor_j, buf, stats_json(&rtt[p]));
                }
                aud = floor_op(floor_audit, o.floor_ops, "audit_log_user_message (AUDIT_TRUSTED_APP)",
                               "record", "audit_record", floor_j);
                jnl = floor_op(floor_journal, o.floor_ops, "sd_journal_send (13 fields)", "entry",
                               "journal_entry", floor_j);
                for (int p = 0; p < PL__MAX; p++) {
                        if (!have_pl[p])
                                continue;
                        floor_cycle[p] = OPS_PER_CYCLE * (rtt[p].mean + aud.mean + jnl.mean);
                        snprintf(buf, sizeof(buf), "floor of one cycle, %s", pl_names[p]);
                        printf("  %-44s %9.2f us   = 3 x (%.2f + %.2f + %.2f)\n", buf, floor_cycle[p],
                               rtt[p].mean, aud.mean, jnl.mean);
                        snprintf(buf, sizeof(buf), "cycle_us_%s", pl_keys[p]);
                        json_num(floor_j, buf, floor_cycle[p]);
                }
                json_add(json, "floor", floor_j);
        }

        if (o.mode & MODE_CYCLES) {
                cJSON *conc_j = cJSON_CreateObject();

                seq_j = cJSON_CreateObject();
                if (!seq_j || !conc_j)
                        die("out of memory");
                section("Cycles over the broker socket", "");
                for (int p = 0; p < PL__MAX; p++) {
                        cJSON *j;
                        if (!have_pl[p])
                                continue;
                        j = cJSON_CreateObject();
                        if (!j)
                                die("out of memory");
                        snprintf(buf, sizeof(buf), "sequential, %s", pl_names[p]);
                        seq[p] = run_sequential(&o, buf, p == PL_FREE ? -1 : cpu[0],
                                                p == PL_FREE   ? -1
                                                : p == PL_SAME ? cpu[0]
                                                               : cpu[1],
                                                j);
                        if (floor_cycle[p] > 0) {
                                printf("      mean cycle / floor = %.2f x   (p50 / floor = %.2f x)\n",
                                       seq[p].cycle.mean / floor_cycle[p],
                                       seq[p].cycle.p50 / floor_cycle[p]);
                                json_num(j, "mean_over_floor", seq[p].cycle.mean / floor_cycle[p]);
                        }
                        json_add(seq_j, pl_keys[p], j);
                }
                conc_rate = run_concurrent(&o, conc_j);
                json_add(json, "sequential", seq_j);
                json_add(json, "concurrent", conc_j);
        }

        lost1 = audit_lost();
        run1 = cpu_snap();
        if (o.mode & MODE_CYCLES) {
                /* run-bench.sh compares this with the journal's tool-call-begin entries. */
                printf("\n  calls begun over the broker socket (each with its tool-call-begin record): %lu\n",
                       (unsigned long)atomic_load(&calls_begun));
                json_num(json, "calls_begun", (double)atomic_load(&calls_begun));
        }
        if (!(o.mode & (MODE_CYCLES | MODE_FLOOR)))
                lost0 = lost1 = -1; /* nothing was measured against the broker */
        else if (run0.ticks[P_OTHER] >= 0 && run1.ticks[P_OTHER] >= 0 && run1.t_ns > run0.t_ns) {
                double share =
                        (double)(run1.ticks[P_OTHER] - run0.ticks[P_OTHER]) / (double)sysconf(_SC_CLK_TCK) /
                        ((double)(run1.t_ns - run0.t_ns) / 1e9 * (double)sysconf(_SC_NPROCESSORS_ONLN));
                printf("  other processes used %.1f%% of the machine's CPU time during the measurements%s\n",
                       100.0 * share,
                       share > 0.10 ? "  (WARNING: a busy machine; the numbers are pessimistic)" : "");
                json_num(json, "other_cpu_share", share);
        }
        if (lost0 >= 0 && lost1 >= 0) {
                printf("  audit records lost by the kernel during the run: %lld%s\n", lost1 - lost0,
                       lost1 > lost0 ? "  (WARNING: auditd fell behind; records were dropped)" : "");
                json_num(json, "audit_lost", (double)(lost1 - lost0));
        }

        if (o.mode & MODE_TOKENS) {
                cJSON *j = cJSON_CreateObject();
                if (!j)
                        die("out of memory");
                section("Token table, in-process", "");
                tok_rate = run_tokens(&o, j);
                json_add(json, "tokens", j);
        }

        section("Targets", "");
        {
                struct target t[] = {
                        { "sequential_cycle_over_floor", "sequential cycle / floor, unpinned", "x",
                          seq[PL_FREE].done && floor_cycle[PL_FREE] > 0
                                  ? seq[PL_FREE].cycle.mean / floor_cycle[PL_FREE]
                                  : 0,
                          TARGET_SEQ_RATIO, true, seq[PL_FREE].done && floor_cycle[PL_FREE] > 0 },
                        { "sequential_cycle_over_floor_same_cpu", "sequential cycle / floor, same CPU", "x",
                          seq[PL_SAME].done && floor_cycle[PL_SAME] > 0
                                  ? seq[PL_SAME].cycle.mean / floor_cycle[PL_SAME]
                                  : 0,
                          TARGET_SEQ_RATIO, true, seq[PL_SAME].done && floor_cycle[PL_SAME] > 0 },
                        { "sequential_cycle_over_floor_across_cpus", "sequential cycle / floor, across CPUs",
                          "x",
                          seq[PL_ACROSS].done && floor_cycle[PL_ACROSS] > 0
                                  ? seq[PL_ACROSS].cycle.mean / floor_cycle[PL_ACROSS]
                                  : 0,
                          TARGET_SEQ_RATIO, true, seq[PL_ACROSS].done && floor_cycle[PL_ACROSS] > 0 },
                        { "concurrent_cycles_per_s", "cycles/s with concurrent clients", "cycles/s",
                          conc_rate, TARGET_CONCURRENT_RATE, false, (o.mode & MODE_CYCLES) != 0 },
                        { "token_mint_verify_per_s", "token mint+verify, in-process", "/s", tok_rate,
                          TARGET_TOKEN_RATE, false, (o.mode & MODE_TOKENS) != 0 },
                };
                for (size_t i = 0; i < AB_ELEMENTSOF(t); i++) {
                        if (!have_pl[PL_SAME] && i == 1)
                                continue;
                        if (!have_pl[PL_ACROSS] && i == 2)
                                continue;
                        target_print(&t[i], targets, &all_ok);
                }
                if ((o.mode & MODE_CYCLES) && o.clients != 16)
                        printf("  (the target is for 16 clients; this run used %u)\n", o.clients);
        }
        json_add(json, "targets", targets);
        if (!cJSON_AddBoolToObject(json, "all_targets_met", all_ok))
                die("out of memory");
        {
                char *line = cJSON_PrintUnformatted(json);
                if (!line)
                        die("out of memory");
                printf("\n%s\n", line);
                cJSON_free(line);
        }
        cJSON_Delete(json);
        return o.check_targets && !all_ok ? 3 : 0;
}
