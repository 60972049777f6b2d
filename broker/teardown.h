/* SPDX-License-Identifier: MIT */
/* Run teardown (docs/architecture.md, "Run sandboxes"; docs/audit.md, run-teardown): a run a
 * host opened for itself (run-open with "bind_process": true) ends with that host. When the
 * host closes it, run-close carries a "teardown" report of what the host removed; when the
 * host dies without closing it, the broker notices through the pidfd it took at run-open
 * (a process-exit watch in the event loop, broker/pidwatch.h), closes the run and revokes its
 * tokens.
 * Either way one run-teardown record says what was done. */
#pragma once

#include <cjson/cJSON.h>

#include "broker/peer.h"
#include "policy/policy.h"
#include "broker/runs.h"
#include "broker/state.h"

/* Watch the process peer names (its pidfd is duplicated) with a process-exit watch
 * (broker/pidwatch.h) of st's event loop. Returns 0 or -errno (-ENOSYS: the kernel gave no
 * pidfd). */
int ab_teardown_watch(struct ab_state *st, struct ab_run *run, const struct ab_peer *peer);
/* Stop watching run's host (the run closes; its pidfd stays for a late report). */
void ab_teardown_unwatch(struct ab_state *st, struct ab_run *run);

/* run-close (reason run-close) or expiry (run-expired) of a run whose host still serves it
 * (not the host's own close): ask the host to tear its sandbox down (SIGTERM through its
 * pidfd; the host then kills the run's processes and sends its report with a run-close, whose
 * run-teardown record carries reason and tokens_revoked). Call before the run is closed. A
 * host that cannot be asked (another uid under systemd: EPERM) is recorded as a failed
 * teardown. */
void ab_teardown_ask_host(struct ab_state *st, struct ab_run *run, const struct ab_peer *by,
                          const char *reason, size_t tokens_revoked);

/* The run's duration limit in seconds: its profile's max_duration_s, else runs.max_duration_s
 * (0: none). */
unsigned ab_run_max_duration_s(const struct ab_policy *pol, const struct ab_run *run);

/* Tear down every open watched run whose process has exited, and close every open run that
 * has expired exactly like run-close (tokens revoked, its host asked to tear down; reason
 * run-expired). Called by a host's exit watch and at every housekeeping tick (once a second). */
void ab_teardown_check(struct ab_state *st);

/* Write the run-teardown record of run (its tokens revoked, tokens_revoked of them; call it
 * before the run is closed: closing may free an old run) from the host's report ({processes_killed, processes_left, workspace_bytes,
 * cgroup: "removed"|"kept"|"none", pids_max_hits, oom_kills}; NULL when the host died and
 * reported nothing). reason: host-exit, host-died. */
void ab_teardown_record(struct ab_state *st, const struct ab_run *run, const struct ab_peer *by,
                        const char *reason, size_t tokens_revoked, const cJSON *report);
