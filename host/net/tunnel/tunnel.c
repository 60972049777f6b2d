/* SPDX-License-Identifier: MIT */
/* The MCP tunnel transport (host/net/tunnel/tunnel.h, docs/tunnel.md), its sd-event side:
 * the MCP server's messages, dials and their deadlines, backoff, pings, audit. */
#include "config.h"

#include "common/encode.h"
#include "host/net/tunnel/internal.h"

static const struct lws_protocols protocols[] = {
        { .name = "mcp", .callback = mcp_tunnel_lws_cb, .rx_buffer_size = 65536 },
        { 0 },
};

/* ---- sending (sd-event thread) ------------------------------------------------------------ */

void
mcp_tunnel_kick(struct mcp_tunnel *t)
{
        lws_cancel_service(t->ctx);
}

/* Queue m for the connection, or (a response, while disconnected) for after the reconnect. */
void
mcp_tunnel_deliver(struct mcp_tunnel *t, struct omsg *m)
{
        if (t->state == ST_UP) {
                pthread_mutex_lock(&t->sh.lock);
                if (t->sh.out_tail)
                        t->sh.out_tail->next = m;
                else
                        t->sh.out_head = m;
                t->sh.out_tail = m;
                pthread_mutex_unlock(&t->sh.lock);
                mcp_tunnel_kick(t);
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
        struct omsg *m = mcp_tunnel_omsg_new(text, len, response);

        if (m)
                mcp_tunnel_deliver(t, m);
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
         * recorded as the call's outcome. An internal error (RPC_INTERNAL_ERROR) may come after the tool
         * ran (the result could not be built): it is recorded, so the call is not run again. */
        code = cJSON_GetObjectItemCaseSensitive(member, "code");
        passing = (strcmp(member->string, "error") == 0 && cJSON_IsNumber(code) &&
                   code->valuedouble != RPC_INTERNAL_ERROR) ||
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                          cJSON_GetObjectItemCaseSensitive(member, "_meta"), MCP_META_NOT_RUN));
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

                cJSON_ArrayForEach(w, c->waiters) deliver_outcome(t, w, outcome);
                mcp_tunnel_ckpt_append(t, c, "retry");
                mcp_tunnel_store_remove(t, c);
                free(outcome);
        } else if (q->call) {
                struct tcall *c = q->call;
                const cJSON *w;

                mcp_tunnel_store_finish(t, c, TC_DONE, outcome);
                mcp_tunnel_ckpt_append(t, c, NULL);
                cJSON_ArrayForEach(w, c->waiters) deliver_outcome(t, w, c->outcome);
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

        cJSON_ArrayForEach(w, c->waiters) if (cJSON_Compare(w, id, true)) return true;
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
                        mcp_tunnel_ckpt_append(t, q->call, "cancelled");
                        mcp_tunnel_store_remove(t, q->call);
                        *pp = q->next;
                        snprintf(msg, sizeof msg,
                                 "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                                 "{\"requestId\":%" PRIu64 "}}",
                                 q->iid);
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
                if (!cJSON_IsString(k) || !k->valuestring[0] ||
                    strlen(k->valuestring) > MCP_TUNNEL_KEY_MAX) {
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

        if (!e || !cJSON_AddNumberToObject(e, "code", code) ||
            !cJSON_AddStringToObject(e, "message", message) || !(v = cJSON_PrintUnformatted(e)) ||
            asprintf(&outcome, "\"error\":%s", v) < 0) {
                outcome = NULL;
                cJSON_Delete(e);
                return;
        }
        cJSON_Delete(e);
        deliver_outcome(t, id, outcome);
}

/* One message from the control plane: parsed once, as the core takes it (the control
 * plane's ids come back exactly as it sent them, host/mcp/rpcid.h), and handed to the server
 * as a tree, a request with the tunnel's own id put in. */
static void
on_message(struct mcp_tunnel *t, const char *text, size_t len)
{
        cJSON *m = NULL, *id, *method, *params;
        char why[MCP_PARSE_WHY_MAX];
        bool has_nul = false;
        struct tcall *c = NULL;
        struct treq *q;
        _cleanup_free_ char *key = NULL;
        int r;

        if (!t->server)
                return;
        r = mcp_server_parse(text, len, &m, &has_nul, why, sizeof why);
        if (r == -EBADMSG) {
                /* Not a message the core takes: it answers the text as on stdio. */
                mcp_server_receive(t->server, text, len);
                return;
        }
        if (r < 0)
                return;
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        method = cJSON_GetObjectItemCaseSensitive(m, "method");
        if (!cJSON_IsObject(m) || !cJSON_IsString(method) || !id || !mcp_id_valid(id)) {
                if (cJSON_IsString(method) && !id &&
                    strcmp(method->valuestring, "notifications/cancelled") == 0 && cJSON_IsObject(params)) {
                        cancel_ext(t, cJSON_GetObjectItemCaseSensitive(params, "requestId"));
                        cJSON_Delete(m);
                        return;
                }
                /* Notifications, responses, invalid messages: the server answers them as on stdio. */
                mcp_server_receive_parsed(t->server, m, has_nul, NULL);
                return;
        }
        if (strcmp(method->valuestring, "tools/call") == 0) {
                const char *err = NULL;

                key = call_key(t, params, id, &err);
                if (!key) {
                        refuse(t, id, RPC_INVALID_PARAMS, err ? err : "Internal error: out of memory");
                        cJSON_Delete(m);
                        return;
                }
                c = mcp_tunnel_store_find(t, key);
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
                c = mcp_tunnel_store_add(t, key);
                if (!c) {
                        cJSON_Delete(m);
                        return;
                }
                cJSON_AddItemToArray(c->waiters, cJSON_Duplicate(id, true));
                mcp_tunnel_ckpt_append(t, c, "running");
        }
        q = calloc(1, sizeof *q);
        if (!q || !(q->ext_id = cJSON_Duplicate(id, true))) {
                free(q);
                if (c)
                        mcp_tunnel_store_remove(t, c);
                cJSON_Delete(m);
                return;
        }
        q->iid = ++t->next_iid;
        q->call = c;
        /* The tunnel's id in place of the control plane's, in the tree (an integer id, kept
         * exact as the core keeps every id). */
        if (!cJSON_ReplaceItemInObjectCaseSensitive(m, "id", cJSON_CreateNumber((double)q->iid)) ||
            mcp_id_exact(m, "id") < 0) {
                cJSON_Delete(m);
                if (c)
                        mcp_tunnel_store_remove(t, c);
                req_free(q);
                return;
        }
        q->next = t->reqs[q->iid % AB_ELEMENTSOF(t->reqs)];
        t->reqs[q->iid % AB_ELEMENTSOF(t->reqs)] = q;
        mcp_server_receive_parsed(t->server, m, has_nul, NULL);
}

/* The watchdog: whatever the library did or did not report, the tunnel is always either up,
 * dialling under a deadline, or waiting for a scheduled dial. A state that is none of these
 * is a bug: it is logged loudly and the tunnel dials again. */
static int
on_watchdog(sd_event_source *s, uint64_t usec AB_UNUSED, void *userdata)
{
        struct mcp_tunnel *t = userdata;
        const char *bug = NULL;
        uint64_t now = mcp_tunnel_now_usec(t);
        int on = SD_EVENT_OFF;

        switch (t->state) {
        case ST_STOPPED: return 0;
        case ST_IDLE:
                if (!t->retry_src || sd_event_source_get_enabled(t->retry_src, &on) < 0 ||
                    on == SD_EVENT_OFF)
                        bug = "no connection and no dial scheduled";
                break;
        case ST_DIALING:
                if (!t->deadline_src || sd_event_source_get_enabled(t->deadline_src, &on) < 0 ||
                    on == SD_EVENT_OFF)
                        bug = "a dial without a deadline";
                break;
        case ST_UP:
                if (t->close_reason && now > t->close_asked + (uint64_t)KILL_GRACE_MS * 1000)
                        bug = "a connection told to close did not close";
                break;
        }
        if (bug) {
                static const char *const state_names[] = { "idle", "dialing", "up" };

                log_error("tunnel: BUG: %s (state %s, stage %s, dial %" PRIu64 "): dialling again", bug,
                          state_names[t->state], stage_names[t->stage], t->dials);
                pthread_mutex_lock(&t->sh.lock);
                t->sh.kill_gen = t->live_gen;
                pthread_mutex_unlock(&t->sh.lock);
                mcp_tunnel_kick(t);
                if (t->state == ST_UP)
                        mcp_tunnel_on_closed(t, "closed");
                else
                        mcp_tunnel_schedule_dial(t);
        }
        (void)sd_event_source_set_time(s, now + (uint64_t)WATCHDOG_MS * 1000);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

/* An event about dial gen (the sd-event thread's view of it): taken if it is about the dial or
 * connection in progress; events of a dial already given up are dropped. */
static void
on_event(struct mcp_tunnel *t, const struct tev *e)
{
        if (e->gen != t->live_gen || !t->live_gen)
                return;
        switch (e->type) {
        case TEV_STAGE:
                if (t->state == ST_DIALING && e->stage > t->stage)
                        mcp_tunnel_enter_stage(t, e->stage);
                break;
        case TEV_CONNECTED:
                if (t->state == ST_DIALING)
                        mcp_tunnel_enter_stage(t, STAGE_FIRST_MESSAGE);
                break;
        case TEV_MESSAGE:
                if (t->state == ST_DIALING)
                        mcp_tunnel_on_connected(t);
                on_message(t, e->text, e->len);
                break;
        case TEV_OVERSIZE:
                if (t->state == ST_DIALING)
                        mcp_tunnel_on_connected(t);
                log_warning("tunnel: a message longer than %d bytes was refused", MCP_LINE_MAX);
                if (t->server)
                        mcp_server_refuse(t->server, MCP_OVERSIZE_MESSAGE);
                break;
        case TEV_PONG: t->missed_pongs = 0; break;
        case TEV_CLOSED:
                if (t->state == ST_UP)
                        mcp_tunnel_on_closed(t, e->reason);
                else
                        mcp_tunnel_dial_failed(
                                t, "the control plane closed the connection before its first message", NULL);
                break;
        case TEV_DIAL_FAILED:
                mcp_tunnel_dial_failed(t, e->text, strcmp(e->reason, "dial-failed") == 0 ? NULL : e->reason);
                break;
        }
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
                        on_event(t, e);
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

int
mcp_tunnel_new(sd_event *event, const struct mcp_tunnel_config *cfg, struct mcp_tunnel **ret)
{
        struct lws_context_creation_info info = {};
        struct mcp_tunnel *t;
        unsigned longest_ms = 0;
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
        t->stage_ms[STAGE_CONNECT] = cfg->connect_timeout_ms;
        t->stage_ms[STAGE_TLS] = cfg->tls_timeout_ms;
        t->stage_ms[STAGE_UPGRADE] = cfg->upgrade_timeout_ms;
        t->stage_ms[STAGE_FIRST_MESSAGE] = cfg->first_message_timeout_ms;
        for (size_t i = 0; i < STAGE_MAX; i++) {
                if (!t->stage_ms[i])
                        t->stage_ms[i] = DEFAULT_STAGE_TIMEOUT_MS;
                longest_ms = t->stage_ms[i] > longest_ms ? t->stage_ms[i] : longest_ms;
        }
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
                r = mcp_tunnel_ckpt_load(t);
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
                ab_hex_encode_buf(raw, sizeof raw, t->session);
        }
        if (t->ckpt_path && (r = mcp_tunnel_ckpt_compact(t)) < 0)
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

        lws_set_log_level(LLL_ERR | LLL_WARN, mcp_tunnel_lws_log);
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = t->ca_file;
        /* The host keeps a deadline on each stage of a dial itself (enter_stage()); lws's own
         * timeouts are a backstop behind them, and handled like any other failure. */
        info.timeout_secs = longest_ms / 1000 + LWS_BACKSTOP_EXTRA_S;
        info.connect_timeout_secs = longest_ms / 1000 + LWS_BACKSTOP_EXTRA_S;
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
        r = pthread_create(&t->thread, NULL, mcp_tunnel_lws_thread, t);
        if (r)
                return -r;
        t->thread_started = true;
        log_info("tunnel: session %s, control plane %s", t->session, t->url);
        t->state = ST_IDLE;
        t->attempts = 0;
        r = sd_event_add_time_relative(t->event, &t->retry_src, CLOCK_MONOTONIC, 0, 0,
                                       mcp_tunnel_on_dial_timer, t);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(t->event, &t->watchdog_src, CLOCK_MONOTONIC,
                                       (uint64_t)WATCHDOG_MS * 1000, 1000, on_watchdog, t);
        return r < 0 ? r : 0;
}

void
mcp_tunnel_detach(struct mcp_tunnel *t)
{
        if (!t || t->state == ST_STOPPED)
                return;
        if (t->state == ST_UP)
                mcp_tunnel_audit_event(t, "disconnect", "shutdown", NULL);
        t->state = ST_STOPPED;
        t->server = NULL;
        pthread_mutex_lock(&t->sh.lock);
        t->sh.close = true;
        pthread_mutex_unlock(&t->sh.lock);
        if (t->ctx)
                mcp_tunnel_kick(t);
        t->retry_src = sd_event_source_disable_unref(t->retry_src);
        t->ping_src = sd_event_source_disable_unref(t->ping_src);
        t->healthy_src = sd_event_source_disable_unref(t->healthy_src);
        t->deadline_src = sd_event_source_disable_unref(t->deadline_src);
        t->watchdog_src = sd_event_source_disable_unref(t->watchdog_src);
        if (t->ckpt_path)
                (void)mcp_tunnel_ckpt_compact(t);
}

void
mcp_tunnel_free(struct mcp_tunnel *t)
{
        struct tev *e;

        if (!t)
                return;
        mcp_tunnel_detach(t);
        if (t->thread_started) {
                usleep(100 * 1000); /* let the close frame go out */
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
        mcp_tunnel_omsg_list_free(t->sh.out_head);
        mcp_tunnel_omsg_list_free(t->pend_head);
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
                        mcp_tunnel_store_remove(t, t->buckets[b]);
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
