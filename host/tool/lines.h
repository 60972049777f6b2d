/* SPDX-License-Identifier: MIT */
/* Lines of a child's output stream (a module worker's or an MCP server's stderr), split for
 * logging: a complete line is handed over whole, a line longer than HL_LINE_MAX is dropped
 * whole (cut, it could end inside a secret and escape redaction). The buffer is wiped. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HL_LINE_MAX 4096

struct hl_lines {
        size_t len;
        bool overlong; /* dropping the rest of a line longer than HL_LINE_MAX */
        char line[HL_LINE_MAX + 1];
};

/* Called with each complete line (NUL-terminated, without its newline), or with NULL for a
 * line longer than HL_LINE_MAX that was dropped. */
typedef void (*hl_line_fn)(void *userdata, const char *line);

/* Take n bytes of the stream: fn is called for every line they complete. */
void hl_lines_feed(struct hl_lines *l, const char *p, size_t n, hl_line_fn fn, void *userdata);
/* The stream ended: a last line without a newline is handed over; the buffer is wiped. */
void hl_lines_end(struct hl_lines *l, hl_line_fn fn, void *userdata);
/* Wipe what is buffered (at the end of the stream's owner). */
void hl_lines_wipe(struct hl_lines *l);
