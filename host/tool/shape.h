/* SPDX-License-Identifier: MIT */
/* Result shaping: redact redeemed secrets (host/tool/redact.h), cap the size of a CallToolResult at a UTF-8
 * boundary with a note on how to get the rest, keep structuredContent valid. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

#include "common/limits.h"
#include "host/tool/redact.h"
#include "host/tool/schema.h"

#define HS_DEFAULT_MAX_RESULT_BYTES AB_DEFAULT_MAX_RESULT_BYTES
/* Redact every string a worker put in result, a CallToolResult object, in place: every
 * string value and every object member name at any depth (text, resource text and uri,
 * resource_link uri, annotations, _meta, structuredContent, image data ...), replacing invalid
 * UTF-8 with U+FFFD after redaction. A text block whose text is exactly the JSON of
 * structuredContent (parsed strictly: nothing but whitespace may follow it) is not redacted on
 * its own but replaced by structuredContent printed again, so the two stay the same JSON.
 * stats (may be NULL) gets what was replaced. r may be NULL (only the UTF-8 repair then).
 * Returns 0, -EINVAL (result not an object, or nested deeper than 1000) or -ENOMEM. */
int hs_redact_result(cJSON *result, const struct hs_redactor *rd, struct hs_redact_stats *stats);

/* Shape result, a CallToolResult object ({content:[...], structuredContent?, isError?}) in place:
 *  1. hs_redact_result(result, r, NULL); when output_schema is given and the
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
int hs_shape_result(cJSON *result, size_t max_bytes, const struct hs_redactor *rd,
                    const struct hs_schema *output_schema, const char *more_hint, bool *ret_truncated);

/* Writes the hint of a cut result once the cut is known: text_shown is the number of bytes of
 * text that content's blocks kept (the note not counted; 0 when the whole result is withheld).
 * Returns a new string no longer than the more_hint shaping planned the note with, or NULL
 * when out of memory. */
typedef char *(*hs_hint_fn)(void *userdata, size_t text_shown);

/* hs_shape_result, with the hint written by hint_fn (with hint_userdata) from what the cut
 * kept; more_hint, which must not be NULL for hint_fn to be called, is what the note is
 * planned with, so it must be at least as long as any hint hint_fn writes (e.g. formatted
 * with the widest number). Returns what hs_shape_result returns, or -ERANGE when hint_fn
 * wrote a longer hint. Nothing of the tool's own output is searched or rewritten. */
int hs_shape_result_hinted(cJSON *result, size_t max_bytes, const struct hs_redactor *rd,
                           const struct hs_schema *output_schema, const char *more_hint, hs_hint_fn hint_fn,
                           void *hint_userdata, bool *ret_truncated);
