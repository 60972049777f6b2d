/* SPDX-License-Identifier: MIT */
/* Confinement of a module worker (docs/architecture.md, "Module workers: confinement"):
 * what agentbroker-worker does after the host's init frame and before it loads the module. */
#pragma once

#include <stddef.h>

struct abmi_worker;

/* Connect the worker to the broker (w->broker_path) and pin that connection with
 * worker-hello to the token-presenting operations; drop every capability; set
 * PR_SET_DUMPABLE=0 and PR_SET_NO_NEW_PRIVS=1; install the seccomp filter. An unreachable
 * broker is not an error: the worker serves calls that use no secret, and a call that
 * needs one fails (w->confined set, w->broker NULL). Returns 0, or -errno with the reason
 * in why (the module must then not be loaded). */
int abmi_confine(struct abmi_worker *w, char *why, size_t why_len);
/* The steps of abmi_confine() after the broker connection: capabilities, PR_SET_DUMPABLE=0,
 * PR_SET_NO_NEW_PRIVS=1, the seccomp filter. The filter and no_new_privs survive execve (the
 * MCP servers of host/gateway/gateway.c are started this way, exec.c). Returns 0 or -errno with the
 * reason in why. */
int abmi_confine_process(char *why, size_t why_len);
/* agentbroker-worker --exec --name NAME [--cwd DIR] -- COMMAND [ARG]...: confine this process
 * like a module worker (no broker connection), change to DIR and execve COMMAND with the
 * environment it was given. Returns only on failure (exit status). */
int abmi_exec_main(int argc, char **argv);
