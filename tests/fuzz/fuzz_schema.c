/* SPDX-License-Identifier: MIT */
/* Fuzz target: the JSON Schema compiler and validator (host/tool/schema.c) on schema + instance
 * pairs. The input is the schema's JSON text, a NUL byte, and the instance's JSON text (no
 * NUL: the whole input is the schema, validated against a few fixed instances). Module
 * schemas come from module code (hostile); instances come from the model. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "host/tool/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fixed_instances[] = {
        "{}",
        "{\"a\":1,\"b\":\"x\",\"c\":[1,2,2],\"d\":{\"e\":null}}",
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaa!\"",
        "[[],{}]",
        "1e308",
        "-0",
        "true",
};

/* Validate instance against s, checking the error contract (a message on -EINVAL only). */
static void
validate(const struct hs_schema *s, const cJSON *instance)
{
        char *err = NULL;
        int r = hs_schema_validate(s, instance, "arguments", &err);

        if ((r == -EINVAL) != (err != NULL))
                abort();
        free(err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *text = (const char *)data, *nul = memchr(data, '\0', size);
        size_t schema_len = nul ? (size_t)(nul - text) : size;
        struct hs_schema *s = NULL;
        char *err = NULL;
        cJSON *schema, *instance;
        int r;

        schema = cJSON_ParseWithLength(text, schema_len);
        if (!schema)
                return 0;
        r = hs_schema_compile(schema, &s, &err);
        cJSON_Delete(schema);
        if (r < 0) {
                if ((r == -EINVAL) != (err != NULL) || s)
                        abort();
                free(err);
                return 0;
        }
        if (nul) {
                instance = cJSON_ParseWithLength(nul + 1, size - schema_len - 1);
                if (instance)
                        validate(s, instance);
                cJSON_Delete(instance);
        } else {
                for (size_t i = 0; i < sizeof(fixed_instances) / sizeof(*fixed_instances); i++) {
                        instance = cJSON_Parse(fixed_instances[i]);
                        if (instance)
                                validate(s, instance);
                        cJSON_Delete(instance);
                }
        }
        hs_schema_free(s);
        return 0;
}
