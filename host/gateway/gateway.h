/* SPDX-License-Identifier: MIT */
/* The MCP gateway: the existing MCP servers policy names (`servers:`, docs/policy.md) run as
 * confined processes of the host, and their tools are served beside the modules' tools as
 * "<server>.<tool>" through the same call pipeline (schema validation, call-begin/call-end at
 * the broker, shaping, caps, redaction). The host is their MCP client (host/gateway/mcpclient.c).
 * docs/gateway.md describes the behaviour. */
#pragma once

#include <systemd/sd-event.h>

#include "host/brokerc/brokerc.h"
#include "host/workers/workers.h"

#define GW_SERVERS_MAX 64 /* servers served */
#define GW_CALLS_MAX 1024 /* calls of one server in flight or waiting for its start */
#define GW_TOOLS_MAX 128  /* tools of one server (pages of tools/list: GW_LIST_PAGES_MAX) */
#define GW_LIST_PAGES_MAX 16
#define GW_TOOL_DESC_MAX 65536  /* bytes of one tool's description (name, schema, text) */
#define GW_START_FAILURES_MAX 5 /* failed starts in a row before a server is unavailable */
#define GW_BACKOFF_MIN_MS 1000  /* restart backoff: doubles per failure up to the max */
#define GW_BACKOFF_MAX_MS 60000
#define GW_STABLE_MS 10000               /* a server up this long resets its failure count */
#define GW_HUNG_TIMEOUTS 3               /* calls timed out in a row, nothing heard: killed */
#define GW_LIST_MIN_INTERVAL_MS 1000     /* tools/list again after list_changed at most this often */
#define GW_PROTOCOL_VERSION "2025-06-18" /* asked for in initialize */

struct gateway;

/* Serve servers (host-config's "servers" object, NULL: none): register the gateway as the
 * registry's external provider and start the servers that start with the host, each with its
 * secrets (server-env) and bounded by its start_timeout_ms (a server that fails is logged and
 * retried with backoff). worker_path: agentbroker-worker, which confines itself and executes
 * the server (--exec). run: the host's run. Returns 0 (*ret NULL when there are no servers)
 * or -errno. */
int gw_new(sd_event *event, struct hw_registry *registry, struct hb_broker *broker, const char *run,
           const char *worker_path, const cJSON *servers, struct gateway **ret);
/* End every call (failure "stopped"), stop the servers (stdin closed, SIGTERM, SIGKILL after
 * a grace), wipe their secrets and free. Call before hw_registry_free(). Accepts NULL. */
void gw_free(struct gateway *gw);
