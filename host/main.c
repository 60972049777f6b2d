/* SPDX-License-Identifier: MIT */
/* agentbroker-mcp: the MCP tool host. Serves the tools of the module workers on stdio, with
 * every call begun and ended at agentbrokerd (policy, tokens, audit). docs/mcp.md.
 *
 * agentbroker-mcp and agentbroker-mcp-net are this one main(); they differ only in what they
 * link (host/net/transports.h): agentbroker-mcp links host/net/none.c and hands a command line
 * that asks for --http or --tunnel to agentbroker-mcp-net, which links the transports. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/secmem.h"
#include "host/net/transports.h"
#include "host/options.h"
#include "host/run.h"

int
main(int argc, char **argv)
{
        struct host_options o;
        int r;

        ab_log_init("agentbroker-mcp", false);
        /* Non-dumpable before anything is read (docs/architecture.md): no process of the same
         * uid (a module worker among them) may ptrace the host or open its /proc/<pid>/mem, and
         * it leaves no core with redeemed secrets or tokens. Workers re-set it after exec. */
        r = ab_process_harden();
        if (r < 0)
                log_warning("cannot make the host non-dumpable: %s", strerror(-r));
        r = host_options_parse(argc, argv, &o);
        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        if (host_net_redirect(&o, argv) < 0 || host_options_check(&o) < 0 || host_net_check(&o) < 0 ||
            host_options_defaults(&o) < 0)
                return EXIT_FAILURE;
        return host_run(&o);
}
