/* SPDX-License-Identifier: MIT */
/* The MCP server core (host/mcp/server.h, docs/mcp.md): lifecycle, JSON-RPC 2.0 framing
 * and errors, policy refresh, incoming messages and their dispatch. */
#include "config.h"

#include "common/jsonscan.h"
#include "host/mcp/server_internal.h"

/* ---- sending ---------------------------------------------------------------------------- */

/* Serialize msg (consumed) and hand it to the transport. Returns 0 or -errno. */
static int
send_msg(struct mcp_server *s, cJSON *msg)
{
        _cleanup_free_ char *text = NULL;
        int r;

        if (!msg)
                return -ENOMEM;
        text = cJSON_PrintUnformatted(msg);
        cJSON_Delete(msg);
        if (!text)
                return -ENOMEM;
        r = s->ops->send_ctx ? s->ops->send_ctx(s->userdata, s->ctx, text, strlen(text))
                             : s->ops->send(s->userdata, text, strlen(text));
        if (r < 0 && r != -EPIPE)
                log_warning("sending a message failed: %s", strerror(-r));
        return r;
}

static cJSON *
envelope(const cJSON *id)
{
        cJSON *m = cJSON_CreateObject();

        if (!m || !cJSON_AddStringToObject(m, "jsonrpc", JSONRPC_VERSION) ||
            !cJSON_AddItemToObject(m, "id", id ? cJSON_Duplicate(id, true) : cJSON_CreateNull())) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}

/* Send a JSON-RPC error for id (NULL: null). data (consumed) may be NULL. */
int
mcp_server_send_error_data(struct mcp_server *s, const cJSON *id, int code, const char *message, cJSON *data)
{
        cJSON *m = envelope(id), *e = cJSON_CreateObject();

        if (!m || !e || !cJSON_AddNumberToObject(e, "code", code) ||
            !cJSON_AddStringToObject(e, "message", message) ||
            (data && !cJSON_AddItemToObject(e, "data", data))) {
                cJSON_Delete(m);
                cJSON_Delete(e);
                cJSON_Delete(data);
                return -ENOMEM;
        }
        cJSON_AddItemToObject(m, "error", e);
        log_debug("error %d: %s", code, message);
        return send_msg(s, m);
}

int
mcp_server_send_error(struct mcp_server *s, const cJSON *id, int code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0) {
                msg = NULL;
                return -ENOMEM;
        }
        return mcp_server_send_error_data(s, id, code, msg, NULL);
}

/* Add what a 2026-07-28 result carries: resultType and our identity in _meta. */
static int
add_modern_fields(const struct mcp_server *s, cJSON *result)
{
        cJSON *meta = cJSON_GetObjectItemCaseSensitive(result, "_meta"), *info;

        if (!cJSON_AddStringToObject(result, "resultType", "complete"))
                return -ENOMEM;
        if (!meta && !(meta = cJSON_AddObjectToObject(result, "_meta")))
                return -ENOMEM;
        if (!cJSON_IsObject(meta))
                return -EINVAL;
        cJSON_DeleteItemFromObjectCaseSensitive(meta, META_SERVER_INFO);
        info = cJSON_AddObjectToObject(meta, META_SERVER_INFO);
        if (!info || !cJSON_AddStringToObject(info, "name", s->server_name) ||
            !cJSON_AddStringToObject(info, "version", PACKAGE_VERSION))
                return -ENOMEM;
        return 0;
}

/* Send result (consumed) as the response to rq. *ret_bytes (may be NULL): bytes of the
 * serialized result object. */
int
mcp_server_send_result(struct mcp_server *s, const struct mcp_request *rq, cJSON *result, size_t *ret_bytes)
{
        _cleanup_free_ char *text = NULL;
        cJSON *m;
        size_t n;

        if (!result)
                return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        if (rq->modern && add_modern_fields(s, result) < 0) {
                cJSON_Delete(result);
                return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        }
        /* Print the result once, to know its size, and splice it into the envelope as is. */
        text = cJSON_PrintUnformatted(result);
        cJSON_Delete(result);
        if (!text)
                return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        n = strlen(text);
        m = envelope(rq->id);
        if (!m || !cJSON_AddRawToObject(m, "result", text)) {
                cJSON_Delete(m);
                return -ENOMEM;
        }
        if (ret_bytes)
                *ret_bytes = n;
        return send_msg(s, m);
}

static int
send_notification(struct mcp_server *s, const char *method, cJSON *params)
{
        cJSON *m = cJSON_CreateObject();

        if (!m || !cJSON_AddStringToObject(m, "jsonrpc", JSONRPC_VERSION) ||
            !cJSON_AddStringToObject(m, "method", method) ||
            (params && !cJSON_AddItemToObject(m, "params", params))) {
                cJSON_Delete(m);
                cJSON_Delete(params);
                return -ENOMEM;
        }
        return send_msg(s, m);
}

/* ---- policy (host-config) --------------------------------------------------------------- */

/* Whether two host-config replies allow the same set of tools. */
static bool
same_tools(const cJSON *a, const cJSON *b)
{
        const cJSON *ta = cJSON_GetObjectItemCaseSensitive(a, "tools");
        const cJSON *tb = cJSON_GetObjectItemCaseSensitive(b, "tools");
        const cJSON *t;

        if (cJSON_GetArraySize(ta) != cJSON_GetArraySize(tb))
                return false;
        cJSON_ArrayForEach(t, ta) if (!t->string ||
                                      !cJSON_GetObjectItemCaseSensitive(tb, t->string)) return false;
        return true;
}

#define HIDDEN_LIST_MAX 1024 /* bytes of tool names in the "hidden by policy" log line */

/* Write the names of the n tools (names) that reply does not allow, comma-separated, into
 * buf (cut with "..." when they do not fit; "" when policy hides none). */
static void
list_hidden(const cJSON *reply, const char *const *names, size_t n, char *buf, size_t size)
{
        const cJSON *allowed = cJSON_GetObjectItemCaseSensitive(reply, "tools");
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                int k;

                if (cJSON_GetObjectItemCaseSensitive(allowed, names[i]))
                        continue;
                k = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", names[i]);
                if (k < 0 || (size_t)k >= size - used) {
                        snprintf(buf + (used < size - 4 ? used : size - 4), 4, "...");
                        return;
                }
                used += (size_t)k;
        }
}

/* Ask the broker which tools policy allows (with their limits) and the modules'
 * configuration, unless the last answer is younger than POLICY_TTL_MS (or force).
 * On failure the previous answer stays (none at first: no tool is listed).
 * Returns 0 or -errno. */
int
mcp_server_policy_refresh(struct mcp_server *s, bool force)
{
        size_t n = hw_tools_count(s->registry);
        uint64_t now = ab_now_us();
        _cleanup_free_ const char **names = NULL;
        cJSON *reply = NULL;
        int r;

        if (!force && s->policy && now - s->policy_usec < POLICY_TTL_MS * 1000u &&
            s->registry_generation == hw_registry_generation(s->registry))
                return 0;
        s->registry_generation = hw_registry_generation(s->registry);
        names = calloc(n ? n : 1, sizeof *names);
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                names[i] = hw_tool_at(s->registry, i)->name;
        r = hb_host_config(s->broker, names, n, &reply); /* batches of what the broker takes */
        s->policy_usec = now;
        if (r < 0) {
                if (!s->policy_failing)
                        log_error("host-config at the broker failed: %s; %s", strerror(-r),
                                  s->policy ? "keeping the previous tool list"
                                            : "no tool is listed until it answers");
                s->policy_failing = true;
                return r;
        }
        if (s->policy_failing)
                log_notice("host-config at the broker answers again");
        s->policy_failing = false;
        if (!s->policy || !same_tools(s->policy, reply)) {
                char hidden[HIDDEN_LIST_MAX];

                s->generation++;
                list_hidden(reply, names, n, hidden, sizeof hidden);
                log_info("policy allows %d of %zu tools%s%s%s",
                         cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(reply, "tools")), n,
                         *hidden ? " (hidden by policy, no rule allows them: " : "", hidden,
                         *hidden ? ")" : "");
        }
        cJSON_Delete(s->policy);
        s->policy = reply;
        return 0;
}

const cJSON *
mcp_server_policy_tool(const struct mcp_server *s, const char *name)
{
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->policy, "tools"), name);
}

const cJSON *
mcp_server_module_config(struct mcp_server *s, const char *module)
{
        const cJSON *c;

        if (!s)
                return NULL;
        mcp_server_policy_refresh(s, false);
        c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->policy, "modules"), module);
        return cJSON_IsObject(c) ? c : NULL;
}

/* ---- the call pipeline's view of the server ---------------------------------------------- */

/* The pipeline's sends happen later than the message that started them: each goes out with
 * the context of its own request, and the current one is restored after. */
static int
host_respond(void *userdata, const struct mcp_request *rq, cJSON *result, size_t *ret_bytes)
{
        struct mcp_server *s = userdata;
        void *saved = s->ctx;
        int r;

        s->ctx = rq->ctx;
        r = mcp_server_send_result(s, rq, result, ret_bytes);
        s->ctx = saved;
        return r;
}

static int
host_respond_error(void *userdata, const struct mcp_request *rq, int code, const char *message)
{
        struct mcp_server *s = userdata;
        void *saved = s->ctx;
        int r;

        s->ctx = rq->ctx;
        r = mcp_server_send_error_data(s, rq->id, code, message, NULL);
        s->ctx = saved;
        return r;
}

static int
host_notify(void *userdata, const struct mcp_request *rq, const char *method, cJSON *params)
{
        struct mcp_server *s = userdata;
        void *saved = s->ctx;
        int r;

        s->ctx = rq->ctx;
        r = send_notification(s, method, params);
        s->ctx = saved;
        return r;
}

static void
host_limits(void *userdata, const char *tool, size_t *ret_max_bytes, unsigned *ret_timeout_ms)
{
        struct mcp_server *s = userdata;
        const cJSON *t, *v;

        mcp_server_policy_refresh(s, false);
        t = mcp_server_policy_tool(s, tool);
        *ret_max_bytes = HS_DEFAULT_MAX_RESULT_BYTES;
        *ret_timeout_ms = DEFAULT_TIMEOUT_MS;
        v = cJSON_GetObjectItemCaseSensitive(t, "max_result_bytes");
        if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= (double)SIZE_MAX / 2)
                *ret_max_bytes = (size_t)v->valuedouble;
        v = cJSON_GetObjectItemCaseSensitive(t, "timeout_ms");
        if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 86400000.0)
                *ret_timeout_ms = (unsigned)v->valuedouble;
}

static int
host_session_log_level(void *userdata)
{
        const struct mcp_server *s = userdata;
        return s->session_log_level;
}

static void
host_idle(void *userdata)
{
        struct mcp_server *s = userdata;

        if (s->ops->idle)
                s->ops->idle(s->userdata);
}

/* ---- incoming messages ------------------------------------------------------------------ */

/* Cheap checks before cJSON sees the text (common/jsonscan.c): valid UTF-8 without NUL,
 * nesting at most MAX_DEPTH, at most about MAX_VALUES values. Returns NULL or what is wrong.
 * *ret_nul is set when a string holds an escaped NUL (\u0000), which cJSON would silently
 * cut at. */
static const char *
prescan(const char *text, size_t len, bool *ret_nul)
{
        static const struct ab_json_scan_limits limits = { .max_depth = MAX_DEPTH,
                                                           .max_values = MAX_VALUES,
                                                           .utf8 = true };
        _Static_assert(MAX_DEPTH == 64 && MAX_VALUES == 200000, "the messages below name the limits");

        switch (ab_json_scan(text, len, &limits, ret_nul)) {
        case AB_JSON_SCAN_OK: return NULL;
        case AB_JSON_SCAN_NUL: return "the message contains a NUL byte";
        case AB_JSON_SCAN_UTF8: return "the message is not valid UTF-8";
        case AB_JSON_SCAN_DEPTH: return "the message is nested deeper than 64 levels";
        case AB_JSON_SCAN_VALUES: return "the message holds more than 200000 JSON values";
        }
        return "the message cannot be scanned";
}

/* One parsed message. */
static int
dispatch(struct mcp_server *s, const cJSON *m)
{
        const cJSON *id, *method, *jsonrpc, *params, *meta, *token;
        struct mcp_request *rq;
        bool has_id;

        if (cJSON_IsArray(m))
                return mcp_server_send_error(
                        s, NULL, RPC_INVALID_REQUEST,
                        "Invalid Request: JSON-RPC batches are not supported (MCP removed them in 2025-06-18)");
        if (!cJSON_IsObject(m))
                return mcp_server_send_error(s, NULL, RPC_INVALID_REQUEST,
                                             "Invalid Request: a message must be a JSON object");
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        method = cJSON_GetObjectItemCaseSensitive(m, "method");
        jsonrpc = cJSON_GetObjectItemCaseSensitive(m, "jsonrpc");
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        has_id = id != NULL;

        if (!method && has_id &&
            (cJSON_GetObjectItemCaseSensitive(m, "result") ||
             cJSON_GetObjectItemCaseSensitive(m, "error"))) {
                /* A response: we never send requests, so it answers nothing. */
                log_debug("ignoring a response from the client");
                return 0;
        }
        if (has_id && !mcp_id_valid(id))
                return mcp_server_send_error(
                        s, NULL, RPC_INVALID_REQUEST,
                        "Invalid Request: id must be a string or an integer (not null)");
        if (!cJSON_IsString(jsonrpc) || strcmp(jsonrpc->valuestring, JSONRPC_VERSION) != 0)
                return mcp_server_send_error(s, id, RPC_INVALID_REQUEST,
                                             "Invalid Request: jsonrpc must be \"2.0\"");
        if (!cJSON_IsString(method))
                return mcp_server_send_error(s, id, RPC_INVALID_REQUEST,
                                             "Invalid Request: method must be a string");
        if (!has_id) {
                /* A notification: never answered, even when its params are wrong. */
                if (!params || cJSON_IsObject(params))
                        mcp_server_handle_notification(s, method->valuestring, params);
                return 0;
        }
        if (params && !cJSON_IsObject(params))
                return mcp_server_send_error(s, id, RPC_INVALID_PARAMS,
                                             "Invalid params: params must be an object");
        meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
        if (meta && !cJSON_IsObject(meta))
                return mcp_server_send_error(s, id, RPC_INVALID_PARAMS,
                                             "Invalid params: params._meta must be an object");

        rq = calloc(1, sizeof *rq);
        if (!rq)
                return -ENOMEM;
        rq->log_level = -1;
        rq->ctx = s->ctx;
        rq->has_nul = s->msg_has_nul;
        rq->id = cJSON_Duplicate(id, true);
        token = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
        if (mcp_id_valid(token))
                rq->progress_token = cJSON_Duplicate(token, true);
        if (!rq->id || (mcp_id_valid(token) && !rq->progress_token)) {
                mcp_request_free(rq);
                return -ENOMEM;
        }
        log_debug("request %s", method->valuestring);
        if (cJSON_GetObjectItemCaseSensitive(meta, META_PROTOCOL_VERSION))
                return mcp_server_handle_modern(s, rq, method->valuestring, params, meta);
        if (strcmp(method->valuestring, "server/discover") == 0) {
                int r = mcp_server_send_error(
                        s, id, RPC_INVALID_PARAMS,
                        "Invalid params: server/discover is a " MODERN_VERSION " request: params._meta "
                        "must carry " META_PROTOCOL_VERSION " and " META_CLIENT_CAPABILITIES);
                mcp_request_free(rq);
                return r == -ENOMEM ? r : 0;
        }
        return mcp_server_handle_legacy(s, rq, method->valuestring, params);
}

/* A message as the core takes it; see server.h. */
int
mcp_server_parse(const char *msg, size_t len, cJSON **ret, bool *ret_has_nul, char *why, size_t why_len)
{
        const char *bad, *end = NULL;
        bool has_nul = false;
        cJSON *m, *params;

        bad = prescan(msg, len, &has_nul);
        if (bad) {
                snprintf(why, why_len, "Parse error: %s", bad);
                return -EBADMSG;
        }
        m = cJSON_ParseWithLengthOpts(msg, len, &end, false);
        if (m && end) {
                for (; end < msg + len; end++)
                        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
                                break;
        }
        if (!m || !end || end < msg + len) {
                size_t at = end && end >= msg ? (size_t)(end - msg)
                                              : (cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= msg &&
                                                                 cJSON_GetErrorPtr() <= msg + len
                                                         ? (size_t)(cJSON_GetErrorPtr() - msg)
                                                         : 0);
                cJSON_Delete(m);
                snprintf(why, why_len, "Parse error: invalid JSON at byte %zu", at);
                return -EBADMSG;
        }
        /* ids, progress tokens and the requestId of a cancellation go back exactly as sent */
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        if (mcp_id_exact(m, "id") < 0 || mcp_id_exact(params, "requestId") < 0 ||
            mcp_id_exact(cJSON_GetObjectItemCaseSensitive(params, "_meta"), "progressToken") < 0) {
                cJSON_Delete(m);
                return -ENOMEM;
        }
        *ret = m;
        *ret_has_nul = has_nul;
        return 0;
}

/* Handle a message the transport parsed with mcp_server_parse(); see server.h. */
int
mcp_server_receive_parsed(struct mcp_server *s, cJSON *m, bool has_nul, void *ctx)
{
        void *saved = s->ctx;
        int r;

        s->ctx = ctx;
        s->msg_has_nul = has_nul;
        r = dispatch(s, m);
        cJSON_Delete(m);
        s->ctx = saved;
        return r == -ENOMEM ? r : 0;
}

int
mcp_server_receive_ctx(struct mcp_server *s, const char *msg, size_t len, void *ctx)
{
        void *saved = s->ctx;
        int r;

        s->ctx = ctx;
        r = mcp_server_receive(s, msg, len);
        s->ctx = saved;
        return r;
}

void
mcp_server_cancel_ctx(struct mcp_server *s, void *ctx)
{
        if (s)
                mcp_calls_cancel_ctx(s->calls, ctx);
}

int
mcp_server_receive(struct mcp_server *s, const char *msg, size_t len)
{
        char why[MCP_PARSE_WHY_MAX];
        bool has_nul = false;
        cJSON *m = NULL;
        int r;

        r = mcp_server_parse(msg, len, &m, &has_nul, why, sizeof why);
        if (r == -EBADMSG) {
                r = mcp_server_send_error(s, NULL, RPC_PARSE_ERROR, "%s", why);
                return r == -ENOMEM ? r : 0;
        }
        if (r < 0)
                return r;
        return mcp_server_receive_parsed(s, m, has_nul, s->ctx);
}

/* ---- life cycle ------------------------------------------------------------------------- */

int
mcp_server_new(sd_event *event, const struct mcp_config *cfg, const struct mcp_transport_ops *ops,
               void *userdata, struct mcp_server **ret)
{
        struct mcp_server *s;
        struct mcp_calls_host host;
        int r;

        if (!event || !cfg || !cfg->registry || !cfg->broker || !cfg->run || !ops || !ops->send)
                return -EINVAL;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->registry = cfg->registry;
        s->broker = cfg->broker;
        s->ops = ops;
        s->userdata = userdata;
        s->session_log_level = -1;
        s->shared = cfg->shared;
        if (cfg->bare_modules) {
                size_t n = 0;
                while (cfg->bare_modules[n])
                        n++;
                s->bare_modules = calloc(n + 1, sizeof *s->bare_modules);
                if (!s->bare_modules) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t i = 0; i < n; i++)
                        if (!(s->bare_modules[i] = strdup(cfg->bare_modules[i]))) {
                                r = -ENOMEM;
                                goto fail;
                        }
        }
        s->page_size =
                cfg->page_size > 0 && cfg->page_size <= MCP_PAGE_SIZE ? cfg->page_size : MCP_PAGE_SIZE;
        s->run = strdup(cfg->run);
        s->server_name = strdup(cfg->server_name ? cfg->server_name : "agentbroker-mcp");
        if (!s->run || !s->server_name) {
                r = -ENOMEM;
                goto fail;
        }
        host = (struct mcp_calls_host){
                .registry = s->registry,
                .broker = s->broker,
                .run = s->run,
                .userdata = s,
                .respond = host_respond,
                .respond_error = host_respond_error,
                .notify = host_notify,
                .limits = host_limits,
                .session_log_level = host_session_log_level,
                .idle = host_idle,
                .ids_per_ctx = cfg->shared,
        };
        r = mcp_calls_new(&host, &s->calls);
        if (r < 0)
                goto fail;
        mcp_server_policy_refresh(s, true);
        *ret = s;
        return 0;
fail:
        mcp_server_free(s);
        return r;
}

void
mcp_server_free(struct mcp_server *s)
{
        if (!s)
                return;
        mcp_calls_free(s->calls);
        cJSON_Delete(s->policy);
        cJSON_Delete(s->client_caps);
        free(s->run);
        free(s->server_name);
        cJSON_Delete(s->client_info);
        for (char **m = s->bare_modules; m && *m; m++)
                free(*m);
        free(s->bare_modules);
        sd_event_unref(s->event);
        free(s);
}

int
mcp_server_refuse(struct mcp_server *s, const char *message)
{
        int r = mcp_server_send_error_data(s, NULL, RPC_INVALID_REQUEST, message, NULL);
        return r == -ENOMEM ? r : 0;
}

int
mcp_server_refuse_id(struct mcp_server *s, const cJSON *id, const char *message)
{
        int r = mcp_server_send_error_data(s, id, RPC_INVALID_REQUEST, message, NULL);
        return r == -ENOMEM ? r : 0;
}

size_t
mcp_server_inflight(const struct mcp_server *s)
{
        return s ? mcp_calls_count(s->calls) : 0;
}

void
mcp_server_cancel_all(struct mcp_server *s)
{
        if (s)
                mcp_calls_cancel_all(s->calls);
}
