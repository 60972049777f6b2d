/* SPDX-License-Identifier: MIT */
/* bench_egress: what agentbroker-egress adds (tests/bench/run-bench-egress.sh).
 *
 *   bench_egress --broker SOCK --egress PATH --http-port P --tcp-port Q [--requests N]
 *
 * Opens a run and begins one call of tool "bench.net" (its rule: an http entry for
 * 127.0.0.1:P injecting a secret, a tcp entry for 127.0.0.1:Q), starts agentbroker-egress
 * as its child (as the host does for a worker: it presents the call's token, the broker checks
 * that it is a child of the process that began the call) and speaks the worker's side of the
 * channel, in the same run:
 *   - HTTP: N requests through egress-http (GET, the secret injected) vs N made directly with
 *     libcurl (a fresh handle per request, as agentbroker-egress does): p50/p99 and requests/s;
 *   - TCP: N connection grants (socket received with SCM_RIGHTS) vs N direct connect()s.
 * Prints one JSON object. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <cjson/cJSON.h>

#include "common/client.h"
#include "common/fdpass.h"

#define BATCH 8 /* grants per call before {"t":"end"} (egress allows 16) */

static double
now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double
pct(double *v, int n, double p)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        return v[(int)(p * (n - 1))];
}

static size_t
sink(char *d, size_t s, size_t n, void *u)
{
        (void)d;
        (void)u;
        return s * n;
}

static void
die(const char *what)
{
        fprintf(stderr, "bench_egress: %s\n", what);
        exit(1);
}

/* The broker: run-open, call-begin for tool; the token. */
static char *
begin_call(const char *sock)
{
        struct ab_client *c;
        cJSON *req, *rep = NULL;
        const char *run, *tok;
        char *token;

        if (ab_client_connect(sock, &c) < 0)
                die("cannot connect to the broker");
        req = ab_client_request(c, "run-open");
        if (ab_client_call(c, req, 5000, &rep) < 0 ||
            !(run = cJSON_GetStringValue(cJSON_GetObjectItem(rep, "run"))))
                die("run-open failed");
        run = strdup(run);
        cJSON_Delete(req);
        cJSON_Delete(rep);
        req = ab_client_request(c, "call-begin");
        cJSON_AddStringToObject(req, "run", run);
        cJSON_AddStringToObject(req, "tool", "bench.net");
        cJSON_AddStringToObject(req, "args_sha256",
                                "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        cJSON_AddNumberToObject(req, "args_len", 2);
        cJSON_AddNumberToObject(req, "ttl_s", 300);
        if (ab_client_call(c, req, 5000, &rep) < 0 ||
            !(tok = cJSON_GetStringValue(cJSON_GetObjectItem(rep, "token"))))
                die("call-begin failed");
        token = strdup(tok);
        cJSON_Delete(req);
        cJSON_Delete(rep);
        free((char *)run);
        /* The connection stays open: the run too. */
        return token;
}

static int
spawn_egress(const char *path, const char *sock, pid_t *ret_pid)
{
        posix_spawn_file_actions_t fa;
        char *argv[] = { (char *)path, (char *)"--fd", (char *)"3", (char *)"--broker", (char *)sock, NULL };
        extern char **environ;
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair");
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
        if (posix_spawn(ret_pid, path, &fa, NULL, argv, environ) != 0)
                die("cannot start agentbroker-egress");
        posix_spawn_file_actions_destroy(&fa);
        close(sv[1]);
        return sv[0];
}

static cJSON *
request(const char *t, const char *token)
{
        cJSON *m = cJSON_CreateObject();

        cJSON_AddStringToObject(m, "t", t);
        cJSON_AddStringToObject(m, "token", token);
        cJSON_AddStringToObject(m, "tool", "bench.net");
        return m;
}

int
main(int argc, char **argv)
{
        static const struct option options[] = {
                { "broker", required_argument, NULL, 'b' },    { "egress", required_argument, NULL, 'e' },
                { "http-port", required_argument, NULL, 'h' }, { "tcp-port", required_argument, NULL, 't' },
                { "requests", required_argument, NULL, 'n' },  { NULL, 0, NULL, 0 },
        };
        const char *sock = NULL, *egress = NULL;
        int http_port = 0, tcp_port = 0, n = 300, opt, fd;
        double *eg_http, *direct_http, *eg_grant, *direct_conn, t0, total_eg = 0, total_direct = 0;
        char url[256], *token;
        struct sockaddr_in sin = { .sin_family = AF_INET };
        pid_t pid;

        while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
                switch (opt) {
                case 'b': sock = optarg; break;
                case 'e': egress = optarg; break;
                case 'h': http_port = atoi(optarg); break;
                case 't': tcp_port = atoi(optarg); break;
                case 'n': n = atoi(optarg); break;
                default: return 2;
                }
        }
        if (!sock || !egress || !http_port || !tcp_port || n < 10)
                return 2;
        signal(SIGPIPE, SIG_IGN);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        eg_http = calloc((size_t)n, sizeof(double));
        direct_http = calloc((size_t)n, sizeof(double));
        eg_grant = calloc((size_t)n, sizeof(double));
        direct_conn = calloc((size_t)n, sizeof(double));
        token = begin_call(sock);
        fd = spawn_egress(egress, sock, &pid);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/ok", http_port);

        /* HTTP: alternate egress and direct so that both see the same machine load. */
        for (int i = -10; i < n; i++) {
                cJSON *req = request("http", token), *rep = NULL;
                CURL *c;
                double a, b;
                int body = -1;

                cJSON_AddStringToObject(req, "method", "GET");
                cJSON_AddStringToObject(req, "url", url);
                a = now_us();
                if (ab_fdpass_send(fd, req, -1) < 0 || ab_fdpass_recv(fd, 10000, &rep, &body) < 0 ||
                    !cJSON_IsTrue(cJSON_GetObjectItem(rep, "ok")))
                        die(rep ? cJSON_PrintUnformatted(rep) : "egress-http failed");
                b = now_us();
                close(body);
                cJSON_Delete(req);
                cJSON_Delete(rep);
                if (i >= 0) {
                        eg_http[i] = b - a;
                        total_eg += b - a;
                }
                a = now_us();
                c = curl_easy_init();
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
                if (curl_easy_perform(c) != CURLE_OK)
                        die("direct request failed");
                curl_easy_cleanup(c);
                b = now_us();
                if (i >= 0) {
                        direct_http[i] = b - a;
                        total_direct += b - a;
                }
        }

        /* TCP grants vs connect(). */
        sin.sin_port = htons((uint16_t)tcp_port);
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
        for (int i = 0, k = 0; i < n; i++) {
                cJSON *req = request("connect", token), *rep = NULL;
                double a, b;
                int s = -1;

                cJSON_AddStringToObject(req, "host", "127.0.0.1");
                cJSON_AddNumberToObject(req, "port", tcp_port);
                a = now_us();
                if (ab_fdpass_send(fd, req, -1) < 0 || ab_fdpass_recv(fd, 10000, &rep, &s) < 0 || s < 0)
                        die(rep ? cJSON_PrintUnformatted(rep) : "grant failed");
                b = now_us();
                eg_grant[i] = b - a;
                close(s);
                cJSON_Delete(req);
                cJSON_Delete(rep);
                if (++k == BATCH) {
                        cJSON *end = cJSON_CreateObject();
                        cJSON_AddStringToObject(end, "t", "end");
                        ab_fdpass_send(fd, end, -1);
                        cJSON_Delete(end);
                        k = 0;
                        usleep(5000); /* the end (BATCH egress-done round trips) outside the timing */
                }
                a = now_us();
                s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (s < 0 || connect(s, (struct sockaddr *)&sin, sizeof(sin)) < 0)
                        die("direct connect failed");
                b = now_us();
                close(s);
                direct_conn[i] = b - a;
        }
        close(fd);
        waitpid(pid, NULL, 0);

        {
                double eh50 = pct(eg_http, n, 0.5), eh99 = pct(eg_http, n, 0.99);
                double dh50 = pct(direct_http, n, 0.5), dh99 = pct(direct_http, n, 0.99);
                double g50 = pct(eg_grant, n, 0.5), g99 = pct(eg_grant, n, 0.99);
                double c50 = pct(direct_conn, n, 0.5), c99 = pct(direct_conn, n, 0.99);

                t0 = 0;
                (void)t0;
                printf("{\"requests\":%d,"
                       "\"http\":{\"egress_p50_us\":%.0f,\"egress_p99_us\":%.0f,\"egress_rps\":%.0f,"
                       "\"direct_p50_us\":%.0f,\"direct_p99_us\":%.0f,\"direct_rps\":%.0f,\"added_p50_us\":%.0f,"
                       "\"target_added_p50_us\":2000,\"result\":\"%s\"},"
                       "\"grant\":{\"egress_p50_us\":%.0f,\"egress_p99_us\":%.0f,\"direct_p50_us\":%.0f,"
                       "\"direct_p99_us\":%.0f,\"added_p50_us\":%.0f,\"target_added_p50_us\":1000,\"result\":\"%s\"}}\n",
                       n, eh50, eh99, n / (total_eg / 1e6), dh50, dh99, n / (total_direct / 1e6),
                       eh50 - dh50, eh50 - dh50 <= 2000 ? "PASS" : "MISS", g50, g99, c50, c99, g50 - c50,
                       g50 - c50 <= 1000 ? "PASS" : "MISS");
        }
        curl_global_cleanup();
        return 0;
}
