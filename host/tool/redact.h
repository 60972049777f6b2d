/* SPDX-License-Identifier: MIT */
/* The redactor: a set of secret values whose every occurrence (and every encoding) in a text
 * is replaced by "[REDACTED:<name>]". The host keeps one per module worker (host/workers/):
 * the secrets a worker has read are redacted from everything that worker sends, in every MCP
 * session it serves. Values live in locked memory and are wiped. docs/result-shaping.md. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HS_REDACT_MAX 64 /* secrets remembered per redactor (one bit each in a stats mask) */

struct hs_redactor;

/* What a redaction replaced: the number of spans, and which secrets (bit i: the secret at
 * index i, see hs_redactor_name). Stats add up over several texts. */
struct hs_redact_stats {
        uint64_t count;
        uint64_t secrets;
};

int hs_redactor_new(struct hs_redactor **ret);
void hs_redactor_free(struct hs_redactor *rd);
/* Remember value (len bytes) of secret name: its raw form and its base64, base64url, hex
 * (lower and upper case) and URL-encoded forms are redacted from then on (also the base64
 * and base64url characters of value inside a longer base64 text, when at least 8 long).
 * Values shorter than 4 bytes are ignored (too likely to match ordinary text); the same
 * name and value again is a no-op. Returns 0, -EINVAL (name empty, longer than 128 bytes,
 * not UTF-8 or with control characters), -E2BIG (value over 64 KiB), -ENOSPC (already
 * HS_REDACT_MAX values: nothing is ever evicted) or -ENOMEM. */
int hs_redactor_add(struct hs_redactor *rd, const char *name, const unsigned char *value, size_t len);
/* Number of secrets remembered, and the name of the one at index i (NULL past the end). */
size_t hs_redactor_count(const struct hs_redactor *rd);
const char *hs_redactor_name(const struct hs_redactor *rd, size_t i);
/* Replace every occurrence of every remembered form in text with "[REDACTED:<name>]"
 * (left to right, longest match first; a match overlapped by another secret's match is
 * merged with it into "[REDACTED:a][REDACTED:b]"). Growth is capped at max(64 KiB, strlen
 * (text)) bytes: past that, matches are masked with '*' of their own length. r may be NULL.
 * Returns a new string in *ret (or NULL when nothing matched) and 0, or -ENOMEM. */
int hs_redact_text(const struct hs_redactor *rd, const char *text, char **ret);
/* hs_redact_text, adding what was replaced to *stats (may be NULL). */
int hs_redact_text_stats(const struct hs_redactor *rd, const char *text, char **ret,
                         struct hs_redact_stats *stats);
