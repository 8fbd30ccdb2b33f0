/* Formatting of server replies for people (tables, listings) and scripts (JSON), and the
 * CLI's error line. Every string from the server passes through text_sanitize() before it
 * reaches a terminal, so a crafted name or reason cannot send escape sequences. (The one
 * exception, on purpose, is `aviary logs`: it prints a guest's console as it is.) */
#include <stdarg.h>
#include <stdbool.h>

#include "output.h"

#define COLUMN_GAP "  "

struct Table {
        const Field *fields;
        size_t n_fields;
        size_t *widths;
        char **cells; /* n_rows × n_fields, row-major */
        size_t n_rows;
        bool header_shown;
};

int output_format_parse(const char *text, OutputFormat *ret) {
        if (streq(text, "table"))
                *ret = OUTPUT_TABLE;
        else if (streq(text, "json"))
                *ret = OUTPUT_JSON;
        else
                return -EINVAL;
        return 0;
}

/* Replaces C0 and C1 control characters (and DEL) with '?', in place. */
static char *text_sanitize(char *s) {
        for (unsigned char *p = (unsigned char *) s; *p; p++) {
                if (*p < 0x20 || *p == 0x7f)
                        *p = '?';
                else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
                        p[0] = '?', p[1] = '?';
        }
        return s;
}

/* Width on a terminal, counting each UTF-8 sequence as one column. */
static size_t text_width(const char *s) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                n += (*p & 0xc0) != 0x80;
        return n;
}

char *output_sanitize(char *s) {
        return text_sanitize(s);
}

void output_error_va(const char *format, va_list ap) {
        _cleanup_free_ char *message = NULL;

        if (vasprintf(&message, format, ap) < 0)
                message = NULL;
        fprintf(stderr, "aviary: %s\n", message ? text_sanitize(message) : "out of memory");
}

void output_error(const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        output_error_va(format, ap);
        va_end(ap);
}

int output_json(json_t *value) {
        if (json_dumpf(value, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0)
                return -EIO;
        fputc('\n', stdout);
        return 0;
}

int output_json_line(json_t *value) {
        if (json_dumpf(value, stdout, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
                return -EIO;
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* A scalar as text; NULL for objects and arrays. */
static char *scalar_text(json_t *v) {
        char *s = NULL;
        int r = 0;

        switch (json_typeof(v)) {
        case JSON_STRING:
                return strdup(json_string_value(v));
        case JSON_INTEGER:
                r = asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                break;
        case JSON_REAL:
                r = asprintf(&s, "%g", json_real_value(v));
                break;
        case JSON_TRUE:
        case JSON_FALSE:
                return strdup(json_is_true(v) ? "true" : "false");
        case JSON_NULL:
                return strdup("-");
        default:
                return NULL;
        }
        return r < 0 ? NULL : s;
}

static char *map_text(json_t *object) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        const char *key;
        json_t *v;

        if (json_object_size(object) == 0)
                return strdup("-");
        FILE *out = open_memstream(&text, &size);
        if (!out)
                return NULL;
        bool first = true;
        json_object_foreach(object, key, v) {
                _cleanup_free_ char *value = scalar_text(v) ?: json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                fprintf(out, "%s%s=%s", first ? "" : ", ", key, value ?: "?");
                first = false;
        }
        if (fclose(out) != 0)
                return NULL;
        return TAKE_PTR(text);
}

/* {"stable": true, "canary": false} → "stable"; "-" when none is true. */
static char *flags_text(json_t *object) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&text, &size);
        const char *key;
        json_t *v;

        if (!out)
                return NULL;
        bool first = true;
        json_object_foreach(object, key, v)
                if (json_is_true(v)) {
                        fprintf(out, "%s%s", first ? "" : ", ", key);
                        first = false;
                }
        if (first)
                fputs("-", out);
        if (fclose(out) != 0)
                return NULL;
        return TAKE_PTR(text);
}

/* "2026-11-25T07:00:00.123Z" → "2026-11-25T07:00:00Z". */
static char *time_text(const char *t) {
        const char *dot = strchr(t, '.');
        if (!dot)
                return strdup(t);
        const char *rest = dot + 1 + strspn(dot + 1, "0123456789");
        char *s = NULL;
        return asprintf(&s, "%.*s%s", (int) (dot - t), t, rest) < 0 ? NULL : s;
}

/* "3.7s" from 3650 milliseconds (rounded half up, in integers so it is exact). */
static char *milliseconds_text(json_int_t ms) {
        json_int_t tenths = (ms + 50) / 100;
        char *s;

        if (asprintf(&s, "%" JSON_INTEGER_FORMAT ".%" JSON_INTEGER_FORMAT "s", tenths / 10, tenths % 10) < 0)
                return NULL;
        return s;
}

/* The member at KEY, following dots into nested objects; NULL when a step is missing.
 * (Not json_object_getn(): it needs jansson 2.14.) */
static json_t *field_value(json_t *object, const char *key) {
        char step[64];

        for (;;) {
                size_t n = strcspn(key, ".");
                if (!key[n])
                        return json_object_get(object, key);
                if (n >= sizeof(step))
                        return NULL;
                memcpy(step, key, n);
                step[n] = '\0';
                object = json_object_get(object, step);
                key += n + 1;
        }
}

/* The cell text of a field of an object, sanitized; owned by the caller. */
static char *field_text(const Field *f, json_t *object) {
        json_t *v = field_value(object, f->key);
        char *s;

        if (!v || json_is_null(v))
                s = strdup("-");
        else if (f->kind == FIELD_COUNT && json_is_array(v))
                s = asprintf(&s, "%zu", json_array_size(v)) < 0 ? NULL : s;
        else if (f->kind == FIELD_MAP && json_is_object(v))
                s = map_text(v);
        else if (f->kind == FIELD_FLAGS && json_is_object(v))
                s = flags_text(v);
        else if (f->kind == FIELD_TIME && json_is_string(v))
                s = time_text(json_string_value(v));
        else if (f->kind == FIELD_MILLISECONDS && json_is_integer(v) && json_integer_value(v) >= 0)
                s = milliseconds_text(json_integer_value(v));
        else if (f->kind == FIELD_DIGEST && json_is_string(v))
                s = strndup(json_string_value(v), strlen("sha256:") + 12);
        else
                s = scalar_text(v) ?: json_dumps(v, JSON_COMPACT);
        return s ? text_sanitize(s) : NULL;
}

int table_new(const Field *fields, size_t n_fields, Table **ret) {
        Table *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->fields = fields;
        t->n_fields = n_fields;
        t->widths = calloc(n_fields, sizeof(size_t));
        if (!t->widths) {
                table_free(t);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_fields; i++)
                t->widths[i] = text_width(fields[i].title);
        *ret = t;
        return 0;
}

static void table_clear(Table *t) {
        for (size_t i = 0; i < t->n_rows * t->n_fields; i++)
                free(t->cells[i]);
        free(t->cells);
        t->cells = NULL;
        t->n_rows = 0;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        table_clear(t);
        free(t->widths);
        free(t);
        return NULL;
}

int table_add(Table *t, json_t *object) {
        char **cells = reallocarray(t->cells, (t->n_rows + 1) * t->n_fields, sizeof(char *));
        if (!cells)
                return -ENOMEM;
        t->cells = cells;
        char **row = cells + t->n_rows * t->n_fields;
        for (size_t i = 0; i < t->n_fields; i++)
                row[i] = NULL;
        t->n_rows++;
        for (size_t i = 0; i < t->n_fields; i++) {
                row[i] = field_text(&t->fields[i], object);
                if (!row[i])
                        return -ENOMEM;
                size_t width = text_width(row[i]);
                if (width > t->widths[i])
                        t->widths[i] = width;
        }
        return 0;
}

static void table_print_row(const Table *t, const char *const *cells) {
        for (size_t i = 0; i < t->n_fields; i++) {
                if (i + 1 == t->n_fields) {
                        printf("%s\n", cells[i]);
                        break;
                }
                printf("%s%*s" COLUMN_GAP, cells[i], (int) (t->widths[i] - text_width(cells[i])), "");
        }
}

int table_flush(Table *t) {
        if (!t->header_shown) {
                _cleanup_free_ const char **titles = calloc(t->n_fields, sizeof(char *));
                if (!titles)
                        return -ENOMEM;
                for (size_t i = 0; i < t->n_fields; i++)
                        titles[i] = t->fields[i].title;
                table_print_row(t, titles);
                t->header_shown = true;
        }
        for (size_t r = 0; r < t->n_rows; r++)
                table_print_row(t, (const char *const *) t->cells + r * t->n_fields);
        table_clear(t);
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* A table of the objects in ARRAY (or of OBJECT alone, when ARRAY is NULL). */
static int table_print(const Field *fields, size_t n_fields, json_t *array, json_t *object) {
        _cleanup_(table_freep) Table *t = NULL;
        json_t *item;
        size_t i;

        int r = table_new(fields, n_fields, &t);
        if (r < 0)
                return r;
        if (!array)
                r = table_add(t, object);
        json_array_foreach(array, i, item) {
                r = table_add(t, item);
                if (r < 0)
                        break;
        }
        return r < 0 ? r : table_flush(t);
}

int output_list(OutputFormat format, const Field *fields, size_t n_fields, json_t *list) {
        if (format == OUTPUT_JSON)
                return output_json(list);
        return table_print(fields, n_fields, json_object_get(list, "items"), NULL);
}

int output_row(OutputFormat format, const Field *fields, size_t n_fields, json_t *object) {
        if (format == OUTPUT_JSON)
                return output_json(object);
        return table_print(fields, n_fields, NULL, object);
}

int output_table(const Field *fields, size_t n_fields, json_t *array) {
        return table_print(fields, n_fields, array, NULL);
}

int output_object_lines(const Field *fields, size_t n_fields, size_t first, size_t count, json_t *object) {
        size_t width = 0;

        for (size_t i = 0; i < n_fields; i++)
                if (text_width(fields[i].title) > width)
                        width = text_width(fields[i].title);
        for (size_t i = first; i < n_fields && i < first + count; i++) {
                _cleanup_free_ char *value = field_text(&fields[i], object);
                if (!value)
                        return -ENOMEM;
                printf("%s:%*s %s\n", fields[i].title, (int) (width - text_width(fields[i].title)), "",
                       value);
        }
        return fflush(stdout) == 0 ? 0 : -EIO;
}

int output_object(OutputFormat format, const Field *fields, size_t n_fields, json_t *object) {
        if (!json_is_object(object)) {
                output_error("the server's reply holds no JSON object");
                return -EBADMSG;
        }
        if (format == OUTPUT_JSON)
                return output_json(object);
        return output_object_lines(fields, n_fields, 0, n_fields, object);
}
