/* SPDX-License-Identifier: MIT */
/* Aggregated HTTP authentication denials (docs/http.md): a 401 is counted per source (the
 * client's address) and reason, and each (source, reason) is reported once per interval with
 * its count, so a flood of token-less requests costs no broker round trip and no audit
 * record each, and stays visible in the audit trail. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define MCP_HTTP_DENY_INTERVAL_S 10    /* a (source, reason) is reported once per interval */
#define MCP_HTTP_DENY_SLOTS 64         /* (source, reason) pairs counted at once */
#define MCP_HTTP_DENY_SOURCE_MAX 64    /* longest source text kept */
#define MCP_HTTP_DENY_OVERFLOW "other" /* the source of denials past MCP_HTTP_DENY_SLOTS */

struct mcp_http_denials;

/* Report count denials of source with reason, counted over seconds. */
typedef void (*mcp_http_deny_report_fn)(void *userdata, const char *source, const char *reason,
                                        unsigned count, unsigned seconds);

/* A new, empty table. Returns 0 or -ENOMEM. */
int mcp_http_denials_new(struct mcp_http_denials **ret);
/* Free the table (unreported counts are lost: flush first). Accepts NULL. */
void mcp_http_denials_free(struct mcp_http_denials *d);
/* Count one denial; reason must be a static string. When every slot is taken by another pair,
 * it is counted under source MCP_HTTP_DENY_OVERFLOW. */
void mcp_http_denials_note(struct mcp_http_denials *d, const char *source, const char *reason,
                           uint64_t now_usec);
/* Report, and forget, every pair whose interval has passed (all of them when force). */
void mcp_http_denials_flush(struct mcp_http_denials *d, uint64_t now_usec, bool force,
                            mcp_http_deny_report_fn fn, void *userdata);
