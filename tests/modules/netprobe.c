/* SPDX-License-Identifier: MIT */
/* netprobe: a test-only module that reaches for the network from module code, for
 * tests/integration/egress.sh. Its tools a and b do the same (two tools so that the policy
 * can give them different egress rules):
 *
 *   {op:"connect", host, port, send?}  abm_call_connect, send `send`, read until EOF or 4 KiB:
 *                                      "connect rc=0 reply=<text>" or "connect rc=-1 errno=EPERM denial=<reason>"
 *   {op:"raw", host, port}             socket(AF_INET) + connect() itself: "raw rc=<n> errno=<NAME>"
 *   {op:"http", method, url, header?}  abm_call_http (header "Name: value" optional):
 *                                      "http rc=0 status=N bytes=N received=N truncated=0|1
 *                                      redactions=N type=<ct>\n<body>" or "http rc=-1 errno=E denial=R" */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <agentbroker/module.h>

static const char schema[] = "{\"type\":\"object\",\"properties\":{"
                             "\"op\":{\"type\":\"string\",\"enum\":[\"connect\",\"raw\",\"http\"]},"
                             "\"host\":{\"type\":\"string\",\"maxLength\":253},"
                             "\"port\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":65535},"
                             "\"send\":{\"type\":\"string\",\"maxLength\":1024},"
                             "\"method\":{\"type\":\"string\",\"maxLength\":16},"
                             "\"url\":{\"type\":\"string\",\"maxLength\":2048},"
                             "\"header\":{\"type\":\"string\",\"maxLength\":1024}},"
                             "\"required\":[\"op\"],\"additionalProperties\":false}";

static const char *
errname(int e)
{
        const char *n = e ? strerrorname_np(e) : "0";
        return n ? n : "?";
}

static int
fail_report(struct abm_call *call, const char *op, int r)
{
        const char *d = abm_call_denial(call);
        return abm_call_textf(call, "%s rc=-1 errno=%s denial=%s", op, errname(-r), d ? d : "-");
}

static int
do_connect(struct abm_call *call, const struct abm_json *a)
{
        const char *host, *send = NULL;
        char buf[4097];
        size_t got = 0;
        int64_t port;
        int fd, r;

        if (abm_json_get_string(a, "host", &host) < 0 || abm_json_get_int(a, "port", &port) < 0)
                return -EINVAL;
        (void)abm_json_get_string(a, "send", &send);
        r = abm_call_connect(call, host, (uint16_t)port, &fd);
        if (r < 0)
                return fail_report(call, "connect", r);
        if (send && write(fd, send, strlen(send)) < 0) {
                close(fd);
                return fail_report(call, "connect", -errno);
        }
        (void)shutdown(fd, SHUT_WR);
        for (;;) {
                ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
                if (got == sizeof(buf) - 1)
                        break;
        }
        close(fd);
        buf[got] = 0;
        return abm_call_textf(call, "connect rc=0 reply=%s", buf);
}

static int
do_raw(struct abm_call *call, const struct abm_json *a)
{
        struct sockaddr_in sin = { .sin_family = AF_INET };
        const char *host;
        int64_t port;
        int fd, rc, e;

        if (abm_json_get_string(a, "host", &host) < 0 || abm_json_get_int(a, "port", &port) < 0)
                return -EINVAL;
        sin.sin_port = htons((uint16_t)port);
        (void)inet_pton(AF_INET, host, &sin.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                e = errno;
                return abm_call_textf(call, "raw rc=-1 errno=%s step=socket", errname(e));
        }
        rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        e = rc < 0 ? errno : 0;
        close(fd);
        return abm_call_textf(call, "raw rc=%d errno=%s step=connect", rc, errname(e));
}

static int
do_http(struct abm_call *call, const struct abm_json *a)
{
        const struct abm_http_response *rsp;
        struct abm_http_header h;
        const char *method = "GET", *url, *header = NULL;
        char name[128];
        int r;

        if (abm_json_get_string(a, "url", &url) < 0)
                return -EINVAL;
        (void)abm_json_get_string(a, "method", &method);
        (void)abm_json_get_string(a, "header", &header);
        if (header) {
                const char *colon = strchr(header, ':');
                if (!colon || (size_t)(colon - header) >= sizeof(name))
                        return -EINVAL;
                snprintf(name, sizeof(name), "%.*s", (int)(colon - header), header);
                h.name = name;
                h.value = colon + 1 + (colon[1] == ' ');
        }
        r = abm_call_http(call, method, url, header ? &h : NULL, header ? 1 : 0, NULL, &rsp);
        if (r < 0)
                return fail_report(call, "http", r);
        return abm_call_textf(
                call, "http rc=0 status=%d bytes=%zu received=%llu truncated=%d redactions=%u type=%s\n%.*s",
                rsp->status, rsp->body_len, (unsigned long long)rsp->received, rsp->truncated,
                rsp->redactions, rsp->content_type, (int)(rsp->body_len > 4000 ? 4000 : rsp->body_len),
                rsp->body);
}

static int
probe(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *a = abm_call_args(call);
        const char *op;
        int r;

        if (abm_json_get_string(a, "op", &op) < 0)
                return abm_error_set(err, -EINVAL, "op missing");
        if (strcmp(op, "connect") == 0)
                r = do_connect(call, a);
        else if (strcmp(op, "raw") == 0)
                r = do_raw(call, a);
        else
                r = do_http(call, a);
        return r < 0 ? abm_error_set(err, r, "%s: %s", op, strerror(-r)) : 0;
}

static const struct abm_tool tools[] = {
        { .name = "a", .description = "Network probe (tests).", .input_schema = schema, .call = probe },
        { .name = "b",
          .description = "Network probe (tests), other rules.",
          .input_schema = schema,
          .call = probe },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "netprobe",
        .version = "1",
        .tools = tools,
        .n_tools = 2,
};
