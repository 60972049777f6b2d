/* SPDX-License-Identifier: MIT */
/* agentbroker-mcp's command line (host/options.c): what main() parses before the host runs
 * (host/run.c). */
#ifndef AB_HOST_OPTIONS_H
#define AB_HOST_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "host/net/tunnel/tunnel.h"

#define HOST_MODULES_MAX_DIRS 32
#define HOST_BARE_MAX 8

struct host_options {
        const char *broker_path; /* --broker */
        const char *run_arg;     /* --run, or NULL: the host opens its own run */
        const char *profile_arg; /* --profile */
        const char *worker;      /* --worker, else $AGENTBROKER_WORKER, else the installed one */
        const char *dirs[HOST_MODULES_MAX_DIRS]; /* --modules, else the default directories */
        size_t n_dirs;
        const char *bare[HOST_BARE_MAX + 1]; /* --bare-names, NULL-terminated */
        size_t n_bare;
        size_t page_size;              /* tools/list page ($AGENTBROKER_MCP_PAGE_SIZE), 0: default */
        const char *http_addr;         /* --http */
        bool insecure_no_auth;         /* --insecure-no-auth */
        unsigned session_idle;         /* HTTP session idle time (s), 0: default (host_net_check) */
        struct mcp_tunnel_config tcfg; /* --tunnel and the --tunnel-* options */
};

/* Parse the command line into *ret (--help and --version are answered here). Returns 0 to
 * go on, 1 when the program is done (help or version printed), -EINVAL on a bad command line
 * (said on stderr). */
int host_options_parse(int argc, char **argv, struct host_options *ret);

/* The checks between options that every build makes. Returns 0, or -EINVAL (said on stderr). */
int host_options_check(struct host_options *o);

/* The defaults from the environment: the worker ($AGENTBROKER_WORKER), the tools/list page
 * size ($AGENTBROKER_MCP_PAGE_SIZE), the module directories. Returns 0, or -EINVAL (said on
 * stderr). */
int host_options_defaults(struct host_options *o);

/* A number of 1..max from the environment variable name into *ret (unchanged when the
 * variable is unset or empty). Returns 0, or -EINVAL (said on stderr). */
int host_env_number(const char *name, unsigned long max, unsigned long *ret);

/* Whether the options ask for a network transport (--http, --tunnel and their options). */
bool host_options_want_net(const struct host_options *o);

#endif /* AB_HOST_OPTIONS_H */
