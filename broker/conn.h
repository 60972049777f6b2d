/* SPDX-License-Identifier: MIT */
/* One client connection of agentbrokerd: what the event loop (broker/server.c) keeps of it and
 * what the handlers (broker/handlers.c) read and set on it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "broker/peer.h"
#include "broker/runs.h"

struct ab_pidwatch;

struct ab_conn {
        int fd;
        struct ab_peer peer;
        uint64_t last_ms;
        bool worker;                     /* pinned by worker-hello to the token-presenting ops */
        struct ab_pidwatch *exit_watch;  /* worker connections: closes this one when the worker exits */
        char own_run[AB_RUN_ID_LEN + 1]; /* the last run opened on this connection, "" = none */
        struct ab_conn *prev, *next;
};
