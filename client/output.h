/* How the CLI prints: aligned tables and "Field: value" listings for people, the server's
 * own JSON (indent 2; one compact object per line where a command follows changes) for
 * scripts, and one-line errors on stderr. */
#pragma once

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

typedef enum OutputFormat {
        OUTPUT_TABLE,
        OUTPUT_JSON,
} OutputFormat;

typedef enum FieldKind {
        FIELD_TEXT,         /* strings, numbers, booleans as they are; null or missing as "-" */
        FIELD_DIGEST,       /* "sha256:<hex>" shortened to 12 hex digits */
        FIELD_TIME,         /* RFC 3339 without the fraction of a second */
        FIELD_MAP,          /* an object as "k=v, k=v" */
        FIELD_COUNT,        /* an array as its length (a number as it is) */
        FIELD_MILLISECONDS, /* a number of milliseconds as seconds, to a tenth: "3.7s" */
        FIELD_FLAGS,        /* an object of booleans as the names of the true ones, "a, b"; none: "-" */
} FieldKind;

/* One column of a table, or one line of a listing: TITLE shows the member KEY of an object.
 * KEY may reach into nested objects with dots: "timings.boot_ms". */
typedef struct Field {
        const char *title;
        const char *key;
        FieldKind kind;
} Field;

int output_format_parse(const char *text, OutputFormat *ret);

/* Replaces C0 and C1 control characters (and DEL) in S with '?', in place; returns S. For
 * server text printed other than through the functions here. */
char *output_sanitize(char *s);

/* Prints "aviary: <message>" on stderr, control characters made harmless. */
void output_error(const char *format, ...) _printf_(1, 2);
void output_error_va(const char *format, va_list ap) _printf_(1, 0);

/* Prints a JSON value, indent 2, and a newline. */
int output_json(json_t *value);

/* Prints a JSON value on one line and flushes it: one record of a JSON Lines stream. */
int output_json_line(json_t *value);

/* Prints a list reply ({"items": [...], ...}): a table of its items, or its JSON. */
int output_list(OutputFormat format, const Field *fields, size_t n_fields, json_t *list);

/* Prints one object as a one-row table, or its JSON. */
int output_row(OutputFormat format, const Field *fields, size_t n_fields, json_t *object);

/* Prints a table of the objects in a JSON array (no JSON form: for parts of a listing). */
int output_table(const Field *fields, size_t n_fields, json_t *array);

/* Prints one object: a "Title: value" listing, or its JSON. */
int output_object(OutputFormat format, const Field *fields, size_t n_fields, json_t *object);

/* Prints the lines FIRST to FIRST + COUNT - 1 of such a listing, aligned as the whole would be
 * (so a listing can be printed in parts, the first before a slow request). */
int output_object_lines(const Field *fields, size_t n_fields, size_t first, size_t count, json_t *object);

/* A table printed in batches (for --follow): the header once, then each batch of rows.
 * Column widths come from the first batch and only grow. */
typedef struct Table Table;

int table_new(const Field *fields, size_t n_fields, Table **ret);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
int table_add(Table *t, json_t *object);
/* Prints the rows added since the last flush (and the header the first time). */
int table_flush(Table *t);
