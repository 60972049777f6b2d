/* SPDX-License-Identifier: MIT */
/* Names on the wire and in the policy: tools, modules, servers, secrets, arguments. One
 * character set, [A-Za-z0-9_-] (which is also base64url's alphabet), with optional rules, and
 * the length limits as named constants. Header-only: modules, which link no common code by
 * default, check names with the same code as the broker and the host. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define AB_NAME_MAX 128       /* longest tool, secret, run or module name on the wire */
#define AB_MODULE_NAME_MAX 48 /* module and server names (= ABM_NAME_MAX of the module ABI) */

/* Rules on top of [A-Za-z0-9_-]: */
enum {
        AB_NAME_DOT = 1 << 0,              /* '.' is allowed too */
        AB_NAME_NO_LEADING_PUNCT = 1 << 1, /* the first character is not '-' or '.' */
};

/* Whether c is one of [A-Za-z0-9_-] (C locale, whatever the process's locale). */
static inline bool
ab_name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-';
}

/* Whether s[0..len) is a name of 1..max characters of [A-Za-z0-9_-] under rules (AB_NAME_*). */
static inline bool
ab_name_valid_len(const char *s, size_t len, size_t max, unsigned rules)
{
        if (len == 0 || len > max)
                return false;
        if ((rules & AB_NAME_NO_LEADING_PUNCT) && (s[0] == '-' || s[0] == '.'))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!ab_name_char(s[i]) && !((rules & AB_NAME_DOT) && s[i] == '.'))
                        return false;
        return true;
}

/* The same for the NUL-terminated s (NULL is not a name); reads at most max + 1 bytes. */
static inline bool
ab_name_valid(const char *s, size_t max, unsigned rules)
{
        return s && ab_name_valid_len(s, strnlen(s, max + 1), max, rules);
}
