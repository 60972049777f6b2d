/* SPDX-License-Identifier: MIT */
/* Encodings used on the wire and in tokens: hex, base64, base64url (no OpenSSL: the module library uses them). */
#pragma once

#include <stddef.h>

/* Lower-case hex of len bytes into a new string. Returns 0 or -ENOMEM. */
int ab_hex_encode(const void *data, size_t len, char **ret);
/* Lower-case hex of len bytes into out, which must hold 2 * len + 1 bytes (NUL-terminated). */
void ab_hex_encode_buf(const void *data, size_t len, char *out);
/* Decode hex (either case, even length). Returns 0, -EINVAL or -ENOMEM. */
int ab_hex_decode(const char *s, unsigned char **ret, size_t *ret_len);
/* Decode exactly slen hex characters of s (either case) into out, which must hold out_len
 * == slen / 2 bytes; no allocation (for key material). Returns 0 or -EINVAL. */
int ab_hex_decode_buf(const char *s, size_t slen, unsigned char *out, size_t out_len);
/* Standard base64 with padding. Returns 0 or -ENOMEM. */
int ab_base64_encode(const void *data, size_t len, char **ret);
/* Decode standard base64 (padding required, no whitespace). The bytes are followed by a NUL
 * that *ret_len does not count (so text decodes to a string). Returns 0, -EINVAL or -ENOMEM. */
int ab_base64_decode(const char *s, unsigned char **ret, size_t *ret_len);
/* base64url without padding (RFC 7515). Returns 0 or -ENOMEM. */
int ab_base64url_encode(const void *data, size_t len, char **ret);
/* Decode base64url without padding (RFC 7515; '=' and whitespace rejected), followed by a NUL
 * like ab_base64_decode. Returns 0, -EINVAL or -ENOMEM. */
int ab_base64url_decode(const char *s, unsigned char **ret, size_t *ret_len);
/* Write base64url without padding into out (must hold ab_base64url_len(len)+1 bytes). */
void ab_base64url_encode_buf(const void *data, size_t len, char *out);
static inline size_t
ab_base64url_len(size_t n)
{
        return (n / 3) * 4 + ((n % 3) ? (n % 3) + 1 : 0);
}
