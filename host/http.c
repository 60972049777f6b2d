/* The MCP Streamable HTTP transport (host/http.h) on libmicrohttpd with an external event
 * loop: MHD's epoll descriptor is an sd-event io source, MHD_run runs on readiness, on MHD's
 * own timeout and after a connection is resumed. A POST whose answer is not ready at once is
 * suspended (JSON) or answered with an SSE stream whose content callback suspends the
 * connection while nothing is queued. docs/http.md describes the behaviour. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <microhttpd.h>

#include "common/log.h"
#include "common/macros.h"
#include "host/calls.h"
#include "host/http.h"
#include "host/rpcid.h"

#define MODERN_VERSION "2026-07-28"
#define ENDPOINT "/mcp"
#define STREAM_BUCKETS 1024
#define TOKEN_CACHE_SLOTS 64
#define TOKEN_MAX 256
#define SESSION_ID_BYTES 24
#define SSE_HEADERS_DEFER_S 1          /* an SSE stream's headers wait at most this (+1 s) for its first event */

static const char *const legacy_versions[] = { "2025-11-25", "2025-06-18", "2025-03-26" };

struct http;
struct session;

/* One event sent on a 2025-11-25 SSE stream, kept for replay after a Last-Event-ID. */
struct event {
        struct event *next;
        uint64_t n;                    /* the event's number on its stream */
        size_t len;
        char text[];                   /* "id: ...\ndata: ...\n\n" */
};

/* One HTTP request (a POST carrying one message, or a GET/DELETE), and, for a POST with a
 * request, the channel its answer goes out on: the ctx of mcp_server_receive_ctx() is its
 * number, looked up on every send, so a late message for a request that is gone is dropped. */
struct req {
        struct http *h;
        struct session *sess;          /* legacy session, or NULL */
        struct MHD_Connection *conn;   /* NULL once MHD is done with it */
        uint64_t number;               /* ctx; 0 until it carries a request */
        struct req *hnext;             /* hash chain */
        struct req *snext;             /* the session's list */

        char *body;
        size_t body_len;
        bool too_large;
        bool modern;
        bool want_sse;                 /* tools/call and the client accepts text/event-stream */
        bool sse;                      /* answered with an SSE stream (out holds its events) */
        bool queued;                   /* an HTTP response is queued */
        bool suspended;
        bool complete;                 /* the final JSON-RPC response is in out */
        bool broken;                   /* the stream was dropped (reader too slow) */
        bool new_session;              /* initialize created sess */
        bool delivered;                /* handed to a server */
        int error_code;                /* of the final answer, 0: a result */
        char *id_text;                 /* the request id as JSON text */
        char *out;                     /* JSON: the response; SSE: bytes not yet written */
        size_t out_len, out_off;
        unsigned http_status;
        uint64_t events;               /* SSE event counter */
        uint64_t sse_since_usec;       /* SSE: when the stream was asked for (headers deferred) */
        /* 2025-11-25 SSE streams: what was sent, for resumption (GET with Last-Event-ID). */
        struct event *replay_head, *replay_tail;
        size_t replay_bytes;
        uint64_t replay_dropped;       /* events 1..replay_dropped are no longer kept */
        uint64_t detached_usec;        /* its connection went before the end: when, else 0 */
};

struct session {
        struct http *h;
        char id[SESSION_ID_BYTES * 2 + 1];
        struct mcp_server *server;
        struct session *next;
        uint64_t last_usec;
        struct req *reqs;              /* requests of this session still open */
        bool initialized;              /* initialize answered with a result */
};

struct conninfo {
        struct conninfo *prev, *next;
        int fd;
        uint64_t start_usec;
        bool headers_seen;
};

struct token_slot {
        unsigned char hash[32];
        uint64_t expires_usec;
};

struct http {
        sd_event *event;
        struct MHD_Daemon *d;
        sd_event_source *io, *timer, *defer, *sweep;
        int listen_fd;
        char *unix_path;
        char bound[128];
        unsigned port;                 /* 0 for Unix sockets */
        bool insecure_no_auth;
        mcp_http_token_check_fn check_token;
        void *check_userdata;
        unsigned session_idle_s;
        struct mcp_config mcp;
        struct mcp_server *shared;
        struct session *sessions;
        size_t n_sessions;
        size_t replay_total;           /* bytes kept for Last-Event-ID, all streams */
        struct req *buckets[STREAM_BUCKETS];
        uint64_t next_number;
        struct conninfo *conns;
        struct token_slot tokens[TOKEN_CACHE_SLOTS];
        unsigned token_next;
        bool running;
};

static void http_run(struct http *h);
static void req_wake(struct req *q);
static void replay_drop_all(struct req *q);
static int session_send(void *userdata, void *ctx, const char *json, size_t len);

/* Never called (send_ctx is set): a message without a channel is dropped. */
static int
session_send_nowhere(void *userdata AB_UNUSED, const char *json AB_UNUSED, size_t len AB_UNUSED)
{
        return -EPIPE;
}

static const struct mcp_transport_ops session_ops = {
        .send = session_send_nowhere,
        .send_ctx = session_send,
};

static uint64_t
now_usec(void)
{
        return mcp_now_usec();
}

/* ---- the request table (ctx -> req) ----------------------------------------------------- */

static void
req_link(struct http *h, struct req *q)
{
        size_t b;

        q->number = ++h->next_number;
        b = q->number % STREAM_BUCKETS;
        q->hnext = h->buckets[b];
        h->buckets[b] = q;
}

static void
req_unlink(struct http *h, struct req *q)
{
        struct req **p;

        if (!q->number)
                return;
        for (p = &h->buckets[q->number % STREAM_BUCKETS]; *p; p = &(*p)->hnext)
                if (*p == q) {
                        *p = q->hnext;
                        break;
                }
        q->number = 0;
}

static struct req *
req_find(struct http *h, uint64_t number)
{
        for (struct req *q = h->buckets[number % STREAM_BUCKETS]; q; q = q->hnext)
                if (q->number == number)
                        return q;
        return NULL;
}

static void
req_free(struct req *q)
{
        if (!q)
                return;
        req_unlink(q->h, q);
        if (q->sess) {
                for (struct req **p = &q->sess->reqs; *p; p = &(*p)->snext)
                        if (*p == q) {
                                *p = q->snext;
                                break;
                        }
        }
        replay_drop_all(q);
        free(q->body);
        free(q->id_text);
        free(q->out);
        free(q);
}

/* Forget every event a stream kept for replay (its events up to the last are then no longer
 * resumable). */
static void
replay_drop_all(struct req *q)
{
        while (q->replay_head) {
                struct event *e = q->replay_head;
                q->replay_head = e->next;
                q->h->replay_total -= e->len;
                q->replay_bytes -= e->len;
                q->replay_dropped = e->n;
                free(e);
        }
        q->replay_tail = NULL;
}

/* Keep one event of a 2025-11-25 SSE stream for replay, dropping the oldest past
 * MCP_HTTP_REPLAY_MAX bytes. Past MCP_HTTP_REPLAY_TOTAL_MAX for the whole process (many
 * sessions, each with cut streams), the stream keeps nothing more: it can no longer be
 * resumed (400), its call goes on. Returns 0 or -ENOMEM. */
static int
replay_keep(struct req *q, uint64_t n, const char *text, size_t len)
{
        struct event *e;

        if (q->h->replay_total + len > MCP_HTTP_REPLAY_TOTAL_MAX) {
                if (q->replay_head)
                        log_warning("http: %zu bytes kept for stream resumption: a stream stops being resumable",
                                    q->h->replay_total);
                replay_drop_all(q);
                q->replay_dropped = n;
                return 0;
        }
        e = malloc(sizeof *e + len);
        if (!e)
                return -ENOMEM;
        e->next = NULL;
        e->n = n;
        e->len = len;
        memcpy(e->text, text, len);
        if (q->replay_tail)
                q->replay_tail->next = e;
        else
                q->replay_head = e;
        q->replay_tail = e;
        q->replay_bytes += len;
        q->h->replay_total += len;
        while (q->replay_bytes > MCP_HTTP_REPLAY_MAX && q->replay_head != e) {
                struct event *old = q->replay_head;
                q->replay_head = old->next;
                q->replay_bytes -= old->len;
                q->h->replay_total -= old->len;
                q->replay_dropped = old->n;
                free(old);
        }
        return 0;
}

/* Whether a session has a request with a live connection (detached streams kept for
 * resumption do not count). */
static bool
session_busy(const struct session *s)
{
        for (const struct req *q = s->reqs; q; q = q->snext)
                if (q->conn)
                        return true;
        return false;
}

/* ---- sessions --------------------------------------------------------------------------- */

static void
session_free(struct session *s)
{
        struct http *h;

        if (!s)
                return;
        h = s->h;
        for (struct session **p = &h->sessions; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        h->n_sessions--;
                        break;
                }
        /* Open requests lose their session: their answers can no longer come. */
        while (s->reqs) {
                struct req *q = s->reqs;
                s->reqs = q->snext;
                q->sess = NULL;
                req_unlink(h, q);
                if (!q->conn) {
                        req_free(q);       /* a detached stream: nothing else holds it */
                        continue;
                }
                q->complete = true;
                q->broken = true;
                req_wake(q);
        }
        mcp_server_free(s->server);
        OPENSSL_cleanse(s->id, sizeof s->id);
        free(s);
}

static struct session *
session_find(struct http *h, const char *id)
{
        size_t n = strlen(id);

        if (n != SESSION_ID_BYTES * 2)
                return NULL;
        for (struct session *s = h->sessions; s; s = s->next)
                if (CRYPTO_memcmp(s->id, id, n) == 0)
                        return s;
        return NULL;
}

/* Make room for one more session: evict the idlest one with nothing open, if the table is
 * full. Returns 0 or -EBUSY (every session is busy). */
static int
session_make_room(struct http *h)
{
        struct session *victim = NULL;

        if (h->n_sessions < MCP_HTTP_SESSIONS_MAX)
                return 0;
        for (struct session *s = h->sessions; s; s = s->next)
                if (!session_busy(s) && mcp_server_inflight(s->server) == 0 &&
                    (!victim || s->last_usec < victim->last_usec))
                        victim = s;
        if (!victim)
                return -EBUSY;
        log_info("http: session table full: ending the idlest session");
        session_free(victim);
        return 0;
}

static int
session_new(struct http *h, struct session **ret)
{
        unsigned char raw[SESSION_ID_BYTES];
        struct session *s;
        int r;

        r = session_make_room(h);
        if (r < 0)
                return r;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        if (RAND_bytes(raw, sizeof raw) != 1) {
                free(s);
                return -EIO;
        }
        for (size_t i = 0; i < sizeof raw; i++)
                snprintf(s->id + 2 * i, 3, "%02x", raw[i]);
        OPENSSL_cleanse(raw, sizeof raw);
        s->h = h;
        s->last_usec = now_usec();
        r = mcp_server_new(h->event, &h->mcp, &session_ops, h, &s->server);
        if (r < 0) {
                free(s);
                return r;
        }
        s->next = h->sessions;
        h->sessions = s;
        h->n_sessions++;
        *ret = s;
        return 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

/* Append to q->out. Returns 0 or -ENOMEM/-ENOBUFS (past the stream's queue limit). */
static int
out_append(struct req *q, const char *a, size_t alen, const char *b, size_t blen, const char *c, size_t clen)
{
        size_t pending = q->out_len - q->out_off, need = pending + alen + blen + clen;
        char *n;

        if (need > MCP_HTTP_STREAM_QUEUE_MAX + MCP_HTTP_BODY_MAX * 2)
                return -ENOBUFS;
        n = malloc(need + 1);
        if (!n)
                return -ENOMEM;
        /* memcpy from NULL is undefined even for 0 bytes: copy only what is there. */
        if (pending)
                memcpy(n, q->out + q->out_off, pending);
        if (alen)
                memcpy(n + pending, a, alen);
        if (blen)
                memcpy(n + pending + alen, b, blen);
        if (clen)
                memcpy(n + pending + alen + blen, c, clen);
        n[need] = '\0';
        free(q->out);
        q->out = n;
        q->out_len = need;
        q->out_off = 0;
        return 0;
}

/* The JSON-RPC error code of a final message (the core builds errors as
 * {"jsonrpc":"2.0","id":ID,"error":{"code":N,...), 0 for a result. */
static int
error_code_of(const struct req *q, const char *json, size_t len)
{
        static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
        static const char err[] = ",\"error\":{\"code\":";
        size_t hl = sizeof head - 1, il, el = sizeof err - 1;
        const char *idt = q->id_text ? q->id_text : "null";
        long code;

        il = strlen(idt);
        if (len < hl + il + el || memcmp(json, head, hl) != 0)
                return 0;
        if (memcmp(json + hl, idt, il) != 0) {
                /* An error for id null (a parse error, say). */
                if (len < hl + 4 + el || memcmp(json + hl, "null", 4) != 0)
                        return 0;
                il = 4;
        }
        if (memcmp(json + hl + il, err, el) != 0)
                return 0;
        code = strtol(json + hl + il + el, NULL, 10);
        return code < 0 && code > -100000 ? (int)code : -32603;
}

/* The HTTP status of a JSON answer: 2026-07-28 maps JSON-RPC errors onto HTTP (and so do
 * malformed messages of either era); 2025 errors of a well-formed request are 200. */
static unsigned
status_of(const struct req *q, int code)
{
        if (code == 0)
                return 200;
        if (code == -32700 || (code == -32600 && !q->id_text))
                return 400;
        if (!q->modern)
                return 200;
        if (code == -32601)
                return 404;
        if (code == -32600 || code == -32602 || (code <= -32020 && code >= -32099))
                return 400;
        return 500;
}

/* Whether json is a JSON-RPC response (not a notification): the core writes "id" second. */
static bool
is_response(const char *json, size_t len)
{
        static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
        return len >= sizeof head - 1 && memcmp(json, head, sizeof head - 1) == 0;
}

static void
req_wake(struct req *q)
{
        if (q->suspended && q->conn) {
                q->suspended = false;
                MHD_resume_connection(q->conn);
                if (q->h->defer)           /* NULL while mcp_http_free() tears down */
                        sd_event_source_set_enabled(q->h->defer, SD_EVENT_ONESHOT);
        }
}

/* The servers' send: route the message to the request numbered ctx. */
static int
session_send(void *userdata, void *ctx, const char *json, size_t len)
{
        struct http *h = userdata;
        struct req *q = ctx ? req_find(h, (uint64_t)(uintptr_t)ctx) : NULL;
        bool final = is_response(json, len);
        char head[64];
        int r, n;

        if (!q || q->complete)
                return -EPIPE;             /* its client is gone: dropped */
        if (!q->sse && !final)
                return 0;                  /* a JSON answer carries only the response */
        if (q->sse) {
                n = snprintf(head, sizeof head, "id: %" PRIu64 "-%" PRIu64 "\ndata: ", q->number, ++q->events);
                if (q->sess) {
                        /* 2025-11-25: kept for a Last-Event-ID resumption. */
                        r = out_append(q, head, (size_t)n, json, len, "\n\n", 2);
                        if (r == 0) {
                                r = replay_keep(q, q->events, q->out + q->out_len - ((size_t)n + len + 2),
                                                (size_t)n + len + 2);
                                if (!q->conn) {
                                        /* Detached: nobody reads out; the replay list has it. */
                                        free(q->out);
                                        q->out = NULL;
                                        q->out_len = q->out_off = 0;
                                }
                        }
                } else
                        r = out_append(q, head, (size_t)n, json, len, "\n\n", 2);
                if (r == -ENOBUFS) {
                        log_warning("http: dropping a response stream its client does not read");
                        q->broken = true;
                        q->complete = true;
                        req_unlink(h, q);
                        if (q->modern)
                                mcp_server_cancel_ctx(h->shared, ctx);
                        req_wake(q);
                        return -EPIPE;
                }
        } else {
                q->error_code = error_code_of(q, json, len);
                q->http_status = status_of(q, q->error_code);
                r = out_append(q, json, len, "", 0, "", 0);
        }
        if (r < 0)
                return r;
        if (final) {
                q->complete = true;
                if (q->sess)
                        q->sess->last_usec = now_usec();
        }
        req_wake(q);
        return 0;
}

/* ---- HTTP responses --------------------------------------------------------------------- */

static void
add_common_headers(struct MHD_Response *resp)
{
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

/* Queue a response with a body (copied). Returns MHD_YES/MHD_NO. */
static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *ctype, const char *body, size_t len,
      const char *session_id, const char *extra_name, const char *extra_value)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        add_common_headers(resp);
        if (ctype)
                MHD_add_response_header(resp, "Content-Type", ctype);
        if (session_id)
                MHD_add_response_header(resp, "Mcp-Session-Id", session_id);
        if (extra_name)
                MHD_add_response_header(resp, extra_name, extra_value);
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* An HTTP error with a JSON-RPC error body (id: the request's, or null). */
static enum MHD_Result
reply_error(struct MHD_Connection *conn, unsigned status, const char *id_text, int code, const char *message,
            const char *data_json)
{
        cJSON *msg = cJSON_CreateString(message);
        _cleanup_free_ char *m = cJSON_PrintUnformatted(msg), *body = NULL;
        int n;

        cJSON_Delete(msg);
        if (!m)
                return MHD_NO;
        n = asprintf(&body, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":%d,\"message\":%s%s%s}}",
                     id_text ? id_text : "null", code, m, data_json ? ",\"data\":" : "", data_json ? data_json : "");
        if (n < 0) {
                body = NULL;
                return MHD_NO;
        }
        return reply(conn, status, "application/json", body, (size_t)n, NULL, NULL, NULL);
}

static enum MHD_Result
reply_plain(struct MHD_Connection *conn, unsigned status, const char *text, const char *hname, const char *hvalue)
{
        return reply(conn, status, "text/plain; charset=utf-8", text, strlen(text), NULL, hname, hvalue);
}

/* The SSE content callback: write what is queued; suspend while nothing is. */
static ssize_t
sse_reader(void *cls, uint64_t pos AB_UNUSED, char *buf, size_t max)
{
        struct req *q = cls;
        size_t n;

        if (q->broken)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        n = q->out_len - q->out_off;
        if (n > 0) {
                if (n > max)
                        n = max;
                memcpy(buf, q->out + q->out_off, n);
                q->out_off += n;
                if (q->out_off == q->out_len) {
                        free(q->out);
                        q->out = NULL;
                        q->out_len = q->out_off = 0;
                }
                return (ssize_t)n;
        }
        if (q->complete)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (q->conn && !q->suspended) {
                q->suspended = true;
                MHD_suspend_connection(q->conn);
        }
        return 0;
}

/* The SSE stream of q, once its first event is there (or it waited SSE_HEADERS_DEFER_S): when
 * the whole answer is already in (the common case of a quick call), one buffer with a length,
 * sent with the headers in one write; otherwise a stream fed by sse_reader. */
static enum MHD_Result
queue_sse(struct req *q)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (q->complete && !q->broken)
                resp = MHD_create_response_from_buffer(q->out_len - q->out_off, q->out ? q->out + q->out_off : (char *)"",
                                                       MHD_RESPMEM_MUST_COPY);
        else
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_reader, q, NULL);
        if (!resp)
                return MHD_NO;
        add_common_headers(resp);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        if (q->sess && q->new_session)
                MHD_add_response_header(resp, "Mcp-Session-Id", q->sess->id);
        q->queued = true;
        ret = MHD_queue_response(q->conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* The final JSON answer of q, now that it is there. */
static enum MHD_Result
queue_json(struct req *q)
{
        enum MHD_Result ret;

        q->queued = true;
        if (q->broken && !q->out)
                return reply_plain(q->conn, 404, "the session ended\n", NULL, NULL);
        ret = reply(q->conn, q->http_status ? q->http_status : 200, "application/json", q->out ? q->out : "",
                    q->out_len, q->sess && q->new_session && q->error_code == 0 ? q->sess->id : NULL, NULL, NULL);
        return ret;
}

/* ---- checks ------------------------------------------------------------------------------ */

static const char *
header(struct MHD_Connection *conn, const char *name)
{
        return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* A header value without the spaces and tabs around it (RFC 9110 OWS), in buf. */
static const char *
trimmed(const char *v, char *buf, size_t size)
{
        size_t n;

        if (!v)
                return NULL;
        while (*v == ' ' || *v == '\t')
                v++;
        n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
        if (n >= size)
                return NULL;
        memcpy(buf, v, n);
        buf[n] = '\0';
        return buf;
}

/* Whether host (a Host header value or the authority of an Origin) names this loopback
 * listener: localhost, 127.0.0.1 or [::1], with our port if it has one. */
static bool
host_ok(const struct http *h, const char *host, size_t len)
{
        static const char *const names[] = { "localhost", "127.0.0.1", "[::1]" };

        for (size_t i = 0; i < AB_ELEMENTSOF(names); i++) {
                size_t nl = strlen(names[i]);
                char port[16];

                if (len < nl || strncasecmp(host, names[i], nl) != 0)
                        continue;
                if (len == nl)
                        return true;
                if (host[nl] != ':' || len - nl - 1 == 0 || len - nl - 1 >= sizeof port)
                        continue;
                memcpy(port, host + nl + 1, len - nl - 1);
                port[len - nl - 1] = '\0';
                if (port[strspn(port, "0123456789")] != '\0')
                        continue;
                if (h->port == 0 || strtoul(port, NULL, 10) == h->port)
                        return true;
        }
        return false;
}

/* DNS-rebinding protection: Host must name us; Origin, when sent, too. */
static bool
origin_ok(const struct http *h, struct MHD_Connection *conn)
{
        const char *host = header(conn, MHD_HTTP_HEADER_HOST);
        const char *origin = header(conn, "Origin");

        if (!host || !host_ok(h, host, strlen(host)))
                return false;
        if (origin) {
                const char *a;
                size_t n;

                if (strncasecmp(origin, "http://", 7) == 0)
                        a = origin + 7;
                else if (strncasecmp(origin, "https://", 8) == 0)
                        a = origin + 8;
                else
                        return false;
                n = strcspn(a, "/");
                if (a[n] && strcmp(a + n, "/") != 0)
                        return false;
                if (!host_ok(h, a, n))
                        return false;
        }
        return true;
}

/* The bearer token check, with a cache of tokens the broker accepted (SHA-256 of the token,
 * for at most MCP_HTTP_TOKEN_CACHE_S seconds). Returns 0, -EPERM (reason set) or -errno. */
static int
token_ok(struct http *h, struct MHD_Connection *conn, const char **ret_reason)
{
        const char *auth = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
        unsigned char hash[32];
        unsigned ttl = 0, hl = 0;
        uint64_t now = now_usec();
        const char *tok, *reason = NULL;
        int r;

        if (!auth) {
                *ret_reason = "no bearer token";
                return -EPERM;
        }
        if (strncasecmp(auth, "Bearer ", 7) != 0) {
                *ret_reason = "the Authorization header is not a bearer token";
                return -EPERM;
        }
        tok = auth + 7;
        while (*tok == ' ')
                tok++;
        if (strlen(tok) == 0 || strlen(tok) > TOKEN_MAX) {
                *ret_reason = "malformed bearer token";
                return -EPERM;
        }
        if (!EVP_Digest(tok, strlen(tok), hash, &hl, EVP_sha256(), NULL) || hl != sizeof hash)
                return -EIO;
        for (size_t i = 0; i < TOKEN_CACHE_SLOTS; i++)
                if (h->tokens[i].expires_usec > now && CRYPTO_memcmp(h->tokens[i].hash, hash, sizeof hash) == 0)
                        return 0;
        if (!h->check_token) {
                *ret_reason = "no token checker";
                return -EPERM;
        }
        r = h->check_token(h->check_userdata, tok, &ttl, &reason);
        if (r == -EPERM) {
                *ret_reason = reason ? reason : "refused";
                return r;
        }
        if (r < 0)
                return r;
        if (ttl > MCP_HTTP_TOKEN_CACHE_S)
                ttl = MCP_HTTP_TOKEN_CACHE_S;
        if (ttl > 0) {
                struct token_slot *t = &h->tokens[h->token_next++ % TOKEN_CACHE_SLOTS];
                memcpy(t->hash, hash, sizeof hash);
                t->expires_usec = now + (uint64_t)ttl * 1000000u;
        }
        return 0;
}

/* Whether a comma-separated Accept value lists type (or a wildcard). */
static bool
accepts(const char *accept, const char *type)
{
        if (!accept)
                return true;               /* no Accept: anything */
        return strstr(accept, type) || strstr(accept, "*/*");
}

/* MHD_get_connection_values callback: add one header's size (name, ": ", value, CRLF). */
static enum MHD_Result
add_header_size(void *cls, enum MHD_ValueKind kind AB_UNUSED, const char *key, const char *value)
{
        size_t *total = cls;

        *total += strlen(key) + 4 + (value ? strlen(value) : 0);
        return MHD_YES;
}

/* Whether the request line and headers fit MCP_HTTP_HEADERS_MAX. (MHD's connection memory,
 * twice that, closes the connection of a request whose headers do not even fit there.) */
static bool
headers_fit(struct MHD_Connection *conn, const char *url, const char *method)
{
        size_t total = strlen(method) + 1 + strlen(url) + 11;

        MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &total);
        return total <= MCP_HTTP_HEADERS_MAX;
}

/* ---- POST -------------------------------------------------------------------------------- */

static bool
known_legacy_version(const char *v)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(legacy_versions); i++)
                if (strcmp(v, legacy_versions[i]) == 0)
                        return true;
        return false;
}

static const char supported_json[] = "[\"2026-07-28\",\"2025-11-25\",\"2025-06-18\",\"2025-03-26\"]";

/* The 2026-07-28 header checks (SEP-2243): Mcp-Method and Mcp-Name against the body, the
 * version header against _meta. Returns MHD_YES with *ret_done set when it answered. */
static enum MHD_Result
check_modern_headers(struct req *q, const cJSON *m, const char *version, bool *ret_done)
{
        struct MHD_Connection *conn = q->conn;
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(m, "method");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(m, "params");
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(meta, "io.modelcontextprotocol/protocolVersion");
        const cJSON *name = NULL;
        char b1[512], b2[512];
        const char *hm = trimmed(header(conn, "Mcp-Method"), b1, sizeof b1);
        const char *hn = trimmed(header(conn, "Mcp-Name"), b2, sizeof b2);

        *ret_done = true;
        if (!cJSON_IsString(method)) {
                *ret_done = false;         /* not a request: the core says what is wrong */
                return MHD_YES;
        }
        if (!hm || strcmp(hm, method->valuestring) != 0)
                return reply_error(conn, 400, q->id_text, -32020,
                                   hm ? "Header mismatch: Mcp-Method does not match the body's method"
                                      : "Header mismatch: the Mcp-Method header is required",
                                   NULL);
        if (strcmp(method->valuestring, "tools/call") == 0 || strcmp(method->valuestring, "prompts/get") == 0)
                name = cJSON_GetObjectItemCaseSensitive(params, "name");
        else if (strcmp(method->valuestring, "resources/read") == 0)
                name = cJSON_GetObjectItemCaseSensitive(params, "uri");
        if (cJSON_IsString(name) && (!hn || strcmp(hn, name->valuestring) != 0))
                return reply_error(conn, 400, q->id_text, -32020,
                                   hn ? "Header mismatch: Mcp-Name does not match the body's params"
                                      : "Header mismatch: the Mcp-Name header is required",
                                   NULL);
        if (cJSON_IsString(pv) && strcmp(pv->valuestring, version) != 0)
                return reply_error(conn, 400, q->id_text, -32020,
                                   "Header mismatch: MCP-Protocol-Version does not match "
                                   "_meta[\"io.modelcontextprotocol/protocolVersion\"]",
                                   NULL);
        if (!cJSON_IsString(pv))
                return reply_error(conn, 400, q->id_text, -32602,
                                   "Invalid params: params._meta[\"io.modelcontextprotocol/protocolVersion\"] is "
                                   "required on every " MODERN_VERSION " request",
                                   NULL);
        *ret_done = false;
        return MHD_YES;
}

/* Hand the message to the server and answer (now, or by suspending until the answer). */
static enum MHD_Result
deliver(struct req *q, struct mcp_server *server, bool is_request)
{
        int r;

        q->delivered = true;
        if (is_request)
                req_link(q->h, q);
        r = mcp_server_receive_ctx(server, q->body, q->body_len,
                                   is_request ? (void *)(uintptr_t)q->number : NULL);
        if (r < 0)
                return reply_plain(q->conn, 500, "internal error\n", NULL, NULL);
        if (!is_request) {
                /* A notification or a response: accepted, nothing to say. */
                q->queued = true;
                return reply(q->conn, 202, NULL, "", 0, NULL, NULL, NULL);
        }
        if (q->complete)
                return queue_json(q);
        /* SSE: the events are kept from now on, but the stream starts with its first event (or
         * after SSE_HEADERS_DEFER_S, on_sweep), so that a quick call's whole stream goes out in
         * one write instead of headers, event and end each in their own. */
        if (q->want_sse) {
                q->sse = true;
                q->sse_since_usec = now_usec();
        }
        q->suspended = true;
        MHD_suspend_connection(q->conn);
        return MHD_YES;
}

static enum MHD_Result
handle_post(struct req *q)
{
        struct http *h = q->h;
        struct MHD_Connection *conn = q->conn;
        char vb[64], sb[128];
        const char *version = trimmed(header(conn, "MCP-Protocol-Version"), vb, sizeof vb);
        const char *sid = trimmed(header(conn, "Mcp-Session-Id"), sb, sizeof sb);
        const char *accept = header(conn, MHD_HTTP_HEADER_ACCEPT);
        const cJSON *id, *method, *params, *meta, *pv;
        cJSON *m;
        bool is_request, done;
        enum MHD_Result ret;

        if (q->too_large)
                return reply_plain(conn, 413, "the request body is larger than 4 MiB\n", NULL, NULL);
        m = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
        if (!m || !cJSON_IsObject(m)) {
                cJSON_Delete(m);
                /* Not one JSON-RPC object: the core says exactly what is wrong. */
                if (version && strcmp(version, MODERN_VERSION) == 0)
                        q->modern = true;
                return deliver(q, h->shared, true);
        }
        if (mcp_id_exact(m, "id") < 0) {      /* the id of HTTP-level errors, exactly as sent */
                cJSON_Delete(m);
                return MHD_NO;
        }
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        method = cJSON_GetObjectItemCaseSensitive(m, "method");
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
        pv = cJSON_GetObjectItemCaseSensitive(meta, "io.modelcontextprotocol/protocolVersion");
        is_request = id && cJSON_IsString(method);
        if (mcp_id_valid(id))
                q->id_text = cJSON_PrintUnformatted(id);
        q->want_sse = is_request && cJSON_IsString(method) && strcmp(method->valuestring, "tools/call") == 0 &&
                      accept && strstr(accept, "text/event-stream");

        if ((version && strcmp(version, MODERN_VERSION) == 0) || (!version && cJSON_IsString(pv))) {
                q->modern = true;
                if (!version) {
                        ret = reply_error(conn, 400, q->id_text, -32020,
                                          "Header mismatch: _meta names a protocol version but the "
                                          "MCP-Protocol-Version header is missing",
                                          NULL);
                        goto out;
                }
                ret = check_modern_headers(q, m, version, &done);
                if (done)
                        goto out;
                ret = deliver(q, h->shared, is_request);
                goto out;
        }
        if (version && !known_legacy_version(version)) {
                /* Not a version we speak: 2026-07-28's error, which also means 400 for 2025. */
                _cleanup_free_ char *data = NULL, *vj = NULL;
                cJSON *vs = cJSON_CreateString(version);

                vj = vs ? cJSON_PrintUnformatted(vs) : NULL;
                cJSON_Delete(vs);
                if (vj && asprintf(&data, "{\"supported\":%s,\"requested\":%s}", supported_json, vj) < 0)
                        data = NULL;
                q->modern = cJSON_IsString(pv);
                ret = reply_error(conn, 400, q->id_text, -32022,
                                  "Unsupported protocol version (MCP-Protocol-Version header)", data);
                goto out;
        }
        /* 2025-11-25 and earlier: a session. */
        if (!sid) {
                if (!(cJSON_IsString(method) && strcmp(method->valuestring, "initialize") == 0 && is_request)) {
                        ret = reply_error(conn, 400, q->id_text, -32600,
                                          "Bad Request: Mcp-Session-Id header is required (initialize first)", NULL);
                        goto out;
                }
                if (session_new(h, &q->sess) < 0) {
                        ret = reply_plain(conn, 503, "too many sessions\n", "Retry-After", "5");
                        goto out;
                }
                q->new_session = true;
        } else {
                q->sess = session_find(h, sid);
                if (!q->sess) {
                        ret = reply_error(conn, 404, q->id_text, -32001, "Session not found", NULL);
                        goto out;
                }
                if (cJSON_IsString(method) && strcmp(method->valuestring, "initialize") == 0) {
                        ret = reply_error(conn, 400, q->id_text, -32600,
                                          "Invalid Request: this session is already initialized", NULL);
                        goto out;
                }
        }
        q->sess->last_usec = now_usec();
        q->snext = q->sess->reqs;
        q->sess->reqs = q;
        ret = deliver(q, q->sess->server, is_request);
        if (q->new_session && q->complete && !q->broken && q->error_code == 0)
                q->sess->initialized = true;
        else if (q->new_session && q->complete) {
                /* initialize failed: no session. */
                struct session *s = q->sess;
                q->new_session = false;
                session_free(s);
        }
out:
        cJSON_Delete(m);
        return ret;
}

/* Keep a 2025-11-25 SSE stream whose connection went: what was not written is in its replay
 * list. At most MCP_HTTP_DETACHED_MAX per session: the oldest goes. */
static void
detach(struct req *q)
{
        struct req *oldest = NULL;
        unsigned n = 0;

        free(q->out);
        q->out = NULL;
        q->out_len = q->out_off = 0;
        q->new_session = false;
        q->detached_usec = now_usec();
        for (struct req *o = q->sess->reqs; o; o = o->snext)
                if (!o->conn) {
                        n++;
                        if (!oldest || o->detached_usec < oldest->detached_usec)
                                oldest = o;
                }
        if (n > MCP_HTTP_DETACHED_MAX && oldest)
                req_free(oldest);
}

/* GET with Last-Event-ID "N-K" in session s: resume stream N after its event K on this
 * connection: replay what was kept after K, then go on live until the response. Returns
 * MHD_YES/MHD_NO; answers 400 when there is no such stream to resume. */
static enum MHD_Result
resume_stream(struct req *tmp, struct session *s, const char *last_id, void **con_cls)
{
        struct MHD_Connection *conn = tmp->conn;
        struct req *q = NULL;
        unsigned long long number, after;
        char *end;

        errno = 0;
        number = strtoull(last_id, &end, 10);
        if (errno || end == last_id || *end != '-')
                return reply_plain(conn, 400, "Bad Request: Last-Event-ID is not one of this server's event ids\n",
                                   NULL, NULL);
        after = strtoull(end + 1, &end, 10);
        if (errno || *end)
                return reply_plain(conn, 400, "Bad Request: Last-Event-ID is not one of this server's event ids\n",
                                   NULL, NULL);
        for (struct req *o = s->reqs; o; o = o->snext)
                if (o->number == number && o->sse)
                        q = o;
        if (q && q->conn) {
                /* Its earlier connection is not seen closed yet (a suspended connection is not
                 * watched): wake it so that MHD notices, and ask the client to retry. */
                req_wake(q);
                return reply_plain(conn, 503, "the stream's earlier connection is still open: retry\n", "Retry-After",
                                   "1");
        }
        if (!q || after > q->events)
                return reply_plain(conn, 400, "Bad Request: Last-Event-ID names no stream this session can resume\n",
                                   NULL, NULL);
        if (after < q->replay_dropped)
                return reply_plain(conn, 400, "Bad Request: the events after Last-Event-ID are no longer kept\n",
                                   NULL, NULL);
        for (const struct event *e = q->replay_head; e; e = e->next)
                if (e->n > after && out_append(q, e->text, e->len, "", 0, "", 0) < 0)
                        return reply_plain(conn, 503, "out of memory\n", "Retry-After", "1");
        /* The GET's own request object gives way to the stream's. */
        *con_cls = q;
        req_free(tmp);
        q->conn = conn;
        q->detached_usec = 0;
        s->last_usec = now_usec();
        return queue_sse(q);
}

/* ---- the access handler ------------------------------------------------------------------ */

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version AB_UNUSED, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
        struct http *h = cls;
        struct req *q = *con_cls;
        const char *reason = NULL;

        if (!q) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
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
                if (!headers_fit(conn, url, method)) {
                        q->queued = true;
                        return reply_plain(conn, 431, "Request Header Fields Too Large: at most 32 KiB\n", NULL,
                                           NULL);
                }
                if (!origin_ok(h, conn)) {
                        q->queued = true;
                        return reply_plain(conn, 403, "Forbidden: Host or Origin is not this local server\n", NULL,
                                           NULL);
                }
                if (strcmp(url, ENDPOINT) != 0) {
                        q->queued = true;
                        return reply_plain(conn, 404, "Not Found: the MCP endpoint is " ENDPOINT "\n", NULL, NULL);
                }
                if (!h->insecure_no_auth) {
                        r = token_ok(h, conn, &reason);
                        if (r < 0) {
                                q->queued = true;
                                if (r != -EPERM) {
                                        log_error("http: checking a token at the broker failed: %s", strerror(-r));
                                        return reply_plain(conn, 503, "the token could not be checked\n",
                                                           "Retry-After", "1");
                                }
                                return reply_plain(conn, 401, "Unauthorized: a valid bearer token is required\n",
                                                   "WWW-Authenticate",
                                                   "Bearer realm=\"agentbroker\", error=\"invalid_token\"");
                        }
                }
                if (strcmp(method, "POST") == 0) {
                        const char *ct = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
                        const char *accept = header(conn, MHD_HTTP_HEADER_ACCEPT);

                        cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
                        if (cl && strtoull(cl, NULL, 10) > MCP_HTTP_BODY_MAX) {
                                q->queued = true;
                                return reply_plain(conn, 413, "the request body is larger than 4 MiB\n", NULL, NULL);
                        }
                        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
                                q->queued = true;
                                return reply_plain(conn, 415, "Content-Type must be application/json\n", NULL, NULL);
                        }
                        if (!accepts(accept, "application/json") && !accepts(accept, "text/event-stream")) {
                                q->queued = true;
                                return reply_plain(conn, 406,
                                                   "Accept must list application/json or text/event-stream\n", NULL,
                                                   NULL);
                        }
                        return MHD_YES;
                }
                q->queued = true;
                if (strcmp(method, "DELETE") == 0) {
                        char vb[64], sb[128];
                        const char *v = trimmed(header(conn, "MCP-Protocol-Version"), vb, sizeof vb);
                        const char *sid = trimmed(header(conn, "Mcp-Session-Id"), sb, sizeof sb);
                        struct session *s;

                        if (v && strcmp(v, MODERN_VERSION) == 0)
                                return reply_plain(conn, 405, "Method Not Allowed\n", "Allow", "POST");
                        if (!sid)
                                return reply_plain(conn, 400, "Bad Request: Mcp-Session-Id header is required\n",
                                                   NULL, NULL);
                        s = session_find(h, sid);
                        if (!s)
                                return reply_plain(conn, 404, "Session not found\n", NULL, NULL);
                        session_free(s);
                        return reply(conn, 200, NULL, "", 0, NULL, NULL, NULL);
                }
                if (strcmp(method, "GET") == 0) {
                        char sb[128], lb[64];
                        const char *sid = trimmed(header(conn, "Mcp-Session-Id"), sb, sizeof sb);
                        const char *last = trimmed(header(conn, "Last-Event-ID"), lb, sizeof lb);
                        struct session *s = sid ? session_find(h, sid) : NULL;

                        if (sid && !s)
                                return reply_plain(conn, 404, "Session not found\n", NULL, NULL);
                        if (s && last && accepts(header(conn, MHD_HTTP_HEADER_ACCEPT), "text/event-stream"))
                                return resume_stream(q, s, last, con_cls);
                        return reply_plain(conn, 405, "Method Not Allowed: this server sends nothing unrequested\n",
                                           "Allow", "POST, DELETE");
                }
                return reply_plain(conn, 405, "Method Not Allowed\n", "Allow", "POST, DELETE");
        }

        if (q->queued) {
                *upload_data_size = 0;       /* answered already: discard the rest */
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
                        return queue_sse(q);
                if (q->complete)
                        return queue_json(q);
                q->suspended = true;
                MHD_suspend_connection(conn);
                return MHD_YES;
        }
        return handle_post(q);
}

/* MHD is done with a request: a 2026-07-28 request whose answer has not gone out is
 * cancelled (closing the stream is the cancel); a 2025 one is not (a disconnect is not a
 * cancel in 2025-11-25), and its late answer is dropped. */
static void
on_completed(void *cls, struct MHD_Connection *conn AB_UNUSED, void **con_cls, enum MHD_RequestTerminationCode toe)
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
                detach(q);
                return;
        }
        if (q->number && !q->complete && q->modern)
                mcp_server_cancel_ctx(h->shared, (void *)(uintptr_t)q->number);
        req_free(q);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
        struct http *h = cls;
        struct conninfo *c = *socket_context;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

                c = calloc(1, sizeof *c);
                if (!c)
                        return;
                c->fd = ci ? ci->connect_fd : -1;
                c->start_usec = now_usec();
                c->next = h->conns;
                if (h->conns)
                        h->conns->prev = c;
                h->conns = c;
                *socket_context = c;
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
        uint64_t now = now_usec();
        struct session *next;

        for (struct conninfo *c = h->conns; c; c = c->next)
                if (!c->headers_seen && c->fd >= 0 && now - c->start_usec > MCP_HTTP_HEADER_DEADLINE_S * 1000000ull) {
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
                                req_wake(q);
        for (struct session *ss = h->sessions; ss; ss = next) {
                struct req *qnext;

                next = ss->next;
                for (struct req *q = ss->reqs; q; q = qnext) {
                        qnext = q->snext;
                        if (!q->conn && now - q->detached_usec > (uint64_t)h->session_idle_s * 1000000u)
                                req_free(q);       /* a stream nobody resumed */
                }
                if (!session_busy(ss) && mcp_server_inflight(ss->server) == 0 &&
                    now - ss->last_usec > (uint64_t)h->session_idle_s * 1000000u) {
                        log_debug("http: session unused for %u s: ended", h->session_idle_s);
                        session_free(ss);
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
                if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 || (ntohl(s4->sin_addr.s_addr) >> 24) != 127)
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
        r = mcp_server_new(event, &shared_cfg, &session_ops, h, &h->shared);
        if (r < 0)
                goto fail;

        flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h,
                                MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)MCP_HTTP_CONNECTIONS_MAX,
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(path ? 0 : MCP_HTTP_PER_IP_MAX),
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MCP_HTTP_IDLE_TIMEOUT_S,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MCP_HTTP_HEADERS_MAX * 2,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                MHD_OPTION_END);
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
            (r = sd_event_add_time_relative(event, &h->sweep, CLOCK_MONOTONIC, 1000000u, 0, on_sweep, h)) < 0)
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
        while (h->sessions)
                session_free(h->sessions);
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
        OPENSSL_cleanse(h->tokens, sizeof h->tokens);
        sd_event_unref(h->event);
        free(h);
}
