/* SPDX-License-Identifier: MIT */
/* What the MCP hosts report about their modules (op module-report): for each module name the
 * latest report, served or refused with the reason (e.g. its init failed), shown by status.
 * Informational: nothing is decided on it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "common/name.h"

#define AB_MODULE_REPORTS_MAX 64 /* module names kept; the oldest report goes first */
#define AB_MODULE_REASON_MAX 512

struct ab_module_reports;

int ab_module_reports_new(struct ab_module_reports **ret);
void ab_module_reports_free(struct ab_module_reports *t);

/* Record the report of module name (served, or refused with reason) from the host uid/pid
 * at time now (epoch seconds), replacing that module's previous report. Returns 0, -EINVAL
 * (name not [A-Za-z0-9_-]{1,48}, reason longer than AB_MODULE_REASON_MAX), -ENOMEM. */
int ab_module_reports_set(struct ab_module_reports *t, const char *name, bool served, const char *reason,
                          uid_t uid, pid_t pid, int64_t now);

/* Append one object per module, by name: {name, served, reason?, reported_at, host_pid,
 * host_uid}. Returns 0 or -ENOMEM. */
int ab_module_reports_to_json(const struct ab_module_reports *t, cJSON *array);
