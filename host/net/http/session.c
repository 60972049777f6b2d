/* SPDX-License-Identifier: MIT */
/* HTTP sessions and their requests (host/net/http/internal.h): the MCP server's transport
 * for a session, POSTs handed to it, responses routed back to the request that waits for them,
 * GET streams resumed by Last-Event-ID. */
#include "config.h"

#include "common/secmem.h"
#include "common/encode.h"
#include "host/net/http/internal.h"
static int session_send(void *userdata, void *ctx, const char *json, size_t len);

/* Never called (send_ctx is set): a message without a channel is dropped. */
static int
session_send_nowhere(void *userdata AB_UNUSED, const char *json AB_UNUSED, size_t len AB_UNUSED)
{
        return -EPIPE;
}

const struct mcp_transport_ops mcp_http_session_ops = {
        .send = session_send_nowhere,
        .send_ctx = session_send,
};

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

void
mcp_http_req_free(struct req *q)
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
        mcp_http_replay_drop_all(q);
        free(q->body);
        free(q->id_text);
        free(q->out);
        free(q);
}

/* Whether a session has a request with a live connection (detached streams kept for
 * resumption do not count). */
bool
mcp_http_session_busy(const struct session *s)
{
        for (const struct req *q = s->reqs; q; q = q->snext)
                if (q->conn)
                        return true;
        return false;
}

/* ---- sessions --------------------------------------------------------------------------- */

void
mcp_http_session_free(struct session *s)
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
                        mcp_http_req_free(q); /* a detached stream: nothing else holds it */
                        continue;
                }
                q->complete = true;
                q->broken = true;
                mcp_http_req_wake(q);
        }
        mcp_server_free(s->server);
        ab_wipe(s->id, sizeof s->id);
        free(s);
}

struct session *
mcp_http_session_find(struct http *h, const char *id)
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
                if (!mcp_http_session_busy(s) && mcp_server_inflight(s->server) == 0 &&
                    (!victim || s->last_usec < victim->last_usec))
                        victim = s;
        if (!victim)
                return -EBUSY;
        log_info("http: session table full: ending the idlest session");
        mcp_http_session_free(victim);
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
        ab_hex_encode_buf(raw, sizeof raw, s->id);
        ab_wipe(raw, sizeof raw);
        s->h = h;
        s->last_usec = ab_now_us();
        r = mcp_server_new(h->event, &h->mcp, &mcp_http_session_ops, h, &s->server);
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
        return code < 0 && code > -100000 ? (int)code : RPC_INTERNAL_ERROR;
}

/* The HTTP status of a JSON answer: 2026-07-28 maps JSON-RPC errors onto HTTP (and so do
 * malformed messages of either era); 2025 errors of a well-formed request are 200. */
static unsigned
status_of(const struct req *q, int code)
{
        if (code == 0)
                return 200;
        if (code == RPC_PARSE_ERROR || (code == RPC_INVALID_REQUEST && !q->id_text))
                return 400;
        if (!q->modern)
                return 200;
        if (code == RPC_METHOD_NOT_FOUND)
                return 404;
        if (code == RPC_INVALID_REQUEST || code == RPC_INVALID_PARAMS ||
            (code <= RPC_MCP_RANGE_FIRST && code >= RPC_MCP_RANGE_LAST))
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

void
mcp_http_req_wake(struct req *q)
{
        if (q->suspended && q->conn) {
                q->suspended = false;
                MHD_resume_connection(q->conn);
                if (q->h->defer) /* NULL while mcp_http_free() tears down */
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
                return -EPIPE; /* its client is gone: dropped */
        if (!q->sse && !final)
                return 0; /* a JSON answer carries only the response */
        if (q->sse) {
                n = snprintf(head, sizeof head, "id: %" PRIu64 "-%" PRIu64 "\ndata: ", q->number,
                             ++q->events);
                if (q->sess) {
                        /* 2025-11-25: kept for a Last-Event-ID resumption. */
                        r = out_append(q, head, (size_t)n, json, len, "\n\n", 2);
                        if (r == 0) {
                                r = mcp_http_replay_keep(q, q->events,
                                                         q->out + q->out_len - ((size_t)n + len + 2),
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
                        mcp_http_req_wake(q);
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
                        q->sess->last_usec = ab_now_us();
        }
        mcp_http_req_wake(q);
        return 0;
}

/* Hand the message to the server and answer (now, or by suspending until the answer): *msg,
 * the tree mcp_server_parse() made of the body (taken: *msg is NULL afterwards), or when
 * *msg is NULL the body's text, which the core parses and says what is wrong with. */
static enum MHD_Result
deliver(struct req *q, struct mcp_server *server, bool is_request, cJSON **msg, bool has_nul)
{
        void *ctx = NULL;
        int r;

        q->delivered = true;
        if (is_request) {
                req_link(q->h, q); /* numbers q: its answers come back with that number */
                ctx = (void *)(uintptr_t)q->number;
        }
        if (*msg)
                r = mcp_server_receive_parsed(server, AB_TAKE_PTR(*msg), has_nul, ctx);
        else
                r = mcp_server_receive_ctx(server, q->body, q->body_len, ctx);
        if (r < 0)
                return mcp_http_reply_plain(q->conn, 500, "internal error\n", NULL, NULL);
        if (!is_request) {
                /* A notification or a response: accepted, nothing to say. */
                q->queued = true;
                return mcp_http_reply(q->conn, 202, NULL, "", 0, NULL, NULL, NULL);
        }
        if (q->complete)
                return mcp_http_queue_json(q);
        /* SSE: the events are kept from now on, but the stream starts with its first event (or
         * after SSE_HEADERS_DEFER_S, on_sweep), so that a quick call's whole stream goes out in
         * one write instead of headers, event and end each in their own. */
        if (q->want_sse) {
                q->sse = true;
                q->sse_since_usec = ab_now_us();
        }
        q->suspended = true;
        MHD_suspend_connection(q->conn);
        return MHD_YES;
}

enum MHD_Result
mcp_http_handle_post(struct req *q)
{
        struct http *h = q->h;
        struct MHD_Connection *conn = q->conn;
        char vb[64], sb[128];
        const char *version = mcp_http_trimmed(mcp_http_header(conn, "MCP-Protocol-Version"), vb, sizeof vb);
        const char *sid = mcp_http_trimmed(mcp_http_header(conn, "Mcp-Session-Id"), sb, sizeof sb);
        const char *accept = mcp_http_header(conn, MHD_HTTP_HEADER_ACCEPT);
        const cJSON *id, *method, *params, *meta, *pv;
        cJSON *m = NULL;
        char why[MCP_PARSE_WHY_MAX];
        bool is_request, done, has_nul = false;
        enum MHD_Result ret;
        int r;

        if (q->too_large)
                return mcp_http_reply_plain(conn, 413, "the request body is larger than 4 MiB\n", NULL,
                                            NULL);
        /* Parsed once, as the core takes it; the core gets the tree. A body the core would
         * refuse is parsed here only for the checks below, and the core gets its text. */
        r = mcp_server_parse(q->body ? q->body : "", q->body_len, &m, &has_nul, why, sizeof why);
        if (r == -ENOMEM)
                return MHD_NO;
        if (r < 0)
                m = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
        if (!m || !cJSON_IsObject(m)) {
                /* Not one JSON-RPC object: the core says exactly what is wrong. */
                if (r < 0)
                        cJSON_Delete(AB_TAKE_PTR(m));
                if (version && strcmp(version, MODERN_VERSION) == 0)
                        q->modern = true;
                return deliver(q, h->shared, true, &m, has_nul);
        }
        if (r < 0 && mcp_id_exact(m, "id") < 0) { /* the id of HTTP-level errors, exactly as sent */
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
        q->want_sse = is_request && cJSON_IsString(method) &&
                      strcmp(method->valuestring, "tools/call") == 0 && accept &&
                      strstr(accept, "text/event-stream");

        if ((version && strcmp(version, MODERN_VERSION) == 0) || (!version && cJSON_IsString(pv))) {
                q->modern = true;
                if (!version) {
                        ret = mcp_http_reply_error(conn, 400, q->id_text, RPC_HEADER_MISMATCH,
                                                   "Header mismatch: _meta names a protocol version but the "
                                                   "MCP-Protocol-Version header is missing",
                                                   NULL);
                        goto out;
                }
                ret = mcp_http_check_modern_headers(q, m, version, &done);
                if (done)
                        goto out;
                if (r < 0)
                        cJSON_Delete(AB_TAKE_PTR(m));
                ret = deliver(q, h->shared, is_request, &m, has_nul);
                goto out;
        }
        if (version && !mcp_http_known_legacy_version(version)) {
                /* Not a version we speak: 2026-07-28's error, which also means 400 for 2025. */
                _cleanup_free_ char *data = NULL, *vj = NULL;
                cJSON *vs = cJSON_CreateString(version);

                vj = vs ? cJSON_PrintUnformatted(vs) : NULL;
                cJSON_Delete(vs);
                if (vj && asprintf(&data, "{\"supported\":%s,\"requested\":%s}", supported_json, vj) < 0)
                        data = NULL;
                q->modern = cJSON_IsString(pv);
                ret = mcp_http_reply_error(conn, 400, q->id_text, RPC_UNSUPPORTED_PROTOCOL_VERSION,
                                           "Unsupported protocol version (MCP-Protocol-Version header)",
                                           data);
                goto out;
        }
        /* 2025-11-25 and earlier: a session. */
        if (!sid) {
                if (!(cJSON_IsString(method) && strcmp(method->valuestring, "initialize") == 0 &&
                      is_request)) {
                        ret = mcp_http_reply_error(
                                conn, 400, q->id_text, RPC_INVALID_REQUEST,
                                "Bad Request: Mcp-Session-Id header is required (initialize first)", NULL);
                        goto out;
                }
                if (session_new(h, &q->sess) < 0) {
                        ret = mcp_http_reply_plain(conn, 503, "too many sessions\n", "Retry-After", "5");
                        goto out;
                }
                q->new_session = true;
        } else {
                q->sess = mcp_http_session_find(h, sid);
                if (!q->sess) {
                        ret = mcp_http_reply_error(conn, 404, q->id_text, RPC_SESSION_NOT_FOUND,
                                                   "Session not found", NULL);
                        goto out;
                }
                if (cJSON_IsString(method) && strcmp(method->valuestring, "initialize") == 0) {
                        ret = mcp_http_reply_error(conn, 400, q->id_text, RPC_INVALID_REQUEST,
                                                   "Invalid Request: this session is already initialized",
                                                   NULL);
                        goto out;
                }
        }
        q->sess->last_usec = ab_now_us();
        q->snext = q->sess->reqs;
        q->sess->reqs = q;
        if (r < 0)
                cJSON_Delete(AB_TAKE_PTR(m));
        ret = deliver(q, q->sess->server, is_request, &m, has_nul);
        if (q->new_session && q->complete && !q->broken && q->error_code == 0)
                q->sess->initialized = true;
        else if (q->new_session && q->complete) {
                /* initialize failed: no session. */
                struct session *s = q->sess;
                q->new_session = false;
                mcp_http_session_free(s);
        }
out:
        cJSON_Delete(m);
        return ret;
}

/* Keep a 2025-11-25 SSE stream whose connection went: what was not written is in its replay
 * list. At most MCP_HTTP_DETACHED_MAX per session: the oldest goes. */
void
mcp_http_detach(struct req *q)
{
        struct req *oldest = NULL;
        unsigned n = 0;

        free(q->out);
        q->out = NULL;
        q->out_len = q->out_off = 0;
        q->new_session = false;
        q->detached_usec = ab_now_us();
        for (struct req *o = q->sess->reqs; o; o = o->snext)
                if (!o->conn) {
                        n++;
                        if (!oldest || o->detached_usec < oldest->detached_usec)
                                oldest = o;
                }
        if (n > MCP_HTTP_DETACHED_MAX && oldest)
                mcp_http_req_free(oldest);
}

/* GET with Last-Event-ID "N-K" in session s: resume stream N after its event K on this
 * connection: replay what was kept after K, then go on live until the response. Returns
 * MHD_YES/MHD_NO; answers 400 when there is no such stream to resume. */
enum MHD_Result
mcp_http_resume_stream(struct req *tmp, struct session *s, const char *last_id, void **con_cls)
{
        struct MHD_Connection *conn = tmp->conn;
        struct req *q = NULL;
        unsigned long long number, after;
        char *end;

        errno = 0;
        number = strtoull(last_id, &end, 10);
        if (errno || end == last_id || *end != '-')
                return mcp_http_reply_plain(
                        conn, 400, "Bad Request: Last-Event-ID is not one of this server's event ids\n",
                        NULL, NULL);
        after = strtoull(end + 1, &end, 10);
        if (errno || *end)
                return mcp_http_reply_plain(
                        conn, 400, "Bad Request: Last-Event-ID is not one of this server's event ids\n",
                        NULL, NULL);
        for (struct req *o = s->reqs; o; o = o->snext)
                if (o->number == number && o->sse)
                        q = o;
        if (q && q->conn) {
                /* Its earlier connection is not seen closed yet (a suspended connection is not
                 * watched): wake it so that MHD notices, and ask the client to retry. */
                mcp_http_req_wake(q);
                return mcp_http_reply_plain(conn, 503,
                                            "the stream's earlier connection is still open: retry\n",
                                            "Retry-After", "1");
        }
        if (!q || after > q->events)
                return mcp_http_reply_plain(
                        conn, 400, "Bad Request: Last-Event-ID names no stream this session can resume\n",
                        NULL, NULL);
        if (after < q->replay_dropped)
                return mcp_http_reply_plain(
                        conn, 400, "Bad Request: the events after Last-Event-ID are no longer kept\n", NULL,
                        NULL);
        for (const struct event *e = q->replay_head; e; e = e->next)
                if (e->n > after && out_append(q, e->text, e->len, "", 0, "", 0) < 0)
                        return mcp_http_reply_plain(conn, 503, "out of memory\n", "Retry-After", "1");
        /* The GET's own request object gives way to the stream's. */
        *con_cls = q;
        mcp_http_req_free(tmp);
        q->conn = conn;
        q->detached_usec = 0;
        s->last_usec = ab_now_us();
        return mcp_http_queue_sse(q);
}
