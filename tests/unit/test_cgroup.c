/* SPDX-License-Identifier: MIT */
/* Unit tests for host/sandbox/cgroup.c on a directory tree that stands in for cgroupfs (hcg_set_paths):
 * the v2 layout (a delegated cgroup as systemd's Delegate= hands it to the packaged unit) and
 * the v1 layout (memory, pids and cpu hierarchies, as on the test machines), which this
 * machine cannot both mount for real (its controllers are bound to v1). What is checked is
 * what the host writes where: the v2 host leaf and the evacuation of the delegated cgroup's
 * processes, the controllers enabled for the children, each limit file's value, the run's
 * directory name, cgroup.kill, and the refusal with a reason when a controller is missing.
 * The kernel's side (limits enforced, kills) is tests/integration/sandbox.sh on real v1. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/sandbox/cgroup.h"

#define RUN "0123456789abcdef0123456789abcdef"

static char root[512]; /* the stand-in tree (mkdtemp) */

/* Create the empty file root/rel (its directories too). */
static void
touch(const char *rel)
{
        char path[PATH_MAX], *slash;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        fail_msg("mkdir %s: %s", path, strerror(errno));
                *slash = '/';
        }
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
}

/* Create the empty files (a NULL-terminated list) in the directory root/dir. */
static void
touch_in(const char *dir, const char *const *files)
{
        char rel[1024 + 64];

        for (; *files; files++) {
                snprintf(rel, sizeof(rel), "%s/%s", dir, *files);
                touch(rel);
        }
}

/* Write text into root/rel. */
static void
put(const char *rel, const char *text)
{
        char path[PATH_MAX];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

/* The content of root/rel (static buffer). */
static const char *
get(const char *rel)
{
        static char buf[256];
        char path[PATH_MAX];
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static int
setup(void **state)
{
        /* (hcg_set_paths keeps the pointers.) */
        static char cg[PATH_MAX], self[PATH_MAX + 16];

        (void)state;
        snprintf(root, sizeof(root), "%s/ab-test-cgroup.XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        assert_non_null(mkdtemp(root));
        snprintf(self, sizeof(self), "%s/self-cgroup", root);
        snprintf(cg, sizeof(cg), "%s/fs", root);
        assert_int_equal(mkdir(cg, 0755), 0);
        hcg_set_paths(cg, self);
        return 0;
}

static int
teardown(void **state)
{
        char cmd[PATH_MAX + 16];

        (void)state;
        hcg_set_paths(NULL, NULL);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        assert_int_equal(system(cmd), 0);
        return 0;
}

/* cgroup v2, a delegated cgroup (the unit's): the host and a helper are moved into its "host"
 * leaf, memory, pids and cpu are enabled for its children, run-<id> gets the limits. */
static void
test_v2_delegated(void **state)
{
        const struct hcg_limits l = { .memory_bytes = 64 << 20, .pids = 32, .cpu_millis = 500 };
        const char *unit = "fs/system.slice/agentbroker-mcp@1.service";
        char rel[1024];
        struct hcg *cg = NULL;
        unsigned killed = 9, left = 9;
        char why[512] = "";

        (void)state;
        put("self-cgroup", "0::/system.slice/agentbroker-mcp@1.service\n");
        touch("fs/cgroup.controllers");
        snprintf(rel, sizeof(rel), "%s/cgroup.procs", unit);
        touch(rel);
        put(rel, "4242\n4243\n");
        snprintf(rel, sizeof(rel), "%s/cgroup.subtree_control", unit);
        touch(rel);
        snprintf(rel, sizeof(rel), "%s/host/cgroup.procs", unit);
        touch(rel);
        /* (A real cgroupfs creates these files with the directory.) */
        snprintf(rel, sizeof(rel), "%s/run-%s", unit, RUN);
        touch_in(rel, (const char *const[]){ "memory.max", "memory.swap.max", "pids.max", "cpu.max",
                                             "cgroup.procs", "cgroup.kill", NULL });

        assert_int_equal(hcg_create(RUN, &l, why, sizeof(why), &cg), 0);
        assert_true(hcg_is_v2(cg));
        snprintf(rel, sizeof(rel), "%s/%s/run-%s", root, unit, RUN);
        assert_string_equal(hcg_path(cg), rel);
        snprintf(rel, sizeof(rel), "%s/run-%s/memory.max", unit, RUN);
        assert_string_equal(get(rel), "67108864");
        snprintf(rel, sizeof(rel), "%s/run-%s/memory.swap.max", unit, RUN);
        assert_string_equal(get(rel), "0");
        snprintf(rel, sizeof(rel), "%s/run-%s/pids.max", unit, RUN);
        assert_string_equal(get(rel), "32");
        snprintf(rel, sizeof(rel), "%s/run-%s/cpu.max", unit, RUN);
        assert_string_equal(get(rel), "50000 100000");
        /* Each process of the delegated cgroup was written into host/ (the last one remains in
         * this stand-in file), and the controllers enabled one by one (the last, +cpu, written
         * over the others at offset 0). */
        snprintf(rel, sizeof(rel), "%s/host/cgroup.procs", unit);
        assert_string_equal(get(rel), "4243");
        snprintf(rel, sizeof(rel), "%s/cgroup.subtree_control", unit);
        assert_memory_equal(get(rel), "+cpu", 4);

        /* Teardown: cgroup.kill, then nothing listed: nothing to wait for. */
        assert_int_equal(hcg_kill(cg, &killed, &left), 0);
        assert_int_equal(killed, 0);
        assert_int_equal(left, 0);
        snprintf(rel, sizeof(rel), "%s/run-%s/cgroup.kill", unit, RUN);
        assert_string_equal(get(rel), "1");
        hcg_free(cg);
}

/* cgroup v2 without delegation: the host's cgroup cannot take the controllers; the profile is
 * refused with the reason. */
static void
test_v2_not_delegated(void **state)
{
        const struct hcg_limits l = { .pids = 8 };
        struct hcg *cg = NULL;
        char why[512] = "";

        (void)state;
        put("self-cgroup", "0::/user.slice\n");
        touch("fs/cgroup.controllers");
        touch("fs/user.slice/cgroup.procs");
        touch("fs/user.slice/host/cgroup.procs");
        /* no cgroup.subtree_control: the controllers cannot be enabled */
        assert_int_equal(hcg_create(RUN, &l, why, sizeof(why), &cg), -ENOENT);
        assert_null(cg);
        assert_non_null(strstr(why, "cgroup v2: cannot enable the pids controller in "));
}

/* cgroup v1: agentbroker-run-<id> below the host's cgroup in each hierarchy the limits need. */
static void
test_v1(void **state)
{
        const struct hcg_limits l = { .memory_bytes = 256 << 20, .pids = 64, .cpu_millis = 1000 };
        char rel[1024];
        struct hcg *cg = NULL;
        unsigned killed = 9, left = 9;
        char why[512] = "";

        (void)state;
        put("self-cgroup", "12:pids:/\n11:memory:/api/x\n10:cpu,cpuacct:/\n0::/\n");
        snprintf(rel, sizeof(rel), "fs/memory/api/x/agentbroker-run-%s", RUN);
        touch_in(rel, (const char *const[]){ "memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                                             "cgroup.procs", NULL });
        snprintf(rel, sizeof(rel), "fs/pids/agentbroker-run-%s", RUN);
        touch_in(rel, (const char *const[]){ "pids.max", "cgroup.procs", NULL });
        snprintf(rel, sizeof(rel), "fs/cpu/agentbroker-run-%s", RUN);
        touch_in(rel,
                 (const char *const[]){ "cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs", NULL });

        assert_int_equal(hcg_create(RUN, &l, why, sizeof(why), &cg), 0);
        assert_false(hcg_is_v2(cg));
        snprintf(rel, sizeof(rel), "fs/memory/api/x/agentbroker-run-%s/memory.limit_in_bytes", RUN);
        assert_string_equal(get(rel), "268435456");
        snprintf(rel, sizeof(rel), "fs/memory/api/x/agentbroker-run-%s/memory.memsw.limit_in_bytes", RUN);
        assert_string_equal(get(rel), "268435456");
        snprintf(rel, sizeof(rel), "fs/pids/agentbroker-run-%s/pids.max", RUN);
        assert_string_equal(get(rel), "64");
        snprintf(rel, sizeof(rel), "fs/cpu/agentbroker-run-%s/cpu.cfs_quota_us", RUN);
        assert_string_equal(get(rel), "100000");
        snprintf(rel, sizeof(rel), "fs/cpu/agentbroker-run-%s/cpu.cfs_period_us", RUN);
        assert_string_equal(get(rel), "100000");
        {
                int fds[HCG_PROCS_MAX];
                int n = hcg_open_procs(cg, fds);

                assert_int_equal(n, 3);
                for (int i = 0; i < n; i++)
                        close(fds[i]);
        }
        assert_int_equal(hcg_kill(cg, &killed, &left), 0);
        assert_int_equal(left, 0);
        hcg_free(cg);
}

/* cgroup v1 without a hierarchy the profile needs: refused, saying which. */
static void
test_v1_missing_controller(void **state)
{
        const struct hcg_limits l = { .memory_bytes = 8 << 20 };
        struct hcg *cg = NULL;
        char why[512] = "";

        (void)state;
        put("self-cgroup", "12:pids:/\n0::/\n");
        touch("fs/pids/cgroup.procs");
        assert_int_equal(hcg_create(RUN, &l, why, sizeof(why), &cg), -EOPNOTSUPP);
        assert_null(cg);
        assert_non_null(strstr(why, "cgroup v1: no memory controller is mounted"));
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_v2_delegated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v2_not_delegated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1_missing_controller, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
