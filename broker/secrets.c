/* SPDX-License-Identifier: MIT */
/* The broker's secret store: reads every secret the policy names into locked memory (or,
 * for Ed25519 keys, into an OpenSSL key object) and performs HMAC-SHA256 and Ed25519
 * signatures with them. The value of a secret never appears in a log line or a reason.
 *
 * What a source must look like (see also broker/secrets.h):
 *  - file: an absolute path, opened with O_NOFOLLOW (a symbolic link is refused); a regular
 *    file owned by the broker's uid with mode exactly 0600 or 0400.
 *  - credential: DIR/<name>, name without '/' or ".."; DIR is agentbrokerd --credentials-dir,
 *    else $CREDENTIALS_DIRECTORY (systemd). Owner: the broker's
 *    uid or root; mode 0600, 0400 or 0440. systemd writes credentials as root-owned 0400
 *    files and, for a service with User=, grants that user read access with an ACL entry
 *    (whose mask then shows as group bits: 0440) or, without ACL support, chowns the file to
 *    the user. The credentials directory is private to the service (mode 0500, on a
 *    non-swappable ramfs/tmpfs), so these group bits do not widen access. Other-bits and
 *    write bits are always refused.
 *  - env: the variable is copied, then wiped in place and removed from the environment. So
 *    it can be loaded only once per process: a second load (a policy reload) finds it unset
 *    and marks the secret unavailable.
 * Each source is at most AB_SECRET_MAX bytes. For BYTES secrets, exactly one trailing '\n'
 * is removed from file and credential contents (files written with `echo` end in one);
 * environment values are taken as they are. An empty value is refused.
 * ED25519 keys: PEM PKCS#8 ("-----BEGIN PRIVATE KEY-----", not encrypted), exactly 32 raw
 * bytes (the seed; 33 if followed by '\n'), or 64 hex characters (optionally followed by
 * '\n'). The source bytes are wiped once the key object exists. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "broker/secrets.h"
#include "common/encode.h"
#include "common/log.h"
#include "common/secmem.h"

#define ED25519_SEED_LEN 32
#define ED25519_PUB_LEN 32
#define ED25519_SIG_LEN 64
#define KID_HASH_BYTES 16 /* bytes of SHA-256(pub) that form the kid */

struct ab_secret_store {
        struct ab_secret *secrets;
        size_t n;
};

/* Set *ret_reason to a new string saying why a source was refused and return err (a
 * negative errno); -ENOMEM if the string cannot be made. The loaders below return such an
 * err with *ret_reason set for an unusable source, and -ENOMEM without a reason. */
static int refuse(char **ret_reason, int err, const char *fmt, ...) AB_PRINTF(3, 4);
static int
refuse(char **ret_reason, int err, const char *fmt, ...)
{
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        *ret_reason = s;
        return err;
}

/* Read a regular file that passed the checks from fd into a new secure buffer of exactly
 * size bytes (or fewer if the file shrank meanwhile). Returns 0, -ENOMEM, or -EIO with a
 * reason (read error, or the file grew past its checked size). */
static int
read_fd_secure(int fd, const char *label, size_t size, struct ab_secbuf **ret, char **ret_reason)
{
        _cleanup_(ab_secbuf_freep) struct ab_secbuf *b = NULL;
        size_t got = 0;
        unsigned char extra;
        ssize_t k;
        int r;

        r = ab_secbuf_new(size, &b);
        if (r < 0)
                return r;
        while (got < size) {
                k = read(fd, b->data + got, size - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int e = errno;
                        return refuse(ret_reason, -EIO, "%s cannot be read: %s", label, strerror(e));
                }
                if (k == 0)
                        break;
                got += (size_t)k;
        }
        do
                k = read(fd, &extra, 1);
        while (k < 0 && errno == EINTR);
        ab_wipe(&extra, sizeof(extra));
        if (k != 0)
                return refuse(ret_reason, -EIO, "%s changed while it was read", label);
        b->len = got;
        *ret = AB_TAKE_PTR(b);
        return 0;
}

/* Open path without following a final symbolic link, check it is a regular file of an
 * accepted owner and mode and at most AB_SECRET_MAX bytes, and read it into secure memory.
 * credential selects the rules for systemd credentials (root owner and 0440 allowed).
 * Returns 0, -ENOMEM, or a negative errno with *ret_reason set. */
static int
read_checked_file(const char *label, const char *path, uid_t owner, bool credential, struct ab_secbuf **ret,
                  char **ret_reason)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        mode_t mode;

        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                int e = errno;
                if (e == ELOOP)
                        return refuse(ret_reason, -ELOOP, "%s is a symbolic link (refused)", label);
                if (e == ENOENT)
                        return refuse(ret_reason, -ENOENT, "%s does not exist", label);
                return refuse(ret_reason, -e, "%s cannot be opened: %s", label, strerror(e));
        }
        if (fstat(fd, &st) < 0) {
                int e = errno;
                return refuse(ret_reason, -e, "%s cannot be examined: %s", label, strerror(e));
        }
        if (!S_ISREG(st.st_mode))
                return refuse(ret_reason, -EINVAL, "%s is not a regular file", label);
        if (st.st_uid != owner && !(credential && st.st_uid == 0))
                return refuse(ret_reason, -EPERM, "%s is owned by uid %u, expected uid %u%s", label,
                              (unsigned)st.st_uid, (unsigned)owner, credential ? " or root" : "");
        mode = st.st_mode & 07777;
        if (!(mode == 0600 || mode == 0400 || (credential && mode == 0440)))
                return refuse(ret_reason, -EPERM, "%s has mode %04o, expected %s (no write or other access)",
                              label, (unsigned)mode, credential ? "0600, 0400 or 0440" : "0600 or 0400");
        if (st.st_size > AB_SECRET_MAX)
                return refuse(ret_reason, -EFBIG, "%s is too large (%lld bytes, at most %d)", label,
                              (long long)st.st_size, AB_SECRET_MAX);
        return read_fd_secure(fd, label, (size_t)st.st_size, ret, ret_reason);
}

/* The credentials directory set with --credentials-dir; NULL: $CREDENTIALS_DIRECTORY. */
static char *credentials_dir;

int
ab_secrets_set_credentials_dir(const char *dir)
{
        char *d = NULL;

        if (dir && !(d = strdup(dir)))
                return -ENOMEM;
        free(credentials_dir);
        credentials_dir = d;
        return 0;
}

/* The directory credential sources are read from: --credentials-dir, else
 * $CREDENTIALS_DIRECTORY (systemd), else NULL. */
static const char *
credentials_directory(void)
{
        const char *dir = credentials_dir ? credentials_dir : getenv("CREDENTIALS_DIRECTORY");

        return dir && *dir ? dir : NULL;
}

/* A credential name is one path component: not empty, no '/', no "..". */
static bool
credential_name_valid(const char *name)
{
        return name && *name && !strchr(name, '/') && !strstr(name, "..") && strlen(name) <= 255;
}

/* Copy environment variable name into secure memory, then wipe the environment's copy in
 * place and remove the variable. Returns 0, -ENOMEM, or -ENOENT/-EFBIG with a reason. */
static int
read_env(const char *name, struct ab_secbuf **ret, char **ret_reason)
{
        char *v = getenv(name);
        size_t n;
        int r;

        if (!v)
                return refuse(ret_reason, -ENOENT, "environment variable '%s' is not set", name);
        n = strlen(v);
        if (n > AB_SECRET_MAX)
                r = refuse(ret_reason, -EFBIG,
                           "environment variable '%s' is too large (%zu bytes, at most %d)", name, n,
                           AB_SECRET_MAX);
        else
                r = ab_secbuf_from(v, n, ret);
        ab_wipe(v, n);
        (void)unsetenv(name);
        return r;
}

/* Read the source of ps into a new secure buffer (for BYTES secrets from files, with one
 * trailing newline removed; possibly empty). Returns 0, -ENOMEM, or another -errno with
 * *ret_reason set. */
static int
load_source(const struct ab_policy_secret *ps, uid_t owner, struct ab_secbuf **ret, char **ret_reason)
{
        _cleanup_free_ char *label = NULL, *path = NULL;
        _cleanup_(ab_secbuf_freep) struct ab_secbuf *b = NULL;
        const char *dir;
        int r;

        switch (ps->source) {
        case AB_SRC_CREDENTIAL:
                if (!credential_name_valid(ps->ref))
                        return refuse(ret_reason, -EINVAL, "invalid credential name '%s'",
                                      ps->ref ? ps->ref : "");
                dir = credentials_directory();
                if (!dir)
                        return refuse(ret_reason, -ENOENT,
                                      "no credentials directory (systemd's $CREDENTIALS_DIRECTORY, "
                                      "or agentbrokerd --credentials-dir DIR)");
                if (asprintf(&path, "%s/%s", dir, ps->ref) < 0 ||
                    asprintf(&label, "credential '%s' (%s)", ps->ref, path) < 0)
                        return -ENOMEM;
                r = read_checked_file(label, path, owner, true, &b, ret_reason);
                break;
        case AB_SRC_FILE:
                if (!ps->ref || ps->ref[0] != '/')
                        return refuse(ret_reason, -EINVAL, "file path '%s' is not absolute",
                                      ps->ref ? ps->ref : "");
                if (asprintf(&label, "file '%s'", ps->ref) < 0)
                        return -ENOMEM;
                r = read_checked_file(label, ps->ref, owner, false, &b, ret_reason);
                break;
        case AB_SRC_ENV:
                if (!ps->ref || !*ps->ref || strchr(ps->ref, '='))
                        return refuse(ret_reason, -EINVAL, "invalid environment variable name '%s'",
                                      ps->ref ? ps->ref : "");
                r = read_env(ps->ref, &b, ret_reason);
                break;
        default: return refuse(ret_reason, -EINVAL, "unknown source");
        }
        if (r < 0)
                return r;
        if (ps->type == AB_SECRET_BYTES && ps->source != AB_SRC_ENV && b->len > 0 &&
            b->data[b->len - 1] == '\n') {
                b->data[b->len - 1] = 0;
                b->len--;
        }
        *ret = AB_TAKE_PTR(b);
        return 0;
}

/* OpenSSL passphrase callback: encrypted keys are not supported (and must never prompt). */
/* The DER of an unencrypted Ed25519 PKCS#8 key (RFC 8410) is this fixed 16-byte prefix
 * followed by the 32-byte seed. */
static const unsigned char ed25519_pkcs8_prefix[16] = {
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
};

/* Extract the seed from a PEM "PRIVATE KEY" holding an Ed25519 PKCS#8 key. The base64 body
 * is gathered and decoded (EVP_DecodeBlock: no context object) in OpenSSL's secure heap and
 * wiped. PEM_read_bio_PrivateKey and PEM_read_bio_ex are not used: both decode through an
 * EVP_ENCODE_CTX that OpenSSL frees without wiping, leaving key text in the ordinary heap.
 * Returns 0, -ENOMEM or -EINVAL. */
static int
pem_ed25519_seed(const unsigned char *pem, size_t len, unsigned char seed[ED25519_SEED_LEN])
{
        static const char begin[] = "-----BEGIN PRIVATE KEY-----", end[] = "-----END PRIVATE KEY-----";
        const char *p = (const char *)pem, *stop = p + len, *body, *tail;
        unsigned char *b64 = NULL, *der = NULL;
        size_t n = 0, cap;
        int dlen, r = -EINVAL;

        body = memmem(p, len, begin, sizeof(begin) - 1);
        if (!body)
                return -EINVAL;
        body += sizeof(begin) - 1;
        tail = memmem(body, (size_t)(stop - body), end, sizeof(end) - 1);
        if (!tail)
                return -EINVAL;
        cap = (size_t)(tail - body) + 1;
        b64 = OPENSSL_secure_malloc(cap);
        der = OPENSSL_secure_malloc(cap);
        if (!b64 || !der) {
                r = -ENOMEM;
                goto out;
        }
        for (const char *q = body; q < tail; q++) {
                if (*q == '\n' || *q == '\r' || *q == ' ' || *q == '\t')
                        continue;
                if (*q == ':') /* an RFC 1421 header: encrypted or legacy, not PKCS#8 */
                        goto out;
                b64[n++] = (unsigned char)*q;
        }
        if (n == 0 || n % 4 != 0)
                goto out;
        dlen = EVP_DecodeBlock(der, b64, (int)n);
        if (dlen < 0)
                goto out;
        /* EVP_DecodeBlock counts padding as zero bytes. */
        dlen -= (b64[n - 1] == '=') + (b64[n - 2] == '=');
        if (dlen == (int)(sizeof(ed25519_pkcs8_prefix) + ED25519_SEED_LEN) &&
            memcmp(der, ed25519_pkcs8_prefix, sizeof(ed25519_pkcs8_prefix)) == 0) {
                memcpy(seed, der + sizeof(ed25519_pkcs8_prefix), ED25519_SEED_LEN);
                r = 0;
        }
out:
        OPENSSL_secure_clear_free(b64, cap);
        OPENSSL_secure_clear_free(der, cap);
        return r;
}

/* Build an Ed25519 key from src (PEM PKCS#8, 32 raw bytes, 33 with '\n', or 64 hex
 * characters with an optional '\n'); what names the source in reasons. Returns 0, -ENOMEM,
 * or -EINVAL with a reason. */
static int
parse_ed25519(const struct ab_secbuf *src, const char *what, EVP_PKEY **ret, char **ret_reason)
{
        static const char pem_begin[] = "-----BEGIN ";
        const unsigned char *d = src->data;
        size_t n = src->len;
        unsigned char seed[ED25519_SEED_LEN];
        AB_WIPE_ON_EXIT(seed);
        EVP_PKEY *pkey = NULL;

        if (n == ED25519_SEED_LEN || (n == ED25519_SEED_LEN + 1 && d[n - 1] == '\n')) {
                pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, d, ED25519_SEED_LEN);
        } else if ((n == 2 * ED25519_SEED_LEN || (n == 2 * ED25519_SEED_LEN + 1 && d[n - 1] == '\n')) &&
                   ab_hex_decode_buf((const char *)d, 2 * ED25519_SEED_LEN, seed, sizeof(seed)) == 0) {
                pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
        } else if (n > sizeof(pem_begin) - 1 && memcmp(d, pem_begin, sizeof(pem_begin) - 1) == 0) {
                int r = pem_ed25519_seed(d, n, seed);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return refuse(
                                ret_reason, -EINVAL,
                                "%s holds no unencrypted Ed25519 PEM private key (PKCS#8 \"PRIVATE KEY\")",
                                what);
                pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
        } else {
                return refuse(
                        ret_reason, -EINVAL,
                        "%s holds no Ed25519 key (expected PEM PKCS#8, 32 raw bytes or 64 hex characters)",
                        what);
        }
        if (!pkey) {
                ERR_clear_error();
                return refuse(ret_reason, -EINVAL, "%s: the Ed25519 key cannot be built", what);
        }
        *ret = pkey;
        return 0;
}

/* kid of an Ed25519 key: base64url of the first 16 bytes of SHA-256(raw public key),
 * 22 characters. Returns 0 or -EIO. */
static int
ed25519_kid(EVP_PKEY *pkey, char kid[static 24])
{
        unsigned char pub[ED25519_PUB_LEN], md[EVP_MAX_MD_SIZE];
        size_t publen = sizeof(pub);
        unsigned mdlen = 0;

        if (EVP_PKEY_get_raw_public_key(pkey, pub, &publen) != 1 || publen != sizeof(pub) ||
            EVP_Digest(pub, publen, md, &mdlen, EVP_sha256(), NULL) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        ab_base64url_encode_buf(md, KID_HASH_BYTES, kid);
        return 0;
}

/* Where ps comes from, for reasons: "file '<path>'", "credential '<name>'" or
 * "environment variable '<name>'", as a new string (NULL when out of memory). */
static char *
source_label(const struct ab_policy_secret *ps)
{
        static const char *const kinds[] = {
                [AB_SRC_CREDENTIAL] = "credential",
                [AB_SRC_FILE] = "file",
                [AB_SRC_ENV] = "environment variable",
        };
        const char *kind = (size_t)ps->source < AB_ELEMENTSOF(kinds) ? kinds[ps->source] : "source";
        char *l;

        if (asprintf(&l, "%s '%s'", kind, ps->ref ? ps->ref : "") < 0)
                return NULL;
        return l;
}

/* Split an Ed25519 private key into its 32-byte seed, kept in our locked, non-dumpable
 * memory, and a public-only EVP_PKEY (for the kid and the JWKS). OpenSSL 3.0 keeps a raw
 * private key it imports in its ordinary heap, where a core dump or a debugger would find it,
 * so the broker holds no long-lived private EVP_PKEY: it builds one per signature from the
 * seed and frees it (OpenSSL wipes it then). Returns 0, -ENOMEM or -EIO. */
static int
split_ed25519(EVP_PKEY *priv, struct ab_secbuf **ret_seed, EVP_PKEY **ret_pub)
{
        _cleanup_(ab_secbuf_freep) struct ab_secbuf *seed = NULL;
        unsigned char pub[32];
        size_t n = ED25519_SEED_LEN, publen = sizeof(pub);
        EVP_PKEY *p;
        int r;

        r = ab_secbuf_new(ED25519_SEED_LEN, &seed);
        if (r < 0)
                return r;
        if (EVP_PKEY_get_raw_private_key(priv, seed->data, &n) != 1 || n != ED25519_SEED_LEN ||
            EVP_PKEY_get_raw_public_key(priv, pub, &publen) != 1 || publen != sizeof(pub)) {
                ERR_clear_error();
                return -EIO;
        }
        p = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, sizeof(pub));
        if (!p) {
                ERR_clear_error();
                return -EIO;
        }
        *ret_seed = AB_TAKE_PTR(seed);
        *ret_pub = p;
        return 0;
}

/* Fill s from its policy entry. An unusable source leaves s unavailable with a reason and
 * returns 0; only -ENOMEM is returned as an error. */
static int
load_one(const struct ab_policy_secret *ps, uid_t owner, struct ab_secret *s,
         struct ab_secret_store *previous)
{
        _cleanup_(ab_secbuf_freep) struct ab_secbuf *b = NULL;
        _cleanup_free_ char *label = NULL;
        char *reason = NULL;
        EVP_PKEY *pkey = NULL;
        int r;

        s->name = strdup(ps->name ? ps->name : "");
        if (!s->name)
                return -ENOMEM;
        s->type = ps->type;
        s->source = ps->source;
        s->source_ref = strdup(ps->ref ? ps->ref : "");
        if (!s->source_ref)
                return -ENOMEM;

        /* An environment variable is gone after its first read: keep the value we have. */
        if (ps->source == AB_SRC_ENV && ps->ref && !getenv(ps->ref) && previous) {
                for (size_t i = 0; i < previous->n; i++) {
                        struct ab_secret *o = &previous->secrets[i];
                        if (o->available && o->source == AB_SRC_ENV && o->type == ps->type &&
                            strcmp(o->name, s->name) == 0 && strcmp(o->source_ref, ps->ref) == 0) {
                                s->available = true;
                                s->value = AB_TAKE_PTR(o->value);
                                s->pkey = AB_TAKE_PTR(o->pkey);
                                memcpy(s->kid, o->kid, sizeof(s->kid));
                                o->available = false;
                                return 0;
                        }
                }
        }

        label = source_label(ps);
        if (!label)
                return -ENOMEM;
        r = load_source(ps, owner, &b, &reason);
        if (r >= 0 && b->len == 0) {
                r = refuse(&reason, -EINVAL, "%s is empty", label);
        } else if (r >= 0 && ps->type == AB_SECRET_ED25519) {
                EVP_PKEY *priv = NULL;

                r = parse_ed25519(b, label, &priv, &reason);
                ab_secbuf_free(AB_TAKE_PTR(b)); /* wipe the source bytes now */
                if (r >= 0) {
                        r = split_ed25519(priv, &b, &pkey);
                        EVP_PKEY_free(priv); /* OpenSSL wipes the private key */
                        if (r == -EIO)
                                r = refuse(&reason, -EIO, "%s: the public key cannot be derived", label);
                }
                if (r >= 0 && ed25519_kid(pkey, s->kid) < 0) {
                        EVP_PKEY_free(pkey);
                        pkey = NULL;
                        r = refuse(&reason, -EIO, "%s: the public key cannot be derived", label);
                }
        }
        if (r == -ENOMEM) {
                free(reason);
                return r;
        }
        if (r < 0) {
                log_warning("secret '%s' unavailable: %s", s->name, reason);
                s->available = false;
                s->unavailable_reason = reason;
                return 0;
        }
        s->available = true;
        s->value = AB_TAKE_PTR(b);
        s->pkey = pkey;
        return 0;
}

int
ab_secrets_load(const struct ab_policy *p, uid_t owner, struct ab_secret_store **ret)
{
        return ab_secrets_reload(p, owner, NULL, ret);
}

int
ab_secrets_reload(const struct ab_policy *p, uid_t owner, struct ab_secret_store *previous,
                  struct ab_secret_store **ret)
{
        struct ab_secret_store *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        if (p->n_secrets > 0) {
                s->secrets = calloc(p->n_secrets, sizeof(*s->secrets));
                if (!s->secrets) {
                        free(s);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < p->n_secrets; i++) {
                s->n = i + 1;
                r = load_one(&p->secrets[i], owner, &s->secrets[i], previous);
                if (r < 0) {
                        ab_secrets_free(s);
                        return r;
                }
        }
        *ret = s;
        return 0;
}

void
ab_secrets_free(struct ab_secret_store *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++) {
                struct ab_secret *x = &s->secrets[i];
                free(x->name);
                free(x->source_ref);
                free(x->unavailable_reason);
                ab_secbuf_free(x->value);
                EVP_PKEY_free(x->pkey); /* OpenSSL cleanses the private key */
        }
        ab_freezero(s->secrets, s->n * sizeof(*s->secrets));
        free(s);
}

const struct ab_secret *
ab_secrets_find(const struct ab_secret_store *s, const char *name)
{
        if (!s || !name)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->secrets[i].name, name) == 0)
                        return &s->secrets[i];
        return NULL;
}

size_t
ab_secrets_count(const struct ab_secret_store *s)
{
        return s ? s->n : 0;
}

const struct ab_secret *
ab_secrets_at(const struct ab_secret_store *s, size_t i)
{
        return s && i < s->n ? &s->secrets[i] : NULL;
}

/* The HMAC-SHA256 template: EVP_MAC "HMAC" fetched once with its digest set; every call
 * duplicates it (a read-only operation, safe from several threads) and sets the key. */
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC_CTX *hmac_template;

static void
hmac_template_init(void)
{
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                OSSL_PARAM_construct_end(),
        };
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *ctx;

        if (!mac)
                return;
        ctx = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac); /* the context keeps its own reference */
        if (ctx && EVP_MAC_CTX_set_params(ctx, params) != 1) {
                EVP_MAC_CTX_free(ctx);
                ctx = NULL;
        }
        hmac_template = ctx;
}

int
ab_secret_hmac_sha256(const struct ab_secret *s, const void *data, size_t len, unsigned char ret_mac[32])
{
        unsigned char mac[32];
        size_t maclen = 0;
        EVP_MAC_CTX *ctx;
        int r = -EIO;

        if (!s || !s->available || s->type != AB_SECRET_BYTES || !s->value || (!data && len))
                return -EINVAL;
        pthread_once(&hmac_once, hmac_template_init);
        if (!hmac_template)
                return -EIO;
        ctx = EVP_MAC_CTX_dup(hmac_template);
        if (!ctx)
                return -EIO;
        if (EVP_MAC_init(ctx, s->value->data, s->value->len, NULL) == 1 &&
            EVP_MAC_update(ctx, data, len) == 1 && EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 &&
            maclen == sizeof(mac)) {
                memcpy(ret_mac, mac, sizeof(mac));
                r = 0;
        }
        EVP_MAC_CTX_free(ctx);
        ab_wipe(mac, sizeof(mac));
        if (r < 0)
                ERR_clear_error();
        return r;
}

int
ab_secret_ed25519_sign(const struct ab_secret *s, const void *data, size_t len, unsigned char ret_sig[64])
{
        unsigned char sig[ED25519_SIG_LEN];
        size_t siglen = sizeof(sig);
        EVP_PKEY *priv;
        EVP_MD_CTX *ctx;
        int r = -EIO;

        if (!s || !s->available || s->type != AB_SECRET_ED25519 || !s->value ||
            s->value->len != ED25519_SEED_LEN || (!data && len))
                return -EINVAL;
        /* A private key object for this signature only: see split_ed25519(). */
        priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, s->value->data, ED25519_SEED_LEN);
        ctx = priv ? EVP_MD_CTX_new() : NULL;
        if (!ctx) {
                EVP_PKEY_free(priv);
                ERR_clear_error();
                return -EIO;
        }
        if (EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL, priv, NULL) == 1 &&
            EVP_DigestSign(ctx, sig, &siglen, data ? data : (const void *)"", len) == 1 &&
            siglen == sizeof(sig)) {
                memcpy(ret_sig, sig, sizeof(sig));
                r = 0;
        }
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(priv);
        ab_wipe(sig, sizeof(sig));
        if (r < 0)
                ERR_clear_error();
        return r;
}
