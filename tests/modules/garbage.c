/* SPDX-License-Identifier: MIT */
/* garbage: a test-only module that breaks the worker protocol. garbage.write writes bytes
 * that are not a valid frame straight to the worker's control socket (fd 4, where the host
 * starts agentbroker-worker with --control-fd 4), then returns normally. The host must treat
 * the worker as broken: kill it, end the call with an isError result, and keep serving.
 *   kind "bytes" (default)  a frame header announcing 4 GiB, then junk
 *   kind "notjson"          a well-formed frame whose body is not JSON
 *   kind "wrongid"          a well-formed result frame for a call that does not exist */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <agentbroker/module.h>

#define CONTROL_FD 4

static const char garbage_schema[] =
        "{\"type\":\"object\",\"properties\":{\"kind\":{\"type\":\"string\",\"enum\":[\"bytes\",\"notjson\",\"wrongid\"]}},"
        "\"additionalProperties\":false}";

/* Write a 4-byte big-endian length and body to fd. Returns 0 or -errno. */
static int
write_frame(int fd, uint32_t len, const char *body, size_t body_len)
{
        unsigned char buf[512];

        if (body_len > sizeof(buf) - 4)
                return -E2BIG;
        buf[0] = (unsigned char)(len >> 24);
        buf[1] = (unsigned char)(len >> 16);
        buf[2] = (unsigned char)(len >> 8);
        buf[3] = (unsigned char)len;
        memcpy(buf + 4, body, body_len);
        for (size_t off = 0; off < body_len + 4;) {
                ssize_t n = write(fd, buf + off, body_len + 4 - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t)n;
        }
        return 0;
}

static int
garbage_write(struct abm_call *call, struct abm_error *err)
{
        static const char junk[] = "\x01\xfe garbage \x7f\x80\xff not a frame";
        static const char notjson[] = "{\"t\":\"result\", this is not JSON";
        static const char wrongid[] =
                "{\"t\":\"result\",\"id\":987654321,\"isError\":false,\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}";
        const char *kind = "bytes";
        int r;

        (void)abm_json_get_string(abm_call_args(call), "kind", &kind);
        if (strcmp(kind, "notjson") == 0)
                r = write_frame(CONTROL_FD, sizeof(notjson) - 1, notjson, sizeof(notjson) - 1);
        else if (strcmp(kind, "wrongid") == 0)
                r = write_frame(CONTROL_FD, sizeof(wrongid) - 1, wrongid, sizeof(wrongid) - 1);
        else
                r = write_frame(CONTROL_FD, UINT32_MAX, junk, sizeof(junk) - 1);
        if (r < 0)
                return abm_error_set(err, r, "cannot write to fd %d: %s", CONTROL_FD, strerror(-r));
        return abm_call_textf(call, "wrote garbage (%s) to the control socket", kind);
}

static const struct abm_tool garbage_tools[] = {
        {
                .name = "write",
                .description =
                        "Test only: writes bytes that break the worker protocol to the control socket.",
                .input_schema = garbage_schema,
                .call = garbage_write,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "garbage",
        .version = "test",
        .tools = garbage_tools,
        .n_tools = 1,
};
