/* SPDX-License-Identifier: MIT */
/* The broker's secret store: loads the secrets policy names into locked memory and performs
 * the operations that never hand the key out (HMAC-SHA256, Ed25519, EdDSA JWT). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "policy/policy.h"
#include "common/secmem.h"

#define AB_SECRET_MAX (64 * 1024) /* largest secret accepted from any source */

struct ab_secret {
        char *name;
        enum ab_secret_type type;
        bool available;           /* false: source missing or invalid; uses are denied */
        char *unavailable_reason; /* why, never containing the value */
        struct ab_secbuf *value;  /* the bytes (AB_SECRET_BYTES) or the 32-byte seed (AB_SECRET_ED25519) */
        void *pkey;               /* EVP_PKEY * of the PUBLIC key only (AB_SECRET_ED25519) */
        char kid[24];             /* ED25519: key id (base64url of SHA-256(pub)[0..15]) */
        enum ab_secret_source source; /* where it came from */
        char *source_ref;             /* credential name, path or variable name */
};

struct ab_secret_store;

/* Read `credential:` sources from dir instead of $CREDENTIALS_DIRECTORY (agentbrokerd
 * --credentials-dir, for starts without systemd); NULL goes back to the environment.
 * Returns 0 or -ENOMEM. */
int ab_secrets_set_credentials_dir(const char *dir);

/* Load every secret of p. owner is the uid a secret file must belong to (the broker's euid).
 * Accepted sources (broker/secrets.c explains why):
 *  - file: absolute path, not a symlink, regular, owned by owner, mode 0600 or 0400;
 *  - credential: DIR/<name>, DIR from --credentials-dir, else $CREDENTIALS_DIRECTORY
 *    (no '/' or ".." in name), regular, not a
 *    symlink, owned by owner or root, mode 0600, 0400 or 0440 (systemd: 0400 + ACL);
 *  - env: copied, then wiped in place and unset (so it can be loaded once per process).
 * At most AB_SECRET_MAX bytes; BYTES secrets from files/credentials lose ONE trailing '\n';
 * empty values are refused. ED25519: PEM PKCS#8, 32 raw bytes (seed) or 64 hex characters;
 * the source bytes are wiped and only the EVP_PKEY is kept (value is NULL).
 * A secret whose source is missing or invalid is kept as unavailable, with a log line naming
 * the secret and the reason (never the value); the load still succeeds.
 * Returns 0 or -ENOMEM. */
int ab_secrets_load(const struct ab_policy *p, uid_t owner, struct ab_secret_store **ret);
/* The same, for a reload: an environment secret can be read only once (the variable is
 * wiped and unset when read), so one whose variable is gone takes its value over from the
 * available secret of the same name, type and variable in previous (which loses it).
 * previous may be NULL. Returns 0 or -ENOMEM. */
int ab_secrets_reload(const struct ab_policy *p, uid_t owner, struct ab_secret_store *previous,
                      struct ab_secret_store **ret);
void ab_secrets_free(struct ab_secret_store *s);
const struct ab_secret *ab_secrets_find(const struct ab_secret_store *s, const char *name);
size_t ab_secrets_count(const struct ab_secret_store *s);
const struct ab_secret *ab_secrets_at(const struct ab_secret_store *s, size_t i);

/* HMAC-SHA256 of data keyed with a BYTES secret. Returns 0, -EINVAL (wrong type or
 * unavailable) or -EIO. */
int ab_secret_hmac_sha256(const struct ab_secret *s, const void *data, size_t len,
                          unsigned char ret_mac[32]);
/* Ed25519 signature of data with an ED25519 secret. Returns 0, -EINVAL or -EIO. */
int ab_secret_ed25519_sign(const struct ab_secret *s, const void *data, size_t len,
                           unsigned char ret_sig[64]);

struct ab_jwt_claims {
        const char *issuer;
        const char *subject;
        const char *audience;
        const char *scope; /* may be NULL */
        const char *run;   /* private claim "run", may be NULL */
        const char *tool;  /* private claim "tool", may be NULL */
        uint64_t iat, exp; /* seconds since the epoch */
        const char *jti;   /* unique id */
        const char *sid;   /* private claim "sid" (tunnel session id), may be NULL */
        bool tunnel_dial;  /* a tunnel dial credential: header typ AB_JWT_TYP_DIAL */
};
/* The JOSE typ of tunnel dial JWTs (identity-jwt, docs/tunnel.md). Only identity-jwt sets
 * it; every other JWT (mint-jwt, for tools) has typ "JWT", so a control plane that requires
 * this typ can tell a dial credential from anything a tool can obtain. */
#define AB_JWT_TYP_DIAL "agentbroker-dial+jwt"
/* Mint an EdDSA JWT (header alg=EdDSA, typ=JWT or AB_JWT_TYP_DIAL, kid) signed with an
 * ED25519 secret. A dial JWT carries no tool claim. Returns 0, -EINVAL or -ENOMEM/-EIO. */
int ab_jwt_mint(const struct ab_secret *s, const struct ab_jwt_claims *c, char **ret_jwt);

/* The public key of an available ED25519 secret as a JWK object (kty, crv, x, kid, use, alg)
 * and as a PEM SubjectPublicKeyInfo (new string). Returns 0, -EINVAL, -ENOMEM or -EIO. */
int ab_jwk_public(const struct ab_secret *s, cJSON **ret_jwk, char **ret_pem);

/* Write the public keys of every available ED25519 secret as a JWKS document to path
 * (atomically: temp file + rename, mode 0644). Returns 0 or -errno. */
int ab_jwks_write(const struct ab_secret_store *s, const char *path);
