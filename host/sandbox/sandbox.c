/* SPDX-License-Identifier: MIT */
/* The run's sandbox (see sandbox.h). Three kinds of short-lived children of the host do the
 * work, each a raw clone3() of the (possibly multithreaded) host, so they use system calls
 * only, on data prepared before the clone:
 *
 *   the builder (once per run): created in a new user, mount, ipc, uts (and, for network
 *     "none", net) namespace; maps the host's uid and gid to themselves, makes every mount
 *     private and, with a profile, builds the root file system on a tmpfs and pivots into it;
 *     then sends the namespaces (and the workspace) to the host as descriptors and exits. The
 *     host holds those descriptors for the run's life; nothing else keeps the namespaces, so
 *     when the host and its workers are gone the kernel frees them, the workspace tmpfs
 *     with them.
 *   the joiner (once per worker): enters the run's namespaces with setns() (it is
 *     single-threaded; the host may not be), then clone3(CLONE_PARENT | CLONE_NEWPID |
 *     CLONE_NEWNS) creates the worker as the host's own child, reports its pid and exits.
 *   the worker, from its first instruction pid 1 of a new pid namespace: PR_SET_PDEATHSIG,
 *     setsid(), a fresh /proc for its pid namespace, waits until the host has put it into
 *     the run's cgroup, then sets up its descriptors and execs the worker binary. */
#include "config.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/spawn.h"
#include "host/sandbox/sandbox.h"
#include "host/sandbox/sandbox_build.h"

#define SB_FD_BASE 16          /* the host's helper descriptors live at >= this */
#define SB_RPATHS_MAX 8        /* DT_RUNPATH/DT_RPATH entries of the worker binary bound */
#define SB_ELF_MAX (64u << 20) /* largest worker binary whose ELF header is read */

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define NS_MAX SB_NS_MAX
#define NS_NET SB_NS_NET
#define SB_BUILD_TIMEOUT_MS 10000 /* the builder must answer within this */
#define SB_STACK (256 * 1024)     /* the joiner's and the worker's stacks until its exec */

/* The joiner and the worker run on stacks of their own in the host's memory: keep
 * AddressSanitizer's stack bookkeeping out of them (posix_spawn's child is not instrumented
 * either). */
#if defined(__SANITIZE_ADDRESS__)
#define SB_NO_ASAN __attribute__((no_sanitize_address))
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_NO_ASAN __attribute__((no_sanitize_address))
#endif
#endif
#ifndef SB_NO_ASAN
#define SB_NO_ASAN
#endif
static const char *const ns_names[NS_MAX] = { "user", "mnt", "ipc", "uts", "net" };
static const int ns_types[NS_MAX] = { CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET };

struct hs_sandbox {
        int ns[NS_MAX];   /* -1: not unshared (net without a profile) */
        int workspace_fd; /* the workspace's root directory, or -1 */
        struct hcg *cg;
        int cg_procs[HCG_PROCS_MAX]; /* the run cgroup's cgroup.procs files, open for writing */
        size_t n_cg_procs;
        void *stacks; /* the joiner's and the worker's stacks (SB_STACK each) */
        char *profile;
        bool has_root;
};

/* Steps of the worker and the joiner, for messages. */
enum {
        W_SETNS = 1000, /* + ns index */
        W_CLONE = 1100,
        W_PDEATHSIG,
        W_SETSID,
        W_PROC,
        W_CGROUP,
        W_FDS,
        W_EXEC,
};

/* ---------- the plan of the root file system (prepared in the host) ---------- */

struct plan {
        struct sb_step *steps;
        size_t n;
};

static struct sb_step *
plan_add(struct plan *p, enum sb_step_kind kind, const char *inside, const char *src)
{
        struct sb_step *s;

        if (p->n >= SB_STEPS_MAX || strlen(inside) + strlen(SB_STAGE) >= SB_PATH_MAX ||
            (src && strlen(src) >= SB_PATH_MAX))
                return NULL;
        s = &p->steps[p->n++];
        memset(s, 0, sizeof(*s));
        s->kind = kind;
        s->fd = -1;
        snprintf(s->dst, sizeof(s->dst), "%s%s", SB_STAGE, inside);
        if (src)
                snprintf(s->src, sizeof(s->src), "%s", src);
        return s;
}

/* Bind host path into the root at the same path, read-only (a symbolic link at the top, as
 * /lib -> usr/lib on merged-/usr systems, is copied as a link). */
static int
plan_system(struct plan *p, const char *path, bool optional)
{
        char link[SB_PATH_MAX];
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        struct sb_step *s;

        if (n > 0) {
                link[n] = '\0';
                s = plan_add(p, ST_LINK, path, link);
        } else {
                s = plan_add(p, ST_BIND, path, path);
                if (s) {
                        s->ro = true;
                        s->nodev = true;
                        s->optional = optional;
                }
        }
        return s ? 0 : -E2BIG;
}

/* Is path below (or equal to) dir? */
static bool
path_below(const char *path, const char *dir)
{
        size_t n = strlen(dir);

        return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool
under_system(const char *path)
{
        static const char *const sys[] = { "/usr", "/lib", "/lib64", "/lib32", "/libx32" };

        for (size_t i = 0; i < AB_ELEMENTSOF(sys); i++)
                if (path_below(path, sys[i]))
                        return true;
        return false;
}

/* The DT_RUNPATH/DT_RPATH directories of the ELF file at path ($ORIGIN expanded), so that a
 * worker linked against a library outside the system directories (the build tree's) finds
 * it inside the root. Returns the count found (at most max) or -errno. */
static int
elf_rpaths(const char *path, char out[][SB_PATH_MAX], size_t max)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        const unsigned char *map;
        const Elf64_Ehdr *eh;
        const Elf64_Phdr *ph;
        const Elf64_Dyn *dyn = NULL;
        size_t n_dyn = 0, n = 0;
        uint64_t strtab = 0, strtab_off = 0;
        char origin[PATH_MAX], *slash;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size < (off_t)sizeof(Elf64_Ehdr) || (uint64_t)st.st_size > SB_ELF_MAX)
                return 0;
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return -errno;
        eh = (const Elf64_Ehdr *)map;
        if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
            eh->e_phoff > (uint64_t)st.st_size || eh->e_phnum > 64 ||
            eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > (uint64_t)st.st_size)
                goto done;
        ph = (const Elf64_Phdr *)(map + eh->e_phoff);
        for (size_t i = 0; i < eh->e_phnum; i++)
                if (ph[i].p_type == PT_DYNAMIC && ph[i].p_offset + ph[i].p_filesz <= (uint64_t)st.st_size) {
                        dyn = (const Elf64_Dyn *)(map + ph[i].p_offset);
                        n_dyn = ph[i].p_filesz / sizeof(Elf64_Dyn);
                }
        for (size_t i = 0; i < n_dyn && dyn[i].d_tag != DT_NULL; i++)
                if (dyn[i].d_tag == DT_STRTAB)
                        strtab = dyn[i].d_un.d_ptr;
        /* The string table's address is virtual: find its file offset through PT_LOAD. */
        for (size_t i = 0; i < eh->e_phnum && strtab; i++)
                if (ph[i].p_type == PT_LOAD && strtab >= ph[i].p_vaddr &&
                    strtab < ph[i].p_vaddr + ph[i].p_filesz)
                        strtab_off = strtab - ph[i].p_vaddr + ph[i].p_offset;
        if (!strtab_off)
                goto done;
        if (strlen(path) >= SB_PATH_MAX / 2)
                goto done;
        memcpy(origin, path, strlen(path) + 1);
        slash = strrchr(origin, '/');
        if (slash)
                *slash = '\0';
        for (size_t i = 0; i < n_dyn && dyn[i].d_tag != DT_NULL; i++) {
                const char *s, *end;

                if (dyn[i].d_tag != DT_RUNPATH && dyn[i].d_tag != DT_RPATH)
                        continue;
                if (strtab_off + dyn[i].d_un.d_val >= (uint64_t)st.st_size)
                        continue;
                s = (const char *)map + strtab_off + dyn[i].d_un.d_val;
                end = memchr(s, '\0', (size_t)st.st_size - (strtab_off + dyn[i].d_un.d_val));
                if (!end)
                        continue;
                while (*s && n < max) {
                        size_t len = strcspn(s, ":");

                        if (len > 0 && len < SB_PATH_MAX / 2) {
                                size_t ol = strlen(origin);

                                if (strncmp(s, "$ORIGIN", 7) == 0) {
                                        memcpy(out[n], origin, ol);
                                        memcpy(out[n] + ol, s + 7, len - 7);
                                        out[n][ol + len - 7] = '\0';
                                } else {
                                        memcpy(out[n], s, len);
                                        out[n][len] = '\0';
                                }
                                if (out[n][0] == '/')
                                        n++;
                        }
                        s += len;
                        if (*s == ':')
                                s++;
                }
        }
done:
        munmap((void *)map, (size_t)st.st_size);
        return (int)n;
}

/* The root file system of a profile, in the order the builder creates it. */
static int
plan_root(struct plan *p, const struct hs_profile *pr, const char *worker_path, const char *broker_path,
          char *why, size_t why_len)
{
        static const char *const devs[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                            "/dev/urandom" };
        char rp[SB_RPATHS_MAX][SB_PATH_MAX];
        char real[PATH_MAX];
        struct sb_step *s;
        int n, r = 0;

        r = plan_system(p, "/usr", false);
        if (r == 0)
                r = plan_system(p, "/lib", true);
        if (r == 0)
                r = plan_system(p, "/lib64", true);
        if (r == 0)
                r = plan_system(p, "/lib32", true);
        if (r == 0)
                r = plan_system(p, "/libx32", true);
        if (r == 0) {
                s = plan_add(p, ST_BIND, "/etc/ld.so.cache", "/etc/ld.so.cache");
                if (s) {
                        s->ro = s->optional = s->nodev = true;
                } else
                        r = -E2BIG;
        }
        for (size_t i = 0; r == 0 && i < AB_ELEMENTSOF(devs); i++) {
                s = plan_add(p, ST_BIND, devs[i], devs[i]);
                if (!s)
                        r = -E2BIG;
        }
        if (r < 0)
                goto toolong;
        if (!realpath(worker_path, real)) {
                r = -errno;
                snprintf(why, why_len, "the worker %s: %s", worker_path, strerror(-r));
                return r;
        }
        if (!under_system(real)) {
                s = plan_add(p, ST_BIND, real, real);
                if (!s)
                        goto toolong;
                s->ro = s->nodev = true;
        }
        n = elf_rpaths(real, rp, SB_RPATHS_MAX);
        for (int i = 0; i < n; i++) {
                char rr[PATH_MAX];

                if (!realpath(rp[i], rr) || under_system(rr))
                        continue;
                s = plan_add(p, ST_BIND, rr, rr);
                if (!s)
                        goto toolong;
                s->ro = s->nodev = s->optional = true;
        }
        if (broker_path) {
                if (!realpath(broker_path, real)) {
                        r = -errno;
                        snprintf(why, why_len, "the broker socket %s: %s", broker_path, strerror(-r));
                        return r;
                }
                s = plan_add(p, ST_BIND, real, real);
                if (!s)
                        goto toolong;
                s->nodev = true;
        }
        for (size_t i = 0; i < pr->n_mounts; i++) {
                s = plan_add(p, ST_BIND, pr->mounts[i].target, pr->mounts[i].source);
                if (!s)
                        goto toolong;
                s->ro = pr->mounts[i].read_only;
                s->nodev = true;
        }
        if (pr->workspace_bytes) {
                char opts[64];

                snprintf(opts, sizeof(opts), "mode=0700,size=%llu", (unsigned long long)pr->workspace_bytes);
                if (!plan_add(p, ST_TMPFS, "/workspace", opts) || !plan_add(p, ST_LINK, "/tmp", "workspace"))
                        goto toolong;
        }
        if (!plan_add(p, ST_PROC, "/proc", NULL))
                goto toolong;
        return 0;
toolong:
        snprintf(why, why_len, "the sandbox's root has too many mounts or too long a path");
        return -E2BIG;
}

/* Describe a builder step for a message. */
static void
describe_step(const struct plan *p, int step, char *buf, size_t len)
{
        if (step >= 0 && (size_t)step < p->n) {
                const struct sb_step *s = &p->steps[step];
                static const char *const kinds[] = { "bind", "symlink", "tmpfs", "proc" };

                snprintf(buf, len, "%s %s -> %s", kinds[s->kind], s->kind == ST_TMPFS ? "" : s->src,
                         s->dst + strlen(SB_STAGE));
                return;
        }
        switch (step) {
        case B_PLAN: snprintf(buf, len, "reading the plan"); break;
        case B_UNSHARE:
                snprintf(buf, len,
                         "unshare(user, mount, ipc, uts, net) (are unprivileged user namespaces allowed? "
                         "user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns)");
                break;
        case B_MAPS: snprintf(buf, len, "writing the uid/gid maps"); break;
        case B_PRIVATE: snprintf(buf, len, "making mounts private"); break;
        case B_STAGE: snprintf(buf, len, "mounting the root tmpfs"); break;
        case B_NSOPEN: snprintf(buf, len, "opening the namespaces"); break;
        case B_PIVOT: snprintf(buf, len, "pivot_root"); break;
        case B_RO: snprintf(buf, len, "making the root read-only"); break;
        case B_SEND: snprintf(buf, len, "sending the namespaces"); break;
        default: snprintf(buf, len, "step %d", step); break;
        }
}

static int
fd_high(int fd)
{
        int n;

        if (fd < 0 || fd >= SB_FD_BASE)
                return fd;
        n = fcntl(fd, F_DUPFD_CLOEXEC, SB_FD_BASE);
        close(fd);
        return n < 0 ? -errno : n;
}

/* Wait for a child of ours that exits at once. */
static void
reap(pid_t pid)
{
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

/* Write all of buf to a stream socket. Returns 0 or -errno. */
static int
send_all(int fd, const void *buf, size_t len)
{
        for (size_t off = 0; off < len;) {
                ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                off += (size_t)n;
        }
        return 0;
}

/* Start `worker_path --sandbox-build` with sock as its fd 3 (sandbox_build.h). */
static int
spawn_builder(const char *worker_path, int sock, pid_t *ret_pid)
{
        char *argv[] = { (char *)worker_path, (char *)"--sandbox-build", NULL };
        char *envp[] = { (char *)SB_BUILDER_ENV "=1", NULL };

        return ab_spawn_helper(worker_path, argv, envp, sock, ret_pid);
}

int
hs_sandbox_new(const struct hs_profile *profile, const char *run, const char *worker_path,
               const char *broker_path, char *why, size_t why_len, struct hs_sandbox **ret)
{
        struct hs_sandbox *sb = NULL;
        struct plan plan = { 0 };
        char desc[SB_PATH_MAX + 64];
        int sv[2] = { -1, -1 }, r;
        bool net = profile && profile->network_none;
        pid_t pid;

        /* A worker program that does not know --sandbox-build and starts a registry of its own
         * (a test binary) would start builders without end: its builder refuses to. */
        if (getenv(SB_BUILDER_ENV)) {
                snprintf(why, why_len, "%s does not know --sandbox-build (it started a host of its own)",
                         worker_path);
                return -ELOOP;
        }
        snprintf(why, why_len, "out of memory");
        sb = calloc(1, sizeof(*sb));
        if (!sb)
                return -ENOMEM;
        for (int i = 0; i < NS_MAX; i++)
                sb->ns[i] = -1;
        sb->workspace_fd = -1;
        sb->stacks = mmap(NULL, 2 * SB_STACK, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (sb->stacks == MAP_FAILED) {
                sb->stacks = NULL;
                r = -errno;
                goto out;
        }
        if (profile) {
                sb->profile = strdup(profile->name ? profile->name : "");
                if (!sb->profile) {
                        r = -ENOMEM;
                        goto out;
                }
                plan.steps = calloc(SB_STEPS_MAX, sizeof(*plan.steps));
                if (!plan.steps) {
                        r = -ENOMEM;
                        goto out;
                }
                r = plan_root(&plan, profile, worker_path, broker_path, why, why_len);
                if (r < 0)
                        goto out;
                sb->has_root = true;
                if (profile->limits.memory_bytes || profile->limits.pids || profile->limits.cpu_millis) {
                        r = hcg_create(run, &profile->limits, why, why_len, &sb->cg);
                        if (r < 0)
                                goto out;
                        r = hcg_open_procs(sb->cg, sb->cg_procs);
                        if (r < 0) {
                                snprintf(why, why_len, "cannot open the run cgroup's cgroup.procs: %s",
                                         strerror(-r));
                                goto out;
                        }
                        sb->n_cg_procs = (size_t)r;
                }
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                snprintf(why, why_len, "socketpair: %s", strerror(-r));
                goto out;
        }
        r = spawn_builder(worker_path, sv[1], &pid);
        if (r < 0) {
                snprintf(why, why_len, "cannot start the sandbox builder %s --sandbox-build: %s",
                         worker_path, strerror(-r));
                goto out;
        }
        close(sv[1]);
        sv[1] = -1;
        {
                struct sb_plan hdr = { .magic = SB_PLAN_MAGIC,
                                       .n_steps = (uint32_t)plan.n,
                                       .root = sb->has_root,
                                       .net = net,
                                       .workspace = profile && profile->workspace_bytes,
                                       .uid = geteuid(),
                                       .gid = getegid() };
                struct sb_result e = { .step = -1 };
                int fds[NS_MAX + 1];
                char cbuf[CMSG_SPACE(sizeof(fds))];
                struct iovec iov = { .iov_base = &e, .iov_len = sizeof(e) };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)
                };
                struct pollfd pfd = { .fd = sv[0], .events = POLLIN };
                struct cmsghdr *cm;
                ssize_t n;
                size_t n_fds = 0;

                n = send_all(sv[0], &hdr, sizeof(hdr));
                if (n == 0 && plan.n)
                        n = send_all(sv[0], plan.steps, plan.n * sizeof(*plan.steps));
                /* The builder joins the run's cgroup (v1: its first hierarchy only, not the cpu
                 * group) while it builds. A write to cgroup.procs waits for an RCU grace period
                 * (cgroup_threadgroup_rwsem, one for every hierarchy; about 10 ms on the loaded
                 * test VMs) unless another write came just before: this one overlaps the
                 * builder's work, and the first worker's own joins right after are then quick.
                 * Best effort: the worker joins by itself in any case. */
                if (sb->n_cg_procs > 0)
                        (void)dprintf(sb->cg_procs[0], "%d", (int)pid);
                /* (A failed send: the builder's answer says why.) */
                if (poll(&pfd, 1, SB_BUILD_TIMEOUT_MS) != 1)
                        (void)kill(pid, SIGKILL);
                do
                        n = recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                while (n < 0 && errno == EINTR);
                reap(pid);
                cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
                if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                        n_fds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        memcpy(fds, CMSG_DATA(cm), n_fds * sizeof(int));
                }
                if (n != (ssize_t)sizeof(e) || e.err != 0 || n_fds == 0 || (size_t)e.step != n_fds) {
                        for (size_t i = 0; i < n_fds; i++)
                                close(fds[i]);
                        r = n == (ssize_t)sizeof(e) && e.err ? -e.err : -EIO;
                        describe_step(&plan, e.step, desc, sizeof(desc));
                        snprintf(why, why_len, "cannot build the run's sandbox: %s: %s",
                                 n == (ssize_t)sizeof(e) ? desc : "the builder exited without an answer",
                                 strerror(-r));
                        goto out;
                }
                for (int i = 0, k = 0; i < NS_MAX; i++) {
                        if (i == NS_NET && !net)
                                continue;
                        sb->ns[i] = fd_high(fds[k++]);
                }
                if (n_fds > (size_t)(NS_MAX - (net ? 0 : 1)))
                        sb->workspace_fd = fd_high(fds[n_fds - 1]);
        }
        for (int i = 0; i < NS_MAX; i++)
                if (sb->ns[i] < -1) {
                        r = sb->ns[i];
                        snprintf(why, why_len, "fcntl: %s", strerror(-r));
                        goto out;
                }
        *ret = AB_TAKE_PTR(sb);
        r = 0;
out:
        for (int i = 0; i < 2; i++)
                if (sv[i] >= 0)
                        close(sv[i]);
        free(plan.steps);
        hs_sandbox_free(sb);
        return r;
}

/* A non-negative integer member of o no larger than max, into *ret. */
static bool
json_uint(const cJSON *o, const char *name, double max, uint64_t *ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
            v->valuedouble != (double)(uint64_t)v->valuedouble)
                return false;
        *ret = (uint64_t)v->valuedouble;
        return true;
}

int
hs_sandbox_new_json(const cJSON *profile, const char *run, const char *worker_path, const char *broker_path,
                    char *why, size_t why_len, struct hs_sandbox **ret)
{
        struct hs_mount mounts[HS_MOUNTS_MAX];
        struct hs_profile pr = { .mounts = mounts };
        const cJSON *m, *name = cJSON_GetObjectItemCaseSensitive(profile, "name"),
                        *net = cJSON_GetObjectItemCaseSensitive(profile, "network"),
                        *list = cJSON_GetObjectItemCaseSensitive(profile, "mounts");
        uint64_t cpu = 0;
        const char *bad = NULL;

        if (!cJSON_IsString(name))
                bad = "name";
        else if (!cJSON_IsString(net) ||
                 (strcmp(net->valuestring, "none") != 0 && strcmp(net->valuestring, "host") != 0))
                bad = "network";
        else if (!json_uint(profile, "workspace_bytes", 1e15, &pr.workspace_bytes))
                bad = "workspace_bytes";
        else if (!json_uint(profile, "memory_bytes", 1e15, &pr.limits.memory_bytes))
                bad = "memory_bytes";
        else if (!json_uint(profile, "pids", AB_PID_MAX_LIMIT, &pr.limits.pids))
                bad = "pids";
        else if (!json_uint(profile, "cpu_millis", 1024000, &cpu))
                bad = "cpu_millis";
        else if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > HS_MOUNTS_MAX)
                bad = "mounts";
        if (bad)
                list = NULL;
        cJSON_ArrayForEach(m, list)
        {
                const cJSON *src = cJSON_GetObjectItemCaseSensitive(m, "source"),
                            *dst = cJSON_GetObjectItemCaseSensitive(m, "target"),
                            *ro = cJSON_GetObjectItemCaseSensitive(m, "read_only");

                if (!cJSON_IsString(src) || src->valuestring[0] != '/' || !cJSON_IsString(dst) ||
                    dst->valuestring[0] != '/' || !cJSON_IsBool(ro)) {
                        bad = "mounts";
                        break;
                }
                mounts[pr.n_mounts++] = (struct hs_mount){ .source = src->valuestring,
                                                           .target = dst->valuestring,
                                                           .read_only = cJSON_IsTrue(ro) };
        }
        if (bad) {
                snprintf(why, why_len, "the broker's profile has a malformed %s", bad);
                return -EBADMSG;
        }
        pr.name = name->valuestring;
        pr.network_none = strcmp(net->valuestring, "none") == 0;
        pr.limits.cpu_millis = (unsigned)cpu;
        return hs_sandbox_new(&pr, run, worker_path, broker_path, why, why_len, ret);
}

void
hs_sandbox_free(struct hs_sandbox *sb)
{
        if (!sb)
                return;
        for (int i = 0; i < NS_MAX; i++)
                if (sb->ns[i] >= 0)
                        close(sb->ns[i]);
        if (sb->workspace_fd >= 0)
                close(sb->workspace_fd);
        for (size_t i = 0; i < sb->n_cg_procs; i++)
                close(sb->cg_procs[i]);
        if (sb->stacks)
                munmap(sb->stacks, 2 * SB_STACK);
        if (sb->cg) {
                unsigned k, l;

                (void)hcg_kill(sb->cg, &k, &l);
                (void)hcg_remove(sb->cg);
        }
        hcg_free(sb->cg);
        free(sb->profile);
        free(sb);
}

/* ---------- workers ---------- */

/* What the joiner and the worker share with the host (CLONE_VM): set up before, read after. */
struct spawn_ctx {
        const struct hs_sandbox *sb;
        const char *path;
        char *const *argv, *const *envp;
        struct hs_spawn_fds fds;
        int devnull;
        char *worker_stack;
        pid_t pid;     /* the worker, as the joiner created it */
        int step, err; /* the first failure */
};

/* The worker (see the top of this file), sharing the host's memory until its exec like a
 * posix_spawn child: system calls only. Returns only on failure (then _exit). */
static int SB_NO_ASAN
worker_fn(void *arg)
{
        struct spawn_ctx *c = arg;
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t none;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
                c->step = W_PDEATHSIG;
                goto fail;
        }
        c->step = W_SETSID;
        if (setsid() < 0)
                goto fail;
        c->step = W_PROC;
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                goto fail;
        /* Into the run's cgroup ("0": the writer itself) before any module code runs. */
        c->step = W_CGROUP;
        for (size_t i = 0; i < c->sb->n_cg_procs; i++)
                if (write(c->sb->cg_procs[i], "0", 1) != 1)
                        goto fail;
        c->step = W_FDS;
        if (dup2(c->fds.in >= 0 ? c->fds.in : c->devnull, 0) < 0 ||
            dup2(c->fds.out >= 0 ? c->fds.out : c->devnull, 1) < 0 ||
            (c->fds.err >= 0 && dup2(c->fds.err, 2) < 0) || (c->fds.fd3 >= 0 && dup2(c->fds.fd3, 3) < 0) ||
            (c->fds.fd4 >= 0 && dup2(c->fds.fd4, 4) < 0) || (c->fds.fd5 >= 0 && dup2(c->fds.fd5, 5) < 0))
                goto fail;
        (void)syscall(SYS_close_range,
                      c->fds.fd5 >= 0   ? 6u
                      : c->fds.fd4 >= 0 ? 5u
                      : c->fds.fd3 >= 0 ? 4u
                                        : 3u,
                      ~0u, 0);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void)sigaction(sig, &sa, NULL);
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        c->step = W_EXEC;
        if (chdir("/") < 0)
                goto fail;
        execve(c->path, c->argv, c->envp);
fail:
        c->err = errno ? errno : EIO;
        _exit(127);
}

/* The joiner: enters the run's namespaces (single-threaded) and creates the worker as the
 * host's child in a new pid and mount namespace, suspended (CLONE_VFORK) until the worker
 * has exec'd or failed. */
static int SB_NO_ASAN
joiner_fn(void *arg)
{
        struct spawn_ctx *c = arg;
        pid_t pid;

        for (int i = 0; i < NS_MAX; i++)
                if (c->sb->ns[i] >= 0 && setns(c->sb->ns[i], ns_types[i]) < 0) {
                        c->step = W_SETNS + i;
                        c->err = errno;
                        _exit(127);
                }
        pid = clone(worker_fn, c->worker_stack + SB_STACK,
                    CLONE_PARENT | CLONE_NEWPID | CLONE_NEWNS | CLONE_VM | CLONE_VFORK, c);
        if (pid < 0) {
                c->step = W_CLONE;
                c->err = errno;
                _exit(127);
        }
        c->pid = pid;
        _exit(0);
}

static void
describe_worker_step(int step, char *buf, size_t len)
{
        if (step >= W_SETNS && step < W_SETNS + NS_MAX)
                snprintf(buf, len, "entering the run's %s namespace", ns_names[step - W_SETNS]);
        else
                switch (step) {
                case W_CLONE: snprintf(buf, len, "creating its pid namespace"); break;
                case W_PDEATHSIG: snprintf(buf, len, "PR_SET_PDEATHSIG"); break;
                case W_SETSID: snprintf(buf, len, "setsid"); break;
                case W_PROC: snprintf(buf, len, "mounting its /proc"); break;
                case W_CGROUP: snprintf(buf, len, "joining the run's cgroup"); break;
                case W_FDS: snprintf(buf, len, "setting up its descriptors"); break;
                case W_EXEC: snprintf(buf, len, "exec"); break;
                default: snprintf(buf, len, "step %d", step); break;
                }
}

int
hs_sandbox_spawn(struct hs_sandbox *sb, const char *path, char *const argv[], char *const envp[],
                 const struct hs_spawn_fds *fds, pid_t *ret_pid, char *why, size_t why_len)
{
        struct spawn_ctx c = { .sb = sb, .path = path, .argv = argv, .envp = envp, .pid = -1 };
        sigset_t all, old;
        char desc[128];
        pid_t jpid;
        int r;

        /* Every source descriptor above the numbers it is copied to, so none is overwritten. */
        if (!sb || !fds)
                return -EINVAL;
        {
                const int given[] = { fds->in, fds->out, fds->err, fds->fd3, fds->fd4, fds->fd5 };

                for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++)
                        if (given[i] >= 0 && given[i] < HS_SPAWN_FD_MIN)
                                return -EINVAL;
                if ((fds->fd4 >= 0 && fds->fd3 < 0) || (fds->fd5 >= 0 && fds->fd4 < 0))
                        return -EINVAL;
        }
        c.fds = *fds;
        c.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (c.devnull < 0) {
                r = -errno;
                snprintf(why, why_len, "/dev/null: %s", strerror(-r));
                return r;
        }
        c.worker_stack = (char *)sb->stacks + SB_STACK;
        /* As posix_spawn does: no signal handler may run in a child sharing our memory. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        jpid = clone(joiner_fn, (char *)sb->stacks + SB_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
        r = jpid < 0 ? -errno : 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(c.devnull);
        if (r < 0) {
                snprintf(why, why_len, "clone: %s", strerror(-r));
                return r;
        }
        reap(jpid);
        if (c.err) {
                r = -c.err;
                if (c.pid > 0)
                        reap(c.pid); /* it exited before its exec */
                describe_worker_step(c.step, desc, sizeof(desc));
                snprintf(why, why_len, "cannot start the worker in the run's sandbox: %s: %s", desc,
                         strerror(-r));
                return r;
        }
        if (c.pid <= 0) {
                snprintf(why, why_len, "cannot start the worker in the run's sandbox: the joiner died");
                return -EIO;
        }
        *ret_pid = c.pid;
        return 0;
}

void
hs_sandbox_stats(struct hs_sandbox *sb, struct hs_teardown *t)
{
        struct statfs sf;

        if (!sb || !t)
                return;
        if (sb->workspace_fd >= 0 && fstatfs(sb->workspace_fd, &sf) == 0)
                t->workspace_bytes = (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize;
        if (sb->cg)
                hcg_events(sb->cg, &t->pids_max_hits, &t->memory_oom_events);
}

void
hs_sandbox_kill_all(struct hs_sandbox *sb, struct hs_teardown *t)
{
        if (!sb || !sb->cg || !t)
                return;
        (void)hcg_kill(sb->cg, &t->processes_killed, &t->processes_left);
        t->cgroup_removed = hcg_remove(sb->cg) == 0;
}

const char *
hs_sandbox_cgroup(const struct hs_sandbox *sb)
{
        return sb && sb->cg ? hcg_path(sb->cg) : NULL;
}

const char *
hs_sandbox_profile(const struct hs_sandbox *sb)
{
        return sb ? sb->profile : NULL;
}
