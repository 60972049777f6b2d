/* SPDX-License-Identifier: MIT */
/* initbreak: a test-only module whose init breaks its own tool table (it takes away the
 * input schema, which every tool must have). The worker describes the tools again after
 * init (an init may adapt them to its configuration): it must refuse the module then, with
 * the reason, instead of serving a tool it has not checked. */
#include <stddef.h>

#include <agentbroker/module.h>

static const char initbreak_schema[] =
        "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";

static int
initbreak_call(struct abm_call *call, struct abm_error *err)
{
        (void)err;
        return abm_call_text(call, "served", (size_t)-1);
}

/* Not const: init changes it. */
static struct abm_tool initbreak_tools[] = {
        {
                .name = "never",
                .description = "Test only: never served (init takes its input schema away).",
                .input_schema = initbreak_schema,
                .call = initbreak_call,
        },
};

static int
initbreak_init(const struct abm_json *config, struct abm_error *err)
{
        (void)config;
        (void)err;
        initbreak_tools[0].input_schema = NULL;
        return 0;
}

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "initbreak",
        .version = "test",
        .tools = initbreak_tools,
        .n_tools = 1,
        .init = initbreak_init,
};
