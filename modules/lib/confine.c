/* SPDX-License-Identifier: MIT */
/* Confinement of a module worker (see confine.h). Module code is third party and fed by an
 * untrusted model, and it runs with the host's uid and groups. Before it is loaded:
 *
 *   - the worker's own broker connection is opened and pinned with `worker-hello` to
 *     secret-read, secret-sign and mint-jwt (the broker refuses every other operation on it
 *     with not-permitted/worker-confined and a token-deny record), so the module cannot use
 *     the host's standing rights (run-open, call-begin, admin operations) through it;
 *   - every capability is dropped (a host run as root otherwise hands its workers
 *     CAP_SYS_PTRACE, CAP_DAC_OVERRIDE ...), PR_SET_DUMPABLE=0 (no same-uid process may
 *     ptrace this one or open its /proc/<pid>/mem) and PR_SET_NO_NEW_PRIVS=1;
 *   - a seccomp filter (libseccomp; default allow) makes these fail with EPERM:
 *       socket() of every family: no new AF_UNIX connection to the broker or another local
 *         daemon, no AF_NETLINK, no AF_PACKET, and no AF_INET/AF_INET6 either: a module's
 *         only network is the connection agentbroker-egress hands it for a call
 *         (abm_call_connect, abm_call_http; docs/architecture.md, "Egress");
 *       io_uring_setup/enter/register (IORING_OP_SOCKET and connect would bypass the filter);
 *       ptrace, process_vm_readv/writev, kcmp, pidfd_getfd, prctl(PR_SET_DUMPABLE)
 *         (reading another process: the host or a sibling worker, another module);
 *       perf_event_open, bpf, userfaultfd, add_key/request_key/keyctl;
 *       unshare, setns, mount, umount2, pivot_root and the new mount API, clone with a
 *         namespace flag (the run sandbox's namespaces stay as the host made them:
 *         host/sandbox/sandbox.c); clone3 says ENOSYS so that libc falls back to clone.
 *     The filter is the same in the sanitizer build: LeakSanitizer, which would make the
 *     process dumpable and ptrace it at exit, is off in the worker program there
 *     (worker/agentbroker-worker.c).
 *
 * The worker logs to stderr (the host captures it), never through a socket, so logging
 * keeps working. The seccomp rule is the module's network boundary until the worker also runs
 * in an empty network namespace (the per-run sandbox), which adds the kernel's. */
#include "config.h"

#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/client.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/wire.h"
#include "modules/lib/confine.h"
#include "modules/lib/internal.h"

#define CONFINE_HELLO_TIMEOUT_MS \
        2000 /* below the host's HW_HELLO_TIMEOUT_MS: a hung broker must not cost the module */

/* Open the worker's broker connection and send worker-hello. Returns 0, or -errno (logged;
 * the worker then has no broker connection). */
static int
broker_hello(struct abmi_worker *w)
{
        const char *path = w->broker_path ? w->broker_path : AB_DEFAULT_SOCKET;
        struct ab_client *c = NULL;
        cJSON *req = NULL, *reply = NULL;
        const cJSON *ok;
        int r;

        r = ab_client_connect(path, &c);
        if (r < 0) {
                ab_log(LOG_ERR,
                       "%s: cannot connect to the broker at %s: %s (calls that use a secret will fail)",
                       w->name, path, strerror(-r));
                return r;
        }
        req = ab_client_request(c, "worker-hello");
        if (!req) {
                r = -ENOMEM;
                goto out;
        }
        r = ab_client_call(c, req, CONFINE_HELLO_TIMEOUT_MS, &reply);
        if (r < 0) {
                ab_log(LOG_ERR, "%s: worker-hello to the broker failed: %s", w->name, strerror(-r));
                goto out;
        }
        ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
        if (!cJSON_IsTrue(ok)) {
                const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "error"));
                ab_log(LOG_ERR, "%s: the broker refused worker-hello: %.*s", w->name,
                       AB_UTF8_CUT(e ? e : "?", 64));
                r = -EPERM;
                goto out;
        }
        w->broker = c;
        c = NULL;
out:
        cJSON_Delete(req);
        cJSON_Delete(reply);
        ab_client_free(c);
        return r;
}

/* Drop every capability: bounding set (where CAP_SETPCAP allows), ambient, then effective,
 * permitted and inheritable. Returns 0 or -errno. */
static int
drop_capabilities(void)
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = { { 0 } };
        bool any = false;

        if (syscall(SYS_capget, &hdr, data) < 0)
                return -errno;
        for (size_t i = 0; i < 2; i++)
                any |= data[i].effective || data[i].permitted || data[i].inheritable;
        if (!any)
                return 0; /* the usual case: a host run as an ordinary user */
        for (int cap = 0; cap <= 63; cap++)
                if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
                        (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
        (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        memset(data, 0, sizeof(data));
        hdr.version = _LINUX_CAPABILITY_VERSION_3;
        hdr.pid = 0;
        if (syscall(SYS_capset, &hdr, data) < 0)
                return -errno;
        return 0;
}

/* Build and load the seccomp filter. Returns 0 or -errno with the failing step in *ret_what. */
static int
install_filter(const char **ret_what)
{
        static const int denied[] = {
                SCMP_SYS(io_uring_setup),
                SCMP_SYS(io_uring_enter),
                SCMP_SYS(io_uring_register),
                SCMP_SYS(process_vm_readv),
                SCMP_SYS(process_vm_writev),
                SCMP_SYS(kcmp),
                SCMP_SYS(pidfd_getfd),
                SCMP_SYS(perf_event_open),
                SCMP_SYS(bpf),
                SCMP_SYS(userfaultfd),
                SCMP_SYS(add_key),
                SCMP_SYS(request_key),
                SCMP_SYS(keyctl),
                /* The sandbox's namespaces and mounts stay as the host made them. */
                SCMP_SYS(unshare),
                SCMP_SYS(setns),
                SCMP_SYS(mount),
                SCMP_SYS(umount2),
                SCMP_SYS(pivot_root),
                SCMP_SYS(move_mount),
                SCMP_SYS(open_tree),
                SCMP_SYS(fsopen),
                SCMP_SYS(fsmount),
                SCMP_SYS(fspick),
                SCMP_SYS(mount_setattr),
                SCMP_SYS(ptrace),
        };
        static const scmp_datum_t ns_flags[] = { CLONE_NEWUSER,   CLONE_NEWNS,  CLONE_NEWPID,
                                                 CLONE_NEWNET,    CLONE_NEWIPC, CLONE_NEWUTS,
                                                 CLONE_NEWCGROUP, 0x80 /* CLONE_NEWTIME */ };
        const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
        scmp_filter_ctx ctx;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx) {
                *ret_what = "seccomp_init";
                return -ENOMEM;
        }
        /* socket(): refused whatever the domain (AF_INET and AF_INET6 too: the network comes
         * from agentbroker-egress). socketpair() stays: it reaches nothing outside. */
        *ret_what = "socket rule";
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 0);
        for (size_t i = 0; r == 0 && i < AB_ELEMENTSOF(denied); i++) {
                *ret_what = "syscall rule";
                r = seccomp_rule_add(ctx, eperm, denied[i], 0);
        }
        /* clone() creating a namespace (a user namespace would give the module capabilities
         * over a copy of its mounts); clone3, whose flags live in memory a filter cannot read,
         * says ENOSYS so that libc falls back to clone. */
        for (size_t i = 0; r == 0 && i < AB_ELEMENTSOF(ns_flags); i++) {
                *ret_what = "clone rule";
                r = seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
        }
        if (r == 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r == 0) {
                *ret_what = "prctl rule";
                r = seccomp_rule_add(ctx, eperm, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE));
        }
        if (r == 0) {
                *ret_what = "seccomp_load";
                r = seccomp_load(ctx);
        }
        seccomp_release(ctx);
        return r;
}

int
abmi_confine(struct abmi_worker *w, char *why, size_t why_len)
{
        /* The broker connection first: after the filter no AF_UNIX socket can be made. */
        (void)broker_hello(w);
        w->confined = true;
        return abmi_confine_process(why, why_len);
}

int
abmi_confine_process(char *why, size_t why_len)
{
        const char *what = "";
        int r;

        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                r = -errno;
                snprintf(why, why_len, "cannot confine the worker: PR_SET_DUMPABLE: %s", strerror(-r));
                return r;
        }
        r = drop_capabilities();
        if (r < 0) {
                snprintf(why, why_len, "cannot confine the worker: dropping capabilities: %s", strerror(-r));
                return r;
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                r = -errno;
                snprintf(why, why_len, "cannot confine the worker: PR_SET_NO_NEW_PRIVS: %s", strerror(-r));
                return r;
        }
        r = install_filter(&what);
        if (r < 0) {
                snprintf(why, why_len, "cannot confine the worker: seccomp %s: %s", what, strerror(-r));
                return r;
        }
        return 0;
}
