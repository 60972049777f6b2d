/* SPDX-License-Identifier: MIT */
/* The host's broker client, synchronous requests (host/brokerc/brokerc.h): connection,
 * run-open/close, host-config, server-env, call-begin and call-end, HTTP tokens, reports. */
#include "config.h"

#include "common/secmem.h"
#include "host/brokerc/internal.h"

/* The reasons the broker gives for a denial (docs/protocol.md): a reply's reason is mapped to
 * one of these static strings, anything else to "denied". */
static const char *const known_reasons[] = {
        "client-not-allowed", "not-admin",       "too-many-runs",    "run-unknown",       "run-closed",
        "wrong-run-owner",    "run-expired",     "tool-not-allowed", "budget-exhausted",  "rate-limited",
        "args-too-large",     "args-mismatch",   "args-constraint",  "worker-invalid",    "too-many-tokens",
        "audit-failed",       "token-malformed", "token-unknown",    "token-revoked",     "token-expired",
        "token-exhausted",    "wrong-peer",      "wrong-tool",       "secret-not-scoped", "op-not-allowed",
        "secret-unavailable", "ttl-too-long",    "policy-invalid",
};

static const char *
static_reason(const cJSON *reply)
{
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(reply, "reason");

        if (cJSON_IsString(r))
                for (size_t i = 0; i < AB_ELEMENTSOF(known_reasons); i++)
                        if (strcmp(r->valuestring, known_reasons[i]) == 0)
                                return known_reasons[i];
        return "denied";
}

/* Wipe a string member of obj in place (a token in a request or reply). */
void
hb_wipe_member(cJSON *obj, const char *key)
{
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (cJSON_IsString(v) && v->valuestring)
                ab_wipe(v->valuestring, strlen(v->valuestring));
}

int
hb_connect(const char *path, struct hb_broker **ret)
{
        struct hb_broker *b;
        int r;

        if (!path || !ret)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->afd = -1;
        b->next_id = 1;
        b->timeout_usec = (uint64_t)HB_TIMEOUT_MS * 1000;
        b->path = strdup(path);
        if (!b->path) {
                free(b);
                return -ENOMEM;
        }
        r = ab_client_connect(path, &b->client);
        if (r < 0) {
                free(b->path);
                free(b);
                return r;
        }
        *ret = b;
        return 0;
}

void
hb_free(struct hb_broker *b)
{
        if (!b)
                return;
        /* call-ends still on their way must reach the broker. */
        (void)hb_flush(b, HB_TIMEOUT_MS);
        hb_async_fail_all(b, -ECANCELED);
        hb_async_close(b);
        b->timer = sd_event_source_disable_unref(b->timer);
        sd_event_unref(b->event);
        ab_client_free(b->client);
        if (b->rbuf) {
                ab_freezero(b->rbuf, AB_MSG_MAX + 1);
        }
        free(b->path);
        free(b);
}

/* The errno for an error reply's "error" code. */
static int
error_to_errno(const cJSON *reply)
{
        static const struct {
                const char *code;
                int err;
        } map[] = {
                { AB_ERR_DENIED, EPERM },          { AB_ERR_NOT_PERMITTED, EACCES },
                { AB_ERR_BAD_REQUEST, EINVAL },    { AB_ERR_TOO_LARGE, E2BIG },
                { AB_ERR_UNKNOWN_OP, EOPNOTSUPP }, { AB_ERR_UNSUPPORTED_VERSION, EPROTO },
                { AB_ERR_INTERNAL, EIO },
        };
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");

        if (cJSON_IsString(e))
                for (size_t i = 0; i < AB_ELEMENTSOF(map); i++)
                        if (strcmp(e->valuestring, map[i].code) == 0)
                                return -map[i].err;
        return -EIO;
}

/* What a reply (consumed) says: 0 with *ret the reply when "ok"; -EPERM (denied) or -EACCES
 * (not-permitted) with *ret the error reply; another -errno (logged) without a reply. */
int
hb_reply_status(const char *op, cJSON *reply, cJSON **ret)
{
        const cJSON *msg, *err;
        int r;

        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                *ret = reply;
                return 0;
        }
        r = error_to_errno(reply);
        if (r == -EPERM || r == -EACCES) {
                *ret = reply;
                return r;
        }
        msg = cJSON_GetObjectItemCaseSensitive(reply, "message");
        err = cJSON_GetObjectItemCaseSensitive(reply, "error");
        log_warning("broker: %s failed: %s%s%.*s", op, cJSON_IsString(err) ? err->valuestring : "error",
                    cJSON_IsString(msg) ? ": " : "",
                    AB_UTF8_CUT(cJSON_IsString(msg) ? msg->valuestring : "", 256));
        cJSON_Delete(reply);
        return r;
}

/* Send a request for op made by fill (which adds the fields; may be NULL) and wait for the
 * reply. A connection closed by the broker is re-opened once and the request sent again.
 * Returns 0 with *ret the successful reply; -EPERM (denied) or -EACCES (not-permitted) with
 * *ret the error reply; other -errno without a reply. wipe_key: a request member wiped
 * before the request is freed (or NULL). */
int
hb_request_sync(struct hb_broker *b, cJSON *req_fields, const char *op, const char *wipe_key, cJSON **ret)
{
        cJSON *reply = NULL;
        int r = -ECONNRESET;

        for (int attempt = 0; attempt < 2; attempt++) {
                cJSON *req;
                const cJSON *child;

                if (!b->client) {
                        r = ab_client_connect(b->path, &b->client);
                        if (r < 0)
                                return r;
                }
                req = ab_client_request(b->client, op);
                if (!req)
                        return -ENOMEM;
                /* Copy the fields in (the envelope comes first, as the protocol shows it). */
                cJSON_ArrayForEach(child, req_fields)
                {
                        cJSON *dup = cJSON_Duplicate(child, true);

                        if (!dup || !cJSON_AddItemToObject(req, child->string, dup)) {
                                cJSON_Delete(dup);
                                if (wipe_key)
                                        hb_wipe_member(req, wipe_key);
                                cJSON_Delete(req);
                                return -ENOMEM;
                        }
                }
                r = ab_client_call(b->client, req, HB_TIMEOUT_MS, &reply);
                if (wipe_key)
                        hb_wipe_member(req, wipe_key);
                cJSON_Delete(req);
                if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN) {
                        /* Closed by the broker (idle timeout, restart): once more on a new connection. */
                        ab_client_free(b->client);
                        b->client = NULL;
                        continue;
                }
                if (r == -ETIMEDOUT) {
                        /* A late reply would be taken for the next request's: start afresh. */
                        ab_client_free(b->client);
                        b->client = NULL;
                }
                if (r < 0)
                        return r;
                break;
        }
        if (r < 0)
                return r;
        return hb_reply_status(op, reply, ret);
}

int
hb_run_open(struct hb_broker *b, const char *label, char **ret, const char **ret_reason)
{
        return hb_run_open_profile(b, label, NULL, ret, NULL, ret_reason);
}

int
hb_run_open_profile(struct hb_broker *b, const char *label, const char *profile, char **ret,
                    cJSON **ret_profile, const char **ret_reason)
{
        cJSON *fields = NULL, *reply = NULL, *pj = NULL;
        const cJSON *run;
        char *s;
        int r;

        if (!b || !ret)
                return -EINVAL;
        fields = cJSON_CreateObject();
        /* The run is the host's own: it ends with this process (broker/teardown.h). */
        if (!fields || (label && !cJSON_AddStringToObject(fields, "label", label)) ||
            (profile && !cJSON_AddStringToObject(fields, "profile", profile)) ||
            !cJSON_AddBoolToObject(fields, "bind_process", true)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "run-open", NULL, &reply);
        cJSON_Delete(fields);
        if (r == -EPERM || r == -EACCES) {
                if (ret_reason)
                        *ret_reason = static_reason(reply);
                cJSON_Delete(reply);
                return -EPERM;
        }
        if (r < 0)
                return r;
        run = cJSON_GetObjectItemCaseSensitive(reply, "run");
        if (!cJSON_IsString(run) || !run->valuestring[0] || strlen(run->valuestring) > AB_NAME_MAX ||
            (profile && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(reply, "profile")))) {
                cJSON_Delete(reply);
                return -EBADMSG;
        }
        if (profile)
                pj = cJSON_DetachItemFromObjectCaseSensitive(reply, "profile");
        s = strdup(run->valuestring);
        cJSON_Delete(reply);
        if (!s) {
                cJSON_Delete(pj);
                return -ENOMEM;
        }
        *ret = s;
        if (ret_profile)
                *ret_profile = pj;
        else
                cJSON_Delete(pj);
        return 0;
}

int
hb_run_close(struct hb_broker *b, const char *run)
{
        return hb_run_close_report(b, run, NULL);
}

int
hb_run_close_report(struct hb_broker *b, const char *run, cJSON *teardown)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !run) {
                cJSON_Delete(teardown);
                return -EINVAL;
        }
        /* The run's last call-ends come first (they travel on the other connection). */
        (void)hb_flush(b, HB_TIMEOUT_MS);
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            (teardown && !cJSON_AddItemToObject(fields, "teardown", teardown))) {
                if (!fields || !cJSON_GetObjectItemCaseSensitive(fields, "teardown"))
                        cJSON_Delete(teardown);
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "run-close", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

/* One host-config request for names[0..n). Merges the reply's "tools" into tools and, when
 * modules is still NULL, takes the reply's "modules". Returns 0 or -errno. */
static int
host_config_batch(struct hb_broker *b, const char *const *names, size_t n, cJSON *tools, cJSON **modules,
                  cJSON **servers)
{
        cJSON *fields, *arr, *reply = NULL, *t, *m, *sv;
        int r;

        fields = cJSON_CreateObject();
        arr = fields ? cJSON_AddArrayToObject(fields, "tools") : NULL;
        if (!arr) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                cJSON *s = cJSON_CreateString(names[i]);

                if (!s || !cJSON_AddItemToArray(arr, s)) {
                        cJSON_Delete(s);
                        cJSON_Delete(fields);
                        return -ENOMEM;
                }
        }
        r = hb_request_sync(b, fields, "host-config", NULL, &reply);
        cJSON_Delete(fields);
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        t = cJSON_GetObjectItemCaseSensitive(reply, "tools");
        m = cJSON_GetObjectItemCaseSensitive(reply, "modules");
        sv = cJSON_GetObjectItemCaseSensitive(reply, "servers");
        if (!cJSON_IsObject(t) || (m && !cJSON_IsObject(m)) || (sv && !cJSON_IsObject(sv))) {
                cJSON_Delete(reply);
                return -EBADMSG;
        }
        while (t->child) {
                cJSON *item = cJSON_DetachItemViaPointer(t, t->child);

                if (!cJSON_IsObject(item) || cJSON_GetObjectItemCaseSensitive(tools, item->string)) {
                        cJSON_Delete(item);
                        continue;
                }
                cJSON_AddItemToObject(tools, item->string, item);
        }
        if (!*modules)
                *modules = m ? cJSON_DetachItemViaPointer(reply, m) : cJSON_CreateObject();
        if (!*servers)
                *servers = sv ? cJSON_DetachItemViaPointer(reply, sv) : cJSON_CreateObject();
        cJSON_Delete(reply);
        return *modules && *servers ? 0 : -ENOMEM;
}

int
hb_host_config(struct hb_broker *b, const char *const *tools, size_t n, cJSON **ret)
{
        cJSON *out = NULL, *t, *modules = NULL, *servers = NULL;
        size_t i = 0;
        int r;

        if (!b || !ret || (n > 0 && !tools))
                return -EINVAL;
        out = cJSON_CreateObject();
        t = out ? cJSON_AddObjectToObject(out, "tools") : NULL;
        if (!t) {
                cJSON_Delete(out);
                return -ENOMEM;
        }
        /* The broker takes at most 256 members in an array: ask in batches. */
        do {
                size_t k = n - i < HB_CONFIG_BATCH ? n - i : HB_CONFIG_BATCH;

                /* tools may be NULL when n == 0: NULL + 0 is undefined behaviour */
                r = host_config_batch(b, k > 0 ? tools + i : NULL, k, t, &modules, &servers);
                if (r < 0) {
                        cJSON_Delete(modules);
                        cJSON_Delete(servers);
                        cJSON_Delete(out);
                        return r;
                }
                i += k;
        } while (i < n);
        cJSON_AddItemToObject(out, "modules", modules);
        cJSON_AddItemToObject(out, "servers", servers);
        *ret = out;
        return 0;
}

int
hb_server_env(struct hb_broker *b, const char *run, const char *server, const char *var,
              unsigned char **ret_value, size_t *ret_len)
{
        cJSON *fields, *reply = NULL;
        const cJSON *v;
        unsigned char *value = NULL;
        size_t len = 0;
        int r;

        if (!b || !run || !server || !var || !ret_value || !ret_len)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            !cJSON_AddStringToObject(fields, "server", server) ||
            !cJSON_AddStringToObject(fields, "var", var)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "server-env", NULL, &reply);
        cJSON_Delete(fields);
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        v = cJSON_GetObjectItemCaseSensitive(reply, "value");
        if (!cJSON_IsString(v))
                r = -EBADMSG;
        else if (ab_base64_decode(v->valuestring, &value, &len) < 0)
                r = -EBADMSG;
        hb_wipe_member(reply, "value");
        cJSON_Delete(reply);
        if (r < 0)
                return r;
        *ret_value = value;
        *ret_len = len;
        return 0;
}

/* SHA-256 of the arguments text, for call-begin. OpenSSL's SHA256_Init/Update/Final, not
 * EVP_Digest: the EVP path fetches the digest from the default provider, and initialising the
 * providers touches about 2 MiB of the host's memory (RSS) for a digest that these functions
 * compute directly (the same code, without the fetch; deprecated in OpenSSL 3.0, not removed).
 * Returns 0 or -EIO. */
static int
args_sha256(const char *text, size_t len, unsigned char digest[static SHA256_DIGEST_LENGTH])
{
        SHA256_CTX ctx;
        int ok;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        ok = SHA256_Init(&ctx) && SHA256_Update(&ctx, text, len) && SHA256_Final(digest, &ctx);
#pragma GCC diagnostic pop
        return ok ? 0 : -EIO;
}

/* The fields of a call-begin request (without the envelope). Returns 0 or -errno. */
/* Add args_sha256 and args_len of args_json (len bytes) to fields. Returns 0 or -errno. */
int
hb_add_args_digest(cJSON *fields, const char *args_json, size_t len)
{
        unsigned char digest[SHA256_DIGEST_LENGTH];
        _cleanup_free_ char *hex = NULL;
        int r;

        r = args_sha256(args_json, len, digest);
        if (r < 0)
                return r;
        r = ab_hex_encode(digest, sizeof(digest), &hex);
        if (r < 0)
                return r;
        if (!cJSON_AddStringToObject(fields, "args_sha256", hex) ||
            !cJSON_AddNumberToObject(fields, "args_len", (double)len))
                return -ENOMEM;
        return 0;
}

int
hb_begin_fields(const char *run, const char *tool, const char *args_json, pid_t worker_pid, unsigned ttl_s,
                cJSON **ret)
{
        cJSON *fields;
        size_t len;

        if (!args_json)
                args_json = "{}";
        len = strlen(args_json);
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            !cJSON_AddStringToObject(fields, "tool", tool) ||
            hb_add_args_digest(fields, args_json, len) < 0 ||
            (worker_pid > 0 && !cJSON_AddNumberToObject(fields, "worker_pid", (double)worker_pid)) ||
            (ttl_s > 0 && !cJSON_AddNumberToObject(fields, "ttl_s", ttl_s))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        /* The text itself, so that the broker can check argument constraints; when it does not
         * fit in a message the digest and length go alone (the broker then decides by size). */
        if (len <= AB_MSG_MAX) {
                if (!cJSON_AddStringToObject(fields, "args", args_json)) {
                        cJSON_Delete(fields);
                        return -ENOMEM;
                }
        }
        *ret = fields;
        return 0;
}

/* The reason and message of a denial reply, as new strings. Returns 0 or -ENOMEM. */
int
hb_deny_strings(const cJSON *reply, char **ret_reason, char **ret_message)
{
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(reply, "message");
        char *reason = strdup(static_reason(reply));
        char *message = strdup(cJSON_IsString(msg) ? msg->valuestring : "");

        if (!reason || !message) {
                free(reason);
                free(message);
                return -ENOMEM;
        }
        *ret_reason = reason;
        *ret_message = message;
        return 0;
}

/* The digests of the secrets a call may read, from a call-begin reply, into g (those that are
 * malformed or past HB_GRANT_READS_MAX are left out: their values are then never vouched for). */
static void
begin_read_digests(const cJSON *reply, struct hb_grant *g)
{
        const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(reply, "redact_nonce");
        const cJSON *secrets = cJSON_GetObjectItemCaseSensitive(reply, "secrets"), *s;

        if (!cJSON_IsString(nonce) || strlen(nonce->valuestring) != 64 ||
            ab_hex_decode_buf(nonce->valuestring, 64, g->redact_nonce, sizeof(g->redact_nonce)) < 0)
                return;
        cJSON_ArrayForEach(s, secrets)
        {
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "name"));
                const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "sha256"));
                struct hb_read_digest *d = &g->reads[g->n_reads];

                if (g->n_reads >= HB_GRANT_READS_MAX)
                        break;
                if (!name || !hex || strlen(name) > HB_SECRET_NAME_MAX || strlen(hex) != 64 ||
                    ab_hex_decode_buf(hex, 64, d->sha256, sizeof(d->sha256)) < 0)
                        continue;
                strcpy(d->name, name);
                g->n_reads++;
        }
}

bool
hb_grant_vouches(const struct hb_grant *g, const char *name, const unsigned char *value, size_t len)
{
        unsigned char md[32];
        EVP_MD_CTX *ctx;
        bool ok;

        for (size_t i = 0; i < g->n_reads; i++) {
                if (strcmp(g->reads[i].name, name) != 0)
                        continue;
                ctx = EVP_MD_CTX_new();
                ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                     EVP_DigestUpdate(ctx, g->redact_nonce, sizeof(g->redact_nonce)) == 1 &&
                     EVP_DigestUpdate(ctx, value, len) == 1 && EVP_DigestFinal_ex(ctx, md, NULL) == 1;
                EVP_MD_CTX_free(ctx);
                return ok && CRYPTO_memcmp(md, g->reads[i].sha256, sizeof(md)) == 0;
        }
        return false;
}

/* The grant in a successful call-begin reply (consumed; its token is wiped). Returns 0 or
 * -EBADMSG. */
int
hb_begin_grant(cJSON *reply, struct hb_grant *ret)
{
        const cJSON *token = cJSON_GetObjectItemCaseSensitive(reply, "token");
        const cJSON *call = cJSON_GetObjectItemCaseSensitive(reply, "call");
        int r = -EBADMSG;

        if (cJSON_IsString(token) && ab_token_well_formed(token->valuestring) && cJSON_IsNumber(call) &&
            call->valuedouble >= 0 && call->valuedouble <= (double)AB_JSON_INT_MAX) {
                ab_wipe(ret, sizeof(*ret));
                memcpy(ret->token, token->valuestring, AB_TOKEN_LEN + 1);
                ret->call = (uint64_t)call->valuedouble;
                begin_read_digests(reply, ret);
                r = 0;
        }
        hb_wipe_member(reply, "token");
        cJSON_Delete(reply);
        return r;
}

int
hb_call_begin(struct hb_broker *b, const char *run, const char *tool, const char *args_json,
              pid_t worker_pid, unsigned ttl_s, struct hb_grant *ret, char **ret_reason, char **ret_message)
{
        cJSON *fields = NULL, *reply = NULL;
        char *reason = NULL, *message = NULL;
        int r;

        if (!b || !run || !tool || !ret)
                return -EINVAL;
        r = hb_begin_fields(run, tool, args_json, worker_pid, ttl_s, &fields);
        if (r < 0)
                return r;
        r = hb_request_sync(b, fields, "call-begin", NULL, &reply);
        if (r == -E2BIG && cJSON_GetObjectItemCaseSensitive(fields, "args")) {
                cJSON_DeleteItemFromObjectCaseSensitive(fields, "args");
                r = hb_request_sync(b, fields, "call-begin", NULL, &reply);
        }
        cJSON_Delete(fields);
        if (r == -EPERM || r == -EACCES) {
                r = hb_deny_strings(reply, &reason, &message);
                cJSON_Delete(reply);
                if (r < 0)
                        return r;
                if (ret_reason)
                        *ret_reason = reason;
                else
                        free(reason);
                if (ret_message)
                        *ret_message = message;
                else
                        free(message);
                return -EPERM;
        }
        if (r < 0)
                return r;
        return hb_begin_grant(reply, ret);
}

/* Add call-end's redactions and redacted (the secret names) for g. Returns 0 or -ENOMEM. */
static int
end_redactions(cJSON *fields, const struct hb_grant *g)
{
        cJSON *names;

        if (!cJSON_AddNumberToObject(fields, "redactions", (double)g->redactions) ||
            !(names = cJSON_AddArrayToObject(fields, "redacted")))
                return -ENOMEM;
        for (size_t i = 0; i < g->n_redacted; i++)
                if (!cJSON_AddItemToArray(names, cJSON_CreateString(g->redacted[i])))
                        return -ENOMEM;
        return 0;
}

/* The fields of a call-end request. Returns 0 or -errno. */
int
hb_end_fields(const struct hb_grant *g, const char *status, uint64_t result_bytes, uint64_t duration_ms,
              cJSON **ret)
{
        cJSON *fields = cJSON_CreateObject();

        if (!fields || !cJSON_AddStringToObject(fields, "token", g->token) ||
            !cJSON_AddStringToObject(fields, "status", status) ||
            !cJSON_AddNumberToObject(fields, "result_bytes", (double)result_bytes) ||
            !cJSON_AddNumberToObject(fields, "duration_ms", (double)duration_ms) ||
            (g->redactions && end_redactions(fields, g) < 0)) {
                if (fields)
                        hb_wipe_member(fields, "token");
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        *ret = fields;
        return 0;
}

int
hb_call_end(struct hb_broker *b, const struct hb_grant *g, const char *status, uint64_t result_bytes,
            uint64_t duration_ms)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !g || !status || !g->token[0])
                return -EINVAL;
        r = hb_end_fields(g, status, result_bytes, duration_ms, &fields);
        if (r < 0)
                return r;
        r = hb_request_sync(b, fields, "call-end", "token", &reply);
        hb_wipe_member(fields, "token");
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

void
hb_grant_clear(struct hb_grant *g)
{
        if (g)
                ab_wipe(g, sizeof(*g));
}

int
hb_http_token_check(struct hb_broker *b, const char *token, unsigned *ret_ttl_s, const char **ret_reason)
{
        cJSON *fields, *reply = NULL;
        const cJSON *ttl;
        int r;

        if (!b || !token)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "token", token) ||
            !cJSON_AddBoolToObject(fields, "aggregate", true)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "http-token-check", "token", &reply);
        cJSON_Delete(fields);
        if (r == -EPERM) {
                *ret_reason = static_reason(reply);
                cJSON_Delete(reply);
                return r;
        }
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        ttl = cJSON_GetObjectItemCaseSensitive(reply, "expires_in_ms");
        *ret_ttl_s = cJSON_IsNumber(ttl) && ttl->valuedouble > 0 ? (unsigned)(ttl->valuedouble / 1000.0) : 0;
        cJSON_Delete(reply);
        return 0;
}

int
hb_module_report(struct hb_broker *b, const char *module, bool served, const char *reason)
{
        cJSON *fields, *reply = NULL;
        char cut[HB_MODULE_REASON_MAX + 1];
        size_t n;
        int r;

        if (!b || !module)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "module", module) ||
            !cJSON_AddBoolToObject(fields, "served", served)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        if (reason) {
                /* at most HB_MODULE_REASON_MAX bytes, cut at a UTF-8 character boundary */
                n = (size_t)ab_utf8_cut(reason, HB_MODULE_REASON_MAX);
                memcpy(cut, reason, n);
                cut[n] = '\0';
                if (!cJSON_AddStringToObject(fields, "reason", cut)) {
                        cJSON_Delete(fields);
                        return -ENOMEM;
                }
        }
        r = hb_request_sync(b, fields, "module-report", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

int
hb_http_auth_deny(struct hb_broker *b, const char *source, const char *reason, unsigned count,
                  unsigned seconds)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !source || !reason)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "source", source) ||
            !cJSON_AddStringToObject(fields, "reason", reason) ||
            !cJSON_AddNumberToObject(fields, "count", count) ||
            !cJSON_AddNumberToObject(fields, "seconds", seconds)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "http-auth-deny", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

int
hb_http_listener(struct hb_broker *b, const char *address, const char *auth, const char *run)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !address || !auth)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "address", address) ||
            !cJSON_AddStringToObject(fields, "auth", auth) ||
            (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "http-listener", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

int
hb_identity_jwt(struct hb_broker *b, const char *audience, const char *session, const char *run,
                char **ret_jwt)
{
        cJSON *fields, *reply = NULL;
        const cJSON *jwt;
        char *s;
        int r;

        if (!b || !audience || !ret_jwt)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "audience", audience) ||
            (session && !cJSON_AddStringToObject(fields, "session", session)) ||
            (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "identity-jwt", NULL, &reply);
        cJSON_Delete(fields);
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        jwt = cJSON_GetObjectItemCaseSensitive(reply, "jwt");
        s = cJSON_IsString(jwt) && jwt->valuestring[0] ? strdup(jwt->valuestring) : NULL;
        hb_wipe_member(reply, "jwt");
        cJSON_Delete(reply);
        if (!s)
                return cJSON_IsString(jwt) ? -ENOMEM : -EBADMSG;
        *ret_jwt = s;
        return 0;
}

int
hb_tunnel_event(struct hb_broker *b, const char *event, const char *url, const char *session,
                const char *reason, const char *stage, const char *run)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !event || !url || !session)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "event", event) ||
            !cJSON_AddStringToObject(fields, "url", url) ||
            !cJSON_AddStringToObject(fields, "session", session) ||
            (reason && !cJSON_AddStringToObject(fields, "reason", reason)) ||
            (stage && !cJSON_AddStringToObject(fields, "stage", stage)) ||
            (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = hb_request_sync(b, fields, "tunnel-event", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}
