/* SPDX-License-Identifier: MIT */
/* agentbroker-worker --exec: start an MCP server (host/gateway/gateway.c) under the confinement of a
 * module worker (confine.c: no capabilities, no_new_privs, the seccomp filter, all of which
 * survive execve) instead of loading a module. The host gives the server's stdin and stdout
 * (pipes), its stderr, and the environment policy names; nothing else is inherited. The
 * server gets no broker connection: it holds no call token. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"
#include "modules/lib/confine.h"
#include "modules/lib/internal.h"

static int
exec_usage(void)
{
        fprintf(stderr, "usage: agentbroker-worker --exec --name SERVER [--cwd DIR] -- COMMAND [ARG]...\n"
                        "Starts one MCP server for agentbroker-mcp; not meant to be started by hand.\n");
        return 2;
}

int
abmi_exec_main(int argc, char **argv)
{
        static const struct option options[] = {
                { "exec", no_argument, NULL, 'e' },
                { "name", required_argument, NULL, 'n' },
                { "cwd", required_argument, NULL, 'd' },
                { NULL, 0, NULL, 0 },
        };
        const char *name = NULL, *cwd = "/";
        char why[256] = "";
        extern char **environ;
        int opt;

        while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
                switch (opt) {
                case 'e': break;
                case 'n': name = optarg; break;
                case 'd': cwd = optarg; break;
                default: return exec_usage();
                }
        }
        if (!name || optind >= argc || argv[optind][0] != '/')
                return exec_usage();
        ab_log_init("agentbroker-worker", false);
        /* Die with the host (kept across execve); it may have died already. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1) {
                ab_log(LOG_ERR, "server %s: the host is gone", name);
                return 1;
        }
        (void)close_range(3, ~0u, 0);
        if (chdir(cwd) < 0) {
                ab_log(LOG_ERR, "server %s: cannot change to %s: %m", name, cwd);
                return 1;
        }
        if (abmi_confine_process(why, sizeof(why)) < 0) {
                ab_log(LOG_ERR, "server %s: %s", name, why);
                return 1;
        }
        execve(argv[optind], argv + optind, environ);
        ab_log(LOG_ERR, "server %s: cannot execute %s: %m", name, argv[optind]);
        return 127;
}
