/* Instances and their address leases. */
#include <string.h>

#include "store-internal.h"

void instance_record_done(InstanceRecord *r) {
        free(r->stop_reason);
        free(r->snapshot);
        *r = (InstanceRecord) {};
}

#define INSTANCE_COLUMNS                                                                                     \
        "id, service_id, version_id, state, ip, mac, domain_uuid, qemu_pid, created_at, running_at, ready_at, " \
        "stopped_at, stop_reason, restarts, next_start_at, drain_until, accel, snapshot, snapshot_version, snapshot_accel"

static void instance_from_row(sqlite3_stmt *st, InstanceRecord *r) {
        store_column_copy(st, 0, r->id, sizeof r->id);
        r->service_id = sqlite3_column_int64(st, 1);
        r->version_id = sqlite3_column_int64(st, 2);
        store_column_copy(st, 3, r->state, sizeof r->state);
        store_column_copy(st, 4, r->ip, sizeof r->ip);
        store_column_copy(st, 5, r->mac, sizeof r->mac);
        store_column_copy(st, 6, r->domain_uuid, sizeof r->domain_uuid);
        r->qemu_pid = sqlite3_column_int64(st, 7);
        r->created_at = (usec_t) sqlite3_column_int64(st, 8);
        r->running_at = (usec_t) sqlite3_column_int64(st, 9);
        r->ready_at = (usec_t) sqlite3_column_int64(st, 10);
        r->stopped_at = (usec_t) sqlite3_column_int64(st, 11);
        r->stop_reason = store_column_strdup(st, 12);
        r->restarts = sqlite3_column_int64(st, 13);
        r->next_start_at = (usec_t) sqlite3_column_int64(st, 14);
        r->drain_until = (usec_t) sqlite3_column_int64(st, 15);
        store_column_copy(st, 16, r->accel, sizeof r->accel);
        r->snapshot = store_column_strdup(st, 17);
        r->snapshot_version = sqlite3_column_int64(st, 18);
        store_column_copy(st, 19, r->snapshot_accel, sizeof r->snapshot_accel);
}

int store_instance_insert(Store *s, InstanceRecord *r) {
        int k;

        r->created_at = now_realtime();
        k = store_exec(s,
                       "INSERT INTO instances (id, service_id, version_id, state, mac, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       "tiitti", r->id, r->service_id, r->version_id,
                       r->state[0] ? r->state : "pending", r->mac, (int64_t) r->created_at);
        return k > 0 ? store_error(s, k, "instance insert") : k;
}

int store_instance_get(Store *s, const char *id, InstanceRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k, rc;

        k = store_prepare(s, "SELECT " INSTANCE_COLUMNS " FROM instances WHERE id = ?", &st, "t", id);
        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return AVIARY_E_INSTANCE_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "instance get");
        instance_from_row(st, ret);
        return 0;
}

int store_instance_update(Store *s, const InstanceRecord *r) {
        int k = store_exec(s,
                           "UPDATE instances SET state = ?, ip = ?, domain_uuid = ?, qemu_pid = ?, running_at = ?, "
                           "ready_at = ?, stopped_at = ?, stop_reason = ?, restarts = ?, next_start_at = ?, drain_until = ?, "
                           "accel = ?, snapshot = ?, snapshot_version = ?, snapshot_accel = ? WHERE id = ?",
                           "tttIIIItiIIttItt", r->state, r->ip[0] ? r->ip : NULL, r->domain_uuid[0] ? r->domain_uuid : NULL,
                           r->qemu_pid, (int64_t) r->running_at, (int64_t) r->ready_at, (int64_t) r->stopped_at,
                           r->stop_reason, r->restarts, (int64_t) r->next_start_at, (int64_t) r->drain_until,
                           r->accel[0] ? r->accel : NULL, r->snapshot, r->snapshot_version,
                           r->snapshot_accel[0] ? r->snapshot_accel : NULL, r->id);
        if (k != 0)
                return k > 0 ? store_error(s, k, "instance update") : k;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_INSTANCE_NOT_FOUND;
}

int store_instance_delete(Store *s, const char *id) {
        int k = store_exec(s, "DELETE FROM instances WHERE id = ?", "t", id);

        if (k != 0)
                return k > 0 ? store_error(s, k, "instance delete") : k;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_INSTANCE_NOT_FOUND;
}

/* Calls FN for each row of ST, an instance query. A service's rows are read through the index
 * instances_service: "?1 = 0 OR service_id = ?1" would scan the whole table for each service
 * (a pass over N services read N × all rows). */
static int instance_rows(Store *s, sqlite3_stmt *st, int (*fn)(const InstanceRecord *r, void *userdata),
                         void *userdata) {
        int k, rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                InstanceRecord r = {};
                instance_from_row(st, &r);
                k = fn(&r, userdata);
                instance_record_done(&r);
                if (k != 0)
                        return k;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "instance list");
}

int store_instance_list(Store *s, int64_t service_id, const char *after, unsigned limit,
                        int (*fn)(const InstanceRecord *r, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = service_id
                        ? store_prepare(s,
                                        "SELECT " INSTANCE_COLUMNS " FROM instances WHERE service_id = ?1 "
                                        "AND id > ?2 ORDER BY id LIMIT ?3",
                                        &st, "iti", service_id, after ? after : "", (int64_t) limit)
                        : store_prepare(s, "SELECT " INSTANCE_COLUMNS " FROM instances WHERE id > ?1 ORDER BY id LIMIT ?2",
                                        &st, "ti", after ? after : "", (int64_t) limit);

        return k < 0 ? k : instance_rows(s, st, fn, userdata);
}

int store_instance_list_active(Store *s, int64_t service_id, int (*fn)(const InstanceRecord *r, void *userdata),
                               void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = service_id ? store_prepare(s,
                                           "SELECT " INSTANCE_COLUMNS " FROM instances WHERE service_id = ? "
                                           "AND state NOT IN ('stopped', 'failed') ORDER BY id",
                                           &st, "i", service_id)
                           : store_prepare(s,
                                           "SELECT " INSTANCE_COLUMNS " FROM instances "
                                           "WHERE state NOT IN ('stopped', 'failed') ORDER BY id",
                                           &st, "");

        return k < 0 ? k : instance_rows(s, st, fn, userdata);
}

int store_instance_count_asleep(Store *s, int64_t service_id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT count(*) FROM instances WHERE service_id = ? AND state = 'asleep'", &st, "i",
                              service_id), rc;

        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "instance count");
        return sqlite3_column_int(st, 0);
}

int store_instance_prune(Store *s, usec_t before) {
        int k = store_exec(s,
                           "DELETE FROM instances WHERE state IN ('stopped', 'failed') AND stopped_at IS NOT NULL "
                           "AND stopped_at < ?",
                           "i", (int64_t) before);
        return k != 0 ? (k > 0 ? store_error(s, k, "instance prune") : k) : sqlite3_changes(s->db);
}

int store_lease_get(Store *s, const char *instance, char *ip) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k, rc;

        k = store_prepare(s, "SELECT ip FROM leases WHERE instance_id = ?", &st, "t", instance);
        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return AVIARY_E_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "lease get");
        store_column_copy(st, 0, ip, 16);
        return 0;
}

int store_lease_list(Store *s, int (*fn)(const char *ip, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k, rc;

        k = store_prepare(s, "SELECT ip FROM leases", &st, "");
        if (k < 0)
                return k;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *ip = (const char *) sqlite3_column_text(st, 0);
                k = fn(ip ? ip : "", userdata);
                if (k != 0)
                        return k;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "lease list");
}

int store_lease_insert(Store *s, const char *ip, const char *instance) {
        int k = store_exec(s, "INSERT INTO leases (ip, instance_id, created_at) VALUES (?, ?, ?)", "tti", ip, instance,
                           (int64_t) now_realtime());
        return k > 0 ? -EADDRINUSE : k;
}

int store_lease_delete(Store *s, const char *instance) {
        int k = store_exec(s, "DELETE FROM leases WHERE instance_id = ?", "t", instance);
        return k > 0 ? store_error(s, k, "lease delete") : k;
}

int store_instance_count_by_state(Store *s, int (*fn)(const char *service, const char *state, int64_t n, void *userdata),
                                  void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s,
                              "SELECT s.name, i.state, count(*) FROM instances i JOIN services s ON s.id = i.service_id "
                              "GROUP BY s.name, i.state ORDER BY s.name, i.state",
                              &st, "");
        int rc;

        if (k < 0)
                return k;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                k = fn((const char *) sqlite3_column_text(st, 0), (const char *) sqlite3_column_text(st, 1),
                       sqlite3_column_int64(st, 2), userdata);
                if (k != 0)
                        return k;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "instance count");
}
