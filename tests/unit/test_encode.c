/* SPDX-License-Identifier: MIT */
/* Unit tests for common/encode.c: RFC 4648 section 10 test vectors for base64, base64url
 * and base16, rejection of malformed input, round trips and ab_base64url_len. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/encode.h"

struct vector {
        const char *in;
        const char *b64;
        const char *b64url; /* no padding */
        const char *hex;
};

/* RFC 4648, section 10 (base64url = the base64 vectors without padding; these inputs
 * contain no characters that differ between the two alphabets). */
static const struct vector rfc4648[] = {
        { "", "", "", "" },
        { "f", "Zg==", "Zg", "66" },
        { "fo", "Zm8=", "Zm8", "666f" },
        { "foo", "Zm9v", "Zm9v", "666f6f" },
        { "foob", "Zm9vYg==", "Zm9vYg", "666f6f62" },
        { "fooba", "Zm9vYmE=", "Zm9vYmE", "666f6f6261" },
        { "foobar", "Zm9vYmFy", "Zm9vYmFy", "666f6f626172" },
};

typedef int (*encode_fn)(const void *data, size_t len, char **ret);
typedef int (*decode_fn)(const char *s, unsigned char **ret, size_t *ret_len);

/* Check encode and decode of one codec against every RFC 4648 vector; field is the
 * offset of the expected encoding in struct vector. */
static void
check_vectors(encode_fn enc_fn, decode_fn dec_fn, size_t field)
{
        for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
                const struct vector *v = &rfc4648[i];
                const char *want = *(const char *const *)((const char *)v + field);
                char *enc = NULL;
                unsigned char *dec = NULL;
                size_t n = 99;

                assert_int_equal(enc_fn(v->in, strlen(v->in), &enc), 0);
                assert_string_equal(enc, want);
                assert_int_equal(dec_fn(want, &dec, &n), 0);
                assert_int_equal(n, strlen(v->in));
                assert_memory_equal(dec, v->in, n);
                free(enc);
                free(dec);
        }
}

static void
test_base64_vectors(void **state)
{
        check_vectors(ab_base64_encode, ab_base64_decode, offsetof(struct vector, b64));
}

static void
test_base64url_vectors(void **state)
{
        check_vectors(ab_base64url_encode, ab_base64url_decode, offsetof(struct vector, b64url));
        for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
                char buf[16];
                ab_base64url_encode_buf(rfc4648[i].in, strlen(rfc4648[i].in), buf);
                assert_string_equal(buf, rfc4648[i].b64url);
                assert_int_equal(ab_base64url_len(strlen(rfc4648[i].in)), strlen(buf));
        }
}

/* Bytes whose encodings use the characters that differ between the alphabets. */
static void
test_base64url_alphabet(void **state)
{
        static const unsigned char in[] = { 0xfb, 0xff, 0xbf, 0xfe };
        char *std = NULL, *url = NULL;
        unsigned char *dec = NULL;
        size_t n = 0;

        assert_int_equal(ab_base64_encode(in, sizeof(in), &std), 0);
        assert_string_equal(std, "+/+//g==");
        assert_int_equal(ab_base64url_encode(in, sizeof(in), &url), 0);
        assert_string_equal(url, "-_-__g");
        assert_int_equal(ab_base64url_decode("-_-__g", &dec, &n), 0);
        assert_int_equal(n, sizeof(in));
        assert_memory_equal(dec, in, sizeof(in));
        free(dec);
        dec = NULL;
        assert_int_equal(ab_base64_decode("+/+//g==", &dec, &n), 0);
        assert_memory_equal(dec, in, sizeof(in));
        free(dec);
        free(std);
        free(url);
}

static void
test_hex_vectors(void **state)
{
        check_vectors(ab_hex_encode, ab_hex_decode, offsetof(struct vector, hex));
        /* upper case is accepted on input, output is lower case */
        unsigned char *dec = NULL;
        size_t n = 0;
        assert_int_equal(ab_hex_decode("DEADbeef", &dec, &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(dec, "\xde\xad\xbe\xef", 4);
        free(dec);

        unsigned char buf[2];
        assert_int_equal(ab_hex_decode_buf("0aFf", 4, buf, 2), 0);
        assert_memory_equal(buf, "\x0a\xff", 2);
        assert_int_equal(ab_hex_decode_buf("0aFf", 4, buf, 1), -EINVAL);

        /* decoded bytes are followed by a NUL that the length does not count */
        for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
                unsigned char *d = NULL;
                size_t dn = 99;
                assert_int_equal(ab_base64url_decode(rfc4648[i].b64url, &d, &dn), 0);
                assert_int_equal(dn, strlen(rfc4648[i].in));
                assert_int_equal(d[dn], '\0');
                free(d);
                assert_int_equal(ab_base64_decode(rfc4648[i].b64, &d, &dn), 0);
                assert_int_equal(d[dn], '\0');
                free(d);
        }

        /* into a caller's buffer: exactly 2 * len digits and a NUL, nothing past it */
        char out[2 * 4 + 2];
        memset(out, 'X', sizeof(out));
        ab_hex_encode_buf("\x00\x0f\xf0\xff", 4, out);
        assert_string_equal(out, "000ff0ff");
        assert_int_equal(out[2 * 4 + 1], 'X');
        memset(out, 'X', sizeof(out));
        ab_hex_encode_buf("", 0, out);
        assert_int_equal(out[0], '\0');
        assert_int_equal(out[1], 'X');
}

static void
test_invalid_rejected(void **state)
{
        static const char *const bad_b64[] = {
                "Zg=",      "Zg",    "Z",    "Zm9",      "Zg==\n",   " Zg==", "Zm 9v",
                "Zm9v\n",   "Zg===", "=Zg=", "Z=g=",     "Zm9v====", "Zm9-",  "Zm9_",
                "Zm9v!A==", "Zh==",  "Zm9=", "Zm8=Zm8=", "====",
        };
        static const char *const bad_url[] = {
                "Zg==", "Zg=", "Z", "Zm9v+", "Zm9/", "Zm9v\n", " Zm9v", "Zh", "Zm9", "Zm-%", "Zm9vY", "Zm8=",
        };
        static const char *const bad_hex[] = { "0", "abc", "zz", "0g", " 00", "00\n", "0x00" };

        for (size_t i = 0; i < sizeof(bad_b64) / sizeof(bad_b64[0]); i++) {
                unsigned char *dec = (unsigned char *)0x1;
                size_t n = 77;
                if (ab_base64_decode(bad_b64[i], &dec, &n) != -EINVAL)
                        fail_msg("base64 accepted '%s'", bad_b64[i]);
                assert_ptr_equal(dec, (unsigned char *)0x1); /* untouched on failure */
                assert_int_equal(n, 77);
        }
        for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++) {
                unsigned char *dec = NULL;
                size_t n = 0;
                if (ab_base64url_decode(bad_url[i], &dec, &n) != -EINVAL)
                        fail_msg("base64url accepted '%s'", bad_url[i]);
                assert_null(dec);
        }
        for (size_t i = 0; i < sizeof(bad_hex) / sizeof(bad_hex[0]); i++) {
                unsigned char *dec = NULL;
                size_t n = 0;
                if (ab_hex_decode(bad_hex[i], &dec, &n) != -EINVAL)
                        fail_msg("hex accepted '%s'", bad_hex[i]);
                assert_null(dec);
        }
}

/* Every length 0..300 with pseudo-random bytes survives encode+decode in all three
 * encodings, and the encoded lengths are as computed. */
static void
test_round_trips(void **state)
{
        unsigned char data[300];
        uint32_t x = 0x12345678;

        for (size_t i = 0; i < sizeof(data); i++) {
                x = x * 1103515245u + 12345u;
                data[i] = (unsigned char)(x >> 16);
        }
        for (size_t len = 0; len <= sizeof(data); len++) {
                char *e1 = NULL, *e2 = NULL, *e3 = NULL;
                unsigned char *d = NULL;
                size_t n = 0;

                assert_int_equal(ab_base64_encode(data, len, &e1), 0);
                assert_int_equal(strlen(e1), (len + 2) / 3 * 4);
                assert_int_equal(ab_base64_decode(e1, &d, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(d, data, len);
                free(d);

                assert_int_equal(ab_base64url_encode(data, len, &e2), 0);
                assert_int_equal(strlen(e2), ab_base64url_len(len));
                assert_null(strchr(e2, '='));
                assert_null(strchr(e2, '+'));
                assert_null(strchr(e2, '/'));
                assert_int_equal(ab_base64url_decode(e2, &d, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(d, data, len);
                free(d);

                assert_int_equal(ab_hex_encode(data, len, &e3), 0);
                assert_int_equal(strlen(e3), 2 * len);
                assert_int_equal(ab_hex_decode(e3, &d, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(d, data, len);
                free(d);
                free(e1);
                free(e2);
                free(e3);
        }
}

static void
test_base64url_len(void **state)
{
        assert_int_equal(ab_base64url_len(0), 0);
        assert_int_equal(ab_base64url_len(1), 2);
        assert_int_equal(ab_base64url_len(2), 3);
        assert_int_equal(ab_base64url_len(3), 4);
        assert_int_equal(ab_base64url_len(4), 6);
        assert_int_equal(ab_base64url_len(32), 43); /* an Ed25519 public key */
        assert_int_equal(ab_base64url_len(64), 86); /* an Ed25519 signature */
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64_vectors),     cmocka_unit_test(test_base64url_vectors),
                cmocka_unit_test(test_base64url_alphabet), cmocka_unit_test(test_hex_vectors),
                cmocka_unit_test(test_invalid_rejected),   cmocka_unit_test(test_round_trips),
                cmocka_unit_test(test_base64url_len),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
