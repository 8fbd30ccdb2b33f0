/* The migrations embedded at build time (generated from migrations/). */
#pragma once

typedef struct Migration {
        unsigned number;
        const char *name;
        const char *sql;
} Migration;

extern const Migration migrations[];
extern const unsigned migrations_count;
