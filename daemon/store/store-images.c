/* Images and their immutable versions. A version row is written once; only its
 * revocation fields may change afterwards (the schema's triggers enforce it). */
#include <string.h>

#include "store-internal.h"

void image_record_done(ImageRecord *r) {
        free(r->name);
        *r = (ImageRecord) {};
}

void version_record_done(VersionRecord *r) {
        free(r->image);
        free(r->tag);
        free(r->cmdline);
        free(r->labels);
        free(r->manifest);
        free(r->revoke_reason);
        *r = (VersionRecord) {};
}

#define IMAGE_COLUMNS \
        "i.id, i.name, i.created_at, (SELECT count(*) FROM versions v WHERE v.image_id = i.id)"

static void image_from_row(sqlite3_stmt *st, ImageRecord *r) {
        r->id = sqlite3_column_int64(st, 0);
        r->name = store_column_strdup(st, 1);
        r->created_at = (usec_t) sqlite3_column_int64(st, 2);
        r->version_count = sqlite3_column_int64(st, 3);
}

int store_image_ensure(Store *s, const char *name, int64_t *ret_id) {
        ImageRecord img = {};
        int r;

        r = store_exec(s, "INSERT INTO images (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", "ti",
                       name, (int64_t) now_realtime());
        if (r != 0)
                return r > 0 ? -EIO : r;
        r = sqlite3_changes(s->db) > 0;
        if (store_image_get(s, name, &img) != 0)
                return -EIO;
        *ret_id = img.id;
        image_record_done(&img);
        return r;
}

int store_image_create(Store *s, const char *name) {
        int64_t id;
        int r = store_image_ensure(s, name, &id);
        return r < 0 ? r : r == 1 ? 0 : AVIARY_E_IMAGE_EXISTS;
}

int store_image_get(Store *s, const char *name, ImageRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, "SELECT " IMAGE_COLUMNS " FROM images i WHERE i.name = ?", &st, "t", name);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return AVIARY_E_IMAGE_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "image get");
        image_from_row(st, ret);
        return ret->name ? 0 : -ENOMEM;
}

int store_image_list(Store *s, const char *after, unsigned limit, int (*fn)(const ImageRecord *r, void *userdata),
                     void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, "SELECT " IMAGE_COLUMNS " FROM images i WHERE i.name > ? ORDER BY i.name LIMIT ?", &st,
                          "ti", after ? after : "", (int64_t) limit);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                ImageRecord img = {};
                image_from_row(st, &img);
                r = img.name ? fn(&img, userdata) : -ENOMEM;
                image_record_done(&img);
                if (r != 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "image list");
}

int store_image_delete(Store *s, const char *name) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s,
                          "SELECT count(*) FROM services sv JOIN versions v ON v.id = sv.stable_version_id "
                          "JOIN images i ON i.id = v.image_id WHERE i.name = ?",
                          &st, "t", name);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "image users");
        if (sqlite3_column_int64(st, 0) > 0)
                return AVIARY_E_VERSION_IN_USE;
        r = store_exec(s, "DELETE FROM images WHERE name = ?", "t", name);
        if (r != 0)
                return r > 0 ? AVIARY_E_VERSION_IN_USE : r;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_IMAGE_NOT_FOUND;
}

#define VERSION_COLUMNS                                                                              \
        "v.id, i.name, v.tag, v.digest, v.kernel_digest, v.initrd_digest, v.cmdline, v.memory_mib, " \
        "v.vcpus, v.port, v.labels, v.manifest, v.state, v.revoked_at, v.revoke_reason, v.created_at"

static int version_from_row(sqlite3_stmt *st, VersionRecord *v) {
        v->id = sqlite3_column_int64(st, 0);
        v->image = store_column_strdup(st, 1);
        v->tag = store_column_strdup(st, 2);
        store_column_copy(st, 3, v->digest, sizeof v->digest);
        store_column_copy(st, 4, v->kernel, sizeof v->kernel);
        store_column_copy(st, 5, v->initrd, sizeof v->initrd);
        v->cmdline = store_column_strdup(st, 6);
        v->memory_mib = sqlite3_column_int64(st, 7);
        v->vcpus = sqlite3_column_int64(st, 8);
        v->port = sqlite3_column_int64(st, 9);
        v->labels = store_column_strdup(st, 10);
        v->manifest = store_column_strdup(st, 11);
        v->revoked = strcmp((const char *) sqlite3_column_text(st, 12), "revoked") == 0;
        v->revoked_at = (usec_t) sqlite3_column_int64(st, 13);
        v->revoke_reason = store_column_strdup(st, 14);
        v->created_at = (usec_t) sqlite3_column_int64(st, 15);
        if (!v->image || !v->tag || !v->cmdline || !v->labels || !v->manifest) {
                version_record_done(v);
                return -ENOMEM;
        }
        return 0;
}

static int version_get_one(Store *s, sqlite3_stmt *st, VersionRecord *ret) {
        int rc = sqlite3_step(st);

        if (rc == SQLITE_DONE)
                return AVIARY_E_VERSION_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "version get");
        return version_from_row(st, ret);
}

int store_version_insert(Store *s, int64_t image_id, VersionRecord *v) {
        int r;

        v->created_at = now_realtime();
        r = store_exec(s,
                       "INSERT INTO versions (image_id, tag, digest, manifest, kernel_digest, initrd_digest, cmdline, "
                       "memory_mib, vcpus, port, labels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       "ittttttiiiti", image_id, v->tag, v->digest, v->manifest,
                       v->kernel, v->initrd[0] ? v->initrd : NULL, v->cmdline, v->memory_mib, v->vcpus, v->port,
                       v->labels, (int64_t) v->created_at);
        if (r > 0)
                return AVIARY_E_VERSION_EXISTS;
        if (r < 0)
                return r;
        v->id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

int store_version_get(Store *s, const char *image, const char *ref, VersionRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = store_prepare(s,
                          "SELECT " VERSION_COLUMNS " FROM versions v JOIN images i ON i.id = v.image_id "
                          "WHERE i.name = ?1 AND (v.tag = ?2 OR v.digest = ?2)",
                          &st, "tt", image, ref);
        return r < 0 ? r : version_get_one(s, st, ret);
}

int store_version_get_by_id(Store *s, int64_t id, VersionRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = store_prepare(s, "SELECT " VERSION_COLUMNS " FROM versions v JOIN images i ON i.id = v.image_id WHERE v.id = ?",
                          &st, "i", id);
        return r < 0 ? r : version_get_one(s, st, ret);
}

int store_version_list(Store *s, const char *image, int64_t after_id, unsigned limit,
                       int (*fn)(const VersionRecord *r, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s,
                          "SELECT " VERSION_COLUMNS " FROM versions v JOIN images i ON i.id = v.image_id "
                          "WHERE i.name = ? AND v.id > ? ORDER BY v.id LIMIT ?",
                          &st, "tii", image, after_id, (int64_t) limit);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                VersionRecord v = {};
                r = version_from_row(st, &v);
                if (r == 0)
                        r = fn(&v, userdata);
                version_record_done(&v);
                if (r != 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "version list");
}

int store_version_revoke(Store *s, int64_t id, const char *reason) {
        int r = store_exec(s,
                           "UPDATE versions SET state = 'revoked', revoked_at = ?, revoke_reason = ? "
                           "WHERE id = ? AND state = 'active'",
                           "iti", (int64_t) now_realtime(), reason, id);
        if (r != 0)
                return r > 0 ? -EIO : r;
        return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

int store_version_users(Store *s, int64_t id, int64_t *ret_count) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s,
                          "SELECT (SELECT count(*) FROM services WHERE stable_version_id = ?1) + "
                          "(SELECT count(*) FROM rollouts WHERE phase IN ('Progressing', 'Paused') AND "
                          "(to_version_id = ?1 OR from_version_id = ?1))",
                          &st, "i", id);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "version users");
        *ret_count = sqlite3_column_int64(st, 0);
        return 0;
}

int store_version_delete(Store *s, int64_t id) {
        int64_t users;
        int r = store_version_users(s, id, &users);

        if (r < 0)
                return r;
        if (users > 0)
                return AVIARY_E_VERSION_IN_USE;
        r = store_exec(s, "DELETE FROM versions WHERE id = ?", "i", id);
        if (r != 0)
                return r > 0 ? AVIARY_E_VERSION_IN_USE : r;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_VERSION_NOT_FOUND;
}
