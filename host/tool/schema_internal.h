/* SPDX-License-Identifier: MIT */
/* The JSON Schema subset: what compilation (schema.c) and validation (schema_validate.c)
 * share: the compiled tree, the byte buffer, locations, canonical forms. Not for use outside
 * host/tool/schema*.c; host/tool/schema.h is the interface.
 *
 * The JSON Schema subset of tools' input and output schemas (see schema.h and
 * docs/result-shaping.md), with 2020-12 semantics.
 *
 * Compilation turns the schema into a tree of nodes (patterns precompiled, enum and const
 * values in a canonical byte form) and refuses anything it cannot enforce: unknown
 * keywords, wrong keyword types, patterns common/regex.c refuses, nesting deeper than
 * HS_SCHEMA_MAX_DEPTH. Validation first checks the value's structure (nesting at most
 * HS_VALUE_MAX_DEPTH, well-formed UTF-8 in strings and names, no duplicate names, finite
 * numbers), then walks it against the tree, counting at most HS_MAX_ERRORS errors and
 * naming the first HS_ERRORS_SHOWN with their location ("arguments.items[2].name: ..."). */
#ifndef AB_HOST_TOOL_SCHEMA_INTERNAL_H
#define AB_HOST_TOOL_SCHEMA_INTERNAL_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/limits.h"
#include "common/macros.h"
#include "common/regex.h"
#include "common/utf8.h"
#include "host/tool/schema.h"

#define HS_MAX_ERRORS 100        /* errors counted before validation stops */
#define HS_PATTERN_BUDGET_MS 500 /* CPU time of all pattern matching in one validation */
#define HS_ERRORS_SHOWN 3        /* errors quoted in the message */
#define JSON_MAX_DEPTH 1000      /* nesting of any JSON walked here (cJSON's parse limit) */
#define NAME_SHOWN 64            /* bytes of a property name shown in a message */
#define NAME_BUF (NAME_SHOWN * 4 + 24)
#define VALUE_SHOWN 200                     /* bytes of an enum or const value shown in a message */
#define COUNT_MAX ((double)AB_JSON_INT_MAX) /* larger counts are as good as unlimited */

enum {
        T_NULL = 1 << 0,
        T_BOOLEAN = 1 << 1,
        T_OBJECT = 1 << 2,
        T_ARRAY = 1 << 3,
        T_NUMBER = 1 << 4,
        T_STRING = 1 << 5,
        T_INTEGER = 1 << 6,
};

static const struct {
        const char *name;
        unsigned bit;
} type_names[] = {
        { "null", T_NULL },     { "boolean", T_BOOLEAN }, { "object", T_OBJECT },   { "array", T_ARRAY },
        { "number", T_NUMBER }, { "string", T_STRING },   { "integer", T_INTEGER },
};

enum {
        HAS_MIN = 1 << 0,
        HAS_MAX = 1 << 1,
        HAS_XMIN = 1 << 2,
        HAS_XMAX = 1 << 3,
        HAS_MULT = 1 << 4,
};

/* A JSON value in canonical form: equal JSON values (numbers compared by value, object
 * members in any order) have equal bytes. */
struct canon {
        unsigned char *data;
        size_t len;
};

struct prop {
        char *name;
        struct node *schema;
};

struct node {
        bool always, never; /* the boolean schemas true and false */
        unsigned types;     /* T_* bits; 0: any type */
        char *types_text;   /* "string or null" */
        struct prop *props; /* sorted by name */
        size_t n_props;
        char **required;
        size_t n_required;
        struct node *additional; /* NULL: any additional property is fine */
        struct node *items;      /* NULL: any item is fine */
        struct canon *enums;
        size_t n_enums;
        char *enum_text;
        struct canon *constv;
        char *const_text;
        unsigned num; /* HAS_* bits */
        double minimum, maximum, xmin, xmax, multiple;
        size_t min_len, max_len, min_items, max_items, min_props, max_props;
        bool unique;
        struct ab_regex *re;
        char *pattern;
};

struct hs_schema {
        struct node *root;
};

/* ---- locations ("arguments.items[2].name") ---- */

/* Locations and canonical forms are built in a struct ab_buf (common/buf.h: NUL-terminated,
 * so paths are strings; canonical forms ignore the terminator). */

/* Shared between the parts (defined in one, used in another). */
/* The path so far, or dflt while it is empty. */
const char *hs_schema_path_str(const struct ab_buf *p, const char *dflt);

void hs_schema_path_pop(struct ab_buf *p, size_t mark);

/* Write name into out as it is shown in messages: at most NAME_SHOWN bytes of it (then
 * "..."), '"' and '\' escaped with a backslash, control characters and bytes outside
 * well-formed UTF-8 as \xNN. Returns whether the name is plain ([A-Za-z0-9_$-]+, shown
 * whole), i.e. can follow a '.' in a path. */
bool hs_schema_format_name(const char *name, char out[NAME_BUF]);

/* Append a property name to the path: ".name", or "name" at the start, or ["name"] when
 * it is not plain. Returns the mark to pop back to. */
size_t hs_schema_path_push_key(struct ab_buf *p, const char *key);

size_t hs_schema_path_push_index(struct ab_buf *p, size_t i);

/* ---- small helpers ---- */

/* Shortest of %.15g and %.17g that reads back as d. */
void hs_schema_format_number(double d, char buf[40]);

bool hs_schema_is_integral(double d);

/* Find a name that occurs twice among the members of object j. Returns 0 with *ret_dup
 * the name (or NULL if there is none), or -ENOMEM. */
int hs_schema_find_duplicate_name(const cJSON *j, const char **ret_dup);

/* Canonical form of j into *ret. Returns 0 or -ENOMEM. */
int hs_schema_canon_of(const cJSON *j, struct canon *ret);

bool hs_schema_canon_eq(const struct canon *a, const struct canon *b);

#endif /* AB_HOST_TOOL_SCHEMA_INTERNAL_H */
