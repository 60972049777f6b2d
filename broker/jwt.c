/* SPDX-License-Identifier: MIT */
/* EdDSA JWTs (RFC 7519 / RFC 8037) minted with the broker's Ed25519 secrets, and the JWKS
 * document (RFC 7517) that publishes their public keys. JSON is built with cJSON. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/buffer.h>

#include "broker/secrets.h"
#include "common/encode.h"
#include "common/json_cleanup.h"
#include "common/limits.h"
#include "common/macros.h"

#define ED25519_PUB_LEN 32
#define ED25519_SIG_LEN 64

/* Add a string member; returns false when out of memory. */
static bool
add_str(cJSON *o, const char *k, const char *v)
{
        return cJSON_AddStringToObject(o, k, v) != NULL;
}

/* Serialize the JOSE header and the claims set of a token. Returns 0, -ENOMEM. */
static int
jwt_json(const struct ab_secret *s, const struct ab_jwt_claims *c, char **ret_header, char **ret_payload)
{
        _cleanup_cjson_ cJSON *h = cJSON_CreateObject(), *p = cJSON_CreateObject();
        char *hs, *ps;

        if (!h || !p)
                return -ENOMEM;
        if (!add_str(h, "alg", "EdDSA") || !add_str(h, "typ", c->tunnel_dial ? AB_JWT_TYP_DIAL : "JWT") ||
            !add_str(h, "kid", s->kid))
                return -ENOMEM;
        if (!add_str(p, "iss", c->issuer) || !add_str(p, "sub", c->subject) ||
            !add_str(p, "aud", c->audience) || (c->scope && !add_str(p, "scope", c->scope)) ||
            !cJSON_AddNumberToObject(p, "iat", (double)c->iat) ||
            !cJSON_AddNumberToObject(p, "exp", (double)c->exp) || !add_str(p, "jti", c->jti) ||
            (c->run && !add_str(p, "run", c->run)) || (c->tool && !add_str(p, "tool", c->tool)) ||
            (c->sid && !add_str(p, "sid", c->sid)))
                return -ENOMEM;
        hs = cJSON_PrintUnformatted(h);
        ps = cJSON_PrintUnformatted(p);
        if (!hs || !ps) {
                free(hs);
                free(ps);
                return -ENOMEM;
        }
        *ret_header = hs;
        *ret_payload = ps;
        return 0;
}

int
ab_jwt_mint(const struct ab_secret *s, const struct ab_jwt_claims *c, char **ret_jwt)
{
        _cleanup_free_ char *hjson = NULL, *pjson = NULL;
        unsigned char sig[ED25519_SIG_LEN];
        size_t hl, pl, total;
        char *jwt;
        int r;

        if (!s || !c || !s->available || s->type != AB_SECRET_ED25519 || !s->pkey || !c->issuer ||
            !c->subject || !c->audience || !c->jti || c->exp < c->iat || c->exp > AB_JSON_INT_MAX ||
            (c->tunnel_dial && c->tool))
                return -EINVAL;
        r = jwt_json(s, c, &hjson, &pjson);
        if (r < 0)
                return r;

        hl = ab_base64url_len(strlen(hjson));
        pl = ab_base64url_len(strlen(pjson));
        total = hl + 1 + pl + 1 + ab_base64url_len(ED25519_SIG_LEN) + 1;
        jwt = malloc(total);
        if (!jwt)
                return -ENOMEM;
        ab_base64url_encode_buf(hjson, strlen(hjson), jwt);
        jwt[hl] = '.';
        ab_base64url_encode_buf(pjson, strlen(pjson), jwt + hl + 1);
        r = ab_secret_ed25519_sign(s, jwt, hl + 1 + pl, sig);
        if (r < 0) {
                free(jwt);
                return r;
        }
        jwt[hl + 1 + pl] = '.';
        ab_base64url_encode_buf(sig, sizeof(sig), jwt + hl + 1 + pl + 1);
        *ret_jwt = jwt;
        return 0;
}

int
ab_jwk_public(const struct ab_secret *s, cJSON **ret_jwk, char **ret_pem)
{
        unsigned char pub[ED25519_PUB_LEN];
        char xs[ab_base64url_len(ED25519_PUB_LEN) + 1];
        size_t publen = sizeof(pub);
        _cleanup_cjson_ cJSON *k = NULL;
        BIO *bio = NULL;
        BUF_MEM *mem = NULL;
        char *pem;

        if (!s || !s->available || s->type != AB_SECRET_ED25519 || !s->pkey)
                return -EINVAL;
        if (EVP_PKEY_get_raw_public_key(s->pkey, pub, &publen) != 1 || publen != sizeof(pub)) {
                ERR_clear_error();
                return -EIO;
        }
        ab_base64url_encode_buf(pub, publen, xs);
        k = cJSON_CreateObject();
        if (!k || !add_str(k, "kty", "OKP") || !add_str(k, "crv", "Ed25519") || !add_str(k, "x", xs) ||
            !add_str(k, "kid", s->kid) || !add_str(k, "use", "sig") || !add_str(k, "alg", "EdDSA"))
                return -ENOMEM;
        bio = BIO_new(BIO_s_mem());
        if (!bio)
                return -ENOMEM;
        if (PEM_write_bio_PUBKEY(bio, s->pkey) != 1) {
                BIO_free(bio);
                ERR_clear_error();
                return -EIO;
        }
        BIO_get_mem_ptr(bio, &mem);
        /* The memory BIO's buffer is not NUL-terminated: copy exactly its length. */
        pem = mem ? malloc(mem->length + 1) : NULL;
        if (pem) {
                memcpy(pem, mem->data, mem->length);
                pem[mem->length] = '\0';
        }
        BIO_free(bio);
        if (!pem)
                return -ENOMEM;
        *ret_jwk = AB_TAKE_PTR(k);
        *ret_pem = pem;
        return 0;
}

/* The JWKS document for every available Ed25519 secret of s, as a new string.
 * Returns 0, -ENOMEM or -EIO. */
static int
jwks_json(const struct ab_secret_store *s, char **ret)
{
        _cleanup_cjson_ cJSON *doc = cJSON_CreateObject();
        cJSON *keys;
        char *out;

        if (!doc || !(keys = cJSON_AddArrayToObject(doc, "keys")))
                return -ENOMEM;
        for (size_t i = 0; i < ab_secrets_count(s); i++) {
                const struct ab_secret *x = ab_secrets_at(s, i);
                unsigned char pub[ED25519_PUB_LEN];
                char xs[ab_base64url_len(ED25519_PUB_LEN) + 1];
                size_t publen = sizeof(pub);
                cJSON *k;

                if (!x->available || x->type != AB_SECRET_ED25519 || !x->pkey)
                        continue;
                if (EVP_PKEY_get_raw_public_key(x->pkey, pub, &publen) != 1 || publen != sizeof(pub)) {
                        ERR_clear_error();
                        return -EIO;
                }
                ab_base64url_encode_buf(pub, publen, xs);
                k = cJSON_CreateObject();
                if (!k)
                        return -ENOMEM;
                if (!cJSON_AddItemToArray(keys, k)) {
                        cJSON_Delete(k);
                        return -ENOMEM;
                }
                if (!add_str(k, "kty", "OKP") || !add_str(k, "crv", "Ed25519") || !add_str(k, "x", xs) ||
                    !add_str(k, "kid", x->kid) || !add_str(k, "use", "sig") || !add_str(k, "alg", "EdDSA"))
                        return -ENOMEM;
        }
        out = cJSON_PrintUnformatted(doc);
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

/* Write all of n bytes to fd. Returns 0 or -errno. */
static int
write_full(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Replace path with content atomically: a temporary file in the same directory, mode
 * 0644, written and fsync'd, renamed over path; the directory is fsync'd afterwards
 * (best effort). Returns 0 or -errno. */
static int
write_file_atomic(const char *path, const char *content)
{
        _cleanup_free_ char *tmp = NULL, *dir = NULL;
        _cleanup_close_ int fd = -1;
        int r = 0;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0644) < 0 || (r = write_full(fd, content, strlen(content))) < 0 ||
            (r = write_full(fd, "\n", 1)) < 0 || fsync(fd) < 0) {
                r = r < 0 ? r : -errno;
                goto fail;
        }
        if (close(AB_TAKE_FD(fd)) < 0 || rename(tmp, path) < 0) {
                r = -errno;
                goto fail;
        }
        dir = strdup(path);
        if (dir) {
                int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0) {
                        (void)fsync(dfd);
                        close(dfd);
                }
        }
        return 0;
fail:
        (void)unlink(tmp);
        return r;
}

int
ab_jwks_write(const struct ab_secret_store *s, const char *path)
{
        _cleanup_free_ char *json = NULL;
        int r;

        if (!path || !*path)
                return -EINVAL;
        r = jwks_json(s, &json);
        if (r < 0)
                return r;
        return write_file_atomic(path, json);
}
