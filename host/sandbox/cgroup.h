/* SPDX-License-Identifier: MIT */
/* The run's cgroup (docs/architecture.md, "Run sandboxes"): one cgroup per run, created below
 * the cgroup the host runs in, with the profile's memory, pids and CPU limits.
 *
 *   cgroup v2 (systemd with Delegate=yes): the host moves itself into a "host" leaf of its
 *     delegated cgroup (no processes in inner nodes), enables memory, pids and cpu for the
 *     children and creates "run-<id>" beside it: memory.max, memory.swap.max=0, pids.max,
 *     cpu.max; cgroup.kill kills it whole.
 *   cgroup v1 (no systemd; this test machine): "agentbroker-run-<id>" below the host's cgroup
 *     in each of the memory, pids and cpu hierarchies: memory.limit_in_bytes (+ memsw when
 *     swap accounting is on), pids.max, cpu.cfs_quota_us/cfs_period_us; killed by a SIGKILL
 *     through a pidfd to every pid in cgroup.procs, waiting for those exits, until it is
 *     empty (no cgroup.kill in v1).
 * A controller that is missing or not writable is reported: the host refuses a profile whose
 * limits cannot be applied (hcg_create returns -EOPNOTSUPP/-EACCES with the reason). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct hcg_limits {
        uint64_t memory_bytes; /* 0: no limit */
        uint64_t pids;         /* 0: no limit */
        unsigned cpu_millis;   /* CPU time per second of wall time, in ms (1000 = one CPU); 0: none */
};

struct hcg;

/* Create the run's cgroup with limits below the caller's cgroup. Returns 0 or -errno with the
 * reason in why. */
int hcg_create(const char *run, const struct hcg_limits *limits, char *why, size_t why_len,
               struct hcg **ret);
/* Use root instead of /sys/fs/cgroup and self instead of /proc/self/cgroup (NULL: those; the
 * strings are kept, not copied), for
 * the unit test of both layouts on a directory tree (tests/unit/test_cgroup.c). */
void hcg_set_paths(const char *root, const char *self);
#define HCG_PROCS_MAX 3 /* hierarchies a run cgroup spans (v1: memory, pids, cpu) */
/* Open the cgroup.procs file of each hierarchy for writing (a process joins by writing "0").
 * fds must hold HCG_PROCS_MAX. Returns the count opened or -errno (none left open). */
int hcg_open_procs(struct hcg *cg, int *fds);
/* Kill every process in the cgroup (v2: cgroup.kill; both: SIGKILL through a pidfd to each
 * listed process) and wait for exactly those exits (their pidfds), listing again until none
 * is left; *ret_killed counts the pids signalled, *ret_left those still there after 2 s.
 * Returns 0, or -EBUSY when some are left. */
int hcg_kill(struct hcg *cg, unsigned *ret_killed, unsigned *ret_left);
/* Limit events so far: pids.max refusals ("max" in pids.events) and memory limit hits (OOM
 * kills in v2 memory.events, failcnt in v1). */
void hcg_events(struct hcg *cg, uint64_t *ret_pids_max, uint64_t *ret_oom);
/* Remove the cgroup (it must be empty). Returns 0 or -errno. */
int hcg_remove(struct hcg *cg);
/* The cgroup's directory (v2) or its memory hierarchy directory (v1). */
const char *hcg_path(const struct hcg *cg);
bool hcg_is_v2(const struct hcg *cg);
/* Free (kills nothing, removes nothing). Accepts NULL. */
void hcg_free(struct hcg *cg);
