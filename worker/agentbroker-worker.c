/* agentbroker-worker: runs one module for agentbroker-mcp. All of it lives in
 * libagentbroker-module (modules/lib/worker.c), the library the module itself links against,
 * so that the module's abm_* calls and the worker share one instance of its state.
 * `agentbroker-worker --sandbox-build` is the host's sandbox builder (host/sandbox/sandbox_build.h). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "host/sandbox/sandbox_build.h"
#include "modules/lib/internal.h"

int
main(int argc, char **argv)
{
        /* The host's sandbox builder: a fresh process of the host's uid (host/sandbox/sandbox_build.h). */
        if (argc == 2 && strcmp(argv[1], "--sandbox-build") == 0)
                _exit(sb_build_main(3));    /* (no exit handlers: LeakSanitizer cannot work in its new root) */
        return abm__worker_main(argc, argv);
}
