/* SPDX-License-Identifier: MIT */
/* The environment of a process the host starts (host/sandbox/env.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/secmem.h"
#include "host/sandbox/env.h"

/* Start e, empty; see env.h. */
int
hs_env_init(struct hs_env *e, size_t max)
{
        char **v = calloc(max + 1, sizeof(*v));

        if (!v)
                return -ENOMEM;
        *e = (struct hs_env){ .envp = v, .max = max };
        return 0;
}

/* Add NAME=value; see env.h. */
int
hs_env_add(struct hs_env *e, const char *name, const void *value, size_t len)
{
        size_t nl = strlen(name);
        char *entry;

        if (e->n >= e->max)
                return -ENOSPC;
        entry = malloc(nl + len + 2);
        if (!entry)
                return -ENOMEM;
        memcpy(entry, name, nl);
        entry[nl] = '=';
        memcpy(entry + nl + 1, value, len);
        entry[nl + 1 + len] = '\0';
        e->envp[e->n++] = entry;
        return 0;
}

/* Add the host's values of names; see env.h. */
int
hs_env_keep(struct hs_env *e, const char *const *names, size_t n, size_t entry_max)
{
        for (size_t i = 0; i < n; i++) {
                const char *v = getenv(names[i]);
                int r;

                if (!v || (entry_max && strlen(names[i]) + 1 + strlen(v) > entry_max))
                        continue;
                r = hs_env_add(e, names[i], v, strlen(v));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Wipe and free; see env.h. */
void
hs_env_done(struct hs_env *e)
{
        if (!e->envp)
                return;
        for (size_t i = 0; i < e->n; i++)
                ab_strfreezero(e->envp[i]);
        free(e->envp);
        *e = (struct hs_env){};
}
