/* SPDX-License-Identifier: MIT */
/* The `beneath:` argument constraint (docs/policy.md): lexical normalisation of an absolute
 * path and the "is it inside one of these directories" test. See policy.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int
ab_policy_path_normalize(const char *path, char **ret)
{
        size_t len;
        char *out;
        size_t o = 0;

        if (!path || path[0] != '/')
                return -EINVAL;
        len = strlen(path);
        if (len > AB_POLICY_PATH_MAX)
                return -ENAMETOOLONG;
        out = malloc(len + 1);
        if (!out)
                return -ENOMEM;
        /* Walk the components: empty ones (from "//") and "." are dropped, ".." refuses the
         * path (it cannot be resolved without the file system: a symlink may sit before it). */
        for (const char *p = path; *p;) {
                const char *e;
                size_t n;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                e = strchr(p, '/');
                n = e ? (size_t)(e - p) : strlen(p);
                if (n == 2 && p[0] == '.' && p[1] == '.') {
                        free(out);
                        return -EINVAL;
                }
                if (!(n == 1 && p[0] == '.')) {
                        out[o++] = '/';
                        memcpy(out + o, p, n);
                        o += n;
                }
                p += n;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        *ret = out;
        return 0;
}

bool
ab_policy_path_beneath(const char *path, char *const *dirs, size_t n_dirs)
{
        char *norm = NULL;
        bool inside = false;

        if (ab_policy_path_normalize(path, &norm) < 0)
                return false;
        for (size_t i = 0; i < n_dirs && !inside; i++) {
                size_t dl = strlen(dirs[i]);

                if (strcmp(dirs[i], "/") == 0)
                        inside = true;
                else
                        inside = strncmp(norm, dirs[i], dl) == 0 && (norm[dl] == '\0' || norm[dl] == '/');
        }
        free(norm);
        return inside;
}
