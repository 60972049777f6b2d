/* SPDX-License-Identifier: MIT */
/* conformance: the fixture tools the official MCP conformance suite calls
 * (@modelcontextprotocol/conformance, src/scenarios/server/tools.ts), for
 * tests/http-conformance/run.sh. agentbroker-mcp serves them by their bare names
 * (--bare-names conformance), as the suite calls them. Test-only: never installed. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <agentbroker/module.h>

static const char no_args[] = "{\"type\":\"object\",\"additionalProperties\":false}";

/* A 1x1 red PNG and a tiny WAV (44-byte header + 2 samples), base64. */
#define RED_PIXEL_PNG \
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
#define TINY_WAV "UklGRigAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQQAAAAAAAAA"

static const char image_block[] =
        "{\"type\":\"image\",\"data\":\"" RED_PIXEL_PNG "\",\"mimeType\":\"image/png\"}";
static const char resource_block[] =
        "{\"type\":\"resource\",\"resource\":{\"uri\":\"test://embedded-resource\",\"mimeType\":\"text/plain\","
        "\"text\":\"This is an embedded resource content.\"}}";

static void
pause_ms(long ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

static int
fail_if(int r, struct abm_error *err)
{
        return r < 0 ? abm_error_set(err, r, "cannot add the result: %s", strerror(-r)) : 0;
}

static int
simple_text(struct abm_call *call, struct abm_error *err)
{
        return fail_if(abm_call_text(call, "This is a simple text response for testing.", (size_t)-1), err);
}

static int
image_content(struct abm_call *call, struct abm_error *err)
{
        return fail_if(abm_call_content(call, image_block), err);
}

static int
audio_content(struct abm_call *call, struct abm_error *err)
{
        return fail_if(abm_call_content(call, "{\"type\":\"audio\",\"data\":\"" TINY_WAV
                                              "\",\"mimeType\":\"audio/wav\"}"),
                       err);
}

static int
embedded_resource(struct abm_call *call, struct abm_error *err)
{
        return fail_if(abm_call_content(call, resource_block), err);
}

static int
multiple_content_types(struct abm_call *call, struct abm_error *err)
{
        int r = abm_call_text(call, "Multiple content types test:", (size_t)-1);

        if (r >= 0)
                r = abm_call_content(call, image_block);
        if (r >= 0)
                r = abm_call_content(call, resource_block);
        return fail_if(r, err);
}

static int
error_handling(struct abm_call *call, struct abm_error *err)
{
        (void)call;
        return abm_error_set(err, -EIO, "This tool intentionally returns an error for testing");
}

static int
with_progress(struct abm_call *call, struct abm_error *err)
{
        for (int i = 0; i <= 2; i++) {
                abm_call_progress(call, i * 50.0, 100.0, NULL);
                if (abm_call_cancelled(call))
                        return abm_error_set(err, -ECANCELED, "cancelled");
                pause_ms(50);
        }
        return fail_if(abm_call_text(call, "Progress complete", (size_t)-1), err);
}

static int
with_logging(struct abm_call *call, struct abm_error *err)
{
        abm_log(ABM_LOG_INFO, "Tool execution started");
        pause_ms(50);
        abm_log(ABM_LOG_INFO, "Tool processing data");
        pause_ms(50);
        abm_log(ABM_LOG_INFO, "Tool execution completed");
        return fail_if(abm_call_text(call, "Logging complete", (size_t)-1), err);
}

/* test_streaming_elicitation (server-stateless, SEP-2575): the suite reads the response
 * stream of this call and checks that it carries only notifications and the result, never a
 * server-to-client request. agentbroker-mcp sends no server-to-client requests (no
 * elicitation: a module cannot ask the client anything), so the call reports progress and
 * returns, and the stream shows exactly that. */
static int
streaming_no_elicitation(struct abm_call *call, struct abm_error *err)
{
        abm_call_progress(call, 1.0, 2.0, "working");
        abm_call_progress(call, 2.0, 2.0, "done");
        return fail_if(abm_call_text(call, "Streamed: progress notifications, then this result; no request",
                                     (size_t)-1),
                       err);
}

/* test_missing_capability (server-stateless, SEP-2575): needs the client's sampling
 * capability, declared in its input schema (x-agentbroker-client-capabilities, docs/mcp.md):
 * agentbroker-mcp refuses a call from a client that did not declare it with -32021. A client
 * that declared it gets this text (agentbroker sends no sampling request). */
static const char needs_sampling[] =
        "{\"type\":\"object\",\"additionalProperties\":false,\"x-agentbroker-client-capabilities\":[\"sampling\"]}";

static int
missing_capability(struct abm_call *call, struct abm_error *err)
{
        return fail_if(abm_call_text(call, "The client declared sampling", (size_t)-1), err);
}

#define TOOL_SCHEMA(n, d, schema, fn)                                \
        {                                                            \
                .name = n, .description = d, .input_schema = schema, \
                .annotations = { .read_only = ABM_HINT_TRUE,         \
                                 .destructive = ABM_HINT_FALSE,      \
                                 .idempotent = ABM_HINT_TRUE,        \
                                 .open_world = ABM_HINT_FALSE },     \
                .call = fn                                           \
        }
#define TOOL(n, d, fn) TOOL_SCHEMA(n, d, no_args, fn)

static const struct abm_tool tools[] = {
        TOOL("test_simple_text", "Returns a simple text block.", simple_text),
        TOOL("test_image_content", "Returns a 1x1 red PNG image block.", image_content),
        TOOL("test_audio_content", "Returns a tiny WAV audio block.", audio_content),
        TOOL("test_embedded_resource", "Returns an embedded text resource.", embedded_resource),
        TOOL("test_multiple_content_types", "Returns text, image and resource blocks.",
             multiple_content_types),
        TOOL("test_error_handling", "Always fails with an isError result.", error_handling),
        TOOL("test_tool_with_progress", "Reports progress 0, 50, 100 of 100, then returns.", with_progress),
        TOOL("test_tool_with_logging", "Logs three info messages 50 ms apart, then returns.", with_logging),
        TOOL("test_logging_tool", "Logs three info messages 50 ms apart, then returns.", with_logging),
        TOOL("test_streaming_elicitation",
             "Reports progress twice, then returns: its stream carries no server-to-client request.",
             streaming_no_elicitation),
        TOOL_SCHEMA("test_missing_capability",
                    "Needs the client's sampling capability (refused with -32021 without it).",
                    needs_sampling, missing_capability),
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "conformance",
        .version = "1.0",
        .tools = tools,
        .n_tools = sizeof tools / sizeof tools[0],
};
