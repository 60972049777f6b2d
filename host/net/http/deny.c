/* SPDX-License-Identifier: MIT */
/* Aggregated HTTP authentication denials (see httpdeny.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/net/http/deny.h"

struct slot {
        char source[MCP_HTTP_DENY_SOURCE_MAX + 1];
        const char *reason;  /* static; NULL: free slot */
        uint64_t since_usec; /* first denial of the interval */
        unsigned count;
};

struct mcp_http_denials {
        struct slot slots[MCP_HTTP_DENY_SLOTS + 1]; /* the last one: MCP_HTTP_DENY_OVERFLOW */
};

int
mcp_http_denials_new(struct mcp_http_denials **ret)
{
        struct mcp_http_denials *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

void
mcp_http_denials_free(struct mcp_http_denials *d)
{
        free(d);
}

/* The slot of (source, reason): the one counting it, else a free one, else NULL. */
static struct slot *
find_slot(struct mcp_http_denials *d, const char *source, const char *reason)
{
        struct slot *free_slot = NULL;

        for (size_t i = 0; i < MCP_HTTP_DENY_SLOTS; i++) {
                struct slot *s = &d->slots[i];

                if (!s->reason) {
                        if (!free_slot)
                                free_slot = s;
                } else if (s->reason == reason && strcmp(s->source, source) == 0)
                        return s;
        }
        return free_slot;
}

void
mcp_http_denials_note(struct mcp_http_denials *d, const char *source, const char *reason, uint64_t now_usec)
{
        struct slot *s;

        if (!d || !reason)
                return;
        s = find_slot(d, source ? source : "?", reason);
        if (!s) {
                /* Every slot is taken: one count for all the rest, whatever their reason. */
                s = &d->slots[MCP_HTTP_DENY_SLOTS];
                if (!s->reason) {
                        snprintf(s->source, sizeof(s->source), "%s", MCP_HTTP_DENY_OVERFLOW);
                        s->reason = reason;
                        s->since_usec = now_usec;
                }
                s->count++;
                return;
        }
        if (!s->reason) {
                snprintf(s->source, sizeof(s->source), "%s", source ? source : "?");
                s->reason = reason;
                s->since_usec = now_usec;
                s->count = 0;
        }
        s->count++;
}

void
mcp_http_denials_flush(struct mcp_http_denials *d, uint64_t now_usec, bool force, mcp_http_deny_report_fn fn,
                       void *userdata)
{
        if (!d)
                return;
        for (size_t i = 0; i <= MCP_HTTP_DENY_SLOTS; i++) {
                struct slot *s = &d->slots[i];
                uint64_t age;

                if (!s->reason)
                        continue;
                age = now_usec > s->since_usec ? now_usec - s->since_usec : 0;
                if (!force && age < (uint64_t)MCP_HTTP_DENY_INTERVAL_S * 1000000u)
                        continue;
                if (fn && s->count > 0)
                        fn(userdata, s->source, s->reason, s->count, (unsigned)((age + 999999u) / 1000000u));
                memset(s, 0, sizeof(*s));
        }
}
