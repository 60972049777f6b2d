/* SPDX-License-Identifier: MIT */
/* Unit tests for broker/secrets.c and broker/jwt.c: the source checks (owner, mode,
 * symlink, size), environment and credential sources, HMAC-SHA256 (RFC 4231), Ed25519
 * (RFC 8032 test 1) from raw, hex and PEM keys, minted JWTs and the JWKS file. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "broker/secrets.h"
#include "common/encode.h"

extern char **environ;

#define SECRET_VALUE "s3cret-value-do-not-print"

/* RFC 8032 section 7.1, TEST 1 */
static const char rfc8032_seed_hex[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc8032_pub_hex[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char rfc8032_sig_hex[] = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
                                      "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
/* base64url of the public key above */
static const char rfc8032_pub_b64url[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

static char tmpdir[64];

static int
setup(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_secrets.XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        unsetenv("CREDENTIALS_DIRECTORY");
        return 0;
}

static int
teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static void
unhex(const char *hex, unsigned char *out, size_t n)
{
        assert_int_equal(ab_hex_decode_buf(hex, strlen(hex), out, n), 0);
}

/* Create dir/name with exactly len bytes of content and the exact mode; returns the path
 * (static storage, valid until the next call). */
static const char *
write_file(const char *dir, const char *name, const void *content, size_t len, mode_t mode)
{
        static char path[256];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, len), (ssize_t)len);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
        return path;
}

/* Load a store holding the one secret (name "s") described by source, ref and type. */
static struct ab_secret_store *
load_one(enum ab_secret_source source, const char *ref, enum ab_secret_type type, uid_t owner)
{
        struct ab_policy_secret ps = {
                .name = "s",
                .source = source,
                .ref = (char *)ref,
                .type = type,
        };
        struct ab_policy p = { .secrets = &ps, .n_secrets = 1 };
        struct ab_secret_store *st = NULL;

        assert_int_equal(ab_secrets_load(&p, owner, &st), 0);
        assert_non_null(st);
        assert_int_equal(ab_secrets_count(st), 1);
        assert_string_equal(ab_secrets_at(st, 0)->name, "s");
        return st;
}

/* Load a file source and check it is refused with a reason containing want (and never the
 * secret value). */
static void
expect_file_refused(const char *path, uid_t owner, const char *want)
{
        struct ab_secret_store *st = load_one(AB_SRC_FILE, path, AB_SECRET_BYTES, owner);
        const struct ab_secret *s = ab_secrets_find(st, "s");
        unsigned char mac[32];

        assert_non_null(s);
        assert_false(s->available);
        assert_null(s->value);
        assert_non_null(s->unavailable_reason);
        if (!strstr(s->unavailable_reason, want))
                fail_msg("reason '%s' does not contain '%s'", s->unavailable_reason, want);
        assert_null(strstr(s->unavailable_reason, SECRET_VALUE));
        assert_int_equal(ab_secret_hmac_sha256(s, "x", 1, mac), -EINVAL);
        ab_secrets_free(st);
}

static void
test_file_modes(void **state)
{
        const char *path;
        char want[128];
        struct ab_secret_store *st;
        const struct ab_secret *s;

        /* 0600 and 0400 load; exactly one trailing newline is removed */
        path = write_file(tmpdir, "ok", SECRET_VALUE "\n\n", strlen(SECRET_VALUE) + 2, 0600);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_BYTES, geteuid());
        s = ab_secrets_find(st, "s");
        assert_true(s->available);
        assert_null(s->unavailable_reason);
        assert_int_equal(s->value->len, strlen(SECRET_VALUE) + 1);
        assert_memory_equal(s->value->data, SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1);
        ab_secrets_free(st);

        path = write_file(tmpdir, "ok", SECRET_VALUE, strlen(SECRET_VALUE), 0400);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_BYTES, geteuid());
        s = ab_secrets_find(st, "s");
        assert_true(s->available);
        assert_int_equal(s->value->len, strlen(SECRET_VALUE));
        assert_memory_equal(s->value->data, SECRET_VALUE, strlen(SECRET_VALUE));
        ab_secrets_free(st);

        static const mode_t bad[] = { 0644, 0640, 0604, 0660, 0700, 0200, 0440, 04600 };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                path = write_file(tmpdir, "bad", SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1, bad[i]);
                snprintf(want, sizeof(want), "has mode %04o", (unsigned)bad[i]);
                expect_file_refused(path, geteuid(), want);
        }
}

static void
test_file_wrong_owner(void **state)
{
        const char *path = write_file(tmpdir, "owned", SECRET_VALUE, strlen(SECRET_VALUE), 0600);
        char want[128];

        snprintf(want, sizeof(want), "is owned by uid %u, expected uid %u", (unsigned)geteuid(),
                 (unsigned)geteuid() + 1000);
        expect_file_refused(path, geteuid() + 1000, want);
}

static void
test_file_symlink_size_type(void **state)
{
        char link[256], big_path[256];
        const char *path = write_file(tmpdir, "target", SECRET_VALUE, strlen(SECRET_VALUE), 0600);
        char *big;

        snprintf(link, sizeof(link), "%s/link", tmpdir);
        assert_int_equal(symlink(path, link), 0);
        expect_file_refused(link, geteuid(), "is a symbolic link");

        big = malloc(AB_SECRET_MAX + 1);
        assert_non_null(big);
        memset(big, 'A', AB_SECRET_MAX + 1);
        snprintf(big_path, sizeof(big_path), "%s", write_file(tmpdir, "big", big, AB_SECRET_MAX + 1, 0600));
        expect_file_refused(big_path, geteuid(), "is too large (65537 bytes");
        /* exactly the maximum is fine */
        write_file(tmpdir, "big", big, AB_SECRET_MAX, 0600);
        struct ab_secret_store *st = load_one(AB_SRC_FILE, big_path, AB_SECRET_BYTES, geteuid());
        assert_true(ab_secrets_at(st, 0)->available);
        assert_int_equal(ab_secrets_at(st, 0)->value->len, AB_SECRET_MAX);
        ab_secrets_free(st);
        free(big);

        expect_file_refused(tmpdir, geteuid(), "is not a regular file");
        expect_file_refused("relative/path", geteuid(), "is not absolute");
        expect_file_refused("/nonexistent/secret", geteuid(), "does not exist");
        write_file(tmpdir, "empty", "\n", 1, 0600);
        snprintf(big_path, sizeof(big_path), "%s/empty", tmpdir);
        expect_file_refused(big_path, geteuid(), "empty");
}

/* The refusal is logged with the secret's name and reason, never the value. */
static void
test_refusal_logged_without_value(void **state)
{
        const char *path = write_file(tmpdir, "loud", SECRET_VALUE, strlen(SECRET_VALUE), 0644);
        char logpath[256], buf[4096];
        int saved, fd;
        ssize_t n;

        snprintf(logpath, sizeof(logpath), "%s/stderr.log", tmpdir);
        fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        saved = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        ab_secrets_free(load_one(AB_SRC_FILE, path, AB_SECRET_BYTES, geteuid()));
        dup2(saved, STDERR_FILENO);
        close(saved);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        assert_true(n > 0);
        buf[n] = '\0';
        if (!strstr(buf, "warning: secret 's' unavailable: file '") || !strstr(buf, "has mode 0644"))
                fail_msg("unexpected log: %s", buf);
        assert_null(strstr(buf, SECRET_VALUE));
}

static void
test_env(void **state)
{
        struct ab_secret_store *st;
        const struct ab_secret *s;

        assert_int_equal(setenv("AB_TEST_SECRET", SECRET_VALUE "\n", 1), 0);
        char *orig = getenv("AB_TEST_SECRET");
        assert_non_null(orig);
        st = load_one(AB_SRC_ENV, "AB_TEST_SECRET", AB_SECRET_BYTES, geteuid());
        s = ab_secrets_find(st, "s");
        assert_true(s->available);
        /* environment values are taken as they are (no newline stripping) */
        assert_int_equal(s->value->len, strlen(SECRET_VALUE) + 1);
        assert_memory_equal(s->value->data, SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1);
        assert_null(getenv("AB_TEST_SECRET"));
        for (char **e = environ; *e; e++) {
                assert_null(strstr(*e, "AB_TEST_SECRET"));
                assert_null(strstr(*e, SECRET_VALUE));
        }
        ab_secrets_free(st);

        /* a second load finds it gone */
        st = load_one(AB_SRC_ENV, "AB_TEST_SECRET", AB_SECRET_BYTES, geteuid());
        s = ab_secrets_at(st, 0);
        assert_false(s->available);
        assert_string_equal(s->unavailable_reason, "environment variable 'AB_TEST_SECRET' is not set");
        ab_secrets_free(st);
}

static void
test_credentials(void **state)
{
        char credir[128];
        struct ab_secret_store *st;
        const struct ab_secret *s;

        /* no CREDENTIALS_DIRECTORY */
        st = load_one(AB_SRC_CREDENTIAL, "api-key", AB_SECRET_BYTES, geteuid());
        s = ab_secrets_at(st, 0);
        assert_false(s->available);
        assert_non_null(strstr(s->unavailable_reason, "no credentials directory"));
        assert_non_null(strstr(s->unavailable_reason, "--credentials-dir"));
        ab_secrets_free(st);

        snprintf(credir, sizeof(credir), "%s/creds", tmpdir);
        assert_int_equal(mkdir(credir, 0500), 0);
        assert_int_equal(setenv("CREDENTIALS_DIRECTORY", credir, 1), 0);
        assert_int_equal(chmod(credir, 0700), 0);
        write_file(credir, "api-key", SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1, 0400);
        write_file(credir, "acl-key", "k2", 2, 0440);
        write_file(credir, "world", SECRET_VALUE, strlen(SECRET_VALUE), 0444);

        st = load_one(AB_SRC_CREDENTIAL, "api-key", AB_SECRET_BYTES, geteuid());
        s = ab_secrets_at(st, 0);
        assert_true(s->available);
        assert_int_equal(s->value->len, strlen(SECRET_VALUE));
        assert_memory_equal(s->value->data, SECRET_VALUE, strlen(SECRET_VALUE));
        ab_secrets_free(st);

        st = load_one(AB_SRC_CREDENTIAL, "acl-key", AB_SECRET_BYTES, geteuid());
        assert_true(ab_secrets_at(st, 0)->available);
        ab_secrets_free(st);

        st = load_one(AB_SRC_CREDENTIAL, "world", AB_SECRET_BYTES, geteuid());
        s = ab_secrets_at(st, 0);
        assert_false(s->available);
        assert_non_null(strstr(s->unavailable_reason, "has mode 0444"));
        assert_non_null(strstr(s->unavailable_reason, "credential 'world'"));
        assert_null(strstr(s->unavailable_reason, SECRET_VALUE));
        ab_secrets_free(st);

        /* --credentials-dir wins over $CREDENTIALS_DIRECTORY, with the same names */
        {
                char other[160];
                snprintf(other, sizeof(other), "%s/credstore", tmpdir);
                assert_int_equal(mkdir(other, 0700), 0);
                write_file(other, "agentbroker.api-key", "k3", 2, 0600);
                assert_int_equal(ab_secrets_set_credentials_dir(other), 0);
                st = load_one(AB_SRC_CREDENTIAL, "agentbroker.api-key", AB_SECRET_BYTES, geteuid());
                assert_true(ab_secrets_at(st, 0)->available);
                assert_memory_equal(ab_secrets_at(st, 0)->value->data, "k3", 2);
                ab_secrets_free(st);
                st = load_one(AB_SRC_CREDENTIAL, "api-key", AB_SECRET_BYTES, geteuid());
                assert_false(ab_secrets_at(st, 0)->available);
                assert_non_null(strstr(ab_secrets_at(st, 0)->unavailable_reason, other));
                ab_secrets_free(st);
                assert_int_equal(ab_secrets_set_credentials_dir(NULL), 0);
        }

        st = load_one(AB_SRC_CREDENTIAL, "missing", AB_SECRET_BYTES, geteuid());
        s = ab_secrets_at(st, 0);
        assert_false(s->available);
        assert_non_null(strstr(s->unavailable_reason, "does not exist"));
        ab_secrets_free(st);

        static const char *const bad_names[] = { "../api-key", "a/b", "..", "" };
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                st = load_one(AB_SRC_CREDENTIAL, bad_names[i], AB_SECRET_BYTES, geteuid());
                s = ab_secrets_at(st, 0);
                assert_false(s->available);
                assert_non_null(strstr(s->unavailable_reason, "invalid credential name"));
                ab_secrets_free(st);
        }

        if (geteuid() == 0) {
                /* credentials may be owned by root (systemd writes them); files may not */
                char path[256];
                st = load_one(AB_SRC_CREDENTIAL, "api-key", AB_SECRET_BYTES, 4242);
                assert_true(ab_secrets_at(st, 0)->available);
                ab_secrets_free(st);
                snprintf(path, sizeof(path), "%s/api-key", credir);
                expect_file_refused(path, 4242, "is owned by uid 0, expected uid 4242");
        }
        unsetenv("CREDENTIALS_DIRECTORY");
}

/* RFC 4231 test case 2 */
static void
test_hmac_rfc4231(void **state)
{
        static const char data[] = "what do ya want for nothing?";
        unsigned char want[32], mac[32];
        const char *path = write_file(tmpdir, "jefe", "Jefe\n", 5, 0600);
        struct ab_secret_store *st = load_one(AB_SRC_FILE, path, AB_SECRET_BYTES, geteuid());
        const struct ab_secret *s = ab_secrets_at(st, 0);

        unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want, 32);
        assert_true(s->available);
        assert_int_equal(ab_secret_hmac_sha256(s, data, strlen(data), mac), 0);
        assert_memory_equal(mac, want, 32);
        /* repeatable (the fetched HMAC is reused) */
        memset(mac, 0, sizeof(mac));
        assert_int_equal(ab_secret_hmac_sha256(s, data, strlen(data), mac), 0);
        assert_memory_equal(mac, want, 32);
        /* a bytes secret cannot sign with Ed25519 */
        unsigned char sig[64];
        assert_int_equal(ab_secret_ed25519_sign(s, "x", 1, sig), -EINVAL);
        ab_secrets_free(st);
}

/* Check a loaded RFC 8032 test 1 key: kid, signature of the empty message, and that the
 * signature of another message verifies with the public key. */
static void
check_rfc8032_key(const struct ab_secret *s)
{
        unsigned char pub[32], want_sig[64], sig[64], md[32];
        char kid[24];
        EVP_PKEY *pk;
        EVP_MD_CTX *ctx;

        assert_true(s->available);
        assert_non_null(s->pkey);
        /* The seed is kept in locked memory; the EVP_PKEY holds only the public key. */
        assert_non_null(s->value);
        assert_int_equal(s->value->len, 32);
        {
                unsigned char raw[64];
                size_t rawlen = sizeof(raw);
                assert_int_equal(EVP_PKEY_get_raw_private_key(s->pkey, raw, &rawlen), 0);
                ERR_clear_error();
        }
        unhex(rfc8032_pub_hex, pub, 32);
        unhex(rfc8032_sig_hex, want_sig, 64);
        assert_int_equal(EVP_Digest(pub, 32, md, NULL, EVP_sha256(), NULL), 1);
        ab_base64url_encode_buf(md, 16, kid);
        assert_string_equal(s->kid, kid);
        assert_int_equal(strlen(s->kid), 22);

        assert_int_equal(ab_secret_ed25519_sign(s, "", 0, sig), 0);
        assert_memory_equal(sig, want_sig, 64);

        assert_int_equal(ab_secret_ed25519_sign(s, "hello", 5, sig), 0);
        pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
        assert_non_null(pk);
        ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk), 1);
        assert_int_equal(EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)"hello", 5), 1);
        EVP_MD_CTX_free(ctx);
        /* and not for another message */
        ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk), 1);
        assert_int_not_equal(EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)"hellO", 5), 1);
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pk);

        unsigned char mac[32];
        assert_int_equal(ab_secret_hmac_sha256(s, "x", 1, mac), -EINVAL);
}

/* The RFC 8032 test 1 key as PKCS#8 PEM (RFC 8410 section 7 prefix + seed). */
static char *
rfc8032_pem(void)
{
        unsigned char der[48];
        char *b64 = NULL, *pem = NULL;

        unhex("302e020100300506032b657004220420", der, 16);
        unhex(rfc8032_seed_hex, der + 16, 32);
        assert_int_equal(ab_base64_encode(der, sizeof(der), &b64), 0);
        assert_true(asprintf(&pem, "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n", b64) > 0);
        free(b64);
        return pem;
}

static void
test_ed25519_sources(void **state)
{
        unsigned char seed[32];
        struct ab_secret_store *st;
        const char *path;
        char *pem = rfc8032_pem();

        unhex(rfc8032_seed_hex, seed, 32);

        path = write_file(tmpdir, "raw", seed, 32, 0600);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_ED25519, geteuid());
        check_rfc8032_key(ab_secrets_at(st, 0));
        ab_secrets_free(st);

        path = write_file(tmpdir, "hex", rfc8032_seed_hex, 64, 0600);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_ED25519, geteuid());
        check_rfc8032_key(ab_secrets_at(st, 0));
        ab_secrets_free(st);

        path = write_file(tmpdir, "pem", pem, strlen(pem), 0400);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_ED25519, geteuid());
        check_rfc8032_key(ab_secrets_at(st, 0));
        ab_secrets_free(st);

        assert_int_equal(setenv("AB_TEST_ED25519", rfc8032_seed_hex, 1), 0);
        st = load_one(AB_SRC_ENV, "AB_TEST_ED25519", AB_SECRET_ED25519, geteuid());
        check_rfc8032_key(ab_secrets_at(st, 0));
        assert_null(getenv("AB_TEST_ED25519"));
        ab_secrets_free(st);

        /* not a key: refused with a reason, never the content */
        path = write_file(tmpdir, "junk", "not-a-key-" SECRET_VALUE, strlen(SECRET_VALUE) + 10, 0600);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_ED25519, geteuid());
        assert_false(ab_secrets_at(st, 0)->available);
        assert_null(ab_secrets_at(st, 0)->pkey);
        assert_non_null(strstr(ab_secrets_at(st, 0)->unavailable_reason, "holds no Ed25519 key"));
        assert_null(strstr(ab_secrets_at(st, 0)->unavailable_reason, SECRET_VALUE));
        ab_secrets_free(st);

        pem[40] ^= 1; /* corrupt the base64 body */
        path = write_file(tmpdir, "badpem", pem, strlen(pem), 0600);
        st = load_one(AB_SRC_FILE, path, AB_SECRET_ED25519, geteuid());
        assert_false(ab_secrets_at(st, 0)->available);
        assert_non_null(strstr(ab_secrets_at(st, 0)->unavailable_reason, "PEM"));
        ab_secrets_free(st);
        free(pem);
}

/* Split a JWT and decode its JSON part i (0 header, 1 payload). */
static cJSON *
jwt_part(const char *jwt, int i)
{
        const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        char part[1024];
        unsigned char *dec = NULL;
        size_t n = 0;
        cJSON *j;

        assert_non_null(dot2);
        assert_null(strchr(dot2 + 1, '.'));
        if (i == 0)
                snprintf(part, sizeof(part), "%.*s", (int)(dot1 - jwt), jwt);
        else
                snprintf(part, sizeof(part), "%.*s", (int)(dot2 - dot1 - 1), dot1 + 1);
        assert_int_equal(ab_base64url_decode(part, &dec, &n), 0);
        j = cJSON_ParseWithLength((const char *)dec, n);
        free(dec);
        assert_non_null(j);
        return j;
}

static void
assert_member(const cJSON *o, const char *k, const char *v)
{
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, k);
        if (!cJSON_IsString(m) || strcmp(m->valuestring, v) != 0)
                fail_msg("member %s is not \"%s\"", k, v);
}

static void
test_jwt_mint(void **state)
{
        unsigned char seed[32], pub[32], *sig = NULL;
        size_t siglen = 0;
        char *jwt = NULL;
        struct ab_secret_store *st;
        const struct ab_secret *s;
        cJSON *h, *p;

        unhex(rfc8032_seed_hex, seed, 32);
        unhex(rfc8032_pub_hex, pub, 32);
        st = load_one(AB_SRC_FILE, write_file(tmpdir, "jwtkey", seed, 32, 0600), AB_SECRET_ED25519,
                      geteuid());
        s = ab_secrets_at(st, 0);

        struct ab_jwt_claims c = {
                .issuer = "agentbroker",
                .subject = "run-7",
                .audience = "https://api.internal",
                .scope = "read:orders",
                .run = "run-7",
                .tool = "orders.lookup",
                .iat = 1700000000,
                .exp = 1700000060,
                .jti = "c2a1f0",
        };
        assert_int_equal(ab_jwt_mint(s, &c, &jwt), 0);

        h = jwt_part(jwt, 0);
        assert_int_equal(cJSON_GetArraySize(h), 3);
        assert_member(h, "alg", "EdDSA");
        assert_member(h, "typ", "JWT");
        assert_member(h, "kid", s->kid);
        cJSON_Delete(h);

        p = jwt_part(jwt, 1);
        assert_int_equal(cJSON_GetArraySize(p), 9);
        assert_member(p, "iss", "agentbroker");
        assert_member(p, "sub", "run-7");
        assert_member(p, "aud", "https://api.internal");
        assert_member(p, "scope", "read:orders");
        assert_member(p, "jti", "c2a1f0");
        assert_member(p, "run", "run-7");
        assert_member(p, "tool", "orders.lookup");
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "iat")) == 1700000000.0);
        assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "exp")) == 1700000060.0);
        cJSON_Delete(p);

        /* the signature verifies over "header.payload" with the public key */
        const char *last = strrchr(jwt, '.');
        assert_int_equal(ab_base64url_decode(last + 1, &sig, &siglen), 0);
        assert_int_equal(siglen, 64);
        EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk), 1);
        assert_int_equal(EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)jwt, (size_t)(last - jwt)),
                         1);
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pk);
        free(sig);
        free(jwt);

        /* optional claims left out */
        c.scope = c.run = c.tool = NULL;
        assert_int_equal(ab_jwt_mint(s, &c, &jwt), 0);
        p = jwt_part(jwt, 1);
        assert_int_equal(cJSON_GetArraySize(p), 6);
        assert_null(cJSON_GetObjectItem(p, "scope"));
        assert_null(cJSON_GetObjectItem(p, "run"));
        assert_null(cJSON_GetObjectItem(p, "tool"));
        cJSON_Delete(p);
        free(jwt);

        /* invalid requests */
        jwt = NULL;
        c.exp = c.iat - 1;
        assert_int_equal(ab_jwt_mint(s, &c, &jwt), -EINVAL);
        c.exp = c.iat + 60;
        c.audience = NULL;
        assert_int_equal(ab_jwt_mint(s, &c, &jwt), -EINVAL);
        assert_null(jwt);
        ab_secrets_free(st);

        c.audience = "x";
        st = load_one(AB_SRC_FILE, write_file(tmpdir, "bytes", "k", 1, 0600), AB_SECRET_BYTES, geteuid());
        assert_int_equal(ab_jwt_mint(ab_secrets_at(st, 0), &c, &jwt), -EINVAL);
        ab_secrets_free(st);
}

static void
test_jwks(void **state)
{
        unsigned char seed[32];
        char keypath[256], jwkspath[256], buf[4096];
        struct stat sb;
        mode_t old_umask;
        FILE *f;
        size_t n;

        unhex(rfc8032_seed_hex, seed, 32);
        snprintf(keypath, sizeof(keypath), "%s", write_file(tmpdir, "jwkskey", seed, 32, 0600));
        struct ab_policy_secret ps[] = {
                { .name = "hmac", .source = AB_SRC_FILE, .ref = keypath, .type = AB_SECRET_BYTES },
                { .name = "signer", .source = AB_SRC_FILE, .ref = keypath, .type = AB_SECRET_ED25519 },
                { .name = "gone", .source = AB_SRC_FILE, .ref = "/nonexistent", .type = AB_SECRET_ED25519 },
        };
        struct ab_policy p = { .secrets = ps, .n_secrets = 3 };
        struct ab_secret_store *st = NULL;

        assert_int_equal(ab_secrets_load(&p, geteuid(), &st), 0);
        assert_int_equal(ab_secrets_count(st), 3);
        assert_true(ab_secrets_find(st, "hmac")->available);
        assert_true(ab_secrets_find(st, "signer")->available);
        assert_false(ab_secrets_find(st, "gone")->available);
        assert_null(ab_secrets_find(st, "nope"));
        assert_null(ab_secrets_at(st, 3));

        snprintf(jwkspath, sizeof(jwkspath), "%s/jwks", tmpdir);
        assert_int_equal(mkdir(jwkspath, 0755), 0);
        snprintf(jwkspath, sizeof(jwkspath), "%s/jwks/jwks.json", tmpdir);
        old_umask = umask(077);
        assert_int_equal(ab_jwks_write(st, jwkspath), 0);
        assert_int_equal(ab_jwks_write(st, jwkspath), 0); /* replaces it */
        umask(old_umask);

        assert_int_equal(stat(jwkspath, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0644);
        f = fopen(jwkspath, "re");
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';

        cJSON *doc = cJSON_Parse(buf);
        assert_non_null(doc);
        cJSON *keys = cJSON_GetObjectItem(doc, "keys");
        assert_true(cJSON_IsArray(keys));
        assert_int_equal(cJSON_GetArraySize(keys), 1);
        cJSON *k = cJSON_GetArrayItem(keys, 0);
        assert_member(k, "kty", "OKP");
        assert_member(k, "crv", "Ed25519");
        assert_member(k, "x", rfc8032_pub_b64url);
        assert_member(k, "kid", ab_secrets_find(st, "signer")->kid);
        assert_member(k, "use", "sig");
        assert_member(k, "alg", "EdDSA");
        assert_null(cJSON_GetObjectItem(k, "d"));
        cJSON_Delete(doc);

        /* no temporary file is left behind */
        snprintf(buf, sizeof(buf), "test $(ls -A '%s/jwks' | wc -l) -eq 1", tmpdir);
        assert_int_equal(system(buf), 0);
        /* an unwritable destination is an error, not a crash */
        assert_true(ab_jwks_write(st, "/nonexistent-dir/jwks.json") < 0);
        ab_secrets_free(st);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_file_modes),
                cmocka_unit_test(test_file_wrong_owner),
                cmocka_unit_test(test_file_symlink_size_type),
                cmocka_unit_test(test_refusal_logged_without_value),
                cmocka_unit_test(test_env),
                cmocka_unit_test(test_credentials),
                cmocka_unit_test(test_hmac_rfc4231),
                cmocka_unit_test(test_ed25519_sources),
                cmocka_unit_test(test_jwt_mint),
                cmocka_unit_test(test_jwks),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
