/* SPDX-License-Identifier: MIT */
/* The host's failure mode: when agentbroker-mcp cannot serve tools (the broker is not there,
 * refuses it, or cannot write its audit trail), it does not vanish before `initialize` and
 * leave the client with a bare disconnect. It answers every JSON-RPC request on stdio with
 * an error that names the cause, until the end of its input. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/macros.h"
#include "host/mcp/jsonrpc.h"
#include "host/mcp/failmode.h"

#define FAIL_LINE_MAX (4u * 1024 * 1024) /* a longer line is skipped unanswered */
#define FAIL_REQUESTS_MAX 100000         /* then the host exits anyway */

/* Describe the broker's refusal to open a run (reason: its reason code) into buf. */
void
mcp_fail_describe_run_open(const char *reason, char *buf, size_t size)
{
        if (reason && strcmp(reason, "audit-failed") == 0)
                snprintf(buf, size,
                         "the broker refused to open a run (audit-failed): it cannot write "
                         "its audit trail and its policy says audit.failure: deny, so every tool call "
                         "is denied; `agentbrokerctl status` says why (often: agentbrokerd lacks "
                         "CAP_AUDIT_WRITE)");
        else if (reason && strcmp(reason, "client-not-allowed") == 0)
                snprintf(buf, size,
                         "the broker refused to open a run (client-not-allowed): uid %u "
                         "is not in the policy's clients (uids or groups)",
                         (unsigned)getuid());
        else
                snprintf(buf, size, "the broker refused to open a run (%s)", reason ? reason : "denied");
}

/* Answer one request line: an error response when it is a JSON-RPC request with an id.
 * Returns 0, or -EIO when the output cannot be written. */
static int
answer_line(const char *line, size_t len, const char *cause, FILE *out)
{
        _cleanup_free_ char *text = NULL;
        cJSON *req, *resp = NULL, *err;
        const cJSON *id;
        int r = 0;

        req = cJSON_ParseWithLength(line, len);
        if (!cJSON_IsObject(req))
                goto out; /* nothing to answer to */
        id = cJSON_GetObjectItemCaseSensitive(req, "id");
        if (!id || !(cJSON_IsString(id) || cJSON_IsNumber(id)))
                goto out; /* a notification (or a response): no answer */
        resp = cJSON_CreateObject();
        if (!resp || !cJSON_AddStringToObject(resp, "jsonrpc", JSONRPC_VERSION) ||
            !cJSON_AddItemToObject(resp, "id", cJSON_Duplicate(id, false)) ||
            !(err = cJSON_AddObjectToObject(resp, "error")) ||
            !cJSON_AddNumberToObject(err, "code", RPC_SERVER_NOT_READY) ||
            !cJSON_AddStringToObject(err, "message", cause) || !(text = cJSON_PrintUnformatted(resp))) {
                r = -ENOMEM;
                goto out;
        }
        if (fprintf(out, "%s\n", text) < 0 || fflush(out) != 0)
                r = -EIO;
out:
        cJSON_Delete(resp);
        cJSON_Delete(req);
        return r;
}

int
mcp_fail_serve(int in_fd, int out_fd, const char *cause)
{
        _cleanup_free_ char *buf = NULL;
        size_t used = 0, answered = 0;
        bool skipping = false;
        FILE *out;
        int r = 0;

        log_error("%s; answering every request with this error until the end of the input", cause);
        buf = malloc(FAIL_LINE_MAX);
        out = fdopen(dup(out_fd), "w");
        if (!buf || !out) {
                if (out)
                        fclose(out);
                return -ENOMEM;
        }
        for (;;) {
                char *nl;
                ssize_t n;

                if (used == FAIL_LINE_MAX) {
                        used = 0; /* an over-long line: dropped */
                        skipping = true;
                }
                n = read(in_fd, buf + used, FAIL_LINE_MAX - used);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                used += (size_t)n;
                while ((nl = memchr(buf, '\n', used))) {
                        size_t len = (size_t)(nl - buf);
                        if (!skipping) {
                                r = answer_line(buf, len, cause, out);
                                if (r < 0 || ++answered >= FAIL_REQUESTS_MAX)
                                        goto done;
                        }
                        skipping = false;
                        used -= len + 1;
                        memmove(buf, nl + 1, used);
                }
        }
        if (used && !skipping)
                r = answer_line(buf, used, cause, out);
done:
        if (fclose(out) != 0 && r == 0)
                r = -EIO;
        return r;
}
