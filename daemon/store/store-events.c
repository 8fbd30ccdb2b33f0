/* The audit log (append-only) and remembered idempotent answers. */
#include <string.h>

#include "store-internal.h"

#define EVENT_COLUMNS "id, time, actor, action, resource, result, status, request_id, detail"

int store_event_append(Store *s, EventRecord *e) {
        _cleanup_free_ char *text = NULL;
        int r;

        if (e->detail_json) {
                text = json_dumps(e->detail_json, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
                if (!text)
                        return -ENOMEM;
                e->detail = text;
        }
        e->time = now_realtime();
        r = store_exec(s,
                       "INSERT INTO events (time, actor, action, resource, result, status, request_id, detail) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       "ittttitt", (int64_t) e->time, e->actor, e->action, e->resource, e->result, (int64_t) e->status,
                       e->request_id, e->detail);
        if (text)
                e->detail = NULL; /* TEXT goes with this call */
        if (r != 0)
                return r > 0 ? store_error(s, r, "event append") : r;
        e->id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

int store_event_list(Store *s, int64_t after, unsigned limit, const char *resource,
                     int (*fn)(const EventRecord *e, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        /* The resource itself, and what is under it: "R/..." sorts from "R/" to just before "R0"
         * ('0' follows '/'). Each part is a range of events_resource; INDEXED BY because without
         * statistics SQLite would rather walk the whole table in id order. */
        if (resource)
                r = store_prepare(s,
                                  "SELECT " EVENT_COLUMNS " FROM events WHERE id IN ("
                                  "  SELECT id FROM events INDEXED BY events_resource"
                                  "  WHERE resource = ?2 AND id > ?1 ORDER BY id LIMIT ?3)"
                                  " OR id IN ("
                                  "  SELECT id FROM events INDEXED BY events_resource"
                                  "  WHERE resource >= ?2 || '/' AND resource < ?2 || '0' AND id > ?1 ORDER BY id LIMIT ?3)"
                                  " ORDER BY id LIMIT ?3",
                                  &st, "iti", after, resource, (int64_t) limit);
        else
                r = store_prepare(s, "SELECT " EVENT_COLUMNS " FROM events WHERE id > ?1 ORDER BY id LIMIT ?2", &st,
                                  "ii", after, (int64_t) limit);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                EventRecord e = {
                        .id = sqlite3_column_int64(st, 0),
                        .time = (usec_t) sqlite3_column_int64(st, 1),
                        .actor = (const char *) sqlite3_column_text(st, 2),
                        .action = (const char *) sqlite3_column_text(st, 3),
                        .resource = (const char *) sqlite3_column_text(st, 4),
                        .result = (const char *) sqlite3_column_text(st, 5),
                        .status = sqlite3_column_int(st, 6),
                        .request_id = (const char *) sqlite3_column_text(st, 7),
                        .detail = (const char *) sqlite3_column_text(st, 8),
                };
                r = fn(&e, userdata);
                if (r != 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "event list");
}

/* The lowest id to keep: past the age limit the first event young enough, past the count limit
 * the KEEP-th newest (ids are never reused and only the oldest go, so they run without gaps but
 * for rolled-back inserts; with a gap this keeps fewer, never more). */
static int prune_cutoff(Store *s, usec_t before, uint64_t keep, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int64_t cutoff = 0;
        int r, rc;

        if (before > 0) {
                /* In id order from the oldest: stops at the first young event, so the cost is the
                 * number of events due, not the table. */
                r = store_prepare(s, "SELECT id FROM events WHERE time >= ? ORDER BY id LIMIT 1", &st, "i",
                                  (int64_t) before);
                if (r < 0)
                        return r;
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        cutoff = sqlite3_column_int64(st, 0);
                else if (rc == SQLITE_DONE)
                        cutoff = INT64_MAX; /* every event is older */
                else
                        return store_error(s, rc, "event prune");
                sqlite3_reset(st);
        }
        if (keep > 0) {
                r = store_prepare(s, "SELECT max(id) FROM events", &st, "");
                if (r < 0)
                        return r;
                rc = sqlite3_step(st);
                if (rc != SQLITE_ROW)
                        return store_error(s, rc, "event prune");
                if (sqlite3_column_int64(st, 0) - (int64_t) keep + 1 > cutoff)
                        cutoff = sqlite3_column_int64(st, 0) - (int64_t) keep + 1;
        }
        *ret = cutoff;
        return 0;
}

int store_event_prune(Store *s, usec_t before, uint64_t keep, unsigned batch) {
        int64_t cutoff = 0;
        int r;

        if (before == 0 && keep == 0)
                return 0;
        r = prune_cutoff(s, before, keep, &cutoff);
        if (r < 0 || cutoff <= 0)
                return r;
        r = store_exec(s, "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?)",
                       "ii", cutoff, (int64_t) batch);
        if (r != 0)
                return r > 0 ? store_error(s, r, "event prune") : r;
        return sqlite3_changes(s->db);
}

void idempotency_record_done(IdempotencyRecord *r) {
        free(r->method);
        free(r->path);
        free(r->request_hash);
        free(r->response);
        free(r->etag);
        free(r->location);
        *r = (IdempotencyRecord) {};
}

int store_idempotency_get(Store *s, const char *principal, const char *key, IdempotencyRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s,
                          "SELECT method, path, request_hash, status, response, etag, location FROM idempotency_keys "
                          "WHERE principal = ? AND key = ?",
                          &st, "tt", principal, key);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "idempotency get");
        *ret = (IdempotencyRecord) {
                .method = store_column_strdup(st, 0),
                .path = store_column_strdup(st, 1),
                .request_hash = store_column_strdup(st, 2),
                .status = sqlite3_column_int(st, 3),
                .response = store_column_strdup(st, 4),
                .etag = store_column_strdup(st, 5),
                .location = store_column_strdup(st, 6),
        };
        if (!ret->method || !ret->path || !ret->request_hash || !ret->response) {
                idempotency_record_done(ret);
                return -ENOMEM;
        }
        return 1;
}

int store_idempotency_put(Store *s, const char *principal, const char *key, const IdempotencyRecord *rec) {
        int r = store_exec(s,
                           "INSERT INTO idempotency_keys (principal, key, method, path, request_hash, status, response, "
                           "etag, location, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           "tttttittti", principal, key, rec->method, rec->path, rec->request_hash, (int64_t) rec->status,
                           rec->response, rec->etag, rec->location, (int64_t) now_realtime());
        return r > 0 ? store_error(s, r, "idempotency put") : r;
}

int store_idempotency_forget_older(Store *s, const char *principal, const char *key, usec_t before) {
        int r = store_exec(s, "DELETE FROM idempotency_keys WHERE principal = ? AND key = ? AND created_at < ?", "tti",
                           principal, key, (int64_t) before);
        return r != 0 ? (r > 0 ? -EIO : r) : sqlite3_changes(s->db) > 0;
}

int store_idempotency_expire(Store *s, usec_t before) {
        int r = store_exec(s, "DELETE FROM idempotency_keys WHERE created_at < ?", "i", (int64_t) before);
        return r != 0 ? (r > 0 ? -EIO : r) : sqlite3_changes(s->db);
}

int store_event_last_id(Store *s, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT coalesce(max(id), 0) FROM events", &st, "");
        int rc;

        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "event last id");
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}
