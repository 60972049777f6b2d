/* Result shaping (see shape.h and docs/result-shaping.md): the redactor of secret values
 * and their encodings, and the size cap of a CallToolResult.
 *
 * The redactor keeps every form of every secret in locked memory (common/secmem.h), one
 * buffer per secret, and an index of the forms by a hash of their first two bytes (every
 * form is at least 4 bytes long), each bucket sorted longest first. Replacing scans the
 * text once, left to right: at each position the longest form that matches wins; forms of
 * other secrets that start inside the match and reach past its end extend it (so two
 * overlapping secrets are both removed); the span becomes "[REDACTED:a]" (or
 * "[REDACTED:a][REDACTED:b]"), and the scan goes on after it. */
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
#include "common/secmem.h"
#include "common/utf8.h"
#include "host/shape.h"

#define SECRET_MIN 4               /* shorter values are not redacted */
#define SECRET_MAX (64 * 1024)     /* the broker's largest secret (AB_SECRET_MAX) */
#define NAME_MAX_LEN 128
#define MAX_FORMS 12               /* raw, base64, base64url, hex x2, URL, 6 base64 cores */
#define CORE_MIN 8                 /* shortest base64 core worth matching */
#define NBUCKETS 4096
#define GROWTH_MIN (64 * 1024)     /* redaction may grow a text by max(this, its length) */
#define JSON_MAX_DEPTH 1000        /* nesting walked in structuredContent (cJSON's limit) */
#define NOTE_BLOCK_OVERHEAD (sizeof("{\"type\":\"text\",\"text\":\"\"}") - 1 + 1)  /* + comma */
#define DEFAULT_HINT "Request a smaller part, e.g. with the tool's offset, cursor or limit arguments."

struct secret {
        char *name;
        char *replacement;              /* "[REDACTED:<name>]" */
        size_t replacement_len;
        struct ab_secbuf *forms;        /* the forms, one after another */
        size_t form_off[MAX_FORMS], form_len[MAX_FORMS];
        size_t n_forms;
};

struct entry {
        const unsigned char *p;         /* into a secret's forms buffer */
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

static uint32_t bucket_of(unsigned char a, unsigned char b) {
        return ((uint32_t) a * 31u + b) & (NBUCKETS - 1);
}

int hs_redactor_new(struct hs_redactor **ret) {
        struct hs_redactor *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        *ret = r;
        return 0;
}

void hs_redactor_free(struct hs_redactor *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                free(r->secrets[i].name);
                free(r->secrets[i].replacement);
                ab_secbuf_free(r->secrets[i].forms);
        }
        ab_secbuf_free(r->index);
        free(r);
}

/* Entries sort by bucket, then longest first, then by secret (insertion sort: at most
 * HS_REDACT_MAX * MAX_FORMS entries, and no temporary copies outside locked memory). */
static bool entry_before(const struct entry *a, const struct entry *b) {
        if (a->bucket != b->bucket)
                return a->bucket < b->bucket;
        if (a->len != b->len)
                return a->len > b->len;
        return a->secret < b->secret;
}

/* Rebuild the index over every form of every secret. Returns 0 or -ENOMEM (the old index
 * is kept then). */
static int rebuild_index(struct hs_redactor *r) {
        struct ab_secbuf *buf;
        uint32_t *start;
        struct entry *e;
        size_t n = 0, head = ((NBUCKETS + 1) * sizeof(uint32_t) + 7) & ~(size_t) 7;
        int k;

        for (size_t i = 0; i < r->n; i++)
                n += r->secrets[i].n_forms;
        k = ab_secbuf_new(head + n * sizeof(struct entry), &buf);
        if (k < 0)
                return k;
        start = (uint32_t *) buf->data;
        e = (struct entry *) (void *) (buf->data + head);      /* head: a multiple of 8 */
        n = 0;
        for (size_t i = 0; i < r->n; i++) {
                const struct secret *s = &r->secrets[i];
                for (size_t f = 0; f < s->n_forms; f++) {
                        struct entry x = {
                                .p = s->forms->data + s->form_off[f],
                                .len = s->form_len[f],
                                .secret = (uint32_t) i,
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
                start[b] = (uint32_t) j;
        }
        ab_secbuf_free(r->index);
        r->index = buf;
        r->bucket_start = start;
        r->entries = e;
        r->n_entries = n;
        return 0;
}

static size_t b64_len(size_t n) {
        return (n + 2) / 3 * 4;
}

/* Append form f (len bytes at s->forms->data + *w) to secret s unless it equals one it
 * already has; *w is advanced past it if kept. */
static void keep_form(struct secret *s, size_t *w, size_t len) {
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
static void add_core(struct secret *s, size_t *w, const unsigned char *value, size_t n,
                     unsigned shift, bool url, unsigned char *scratch_in, char *scratch_out) {
        size_t first = (8 * shift + 5) / 6, last = 8 * (shift + n) / 6;

        if (last - first < CORE_MIN)
                return;
        memset(scratch_in, 0, shift);
        memcpy(scratch_in + shift, value, n);
        if (url)
                ab_base64url_encode_buf(scratch_in, shift + n, scratch_out);
        else
                EVP_EncodeBlock((unsigned char *) scratch_out, scratch_in, (int) (shift + n));
        memcpy(s->forms->data + *w, scratch_out + first, last - first);
        keep_form(s, w, last - first);
}

/* Compute every form of value into s->forms. Returns 0 or -ENOMEM. */
static int make_forms(struct secret *s, const unsigned char *value, size_t n) {
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

        memcpy(d + w, value, n);                                        /* raw */
        keep_form(s, &w, n);
        EVP_EncodeBlock(d + w, value, (int) n);                         /* base64, padded */
        keep_form(s, &w, b64_len(n));
        ab_base64url_encode_buf(value, n, (char *) d + w);              /* base64url */
        keep_form(s, &w, ab_base64url_len(n));
        for (size_t i = 0; i < n; i++) {                                /* hex, lower case */
                d[w + 2 * i] = (unsigned char) lower[value[i] >> 4];
                d[w + 2 * i + 1] = (unsigned char) lower[value[i] & 0xf];
        }
        keep_form(s, &w, 2 * n);
        for (size_t i = 0; i < n; i++) {                                /* hex, upper case */
                d[w + 2 * i] = (unsigned char) upper[value[i] >> 4];
                d[w + 2 * i + 1] = (unsigned char) upper[value[i] & 0xf];
        }
        keep_form(s, &w, 2 * n);
        {                                                               /* URL-encoded */
                size_t o = w;
                for (size_t i = 0; i < n; i++) {
                        unsigned char c = value[i];
                        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')
                                d[o++] = c;
                        else {
                                d[o++] = '%';
                                d[o++] = (unsigned char) upper[c >> 4];
                                d[o++] = (unsigned char) upper[c & 0xf];
                        }
                }
                keep_form(s, &w, o - w);
        }
        for (unsigned shift = 0; shift < 3; shift++)                    /* base64 cores */
                for (int url = 0; url < 2; url++)
                        add_core(s, &w, value, n, shift, url, scratch->data,
                                 (char *) scratch->data + n + 2);
        ab_secbuf_free(scratch);
        return 0;
}

static bool same_secret(const struct secret *s, const char *name, const unsigned char *value,
                        size_t len) {
        return strcmp(s->name, name) == 0 && s->form_len[0] == len &&
               CRYPTO_memcmp(s->forms->data, value, len) == 0;
}

int hs_redactor_add(struct hs_redactor *r, const char *name, const unsigned char *value, size_t len) {
        struct secret *s;
        size_t name_len;
        int k;

        name_len = strlen(name);
        if (name_len == 0 || name_len > NAME_MAX_LEN || !ab_utf8_valid(name, name_len, NULL))
                return -EINVAL;
        for (size_t i = 0; i < name_len; i++)
                if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
                        return -EINVAL;
        if (len > SECRET_MAX)
                return -E2BIG;
        if (len < SECRET_MIN)
                return 0;
        for (size_t i = 0; i < r->n; i++)
                if (same_secret(&r->secrets[i], name, value, len))
                        return 0;
        if (r->n >= HS_REDACT_MAX)
                return -ENOSPC;

        s = &r->secrets[r->n];
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
        r->n++;
        k = rebuild_index(r);
        if (k < 0) {
                r->n--;
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
static const struct entry *match_at(const struct hs_redactor *r, const unsigned char *t, size_t n,
                                    size_t i) {
        uint32_t b = bucket_of(t[i], t[i + 1]);

        for (uint32_t k = r->bucket_start[b]; k < r->bucket_start[b + 1]; k++) {
                const struct entry *e = &r->entries[k];
                if (e->len <= n - i && e->p[0] == t[i] && e->p[1] == t[i + 1] &&
                    memcmp(e->p, t + i, e->len) == 0)
                        return e;
        }
        return NULL;
}

int hs_redact_text(const struct hs_redactor *r, const char *text, char **ret) {
        const unsigned char *t = (const unsigned char *) text;
        size_t n = strlen(text), i = 0, copied = 0, growth = 0, budget, out_len = 0;
        char *out = NULL;
        FILE *f = NULL;

        *ret = NULL;
        if (!r || r->n_entries == 0 || n < SECRET_MIN)
                return 0;
        budget = n > GROWTH_MIN ? n : GROWTH_MIN;
        while (i + 1 < n) {
                const struct entry *e = match_at(r, t, n, i);
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
                        const struct entry *x = match_at(r, t, n, j);
                        if (x && j + x->len > end) {
                                end = j + x->len;
                                if (!named[x->secret]) {
                                        named[x->secret] = true;
                                        order[n_named++] = x->secret;
                                }
                        }
                }
                if (!f) {
                        f = open_memstream(&out, &out_len);     /* the output holds no secret */
                        if (!f)
                                return -ENOMEM;
                }
                fwrite(text + copied, 1, i - copied, f);
                for (size_t k = 0; k < n_named; k++)
                        repl_len += r->secrets[order[k]].replacement_len;
                if (repl_len <= end - i || growth + (repl_len - (end - i)) <= budget) {
                        for (size_t k = 0; k < n_named; k++)
                                fwrite(r->secrets[order[k]].replacement, 1,
                                       r->secrets[order[k]].replacement_len, f);
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
                return 0;       /* nothing matched */
        fwrite(text + copied, 1, n - copied, f);
        if (ferror(f) | fclose(f)) {
                free(out);
                return -ENOMEM;
        }
        *ret = out;
        return 0;
}

/* ---- shaping a CallToolResult ---- */

/* Replace the string of item with s (taking it), wiping the old one: it may have held a
 * secret (a string item made by reference is not ours to free: it is only dropped). */
static void replace_string(cJSON *item, char *s) {
        char *old = item->valuestring;

        item->valuestring = s;
        if (item->type & cJSON_IsReference)
                item->type &= ~cJSON_IsReference;
        else
                ab_strfreezero(old);
}

/* Redact string item, then replace invalid UTF-8 in it with U+FFFD (in this order: a
 * binary secret is matched on its raw bytes). Sets *changed if it changed. Returns 0 or
 * -ENOMEM. */
static int clean_string(const struct hs_redactor *r, cJSON *item, bool *changed) {
        char *s = NULL;
        int k;

        k = hs_redact_text(r, item->valuestring, &s);
        if (k < 0)
                return k;
        if (s) {
                replace_string(item, s);
                *changed = true;
        }
        k = ab_utf8_repair(item->valuestring, strlen(item->valuestring), &s);
        if (k < 0)
                return k;
        if (s) {
                replace_string(item, s);
                *changed = true;
        }
        return 0;
}

/* clean_string every string value (not names) in j. Returns 0, -EINVAL (nested deeper
 * than JSON_MAX_DEPTH) or -ENOMEM. */
static int clean_tree(const struct hs_redactor *r, cJSON *j, unsigned depth, bool *changed) {
        cJSON *e;

        if (cJSON_IsString(j))
                return clean_string(r, j, changed);
        if (!cJSON_IsArray(j) && !cJSON_IsObject(j))
                return 0;
        if (depth > JSON_MAX_DEPTH)
                return -EINVAL;
        cJSON_ArrayForEach(e, j) {
                int k = clean_tree(r, e, depth + 1, changed);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* Length of the serialization of j (cJSON_PrintUnformatted). Returns 0 or -ENOMEM. */
static int measure(const cJSON *j, size_t *ret) {
        char *s = cJSON_PrintUnformatted(j);

        if (!s)
                return -ENOMEM;
        *ret = strlen(s);
        free(s);
        return 0;
}

/* Bytes cJSON prints for byte c inside a string. */
static size_t esc_len_byte(unsigned char c) {
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
                return 2;
        return c < 0x20 ? 6 : 1;
}

static size_t esc_len(const char *s, size_t n) {
        size_t e = 0;
        for (size_t i = 0; i < n; i++)
                e += esc_len_byte((unsigned char) s[i]);
        return e;
}

/* The longest prefix of s (well-formed UTF-8, len bytes) whose printed form takes at most
 * budget bytes, never ending inside a character. Returns its length in bytes. */
static size_t fit_prefix(const char *s, size_t len, size_t budget) {
        size_t i = 0, used = 0;

        while (i < len) {
                size_t n = ab_utf8_seq_len(s + i, len - i), cost;
                if (n == 0)
                        n = 1;  /* cannot happen after repair */
                cost = n == 1 ? esc_len_byte((unsigned char) s[i]) : n;
                if (used + cost > budget)
                        break;
                used += cost;
                i += n;
        }
        return i;
}

/* A string of the result that may be cut: a text block's text or an embedded resource's
 * text. */
struct cut {
        cJSON *item;            /* the string */
        cJSON *block;           /* its content block */
        bool removable;         /* a text block: removed when cut to nothing */
        size_t len, esc, keep;
        char *saved;
};

/* Serialized size of result with every cuttable string emptied. Returns 0 or -ENOMEM. */
static int measure_emptied(cJSON *result, struct cut *cuts, size_t n, size_t *ret) {
        static char empty[] = "";
        int k;

        for (size_t i = 0; i < n; i++) {
                cuts[i].saved = cuts[i].item->valuestring;
                cuts[i].item->valuestring = empty;
        }
        k = measure(result, ret);
        for (size_t i = 0; i < n; i++)
                cuts[i].item->valuestring = cuts[i].saved;
        return k;
}

/* Make result an isError result whose only content is text msg, cut (at a character
 * boundary, without a note) if the result would be larger than max bytes. Returns 0 or
 * -ENOMEM. */
static int make_error(cJSON *result, const char *msg, size_t max) {
        cJSON *content, *block, *text;
        size_t size, len, esc;
        char *cut;
        int k;

        cJSON_Delete(result->child);
        result->child = NULL;
        content = cJSON_AddArrayToObject(result, "content");
        block = cJSON_CreateObject();
        if (!content || !block) {
                cJSON_Delete(block);
                return -ENOMEM;
        }
        cJSON_AddItemToArray(content, block);
        if (!cJSON_AddStringToObject(block, "type", "text") ||
            !(text = cJSON_AddStringToObject(block, "text", msg)) ||
            !cJSON_AddTrueToObject(result, "isError"))
                return -ENOMEM;
        k = measure(result, &size);
        if (k < 0)
                return k;
        len = strlen(msg);
        esc = esc_len(msg, len);
        if (size <= max || size - esc >= max)
                return 0;       /* fits, or nothing to gain */
        cut = strndup(msg, fit_prefix(msg, len, max - (size - esc)));
        if (!cut)
                return -ENOMEM;
        replace_string(text, cut);
        return 0;
}

/* An isError result saying the result could not be shortened below max bytes. */
static int make_too_large(cJSON *result, size_t size, size_t max, const char *why, const char *hint) {
        char *msg = NULL;
        int k;

        if (asprintf(&msg, "The result was withheld: it is %zu bytes, more than this tool's limit of "
                           "%zu bytes, and it cannot be shortened (%s). %s",
                     size, max, why, hint) < 0)
                return -ENOMEM;
        k = make_error(result, msg, max);
        free(msg);
        return k;
}

static int format_note(char **ret, size_t shown, size_t total, size_t dropped, const char *hint) {
        char omitted[96] = "";

        if (dropped)
                snprintf(omitted, sizeof(omitted), "; structuredContent (%zu bytes) omitted", dropped);
        if (asprintf(ret, "[truncated: %zu of %zu bytes shown%s. %s]", shown, total, omitted, hint) < 0)
                return -ENOMEM;
        return 0;
}

/* Decide how much of each cut to keep within budget printed bytes, cutting the last
 * first. Returns the text bytes kept. */
static size_t plan_cuts(struct cut *cuts, size_t n, size_t budget) {
        size_t shown = 0;

        for (size_t i = 0; i < n; i++) {
                if (cuts[i].esc <= budget) {
                        cuts[i].keep = cuts[i].len;
                        budget -= cuts[i].esc;
                } else {
                        cuts[i].keep = fit_prefix(cuts[i].item->valuestring, cuts[i].len, budget);
                        budget = 0;
                }
                shown += cuts[i].keep;
        }
        return shown;
}

static size_t digits(size_t v) {
        size_t d = 1;
        while (v >= 10) {
                v /= 10;
                d++;
        }
        return d;
}

/* Collect the cuttable strings of content, in order. Returns 0 or -ENOMEM. */
static int collect_cuts(cJSON *content, struct cut **ret, size_t *ret_n) {
        struct cut *cuts;
        cJSON *b;
        size_t n = 0;

        cJSON_ArrayForEach(b, content) n++;
        cuts = calloc(n ? n : 1, sizeof(*cuts));
        if (!cuts)
                return -ENOMEM;
        n = 0;
        cJSON_ArrayForEach(b, content) {
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "type"));
                cJSON *s = NULL;
                bool removable = false;

                if (!type)
                        continue;
                if (strcmp(type, "text") == 0) {
                        s = cJSON_GetObjectItemCaseSensitive(b, "text");
                        removable = true;
                } else if (strcmp(type, "resource") == 0)
                        s = cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetObjectItemCaseSensitive(b, "resource"), "text");
                if (!cJSON_IsString(s))
                        continue;
                cuts[n].item = s;
                cuts[n].block = b;
                cuts[n].removable = removable;
                cuts[n].len = strlen(s->valuestring);
                cuts[n].esc = esc_len(s->valuestring, cuts[n].len);
                n++;
        }
        *ret = cuts;
        *ret_n = n;
        return 0;
}

/* Cut result (serialized size over max) to fit max. See shape.h for the rules. */
static int truncate_result(cJSON *result, cJSON *content, size_t size, size_t max,
                           const struct hs_schema *output_schema, bool is_error, const char *hint) {
        _cleanup_free_ struct cut *cuts = NULL;
        _cleanup_free_ char *note = NULL;
        cJSON *structured = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");
        size_t n = 0, total = 0, base, dropped = 0, note_len, shown, guess;
        int k;

        k = collect_cuts(content, &cuts, &n);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n; i++)
                total += cuts[i].len;

        k = measure_emptied(result, cuts, n, &base);
        if (k < 0)
                return k;
        k = format_note(&note, total, total, 0, hint);
        if (k < 0)
                return k;
        note_len = esc_len(note, strlen(note));
        if (structured && base + NOTE_BLOCK_OVERHEAD + note_len > max) {
                /* structuredContent alone does not fit */
                if (output_schema && !is_error)
                        return make_too_large(result, size, max,
                                              "its structuredContent must stay valid against the "
                                              "tool's output schema", hint);
                k = measure(structured, &dropped);
                if (k < 0)
                        return k;
                cJSON_DeleteItemFromObjectCaseSensitive(result, "structuredContent");
                k = measure_emptied(result, cuts, n, &base);
                if (k < 0)
                        return k;
        }
        free(note);
        note = NULL;
        k = format_note(&note, total, total, dropped, hint);
        if (k < 0)
                return k;
        note_len = esc_len(note, strlen(note));
        if (base + NOTE_BLOCK_OVERHEAD + note_len > max)
                return make_too_large(result, size, max, "its content other than text alone exceeds "
                                      "the limit", hint);

        /* The note's length depends on the number shown: plan with room for the longest
         * number (total), then again with the number found while that needs fewer digits
         * and the new plan does not need more. */
        guess = total;
        shown = plan_cuts(cuts, n, max - base - NOTE_BLOCK_OVERHEAD - note_len);
        for (int round = 0; round < 3 && digits(shown) < digits(guess); round++) {
                size_t cand = plan_cuts(cuts, n, max - base - NOTE_BLOCK_OVERHEAD -
                                                 (note_len - (digits(total) - digits(shown))));
                if (digits(cand) > digits(shown))
                        break;
                guess = shown;
                shown = cand;
        }
        shown = plan_cuts(cuts, n, max - base - NOTE_BLOCK_OVERHEAD -
                                   (note_len - (digits(total) - digits(guess))));

        /* apply: cut strings, drop text blocks cut to nothing, append the note */
        for (size_t i = 0; i < n; i++) {
                char *s;
                if (cuts[i].keep == cuts[i].len)
                        continue;
                if (cuts[i].keep == 0 && cuts[i].removable) {
                        cJSON_Delete(cJSON_DetachItemViaPointer(content, cuts[i].block));
                        continue;
                }
                s = strndup(cuts[i].item->valuestring, cuts[i].keep);
                if (!s)
                        return -ENOMEM;
                replace_string(cuts[i].item, s);
        }
        free(note);
        note = NULL;
        k = format_note(&note, shown, total, dropped, hint);
        if (k < 0)
                return k;
        {
                cJSON *block = cJSON_CreateObject();
                if (!block)
                        return -ENOMEM;
                cJSON_AddItemToArray(content, block);
                if (!cJSON_AddStringToObject(block, "type", "text") ||
                    !cJSON_AddStringToObject(block, "text", note))
                        return -ENOMEM;
        }
        k = measure(result, &base);
        if (k < 0)
                return k;
        if (base > max)         /* the arithmetic above is exact; never send too much anyway */
                return make_too_large(result, size, max, "it could not be cut to fit", hint);
        return 0;
}

int hs_shape_result(cJSON *result, size_t max_bytes, const struct hs_redactor *r,
                    const struct hs_schema *output_schema, const char *more_hint, bool *ret_truncated) {
        cJSON *content, *structured, *b;
        _cleanup_free_ bool *dup = NULL;
        const char *hint = more_hint ? more_hint : DEFAULT_HINT;
        size_t n_blocks = 0, i = 0, size;
        bool is_error, changed = false;
        int k;

        if (!cJSON_IsObject(result))
                return -EINVAL;
        content = cJSON_GetObjectItemCaseSensitive(result, "content");
        if (!cJSON_IsArray(content))
                return -EINVAL;
        structured = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");
        is_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "isError"));
        if (max_bytes == 0)
                max_bytes = HS_DEFAULT_MAX_RESULT_BYTES;

        /* 1. text blocks that repeat structuredContent (the same JSON) are found first:
         *    after redaction they are printed again from it, so the two stay the same */
        cJSON_ArrayForEach(b, content) n_blocks++;
        dup = calloc(n_blocks ? n_blocks : 1, sizeof(*dup));
        if (!dup)
                return -ENOMEM;
        if (structured) {
                cJSON_ArrayForEach(b, content) {
                        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "type"));
                        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "text"));
                        if (type && text && strcmp(type, "text") == 0) {
                                cJSON *parsed = cJSON_Parse(text);
                                dup[i] = parsed && cJSON_Compare(parsed, structured, true);
                                cJSON_Delete(parsed);
                        }
                        i++;
                }
        }

        /* 2. redact (and repair UTF-8 in) every string value of the content blocks (text, a
         *    resource's text, and also types, image or audio data, URIs, names, annotations: a
         *    secret is redacted wherever a worker put it), and the string values
         *    of structuredContent; a text block that is structuredContent's JSON is printed
         *    again below */
        i = 0;
        cJSON_ArrayForEach(b, content) {
                cJSON *m, *obj = cJSON_IsObject(b) ? b : NULL;
                bool ignored = false;

                if (!obj) {
                        k = clean_tree(r, b, 2, &ignored);
                        if (k < 0)
                                return k;
                }
                cJSON_ArrayForEach(m, obj) {
                        if (dup[i] && strcmp(m->string, "text") == 0)
                                continue;
                        k = clean_tree(r, m, 2, &ignored);
                        if (k < 0)
                                return k;
                }
                i++;
        }
        if (structured) {
                k = clean_tree(r, structured, 1, &changed);
                if (k < 0)
                        return k;
                i = 0;
                cJSON_ArrayForEach(b, content) {
                        if (dup[i++] && changed) {
                                char *s = cJSON_PrintUnformatted(structured);
                                if (!s)
                                        return -ENOMEM;
                                replace_string(cJSON_GetObjectItemCaseSensitive(b, "text"), s);
                        }
                }
        }

        /* 3. structuredContent must match the output schema */
        if (structured && output_schema && !is_error) {
                _cleanup_free_ char *err = NULL, *msg = NULL, *red = NULL;
                k = hs_schema_validate(output_schema, structured, "structuredContent", &err);
                if (k == -ENOMEM)
                        return k;
                if (k < 0) {
                        if (hs_redact_text(r, err, &red) < 0 ||
                            asprintf(&msg, "The tool's result does not match its output schema: %s",
                                     red ? red : err) < 0)
                                return -ENOMEM;
                        if (ret_truncated)
                                *ret_truncated = false;
                        return make_error(result, msg, max_bytes);
                }
        }

        /* 4. the size cap */
        k = measure(result, &size);
        if (k < 0)
                return k;
        if (size > max_bytes) {
                k = truncate_result(result, content, size, max_bytes, output_schema, is_error, hint);
                if (k < 0)
                        return k;
        }
        if (ret_truncated)
                *ret_truncated = size > max_bytes;
        return 0;
}
