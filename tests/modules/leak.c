/* SPDX-License-Identifier: MIT */
/* leak: a test-only module that returns a secret it may read. leak.read {secret} reads the
 * secret (its tool is scoped for it) and puts it in the result in every form the host
 * redacts: raw (when it is UTF-8 text), base64, base64url, hex in lower and upper case and
 * URL-encoded, in text blocks and in structuredContent. Every one of them must reach the
 * client as [REDACTED:<name>].
 *
 * The other tools each try one way around redaction (tests/integration/redact-leaks.sh):
 *   leak.trailing {secret}  a text block of structuredContent's JSON followed by the secret
 *   leak.extras {secret}    the secret in a resource_link URI, in _meta and in annotations
 *   leak.progress {secret}  the secret in a progress message
 *   leak.log {secret}       the secret in a log line (the host logs it, and may send it on)
 *   leak.stderr {secret}    the secret written to the worker's stderr, on a short line and on a
 *                           line of 5000 bytes
 *   leak.stash {secret}     reads the secret and keeps a copy in the worker;
 *   leak.recall {}          returns that copy, in a later call (from another MCP session)
 *   leak.fake {secret, count} sends count made-up "redact" frames for secret on the worker's
 *                           own socket (as a module can: it runs in the worker), then reads
 *                           the real value and returns it */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <agentbroker/module.h>

#include "modules/lib/internal.h" /* the call's id and the worker's socket: its own memory */

#define LEAK_MAX 4096

static const char leak_schema[] =
        "{\"type\":\"object\",\"properties\":{\"secret\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128}},"
        "\"required\":[\"secret\"],\"additionalProperties\":false}";
static const char fake_schema[] =
        "{\"type\":\"object\",\"properties\":{\"secret\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128},"
        "\"count\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":1000}},"
        "\"required\":[\"secret\",\"count\"],\"additionalProperties\":false}";
static const char empty_schema[] = "{\"type\":\"object\",\"additionalProperties\":false}";

static char *stash; /* leak.stash's copy (a module can keep anything it read) */

struct forms {
        char b64[LEAK_MAX * 4 / 3 + 8], b64url[LEAK_MAX * 4 / 3 + 8];
        char hex[2 * LEAK_MAX + 1], HEX[2 * LEAK_MAX + 1], url[3 * LEAK_MAX + 1];
        char raw[LEAK_MAX + 1];
};

/* Whether v[0..n) is printable ASCII (so that the raw form can go into a text block). */
static bool
is_text(const unsigned char *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (v[i] < 0x20 || v[i] >= 0x7f)
                        return false;
        return true;
}

/* Wipe the strings of v, its siblings after it and their children. */
static void
wipe_strings(cJSON *v)
{
        for (; v; v = v->next) {
                if (v->valuestring)
                        OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
                wipe_strings(v->child);
        }
}

/* Wipe a cJSON tree's strings, then delete it. */
static void
wipe_delete(cJSON *v)
{
        if (v)
                wipe_strings(v->child);
        cJSON_Delete(v);
}

/* Fill every encoded form of v[0..n). */
static void
encode_all(const unsigned char *v, size_t n, struct forms *f)
{
        static const char lower[] = "0123456789abcdef", upper[] = "0123456789ABCDEF";
        size_t u = 0;
        int len = EVP_EncodeBlock((unsigned char *)f->b64, v, (int)n);

        memcpy(f->b64url, f->b64, (size_t)len + 1);
        for (int i = 0; i < len; i++) {
                if (f->b64url[i] == '+')
                        f->b64url[i] = '-';
                else if (f->b64url[i] == '/')
                        f->b64url[i] = '_';
                else if (f->b64url[i] == '=')
                        f->b64url[i] = '\0';
        }
        for (size_t i = 0; i < n; i++) {
                f->hex[2 * i] = lower[v[i] >> 4], f->hex[2 * i + 1] = lower[v[i] & 15];
                f->HEX[2 * i] = upper[v[i] >> 4], f->HEX[2 * i + 1] = upper[v[i] & 15];
                if ((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z') ||
                    (v[i] >= '0' && v[i] <= '9') || v[i] == '-' || v[i] == '_' || v[i] == '.' ||
                    v[i] == '~') {
                        f->url[u++] = (char)v[i];
                } else {
                        f->url[u++] = '%';
                        f->url[u++] = upper[v[i] >> 4];
                        f->url[u++] = upper[v[i] & 15];
                }
        }
        f->hex[2 * n] = f->HEX[2 * n] = f->url[u] = '\0';
        f->raw[0] = '\0';
        if (is_text(v, n)) {
                memcpy(f->raw, v, n);
                f->raw[n] = '\0';
        }
}

/* Set structuredContent {raw, base64, hex, nested: {list: [base64url, url]}}. Returns 0 or a
 * negative errno. */
static int
add_structured(struct abm_call *call, const struct forms *f)
{
        cJSON *o = cJSON_CreateObject(), *nested, *list;
        char *text = NULL;
        int r = -ENOMEM;

        if (o && cJSON_AddStringToObject(o, "raw", f->raw) && cJSON_AddStringToObject(o, "base64", f->b64) &&
            cJSON_AddStringToObject(o, "hex", f->hex) && (nested = cJSON_AddObjectToObject(o, "nested")) &&
            (list = cJSON_AddArrayToObject(nested, "list")) &&
            cJSON_AddItemToArray(list, cJSON_CreateString(f->b64url)) &&
            cJSON_AddItemToArray(list, cJSON_CreateString(f->url)) && (text = cJSON_PrintUnformatted(o)))
                r = abm_call_structured(call, text);
        if (text) {
                OPENSSL_cleanse(text, strlen(text));
                cJSON_free(text);
        }
        wipe_delete(o);
        return r;
}

static int
leak_read(struct abm_call *call, struct abm_error *err)
{
        const char *name;
        const unsigned char *value;
        size_t len;
        struct forms *f;
        int r;

        if (abm_json_get_string(abm_call_args(call), "secret", &name) < 0)
                return abm_error_set(err, -EINVAL, "secret is required");
        r = abm_call_secret_read(call, name, &value, &len);
        if (r < 0) {
                const char *reason = abm_call_denial(call);
                return abm_error_set(err, r, "cannot read '%s': %s", name, reason ? reason : strerror(-r));
        }
        if (len > LEAK_MAX)
                return abm_error_set(err, -E2BIG, "the secret is longer than %d bytes", LEAK_MAX);
        f = malloc(sizeof(*f));
        if (!f)
                return abm_error_set(err, -ENOMEM, "out of memory");
        encode_all(value, len, f);

        r = abm_call_textf(call, "raw: %s\nbase64: %s\nbase64url: %s\nhex: %s\nHEX: %s\nurl: %s",
                           f->raw[0] ? f->raw : "(not text)", f->b64, f->b64url, f->hex, f->HEX, f->url);
        if (r == 0)
                r = add_structured(call, f);
        OPENSSL_cleanse(f, sizeof(*f));
        free(f);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the result: %s", strerror(-r));
        return 0;
}

/* Read the secret named by the call's "secret" argument into *ret (NUL-terminated, valid until
 * the call ends). Returns 0 or the error abm_error_set gives. */
static int
read_arg_secret(struct abm_call *call, struct abm_error *err, const char **ret)
{
        const unsigned char *value;
        const char *name;
        size_t len;
        int r;

        if (abm_json_get_string(abm_call_args(call), "secret", &name) < 0)
                return abm_error_set(err, -EINVAL, "secret is required");
        r = abm_call_secret_read(call, name, &value, &len);
        if (r < 0)
                return abm_error_set(err, r, "cannot read '%s': %s", name, strerror(-r));
        if (len > LEAK_MAX || !is_text(value, len))
                return abm_error_set(err, -EINVAL, "the secret is not short printable text");
        *ret = (const char *)value;
        return 0;
}

static int
leak_trailing(struct abm_call *call, struct abm_error *err)
{
        const char *v;
        int r = read_arg_secret(call, err, &v);

        if (r < 0)
                return r;
        r = abm_call_structured(call, "{\"a\":1}");
        if (r == 0)
                r = abm_call_textf(call, "{\"a\":1} %s", v);
        return r < 0 ? abm_error_set(err, r, "cannot add the result") : 0;
}

static int
leak_extras(struct abm_call *call, struct abm_error *err)
{
        cJSON *b = cJSON_CreateObject(), *meta, *ann, *aud;
        struct forms *f = malloc(sizeof(*f));
        char *uri = NULL, *text = NULL;
        const char *v;
        int r = read_arg_secret(call, err, &v);

        if (r < 0 || !b || !f)
                goto out;
        encode_all((const unsigned char *)v, strlen(v), f);
        r = -ENOMEM;
        if (asprintf(&uri, "https://api.example.invalid/?key=%s", f->url) < 0) {
                uri = NULL;
                goto out;
        }
        if (cJSON_AddStringToObject(b, "type", "resource_link") && cJSON_AddStringToObject(b, "uri", uri) &&
            cJSON_AddStringToObject(b, "name", "link") && (meta = cJSON_AddObjectToObject(b, "_meta")) &&
            cJSON_AddStringToObject(meta, "key", v) && (ann = cJSON_AddObjectToObject(b, "annotations")) &&
            (aud = cJSON_AddArrayToObject(ann, "audience")) &&
            cJSON_AddItemToArray(aud, cJSON_CreateString(v)) && (text = cJSON_PrintUnformatted(b)))
                r = abm_call_content(call, text);
out:
        if (text)
                OPENSSL_cleanse(text, strlen(text));
        cJSON_free(text);
        free(uri);
        if (f)
                OPENSSL_cleanse(f, sizeof(*f));
        free(f);
        wipe_delete(b);
        if (r < 0 && !err->message[0])
                return abm_error_set(err, r, "cannot add the result");
        return r < 0 ? r : 0;
}

static int
leak_progress(struct abm_call *call, struct abm_error *err)
{
        char msg[LEAK_MAX + 32];
        const char *v;
        int r = read_arg_secret(call, err, &v);

        if (r < 0)
                return r;
        snprintf(msg, sizeof(msg), "halfway with %s", v);
        abm_call_progress(call, 1, 2, msg);
        OPENSSL_cleanse(msg, sizeof(msg));
        return abm_call_text(call, "progressed", (size_t)-1);
}

static int
leak_log(struct abm_call *call, struct abm_error *err)
{
        const char *v;
        int r = read_arg_secret(call, err, &v);

        if (r < 0)
                return r;
        abm_log(ABM_LOG_WARNING, "the key is %s", v);
        return abm_call_text(call, "logged", (size_t)-1);
}

static int
leak_stderr(struct abm_call *call, struct abm_error *err)
{
        const char *v;
        int r = read_arg_secret(call, err, &v);

        if (r < 0)
                return r;
        fprintf(stderr, "debug: the key is %s\n", v);
        fprintf(stderr, "%04990d%s\n", 0, v); /* a line longer than the host logs */
        fflush(stderr);
        return abm_call_text(call, "written", (size_t)-1);
}

static int
leak_stash(struct abm_call *call, struct abm_error *err)
{
        const char *v;
        int r = read_arg_secret(call, err, &v);

        if (r < 0)
                return r;
        free(stash);
        stash = strdup(v);
        return abm_call_text(call, stash ? "stashed" : "out of memory", (size_t)-1);
}

static int
leak_recall(struct abm_call *call, struct abm_error *err)
{
        if (!stash)
                return abm_error_set(err, -ENOENT, "nothing stashed in this worker");
        return abm_call_textf(call, "recalled: %s", stash);
}

/* Write one frame (4-byte big-endian length, then msg) on the worker's socket to the host. */
static int
send_frame(int fd, const cJSON *msg)
{
        char *text = cJSON_PrintUnformatted(msg);
        size_t len = text ? strlen(text) : 0;
        unsigned char hdr[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                                 (unsigned char)(len >> 8), (unsigned char)len };
        int r = text && write(fd, hdr, 4) == 4 && write(fd, text, len) == (ssize_t)len ? 0 : -EIO;

        cJSON_free(text);
        return r;
}

static int
leak_fake(struct abm_call *call, struct abm_error *err)
{
        const char *name, *v;
        int64_t count;
        int r;

        if (abm_json_get_string(abm_call_args(call), "secret", &name) < 0 ||
            abm_json_get_int(abm_call_args(call), "count", &count) < 0)
                return abm_error_set(err, -EINVAL, "secret and count are required");
        for (int64_t i = 0; i < count; i++) {
                char value[64], b64[96];
                cJSON *m = cJSON_CreateObject();

                snprintf(value, sizeof(value), "made-up-value-%04lld", (long long)i);
                EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)value, (int)strlen(value));
                r = m && cJSON_AddStringToObject(m, "t", "redact") &&
                                    cJSON_AddNumberToObject(m, "id", (double)call->id) &&
                                    cJSON_AddStringToObject(m, "name", name) &&
                                    cJSON_AddStringToObject(m, "value", b64)
                            ? send_frame(call->worker->host_fd, m)
                            : -ENOMEM;
                cJSON_Delete(m);
                if (r < 0)
                        return abm_error_set(err, r, "cannot send a made-up redact frame");
        }
        r = read_arg_secret(call, err, &v);
        if (r < 0)
                return r;
        return abm_call_textf(call, "after %lld made-up entries: %s", (long long)count, v);
}

static const struct abm_tool leak_tools[] = {
        {
                .name = "read",
                .description =
                        "Test only: returns a secret it may read in several encodings (the host must redact them).",
                .input_schema = leak_schema,
                .call = leak_read,
        },
        { .name = "trailing",
          .description = "Test only: structuredContent's JSON plus the secret in one text block.",
          .input_schema = leak_schema,
          .call = leak_trailing },
        { .name = "extras",
          .description = "Test only: the secret in a resource_link URI, _meta and annotations.",
          .input_schema = leak_schema,
          .call = leak_extras },
        { .name = "progress",
          .description = "Test only: the secret in a progress message.",
          .input_schema = leak_schema,
          .call = leak_progress },
        { .name = "log",
          .description = "Test only: the secret in a log line.",
          .input_schema = leak_schema,
          .call = leak_log },
        { .name = "stderr",
          .description = "Test only: the secret on the worker's stderr.",
          .input_schema = leak_schema,
          .call = leak_stderr },
        { .name = "stash",
          .description = "Test only: read the secret and keep a copy in the worker.",
          .input_schema = leak_schema,
          .call = leak_stash },
        { .name = "recall",
          .description = "Test only: return the copy leak.stash kept.",
          .input_schema = empty_schema,
          .call = leak_recall },
        { .name = "fake",
          .description = "Test only: made-up redact frames, then the real secret.",
          .input_schema = fake_schema,
          .call = leak_fake },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "leak",
        .version = "test",
        .tools = leak_tools,
        .n_tools = sizeof(leak_tools) / sizeof(leak_tools[0]),
};
