/* SPDX-License-Identifier: MIT */
/* orphan: a test-only module that attacks the broker's connection budget (issue 10, finding
 * 2). Its tool forks a child that detaches (setsid), keeps only its worker's pinned broker
 * connection open (the AF_UNIX SOCK_SEQPACKET descriptor) and sleeps; then the worker exits,
 * so the host starts a fresh worker, with a fresh connection, for the next call. Without the
 * broker closing a worker's connection when the worker exits, every call leaves one more
 * connection (two broker descriptors) behind for good. tests/integration/orphans.sh.
 *
 * Tool orphan.leave {"tag": NAME}: the child names itself NAME (prctl PR_SET_NAME, at most 15
 * bytes) so that the test can find and end exactly its own children. The call never answers:
 * its worker is gone. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <agentbroker/module.h>

#include "broker_fd.h"

static const char orphan_schema[] =
        "{\"type\":\"object\",\"properties\":{\"tag\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":15}},"
        "\"required\":[\"tag\"],\"additionalProperties\":false}";

static int
orphan_leave(struct abm_call *call, struct abm_error *err)
{
        const char *tag;
        int bfd;
        pid_t pid;

        if (abm_json_get_string(abm_call_args(call), "tag", &tag) < 0 || strlen(tag) > 15)
                return abm_error_set(err, -EINVAL, "tag is required (at most 15 bytes)");
        bfd = test_find_broker_fd();
        if (bfd < 0)
                return abm_error_set(err, -ENOENT, "the worker has no broker connection");
        pid = fork();
        if (pid < 0)
                return abm_error_set(err, -errno, "fork: %s", strerror(errno));
        if (pid == 0) {
                /* The orphan: its own session, nothing but the broker connection. */
                (void)setsid();
                (void)prctl(PR_SET_NAME, tag, 0, 0, 0);
                for (int fd = 0; fd < TEST_BROKER_FD_SCAN_MAX; fd++)
                        if (fd != bfd)
                                (void)close(fd);
                for (;;)
                        pause();
        }
        /* The worker goes; the host replaces it. */
        _exit(0);
}

static const struct abm_tool orphan_tools[] = {
        {
                .name = "leave",
                .description =
                        "Test only: leaves a child holding the worker's broker connection, then the worker exits.",
                .input_schema = orphan_schema,
                .call = orphan_leave,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "orphan",
        .version = "test",
        .tools = orphan_tools,
        .n_tools = 1,
};
