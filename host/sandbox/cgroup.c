/* SPDX-License-Identifier: MIT */
/* The run's cgroup (see cgroup.h): v2 under a delegated subtree, or v1 memory/pids/cpu
 * hierarchies, always below the cgroup the host itself runs in. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/macros.h"
#include "common/name.h"
#include "host/sandbox/cgroup.h"
#include "host/sandbox/sandbox_build.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG_LINE_MAX 4096        /* a line of /proc/self/cgroup or cgroup.procs */
#define CG_KILL_ROUNDS 64       /* kill: rounds of listing, killing and waiting for those exits */
#define CG_KILL_TIMEOUT_MS 2000 /* ... for at most this long in all */
#define CG_KILL_FDS_MAX 512     /* pidfds waited on per round (more are killed without waiting) */
#define CG_CPU_PERIOD_US 100000

enum {
        CG_MEMORY,
        CG_PIDS,
        CG_CPU,
        CG_N
};
static const char *const cg_names[CG_N] = { "memory", "pids", "cpu" };

/* Where cgroupfs is mounted and where the host's cgroups are listed (hcg_set_paths). */
static const char *cg_root = CG_ROOT;
static const char *cg_self = "/proc/self/cgroup";

void
hcg_set_paths(const char *root, const char *self)
{
        cg_root = root ? root : CG_ROOT;
        cg_self = self ? self : "/proc/self/cgroup";
}

struct hcg {
        bool v2;
        char *dir[CG_N]; /* v1: one per controller (NULL: unused); v2: dir[0] only */
};

/* Write text to dir/file. Returns 0 or -errno. */
static int
cg_write(const char *dir, const char *file, const char *text)
{
        char path[PATH_MAX + 64];

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
                return -ENAMETOOLONG;
        return sb_write_file(path, text);
}

/* The value after "key " in dir/file (flat keyed files: pids.events, memory.events ...). */
static uint64_t
cg_keyed(const char *dir, const char *file, const char *key)
{
        char path[PATH_MAX + 64], line[256];
        size_t klen = strlen(key);
        uint64_t v = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                        v = strtoull(line + klen + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

/* The host's cgroup path in the hierarchy of controller (NULL: the v2 line "0::"). Returns 0
 * or -ENOENT. */
static int
own_cgroup(const char *controller, char *buf, size_t len)
{
        char line[CG_LINE_MAX];
        FILE *f = fopen(cg_self, "re");
        int r = -ENOENT;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *tok, *save = NULL;
                bool match = false;

                if (!c2)
                        continue;
                *c2 = '\0';
                line[strcspn(line, ":")] = '\0';
                if (!controller)
                        match = strcmp(line, "0") == 0 && c2 == c1 + 1;
                else
                        for (tok = strtok_r(c1 + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                                match |= strcmp(tok, controller) == 0;
                if (match) {
                        c2[1 + strcspn(c2 + 1, "\n")] = '\0';
                        snprintf(buf, len, "%s", c2 + 1);
                        r = 0;
                        break;
                }
        }
        fclose(f);
        return r;
}

/* Move every process of dir into dir/host (v2: no processes in a cgroup with controllers
 * enabled for its children). Returns 0 or -errno. */
static int
v2_evacuate(const char *dir)
{
        char path[PATH_MAX + 64], leaf[PATH_MAX + 64], line[64];
        FILE *f;
        int r = 0;

        snprintf(leaf, sizeof(leaf), "%s/host", dir);
        if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
                return -errno;
        snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (r == 0 && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                r = cg_write(leaf, "cgroup.procs", line);
                if (r == -ESRCH)
                        r = 0;
        }
        fclose(f);
        return r;
}

static int
v2_create(const char *run, const struct hcg_limits *l, char *why, size_t why_len, struct hcg *cg)
{
        char own[PATH_MAX], parent[PATH_MAX + 32], dir[PATH_MAX + 200], v[64];
        int r;

        r = own_cgroup(NULL, own, sizeof(own));
        if (r < 0) {
                snprintf(why, why_len, "no cgroup v2 line in /proc/self/cgroup");
                return r;
        }
        snprintf(parent, sizeof(parent), "%s%s", cg_root, strcmp(own, "/") == 0 ? "" : own);
        /* Started before (hcg_create ran for an earlier run of this host): the parent is ours. */
        if (strlen(parent) > 5 && strcmp(parent + strlen(parent) - 5, "/host") == 0)
                parent[strlen(parent) - 5] = '\0';
        if (strcmp(own, "/") != 0) {
                r = v2_evacuate(parent);
                if (r < 0) {
                        snprintf(why, why_len,
                                 "cgroup v2: cannot move the host into %s/host: %s (is the "
                                 "cgroup delegated? Delegate=yes)",
                                 parent, strerror(-r));
                        return r;
                }
        }
        for (int i = 0; i < CG_N; i++) {
                if (i == CG_MEMORY && !l->memory_bytes)
                        continue;
                if (i == CG_PIDS && !l->pids)
                        continue;
                if (i == CG_CPU && !l->cpu_millis)
                        continue;
                snprintf(v, sizeof(v), "+%s", cg_names[i]);
                r = cg_write(parent, "cgroup.subtree_control", v);
                if (r < 0) {
                        snprintf(why, why_len, "cgroup v2: cannot enable the %s controller in %s: %s",
                                 cg_names[i], parent, strerror(-r));
                        return r;
                }
        }
        snprintf(dir, sizeof(dir), "%s/run-%s", parent, run);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(why, why_len, "cgroup v2: mkdir %s: %s", dir, strerror(-r));
                return r;
        }
        cg->dir[0] = strdup(dir);
        if (!cg->dir[0])
                return -ENOMEM;
        r = 0;
        if (l->memory_bytes) {
                snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_bytes);
                r = cg_write(dir, "memory.max", v);
                if (r == 0)
                        (void)cg_write(dir, "memory.swap.max", "0");
        }
        if (r == 0 && l->pids) {
                snprintf(v, sizeof(v), "%llu", (unsigned long long)l->pids);
                r = cg_write(dir, "pids.max", v);
        }
        if (r == 0 && l->cpu_millis) {
                snprintf(v, sizeof(v), "%llu %u",
                         (unsigned long long)l->cpu_millis * (CG_CPU_PERIOD_US / 1000), CG_CPU_PERIOD_US);
                r = cg_write(dir, "cpu.max", v);
        }
        if (r < 0)
                snprintf(why, why_len, "cgroup v2: cannot set the limits of %s: %s", dir, strerror(-r));
        return r;
}

static int
v1_create(const char *run, const struct hcg_limits *l, char *why, size_t why_len, struct hcg *cg)
{
        char own[PATH_MAX], dir[PATH_MAX + 200], v[64];
        int r;

        for (int i = 0; i < CG_N; i++) {
                if ((i == CG_MEMORY && !l->memory_bytes) || (i == CG_PIDS && !l->pids) ||
                    (i == CG_CPU && !l->cpu_millis))
                        continue;
                r = own_cgroup(cg_names[i], own, sizeof(own));
                snprintf(dir, sizeof(dir), "%s/%s", cg_root, cg_names[i]);
                if (r < 0 || access(dir, F_OK) < 0) {
                        snprintf(why, why_len, "cgroup v1: no %s controller is mounted (at %s)", cg_names[i],
                                 dir);
                        return -EOPNOTSUPP;
                }
                snprintf(dir, sizeof(dir), "%s/%s%s/agentbroker-run-%s", cg_root, cg_names[i],
                         strcmp(own, "/") == 0 ? "" : own, run);
                if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                        r = -errno;
                        snprintf(why, why_len, "cgroup v1: mkdir %s: %s", dir, strerror(-r));
                        return r;
                }
                cg->dir[i] = strdup(dir);
                if (!cg->dir[i])
                        return -ENOMEM;
                switch (i) {
                case CG_MEMORY:
                        snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_bytes);
                        r = cg_write(dir, "memory.limit_in_bytes", v);
                        /* With swap accounting, memory+swap too (else the hog swaps instead). */
                        if (r == 0)
                                (void)cg_write(dir, "memory.memsw.limit_in_bytes", v);
                        break;
                case CG_PIDS:
                        snprintf(v, sizeof(v), "%llu", (unsigned long long)l->pids);
                        r = cg_write(dir, "pids.max", v);
                        break;
                default:
                        snprintf(v, sizeof(v), "%u", CG_CPU_PERIOD_US);
                        r = cg_write(dir, "cpu.cfs_period_us", v);
                        snprintf(v, sizeof(v), "%llu",
                                 (unsigned long long)l->cpu_millis * (CG_CPU_PERIOD_US / 1000));
                        if (r == 0)
                                r = cg_write(dir, "cpu.cfs_quota_us", v);
                        break;
                }
                if (r < 0) {
                        snprintf(why, why_len, "cgroup v1: cannot set the %s limit in %s: %s", cg_names[i],
                                 dir, strerror(-r));
                        return r;
                }
        }
        return 0;
}

int
hcg_create(const char *run, const struct hcg_limits *limits, char *why, size_t why_len, struct hcg **ret)
{
        struct hcg *cg;
        int r;

        if (!run || !*run || strchr(run, '/') || strlen(run) > AB_NAME_MAX)
                return -EINVAL;
        cg = calloc(1, sizeof(*cg));
        if (!cg)
                return -ENOMEM;
        {
                char path[PATH_MAX];

                snprintf(path, sizeof(path), "%s/cgroup.controllers", cg_root);
                cg->v2 = access(path, F_OK) == 0;
        }
        r = cg->v2 ? v2_create(run, limits, why, why_len, cg) : v1_create(run, limits, why, why_len, cg);
        if (r < 0) {
                (void)hcg_remove(cg);
                hcg_free(cg);
                return r;
        }
        *ret = cg;
        return 0;
}

int
hcg_open_procs(struct hcg *cg, int *fds)
{
        char path[PATH_MAX + 64];
        int n = 0;

        for (int i = 0; i < CG_N; i++) {
                if (!cg->dir[i])
                        continue;
                snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dir[i]);
                fds[n] = open(path, O_WRONLY | O_CLOEXEC);
                if (fds[n] < 0) {
                        int r = -errno;

                        while (n > 0)
                                close(fds[--n]);
                        return r;
                }
                n++;
        }
        return n;
}

/* Kill every process listed in dir/cgroup.procs through a pidfd (SIGKILL), adding each pidfd
 * to fds (at most CG_KILL_FDS_MAX; past that, or without pidfds, kill(2) and no wait). *ret_listed
 * is how many were listed. Returns how many were signalled. */
static unsigned
kill_listed(const char *dir, int *fds, size_t *n_fds, unsigned *ret_listed)
{
        char path[PATH_MAX + 64], line[64];
        unsigned n = 0, listed = 0;
        FILE *f;

        *ret_listed = 0;
        snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                long pid = strtol(line, NULL, 10);
                int fd;

                listed++;
                if (pid <= 1)
                        continue;
                fd = *n_fds < CG_KILL_FDS_MAX ? (int)syscall(SYS_pidfd_open, (pid_t)pid, 0) : -1;
                if (fd >= 0) {
                        if (syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0) {
                                n++;
                                fds[(*n_fds)++] = fd;
                        } else
                                close(fd);
                } else if (kill((pid_t)pid, SIGKILL) == 0)
                        n++;
        }
        fclose(f);
        *ret_listed = listed;
        return n;
}

/* Wait until every process behind fds has exited (a pidfd polls readable then) or deadline_ms
 * (CLOCK_MONOTONIC) has passed; closes them. */
static void
wait_exits(int *fds, size_t n, uint64_t deadline_ms)
{
        size_t done = 0;

        while (done < n) {
                struct pollfd p[CG_KILL_FDS_MAX];
                struct timespec now;
                uint64_t now_ms;
                int k;

                for (size_t i = 0; i < n; i++)
                        p[i] = (struct pollfd){ .fd = fds[i] >= 0 ? fds[i] : -1, .events = POLLIN };
                clock_gettime(CLOCK_MONOTONIC, &now);
                now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
                if (now_ms >= deadline_ms)
                        break;
                k = poll(p, n, (int)(deadline_ms - now_ms));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                for (size_t i = 0; i < n; i++)
                        if (fds[i] >= 0 && p[i].revents) {
                                close(fds[i]);
                                fds[i] = -1;
                                done++;
                        }
        }
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int
hcg_kill(struct hcg *cg, unsigned *ret_killed, unsigned *ret_left)
{
        unsigned killed = 0, left = 0;
        struct timespec now;
        uint64_t deadline_ms;
        bool empty = false;

        if (!cg)
                return -EINVAL;
        clock_gettime(CLOCK_MONOTONIC, &now);
        deadline_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000 + CG_KILL_TIMEOUT_MS;
        /* v2 (5.14+): the kernel kills the cgroup whole; the rounds below count and wait. */
        if (cg->v2)
                (void)cg_write(cg->dir[0], "cgroup.kill", "1");
        /* Each round kills what is listed and waits for exactly those processes to exit (their
         * pidfds), no polling: a process forked before its parent died shows up in the next
         * round's listing. */
        for (int round = 0; round < CG_KILL_ROUNDS && !empty; round++) {
                int fds[CG_KILL_FDS_MAX];
                size_t n_fds = 0;

                empty = true;
                for (int i = 0; i < CG_N; i++) {
                        unsigned k, listed;

                        if (!cg->dir[i])
                                continue;
                        k = kill_listed(cg->dir[i], fds, &n_fds, &listed);
                        if (round == 0)
                                killed = k > killed ? k : killed;
                        empty &= listed == 0;
                }
                wait_exits(fds, n_fds, deadline_ms);
                clock_gettime(CLOCK_MONOTONIC, &now);
                if ((uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000 >= deadline_ms)
                        break;
        }
        if (!empty)
                for (int i = 0; i < CG_N; i++)
                        if (cg->dir[i]) {
                                int fds[CG_KILL_FDS_MAX];
                                size_t n_fds = 0;
                                unsigned listed;

                                (void)kill_listed(cg->dir[i], fds, &n_fds, &listed);
                                wait_exits(fds, n_fds, 0);
                                left = listed;
                                empty = listed == 0;
                                break;
                        }
        *ret_killed = killed;
        *ret_left = left;
        return empty ? 0 : -EBUSY;
}

void
hcg_events(struct hcg *cg, uint64_t *ret_pids_max, uint64_t *ret_oom)
{
        const char *mem = cg->v2 ? cg->dir[0] : cg->dir[CG_MEMORY];
        const char *pids = cg->v2 ? cg->dir[0] : cg->dir[CG_PIDS];

        *ret_pids_max = pids ? cg_keyed(pids, "pids.events", "max") : 0;
        *ret_oom = 0;
        if (mem)
                *ret_oom = cg->v2 ? cg_keyed(mem, "memory.events", "oom_kill")
                                  : cg_keyed(mem, "memory.oom_control", "oom_kill");
}

int
hcg_remove(struct hcg *cg)
{
        int r = 0;

        for (int i = 0; cg && i < CG_N; i++)
                if (cg->dir[i] && rmdir(cg->dir[i]) < 0 && errno != ENOENT)
                        r = -errno;
        return r;
}

const char *
hcg_path(const struct hcg *cg)
{
        if (!cg)
                return NULL;
        for (int i = 0; i < CG_N; i++)
                if (cg->dir[i])
                        return cg->dir[i];
        return NULL;
}

bool
hcg_is_v2(const struct hcg *cg)
{
        return cg && cg->v2;
}

void
hcg_free(struct hcg *cg)
{
        if (!cg)
                return;
        for (int i = 0; i < CG_N; i++)
                free(cg->dir[i]);
        free(cg);
}
