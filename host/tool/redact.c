/* SPDX-License-Identifier: MIT */
/* The redactor (see redact.h and docs/result-shaping.md): secret values and their encodings.
 *
 * It keeps every form of every secret in locked memory (common/secmem.h), one buffer per
 * secret, and an index of the forms by a hash of their first two bytes (every form is at
 * least 4 bytes long), each bucket sorted longest first. Replacing scans the text once, left
 * to right: at each position the longest form that matches wins; forms of other secrets that
 * start inside the match and reach past its end extend it (so two overlapping secrets are
 * both removed); the span becomes "[REDACTED:a]" (or "[REDACTED:a][REDACTED:b]"), and the
 * scan goes on after it. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/encode.h"
#include "common/macros.h"
#include "common/name.h"
#include "common/secmem.h"
#include "common/utf8.h"
#include "host/tool/redact.h"

#define SECRET_MIN 4           /* shorter values are not redacted */
#define SECRET_MAX (64 * 1024) /* the broker's largest secret (AB_SECRET_MAX) */
#define MAX_FORMS 12           /* raw, base64, base64url, hex x2, URL, 6 base64 cores */
#define CORE_MIN 8             /* shortest base64 core worth matching */
#define NBUCKETS 4096
#define GROWTH_MIN (64 * 1024) /* redaction may grow a text by max(this, its length) */

_Static_assert(HS_REDACT_MAX <= 64, "struct hs_redact_stats has one bit per secret in a uint64_t");

struct secret {
        char *name;
        char *replacement; /* "[REDACTED:<name>]" */
        size_t replacement_len;
        struct ab_secbuf *forms; /* the forms, one after another */
        size_t form_off[MAX_FORMS], form_len[MAX_FORMS];
        size_t n_forms;
};

struct entry {
        const unsigned char *p; /* into a secret's forms buffer */
        size_t len;
        uint32_t secret;
        uint32_t bucket;
};

struct hs_redactor {
        struct secret secrets[HS_REDACT_MAX];
        size_t n;
        /* index: uint32_t bucket_start[NBUCKETS + 1], then struct entry[n_entries] */
        struct ab_secbuf *index;
        const uint32_t *bucket_start;
        const struct entry *entries;
        size_t n_entries;
};

static uint32_t
bucket_of(unsigned char a, unsigned char b)
{
        return ((uint32_t)a * 31u + b) & (NBUCKETS - 1);
}

int
hs_redactor_new(struct hs_redactor **ret)
{
        struct hs_redactor *rd = calloc(1, sizeof(*rd));

        if (!rd)
                return -ENOMEM;
        *ret = rd;
        return 0;
}

void
hs_redactor_free(struct hs_redactor *rd)
{
        if (!rd)
                return;
        for (size_t i = 0; i < rd->n; i++) {
                free(rd->secrets[i].name);
                free(rd->secrets[i].replacement);
                ab_secbuf_free(rd->secrets[i].forms);
        }
        ab_secbuf_free(rd->index);
        free(rd);
}

/* Entries sort by bucket, then longest first, then by secret (insertion sort: at most
 * HS_REDACT_MAX * MAX_FORMS entries, and no temporary copies outside locked memory). */
static bool
entry_before(const struct entry *a, const struct entry *b)
{
        if (a->bucket != b->bucket)
                return a->bucket < b->bucket;
        if (a->len != b->len)
                return a->len > b->len;
        return a->secret < b->secret;
}

/* Rebuild the index over every form of every secret. Returns 0 or -ENOMEM (the old index
 * is kept then). */
static int
rebuild_index(struct hs_redactor *rd)
{
        struct ab_secbuf *buf;
        uint32_t *start;
        struct entry *e;
        size_t n = 0, head = ((NBUCKETS + 1) * sizeof(uint32_t) + 7) & ~(size_t)7;
        int k;

        for (size_t i = 0; i < rd->n; i++)
                n += rd->secrets[i].n_forms;
        k = ab_secbuf_new(head + n * sizeof(struct entry), &buf);
        if (k < 0)
                return k;
        start = (uint32_t *)buf->data;
        e = (struct entry *)(void *)(buf->data + head); /* head: a multiple of 8 */
        n = 0;
        for (size_t i = 0; i < rd->n; i++) {
                const struct secret *s = &rd->secrets[i];
                for (size_t f = 0; f < s->n_forms; f++) {
                        struct entry x = {
                                .p = s->forms->data + s->form_off[f],
                                .len = s->form_len[f],
                                .secret = (uint32_t)i,
                        };
                        size_t j = n++;
                        x.bucket = bucket_of(x.p[0], x.p[1]);
                        while (j > 0 && entry_before(&x, &e[j - 1])) {
                                e[j] = e[j - 1];
                                j--;
                        }
                        e[j] = x;
                }
        }
        for (size_t b = 0, j = 0; b <= NBUCKETS; b++) {
                while (j < n && e[j].bucket < b)
                        j++;
                start[b] = (uint32_t)j;
        }
        ab_secbuf_free(rd->index);
        rd->index = buf;
        rd->bucket_start = start;
        rd->entries = e;
        rd->n_entries = n;
        return 0;
}

static size_t
b64_len(size_t n)
{
        return (n + 2) / 3 * 4;
}

/* Append form f (len bytes at s->forms->data + *w) to secret s unless it equals one it
 * already has; *w is advanced past it if kept. */
static void
keep_form(struct secret *s, size_t *w, size_t len)
{
        const unsigned char *p = s->forms->data + *w;

        for (size_t i = 0; i < s->n_forms; i++)
                if (s->form_len[i] == len && memcmp(s->forms->data + s->form_off[i], p, len) == 0)
                        return;
        s->form_off[s->n_forms] = *w;
        s->form_len[s->n_forms] = len;
        s->n_forms++;
        *w += len;
}

/* The base64 characters of value that do not depend on what comes before or after it,
 * when it starts shift (0..2) bytes into a longer base64-encoded text: characters
 * ceil(8*shift/6) .. floor(8*(shift+n)/6) of the encoding of shift zero bytes + value.
 * Appended as a form (url: base64url alphabet) if at least CORE_MIN long. */
static void
add_core(struct secret *s, size_t *w, const unsigned char *value, size_t n, unsigned shift, bool url,
         unsigned char *scratch_in, char *scratch_out)
{
        size_t first = (8 * shift + 5) / 6, last = 8 * (shift + n) / 6;

        if (last - first < CORE_MIN)
                return;
        memset(scratch_in, 0, shift);
        memcpy(scratch_in + shift, value, n);
        if (url)
                ab_base64url_encode_buf(scratch_in, shift + n, scratch_out);
        else
                EVP_EncodeBlock((unsigned char *)scratch_out, scratch_in, (int)(shift + n));
        memcpy(s->forms->data + *w, scratch_out + first, last - first);
        keep_form(s, w, last - first);
}

/* Compute every form of value into s->forms. Returns 0 or -ENOMEM. */
static int
make_forms(struct secret *s, const unsigned char *value, size_t n)
{
        static const char lower[] = "0123456789abcdef", upper[] = "0123456789ABCDEF";
        size_t cap = n + 2 * (b64_len(n) + 1) + 4 * n + 3 * n + 6 * (b64_len(n + 2) + 1) + 16;
        struct ab_secbuf *scratch = NULL;
        unsigned char *d;
        size_t w = 0;
        int r;

        r = ab_secbuf_new(cap, &s->forms);
        if (r < 0)
                return r;
        r = ab_secbuf_new((n + 2) + b64_len(n + 2) + 1, &scratch);
        if (r < 0)
                return r;
        d = s->forms->data;

        memcpy(d + w, value, n); /* raw */
        keep_form(s, &w, n);
        EVP_EncodeBlock(d + w, value, (int)n); /* base64, padded */
        keep_form(s, &w, b64_len(n));
        ab_base64url_encode_buf(value, n, (char *)d + w); /* base64url */
        keep_form(s, &w, ab_base64url_len(n));
        for (size_t i = 0; i < n; i++) { /* hex, lower case */
                d[w + 2 * i] = (unsigned char)lower[value[i] >> 4];
                d[w + 2 * i + 1] = (unsigned char)lower[value[i] & 0xf];
        }
        keep_form(s, &w, 2 * n);
        for (size_t i = 0; i < n; i++) { /* hex, upper case */
                d[w + 2 * i] = (unsigned char)upper[value[i] >> 4];
                d[w + 2 * i + 1] = (unsigned char)upper[value[i] & 0xf];
        }
        keep_form(s, &w, 2 * n);
        { /* URL-encoded */
                size_t o = w;
                for (size_t i = 0; i < n; i++) {
                        unsigned char c = value[i];
                        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '.' || c == '_' || c == '~')
                                d[o++] = c;
                        else {
                                d[o++] = '%';
                                d[o++] = (unsigned char)upper[c >> 4];
                                d[o++] = (unsigned char)upper[c & 0xf];
                        }
                }
                keep_form(s, &w, o - w);
        }
        for (unsigned shift = 0; shift < 3; shift++) /* base64 cores */
                for (int url = 0; url < 2; url++)
                        add_core(s, &w, value, n, shift, url, scratch->data, (char *)scratch->data + n + 2);
        ab_secbuf_free(scratch);
        return 0;
}

static bool
same_secret(const struct secret *s, const char *name, const unsigned char *value, size_t len)
{
        return strcmp(s->name, name) == 0 && s->form_len[0] == len &&
               CRYPTO_memcmp(s->forms->data, value, len) == 0;
}

int
hs_redactor_add(struct hs_redactor *rd, const char *name, const unsigned char *value, size_t len)
{
        struct secret *s;
        size_t name_len;
        int k;

        name_len = strlen(name);
        if (name_len == 0 || name_len > AB_NAME_MAX || !ab_utf8_valid(name, name_len, NULL))
                return -EINVAL;
        for (size_t i = 0; i < name_len; i++)
                if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                        return -EINVAL;
        if (len > SECRET_MAX)
                return -E2BIG;
        if (len < SECRET_MIN)
                return 0;
        for (size_t i = 0; i < rd->n; i++)
                if (same_secret(&rd->secrets[i], name, value, len))
                        return 0;
        if (rd->n >= HS_REDACT_MAX)
                return -ENOSPC;

        s = &rd->secrets[rd->n];
        memset(s, 0, sizeof(*s));
        s->name = strdup(name);
        if (!s->name || asprintf(&s->replacement, "[REDACTED:%s]", name) < 0) {
                s->replacement = NULL;
                k = -ENOMEM;
                goto fail;
        }
        s->replacement_len = strlen(s->replacement);
        k = make_forms(s, value, len);
        if (k < 0)
                goto fail;
        rd->n++;
        k = rebuild_index(rd);
        if (k < 0) {
                rd->n--;
                goto fail;
        }
        return 0;
fail:
        free(s->name);
        free(s->replacement);
        ab_secbuf_free(s->forms);
        memset(s, 0, sizeof(*s));
        return k;
}

/* The longest form matching text at i (i + 1 < n), or NULL. */
static const struct entry *
match_at(const struct hs_redactor *rd, const unsigned char *t, size_t n, size_t i)
{
        uint32_t b = bucket_of(t[i], t[i + 1]);

        for (uint32_t k = rd->bucket_start[b]; k < rd->bucket_start[b + 1]; k++) {
                const struct entry *e = &rd->entries[k];
                if (e->len <= n - i && e->p[0] == t[i] && e->p[1] == t[i + 1] &&
                    memcmp(e->p, t + i, e->len) == 0)
                        return e;
        }
        return NULL;
}

size_t
hs_redactor_count(const struct hs_redactor *rd)
{
        return rd ? rd->n : 0;
}

const char *
hs_redactor_name(const struct hs_redactor *rd, size_t i)
{
        return rd && i < rd->n ? rd->secrets[i].name : NULL;
}

int
hs_redact_text(const struct hs_redactor *rd, const char *text, char **ret)
{
        return hs_redact_text_stats(rd, text, ret, NULL);
}

int
hs_redact_text_stats(const struct hs_redactor *rd, const char *text, char **ret,
                     struct hs_redact_stats *stats)
{
        const unsigned char *t = (const unsigned char *)text;
        size_t n = strlen(text), i = 0, copied = 0, growth = 0, budget, out_len = 0;
        char *out = NULL;
        FILE *f = NULL;

        *ret = NULL;
        if (!rd || rd->n_entries == 0 || n < SECRET_MIN)
                return 0;
        budget = n > GROWTH_MIN ? n : GROWTH_MIN;
        while (i + 1 < n) {
                const struct entry *e = match_at(rd, t, n, i);
                bool named[HS_REDACT_MAX];
                uint32_t order[HS_REDACT_MAX];
                size_t n_named = 0, end, repl_len = 0;

                if (!e) {
                        i++;
                        continue;
                }
                memset(named, 0, sizeof(named));
                end = i + e->len;
                order[n_named++] = e->secret;
                named[e->secret] = true;
                /* forms starting inside the match and reaching past it extend the span */
                for (size_t j = i + 1; j < end && j + 1 < n; j++) {
                        const struct entry *x = match_at(rd, t, n, j);
                        if (x && j + x->len > end) {
                                end = j + x->len;
                                if (!named[x->secret]) {
                                        named[x->secret] = true;
                                        order[n_named++] = x->secret;
                                }
                        }
                }
                if (!f) {
                        f = open_memstream(&out, &out_len); /* the output holds no secret */
                        if (!f)
                                return -ENOMEM;
                }
                fwrite(text + copied, 1, i - copied, f);
                for (size_t k = 0; k < n_named; k++) {
                        repl_len += rd->secrets[order[k]].replacement_len;
                        if (stats) {
                                stats->count++;
                                stats->secrets |= UINT64_C(1) << order[k];
                        }
                }
                if (repl_len <= end - i || growth + (repl_len - (end - i)) <= budget) {
                        for (size_t k = 0; k < n_named; k++)
                                fwrite(rd->secrets[order[k]].replacement, 1,
                                       rd->secrets[order[k]].replacement_len, f);
                        if (repl_len > end - i)
                                growth += repl_len - (end - i);
                } else {
                        /* growth budget spent: mask without growing */
                        for (size_t k = i; k < end; k++)
                                fputc('*', f);
                }
                i = copied = end;
        }
        if (!f)
                return 0; /* nothing matched */
        fwrite(text + copied, 1, n - copied, f);
        if (ferror(f) | fclose(f)) {
                free(out);
                return -ENOMEM;
        }
        *ret = out;
        return 0;
}
