/* SPDX-License-Identifier: MIT */
/* A JSON Schema validator for the subset tool schemas use (docs/module-guide.md lists it):
 * type (incl. type arrays), properties, required, additionalProperties (bool or schema),
 * enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength,
 * maxLength (in code points), pattern (POSIX ERE), items, minItems, maxItems, uniqueItems,
 * minProperties, maxProperties, and the annotations title/description/default/examples/$schema
 * (also $comment, deprecated, readOnly, writeOnly, format — accepted, not enforced — and any
 * "x-" keyword). Sub-schemas may be true/false. An unknown keyword makes compilation fail (a
 * schema we cannot enforce is not silently accepted). Validation never coerces: "5" is not an
 * integer; 5.0 is (2020-12). docs/result-shaping.md describes the subset. */
#pragma once

#include <cjson/cJSON.h>

#define HS_SCHEMA_MAX_DEPTH 32
#define HS_VALUE_MAX_DEPTH 64

struct hs_schema;

/* Compile schema (a JSON object). Returns 0, or -EINVAL with *ret_err saying what is wrong
 * (e.g. "properties.path.pattern: invalid regular expression"), or -ENOMEM. */
int hs_schema_compile(const cJSON *schema, struct hs_schema **ret, char **ret_err);
void hs_schema_free(struct hs_schema *s);

/* Validate value. Returns 0, or -EINVAL with *ret_err an actionable message naming the
 * location and the rule, e.g. "arguments.count: must be <= 100", "arguments: unexpected
 * property 'x' (additionalProperties is false)", "arguments.path: required", or -ENOMEM.
 * Up to 3 errors are quoted, separated by "; ", then "(and N more errors)". Before the schema,
 * the value's structure is checked: nesting at most HS_VALUE_MAX_DEPTH, strings and names
 * well-formed UTF-8, no name twice in an object, numbers finite.
 * root_name names the value in messages ("arguments"). */
int hs_schema_validate(const struct hs_schema *s, const cJSON *value, const char *root_name, char **ret_err);
