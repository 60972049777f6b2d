/* SPDX-License-Identifier: MIT */
/* Shared set-up of the MCP fuzz targets (see mcp_host.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syslog.h>
#include <sys/un.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "common/frame.h"
#include "common/log.h"
#include "common/utf8.h"
#include "tests/fuzz/mcp_host.h"

/* A broker connection whose peer has gone: connect to a listener made for the purpose, then
 * close both ends of it and remove the socket, so requests and reconnects fail at once. */
static struct hb_broker *
dead_broker(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct hb_broker *b = NULL;
        int l, c;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/ab-fuzz-broker-%d.sock", (int)getpid());
        unlink(sa.sun_path);
        l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0)
                abort();
        if (hb_connect(sa.sun_path, &b) < 0)
                abort();
        c = accept(l, NULL, NULL);
        if (c >= 0)
                close(c);
        close(l);
        unlink(sa.sun_path);
        hb_set_timeout_ms(b, 50);
        return b;
}

struct fuzz_host *
fuzz_host_get(void)
{
        static struct fuzz_host h;

        if (h.event)
                return &h;
        ab_log_set_max_level(getenv("FUZZ_VERBOSE") ? LOG_DEBUG : LOG_CRIT);
        if (sd_event_new(&h.event) < 0)
                abort();
        if (hw_registry_new(h.event, "/nonexistent/agentbroker-worker", "/nonexistent/broker.sock", NULL,
                            NULL, &h.registry) < 0)
                abort();
        h.broker = dead_broker();
        return &h;
}

void
fuzz_host_check_sent(const char *json, size_t len)
{
        cJSON *m, *v;

        if (!ab_utf8_valid(json, len, NULL)) {
                fprintf(stderr, "the host sent a message that is not valid UTF-8: %.*s\n",
                        (int)(len > 400 ? 400 : len), json);
                abort();
        }
        m = ab_json_parse_exact(json, len);
        v = cJSON_GetObjectItemCaseSensitive(m, "jsonrpc");
        if (!cJSON_IsObject(m) || !cJSON_IsString(v) || strcmp(v->valuestring, "2.0") != 0) {
                fprintf(stderr, "the host sent a message that is not JSON-RPC 2.0: %.*s\n",
                        (int)(len > 400 ? 400 : len), json);
                abort();
        }
        cJSON_Delete(m);
}

void
fuzz_host_lines(const unsigned char *data, size_t size, void (*fn)(const char *line, size_t len, void *arg),
                void *arg)
{
        const char *p = (const char *)data, *end = p + size;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

                fn(p, n, arg);
                p += n + (nl ? 1 : 0);
        }
}
