/* SPDX-License-Identifier: MIT */
/* sentinel: a test-only module whose tool takes an "offset" (so the host's note on a cut
 * result says the next offset) and returns text that begins with "<<<<<<<<<<<<<<<<<<<<", the
 * 20 characters the host once wrote as a placeholder into that note and then replaced,
 * wherever it found them first: in the tool's own text (tests/integration/mcp-shaping.sh). */
#include <stddef.h>
#include <string.h>

#include <agentbroker/module.h>

#define SENTINEL "<<<<<<<<<<<<<<<<<<<<"
#define FILL_BYTES 1000

static const char page_schema[] =
        "{\"type\":\"object\",\"properties\":{\"offset\":{\"type\":\"integer\",\"minimum\":0}},"
        "\"additionalProperties\":false}";

static int
sentinel_page(struct abm_call *call, struct abm_error *err)
{
        char text[sizeof(SENTINEL) + FILL_BYTES];

        (void)err;
        memcpy(text, SENTINEL, sizeof(SENTINEL) - 1);
        memset(text + sizeof(SENTINEL) - 1, 'x', FILL_BYTES);
        text[sizeof(text) - 1] = '\0';
        return abm_call_textf(call, "%s", text);
}

static const struct abm_tool sentinel_tools[] = {
        {
                .name = "page",
                .description = "Test only: 1,020 bytes of text that begin with twenty '<'.",
                .input_schema = page_schema,
                .call = sentinel_page,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "sentinel",
        .version = "test",
        .tools = sentinel_tools,
        .n_tools = 1,
};
