/* SPDX-License-Identifier: MIT */
/* groupwritable: an ordinary test-only module. Installed with a safe mode it loads and
 * groupwritable.ping answers "pong"; the tests make their copy of it group-writable
 * (chmod g+w) and check that the host refuses to load it, with a log line naming the file,
 * while the other modules load. */
#include <agentbroker/module.h>

static const char ping_schema[] = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";

static int
groupwritable_ping(struct abm_call *call, struct abm_error *err)
{
        return abm_call_text(call, "pong", (size_t)-1);
}

static const struct abm_tool groupwritable_tools[] = {
        {
                .name = "ping",
                .description = "Test only: answers \"pong\".",
                .input_schema = ping_schema,
                .annotations = { ABM_HINT_TRUE, ABM_HINT_FALSE, ABM_HINT_TRUE, ABM_HINT_FALSE },
                .call = groupwritable_ping,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "groupwritable",
        .version = "test",
        .tools = groupwritable_tools,
        .n_tools = 1,
};
