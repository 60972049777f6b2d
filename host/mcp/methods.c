/* SPDX-License-Identifier: MIT */
/* The MCP server's methods: initialize and the 2026-07-28 per-request lifecycle,
 * server/discover, logging/setLevel, tools/list with cursors, and the dispatch of requests
 * and notifications by lifecycle. */
#include "config.h"

#include "host/mcp/server_internal.h"

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

/* Tell the broker (run-client, audited) which MCP client uses the run: its clientInfo name and
 * version, once per change (a 2026-07-28 client sends it with every request). */
static void
note_client(struct mcp_server *s, const cJSON *info)
{
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "name"));
        const char *version = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "version"));
        cJSON *copy;
        int r;

        if (s->client_info && (info ? cJSON_Compare(s->client_info, info, true) : !s->client_info->child))
                return;
        copy = info ? cJSON_Duplicate(info, true) : cJSON_CreateObject();
        if (!copy)
                return;
        cJSON_Delete(s->client_info);
        s->client_info = copy;
        r = hb_run_client_async(s->broker, s->run, name, version);
        if (r < 0)
                log_warning("run-client at the broker failed: %s", strerror(-r));
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
                return mcp_server_send_error(
                        s, rq->id, RPC_INVALID_REQUEST,
                        "Invalid Request: initialize was already received on this connection");
        if (!cJSON_IsString(pv))
                return mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                             "Invalid params: params.protocolVersion must be a string");
        if (caps && !cJSON_IsObject(caps))
                return mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                             "Invalid params: params.capabilities must be an object");
        if (info && !cJSON_IsObject(info))
                return mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                             "Invalid params: params.clientInfo must be an object");
        for (size_t i = 0; i < AB_ELEMENTSOF(legacy_versions); i++)
                if (strcmp(pv->valuestring, legacy_versions[i]) == 0)
                        version = legacy_versions[i];

        result = cJSON_CreateObject();
        if (!result || !cJSON_AddStringToObject(result, "protocolVersion", version) ||
            !cJSON_AddItemToObject(result, "capabilities", capabilities()) ||
            !cJSON_AddItemToObject(result, "serverInfo", server_info(s)) ||
            !cJSON_AddStringToObject(result, "instructions", instructions)) {
                cJSON_Delete(result);
                return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        }
        if (caps) {
                s->client_caps = cJSON_Duplicate(caps, true);
                if (!s->client_caps) {
                        cJSON_Delete(result);
                        return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR,
                                                     "Internal error: out of memory");
                }
        }
        s->initialized = true;
        note_client(s, cJSON_IsObject(info) ? info : NULL);
        log_info("initialize: client %.*s %.*s asked for %.*s, protocol %s",
                 AB_UTF8_CUT(cJSON_IsString(cname) ? cname->valuestring : "(unnamed)", 64),
                 AB_UTF8_CUT(cJSON_IsString(cver) ? cver->valuestring : "", 32),
                 AB_UTF8_CUT(pv->valuestring, 32), version);
        return mcp_server_send_result(s, rq, result, NULL);
}

static int
do_set_level(struct mcp_server *s, struct mcp_request *rq, const cJSON *params)
{
        const cJSON *level = cJSON_GetObjectItemCaseSensitive(params, "level");
        int prio = cJSON_IsString(level) ? mcp_log_level_from_name(level->valuestring) : -EINVAL;

        if (prio < 0)
                return mcp_server_send_error(
                        s, rq->id, RPC_INVALID_PARAMS,
                        "Invalid params: params.level must be one of debug, info, notice, warning, error, "
                        "critical, alert, emergency");
        s->session_log_level = prio;
        return mcp_server_send_result(s, rq, cJSON_CreateObject(), NULL);
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
                return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
        }
        return mcp_server_send_result(s, rq, result, NULL);
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

        if (d && is_bare_module(s, t->module) && strncmp(t->name, t->module, mlen) == 0 &&
            t->name[mlen] == '.' &&
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

        cJSON_ArrayForEach(c, need)
        {
                if (!cJSON_IsString(c) ||
                    cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(caps, c->valuestring)))
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

/* Refuse a call of a tool that needs client capabilities caps lacks (RPC_MISSING_CLIENT_CAPABILITY, with
 * data.requiredCapabilities). Returns 1 when it answered (rq is then freed), 0 to go on, or
 * -ENOMEM. */
static int
check_client_capabilities(struct mcp_server *s, struct mcp_request *rq, const char *tool_name,
                          const cJSON *caps)
{
        const struct hw_tool *tool = hw_tool_find(s->registry, tool_name);
        /* A tool the policy does not allow is refused as usual (no hint that it exists). */
        cJSON *missing =
                      tool && mcp_server_policy_tool(s, tool_name) ? missing_capabilities(tool, caps) : NULL,
              *data;
        int r;

        if (!missing)
                return 0;
        /* Refused by the host: audited like the refusals of host/mcp/calls.c. */
        r = hb_call_reject_async(s->broker, s->run, tool_name, "missing-capability", NULL);
        if (r < 0)
                log_debug("call-reject (missing-capability) at the broker failed: %s", strerror(-r));
        data = cJSON_CreateObject();
        if (!data || !cJSON_AddItemToObject(data, "requiredCapabilities", missing)) {
                cJSON_Delete(data);
                cJSON_Delete(missing);
                data = NULL;
        }
        r = mcp_server_send_error_data(
                s, rq->id, RPC_MISSING_CLIENT_CAPABILITY,
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

        hw_registry_want(s->registry); /* a server that starts lazily starts now */
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
                        if (!copy || !cJSON_ReplaceItemInObjectCaseSensitive(copy, "name",
                                                                             cJSON_CreateString(full))) {
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
        size_t n, count = 0;
        cJSON *result, *tools;
        bool more = false;
        int r;

        hw_registry_want(s->registry); /* a server that starts lazily starts now */
        n = hw_tools_count(s->registry);
        mcp_server_policy_refresh(s, false);
        if (cursor && !cJSON_IsNull(cursor)) {
                if (!cJSON_IsString(cursor))
                        return mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                                     "Invalid params: params.cursor must be a string");
                r = cursor_decode(cursor->valuestring, s->generation, &after);
                if (r == -ESTALE)
                        return mcp_server_send_error(
                                s, rq->id, RPC_INVALID_PARAMS,
                                "Invalid params: the cursor is stale (the tool list changed since it was "
                                "issued); list again without a cursor");
                /* A cursor we issue names a tool of the page before it: anything else is not ours. */
                if (r == 0 && (!hw_tool_find(s->registry, after) || !mcp_server_policy_tool(s, after)))
                        r = -EINVAL;
                if (r < 0)
                        return mcp_server_send_error(
                                s, rq->id, RPC_INVALID_PARAMS,
                                "Invalid params: the cursor is not one this server issued");
        }
        result = cJSON_CreateObject();
        tools = cJSON_AddArrayToObject(result, "tools");
        if (!result || !tools)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                const struct hw_tool *t = hw_tool_at(s->registry, i);

                if (!mcp_server_policy_tool(s, t->name))
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
        return mcp_server_send_result(s, rq, result, NULL);
oom:
        cJSON_Delete(result);
        return mcp_server_send_error(s, rq->id, RPC_INTERNAL_ERROR, "Internal error: out of memory");
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

static const char *const legacy_methods[] = { "initialize", "ping", "logging/setLevel", "tools/list",
                                              "tools/call" };

/* A request without the 2026-07-28 _meta: the initialize session's rules. rq is taken. */
int
mcp_server_handle_legacy(struct mcp_server *s, struct mcp_request *rq, const char *method,
                         const cJSON *params)
{
        int r;

        if (!is_method(method, legacy_methods, AB_ELEMENTSOF(legacy_methods)))
                r = mcp_server_send_error(s, rq->id, RPC_METHOD_NOT_FOUND, "Method not found: %.*s",
                                          AB_UTF8_CUT(method, 100));
        else if (strcmp(method, "ping") == 0)
                r = mcp_server_send_result(s, rq, cJSON_CreateObject(), NULL);
        else if (strcmp(method, "initialize") == 0)
                r = do_initialize(s, rq, params);
        else if (!s->initialized)
                r = mcp_server_send_error(
                        s, rq->id, RPC_INVALID_REQUEST,
                        "Invalid Request: %s before initialize. Send initialize first, or (protocol " MODERN_VERSION
                        ") put " META_PROTOCOL_VERSION " and " META_CLIENT_CAPABILITIES
                        " in params._meta of every request",
                        method);
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
int
mcp_server_handle_modern(struct mcp_server *s, struct mcp_request *rq, const char *method,
                         const cJSON *params, const cJSON *meta)
{
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(meta, META_PROTOCOL_VERSION);
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(meta, META_CLIENT_CAPABILITIES);
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(meta, META_CLIENT_INFO);
        const cJSON *level = cJSON_GetObjectItemCaseSensitive(meta, META_LOG_LEVEL);
        int r;

        rq->modern = true;
        if (!cJSON_IsString(pv))
                r = mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                          "Invalid params: params._meta[\"" META_PROTOCOL_VERSION
                                          "\"] must be a string");
        else if (strcmp(pv->valuestring, MODERN_VERSION) != 0) {
                cJSON *data = cJSON_CreateObject();
                if (!data || !cJSON_AddItemToObject(data, "supported", supported_versions()) ||
                    !cJSON_AddStringToObject(data, "requested", pv->valuestring)) {
                        cJSON_Delete(data);
                        data = NULL;
                }
                r = mcp_server_send_error_data(
                        s, rq->id, RPC_UNSUPPORTED_PROTOCOL_VERSION,
                        "Unsupported protocol version: per-request _meta is served for " MODERN_VERSION
                        "; 2025-11-25, 2025-06-18 and 2025-03-26 through initialize",
                        data);
        } else if (!cJSON_IsObject(caps))
                r = mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                          "Invalid params: params._meta[\"" META_CLIENT_CAPABILITIES
                                          "\"] is required (an "
                                          "object) on every " MODERN_VERSION " request");
        else if (info && !cJSON_IsObject(info))
                r = mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                          "Invalid params: params._meta[\"" META_CLIENT_INFO
                                          "\"] must be an object");
        else if (level && (!cJSON_IsString(level) ||
                           (rq->log_level = mcp_log_level_from_name(level->valuestring)) < 0))
                r = mcp_server_send_error(s, rq->id, RPC_INVALID_PARAMS,
                                          "Invalid params: params._meta[\"" META_LOG_LEVEL
                                          "\"] must be one of debug, info, "
                                          "notice, warning, error, critical, alert, emergency");
        else if (strcmp(method, "server/discover") == 0)
                r = do_discover(s, rq);
        else if (strcmp(method, "tools/list") == 0)
                r = do_list(s, rq, params);
        else if (strcmp(method, "tools/call") == 0) {
                note_client(s, info);
                return start_call(s, rq, params, caps);
        } else if (is_method(method, legacy_methods, AB_ELEMENTSOF(legacy_methods)))
                r = mcp_server_send_error(s, rq->id, RPC_METHOD_NOT_FOUND,
                                          "Method not found: %s is not part of protocol " MODERN_VERSION
                                          " (send it without " META_PROTOCOL_VERSION
                                          " in _meta, after initialize)",
                                          method);
        else
                r = mcp_server_send_error(s, rq->id, RPC_METHOD_NOT_FOUND, "Method not found: %.*s",
                                          AB_UTF8_CUT(method, 100));
        mcp_request_free(rq);
        return r == -ENOMEM ? r : 0;
}

void
mcp_server_handle_notification(struct mcp_server *s, const char *method, const cJSON *params)
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
