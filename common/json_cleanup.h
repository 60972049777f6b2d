/* Cleanup attribute for cJSON trees: `_cleanup_cjson_ cJSON *o = ...;` is deleted when its
 * scope ends (AB_TAKE_PTR hands it on). */
#pragma once

#include <cjson/cJSON.h>

#include "common/macros.h"

static inline void ab_cjson_deletep(cJSON **p) { cJSON_Delete(*p); }
#define _cleanup_cjson_ _cleanup_(ab_cjson_deletep)
