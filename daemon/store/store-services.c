/* Services: the desired state users deploy to. generation counts updates (the ETag). */
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"

void service_record_done(ServiceRecord *r) {
        free(r->name);
        free(r->listen);
        free(r->restart_policy);
        free(r->hc_path);
        free(r->match_hosts);
        free(r->match_path_prefix);
        free(r->notify);
        *r = (ServiceRecord) {};
}

#define SERVICE_COLUMNS                                                                                   \
        "id, name, listen, port, replicas, restart_policy, hc_path, hc_interval_ms, hc_timeout_ms, hc_rise, " \
        "hc_fall, stable_version_id, generation, created_at, updated_at, boot_timeout_ms, match_hosts, match_path_prefix, " \
        "idle_ms, wake, notify"

static int service_from_row(sqlite3_stmt *st, ServiceRecord *r) {
        r->id = sqlite3_column_int64(st, 0);
        r->name = store_column_strdup(st, 1);
        r->listen = store_column_strdup(st, 2);
        r->port = sqlite3_column_int64(st, 3);
        r->replicas = sqlite3_column_int64(st, 4);
        r->restart_policy = store_column_strdup(st, 5);
        r->hc_path = store_column_strdup(st, 6);
        r->hc_interval_ms = sqlite3_column_int64(st, 7);
        r->hc_timeout_ms = sqlite3_column_int64(st, 8);
        r->hc_rise = sqlite3_column_int64(st, 9);
        r->hc_fall = sqlite3_column_int64(st, 10);
        r->stable_version_id = sqlite3_column_int64(st, 11);
        r->generation = sqlite3_column_int64(st, 12);
        r->created_at = (usec_t) sqlite3_column_int64(st, 13);
        r->updated_at = (usec_t) sqlite3_column_int64(st, 14);
        r->boot_timeout_ms = sqlite3_column_int64(st, 15);
        r->match_hosts = store_column_strdup(st, 16);
        r->match_path_prefix = store_column_strdup(st, 17);
        r->idle_ms = sqlite3_column_int64(st, 18);
        store_column_copy(st, 19, r->wake, sizeof r->wake);
        r->notify = store_column_strdup(st, 20);
        if (!r->name || !r->restart_policy || !r->hc_path) {
                service_record_done(r);
                return -ENOMEM;
        }
        return 0;
}

/* Maps a constraint failure on services to the outcome it means. */
static int service_constraint(Store *s, int r) {
        if (r <= 0)
                return r;
        if (strstr(sqlite3_errmsg(s->db), "services.listen"))
                return AVIARY_E_LISTEN_IN_USE;
        if (strstr(sqlite3_errmsg(s->db), "services.name"))
                return AVIARY_E_SERVICE_EXISTS;
        return store_error(s, r, "service write");
}

int store_service_insert(Store *s, ServiceRecord *r) {
        int ret;

        r->created_at = r->updated_at = now_realtime();
        r->generation = 1;
        ret = store_exec(s,
                         "INSERT INTO services (name, listen, port, replicas, restart_policy, hc_path, hc_interval_ms, "
                         "hc_timeout_ms, hc_rise, hc_fall, stable_version_id, generation, created_at, updated_at, "
                         "boot_timeout_ms, match_hosts, match_path_prefix, idle_ms, wake, notify) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                         "ttIittiiiiIiiIttItt", r->name, r->listen, r->port, r->replicas, r->restart_policy, r->hc_path,
                         r->hc_interval_ms, r->hc_timeout_ms, r->hc_rise, r->hc_fall, r->stable_version_id,
                         (int64_t) r->created_at, (int64_t) r->updated_at, r->boot_timeout_ms, r->match_hosts,
                         r->match_path_prefix, r->idle_ms, r->wake[0] ? r->wake : "boot", r->notify);
        ret = service_constraint(s, ret);
        if (ret != 0)
                return ret;
        r->id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

static int service_get_one(Store *s, sqlite3_stmt *st, ServiceRecord *ret) {
        int rc = sqlite3_step(st);

        if (rc == SQLITE_DONE)
                return AVIARY_E_SERVICE_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "service get");
        return service_from_row(st, ret);
}

int store_service_get(Store *s, const char *name, ServiceRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(s, "SELECT " SERVICE_COLUMNS " FROM services WHERE name = ?", &st, "t", name);

        return r < 0 ? r : service_get_one(s, st, ret);
}

int store_service_get_by_id(Store *s, int64_t id, ServiceRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = store_prepare(s, "SELECT " SERVICE_COLUMNS " FROM services WHERE id = ?", &st, "i", id);

        return r < 0 ? r : service_get_one(s, st, ret);
}

int store_service_update(Store *s, ServiceRecord *r) {
        int ret;

        r->updated_at = now_realtime();
        ret = store_exec(s,
                         "UPDATE services SET listen = ?, port = ?, replicas = ?, restart_policy = ?, hc_path = ?, "
                         "hc_interval_ms = ?, hc_timeout_ms = ?, hc_rise = ?, hc_fall = ?, stable_version_id = ?, "
                         "boot_timeout_ms = ?, match_hosts = ?, match_path_prefix = ?, idle_ms = ?, wake = ?, notify = ?, "
                         "generation = generation + 1, updated_at = ? WHERE id = ?",
                         "tIittiiiiIIttIttii", r->listen, r->port, r->replicas, r->restart_policy, r->hc_path,
                         r->hc_interval_ms, r->hc_timeout_ms, r->hc_rise, r->hc_fall, r->stable_version_id,
                         r->boot_timeout_ms, r->match_hosts, r->match_path_prefix, r->idle_ms,
                         r->wake[0] ? r->wake : "boot", r->notify, (int64_t) r->updated_at, r->id);
        ret = service_constraint(s, ret);
        if (ret != 0)
                return ret;
        if (sqlite3_changes(s->db) == 0)
                return AVIARY_E_SERVICE_NOT_FOUND;
        r->generation++;
        return 0;
}

int store_service_delete(Store *s, int64_t id) {
        int r = store_exec(s, "DELETE FROM services WHERE id = ?", "i", id);

        if (r != 0)
                return r > 0 ? store_error(s, r, "service delete") : r;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_SERVICE_NOT_FOUND;
}

/* The rows are all read before FN runs: the statement is cached and shared, and the
 * controller's pass calls FN code that lists the services again (traffic_sync()), which
 * would reset it and clear its bindings under the outer loop. */
int store_service_list(Store *s, const char *after, unsigned limit, int (*fn)(const ServiceRecord *r, void *userdata),
                       void *userdata) {
        ServiceRecord *rows = NULL;
        size_t n = 0;
        int r = 0, rc = SQLITE_DONE;

        {
                _cleanup_stmt_ sqlite3_stmt *st = NULL;

                r = store_prepare(s, "SELECT " SERVICE_COLUMNS " FROM services WHERE name > ? ORDER BY name LIMIT ?", &st,
                                  "ti", after ? after : "", (int64_t) limit);
                if (r < 0)
                        return r;
                rows = calloc(limit ? limit : 1, sizeof *rows);
                if (!rows)
                        return -ENOMEM;
                while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                        r = service_from_row(st, &rows[n]);
                        if (r < 0)
                                break;
                        n++;
                }
                if (r == 0 && n < limit && rc != SQLITE_DONE)
                        r = store_error(s, rc, "service list");
        }
        for (size_t i = 0; r == 0 && i < n; i++)
                r = fn(&rows[i], userdata);
        for (size_t i = 0; i < n; i++)
                service_record_done(&rows[i]);
        free(rows);
        return r;
}
