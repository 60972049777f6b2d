/* SPDX-License-Identifier: MIT */
/* The MCP Streamable HTTP transport: what its parts share (the listener, sessions, requests
 * and their replay buffers, the limits). Not for use outside host/net/http/.
 *
 * libmicrohttpd with an external event loop: MHD's epoll descriptor is an sd-event io source,
 * MHD_run runs on readiness, on MHD's own timeout and after a connection is resumed. A POST
 * whose answer is not ready at once is suspended (JSON) or answered with an SSE stream whose
 * content callback suspends the connection while nothing is queued. docs/http.md describes
 * the behaviour. */
#ifndef AB_HOST_NET_HTTP_INTERNAL_H
#define AB_HOST_NET_HTTP_INTERNAL_H

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
#include "host/mcp/jsonrpc.h"
#include "host/mcp/calls.h"
#include "host/net/http/http.h"
#include "host/mcp/rpcid.h"
#include "host/net/http/deny.h"

#define MODERN_VERSION "2026-07-28"
#define ENDPOINT "/mcp"
#define STREAM_BUCKETS 1024
#define TOKEN_CACHE_SLOTS 64
#define HTTP_TOKEN_PREFIX "abh_" /* the broker's HTTP tokens: prefix and 43 base64url chars */
#define HTTP_TOKEN_CHARS 43
#define SESSION_ID_BYTES 24
#define SSE_HEADERS_DEFER_S 1 /* an SSE stream's headers wait at most this (+1 s) for its first event */

static const char *const legacy_versions[] = { "2025-11-25", "2025-06-18", "2025-03-26" };

struct http;
struct session;

/* One event sent on a 2025-11-25 SSE stream, kept for replay after a Last-Event-ID. */
struct event {
        struct event *next;
        uint64_t n; /* the event's number on its stream */
        size_t len;
        char text[]; /* "id: ...\ndata: ...\n\n" */
};

/* One HTTP request (a POST carrying one message, or a GET/DELETE), and, for a POST with a
 * request, the channel its answer goes out on: the ctx of mcp_server_receive_ctx() is its
 * number, looked up on every send, so a late message for a request that is gone is dropped. */
struct req {
        struct http *h;
        struct session *sess;        /* legacy session, or NULL */
        struct MHD_Connection *conn; /* NULL once MHD is done with it */
        uint64_t number;             /* ctx; 0 until it carries a request */
        struct req *hnext;           /* hash chain */
        struct req *snext;           /* the session's list */

        char *body;
        size_t body_len;
        bool too_large;
        bool modern;
        bool want_sse; /* tools/call and the client accepts text/event-stream */
        bool sse;      /* answered with an SSE stream (out holds its events) */
        bool queued;   /* an HTTP response is queued */
        bool suspended;
        bool complete;    /* the final JSON-RPC response is in out */
        bool broken;      /* the stream was dropped (reader too slow) */
        bool new_session; /* initialize created sess */
        bool delivered;   /* handed to a server */
        int error_code;   /* of the final answer, 0: a result */
        char *id_text;    /* the request id as JSON text */
        char *out;        /* JSON: the response; SSE: bytes not yet written */
        size_t out_len, out_off;
        unsigned http_status;
        uint64_t events;         /* SSE event counter */
        uint64_t sse_since_usec; /* SSE: when the stream was asked for (headers deferred) */
        /* 2025-11-25 SSE streams: what was sent, for resumption (GET with Last-Event-ID). */
        struct event *replay_head, *replay_tail;
        size_t replay_bytes;
        uint64_t replay_dropped; /* events 1..replay_dropped are no longer kept */
        uint64_t detached_usec;  /* its connection went before the end: when, else 0 */
};

struct session {
        struct http *h;
        char id[SESSION_ID_BYTES * 2 + 1];
        struct mcp_server *server;
        struct session *next;
        uint64_t last_usec;
        struct req *reqs; /* requests of this session still open */
        bool initialized; /* initialize answered with a result */
};

struct conninfo {
        struct conninfo *prev, *next;
        int fd;
        uint64_t start_usec;
        bool headers_seen;
        bool authed; /* a request on it showed a valid token (or no auth is needed) */
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
        unsigned port; /* 0 for Unix sockets */
        bool insecure_no_auth;
        mcp_http_token_check_fn check_token;
        void *check_userdata;
        unsigned session_idle_s;
        struct mcp_config mcp;
        struct mcp_server *shared;
        struct session *sessions;
        size_t n_sessions;
        size_t replay_total; /* bytes kept for Last-Event-ID, all streams */
        struct req *buckets[STREAM_BUCKETS];
        uint64_t next_number;
        struct conninfo *conns;
        struct token_slot tokens[TOKEN_CACHE_SLOTS];
        unsigned token_next;
        bool running;
        struct mcp_http_denials *denials; /* 401s per source, reported aggregated */
        mcp_http_deny_report_fn report_denials;
};

static const char supported_json[] = "[\"2026-07-28\",\"2025-11-25\",\"2025-06-18\",\"2025-03-26\"]";

/* Shared between the parts (defined in one, used in another). */
void mcp_http_req_free(struct req *q);

/* Forget every event a stream kept for replay (its events up to the last are then no longer
 * resumable). */
void mcp_http_replay_drop_all(struct req *q);

/* Keep one event of a 2025-11-25 SSE stream for replay, dropping the oldest past
 * MCP_HTTP_REPLAY_MAX bytes. Past MCP_HTTP_REPLAY_TOTAL_MAX for the whole process (many
 * sessions, each with cut streams), the stream keeps nothing more: it can no longer be
 * resumed (400), its call goes on. Returns 0 or -ENOMEM. */
int mcp_http_replay_keep(struct req *q, uint64_t n, const char *text, size_t len);

/* Whether a session has a request with a live connection (detached streams kept for
 * resumption do not count). */
bool mcp_http_session_busy(const struct session *s);

/* ---- sessions --------------------------------------------------------------------------- */

void mcp_http_session_free(struct session *s);

struct session *mcp_http_session_find(struct http *h, const char *id);

void mcp_http_req_wake(struct req *q);

/* ---- HTTP responses --------------------------------------------------------------------- */

void mcp_http_add_common_headers(struct MHD_Response *resp);

/* Queue a response with a body (copied). Returns MHD_YES/MHD_NO. */
enum MHD_Result mcp_http_reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                               const char *body, size_t len, const char *session_id, const char *extra_name,
                               const char *extra_value);

/* An HTTP error with a JSON-RPC error body (id: the request's, or null). */
enum MHD_Result mcp_http_reply_error(struct MHD_Connection *conn, unsigned status, const char *id_text,
                                     int code, const char *message, const char *data_json);

enum MHD_Result mcp_http_reply_plain(struct MHD_Connection *conn, unsigned status, const char *text,
                                     const char *hname, const char *hvalue);

/* The SSE stream of q, once its first event is there (or it waited SSE_HEADERS_DEFER_S): when
 * the whole answer is already in (the common case of a quick call), one buffer with a length,
 * sent with the headers in one write; otherwise a stream fed by sse_reader. */
enum MHD_Result mcp_http_queue_sse(struct req *q);

/* The final JSON answer of q, now that it is there. */
enum MHD_Result mcp_http_queue_json(struct req *q);

/* ---- checks ------------------------------------------------------------------------------ */

const char *mcp_http_header(struct MHD_Connection *conn, const char *name);

/* A header value without the spaces and tabs around it (RFC 9110 OWS), in buf. */
const char *mcp_http_trimmed(const char *v, char *buf, size_t size);

/* DNS-rebinding protection: Host must name us; Origin, when sent, too. */
bool mcp_http_origin_ok(const struct http *h, struct MHD_Connection *conn);

/* The bearer token check, with a cache of tokens the broker accepted (SHA-256 of the token,
 * for at most MCP_HTTP_TOKEN_CACHE_S seconds). Returns 0, -EPERM (reason set) or -errno. */
int mcp_http_token_ok(struct http *h, struct MHD_Connection *conn, const char **ret_reason);

/* Whether a comma-separated Accept value lists type (or a wildcard). */
bool mcp_http_accepts(const char *accept, const char *type);

/* Whether the request line and headers fit MCP_HTTP_HEADERS_MAX. (MHD's connection memory,
 * twice that, closes the connection of a request whose headers do not even fit there.) */
bool mcp_http_headers_fit(struct MHD_Connection *conn, const char *url, const char *method);

/* ---- POST -------------------------------------------------------------------------------- */

bool mcp_http_known_legacy_version(const char *v);

/* The 2026-07-28 header checks (SEP-2243): Mcp-Method and Mcp-Name against the body, the
 * version header against _meta. Returns MHD_YES with *ret_done set when it answered. */
enum MHD_Result mcp_http_check_modern_headers(struct req *q, const cJSON *m, const char *version,
                                              bool *ret_done);

enum MHD_Result mcp_http_handle_post(struct req *q);

/* Keep a 2025-11-25 SSE stream whose connection went: what was not written is in its replay
 * list. At most MCP_HTTP_DETACHED_MAX per session: the oldest goes. */
void mcp_http_detach(struct req *q);

/* GET with Last-Event-ID "N-K" in session s: resume stream N after its event K on this
 * connection: replay what was kept after K, then go on live until the response. Returns
 * MHD_YES/MHD_NO; answers 400 when there is no such stream to resume. */
enum MHD_Result mcp_http_resume_stream(struct req *tmp, struct session *s, const char *last_id,
                                       void **con_cls);

extern const struct mcp_transport_ops mcp_http_session_ops;

#endif /* AB_HOST_NET_HTTP_INTERNAL_H */
