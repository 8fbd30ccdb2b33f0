/* Private to store/: the Store struct, the statement cache and binding helpers. */
#pragma once

#include <sqlite3.h>

#include "store.h"

#define STORE_STMT_CACHE_MAX 96

struct Store {
        sqlite3 *db;
        unsigned tx_depth;
        usec_t tx_started;  /* monotonic: the outermost BEGIN, for its duration */
        void (*on_commit)(void *userdata); /* store_on_commit() */
        void *on_commit_userdata;
        bool relaxed;       /* the open transaction commits with synchronous = NORMAL */
        usec_t checked_at;  /* store_check(): when quick_check last ran (monotonic), and its result */
        int check_result;
        unsigned n_cached;
        struct {
                const char *sql; /* identity: the string literal's address */
                sqlite3_stmt *stmt;
        } cache[STORE_STMT_CACHE_MAX];
};

/* A reset, unbound, cached statement for SQL (a string literal). Bind with FMT, a char per
 * argument: 't' text (NULL binds NULL), 'i' int64_t, 'I' int64_t where 0 binds NULL. */
int store_prepare(Store *s, const char *sql, sqlite3_stmt **ret, const char *fmt, ...);
/* Maps an SQLite result code to a negative errno, logging it once. */
int store_error(Store *s, int rc, const char *what);
/* Runs a statement expected to return no rows. Returns sqlite's code on constraint errors
 * as a positive SQLITE_CONSTRAINT_* for the caller to map, else 0 or negative errno. */
int store_exec(Store *s, const char *sql, const char *fmt, ...);

/* Column helpers: copies (NULL-safe) of text columns. */
char *store_column_strdup(sqlite3_stmt *st, int col);
void store_column_copy(sqlite3_stmt *st, int col, char *buf, size_t size);

static inline void sqlite3_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}
/* A statement from store_prepare(), reset when it goes out of scope. */
#define _cleanup_stmt_ _cleanup_(sqlite3_resetp)
