/* SPDX-License-Identifier: MIT */
/* Unit tests for host/tool/schema.c: every keyword passing and failing with its exact message,
 * type arrays, integer vs number, string lengths in code points, UTF-8 checks, nesting
 * limits of schemas and values, bad schemas (unknown keywords, wrong types, bad and
 * dangerous patterns), the error cap. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "common/regex.h"
#include "host/tool/schema.h"

/* Compile schema text (must succeed). */
static struct hs_schema *
compile_ok(const char *text)
{
        cJSON *j = cJSON_Parse(text);
        struct hs_schema *s = NULL;
        char *err = NULL;
        int r;

        if (!j)
                fail_msg("test schema does not parse: %s", text);
        r = hs_schema_compile(j, &s, &err);
        if (r != 0)
                fail_msg("compile of %s: %d %s", text, r, err ? err : "");
        cJSON_Delete(j); /* the compiled schema does not refer to the JSON */
        assert_non_null(s);
        assert_null(err);
        return s;
}

/* Compile schema text (must fail with exactly want). */
static void
compile_fails(const char *text, const char *want)
{
        cJSON *j = cJSON_Parse(text);
        struct hs_schema *s = NULL;
        char *err = NULL;

        if (!j)
                fail_msg("test schema does not parse: %s", text);
        assert_int_equal(hs_schema_compile(j, &s, &err), -EINVAL);
        assert_null(s);
        assert_non_null(err);
        if (strcmp(err, want) != 0)
                fail_msg("schema %s\n got: %s\nwant: %s", text, err, want);
        free(err);
        cJSON_Delete(j);
}

/* Compile schema text (must fail with a message starting with prefix). */
static void
compile_fails_prefix(const char *text, const char *prefix)
{
        cJSON *j = cJSON_Parse(text);
        struct hs_schema *s = NULL;
        char *err = NULL;

        assert_non_null(j);
        assert_int_equal(hs_schema_compile(j, &s, &err), -EINVAL);
        assert_non_null(err);
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("schema %s\n got: %s\nwant prefix: %s", text, err, prefix);
        free(err);
        cJSON_Delete(j);
}

static void
valid(const struct hs_schema *s, const char *value)
{
        cJSON *j = cJSON_Parse(value);
        char *err = NULL;
        int r;

        if (!j)
                fail_msg("test value does not parse: %s", value);
        r = hs_schema_validate(s, j, "arguments", &err);
        if (r != 0)
                fail_msg("value %s: %d %s", value, r, err ? err : "");
        assert_null(err);
        cJSON_Delete(j);
}

static void
invalid_json(const struct hs_schema *s, const cJSON *j, const char *want)
{
        char *err = NULL;

        assert_int_equal(hs_schema_validate(s, j, "arguments", &err), -EINVAL);
        assert_non_null(err);
        if (strcmp(err, want) != 0)
                fail_msg(" got: %s\nwant: %s", err, want);
        free(err);
}

static void
invalid(const struct hs_schema *s, const char *value, const char *want)
{
        cJSON *j = cJSON_Parse(value);

        if (!j)
                fail_msg("test value does not parse: %s", value);
        invalid_json(s, j, want);
        cJSON_Delete(j);
}

static void
test_types(void **state)
{
        static const struct {
                const char *type, *good, *bad, *msg;
        } cases[] = {
                { "null", "null", "0", "arguments: must be null, not integer" },
                { "boolean", "false", "\"true\"", "arguments: must be boolean, not string" },
                { "object", "{}", "[]", "arguments: must be object, not array" },
                { "array", "[1]", "{}", "arguments: must be array, not object" },
                { "number", "1.5", "\"1.5\"", "arguments: must be number, not string" },
                { "string", "\"x\"", "5", "arguments: must be string, not integer" },
                { "integer", "7", "7.5", "arguments: must be integer, not number" },
                { "boolean", "true", "1", "arguments: must be boolean, not integer" },
                { "null", "null", "false", "arguments: must be null, not boolean" },
                { "string", "\"\"", "null", "arguments: must be string, not null" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char text[64];
                struct hs_schema *s;
                snprintf(text, sizeof(text), "{\"type\": \"%s\"}", cases[i].type);
                s = compile_ok(text);
                valid(s, cases[i].good);
                invalid(s, cases[i].bad, cases[i].msg);
                hs_schema_free(s);
        }
}

static void
test_type_arrays(void **state)
{
        struct hs_schema *s = compile_ok("{\"type\": [\"string\", \"null\"]}");
        valid(s, "\"x\"");
        valid(s, "null");
        invalid(s, "5", "arguments: must be string or null, not integer");
        invalid(s, "[]", "arguments: must be string or null, not array");
        hs_schema_free(s);

        s = compile_ok("{\"type\": [\"string\", \"number\", \"null\"]}");
        valid(s, "1.25");
        valid(s, "3");
        invalid(s, "true", "arguments: must be string, number or null, not boolean");
        hs_schema_free(s);

        s = compile_ok("{\"type\": [\"integer\"]}");
        valid(s, "3");
        invalid(s, "3.1", "arguments: must be integer, not number");
        hs_schema_free(s);
}

static void
test_integer_vs_number(void **state)
{
        struct hs_schema *i = compile_ok("{\"type\": \"integer\"}");
        struct hs_schema *n = compile_ok("{\"type\": \"number\"}");

        valid(i, "5");
        valid(i, "5.0"); /* 2020-12: a number with no fractional part is an integer */
        valid(i, "-0");
        valid(i, "1e2");
        valid(i, "-9007199254740992");
        invalid(i, "5.5", "arguments: must be integer, not number");
        invalid(i, "1e-1", "arguments: must be integer, not number");
        invalid(i, "\"5\"", "arguments: must be integer, not string"); /* no coercion */
        valid(n, "5");
        valid(n, "5.0");
        valid(n, "5.5");
        invalid(n, "\"5.5\"", "arguments: must be number, not string");
        invalid(n, "null", "arguments: must be number, not null");
        hs_schema_free(i);
        hs_schema_free(n);
}

static void
test_properties_nested(void **state)
{
        struct hs_schema *s = compile_ok(
                "{\"type\": \"object\", \"properties\": {"
                "  \"items\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
                "    \"properties\": {\"name\": {\"type\": \"string\"},"
                "                     \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}},"
                "    \"required\": [\"name\"]}},"
                "  \"opts\": {\"type\": \"object\", \"properties\": {\"deep\": {\"type\": \"object\","
                "    \"properties\": {\"n\": {\"type\": \"integer\", \"maximum\": 100}}}}}}}");

        valid(s, "{}");
        valid(s, "{\"items\": [{\"name\": \"a\"}, {\"name\": \"b\", \"tags\": [\"x\"]}], \"other\": 1}");
        invalid(s, "{\"items\": [{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": 3}]}",
                "arguments.items[2].name: must be string, not integer");
        invalid(s, "{\"items\": [{\"name\": \"a\", \"tags\": [\"x\", 5]}]}",
                "arguments.items[0].tags[1]: must be string, not integer");
        invalid(s, "{\"items\": [{}]}", "arguments.items[0].name: required");
        invalid(s, "{\"opts\": {\"deep\": {\"n\": 101}}}", "arguments.opts.deep.n: must be <= 100");
        invalid(s, "{\"items\": {}}", "arguments.items: must be array, not object");
        hs_schema_free(s);
}

static void
test_required(void **state)
{
        struct hs_schema *s = compile_ok("{\"type\": \"object\", \"required\": [\"path\", \"mode\"],"
                                         " \"properties\": {\"path\": {\"type\": \"string\"}}}");
        valid(s, "{\"path\": \"/x\", \"mode\": 1}");
        invalid(s, "{\"mode\": 1}", "arguments.path: required");
        invalid(s, "{}", "arguments.path: required; arguments.mode: required");
        /* names are case-sensitive */
        invalid(s, "{\"Path\": \"/x\", \"mode\": 1}", "arguments.path: required");
        hs_schema_free(s);

        /* required does not apply to non-objects */
        s = compile_ok("{\"required\": [\"a\"]}");
        valid(s, "5");
        invalid(s, "{\"b\": 1}", "arguments.a: required");
        hs_schema_free(s);
}

static void
test_additional_properties(void **state)
{
        struct hs_schema *s = compile_ok("{\"type\": \"object\", \"additionalProperties\": false,"
                                         " \"properties\": {\"a\": {}, \"b\": {\"type\": \"string\"}}}");
        valid(s, "{\"a\": [1, {}], \"b\": \"x\"}");
        valid(s, "{}");
        invalid(s, "{\"a\": 1, \"x\": 2}",
                "arguments: unexpected property 'x' (additionalProperties is false)");
        invalid(s, "{\"x\": 2, \"y\": 3}",
                "arguments: unexpected property 'x' (additionalProperties is false); "
                "arguments: unexpected property 'y' (additionalProperties is false)");
        hs_schema_free(s);

        s = compile_ok("{\"properties\": {\"a\": {\"type\": \"string\"}},"
                       " \"additionalProperties\": {\"type\": \"integer\", \"minimum\": 0}}");
        valid(s, "{\"a\": \"s\", \"x\": 1, \"y\": 2}");
        invalid(s, "{\"a\": \"s\", \"x\": \"1\"}", "arguments.x: must be integer, not string");
        invalid(s, "{\"x\": -1}", "arguments.x: must be >= 0");
        invalid(s, "{\"a\": 1}", "arguments.a: must be string, not integer");
        hs_schema_free(s);

        s = compile_ok("{\"additionalProperties\": true, \"properties\": {\"a\": false}}");
        valid(s, "{\"b\": 1}");
        invalid(s, "{\"a\": 1}", "arguments.a: not allowed here (the schema is false)");
        hs_schema_free(s);
}

static void
test_enum(void **state)
{
        struct hs_schema *s =
                compile_ok("{\"enum\": [1, \"a\", null, true, {\"k\": [1, 2], \"j\": 0}, [1, \"x\"]]}");
        valid(s, "1");
        valid(s, "1.0");
        valid(s, "\"a\"");
        valid(s, "null");
        valid(s, "true");
        valid(s, "{\"j\": 0, \"k\": [1, 2]}"); /* member order does not matter */
        valid(s, "[1, \"x\"]");
        invalid(s, "false", "arguments: must be one of [1,\"a\",null,true,{\"k\":[1,2],\"j\":0},[1,\"x\"]]");
        invalid(s, "\"1\"", "arguments: must be one of [1,\"a\",null,true,{\"k\":[1,2],\"j\":0},[1,\"x\"]]");
        invalid(s, "[\"x\", 1]",
                "arguments: must be one of [1,\"a\",null,true,{\"k\":[1,2],\"j\":0},[1,\"x\"]]");
        invalid(s, "{\"k\": [1, 2]}",
                "arguments: must be one of [1,\"a\",null,true,{\"k\":[1,2],\"j\":0},[1,\"x\"]]");
        invalid(s, "{\"k\": [1, 2], \"j\": 0, \"z\": 1}",
                "arguments: must be one of [1,\"a\",null,true,{\"k\":[1,2],\"j\":0},[1,\"x\"]]");
        hs_schema_free(s);

        /* enum with type: both apply; the type error comes alone */
        s = compile_ok("{\"type\": \"string\", \"enum\": [\"read\", \"write\"]}");
        valid(s, "\"read\"");
        invalid(s, "\"exec\"", "arguments: must be one of [\"read\",\"write\"]");
        invalid(s, "1", "arguments: must be string, not integer");
        hs_schema_free(s);

        /* a long enum is cut in the message */
        {
                char text[2048] = "{\"enum\": [";
                char *err = NULL;
                cJSON *v = cJSON_CreateString("nope");
                for (int i = 0; i < 100; i++)
                        sprintf(text + strlen(text), "%s\"value%03d\"", i ? "," : "", i);
                strcat(text, "]}");
                s = compile_ok(text);
                assert_int_equal(hs_schema_validate(s, v, "arguments", &err), -EINVAL);
                assert_true(strncmp(err, "arguments: must be one of [\"value000\",",
                                    strlen("arguments: must be one of [\"value000\",")) == 0);
                assert_true(strlen(err) < 260);
                assert_string_equal(err + strlen(err) - 3, "...");
                free(err);
                cJSON_Delete(v);
                hs_schema_free(s);
        }
}

static void
test_const(void **state)
{
        struct hs_schema *s = compile_ok("{\"const\": {\"a\": [1, 2.0, \"x\"]}}");
        valid(s, "{\"a\": [1.0, 2, \"x\"]}");
        invalid(s, "{\"a\": [1, 2]}", "arguments: must be {\"a\":[1,2,\"x\"]} (const)");
        invalid(s, "{\"a\": [2, 1, \"x\"]}", "arguments: must be {\"a\":[1,2,\"x\"]} (const)");
        hs_schema_free(s);

        s = compile_ok("{\"const\": 0}");
        valid(s, "0");
        valid(s, "-0");
        valid(s, "0.0");
        invalid(s, "false", "arguments: must be 0 (const)");
        invalid(s, "\"0\"", "arguments: must be 0 (const)");
        hs_schema_free(s);

        s = compile_ok("{\"properties\": {\"v\": {\"const\": \"x\"}}}");
        valid(s, "{\"v\": \"x\"}");
        invalid(s, "{\"v\": \"y\"}", "arguments.v: must be \"x\" (const)");
        hs_schema_free(s);

        s = compile_ok("{\"const\": null}");
        valid(s, "null");
        invalid(s, "{}", "arguments: must be null (const)");
        hs_schema_free(s);
}

/* A const or enum value whose JSON text is just over the 200 bytes shown (issue 17: "..."
 * was written past cJSON's exactly-sized buffer; the sanitizer build caught the overflow).
 * Also the cut at a character boundary when a multi-byte character straddles byte 200. */
static void
test_long_values_shown(void **state)
{
        char a[300], schema[400], want[400];
        struct hs_schema *s;
        size_t n;

        for (n = 197; n <= 201; n++) { /* JSON texts of 199..203 bytes */
                memset(a, 'a', n);
                a[n] = '\0';
                snprintf(schema, sizeof(schema), "{\"properties\": {\"k\": {\"const\": \"%s\"}}}", a);
                s = compile_ok(schema);
                if (n + 2 <= 200)
                        snprintf(want, sizeof(want), "arguments.k: must be \"%s\" (const)", a);
                else
                        snprintf(want, sizeof(want), "arguments.k: must be \"%.199s... (const)", a);
                invalid(s, "{\"k\": 1}", want);
                hs_schema_free(s);
                snprintf(schema, sizeof(schema), "{\"enum\": [\"%s\"]}", a);
                hs_schema_free(compile_ok(schema));
        }
        /* "\"" + 198 'a' + "\u00e9" (bytes 199-200): the cut keeps the whole character out */
        memset(a, 'a', 198);
        memcpy(a + 198,
               "\xc3\xa9"
               "b",
               4);
        snprintf(schema, sizeof(schema), "{\"const\": \"%s\"}", a);
        s = compile_ok(schema);
        snprintf(want, sizeof(want), "arguments: must be \"%.198s... (const)", a);
        invalid(s, "1", want);
        hs_schema_free(s);
}

static void
test_numeric_keywords(void **state)
{
        struct hs_schema *s = compile_ok("{\"minimum\": 1, \"maximum\": 10.5}");
        valid(s, "1");
        valid(s, "10.5");
        valid(s, "\"text\""); /* numeric keywords do not apply to other types */
        invalid(s, "0.999", "arguments: must be >= 1");
        invalid(s, "10.51", "arguments: must be <= 10.5");
        hs_schema_free(s);

        s = compile_ok("{\"exclusiveMinimum\": 1, \"exclusiveMaximum\": 0.1e2}");
        valid(s, "1.0001");
        valid(s, "9.99");
        invalid(s, "1", "arguments: must be > 1");
        invalid(s, "10", "arguments: must be < 10");
        hs_schema_free(s);

        s = compile_ok("{\"multipleOf\": 3}");
        valid(s, "9");
        valid(s, "-3");
        valid(s, "0");
        valid(s, "9.0");
        invalid(s, "10", "arguments: must be a multiple of 3");
        invalid(s, "4.5", "arguments: must be a multiple of 3");
        hs_schema_free(s);

        s = compile_ok("{\"multipleOf\": 0.1}");
        valid(s, "0.3"); /* 0.3 / 0.1 is 2.9999999999999996 in binary */
        valid(s, "12.7");
        valid(s, "5");
        invalid(s, "0.35", "arguments: must be a multiple of 0.1");
        hs_schema_free(s);

        s = compile_ok("{\"multipleOf\": 0.01, \"minimum\": -1e-7}");
        valid(s, "19.99");
        invalid(s, "-1e-6", "arguments: must be >= -1e-07; arguments: must be a multiple of 0.01");
        hs_schema_free(s);

        s = compile_ok("{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 100}");
        invalid(s, "0", "arguments: must be >= 1");
        invalid(s, "101", "arguments: must be <= 100");
        invalid(s, "50.5", "arguments: must be integer, not number");
        hs_schema_free(s);
}

static void
test_string_lengths(void **state)
{
        struct hs_schema *s = compile_ok("{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}");
        valid(s, "\"ab\"");
        valid(s, "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\""); /* 3 characters, 9 bytes */
        valid(s, "\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"");     /* 2 emoji, 8 bytes */
        valid(s, "\"\\u00e9\\u00e9\"");                       /* escapes: 2 characters */
        invalid(s, "\"\xc3\xa9\"", "arguments: must be at least 2 characters long (it has 1)");
        invalid(s,
                "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"
                "x\"",
                "arguments: must be at most 3 characters long (it has 4)");
        invalid(s, "\"\\ud83d\\ude00\"", "arguments: must be at least 2 characters long (it has 1)");
        invalid(s, "\"abcd\"", "arguments: must be at most 3 characters long (it has 4)");
        invalid(s, "\"\"", "arguments: must be at least 2 characters long (it has 0)");
        hs_schema_free(s);

        s = compile_ok("{\"maxLength\": 0}");
        valid(s, "\"\"");
        valid(s, "7");
        invalid(s, "\"a\"", "arguments: must be at most 0 characters long (it has 1)");
        hs_schema_free(s);
}

static void
test_invalid_utf8(void **state)
{
        static const char *bad[] = {
                "{\"s\": \"a\xff\"}",                /* never valid */
                "{\"s\": \"\xc0\xaf\"}",             /* overlong '/' */
                "{\"s\": \"\xe0\x80\xaf\"}",         /* overlong, 3 bytes */
                "{\"s\": \"\xed\xa0\x80\"}",         /* UTF-16 surrogate */
                "{\"s\": \"\xe6\x97\"}",             /* cut short */
                "{\"s\": \"\x80\"}",                 /* lone continuation byte */
                "{\"s\": \"\xf4\x90\x80\x80\"}",     /* above U+10FFFF */
                "{\"s\": \"\xf8\x88\x80\x80\x80\"}", /* 5-byte form */
        };
        struct hs_schema *any = compile_ok("{}");
        struct hs_schema *str =
                compile_ok("{\"properties\": {\"s\": {\"type\": \"string\", \"maxLength\": 10}}}");

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cJSON *j = cJSON_Parse(bad[i]); /* cJSON takes raw bytes as they are */
                assert_non_null(j);
                invalid_json(any, j, "arguments.s: not valid UTF-8");
                invalid_json(str, j, "arguments.s: not valid UTF-8");
                cJSON_Delete(j);
        }
        valid(any, "{\"s\": \"\xf4\x8f\xbf\xbf \xef\xbf\xbd \xc2\x80\"}"); /* edges that are fine */
        invalid(any, "[\"ok\", \"b\xfe\"]", "arguments[1]: not valid UTF-8");
        invalid(any, "{\"k\xff\": 1}", "arguments: property name 'k\\xff' is not valid UTF-8");
        hs_schema_free(any);
        hs_schema_free(str);
}

static void
test_pattern(void **state)
{
        struct hs_schema *s = compile_ok("{\"type\": \"string\", \"pattern\": \"^[a-z]+(-[a-z]+)*$\"}");
        valid(s, "\"abc\"");
        valid(s, "\"abc-def\"");
        invalid(s, "\"abC\"", "arguments: must match the pattern '^[a-z]+(-[a-z]+)*$'");
        invalid(s, "\"\"", "arguments: must match the pattern '^[a-z]+(-[a-z]+)*$'");
        hs_schema_free(s);

        /* JSON Schema patterns are not anchored */
        s = compile_ok("{\"pattern\": \"b+\"}");
        valid(s, "\"abbbc\"");
        valid(s, "5"); /* applies to strings only */
        invalid(s, "\"ac\"", "arguments: must match the pattern 'b+'");
        hs_schema_free(s);

        s = compile_ok("{\"properties\": {\"path\": {\"pattern\": \"^/srv/\"}}}");
        invalid(s, "{\"path\": \"/etc/passwd\"}", "arguments.path: must match the pattern '^/srv/'");
        hs_schema_free(s);
}

static void
test_arrays(void **state)
{
        struct hs_schema *s = compile_ok(
                "{\"type\": \"array\", \"minItems\": 1, \"maxItems\": 3,"
                " \"uniqueItems\": true, \"items\": {\"type\": [\"number\", \"string\", \"object\"]}}");
        valid(s, "[1]");
        valid(s, "[1, \"1\", {\"a\": 1}]");
        invalid(s, "[]", "arguments: must have at least 1 items (it has 0)");
        invalid(s, "[1, 2, 3, 4]", "arguments: must have at most 3 items (it has 4)");
        invalid(s, "[1, 2, 1.0]", "arguments: items must be unique ([0] and [2] are equal)");
        invalid(s, "[{\"a\": 1, \"b\": 2}, {\"b\": 2, \"a\": 1}]",
                "arguments: items must be unique ([0] and [1] are equal)");
        invalid(s, "[true]", "arguments[0]: must be number, string or object, not boolean");
        hs_schema_free(s);

        /* uniqueItems over many items (sorted, not pairwise) reports the first repeat */
        {
                cJSON *a = cJSON_CreateArray();
                s = compile_ok("{\"uniqueItems\": true}");
                for (int i = 0; i < 5000; i++)
                        cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
                cJSON_AddItemToArray(a, cJSON_CreateNumber(17));
                cJSON_AddItemToArray(a, cJSON_CreateNumber(3));
                invalid_json(s, a, "arguments: items must be unique ([17] and [5000] are equal)");
                hs_schema_free(s);
                cJSON_Delete(a);
        }

        s = compile_ok("{\"uniqueItems\": false}");
        valid(s, "[1, 1]");
        hs_schema_free(s);

        s = compile_ok("{\"items\": false}");
        valid(s, "[]");
        invalid(s, "[1]", "arguments[0]: not allowed here (the schema is false)");
        hs_schema_free(s);

        s = compile_ok("{\"items\": {\"items\": {\"type\": \"integer\"}}}");
        valid(s, "[[1, 2], [], [3]]");
        invalid(s, "[[1], [2, \"x\"]]", "arguments[1][1]: must be integer, not string");
        hs_schema_free(s);
}

static void
test_object_counts(void **state)
{
        struct hs_schema *s = compile_ok("{\"minProperties\": 1, \"maxProperties\": 2}");
        valid(s, "{\"a\": 1}");
        valid(s, "[]");
        invalid(s, "{}", "arguments: must have at least 1 properties (it has 0)");
        invalid(s, "{\"a\": 1, \"b\": 2, \"c\": 3}", "arguments: must have at most 2 properties (it has 3)");
        hs_schema_free(s);
}

static void
test_boolean_schemas(void **state)
{
        struct hs_schema *t = compile_ok("true"), *f = compile_ok("false");
        valid(t, "{\"anything\": [1, null]}");
        invalid(f, "{}", "arguments: not allowed here (the schema is false)");
        hs_schema_free(t);
        hs_schema_free(f);
}

static void
test_annotations(void **state)
{
        struct hs_schema *s = compile_ok(
                "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"$comment\": \"c\","
                " \"title\": \"T\", \"description\": \"D\", \"default\": {\"x\": [1]}, \"examples\": [1, \"a\"],"
                " \"deprecated\": false, \"readOnly\": true, \"writeOnly\": false, \"x-vendor\": {\"foo\": 1},"
                " \"x-\": null, \"type\": \"string\", \"format\": \"email\"}");
        valid(s, "\"not an email\""); /* format is an annotation, not enforced */
        invalid(s, "1", "arguments: must be string, not integer");
        hs_schema_free(s);
}

static void
test_bad_schemas(void **state)
{
        compile_fails("{\"foo\": 1}", "schema: unknown keyword 'foo' (not in the supported subset of JSON "
                                      "Schema, see docs/result-shaping.md)");
        compile_fails("{\"properties\": {\"a\": {\"$ref\": \"#\"}}}",
                      "properties.a: unknown keyword '$ref' (not in the supported subset of JSON "
                      "Schema, see docs/result-shaping.md)");
        compile_fails("{\"items\": {\"anyOf\": []}}",
                      "items: unknown keyword 'anyOf' (not in the supported subset of JSON Schema, "
                      "see docs/result-shaping.md)");
        compile_fails("{\"type\": \"foo\"}", "type: unknown type 'foo' (expected null, boolean, object, "
                                             "array, number, string or integer)");
        compile_fails("{\"type\": 5}", "type: must be a type name or an array of type names");
        compile_fails("{\"type\": [\"string\", 5]}", "type: must be a type name or an array of type names");
        compile_fails("{\"type\": []}", "type: must not be an empty array");
        compile_fails("{\"type\": [\"string\", \"string\"]}", "type: names type 'string' twice");
        compile_fails("{\"type\": \"string\", \"type\": \"integer\"}", "schema: duplicate name 'type'");
        compile_fails("{\"properties\": []}",
                      "properties: must be an object mapping property names to schemas");
        compile_fails("{\"properties\": {\"a\": 5}}",
                      "properties.a: must be a schema (an object or a boolean)");
        compile_fails("{\"properties\": {\"a b\": {\"type\": \"strin\"}}}",
                      "properties[\"a b\"].type: unknown type 'strin' (expected null, boolean, object, "
                      "array, number, string or integer)");
        compile_fails("{\"required\": \"a\"}", "required: must be an array of property names");
        compile_fails("{\"required\": [\"a\", 1]}", "required: must be an array of property names");
        compile_fails("{\"required\": [\"a\", \"a\"]}", "required: names 'a' twice");
        compile_fails("{\"additionalProperties\": \"no\"}",
                      "additionalProperties: must be a schema (an object or a boolean)");
        compile_fails("{\"items\": [{}]}",
                      "items: must be a schema; the array form (before 2020-12) is not supported");
        compile_fails("{\"enum\": []}", "enum: must be a non-empty array of values");
        compile_fails("{\"enum\": 1}", "enum: must be a non-empty array of values");
        compile_fails("{\"minimum\": \"5\"}", "minimum: must be a number");
        compile_fails("{\"maximum\": null}", "maximum: must be a number");
        compile_fails("{\"exclusiveMinimum\": true}",
                      "exclusiveMinimum: must be a number (the boolean form of draft 4 is not supported)");
        compile_fails("{\"multipleOf\": 0}", "multipleOf: must be a number greater than 0");
        compile_fails("{\"multipleOf\": -2}", "multipleOf: must be a number greater than 0");
        compile_fails("{\"minLength\": -1}", "minLength: must be a non-negative integer");
        compile_fails("{\"maxLength\": 1.5}", "maxLength: must be a non-negative integer");
        compile_fails("{\"minItems\": \"3\"}", "minItems: must be a non-negative integer");
        compile_fails("{\"maxItems\": true}", "maxItems: must be a non-negative integer");
        compile_fails("{\"minProperties\": null}", "minProperties: must be a non-negative integer");
        compile_fails("{\"maxProperties\": [1]}", "maxProperties: must be a non-negative integer");
        compile_fails("{\"uniqueItems\": 1}", "uniqueItems: must be a boolean");
        compile_fails("{\"pattern\": 5}", "pattern: must be a string (a regular expression)");
        compile_fails("{\"title\": 5}", "title: must be a string");
        compile_fails("{\"description\": []}", "description: must be a string");
        compile_fails("{\"format\": 1}", "format: must be a string");
        compile_fails("{\"$schema\": {}}", "$schema: must be a string");
        compile_fails("{\"readOnly\": \"yes\"}", "readOnly: must be a boolean");
        compile_fails("{\"deprecated\": 1}", "deprecated: must be a boolean");
        compile_fails("{\"examples\": {}}", "examples: must be an array");
        compile_fails("5", "schema: must be a schema (an object or a boolean)");
        compile_fails("\"string\"", "schema: must be a schema (an object or a boolean)");
        compile_fails("{\"description\": \"bad \xff\"}", "description: not valid UTF-8");
        compile_fails("{\"properties\": {\"a\\u00e9\": {\"enum\": [\"x\", \"\xc0\xaf\"]}}}",
                      "properties[\"a\xc3\xa9\"].enum[1]: not valid UTF-8");
        compile_fails("{\"minimum\": 1e999}", "minimum: number out of range");
        compile_fails("{\"minLength\": 3, \"minLength\": 4}", "schema: duplicate name 'minLength'");
        {
                struct hs_schema *s = NULL;
                char *err = NULL;
                assert_int_equal(hs_schema_compile(NULL, &s, &err), -EINVAL);
                assert_string_equal(err, "schema: missing");
                free(err);
        }
        /* counts as large as a double holds are accepted */
        hs_schema_free(compile_ok("{\"maxLength\": 1e300, \"minItems\": 3.0}"));
}

static void
test_bad_patterns(void **state)
{
        char *long_pattern, *text;

        compile_fails_prefix("{\"pattern\": \"([a-z]\"}", "pattern: invalid regular expression (");
        compile_fails_prefix("{\"pattern\": \"a{2,1}\"}", "pattern: invalid regular expression (");
        compile_fails("{\"pattern\": \"(a)\\\\1\"}",
                      "pattern: invalid regular expression (back-references are not allowed)");
        compile_fails_prefix("{\"pattern\": \"((a{100}){100}){100}\"}",
                             "pattern: invalid regular expression (");
        compile_fails(
                "{\"pattern\": \"((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))\"}",
                "pattern: invalid regular expression (parentheses are too deeply nested at offset 33)");
        compile_fails("{\"properties\": {\"p\": {\"pattern\": \"x+++++++++++++++\"}}}",
                      "properties.p.pattern: invalid regular expression (quantifier does not follow a "
                      "repeatable item at offset 3)");
        /* what glibc's regcomp took seconds to minutes on is refused at once */
        compile_fails("{\"pattern\": \"a?+?+?+?+?+?+?+?+?+?+?+\"}",
                      "pattern: invalid regular expression (quantifier does not follow a "
                      "repeatable item at offset 3)");
        compile_fails("{\"pattern\": \"a{,5}++++++++++\"}",
                      "pattern: invalid regular expression (quantifier does not follow a "
                      "repeatable item at offset 7)");

        long_pattern = malloc(AB_REGEX_MAX_LEN + 2);
        assert_non_null(long_pattern);
        memset(long_pattern, 'a', AB_REGEX_MAX_LEN + 1);
        long_pattern[AB_REGEX_MAX_LEN + 1] = '\0';
        assert_true(asprintf(&text, "{\"pattern\": \"%s\"}", long_pattern) > 0);
        compile_fails(text, "pattern: invalid regular expression (pattern longer than 1024 bytes)");
        free(text);
        long_pattern[AB_REGEX_MAX_LEN] = '\0'; /* exactly the limit is fine */
        assert_true(asprintf(&text, "{\"pattern\": \"%s\"}", long_pattern) > 0);
        hs_schema_free(compile_ok(text));
        free(text);
        free(long_pattern);
}

static double
cpu_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Each search is bounded by common/regex.c (90 ms of CPU); all of one validation together by
 * HS_PATTERN_BUDGET_MS (500 ms): 40 strings on which "[a-z]*[0-9]" scans quadratically would
 * otherwise hold the host's thread for 40 x 100 ms. The limit fails closed. */
static void
test_pattern_budget(void **state)
{
        struct hs_schema *s = compile_ok("{\"type\": \"array\", \"items\": {\"type\": \"string\", "
                                         "\"pattern\": \"[a-z]*[0-9]\"}}");
        cJSON *arr = cJSON_CreateArray();
        char *big = malloc(256 * 1024 + 1), *err = NULL;
        double t0, t;

        assert_non_null(arr);
        assert_non_null(big);
        memset(big, 'a', 256 * 1024);
        big[256 * 1024] = '\0';
        for (int i = 0; i < 40; i++)
                assert_true(cJSON_AddItemToArray(arr, cJSON_CreateString(big)));
        t0 = cpu_ms();
        assert_int_equal(hs_schema_validate(s, arr, "arguments", &err), -EINVAL);
        t = cpu_ms() - t0;
        assert_non_null(err);
        assert_non_null(strstr(err, "arguments[0]: could not be matched against the pattern '[a-z]*[0-9]': "
                                    "the pattern took too long"));
        print_message("# 40 searches that each reach the limit: %.0f ms of CPU\n", t);
        if (t > 2000) /* 500 ms + one search + margin; without the budget, 4 s and more */
                fail_msg("validation took %.0f ms of CPU", t);
        free(err);
        free(big);
        cJSON_Delete(arr);
        hs_schema_free(s);
}

/* {"properties": {"a": ... n levels ... {}}} */
static char *
nested_schema(unsigned levels)
{
        size_t cap = levels * 24 + 16;
        char *s = malloc(cap);
        assert_non_null(s);
        s[0] = '\0';
        for (unsigned i = 1; i < levels; i++)
                strcat(s, "{\"properties\": {\"a\": ");
        strcat(s, "{}");
        for (unsigned i = 1; i < levels; i++)
                strcat(s, "}}");
        return s;
}

static void
test_schema_depth(void **state)
{
        char *s = nested_schema(HS_SCHEMA_MAX_DEPTH), *want;
        struct hs_schema *sc = compile_ok(s);
        free(s);
        hs_schema_free(sc);

        s = nested_schema(HS_SCHEMA_MAX_DEPTH + 1);
        want = calloc(1, 16 * HS_SCHEMA_MAX_DEPTH + 64);
        assert_non_null(want);
        for (unsigned i = 0; i < HS_SCHEMA_MAX_DEPTH; i++)
                strcat(want, i ? ".properties.a" : "properties.a");
        strcat(want, ": schema nested deeper than 32 levels");
        compile_fails(s, want);
        free(s);
        free(want);

        /* items count as levels too */
        {
                char text[1024] = "";
                for (unsigned i = 0; i < HS_SCHEMA_MAX_DEPTH; i++)
                        strcat(text, "{\"items\": ");
                strcat(text, "{}");
                for (unsigned i = 0; i < HS_SCHEMA_MAX_DEPTH; i++)
                        strcat(text, "}");
                compile_fails_prefix(text, "items.items.items.");
        }

        /* enum and const values nest at most HS_VALUE_MAX_DEPTH */
        {
                char text[1024] = "{\"const\": ";
                for (unsigned i = 0; i < HS_VALUE_MAX_DEPTH + 1; i++)
                        strcat(text, "[");
                for (unsigned i = 0; i < HS_VALUE_MAX_DEPTH + 1; i++)
                        strcat(text, "]");
                strcat(text, "}");
                compile_fails(text, "const: nested deeper than 64 levels");
                text[strlen("{\"const\": ")] = ' '; /* one level less */
                text[strlen(text) - 2] = ' ';
                hs_schema_free(compile_ok(text));
        }
}

static void
test_value_depth(void **state)
{
        struct hs_schema *s = compile_ok("{}");
        cJSON *root = cJSON_CreateArray(), *cur = root;
        char *err = NULL, *want;

        for (unsigned i = 1; i < HS_VALUE_MAX_DEPTH; i++) {
                cJSON *a = cJSON_CreateArray();
                cJSON_AddItemToArray(cur, a);
                cur = a;
        }
        assert_int_equal(hs_schema_validate(s, root, "arguments", NULL), 0); /* 64 levels */
        cJSON_AddItemToArray(cur, cJSON_CreateObject());                     /* 65 */
        assert_int_equal(hs_schema_validate(s, root, "arguments", &err), -EINVAL);
        want = calloc(1, 4 * HS_VALUE_MAX_DEPTH + 64);
        assert_non_null(want);
        strcpy(want, "arguments");
        for (unsigned i = 0; i < HS_VALUE_MAX_DEPTH; i++)
                strcat(want, "[0]");
        strcat(want, ": nested deeper than 64 levels");
        assert_string_equal(err, want);
        free(err);
        free(want);
        cJSON_Delete(root);

        /* very deep input (as deep as cJSON parses) fails cleanly too */
        {
                size_t n = 900;
                char *text = malloc(2 * n + 1);
                cJSON *j;
                assert_non_null(text);
                memset(text, '[', n);
                memset(text + n, ']', n);
                text[2 * n] = '\0';
                j = cJSON_Parse(text);
                assert_non_null(j);
                err = NULL;
                assert_int_equal(hs_schema_validate(s, j, "arguments", &err), -EINVAL);
                assert_non_null(strstr(err, ": nested deeper than 64 levels"));
                free(err);
                cJSON_Delete(j);
                free(text);
        }
        hs_schema_free(s);
}

static void
test_value_structure(void **state)
{
        struct hs_schema *s = compile_ok("{}");
        cJSON *j;

        invalid(s, "{\"a\": 1, \"a\": 2}", "arguments: property 'a' given twice");
        invalid(s,
                "{\"x\": {\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, \"e\": 5, \"f\": 6, \"g\": 7,"
                " \"h\": 8, \"i\": 9, \"e\": 10}}",
                "arguments.x: property 'e' given twice");
        j = cJSON_Parse("{\"n\": 1e400}");
        assert_non_null(j);
        invalid_json(s, j, "arguments.n: number out of range");
        cJSON_Delete(j);
        {
                char *err = NULL;
                assert_int_equal(hs_schema_validate(s, NULL, "arguments", &err), -EINVAL);
                assert_string_equal(err, "arguments: missing");
                free(err);
        }
        hs_schema_free(s);
}

static void
test_error_cap(void **state)
{
        struct hs_schema *s = compile_ok("{\"items\": {\"type\": \"string\"}}");
        cJSON *a = cJSON_CreateArray();

        invalid(s, "[1, 2, 3, 4, \"ok\", 5]",
                "arguments[0]: must be string, not integer; "
                "arguments[1]: must be string, not integer; "
                "arguments[2]: must be string, not integer "
                "(and 2 more errors)");
        invalid(s, "[1, 2, 3, 4]",
                "arguments[0]: must be string, not integer; "
                "arguments[1]: must be string, not integer; "
                "arguments[2]: must be string, not integer (and 1 more error)");
        for (int i = 0; i < 100000; i++)
                cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
        invalid_json(s, a,
                     "arguments[0]: must be string, not integer; "
                     "arguments[1]: must be string, not integer; "
                     "arguments[2]: must be string, not integer (and more errors)");
        cJSON_Delete(a);
        hs_schema_free(s);
}

static void
test_names_in_messages(void **state)
{
        struct hs_schema *s = compile_ok("{\"additionalProperties\": {\"type\": \"integer\"}}");
        char *key = malloc(201), *text, *want;

        invalid(s, "{\"a b\": \"x\"}", "arguments[\"a b\"]: must be integer, not string");
        invalid(s, "{\"q\\\"\\\\\": \"x\"}", "arguments[\"q\\\"\\\\\"]: must be integer, not string");
        invalid(s, "{\"tab\\there\": \"x\"}", "arguments[\"tab\\x09here\"]: must be integer, not string");
        invalid(s, "{\"\xc3\xa9t\xc3\xa9\": \"x\"}",
                "arguments[\"\xc3\xa9t\xc3\xa9\"]: must be integer, not string");
        invalid(s, "{\"\": \"x\"}", "arguments[\"\"]: must be integer, not string");
        invalid(s, "{\"my-key_2$\": \"x\"}", "arguments.my-key_2$: must be integer, not string");
        /* long names are cut */
        assert_non_null(key);
        memset(key, 'k', 200);
        key[200] = '\0';
        assert_true(asprintf(&text, "{\"%s\": \"x\"}", key) > 0);
        key[64] = '\0';
        assert_true(asprintf(&want, "arguments[\"%s...\"]: must be integer, not string", key) > 0);
        invalid(s, text, want);
        free(text);
        free(want);
        free(key);
        hs_schema_free(s);

        s = compile_ok("{\"additionalProperties\": false}");
        invalid(s, "{\"it's\": 1}", "arguments: unexpected property 'it's' (additionalProperties is false)");
        hs_schema_free(s);
}

static void
test_root_name(void **state)
{
        struct hs_schema *s = compile_ok("{\"properties\": {\"id\": {\"type\": \"string\"}}}");
        cJSON *j = cJSON_Parse("{\"id\": 1}");
        char *err = NULL;

        assert_int_equal(hs_schema_validate(s, j, "structuredContent", &err), -EINVAL);
        assert_string_equal(err, "structuredContent.id: must be string, not integer");
        free(err);
        cJSON_Delete(j);
        hs_schema_free(s);
}

/* A typical tool input schema, as a module declares it. */
static void
test_tool_schema(void **state)
{
        struct hs_schema *s = compile_ok(
                "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\","
                " \"type\": \"object\", \"additionalProperties\": false, \"required\": [\"path\"],"
                " \"properties\": {"
                "   \"path\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 4096,"
                "              \"description\": \"File path inside a configured root\"},"
                "   \"offset\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
                "   \"length\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1048576},"
                "   \"mode\": {\"enum\": [\"text\", \"base64\"]}}}");
        valid(s, "{\"path\": \"a.txt\"}");
        valid(s, "{\"path\": \"a.txt\", \"offset\": 32768, \"length\": 100, \"mode\": \"text\"}");
        invalid(s, "{\"path\": \"\"}", "arguments.path: must be at least 1 characters long (it has 0)");
        invalid(s, "{\"path\": \"a\", \"offset\": -1}", "arguments.offset: must be >= 0");
        invalid(s, "{\"path\": \"a\", \"offset\": \"10\"}", "arguments.offset: must be integer, not string");
        invalid(s, "{\"path\": \"a\", \"length\": 0, \"mode\": \"hex\", \"extra\": true}",
                "arguments.length: must be >= 1; arguments.mode: must be one of [\"text\",\"base64\"]; "
                "arguments: unexpected property 'extra' (additionalProperties is false)");
        invalid(s, "[]", "arguments: must be object, not array");
        hs_schema_free(s);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_types),
                cmocka_unit_test(test_type_arrays),
                cmocka_unit_test(test_integer_vs_number),
                cmocka_unit_test(test_properties_nested),
                cmocka_unit_test(test_required),
                cmocka_unit_test(test_additional_properties),
                cmocka_unit_test(test_enum),
                cmocka_unit_test(test_const),
                cmocka_unit_test(test_numeric_keywords),
                cmocka_unit_test(test_string_lengths),
                cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_pattern),
                cmocka_unit_test(test_arrays),
                cmocka_unit_test(test_object_counts),
                cmocka_unit_test(test_boolean_schemas),
                cmocka_unit_test(test_annotations),
                cmocka_unit_test(test_bad_schemas),
                cmocka_unit_test(test_long_values_shown),
                cmocka_unit_test(test_pattern_budget),
                cmocka_unit_test(test_bad_patterns),
                cmocka_unit_test(test_schema_depth),
                cmocka_unit_test(test_value_depth),
                cmocka_unit_test(test_value_structure),
                cmocka_unit_test(test_error_cap),
                cmocka_unit_test(test_names_in_messages),
                cmocka_unit_test(test_root_name),
                cmocka_unit_test(test_tool_schema),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
