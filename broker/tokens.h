/* SPDX-License-Identifier: MIT */
/* The call-token table. A token is "abt_" + base64url(256 random bits); the broker keeps only
 * its keyed hash (HMAC-SHA256 under a per-process random key) and compares in constant time.
 * Claims live server-side. Revoked and expired tokens leave a bounded tombstone so a replay
 * is told apart from a forgery. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "broker/peer.h"
#include "common/clock.h"
#include "common/token.h"

#define AB_TOKEN_ID_LEN 8           /* short id: hex of the first 4 bytes of the hash */
#define AB_TOKENS_MAX_DEFAULT 65536 /* live tokens at once */
#define AB_TOMBSTONES_MAX 65536     /* revoked/expired hashes remembered */

struct ab_token_grant {
        char *secret;
        unsigned ops; /* AB_OP_* */
};

enum ab_token_state {
        AB_TOKEN_LIVE,
        AB_TOKEN_ENDED,      /* call-end revoked it */
        AB_TOKEN_RUN_CLOSED, /* run-close revoked it */
        AB_TOKEN_EXPIRED,
};

struct ab_token {
        unsigned char hash[32];
        char id[AB_TOKEN_ID_LEN + 1];
        char run[33];
        char *tool;
        uint64_t call;
        struct ab_token_grant *grants;
        size_t n_grants;
        struct ab_peer issuer;          /* the peer that began the call (ends it) */
        struct ab_peer presenter;       /* the process bound to present it (owns its pidfd) */
        uint64_t issued_ms, expires_ms; /* monotonic */
        unsigned uses, max_uses;
        char args_sha256[65];
        struct ab_token *next; /* hash chain */
};

struct ab_token_table;

/* Create a table holding at most max_live tokens. Returns 0, -ENOMEM or -EIO (no randomness). */
int ab_tokens_new(size_t max_live, struct ab_token_table **ret);
/* Free the table and every token (closing their pidfds). Accepts NULL. */
void ab_tokens_free(struct ab_token_table *t);

/* Issue a token for claims tok (allocated by the caller with ab_token_alloc; the table takes
 * ownership on success). Writes the NUL-terminated token string to ret_token.
 * Returns 0, -ENOSPC (table full) or -EIO. */
int ab_tokens_issue(struct ab_token_table *t, struct ab_token *tok, char ret_token[AB_TOKEN_LEN + 1]);

/* Look up a presented token string at monotonic time now_ms. Returns 0 with *ret set,
 * -EBADMSG (malformed), -ENOENT (never issued: forged), -ESTALE (revoked by call-end),
 * -EPIPE (revoked by run-close), -ETIME (expired). A token past its expiry stays in the
 * table (so its call can still be ended) until reaped: then -ETIME is returned with *ret
 * set as well; after reaping, -ETIME with *ret untouched. */
int ab_tokens_lookup(struct ab_token_table *t, const char *token, uint64_t now_ms, struct ab_token **ret);

/* Revoke: remove from the table, remember the hash with the reason, free the token. */
void ab_tokens_revoke(struct ab_token_table *t, struct ab_token *tok, enum ab_token_state why);
/* Revoke every live token of run. Returns how many. */
size_t ab_tokens_revoke_run(struct ab_token_table *t, const char *run);
#define AB_TOKEN_REAP_GRACE_MS (600 * 1000) /* how long an expired token's call may still end */
/* Reap tokens expired more than AB_TOKEN_REAP_GRACE_MS ago into the tombstones, calling
 * on_reap (may be NULL) for each before it is freed. Returns how many. */
size_t ab_tokens_expire(struct ab_token_table *t, uint64_t now_ms,
                        void (*on_reap)(const struct ab_token *, void *), void *userdata);

size_t ab_tokens_count(const struct ab_token_table *t);
/* Iterate live tokens: call fn for each; stop early when fn returns non-zero. */
void ab_tokens_foreach(struct ab_token_table *t, int (*fn)(const struct ab_token *, void *), void *userdata);

/* Allocate an empty token (zeroed, pidfds -1). Returns NULL on OOM. */
struct ab_token *ab_token_alloc(void);
/* Free a token not (or no longer) in a table. Accepts NULL. */
void ab_token_free(struct ab_token *tok);
/* Add a grant to a token. Returns 0 or -ENOMEM. */
int ab_token_add_grant(struct ab_token *tok, const char *secret, unsigned ops);
/* The operations tok grants on secret (0 = none). */
unsigned ab_token_grant_ops(const struct ab_token *tok, const char *secret);
