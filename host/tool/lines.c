/* SPDX-License-Identifier: MIT */
/* Lines of a child's output stream, split for logging (see lines.h). */
#include "config.h"

#include <string.h>

#include "common/secmem.h"
#include "host/tool/lines.h"

void
hl_lines_wipe(struct hl_lines *l)
{
        ab_wipe(l->line, sizeof(l->line));
        l->len = 0;
        l->overlong = false;
}

void
hl_lines_end(struct hl_lines *l, hl_line_fn fn, void *userdata)
{
        if (l->overlong)
                fn(userdata, NULL);
        else if (l->len > 0) {
                l->line[l->len] = '\0';
                fn(userdata, l->line);
        }
        ab_wipe(l->line, l->len + 1);
        l->len = 0;
        l->overlong = false;
}

void
hl_lines_feed(struct hl_lines *l, const char *p, size_t n, hl_line_fn fn, void *userdata)
{
        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                size_t take = nl ? (size_t)(nl - p) : n;

                if (!l->overlong && take <= HL_LINE_MAX - l->len) {
                        memcpy(l->line + l->len, p, take);
                        l->len += take;
                } else if (!l->overlong) {
                        ab_wipe(l->line, l->len);
                        l->len = 0;
                        l->overlong = true;
                }
                if (!nl)
                        return;
                hl_lines_end(l, fn, userdata);
                p = nl + 1;
                n -= take + 1;
        }
}
