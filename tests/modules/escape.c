/* SPDX-License-Identifier: MIT */
/* escape: a test-only module whose tool tries, from module code, what a confined worker must
 * not be able to do (docs/architecture.md, "Module workers: confinement"), and reports what
 * happened so that tests/integration/confine.sh can assert the exact errno or refusal.
 *
 * escape.try {action, pid?, path?, op?} → one text block "<action> rc=<n> errno=<NAME>"
 * (errno=0 when the attempt succeeded), or for action "broker" "broker rc=0 reply=<JSON>":
 *   unix PATH       socket(AF_UNIX, SOCK_SEQPACKET) and connect to PATH (the broker socket)
 *   unix_hibits     socket() with AF_UNIX in the low 32 bits of a domain with high bits set
 *   netlink/packet  socket(AF_NETLINK) / socket(AF_PACKET)
 *   inet            socket(AF_INET, SOCK_STREAM): refused too (the network comes from agentbroker-egress)
 *   io_uring        io_uring_setup(4)
 *   ptrace PID      ptrace(PTRACE_ATTACH, PID) (detached again should it succeed)
 *   proc_mem PID    open("/proc/PID/mem", O_RDONLY)
 *   vm_read PID     process_vm_readv of 8 bytes at PID's 0x400000
 *   dumpable        prctl(PR_SET_DUMPABLE, 1)
 *   userns          unshare(CLONE_NEWUSER | CLONE_NEWNS) (capabilities over a copy of its mounts)
 *   mount           mount("proc", "/proc", "proc") (uncovering what is below its /proc)
 *   caps            the CapEff line of /proc/self/status (as "caps rc=0 errno=0 CapEff=...")
 *   secret          abm_call_sign with the secret "hmac" (HMAC-SHA256 of "x"): a failure is an
 *                   isError result with the library's message
 *   drop            shuts the worker's broker connection down (as a broker restart would)
 *   broker OP       sends {"v":1,"op":OP,...} on the worker's own broker connection (found
 *                   among its descriptors: the AF_UNIX SOCK_SEQPACKET socket) and returns the
 *                   broker's reply. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <agentbroker/module.h>

#include "broker_fd.h"

static const char escape_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"action\":{\"type\":\"string\",\"enum\":[\"unix\",\"unix_hibits\",\"netlink\",\"packet\",\"inet\","
        "\"io_uring\",\"ptrace\",\"proc_mem\",\"vm_read\",\"dumpable\",\"caps\",\"broker\",\"secret\",\"drop\","
        "\"userns\",\"mount\"]},"
        "\"pid\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":4194304},"
        "\"path\":{\"type\":\"string\",\"maxLength\":107},"
        "\"op\":{\"type\":\"string\",\"maxLength\":64}},"
        "\"required\":[\"action\"],\"additionalProperties\":false}";

static const char *
errname(int e)
{
        const char *n = e ? strerrorname_np(e) : "0";
        return n ? n : "?";
}

static int
report(struct abm_call *call, const char *action, int rc, int e)
{
        return abm_call_textf(call, "%s rc=%d errno=%s", action, rc, errname(rc < 0 ? e : 0));
}

static int
try_broker(struct abm_call *call, const char *op, struct abm_error *err)
{
        char req[512], reply[4096];
        struct pollfd pfd = { .events = POLLIN };
        ssize_t n;

        pfd.fd = test_find_broker_fd();
        if (pfd.fd < 0)
                return abm_error_set(err, -ENOENT, "the worker has no broker connection");
        /* Fields for each operation, so that only the worker pinning can refuse it. */
        snprintf(req, sizeof(req),
                 "{\"v\":1,\"op\":\"%s\",\"id\":7777,\"audience\":\"escape\",\"label\":\"escape\","
                 "\"run\":\"00000000000000000000000000000000\",\"tool\":\"escape.try\","
                 "\"args_sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
                 "\"args_len\":0,\"tools\":[\"escape.try\"]}",
                 op);
        if (send(pfd.fd, req, strlen(req), MSG_NOSIGNAL) < 0)
                return abm_error_set(err, -errno, "send: %s", strerror(errno));
        if (poll(&pfd, 1, 5000) != 1)
                return abm_error_set(err, -ETIMEDOUT, "no reply from the broker");
        n = recv(pfd.fd, reply, sizeof(reply) - 1, 0);
        if (n <= 0)
                return abm_error_set(err, -EIO, "recv: %s", n < 0 ? strerror(errno) : "end of file");
        reply[n] = '\0';
        return abm_call_textf(call, "broker rc=0 reply=%s", reply);
}

static int
escape_try(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *args = abm_call_args(call);
        const char *action = NULL, *path = NULL, *op = NULL;
        int64_t pid = 0;
        int rc = -1, fd;

        if (abm_json_get_string(args, "action", &action) < 0)
                return abm_error_set(err, -EINVAL, "action is required");
        (void)abm_json_get_int(args, "pid", &pid);
        (void)abm_json_get_string(args, "path", &path);
        (void)abm_json_get_string(args, "op", &op);
        errno = 0;

        if (strcmp(action, "unix") == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                if (fd >= 0 && path) {
                        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
                        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
                } else
                        rc = fd < 0 ? -1 : 0;
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return report(call, action, rc, e);
        }
        if (strcmp(action, "unix_hibits") == 0 || strcmp(action, "netlink") == 0 ||
            strcmp(action, "packet") == 0 || strcmp(action, "inet") == 0) {
                if (action[0] == 'u')
                        fd = (int)syscall(SYS_socket, (1UL << 32) | AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
                                          0);
                else if (action[0] == 'n')
                        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
                else if (action[0] == 'p')
                        fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
                else
                        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return report(call, action, fd < 0 ? -1 : 0, e);
        }
        if (strcmp(action, "io_uring") == 0) {
                struct io_uring_params p;

                memset(&p, 0, sizeof(p));
                fd = (int)syscall(SYS_io_uring_setup, 4, &p);
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return report(call, action, fd < 0 ? -1 : 0, e);
        }
        if (strcmp(action, "dumpable") == 0) {
                rc = prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
                int e = errno;
                if (rc == 0)
                        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
                return report(call, action, rc, e);
        }
        if (strcmp(action, "caps") == 0) {
                char line[256];
                FILE *f = fopen("/proc/self/status", "re");

                if (!f)
                        return abm_error_set(err, -errno, "/proc/self/status: %s", strerror(errno));
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "CapEff:", 7) == 0) {
                                fclose(f);
                                line[strcspn(line, "\n")] = '\0';
                                return abm_call_textf(call, "caps rc=0 errno=0 CapEff=%s",
                                                      line + 7 + strspn(line + 7, " \t"));
                        }
                fclose(f);
                return abm_error_set(err, -EIO, "no CapEff line");
        }
        if (strcmp(action, "secret") == 0) {
                unsigned char mac[64];
                size_t mac_len = 0;

                rc = abm_call_sign(call, "hmac", "hmac-sha256", "x", 1, mac, &mac_len);
                if (rc < 0)
                        return abm_error_set(err, rc, "sign with hmac failed: %s", strerror(-rc));
                return report(call, action, 0, 0);
        }
        if (strcmp(action, "drop") == 0) {
                fd = test_find_broker_fd();
                rc = fd < 0 ? -1 : shutdown(fd, SHUT_RDWR);
                return report(call, action, rc, fd < 0 ? ENOENT : errno);
        }
        if (strcmp(action, "userns") == 0) {
                rc = unshare(CLONE_NEWUSER | CLONE_NEWNS);
                return report(call, action, rc, errno);
        }
        if (strcmp(action, "mount") == 0) {
                rc = mount("proc", "/proc", "proc", 0, NULL);
                return report(call, action, rc, errno);
        }
        if (strcmp(action, "broker") == 0) {
                if (!op)
                        return abm_error_set(err, -EINVAL, "op is required");
                return try_broker(call, op, err);
        }
        if (pid <= 0)
                return abm_error_set(err, -EINVAL, "pid is required");
        if (strcmp(action, "ptrace") == 0) {
                rc = (int)ptrace(PTRACE_ATTACH, (pid_t)pid, NULL, NULL);
                int e = errno;
                if (rc == 0) {
                        (void)waitpid((pid_t)pid, NULL, __WALL);
                        (void)ptrace(PTRACE_DETACH, (pid_t)pid, NULL, NULL);
                }
                return report(call, action, rc, e);
        }
        if (strcmp(action, "proc_mem") == 0) {
                char p[64];

                snprintf(p, sizeof(p), "/proc/%lld/mem", (long long)pid);
                fd = open(p, O_RDONLY | O_CLOEXEC);
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return report(call, action, fd < 0 ? -1 : 0, e);
        }
        if (strcmp(action, "vm_read") == 0) {
                char buf[8];
                struct iovec local = { .iov_base = buf, .iov_len = sizeof(buf) };
                struct iovec remote = { .iov_base = (void *)0x400000, .iov_len = sizeof(buf) };
                ssize_t n = process_vm_readv((pid_t)pid, &local, 1, &remote, 1, 0);

                return report(call, action, n < 0 ? -1 : 0, errno);
        }
        return abm_error_set(err, -EINVAL, "unknown action");
}

static const struct abm_tool escape_tools[] = {
        {
                .name = "try",
                .description =
                        "Test only: tries an escape from the worker's confinement and reports the errno.",
                .input_schema = escape_schema,
                .call = escape_try,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "escape",
        .version = "test",
        .tools = escape_tools,
        .n_tools = 1,
};
