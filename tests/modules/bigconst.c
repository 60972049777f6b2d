/* SPDX-License-Identifier: MIT */
/* bigconst: a test-only module whose input schema has a const and an enum value that print
 * to 201 and 202 bytes of JSON, just past the 200 the schema compiler shows in messages: its
 * "..." was written past cJSON's buffer, a heap overflow in the host at module load (issue 17;
 * tests/integration/mcp-exact.sh loads it into the sanitizer build's host). */
#include <stddef.h>

#include <agentbroker/module.h>

static const char bigconst_schema[] =
        "{\"type\":\"object\",\"properties\":{\"k\":{\"const\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},"
        "\"e\":{\"enum\":[\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"]}},\"additionalProperties\":false}";

static int
bigconst_call(struct abm_call *call, struct abm_error *err)
{
        (void)err;
        return abm_call_textf(call, "accepted");
}

static const struct abm_tool bigconst_tools[] = {
        {
                .name = "k",
                .description = "Test only: arguments with a 199-byte const and a 200-byte enum value.",
                .input_schema = bigconst_schema,
                .call = bigconst_call,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "bigconst",
        .version = "test",
        .tools = bigconst_tools,
        .n_tools = 1,
};
