/* JSON body checking against FieldSpec tables. */
#include <string.h>

#include "jsonspec.h"
#include "names.h"
#include "text.h"

static const FieldSpec *spec_find(const FieldSpec *specs, const char *name) {
        for (const FieldSpec *s = specs; s->name; s++)
                if (streq(s->name, name))
                        return s;
        return NULL;
}

static const char *type_name(FieldType t) {
        switch (t) {
        case FIELD_STRING:
                return "a string";
        case FIELD_INTEGER:
                return "an integer";
        case FIELD_BOOLEAN:
                return "a boolean";
        case FIELD_OBJECT:
                return "an object";
        case FIELD_STRING_MAP:
                return "an object of strings";
        case FIELD_STRING_ARRAY:
                return "an array of strings";
        }
        return "?";
}

/* Every string a body may carry is printable text (text_is_printable): a NUL, which jansson
 * keeps inside a string (JSON_ALLOW_NUL) and the rest of the daemon would cut at, included. */
static bool string_is_text(json_t *v) {
        return text_is_printable(json_string_value(v), json_string_length(v));
}

static int check_one(const FieldSpec *s, json_t *v, const char *where, ApiError *e) {
        switch (s->type) {
        case FIELD_STRING: {
                size_t max = s->max > 0 ? (size_t) s->max : 4096;
                if (!json_is_string(v))
                        break;
                if (json_string_length(v) > max)
                        return api_error_set(e, AVIARY_E_INVALID_FIELD, "field '%s%s' must be at most %zu bytes",
                                             where, s->name, max);
                if (!string_is_text(v))
                        return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                             "field '%s%s' must be printable UTF-8 text (no control characters)",
                                             where, s->name);
                *(const char **) s->ret = json_string_value(v);
                return 0;
        }
        case FIELD_INTEGER:
                if (!json_is_integer(v))
                        break;
                if (json_integer_value(v) < s->min || json_integer_value(v) > s->max)
                        return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                             "field '%s%s' must be between %lld and %lld", where, s->name,
                                             (long long) s->min, (long long) s->max);
                *(int64_t *) s->ret = json_integer_value(v);
                return 0;
        case FIELD_BOOLEAN:
                if (!json_is_boolean(v))
                        break;
                *(bool *) s->ret = json_is_true(v);
                return 0;
        case FIELD_STRING_MAP: {
                const char *k;
                json_t *item;
                if (!json_is_object(v))
                        break;
                json_object_foreach(v, k, item) {
                        if (!json_is_string(item))
                                return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                                     "field '%s%s.%s' must be a string", where, s->name, k);
                        if (!string_is_text(item))
                                return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                                     "field '%s%s.%s' must be printable UTF-8 text (no control "
                                                     "characters)",
                                                     where, s->name, k);
                }
                *(json_t **) s->ret = v;
                return 0;
        }
        case FIELD_OBJECT:
                if (!json_is_object(v))
                        break;
                *(json_t **) s->ret = v;
                return 0;
        case FIELD_STRING_ARRAY: {
                size_t i, max = s->max > 0 ? (size_t) s->max : 64;
                json_t *item;
                if (!json_is_array(v))
                        break;
                if (json_array_size(v) > max)
                        return api_error_set(e, AVIARY_E_INVALID_FIELD, "field '%s%s' holds at most %zu items", where,
                                             s->name, max);
                json_array_foreach(v, i, item)
                        if (!json_is_string(item) || !string_is_text(item))
                                return api_error_set(e, AVIARY_E_INVALID_FIELD,
                                                     "field '%s%s[%zu]' must be printable text", where, s->name, i);
                *(json_t **) s->ret = v;
                return 0;
        }
        }
        return api_error_set(e, AVIARY_E_INVALID_FIELD, "field '%s%s' must be %s", where, s->name,
                             type_name(s->type));
}

int json_check_fields(json_t *obj, const FieldSpec *specs, const char *where, ApiError *e) {
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(obj))
                return api_error_set(e, AVIARY_E_INVALID_FIELD, "'%s' must be a JSON object",
                                     *where ? where : "body");
        json_object_foreach(obj, key, v)
                if (!spec_find(specs, key))
                        return api_error_set(e, AVIARY_E_UNKNOWN_FIELD, "unknown field '%s%s'", where, key);

        for (const FieldSpec *s = specs; s->name; s++) {
                v = json_object_get(obj, s->name);
                if (s->ret_present)
                        *s->ret_present = v != NULL;
                if (!v || (json_is_null(v) && s->nullable)) {
                        if (s->required)
                                return api_error_set(e, AVIARY_E_MISSING_FIELD, "missing required field '%s%s'",
                                                     where, s->name);
                        continue;
                }
                r = check_one(s, v, where, e);
                if (r != 0)
                        return r;
        }
        return 0;
}

int json_check_depth(const char *data, size_t size, unsigned max_depth, ApiError *e) {
        bool in_string = false, escaped = false;
        unsigned depth = 0;

        for (size_t i = 0; i < size; i++) {
                char c = data[i];

                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        if (++depth > max_depth)
                                return api_error_set(e, AVIARY_E_MALFORMED_JSON,
                                                     "request body nests objects and arrays deeper than %u levels",
                                                     max_depth);
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return 0;
}

int json_parse_body(const char *data, size_t size, json_t **ret, ApiError *e) {
        json_error_t jerr;
        json_t *j;

        if (size == 0)
                return api_error_set(e, AVIARY_E_MALFORMED_JSON, "request body is empty; a JSON object is required");
        if (!utf8_is_valid(data, size))
                return api_error_set(e, AVIARY_E_MALFORMED_JSON, "request body is not valid UTF-8");
        j = json_loadb(data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!j && json_error_code(&jerr) == json_error_numeric_overflow)
                return api_error_set(e, AVIARY_E_INVALID_FIELD, "a number at line %d column %d is out of range",
                                     jerr.line, jerr.column);
        if (!j)
                return api_error_set(e, AVIARY_E_MALFORMED_JSON, "malformed JSON at line %d column %d: %s",
                                     jerr.line, jerr.column, jerr.text);
        if (!json_is_object(j)) {
                json_decref(j);
                return api_error_set(e, AVIARY_E_MALFORMED_JSON, "request body must be a JSON object");
        }
        *ret = j;
        return 0;
}
