/* SPDX-License-Identifier: MIT */
/* The HTTP bearer-token table (see httptokens.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/httptokens.h"
#include "common/encode.h"
#include "common/macros.h"
#include "common/secmem.h"

struct http_token {
        unsigned char hash[32];
        uint64_t expires_ms; /* 0 or past: the slot is free */
};

struct ab_http_tokens {
        struct http_token slots[AB_HTTP_TOKENS_MAX];
};

int
ab_http_tokens_new(struct ab_http_tokens **ret)
{
        struct ab_http_tokens *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

void
ab_http_tokens_free(struct ab_http_tokens *t)
{
        free(t);
}

/* The first slot free at now_ms, or NULL. */
static struct http_token *
free_slot(struct ab_http_tokens *t, uint64_t now_ms)
{
        for (size_t i = 0; i < AB_HTTP_TOKENS_MAX; i++)
                if (t->slots[i].expires_ms <= now_ms)
                        return &t->slots[i];
        return NULL;
}

/* The short id of a token hash: hex of its first 4 bytes. */
static void
short_id(const unsigned char hash[32], char out[AB_HTTP_TOKEN_ID_LEN + 1])
{
        ab_hex_encode_buf(hash, AB_HTTP_TOKEN_ID_LEN / 2, out);
}

/* SHA-256 of a token's text. Returns 0 or -EIO. */
static int
token_hash(const char *token, unsigned char hash[32])
{
        unsigned len = 0;

        return EVP_Digest(token, strlen(token), hash, &len, EVP_sha256(), NULL) && len == 32 ? 0 : -EIO;
}

int
ab_http_tokens_mint(struct ab_http_tokens *t, uint64_t now_ms, char ret_token[AB_HTTP_TOKEN_LEN + 1],
                    unsigned char ret_hash[32], char ret_id[AB_HTTP_TOKEN_ID_LEN + 1])
{
        unsigned char raw[AB_HTTP_TOKEN_RANDOM];
        AB_WIPE_ON_EXIT(raw);
        char token[AB_HTTP_TOKEN_LEN + 1];
        AB_WIPE_ON_EXIT(token);
        _cleanup_strfreezero_ char *enc = NULL;
        unsigned char hash[32];
        int r;

        if (!free_slot(t, now_ms))
                return -ENOSPC;
        if (RAND_bytes(raw, sizeof raw) != 1)
                return -EIO;
        r = ab_base64url_encode(raw, sizeof raw, &enc);
        if (r < 0)
                return r;
        snprintf(token, sizeof token, AB_HTTP_TOKEN_PREFIX "%s", enc);
        r = token_hash(token, hash);
        if (r < 0)
                return r;
        memcpy(ret_token, token, sizeof token);
        memcpy(ret_hash, hash, sizeof hash);
        short_id(hash, ret_id);
        return 0;
}

int
ab_http_tokens_add(struct ab_http_tokens *t, const unsigned char hash[32], uint64_t now_ms,
                   uint64_t expires_ms)
{
        struct http_token *slot = free_slot(t, now_ms);

        if (!slot)
                return -ENOSPC;
        memcpy(slot->hash, hash, sizeof slot->hash);
        slot->expires_ms = expires_ms;
        return 0;
}

void
ab_http_tokens_forget(struct ab_http_tokens *t, const unsigned char hash[32])
{
        for (size_t i = 0; i < AB_HTTP_TOKENS_MAX; i++)
                if (CRYPTO_memcmp(t->slots[i].hash, hash, sizeof t->slots[i].hash) == 0)
                        memset(&t->slots[i], 0, sizeof t->slots[i]);
}

int
ab_http_tokens_check(const struct ab_http_tokens *t, const char *token, uint64_t now_ms,
                     char ret_id[AB_HTTP_TOKEN_ID_LEN + 1], uint64_t *ret_expires_ms)
{
        unsigned char hash[32];
        int r;

        snprintf(ret_id, AB_HTTP_TOKEN_ID_LEN + 1, "?");
        if (strncmp(token, AB_HTTP_TOKEN_PREFIX, strlen(AB_HTTP_TOKEN_PREFIX)) != 0 ||
            strlen(token) != AB_HTTP_TOKEN_LEN)
                return -EBADMSG;
        r = token_hash(token, hash);
        if (r < 0)
                return r;
        short_id(hash, ret_id);
        for (size_t i = 0; i < AB_HTTP_TOKENS_MAX; i++) {
                if (CRYPTO_memcmp(t->slots[i].hash, hash, sizeof hash) != 0)
                        continue;
                if (t->slots[i].expires_ms <= now_ms)
                        return -ETIME;
                *ret_expires_ms = t->slots[i].expires_ms;
                return 0;
        }
        return -ENOENT;
}
