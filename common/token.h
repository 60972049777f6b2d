/* SPDX-License-Identifier: MIT */
/* The syntax of a call token: "abt_" + base64url(32 random bytes) without padding. The broker
 * issues and checks them (broker/tokens.c); the host checks the syntax before it asks. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "common/name.h"

#define AB_TOKEN_PREFIX "abt_"
#define AB_TOKEN_PREFIX_LEN 4
#define AB_TOKEN_RAW 32                         /* random bytes */
#define AB_TOKEN_LEN (AB_TOKEN_PREFIX_LEN + 43) /* prefix + base64url(32 bytes) without padding */

/* Whether s is AB_TOKEN_PREFIX followed by exactly 43 base64url characters (NULL is not);
 * reads at most AB_TOKEN_LEN + 1 bytes. */
static inline bool
ab_token_well_formed(const char *s)
{
        return s && strnlen(s, AB_TOKEN_LEN + 1) == AB_TOKEN_LEN &&
               memcmp(s, AB_TOKEN_PREFIX, AB_TOKEN_PREFIX_LEN) == 0 &&
               ab_name_valid_len(s + AB_TOKEN_PREFIX_LEN, AB_TOKEN_LEN - AB_TOKEN_PREFIX_LEN,
                                 AB_TOKEN_LEN - AB_TOKEN_PREFIX_LEN, 0);
}
