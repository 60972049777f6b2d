/* SPDX-License-Identifier: MIT */
/* Limits several parts share, named once (each part's own limits stay in its own header). */
#pragma once

#include <stdint.h>

/* 2^53: the largest integer a JSON number (an IEEE double) carries exactly, and so the
 * largest id, count or time the parts exchange as a JSON number. */
#define AB_JSON_INT_MAX (UINT64_C(1) << 53)

/* The result size a tool gets when the policy sets no max_result_bytes (the policy's
 * default, the host's shaping default, and a call frame without max_bytes). */
#define AB_DEFAULT_MAX_RESULT_BYTES (32u * 1024)

/* The kernel's ceiling for pid_max (PID_MAX_LIMIT on 64-bit): no pid or pid count exceeds it. */
#define AB_PID_MAX_LIMIT 4194304
