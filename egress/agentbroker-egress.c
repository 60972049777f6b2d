/* SPDX-License-Identifier: MIT */
/* agentbroker-egress: the network of one module worker (docs/architecture.md, "Egress").
 *
 *     agentbroker-egress --fd 3 --broker PATH
 *
 * agentbroker-mcp starts one next to each module worker, with the host's rights and outside
 * whatever confines the worker; it never loads module code. fd 3 is its end of a
 * SOCK_SEQPACKET socketpair whose other end the worker holds (the worker's seccomp filter
 * refuses it any socket of its own). Messages are JSON objects (common/fdpass.h):
 *
 *   {"t":"connect","token","tool","host","port"}   a TCP connection for the current call:
 *        the name is resolved here, the broker checks the destination and every address
 *        (egress-check) and picks the one to connect to; the connected socket goes back
 *        with SCM_RIGHTS. A dup is kept: at the call's end it is shut down (the connection
 *        lives for its call only) and its byte counts (TCP_INFO) go to the broker (egress-done).
 *   {"t":"http",...}                               an HTTP request made here (http.c).
 *   {"t":"end"}                                    the call ended: close its connections.
 *
 * It exits when the worker's end closes (the worker exited), or with the host (PDEATHSIG). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked/received */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/client.h"
#include "common/clock.h"
#include "common/encode.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/wire.h"
#include "egress/egress.h"

#define EG_CONNS_MAX 16 /* TCP connections granted to one call */
#define EG_TOKEN_MAX 64
#define EG_TOOL_MAX 128

struct eg_conn {
        int fd; /* our dup of the socket handed to the worker */
        char grant[33];
        uint64_t start_ms;
};

struct eg_state {
        const char *broker_path;
        struct ab_client *broker;
        struct eg_conn conns[EG_CONNS_MAX];
        size_t n_conns;
        bool curl_ready; /* curl_global_init done */
};

/* The number of the request being answered (the worker drops answers to older requests it gave
 * up on). */
static double current_n = -1;

int
eg_send(int fd, cJSON *msg, int pass_fd)
{
        if (current_n >= 0 && !cJSON_AddNumberToObject(msg, "n", current_n))
                return -ENOMEM;
        return ab_fdpass_send(fd, msg, pass_fd);
}

void
eg_grant_clear(struct eg_grant *g)
{
        if (g->inject_value) {
                ab_freezero(g->inject_value, g->inject_len);
        }
        free(g->inject_header);
        free(g->inject_query);
        free(g->secret_name);
        *g = (struct eg_grant){ 0 };
}

int
eg_reply_error(int fd, const char *error, const char *reason, const char *fmt, ...)
{
        char message[512];
        va_list ap;
        cJSON *m = cJSON_CreateObject();
        int r;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        if (!m || !cJSON_AddFalseToObject(m, "ok") || !cJSON_AddStringToObject(m, "error", error) ||
            !cJSON_AddStringToObject(m, "reason", reason ? reason : "") ||
            !cJSON_AddStringToObject(m, "message", message)) {
                cJSON_Delete(m);
                return -ENOMEM;
        }
        r = eg_send(fd, m, -1);
        cJSON_Delete(m);
        return r;
}

int
eg_resolve(const char *host, unsigned port, cJSON **ret)
{
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
        struct addrinfo *res = NULL;
        char portstr[8];
        cJSON *arr;
        int n = 0;

        snprintf(portstr, sizeof(portstr), "%u", port);
        if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
                return -ENOENT;
        arr = cJSON_CreateArray();
        for (struct addrinfo *ai = res; arr && ai && n < EG_ADDRS_MAX; ai = ai->ai_next) {
                char buf[INET6_ADDRSTRLEN];
                const void *a = ai->ai_family == AF_INET
                                        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
                bool dup = false;
                const cJSON *it;

                if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                    !inet_ntop(ai->ai_family, a, buf, sizeof(buf)))
                        continue;
                cJSON_ArrayForEach(it, arr) dup = dup || strcmp(it->valuestring, buf) == 0;
                if (dup)
                        continue;
                if (!cJSON_AddItemToArray(arr, cJSON_CreateString(buf))) {
                        cJSON_Delete(arr);
                        arr = NULL;
                }
                n++;
        }
        freeaddrinfo(res);
        if (!arr)
                return -ENOMEM;
        if (n == 0) {
                cJSON_Delete(arr);
                return -ENOENT;
        }
        *ret = arr;
        return 0;
}

/* Send req to the broker (connecting on first use, once more after a lost connection).
 * Returns 0 with the reply or -EIO. */
static int
broker_call(struct eg_state *st, const cJSON *req, cJSON **ret)
{
        for (int attempt = 0; attempt < 2; attempt++) {
                int r;

                if (!st->broker && ab_client_connect(st->broker_path, &st->broker) < 0)
                        return -EIO;
                r = ab_client_call(st->broker, req, EG_BROKER_TIMEOUT_MS, ret);
                if (r == 0)
                        return 0;
                ab_client_free(st->broker);
                st->broker = NULL;
        }
        return -EIO;
}

/* Take the inject object of an egress-check reply into g. Returns 0 or -EBADMSG/-ENOMEM. */
static int
take_inject(const cJSON *inj, struct eg_grant *g)
{
        const char *b64, *name, *hdr = NULL, *query = NULL;
        uint64_t off, len;
        unsigned char *v = NULL;
        size_t vlen = 0;

        if (ab_wire_get_string(inj, "value", 200000, &b64) < 0 ||
            ab_wire_get_string(inj, "secret", 128, &name) < 0 ||
            ab_wire_get_u64(inj, "secret_offset", 1 << 20, &off) < 0 ||
            ab_wire_get_u64(inj, "secret_len", 1 << 20, &len) < 0)
                return -EBADMSG;
        (void)ab_wire_get_string(inj, "header", 64, &hdr);
        (void)ab_wire_get_string(inj, "query", 64, &query);
        if (!hdr == !query || ab_base64_decode(b64, &v, &vlen) < 0)
                return -EBADMSG;
        if (off + len > vlen) {
                ab_freezero(v, vlen);
                return -EBADMSG;
        }
        /* NUL-terminated for curl; the broker refuses secrets holding control characters. A
         * copy, not realloc: a moved block would leave the bytes behind in freed memory. */
        g->inject_value = malloc(vlen + 1);
        if (g->inject_value) {
                memcpy(g->inject_value, v, vlen);
                g->inject_value[vlen] = 0;
        }
        ab_freezero(v, vlen);
        if (!g->inject_value)
                return -ENOMEM;
        g->inject_len = vlen;
        g->secret_off = off;
        g->secret_len = len;
        g->secret_name = strdup(name);
        g->inject_header = hdr ? strdup(hdr) : NULL;
        g->inject_query = query ? strdup(query) : NULL;
        if (!g->secret_name || (hdr && !g->inject_header) || (query && !g->inject_query))
                return -ENOMEM;
        return 0;
}

int
eg_check(struct eg_state *st, const char *token, const char *tool, enum ab_egress_scheme scheme,
         const char *host, unsigned port, const char *method, const char *path, struct eg_grant *ret,
         char reason[64], char message[256])
{
        struct eg_grant g = { 0 };
        cJSON *req = NULL, *reply = NULL, *addrs = NULL;
        const char *s;
        uint64_t u;
        int r;

        r = eg_resolve(host, port, &addrs);
        if (r < 0) {
                snprintf(reason, 64, "%s", r == -ENOENT ? "name-unresolved" : "internal");
                snprintf(message, 256, "cannot resolve %s", host);
                return -EPERM;
        }
        if (!st->broker && ab_client_connect(st->broker_path, &st->broker) < 0) {
                cJSON_Delete(addrs);
                snprintf(reason, 64, "no-broker");
                snprintf(message, 256, "the broker is not reachable");
                return -EIO;
        }
        req = ab_client_request(st->broker, "egress-check");
        if (!req || !cJSON_AddStringToObject(req, "token", token) ||
            !cJSON_AddStringToObject(req, "tool", tool) ||
            !cJSON_AddStringToObject(req, "scheme", ab_egress_scheme_to_string(scheme)) ||
            !cJSON_AddStringToObject(req, "host", host) || !cJSON_AddNumberToObject(req, "port", port) ||
            !cJSON_AddItemToObject(req, "addresses", addrs) ||
            (method && !cJSON_AddStringToObject(req, "method", method)) ||
            (path && !cJSON_AddStringToObject(req, "path", path))) {
                if (!cJSON_GetObjectItemCaseSensitive(req, "addresses"))
                        cJSON_Delete(addrs);
                r = -ENOMEM;
                snprintf(reason, 64, "internal");
                snprintf(message, 256, "out of memory");
                goto out;
        }
        r = broker_call(st, req, &reply);
        if (r < 0) {
                snprintf(reason, 64, "no-broker");
                snprintf(message, 256, "the broker is not reachable");
                r = -EIO;
                goto out;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "reason"));
                snprintf(reason, 64, "%s", s ? s : "denied");
                s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "message"));
                snprintf(message, 256, "%s", s ? s : "egress denied");
                r = -EPERM;
                goto out;
        }
        r = -EBADMSG;
        if (ab_wire_get_string(reply, "grant", 32, &s) < 0)
                goto bad;
        snprintf(g.id, sizeof(g.id), "%s", s);
        if (ab_wire_get_string(reply, "address", sizeof(g.address) - 1, &s) < 0)
                goto bad;
        snprintf(g.address, sizeof(g.address), "%s", s);
        g.family = strchr(s, ':') ? AF_INET6 : AF_INET;
        if (ab_wire_get_u64(reply, "max_response_bytes", (uint64_t)1 << 32, &u) == 0)
                g.max_response_bytes = (size_t)u;
        if (ab_wire_get_u64(reply, "timeout_ms", 3600000, &u) == 0)
                g.timeout_ms = (unsigned)u;
        if (cJSON_GetObjectItemCaseSensitive(reply, "inject")) {
                r = take_inject(cJSON_GetObjectItemCaseSensitive(reply, "inject"), &g);
                if (r < 0)
                        goto bad;
        }
        *ret = g;
        g = (struct eg_grant){ 0 };
        r = 0;
        goto out;
bad:
        snprintf(reason, 64, "internal");
        snprintf(message, 256, "the broker's egress-check reply is malformed");
        r = -EIO;
out:
        eg_grant_clear(&g);
        cJSON_Delete(req);
        if (reply) {
                cJSON *inj = cJSON_GetObjectItemCaseSensitive(reply, "inject");
                cJSON *v = cJSON_GetObjectItemCaseSensitive(inj, "value");
                if (cJSON_IsString(v))
                        ab_wipe(v->valuestring, strlen(v->valuestring));
                cJSON_Delete(reply);
        }
        return r;
}

void
eg_done(struct eg_state *st, const char *grant, uint64_t sent, uint64_t received, uint64_t duration_ms,
        unsigned http_status, const char *reason)
{
        cJSON *req, *reply = NULL;

        if (!st->broker && ab_client_connect(st->broker_path, &st->broker) < 0)
                return;
        req = ab_client_request(st->broker, "egress-done");
        if (req && cJSON_AddStringToObject(req, "grant", grant) &&
            cJSON_AddNumberToObject(req, "sent", (double)sent) &&
            cJSON_AddNumberToObject(req, "received", (double)received) &&
            cJSON_AddNumberToObject(req, "duration_ms", (double)duration_ms) &&
            (!http_status || cJSON_AddNumberToObject(req, "http_status", http_status)) &&
            (!reason || cJSON_AddStringToObject(req, "reason", reason)))
                (void)broker_call(st, req, &reply);
        cJSON_Delete(req);
        cJSON_Delete(reply);
}

/* Connect to address:port within EG_CONNECT_TIMEOUT_MS. Returns the blocking socket or -errno. */
static int
connect_to(int family, const char *address, unsigned port)
{
        struct sockaddr_storage ss = { 0 };
        socklen_t len;
        struct pollfd pfd;
        int s, r, soerr = 0;
        socklen_t elen = sizeof(soerr);

        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, address, &in->sin_addr) != 1)
                        return -EINVAL;
                len = sizeof(*in);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, address, &in6->sin6_addr) != 1)
                        return -EINVAL;
                len = sizeof(*in6);
        }
        s = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0)
                return -errno;
        if (connect(s, (struct sockaddr *)&ss, len) < 0) {
                if (errno != EINPROGRESS) {
                        r = -errno;
                        close(s);
                        return r;
                }
                pfd = (struct pollfd){ .fd = s, .events = POLLOUT };
                do
                        r = poll(&pfd, 1, EG_CONNECT_TIMEOUT_MS);
                while (r < 0 && errno == EINTR);
                if (r == 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0 || soerr) {
                        close(s);
                        return r == 0 ? -ETIMEDOUT : soerr ? -soerr : -EIO;
                }
        }
        if (fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK) < 0) {
                r = -errno;
                close(s);
                return r;
        }
        return s;
}

/* The call's token and tool from a worker request. Returns 0 or -EINVAL. */
static int
call_identity(int fd, const cJSON *req, const char **ret_token, const char **ret_tool)
{
        if (ab_wire_get_string(req, "token", EG_TOKEN_MAX, ret_token) < 0 ||
            ab_wire_get_string(req, "tool", EG_TOOL_MAX, ret_tool) < 0) {
                (void)eg_reply_error(fd, "invalid", "bad-request",
                                     "the request lacks the call's token or tool");
                return -EINVAL;
        }
        return 0;
}

/* {"t":"connect"}: check, connect, pass the socket. Returns 0 or -errno (channel broken). */
static int
handle_connect(struct eg_state *st, int fd, const cJSON *req)
{
        char reason[64], message[256];
        struct eg_grant g = { 0 };
        const char *token, *tool, *host;
        uint64_t port;
        cJSON *ok;
        int s, r;

        if (call_identity(fd, req, &token, &tool) < 0)
                return 0;
        if (ab_wire_get_string(req, "host", EG_HOST_MAX, &host) < 0 ||
            ab_wire_get_u64(req, "port", 65535, &port) < 0 || port == 0)
                return eg_reply_error(fd, "invalid", "bad-request", "host or port missing or invalid");
        if (st->n_conns >= EG_CONNS_MAX)
                return eg_reply_error(fd, "denied", "too-many-connections", "a call may hold %d connections",
                                      EG_CONNS_MAX);
        r = eg_check(st, token, tool, AB_EGRESS_TCP, host, (unsigned)port, NULL, NULL, &g, reason, message);
        if (r < 0)
                return eg_reply_error(fd, r == -EPERM ? "denied" : "io", reason, "%s", message);
        s = connect_to(g.family, g.address, (unsigned)port);
        if (s < 0) {
                eg_done(st, g.id, 0, 0, 0, 0, "connect-failed");
                r = eg_reply_error(fd, "connect", "connect-failed", "connecting to %s port %u: %s",
                                   g.address, (unsigned)port, strerror(-s));
                eg_grant_clear(&g);
                return r;
        }
        st->conns[st->n_conns] = (struct eg_conn){ .fd = s, .start_ms = ab_now_ms() };
        snprintf(st->conns[st->n_conns].grant, sizeof(st->conns[0].grant), "%s", g.id);
        st->n_conns++;
        ok = cJSON_CreateObject();
        if (!ok || !cJSON_AddTrueToObject(ok, "ok") || !cJSON_AddStringToObject(ok, "address", g.address))
                r = -ENOMEM;
        else
                r = eg_send(fd, ok, s);
        cJSON_Delete(ok);
        eg_grant_clear(&g);
        return r;
}

/* End every connection of the call: shut it down (the worker's copy with it), and report its
 * byte counts. */
static void
close_conns(struct eg_state *st)
{
        for (size_t i = 0; i < st->n_conns; i++) {
                struct eg_conn *c = &st->conns[i];
                struct tcp_info ti = { 0 };
                socklen_t len = sizeof(ti);
                uint64_t sent = 0, received = 0;

                /* Data octets: sent once (retransmissions not counted twice); received less
                 * the peer's FIN, which the kernel counts as one. */
                if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
                        char b;

                        sent = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans;
                        received = ti.tcpi_bytes_received;
                        if (received && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
                                received--;
                }
                (void)shutdown(c->fd, SHUT_RDWR);
                close(c->fd);
                eg_done(st, c->grant, sent, received, ab_now_ms() - c->start_ms, 0, NULL);
        }
        st->n_conns = 0;
}

static int
usage(void)
{
        fprintf(stderr, "usage: agentbroker-egress --fd N --broker PATH\n"
                        "The network of one agentbroker module worker; started by agentbroker-mcp.\n");
        return 2;
}

int
main(int argc, char **argv)
{
        static const struct option options[] = {
                { "fd", required_argument, NULL, 'f' },
                { "broker", required_argument, NULL, 'b' },
                { NULL, 0, NULL, 0 },
        };
        struct eg_state st = { .broker_path = AB_DEFAULT_SOCKET };
        int fd = -1, opt, ret = 0;
        char *end;

        while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
                switch (opt) {
                case 'f':
                        errno = 0;
                        fd = (int)strtol(optarg, &end, 10);
                        if (errno || *end || fd < 3)
                                return usage();
                        break;
                case 'b': st.broker_path = optarg; break;
                default: return usage();
                }
        }
        if (optind != argc || fd < 0)
                return usage();
        ab_log_init("agentbroker-egress", false);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                return 1;
        (void)ab_process_harden();
        (void)signal(SIGPIPE, SIG_IGN);
        (void)close_range(3, (unsigned)fd - 1, 0);
        (void)close_range((unsigned)fd + 1, ~0u, 0);

        for (;;) {
                cJSON *req = NULL;
                const char *t;
                int passed = -1, r;

                current_n = -1;
                r = ab_fdpass_recv(fd, -1, &req, &passed);
                if (passed >= 0)
                        close(passed);
                if (r == -ECONNRESET)
                        break;
                if (r == -EBADMSG) {
                        if (eg_reply_error(fd, "invalid", "bad-request", "not a JSON object") < 0)
                                break;
                        continue;
                }
                if (r < 0) {
                        log_error("egress: reading the worker's channel: %s", strerror(-r));
                        ret = 1;
                        break;
                }
                t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "t"));
                current_n = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(req, "n"))
                                    ? cJSON_GetObjectItemCaseSensitive(req, "n")->valuedouble
                                    : -1;
                if (t && strcmp(t, "connect") == 0)
                        r = handle_connect(&st, fd, req);
                else if (t && strcmp(t, "http") == 0) {
                        /* libcurl (and OpenSSL) only for a worker that makes HTTP requests:
                         * this process starts with every worker. */
                        if (!st.curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                                r = eg_reply_error(fd, "io", "internal", "cannot initialise libcurl");
                        else {
                                st.curl_ready = true;
                                r = eg_http(&st, fd, req);
                        }
                } else if (t && strcmp(t, "end") == 0) {
                        close_conns(&st);
                        r = 0;
                } else
                        r = eg_reply_error(fd, "invalid", "bad-request", "unknown request");
                {
                        cJSON *tok = cJSON_GetObjectItemCaseSensitive(req, "token");
                        if (cJSON_IsString(tok))
                                ab_wipe(tok->valuestring, strlen(tok->valuestring));
                }
                cJSON_Delete(req);
                if (r < 0 && r != -EINVAL)
                        break;
        }
        close_conns(&st);
        ab_client_free(st.broker);
        if (st.curl_ready)
                curl_global_cleanup();
        return ret;
}
