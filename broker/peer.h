/* SPDX-License-Identifier: MIT */
/* Kernel-attested identity of a peer process: SO_PEERCRED, SO_PEERPIDFD (else the start time
 * from /proc/<pid>/stat), SO_PEERGROUPS. Used to bind tokens to a process and to catch a peer
 * that exited or whose pid was reused before a secret is released. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define AB_PEER_MAX_GROUPS 64

struct ab_peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        int pidfd;          /* -1 when the kernel gave none */
        uint64_t starttime; /* clock ticks after boot (field 22 of /proc/<pid>/stat), 0 = unknown */
        gid_t groups[AB_PEER_MAX_GROUPS];
        unsigned n_groups; /* supplementary groups (truncated at AB_PEER_MAX_GROUPS) */
};

/* Identify the peer of a connected Unix socket. Returns 0 or -errno. On success the
 * caller owns ret->pidfd (release with ab_peer_clear). */
int ab_peer_from_socket(int fd, struct ab_peer *ret);
/* Identify a process by pid (pidfd_open + /proc). ret_ppid gets its parent pid.
 * Returns 0, -ESRCH (gone) or -errno. */
int ab_peer_from_pid(pid_t pid, struct ab_peer *ret, pid_t *ret_ppid);
/* Release the pidfd. Accepts a zeroed or already-cleared peer. */
void ab_peer_clear(struct ab_peer *p);
/* Whether the process p describes still runs (pidfd alive, else start time unchanged).
 * Returns 0 if it does, -ESRCH if it exited or its pid was reused. */
int ab_peer_check_alive(const struct ab_peer *p);
/* Whether a and b are the same process (pid and start time match; same pidfd inode when
 * both have one). */
bool ab_peer_same_process(const struct ab_peer *a, const struct ab_peer *b);
/* Whether gid is the peer's primary or one of its supplementary groups. */
bool ab_peer_in_group(const struct ab_peer *p, gid_t gid);
/* The login uid and audit session of the peer (/proc/<pid>/loginuid and sessionid, set by
 * pam_loginuid at login and inherited; 4294967295 when unset), read by the broker, never
 * claimed by the client. Returns 0, -ESRCH (the peer exited or its pid was reused) or -errno. */
int ab_peer_login(const struct ab_peer *p, int64_t *ret_uid, int64_t *ret_session);
/* Read the start time of pid from /proc. Returns 0, -ESRCH or -EIO. */
int ab_proc_starttime(pid_t pid, uint64_t *ret);
