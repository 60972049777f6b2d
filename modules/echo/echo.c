/* SPDX-License-Identifier: MIT */
/* echo: the smallest agentbroker module, and the template for writing one.
 *
 * It serves one tool, `echo.echo {text}`, which returns its text argument unchanged.
 * Benchmarks use it to measure the host itself (nothing here takes time).
 *
 * A module is a shared object exporting exactly one symbol, the descriptor
 * `agentbroker_module` (see <agentbroker/module.h> and docs/module-guide.md). Build it with
 *
 *     cc -shared -fPIC -fvisibility=hidden -Wl,-z,defs -o echo.so echo.c \
 *        $(pkg-config --cflags --libs agentbroker-module)
 *
 * -fvisibility=hidden keeps everything but the descriptor private; -Wl,-z,defs makes a
 * missing symbol a link error instead of a load-time failure. */
#include <errno.h>
#include <string.h>

#include <agentbroker/module.h>

/* The JSON Schema of the arguments. The host validates every call against it before the
 * call reaches the module (types, required members, lengths, additionalProperties), so the
 * hook below can rely on it: a tool should still not crash when an argument is missing. */
static const char echo_input_schema[] = "{"
                                        "\"type\":\"object\","
                                        "\"properties\":{"
                                        "\"text\":{\"type\":\"string\",\"maxLength\":65536,"
                                        "\"description\":\"The text to return.\"}"
                                        "},"
                                        "\"required\":[\"text\"],"
                                        "\"additionalProperties\":false"
                                        "}";

/* The tool's hook: runs once per call, in a worker process, one call at a time.
 * Results are added with abm_call_text() / abm_call_structured(); on failure, return a
 * negative errno with a message in err (abm_error_set does both): the client then gets an
 * isError result carrying that message. */
static int
echo_call(struct abm_call *call, struct abm_error *err)
{
        const char *text;
        int r;

        r = abm_json_get_string(abm_call_args(call), "text", &text);
        if (r < 0)
                return abm_error_set(err, r, "the argument \"text\" is missing or not a string");

        r = abm_call_text(call, text, (size_t)-1);
        if (r < 0)
                return abm_error_set(err, r, "cannot return the text: %s", strerror(-r));
        return 0;
}

static const struct abm_tool echo_tools[] = {
        {
                .name = "echo",                     /* served as "echo.echo" */
                .title = "Echo",
                .description = "Return the given text unchanged.",
                .input_schema = echo_input_schema,
                .output_schema = NULL,              /* text result only */
                /* MCP hints for clients: it changes nothing, the same text gives the same
                 * result, and it talks to nothing outside. */
                .annotations = {
                        .read_only = ABM_HINT_TRUE,
                        .destructive = ABM_HINT_FALSE,
                        .idempotent = ABM_HINT_TRUE,
                        .open_world = ABM_HINT_FALSE,
                },
                .call = echo_call,
        },
};

/* The one exported symbol. type and abi_version come first, so that a loader of any version
 * can check them before it reads anything else. No init or fini: echo has no state. */
AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "echo", /* must match the file name echo.so */
        .version = "1.0",
        .tools = echo_tools,
        .n_tools = sizeof(echo_tools) / sizeof(echo_tools[0]),
        .init = NULL,
        .fini = NULL,
};
