/* SPDX-License-Identifier: MIT */
/* JSON-RPC request ids (and progress tokens, and the requestId of a cancellation) echoed
 * exactly as the client sent them, on every transport (stdio, HTTP, the tunnel).
 *
 * cJSON keeps numbers as doubles and prints one with 15 significant digits whenever that is
 * within its relative tolerance of the value, so 9007199254740991 would go back as
 * 9.00719925474099e+15 and a client matching responses by id would never see the answer.
 * An integer id within +-(2^53 - 1) (every such integer is exact in a double) is therefore
 * replaced, right after parsing, by a raw item holding its decimal digits, which cJSON prints
 * verbatim; any other number (fractional, 1e300, 2^64) is not a valid id. */
#pragma once

#include <stdbool.h>
#include <cjson/cJSON.h>

#define MCP_ID_INT_MAX 9007199254740991.0 /* 2^53 - 1: larger integers lose digits */

/* Whether id is a usable request id: a string, an integer number within +-MCP_ID_INT_MAX,
 * or a raw item made by mcp_id_exact(). Never converts an out-of-range double. */
bool mcp_id_valid(const cJSON *id);

/* If obj (may be NULL, or not an object) has a member name that is an integer number within
 * +-MCP_ID_INT_MAX, replace it with a raw item holding its exact decimal text (a string, or
 * any other value, is left as it is). Returns 0 or -ENOMEM. */
int mcp_id_exact(cJSON *obj, const char *name);
