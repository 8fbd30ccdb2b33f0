/* Request body checking: types, ranges, unknown and missing fields, duplicates, UTF-8. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonspec.h"
#include "names.h"
#include "tap.h"

static int check(const char *text, ApiError *e) {
        const char *name = NULL, *note = NULL;
        int64_t count = 5;
        bool flag = false;
        json_t *labels = NULL, *body = NULL;
        FieldSpec specs[] = {
                { "name", FIELD_STRING, .required = true, .max = 8, .ret = &name },
                { "count", FIELD_INTEGER, .min = 1, .max = 10, .ret = &count },
                { "flag", FIELD_BOOLEAN, .ret = &flag },
                { "labels", FIELD_STRING_MAP, .ret = &labels },
                { "note", FIELD_STRING, .nullable = true, .ret = &note },
                {},
        };
        int r;

        *e = (ApiError) {};
        r = json_parse_body(text, strlen(text), &body, e);
        if (r == 0)
                r = json_check_fields(body, specs, "", e);
        json_decref(body);
        return r;
}

/* A body N levels deep: N-1 objects around an array, with brackets inside strings that
 * must not count. */
static char *nested(unsigned n) {
        static const char outer[] = "{\"[{\\\"\":", inner[] = "[\"}]\"]";
        size_t size = 32 + 16 * (size_t) n, len = 0;
        char *s = malloc(size);

        if (!s)
                abort();
        for (unsigned i = 1; i < n; i++, len += strlen(outer))
                memcpy(s + len, outer, strlen(outer));
        memcpy(s + len, inner, strlen(inner));
        len += strlen(inner);
        for (unsigned i = 1; i < n; i++)
                s[len++] = '}';
        s[len] = 0;
        return s;
}

static void test_depth(void) {
        ApiError e = {};
        char *s;

        s = nested(JSON_MAX_DEPTH);
        is_int(json_check_depth(s, strlen(s), JSON_MAX_DEPTH, &e), 0, "a body %u levels deep passes",
               JSON_MAX_DEPTH);
        free(s);
        s = nested(JSON_MAX_DEPTH + 1);
        is_int(json_check_depth(s, strlen(s), JSON_MAX_DEPTH, &e), AVIARY_E_MALFORMED_JSON,
               "one level more is refused");
        ok(strstr(e.message, "deeper than 32") != NULL, "and says why: %s", e.message);
        free(s);
        s = (char *) "{\"a\":\"[[[[[[\"}";
        is_int(json_check_depth(s, strlen(s), 2, &e), 0, "brackets inside strings do not count");
        s = (char *) "{\"a\\\"\":[[1]]}";
        is_int(json_check_depth(s, strlen(s), 2, &e), AVIARY_E_MALFORMED_JSON,
               "an escaped quote does not end a string");
        is_int(json_check_depth("[]]]]]]{}{}{}", 13, 1, &e), 0, "extra closing brackets never go below zero");
}

int main(void) {
        ApiError e;

        is_int(check("{\"name\":\"a\"}", &e), 0, "minimal body");
        is_int(check("{\"name\":\"a\",\"count\":10,\"flag\":true,\"labels\":{\"k\":\"v\"},\"note\":null}", &e), 0,
               "every field");
        is_int(check("", &e), AVIARY_E_MALFORMED_JSON, "empty body");
        is_int(check("{\"name\":", &e), AVIARY_E_MALFORMED_JSON, "truncated JSON");
        is_int(check("[1]", &e), AVIARY_E_MALFORMED_JSON, "array body");
        is_int(check("{\"name\":\"a\",\"name\":\"b\"}", &e), AVIARY_E_MALFORMED_JSON, "duplicate keys");
        is_int(check("{\"name\":\"\xc3\"}", &e), AVIARY_E_MALFORMED_JSON, "invalid UTF-8");
        is_int(check("{}", &e), AVIARY_E_MISSING_FIELD, "missing required field");
        ok(strstr(e.message, "'name'") != NULL, "the message names the field: %s", e.message);
        is_int(check("{\"name\":\"a\",\"extra\":1}", &e), AVIARY_E_UNKNOWN_FIELD, "unknown field");
        ok(strstr(e.message, "'extra'") != NULL, "the message names it: %s", e.message);
        is_int(check("{\"name\":1}", &e), AVIARY_E_INVALID_FIELD, "number for a string");
        is_int(check("{\"name\":\"123456789\"}", &e), AVIARY_E_INVALID_FIELD, "string over its limit");
        is_int(check("{\"name\":\"a\",\"count\":0}", &e), AVIARY_E_INVALID_FIELD, "integer under range");
        is_int(check("{\"name\":\"a\",\"count\":11}", &e), AVIARY_E_INVALID_FIELD, "integer over range");
        is_int(check("{\"name\":\"a\",\"count\":1.5}", &e), AVIARY_E_INVALID_FIELD, "real for an integer");
        is_int(check("{\"name\":\"a\",\"count\":\"3\"}", &e), AVIARY_E_INVALID_FIELD, "string for an integer");
        is_int(check("{\"name\":\"a\",\"flag\":1}", &e), AVIARY_E_INVALID_FIELD, "number for a boolean");
        is_int(check("{\"name\":\"a\",\"labels\":{\"k\":1}}", &e), AVIARY_E_INVALID_FIELD, "non-string label");
        is_int(check("{\"name\":null}", &e), AVIARY_E_INVALID_FIELD, "null where not nullable");
        is_int(check("{\"name\":\"a\\u0000b\"}", &e), AVIARY_E_INVALID_FIELD, "NUL inside a string");
        {
                /* Found by tests/fuzz (fuzz-router-json): a message cut at its size limit inside a
                 * multi-byte character was invalid UTF-8, so the JSON error reply could not be
                 * built and the client got no answer at all. */
                char text[1024] = "{\"name\":\"a\",\"x";
                for (int i = 0; i < 300; i++)
                        strcat(text, "\xc3\xa9");
                strcat(text, "\":1}");
                is_int(check(text, &e), AVIARY_E_UNKNOWN_FIELD, "long non-ASCII unknown field");
                ok(utf8_is_valid(e.message, strlen(e.message)), "its truncated message is still UTF-8");
                ok(strlen(e.message) >= sizeof e.message - 4, "and as long as it can be, less the cut character (%zu bytes)",
                   strlen(e.message));
                /* Found the same way: jansson's message quotes the token up to an invalid escape, here
                 * half of a two-byte character. */
                is_int(check("{\"a\\\xc3\xa9\":1}", &e), AVIARY_E_MALFORMED_JSON,
                       "invalid escape before a 2-byte character");
                ok(utf8_is_valid(e.message, strlen(e.message)), "its message is UTF-8: %s", e.message);
        }
        test_depth();
        return tap_done();
}
