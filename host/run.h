/* SPDX-License-Identifier: MIT */
/* The MCP tool host's run (host/run.c): broker, run, modules, sandbox, gateway, the transport,
 * the event loop and the teardown, for the options main() parsed. */
#ifndef AB_HOST_RUN_H
#define AB_HOST_RUN_H

#include "host/options.h"

/* Run the host with o until its transport ends or a signal stops it. Returns the exit
 * status (EXIT_SUCCESS or EXIT_FAILURE); failures are logged, or told to the stdio client
 * (host/mcp/failmode.h) when the broker or the run cannot be had. */
int host_run(const struct host_options *o);

#endif /* AB_HOST_RUN_H */
