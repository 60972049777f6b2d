/* SPDX-License-Identifier: MIT */
/* hello: an out-of-tree agentbroker module, built by tests/packaging/run.sh against the
 * installed development package only:
 *
 *     cc -shared -fPIC -fvisibility=hidden -Wl,-z,defs -o hello.so hello.c \
 *        $(pkg-config --cflags --libs agentbroker-module)
 *
 * It serves one tool, `hello.greet {name}`, which answers "Hello, <name>!". */
#include <errno.h>
#include <string.h>

#include <agentbroker/module.h>

static const char greet_input_schema[] = "{"
                                         "\"type\":\"object\","
                                         "\"properties\":{"
                                         "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200}"
                                         "},"
                                         "\"required\":[\"name\"],"
                                         "\"additionalProperties\":false"
                                         "}";

/* Answers "Hello, <name>!"; 0, or a negative errno with a message in err. */
static int
greet_call(struct abm_call *call, struct abm_error *err)
{
        const char *name;
        int r;

        r = abm_json_get_string(abm_call_args(call), "name", &name);
        if (r < 0)
                return abm_error_set(err, r, "the argument \"name\" is missing or not a string");
        r = abm_call_textf(call, "Hello, %s!", name);
        if (r < 0)
                return abm_error_set(err, r, "cannot return the greeting: %s", strerror(-r));
        return 0;
}

static const struct abm_tool hello_tools[] = {
        {
                .name = "greet",
                .title = "Greet",
                .description = "Greet someone by name.",
                .input_schema = greet_input_schema,
                .annotations = {
                        .read_only = ABM_HINT_TRUE,
                        .destructive = ABM_HINT_FALSE,
                        .idempotent = ABM_HINT_TRUE,
                        .open_world = ABM_HINT_FALSE,
                },
                .call = greet_call,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "hello",
        .version = "1.0",
        .tools = hello_tools,
        .n_tools = sizeof(hello_tools) / sizeof(hello_tools[0]),
};
