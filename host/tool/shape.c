/* SPDX-License-Identifier: MIT */
/* Result shaping (see shape.h and docs/result-shaping.md): redaction of every string of a
 * CallToolResult (with host/tool/redact.c), UTF-8 repair, the output schema and the size cap. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"
#include "common/secmem.h"
#include "common/utf8.h"
#include "host/tool/shape.h"

#define JSON_MAX_DEPTH 1000 /* nesting walked in structuredContent (cJSON's limit) */
#define NOTE_BLOCK_OVERHEAD (sizeof("{\"type\":\"text\",\"text\":\"\"}") - 1 + 1) /* + comma */
#define DEFAULT_HINT "Request a smaller part, e.g. with the tool's offset, cursor or limit arguments."

/* ---- shaping a CallToolResult ---- */

/* Replace the string of item with s (taking it), wiping the old one: it may have held a
 * secret (a string item made by reference is not ours to free: it is only dropped). */
static void
replace_string(cJSON *item, char *s)
{
        char *old = item->valuestring;

        item->valuestring = s;
        if (item->type & cJSON_IsReference)
                item->type &= ~cJSON_IsReference;
        else
                ab_strfreezero(old);
}

/* Redact *s (a heap string owned by a cJSON item), then replace invalid UTF-8 in it with
 * U+FFFD (in this order: a binary secret is matched on its raw bytes). *owned: whether the old
 * string is ours to wipe and free (set when replaced).
 * Returns 0 or -ENOMEM. */
static int
clean_chars(const struct hs_redactor *rd, char **s, bool *owned, struct hs_redact_stats *stats)
{
        char *n = NULL;
        int k;

        for (int step = 0; step < 2; step++) {
                k = step == 0 ? hs_redact_text_stats(rd, *s, &n, stats) : ab_utf8_repair(*s, strlen(*s), &n);
                if (k < 0)
                        return k;
                if (!n)
                        continue;
                if (*owned)
                        ab_strfreezero(*s);
                *s = n;
                *owned = true;
                n = NULL;
        }
        return 0;
}

/* clean_chars the string value of item. Returns 0 or -ENOMEM. */
static int
clean_string(const struct hs_redactor *rd, cJSON *item, struct hs_redact_stats *stats)
{
        bool owned = !(item->type & cJSON_IsReference);
        int k = clean_chars(rd, &item->valuestring, &owned, stats);

        if (owned)
                item->type &= ~cJSON_IsReference;
        return k;
}

/* clean_chars the member name of item (an object member). Returns 0 or -ENOMEM. */
static int
clean_name(const struct hs_redactor *rd, cJSON *item, struct hs_redact_stats *stats)
{
        bool owned = !(item->type & cJSON_StringIsConst);
        int k;

        if (!item->string)
                return 0;
        k = clean_chars(rd, &item->string, &owned, stats);
        if (owned)
                item->type &= ~cJSON_StringIsConst;
        return k;
}

/* clean_string every string value and clean_name every member name in j, except the member
 * named skip of j itself (NULL: none). Returns 0, -EINVAL (nested deeper than
 * JSON_MAX_DEPTH) or -ENOMEM. */
static int
clean_tree(const struct hs_redactor *rd, cJSON *j, const char *skip, unsigned depth,
           struct hs_redact_stats *stats)
{
        bool is_object = cJSON_IsObject(j);
        cJSON *e;

        if (cJSON_IsString(j))
                return clean_string(rd, j, stats);
        if (!cJSON_IsArray(j) && !is_object)
                return 0;
        if (depth > JSON_MAX_DEPTH)
                return -EINVAL;
        cJSON_ArrayForEach(e, j)
        {
                int k;
                if (skip && is_object && e->string && strcmp(e->string, skip) == 0)
                        continue;
                if (is_object && (k = clean_name(rd, e, stats)) < 0)
                        return k;
                k = clean_tree(rd, e, NULL, depth + 1, stats);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* Length of the serialization of j (cJSON_PrintUnformatted). Returns 0 or -ENOMEM. */
static int
measure(const cJSON *j, size_t *ret)
{
        char *s = cJSON_PrintUnformatted(j);

        if (!s)
                return -ENOMEM;
        *ret = strlen(s);
        free(s);
        return 0;
}

/* Bytes cJSON prints for byte c inside a string. */
static size_t
esc_len_byte(unsigned char c)
{
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
                return 2;
        return c < 0x20 ? 6 : 1;
}

static size_t
esc_len(const char *s, size_t n)
{
        size_t e = 0;
        for (size_t i = 0; i < n; i++)
                e += esc_len_byte((unsigned char)s[i]);
        return e;
}

/* The longest prefix of s (well-formed UTF-8, len bytes) whose printed form takes at most
 * budget bytes, never ending inside a character. Returns its length in bytes. */
static size_t
fit_prefix(const char *s, size_t len, size_t budget)
{
        size_t i = 0, used = 0;

        while (i < len) {
                size_t n = ab_utf8_seq_len(s + i, len - i), cost;
                if (n == 0)
                        n = 1; /* cannot happen after repair */
                cost = n == 1 ? esc_len_byte((unsigned char)s[i]) : n;
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
        cJSON *item;    /* the string */
        cJSON *block;   /* its content block */
        bool removable; /* a text block: removed when cut to nothing */
        size_t len, esc, keep;
        char *saved;
};

/* Serialized size of result with every cuttable string emptied. Returns 0 or -ENOMEM. */
static int
measure_emptied(cJSON *result, struct cut *cuts, size_t n, size_t *ret)
{
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
static int
make_error(cJSON *result, const char *msg, size_t max)
{
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
                return 0; /* fits, or nothing to gain */
        cut = strndup(msg, fit_prefix(msg, len, max - (size - esc)));
        if (!cut)
                return -ENOMEM;
        replace_string(text, cut);
        return 0;
}

/* The hint of a cut result: planned is what the note is planned with; fn, when given, writes
 * the one that goes out once the cut is known (hs_hint_fn). */
struct hint {
        const char *planned;
        hs_hint_fn fn;
        void *userdata;
};

/* The hint that goes out, for text_shown bytes of text kept: fn's, or the planned one.
 * Returns 0 with a new string in *ret, -ENOMEM, or -ERANGE when fn's is longer than planned
 * (the note would not fit). */
static int
hint_text(const struct hint *h, size_t text_shown, char **ret)
{
        char *t = h->fn ? h->fn(h->userdata, text_shown) : strdup(h->planned);

        if (!t)
                return -ENOMEM;
        if (strlen(t) > strlen(h->planned)) {
                free(t);
                return -ERANGE;
        }
        *ret = t;
        return 0;
}

/* An isError result saying the result could not be shortened below max bytes. */
static int
make_too_large(cJSON *result, size_t size, size_t max, const char *why, const struct hint *h)
{
        _cleanup_free_ char *hint = NULL;
        char *msg = NULL;
        int k;

        k = hint_text(h, 0, &hint);
        if (k < 0)
                return k;
        if (asprintf(&msg,
                     "The result was withheld: it is %zu bytes, more than this tool's limit of "
                     "%zu bytes, and it cannot be shortened (%s). %s",
                     size, max, why, hint) < 0)
                return -ENOMEM;
        k = make_error(result, msg, max);
        free(msg);
        return k;
}

static int
format_note(char **ret, size_t shown, size_t total, size_t dropped, const char *hint)
{
        char omitted[96] = "";

        if (dropped)
                snprintf(omitted, sizeof(omitted), "; structuredContent (%zu bytes) omitted", dropped);
        if (asprintf(ret, "[truncated: %zu of %zu bytes shown%s. %s]", shown, total, omitted, hint) < 0)
                return -ENOMEM;
        return 0;
}

/* Decide how much of each cut to keep within budget printed bytes, cutting the last
 * first. Returns the text bytes kept. */
static size_t
plan_cuts(struct cut *cuts, size_t n, size_t budget)
{
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

static size_t
digits(size_t v)
{
        size_t d = 1;
        while (v >= 10) {
                v /= 10;
                d++;
        }
        return d;
}

/* Collect the cuttable strings of content, in order. Returns 0 or -ENOMEM. */
static int
collect_cuts(cJSON *content, struct cut **ret, size_t *ret_n)
{
        struct cut *cuts;
        cJSON *b;
        size_t n = 0;

        cJSON_ArrayForEach(b, content) n++;
        cuts = calloc(n ? n : 1, sizeof(*cuts));
        if (!cuts)
                return -ENOMEM;
        n = 0;
        cJSON_ArrayForEach(b, content)
        {
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "type"));
                cJSON *s = NULL;
                bool removable = false;

                if (!type)
                        continue;
                if (strcmp(type, "text") == 0) {
                        s = cJSON_GetObjectItemCaseSensitive(b, "text");
                        removable = true;
                } else if (strcmp(type, "resource") == 0)
                        s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "resource"),
                                                             "text");
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

/* The bytes of text in content's blocks (their "text" members): what a cut result shows. */
static size_t
text_bytes(const cJSON *content)
{
        const cJSON *b;
        size_t n = 0;

        cJSON_ArrayForEach(b, content)
        {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");

                if (cJSON_IsString(t))
                        n += strlen(t->valuestring);
        }
        return n;
}

/* Cut result (serialized size over max) to fit max. See shape.h for the rules. */
static int
truncate_result(cJSON *result, cJSON *content, size_t size, size_t max,
                const struct hs_schema *output_schema, bool is_error, const struct hint *h)
{
        _cleanup_free_ char *hint = NULL;
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
        k = format_note(&note, total, total, 0, h->planned);
        if (k < 0)
                return k;
        note_len = esc_len(note, strlen(note));
        if (structured && base + NOTE_BLOCK_OVERHEAD + note_len > max) {
                /* structuredContent alone does not fit */
                if (output_schema && !is_error)
                        return make_too_large(result, size, max,
                                              "its structuredContent must stay valid against the "
                                              "tool's output schema",
                                              h);
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
        k = format_note(&note, total, total, dropped, h->planned);
        if (k < 0)
                return k;
        note_len = esc_len(note, strlen(note));
        if (base + NOTE_BLOCK_OVERHEAD + note_len > max)
                return make_too_large(result, size, max,
                                      "its content other than text alone exceeds "
                                      "the limit",
                                      h);

        /* The note's length depends on the number shown: plan with room for the longest
         * number (total), then again with the number found while that needs fewer digits
         * and the new plan does not need more. */
        guess = total;
        shown = plan_cuts(cuts, n, max - base - NOTE_BLOCK_OVERHEAD - note_len);
        for (int round = 0; round < 3 && digits(shown) < digits(guess); round++) {
                size_t cand = plan_cuts(cuts, n,
                                        max - base - NOTE_BLOCK_OVERHEAD -
                                                (note_len - (digits(total) - digits(shown))));
                if (digits(cand) > digits(shown))
                        break;
                guess = shown;
                shown = cand;
        }
        shown = plan_cuts(cuts, n,
                          max - base - NOTE_BLOCK_OVERHEAD - (note_len - (digits(total) - digits(guess))));

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
        /* The hint is written now that the text kept is known (at most as long as planned). */
        k = hint_text(h, text_bytes(content), &hint);
        if (k < 0)
                return k;
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
        if (base > max) /* the arithmetic above is exact; never send too much anyway */
                return make_too_large(result, size, max, "it could not be cut to fit", h);
        return 0;
}

/* Whether text is exactly the JSON of structured: it parses as one JSON value followed by
 * nothing but whitespace, and that value equals structured. */
static bool
is_duplicate(const char *text, const cJSON *structured)
{
        cJSON *parsed = cJSON_ParseWithOpts(text, NULL, true);
        bool same = parsed && cJSON_Compare(parsed, structured, true);

        cJSON_Delete(parsed);
        return same;
}

int
hs_redact_result(cJSON *result, const struct hs_redactor *rd, struct hs_redact_stats *stats)
{
        cJSON *content, *structured, *b, *member;
        _cleanup_free_ bool *dup = NULL;
        size_t n_blocks = 0, i = 0;
        int k;

        if (!cJSON_IsObject(result))
                return -EINVAL;
        content = cJSON_GetObjectItemCaseSensitive(result, "content");
        structured = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");

        /* 1. text blocks that repeat structuredContent (the same JSON, exactly) are found
         *    first: they are printed again from the redacted structuredContent */
        if (cJSON_IsArray(content))
                cJSON_ArrayForEach(b, content) n_blocks++;
        dup = calloc(n_blocks ? n_blocks : 1, sizeof(*dup));
        if (!dup)
                return -ENOMEM;
        if (structured && cJSON_IsArray(content)) {
                cJSON_ArrayForEach(b, content)
                {
                        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "type"));
                        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "text"));
                        dup[i++] =
                                type && text && strcmp(type, "text") == 0 && is_duplicate(text, structured);
                }
        }

        /* 2. every other string and member name of the result */
        cJSON_ArrayForEach(member, result)
        {
                if ((k = clean_name(rd, member, stats)) < 0)
                        return k;
                if (member != content || !cJSON_IsArray(content)) {
                        if ((k = clean_tree(rd, member, NULL, 1, stats)) < 0)
                                return k;
                        continue;
                }
                i = 0;
                cJSON_ArrayForEach(b, content)
                {
                        k = clean_tree(rd, b, dup[i++] ? "text" : NULL, 2, stats);
                        if (k < 0)
                                return k;
                }
        }

        /* 3. the duplicates, from structuredContent as it is now */
        i = 0;
        if (structured)
                cJSON_ArrayForEach(b, content)
                {
                        if (dup[i++]) {
                                char *s = cJSON_PrintUnformatted(structured);
                                if (!s)
                                        return -ENOMEM;
                                replace_string(cJSON_GetObjectItemCaseSensitive(b, "text"), s);
                        }
                }
        return 0;
}

int
hs_shape_result(cJSON *result, size_t max_bytes, const struct hs_redactor *rd,
                const struct hs_schema *output_schema, const char *more_hint, bool *ret_truncated)
{
        return hs_shape_result_hinted(result, max_bytes, rd, output_schema, more_hint, NULL, NULL,
                                      ret_truncated);
}

int
hs_shape_result_hinted(cJSON *result, size_t max_bytes, const struct hs_redactor *rd,
                       const struct hs_schema *output_schema, const char *more_hint, hs_hint_fn hint_fn,
                       void *hint_userdata, bool *ret_truncated)
{
        const struct hint h = {
                .planned = more_hint ? more_hint : DEFAULT_HINT,
                .fn = more_hint ? hint_fn : NULL,
                .userdata = hint_userdata,
        };
        cJSON *content, *structured;
        size_t size;
        bool is_error;
        int k;

        if (!cJSON_IsObject(result))
                return -EINVAL;
        content = cJSON_GetObjectItemCaseSensitive(result, "content");
        if (!cJSON_IsArray(content))
                return -EINVAL;
        is_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "isError"));
        if (max_bytes == 0)
                max_bytes = HS_DEFAULT_MAX_RESULT_BYTES;

        /* 1-2. redaction and UTF-8 repair */
        k = hs_redact_result(result, rd, NULL);
        if (k < 0)
                return k;
        structured = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");

        /* 3. structuredContent must match the output schema */
        if (structured && output_schema && !is_error) {
                _cleanup_free_ char *err = NULL, *msg = NULL, *red = NULL;
                k = hs_schema_validate(output_schema, structured, "structuredContent", &err);
                if (k == -ENOMEM)
                        return k;
                if (k < 0) {
                        if (hs_redact_text(rd, err, &red) < 0 ||
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
                k = truncate_result(result, content, size, max_bytes, output_schema, is_error, &h);
                if (k < 0)
                        return k;
        }
        if (ret_truncated)
                *ret_truncated = size > max_bytes;
        return 0;
}
