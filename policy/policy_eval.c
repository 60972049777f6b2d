/* SPDX-License-Identifier: MIT */
/* Policy evaluation: which rule governs a tool, what it grants, whether a call's
 * arguments pass the rule's constraints. A loaded policy is never modified here. */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "common/macros.h"
#include "common/regex.h"
#include "policy/policy.h"

static const struct {
        unsigned op;
        const char *name;
} op_names[] = {
        { AB_OP_READ, "read" },
        { AB_OP_SIGN, "sign" },
        { AB_OP_MINT_JWT, "mint-jwt" },
        { AB_OP_INJECT, "inject" },
};

unsigned
ab_policy_op_from_string(const char *s)
{
        if (!s)
                return 0;
        for (size_t i = 0; i < AB_ELEMENTSOF(op_names); i++)
                if (strcmp(s, op_names[i].name) == 0)
                        return op_names[i].op;
        return 0;
}

/* Returns NULL for anything that is not exactly one AB_OP_* bit. */
const char *
ab_policy_op_to_string(unsigned op)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(op_names); i++)
                if (op == op_names[i].op)
                        return op_names[i].name;
        return NULL;
}

/* Rules are kept in file order. An exact rule wins over every glob (the earliest exact
 * rule if there are several); among globs the longest pattern wins, the earliest on a tie.
 * A rule with allow: false is returned like any other: the caller denies. */
const struct ab_policy_tool *
ab_policy_find_tool(const struct ab_policy *p, const char *tool)
{
        const struct ab_policy_tool *best = NULL;
        size_t best_len = 0;

        if (!p || !tool)
                return NULL;
        for (size_t i = 0; i < p->n_tools; i++) {
                const struct ab_policy_tool *t = &p->tools[i];
                size_t len;

                if (!t->match)
                        continue;
                if (!t->is_glob) {
                        if (strcmp(t->match, tool) == 0)
                                return t;
                        continue;
                }
                len = strlen(t->match);
                if (len > best_len && fnmatch(t->match, tool, 0) == 0) {
                        best = t;
                        best_len = len;
                }
        }
        return best;
}

const struct ab_policy_secret *
ab_policy_find_secret(const struct ab_policy *p, const char *name)
{
        if (!p || !name)
                return NULL;
        for (size_t i = 0; i < p->n_secrets; i++)
                if (strcmp(p->secrets[i].name, name) == 0)
                        return &p->secrets[i];
        return NULL;
}

unsigned
ab_policy_grant_ops(const struct ab_policy_tool *rule, const char *secret)
{
        unsigned ops = 0;

        if (!rule || !secret)
                return 0;
        for (size_t i = 0; i < rule->n_grants; i++)
                if (strcmp(rule->grants[i].secret, secret) == 0)
                        ops |= rule->grants[i].ops;
        return ops;
}

const struct ab_policy_module *
ab_policy_find_module(const struct ab_policy *p, const char *name)
{
        if (!p || !name)
                return NULL;
        for (size_t i = 0; i < p->n_modules; i++)
                if (strcmp(p->modules[i].name, name) == 0)
                        return &p->modules[i];
        return NULL;
}

const struct ab_policy_server *
ab_policy_find_server(const struct ab_policy *p, const char *name)
{
        if (!p || !name)
                return NULL;
        for (size_t i = 0; i < p->n_servers; i++)
                if (strcmp(p->servers[i].name, name) == 0)
                        return &p->servers[i];
        return NULL;
}

enum arg_fail {
        ARG_OK,
        ARG_NOT_OBJECT,
        ARG_TWICE,
        ARG_MISSING,
        ARG_NOT_STRING,
        ARG_TOO_LONG,
        ARG_NOT_IN_ENUM,
        ARG_NO_MATCH,
        ARG_MATCH_LIMIT,
        ARG_NOT_NUMBER,
        ARG_BELOW_MIN,
        ARG_ABOVE_MAX,
        ARG_NOT_BENEATH,
};

/* The `beneath:` constraint of a: the value must be a string naming a path inside one of its
 * directories once normalised (absolute, no "..", see ab_policy_path_beneath). */
static enum arg_fail
check_beneath(const struct ab_policy_argc *a, const cJSON *v, const char **ret_rule)
{
        const char *s;

        if (!a->beneath)
                return ARG_OK;
        s = cJSON_GetStringValue(v);
        if (!s) {
                *ret_rule = "beneath";
                return ARG_NOT_STRING;
        }
        return ab_policy_path_beneath(s, a->beneath, a->n_beneath) ? ARG_OK : ARG_NOT_BENEATH;
}

/* Check one present argument value against constraint a. Returns ARG_OK or the first
 * constraint it fails; *ret_rule names the rule for the type errors. */
static enum arg_fail
check_value(const struct ab_policy_argc *a, const cJSON *v, const char **ret_rule)
{
        enum arg_fail f = check_beneath(a, v, ret_rule);

        if (f != ARG_OK)
                return f;
        if (a->pattern || a->max_length >= 0 || a->enum_values) {
                const char *s = cJSON_GetStringValue(v);
                if (!s) {
                        *ret_rule = a->pattern ? "pattern" : a->enum_values ? "enum" : "max_length";
                        return ARG_NOT_STRING;
                }
                if (a->max_length >= 0 && strlen(s) > (size_t)a->max_length)
                        return ARG_TOO_LONG;
                if (a->enum_values) {
                        bool found = false;
                        for (size_t i = 0; i < a->n_enum && !found; i++)
                                found = strcmp(a->enum_values[i], s) == 0;
                        if (!found)
                                return ARG_NOT_IN_ENUM;
                }
                if (a->pattern) {
                        int r = ab_regex_search(a->re, s, strlen(s), NULL, NULL);
                        if (r < 0) /* a limit: neither matched nor not, so refused */
                                return ARG_MATCH_LIMIT;
                        if (r == 0)
                                return ARG_NO_MATCH;
                }
        }
        if (a->has_min || a->has_max) {
                if (!cJSON_IsNumber(v)) {
                        *ret_rule = a->has_min ? "min" : "max";
                        return ARG_NOT_NUMBER;
                }
                if (a->has_min && v->valuedouble < a->min)
                        return ARG_BELOW_MIN;
                if (a->has_max && v->valuedouble > a->max)
                        return ARG_ABOVE_MAX;
        }
        return ARG_OK;
}

/* The reason for a failed check: names the argument and the rule, never the value.
 * Returns the new string or NULL (out of memory). */
static char *
fail_reason(enum arg_fail f, const struct ab_policy_argc *a, const char *rule)
{
        char *r = NULL;
        int n = -1;

        switch (f) {
        case ARG_NOT_OBJECT: n = asprintf(&r, "arguments must be a JSON object"); break;
        case ARG_TWICE: n = asprintf(&r, "argument '%s' is given more than once", a->name); break;
        case ARG_MISSING: n = asprintf(&r, "argument '%s' is missing (required)", a->name); break;
        case ARG_NOT_STRING: n = asprintf(&r, "argument '%s' must be a string (%s)", a->name, rule); break;
        case ARG_TOO_LONG:
                n = asprintf(&r, "argument '%s' is longer than max_length (%ld)", a->name, a->max_length);
                break;
        case ARG_NOT_IN_ENUM:
                n = asprintf(&r, "argument '%s' is not one of the enum values", a->name);
                break;
        case ARG_NO_MATCH: n = asprintf(&r, "argument '%s' does not match pattern", a->name); break;
        case ARG_MATCH_LIMIT:
                n = asprintf(&r, "argument '%s' could not be checked against pattern (matching limit)",
                             a->name);
                break;
        case ARG_NOT_NUMBER: n = asprintf(&r, "argument '%s' must be a number (%s)", a->name, rule); break;
        case ARG_BELOW_MIN: n = asprintf(&r, "argument '%s' is below min (%g)", a->name, a->min); break;
        case ARG_ABOVE_MAX: n = asprintf(&r, "argument '%s' is above max (%g)", a->name, a->max); break;
        case ARG_NOT_BENEATH:
                n = asprintf(
                        &r,
                        "argument '%s' is not an absolute path (without '..') beneath the rule's directories",
                        a->name);
                break;
        case ARG_OK: break;
        }
        return n < 0 ? NULL : r;
}

/* Returns 0 if args pass every constraint of rule, -EPERM with a reason naming the
 * argument and the rule, or -ENOMEM. A constrained member that occurs more than once is
 * refused, since consumers may disagree on which copy counts. */
int
ab_policy_check_args(const struct ab_policy_tool *rule, const cJSON *args, char **ret_reason)
{
        const struct ab_policy_argc *a = NULL;
        enum arg_fail f = ARG_OK;
        const char *what = "";
        char *reason;

        if (!rule || rule->n_args == 0)
                return 0;
        if (args && !cJSON_IsObject(args))
                f = ARG_NOT_OBJECT;
        for (size_t i = 0; i < rule->n_args && f == ARG_OK; i++) {
                const cJSON *v = NULL, *c;
                unsigned count = 0;

                a = &rule->args[i];
                if (args)
                        cJSON_ArrayForEach(c, args) if (c->string && strcmp(c->string, a->name) == 0)
                        {
                                if (!v)
                                        v = c;
                                count++;
                        }
                if (count > 1)
                        f = ARG_TWICE;
                else if (!v)
                        f = a->required ? ARG_MISSING : ARG_OK;
                else
                        f = check_value(a, v, &what);
        }
        if (f == ARG_OK)
                return 0;
        reason = fail_reason(f, a, what);
        if (!reason)
                return -ENOMEM;
        if (ret_reason)
                *ret_reason = reason;
        else
                free(reason);
        return -EPERM;
}
