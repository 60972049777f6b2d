/* SPDX-License-Identifier: MIT */
/* host/net/transports.h for agentbroker-mcp, which serves stdio and links neither
 * libmicrohttpd nor libwebsockets (with GnuTLS, p11-kit, libssl and what else they load, about
 * 4.5 MiB of RSS that the stdio transport never uses): a command line that asks for --http or
 * --tunnel runs agentbroker-mcp-net (host/net/transports.c), the same program with those
 * transports. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macros.h"
#include "host/net/transports.h"

/* Run agentbroker-mcp-net with our command line: the one named by $AGENTBROKER_MCP_NET, else
 * the one beside this program (a build tree), else the installed one. Returns only on failure
 * (-errno, said on stderr). */
static int
exec_net(char **argv)
{
        static const char name[] = "agentbroker-mcp-net";
        const char *env = getenv("AGENTBROKER_MCP_NET");
        char self[4096], beside[4096 + sizeof(name)];
        const char *path = PKGLIBEXECDIR "/agentbroker-mcp-net";
        ssize_t n;

        if (env && *env)
                path = env;
        else if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
                char *slash;

                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        slash[1] = '\0';
                        snprintf(beside, sizeof(beside), "%s%s", self, name);
                        if (access(beside, X_OK) == 0)
                                path = beside;
                }
        }
        execv(path, argv);
        fprintf(stderr, "agentbroker-mcp: --http and --tunnel are served by %s, which cannot be run: %s\n",
                path, strerror(errno));
        return -errno;
}

/* Hand a command line that asks for a network transport to agentbroker-mcp-net. */
int
host_net_redirect(const struct host_options *o, char **argv)
{
        if (host_options_want_net(o))
                return exec_net(argv);
        return 0;
}

/* Nothing to check: the network options went to agentbroker-mcp-net. */
int
host_net_check(struct host_options *o AB_UNUSED)
{
        return 0;
}

/* Not reached (host_net_redirect ran agentbroker-mcp-net): said and refused. */
int
host_net_start(sd_event *event AB_UNUSED, struct hb_broker *broker AB_UNUSED,
               const struct mcp_config *mcfg AB_UNUSED, const struct host_options *o AB_UNUSED,
               struct mcp_server **ret_server AB_UNUSED, struct host_net **ret AB_UNUSED)
{
        log_error(
                "agentbroker-mcp is built without network transports: agentbroker-mcp-net serves --http and "
                "--tunnel");
        return -EOPNOTSUPP;
}

/* Nothing to stop: there is no network transport. */
void
host_net_detach(struct host_net *n AB_UNUSED, struct mcp_server **server AB_UNUSED)
{
}

/* Nothing to free. */
void
host_net_free(struct host_net *n AB_UNUSED, cJSON *run_report AB_UNUSED)
{
}
