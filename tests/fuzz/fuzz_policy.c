/* SPDX-License-Identifier: MIT */
/* Fuzz target: the policy loader (policy/policy_load.c) on arbitrary documents, and the
 * evaluator on whatever policy loads. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const tools[] = { "echo.echo", "fs.read_file", "sign.jwt", "a", "" };
        struct ab_policy *p = NULL;
        char *err = NULL;

        if (ab_policy_load_string("fuzz.yaml", (const char *)data, size, &p, &err) == 0) {
                cJSON *args = cJSON_Parse("{\"path\":\"/srv/x\",\"count\":5,\"mode\":\"fast\"}");

                for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
                        const struct ab_policy_tool *t = ab_policy_find_tool(p, tools[i]);
                        char *reason = NULL;

                        if (!t)
                                continue;
                        for (size_t g = 0; g < t->n_grants; g++)
                                (void)ab_policy_find_secret(p, t->grants[g].secret);
                        if (ab_policy_check_args(t, args, &reason) == -EPERM)
                                free(reason);
                }
                cJSON_Delete(args);
        }
        ab_policy_free(p);
        free(err);
        return 0;
}
