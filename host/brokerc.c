/* The host's broker client: run-open/close, host-config, call-begin and call-end over
 * common/client.h, each with HB_TIMEOUT_MS. A connection the broker closed (its idle timeout)
 * is re-opened once per request before the request fails. Tokens are wiped from every copy
 * this file makes (request objects, reply objects, grants). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "common/client.h"
#include "common/encode.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "common/wire.h"
#include "host/brokerc.h"

#define HB_TOKEN_LEN 47                /* "abt_" + 43 base64url characters */
#define HB_NOTES_PENDING_MAX 4096      /* call-reject/run-client requests waiting for the broker */
#define HB_CONFIG_BATCH 200            /* tool names per host-config request (the broker takes 256 members) */

struct hb_request;

struct hb_broker {
        char *path;
        struct ab_client *client;      /* the blocking connection; NULL after a failed reconnect */
        /* The asynchronous connection: requests pipelined in a FIFO (the broker answers a
         * connection's requests in order), sent ones first, then those waiting to be sent. */
        sd_event *event;
        int afd;                       /* -1: not connected */
        uint64_t gen;                  /* bumped whenever afd is closed */
        sd_event_source *io, *timer;
        struct hb_request *head, *tail, *unsent;
        size_t n_pending;
        size_t n_notes;                /* call-reject and run-client requests pending */
        uint64_t next_id;
        uint64_t timeout_usec;
        char *rbuf;                    /* AB_MSG_MAX + 1 bytes */
        struct hb_request *submitting; /* being submitted: failed by its submitter, not its callback */
};

static void async_fail_all(struct hb_broker *b, int err);
static void async_close(struct hb_broker *b);

/* The reasons the broker gives for a denial (docs/protocol.md): a reply's reason is mapped to
 * one of these static strings, anything else to "denied". */
static const char *const known_reasons[] = {
        "client-not-allowed", "not-admin", "too-many-runs", "run-unknown", "run-closed", "wrong-run-owner",
        "run-expired", "tool-not-allowed", "budget-exhausted", "rate-limited", "args-too-large", "args-mismatch",
        "args-constraint", "worker-invalid", "too-many-tokens", "audit-failed", "token-malformed",
        "token-unknown", "token-revoked", "token-expired", "token-exhausted", "wrong-peer", "wrong-tool",
        "secret-not-scoped", "op-not-allowed", "secret-unavailable", "ttl-too-long", "policy-invalid",
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
static void
wipe_member(cJSON *obj, const char *key)
{
        cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (cJSON_IsString(v) && v->valuestring)
                explicit_bzero(v->valuestring, strlen(v->valuestring));
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
        async_fail_all(b, -ECANCELED);
        async_close(b);
        b->timer = sd_event_source_disable_unref(b->timer);
        sd_event_unref(b->event);
        ab_client_free(b->client);
        if (b->rbuf) {
                explicit_bzero(b->rbuf, AB_MSG_MAX + 1);
                free(b->rbuf);
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
                { AB_ERR_DENIED, EPERM },         { AB_ERR_NOT_PERMITTED, EACCES }, { AB_ERR_BAD_REQUEST, EINVAL },
                { AB_ERR_TOO_LARGE, E2BIG },      { AB_ERR_UNKNOWN_OP, EOPNOTSUPP }, { AB_ERR_UNSUPPORTED_VERSION, EPROTO },
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
static int
reply_status(const char *op, cJSON *reply, cJSON **ret)
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
                    cJSON_IsString(msg) ? ": " : "", AB_UTF8_CUT(cJSON_IsString(msg) ? msg->valuestring : "", 256));
        cJSON_Delete(reply);
        return r;
}

/* Send a request for op made by fill (which adds the fields; may be NULL) and wait for the
 * reply. A connection closed by the broker is re-opened once and the request sent again.
 * Returns 0 with *ret the successful reply; -EPERM (denied) or -EACCES (not-permitted) with
 * *ret the error reply; other -errno without a reply. wipe_key: a request member wiped
 * before the request is freed (or NULL). */
static int
request(struct hb_broker *b, cJSON *req_fields, const char *op, const char *wipe_key, cJSON **ret)
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
                cJSON_ArrayForEach(child, req_fields) {
                        cJSON *dup = cJSON_Duplicate(child, true);

                        if (!dup || !cJSON_AddItemToObject(req, child->string, dup)) {
                                cJSON_Delete(dup);
                                if (wipe_key)
                                        wipe_member(req, wipe_key);
                                cJSON_Delete(req);
                                return -ENOMEM;
                        }
                }
                r = ab_client_call(b->client, req, HB_TIMEOUT_MS, &reply);
                if (wipe_key)
                        wipe_member(req, wipe_key);
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
        return reply_status(op, reply, ret);
}

int
hb_run_open(struct hb_broker *b, const char *label, char **ret, const char **ret_reason)
{
        return hb_run_open_profile(b, label, NULL, ret, NULL, ret_reason);
}

int
hb_run_open_profile(struct hb_broker *b, const char *label, const char *profile, char **ret, cJSON **ret_profile,
                    const char **ret_reason)
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
        r = request(b, fields, "run-open", NULL, &reply);
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
        r = request(b, fields, "run-close", NULL, &reply);
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
        r = request(b, fields, "host-config", NULL, &reply);
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
hb_server_env(struct hb_broker *b, const char *run, const char *server, const char *var, unsigned char **ret_value,
              size_t *ret_len)
{
        cJSON *fields, *reply = NULL;
        const cJSON *v;
        unsigned char *value = NULL;
        size_t len = 0;
        int r;

        if (!b || !run || !server || !var || !ret_value || !ret_len)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) || !cJSON_AddStringToObject(fields, "server", server) ||
            !cJSON_AddStringToObject(fields, "var", var)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "server-env", NULL, &reply);
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
        wipe_member(reply, "value");
        cJSON_Delete(reply);
        if (r < 0)
                return r;
        *ret_value = value;
        *ret_len = len;
        return 0;
}

/* Whether s is a call token: "abt_" and 43 base64url characters. */
static bool
token_ok(const char *s)
{
        if (strlen(s) != HB_TOKEN_LEN || strncmp(s, "abt_", 4) != 0)
                return false;
        for (const char *p = s + 4; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_'))
                        return false;
        return true;
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
static int
add_args_digest(cJSON *fields, const char *args_json, size_t len)
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
        if (!cJSON_AddStringToObject(fields, "args_sha256", hex) || !cJSON_AddNumberToObject(fields, "args_len", (double)len))
                return -ENOMEM;
        return 0;
}

static int
begin_fields(const char *run, const char *tool, const char *args_json, pid_t worker_pid, unsigned ttl_s,
             cJSON **ret)
{
        cJSON *fields;
        size_t len;

        if (!args_json)
                args_json = "{}";
        len = strlen(args_json);
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) || !cJSON_AddStringToObject(fields, "tool", tool) ||
            add_args_digest(fields, args_json, len) < 0 ||
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
static int
deny_strings(const cJSON *reply, char **ret_reason, char **ret_message)
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
        cJSON_ArrayForEach(s, secrets) {
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
static int
begin_grant(cJSON *reply, struct hb_grant *ret)
{
        const cJSON *token = cJSON_GetObjectItemCaseSensitive(reply, "token");
        const cJSON *call = cJSON_GetObjectItemCaseSensitive(reply, "call");
        int r = -EBADMSG;

        if (cJSON_IsString(token) && token_ok(token->valuestring) && cJSON_IsNumber(call) && call->valuedouble >= 0 &&
            call->valuedouble <= 9007199254740992.0) {
                explicit_bzero(ret, sizeof(*ret));
                memcpy(ret->token, token->valuestring, HB_TOKEN_LEN + 1);
                ret->call = (uint64_t)call->valuedouble;
                begin_read_digests(reply, ret);
                r = 0;
        }
        wipe_member(reply, "token");
        cJSON_Delete(reply);
        return r;
}

int
hb_call_begin(struct hb_broker *b, const char *run, const char *tool, const char *args_json, pid_t worker_pid,
              unsigned ttl_s, struct hb_grant *ret, char **ret_reason, char **ret_message)
{
        cJSON *fields = NULL, *reply = NULL;
        char *reason = NULL, *message = NULL;
        int r;

        if (!b || !run || !tool || !ret)
                return -EINVAL;
        r = begin_fields(run, tool, args_json, worker_pid, ttl_s, &fields);
        if (r < 0)
                return r;
        r = request(b, fields, "call-begin", NULL, &reply);
        if (r == -E2BIG && cJSON_GetObjectItemCaseSensitive(fields, "args")) {
                cJSON_DeleteItemFromObjectCaseSensitive(fields, "args");
                r = request(b, fields, "call-begin", NULL, &reply);
        }
        cJSON_Delete(fields);
        if (r == -EPERM || r == -EACCES) {
                r = deny_strings(reply, &reason, &message);
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
        return begin_grant(reply, ret);
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
static int
end_fields(const struct hb_grant *g, const char *status, uint64_t result_bytes, uint64_t duration_ms, cJSON **ret)
{
        cJSON *fields = cJSON_CreateObject();

        if (!fields || !cJSON_AddStringToObject(fields, "token", g->token) ||
            !cJSON_AddStringToObject(fields, "status", status) ||
            !cJSON_AddNumberToObject(fields, "result_bytes", (double)result_bytes) ||
            !cJSON_AddNumberToObject(fields, "duration_ms", (double)duration_ms) ||
            (g->redactions && end_redactions(fields, g) < 0)) {
                if (fields)
                        wipe_member(fields, "token");
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
        r = end_fields(g, status, result_bytes, duration_ms, &fields);
        if (r < 0)
                return r;
        r = request(b, fields, "call-end", "token", &reply);
        wipe_member(fields, "token");
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

void
hb_grant_clear(struct hb_grant *g)
{
        if (g)
                explicit_bzero(g, sizeof(*g));
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
        r = request(b, fields, "http-token-check", "token", &reply);
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
                n = strlen(reason);
                if (n > HB_MODULE_REASON_MAX) {
                        n = HB_MODULE_REASON_MAX;
                        while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80)
                                n--;
                }
                memcpy(cut, reason, n);
                cut[n] = '\0';
                if (!cJSON_AddStringToObject(fields, "reason", cut)) {
                        cJSON_Delete(fields);
                        return -ENOMEM;
                }
        }
        r = request(b, fields, "module-report", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

int
hb_http_auth_deny(struct hb_broker *b, const char *source, const char *reason, unsigned count, unsigned seconds)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !source || !reason)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "source", source) ||
            !cJSON_AddStringToObject(fields, "reason", reason) || !cJSON_AddNumberToObject(fields, "count", count) ||
            !cJSON_AddNumberToObject(fields, "seconds", seconds)) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "http-auth-deny", NULL, &reply);
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
            !cJSON_AddStringToObject(fields, "auth", auth) || (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "http-listener", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

int
hb_identity_jwt(struct hb_broker *b, const char *audience, const char *session, const char *run, char **ret_jwt)
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
        r = request(b, fields, "identity-jwt", NULL, &reply);
        cJSON_Delete(fields);
        if (r < 0) {
                cJSON_Delete(reply);
                return r;
        }
        jwt = cJSON_GetObjectItemCaseSensitive(reply, "jwt");
        s = cJSON_IsString(jwt) && jwt->valuestring[0] ? strdup(jwt->valuestring) : NULL;
        wipe_member(reply, "jwt");
        cJSON_Delete(reply);
        if (!s)
                return cJSON_IsString(jwt) ? -ENOMEM : -EBADMSG;
        *ret_jwt = s;
        return 0;
}

int
hb_tunnel_event(struct hb_broker *b, const char *event, const char *url, const char *session, const char *reason,
                const char *stage, const char *run)
{
        cJSON *fields, *reply = NULL;
        int r;

        if (!b || !event || !url || !session)
                return -EINVAL;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "event", event) || !cJSON_AddStringToObject(fields, "url", url) ||
            !cJSON_AddStringToObject(fields, "session", session) ||
            (reason && !cJSON_AddStringToObject(fields, "reason", reason)) ||
            (stage && !cJSON_AddStringToObject(fields, "stage", stage)) ||
            (run && !cJSON_AddStringToObject(fields, "run", run))) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        r = request(b, fields, "tunnel-event", NULL, &reply);
        cJSON_Delete(fields);
        cJSON_Delete(reply);
        return r;
}

/* ---------- asynchronous requests ---------- */

enum req_kind { REQ_BEGIN, REQ_END, REQ_NOTE };

struct hb_request {
        struct hb_broker *b;
        struct hb_request *next;
        enum req_kind kind;
        const char *op;                /* static: the operation, for log lines */
        uint64_t id;
        uint64_t deadline;             /* CLOCK_MONOTONIC usec */
        char *msg;                     /* the encoded request until sent (wiped) */
        size_t len;
        bool sent;
        bool retried;                  /* already re-sent on a new connection */
        bool cancelled;                /* nobody waits for it (a begin: end it when granted) */
        int submit_err;                /* failed while being submitted */
        hb_begin_fn begin_cb;
        hb_end_fn end_cb;
        void *userdata;
};

static uint64_t
now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
req_free(struct hb_request *q)
{
        if (!q)
                return;
        if (q->msg) {
                explicit_bzero(q->msg, q->len);
                cJSON_free(q->msg);
        }
        free(q);
}

/* Take q out of the FIFO. */
static void
req_unlink(struct hb_broker *b, struct hb_request *q)
{
        struct hb_request **pp = &b->head, *prev = NULL;

        while (*pp && *pp != q) {
                prev = *pp;
                pp = &(*pp)->next;
        }
        if (!*pp)
                return;
        *pp = q->next;
        if (b->tail == q)
                b->tail = prev;
        if (b->unsent == q)
                b->unsent = q->next;
        q->next = NULL;
        b->n_pending--;
}

size_t
hb_pending(const struct hb_broker *b)
{
        return b ? b->n_pending : 0;
}

/* The slack of the timeout timer: an eighth of the timeout, at most 250 ms. sd-event arms its
 * timerfd at a round time inside [deadline, deadline + slack], so requests sent close together
 * share one arming instead of a timerfd_settime each. */
static uint64_t
timer_accuracy(const struct hb_broker *b)
{
        uint64_t a = b->timeout_usec / 8;

        return a > 250000 ? 250000 : a ? a : 1;
}

void
hb_set_timeout_ms(struct hb_broker *b, unsigned ms)
{
        if (!b)
                return;
        b->timeout_usec = (uint64_t)ms * 1000;
        if (b->timer)
                (void)sd_event_source_set_time_accuracy(b->timer, timer_accuracy(b));
}

static int async_submit(struct hb_broker *b, struct hb_request *q, const cJSON *fields, const char *op);

/* A granted call-begin that nobody waits for any more: end the call at once. */
static void
end_orphan(struct hb_broker *b, const struct hb_grant *g)
{
        cJSON *fields = NULL;
        struct hb_request *q;
        int r;

        r = end_fields(g, "cancelled", 0, 0, &fields);
        q = r >= 0 ? calloc(1, sizeof(*q)) : NULL;
        if (q) {
                q->kind = REQ_END;
                r = async_submit(b, q, fields, "call-end");
        } else if (r >= 0)
                r = -ENOMEM;
        if (fields)
                wipe_member(fields, "token");
        cJSON_Delete(fields);
        if (r < 0)
                log_warning("broker: call-end of cancelled call %" PRIu64 " failed: %s", g->call, strerror(-r));
}

/* Complete q (already unlinked) with err or reply (consumed; NULL when err < 0) and free it. */
static void
req_complete(struct hb_broker *b, struct hb_request *q, int err, cJSON *reply)
{
        const char *op = q->op;
        int r = err;

        if (reply)
                r = reply_status(op, reply, &reply);
        if (q->kind == REQ_NOTE) {
                b->n_notes--;
                cJSON_Delete(reply);
                if (r < 0)
                        log_warning("broker: %s failed: %s", op, strerror(-r));
        } else if (q->kind == REQ_END) {
                cJSON_Delete(reply);
                if (q->end_cb)
                        q->end_cb(q->userdata, r);
                else if (r < 0)
                        log_warning("broker: call-end failed: %s", strerror(-r));
        } else {
                struct hb_grant g = {};

                if (r == 0) {
                        r = begin_grant(reply, &g);
                        if (r == 0 && q->cancelled)
                                end_orphan(b, &g);
                        if (r == 0 && !q->cancelled)
                                q->begin_cb(q->userdata, 0, &g, NULL, NULL);
                        else if (!q->cancelled)
                                q->begin_cb(q->userdata, r, NULL, NULL, NULL);
                        hb_grant_clear(&g);
                } else if (r == -EPERM || r == -EACCES) {
                        _cleanup_free_ char *reason = NULL, *message = NULL;

                        r = deny_strings(reply, &reason, &message);
                        cJSON_Delete(reply);
                        if (!q->cancelled)
                                q->begin_cb(q->userdata, r < 0 ? r : -EPERM, NULL, reason, message);
                } else if (!q->cancelled)
                        q->begin_cb(q->userdata, r, NULL, NULL, NULL);
        }
        req_free(q);
}

/* Fail q (in the FIFO) with err: its callback runs, unless it is the request being
 * submitted, whose submitter returns the error instead. */
static void
req_fail(struct hb_broker *b, struct hb_request *q, int err)
{
        req_unlink(b, q);
        if (q == b->submitting) {
                q->submit_err = err;
                return;
        }
        req_complete(b, q, err, NULL);
}

/* Re-arm the timeout timer for the oldest request. With none pending it stays as it is: when
 * it fires, nothing is due and it stays off (a timer switched off and on around every request
 * costs two timerfd_settime calls per request). */
static void
timer_update(struct hb_broker *b)
{
        if (!b->timer || !b->head)
                return;
        (void)sd_event_source_set_time(b->timer, b->head->deadline);
        (void)sd_event_source_set_enabled(b->timer, SD_EVENT_ONESHOT);
}

/* Fail every request whose time is up (the FIFO is in deadline order). */
static void
expire(struct hb_broker *b, uint64_t now)
{
        while (b->head && b->head->deadline <= now) {
                struct hb_request *q = b->head;

                req_unlink(b, q);
                log_warning("broker: no answer to a %s request within %" PRIu64 " ms", q->op,
                            b->timeout_usec / 1000);
                req_complete(b, q, -ETIMEDOUT, NULL);
        }
}

static void
async_close(struct hb_broker *b)
{
        b->io = sd_event_source_disable_unref(b->io);
        if (b->afd >= 0)
                close(b->afd);
        b->afd = -1;
        b->gen++;
}

/* The connection died: fail the requests sent on it with err; those not yet sent stay for a
 * new connection. */
static void
async_conn_failed(struct hb_broker *b, int err)
{
        async_close(b);
        while (b->head && b->head != b->unsent) {
                struct hb_request *q = b->head;

                req_unlink(b, q);
                req_complete(b, q, err, NULL);
        }
}

/* Fail every request (sent or not) with err. */
static void
async_fail_all(struct hb_broker *b, int err)
{
        while (b->head)
                req_fail(b, b->head, err);
}

static int on_async_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Open the asynchronous connection. Returns 0 or -errno. */
static int
async_connect(struct hb_broker *b)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int r;

        if (strlen(b->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, b->path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket connects at once (or fails: EAGAIN when the backlog is full). */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        if (b->event) {
                r = sd_event_add_io(b->event, &b->io, fd, EPOLLIN, on_async_io, b);
                if (r < 0)
                        return r;
                (void)sd_event_source_set_description(b->io, "broker-async");
        }
        b->afd = AB_TAKE_FD(fd);
        return 0;
}

/* Send what waits to be sent, connecting (once more per request) as needed. */
static void
async_send(struct hb_broker *b)
{
        while (b->unsent) {
                struct hb_request *q = b->unsent;
                ssize_t n;
                int r;

                if (b->afd < 0) {
                        r = async_connect(b);
                        if (r < 0) {
                                log_warning("broker: cannot connect to %s: %s", b->path, strerror(-r));
                                async_fail_all(b, r);
                                return;
                        }
                }
                n = send(b->afd, q->msg, q->len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (b->io)
                                (void)sd_event_source_set_io_events(b->io, EPOLLIN | EPOLLOUT);
                        return;
                }
                if (n < 0) {
                        r = errno == EPIPE ? -ECONNRESET : -errno;
                        /* A dead connection: those in flight fail, this one gets one new connection. */
                        async_conn_failed(b, r);
                        if (q->retried)
                                req_fail(b, q, r);
                        else
                                q->retried = true;
                        continue;
                }
                explicit_bzero(q->msg, q->len);
                cJSON_free(q->msg);
                q->msg = NULL;
                q->sent = true;
                b->unsent = q->next;
        }
        if (b->io)
                (void)sd_event_source_set_io_events(b->io, EPOLLIN);
}

/* Read and dispatch every reply that is there. */
static void
async_receive(struct hb_broker *b)
{
        uint64_t gen = b->gen;

        while (b->afd >= 0 && gen == b->gen) {
                struct hb_request *q;
                const cJSON *rid;
                cJSON *reply;
                ssize_t n = recv(b->afd, b->rbuf, AB_MSG_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        /* EOF (the broker's idle timeout, a restart) or an error. */
                        async_conn_failed(b, n == 0 ? -ECONNRESET : -errno);
                        return;
                }
                if ((size_t)n > AB_MSG_MAX) {
                        async_conn_failed(b, -EBADMSG);
                        return;
                }
                reply = cJSON_ParseWithLength(b->rbuf, (size_t)n);
                explicit_bzero(b->rbuf, (size_t)n);
                if (!reply || !cJSON_IsObject(reply)) {
                        cJSON_Delete(reply);
                        async_conn_failed(b, -EBADMSG);
                        return;
                }
                rid = cJSON_GetObjectItemCaseSensitive(reply, "id");
                q = NULL;
                if (cJSON_IsNumber(rid)) {
                        for (struct hb_request *p = b->head; p && p != b->unsent; p = p->next)
                                if ((double)p->id == rid->valuedouble || (rid->valuedouble == 0 && p == b->head)) {
                                        q = p;
                                        break;
                                }
                }
                if (!q) {
                        /* The late reply of a request that timed out. */
                        cJSON_Delete(reply);
                        continue;
                }
                req_unlink(b, q);
                req_complete(b, q, 0, reply);
        }
}

static int
on_async_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct hb_broker *b = userdata;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                async_receive(b);
        if (b->unsent)
                async_send(b);
        timer_update(b);
        return 0;
}

static int
on_async_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct hb_broker *b = userdata;

        expire(b, now_usec());
        timer_update(b);
        return 0;
}

int
hb_attach_event(struct hb_broker *b, sd_event *event)
{
        int r;

        if (!b || !event)
                return -EINVAL;
        if (b->event)
                return -EBUSY;
        if (!b->rbuf && !(b->rbuf = malloc(AB_MSG_MAX + 1)))
                return -ENOMEM;
        r = sd_event_add_time(event, &b->timer, CLOCK_MONOTONIC, UINT64_MAX, timer_accuracy(b), on_async_timer, b);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(b->timer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(b->timer, "broker-timeout");
        b->event = sd_event_ref(event);
        return 0;
}

/* Encode op with fields as request q (taken over, also on failure) and queue it for
 * sending. Returns 0 or -errno. */
static int
async_submit(struct hb_broker *b, struct hb_request *q, const cJSON *fields, const char *op)
{
        cJSON *req = ab_wire_request(op, b->next_id);
        const cJSON *child;
        int r = -ENOMEM;

        q->op = op;
        if (!req)
                goto fail;
        cJSON_ArrayForEach(child, fields) {
                cJSON *dup = cJSON_Duplicate(child, true);

                if (!dup || !cJSON_AddItemToObject(req, child->string, dup)) {
                        cJSON_Delete(dup);
                        goto fail;
                }
        }
        r = ab_wire_encode(req, &q->msg, &q->len);
        if (r == -E2BIG && strcmp(op, "call-begin") == 0 && cJSON_GetObjectItemCaseSensitive(req, "args")) {
                /* Too large with the text: the digest and length go alone (as hb_call_begin does). */
                cJSON_DeleteItemFromObjectCaseSensitive(req, "args");
                r = ab_wire_encode(req, &q->msg, &q->len);
        }
        if (r < 0)
                goto fail;
        wipe_member(req, "token");
        cJSON_Delete(req);
        q->b = b;
        q->id = b->next_id++;
        q->deadline = now_usec() + b->timeout_usec;
        if (b->tail)
                b->tail->next = q;
        else
                b->head = q;
        b->tail = q;
        if (!b->unsent)
                b->unsent = q;
        b->n_pending++;
        b->submitting = q;
        async_send(b);
        b->submitting = NULL;
        timer_update(b);
        if (q->submit_err < 0) {
                r = q->submit_err;
                req_free(q);
                return r;
        }
        return 0;
fail:
        if (req)
                wipe_member(req, "token");
        cJSON_Delete(req);
        req_free(q);
        return r;
}

int
hb_call_begin_async(struct hb_broker *b, const char *run, const char *tool, const char *args_json, pid_t worker_pid,
                    unsigned ttl_s, hb_begin_fn cb, void *userdata, struct hb_request **ret_req)
{
        cJSON *fields = NULL;
        struct hb_request *q;
        int r;

        if (!b || !run || !tool || !cb)
                return -EINVAL;
        if (ret_req)
                *ret_req = NULL;
        if (!b->event) {
                /* No event loop: blocking, the callback runs now. */
                _cleanup_free_ char *reason = NULL, *message = NULL;
                struct hb_grant g;

                r = hb_call_begin(b, run, tool, args_json, worker_pid, ttl_s, &g, &reason, &message);
                cb(userdata, r, r == 0 ? &g : NULL, reason, message);
                if (r == 0)
                        hb_grant_clear(&g);
                return 0;
        }
        r = begin_fields(run, tool, args_json, worker_pid, ttl_s, &fields);
        if (r < 0)
                return r;
        q = calloc(1, sizeof(*q));
        if (!q) {
                cJSON_Delete(fields);
                return -ENOMEM;
        }
        q->kind = REQ_BEGIN;
        q->begin_cb = cb;
        q->userdata = userdata;
        r = async_submit(b, q, fields, "call-begin");
        cJSON_Delete(fields);
        if (r < 0)
                return r;
        if (ret_req)
                *ret_req = q;
        return 0;
}

void
hb_request_cancel(struct hb_request *q)
{
        if (q)
                q->cancelled = true;
}

int
hb_call_end_async(struct hb_broker *b, const struct hb_grant *g, const char *status, uint64_t result_bytes,
                  uint64_t duration_ms, hb_end_fn cb, void *userdata)
{
        cJSON *fields = NULL;
        struct hb_request *q;
        int r;

        if (!b || !g || !status || !g->token[0])
                return -EINVAL;
        if (!b->event) {
                r = hb_call_end(b, g, status, result_bytes, duration_ms);
                if (cb)
                        cb(userdata, r);
                else if (r < 0)
                        log_warning("broker: call-end of call %" PRIu64 " failed: %s", g->call, strerror(-r));
                return 0;
        }
        r = end_fields(g, status, result_bytes, duration_ms, &fields);
        if (r < 0)
                return r;
        q = calloc(1, sizeof(*q));
        if (q) {
                q->kind = REQ_END;
                q->end_cb = cb;
                q->userdata = userdata;
                r = async_submit(b, q, fields, "call-end");
        } else
                r = -ENOMEM;
        wipe_member(fields, "token");
        cJSON_Delete(fields);
        return r;
}

int
hb_flush(struct hb_broker *b, int timeout_ms)
{
        uint64_t deadline;

        if (!b)
                return 0;
        deadline = now_usec() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
        while (b->head) {
                struct pollfd p;
                uint64_t now = now_usec();
                int r;

                expire(b, now);
                if (!b->head)
                        break;
                if (now >= deadline)
                        return -ETIMEDOUT;
                if (b->unsent)
                        async_send(b);
                if (b->afd < 0)
                        continue;   /* all failed, or a new connection comes with the next send */
                p = (struct pollfd){ .fd = b->afd, .events = POLLIN | (b->unsent ? POLLOUT : 0) };
                r = poll(&p, 1, (int)((deadline - now + 999) / 1000));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)))
                        async_receive(b);
        }
        timer_update(b);
        return 0;
}

/* Send fields as op without waiting for the reply (a failure is logged); blocking when no
 * event loop is attached. Returns 0, -EAGAIN (HB_NOTES_PENDING_MAX are waiting already) or
 * -errno. */
static int
note_async(struct hb_broker *b, cJSON *fields, const char *op)
{
        struct hb_request *q;
        cJSON *reply = NULL;
        int r;

        if (!b->event) {
                r = request(b, fields, op, NULL, &reply);
                cJSON_Delete(reply);
                return r;
        }
        if (b->n_notes >= HB_NOTES_PENDING_MAX)
                return -EAGAIN;  /* the broker is not keeping up: do not queue without bound */
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->kind = REQ_NOTE;
        r = async_submit(b, q, fields, op);
        if (r == 0)
                b->n_notes++;
        return r;
}

/* s as UTF-8 (invalid bytes repaired) cut to at most max bytes at a character boundary, in
 * *ret (a new string). Returns 0 or -ENOMEM. */
static int
utf8_cut(const char *s, size_t max, char **ret)
{
        char *fixed = NULL, *out;
        const char *src;
        size_t len;

        if (ab_utf8_repair(s, strlen(s), &fixed) < 0)
                return -ENOMEM;
        src = fixed ? fixed : s;
        len = strlen(src);
        if (len > max)
                len = ab_utf8_floor(src, len, max);
        out = strndup(src, len);
        free(fixed);
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

int
hb_call_reject_async(struct hb_broker *b, const char *run, const char *tool, const char *reason, const char *args_json)
{
        _cleanup_free_ char *name = NULL;
        cJSON *fields = NULL;
        int r;

        if (!b || !run || !tool || !reason)
                return -EINVAL;
        r = utf8_cut(tool, HB_SECRET_NAME_MAX, &name);
        if (r < 0)
                return r;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            !cJSON_AddStringToObject(fields, "tool", name[0] ? name : "(empty)") ||
            !cJSON_AddStringToObject(fields, "reason", reason) ||
            (args_json && add_args_digest(fields, args_json, strlen(args_json)) < 0))
                r = -ENOMEM;
        else
                r = note_async(b, fields, "call-reject");
        cJSON_Delete(fields);
        return r;
}

int
hb_run_client_async(struct hb_broker *b, const char *run, const char *name, const char *version)
{
        _cleanup_free_ char *n = NULL, *v = NULL;
        cJSON *fields = NULL;
        int r;

        if (!b || !run)
                return -EINVAL;
        if ((name && utf8_cut(name, HB_SECRET_NAME_MAX, &n) < 0) || (version && utf8_cut(version, 64, &v) < 0))
                return -ENOMEM;
        fields = cJSON_CreateObject();
        if (!fields || !cJSON_AddStringToObject(fields, "run", run) ||
            (n && n[0] && !cJSON_AddStringToObject(fields, "client", n)) ||
            (v && v[0] && !cJSON_AddStringToObject(fields, "client_version", v)))
                r = -ENOMEM;
        else
                r = note_async(b, fields, "run-client");
        cJSON_Delete(fields);
        return r;
}
