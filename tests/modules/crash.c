/* SPDX-License-Identifier: MIT */
/* crash: a test-only module whose tool dies of SIGSEGV, for the host's crash isolation
 * tests: the call must end with an isError result saying the worker crashed, and the host
 * and the other modules must keep serving (a fresh worker takes the next call). */
#include <errno.h>

#include <agentbroker/module.h>

static const char crash_schema[] = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";

/* Write through a NULL pointer (volatile, so that the compiler cannot drop it). */
static int
crash_segv(struct abm_call *call, struct abm_error *err)
{
        volatile int *volatile p = 0;

        *p = 42;
        return abm_error_set(err, -EFAULT, "still alive after writing to NULL");
}

static const struct abm_tool crash_tools[] = {
        {
                .name = "segv",
                .description = "Test only: dereferences NULL, killing its worker with SIGSEGV.",
                .input_schema = crash_schema,
                .call = crash_segv,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "crash",
        .version = "test",
        .tools = crash_tools,
        .n_tools = 1,
};
