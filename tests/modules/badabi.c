/* SPDX-License-Identifier: MIT */
/* badabi: a test-only module built for ABI major 2, which this tree does not have. The
 * worker must refuse it before calling anything in it (its hooks would abort the worker if
 * they ran), and the host must serve the other modules. */
#include <stdlib.h>

#include <agentbroker/module.h>

static const char badabi_schema[] = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";

static int
badabi_init(const struct abm_json *config, struct abm_error *err)
{
        abort();
}

static int
badabi_call(struct abm_call *call, struct abm_error *err)
{
        abort();
}

static const struct abm_tool badabi_tools[] = {
        {
                .name = "never",
                .description = "Test only: never served (the module has ABI major 2).",
                .input_schema = badabi_schema,
                .call = badabi_call,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_MKVERSION(ABM_ABI_MAJOR + 1, 0),
        .name = "badabi",
        .version = "test",
        .tools = badabi_tools,
        .n_tools = 1,
        .init = badabi_init,
};
