/* Declarative checks for JSON request bodies: each field's name, type, whether it is
 * required and its range. Unknown fields are refused, so a typo never passes silently. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "apierror.h"

typedef enum FieldType {
        FIELD_STRING,      /* const char **; max = longest length (0: 4096) */
        FIELD_INTEGER,     /* int64_t *;    min..max */
        FIELD_BOOLEAN,     /* bool * */
        FIELD_OBJECT,      /* json_t ** (borrowed reference) */
        FIELD_STRING_MAP,  /* json_t ** (borrowed): object whose values are all strings */
        FIELD_STRING_ARRAY,/* json_t ** (borrowed): array of printable strings, at most max (0: 64) */
} FieldType;

typedef struct FieldSpec {
        const char *name;
        FieldType type;
        bool required;
        bool nullable;      /* JSON null accepted and treated as absent */
        int64_t min, max;
        void *ret;          /* written only when the field is present and valid */
        bool *ret_present;  /* optional: set true when the field was given (even as null) */
} FieldSpec;

/* Checks OBJ against SPECS (NULL-name terminated). WHERE prefixes field names in messages
 * ("health_check."). Returns 0 or a positive AVIARY_E_* with E filled. */
int json_check_fields(json_t *obj, const FieldSpec *specs, const char *where, ApiError *e);

/* How deep request bodies may nest: the top-level object is depth 1. Our bodies need 4;
 * the limit keeps a hostile body's parse (and its tree) small. */
#define JSON_MAX_DEPTH 32

/* Refuses (AVIARY_E_MALFORMED_JSON, E filled) a body whose objects and arrays nest deeper
 * than MAX_DEPTH, looking only at brackets outside strings: it runs before parsing, so it
 * says nothing else about the text. Returns 0 otherwise. */
int json_check_depth(const char *data, size_t size, unsigned max_depth, ApiError *e);

/* Parses a request body: must be a JSON object, UTF-8, no duplicate keys. */
int json_parse_body(const char *data, size_t size, json_t **ret, ApiError *e);
