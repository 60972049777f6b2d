/* hex, base64 (OpenSSL EVP_EncodeBlock/EVP_DecodeBlock with strict validation in front)
 * and base64url without padding (a table-driven encoder: it runs for every token). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/encode.h"

/* Largest input handed to one EVP_EncodeBlock call: a multiple of 3 that keeps the
 * output length inside an int. */
#define B64_CHUNK (3u * 1024u * 1024u)

static const char hexdigits[] = "0123456789abcdef";
static const char b64url_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int ab_hex_encode(const void *data, size_t len, char **ret) {
        const unsigned char *p = data;
        char *s;

        if (len > (SIZE_MAX - 1) / 2)
                return -ENOMEM;
        s = malloc(len * 2 + 1);
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                s[2 * i] = hexdigits[p[i] >> 4];
                s[2 * i + 1] = hexdigits[p[i] & 0xf];
        }
        s[len * 2] = '\0';
        *ret = s;
        return 0;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int ab_hex_decode_buf(const char *s, size_t slen, unsigned char *out, size_t out_len) {
        if (slen % 2 != 0 || out_len != slen / 2)
                return -EINVAL;
        for (size_t i = 0; i < out_len; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        OPENSSL_cleanse(out, i);
                        return -EINVAL;
                }
                out[i] = (unsigned char) (hi << 4 | lo);
        }
        return 0;
}

int ab_hex_decode(const char *s, unsigned char **ret, size_t *ret_len) {
        size_t n = strlen(s);
        unsigned char *out;
        int r;

        if (n % 2 != 0)
                return -EINVAL;
        out = malloc(n / 2 + 1);          /* +1: a valid pointer even for empty input */
        if (!out)
                return -ENOMEM;
        r = ab_hex_decode_buf(s, n, out, n / 2);
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        *ret_len = n / 2;
        return 0;
}

int ab_base64_encode(const void *data, size_t len, char **ret) {
        const unsigned char *p = data;
        size_t outlen;
        char *s, *o;

        if (len / 3 >= (SIZE_MAX - 1) / 4 - 1)
                return -ENOMEM;
        outlen = (len + 2) / 3 * 4;
        s = malloc(outlen + 1);
        if (!s)
                return -ENOMEM;
        o = s;
        *o = '\0';
        while (len > 0) {
                size_t k = len < B64_CHUNK ? len : B64_CHUNK;
                int w = EVP_EncodeBlock((unsigned char *) o, p, (int) k);
                o += w;
                p += k;
                len -= k;
        }
        *ret = s;
        return 0;
}

/* Value of a standard base64 alphabet character, or -1. */
static int b64val(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Check that s[0..n) is canonical padded standard base64: length a multiple of 4, only
 * alphabet characters, '=' only as one or two final characters, and zero bits in the
 * unused low bits of the last character. Returns the padding count (0..2) or -EINVAL. */
static int b64_validate(const char *s, size_t n) {
        size_t pad = 0;
        int last;

        if (n % 4 != 0)
                return -EINVAL;
        if (n == 0)
                return 0;
        if (s[n - 1] == '=')
                pad = s[n - 2] == '=' ? 2 : 1;
        for (size_t i = 0; i < n - pad; i++)
                if (b64val((unsigned char) s[i]) < 0)
                        return -EINVAL;
        last = b64val((unsigned char) s[n - pad - 1]);
        if ((pad == 2 && (last & 0x0f)) || (pad == 1 && (last & 0x03)))
                return -EINVAL;
        return (int) pad;
}

/* Decode n characters of validated base64 with pad padding characters into a new buffer.
 * Returns 0 or -ENOMEM. */
static int b64_decode_validated(const char *s, size_t n, int pad, unsigned char **ret,
                                size_t *ret_len) {
        size_t cap = n / 4 * 3, got = 0;
        unsigned char *out = malloc(cap + 1);

        if (!out)
                return -ENOMEM;
        /* Decode in chunks of whole quanta so each EVP_DecodeBlock length fits an int. */
        while (got < cap) {
                size_t in_k = n - got / 3 * 4;
                if (in_k > B64_CHUNK / 3 * 4)
                        in_k = B64_CHUNK / 3 * 4;
                int w = EVP_DecodeBlock(out + got, (const unsigned char *) s + got / 3 * 4,
                                        (int) in_k);
                if (w < 0 || (size_t) w != in_k / 4 * 3) {
                        free(out);
                        return -ENOMEM;  /* cannot happen after validation */
                }
                got += (size_t) w;
        }
        *ret = out;
        *ret_len = cap - (size_t) pad;  /* EVP_DecodeBlock counts the padding as zero bytes */
        return 0;
}

int ab_base64_decode(const char *s, unsigned char **ret, size_t *ret_len) {
        size_t n = strlen(s);
        int pad = b64_validate(s, n);
        if (pad < 0)
                return pad;
        return b64_decode_validated(s, n, pad, ret, ret_len);
}

void ab_base64url_encode_buf(const void *data, size_t len, char *out) {
        const unsigned char *p = data;
        size_t i = 0;

        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
                *out++ = b64url_alphabet[v >> 18];
                *out++ = b64url_alphabet[(v >> 12) & 0x3f];
                *out++ = b64url_alphabet[(v >> 6) & 0x3f];
                *out++ = b64url_alphabet[v & 0x3f];
        }
        if (len - i == 1) {
                uint32_t v = (uint32_t) p[i] << 16;
                *out++ = b64url_alphabet[v >> 18];
                *out++ = b64url_alphabet[(v >> 12) & 0x3f];
        } else if (len - i == 2) {
                uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
                *out++ = b64url_alphabet[v >> 18];
                *out++ = b64url_alphabet[(v >> 12) & 0x3f];
                *out++ = b64url_alphabet[(v >> 6) & 0x3f];
        }
        *out = '\0';
}

int ab_base64url_encode(const void *data, size_t len, char **ret) {
        char *s;

        if (len / 3 >= (SIZE_MAX - 1) / 4 - 1)
                return -ENOMEM;
        s = malloc(ab_base64url_len(len) + 1);
        if (!s)
                return -ENOMEM;
        ab_base64url_encode_buf(data, len, s);
        *ret = s;
        return 0;
}

/* base64url is translated to the standard alphabet with padding and then goes through the
 * same strict validation and decoder as ab_base64_decode. */
int ab_base64url_decode(const char *s, unsigned char **ret, size_t *ret_len) {
        size_t n = strlen(s), padded;
        char *t;
        int pad, r;

        if (n % 4 == 1 || n > SIZE_MAX - 4)
                return -EINVAL;
        padded = (n + 3) / 4 * 4;
        t = malloc(padded + 1);
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '+' || c == '/' || c == '=') {
                        r = -EINVAL;
                        goto out;
                }
                t[i] = c == '-' ? '+' : c == '_' ? '/' : c;
        }
        memset(t + n, '=', padded - n);
        t[padded] = '\0';
        pad = b64_validate(t, padded);
        if (pad < 0) {
                r = pad;
                goto out;
        }
        r = b64_decode_validated(t, padded, pad, ret, ret_len);
out:
        OPENSSL_cleanse(t, padded);     /* may have held key material */
        free(t);
        return r;
}
