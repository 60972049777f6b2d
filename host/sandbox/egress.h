/* SPDX-License-Identifier: MIT */
/* agentbroker-egress processes: one next to each module worker that uses the network, started
 * at its first egress request (docs/architecture.md, "Egress"). */
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

/* A worker's egress channel: a new SOCK_SEQPACKET socketpair whose other end waits on event.
 * At the worker's first request on it, egress_path --fd 3 --broker broker_path is started with
 * that end as its fd 3 (the request waits in the socket), the host's stderr, a minimal
 * environment (PATH, LANG, TZ, SSL_CERT_FILE), every other descriptor closed; its exit is
 * reaped on event (a floating child source) and it exits by itself when the worker's end
 * closes. A worker that closes its end without a request never gets one. *ret_worker_fd is the
 * worker's end (close-on-exec, at fd_min or above). Returns 0 or -errno. */
int hx_egress_spawn(sd_event *event, const char *egress_path, const char *broker_path, int fd_min,
                    int *ret_worker_fd);
