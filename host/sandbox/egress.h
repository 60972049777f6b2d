/* agentbroker-egress processes: one started next to each module worker (docs/architecture.md,
 * "Egress"). */
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

/* Start egress_path --fd 3 --broker broker_path with one end of a new SOCK_SEQPACKET
 * socketpair as its fd 3, the host's stderr, a minimal environment (PATH, LANG, TZ,
 * SSL_CERT_FILE), every other descriptor closed. Its exit is reaped on event (a floating child
 * source); it exits by itself when the worker's end closes. *ret_worker_fd is the other end
 * (close-on-exec, at fd_min or above) for the worker. Returns 0 or -errno. */
int hx_egress_spawn(sd_event *event, const char *egress_path, const char *broker_path, int fd_min,
                    int *ret_worker_fd);
