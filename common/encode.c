/* SPDX-License-Identifier: MIT */
/* hex, base64 with padding and base64url without (table-driven encoders; the decoders check
 * strictly before they decode). No OpenSSL: the module library and the worker use these, and
 * mapping libcrypto for encodings alone costs a worker about 1.5 MiB of RSS. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/encode.h"
#include "common/secmem.h"

static const char hexdigits[] = "0123456789abcdef";
static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
ab_hex_encode_buf(const void *data, size_t len, char *out)
{
        const unsigned char *p = data;

        for (size_t i = 0; i < len; i++) {
                out[2 * i] = hexdigits[p[i] >> 4];
                out[2 * i + 1] = hexdigits[p[i] & 0xf];
        }
        out[len * 2] = '\0';
}

int
ab_hex_encode(const void *data, size_t len, char **ret)
{
        char *s;

        if (len > (SIZE_MAX - 1) / 2)
                return -ENOMEM;
        s = malloc(len * 2 + 1);
        if (!s)
                return -ENOMEM;
        ab_hex_encode_buf(data, len, s);
        *ret = s;
        return 0;
}

static int
hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int
ab_hex_decode_buf(const char *s, size_t slen, unsigned char *out, size_t out_len)
{
        if (slen % 2 != 0 || out_len != slen / 2)
                return -EINVAL;
        for (size_t i = 0; i < out_len; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        ab_wipe(out, i);
                        return -EINVAL;
                }
                out[i] = (unsigned char)(hi << 4 | lo);
        }
        return 0;
}

int
ab_hex_decode(const char *s, unsigned char **ret, size_t *ret_len)
{
        size_t n = strlen(s);
        unsigned char *out;
        int r;

        if (n % 2 != 0)
                return -EINVAL;
        out = malloc(n / 2 + 1); /* +1: a valid pointer even for empty input */
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

/* Encode len bytes with alphabet into out (NUL-terminated), '=' padding when pad. Returns the
 * characters written. */
static size_t
b64_encode_with(const char *alphabet, bool pad, const unsigned char *p, size_t len, char *out)
{
        char *o = out;
        size_t i = 0;

        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
                *o++ = alphabet[v >> 18];
                *o++ = alphabet[(v >> 12) & 0x3f];
                *o++ = alphabet[(v >> 6) & 0x3f];
                *o++ = alphabet[v & 0x3f];
        }
        if (len - i == 1) {
                uint32_t v = (uint32_t)p[i] << 16;
                *o++ = alphabet[v >> 18];
                *o++ = alphabet[(v >> 12) & 0x3f];
                if (pad) {
                        *o++ = '=';
                        *o++ = '=';
                }
        } else if (len - i == 2) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
                *o++ = alphabet[v >> 18];
                *o++ = alphabet[(v >> 12) & 0x3f];
                *o++ = alphabet[(v >> 6) & 0x3f];
                if (pad)
                        *o++ = '=';
        }
        *o = '\0';
        return (size_t)(o - out);
}

int
ab_base64_encode(const void *data, size_t len, char **ret)
{
        char *s;

        if (len / 3 >= (SIZE_MAX - 1) / 4 - 1)
                return -ENOMEM;
        s = malloc((len + 2) / 3 * 4 + 1);
        if (!s)
                return -ENOMEM;
        b64_encode_with(b64_alphabet, true, data, len, s);
        *ret = s;
        return 0;
}

/* Value of a standard base64 alphabet character, or -1. */
static int
b64val(unsigned char c)
{
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
static int
b64_validate(const char *s, size_t n)
{
        size_t pad = 0;
        int last;

        if (n % 4 != 0)
                return -EINVAL;
        if (n == 0)
                return 0;
        if (s[n - 1] == '=')
                pad = s[n - 2] == '=' ? 2 : 1;
        for (size_t i = 0; i < n - pad; i++)
                if (b64val((unsigned char)s[i]) < 0)
                        return -EINVAL;
        last = b64val((unsigned char)s[n - pad - 1]);
        if ((pad == 2 && (last & 0x0f)) || (pad == 1 && (last & 0x03)))
                return -EINVAL;
        return (int)pad;
}

/* Decode n characters of validated base64 with pad padding characters into a new buffer.
 * Returns 0 or -ENOMEM. */
static int
b64_decode_validated(const char *s, size_t n, int pad, unsigned char **ret, size_t *ret_len)
{
        size_t cap = n / 4 * 3, o = 0;
        unsigned char *out = malloc(cap + 1);

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i += 4) {
                uint32_t v = 0;

                for (size_t k = 0; k < 4; k++) {
                        int d = s[i + k] == '=' ? 0 : b64val((unsigned char)s[i + k]);
                        v = v << 6 | (uint32_t)d;
                }
                out[o++] = (unsigned char)(v >> 16);
                out[o++] = (unsigned char)(v >> 8);
                out[o++] = (unsigned char)v;
        }
        out[cap] = '\0';
        *ret = out;
        *ret_len = cap - (size_t)pad; /* the padding decodes as zero bytes: not part of the data */
        return 0;
}

int
ab_base64_decode(const char *s, unsigned char **ret, size_t *ret_len)
{
        size_t n = strlen(s);
        int pad = b64_validate(s, n);
        if (pad < 0)
                return pad;
        return b64_decode_validated(s, n, pad, ret, ret_len);
}

void
ab_base64url_encode_buf(const void *data, size_t len, char *out)
{
        b64_encode_with(b64url_alphabet, false, data, len, out);
}

int
ab_base64url_encode(const void *data, size_t len, char **ret)
{
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
int
ab_base64url_decode(const char *s, unsigned char **ret, size_t *ret_len)
{
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
        ab_wipe(t, padded); /* may have held key material */
        free(t);
        return r;
}
