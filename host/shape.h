/* Result shaping: redact redeemed secrets, cap the size of a CallToolResult at a UTF-8
 * boundary with a note on how to get the rest, keep structuredContent valid. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

#include "host/schema.h"

#define HS_DEFAULT_MAX_RESULT_BYTES (32 * 1024)
#define HS_REDACT_MAX 64           /* secrets remembered per run */

/* The set of secret values to redact (per run). Values live in locked memory and are wiped. */
struct hs_redactor;

int hs_redactor_new(struct hs_redactor **ret);
void hs_redactor_free(struct hs_redactor *r);
/* Remember value (len bytes) of secret name: its raw form and its base64, base64url, hex
 * (lower and upper case) and URL-encoded forms are redacted from then on (also the base64
 * and base64url characters of value inside a longer base64 text, when at least 8 long).
 * Values shorter than 4 bytes are ignored (too likely to match ordinary text); the same
 * name and value again is a no-op. Returns 0, -EINVAL (name empty, longer than 128 bytes,
 * not UTF-8 or with control characters), -E2BIG (value over 64 KiB), -ENOSPC (already
 * HS_REDACT_MAX values) or -ENOMEM. */
int hs_redactor_add(struct hs_redactor *r, const char *name, const unsigned char *value, size_t len);
/* Replace every occurrence of every remembered form in text with "[REDACTED:<name>]"
 * (left to right, longest match first; a match overlapped by another secret's match is
 * merged with it into "[REDACTED:a][REDACTED:b]"). Growth is capped at max(64 KiB, strlen
 * (text)) bytes: past that, matches are masked with '*' of their own length. r may be NULL.
 * Returns a new string in *ret (or NULL when nothing matched) and 0, or -ENOMEM. */
int hs_redact_text(const struct hs_redactor *r, const char *text, char **ret);

/* Shape result, a CallToolResult object ({content:[...], structuredContent?, isError?}) in place:
 *  1. redact every text block, embedded resource text and string value (not names) inside
 *     structuredContent, replacing invalid UTF-8 with U+FFFD on the way; a text block that
 *     is the same JSON as structuredContent is printed again from the redacted
 *     structuredContent (so the two stay the same); when output_schema is given and the
 *     result is not an error, structuredContent is validated and, if invalid, the result
 *     becomes an isError result saying why (*ret_truncated false);
 *  2. if the serialized result exceeds max_bytes, cut text blocks (last first) at a UTF-8
 *     boundary and append a text block: "[truncated: N of M bytes shown. <more_hint>]";
 *     structuredContent that does not fit is dropped when output_schema is NULL, and when a
 *     schema exists and the result is still too large, the whole result becomes an isError
 *     result explaining the limit (a truncated structuredContent would break the schema).
 * N and M count bytes of the text blocks' (and resource texts') text; when structuredContent
 * was dropped the note also says "; structuredContent (K bytes) omitted". Text blocks cut to
 * nothing are removed. max_bytes 0 means HS_DEFAULT_MAX_RESULT_BYTES.
 * more_hint says how to get the rest (e.g. "Call fs.read_file again with offset=32768."),
 * may be NULL for a generic hint. *ret_truncated (may be NULL) tells whether anything was
 * cut. r may be NULL (nothing to redact). Returns 0, -EINVAL (result not an object with a
 * content array) or -ENOMEM; after an error the result must not be sent. */
int hs_shape_result(cJSON *result, size_t max_bytes, const struct hs_redactor *r,
                    const struct hs_schema *output_schema, const char *more_hint, bool *ret_truncated);
