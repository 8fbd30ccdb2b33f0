/* API tokens: name, scope and a hash of the secret; never the secret itself. */
#include <string.h>

#include "store-internal.h"

#define TOKEN_COLUMNS "id, name, scope, hash, prefix, created_at, created_by, last_used_at"

static void token_from_row(sqlite3_stmt *st, TokenRecord *r) {
        r->id = sqlite3_column_int64(st, 0);
        store_column_copy(st, 1, r->name, sizeof r->name);
        store_column_copy(st, 2, r->scope, sizeof r->scope);
        store_column_copy(st, 3, r->hash, sizeof r->hash);
        store_column_copy(st, 4, r->prefix, sizeof r->prefix);
        r->created_at = (usec_t) sqlite3_column_int64(st, 5);
        store_column_copy(st, 6, r->created_by, sizeof r->created_by);
        r->last_used_at = (usec_t) sqlite3_column_int64(st, 7);
}

int store_token_insert(Store *s, TokenRecord *r) {
        int k;

        r->created_at = now_realtime();
        k = store_exec(s,
                       "INSERT INTO tokens (name, scope, hash, prefix, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                       "ttttit", r->name, r->scope, r->hash, r->prefix, (int64_t) r->created_at, r->created_by);
        if (k > 0)
                return strstr(sqlite3_errmsg(s->db), "tokens.name") ? AVIARY_E_TOKEN_EXISTS
                                                                     : store_error(s, k, "token insert");
        if (k < 0)
                return k;
        r->id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

int store_token_get_by_hash(Store *s, const char *hash, TokenRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE hash = ?", &st, "t", hash);
        int rc;

        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return AVIARY_E_UNAUTHORIZED;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "token get");
        token_from_row(st, ret);
        return 0;
}

int store_token_touch(Store *s, int64_t id, usec_t when) {
        int k = store_exec(s, "UPDATE tokens SET last_used_at = ? WHERE id = ?", "ii", (int64_t) when, id);
        return k > 0 ? store_error(s, k, "token touch") : k;
}

int store_token_delete(Store *s, const char *name) {
        int k = store_exec(s,
                           "DELETE FROM idempotency_keys "
                           "WHERE principal = (SELECT 'token:' || id FROM tokens WHERE name = ?)",
                           "t", name);

        if (k != 0)
                return k > 0 ? store_error(s, k, "token delete") : k;
        k = store_exec(s, "DELETE FROM tokens WHERE name = ?", "t", name);

        if (k != 0)
                return k > 0 ? store_error(s, k, "token delete") : k;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_TOKEN_NOT_FOUND;
}

int store_token_list(Store *s, const char *after, unsigned limit, int (*fn)(const TokenRecord *r, void *userdata),
                     void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k, rc;

        k = store_prepare(s, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE name > ? ORDER BY name LIMIT ?", &st, "ti",
                          after ? after : "", (int64_t) limit);
        if (k < 0)
                return k;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                TokenRecord r = {};
                token_from_row(st, &r);
                k = fn(&r, userdata);
                if (k != 0)
                        return k;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "token list");
}
