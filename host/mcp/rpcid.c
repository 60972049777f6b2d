/* SPDX-License-Identifier: MIT */
/* JSON-RPC ids echoed exactly (see rpcid.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "host/mcp/rpcid.h"

/* Whether n is an integer number whose value is within +-MCP_ID_INT_MAX. The range is
 * checked before anything is converted: a double out of int64_t's range (or NaN) converted
 * to int64_t is undefined behaviour. */
static bool
exact_integer(const cJSON *n)
{
        double d;

        if (!cJSON_IsNumber(n))
                return false;
        d = n->valuedouble;
        return d >= -MCP_ID_INT_MAX && d <= MCP_ID_INT_MAX && floor(d) == d;
}

bool
mcp_id_valid(const cJSON *id)
{
        return cJSON_IsString(id) || cJSON_IsRaw(id) || exact_integer(id);
}

int
mcp_id_exact(cJSON *obj, const char *name)
{
        cJSON *n = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL, *raw;
        char text[32];

        if (!exact_integer(n))
                return 0;
        snprintf(text, sizeof(text), "%" PRId64, (int64_t)n->valuedouble);
        raw = cJSON_CreateRaw(text);
        /* (cJSON_ReplaceItemViaPointer would leave the member without its name) */
        if (!raw || !cJSON_ReplaceItemInObjectCaseSensitive(obj, name, raw)) {
                cJSON_Delete(raw);
                return -ENOMEM;
        }
        return 0;
}
