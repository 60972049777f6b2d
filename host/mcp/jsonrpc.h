/* SPDX-License-Identifier: MIT */
/* JSON-RPC 2.0 as the host speaks it: the version string and every error code the host
 * sends or looks at, by name (docs/mcp.md, docs/http.md, docs/tunnel.md). */
#ifndef AB_HOST_MCP_JSONRPC_H
#define AB_HOST_MCP_JSONRPC_H

#define JSONRPC_VERSION "2.0"

/* JSON-RPC 2.0's own codes. */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL_ERROR -32603

/* Implementation-defined server errors (-32000..-32099). */
#define RPC_SESSION_NOT_FOUND -32001 /* HTTP: an Mcp-Session-Id the listener does not know */
#define RPC_OUTCOME_UNKNOWN \
        -32001                      /* tunnel: a call that was running when the host
                                                 * stopped; it is not run again (docs/tunnel.md) */
#define RPC_SERVER_NOT_READY -32002 /* the host cannot serve (host/mcp/failmode.c) */

/* MCP 2026-07-28's codes: -32020..-32099 (HTTP status 400 on the modern transport). */
#define RPC_MCP_RANGE_FIRST -32020
#define RPC_MCP_RANGE_LAST -32099
#define RPC_HEADER_MISMATCH \
        -32020                               /* an Mcp-Method, Mcp-Name or MCP-Protocol-Version
                                                 * header that the body contradicts, or that is missing */
#define RPC_MISSING_CLIENT_CAPABILITY -32021 /* the tool needs a capability the client lacks */
#define RPC_UNSUPPORTED_PROTOCOL_VERSION -32022

#endif /* AB_HOST_MCP_JSONRPC_H */
