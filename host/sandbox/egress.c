/* Start agentbroker-egress for a module worker (see egress.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/spawn.h"
#include "common/secmem.h"
#include "host/sandbox/egress.h"
#include "host/sandbox/env.h"

#define HX_ENV_ENTRY_MAX 255           /* longest kept environment entry (NAME=value) */

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

int
hx_egress_spawn(sd_event *event, const char *egress_path, const char *broker_path, int fd_min, int *ret_worker_fd)
{
        static const char *const keep_env[] = { "PATH", "LANG", "TZ", "SSL_CERT_FILE" };
        struct hs_env env = {};
        char *argv[] = { (char *)egress_path, (char *)"--fd", (char *)"3", (char *)"--broker",
                         (char *)(broker_path ? broker_path : "/run/agentbroker/broker.sock"), NULL };
        sd_event_source *child = NULL;
        int sv[2] = { -1, -1 }, r;
        pid_t pid;

        r = hs_env_init(&env, AB_ELEMENTSOF(keep_env));
        if (r == 0)
                r = hs_env_keep(&env, keep_env, AB_ELEMENTSOF(keep_env), HX_ENV_ENTRY_MAX);
        if (r < 0)
                goto out;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                goto out;
        }
        for (int i = 0; i < 2; i++) {
                sv[i] = ab_fd_move_high(sv[i], fd_min);
                if (sv[i] < 0) {
                        r = sv[i];
                        goto out;
                }
        }
        r = ab_spawn_helper(egress_path, argv, env.envp, sv[1], &pid);
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
        *ret_worker_fd = AB_TAKE_FD(sv[0]);
        r = 0;
out:
        for (int i = 0; i < 2; i++)
                if (sv[i] >= 0)
                        close(sv[i]);
        hs_env_done(&env);
        return r;
}
