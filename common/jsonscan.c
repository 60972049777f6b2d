/* SPDX-License-Identifier: MIT */
/* The pre-parse scan of jsonscan.h. */
#include "config.h"

#include <string.h>

#include "common/jsonscan.h"
#include "common/utf8.h"

enum ab_json_scan_fault
ab_json_scan(const char *s, size_t len, const struct ab_json_scan_limits *limits, bool *ret_escaped_nul)
{
        unsigned depth = 0;
        size_t values = 0;
        bool in_str = false, esc = false;

        for (size_t i = 0; i < len;) {
                unsigned char c = (unsigned char)s[i];
                size_t n = 1;

                if (c == '\0')
                        return AB_JSON_SCAN_NUL;
                if (limits->utf8 && c >= 0x80) {
                        n = ab_utf8_seq_len(s + i, len - i);
                        if (n == 0)
                                return AB_JSON_SCAN_UTF8;
                }
                i += n;
                if (n > 1)
                        continue; /* a multi-byte character is never structural */
                if (in_str) {
                        /* cJSON would end the string at an escaped NUL: the caller decides. */
                        if (esc && c == 'u' && len - i >= 4 && memcmp(s + i, "0000", 4) == 0 &&
                            ret_escaped_nul)
                                *ret_escaped_nul = true;
                        if (esc)
                                esc = false;
                        else if (c == '\\')
                                esc = true;
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                if (c == '"')
                        in_str = true;
                else if (c == '{' || c == '[') {
                        if (++depth > limits->max_depth)
                                return AB_JSON_SCAN_DEPTH;
                        values++;
                } else if (c == '}' || c == ']') {
                        if (depth > 0)
                                depth--;
                } else if (c == ',')
                        values++;
                if (limits->max_values && values > limits->max_values)
                        return AB_JSON_SCAN_VALUES;
        }
        return AB_JSON_SCAN_OK;
}
