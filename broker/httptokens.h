/* SPDX-License-Identifier: MIT */
/* The bearer tokens of agentbroker-mcp --http (docs/http.md): "abh_" + base64url(256 random
 * bits), issued by http-token-issue and checked by http-token-check. The broker keeps only the
 * SHA-256 of each token and its expiry, in a fixed table. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define AB_HTTP_TOKENS_MAX 1024 /* live tokens at once */
#define AB_HTTP_TOKEN_TTL_DEFAULT_S 900
#define AB_HTTP_TOKEN_TTL_MAX_S (7 * 86400)
#define AB_HTTP_TOKEN_PREFIX "abh_"
#define AB_HTTP_TOKEN_RANDOM 32    /* bytes of randomness, base64url in the token */
#define AB_HTTP_TOKEN_LEN (4 + 43) /* prefix + base64url(32 bytes) without padding */
#define AB_HTTP_TOKEN_ID_LEN 8     /* short id: hex of the first 4 bytes of the hash */

struct ab_http_tokens;

/* An empty table. Returns 0 or -ENOMEM. */
int ab_http_tokens_new(struct ab_http_tokens **ret);
/* Free the table. Accepts NULL. */
void ab_http_tokens_free(struct ab_http_tokens *t);

/* Make a new token (not yet live: see ab_http_tokens_add) into ret_token, its hash into
 * ret_hash and its short id into ret_id. Returns 0, -ENOSPC (AB_HTTP_TOKENS_MAX are live at
 * now_ms), -ENOMEM or -EIO (no randomness). */
int ab_http_tokens_mint(struct ab_http_tokens *t, uint64_t now_ms, char ret_token[AB_HTTP_TOKEN_LEN + 1],
                        unsigned char ret_hash[32], char ret_id[AB_HTTP_TOKEN_ID_LEN + 1]);
/* Make the token of hash live until expires_ms. Returns 0 or -ENOSPC. */
int ab_http_tokens_add(struct ab_http_tokens *t, const unsigned char hash[32], uint64_t now_ms,
                       uint64_t expires_ms);
/* Forget the token of hash (an issue that could not be answered). */
void ab_http_tokens_forget(struct ab_http_tokens *t, const unsigned char hash[32]);

/* Check a presented token at now_ms. ret_id gets its short id when it is well-formed ("?"
 * otherwise). Returns 0 with *ret_expires_ms set, -EBADMSG (malformed), -ENOENT (never
 * issued), -ETIME (expired) or -EIO. */
int ab_http_tokens_check(const struct ab_http_tokens *t, const char *token, uint64_t now_ms,
                         char ret_id[AB_HTTP_TOKEN_ID_LEN + 1], uint64_t *ret_expires_ms);
