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
