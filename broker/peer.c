/* SPDX-License-Identifier: MIT */
/* Kernel-attested peer identity (see peer.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker/peer.h"
#include "common/macros.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

static int
sys_pidfd_open(pid_t pid)
{
        return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int
sys_pidfd_send_signal(int pidfd, int sig)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Read /proc/<pid>/<name> into buf (size bytes, NUL-terminated). Returns 0, -ESRCH (gone or
 * empty) or -errno. */
static int
proc_read(pid_t pid, const char *name, char *buf, size_t size)
{
        char path[64];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n <= 0)
                return -ESRCH;
        buf[n] = '\0';
        return 0;
}

int
ab_proc_starttime(pid_t pid, uint64_t *ret)
{
        char buf[1024], *p;
        unsigned long long st;
        int r;

        r = proc_read(pid, "stat", buf, sizeof(buf));
        if (r < 0)
                return r;
        /* The command name may contain spaces and parentheses: skip to the last ')'. */
        p = strrchr(buf, ')');
        if (!p)
                return -EIO;
        /* After ") " come fields 3..; the start time is field 22, i.e. the 20th after ')'. */
        p++;
        for (int field = 3; field < 22; field++) {
                p = strchr(p + 1, ' ');
                if (!p)
                        return -EIO;
        }
        if (sscanf(p, " %llu", &st) != 1)
                return -EIO;
        *ret = st;
        return 0;
}

int
ab_peer_from_socket(int fd, struct ab_peer *ret)
{
        struct ab_peer p = { .pidfd = -1 };
        struct ucred cred;
        socklen_t len = sizeof(cred);
        gid_t groups[AB_PEER_MAX_GROUPS];
        int pidfd = -1;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        if (len != sizeof(cred) || cred.pid <= 0)
                return -EIO;
        p.uid = cred.uid;
        p.gid = cred.gid;
        p.pid = cred.pid;

        len = sizeof(pidfd);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0)
                p.pidfd = pidfd;
        /* The start time is recorded even with a pidfd: it identifies the process in
         * comparisons with processes named by pid (token binding to a worker). */
        if (ab_proc_starttime(p.pid, &p.starttime) < 0 && p.pidfd < 0)
                return -ESRCH;

        len = sizeof(groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
                p.n_groups = len / sizeof(gid_t);
                memcpy(p.groups, groups, p.n_groups * sizeof(gid_t));
        } else if (errno == ERANGE) {
                /* More groups than we track: keep the first AB_PEER_MAX_GROUPS. */
                gid_t *all = malloc(len);
                if (all && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, all, &len) == 0) {
                        p.n_groups = AB_PEER_MAX_GROUPS;
                        memcpy(p.groups, all, sizeof(p.groups));
                }
                free(all);
        }
        *ret = p;
        return 0;
}

int
ab_peer_from_pid(pid_t pid, struct ab_peer *ret, pid_t *ret_ppid)
{
        struct ab_peer p = { .pidfd = -1, .pid = pid };
        char path[64], line[512];
        unsigned long ppid = 0, uid = (unsigned long)-1, gid = (unsigned long)-1;
        _cleanup_close_ int pidfd = -1;
        FILE *f;
        int r;

        if (pid <= 0)
                return -EINVAL;
        /* pidfd first, then /proc: if the pid is reused in between, the liveness check of
         * the pidfd at the end catches it. */
        pidfd = sys_pidfd_open(pid);
        if (pidfd < 0 && errno == ESRCH)
                return -ESRCH;
        r = ab_proc_starttime(pid, &p.starttime);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -ESRCH;
        /* Only three lines matter; match their prefixes before parsing (this runs on every
         * call-begin that names a worker). */
        while (fgets(line, sizeof(line), f) &&
               (ppid == 0 || uid == (unsigned long)-1 || gid == (unsigned long)-1)) {
                if (strncmp(line, "PPid:", 5) == 0)
                        ppid = strtoul(line + 5, NULL, 10);
                else if (strncmp(line, "Uid:", 4) == 0 || strncmp(line, "Gid:", 4) == 0) {
                        char *end;
                        (void)strtoul(line + 4, &end, 10);          /* real id */
                        unsigned long eff = strtoul(end, NULL, 10); /* effective id */
                        if (line[0] == 'U')
                                uid = eff;
                        else
                                gid = eff;
                }
        }
        fclose(f);
        if (uid == (unsigned long)-1 || gid == (unsigned long)-1)
                return -EIO;
        p.uid = (uid_t)uid;
        p.gid = (gid_t)gid;
        if (pidfd >= 0 && sys_pidfd_send_signal(pidfd, 0) < 0 && errno == ESRCH)
                return -ESRCH;
        p.pidfd = AB_TAKE_FD(pidfd);
        *ret = p;
        if (ret_ppid)
                *ret_ppid = (pid_t)ppid;
        return 0;
}

void
ab_peer_clear(struct ab_peer *p)
{
        if (p && p->pidfd >= 0) {
                close(p->pidfd);
                p->pidfd = -1;
        }
}

int
ab_peer_check_alive(const struct ab_peer *p)
{
        uint64_t st;

        if (p->pidfd >= 0) {
                /* Signal 0 through the pidfd: ESRCH once the process has exited, even if
                 * its pid has been reused. EPERM means it exists (another uid). */
                if (sys_pidfd_send_signal(p->pidfd, 0) < 0 && errno == ESRCH)
                        return -ESRCH;
                return 0;
        }
        if (ab_proc_starttime(p->pid, &st) < 0 || st != p->starttime)
                return -ESRCH;
        return 0;
}

bool
ab_peer_same_process(const struct ab_peer *a, const struct ab_peer *b)
{
        struct stat sa, sb;

        if (a->pid != b->pid || a->uid != b->uid)
                return false;
        if (a->starttime && b->starttime && a->starttime != b->starttime)
                return false;
        /* On kernels with pidfs every pidfd of one process shares an inode. */
        if (a->pidfd >= 0 && b->pidfd >= 0 && fstat(a->pidfd, &sa) == 0 && fstat(b->pidfd, &sb) == 0 &&
            sa.st_dev == sb.st_dev && sa.st_ino != sb.st_ino && sa.st_ino > 1 && sb.st_ino > 1)
                return false;
        return true;
}

bool
ab_peer_in_group(const struct ab_peer *p, gid_t gid)
{
        if (p->gid == gid)
                return true;
        for (unsigned i = 0; i < p->n_groups; i++)
                if (p->groups[i] == gid)
                        return true;
        return false;
}

/* Read the unsigned number in /proc/<pid>/<name> into *ret. Returns 0 or -errno. */
static int
proc_read_u32(pid_t pid, const char *name, int64_t *ret)
{
        char buf[32], *end;
        unsigned long long v;
        int r;

        r = proc_read(pid, name, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        v = strtoull(buf, &end, 10);
        if (errno || end == buf || (*end && *end != '\n') || v > UINT32_MAX)
                return -EIO;
        *ret = (int64_t)v;
        return 0;
}

int
ab_peer_login(const struct ab_peer *p, int64_t *ret_uid, int64_t *ret_session)
{
        int64_t uid, ses;
        int r;

        r = proc_read_u32(p->pid, "loginuid", &uid);
        if (r == 0)
                r = proc_read_u32(p->pid, "sessionid", &ses);
        if (r < 0)
                return r;
        /* Read by pid: the numbers are the peer's only if the pid still names it. */
        r = ab_peer_check_alive(p);
        if (r < 0)
                return r;
        *ret_uid = uid;
        *ret_session = ses;
        return 0;
}
