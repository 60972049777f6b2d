/* SPDX-License-Identifier: MIT */
/* http: named HTTP endpoints from the policy, one narrow tool each (docs/module-guide.md,
 * "The http module"). Instead of a raw fetch, the operator declares each endpoint:
 *
 *     modules:
 *       http:
 *         endpoints:
 *           - name: get_issue
 *             description: "One issue of the project."
 *             method: GET
 *             url: "https://api.github.com/repos/acme/app/issues/{number}"
 *             params:
 *               - { name: number, type: integer, minimum: 1, description: "the issue number" }
 *             fields: [number, title, state, user.login]
 *
 * and the module serves http.get_issue with a strict input schema generated from the URL
 * template's parameters (every one required, typed, additionalProperties false). A string
 * parameter is percent-encoded (everything but A-Z a-z 0-9 - . _ ~), so it cannot add a path
 * segment or a query. The request goes through abm_call_http: agentbroker-egress checks it
 * against the tool's egress rules and injects the secret the policy names there (the module
 * never holds it). `fields` (dotted paths) selects what of a JSON answer is returned; the
 * result says how many bytes came and how many are returned. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <agentbroker/module.h>

#include "common/name.h"

#define HTTP_ENDPOINTS_MAX 64
#define HTTP_PARAMS_MAX 16
#define HTTP_FIELDS_MAX 64
#define HTTP_URL_MAX 2048
#define HTTP_STRING_PARAM_MAX 256 /* default maxLength of a string parameter */
#define HTTP_DESCRIPTION_MAX 1024

enum ptype {
        P_STRING,
        P_INTEGER,
        P_NUMBER,
        P_BOOLEAN
};

struct param {
        char *name;
        enum ptype type;
};

struct endpoint {
        char *name, *method, *url, *description, *schema;
        struct param params[HTTP_PARAMS_MAX];
        size_t n_params;
        char *fields[HTTP_FIELDS_MAX];
        size_t n_fields;
};

static struct endpoint endpoints[HTTP_ENDPOINTS_MAX];
static size_t n_endpoints;
static struct abm_tool tools[HTTP_ENDPOINTS_MAX];

static int http_call(struct abm_call *call, struct abm_error *err);

/* Before init the descriptor holds one placeholder tool (the loader wants at least one);
 * init replaces the list with the configured endpoints (ABI 1.1: tools set in init). */
static const char placeholder_schema[] = "{\"type\":\"object\",\"additionalProperties\":false}";

AB_MODULE_EXPORT struct abm_module agentbroker_module;

/* Endpoint and parameter names: [A-Za-z0-9_-]{1,ABM_NAME_MAX}. */
static bool
name_ok(const char *s)
{
        return ab_name_valid(s, ABM_NAME_MAX, 0);
}

static const struct param *
find_param(const struct endpoint *e, const char *name, size_t len)
{
        for (size_t i = 0; i < e->n_params; i++)
                if (strlen(e->params[i].name) == len && strncmp(e->params[i].name, name, len) == 0)
                        return &e->params[i];
        return NULL;
}

/* Build the input schema of e from its params (JSON values of the config). Returns 0 or -errno. */
static int
build_schema(struct endpoint *e, const struct abm_json *params, struct abm_error *err)
{
        cJSON *schema = cJSON_CreateObject(), *props, *req;
        int r = -ENOMEM;

        props = cJSON_AddObjectToObject(schema, "properties");
        req = cJSON_AddArrayToObject(schema, "required");
        if (!schema || !props || !req || !cJSON_AddStringToObject(schema, "type", "object"))
                goto out;
        for (size_t i = 0; i < e->n_params; i++) {
                const struct abm_json *p = abm_json_array_at(params, i);
                static const char *const tnames[] = { "string", "integer", "number", "boolean" };
                cJSON *prop = cJSON_AddObjectToObject(props, e->params[i].name);
                const char *desc;
                double num;
                int64_t len;

                if (!prop || !cJSON_AddStringToObject(prop, "type", tnames[e->params[i].type]) ||
                    !cJSON_AddItemToArray(req, cJSON_CreateString(e->params[i].name)))
                        goto out;
                if (abm_json_get_string(p, "description", &desc) == 0 &&
                    !cJSON_AddStringToObject(prop, "description", desc))
                        goto out;
                if (e->params[i].type == P_INTEGER || e->params[i].type == P_NUMBER) {
                        if (abm_json_get_number(p, "minimum", &num) == 0 &&
                            !cJSON_AddNumberToObject(prop, "minimum", num))
                                goto out;
                        if (abm_json_get_number(p, "maximum", &num) == 0 &&
                            !cJSON_AddNumberToObject(prop, "maximum", num))
                                goto out;
                }
                if (e->params[i].type == P_STRING) {
                        const struct abm_json *en;

                        if (abm_json_get_int(p, "maxLength", &len) < 0 || len < 1 ||
                            len > HTTP_STRING_PARAM_MAX)
                                len = HTTP_STRING_PARAM_MAX;
                        if (!cJSON_AddNumberToObject(prop, "maxLength", (double)len))
                                goto out;
                        if (abm_json_get_array(p, "enum", &en) == 0) {
                                cJSON *arr = cJSON_AddArrayToObject(prop, "enum");
                                for (size_t k = 0; arr && k < abm_json_array_size(en); k++) {
                                        const char *v = abm_json_string(abm_json_array_at(en, k));
                                        if (!v) {
                                                r = abm_error_set(
                                                        err, -EINVAL,
                                                        "endpoint %s: enum of %s must hold strings", e->name,
                                                        e->params[i].name);
                                                goto out;
                                        }
                                        cJSON_AddItemToArray(arr, cJSON_CreateString(v));
                                }
                        }
                }
        }
        if (!cJSON_AddFalseToObject(schema, "additionalProperties"))
                goto out;
        e->schema = cJSON_PrintUnformatted(schema);
        r = e->schema ? 0 : -ENOMEM;
out:
        cJSON_Delete(schema);
        if (r == -ENOMEM)
                return abm_error_set(err, r, "out of memory");
        return r;
}

/* Read one endpoint of the configuration into e. Returns 0 or -errno with err filled. */
static int
parse_endpoint(const struct abm_json *c, struct endpoint *e, struct abm_error *err)
{
        static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" };
        static const char *const tnames[] = { "string", "integer", "number", "boolean" };
        const struct abm_json *params = NULL, *fields = NULL;
        const char *s, *method = "GET", *url, *desc = NULL;
        bool ok = false;

        if (abm_json_get_string(c, "name", &s) < 0 || !name_ok(s))
                return abm_error_set(err, -EINVAL,
                                     "every endpoint needs a name of letters, digits, '_' or '-'");
        e->name = strdup(s);
        if (abm_json_get_string(c, "url", &url) < 0 || strlen(url) > HTTP_URL_MAX ||
            (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0))
                return abm_error_set(err, -EINVAL, "endpoint %s: url must be an http(s) URL template", s);
        (void)abm_json_get_string(c, "method", &method);
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
                ok = ok || strcmp(method, methods[i]) == 0;
        if (!ok)
                return abm_error_set(err, -EINVAL, "endpoint %s: unknown method %s", s, method);
        (void)abm_json_get_string(c, "description", &desc);
        if (desc && strlen(desc) > HTTP_DESCRIPTION_MAX)
                return abm_error_set(err, -EINVAL, "endpoint %s: description is too long", s);
        e->method = strdup(method);
        e->url = strdup(url);
        if (asprintf(&e->description, "%s (%s %s)", desc ? desc : "HTTP endpoint", method, url) < 0)
                e->description = NULL;
        if (!e->name || !e->method || !e->url || !e->description)
                return abm_error_set(err, -ENOMEM, "out of memory");

        if (abm_json_get_array(c, "params", &params) == 0) {
                if (abm_json_array_size(params) > HTTP_PARAMS_MAX)
                        return abm_error_set(err, -EINVAL, "endpoint %s: at most %d params", s,
                                             HTTP_PARAMS_MAX);
                for (size_t i = 0; i < abm_json_array_size(params); i++) {
                        const struct abm_json *p = abm_json_array_at(params, i);
                        const char *pn, *pt = "string";
                        int t = -1;

                        if (abm_json_get_string(p, "name", &pn) < 0 || !name_ok(pn))
                                return abm_error_set(err, -EINVAL, "endpoint %s: every param needs a name",
                                                     s);
                        (void)abm_json_get_string(p, "type", &pt);
                        for (int k = 0; k < 4; k++)
                                if (strcmp(pt, tnames[k]) == 0)
                                        t = k;
                        if (t < 0)
                                return abm_error_set(err, -EINVAL,
                                                     "endpoint %s: param %s: type must be string, integer, "
                                                     "number or boolean",
                                                     s, pn);
                        e->params[e->n_params].name = strdup(pn);
                        if (!e->params[e->n_params].name)
                                return abm_error_set(err, -ENOMEM, "out of memory");
                        e->params[e->n_params++].type = (enum ptype)t;
                }
        }
        /* Every {name} of the template is a declared param, and every param is used. */
        for (const char *p = strchr(url, '{'); p; p = strchr(p + 1, '{')) {
                const char *end = strchr(p, '}');
                if (!end || !find_param(e, p + 1, (size_t)(end - p - 1)))
                        return abm_error_set(err, -EINVAL,
                                             "endpoint %s: the url's %.*s is not a declared param", s,
                                             end ? (int)(end - p + 1) : 1, p);
        }
        for (size_t i = 0; i < e->n_params; i++) {
                char brace[ABM_NAME_MAX + 3];
                snprintf(brace, sizeof(brace), "{%s}", e->params[i].name);
                if (!strstr(url, brace))
                        return abm_error_set(err, -EINVAL, "endpoint %s: param %s is not in the url", s,
                                             e->params[i].name);
        }
        if (abm_json_get_array(c, "fields", &fields) == 0) {
                if (abm_json_array_size(fields) > HTTP_FIELDS_MAX)
                        return abm_error_set(err, -EINVAL, "endpoint %s: at most %d fields", s,
                                             HTTP_FIELDS_MAX);
                for (size_t i = 0; i < abm_json_array_size(fields); i++) {
                        const char *f = abm_json_string(abm_json_array_at(fields, i));
                        if (!f || !*f || strlen(f) > 256)
                                return abm_error_set(err, -EINVAL,
                                                     "endpoint %s: fields must be dotted names", s);
                        e->fields[e->n_fields] = strdup(f);
                        if (!e->fields[e->n_fields++])
                                return abm_error_set(err, -ENOMEM, "out of memory");
                }
        }
        return build_schema(e, params, err);
}

static void
http_fini(void)
{
        for (size_t i = 0; i < n_endpoints; i++) {
                struct endpoint *e = &endpoints[i];

                free(e->name);
                free(e->method);
                free(e->url);
                free(e->description);
                cJSON_free(e->schema);
                for (size_t k = 0; k < e->n_params; k++)
                        free(e->params[k].name);
                for (size_t k = 0; k < e->n_fields; k++)
                        free(e->fields[k]);
        }
        memset(endpoints, 0, sizeof(endpoints));
        n_endpoints = 0;
}

static int
http_init(const struct abm_json *config, struct abm_error *err)
{
        const struct abm_json *list;
        size_t n;
        int r;

        if (abm_json_get_array(config, "endpoints", &list) < 0 || (n = abm_json_array_size(list)) == 0)
                return abm_error_set(err, -EINVAL, "modules.http.endpoints must list at least one endpoint");
        if (n > HTTP_ENDPOINTS_MAX)
                return abm_error_set(err, -EINVAL, "at most %d endpoints", HTTP_ENDPOINTS_MAX);
        for (size_t i = 0; i < n; i++) {
                n_endpoints = i + 1;
                r = parse_endpoint(abm_json_array_at(list, i), &endpoints[i], err);
                if (r < 0) {
                        http_fini();
                        return r;
                }
                tools[i] = (struct abm_tool){
                        .name = endpoints[i].name,
                        .description = endpoints[i].description,
                        .input_schema = endpoints[i].schema,
                        .annotations = { .read_only = strcmp(endpoints[i].method, "GET") == 0
                                                              ? ABM_HINT_TRUE
                                                              : ABM_HINT_FALSE,
                                         .open_world = ABM_HINT_TRUE },
                        .call = http_call,
                };
        }
        agentbroker_module.tools = tools;
        agentbroker_module.n_tools = n;
        return 0;
}

/* Append s percent-encoded (all but unreserved characters) to out. Returns 0 or -E2BIG. */
static int
append_encoded(char *out, size_t size, size_t *len, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";

        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                             c == '-' || c == '.' || c == '_' || c == '~';

                if (*len + 4 > size)
                        return -E2BIG;
                if (plain)
                        out[(*len)++] = (char)c;
                else {
                        out[(*len)++] = '%';
                        out[(*len)++] = hex[c >> 4];
                        out[(*len)++] = hex[c & 15];
                }
        }
        out[*len] = 0;
        return 0;
}

/* Fill the URL template of e with the call's arguments. Returns 0 or -errno. */
static int
expand_url(const struct endpoint *e, const struct abm_json *args, char out[HTTP_URL_MAX * 3 + 1])
{
        size_t len = 0, size = HTTP_URL_MAX * 3 + 1;
        const char *p = e->url;

        out[0] = 0;
        while (*p) {
                const char *open = strchr(p, '{'), *close;
                const struct param *prm;
                char val[64], chunk[HTTP_URL_MAX + 1];
                const char *sv = NULL;
                int64_t iv;
                double dv;
                bool bv;

                if (!open) {
                        if (len + strlen(p) + 1 > size)
                                return -E2BIG;
                        strcpy(out + len, p);
                        return 0;
                }
                snprintf(chunk, sizeof(chunk), "%.*s", (int)(open - p), p);
                if (len + strlen(chunk) + 1 > size)
                        return -E2BIG;
                strcpy(out + len, chunk);
                len += strlen(chunk);
                close = strchr(open, '}');
                prm = find_param(e, open + 1, (size_t)(close - open - 1));
                switch (prm->type) {
                case P_INTEGER:
                        if (abm_json_get_int(args, prm->name, &iv) < 0)
                                return -EINVAL;
                        snprintf(val, sizeof(val), "%" PRId64, iv);
                        sv = val;
                        break;
                case P_NUMBER:
                        if (abm_json_get_number(args, prm->name, &dv) < 0)
                                return -EINVAL;
                        snprintf(val, sizeof(val), "%.17g", dv);
                        sv = val;
                        break;
                case P_BOOLEAN:
                        if (abm_json_get_bool(args, prm->name, &bv) < 0)
                                return -EINVAL;
                        sv = bv ? "true" : "false";
                        break;
                case P_STRING:
                        if (abm_json_get_string(args, prm->name, &sv) < 0)
                                return -EINVAL;
                        break;
                }
                if (append_encoded(out, size, &len, sv) < 0)
                        return -E2BIG;
                p = close + 1;
        }
        return 0;
}

/* Copy the value at dotted path from src into dst (creating the objects on the way). */
static int
select_field(const cJSON *src, cJSON *dst, const char *path)
{
        char key[257];
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        const cJSON *v;

        if (n == 0 || n >= sizeof(key))
                return 0;
        memcpy(key, path, n);
        key[n] = 0;
        v = cJSON_GetObjectItemCaseSensitive(src, key);
        if (!v)
                return 0;
        if (!dot) {
                cJSON *copy = cJSON_Duplicate(v, true);
                if (!copy || !cJSON_AddItemToObject(dst, key, copy)) {
                        cJSON_Delete(copy);
                        return -ENOMEM;
                }
                return 0;
        }
        if (!cJSON_IsObject(v))
                return 0;
        {
                cJSON *sub = cJSON_GetObjectItemCaseSensitive(dst, key);
                if (!sub && !(sub = cJSON_AddObjectToObject(dst, key)))
                        return -ENOMEM;
                return select_field(v, sub, dot + 1);
        }
}

static const struct endpoint *
endpoint_of(const char *tool_name)
{
        for (size_t i = 0; i < n_endpoints; i++)
                if (strcmp(endpoints[i].name, tool_name) == 0)
                        return &endpoints[i];
        return NULL;
}

static int
http_call(struct abm_call *call, struct abm_error *err)
{
        const struct abm_http_response *rsp;
        const struct endpoint *e = NULL;
        char url[HTTP_URL_MAX * 3 + 1];
        cJSON *out = NULL, *body = NULL, *data = NULL;
        char *text = NULL, *data_text = NULL;
        int r;

        /* The hook is shared by every endpoint: which one is this call's? */
        e = endpoint_of(abm_call_tool(call));
        if (!e)
                return abm_error_set(err, -EINVAL, "unknown endpoint");
        r = expand_url(e, abm_call_args(call), url);
        if (r < 0)
                return abm_error_set(err, r, "cannot build the URL of %s from the arguments", e->name);
        r = abm_call_http(call, e->method, url, NULL, 0, NULL, &rsp);
        if (r < 0) {
                const char *why = abm_call_denial(call);
                return abm_error_set(err, r, "%s %s: %s%s%s", e->method, e->name, strerror(-r),
                                     why ? ": " : "", why ? why : "");
        }
        out = cJSON_CreateObject();
        if (!out || !cJSON_AddNumberToObject(out, "status", rsp->status) ||
            !cJSON_AddNumberToObject(out, "bytes_before", (double)rsp->body_len)) {
                r = -ENOMEM;
                goto out;
        }
        body = rsp->truncated ? NULL : cJSON_ParseWithLength(rsp->body, rsp->body_len);
        if (e->n_fields && body) {
                data = cJSON_CreateObject();
                for (size_t i = 0; data && i < e->n_fields; i++)
                        if (select_field(body, data, e->fields[i]) < 0) {
                                r = -ENOMEM;
                                goto out;
                        }
        } else if (body) {
                data = body;
                body = NULL;
        }
        if (data) {
                data_text = cJSON_PrintUnformatted(data);
                if (!data_text || !cJSON_AddItemToObject(out, "data", data)) {
                        r = -ENOMEM;
                        goto out;
                }
                data = NULL;
        } else if (!cJSON_AddStringToObject(out, "text", rsp->body)) {
                r = -ENOMEM;
                goto out;
        }
        if (!cJSON_AddNumberToObject(out, "bytes_after",
                                     (double)(data_text ? strlen(data_text) : rsp->body_len)) ||
            !cJSON_AddBoolToObject(out, "truncated", rsp->truncated) ||
            (rsp->truncated && !cJSON_AddStringToObject(out, "note",
                                                        "the answer was cut at the policy's "
                                                        "max_response_bytes; fields were not selected")) ||
            (rsp->redactions && !cJSON_AddNumberToObject(out, "redactions", rsp->redactions))) {
                r = -ENOMEM;
                goto out;
        }
        text = cJSON_PrintUnformatted(out);
        r = text ? abm_call_structured(call, text) : -ENOMEM;
out:
        cJSON_free(text);
        cJSON_free(data_text);
        cJSON_Delete(out);
        cJSON_Delete(body);
        cJSON_Delete(data);
        return r < 0 ? abm_error_set(err, r, "cannot return the answer: %s", strerror(-r)) : 0;
}

static const struct abm_tool placeholder[] = {
        { .name = "endpoints",
          .description = "Replaced by the configured endpoints.",
          .input_schema = placeholder_schema,
          .call = http_call },
};

AB_MODULE_EXPORT struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "http",
        .version = "1.0",
        .tools = placeholder,
        .n_tools = 1,
        .init = http_init,
        .fini = http_fini,
};
