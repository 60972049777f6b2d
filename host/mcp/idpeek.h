/* SPDX-License-Identifier: MIT */
/* The JSON-RPC id of a message too large to parse (over MCP_LINE_MAX), read from its first
 * bytes, so that its refusal can name the request the client waits on. */
#pragma once

#include <stddef.h>

#include <cjson/cJSON.h>

#define MCP_ID_PEEK_MAX (64 * 1024) /* bytes of the message looked at */
#define MCP_ID_PEEK_DEPTH 64        /* deepest nesting skipped before the id */

/* Find the top-level "id" member of the JSON object that buf[0..len) begins with (a prefix
 * of the message: the rest may be cut off), looking at no more than MCP_ID_PEEK_MAX bytes.
 * Only the structure is scanned here (strings, nesting, commas); the key and the value are
 * decoded by cJSON. *ret_id is a new string or integer item. Returns 0; -ENOENT when the id
 * is not within the bytes looked at, or is null; -EINVAL when what is there is not a usable
 * id (not an object, an id that is neither a string nor a number, a broken key or value, or no memory to decode
 * it); -E2BIG when
 * nested deeper than MCP_ID_PEEK_DEPTH. */
int mcp_peek_id(const char *buf, size_t len, cJSON **ret_id);
