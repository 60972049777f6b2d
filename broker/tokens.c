/* SPDX-License-Identifier: MIT */
/* The call-token table (see tokens.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/tokens.h"
#include "common/encode.h"
#include "common/secmem.h"

struct tombstone {
        unsigned char hash[32];
        enum ab_token_state why;
        int32_t next; /* next index in the same bucket, -1 = end */
};

struct ab_token_table {
        EVP_MAC *mac;
        EVP_MAC_CTX *keyed; /* HMAC-SHA256 with the per-process key: duplicated per use */
        struct ab_token **buckets;
        size_t n_buckets; /* power of two */
        size_t n_live, max_live;
        struct tombstone *tomb; /* ring of AB_TOMBSTONES_MAX, oldest overwritten */
        int32_t *tomb_heads;    /* hash buckets over the ring, AB_TOMBSTONES_MAX of them */
        size_t tomb_next, tomb_count;
        struct ab_secbuf *pool; /* random bytes for the next tokens (locked, not dumped) */
        size_t pool_used;
};

int
ab_tokens_new(size_t max_live, struct ab_token_table **ret)
{
        struct ab_token_table *t;
        unsigned char key[32];
        AB_WIPE_ON_EXIT(key);
        OSSL_PARAM params[2];
        int r = -ENOMEM;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->max_live = max_live ? max_live : AB_TOKENS_MAX_DEFAULT;
        t->n_buckets = 1;
        while (t->n_buckets < t->max_live)
                t->n_buckets <<= 1;
        t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
        t->tomb = calloc(AB_TOMBSTONES_MAX, sizeof(*t->tomb));
        t->tomb_heads = malloc(AB_TOMBSTONES_MAX * sizeof(*t->tomb_heads));
        if (!t->buckets || !t->tomb || !t->tomb_heads || ab_secbuf_new(32 * AB_TOKEN_RAW, &t->pool) < 0)
                goto fail;
        t->pool_used = t->pool->len;
        for (size_t i = 0; i < AB_TOMBSTONES_MAX; i++)
                t->tomb_heads[i] = -1;
        if (RAND_priv_bytes(key, sizeof(key)) != 1) {
                r = -EIO;
                goto fail;
        }
        t->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!t->mac || !(t->keyed = EVP_MAC_CTX_new(t->mac))) {
                r = -EIO;
                goto fail;
        }
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (EVP_MAC_init(t->keyed, key, sizeof(key), params) != 1) {
                r = -EIO;
                goto fail;
        }
        *ret = t;
        return 0;
fail:
        ab_tokens_free(t);
        return r;
}

void
ab_token_free(struct ab_token *tok)
{
        if (!tok)
                return;
        for (size_t i = 0; i < tok->n_grants; i++)
                free(tok->grants[i].secret);
        free(tok->grants);
        free(tok->tool);
        ab_peer_clear(&tok->issuer);
        ab_peer_clear(&tok->presenter);
        ab_wipe(tok->hash, sizeof(tok->hash));
        free(tok);
}

void
ab_tokens_free(struct ab_token_table *t)
{
        if (!t)
                return;
        if (t->buckets)
                for (size_t i = 0; i < t->n_buckets; i++)
                        while (t->buckets[i]) {
                                struct ab_token *n = t->buckets[i]->next;
                                ab_token_free(t->buckets[i]);
                                t->buckets[i] = n;
                        }
        free(t->buckets);
        free(t->tomb);
        free(t->tomb_heads);
        ab_secbuf_free(t->pool);
        EVP_MAC_CTX_free(t->keyed);
        EVP_MAC_free(t->mac);
        free(t);
}

struct ab_token *
ab_token_alloc(void)
{
        struct ab_token *tok = calloc(1, sizeof(*tok));

        if (tok) {
                tok->issuer.pidfd = -1;
                tok->presenter.pidfd = -1;
        }
        return tok;
}

int
ab_token_add_grant(struct ab_token *tok, const char *secret, unsigned ops)
{
        struct ab_token_grant *g;
        char *s = strdup(secret);

        if (!s)
                return -ENOMEM;
        g = realloc(tok->grants, (tok->n_grants + 1) * sizeof(*g));
        if (!g) {
                free(s);
                return -ENOMEM;
        }
        tok->grants = g;
        g[tok->n_grants].secret = s;
        g[tok->n_grants].ops = ops;
        tok->n_grants++;
        return 0;
}

unsigned
ab_token_grant_ops(const struct ab_token *tok, const char *secret)
{
        for (size_t i = 0; i < tok->n_grants; i++)
                if (strcmp(tok->grants[i].secret, secret) == 0)
                        return tok->grants[i].ops;
        return 0;
}

/* Keyed hash of a token string. Returns 0 or -EIO. */
static int
token_hash(struct ab_token_table *t, const char *token, size_t len, unsigned char out[32])
{
        size_t outl = 0;

        /* A NULL key re-initialises HMAC from its precomputed inner and outer pads: no
         * allocation, no key schedule per token. */
        if (EVP_MAC_init(t->keyed, NULL, 0, NULL) != 1 ||
            EVP_MAC_update(t->keyed, (const unsigned char *)token, len) != 1 ||
            EVP_MAC_final(t->keyed, out, &outl, 32) != 1 || outl != 32)
                return -EIO;
        return 0;
}

static size_t
bucket_of(const struct ab_token_table *t, const unsigned char hash[32])
{
        uint64_t h;

        memcpy(&h, hash, sizeof(h));
        return (size_t)(h & (t->n_buckets - 1));
}

int
ab_tokens_issue(struct ab_token_table *t, struct ab_token *tok, char ret_token[AB_TOKEN_LEN + 1])
{
        unsigned char raw[AB_TOKEN_RAW];
        AB_WIPE_ON_EXIT(raw);
        char token[AB_TOKEN_LEN + 1];
        AB_WIPE_ON_EXIT(token);
        size_t b;
        int r;

        if (t->n_live >= t->max_live)
                return -ENOSPC;
        /* Random bytes come from a pool refilled 32 tokens at a time; each token's bytes
         * are wiped from the pool as they are taken. */
        if (t->pool_used >= t->pool->len) {
                if (RAND_bytes(t->pool->data, (int)t->pool->len) != 1)
                        return -EIO;
                t->pool_used = 0;
        }
        memcpy(raw, t->pool->data + t->pool_used, sizeof(raw));
        ab_wipe(t->pool->data + t->pool_used, sizeof(raw));
        t->pool_used += sizeof(raw);
        memcpy(token, AB_TOKEN_PREFIX, AB_TOKEN_PREFIX_LEN);
        ab_base64url_encode_buf(raw, sizeof(raw), token + AB_TOKEN_PREFIX_LEN);
        token[AB_TOKEN_LEN] = '\0';
        r = token_hash(t, token, AB_TOKEN_LEN, tok->hash);
        if (r < 0)
                return r;
        ab_hex_encode_buf(tok->hash, AB_TOKEN_ID_LEN / 2, tok->id);
        b = bucket_of(t, tok->hash);
        tok->next = t->buckets[b];
        t->buckets[b] = tok;
        t->n_live++;
        memcpy(ret_token, token, sizeof(token));
        return 0;
}

static size_t
tomb_bucket(const unsigned char hash[32])
{
        uint32_t h;

        memcpy(&h, hash + 8, sizeof(h));
        return h & (AB_TOMBSTONES_MAX - 1);
}

int
ab_tokens_lookup(struct ab_token_table *t, const char *token, uint64_t now_ms, struct ab_token **ret)
{
        unsigned char h[32];
        int r;

        if (!ab_token_well_formed(token))
                return -EBADMSG;
        r = token_hash(t, token, AB_TOKEN_LEN, h);
        if (r < 0)
                return r;
        for (struct ab_token *k = t->buckets[bucket_of(t, h)]; k; k = k->next)
                if (CRYPTO_memcmp(k->hash, h, 32) == 0) {
                        *ret = k;
                        return now_ms >= k->expires_ms ? -ETIME : 0;
                }
        for (int32_t i = t->tomb_heads[tomb_bucket(h)]; i >= 0; i = t->tomb[i].next)
                if (CRYPTO_memcmp(t->tomb[i].hash, h, 32) == 0)
                        switch (t->tomb[i].why) {
                        case AB_TOKEN_RUN_CLOSED: return -EPIPE;
                        case AB_TOKEN_EXPIRED: return -ETIME;
                        default: return -ESTALE;
                        }
        return -ENOENT;
}

/* Unlink tok from its bucket. */
static void
unlink_token(struct ab_token_table *t, struct ab_token *tok)
{
        struct ab_token **pp = &t->buckets[bucket_of(t, tok->hash)];

        for (; *pp; pp = &(*pp)->next)
                if (*pp == tok) {
                        *pp = tok->next;
                        t->n_live--;
                        return;
                }
}

/* Remember a revoked token's hash, overwriting the oldest tombstone when the ring is full. */
static void
remember(struct ab_token_table *t, const unsigned char hash[32], enum ab_token_state why)
{
        int32_t slot = (int32_t)t->tomb_next;
        struct tombstone *ts = &t->tomb[slot];
        int32_t *pp;

        if (t->tomb_count == AB_TOMBSTONES_MAX) {
                for (pp = &t->tomb_heads[tomb_bucket(ts->hash)]; *pp >= 0; pp = &t->tomb[*pp].next)
                        if (*pp == slot) {
                                *pp = ts->next;
                                break;
                        }
        } else
                t->tomb_count++;
        memcpy(ts->hash, hash, 32);
        ts->why = why;
        pp = &t->tomb_heads[tomb_bucket(hash)];
        ts->next = *pp;
        *pp = slot;
        t->tomb_next = (t->tomb_next + 1) % AB_TOMBSTONES_MAX;
}

void
ab_tokens_revoke(struct ab_token_table *t, struct ab_token *tok, enum ab_token_state why)
{
        unlink_token(t, tok);
        remember(t, tok->hash, why);
        ab_token_free(tok);
}

/* Move every live token for which pred(token, arg) holds to the tombstones as why, calling
 * on_reap (may be NULL) before each is freed. Returns how many. */
static size_t
reap(struct ab_token_table *t, bool (*pred)(const struct ab_token *, const void *), const void *arg,
     enum ab_token_state why, void (*on_reap)(const struct ab_token *, void *), void *userdata)
{
        size_t n = 0;

        for (size_t i = 0; i < t->n_buckets && t->n_live > 0; i++) {
                struct ab_token **pp = &t->buckets[i];
                while (*pp) {
                        struct ab_token *k = *pp;
                        if (!pred(k, arg)) {
                                pp = &k->next;
                                continue;
                        }
                        if (on_reap)
                                on_reap(k, userdata);
                        *pp = k->next;
                        t->n_live--;
                        remember(t, k->hash, why);
                        ab_token_free(k);
                        n++;
                }
        }
        return n;
}

static bool
of_run(const struct ab_token *k, const void *run)
{
        return strcmp(k->run, run) == 0;
}

static bool
reapable(const struct ab_token *k, const void *now_ms)
{
        return *(const uint64_t *)now_ms >= k->expires_ms + AB_TOKEN_REAP_GRACE_MS;
}

size_t
ab_tokens_revoke_run(struct ab_token_table *t, const char *run)
{
        return reap(t, of_run, run, AB_TOKEN_RUN_CLOSED, NULL, NULL);
}

size_t
ab_tokens_expire(struct ab_token_table *t, uint64_t now_ms, void (*on_reap)(const struct ab_token *, void *),
                 void *userdata)
{
        return reap(t, reapable, &now_ms, AB_TOKEN_EXPIRED, on_reap, userdata);
}

size_t
ab_tokens_count(const struct ab_token_table *t)
{
        return t->n_live;
}

void
ab_tokens_foreach(struct ab_token_table *t, int (*fn)(const struct ab_token *, void *), void *userdata)
{
        for (size_t i = 0; i < t->n_buckets; i++)
                for (struct ab_token *k = t->buckets[i]; k; k = k->next)
                        if (fn(k, userdata))
                                return;
}
