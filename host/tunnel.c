/* The MCP tunnel transport (host/tunnel.h, docs/tunnel.md).
 *
 * Two threads. The lws thread runs lws_service() and owns every struct lws; it only moves
 * bytes: it dials when asked, frames outgoing messages (large ones in MCP_TUNNEL_CHUNK
 * fragments, so pings go out between them), reassembles incoming ones and reports what
 * happened. The sd-event thread owns everything else: the MCP server, the dial JWT (from the
 * broker), backoff, pings, audit, the call store and its checkpoint. They share struct shared
 * under a mutex: commands and outgoing messages one way (then lws_cancel_service()), events
 * the other way (then a write to an eventfd that sd-event watches). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/secmem.h"
#include "host/rpcid.h"
#include "host/tunnel.h"

#define DEFAULT_PING_MS 15000
#define DEFAULT_BACKOFF_MIN_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_HEALTHY_MS 30000
#define DEFAULT_STORE_ENTRIES 4096
#define DEFAULT_STORE_BYTES (64u * 1024 * 1024)
#define PENDING_MAX_BYTES (64u * 1024 * 1024)   /* responses waiting for a connection */
#define CHECKPOINT_MAX_FILE (512u * 1024 * 1024)
#define HASH_BUCKETS 4096
#define SESSION_MAX 128
#define CONNECT_TIMEOUT_S 10
#define RPC_OUTCOME_UNKNOWN -32001

/* ---- shared between the two threads ------------------------------------------------------ */

struct omsg {                        /* an outgoing message */
        struct omsg *next;
        size_t len, off;             /* bytes, bytes already written */
        bool response;               /* worth delivering after a reconnect */
        unsigned char buf[];         /* LWS_PRE bytes, then the message */
};

enum tev_type { TEV_CONNECTED, TEV_MESSAGE, TEV_OVERSIZE, TEV_PONG, TEV_CLOSED, TEV_DIAL_FAILED };

struct tev {                         /* an event for the sd-event thread */
        struct tev *next;
        enum tev_type type;
        const char *reason;          /* static: TEV_CLOSED, TEV_DIAL_FAILED */
        size_t len;
        char text[];                 /* TEV_MESSAGE: the message; TEV_DIAL_FAILED: detail */
};

struct shared {
        pthread_mutex_t lock;
        struct omsg *out_head, *out_tail;
        struct tev *ev_head, *ev_tail;
        bool dial;                   /* dial with jwt */
        char *jwt;
        bool ping, close, kill;
        bool stop;
};

/* ---- the call store ---------------------------------------------------------------------- */

enum tc_state { TC_RUNNING, TC_DONE, TC_LOST };

struct tcall {
        struct tcall *hnext;         /* hash chain */
        struct tcall *prev, *next;   /* order of completion (done and lost entries) */
        char *key;
        enum tc_state state;
        cJSON *waiters;              /* external request ids waiting for the outcome */
        char *outcome;               /* "\"result\":{...}" or "\"error\":{...}" */
        size_t bytes;
};

/* A request handed to the server under an internal id. */
struct treq {
        struct treq *next;
        uint64_t iid;
        cJSON *ext_id;
        struct tcall *call;          /* a tools/call, or NULL */
};

struct mcp_tunnel {
        sd_event *event;
        struct mcp_server *server;
        struct hb_broker *broker;
        char *run;
        char *url;
        char scheme_tls;
        char *host, *path;
        int port;
        char *ca_file;
        unsigned char pin[32];
        bool has_pin;
        unsigned ping_ms, backoff_min_ms, backoff_max_ms, healthy_ms;
        char session[SESSION_MAX + 1];

        /* lws */
        struct lws_context *ctx;
        struct lws *wsi;                     /* lws thread only */
        pthread_t thread;
        bool thread_started;
        struct shared sh;
        int efd;
        sd_event_source *efd_src;
        /* lws thread only: reassembly and the current dial's TLS findings */
        char *rbuf;
        size_t rlen, rcap;
        unsigned char *wbuf;                 /* LWS_PRE + MCP_TUNNEL_CHUNK: the fragment being written */
        bool roversize, pin_failed, tls_failed, dial_reported;

        /* sd-event thread */
        enum { ST_IDLE, ST_DIALING, ST_UP, ST_STOPPED } state;
        sd_event_source *retry_src, *ping_src, *healthy_src;
        unsigned attempts;
        unsigned missed_pongs;
        const char *close_reason;
        uint64_t dials;
        struct omsg *pend_head, *pend_tail;  /* responses waiting for a connection */
        size_t pend_bytes;

        struct tcall *buckets[HASH_BUCKETS];
        struct tcall *done_head, *done_tail; /* oldest first */
        size_t n_done, done_bytes, max_entries, max_bytes;
        struct treq *reqs[256];
        uint64_t next_iid;

        char *ckpt_path;
        int ckpt_fd;
        size_t ckpt_lines;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t
hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ull;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

static struct omsg *
omsg_new(const char *text, size_t len, bool response)
{
        struct omsg *m = malloc(sizeof *m + LWS_PRE + len);

        if (!m)
                return NULL;
        m->next = NULL;
        m->len = len;
        m->off = 0;
        m->response = response;
        memcpy(m->buf + LWS_PRE, text, len);
        return m;
}

static void
omsg_list_free(struct omsg *m)
{
        while (m) {
                struct omsg *n = m->next;
                free(m);
                m = n;
        }
}

/* Queue an event for the sd-event thread (lws thread). */
static void
push_event(struct mcp_tunnel *t, enum tev_type type, const char *reason, const char *text, size_t len)
{
        struct tev *e = malloc(sizeof *e + len + 1);
        uint64_t one = 1;

        if (!e) {
                lwsl_err("tunnel: out of memory queueing an event\n");
                return;
        }
        e->next = NULL;
        e->type = type;
        e->reason = reason;
        e->len = len;
        if (len)
                memcpy(e->text, text, len);
        e->text[len] = '\0';
        pthread_mutex_lock(&t->sh.lock);
        if (t->sh.ev_tail)
                t->sh.ev_tail->next = e;
        else
                t->sh.ev_head = e;
        t->sh.ev_tail = e;
        pthread_mutex_unlock(&t->sh.lock);
        (void)!write(t->efd, &one, sizeof one);
}

/* ---- the lws thread ----------------------------------------------------------------------- */

static void
lws_dial(struct mcp_tunnel *t)
{
        struct lws_client_connect_info ci = {};

        t->pin_failed = t->tls_failed = t->dial_reported = false;
        ci.context = t->ctx;
        ci.address = t->host;
        ci.port = t->port;
        ci.path = t->path;
        ci.host = t->host;
        ci.origin = t->host;
        ci.protocol = "mcp";
        ci.ssl_connection = t->scheme_tls ? LCCSCF_USE_SSL : 0;
        ci.pwsi = &t->wsi;
        ci.userdata = t;
        if (!lws_client_connect_via_info(&ci) && !t->dial_reported) {
                t->dial_reported = true;
                push_event(t, TEV_DIAL_FAILED, "dial-failed", "connect failed", 14);
        }
}

/* The certificate check of a dial: note a failed chain, and compare the leaf with the pin. */
static int
verify_cert(struct mcp_tunnel *t, X509_STORE_CTX *xs, int preverify_ok)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        X509 *cert;

        if (!preverify_ok) {
                t->tls_failed = true;
                return 0;
        }
        if (!t->has_pin || X509_STORE_CTX_get_error_depth(xs) != 0)
                return 0;
        cert = X509_STORE_CTX_get_current_cert(xs);
        if (!cert || X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32 ||
            CRYPTO_memcmp(md, t->pin, 32) != 0) {
                t->pin_failed = true;
                X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
                return 1;
        }
        return 0;
}

/* Write the next fragment of the queue's head (and a ping first if one is due). Returns 0
 * or -1 (close). */
static int
lws_writable(struct mcp_tunnel *t, struct lws *wsi)
{
        struct omsg *m;
        bool ping, more;
        size_t chunk;
        int flags;

        pthread_mutex_lock(&t->sh.lock);
        if (t->sh.close) {
                t->sh.close = false;
                pthread_mutex_unlock(&t->sh.lock);
                lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)"bye", 3);
                return -1;
        }
        ping = t->sh.ping;
        t->sh.ping = false;
        m = t->sh.out_head;
        pthread_mutex_unlock(&t->sh.lock);
        if (ping) {
                unsigned char b[LWS_PRE + 8];
                if (lws_write(wsi, b + LWS_PRE, 0, LWS_WRITE_PING) < 0)
                        return -1;
                if (m)
                        lws_callback_on_writable(wsi);
                return 0;
        }
        if (!m)
                return 0;
        chunk = m->len - m->off < MCP_TUNNEL_CHUNK ? m->len - m->off : MCP_TUNNEL_CHUNK;
        flags = lws_write_ws_flags(LWS_WRITE_TEXT, m->off == 0, m->off + chunk == m->len);
        /* lws masks a client's payload in place (and writes the frame header into the LWS_PRE
         * bytes before it): it gets a copy, so that the queued message stays intact. A message
         * not written completely when the connection drops is sent again whole after the
         * reconnect; sending the masked bytes again would put garbage on the wire (invalid
         * UTF-8 or JSON once masked a second time). */
        memcpy(t->wbuf + LWS_PRE, m->buf + LWS_PRE + m->off, chunk);
        if (lws_write(wsi, t->wbuf + LWS_PRE, chunk, (enum lws_write_protocol)flags) < (int)chunk)
                return -1;
        m->off += chunk;
        pthread_mutex_lock(&t->sh.lock);
        if (m->off == m->len) {
                t->sh.out_head = m->next;
                if (!t->sh.out_head)
                        t->sh.out_tail = NULL;
                free(m);
        }
        more = t->sh.out_head || t->sh.ping || t->sh.close;
        pthread_mutex_unlock(&t->sh.lock);
        if (more)
                lws_callback_on_writable(wsi);
        return 0;
}

/* Collect a fragment of an incoming message; hand over complete messages. */
static void
lws_receive(struct mcp_tunnel *t, struct lws *wsi, const void *in, size_t len)
{
        if (lws_is_first_fragment(wsi)) {
                t->rlen = 0;
                t->roversize = false;
        }
        if (!t->roversize) {
                if (t->rlen + len > MCP_LINE_MAX) {
                        t->roversize = true;
                        free(t->rbuf);
                        t->rbuf = NULL;
                        t->rlen = t->rcap = 0;
                } else {
                        if (t->rlen + len > t->rcap) {
                                size_t cap = t->rcap ? t->rcap : 4096;
                                char *p;
                                while (cap < t->rlen + len)
                                        cap *= 2;
                                p = realloc(t->rbuf, cap);
                                if (!p) {
                                        t->roversize = true;
                                        return;
                                }
                                t->rbuf = p;
                                t->rcap = cap;
                        }
                        memcpy(t->rbuf + t->rlen, in, len);
                        t->rlen += len;
                }
        }
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
                return;
        if (t->roversize)
                push_event(t, TEV_OVERSIZE, NULL, NULL, 0);
        else if (lws_frame_is_binary(wsi))
                lwsl_warn("tunnel: ignoring a binary message\n");
        else
                push_event(t, TEV_MESSAGE, NULL, t->rbuf, t->rlen);
        t->rlen = 0;
        if (t->rcap > 1024 * 1024) {
                free(t->rbuf);
                t->rbuf = NULL;
                t->rcap = 0;
        }
}

static int
lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user AB_UNUSED, void *in, size_t len)
{
        struct mcp_tunnel *t = lws_context_user(lws_get_context(wsi));
        const char *why;

        switch (reason) {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
                bool dial, kill, want;

                pthread_mutex_lock(&t->sh.lock);
                dial = t->sh.dial && !t->wsi;
                t->sh.dial = t->sh.dial && !dial;
                kill = t->sh.kill;
                t->sh.kill = false;
                want = t->sh.out_head || t->sh.ping || t->sh.close;
                pthread_mutex_unlock(&t->sh.lock);
                if (dial)
                        lws_dial(t);
                else if (t->wsi && kill)
                        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                else if (t->wsi && want)
                        lws_callback_on_writable(t->wsi);
                break;
        }
        case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
                return verify_cert(t, user, (int)len);
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
                unsigned char **p = in, *end = *p + len;
                char *value = NULL;
                int r = 0;

                pthread_mutex_lock(&t->sh.lock);
                if (t->sh.jwt && asprintf(&value, "Bearer %s", t->sh.jwt) < 0)
                        value = NULL;
                ab_strfreezero(AB_TAKE_PTR(t->sh.jwt));
                pthread_mutex_unlock(&t->sh.lock);
                if (!value ||
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:", (unsigned char *)value,
                                                (int)strlen(value), p, end) ||
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"agentbroker-session:",
                                                (unsigned char *)t->session, (int)strlen(t->session), p, end))
                        r = -1;
                ab_strfreezero(value);
                return r;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                t->rlen = 0;
                push_event(t, TEV_CONNECTED, NULL, NULL, 0);
                lws_callback_on_writable(wsi);
                break;
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
                unsigned status = lws_http_client_http_response(wsi);
                const char *detail = in ? in : "connection failed";

                if (t->pin_failed)
                        why = "pin-mismatch";
                else if (t->tls_failed)
                        why = "tls-verify";
                else if (status == 401 || status == 403 || (in && (strstr(in, " 401") || strstr(in, " 403"))))
                        why = "jwt-rejected";
                else
                        why = "dial-failed";
                t->wsi = NULL;
                if (!t->dial_reported) {
                        t->dial_reported = true;
                        push_event(t, TEV_DIAL_FAILED, why, detail, strnlen(detail, 200));
                }
                break;
        }
        case LWS_CALLBACK_CLIENT_RECEIVE:
                lws_receive(t, wsi, in, len);
                break;
        case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
                push_event(t, TEV_PONG, NULL, NULL, 0);
                break;
        case LWS_CALLBACK_CLIENT_WRITEABLE:
                return lws_writable(t, wsi);
        case LWS_CALLBACK_CLIENT_CLOSED:
                t->wsi = NULL;
                push_event(t, TEV_CLOSED, "closed", NULL, 0);
                break;
        default:
                break;
        }
        return 0;
}

static const struct lws_protocols protocols[] = {
        { .name = "mcp", .callback = lws_cb, .rx_buffer_size = 65536 },
        { 0 },
};

static void *
lws_thread(void *userdata)
{
        struct mcp_tunnel *t = userdata;

        for (;;) {
                bool stop;

                pthread_mutex_lock(&t->sh.lock);
                stop = t->sh.stop;
                pthread_mutex_unlock(&t->sh.lock);
                if (stop)
                        break;
                lws_service(t->ctx, 0);
        }
        return NULL;
}

/* ---- the call store and its checkpoint (sd-event thread) --------------------------------- */

static struct tcall *
store_find(struct mcp_tunnel *t, const char *key)
{
        for (struct tcall *c = t->buckets[hash_str(key) % HASH_BUCKETS]; c; c = c->hnext)
                if (strcmp(c->key, key) == 0)
                        return c;
        return NULL;
}

static struct tcall *
store_add(struct mcp_tunnel *t, const char *key)
{
        struct tcall *c = calloc(1, sizeof *c);
        size_t b = hash_str(key) % HASH_BUCKETS;

        if (!c || !(c->key = strdup(key)) || !(c->waiters = cJSON_CreateArray())) {
                if (c)
                        free(c->key);
                free(c);
                return NULL;
        }
        c->hnext = t->buckets[b];
        t->buckets[b] = c;
        return c;
}

static void
done_unlink(struct mcp_tunnel *t, struct tcall *c)
{
        if (c->state == TC_RUNNING)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                t->done_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                t->done_tail = c->prev;
        c->prev = c->next = NULL;
        t->n_done--;
        t->done_bytes -= c->bytes;
}

static void
store_remove(struct mcp_tunnel *t, struct tcall *c)
{
        struct tcall **pp = &t->buckets[hash_str(c->key) % HASH_BUCKETS];

        while (*pp && *pp != c)
                pp = &(*pp)->hnext;
        if (*pp)
                *pp = c->hnext;
        done_unlink(t, c);
        free(c->key);
        free(c->outcome);
        cJSON_Delete(c->waiters);
        free(c);
}

/* Mark c done (or lost) with outcome (taken) and keep the store within its bounds. */
static void
store_finish(struct mcp_tunnel *t, struct tcall *c, enum tc_state state, char *outcome)
{
        free(c->outcome);
        c->outcome = outcome;
        c->bytes = strlen(c->key) + (outcome ? strlen(outcome) : 0) + 64;
        c->state = state;
        c->prev = t->done_tail;
        c->next = NULL;
        if (t->done_tail)
                t->done_tail->next = c;
        else
                t->done_head = c;
        t->done_tail = c;
        t->n_done++;
        t->done_bytes += c->bytes;
        while (t->done_head && t->done_head != c && (t->n_done > t->max_entries || t->done_bytes > t->max_bytes))
                store_remove(t, t->done_head);
}

/* One checkpoint line for c: {"k":key,"o":{"result"|"error":...}} when done, {"k":key,"s":state}
 * otherwise. Returns a new string (with its newline) or NULL. */
static char *
ckpt_line(const struct tcall *c, const char *state)
{
        _cleanup_free_ char *k = NULL;
        cJSON *ks = cJSON_CreateString(c->key);
        char *line = NULL;

        k = ks ? cJSON_PrintUnformatted(ks) : NULL;
        cJSON_Delete(ks);
        if (!k)
                return NULL;
        if (c->state == TC_DONE && !state) {
                if (asprintf(&line, "{\"k\":%s,\"o\":{%s}}\n", k, c->outcome) < 0)
                        line = NULL;
        } else if (asprintf(&line, "{\"k\":%s,\"s\":\"%s\"}\n", k, state ? state : "lost") < 0)
                line = NULL;
        return line;
}

static int
write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Rewrite the checkpoint from the store: a temporary file (0600) renamed over it, then
 * reopened for appending. Returns 0 or -errno. */
static int
ckpt_compact(struct mcp_tunnel *t)
{
        _cleanup_free_ char *tmp = NULL;
        char head[SESSION_MAX + 32];
        int fd, r = 0;

        if (!t->ckpt_path)
                return 0;
        if (asprintf(&tmp, "%s.tmp", t->ckpt_path) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        snprintf(head, sizeof head, "{\"session\":\"%s\"}\n", t->session);
        r = write_all(fd, head, strlen(head));
        for (struct tcall *c = t->done_head; c && r == 0; c = c->next) {
                _cleanup_free_ char *line = ckpt_line(c, NULL);
                r = line ? write_all(fd, line, strlen(line)) : -ENOMEM;
        }
        for (size_t b = 0; b < HASH_BUCKETS && r == 0; b++)
                for (struct tcall *c = t->buckets[b]; c && r == 0; c = c->hnext)
                        if (c->state == TC_RUNNING) {
                                _cleanup_free_ char *line = ckpt_line(c, "running");
                                r = line ? write_all(fd, line, strlen(line)) : -ENOMEM;
                        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r == 0 && rename(tmp, t->ckpt_path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                log_error("cannot write the tunnel checkpoint %s: %s", t->ckpt_path, strerror(-r));
                return r;
        }
        if (t->ckpt_fd >= 0)
                close(t->ckpt_fd);
        t->ckpt_fd = open(t->ckpt_path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        if (t->ckpt_fd < 0)
                return -errno;
        t->ckpt_lines = t->n_done;
        return 0;
}

/* Append c's state to the checkpoint; compact it when it has grown to twice the store. */
static void
ckpt_append(struct mcp_tunnel *t, const struct tcall *c, const char *state)
{
        _cleanup_free_ char *line = NULL;
        int r;

        if (t->ckpt_fd < 0)
                return;
        if (++t->ckpt_lines > 2 * t->max_entries + 64) {
                (void)ckpt_compact(t);
                return;
        }
        line = ckpt_line(c, state);
        r = line ? write_all(t->ckpt_fd, line, strlen(line)) : -ENOMEM;
        if (r < 0)
                log_error("cannot append to the tunnel checkpoint %s: %s", t->ckpt_path, strerror(-r));
}

/* Read the checkpoint (if any): the session id, recorded outcomes, and the calls that were
 * running when the host stopped (their outcome is unknown: they are never run again).
 * A torn last line is ignored. Returns 0 or -errno. */
static int
ckpt_load(struct mcp_tunnel *t)
{
        _cleanup_free_ char *data = NULL;
        struct stat st;
        size_t n = 0, loaded = 0;
        char *line, *save = NULL;
        int fd;

        fd = open(t->ckpt_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > CHECKPOINT_MAX_FILE) {
                close(fd);
                log_error("the tunnel checkpoint %s is not a regular file of at most %u MiB", t->ckpt_path,
                          CHECKPOINT_MAX_FILE >> 20);
                return -EINVAL;
        }
        data = malloc((size_t)st.st_size + 1);
        if (!data) {
                close(fd);
                return -ENOMEM;
        }
        while (n < (size_t)st.st_size) {
                ssize_t r = read(fd, data + n, (size_t)st.st_size - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                n += (size_t)r;
        }
        close(fd);
        data[n] = '\0';
        for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                cJSON *j = cJSON_Parse(line), *k, *o, *s, *sid;
                struct tcall *c;

                if (!j)
                        continue;
                sid = cJSON_GetObjectItemCaseSensitive(j, "session");
                k = cJSON_GetObjectItemCaseSensitive(j, "k");
                o = cJSON_GetObjectItemCaseSensitive(j, "o");
                s = cJSON_GetObjectItemCaseSensitive(j, "s");
                if (cJSON_IsString(sid) && !t->session[0] && strlen(sid->valuestring) <= SESSION_MAX)
                        snprintf(t->session, sizeof t->session, "%s", sid->valuestring);
                if (cJSON_IsString(k) && strlen(k->valuestring) <= MCP_TUNNEL_KEY_MAX * 2 + 64) {
                        c = store_find(t, k->valuestring);
                        if (c && c->state != TC_RUNNING)
                                done_unlink(t, c);
                        if (!c)
                                c = store_add(t, k->valuestring);
                        if (c && cJSON_IsObject(o) && o->child &&
                            (strcmp(o->child->string, "result") == 0 || strcmp(o->child->string, "error") == 0)) {
                                _cleanup_free_ char *v = cJSON_PrintUnformatted(o->child);
                                char *out = NULL;
                                if (v && asprintf(&out, "\"%s\":%s", o->child->string, v) >= 0) {
                                        c->state = TC_RUNNING;
                                        store_finish(t, c, TC_DONE, out);
                                        loaded++;
                                }
                        } else if (c && cJSON_IsString(s) &&
                                   (strcmp(s->valuestring, "cancelled") == 0 || strcmp(s->valuestring, "retry") == 0)) {
                                /* cancelled, or refused before it ran: forgotten */
                                c->state = TC_RUNNING;
                                store_remove(t, c);
                        } else if (c && cJSON_IsString(s)) {
                                /* running or lost: it may have had its effect; never run it again */
                                c->state = TC_RUNNING;
                                store_finish(t, c, TC_LOST, NULL);
                        }
                }
                cJSON_Delete(j);
        }
        log_info("tunnel checkpoint %s: %zu recorded results, %zu entries", t->ckpt_path, loaded, t->n_done);
        return 0;
}

/* ---- sending (sd-event thread) ------------------------------------------------------------ */

static void
kick(struct mcp_tunnel *t)
{
        lws_cancel_service(t->ctx);
}

/* Queue m for the connection, or (a response, while disconnected) for after the reconnect. */
static void
deliver(struct mcp_tunnel *t, struct omsg *m)
{
        if (t->state == ST_UP) {
                pthread_mutex_lock(&t->sh.lock);
                if (t->sh.out_tail)
                        t->sh.out_tail->next = m;
                else
                        t->sh.out_head = m;
                t->sh.out_tail = m;
                pthread_mutex_unlock(&t->sh.lock);
                kick(t);
                return;
        }
        if (!m->response || t->pend_bytes + m->len > PENDING_MAX_BYTES) {
                free(m);
                return;
        }
        t->pend_bytes += m->len;
        if (t->pend_tail)
                t->pend_tail->next = m;
        else
                t->pend_head = m;
        t->pend_tail = m;
}

static void
deliver_text(struct mcp_tunnel *t, const char *text, size_t len, bool response)
{
        struct omsg *m = omsg_new(text, len, response);

        if (m)
                deliver(t, m);
        else
                log_error("out of memory queueing a message");
}

/* Send {"jsonrpc":"2.0","id":<ext_id>,<outcome>}. */
static void
deliver_outcome(struct mcp_tunnel *t, const cJSON *ext_id, const char *outcome)
{
        _cleanup_free_ char *id = cJSON_PrintUnformatted(ext_id);
        _cleanup_free_ char *text = NULL;
        int n;

        if (!id || (n = asprintf(&text, "{\"jsonrpc\":\"2.0\",\"id\":%s,%s}", id, outcome)) < 0) {
                text = NULL;
                log_error("out of memory answering a call");
                return;
        }
        deliver_text(t, text, (size_t)n, true);
}

static struct treq **
req_slot(struct mcp_tunnel *t, uint64_t iid)
{
        struct treq **pp = &t->reqs[iid % AB_ELEMENTSOF(t->reqs)];

        while (*pp && (*pp)->iid != iid)
                pp = &(*pp)->next;
        return pp;
}

static void
req_free(struct treq *q)
{
        if (!q)
                return;
        cJSON_Delete(q->ext_id);
        free(q);
}

/* mcp_transport_ops.send: a message of the server. Responses are mapped back from internal
 * ids; a tools/call's outcome is recorded (store, checkpoint) and goes to every request
 * waiting for it. */
static int
tunnel_send(void *userdata, const char *json, size_t len)
{
        struct mcp_tunnel *t = userdata;
        cJSON *m = cJSON_ParseWithLength(json, len), *id, *member, *code;
        struct treq **pp = NULL, *q;
        char *outcome = NULL, *v;
        bool passing;

        if (t->state == ST_STOPPED) {
                cJSON_Delete(m);
                return 0;
        }
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        member = cJSON_GetObjectItemCaseSensitive(m, "result");
        if (!member)
                member = cJSON_GetObjectItemCaseSensitive(m, "error");
        if (!m || !cJSON_IsNumber(id) || !member || cJSON_GetObjectItemCaseSensitive(m, "method")) {
                /* A notification or an error without an id: as it is. */
                cJSON_Delete(m);
                deliver_text(t, json, len, false);
                return 0;
        }
        /* internal ids are 1..next_iid: anything else answers no request (and converting an
         * out-of-range double to uint64_t would be undefined behaviour) */
        q = NULL;
        if (id->valuedouble >= 1 && id->valuedouble <= (double)t->next_iid) {
                pp = req_slot(t, (uint64_t)id->valuedouble);
                q = *pp;
        }
        if (!q) {
                cJSON_Delete(m);
                log_debug("a response for no known request");
                return 0;
        }
        *pp = q->next;
        /* A JSON-RPC error to a tools/call other than an internal error means the server
         * refused it before running a tool (invalid params or request, not initialized yet);
         * a result marked MCP_META_NOT_RUN was refused for a reason that passes. Neither is
         * recorded as the call's outcome. An internal error (-32603) may come after the tool
         * ran (the result could not be built): it is recorded, so the call is not run again. */
        code = cJSON_GetObjectItemCaseSensitive(member, "code");
        passing = (strcmp(member->string, "error") == 0 && cJSON_IsNumber(code) && code->valuedouble != -32603) ||
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(member, "_meta"),
                                                                MCP_META_NOT_RUN));
        v = cJSON_PrintUnformatted(member);
        if (!v || asprintf(&outcome, "\"%s\":%s", member->string, v) < 0)
                outcome = NULL;
        free(v);
        cJSON_Delete(m);
        if (!outcome) {
                req_free(q);
                return -ENOMEM;
        }
        if (q->call && passing) {
                /* Refused before it ran, for a reason that passes: every request waiting gets
                 * the refusal, and the key is forgotten so that a re-sent call runs. */
                struct tcall *c = q->call;
                const cJSON *w;

                cJSON_ArrayForEach(w, c->waiters)
                        deliver_outcome(t, w, outcome);
                ckpt_append(t, c, "retry");
                store_remove(t, c);
                free(outcome);
        } else if (q->call) {
                struct tcall *c = q->call;
                const cJSON *w;

                store_finish(t, c, TC_DONE, outcome);
                ckpt_append(t, c, NULL);
                cJSON_ArrayForEach(w, c->waiters)
                        deliver_outcome(t, w, c->outcome);
                cJSON_Delete(c->waiters);
                c->waiters = cJSON_CreateArray();
        } else {
                deliver_outcome(t, q->ext_id, outcome);
                free(outcome);
        }
        req_free(q);
        return 0;
}

const struct mcp_transport_ops mcp_tunnel_ops = {
        .send = tunnel_send,
};

/* ---- receiving (sd-event thread) ---------------------------------------------------------- */

static bool
waiting(const struct tcall *c, const cJSON *id)
{
        const cJSON *w;

        cJSON_ArrayForEach(w, c->waiters)
                if (cJSON_Compare(w, id, true))
                        return true;
        return false;
}

/* notifications/cancelled for an external id: the request stops waiting; a call nobody waits
 * for any more is cancelled in the server. */
static void
cancel_ext(struct mcp_tunnel *t, const cJSON *ext)
{
        for (size_t b = 0; b < AB_ELEMENTSOF(t->reqs); b++)
                for (struct treq **pp = &t->reqs[b]; *pp; pp = &(*pp)->next) {
                        struct treq *q = *pp;
                        char msg[128];

                        if (!q->call || !waiting(q->call, ext))
                                continue;
                        for (int i = cJSON_GetArraySize(q->call->waiters) - 1; i >= 0; i--)
                                if (cJSON_Compare(cJSON_GetArrayItem(q->call->waiters, i), ext, true))
                                        cJSON_DeleteItemFromArray(q->call->waiters, i);
                        if (cJSON_GetArraySize(q->call->waiters) > 0)
                                return;
                        ckpt_append(t, q->call, "cancelled");
                        store_remove(t, q->call);
                        *pp = q->next;
                        snprintf(msg, sizeof msg,
                                 "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                                 "{\"requestId\":%" PRIu64 "}}", q->iid);
                        req_free(q);
                        if (t->server)
                                mcp_server_receive(t->server, msg, strlen(msg));
                        return;
                }
}

/* The call's key: the control plane's idempotency key, else session id + request id.
 * Returns a new string, or NULL with *ret_err set for an unusable key. */
static char *
call_key(struct mcp_tunnel *t, const cJSON *params, const cJSON *id, const char **ret_err)
{
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(meta, MCP_TUNNEL_META_KEY);
        _cleanup_free_ char *ids = NULL;
        char *key = NULL;

        if (k) {
                if (!cJSON_IsString(k) || !k->valuestring[0] || strlen(k->valuestring) > MCP_TUNNEL_KEY_MAX) {
                        *ret_err = "Invalid params: params._meta[\"" MCP_TUNNEL_META_KEY
                                   "\"] must be a non-empty string of at most 256 bytes";
                        return NULL;
                }
                if (asprintf(&key, "k:%s", k->valuestring) < 0)
                        key = NULL;
                return key;
        }
        ids = cJSON_PrintUnformatted(id);
        if (!ids || asprintf(&key, "s:%s:%s", t->session, ids) < 0)
                key = NULL;
        return key;
}

static void
refuse(struct mcp_tunnel *t, const cJSON *id, int code, const char *message)
{
        cJSON *e = cJSON_CreateObject();
        _cleanup_free_ char *v = NULL, *outcome = NULL;

        if (!e || !cJSON_AddNumberToObject(e, "code", code) || !cJSON_AddStringToObject(e, "message", message) ||
            !(v = cJSON_PrintUnformatted(e)) || asprintf(&outcome, "\"error\":%s", v) < 0) {
                outcome = NULL;
                cJSON_Delete(e);
                return;
        }
        cJSON_Delete(e);
        deliver_outcome(t, id, outcome);
}

/* One message from the control plane. */
static void
on_message(struct mcp_tunnel *t, const char *text, size_t len)
{
        cJSON *m = cJSON_ParseWithLength(text, len), *id, *method, *params;
        struct tcall *c = NULL;
        struct treq *q;
        _cleanup_free_ char *key = NULL, *out = NULL;

        if (!t->server) {
                cJSON_Delete(m);
                return;
        }
        /* the control plane's ids come back exactly as it sent them (host/rpcid.h) */
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        if (mcp_id_exact(m, "id") < 0 || mcp_id_exact(params, "requestId") < 0) {
                cJSON_Delete(m);
                return;
        }
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        method = cJSON_GetObjectItemCaseSensitive(m, "method");
        if (!m || !cJSON_IsObject(m) || !cJSON_IsString(method) || !id || !mcp_id_valid(id)) {
                if (cJSON_IsString(method) && !id && strcmp(method->valuestring, "notifications/cancelled") == 0 &&
                    cJSON_IsObject(params)) {
                        cancel_ext(t, cJSON_GetObjectItemCaseSensitive(params, "requestId"));
                        cJSON_Delete(m);
                        return;
                }
                /* Notifications, responses, invalid messages: the server answers them as on stdio. */
                cJSON_Delete(m);
                mcp_server_receive(t->server, text, len);
                return;
        }
        if (strcmp(method->valuestring, "tools/call") == 0) {
                const char *err = NULL;

                key = call_key(t, params, id, &err);
                if (!key) {
                        refuse(t, id, -32602, err ? err : "Internal error: out of memory");
                        cJSON_Delete(m);
                        return;
                }
                c = store_find(t, key);
                if (c && c->state == TC_DONE) {
                        log_debug("call %s answered from the store", key);
                        deliver_outcome(t, id, c->outcome);
                        cJSON_Delete(m);
                        return;
                }
                if (c && c->state == TC_LOST) {
                        refuse(t, id, RPC_OUTCOME_UNKNOWN,
                               "the host restarted while this call was running: its outcome is unknown, and it is "
                               "not run again");
                        cJSON_Delete(m);
                        return;
                }
                if (c) {
                        log_debug("call %s joins the running one", key);
                        if (!waiting(c, id))
                                cJSON_AddItemToArray(c->waiters, cJSON_Duplicate(id, true));
                        cJSON_Delete(m);
                        return;
                }
                c = store_add(t, key);
                if (!c) {
                        cJSON_Delete(m);
                        return;
                }
                cJSON_AddItemToArray(c->waiters, cJSON_Duplicate(id, true));
                ckpt_append(t, c, "running");
        }
        q = calloc(1, sizeof *q);
        if (!q || !(q->ext_id = cJSON_Duplicate(id, true))) {
                free(q);
                if (c)
                        store_remove(t, c);
                cJSON_Delete(m);
                return;
        }
        q->iid = ++t->next_iid;
        q->call = c;
        cJSON_ReplaceItemInObjectCaseSensitive(m, "id", cJSON_CreateNumber((double)q->iid));
        out = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
        if (!out) {
                if (c)
                        store_remove(t, c);
                req_free(q);
                return;
        }
        q->next = t->reqs[q->iid % AB_ELEMENTSOF(t->reqs)];
        t->reqs[q->iid % AB_ELEMENTSOF(t->reqs)] = q;
        mcp_server_receive(t->server, out, strlen(out));
}

/* ---- the connection's life (sd-event thread) --------------------------------------------- */

static void schedule_dial(struct mcp_tunnel *t);

static void
audit_event(struct mcp_tunnel *t, const char *event, const char *reason)
{
        int r = hb_tunnel_event(t->broker, event, t->url, t->session, reason, t->run);

        if (r < 0)
                log_warning("the broker did not record tunnel-%s: %s", event, strerror(-r));
}

static int
on_dial_timer(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;
        char *jwt = NULL;
        int r;

        t->retry_src = sd_event_source_disable_unref(t->retry_src);
        if (t->state == ST_STOPPED)
                return 0;
        t->dials++;
        log_info("tunnel: dial attempt %" PRIu64 " to %s", t->dials, t->url);
        r = hb_identity_jwt(t->broker, t->url, t->session, t->run, &jwt);
        if (r < 0) {
                log_error("tunnel: the broker would not mint the dial JWT: %s", strerror(-r));
                audit_event(t, "auth-fail", "identity-jwt");
                schedule_dial(t);
                return 0;
        }
        pthread_mutex_lock(&t->sh.lock);
        ab_strfreezero(t->sh.jwt);
        t->sh.jwt = jwt;
        t->sh.dial = true;
        pthread_mutex_unlock(&t->sh.lock);
        t->state = ST_DIALING;
        kick(t);
        return 0;
}

/* Dial again after a full-jitter delay: uniform in [0, min(max, min * 2^attempts)]. */
static void
schedule_dial(struct mcp_tunnel *t)
{
        uint64_t cap = t->backoff_min_ms, delay;
        uint32_t rnd = 0;
        int r;

        if (t->state == ST_STOPPED)
                return;
        t->state = ST_IDLE;
        for (unsigned i = 0; i < t->attempts && cap < t->backoff_max_ms; i++)
                cap *= 2;
        if (cap > t->backoff_max_ms)
                cap = t->backoff_max_ms;
        if (RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1)
                rnd = (uint32_t)random();
        delay = (uint64_t)rnd % (cap + 1);
        t->attempts++;
        log_info("tunnel: next dial in %" PRIu64 " ms (backoff cap %" PRIu64 " ms)", delay, cap);
        t->retry_src = sd_event_source_disable_unref(t->retry_src);
        r = sd_event_add_time_relative(t->event, &t->retry_src, CLOCK_MONOTONIC, delay * 1000, 1000, on_dial_timer, t);
        if (r < 0)
                log_error("tunnel: cannot arm the dial timer: %s", strerror(-r));
}

static int
on_healthy(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;

        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        if (t->state == ST_UP) {
                log_debug("tunnel: healthy for %u ms: backoff reset", t->healthy_ms);
                t->attempts = 0;
        }
        return 0;
}

/* Ask the lws thread to drop the connection now (no closing handshake): reason is audited. */
static void
kill_connection(struct mcp_tunnel *t, const char *reason)
{
        t->close_reason = reason;
        pthread_mutex_lock(&t->sh.lock);
        t->sh.kill = true;
        pthread_mutex_unlock(&t->sh.lock);
        kick(t);
}

static int
on_ping_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct mcp_tunnel *t = userdata;

        if (t->state != ST_UP)
                return 0;
        if (t->missed_pongs >= 2) {
                log_warning("tunnel: two pings went unanswered: the connection is dead");
                kill_connection(t, "ping-timeout");
                return 0;
        }
        t->missed_pongs++;
        pthread_mutex_lock(&t->sh.lock);
        t->sh.ping = true;
        pthread_mutex_unlock(&t->sh.lock);
        kick(t);
        sd_event_source_set_time(s, usec + (uint64_t)t->ping_ms * 1000);
        sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static void
on_connected(struct mcp_tunnel *t)
{
        uint64_t now;
        size_t n = 0;

        t->state = ST_UP;
        t->missed_pongs = 0;
        t->close_reason = NULL;
        log_info("tunnel: connected to %s (session %s)", t->url, t->session);
        audit_event(t, "connect", NULL);
        sd_event_now(t->event, CLOCK_MONOTONIC, &now);
        t->ping_src = sd_event_source_disable_unref(t->ping_src);
        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        (void)sd_event_add_time(t->event, &t->ping_src, CLOCK_MONOTONIC, now + (uint64_t)t->ping_ms * 1000, 1000,
                                on_ping_timer, t);
        (void)sd_event_add_time(t->event, &t->healthy_src, CLOCK_MONOTONIC, now + (uint64_t)t->healthy_ms * 1000,
                                1000, on_healthy, t);
        /* Results that finished while disconnected go first. */
        while (t->pend_head) {
                struct omsg *m = t->pend_head;
                t->pend_head = m->next;
                m->next = NULL;
                t->pend_bytes -= m->len;
                deliver(t, m);
                n++;
        }
        t->pend_tail = NULL;
        if (n)
                log_info("tunnel: %zu queued results sent", n);
}

static void
on_closed(struct mcp_tunnel *t, const char *reason)
{
        struct omsg *m, *keep_head = NULL, *keep_tail = NULL;

        t->ping_src = sd_event_source_disable_unref(t->ping_src);
        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        /* What was not written yet waits for the next connection (responses only). */
        pthread_mutex_lock(&t->sh.lock);
        m = t->sh.out_head;
        t->sh.out_head = t->sh.out_tail = NULL;
        t->sh.ping = t->sh.close = t->sh.kill = false;
        pthread_mutex_unlock(&t->sh.lock);
        while (m) {
                struct omsg *n = m->next;
                if (m->response) {
                        m->off = 0;
                        m->next = NULL;
                        if (keep_tail)
                                keep_tail->next = m;
                        else
                                keep_head = m;
                        keep_tail = m;
                        t->pend_bytes += m->len;
                } else
                        free(m);
                m = n;
        }
        if (keep_head) {
                keep_tail->next = t->pend_head;
                if (!t->pend_head)
                        t->pend_tail = keep_tail;
                t->pend_head = keep_head;
        }
        reason = t->close_reason ? t->close_reason : reason;
        t->close_reason = NULL;
        log_notice("tunnel: disconnected (%s)", reason);
        audit_event(t, "disconnect", reason);
        schedule_dial(t);
}

static int
on_events(sd_event_source *s AB_UNUSED, int fd, uint32_t revents AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;
        struct tev *e;
        uint64_t v;

        (void)!read(fd, &v, sizeof v);
        pthread_mutex_lock(&t->sh.lock);
        e = t->sh.ev_head;
        t->sh.ev_head = t->sh.ev_tail = NULL;
        pthread_mutex_unlock(&t->sh.lock);
        while (e) {
                struct tev *n = e->next;

                if (t->state != ST_STOPPED)
                        switch (e->type) {
                        case TEV_CONNECTED:
                                on_connected(t);
                                break;
                        case TEV_MESSAGE:
                                on_message(t, e->text, e->len);
                                break;
                        case TEV_OVERSIZE:
                                log_warning("tunnel: a message longer than %d bytes was refused", MCP_LINE_MAX);
                                if (t->server)
                                        mcp_server_refuse(t->server,
                                                          "Invalid Request: the message is larger than 4194304 bytes");
                                break;
                        case TEV_PONG:
                                t->missed_pongs = 0;
                                break;
                        case TEV_CLOSED:
                                on_closed(t, e->reason);
                                break;
                        case TEV_DIAL_FAILED:
                                if (strcmp(e->reason, "dial-failed") == 0)
                                        log_warning("tunnel: dial to %s failed: %s", t->url, e->text);
                                else {
                                        log_error("tunnel: %s refused (%s): %s", t->url, e->reason, e->text);
                                        audit_event(t, "auth-fail", e->reason);
                                }
                                schedule_dial(t);
                                break;
                        }
                free(e);
                e = n;
        }
        return 0;
}

/* ---- set-up ------------------------------------------------------------------------------- */

static bool
is_loopback(const char *host)
{
        return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
               strcmp(host, "[::1]") == 0;
}

/* Split cfg->url into scheme, host, port and path. Returns 0 or -EINVAL (logged). */
static int
parse_url(struct mcp_tunnel *t, const struct mcp_tunnel_config *cfg)
{
        _cleanup_free_ char *copy = strdup(cfg->url);
        const char *prot, *addr, *path;
        int port;

        if (!copy)
                return -ENOMEM;
        if (strlen(cfg->url) > 512 || lws_parse_uri(copy, &prot, &addr, &port, &path) || !addr[0]) {
                log_error("--tunnel: '%s' is not a wss://HOST[:PORT]/PATH URL", cfg->url);
                return -EINVAL;
        }
        if (strcmp(prot, "wss") == 0)
                t->scheme_tls = 1;
        else if (strcmp(prot, "ws") == 0) {
                if (!cfg->allow_plain || !is_loopback(addr)) {
                        log_error("--tunnel: ws:// (no TLS) is allowed only to a loopback address and with "
                                  "--tunnel-insecure-loopback");
                        return -EINVAL;
                }
        } else {
                log_error("--tunnel: the URL must start with wss://");
                return -EINVAL;
        }
        t->host = strdup(addr);
        if (asprintf(&t->path, "/%s", path) < 0)
                t->path = NULL;
        if (!t->host || !t->path)
                return -ENOMEM;
        t->port = port;
        return 0;
}

static int
parse_pin(struct mcp_tunnel *t, const char *pin)
{
        size_t n = 0;

        for (const char *p = pin; *p; p++) {
                int v;
                if (*p == ':')
                        continue;
                v = OPENSSL_hexchar2int((unsigned char)*p);
                if (v < 0 || n >= 64)
                        goto bad;
                t->pin[n / 2] = (unsigned char)(n % 2 ? (t->pin[n / 2] | v) : v << 4);
                n++;
        }
        if (n != 64)
                goto bad;
        t->has_pin = true;
        return 0;
bad:
        log_error("--tunnel-pin: expected the SHA-256 of the certificate as 64 hex digits");
        return -EINVAL;
}

static void
lws_log(int level, const char *line)
{
        size_t n = strlen(line);

        while (n > 0 && line[n - 1] == '\n')
                n--;
        /* The tunnel reports failures itself, with their consequences: lws's own lines are detail. */
        log_debug("lws%s: %.*s", level & LLL_ERR ? " error" : "", (int)n, line);
}

int
mcp_tunnel_new(sd_event *event, const struct mcp_tunnel_config *cfg, struct mcp_tunnel **ret)
{
        struct lws_context_creation_info info = {};
        struct mcp_tunnel *t;
        int r;

        if (!event || !cfg || !cfg->url || !cfg->broker || !cfg->run)
                return -EINVAL;
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->event = sd_event_ref(event);
        t->efd = t->ckpt_fd = -1;
        t->broker = cfg->broker;
        pthread_mutex_init(&t->sh.lock, NULL);
        t->ping_ms = cfg->ping_ms ? cfg->ping_ms : DEFAULT_PING_MS;
        t->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
        t->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
        t->healthy_ms = cfg->healthy_ms ? cfg->healthy_ms : DEFAULT_HEALTHY_MS;
        t->max_entries = cfg->store_max_entries ? cfg->store_max_entries : DEFAULT_STORE_ENTRIES;
        t->max_bytes = cfg->store_max_bytes ? cfg->store_max_bytes : DEFAULT_STORE_BYTES;
        if (!(t->url = strdup(cfg->url)) || !(t->run = strdup(cfg->run)) ||
            (cfg->ca_file && !(t->ca_file = strdup(cfg->ca_file)))) {
                r = -ENOMEM;
                goto fail;
        }
        r = parse_url(t, cfg);
        if (r < 0)
                goto fail;
        if (cfg->pin_sha256 && (r = parse_pin(t, cfg->pin_sha256)) < 0)
                goto fail;
        if (cfg->session) {
                if (!cfg->session[0] || strlen(cfg->session) > SESSION_MAX) {
                        log_error("--tunnel-session: 1..%d characters", SESSION_MAX);
                        r = -EINVAL;
                        goto fail;
                }
                snprintf(t->session, sizeof t->session, "%s", cfg->session);
        }
        if (cfg->checkpoint) {
                t->ckpt_path = strdup(cfg->checkpoint);
                if (!t->ckpt_path) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = ckpt_load(t);
                if (r < 0) {
                        log_error("cannot read the tunnel checkpoint %s: %s", t->ckpt_path, strerror(-r));
                        goto fail;
                }
        }
        if (!t->session[0]) {
                unsigned char raw[16];
                if (RAND_bytes(raw, sizeof raw) != 1) {
                        r = -EIO;
                        goto fail;
                }
                for (size_t i = 0; i < sizeof raw; i++)
                        snprintf(t->session + 2 * i, 3, "%02x", raw[i]);
        }
        if (t->ckpt_path && (r = ckpt_compact(t)) < 0)
                goto fail;

        t->wbuf = malloc(LWS_PRE + MCP_TUNNEL_CHUNK);
        if (!t->wbuf) {
                r = -ENOMEM;
                goto fail;
        }
        t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &t->efd_src, t->efd, EPOLLIN, on_events, t);
        if (r < 0)
                goto fail;

        lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = t->ca_file;
        info.timeout_secs = CONNECT_TIMEOUT_S;
        info.connect_timeout_secs = CONNECT_TIMEOUT_S;
        info.user = t;
        info.gid = -1;
        info.uid = -1;
        t->ctx = lws_create_context(&info);
        if (!t->ctx) {
                log_error("cannot set up libwebsockets (CA file %s)", t->ca_file ? t->ca_file : "(system)");
                r = -EIO;
                goto fail;
        }
        *ret = t;
        return 0;
fail:
        mcp_tunnel_free(t);
        return r;
}

void
mcp_tunnel_inject(struct mcp_tunnel *t, struct mcp_server *server, const char *text, size_t len)
{
        t->server = server;
        on_message(t, text, len);
}

int
mcp_tunnel_start(struct mcp_tunnel *t, struct mcp_server *server)
{
        int r;

        t->server = server;
        r = pthread_create(&t->thread, NULL, lws_thread, t);
        if (r)
                return -r;
        t->thread_started = true;
        log_info("tunnel: session %s, control plane %s", t->session, t->url);
        t->state = ST_IDLE;
        t->attempts = 0;
        r = sd_event_add_time_relative(t->event, &t->retry_src, CLOCK_MONOTONIC, 0, 0, on_dial_timer, t);
        return r < 0 ? r : 0;
}

const char *
mcp_tunnel_session(const struct mcp_tunnel *t)
{
        return t->session;
}

void
mcp_tunnel_detach(struct mcp_tunnel *t)
{
        if (!t || t->state == ST_STOPPED)
                return;
        if (t->state == ST_UP)
                audit_event(t, "disconnect", "shutdown");
        t->state = ST_STOPPED;
        t->server = NULL;
        pthread_mutex_lock(&t->sh.lock);
        t->sh.close = true;
        pthread_mutex_unlock(&t->sh.lock);
        if (t->ctx)
                kick(t);
        t->retry_src = sd_event_source_disable_unref(t->retry_src);
        t->ping_src = sd_event_source_disable_unref(t->ping_src);
        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        if (t->ckpt_path)
                (void)ckpt_compact(t);
}

void
mcp_tunnel_free(struct mcp_tunnel *t)
{
        struct tev *e;

        if (!t)
                return;
        mcp_tunnel_detach(t);
        if (t->thread_started) {
                usleep(100 * 1000);   /* let the close frame go out */
                pthread_mutex_lock(&t->sh.lock);
                t->sh.stop = true;
                pthread_mutex_unlock(&t->sh.lock);
                lws_cancel_service(t->ctx);
                pthread_join(t->thread, NULL);
        }
        if (t->ctx)
                lws_context_destroy(t->ctx);
        t->efd_src = sd_event_source_disable_unref(t->efd_src);
        if (t->efd >= 0)
                close(t->efd);
        if (t->ckpt_fd >= 0)
                close(t->ckpt_fd);
        omsg_list_free(t->sh.out_head);
        omsg_list_free(t->pend_head);
        for (e = t->sh.ev_head; e;) {
                struct tev *n = e->next;
                free(e);
                e = n;
        }
        ab_strfreezero(t->sh.jwt);
        for (size_t b = 0; b < AB_ELEMENTSOF(t->reqs); b++)
                while (t->reqs[b]) {
                        struct treq *q = t->reqs[b];
                        t->reqs[b] = q->next;
                        req_free(q);
                }
        for (size_t b = 0; b < HASH_BUCKETS; b++)
                while (t->buckets[b])
                        store_remove(t, t->buckets[b]);
        pthread_mutex_destroy(&t->sh.lock);
        free(t->rbuf);
        free(t->wbuf);
        free(t->url);
        free(t->run);
        free(t->host);
        free(t->path);
        free(t->ca_file);
        free(t->ckpt_path);
        sd_event_unref(t->event);
        free(t);
}
