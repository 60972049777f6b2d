/* SPDX-License-Identifier: MIT */
/* hello: the example module of docs/module-guide.md. It builds out of tree against the
 * installed <agentbroker/module.h> and libagentbroker-module (see the Makefile next to it):
 *
 *     make && sudo make install
 *
 * Tools (served as "hello.<tool>"):
 *   hello.greet {name, times?}   a greeting, `times` times (1..20), reporting progress and
 *                                stopping when the call is cancelled; text and structured
 *                                results
 *   hello.sign {message}         an HMAC-SHA256 of message, made by the broker with the secret
 *                                "hello_key": the key never reaches this process
 *
 * Configuration (policy `modules: hello: {greeting: "Hi"}`): the greeting word (default
 * "Hello").
 *
 * Only the descriptor `agentbroker_module` is exported (-fvisibility=hidden); everything else
 * is static. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <agentbroker/module.h>

#define GREETING_MAX 32
#define GREETING_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .,!'-"

/* Module state lives in the worker process. init runs once per worker before any call;
 * each worker has its own copy, so nothing here is shared between calls running at the
 * same time (they run in different processes). */
static char greeting[GREETING_MAX + 1] = "Hello";

/* The configuration from the policy: check it, copy what is needed (the object stays valid
 * for the life of the worker, but a copy is simpler to reason about). A failure here means
 * the module is not served, and the host logs the message. */
static int
hello_init(const struct abm_json *config, struct abm_error *err)
{
        const char *g;
        int r = abm_json_get_string(config, "greeting", &g);

        if (r == -ENOENT)
                return 0; /* not configured: keep the default */
        if (r < 0)
                return abm_error_set(err, r, "modules.hello.greeting must be a string");
        if (strlen(g) == 0 || strlen(g) > GREETING_MAX || strspn(g, GREETING_CHARS) != strlen(g))
                return abm_error_set(err, -EINVAL,
                                     "modules.hello.greeting must be 1 to %d letters, spaces "
                                     "and .,!'- characters",
                                     GREETING_MAX);
        strcpy(greeting, g);
        return 0;
}

static const char greet_input[] =
        "{\"type\":\"object\","
        "\"properties\":{"
        "\"name\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z][A-Za-z .'-]{0,63}$\","
        "\"description\":\"Who to greet (letters, spaces, . ' -).\"},"
        "\"times\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20,\"description\":\"How often (default 1).\"}"
        "},"
        "\"required\":[\"name\"],\"additionalProperties\":false}";

/* structuredContent must validate against this; the host checks it. */
static const char greet_output[] = "{\"type\":\"object\","
                                   "\"properties\":{"
                                   "\"greeting\":{\"type\":\"string\"},"
                                   "\"times\":{\"type\":\"integer\",\"minimum\":1}"
                                   "},"
                                   "\"required\":[\"greeting\",\"times\"],\"additionalProperties\":false}";

/* hello.greet: the arguments were validated against greet_input before the call was made,
 * so name is 1..64 letters, spaces and .'- and times, when present, an integer 1..20. */
static int
hello_greet(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *args = abm_call_args(call);
        const char *name;
        int64_t times = 1;
        char line[GREETING_MAX + 64 + 8], json[sizeof(line) + 64];
        int r;

        if (abm_json_get_string(args, "name", &name) < 0)
                return abm_error_set(err, -EINVAL, "name is required");
        r = abm_json_get_int(args, "times", &times);
        if (r < 0 && r != -ENOENT)
                return abm_error_set(err, r, "times must be an integer");

        snprintf(line, sizeof(line), "%s, %s!", greeting, name);
        for (int64_t i = 1; i <= times; i++) {
                /* Long work: tell the client how far along it is, and stop when it gives up. */
                if (abm_call_cancelled(call))
                        return abm_error_set(err, -ECANCELED, "cancelled after %lld greetings",
                                             (long long)(i - 1));
                (void)abm_call_progress(call, (double)i, (double)times, NULL);
                r = abm_call_text(call, line, (size_t)-1);
                if (r < 0)
                        return abm_error_set(err, r, "cannot add the greeting: %s", strerror(-r));
        }
        abm_log(ABM_LOG_DEBUG, "greeted %lld times", (long long)times);

        /* structuredContent is JSON text. The schema's pattern and hello_init's check keep
         * quotes, backslashes and control characters out of the line, so printing it into
         * a JSON string needs no escaping here; a module with arbitrary strings builds its
         * JSON with a library (cJSON, json-c, ...). */
        snprintf(json, sizeof(json), "{\"greeting\":\"%s\",\"times\":%lld}", line, (long long)times);
        r = abm_call_structured(call, json);
        if (r < 0)
                return abm_error_set(err, r, "cannot set the structured result: %s", strerror(-r));
        return 0;
}

static const char sign_input[] = "{\"type\":\"object\","
                                 "\"properties\":{\"message\":{\"type\":\"string\",\"maxLength\":4096}},"
                                 "\"required\":[\"message\"],\"additionalProperties\":false}";

/* hello.sign: the broker signs with the secret "hello_key", if the policy grants this tool
 * `sign` on it. A denial comes back as -EPERM with a reason from abm_call_denial(). */
static int
hello_sign(struct abm_call *call, struct abm_error *err)
{
        const char *message;
        unsigned char mac[64];
        size_t mac_len = 0;
        char hex[2 * sizeof(mac) + 1];
        int r;

        if (abm_json_get_string(abm_call_args(call), "message", &message) < 0)
                return abm_error_set(err, -EINVAL, "message is required");
        r = abm_call_sign(call, "hello_key", "hmac-sha256", message, strlen(message), mac, &mac_len);
        if (r == -EPERM)
                return abm_error_set(err, r, "the broker refused to sign: %s",
                                     abm_call_denial(call) ? abm_call_denial(call) : "denied");
        if (r < 0)
                return abm_error_set(err, r, "signing failed: %s", strerror(-r));
        for (size_t i = 0; i < mac_len; i++)
                snprintf(hex + 2 * i, 3, "%02x", mac[i]);
        return abm_call_textf(call, "HMAC-SHA256: %s", hex);
}

static const struct abm_tool hello_tools[] = {
        {
                .name = "greet",
                .title = "Greet someone",
                .description = "Return a greeting for `name`, repeated `times` times.",
                .input_schema = greet_input,
                .output_schema = greet_output,
                .annotations = {
                        .read_only = ABM_HINT_TRUE,
                        .destructive = ABM_HINT_FALSE,
                        .idempotent = ABM_HINT_TRUE,
                        .open_world = ABM_HINT_FALSE,
                },
                .call = hello_greet,
        },
        {
                .name = "sign",
                .title = "Sign a message",
                .description = "HMAC-SHA256 of `message` with the host's hello_key (the key stays in the broker).",
                .input_schema = sign_input,
                .annotations = {
                        .read_only = ABM_HINT_TRUE,
                        .destructive = ABM_HINT_FALSE,
                        .idempotent = ABM_HINT_TRUE,
                        .open_world = ABM_HINT_FALSE,
                },
                .call = hello_sign,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE, /* first two members: checked before anything else */
        .abi_version = ABM_ABI_VERSION,
        .name = "hello", /* must be the file name without ".so" */
        .version = "1.0",
        .tools = hello_tools,
        .n_tools = sizeof(hello_tools) / sizeof(hello_tools[0]),
        .init = hello_init,
        .fini = NULL,
};
