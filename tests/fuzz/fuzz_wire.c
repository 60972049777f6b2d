/* SPDX-License-Identifier: MIT */
/* Fuzz target: the broker protocol decoder (common/wire.c) on arbitrary datagrams. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        cJSON *m = NULL;
        const char *op = NULL, *err = NULL;
        int r = ab_wire_decode(data, size, &m, &op, &err);

        if (r == 0 || r == -EPROTO) {
                const char *s;
                uint64_t u;
                bool b;
                char *out;
                size_t len;

                (void)ab_wire_get_string(m, "run", AB_NAME_MAX, &s);
                (void)ab_wire_get_u64(m, "args_len", UINT32_MAX, &u);
                (void)ab_wire_get_bool(m, "x", &b);
                if (ab_wire_encode(m, &out, &len) == 0)
                        cJSON_free(out);
                cJSON_Delete(m);
        }
        return 0;
}
