/* agentbroker-worker: runs one module for agentbroker-mcp. All of it lives in
 * libagentbroker-module (modules/lib/worker.c), the library the module itself links against,
 * so that the module's abm_* calls and the worker share one instance of its state. */
#include "config.h"

#include "modules/lib/internal.h"

int
main(int argc, char **argv)
{
        return abm__worker_main(argc, argv);
}
