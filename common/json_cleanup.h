/* SPDX-License-Identifier: MIT */
/* Cleanup attributes for cJSON: `_cleanup_cjson_ cJSON *o = ...;` is deleted when its scope
 * ends (AB_TAKE_PTR hands it on); `_cleanup_cjson_text_ char *s = cJSON_Print...(...);` is
 * printed text that may hold secret bytes: wiped, then freed with cJSON_free. */
#pragma once

#include <string.h>

#include <cjson/cJSON.h>

#include "common/macros.h"
#include "common/secmem.h"

static inline void
ab_cjson_deletep(cJSON **p)
{
        cJSON_Delete(*p);
}
#define _cleanup_cjson_ _cleanup_(ab_cjson_deletep)

static inline void
ab_cjson_text_wipep(char **p)
{
        if (*p) {
                ab_wipe(*p, strlen(*p));
                cJSON_free(*p);
        }
}
#define _cleanup_cjson_text_ _cleanup_(ab_cjson_text_wipep)
