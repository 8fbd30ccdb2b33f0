/* Blob rows: which content-addressed files the daemon holds. The files themselves live
 * under the state dir (see blobstore.c); a row exists only once its file is in place. */
#include "store-internal.h"

static void blob_from_row(sqlite3_stmt *st, BlobRecord *b) {
        store_column_copy(st, 0, b->digest, sizeof b->digest);
        b->size = sqlite3_column_int64(st, 1);
        b->created_at = (usec_t) sqlite3_column_int64(st, 2);
}

int store_blob_get(Store *s, const char *digest, BlobRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, "SELECT digest, size, created_at FROM blobs WHERE digest = ?", &st, "t", digest);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return AVIARY_E_BLOB_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "blob get");
        blob_from_row(st, ret);
        return 0;
}

int store_blob_add(Store *s, const char *digest, int64_t size) {
        int r = store_exec(s, "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) "
                              "ON CONFLICT (digest) DO NOTHING",
                           "tii", digest, size, (int64_t) now_realtime());
        if (r != 0)
                return r > 0 ? -EIO : r;
        return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

int store_blob_delete(Store *s, const char *digest) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, "SELECT count(*) FROM versions WHERE kernel_digest = ?1 OR initrd_digest = ?1", &st, "t",
                          digest);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "blob users");
        if (sqlite3_column_int64(st, 0) > 0)
                return AVIARY_E_BLOB_IN_USE;
        r = store_exec(s, "DELETE FROM blobs WHERE digest = ?", "t", digest);
        if (r != 0)
                return r > 0 ? AVIARY_E_BLOB_IN_USE : r;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_BLOB_NOT_FOUND;
}

int store_blob_list(Store *s, const char *after, unsigned limit, int (*fn)(const BlobRecord *b, void *userdata),
                    void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, "SELECT digest, size, created_at FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?", &st,
                          "ti", after ? after : "", (int64_t) limit);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                BlobRecord b;
                blob_from_row(st, &b);
                r = fn(&b, userdata);
                if (r != 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "blob list");
}
