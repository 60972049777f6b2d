/* SPDX-License-Identifier: MIT */
/* The environment of a process the host starts (a module worker, agentbroker-egress, an MCP
 * server of the gateway): a few of the host's own variables and entries the caller adds,
 * bounded, every entry wiped when freed (a secret may be one). */
#pragma once

#include <stddef.h>

struct hs_env {
        char **envp; /* NULL-terminated, for exec */
        size_t n;    /* entries */
        size_t max;  /* at most this many */
};

/* Start e, empty, for at most max entries. Returns 0 or -ENOMEM. */
int hs_env_init(struct hs_env *e, size_t max);

/* Add NAME=value (len bytes of value, which need not be a string). Returns 0, -ENOSPC (e is
 * full: nothing added) or -ENOMEM. */
int hs_env_add(struct hs_env *e, const char *name, const void *value, size_t len);

/* Add the host's own value of each of the n names that is set, as NAME=value; with
 * entry_max (not 0), a variable whose entry would be longer than entry_max bytes is left
 * out. Returns 0, -ENOSPC or -ENOMEM. */
int hs_env_keep(struct hs_env *e, const char *const *names, size_t n, size_t entry_max);

/* Wipe and free the entries; e is empty afterwards. Accepts a zeroed e. */
void hs_env_done(struct hs_env *e);
