/* SPDX-License-Identifier: MIT */
/* Run profiles (docs/policy.md, "profiles"): lookup, the tool and secret subsets a run of a
 * profile may use, and the JSON form run-open hands the host. */
#include "config.h"

#include <fnmatch.h>
#include <string.h>

#include "policy/policy.h"

const struct ab_policy_profile *
ab_policy_find_profile(const struct ab_policy *p, const char *name)
{
        for (size_t i = 0; p && name && i < p->n_profiles; i++)
                if (strcmp(p->profiles[i].name, name) == 0)
                        return &p->profiles[i];
        return NULL;
}

bool
ab_policy_profile_allows_tool(const struct ab_policy_profile *pr, const char *tool)
{
        if (!pr || !pr->tools)
                return true;
        for (size_t i = 0; i < pr->n_tools; i++)
                if (fnmatch(pr->tools[i], tool, 0) == 0)
                        return true;
        return false;
}

bool
ab_policy_profile_allows_secret(const struct ab_policy_profile *pr, const char *secret)
{
        if (!pr || !pr->secrets)
                return true;
        for (size_t i = 0; i < pr->n_secrets; i++)
                if (strcmp(pr->secrets[i], secret) == 0)
                        return true;
        return false;
}

/* {"name", "mounts": [{"source","target","read_only"}], "workspace_bytes", "memory_bytes",
 * "pids", "cpu_millis", "network": "none"|"host"}. Returns NULL on out of memory. */
cJSON *
ab_policy_profile_to_json(const struct ab_policy_profile *pr)
{
        cJSON *o = cJSON_CreateObject(), *mounts = cJSON_CreateArray();

        if (!o || !mounts) {
                cJSON_Delete(o);
                cJSON_Delete(mounts);
                return NULL;
        }
        if (!cJSON_AddItemToObject(o, "mounts", mounts)) {
                cJSON_Delete(mounts);
                cJSON_Delete(o);
                return NULL;
        }
        for (size_t i = 0; i < pr->n_mounts; i++) {
                cJSON *m = cJSON_CreateObject();

                if (!m || !cJSON_AddItemToArray(mounts, m) ||
                    !cJSON_AddStringToObject(m, "source", pr->mounts[i].source) ||
                    !cJSON_AddStringToObject(m, "target", pr->mounts[i].target) ||
                    !cJSON_AddBoolToObject(m, "read_only", pr->mounts[i].read_only)) {
                        cJSON_Delete(o);
                        return NULL;
                }
        }
        if (!cJSON_AddStringToObject(o, "name", pr->name) ||
            !cJSON_AddNumberToObject(o, "workspace_bytes", (double)pr->workspace_bytes) ||
            !cJSON_AddNumberToObject(o, "memory_bytes", (double)pr->memory_bytes) ||
            !cJSON_AddNumberToObject(o, "pids", (double)pr->pids) ||
            !cJSON_AddNumberToObject(o, "cpu_millis", (double)pr->cpu_millis) ||
            !cJSON_AddStringToObject(o, "network", pr->network_none ? "none" : "host") ||
            !cJSON_AddNumberToObject(o, "max_duration_s", (double)pr->max_duration_s)) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}
