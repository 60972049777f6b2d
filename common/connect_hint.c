/* SPDX-License-Identifier: MIT */
/* Why a client could not connect to the broker's socket, in words an operator can act on:
 * for a permission error, the group that owns the socket (and may use it). */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/connect_hint.h"

/* Describe a failed connection to the broker's socket at path (err: a negative errno) into
 * buf: for EACCES the socket's group, which the host's user must be a member of. */
void
ab_describe_connect_error(const char *path, int err, char *buf, size_t size)
{
        struct stat st;
        struct group *g;

        if ((err == -EACCES || err == -EPERM) && stat(path, &st) == 0) {
                g = getgrgid(st.st_gid);
                if (g && g->gr_name) {
                        snprintf(buf, size,
                                 "cannot connect to broker at %s: %s: uid %u is not in the group "
                                 "'%s' that may use the socket (usermod -aG %s USER, then log in again; "
                                 "the broker's policy must list the group in clients.groups)",
                                 path, strerror(-err), (unsigned)getuid(), g->gr_name, g->gr_name);
                        return;
                }
        }
        if (err == -ENOENT || err == -ECONNREFUSED)
                snprintf(buf, size,
                         "cannot connect to broker at %s: %s: is agentbrokerd running? "
                         "(systemctl start agentbroker.socket, or agentbrokerd --foreground)",
                         path, strerror(-err));
        else
                snprintf(buf, size, "cannot connect to broker at %s: %s", path, strerror(-err));
}
