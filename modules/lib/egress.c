/* SPDX-License-Identifier: MIT */
/* The network of a call (ABI 1.1): abm_call_connect and abm_call_http ask agentbroker-egress
 * over the worker's --egress-fd channel (docs/architecture.md, "Egress"). The call's token
 * goes with each request: agentbroker-egress presents it to the broker, which decides. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/log.h"
#include "common/wire.h"
#include "modules/lib/internal.h"
#include "common/secmem.h"

#define EGRESS_TIMEOUT_SLACK_MS 5000                      /* beyond the egress process's own timeouts */
#define EGRESS_WAIT_MS (300000 + EGRESS_TIMEOUT_SLACK_MS) /* the longest entry timeout_ms + slack */
#define EGRESS_BODY_MAX ((size_t)64 * 1024 * 1024)        /* the policy's largest max_response_bytes */

/* Requests are numbered: an answer to one the worker gave up on (EGRESS_WAIT_MS) is dropped. */
static uint64_t egress_n;

/* The request envelope with the call's identity. Returns it or NULL on OOM. */
static cJSON *
egress_request(struct abm_call *call, const char *t)
{
        cJSON *m = cJSON_CreateObject();

        if (!m || !cJSON_AddStringToObject(m, "t", t) ||
            !cJSON_AddNumberToObject(m, "n", (double)++egress_n) ||
            !cJSON_AddStringToObject(m, "token", call->token) ||
            !cJSON_AddStringToObject(m, "tool", call->tool_name)) {
                abmi_json_wipe_delete(m);
                return NULL;
        }
        return m;
}

/* Map an error reply to -errno (keeping its reason for abm_call_denial). */
static int
egress_error(struct abm_call *call, const cJSON *reply)
{
        const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "error"));
        const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "reason"));
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "message"));

        abmi_call_set_denial(call, reason);
        if (message)
                abm_log(ABM_LOG_INFO, "egress: %s", message);
        if (!error)
                return -EIO;
        if (strcmp(error, "denied") == 0)
                return -EPERM;
        if (strcmp(error, "invalid") == 0)
                return -EINVAL;
        if (strcmp(error, "timeout") == 0)
                return -ETIMEDOUT;
        if (strcmp(error, "connect") == 0)
                return message && strstr(message, "refused")     ? -ECONNREFUSED
                       : message && strstr(message, "timed out") ? -ETIMEDOUT
                                                                 : -EHOSTUNREACH;
        return -EIO;
}

/* Send req (wiped and freed) and wait for the answer. Returns 0 with *ret and *ret_fd (-1 when
 * none came), or -errno. */
static int
egress_roundtrip(struct abm_call *call, cJSON *req, cJSON **ret, int *ret_fd)
{
        struct abmi_worker *w = call->worker;
        cJSON *reply = NULL;
        int fd = -1, r;

        call->have_denial = false;
        r = ab_fdpass_send(w->egress_fd, req, -1);
        abmi_json_wipe_delete(req);
        if (r < 0)
                return -EIO;
        call->egress_used = true;
        for (;;) {
                uint64_t n = 0;

                r = ab_fdpass_recv(w->egress_fd, EGRESS_WAIT_MS, &reply, &fd);
                if (r < 0) {
                        ab_log(LOG_ERR, "%s: no answer from agentbroker-egress: %s", w->name, strerror(-r));
                        return -EIO;
                }
                if (ab_wire_get_u64(reply, "n", AB_JSON_INT_MAX, &n) == 0 && n == egress_n)
                        break;
                /* A late answer to a request given up on. */
                if (fd >= 0)
                        close(fd);
                fd = -1;
                abmi_json_wipe_delete(reply);
                reply = NULL;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                r = egress_error(call, reply);
                if (fd >= 0)
                        close(fd);
                abmi_json_wipe_delete(reply);
                return r;
        }
        *ret = reply;
        *ret_fd = fd;
        return 0;
}

ABM_API int
abm_call_connect(struct abm_call *call, const char *host, uint16_t port, int *ret_fd)
{
        cJSON *req, *reply = NULL;
        int fd = -1, r;

        if (!call || !host || !*host || strlen(host) > 253 || port == 0 || !ret_fd)
                return -EINVAL;
        if (!call->worker || call->worker->egress_fd < 0)
                return -ENOSYS;
        if (!call->token)
                return -EIO;
        req = egress_request(call, "connect");
        if (!req || !cJSON_AddStringToObject(req, "host", host) ||
            !cJSON_AddNumberToObject(req, "port", port)) {
                abmi_json_wipe_delete(req);
                return -ENOMEM;
        }
        r = egress_roundtrip(call, req, &reply, &fd);
        if (r < 0)
                return r;
        abmi_json_wipe_delete(reply);
        if (fd < 0)
                return -EIO;
        *ret_fd = fd;
        return 0;
}

/* Read the body memfd (at most EGRESS_BODY_MAX) into a new NUL-terminated buffer. */
static int
read_body(int fd, char **ret, size_t *ret_len)
{
        struct stat st;
        size_t len, o = 0;
        char *buf;

        if (fstat(fd, &st) < 0 || st.st_size < 0 || (size_t)st.st_size > EGRESS_BODY_MAX)
                return -EIO;
        len = (size_t)st.st_size;
        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        while (o < len) {
                ssize_t n = pread(fd, buf + o, len - o, (off_t)o);
                if (n <= 0) {
                        if (n < 0 && errno == EINTR)
                                continue;
                        free(buf);
                        return -EIO;
                }
                o += (size_t)n;
        }
        buf[len] = 0;
        *ret = buf;
        *ret_len = len;
        return 0;
}

ABM_API int
abm_call_http(struct abm_call *call, const char *method, const char *url,
              const struct abm_http_header *headers, size_t n_headers, const char *body,
              const struct abm_http_response **ret)
{
        struct abm_http_response *rsp = NULL, **list;
        cJSON *req, *reply = NULL, *hdrs;
        const char *ct;
        char *bytes = NULL, *ctype = NULL;
        size_t len = 0;
        uint64_t u;
        int fd = -1, r;

        if (!call || !method || !url || !ret || (n_headers && !headers))
                return -EINVAL;
        if (!call->worker || call->worker->egress_fd < 0)
                return -ENOSYS;
        if (!call->token)
                return -EIO;
        req = egress_request(call, "http");
        hdrs = req ? cJSON_AddArrayToObject(req, "headers") : NULL;
        if (!hdrs || !cJSON_AddStringToObject(req, "method", method) ||
            !cJSON_AddStringToObject(req, "url", url) ||
            (body && !cJSON_AddStringToObject(req, "body", body))) {
                abmi_json_wipe_delete(req);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_headers; i++) {
                cJSON *h;

                if (!headers[i].name || !headers[i].value) {
                        abmi_json_wipe_delete(req);
                        return -EINVAL;
                }
                h = cJSON_CreateObject();
                if (!h || !cJSON_AddItemToArray(hdrs, h)) {
                        cJSON_Delete(h);
                        abmi_json_wipe_delete(req);
                        return -ENOMEM;
                }
                if (!cJSON_AddStringToObject(h, "name", headers[i].name) ||
                    !cJSON_AddStringToObject(h, "value", headers[i].value)) {
                        abmi_json_wipe_delete(req);
                        return -ENOMEM;
                }
        }
        r = egress_roundtrip(call, req, &reply, &fd);
        if (r < 0)
                return r;
        r = fd >= 0 ? read_body(fd, &bytes, &len) : -EIO;
        if (fd >= 0)
                close(fd);
        if (r < 0)
                goto out;
        ct = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "content_type"));
        rsp = calloc(1, sizeof(*rsp));
        ctype = strdup(ct ? ct : "");
        list = realloc(call->responses, (call->n_responses + 1) * sizeof(*list));
        if (list)
                call->responses = list;
        if (!rsp || !ctype || !list) {
                r = -ENOMEM;
                goto out;
        }
        rsp->status = ab_wire_get_u64(reply, "status", 999, &u) == 0 ? (int)u : 0;
        rsp->received = ab_wire_get_u64(reply, "received", (uint64_t)1 << 52, &u) == 0 ? u : len;
        rsp->redactions = ab_wire_get_u64(reply, "redactions", 1u << 30, &u) == 0 ? (unsigned)u : 0;
        rsp->truncated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "truncated"));
        rsp->content_type = AB_TAKE_PTR(ctype);
        rsp->body = AB_TAKE_PTR(bytes);
        rsp->body_len = len;
        call->responses[call->n_responses++] = rsp;
        *ret = AB_TAKE_PTR(rsp);
        r = 0;
out:
        free(rsp);
        free(ctype);
        if (bytes) {
                ab_freezero(bytes, len);
        }
        abmi_json_wipe_delete(reply);
        return r;
}

void
abmi_egress_end(struct abm_call *call)
{
        for (size_t i = 0; i < call->n_responses; i++) {
                struct abm_http_response *rsp = call->responses[i];

                ab_freezero((char *)rsp->body, rsp->body_len);
                free((char *)rsp->content_type);
                free(rsp);
        }
        free(call->responses);
        call->responses = NULL;
        call->n_responses = 0;
        if (call->egress_used && call->worker && call->worker->egress_fd >= 0) {
                cJSON *m = cJSON_CreateObject();

                if (m && cJSON_AddStringToObject(m, "t", "end"))
                        (void)ab_fdpass_send(call->worker->egress_fd, m, -1);
                cJSON_Delete(m);
                call->egress_used = false;
        }
}

ABM_API const char *
abm_call_tool(const struct abm_call *call)
{
        return call && call->tool ? call->tool->name : NULL;
}
