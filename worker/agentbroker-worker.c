/* SPDX-License-Identifier: MIT */
/* agentbroker-worker: runs one module for agentbroker-mcp. All of it lives in
 * libagentbroker-module (modules/lib/worker.c), the library the module itself links against,
 * so that the module's abm_* calls and the worker share one instance of its state.
 * `agentbroker-worker --sandbox-build` is the host's sandbox builder (host/sandbox/sandbox_build.h). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "host/sandbox/sandbox_build.h"
#include "modules/lib/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define WORKER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_ASAN 1
#endif
#endif

#ifdef WORKER_ASAN
const char *__lsan_default_options(void);

/* The sanitizer build's LeakSanitizer options for this program (the host gives a worker no
 * ASAN_OPTIONS or LSAN_OPTIONS, so these hold): no leak check. At exit LeakSanitizer makes
 * the process dumpable and ptraces it from a helper, which the worker's seccomp filter
 * refuses (modules/lib/confine.c): the filter stays the same as in the normal build, and
 * tests/integration/confine.sh checks its refusals in both builds. */
__attribute__((visibility("default"), used)) const char *
__lsan_default_options(void)
{
        return "detect_leaks=0";
}
#endif

int
main(int argc, char **argv)
{
        /* The host's sandbox builder: a fresh process of the host's uid (host/sandbox/sandbox_build.h). */
        if (argc == 2 && strcmp(argv[1], "--sandbox-build") == 0)
                _exit(sb_build_main(3)); /* (no exit handlers: LeakSanitizer cannot work in its new root) */
        return abm__worker_main(argc, argv);
}
