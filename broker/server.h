/* agentbrokerd's state and event loop: the listening socket (own or socket-activated),
 * connections, signals (SIGHUP reload, SIGTERM/SIGINT stop), housekeeping and the systemd
 * watchdog. Single-threaded: requests are answered in arrival order per connection. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit/audit_log.h"
#include "broker/peer.h"
#include "broker/pidwatch.h"
#include "broker/modreports.h"
#include "broker/runs.h"
#include "broker/secrets.h"
#include "broker/tokens.h"
#include "policy/policy.h"

#define AB_CONNS_MAX 1024               /* connections at once (fewer when RLIMIT_NOFILE is low) */
#define AB_CONN_FDS 2                   /* descriptors a connection costs: socket and pidfd */
#define AB_FDS_RESERVED 64              /* descriptors kept for everything else (policy, secrets, audit) */
#define AB_ACCEPT_LOG_MS 10000          /* at most one accept warning per interval */
#define AB_CONN_IDLE_MS (300 * 1000)
#define AB_HOUSEKEEPING_MS 1000

struct ab_conn {
        int fd;
        struct ab_peer peer;
        uint64_t last_ms;
        bool worker;                   /* pinned by worker-hello to the token-presenting ops */
        struct ab_pidwatch *exit_watch; /* worker connections: closes this one when the worker exits */
        char own_run[AB_RUN_ID_LEN + 1]; /* the last run opened on this connection, "" = none */
        struct ab_conn *prev, *next;
};

struct ab_broker {
        /* configuration */
        char *policy_path;
        char *socket_path;
        bool foreground;

        /* state */
        struct ab_policy *policy;
        struct ab_secret_store *secrets;
        struct ab_audit *audit;
        struct ab_token_table *tokens;
        struct ab_runs *runs;
        struct ab_module_reports *module_reports;   /* what the MCP hosts say of their modules */
        uid_t euid;
        uint64_t started_ms;
        int64_t policy_loaded_at;
        uint64_t next_call_id;

        /* event loop */
        int epfd, listen_fd, sigfd, timerfd;
        bool listen_activated;         /* passed in by systemd: don't unlink the path */
        struct ab_conn *conns;
        size_t n_conns;
        size_t conns_max;              /* AB_CONNS_MAX, or less if RLIMIT_NOFILE cannot hold it */
        struct ab_pidwatches pidwatches;
        bool accept_paused;            /* out of descriptors: listening socket off until housekeeping */
        uint64_t last_accept_log_ms;
        struct {
                uint64_t refused_full;         /* conns_max reached */
                uint64_t refused_uid;          /* broker.max_connections_per_uid reached */
                uint64_t accept_errors;        /* accept4 failed (EMFILE, ENFILE, ENOMEM, ...) */
                uint64_t peer_errors;          /* no peer credentials */
                uint64_t worker_exits;         /* worker connections closed because the worker exited */
                uint64_t pidfd_errors;         /* worker connections without an exit watch */
        } conn_stats;
        uint64_t watchdog_usec;        /* 0 = no watchdog */
        uint64_t last_watchdog_ms;
        bool quit;
        char *rbuf;                    /* receive buffer, AB_MSG_MAX + 1 */
};

/* Load (or reload) the policy at b->policy_path, its secrets and JWKS, and swap them in
 * atomically. On failure the old policy stays and *ret_err (if non-NULL) gets the errors.
 * Writes a policy-load record either way. Returns 0 or -errno. */
int ab_broker_load_policy(struct ab_broker *b, char **ret_err);

/* Watch the process that opened c (a worker, after worker-hello) and close c when it exits.
 * Without a pidfd (old kernel, error: logged and counted), housekeeping checks the process
 * instead. Returns 0 or -errno. */
int ab_server_watch_worker(struct ab_broker *b, struct ab_conn *c);

/* Set up the listening socket (socket activation or our own), signals and timers.
 * Returns 0 or -errno, with the reason logged. */
int ab_server_setup(struct ab_broker *b);
/* Run until SIGTERM/SIGINT. Returns 0 or -errno. */
int ab_server_run(struct ab_broker *b);
/* Close everything the server opened. Accepts a broker that was never set up. */
void ab_server_teardown(struct ab_broker *b);
