/* SPDX-License-Identifier: MIT */
/* The module reports of the MCP hosts (broker/modreports.h): a small table, one entry per
 * module name, the oldest entry replaced when it is full. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker/modreports.h"

struct module_report {
        char name[AB_MODULE_NAME_MAX + 1];
        bool served;
        char *reason; /* NULL when served */
        uid_t uid;
        pid_t pid;
        int64_t at;
        uint64_t seq; /* 0: free */
};

struct ab_module_reports {
        struct module_report v[AB_MODULE_REPORTS_MAX];
        uint64_t seq;
};

int
ab_module_reports_new(struct ab_module_reports **ret)
{
        struct ab_module_reports *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

void
ab_module_reports_free(struct ab_module_reports *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < AB_MODULE_REPORTS_MAX; i++)
                free(t->v[i].reason);
        free(t);
}

int
ab_module_reports_set(struct ab_module_reports *t, const char *name, bool served, const char *reason,
                      uid_t uid, pid_t pid, int64_t now)
{
        struct module_report *slot = NULL, *oldest = &t->v[0];
        char *copy = NULL;

        if (!t || !ab_name_valid(name, AB_MODULE_NAME_MAX, 0) ||
            (reason && strlen(reason) > AB_MODULE_REASON_MAX))
                return -EINVAL;
        if (!served && !(copy = strdup(reason && *reason ? reason : "refused")))
                return -ENOMEM;
        for (size_t i = 0; i < AB_MODULE_REPORTS_MAX && !slot; i++) {
                if (t->v[i].seq && strcmp(t->v[i].name, name) == 0)
                        slot = &t->v[i];
                else if (t->v[i].seq < oldest->seq)
                        oldest = &t->v[i];
        }
        if (!slot)
                slot = oldest;
        free(slot->reason);
        *slot = (struct module_report){
                .served = served, .reason = copy, .uid = uid, .pid = pid, .at = now, .seq = ++t->seq
        };
        strcpy(slot->name, name);
        return 0;
}

static int
by_name(const void *a, const void *b)
{
        const struct module_report *x = *(const struct module_report *const *)a;
        const struct module_report *y = *(const struct module_report *const *)b;

        return strcmp(x->name, y->name);
}

int
ab_module_reports_to_json(const struct ab_module_reports *t, cJSON *array)
{
        const struct module_report *v[AB_MODULE_REPORTS_MAX];
        size_t n = 0;

        if (!array)
                return -ENOMEM;
        if (!t)
                return 0;
        for (size_t i = 0; i < AB_MODULE_REPORTS_MAX; i++)
                if (t->v[i].seq)
                        v[n++] = &t->v[i];
        qsort(v, n, sizeof(*v), by_name);
        for (size_t i = 0; i < n; i++) {
                cJSON *o = cJSON_CreateObject();

                if (!o || !cJSON_AddItemToArray(array, o)) {
                        cJSON_Delete(o);
                        return -ENOMEM;
                }
                if (!cJSON_AddStringToObject(o, "name", v[i]->name) ||
                    !cJSON_AddBoolToObject(o, "served", v[i]->served) ||
                    (v[i]->reason && !cJSON_AddStringToObject(o, "reason", v[i]->reason)) ||
                    !cJSON_AddNumberToObject(o, "reported_at", (double)v[i]->at) ||
                    !cJSON_AddNumberToObject(o, "host_pid", v[i]->pid) ||
                    !cJSON_AddNumberToObject(o, "host_uid", v[i]->uid))
                        return -ENOMEM;
        }
        return 0;
}
