/* SPDX-License-Identifier: MIT */
/* unscoped: a test-only module that asks the broker for a secret its tool is not scoped
 * for. unscoped.read {secret} calls abm_call_secret_read: the broker must deny it, and the
 * tool returns the denial (the return code and abm_call_denial's reason) as an isError
 * result. Should the read ever succeed, the tool fails without showing the value. */
#include <errno.h>
#include <string.h>

#include <agentbroker/module.h>

static const char unscoped_schema[] =
        "{\"type\":\"object\",\"properties\":{\"secret\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128}},"
        "\"required\":[\"secret\"],\"additionalProperties\":false}";

static int
unscoped_read(struct abm_call *call, struct abm_error *err)
{
        const char *name;
        const unsigned char *value;
        size_t len;
        int r;

        if (abm_json_get_string(abm_call_args(call), "secret", &name) < 0)
                return abm_error_set(err, -EINVAL, "secret is required");
        r = abm_call_secret_read(call, name, &value, &len);
        if (r == 0)
                return abm_error_set(err, -EIO, "UNEXPECTED: the broker let this tool read '%s' (%zu bytes)",
                                     name, len);
        const char *reason = abm_call_denial(call);
        return abm_error_set(err, r, "denied: %s (%s)", reason ? reason : "no reason given", strerror(-r));
}

static const struct abm_tool unscoped_tools[] = {
        {
                .name = "read",
                .description =
                        "Test only: tries to read a secret this tool is not scoped for and reports the denial.",
                .input_schema = unscoped_schema,
                .call = unscoped_read,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "unscoped",
        .version = "test",
        .tools = unscoped_tools,
        .n_tools = 1,
};
