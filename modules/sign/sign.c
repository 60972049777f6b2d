/* SPDX-License-Identifier: MIT */
/* sign: signatures and short-lived JWTs made by the broker with keys that never leave it.
 *
 *   sign.hmac_sha256 {key, message}     HMAC-SHA256 of message with the broker secret named
 *                                       key (policy must grant it `sign` to this tool);
 *                                       returns the MAC as hex, and {"mac": hex}.
 *   sign.jwt {audience, scope?, ttl?}   an EdDSA JWT minted by the broker with the Ed25519
 *                                       secret named by the module configuration `jwt_key`
 *                                       (default "identity"; policy must grant it `mint-jwt`);
 *                                       returns the JWT, and {"jwt": .., "exp": ..}.
 *
 * The module never holds key material: it presents the call's token to the broker, which
 * checks the policy, writes the audit record and answers with the signature or the token.
 * A refusal comes back as an isError result naming the broker's reason. The JWT is meant to
 * be handed to the caller (it is the tool's result); it is short-lived and audience-bound. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <agentbroker/module.h>

#define SECRET_NAME_MAX 128
#define MESSAGE_MAX 16384 /* bytes: what the broker signs at most */
#define JWT_MAX 8192      /* the longest JWT the library accepts from the broker */

/* The Ed25519 secret sign.jwt mints with, from the configuration. */
static char jwt_key[SECRET_NAME_MAX + 1] = "identity";

static const char hmac_input_schema[] =
        "{"
        "\"type\":\"object\","
        "\"properties\":{"
        "\"key\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128,"
        "\"pattern\":\"^[A-Za-z0-9_][A-Za-z0-9_-]*$\","
        "\"description\":\"The name of the broker secret to sign with (a bytes secret).\"},"
        "\"message\":{\"type\":\"string\",\"maxLength\":16384,"
        "\"description\":\"The message to sign, as UTF-8 (at most 16384 bytes).\"}"
        "},"
        "\"required\":[\"key\",\"message\"],"
        "\"additionalProperties\":false"
        "}";

static const char hmac_output_schema[] = "{"
                                         "\"type\":\"object\","
                                         "\"properties\":{"
                                         "\"mac\":{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{64}$\","
                                         "\"description\":\"HMAC-SHA256 of the message, lower-case hex.\"}"
                                         "},"
                                         "\"required\":[\"mac\"],"
                                         "\"additionalProperties\":false"
                                         "}";

static const char jwt_input_schema[] =
        "{"
        "\"type\":\"object\","
        "\"properties\":{"
        "\"audience\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":512,"
        "\"description\":\"The aud claim: the service the token is for.\"},"
        "\"scope\":{\"type\":\"string\",\"maxLength\":1024,"
        "\"description\":\"The scope claim (optional).\"},"
        "\"ttl\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":86400,"
        "\"description\":\"Lifetime in seconds (optional; the broker's default is 60, "
        "and policy caps it).\"}"
        "},"
        "\"required\":[\"audience\"],"
        "\"additionalProperties\":false"
        "}";

static const char jwt_output_schema[] =
        "{"
        "\"type\":\"object\","
        "\"properties\":{"
        "\"jwt\":{\"type\":\"string\",\"description\":\"The signed JWT (compact serialization).\"},"
        "\"exp\":{\"type\":\"integer\",\"description\":\"Its expiry, seconds since the epoch.\"}"
        "},"
        "\"required\":[\"jwt\",\"exp\"],"
        "\"additionalProperties\":false"
        "}";

/* An error for a refused secret operation: the broker's reason when it denied it. */
static int
secret_error(struct abm_call *call, struct abm_error *err, int r, const char *what, const char *secret)
{
        const char *reason = abm_call_denial(call);

        if (reason)
                return abm_error_set(err, r, "the broker refused to %s with secret %s: %s", what, secret,
                                     reason);
        return abm_error_set(err, r, "cannot %s with secret %s: %s", what, secret, strerror(-r));
}

static int
hmac_call(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *args = abm_call_args(call);
        const char *key, *message;
        unsigned char mac[64];
        char hex[2 * 32 + 1], json[sizeof(hex) + 16];
        size_t mac_len, len;
        int r;

        if (abm_json_get_string(args, "key", &key) < 0 || abm_json_get_string(args, "message", &message) < 0)
                return abm_error_set(err, -EINVAL,
                                     "the arguments \"key\" and \"message\" are required strings");
        /* The schema counts characters; the broker counts bytes. */
        len = strlen(message);
        if (len > MESSAGE_MAX)
                return abm_error_set(err, -EINVAL, "the message is %zu bytes long; at most %d can be signed",
                                     len, MESSAGE_MAX);

        r = abm_call_sign(call, key, "hmac-sha256", message, len, mac, &mac_len);
        if (r < 0)
                return secret_error(call, err, r, "sign", key);
        if (mac_len != 32)
                return abm_error_set(err, -EIO, "the broker returned a %zu-byte MAC", mac_len);

        for (size_t i = 0; i < mac_len; i++)
                snprintf(hex + 2 * i, 3, "%02x", mac[i]);
        /* Hex needs no JSON escaping. */
        snprintf(json, sizeof(json), "{\"mac\":\"%s\"}", hex);
        r = abm_call_text(call, hex, (size_t)-1);
        if (r == 0)
                r = abm_call_structured(call, json);
        if (r < 0)
                return abm_error_set(err, r, "cannot return the MAC: %s", strerror(-r));
        return 0;
}

static int
jwt_call(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *args = abm_call_args(call);
        const char *audience, *scope = NULL, *jwt;
        int64_t ttl = 0, exp;
        char json[JWT_MAX + 64];
        int n, r;

        if (abm_json_get_string(args, "audience", &audience) < 0)
                return abm_error_set(err, -EINVAL, "the argument \"audience\" is a required string");
        r = abm_json_get_string(args, "scope", &scope);
        if (r < 0 && r != -ENOENT)
                return abm_error_set(err, r, "the argument \"scope\" must be a string");
        r = abm_json_get_int(args, "ttl", &ttl);
        if ((r < 0 && r != -ENOENT) || ttl < 0 || ttl > 86400)
                return abm_error_set(err, -EINVAL,
                                     "the argument \"ttl\" must be an integer from 1 to 86400");

        r = abm_call_mint_jwt_exp(call, jwt_key, audience, scope, (unsigned)ttl, &jwt, &exp);
        if (r < 0)
                return secret_error(call, err, r, "mint a JWT", jwt_key);

        /* A JWT is base64url and dots: no JSON escaping needed. */
        n = snprintf(json, sizeof(json), "{\"jwt\":\"%s\",\"exp\":%lld}", jwt, (long long)exp);
        if (n < 0 || (size_t)n >= sizeof(json))
                return abm_error_set(err, -E2BIG, "the broker's JWT is too long");
        r = abm_call_text(call, jwt, (size_t)-1);
        if (r == 0)
                r = abm_call_structured(call, json);
        explicit_bzero(json, sizeof(json));
        if (r < 0)
                return abm_error_set(err, r, "cannot return the JWT: %s", strerror(-r));
        return 0;
}

/* Read `jwt_key` from the configuration, if set: a secret name. */
static int
sign_init(const struct abm_json *config, struct abm_error *err)
{
        const char *key;
        size_t len;
        int r;

        r = abm_json_get_string(config, "jwt_key", &key);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return abm_error_set(err, r, "configuration: jwt_key must be a string");
        len = strlen(key);
        if (len == 0 || len > SECRET_NAME_MAX ||
            strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-") != len ||
            key[0] == '-')
                return abm_error_set(err, -EINVAL, "configuration: jwt_key is not a secret name");
        memcpy(jwt_key, key, len + 1);
        return 0;
}

static const struct abm_tool sign_tools[] = {
        {
                .name = "hmac_sha256",
                .title = "HMAC-SHA256",
                .description = "Compute the HMAC-SHA256 of a message with a key held by the credential broker. "
                               "The key never leaves the broker; the MAC is returned as lower-case hex.",
                .input_schema = hmac_input_schema,
                .output_schema = hmac_output_schema,
                .annotations = {
                        .read_only = ABM_HINT_TRUE,
                        .destructive = ABM_HINT_FALSE,
                        .idempotent = ABM_HINT_TRUE,
                        .open_world = ABM_HINT_FALSE,
                },
                .call = hmac_call,
        },
        {
                .name = "jwt",
                .title = "Mint a JWT",
                .description = "Mint a short-lived EdDSA-signed JWT for an audience, with an optional scope and "
                               "lifetime. The signing key never leaves the credential broker.",
                .input_schema = jwt_input_schema,
                .output_schema = jwt_output_schema,
                .annotations = {
                        .read_only = ABM_HINT_TRUE,
                        .destructive = ABM_HINT_FALSE,
                        .idempotent = ABM_HINT_FALSE,       /* each token is new (jti, iat) */
                        .open_world = ABM_HINT_FALSE,
                },
                .call = jwt_call,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "sign",
        .version = "1.0",
        .tools = sign_tools,
        .n_tools = sizeof(sign_tools) / sizeof(sign_tools[0]),
        .init = sign_init,
        .fini = NULL,
};
