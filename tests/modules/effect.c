/* SPDX-License-Identifier: MIT */
/* effect: a test-only tool with a visible side effect, for exactly-once tests (a replayed
 * or retried call must not append twice). effect.append {file, text} appends text and a
 * newline to file (an absolute path; created mode 0644 when missing; a symlink is refused)
 * in one write(2) with O_APPEND. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <agentbroker/module.h>

static const char append_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"file\":{\"type\":\"string\",\"pattern\":\"^/\",\"minLength\":2,\"maxLength\":4095},"
        "\"text\":{\"type\":\"string\",\"maxLength\":4096},"
        "\"delay_ms\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":60000}},"
        "\"required\":[\"file\",\"text\"],\"additionalProperties\":false}";

static int
effect_append(struct abm_call *call, struct abm_error *err)
{
        const char *file, *text;
        char *line;
        size_t len;
        int fd, r = 0;

        if (abm_json_get_string(abm_call_args(call), "file", &file) < 0 || file[0] != '/' ||
            abm_json_get_string(abm_call_args(call), "text", &text) < 0)
                return abm_error_set(err, -EINVAL, "file (an absolute path) and text are required");
        /* delay_ms (optional): wait first, so a test can cut a connection while the call runs. */
        {
                int64_t delay;
                if (abm_json_get_int(abm_call_args(call), "delay_ms", &delay) == 0 && delay > 0 &&
                    delay <= 60000)
                        usleep((useconds_t)delay * 1000);
        }
        len = strlen(text);
        line = malloc(len + 1);
        if (!line)
                return abm_error_set(err, -ENOMEM, "out of memory");
        memcpy(line, text, len);
        line[len] = '\n';
        fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0) {
                r = abm_error_set(err, -errno, "cannot open %s: %m", file);
        } else {
                ssize_t n = write(fd, line, len + 1);
                if (n < 0)
                        r = abm_error_set(err, -errno, "cannot append to %s: %m", file);
                else if ((size_t)n != len + 1)
                        r = abm_error_set(err, -EIO, "short write to %s (%zd of %zu bytes)", file, n,
                                          len + 1);
                if (close(fd) < 0 && r == 0)
                        r = abm_error_set(err, -errno, "cannot append to %s: %m", file);
        }
        free(line);
        if (r < 0)
                return r;
        return abm_call_textf(call, "appended %zu bytes to %s", len + 1, file);
}

static const struct abm_tool effect_tools[] = {
        {
                .name = "append",
                .description = "Test only: appends a line of text to a file (after delay_ms, if given).",
                .input_schema = append_schema,
                .annotations = { ABM_HINT_FALSE, ABM_HINT_FALSE, ABM_HINT_FALSE, ABM_HINT_FALSE },
                .call = effect_append,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "effect",
        .version = "test",
        .tools = effect_tools,
        .n_tools = 1,
};
