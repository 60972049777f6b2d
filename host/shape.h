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
 * (lower and upper case) and URL-encoded forms are redacted from then on. Values shorter
 * than 4 bytes are ignored (too likely to match ordinary text). Returns 0, -ENOSPC or -ENOMEM. */
int hs_redactor_add(struct hs_redactor *r, const char *name, const unsigned char *value, size_t len);
/* Replace every occurrence of every remembered form in text with "[REDACTED:<name>]".
 * Returns a new string in *ret (or NULL when nothing matched) and 0, or -ENOMEM. */
int hs_redact_text(const struct hs_redactor *r, const char *text, char **ret);

/* Shape result, a CallToolResult object ({content:[...], structuredContent?, isError?}) in place:
 *  1. redact every text block and every string inside structuredContent;
 *  2. if the serialized result exceeds max_bytes, cut text blocks (last first) at a UTF-8
 *     boundary and append a text block: "[truncated: N of M bytes shown. <more_hint>]";
 *     structuredContent that does not fit is dropped when output_schema is NULL, and when a
 *     schema exists and the result is still too large, the whole result becomes an isError
 *     result explaining the limit (a truncated structuredContent would break the schema).
 * more_hint says how to get the rest (e.g. "Call fs.read_file again with offset=32768."),
 * may be NULL for a generic hint. *ret_truncated tells whether anything was cut.
 * Returns 0 or -ENOMEM. */
int hs_shape_result(cJSON *result, size_t max_bytes, const struct hs_redactor *r,
                    const struct hs_schema *output_schema, const char *more_hint, bool *ret_truncated);
