/* The MCP server core (host/mcp.h): JSON-RPC 2.0 framing and errors, the two lifecycles
 * (2025-11-25 initialize handshake, 2026-07-28 per-request _meta) chosen per request,
 * tools/list from the registry filtered by policy, and tools/call through host/calls.c.
 * docs/mcp.md describes the behaviour; keep the two in step. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/encode.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "host/calls.h"
#include "host/mcp.h"
#include "host/rpcid.h"
#include "host/shape.h"

#define MODERN_VERSION "2026-07-28"
#define META_PROTOCOL_VERSION "io.modelcontextprotocol/protocolVersion"
#define META_CLIENT_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"
#define META_CLIENT_INFO "io.modelcontextprotocol/clientInfo"
#define META_LOG_LEVEL "io.modelcontextprotocol/logLevel"
#define META_SERVER_INFO "io.modelcontextprotocol/serverInfo"

#define POLICY_TTL_MS 3000          /* host-config is asked again after this (also tools/list ttlMs) */
#define DISCOVER_TTL_MS 60000       /* server/discover ttlMs: it never changes while we run */
#define DEFAULT_TIMEOUT_MS 30000    /* a tool's timeout when policy names none */
#define MAX_DEPTH 64                /* nesting of an incoming message */
#define MAX_VALUES 200000           /* JSON values in an incoming message */
#define CURSOR_MAX 512              /* bytes of a decoded cursor */

#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL_ERROR -32603
#define RPC_UNSUPPORTED_PROTOCOL_VERSION -32022
#define RPC_MISSING_CLIENT_CAPABILITY -32021
/* In a tool's inputSchema (a vendor keyword the schema compiler ignores): the client
 * capabilities a call needs, e.g. ["sampling"]. docs/mcp.md. */
#define SCHEMA_CLIENT_CAPABILITIES "x-agentbroker-client-capabilities"

/* Legacy (initialize) versions, newest first. */
static const char *const legacy_versions[] = { "2025-11-25", "2025-06-18", "2025-03-26" };

static const char instructions[] =
        "Tools served by agentbroker-mcp, named <module>.<tool>. Every call is checked against the "
        "broker's policy and audited before it runs: a call that policy refuses comes back as an "
        "isError result starting with \"denied by policy:\" and the reason, and is not worth retrying "
        "unchanged. Results larger than the tool's limit are cut with a note saying how to get the "
        "rest; secret values never appear in results.";

struct mcp_server {
        bool msg_has_nul;              /* the message being handled holds an escaped NUL */
        sd_event *event;
        struct hw_registry *registry;
        struct hb_broker *broker;
        char *run;
        char *server_name;
        size_t page_size;
        const struct mcp_transport_ops *ops;
        void *userdata;
        struct hs_redactor *redactor;
        struct mcp_calls *calls;
        bool shared;
        char **bare_modules;           /* NULL-terminated, or NULL */
        void *ctx;                     /* the context messages are sent with now */

        /* Legacy session (stdio process) state. */
        bool initialized;              /* initialize answered */
        bool client_ready;             /* notifications/initialized received */
        int session_log_level;         /* logging/setLevel: lowest priority sent, -1 none */
        cJSON *client_caps;            /* initialize's params.capabilities, or NULL */

        /* The last host-config reply {"tools":{...},"modules":{...}} and when it came. */
        cJSON *policy;
        uint64_t policy_usec;
        uint64_t generation;           /* bumped when the set of allowed tools changes */
        bool policy_failing;
};

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

        if (!m || !cJSON_AddStringToObject(m, "jsonrpc", "2.0") ||
            !cJSON_AddItemToObject(m, "id", id ? cJSON_Duplicate(id, true) : cJSON_CreateNull())) {
                cJSON_Delete(m);
                return NULL;
        }
        return m;
}

/* Send a JSON-RPC error for id (NULL: null). data (consumed) may be NULL. */
static int
send_error_data(struct mcp_server *s, const cJSON *id, int code, const char *message, cJSON *data)
{
        cJSON *m = envelope(id), *e = cJSON_CreateObject();

        if (!m || !e || !cJSON_AddNumberToObject(e, "code", code) || !cJSON_AddStringToObject(e, "message", message) ||
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

static int send_error(struct mcp_server *s, const cJSON *id, int code, const char *fmt, ...) AB_PRINTF(4, 5);

static int
send_error(struct mcp_server *s, const cJSON *id, int code, const char *fmt, ...)
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
        return send_error_data(s, id, code, msg, NULL);
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
static int
send_result(struct mcp_server *s, const struct mcp_request *rq, cJSON *result, size_t *ret_bytes)
{
        _cleanup_free_ char *text = NULL;
        cJSON *m;
        size_t n;

        if (!result)
                return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        if (rq->modern && add_modern_fields(s, result) < 0) {
                cJSON_Delete(result);
                return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        }
        /* Print the result once, to know its size, and splice it into the envelope as is. */
        text = cJSON_PrintUnformatted(result);
        cJSON_Delete(result);
        if (!text)
                return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
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

        if (!m || !cJSON_AddStringToObject(m, "jsonrpc", "2.0") || !cJSON_AddStringToObject(m, "method", method) ||
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
        cJSON_ArrayForEach(t, ta)
                if (!t->string || !cJSON_GetObjectItemCaseSensitive(tb, t->string))
                        return false;
        return true;
}

/* Ask the broker which tools policy allows (with their limits) and the modules'
 * configuration, unless the last answer is younger than POLICY_TTL_MS (or force).
 * On failure the previous answer stays (none at first: no tool is listed).
 * Returns 0 or -errno. */
static int
policy_refresh(struct mcp_server *s, bool force)
{
        size_t n = hw_tools_count(s->registry);
        uint64_t now = mcp_now_usec();
        _cleanup_free_ const char **names = NULL;
        cJSON *reply = NULL;
        int r;

        if (!force && s->policy && now - s->policy_usec < POLICY_TTL_MS * 1000u)
                return 0;
        names = calloc(n ? n : 1, sizeof *names);
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                names[i] = hw_tool_at(s->registry, i)->name;
        r = hb_host_config(s->broker, names, n, &reply);   /* batches of what the broker takes */
        s->policy_usec = now;
        if (r < 0) {
                if (!s->policy_failing)
                        log_error("host-config at the broker failed: %s; %s", strerror(-r),
                                  s->policy ? "keeping the previous tool list" : "no tool is listed until it answers");
                s->policy_failing = true;
                return r;
        }
        if (s->policy_failing)
                log_notice("host-config at the broker answers again");
        s->policy_failing = false;
        if (!s->policy || !same_tools(s->policy, reply)) {
                s->generation++;
                log_info("policy allows %d of %zu tools",
                         cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(reply, "tools")), n);
        }
        cJSON_Delete(s->policy);
        s->policy = reply;
        return 0;
}

static const cJSON *
policy_tool(const struct mcp_server *s, const char *name)
{
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->policy, "tools"), name);
}

const cJSON *
mcp_server_module_config(struct mcp_server *s, const char *module)
{
        const cJSON *c;

        if (!s)
                return NULL;
        policy_refresh(s, false);
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
        r = send_result(s, rq, result, ret_bytes);
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
        r = send_error_data(s, rq->id, code, message, NULL);
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

        policy_refresh(s, false);
        t = policy_tool(s, tool);
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

/* Cheap checks before cJSON sees the text: valid UTF-8 without NUL, nesting at most
 * MAX_DEPTH, at most about MAX_VALUES values. Returns NULL or what is wrong. *ret_nul is set
 * when a string holds an escaped NUL (\u0000), which cJSON would silently cut at. */
static const char *
prescan(const char *text, size_t len, bool *ret_nul)
{
        const unsigned char *s = (const unsigned char *)text;
        unsigned depth = 0;
        size_t values = 0;
        bool in_str = false, esc = false;

        for (size_t i = 0; i < len;) {
                unsigned char c = s[i];
                size_t n;

                if (c == '\0')
                        return "the message contains a NUL byte";
                n = c < 0x80 ? 1 : ab_utf8_seq_len(text + i, len - i);
                if (n == 0)
                        return "the message is not valid UTF-8";
                i += n;
                if (n > 1)
                        continue;
                if (in_str) {
                        /* cJSON would end the string at an escaped NUL, so tools would see
                         * a shorter value than the client sent: refuse it outright. */
                        if (esc && c == 'u' && len - i >= 4 && memcmp(text + i, "0000", 4) == 0)
                                *ret_nul = true;
                        if (esc)
                                esc = false;
                        else if (c == '\\')
                                esc = true;
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                if (c == '"')
                        in_str = true;
                else if (c == '{' || c == '[') {
                        if (++depth > MAX_DEPTH)
                                return "the message is nested deeper than 64 levels";
                        values++;
                } else if (c == '}' || c == ']') {
                        if (depth > 0)
                                depth--;
                } else if (c == ',')
                        values++;
                if (values > MAX_VALUES)
                        return "the message holds more than 200000 JSON values";
        }
        return NULL;
}

static cJSON *
capabilities(void)
{
        cJSON *c = cJSON_CreateObject(), *tools = cJSON_AddObjectToObject(c, "tools");

        if (!c || !tools || !cJSON_AddBoolToObject(tools, "listChanged", false) ||
            !cJSON_AddObjectToObject(c, "logging")) {
                cJSON_Delete(c);
                return NULL;
        }
        return c;
}

static cJSON *
server_info(const struct mcp_server *s)
{
        cJSON *i = cJSON_CreateObject();

        if (!i || !cJSON_AddStringToObject(i, "name", s->server_name) ||
            !cJSON_AddStringToObject(i, "version", PACKAGE_VERSION)) {
                cJSON_Delete(i);
                return NULL;
        }
        return i;
}

static cJSON *
supported_versions(void)
{
        cJSON *a = cJSON_CreateArray();

        if (!a || !cJSON_AddItemToArray(a, cJSON_CreateString(MODERN_VERSION))) {
                cJSON_Delete(a);
                return NULL;
        }
        for (size_t i = 0; i < AB_ELEMENTSOF(legacy_versions); i++)
                if (!cJSON_AddItemToArray(a, cJSON_CreateString(legacy_versions[i]))) {
                        cJSON_Delete(a);
                        return NULL;
                }
        return a;
}

/* initialize (legacy): negotiate the version, announce what we offer. */
static int
do_initialize(struct mcp_server *s, struct mcp_request *rq, const cJSON *params)
{
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(params, "protocolVersion");
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(params, "capabilities");
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(params, "clientInfo");
        const cJSON *cname = cJSON_GetObjectItemCaseSensitive(info, "name");
        const cJSON *cver = cJSON_GetObjectItemCaseSensitive(info, "version");
        const char *version = legacy_versions[0];
        cJSON *result;

        if (s->initialized)
                return send_error(s, rq->id, RPC_INVALID_REQUEST,
                                  "Invalid Request: initialize was already received on this connection");
        if (!cJSON_IsString(pv))
                return send_error(s, rq->id, RPC_INVALID_PARAMS,
                                  "Invalid params: params.protocolVersion must be a string");
        if (caps && !cJSON_IsObject(caps))
                return send_error(s, rq->id, RPC_INVALID_PARAMS, "Invalid params: params.capabilities must be an object");
        if (info && !cJSON_IsObject(info))
                return send_error(s, rq->id, RPC_INVALID_PARAMS, "Invalid params: params.clientInfo must be an object");
        for (size_t i = 0; i < AB_ELEMENTSOF(legacy_versions); i++)
                if (strcmp(pv->valuestring, legacy_versions[i]) == 0)
                        version = legacy_versions[i];

        result = cJSON_CreateObject();
        if (!result || !cJSON_AddStringToObject(result, "protocolVersion", version) ||
            !cJSON_AddItemToObject(result, "capabilities", capabilities()) ||
            !cJSON_AddItemToObject(result, "serverInfo", server_info(s)) ||
            !cJSON_AddStringToObject(result, "instructions", instructions)) {
                cJSON_Delete(result);
                return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        }
        if (caps) {
                s->client_caps = cJSON_Duplicate(caps, true);
                if (!s->client_caps) {
                        cJSON_Delete(result);
                        return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
                }
        }
        s->initialized = true;
        log_info("initialize: client %.*s %.*s asked for %.*s, protocol %s",
                 AB_UTF8_CUT(cJSON_IsString(cname) ? cname->valuestring : "(unnamed)", 64),
                 AB_UTF8_CUT(cJSON_IsString(cver) ? cver->valuestring : "", 32),
                 AB_UTF8_CUT(pv->valuestring, 32), version);
        return send_result(s, rq, result, NULL);
}

static int
do_set_level(struct mcp_server *s, struct mcp_request *rq, const cJSON *params)
{
        const cJSON *level = cJSON_GetObjectItemCaseSensitive(params, "level");
        int prio = cJSON_IsString(level) ? mcp_log_level_from_name(level->valuestring) : -EINVAL;

        if (prio < 0)
                return send_error(s, rq->id, RPC_INVALID_PARAMS,
                                  "Invalid params: params.level must be one of debug, info, notice, warning, error, "
                                  "critical, alert, emergency");
        s->session_log_level = prio;
        return send_result(s, rq, cJSON_CreateObject(), NULL);
}

/* server/discover (2026-07-28). */
static int
do_discover(struct mcp_server *s, struct mcp_request *rq)
{
        cJSON *result = cJSON_CreateObject();

        if (!result || !cJSON_AddItemToObject(result, "supportedVersions", supported_versions()) ||
            !cJSON_AddItemToObject(result, "capabilities", capabilities()) ||
            !cJSON_AddStringToObject(result, "instructions", instructions) ||
            !cJSON_AddNumberToObject(result, "ttlMs", DISCOVER_TTL_MS) ||
            !cJSON_AddStringToObject(result, "cacheScope", "public")) {
                cJSON_Delete(result);
                return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        }
        return send_result(s, rq, result, NULL);
}

/* A tools/list cursor: base64url of "v1.<generation>.<last tool name>". New string or NULL. */
static char *
cursor_encode(uint64_t generation, const char *last)
{
        _cleanup_free_ char *plain = NULL;
        char *out = NULL;
        int n;

        n = asprintf(&plain, "v1.%" PRIu64 ".%s", generation, last);
        if (n < 0) {
                plain = NULL;
                return NULL;
        }
        if (ab_base64url_encode(plain, (size_t)n, &out) < 0)
                return NULL;
        return out;
}

/* Decode a cursor. Returns 0 with *ret_last (new string), -EINVAL (not ours), -ESTALE (the
 * list changed since), -ENOMEM. */
static int
cursor_decode(const char *cursor, uint64_t generation, char **ret_last)
{
        _cleanup_free_ unsigned char *plain = NULL;
        size_t len;
        unsigned long long gen;
        char *end, *last;
        int r;

        if (strlen(cursor) > CURSOR_MAX * 2)
                return -EINVAL;
        r = ab_base64url_decode(cursor, &plain, &len);
        if (r < 0)
                return r == -ENOMEM ? r : -EINVAL;
        if (len < 5 || len > CURSOR_MAX || memchr(plain, '\0', len) || memcmp(plain, "v1.", 3) != 0)
                return -EINVAL;
        last = realloc(plain, len + 1);
        if (!last)
                return -ENOMEM;
        plain = (unsigned char *)last;
        last[len] = '\0';
        errno = 0;
        gen = strtoull(last + 3, &end, 10);
        if (errno || end == last + 3 || *end != '.' || !end[1])
                return -EINVAL;
        if (gen != generation)
                return -ESTALE;
        last = strdup(end + 1);
        if (!last)
                return -ENOMEM;
        *ret_last = last;
        return 0;
}

/* Whether module's tools are served by their bare names (mcp_config.bare_modules). */
static bool
is_bare_module(const struct mcp_server *s, const char *module)
{
        for (char **m = s->bare_modules; m && *m; m++)
                if (strcmp(*m, module) == 0)
                        return true;
        return false;
}

/* The Tool object tools/list shows for t: its descriptor, named bare for bare modules. */
static cJSON *
listed_descriptor(const struct mcp_server *s, const struct hw_tool *t)
{
        cJSON *d = cJSON_Duplicate(t->descriptor, true);
        size_t mlen = strlen(t->module);

        if (d && is_bare_module(s, t->module) && strncmp(t->name, t->module, mlen) == 0 && t->name[mlen] == '.' &&
            !cJSON_ReplaceItemInObjectCaseSensitive(d, "name", cJSON_CreateString(t->name + mlen + 1))) {
                cJSON_Delete(d);
                return NULL;
        }
        return d;
}

/* The client capabilities tool needs (SCHEMA_CLIENT_CAPABILITIES of its inputSchema) that
 * caps (the client's declared capabilities, NULL: none) lacks, as a ClientCapabilities object
 * ({"sampling":{}}), or NULL when nothing is missing (or on allocation failure). */
static cJSON *
missing_capabilities(const struct hw_tool *tool, const cJSON *caps)
{
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(tool->descriptor, "inputSchema");
        const cJSON *need = cJSON_GetObjectItemCaseSensitive(schema, SCHEMA_CLIENT_CAPABILITIES), *c;
        cJSON *missing = NULL;

        cJSON_ArrayForEach(c, need) {
                if (!cJSON_IsString(c) || cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(caps, c->valuestring)))
                        continue;
                if (!missing && !(missing = cJSON_CreateObject()))
                        return NULL;
                if (!cJSON_AddObjectToObject(missing, c->valuestring)) {
                        cJSON_Delete(missing);
                        return NULL;
                }
        }
        return missing;
}

/* Refuse a call of a tool that needs client capabilities caps lacks (-32021, with
 * data.requiredCapabilities). Returns 1 when it answered (rq is then freed), 0 to go on, or
 * -ENOMEM. */
static int
check_client_capabilities(struct mcp_server *s, struct mcp_request *rq, const char *tool_name, const cJSON *caps)
{
        const struct hw_tool *tool = hw_tool_find(s->registry, tool_name);
        /* A tool the policy does not allow is refused as usual (no hint that it exists). */
        cJSON *missing = tool && policy_tool(s, tool_name) ? missing_capabilities(tool, caps) : NULL, *data;
        int r;

        if (!missing)
                return 0;
        data = cJSON_CreateObject();
        if (!data || !cJSON_AddItemToObject(data, "requiredCapabilities", missing)) {
                cJSON_Delete(data);
                cJSON_Delete(missing);
                data = NULL;
        }
        r = send_error_data(s, rq->id, RPC_MISSING_CLIENT_CAPABILITY,
                            "Missing required client capability: the tool needs client capabilities the "
                            "client did not declare (see data.requiredCapabilities)",
                            data);
        mcp_request_free(rq);
        return r == -ENOMEM ? r : 1;
}

/* tools/call: the bare name of a bare module's tool becomes its full name, in a copy of
 * params; anything else is passed on as is. caps: the client's declared capabilities (NULL:
 * none). rq is taken. */
static int
start_call(struct mcp_server *s, struct mcp_request *rq, const cJSON *params, const cJSON *caps)
{
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
        cJSON *copy = NULL;
        int r;

        if (s->bare_modules && cJSON_IsString(name) && !strchr(name->valuestring, '.') &&
            strlen(name->valuestring) <= 64 && !hw_tool_find(s->registry, name->valuestring)) {
                for (char **m = s->bare_modules; *m; m++) {
                        _cleanup_free_ char *full = NULL;

                        if (asprintf(&full, "%s.%s", *m, name->valuestring) < 0) {
                                full = NULL;
                                break;
                        }
                        if (!hw_tool_find(s->registry, full))
                                continue;
                        r = check_client_capabilities(s, rq, full, caps);
                        if (r != 0)
                                return r < 0 ? r : 0;
                        copy = cJSON_Duplicate(params, true);
                        if (!copy || !cJSON_ReplaceItemInObjectCaseSensitive(copy, "name", cJSON_CreateString(full))) {
                                mcp_request_free(rq);
                                return -ENOMEM;
                        }
                        r = mcp_calls_start(s->calls, rq, copy);
                        cJSON_Delete(copy);
                        return r;
                }
        }
        if (cJSON_IsString(name)) {
                r = check_client_capabilities(s, rq, name->valuestring, caps);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        return mcp_calls_start(s->calls, rq, params);
}

/* tools/list: the tools policy allows, sorted by name, page_size a page. */
static int
do_list(struct mcp_server *s, struct mcp_request *rq, const cJSON *params)
{
        const cJSON *cursor = cJSON_GetObjectItemCaseSensitive(params, "cursor");
        _cleanup_free_ char *after = NULL, *next = NULL;
        const char *last = NULL;
        size_t n = hw_tools_count(s->registry), count = 0;
        cJSON *result, *tools;
        bool more = false;
        int r;

        policy_refresh(s, false);
        if (cursor && !cJSON_IsNull(cursor)) {
                if (!cJSON_IsString(cursor))
                        return send_error(s, rq->id, RPC_INVALID_PARAMS, "Invalid params: params.cursor must be a string");
                r = cursor_decode(cursor->valuestring, s->generation, &after);
                if (r == -ESTALE)
                        return send_error(s, rq->id, RPC_INVALID_PARAMS,
                                          "Invalid params: the cursor is stale (the tool list changed since it was "
                                          "issued); list again without a cursor");
                /* A cursor we issue names a tool of the page before it: anything else is not ours. */
                if (r == 0 && (!hw_tool_find(s->registry, after) || !policy_tool(s, after)))
                        r = -EINVAL;
                if (r < 0)
                        return send_error(s, rq->id, RPC_INVALID_PARAMS,
                                          "Invalid params: the cursor is not one this server issued");
        }
        result = cJSON_CreateObject();
        tools = cJSON_AddArrayToObject(result, "tools");
        if (!result || !tools)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                const struct hw_tool *t = hw_tool_at(s->registry, i);

                if (!policy_tool(s, t->name))
                        continue;
                if (after && strcmp(t->name, after) <= 0)
                        continue;
                if (count == s->page_size) {
                        more = true;
                        break;
                }
                if (!cJSON_AddItemToArray(tools, listed_descriptor(s, t)))
                        goto oom;
                count++;
                last = t->name;
        }
        if (more) {
                next = cursor_encode(s->generation, last);
                if (!next || !cJSON_AddStringToObject(result, "nextCursor", next))
                        goto oom;
        }
        if (rq->modern && (!cJSON_AddNumberToObject(result, "ttlMs", POLICY_TTL_MS) ||
                           !cJSON_AddStringToObject(result, "cacheScope", "private")))
                goto oom;
        return send_result(s, rq, result, NULL);
oom:
        cJSON_Delete(result);
        return send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
}

/* The methods of each era. */
static bool
is_method(const char *m, const char *const *list, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(m, list[i]) == 0)
                        return true;
        return false;
}

static const char *const legacy_methods[] = { "initialize", "ping", "logging/setLevel", "tools/list", "tools/call" };

/* A request without the 2026-07-28 _meta: the initialize session's rules. rq is taken. */
static int
handle_legacy(struct mcp_server *s, struct mcp_request *rq, const char *method, const cJSON *params)
{
        int r;

        if (!is_method(method, legacy_methods, AB_ELEMENTSOF(legacy_methods)))
                r = send_error(s, rq->id, RPC_METHOD_NOT_FOUND, "Method not found: %.*s", AB_UTF8_CUT(method, 100));
        else if (strcmp(method, "ping") == 0)
                r = send_result(s, rq, cJSON_CreateObject(), NULL);
        else if (strcmp(method, "initialize") == 0)
                r = do_initialize(s, rq, params);
        else if (!s->initialized)
                r = send_error(s, rq->id, RPC_INVALID_REQUEST,
                               "Invalid Request: %s before initialize. Send initialize first, or (protocol "
                               MODERN_VERSION ") put " META_PROTOCOL_VERSION " and " META_CLIENT_CAPABILITIES
                               " in params._meta of every request", method);
        else if (strcmp(method, "logging/setLevel") == 0)
                r = do_set_level(s, rq, params);
        else if (strcmp(method, "tools/list") == 0)
                r = do_list(s, rq, params);
        else
                return start_call(s, rq, params, s->client_caps);
        mcp_request_free(rq);
        return r == -ENOMEM ? r : 0;
}

/* A request with io.modelcontextprotocol/protocolVersion in _meta: served statelessly
 * under 2026-07-28. rq is taken. */
static int
handle_modern(struct mcp_server *s, struct mcp_request *rq, const char *method, const cJSON *params,
              const cJSON *meta)
{
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(meta, META_PROTOCOL_VERSION);
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(meta, META_CLIENT_CAPABILITIES);
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(meta, META_CLIENT_INFO);
        const cJSON *level = cJSON_GetObjectItemCaseSensitive(meta, META_LOG_LEVEL);
        int r;

        rq->modern = true;
        if (!cJSON_IsString(pv))
                r = send_error(s, rq->id, RPC_INVALID_PARAMS,
                               "Invalid params: params._meta[\"" META_PROTOCOL_VERSION "\"] must be a string");
        else if (strcmp(pv->valuestring, MODERN_VERSION) != 0) {
                cJSON *data = cJSON_CreateObject();
                if (!data || !cJSON_AddItemToObject(data, "supported", supported_versions()) ||
                    !cJSON_AddStringToObject(data, "requested", pv->valuestring)) {
                        cJSON_Delete(data);
                        data = NULL;
                }
                r = send_error_data(s, rq->id, RPC_UNSUPPORTED_PROTOCOL_VERSION,
                                    "Unsupported protocol version: per-request _meta is served for " MODERN_VERSION
                                    "; 2025-11-25, 2025-06-18 and 2025-03-26 through initialize", data);
        } else if (!cJSON_IsObject(caps))
                r = send_error(s, rq->id, RPC_INVALID_PARAMS,
                               "Invalid params: params._meta[\"" META_CLIENT_CAPABILITIES "\"] is required (an "
                               "object) on every " MODERN_VERSION " request");
        else if (info && !cJSON_IsObject(info))
                r = send_error(s, rq->id, RPC_INVALID_PARAMS,
                               "Invalid params: params._meta[\"" META_CLIENT_INFO "\"] must be an object");
        else if (level && (!cJSON_IsString(level) || (rq->log_level = mcp_log_level_from_name(level->valuestring)) < 0))
                r = send_error(s, rq->id, RPC_INVALID_PARAMS,
                               "Invalid params: params._meta[\"" META_LOG_LEVEL "\"] must be one of debug, info, "
                               "notice, warning, error, critical, alert, emergency");
        else if (strcmp(method, "server/discover") == 0)
                r = do_discover(s, rq);
        else if (strcmp(method, "tools/list") == 0)
                r = do_list(s, rq, params);
        else if (strcmp(method, "tools/call") == 0)
                return start_call(s, rq, params, caps);
        else if (is_method(method, legacy_methods, AB_ELEMENTSOF(legacy_methods)))
                r = send_error(s, rq->id, RPC_METHOD_NOT_FOUND,
                               "Method not found: %s is not part of protocol " MODERN_VERSION
                               " (send it without " META_PROTOCOL_VERSION " in _meta, after initialize)", method);
        else
                r = send_error(s, rq->id, RPC_METHOD_NOT_FOUND, "Method not found: %.*s", AB_UTF8_CUT(method, 100));
        mcp_request_free(rq);
        return r == -ENOMEM ? r : 0;
}

static void
handle_notification(struct mcp_server *s, const char *method, const cJSON *params)
{
        if (strcmp(method, "notifications/initialized") == 0) {
                if (s->initialized && !s->client_ready)
                        log_debug("client initialized");
                s->client_ready = s->initialized;
        } else if (strcmp(method, "notifications/cancelled") == 0) {
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(params, "requestId");
                if (mcp_id_valid(id))
                        mcp_calls_cancel_in(s->calls, id, s->ctx);
        } else
                log_debug("ignoring notification %.*s", AB_UTF8_CUT(method, 100));
}

/* One parsed message. */
static int
dispatch(struct mcp_server *s, const cJSON *m)
{
        const cJSON *id, *method, *jsonrpc, *params, *meta, *token;
        struct mcp_request *rq;
        bool has_id;

        if (cJSON_IsArray(m))
                return send_error(s, NULL, RPC_INVALID_REQUEST,
                                  "Invalid Request: JSON-RPC batches are not supported (MCP removed them in 2025-06-18)");
        if (!cJSON_IsObject(m))
                return send_error(s, NULL, RPC_INVALID_REQUEST, "Invalid Request: a message must be a JSON object");
        id = cJSON_GetObjectItemCaseSensitive(m, "id");
        method = cJSON_GetObjectItemCaseSensitive(m, "method");
        jsonrpc = cJSON_GetObjectItemCaseSensitive(m, "jsonrpc");
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        has_id = id != NULL;

        if (!method && has_id && (cJSON_GetObjectItemCaseSensitive(m, "result") ||
                                  cJSON_GetObjectItemCaseSensitive(m, "error"))) {
                /* A response: we never send requests, so it answers nothing. */
                log_debug("ignoring a response from the client");
                return 0;
        }
        if (has_id && !mcp_id_valid(id))
                return send_error(s, NULL, RPC_INVALID_REQUEST,
                                  "Invalid Request: id must be a string or an integer (not null)");
        if (!cJSON_IsString(jsonrpc) || strcmp(jsonrpc->valuestring, "2.0") != 0)
                return send_error(s, id, RPC_INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"");
        if (!cJSON_IsString(method))
                return send_error(s, id, RPC_INVALID_REQUEST, "Invalid Request: method must be a string");
        if (!has_id) {
                /* A notification: never answered, even when its params are wrong. */
                if (!params || cJSON_IsObject(params))
                        handle_notification(s, method->valuestring, params);
                return 0;
        }
        if (params && !cJSON_IsObject(params))
                return send_error(s, id, RPC_INVALID_PARAMS, "Invalid params: params must be an object");
        meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
        if (meta && !cJSON_IsObject(meta))
                return send_error(s, id, RPC_INVALID_PARAMS, "Invalid params: params._meta must be an object");

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
                return handle_modern(s, rq, method->valuestring, params, meta);
        if (strcmp(method->valuestring, "server/discover") == 0) {
                int r = send_error(s, id, RPC_INVALID_PARAMS,
                                   "Invalid params: server/discover is a " MODERN_VERSION " request: params._meta "
                                   "must carry " META_PROTOCOL_VERSION " and " META_CLIENT_CAPABILITIES);
                mcp_request_free(rq);
                return r == -ENOMEM ? r : 0;
        }
        return handle_legacy(s, rq, method->valuestring, params);
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
        const char *why, *end = NULL;
        cJSON *m, *params;
        int r;

        s->msg_has_nul = false;
        why = prescan(msg, len, &s->msg_has_nul);
        if (why) {
                r = send_error(s, NULL, RPC_PARSE_ERROR, "Parse error: %s", why);
                return r == -ENOMEM ? r : 0;
        }
        m = cJSON_ParseWithLengthOpts(msg, len, &end, false);
        if (m && end) {
                for (; end < msg + len; end++)
                        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
                                break;
        }
        if (!m || !end || end < msg + len) {
                size_t at = end && end >= msg ? (size_t)(end - msg) : (cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= msg &&
                                                                         cJSON_GetErrorPtr() <= msg + len
                                                                 ? (size_t)(cJSON_GetErrorPtr() - msg)
                                                                 : 0);
                cJSON_Delete(m);
                r = send_error(s, NULL, RPC_PARSE_ERROR, "Parse error: invalid JSON at byte %zu", at);
                return r == -ENOMEM ? r : 0;
        }
        /* ids, progress tokens and the requestId of a cancellation go back exactly as sent */
        params = cJSON_GetObjectItemCaseSensitive(m, "params");
        if (mcp_id_exact(m, "id") < 0 || mcp_id_exact(params, "requestId") < 0 ||
            mcp_id_exact(cJSON_GetObjectItemCaseSensitive(params, "_meta"), "progressToken") < 0) {
                cJSON_Delete(m);
                return -ENOMEM;
        }
        r = dispatch(s, m);
        cJSON_Delete(m);
        return r == -ENOMEM ? r : 0;
}

/* ---- life cycle ------------------------------------------------------------------------- */

int
mcp_server_new(sd_event *event, const struct mcp_config *cfg, const struct mcp_transport_ops *ops, void *userdata,
               struct mcp_server **ret)
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
        s->page_size = cfg->page_size > 0 && cfg->page_size <= MCP_PAGE_SIZE ? cfg->page_size : MCP_PAGE_SIZE;
        s->run = strdup(cfg->run);
        s->server_name = strdup(cfg->server_name ? cfg->server_name : "agentbroker-mcp");
        if (!s->run || !s->server_name) {
                r = -ENOMEM;
                goto fail;
        }
        r = hs_redactor_new(&s->redactor);
        if (r < 0)
                goto fail;
        host = (struct mcp_calls_host){
                .registry = s->registry,
                .broker = s->broker,
                .run = s->run,
                .redactor = s->redactor,
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
        policy_refresh(s, true);
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
        hs_redactor_free(s->redactor);
        cJSON_Delete(s->policy);
        cJSON_Delete(s->client_caps);
        free(s->run);
        free(s->server_name);
        for (char **m = s->bare_modules; m && *m; m++)
                free(*m);
        free(s->bare_modules);
        sd_event_unref(s->event);
        free(s);
}

int
mcp_server_refuse(struct mcp_server *s, const char *message)
{
        int r = send_error_data(s, NULL, RPC_INVALID_REQUEST, message, NULL);
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
