/* SPDX-License-Identifier: MIT */
/* The run's sandbox, seen from the host (docs/architecture.md, "Run sandboxes").
 *
 * At start the host creates the run's namespaces once: a user namespace (the host's uid and
 * gid mapped to themselves, setgroups denied) owning a mount, ipc and uts namespace, plus a
 * network namespace when the profile's network mode is "none". With a profile, the mount
 * namespace's root is a read-only tmpfs holding only the libraries, the worker binary, the
 * broker socket, /dev/{null,zero,full,random,urandom}, the profile's mounts and the run's
 * workspace (a tmpfs); without one it is a private copy of the host's file system.
 *
 * Every worker is then created inside those namespaces and, at the same time, in a pid and a
 * mount namespace of its own: it is pid 1 there, the leader of its own session and process
 * group, a direct child of the host with PR_SET_PDEATHSIG=SIGKILL, and its /proc shows only
 * its own pid namespace. No other process of the host's uid that a module could start can
 * name it, kill(0) and kill(-1) from its module reach only its own processes, and everything
 * its module starts dies with it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#include "host/sandbox/cgroup.h"

#define HS_MOUNTS_MAX 32 /* profile mounts */
#define HS_PATH_MAX 1024 /* a mount source or target */

struct hs_sandbox;

/* One of the profile's mounts: source on the host, target inside the sandbox. */
struct hs_mount {
        const char *source;
        const char *target;
        bool read_only;
};

/* What a run's sandbox is made of (a policy profile). All strings are borrowed. */
struct hs_profile {
        const char *name;
        const struct hs_mount *mounts;
        size_t n_mounts;
        uint64_t workspace_bytes; /* the /workspace tmpfs; 0: none */
        struct hcg_limits limits; /* the run's cgroup; all 0: no cgroup */
        bool network_none;        /* a network namespace of its own (loopback down) */
};

/* Create the run's namespaces (and, with a profile, its root file system and cgroup).
 * profile NULL: namespaces only, the host's file system and network. worker_path and
 * broker_path must be visible inside (they are bound into a profile's root). run: the run id
 * (names the cgroup). Returns 0 or -errno with a message in why. */
int hs_sandbox_new(const struct hs_profile *profile, const char *run, const char *worker_path,
                   const char *broker_path, char *why, size_t why_len, struct hs_sandbox **ret);

/* hs_sandbox_new with the profile as run-open's reply carries it (ab_policy_profile_to_json:
 * name, mounts [{source, target, read_only}], workspace_bytes, memory_bytes, pids, cpu_millis,
 * network). Returns -EBADMSG (why says which member) for a malformed one. */
int hs_sandbox_new_json(const cJSON *profile, const char *run, const char *worker_path,
                        const char *broker_path, char *why, size_t why_len, struct hs_sandbox **ret);

/* Tear down: close the namespaces (their mounts, the workspace tmpfs, go away with the last
 * worker), kill what is left in the cgroup and remove it. Accepts NULL. */
void hs_sandbox_free(struct hs_sandbox *sb);

/* The descriptors a worker gets, as the host's numbers (each >= HS_SPAWN_FD_MIN, or -1). */
#define HS_SPAWN_FD_MIN 6
struct hs_spawn_fds {
        int in, out;       /* its stdin and stdout (0, 1); -1: /dev/null */
        int err;           /* its stderr (2); -1: the host's */
        int fd3, fd4, fd5; /* descriptors 3, 4 and 5; -1: none (then none after it) */
};

/* Start path inside the sandbox as a worker (see above): the descriptors of fds as 0 to 5,
 * every other descriptor closed, an empty signal mask and default dispositions. Returns 0
 * with the worker's pid (a child of the caller) or -errno with a message in why. */
int hs_sandbox_spawn(struct hs_sandbox *sb, const char *path, char *const argv[], char *const envp[],
                     const struct hs_spawn_fds *fds, pid_t *ret_pid, char *why, size_t why_len);

/* What teardown reports (op=run-teardown). */
struct hs_teardown {
        uint64_t workspace_bytes;  /* bytes in the workspace when it was deleted */
        unsigned processes_killed; /* processes found in the run's cgroup and killed */
        unsigned processes_left;   /* processes still there after the kill */
        bool cgroup_removed;
        uint64_t pids_max_hits, memory_oom_events; /* the cgroup's limit events, for the record */
};

/* Fill t with the sandbox's state for the teardown record (before hs_sandbox_free). */
void hs_sandbox_stats(struct hs_sandbox *sb, struct hs_teardown *t);
/* Kill every process of the run's cgroup and count them (t->processes_killed/left). */
void hs_sandbox_kill_all(struct hs_sandbox *sb, struct hs_teardown *t);

/* The run cgroup's path (v2: under /sys/fs/cgroup; v1: the memory controller's), or NULL. */
const char *hs_sandbox_cgroup(const struct hs_sandbox *sb);
const char *hs_sandbox_profile(const struct hs_sandbox *sb);
