/* SPDX-License-Identifier: MIT */
/* The builder of a run's sandbox (see sandbox_build.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/sandbox/sandbox_build.h"

#define SB_ROOT_OPTS "mode=0755,size=1m,nr_inodes=4096"

int
sb_write_file(const char *path, const char *buf)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t n;
        size_t len = strlen(buf);

        if (fd < 0)
                return -errno;
        n = write(fd, buf, len);
        if (n < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        close(fd);
        return (size_t)n == len ? 0 : -EIO;
}

/* mkdir -p of every parent of path (a copy on the stack; no allocation). Returns 0 or -errno. */
static int
mkdir_parents(const char *path)
{
        char buf[SB_PATH_MAX];
        size_t len = strlen(path);

        if (len >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(buf, path, len + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

/* The mount flags of an open source that a bind remount must repeat (MNT_LOCK_* in a user
 * namespace): read-only, nosuid, nodev, noexec and the atime flags. */
static unsigned long
locked_flags(int fd)
{
        struct statvfs sv;
        unsigned long f = 0;

        if (fstatvfs(fd, &sv) < 0)
                return 0;
        if (sv.f_flag & ST_RDONLY)
                f |= MS_RDONLY;
        if (sv.f_flag & ST_NOSUID)
                f |= MS_NOSUID;
        if (sv.f_flag & ST_NODEV)
                f |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
                f |= MS_NOEXEC;
        if (sv.f_flag & ST_NOATIME)
                f |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME)
                f |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME)
                f |= MS_RELATIME;
        return f;
}

/* "/proc/self/fd/N" for fd, without snprintf (the builder is a clone of a threaded process). */
static void
fd_path(int fd, char buf[32])
{
        static const char pre[] = "/proc/self/fd/";
        char digits[12];
        size_t n = 0;

        memcpy(buf, pre, sizeof(pre));
        do {
                digits[n++] = (char)('0' + fd % 10);
                fd /= 10;
        } while (fd > 0 && n < sizeof(digits));
        for (size_t i = 0; i < n; i++)
                buf[sizeof(pre) - 1 + i] = digits[n - 1 - i];
        buf[sizeof(pre) - 1 + n] = '\0';
}

/* A proc file system of an empty pid namespace at dst: a user namespace may mount a new proc
 * only where a fully visible one is mounted already (mount_too_revealing()), and after
 * pivot_root the host's is gone. Each worker mounts its own over this one. */
static int
build_proc(const char *dst)
{
        pid_t pid;
        int st;

        if (unshare(CLONE_NEWPID) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ? 1 : 0);
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EPERM;
}

/* One step of the builder, after the staging tmpfs is mounted. Returns 0 or -errno. */
static int
build_step(struct sb_step *s)
{
        char fdp[32];
        int r;

        if (s->skip)
                return 0;
        r = mkdir_parents(s->dst);
        if (r < 0)
                return r;
        switch (s->kind) {
        case ST_LINK: return symlink(s->src, s->dst) < 0 && errno != EEXIST ? -errno : 0;
        case ST_TMPFS:
                if (mkdir(s->dst, 0755) < 0 && errno != EEXIST)
                        return -errno;
                return mount("tmpfs", s->dst, "tmpfs", MS_NOSUID | MS_NODEV, s->src) < 0 ? -errno : 0;
        case ST_PROC:
                if (mkdir(s->dst, 0555) < 0 && errno != EEXIST)
                        return -errno;
                return build_proc(s->dst);
        case ST_BIND:
                if (s->is_dir) {
                        if (mkdir(s->dst, 0755) < 0 && errno != EEXIST)
                                return -errno;
                } else {
                        int fd = open(s->dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

                        if (fd < 0 && errno != EEXIST)
                                return -errno;
                        if (fd >= 0)
                                close(fd);
                }
                fd_path(s->fd, fdp);
                if (mount(fdp, s->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                        return -errno;
                /* Read-only as asked, never setuid, devices only where they are the point. */
                if (mount(NULL, s->dst, NULL,
                          MS_BIND | MS_REMOUNT | MS_NOSUID | (s->ro ? MS_RDONLY : 0) |
                                  (s->nodev ? MS_NODEV : 0) | s->locked,
                          NULL) < 0)
                        return -errno;
                return 0;
        }
        return -EINVAL;
}

/* Report a failure of step on sock; returns the exit status. */
static int
fail(int sock, int step, int err)
{
        struct sb_result res = { .step = step, .err = err ? err : EIO };

        (void)!send(sock, &res, sizeof(res), MSG_NOSIGNAL);
        return 1;
}

/* Read exactly len bytes. Returns 0 or -errno (-EIO at end of file). */
static int
read_all(int fd, void *buf, size_t len)
{
        for (size_t off = 0; off < len;) {
                ssize_t n = read(fd, (char *)buf + off, len - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                off += (size_t)n;
        }
        return 0;
}

int
sb_build_main(int sock)
{
        static const char *const ns_paths[SB_NS_MAX] = { "/proc/self/ns/user", "/proc/self/ns/mnt",
                                                         "/proc/self/ns/ipc", "/proc/self/ns/uts",
                                                         "/proc/self/ns/net" };
        struct sb_plan plan;
        struct sb_step *steps = NULL;
        int fds[SB_NS_MAX + 1], n_fds = 0, r,
                                flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
        char cbuf[CMSG_SPACE(sizeof(fds))], map[64];
        struct sb_result ok = { 0 };
        struct iovec iov = { .iov_base = &ok, .iov_len = sizeof(ok) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        struct cmsghdr *cm;

        /* Dies with the host; it holds nothing of the host's (a fresh exec). */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        r = read_all(sock, &plan, sizeof(plan));
        if (r < 0 || plan.magic != SB_PLAN_MAGIC || plan.n_steps > SB_STEPS_MAX)
                return fail(sock, B_PLAN, r < 0 ? -r : EINVAL);
        steps = calloc(plan.n_steps ? plan.n_steps : 1, sizeof(*steps));
        if (!steps)
                return fail(sock, B_PLAN, ENOMEM);
        r = read_all(sock, steps, plan.n_steps * sizeof(*steps));
        if (r < 0)
                return fail(sock, B_PLAN, -r);
        for (size_t i = 0; i < plan.n_steps; i++) {
                steps[i].dst[SB_PATH_MAX - 1] = steps[i].src[SB_PATH_MAX - 1] = '\0';
                steps[i].fd = -1;
                steps[i].skip = false;
        }

        if (plan.net)
                flags |= CLONE_NEWNET;
        if (unshare(flags) < 0)
                return fail(sock, B_UNSHARE, errno);
        r = sb_write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)plan.uid, (unsigned)plan.uid);
        if (r == 0)
                r = sb_write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)plan.gid, (unsigned)plan.gid);
        if (r == 0)
                r = sb_write_file("/proc/self/gid_map", map);
        if (r < 0)
                return fail(sock, B_MAPS, -r);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return fail(sock, B_PRIVATE, errno);
        if (plan.root) {
                for (size_t i = 0; i < plan.n_steps; i++) {
                        struct sb_step *s = &steps[i];
                        struct stat st;

                        if (s->kind != ST_BIND)
                                continue;
                        s->fd = open(s->src, O_PATH | O_CLOEXEC);
                        if (s->fd < 0) {
                                if (errno == ENOENT && s->optional) {
                                        s->skip = true;
                                        continue;
                                }
                                return fail(sock, (int)i, errno);
                        }
                        if (fstat(s->fd, &st) < 0)
                                return fail(sock, (int)i, errno);
                        s->is_dir = S_ISDIR(st.st_mode);
                        s->locked = locked_flags(s->fd);
                }
                if (mount("tmpfs", SB_STAGE, "tmpfs", MS_NOSUID | MS_NODEV, SB_ROOT_OPTS) < 0)
                        return fail(sock, B_STAGE, errno);
                for (size_t i = 0; i < plan.n_steps; i++) {
                        r = build_step(&steps[i]);
                        if (r < 0)
                                return fail(sock, (int)i, -r);
                }
        }
        for (int i = 0; i < SB_NS_MAX; i++) {
                if (i == SB_NS_NET && !plan.net)
                        continue;
                fds[n_fds] = open(ns_paths[i], O_RDONLY | O_CLOEXEC);
                if (fds[n_fds] < 0)
                        return fail(sock, B_NSOPEN, errno);
                n_fds++;
        }
        if (plan.root && plan.workspace) {
                fds[n_fds] = open(SB_STAGE "/workspace", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fds[n_fds] < 0)
                        return fail(sock, B_NSOPEN, errno);
                n_fds++;
        }
        if (plan.root) {
                if (chdir(SB_STAGE) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
                    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                        return fail(sock, B_PIVOT, errno);
                if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
                    0)
                        return fail(sock, B_RO, errno);
        }
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n_fds);
        ok.step = n_fds;
        if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
                return fail(sock, B_SEND, errno);
        free(steps);
        return 0;
}
