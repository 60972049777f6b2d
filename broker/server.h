/* SPDX-License-Identifier: MIT */
/* agentbrokerd's event loop: the listening socket (own or socket-activated), connections,
 * process-exit watches, signals (SIGHUP reload, SIGTERM/SIGINT stop), housekeeping and the
 * systemd watchdog, around the state the handlers work on (broker/state.h).
 * Single-threaded: requests are answered in arrival order per connection. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker/conn.h"
#include "broker/pidwatch.h"
#include "broker/state.h"

#define AB_CONNS_MAX 1024      /* connections at once (fewer when RLIMIT_NOFILE is low) */
#define AB_CONN_FDS 2          /* descriptors a connection costs: socket and pidfd */
#define AB_FDS_RESERVED 64     /* descriptors kept for everything else (policy, secrets, audit) */
#define AB_ACCEPT_LOG_MS 10000 /* at most one accept warning per interval */
#define AB_CONN_IDLE_MS (300 * 1000)
#define AB_HOUSEKEEPING_MS 1000

struct ab_broker {
        /* configuration */
        char *socket_path;
        bool foreground;

        struct ab_state state; /* what the handlers work on (broker/state.h) */

        /* event loop */
        int epfd, listen_fd, sigfd, timerfd;
        bool listen_activated; /* passed in by systemd: don't unlink the path */
        struct ab_conn *conns;
        size_t n_conns;
        size_t conns_max; /* AB_CONNS_MAX, or less if RLIMIT_NOFILE cannot hold it */
        struct ab_pidwatches pidwatches;
        bool accept_paused; /* out of descriptors: listening socket off until housekeeping */
        uint64_t last_accept_log_ms;
        struct {
                uint64_t refused_full;  /* conns_max reached */
                uint64_t refused_uid;   /* broker.max_connections_per_uid reached */
                uint64_t accept_errors; /* accept4 failed (EMFILE, ENFILE, ENOMEM, ...) */
                uint64_t peer_errors;   /* no peer credentials */
                uint64_t worker_exits;  /* worker connections closed because the worker exited */
                uint64_t pidfd_errors;  /* worker connections without an exit watch */
        } conn_stats;
        uint64_t watchdog_usec; /* 0 = no watchdog */
        uint64_t last_watchdog_ms;
        bool quit;
        char *rbuf; /* receive buffer, AB_MSG_MAX + 1 */
};

/* Set up the listening socket (socket activation or our own), signals and timers.
 * Returns 0 or -errno, with the reason logged. */
int ab_server_setup(struct ab_broker *b);
/* Run until SIGTERM/SIGINT. Returns 0 or -errno. */
int ab_server_run(struct ab_broker *b);
/* Close everything the server opened. Accepts a broker that was never set up. */
void ab_server_teardown(struct ab_broker *b);
