/* SPDX-License-Identifier: MIT */
/* Start agentbroker-egress for a module worker (see egress.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/spawn.h"
#include "common/secmem.h"
#include "host/sandbox/egress.h"
#include "host/sandbox/env.h"

#define HX_ENV_ENTRY_MAX 255 /* longest kept environment entry (NAME=value) */

/* Reap an egress process; say why when it did not exit cleanly. */
static int
egress_child_handler(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        if (si->si_code != CLD_EXITED || si->si_status != 0)
                log_warning("agentbroker-egress %d ended %s %d", (int)si->si_pid,
                            si->si_code == CLD_EXITED ? "with status" : "by signal", si->si_status);
        /* The loop's reference was the only one: dropping it frees the source. */
        (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
        (void)sd_event_source_set_floating(s, false);
        return 0;
}

/* A worker's egress channel before its first request: the host's end of the socketpair waits
 * on the loop; agentbroker-egress is started only when the worker writes to it. */
struct egress_lazy {
        sd_event *event;
        char *egress_path;
        char *broker_path; /* NULL: the default socket */
};

static void
egress_lazy_free(void *userdata)
{
        struct egress_lazy *l = userdata;

        if (!l)
                return;
        free(l->egress_path);
        free(l->broker_path);
        free(l);
}

/* Start agentbroker-egress with fd (the host's end of a worker's channel) as its fd 3; its exit
 * is reaped on event (a floating child source). Returns 0 or -errno; fd stays the caller's. */
static int
egress_start(sd_event *event, const char *egress_path, const char *broker_path, int fd)
{
        static const char *const keep_env[] = { "PATH", "LANG", "TZ", "SSL_CERT_FILE" };
        struct hs_env env = {};
        char *argv[] = { (char *)egress_path,
                         (char *)"--fd",
                         (char *)"3",
                         (char *)"--broker",
                         (char *)(broker_path ? broker_path : "/run/agentbroker/broker.sock"),
                         NULL };
        sd_event_source *child = NULL;
        pid_t pid;
        int r;

        r = hs_env_init(&env, AB_ELEMENTSOF(keep_env));
        if (r == 0)
                r = hs_env_keep(&env, keep_env, AB_ELEMENTSOF(keep_env), HX_ENV_ENTRY_MAX);
        if (r < 0)
                goto out;
        r = ab_spawn_helper(egress_path, argv, env.envp, fd, &pid);
        if (r < 0)
                goto out;
        r = sd_event_add_child(event, &child, pid, WEXITED, egress_child_handler, NULL);
        if (r < 0) {
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                goto out;
        }
        (void)sd_event_source_set_floating(child, true);
        sd_event_source_unref(child);
        r = 0;
out:
        hs_env_done(&env);
        return r;
}

/* The worker's channel became readable or closed: on a first request, start agentbroker-egress
 * on it (the request waits in the socket for it); on a close without one, nothing is started.
 * Either way the host's end is closed here (the source owns it) and the watch ends. */
static int
egress_lazy_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct egress_lazy *l = userdata;
        char b;
        ssize_t n;
        int r;

        n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(revents & (EPOLLHUP | EPOLLERR)))
                return 0;
        if (n > 0) {
                r = egress_start(l->event, l->egress_path, l->broker_path, fd);
                if (r < 0)
                        log_warning("cannot start %s for a worker's first egress request: %s",
                                    l->egress_path, strerror(-r));
        }
        /* The loop's reference was the only one: dropping it frees the source, its fd and l. */
        (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
        (void)sd_event_source_set_floating(s, false);
        return 0;
}

int
hx_egress_spawn(sd_event *event, const char *egress_path, const char *broker_path, int fd_min,
                int *ret_worker_fd)
{
        struct egress_lazy *l = NULL;
        sd_event_source *src = NULL;
        int sv[2] = { -1, -1 }, r;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        for (int i = 0; i < 2; i++) {
                sv[i] = ab_fd_move_high(sv[i], fd_min);
                if (sv[i] < 0) {
                        r = sv[i];
                        goto out;
                }
        }
        r = -ENOMEM;
        l = calloc(1, sizeof(*l));
        if (!l)
                goto out;
        l->event = event;
        l->egress_path = strdup(egress_path);
        l->broker_path = broker_path ? strdup(broker_path) : NULL;
        if (!l->egress_path || (broker_path && !l->broker_path))
                goto out;
        r = sd_event_add_io(event, &src, sv[1], EPOLLIN, egress_lazy_handler, l);
        if (r < 0)
                goto out;
        (void)sd_event_source_set_io_fd_own(src, true);
        sv[1] = -1;
        (void)sd_event_source_set_destroy_callback(src, egress_lazy_free);
        l = NULL;
        (void)sd_event_source_set_floating(src, true);
        sd_event_source_unref(src);
        *ret_worker_fd = AB_TAKE_FD(sv[0]);
        r = 0;
out:
        for (int i = 0; i < 2; i++)
                if (sv[i] >= 0)
                        close(sv[i]);
        egress_lazy_free(l);
        return r;
}
