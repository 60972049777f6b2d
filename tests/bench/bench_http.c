/* SPDX-License-Identifier: MIT */
/* bench_http: the load client of the HTTP benchmark (tests/bench/run-bench-http.sh runs it
 * through bench_http.mjs, once per phase). One phase: `echo.echo` tools/call requests over
 * MCP Streamable HTTP (libcurl multi, HTTP/1.1 keep-alive, one connection per request in
 * flight) against one server — agentbroker-mcp --http or the official SDK's server — first
 * --warmup calls, then --calls measured calls with --inflight requests outstanding.
 *
 * Modes (the protocol era the requests speak):
 *   session         2025-11-25: initialize (Mcp-Session-Id), notifications/initialized, then
 *                   every call in that one session (MCP-Protocol-Version: 2025-11-25)
 *   stateless-2026  2026-07-28: no session; MCP-Protocol-Version, Mcp-Method and Mcp-Name
 *                   headers and _meta's protocolVersion and clientCapabilities on every call
 *   stateless-2025  2025-11-25 without a session (the SDK's stateless server mode)
 * --accept json sends `Accept: application/json` when the server allows it (agentbroker-mcp
 * then answers JSON) and `application/json, text/event-stream` with --accept-both (the SDK
 * server requires both; it answers what it was configured for); --accept sse sends both
 * (agentbroker-mcp answers a tools/call with an SSE stream). Every answer is checked: HTTP
 * 200, the Content-Type asked for (--expect json|sse), one JSON-RPC response with our id,
 * not isError, the text echoed back. Any failure stops the run (exit status 1).
 *
 * The bearer token: --token, else $BENCH_HTTP_TOKEN (kept out of the process list).
 *
 * CPU time of other processes is read from /proc/PID/stat (utime + stime, all threads) right
 * before and after the measured calls: --watch NAME=PID (that process), --watch-tree NAME=PID
 * (PID's descendants, plus PID's cutime + cstime: children reaped meanwhile). The client's own
 * CPU time is CLOCK_PROCESS_CPUTIME_ID; the machine's busy time comes from /proc/stat.
 * Prints one JSON line: {"calls","wall_ns","lat_us":{p50,p90,p99,max,mean},"client_cpu_ns",
 * "cpu_ns":{NAME:ns},"machine_busy_ns","cpus","connections"}. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "common/macros.h"

#define TOOL "echo.echo"
#define LEGACY_VERSION "2025-11-25"
#define MODERN_VERSION "2026-07-28"
#define WATCH_MAX 16
#define INFLIGHT_MAX 1024
#define RESPONSE_MAX (1024 * 1024)
#define TIMEOUT_MS 30000L

enum mode {
        MODE_SESSION,
        MODE_STATELESS_2026,
        MODE_STATELESS_2025
};

struct watch {
        char name[32];
        int pid;
        bool tree;
        uint64_t before_ticks;
};

struct opts {
        const char *url, *token;
        enum mode mode;
        bool want_sse;    /* --accept sse */
        bool accept_both; /* send both types even for JSON */
        bool expect_sse;  /* the Content-Type the answers must have */
        unsigned inflight;
        unsigned long calls, warmup;
        struct watch watch[WATCH_MAX];
        size_t n_watch;
};

/* One request in flight: its easy handle (kept, so that its connection is reused), its
 * headers, and what came back. */
struct slot {
        CURL *easy;
        struct curl_slist *headers;
        char *body; /* the request, from cJSON */
        char *resp;
        size_t resp_len, resp_size;
        bool too_large;
        uint64_t id;
        uint64_t start_ns;
        char text[80];
};

struct run {
        const struct opts *o;
        CURLM *multi;
        struct slot *slots;
        char session_id[256];
        struct curl_slist *call_headers; /* of every tools/call */
        uint64_t next_id;
        unsigned long issued, done, target;
        uint64_t *lat_ns; /* of the measured calls, or NULL while warming up */
};

static AB_PRINTF(1, 2) _Noreturn void die(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "bench_http: FAILED: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static uint64_t
clock_ns(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- /proc -------------------------------------------------------------------------------- */

/* Fields 14.. of /proc/PID/stat (utime stime cutime cstime ...) after the comm field.
 * Returns 0 or -errno; ret_ppid, ret_self (utime + stime) and ret_children (cutime + cstime)
 * in clock ticks. */
static int
proc_stat(int pid, int *ret_ppid, uint64_t *ret_self, uint64_t *ret_children)
{
        char path[64], buf[1024];
        unsigned long long ut, st;
        long long cut, cst;
        int ppid;
        FILE *f;
        char *p;
        size_t n;

        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
         * cutime cstime */
        if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &ppid, &ut,
                         &st, &cut, &cst) != 5)
                return -EINVAL;
        if (ret_ppid)
                *ret_ppid = ppid;
        if (ret_self)
                *ret_self = ut + st;
        if (ret_children)
                *ret_children = (uint64_t)(cut + cst);
        return 0;
}

/* CPU ticks of a watched process: itself, or its descendants (those alive now, plus what it
 * reaped: cutime + cstime). A process that is gone counts 0. */
static uint64_t
watch_ticks(const struct watch *w)
{
        uint64_t self = 0, children = 0, sum = 0;
        int pids[4096], ppids[4096];
        size_t n = 0;
        struct dirent *de;
        DIR *d;

        if (proc_stat(w->pid, NULL, &self, &children) < 0)
                return 0;
        if (!w->tree)
                return self;
        sum = children;
        d = opendir("/proc");
        if (!d)
                return sum;
        while ((de = readdir(d)) && n < AB_ELEMENTSOF(pids)) {
                int pid, ppid;

                if (!isdigit((unsigned char)de->d_name[0]))
                        continue;
                pid = atoi(de->d_name);
                if (proc_stat(pid, &ppid, NULL, NULL) == 0) {
                        pids[n] = pid;
                        ppids[n++] = ppid;
                }
        }
        closedir(d);
        /* Descendants: repeat until no new process joins (the tree is shallow). */
        {
                bool in[4096] = { false };
                bool grew = true;

                while (grew) {
                        grew = false;
                        for (size_t i = 0; i < n; i++)
                                if (!in[i]) {
                                        bool parent_in = ppids[i] == w->pid;
                                        for (size_t j = 0; !parent_in && j < n; j++)
                                                parent_in = in[j] && pids[j] == ppids[i];
                                        if (parent_in)
                                                in[i] = grew = true;
                                }
                }
                for (size_t i = 0; i < n; i++) {
                        uint64_t t;
                        if (in[i] && proc_stat(pids[i], NULL, &t, NULL) == 0)
                                sum += t;
                }
        }
        return sum;
}

/* Busy ticks of all CPUs (user nice system irq softirq steal) from /proc/stat. */
static uint64_t
machine_busy_ticks(void)
{
        unsigned long long v[8] = { 0 };
        FILE *f = fopen("/proc/stat", "re");
        int n;

        if (!f)
                return 0;
        n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
        fclose(f);
        if (n != 8)
                return 0;
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

/* ---- requests ----------------------------------------------------------------------------- */

static size_t
on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct slot *s = userdata;
        size_t n = size * nmemb;

        if (s->resp_len + n + 1 > RESPONSE_MAX) {
                s->too_large = true;
                return 0;
        }
        if (s->resp_len + n + 1 > s->resp_size) {
                size_t want = s->resp_size ? s->resp_size : 4096;
                char *b;

                while (want < s->resp_len + n + 1)
                        want *= 2;
                b = realloc(s->resp, want);
                if (!b)
                        return 0;
                s->resp = b;
                s->resp_size = want;
        }
        memcpy(s->resp + s->resp_len, ptr, n);
        s->resp_len += n;
        s->resp[s->resp_len] = '\0';
        return n;
}

static struct curl_slist *
add_header(struct curl_slist *l, const char *fmt, ...)
{
        char line[512];
        struct curl_slist *n;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        n = curl_slist_append(l, line);
        if (!n)
                die("out of memory");
        return n;
}

/* The headers of every request of this run (the session id once there is one). */
static struct curl_slist *
request_headers(const struct run *R, bool notification)
{
        const struct opts *o = R->o;
        struct curl_slist *h = NULL;

        h = add_header(h, "Content-Type: application/json");
        if (notification || o->want_sse || o->accept_both)
                h = add_header(h, "Accept: application/json, text/event-stream");
        else
                h = add_header(h, "Accept: application/json");
        h = add_header(h, "Expect:");
        if (o->token)
                h = add_header(h, "Authorization: Bearer %s", o->token);
        if (o->mode == MODE_STATELESS_2026) {
                h = add_header(h, "MCP-Protocol-Version: " MODERN_VERSION);
                h = add_header(h, "Mcp-Method: tools/call");
                h = add_header(h, "Mcp-Name: " TOOL);
        } else if (R->session_id[0] || o->mode == MODE_STATELESS_2025) {
                h = add_header(h, "MCP-Protocol-Version: " LEGACY_VERSION);
        }
        if (R->session_id[0])
                h = add_header(h, "Mcp-Session-Id: %s", R->session_id);
        return h;
}

/* The JSON-RPC request (built with cJSON). */
static char *
request_body(const struct run *R, uint64_t id, const char *method, const char *text)
{
        cJSON *m = cJSON_CreateObject(), *params = NULL, *args, *meta;
        char *out;

        if (!m)
                die("out of memory");
        cJSON_AddStringToObject(m, "jsonrpc", "2.0");
        if (id)
                cJSON_AddNumberToObject(m, "id", (double)id);
        cJSON_AddStringToObject(m, "method", method);
        if (strcmp(method, "initialize") == 0) {
                params = cJSON_AddObjectToObject(m, "params");
                cJSON_AddStringToObject(params, "protocolVersion", LEGACY_VERSION);
                cJSON_AddObjectToObject(params, "capabilities");
                args = cJSON_AddObjectToObject(params, "clientInfo");
                cJSON_AddStringToObject(args, "name", "agentbroker-bench-http");
                cJSON_AddStringToObject(args, "version", "1.0.0");
        } else if (strcmp(method, "tools/call") == 0) {
                params = cJSON_AddObjectToObject(m, "params");
                cJSON_AddStringToObject(params, "name", TOOL);
                args = cJSON_AddObjectToObject(params, "arguments");
                cJSON_AddStringToObject(args, "text", text);
                if (R->o->mode == MODE_STATELESS_2026) {
                        meta = cJSON_AddObjectToObject(params, "_meta");
                        cJSON_AddStringToObject(meta, "io.modelcontextprotocol/protocolVersion",
                                                MODERN_VERSION);
                        cJSON_AddObjectToObject(meta, "io.modelcontextprotocol/clientCapabilities");
                }
        }
        out = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
        if (!out)
                die("out of memory");
        return out;
}

/* Set slot s up for a request (not yet added to the multi handle): a tools/call uses the
 * run's call headers (built once the session is open), anything else its own. */
static void
slot_prepare(struct run *R, struct slot *s, const char *method, const char *text, bool notification)
{
        curl_slist_free_all(s->headers);
        s->headers = NULL;
        if (strcmp(method, "tools/call") != 0)
                s->headers = request_headers(R, notification);
        else if (!R->call_headers)
                R->call_headers = request_headers(R, false);
        free(s->body);
        s->id = notification ? 0 : ++R->next_id;
        snprintf(s->text, sizeof s->text, "%s", text ? text : "");
        s->body = request_body(R, s->id, method, text);
        s->resp_len = 0;
        s->too_large = false;
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers ? s->headers : R->call_headers);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
}

static void
slot_init(struct run *R, struct slot *s)
{
        s->easy = curl_easy_init();
        if (!s->easy)
                die("curl_easy_init failed");
        curl_easy_setopt(s->easy, CURLOPT_URL, R->o->url);
        curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, TIMEOUT_MS);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
}

/* The JSON-RPC response with our id in s's answer: the body (JSON) or one of its SSE events'
 * data (lines "data: ...", an event ends at an empty line). Returns it (to be freed) or dies. */
static cJSON *
answer_of(const struct run *R, struct slot *s, const char *what)
{
        const char *ct = NULL;
        long status = 0;
        bool sse;

        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(s->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (status != 200)
                die("%s: HTTP %ld: %.300s", what, status, s->resp ? s->resp : "");
        sse = ct && strncmp(ct, "text/event-stream", 17) == 0;
        if (!sse && !(ct && strncmp(ct, "application/json", 16) == 0))
                die("%s: Content-Type %s", what, ct ? ct : "(none)");
        if (strcmp(what, "tools/call") == 0 && sse != R->o->expect_sse)
                die("tools/call: the answer is %s, the benchmark expects %s", ct,
                    R->o->expect_sse ? "SSE" : "JSON");
        if (!sse) {
                cJSON *m = cJSON_ParseWithLength(s->resp ? s->resp : "", s->resp_len);
                if (!m)
                        die("%s: the answer is not JSON: %.300s", what, s->resp ? s->resp : "");
                return m;
        }
        /* SSE: each event's data lines, joined; the one that is our response. */
        {
                const char *p = s->resp ? s->resp : "", *end = p + s->resp_len;
                char *data = NULL;
                size_t dlen = 0;

                while (p < end) {
                        const char *nl = memchr(p, '\n', (size_t)(end - p));
                        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);

                        if (ll > 0 && p[ll - 1] == '\r')
                                ll--;
                        if (ll == 0) {
                                if (data) {
                                        cJSON *m = cJSON_ParseWithLength(data, dlen);
                                        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
                                        free(data);
                                        data = NULL;
                                        dlen = 0;
                                        if (cJSON_IsNumber(id) && (uint64_t)id->valuedouble == s->id &&
                                            !cJSON_HasObjectItem(m, "method"))
                                                return m;
                                        cJSON_Delete(m);
                                }
                        } else if (ll >= 5 && memcmp(p, "data:", 5) == 0) {
                                const char *v = p + 5;
                                size_t vl = ll - 5;
                                char *nd;

                                if (vl > 0 && *v == ' ')
                                        v++, vl--;
                                nd = realloc(data, dlen + vl + 2);
                                if (!nd)
                                        die("out of memory");
                                data = nd;
                                if (dlen)
                                        data[dlen++] = '\n';
                                memcpy(data + dlen, v, vl);
                                dlen += vl;
                                data[dlen] = '\0';
                        }
                        p = nl ? nl + 1 : end;
                }
                free(data);
                die("%s: no response with id %" PRIu64 " in the SSE stream: %.300s", what, s->id, s->resp);
        }
}

/* Check a tools/call answer: our id, a result, not isError, our text. Dies otherwise. */
static void
check_echo(const struct run *R, struct slot *s)
{
        cJSON *m = answer_of(R, s, "tools/call");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(m, "result");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(res, "content");
        const cJSON *first = cJSON_GetArrayItem(content, 0);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(first, "text");

        if (!cJSON_IsNumber(id) || (uint64_t)id->valuedouble != s->id)
                die("tools/call: the response's id is not %" PRIu64 ": %.300s", s->id, s->resp);
        if (!cJSON_IsObject(res) || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "isError")))
                die("tools/call: not a successful result: %.300s", s->resp);
        if (!cJSON_IsString(text) || strcmp(text->valuestring, s->text) != 0)
                die("tools/call: wrong text echoed: %.300s", s->resp);
        cJSON_Delete(m);
}

/* Run one request on slot s to completion (outside the measured loop). */
static void
run_one(struct run *R, struct slot *s)
{
        CURLcode rc = curl_easy_perform(s->easy);

        if (rc != CURLE_OK)
                die("request failed: %s", curl_easy_strerror(rc));
}

/* initialize and notifications/initialized; keeps the session id. */
static void
open_session(struct run *R)
{
        struct slot *s = &R->slots[0];
        struct curl_header *hdr = NULL;
        cJSON *m;
        long status = 0;

        slot_prepare(R, s, "initialize", NULL, false);
        run_one(R, s);
        m = answer_of(R, s, "initialize");
        if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(m, "result")))
                die("initialize failed: %.300s", s->resp);
        cJSON_Delete(m);
        if (curl_easy_header(s->easy, "Mcp-Session-Id", 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK ||
            !hdr->value || strlen(hdr->value) >= sizeof R->session_id || !hdr->value[0])
                die("initialize: no Mcp-Session-Id in the answer");
        snprintf(R->session_id, sizeof R->session_id, "%s", hdr->value);
        slot_prepare(R, s, "notifications/initialized", NULL, true);
        run_one(R, s);
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status != 202)
                die("notifications/initialized: HTTP %ld (202 expected)", status);
}

static void
start_call(struct run *R, struct slot *s)
{
        char text[80];
        CURLMcode mc;

        snprintf(text, sizeof text, "hello from the HTTP benchmark, call %lu", R->issued);
        slot_prepare(R, s, "tools/call", text, false);
        R->issued++;
        s->start_ns = clock_ns(CLOCK_MONOTONIC);
        mc = curl_multi_add_handle(R->multi, s->easy);
        if (mc != CURLM_OK)
                die("curl_multi_add_handle: %s", curl_multi_strerror(mc));
}

/* count calls with R->o->inflight outstanding; latencies into lat (when not NULL). */
static void
run_calls(struct run *R, unsigned long count, uint64_t *lat)
{
        unsigned n = R->o->inflight < count ? R->o->inflight : (unsigned)count;
        int running = 0;

        R->issued = R->done = 0;
        R->target = count;
        R->lat_ns = lat;
        for (unsigned i = 0; i < n; i++)
                start_call(R, &R->slots[i]);
        while (R->done < count) {
                CURLMcode mc = curl_multi_perform(R->multi, &running);
                CURLMsg *msg;
                int left;

                if (mc != CURLM_OK)
                        die("curl_multi_perform: %s", curl_multi_strerror(mc));
                while ((msg = curl_multi_info_read(R->multi, &left))) {
                        struct slot *s = NULL;
                        uint64_t end = clock_ns(CLOCK_MONOTONIC);

                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
                        if (msg->data.result != CURLE_OK)
                                die("tools/call failed: %s%s", curl_easy_strerror(msg->data.result),
                                    s->too_large ? " (answer too large)" : "");
                        curl_multi_remove_handle(R->multi, s->easy);
                        check_echo(R, s);
                        if (lat)
                                lat[R->done] = end - s->start_ns;
                        R->done++;
                        if (R->issued < count)
                                start_call(R, s);
                }
                if (R->done < count) {
                        mc = curl_multi_poll(R->multi, NULL, 0, 1000, NULL);
                        if (mc != CURLM_OK)
                                die("curl_multi_poll: %s", curl_multi_strerror(mc));
                }
        }
}

static int
cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

static double
quantile_us(const uint64_t *sorted, size_t n, double q)
{
        size_t i;
        double k = q * (double)n;

        i = (size_t)k;
        if ((double)i < k)
                i++; /* ceil */
        i = i ? i - 1 : 0;
        if (i >= n)
                i = n - 1;
        return (double)sorted[i] / 1e3;
}

/* ---- options ------------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
        fputs("Usage: bench_http --url URL [--token TOKEN] [--mode session|stateless-2026|stateless-2025]\n"
              "                  [--accept json|sse] [--accept-both] [--expect json|sse] [--inflight N]\n"
              "                  [--calls N] [--warmup N] [--watch NAME=PID]... [--watch-tree NAME=PID]...\n"
              "The bearer token: --token, else $BENCH_HTTP_TOKEN. The load client of\n"
              "tests/bench/run-bench-http.sh (see the top of bench_http.c).\n",
              f);
}

static unsigned long
number(const char *opt, const char *v, unsigned long max)
{
        char *end;
        unsigned long n;

        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno || !*v || *end || n < 1 || n > max)
                die("%s must be 1..%lu, not '%s'", opt, max, v);
        return n;
}

static void
add_watch(struct opts *o, const char *spec, bool tree)
{
        const char *eq = strchr(spec, '=');
        struct watch *w;

        if (o->n_watch >= WATCH_MAX)
                die("too many --watch options (at most %d)", WATCH_MAX);
        if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof o->watch[0].name)
                die("--watch takes NAME=PID, not '%s'", spec);
        w = &o->watch[o->n_watch++];
        memcpy(w->name, spec, (size_t)(eq - spec));
        w->name[eq - spec] = '\0';
        w->pid = (int)number("--watch PID", eq + 1, 4194304);
        w->tree = tree;
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
        static const struct option longopts[] = {
                { "url", required_argument, NULL, 'u' },
                { "token", required_argument, NULL, 't' },
                { "mode", required_argument, NULL, 'm' },
                { "accept", required_argument, NULL, 'a' },
                { "accept-both", no_argument, NULL, 'B' },
                { "expect", required_argument, NULL, 'e' },
                { "inflight", required_argument, NULL, 'i' },
                { "calls", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "watch", required_argument, NULL, 'W' },
                { "watch-tree", required_argument, NULL, 'T' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *expect = NULL;
        int c;

        *o = (struct opts){ .inflight = 1, .calls = 2000, .warmup = 300, .mode = MODE_SESSION };
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0)
                switch (c) {
                case 'u': o->url = optarg; break;
                case 't': o->token = optarg; break;
                case 'm':
                        if (strcmp(optarg, "session") == 0)
                                o->mode = MODE_SESSION;
                        else if (strcmp(optarg, "stateless-2026") == 0)
                                o->mode = MODE_STATELESS_2026;
                        else if (strcmp(optarg, "stateless-2025") == 0)
                                o->mode = MODE_STATELESS_2025;
                        else
                                die("--mode is session, stateless-2026 or stateless-2025");
                        break;
                case 'a':
                        if (strcmp(optarg, "json") != 0 && strcmp(optarg, "sse") != 0)
                                die("--accept is json or sse");
                        o->want_sse = strcmp(optarg, "sse") == 0;
                        break;
                case 'B': o->accept_both = true; break;
                case 'e':
                        if (strcmp(optarg, "json") != 0 && strcmp(optarg, "sse") != 0)
                                die("--expect is json or sse");
                        expect = optarg;
                        break;
                case 'i': o->inflight = (unsigned)number("--inflight", optarg, INFLIGHT_MAX); break;
                case 'n': o->calls = number("--calls", optarg, 100000000); break;
                case 'w':
                        o->warmup = strcmp(optarg, "0") == 0 ? 0 : number("--warmup", optarg, 100000000);
                        break;
                case 'W': add_watch(o, optarg, false); break;
                case 'T': add_watch(o, optarg, true); break;
                case 'h': usage(stdout); exit(0);
                default: usage(stderr); exit(2);
                }
        if (!o->token)
                o->token = getenv("BENCH_HTTP_TOKEN");
        if (optind != argc || !o->url) {
                usage(stderr);
                exit(2);
        }
        o->expect_sse = expect ? strcmp(expect, "sse") == 0 : o->want_sse;
}

int
main(int argc, char **argv)
{
        struct opts o;
        struct run R = { .o = &o };
        uint64_t *lat, t0, t1, cpu0, cpu1, busy0, busy1, sum_us = 0;
        long tick = sysconf(_SC_CLK_TCK);
        cJSON *out, *l, *cpu;
        char *text;

        parse_opts(argc, argv, &o);
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                die("curl_global_init failed");
        R.multi = curl_multi_init();
        R.slots = calloc(o.inflight, sizeof *R.slots);
        lat = calloc(o.calls, sizeof *lat);
        if (!R.multi || !R.slots || !lat)
                die("out of memory");
        curl_multi_setopt(R.multi, CURLMOPT_MAXCONNECTS, (long)o.inflight + 4);
        for (unsigned i = 0; i < o.inflight; i++)
                slot_init(&R, &R.slots[i]);
        if (o.mode == MODE_SESSION)
                open_session(&R);
        if (o.warmup)
                run_calls(&R, o.warmup, NULL);

        for (size_t i = 0; i < o.n_watch; i++)
                o.watch[i].before_ticks = watch_ticks(&o.watch[i]);
        busy0 = machine_busy_ticks();
        cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        t0 = clock_ns(CLOCK_MONOTONIC);
        run_calls(&R, o.calls, lat);
        t1 = clock_ns(CLOCK_MONOTONIC);
        cpu1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        busy1 = machine_busy_ticks();

        out = cJSON_CreateObject();
        cpu = cJSON_CreateObject();
        for (size_t i = 0; i < o.n_watch; i++) {
                uint64_t after = watch_ticks(&o.watch[i]);
                uint64_t d = after > o.watch[i].before_ticks ? after - o.watch[i].before_ticks : 0;
                cJSON_AddNumberToObject(cpu, o.watch[i].name, (double)d * 1e9 / (double)tick);
        }
        qsort(lat, o.calls, sizeof *lat, cmp_u64);
        for (unsigned long i = 0; i < o.calls; i++)
                sum_us += lat[i] / 1000u;
        l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "p50", quantile_us(lat, o.calls, 0.50));
        cJSON_AddNumberToObject(l, "p90", quantile_us(lat, o.calls, 0.90));
        cJSON_AddNumberToObject(l, "p99", quantile_us(lat, o.calls, 0.99));
        cJSON_AddNumberToObject(l, "max", (double)lat[o.calls - 1] / 1e3);
        cJSON_AddNumberToObject(l, "mean", (double)sum_us / (double)o.calls);
        cJSON_AddNumberToObject(out, "calls", (double)o.calls);
        cJSON_AddNumberToObject(out, "inflight", o.inflight);
        cJSON_AddNumberToObject(out, "wall_ns", (double)(t1 - t0));
        cJSON_AddItemToObject(out, "lat_us", l);
        cJSON_AddNumberToObject(out, "client_cpu_ns", (double)(cpu1 - cpu0));
        cJSON_AddItemToObject(out, "cpu_ns", cpu);
        cJSON_AddNumberToObject(out, "machine_busy_ns", (double)(busy1 - busy0) * 1e9 / (double)tick);
        cJSON_AddNumberToObject(out, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
        text = cJSON_PrintUnformatted(out);
        if (!text)
                die("out of memory");
        puts(text);
        free(text);
        cJSON_Delete(out);

        for (unsigned i = 0; i < o.inflight; i++) {
                curl_easy_cleanup(R.slots[i].easy);
                curl_slist_free_all(R.slots[i].headers);
                free(R.slots[i].body);
                free(R.slots[i].resp);
        }
        curl_slist_free_all(R.call_headers);
        free(R.slots);
        free(lat);
        curl_multi_cleanup(R.multi);
        curl_global_cleanup();
        return 0;
}
