/* SPDX-License-Identifier: MIT */
/* Shared set-up of the fuzz targets that drive the MCP core (fuzz_mcp.c, fuzz_tunnel.c): an
 * event loop, an empty module registry (every tool is unknown: nothing is spawned) and a
 * broker connection whose peer is gone (every broker request fails at once), made once per
 * process; and the check every message the host sends must pass: one JSON object in valid
 * UTF-8 with "jsonrpc":"2.0". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "host/brokerc/brokerc.h"
#include "host/workers/workers.h"

struct fuzz_host {
        sd_event *event;
        struct hw_registry *registry;
        struct hb_broker *broker;
};

/* The process's fuzz_host (made on first use; aborts if it cannot be). */
struct fuzz_host *fuzz_host_get(void);
/* Abort unless json[0..len) is a message the host may send (see above). */
void fuzz_host_check_sent(const char *json, size_t len);
/* Call fn(line, len, arg) for every line of data (split at '\n'; a last line without one too). */
void fuzz_host_lines(const unsigned char *data, size_t size,
                     void (*fn)(const char *line, size_t len, void *arg), void *arg);
