/* SPDX-License-Identifier: MIT */
/* The MCP Streamable HTTP transport (host/net/http/http.h, docs/http.md): the listener,
 * libmicrohttpd on the sd-event loop, the routing of requests, authentication failures, the sweep. */
#include "config.h"

#include "common/secmem.h"
#include "host/net/http/internal.h"

static void http_run(struct http *h);

/* ---- clients without a valid token ------------------------------------------------------ */

/* The source of conn for the denial counts: its IP address, or "unix". */
static void
conn_source(struct MHD_Connection *conn, char *buf, size_t size)
{
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;

        snprintf(buf, size, "unix");
        if (sa && sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)size);
        else if (sa && sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)size);
}

/* A 401 for a request without a valid token (reason: a static denial reason): counted for the
 * aggregated audit record of its source, and its connection closed after the response, so that
 * a client without a token cannot keep connections open. */
static enum MHD_Result
reply_unauthorized(struct http *h, struct MHD_Connection *conn, const char *reason)
{
        static const char text[] = "Unauthorized: a valid bearer token is required\n";
        char source[MCP_HTTP_DENY_SOURCE_MAX + 1];
        struct MHD_Response *resp;
        enum MHD_Result ret;

        conn_source(conn, source, sizeof(source));
        mcp_http_denials_note(h->denials, source, reason, ab_now_us());
        resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        mcp_http_add_common_headers(resp);
        MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
        MHD_add_response_header(resp, "WWW-Authenticate",
                                "Bearer realm=\"agentbroker\", error=\"invalid_token\"");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        ret = MHD_queue_response(conn, 401, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* A new connection is not authenticated yet: when more than MCP_HTTP_UNAUTH_MAX are not, cut
 * the oldest of them (it has had the longest to show a token), so that clients without a token
 * cannot take the connections a client with one needs. */
static void
unauth_budget(struct http *h)
{
        struct conninfo *oldest = NULL;
        size_t n = 0;

        for (struct conninfo *c = h->conns; c; c = c->next)
                if (!c->authed && c->fd >= 0) {
                        n++;
                        oldest = c; /* the list is newest first */
                }
        if (n <= MCP_HTTP_UNAUTH_MAX || !oldest)
                return;
        log_debug("http: more than %d connections without a valid token: closing the oldest",
                  MCP_HTTP_UNAUTH_MAX);
        shutdown(oldest->fd, SHUT_RDWR);
        oldest->fd = -1;
        sd_event_source_set_enabled(h->defer, SD_EVENT_ONESHOT);
}

/* Report the aggregated denials to the broker (through the host's callback). */
static void
report_denial(void *userdata, const char *source, const char *reason, unsigned count, unsigned seconds)
{
        struct http *h = userdata;

        if (h->report_denials)
                h->report_denials(h->check_userdata, source, reason, count, seconds);
}

/* ---- the access handler ------------------------------------------------------------------ */

/* DELETE of the endpoint: end a 2025-era session (a 2026-07-28 client has none). Returns
 * MHD's result of queueing the answer. */
static enum MHD_Result
on_delete(struct http *h, struct MHD_Connection *conn)
{
        char vb[64], sb[128];
        const char *v = mcp_http_trimmed(mcp_http_header(conn, "MCP-Protocol-Version"), vb, sizeof vb);
        const char *sid = mcp_http_trimmed(mcp_http_header(conn, "Mcp-Session-Id"), sb, sizeof sb);
        struct session *s;

        if (v && strcmp(v, MODERN_VERSION) == 0)
                return mcp_http_reply_plain(conn, 405, "Method Not Allowed\n", "Allow", "POST");
        if (!sid)
                return mcp_http_reply_plain(conn, 400, "Bad Request: Mcp-Session-Id header is required\n",
                                            NULL, NULL);
        s = mcp_http_session_find(h, sid);
        if (!s)
                return mcp_http_reply_plain(conn, 404, "Session not found\n", NULL, NULL);
        mcp_http_session_free(s);
        return mcp_http_reply(conn, 200, NULL, "", 0, NULL, NULL, NULL);
}

/* GET of the endpoint: resume a session's SSE stream from Last-Event-ID, or say this server
 * sends nothing unrequested. Returns MHD's result of queueing the answer. */
static enum MHD_Result
on_get(struct http *h, struct req *q, struct MHD_Connection *conn, void **con_cls)
{
        char sb[128], lb[64];
        const char *sid = mcp_http_trimmed(mcp_http_header(conn, "Mcp-Session-Id"), sb, sizeof sb);
        const char *last = mcp_http_trimmed(mcp_http_header(conn, "Last-Event-ID"), lb, sizeof lb);
        struct session *s = sid ? mcp_http_session_find(h, sid) : NULL;

        if (sid && !s)
                return mcp_http_reply_plain(conn, 404, "Session not found\n", NULL, NULL);
        if (s && last &&
            mcp_http_accepts(mcp_http_header(conn, MHD_HTTP_HEADER_ACCEPT), "text/event-stream"))
                return mcp_http_resume_stream(q, s, last, con_cls);
        return mcp_http_reply_plain(conn, 405, "Method Not Allowed: this server sends nothing unrequested\n",
                                    "Allow", "POST, DELETE");
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version AB_UNUSED, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
        struct http *h = cls;
        struct req *q = *con_cls;
        const char *reason = NULL;

        if (!q) {
                const union MHD_ConnectionInfo *ci =
                        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
                const char *cl;
                int r;

                if (ci && ci->socket_context)
                        ((struct conninfo *)ci->socket_context)->headers_seen = true;
                q = calloc(1, sizeof *q);
                if (!q)
                        return MHD_NO;
                q->h = h;
                q->conn = conn;
                *con_cls = q;
                if (!mcp_http_headers_fit(conn, url, method)) {
                        q->queued = true;
                        return mcp_http_reply_plain(
                                conn, 431, "Request Header Fields Too Large: at most 32 KiB\n", NULL, NULL);
                }
                if (!mcp_http_origin_ok(h, conn)) {
                        q->queued = true;
                        return mcp_http_reply_plain(conn, 403,
                                                    "Forbidden: Host or Origin is not this local server\n",
                                                    NULL, NULL);
                }
                if (strcmp(url, ENDPOINT) != 0) {
                        q->queued = true;
                        return mcp_http_reply_plain(
                                conn, 404, "Not Found: the MCP endpoint is " ENDPOINT "\n", NULL, NULL);
                }
                if (!h->insecure_no_auth) {
                        r = mcp_http_token_ok(h, conn, &reason);
                        if (r < 0) {
                                q->queued = true;
                                if (r != -EPERM) {
                                        log_error("http: checking a token at the broker failed: %s",
                                                  strerror(-r));
                                        return mcp_http_reply_plain(conn, 503,
                                                                    "the token could not be checked\n",
                                                                    "Retry-After", "1");
                                }
                                return reply_unauthorized(h, conn, reason);
                        }
                }
                if (ci && ci->socket_context)
                        ((struct conninfo *)ci->socket_context)->authed = true;
                if (strcmp(method, "POST") == 0) {
                        const char *ct = mcp_http_header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
                        const char *accept = mcp_http_header(conn, MHD_HTTP_HEADER_ACCEPT);

                        cl = mcp_http_header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
                        if (cl && strtoull(cl, NULL, 10) > MCP_HTTP_BODY_MAX) {
                                q->queued = true;
                                return mcp_http_reply_plain(
                                        conn, 413, "the request body is larger than 4 MiB\n", NULL, NULL);
                        }
                        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
                                q->queued = true;
                                return mcp_http_reply_plain(
                                        conn, 415, "Content-Type must be application/json\n", NULL, NULL);
                        }
                        if (!mcp_http_accepts(accept, "application/json") &&
                            !mcp_http_accepts(accept, "text/event-stream")) {
                                q->queued = true;
                                return mcp_http_reply_plain(
                                        conn, 406,
                                        "Accept must list application/json or text/event-stream\n", NULL,
                                        NULL);
                        }
                        return MHD_YES;
                }
                q->queued = true;
                if (strcmp(method, "DELETE") == 0)
                        return on_delete(h, conn);
                if (strcmp(method, "GET") == 0)
                        return on_get(h, q, conn, con_cls);
                return mcp_http_reply_plain(conn, 405, "Method Not Allowed\n", "Allow", "POST, DELETE");
        }

        if (q->queued) {
                *upload_data_size = 0; /* answered already: discard the rest */
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;

                if (!q->too_large) {
                        if (q->body_len + n > MCP_HTTP_BODY_MAX) {
                                q->too_large = true;
                                free(q->body);
                                q->body = NULL;
                                q->body_len = 0;
                        } else {
                                char *b = realloc(q->body, q->body_len + n + 1);
                                if (!b)
                                        return MHD_NO;
                                memcpy(b + q->body_len, upload_data, n);
                                q->body = b;
                                q->body_len += n;
                                b[q->body_len] = '\0';
                        }
                }
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (q->delivered) {
                /* Resumed: the answer, an SSE event, the SSE deadline, or the end of its session. */
                if (q->sse && q->queued)
                        return MHD_YES;
                if (q->sse && !(q->broken && !q->out))
                        return mcp_http_queue_sse(q);
                if (q->complete)
                        return mcp_http_queue_json(q);
                q->suspended = true;
                MHD_suspend_connection(conn);
                return MHD_YES;
        }
        return mcp_http_handle_post(q);
}

/* MHD is done with a request: a 2026-07-28 request whose answer has not gone out is
 * cancelled (closing the stream is the cancel); a 2025 one is not (a disconnect is not a
 * cancel in 2025-11-25), and its late answer is dropped. */
static void
on_completed(void *cls, struct MHD_Connection *conn AB_UNUSED, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
        struct http *h = cls;
        struct req *q = *con_cls;

        if (!q)
                return;
        *con_cls = NULL;
        q->conn = NULL;
        q->suspended = false;
        if (q->sess && q->sse && q->number && !q->broken && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
                /* A 2025-11-25 stream cut before its end: kept (and its call left running)
                 * for a GET with Last-Event-ID. */
                mcp_http_detach(q);
                return;
        }
        if (q->number && !q->complete && q->modern)
                mcp_server_cancel_ctx(h->shared, (void *)(uintptr_t)q->number);
        mcp_http_req_free(q);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
        struct http *h = cls;
        struct conninfo *c = *socket_context;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci =
                        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

                c = calloc(1, sizeof *c);
                if (!c)
                        return;
                c->fd = ci ? ci->connect_fd : -1;
                c->start_usec = ab_now_us();
                c->next = h->conns;
                if (h->conns)
                        h->conns->prev = c;
                h->conns = c;
                *socket_context = c;
                unauth_budget(h);
        } else if (c) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        h->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                free(c);
                *socket_context = NULL;
        }
}

/* ---- the event loop ---------------------------------------------------------------------- */

static void
http_run(struct http *h)
{
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t now;

        MHD_run(h->d);
        if (MHD_get_timeout(h->d, &ms) != MHD_YES) {
                sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
                return;
        }
        if (ms == 0) {
                /* More to do now (a resumed connection that finished its response may have the
                 * next request waiting): on the next loop iteration, not on the timer, whose
                 * accuracy (sd-event's default, 250 ms) would delay it that long. */
                sd_event_source_set_enabled(h->defer, SD_EVENT_ONESHOT);
                return;
        }
        /* An idle or header deadline, seconds away: the default accuracy lets sd-event keep its
         * timerfd armed instead of re-arming it (a system call) on every request. */
        sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(h->timer, now + (uint64_t)ms * 1000u);
        sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
}

static int
on_io(sd_event_source *s AB_UNUSED, int fd AB_UNUSED, uint32_t revents AB_UNUSED, void *userdata)
{
        http_run(userdata);
        return 0;
}

static int
on_timer(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        http_run(userdata);
        return 0;
}

static int
on_defer(sd_event_source *s AB_UNUSED, void *userdata)
{
        http_run(userdata);
        return 0;
}

/* Once a second: cut connections whose headers have not all come within the deadline
 * (slowloris), start SSE streams still waiting for their first event, end sessions unused for
 * session_idle_s. */
static int
on_sweep(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct http *h = userdata;
        uint64_t now = ab_now_us();
        struct session *next;

        mcp_http_denials_flush(h->denials, now, false, report_denial, h);
        for (struct conninfo *c = h->conns; c; c = c->next)
                if (!c->headers_seen && c->fd >= 0 &&
                    now - c->start_usec > MCP_HTTP_HEADER_DEADLINE_S * 1000000ull) {
                        log_debug("http: a client sent no complete request within %d s: closing",
                                  MCP_HTTP_HEADER_DEADLINE_S);
                        shutdown(c->fd, SHUT_RDWR);
                        c->fd = -1;
                        sd_event_source_set_enabled(h->defer, SD_EVENT_ONESHOT);
                }
        /* SSE streams whose first event is late start now: their headers go out. */
        for (size_t b = 0; b < STREAM_BUCKETS; b++)
                for (struct req *q = h->buckets[b]; q; q = q->hnext)
                        if (q->sse && !q->queued && q->suspended &&
                            now - q->sse_since_usec >= SSE_HEADERS_DEFER_S * 1000000ull)
                                mcp_http_req_wake(q);
        for (struct session *ss = h->sessions; ss; ss = next) {
                struct req *qnext;

                next = ss->next;
                for (struct req *q = ss->reqs; q; q = qnext) {
                        qnext = q->snext;
                        if (!q->conn && now - q->detached_usec > (uint64_t)h->session_idle_s * 1000000u)
                                mcp_http_req_free(q); /* a stream nobody resumed */
                }
                if (!mcp_http_session_busy(ss) && mcp_server_inflight(ss->server) == 0 &&
                    now - ss->last_usec > (uint64_t)h->session_idle_s * 1000000u) {
                        log_debug("http: session unused for %u s: ended", h->session_idle_s);
                        mcp_http_session_free(ss);
                }
        }
        sd_event_source_set_time(s, usec + 1000000u);
        return 0;
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* Parse addr into a socket address. Returns 0, -EINVAL. *ret_unix: the path for unix:. */
static int
parse_address(const char *addr, struct sockaddr_storage *ss, socklen_t *ret_len, const char **ret_unix,
              unsigned *ret_port)
{
        const char *port_s;
        char host[64];
        unsigned long port;
        char *end;

        memset(ss, 0, sizeof *ss);
        if (strncmp(addr, "unix:", 5) == 0) {
                struct sockaddr_un *un = (struct sockaddr_un *)ss;
                const char *p = addr + 5;

                if (p[0] != '/' || strlen(p) >= sizeof un->sun_path)
                        return -EINVAL;
                un->sun_family = AF_UNIX;
                strcpy(un->sun_path, p);
                *ret_len = (socklen_t)sizeof *un;
                *ret_unix = p;
                *ret_port = 0;
                return 0;
        }
        if (addr[0] == '[') {
                const char *close = strchr(addr, ']');
                if (!close || close[1] != ':' || (size_t)(close - addr - 1) >= sizeof host)
                        return -EINVAL;
                memcpy(host, addr + 1, (size_t)(close - addr - 1));
                host[close - addr - 1] = '\0';
                port_s = close + 2;
        } else {
                const char *colon = strrchr(addr, ':');
                if (!colon || (size_t)(colon - addr) >= sizeof host)
                        return -EINVAL;
                memcpy(host, addr, (size_t)(colon - addr));
                host[colon - addr] = '\0';
                port_s = colon + 1;
        }
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (!*port_s || *end || errno || port > 65535)
                return -EINVAL;
        if (strcmp(host, "localhost") == 0)
                strcpy(host, "127.0.0.1");
        if (strchr(host, ':')) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1 || !IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
                        return -EINVAL;
                *ret_len = (socklen_t)sizeof *s6;
        } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
                s4->sin_family = AF_INET;
                s4->sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 ||
                    (ntohl(s4->sin_addr.s_addr) >> 24) != 127)
                        return -EINVAL;
                *ret_len = (socklen_t)sizeof *s4;
        }
        *ret_unix = NULL;
        *ret_port = (unsigned)port;
        return 0;
}

int
mcp_http_address_ok(const char *addr)
{
        struct sockaddr_storage ss;
        socklen_t len;
        const char *path;
        unsigned port;

        return addr ? parse_address(addr, &ss, &len, &path, &port) : -EINVAL;
}

int
mcp_http_new(sd_event *event, const struct mcp_http_config *cfg, struct mcp_http **ret)
{
        struct sockaddr_storage ss;
        socklen_t slen;
        const char *path = NULL;
        const union MHD_DaemonInfo *info;
        struct mcp_config shared_cfg;
        struct http *h;
        int r, one = 1;
        unsigned flags;

        if (!event || !cfg || !cfg->address)
                return -EINVAL;
        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->listen_fd = -1;
        h->event = sd_event_ref(event);
        h->insecure_no_auth = cfg->insecure_no_auth;
        h->check_token = cfg->check_token;
        h->check_userdata = cfg->check_userdata;
        h->report_denials = cfg->report_denials;
        r = mcp_http_denials_new(&h->denials);
        if (r < 0)
                goto fail;
        h->session_idle_s = cfg->session_idle_s ? cfg->session_idle_s : MCP_HTTP_SESSION_IDLE_S;
        h->mcp = cfg->mcp;
        r = parse_address(cfg->address, &ss, &slen, &path, &h->port);
        if (r < 0)
                goto fail;

        h->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (h->listen_fd < 0) {
                r = -errno;
                goto fail;
        }
        if (path) {
                struct stat st;
                /* A stale socket of an earlier run goes; anything else stays and fails bind. */
                if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                        unlink(path);
                h->unix_path = strdup(path);
                if (!h->unix_path) {
                        r = -ENOMEM;
                        goto fail;
                }
        } else
                setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(h->listen_fd, (struct sockaddr *)&ss, slen) < 0 || listen(h->listen_fd, 128) < 0) {
                r = -errno;
                goto fail;
        }
        if (path) {
                chmod(path, 0660);
                snprintf(h->bound, sizeof h->bound, "unix:%s", path);
        } else {
                struct sockaddr_storage b;
                socklen_t bl = sizeof b;
                char a[INET6_ADDRSTRLEN];

                if (getsockname(h->listen_fd, (struct sockaddr *)&b, &bl) < 0) {
                        r = -errno;
                        goto fail;
                }
                if (b.ss_family == AF_INET6) {
                        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&b;
                        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof a);
                        h->port = ntohs(s6->sin6_port);
                        snprintf(h->bound, sizeof h->bound, "[%s]:%u", a, h->port);
                } else {
                        struct sockaddr_in *s4 = (struct sockaddr_in *)&b;
                        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof a);
                        h->port = ntohs(s4->sin_port);
                        snprintf(h->bound, sizeof h->bound, "%s:%u", a, h->port);
                }
        }

        shared_cfg = cfg->mcp;
        shared_cfg.shared = true;
        r = mcp_server_new(event, &shared_cfg, &mcp_http_session_ops, h, &h->shared);
        if (r < 0)
                goto fail;

        flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h, MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)MCP_HTTP_CONNECTIONS_MAX,
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                (unsigned)(path ? 0 : MCP_HTTP_PER_IP_MAX), MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned)MCP_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                (size_t)MCP_HTTP_HEADERS_MAX * 2, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                                h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
        if (!h->d) {
                log_error("http: libmicrohttpd did not start");
                r = -EIO;
                goto fail;
        }
        info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                r = -EIO;
                goto fail;
        }
        /* The timer keeps sd-event's default accuracy (250 ms): it only carries MHD's idle and
         * header deadlines, seconds away. When MHD asks to be run again at once (timeout 0: a
         * connection has data it has not processed yet, its epoll being edge-triggered, e.g. a
         * large upload), http_run() uses the defer source instead. */
        if ((r = sd_event_add_io(event, &h->io, info->epoll_fd, EPOLLIN, on_io, h)) < 0 ||
            (r = sd_event_add_time(event, &h->timer, CLOCK_MONOTONIC, 0, 0, on_timer, h)) < 0 ||
            (r = sd_event_add_defer(event, &h->defer, on_defer, h)) < 0 ||
            (r = sd_event_add_time_relative(event, &h->sweep, CLOCK_MONOTONIC, 1000000u, 0, on_sweep, h)) <
                    0)
                goto fail;
        sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(h->defer, SD_EVENT_OFF);
        sd_event_source_set_enabled(h->sweep, SD_EVENT_ON);
        h->running = true;
        http_run(h);
        *ret = (struct mcp_http *)h;
        return 0;
fail:
        mcp_http_free((struct mcp_http *)h);
        return r;
}

struct mcp_server *
mcp_http_server(struct mcp_http *hh)
{
        return hh ? ((struct http *)hh)->shared : NULL;
}

const char *
mcp_http_bound(const struct mcp_http *hh)
{
        return ((const struct http *)hh)->bound;
}

void
mcp_http_free(struct mcp_http *hh)
{
        struct http *h = (struct http *)hh;

        if (!h)
                return;
        /* NULLed: session_free() below wakes suspended requests, and req_wake() would arm
         * h->defer. */
        h->io = sd_event_source_disable_unref(h->io);
        h->timer = sd_event_source_disable_unref(h->timer);
        h->defer = sd_event_source_disable_unref(h->defer);
        h->sweep = sd_event_source_disable_unref(h->sweep);
        mcp_http_denials_flush(h->denials, ab_now_us(), true, report_denial, h);
        mcp_http_denials_free(h->denials);
        h->denials = NULL;
        while (h->sessions)
                mcp_http_session_free(h->sessions);
        if (h->d) {
                /* Suspended connections must be resumed before MHD can stop. */
                for (size_t b = 0; b < STREAM_BUCKETS; b++)
                        for (struct req *q = h->buckets[b]; q; q = q->hnext) {
                                q->complete = q->broken = true;
                                if (q->suspended && q->conn) {
                                        q->suspended = false;
                                        MHD_resume_connection(q->conn);
                                }
                        }
                MHD_run(h->d);
                MHD_stop_daemon(h->d);
        }
        mcp_server_free(h->shared);
        if (h->listen_fd >= 0)
                close(h->listen_fd);
        if (h->unix_path) {
                unlink(h->unix_path);
                free(h->unix_path);
        }
        ab_wipe(h->tokens, sizeof h->tokens);
        sd_event_unref(h->event);
        free(h);
}
