/* SPDX-License-Identifier: MIT */
/* The builder of a run's sandbox (host/sandbox/sandbox.c): a fresh process, agentbroker-worker
 * started as `agentbroker-worker --sandbox-build` with a socket as fd 3. A fresh exec and not
 * a fork of the host: it must write its own /proc/self/uid_map, which a copy of the
 * non-dumpable host could only do by making the host's memory dumpable. It reads a plan
 * (struct sb_plan, then n_steps struct sb_step) from the socket, unshares the user, mount, ipc,
 * uts (and net) namespaces, maps the host's uid and gid to themselves, builds the root file
 * system and pivots into it, and answers one struct sb_result carrying the descriptors of its
 * namespaces and of the workspace (SCM_RIGHTS), or the step that failed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SB_STAGE \
        "/tmp" /* where the builder mounts the new root before pivot_root
                                        * (its own mount namespace: the host's /tmp is untouched;
                                        * every source is opened before it is covered) */
#define SB_PATH_MAX 1024
#define SB_STEPS_MAX 96
#define SB_BUILDER_ENV "AGENTBROKER_SANDBOX_BUILDER" /* set in the builder's environment */
#define SB_PLAN_MAGIC 0x61627362u                    /* "absb" */

enum sb_ns {
        SB_NS_USER,
        SB_NS_MNT,
        SB_NS_IPC,
        SB_NS_UTS,
        SB_NS_NET,
        SB_NS_MAX,
};

enum sb_step_kind {
        ST_BIND,  /* bind src (opened first) onto dst */
        ST_LINK,  /* symlink dst -> src */
        ST_TMPFS, /* tmpfs with options src at dst */
        ST_PROC,  /* a proc of an empty pid namespace at dst (see build_proc) */
};

struct sb_step {
        uint32_t kind;         /* enum sb_step_kind */
        char dst[SB_PATH_MAX]; /* SB_STAGE + the path inside */
        char src[SB_PATH_MAX];
        bool ro, optional, nodev;
        /* filled in by the builder */
        int fd;
        bool is_dir, skip;
        unsigned long locked; /* the source mount's flags a remount must keep */
};

struct sb_plan {
        uint32_t magic;
        uint32_t n_steps; /* at most SB_STEPS_MAX */
        bool root;        /* build a root and pivot into it (a profile) */
        bool net;         /* a network namespace of its own */
        bool workspace;   /* SB_STAGE "/workspace" is the workspace: send its fd */
        uid_t uid;
        gid_t gid;
};

/* Steps of the builder that are not plan steps (plan steps are 0..n_steps-1). */
enum {
        B_PLAN = 2000,
        B_UNSHARE,
        B_MAPS,
        B_PRIVATE,
        B_STAGE,
        B_NSOPEN,
        B_PIVOT,
        B_RO,
        B_SEND,
};

struct sb_result {
        int step; /* failed step, or the count of descriptors sent */
        int err;  /* errno, 0 on success */
};

/* Write all of buf to the file at path in one write (a /proc or cgroup file). Returns 0 or
 * -errno. */
int sb_write_file(const char *path, const char *buf);

/* Run the builder on the plan read from fd. Returns the process's exit status, for _exit():
 * after pivot_root there is no /proc, where LeakSanitizer's exit check would look. */
int sb_build_main(int fd);
