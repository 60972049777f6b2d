/* SPDX-License-Identifier: MIT */
/* The tunnel's lws thread (host/net/tunnel/internal.h): dials, frames outgoing messages,
 * reassembles incoming ones and reports what happened to the sd-event thread. */
#include "config.h"

#include "host/net/tunnel/internal.h"

struct omsg *
mcp_tunnel_omsg_new(const char *text, size_t len, bool response)
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

void
mcp_tunnel_omsg_list_free(struct omsg *m)
{
        while (m) {
                struct omsg *n = m->next;
                free(m);
                m = n;
        }
}

/* Queue an event about the current dial (t->wsi_gen) for the sd-event thread (lws thread). */
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
        e->gen = t->wsi_gen;
        e->stage = t->wsi_stage;
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

/* Report the end of the current dial or connection, once (lws thread): TEV_DIAL_FAILED or
 * TEV_CLOSED. t->wsi is forgotten here, so that no later callback of it is taken for the next
 * dial's; a dial asked for meanwhile goes out on the next round of the service loop. */
static void
report_end(struct mcp_tunnel *t, enum tev_type type, const char *reason, const char *detail)
{
        bool pending;

        t->wsi = NULL;
        if (!t->dial_reported) {
                t->dial_reported = true;
                push_event(t, type, reason, detail, detail ? strnlen(detail, DIAL_FAIL_DETAIL_MAX) : 0);
        }
        pthread_mutex_lock(&t->sh.lock);
        pending = t->sh.dial && !t->sh.stop;
        pthread_mutex_unlock(&t->sh.lock);
        if (pending)
                lws_cancel_service(t->ctx);
}

/* The current dial got to stage s (lws thread): tell the sd-event thread, which owns the
 * deadlines. Stages only move forward. */
static void
advance_stage(struct mcp_tunnel *t, enum dial_stage s)
{
        if (!t->wsi || s <= t->wsi_stage)
                return;
        t->wsi_stage = s;
        push_event(t, TEV_STAGE, NULL, NULL, 0);
}

/* After each round of lws_service(): has the dial's TCP connection been made? lws has no
 * callback for it, so the socket is asked (lws thread). */
static void
check_connected(struct mcp_tunnel *t)
{
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int fd;

        if (!t->wsi || t->wsi_stage != STAGE_CONNECT)
                return;
        fd = lws_get_socket_fd(t->wsi);
        if (fd >= 0 && getpeername(fd, (struct sockaddr *)&sa, &salen) == 0)
                advance_stage(t, t->scheme_tls ? STAGE_TLS : STAGE_UPGRADE);
}

static void
lws_dial(struct mcp_tunnel *t, uint64_t gen)
{
        struct lws_client_connect_info ci = {};

        t->pin_failed = t->tls_failed = t->dial_reported = t->wsi_est = false;
        t->wsi_gen = gen;
        t->wsi_stage = STAGE_CONNECT;
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
        if (!lws_client_connect_via_info(&ci))
                report_end(t, TEV_DIAL_FAILED, "dial-failed", "connect failed");
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

int
mcp_tunnel_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user AB_UNUSED, void *in,
                  size_t len)
{
        struct mcp_tunnel *t = lws_context_user(lws_get_context(wsi));
        const char *why;

        switch (reason) {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
                bool dial, kill, want;
                uint64_t gen;

                /* A connection is dropped when the sd-event thread says so, or when it asks for
                 * a new dial (it has given the old one up). The new dial waits until the old
                 * connection is gone (report_end() wakes this up again). */
                pthread_mutex_lock(&t->sh.lock);
                kill = t->wsi && ((t->sh.kill_gen && t->sh.kill_gen == t->wsi_gen) ||
                                  (t->sh.dial && t->sh.dial_gen != t->wsi_gen));
                t->sh.kill_gen = 0;
                dial = t->sh.dial && !t->wsi;
                t->sh.dial = t->sh.dial && !dial;
                gen = t->sh.dial_gen;
                want = t->sh.out_head || t->sh.ping || t->sh.close;
                pthread_mutex_unlock(&t->sh.lock);
                if (kill)
                        lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                else if (dial)
                        lws_dial(t, gen);
                else if (t->wsi && want)
                        lws_callback_on_writable(t->wsi);
                break;
        }
        case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
                if (wsi == t->wsi)
                        advance_stage(t, STAGE_TLS);
                return verify_cert(t, user, (int)len);
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
                unsigned char **p = in, *end = *p + len;
                char *value = NULL;
                int r = 0;

                if (wsi != t->wsi)
                        return -1;
                /* The request goes out now (after the TLS handshake): what is left is its answer. */
                advance_stage(t, STAGE_UPGRADE);

                pthread_mutex_lock(&t->sh.lock);
                if (t->sh.jwt && asprintf(&value, "Bearer %s", t->sh.jwt) < 0)
                        value = NULL;
                ab_strfreezero(AB_TAKE_PTR(t->sh.jwt));
                pthread_mutex_unlock(&t->sh.lock);
                if (!value ||
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                                (unsigned char *)value, (int)strlen(value), p, end) ||
                    lws_add_http_header_by_name(
                            wsi, (const unsigned char *)"agentbroker-session:", (unsigned char *)t->session,
                            (int)strlen(t->session), p, end))
                        r = -1;
                ab_strfreezero(value);
                return r;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                if (wsi != t->wsi)
                        return -1;
                t->rlen = 0;
                t->wsi_est = true;
                t->wsi_stage = STAGE_FIRST_MESSAGE;
                push_event(t, TEV_CONNECTED, NULL, NULL, 0);
                lws_callback_on_writable(wsi);
                break;
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
                unsigned status = lws_http_client_http_response(wsi);
                const char *detail = in ? in : "connection failed";

                if (wsi != t->wsi)
                        break;

                if (t->pin_failed)
                        why = "pin-mismatch";
                else if (t->tls_failed)
                        why = "tls-verify";
                else if (status == 401 || status == 403 ||
                         (in && (strstr(in, " 401") || strstr(in, " 403"))))
                        why = "jwt-rejected";
                else
                        why = "dial-failed";
                report_end(t, TEV_DIAL_FAILED, why, detail);
                break;
        }
        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (wsi == t->wsi)
                        lws_receive(t, wsi, in, len);
                break;
        case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
                if (wsi == t->wsi)
                        push_event(t, TEV_PONG, NULL, NULL, 0);
                break;
        case LWS_CALLBACK_CLIENT_WRITEABLE: return wsi == t->wsi ? lws_writable(t, wsi) : -1;
        case LWS_CALLBACK_CLIENT_CLOSED:
                if (wsi == t->wsi)
                        report_end(t, TEV_CLOSED, "closed", NULL);
                break;
        /* lws 4.1.6 closes a dial that is waiting for the answer to its upgrade request (its own
         * timeout, or the peer's close) as an HTTP client: LWS_CALLBACK_CLOSED_CLIENT_HTTP, and
         * no CLIENT_CONNECTION_ERROR (lib/core-net/close.c, LRS_WAITING_SERVER_REPLY). */
        case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
                if (wsi == t->wsi)
                        report_end(t, TEV_DIAL_FAILED, "dial-failed",
                                   "closed while waiting for the upgrade answer");
                break;
        /* Every wsi ends here, whatever was (or was not) reported before. */
        case LWS_CALLBACK_WSI_DESTROY:
                if (wsi == t->wsi)
                        report_end(t, t->wsi_est ? TEV_CLOSED : TEV_DIAL_FAILED,
                                   t->wsi_est ? "closed" : "dial-failed",
                                   t->wsi_est ? NULL : "closed without an error report from libwebsockets");
                break;
        default: break;
        }
        return 0;
}

void *
mcp_tunnel_lws_thread(void *userdata)
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
                check_connected(t);
        }
        return NULL;
}

void
mcp_tunnel_lws_log(int level, const char *line)
{
        size_t n = strlen(line);

        while (n > 0 && line[n - 1] == '\n')
                n--;
        /* The tunnel reports failures itself, with their consequences: lws's own lines are detail. */
        log_debug("lws%s: %.*s", level & LLL_ERR ? " error" : "", (int)n, line);
}
