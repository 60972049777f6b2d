/* leak: a test-only module that returns a secret it may read. leak.read {secret} reads the
 * secret (its tool is scoped for it) and puts it in the result in every form the host
 * redacts: raw (when it is UTF-8 text), base64, base64url, hex in lower and upper case and
 * URL-encoded, in text blocks and in structuredContent. Every one of them must reach the
 * client as [REDACTED:<name>]. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <agentbroker/module.h>

#define LEAK_MAX 4096

static const char leak_schema[] =
        "{\"type\":\"object\",\"properties\":{\"secret\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128}},"
        "\"required\":[\"secret\"],\"additionalProperties\":false}";

struct forms {
        char b64[LEAK_MAX * 4 / 3 + 8], b64url[LEAK_MAX * 4 / 3 + 8];
        char hex[2 * LEAK_MAX + 1], HEX[2 * LEAK_MAX + 1], url[3 * LEAK_MAX + 1];
        char raw[LEAK_MAX + 1];
};

/* Whether v[0..n) is printable ASCII (so that the raw form can go into a text block). */
static bool is_text(const unsigned char *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (v[i] < 0x20 || v[i] >= 0x7f)
                        return false;
        return true;
}

/* Wipe the strings of v, its siblings after it and their children. */
static void wipe_strings(cJSON *v)
{
        for (; v; v = v->next) {
                if (v->valuestring)
                        OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
                wipe_strings(v->child);
        }
}

/* Wipe a cJSON tree's strings, then delete it. */
static void wipe_delete(cJSON *v)
{
        if (v)
                wipe_strings(v->child);
        cJSON_Delete(v);
}

/* Fill every encoded form of v[0..n). */
static void encode_all(const unsigned char *v, size_t n, struct forms *f)
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
                if ((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') ||
                    v[i] == '-' || v[i] == '_' || v[i] == '.' || v[i] == '~') {
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
static int add_structured(struct abm_call *call, const struct forms *f)
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

static int leak_read(struct abm_call *call, struct abm_error *err)
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

static const struct abm_tool leak_tools[] = {
        {
                .name = "read",
                .description = "Test only: returns a secret it may read in several encodings (the host must redact them).",
                .input_schema = leak_schema,
                .call = leak_read,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "leak",
        .version = "test",
        .tools = leak_tools,
        .n_tools = 1,
};
