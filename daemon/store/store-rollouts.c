/* Rollouts: a service on its way from the stable version to a new one. The engine in
 * control/rollout.c owns the transitions; this file only reads and writes rows. */
#include <string.h>

#include "store-internal.h"

void rollout_record_done(RolloutRecord *r) {
        free(r->from_label);
        free(r->to_label);
        free(r->strategy);
        free(r->analysis);
        free(r->message);
        free(r->abort_reason);
        *r = (RolloutRecord) {};
}

static const char *const rollout_phase_names[_ROLLOUT_PHASE_MAX] = {
        [ROLLOUT_PROGRESSING] = "Progressing",
        [ROLLOUT_PAUSED] = "Paused",
        [ROLLOUT_HEALTHY] = "Healthy",
        [ROLLOUT_DEGRADED] = "Degraded",
};

const char *rollout_phase_to_string(RolloutPhase p) {
        return p >= 0 && p < _ROLLOUT_PHASE_MAX ? rollout_phase_names[p] : NULL;
}

RolloutPhase rollout_phase_from_string(const char *s) {
        for (int i = 0; s && i < _ROLLOUT_PHASE_MAX; i++)
                if (streq(s, rollout_phase_names[i]))
                        return (RolloutPhase) i;
        return _ROLLOUT_PHASE_INVALID;
}

static const char *const rollout_abort_kind_names[_ROLLOUT_ABORT_KIND_MAX] = {
        [ROLLOUT_ABORT_ANALYSIS] = "analysis",   [ROLLOUT_ABORT_CHECK] = "check",
        [ROLLOUT_ABORT_WEBHOOK] = "webhook",     [ROLLOUT_ABORT_UNHEALTHY] = "unhealthy",
        [ROLLOUT_ABORT_DEADLINE] = "deadline",   [ROLLOUT_ABORT_MANUAL] = "manual",
        [ROLLOUT_ABORT_SUPERSEDED] = "superseded",
};

const char *rollout_abort_kind_to_string(RolloutAbortKind k) {
        return k > ROLLOUT_ABORT_NONE && k < _ROLLOUT_ABORT_KIND_MAX ? rollout_abort_kind_names[k] : NULL;
}

RolloutAbortKind rollout_abort_kind_from_string(const char *s) {
        if (!s)
                return ROLLOUT_ABORT_NONE;
        for (int i = ROLLOUT_ABORT_NONE + 1; i < _ROLLOUT_ABORT_KIND_MAX; i++)
                if (streq(s, rollout_abort_kind_names[i]))
                        return (RolloutAbortKind) i;
        return _ROLLOUT_ABORT_KIND_INVALID;
}

bool rollout_is_active(const RolloutRecord *r) {
        return r->phase == ROLLOUT_PROGRESSING || r->phase == ROLLOUT_PAUSED;
}

#define ROLLOUT_COLUMNS                                                                                        \
        "id, service_id, from_version_id, to_version_id, from_label, to_label, strategy, phase, step_index, "   \
        "step_started_at, canary_weight, paused, pause_until, salt, analysis, message, abort_reason, created_at, " \
        "updated_at, finished_at, abort_kind"

static int rollout_from_row(sqlite3_stmt *st, RolloutRecord *r) {
        r->id = sqlite3_column_int64(st, 0);
        r->service_id = sqlite3_column_int64(st, 1);
        r->from_version_id = sqlite3_column_int64(st, 2);
        r->to_version_id = sqlite3_column_int64(st, 3);
        r->from_label = store_column_strdup(st, 4);
        r->to_label = store_column_strdup(st, 5);
        r->strategy = store_column_strdup(st, 6);
        {
                char phase[16];
                store_column_copy(st, 7, phase, sizeof phase);
                r->phase = rollout_phase_from_string(phase);
        }
        r->step_index = sqlite3_column_int64(st, 8);
        r->step_started_at = (usec_t) sqlite3_column_int64(st, 9);
        r->canary_weight = sqlite3_column_int64(st, 10);
        r->paused = sqlite3_column_int64(st, 11) != 0;
        r->pause_until = (usec_t) sqlite3_column_int64(st, 12);
        r->salt = sqlite3_column_int64(st, 13);
        r->analysis = store_column_strdup(st, 14);
        r->message = store_column_strdup(st, 15);
        r->abort_reason = store_column_strdup(st, 16);
        r->created_at = (usec_t) sqlite3_column_int64(st, 17);
        r->updated_at = (usec_t) sqlite3_column_int64(st, 18);
        r->finished_at = (usec_t) sqlite3_column_int64(st, 19);
        {
                char kind[16];
                store_column_copy(st, 20, kind, sizeof kind);
                r->abort_kind = kind[0] ? rollout_abort_kind_from_string(kind) : ROLLOUT_ABORT_NONE;
                if (r->abort_kind == _ROLLOUT_ABORT_KIND_INVALID)
                        r->abort_kind = ROLLOUT_ABORT_NONE; /* the column's CHECK allows none other */
        }
        if (!r->to_label || !r->strategy || !r->analysis || !r->message) {
                rollout_record_done(r);
                return -ENOMEM;
        }
        return 0;
}

int store_rollout_insert(Store *s, RolloutRecord *r) {
        int k;

        r->created_at = r->updated_at = now_realtime();
        if (!r->step_started_at)
                r->step_started_at = r->created_at;
        k = store_exec(s,
                       "INSERT INTO rollouts (service_id, from_version_id, to_version_id, from_label, to_label, "
                       "strategy, phase, step_index, step_started_at, canary_weight, paused, pause_until, salt, "
                       "analysis, message, abort_reason, created_at, updated_at, finished_at, abort_kind) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       "iIIttttiiiiIitttiiIt", r->service_id, r->from_version_id, r->to_version_id, r->from_label,
                       r->to_label, r->strategy, rollout_phase_to_string(r->phase), r->step_index, (int64_t) r->step_started_at,
                       r->canary_weight, (int64_t) r->paused, (int64_t) r->pause_until, r->salt,
                       r->analysis ? r->analysis : "{}", r->message ? r->message : "", r->abort_reason,
                       (int64_t) r->created_at, (int64_t) r->updated_at, (int64_t) r->finished_at,
                       rollout_abort_kind_to_string(r->abort_kind));
        if (k != 0)
                return k > 0 ? store_error(s, k, "rollout insert") : k;
        r->id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

static int rollout_get_one(Store *s, sqlite3_stmt *st, RolloutRecord *ret) {
        int rc = sqlite3_step(st);

        if (rc == SQLITE_DONE)
                return AVIARY_E_ROLLOUT_NOT_FOUND;
        if (rc != SQLITE_ROW)
                return store_error(s, rc, "rollout get");
        return rollout_from_row(st, ret);
}

int store_rollout_get(Store *s, int64_t service_id, int64_t id, RolloutRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE service_id = ? AND id = ?", &st, "ii",
                              service_id, id);

        return k < 0 ? k : rollout_get_one(s, st, ret);
}

int store_rollout_get_by_id(Store *s, int64_t id, RolloutRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE id = ?", &st, "i", id);

        return k < 0 ? k : rollout_get_one(s, st, ret);
}

int store_rollout_get_active(Store *s, int64_t service_id, RolloutRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s,
                              "SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE service_id = ? AND "
                              "phase IN ('Progressing', 'Paused')",
                              &st, "i", service_id);

        return k < 0 ? k : rollout_get_one(s, st, ret);
}

int store_rollout_get_latest(Store *s, int64_t service_id, RolloutRecord *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE service_id = ? ORDER BY id DESC LIMIT 1",
                              &st, "i", service_id);

        return k < 0 ? k : rollout_get_one(s, st, ret);
}

int store_rollout_update(Store *s, RolloutRecord *r) {
        int k;

        r->updated_at = now_realtime();
        k = store_exec(s,
                       "UPDATE rollouts SET phase = ?, step_index = ?, step_started_at = ?, canary_weight = ?, "
                       "paused = ?, pause_until = ?, analysis = ?, message = ?, abort_reason = ?, updated_at = ?, "
                       "finished_at = ?, abort_kind = ? WHERE id = ?",
                       "tiiiiIttti" "Iti", rollout_phase_to_string(r->phase), r->step_index, (int64_t) r->step_started_at, r->canary_weight,
                       (int64_t) r->paused, (int64_t) r->pause_until, r->analysis ? r->analysis : "{}",
                       r->message ? r->message : "", r->abort_reason, (int64_t) r->updated_at,
                       (int64_t) r->finished_at, rollout_abort_kind_to_string(r->abort_kind), r->id);
        if (k != 0)
                return k > 0 ? store_error(s, k, "rollout update") : k;
        return sqlite3_changes(s->db) > 0 ? 0 : AVIARY_E_ROLLOUT_NOT_FOUND;
}

static int rollout_rows(Store *s, sqlite3_stmt *st, int (*fn)(const RolloutRecord *r, void *userdata),
                        void *userdata) {
        int k, rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                RolloutRecord r = {};
                k = rollout_from_row(st, &r);
                if (k == 0)
                        k = fn(&r, userdata);
                rollout_record_done(&r);
                if (k != 0)
                        return k;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "rollout list");
}

int store_rollout_list(Store *s, int64_t service_id, int64_t after, unsigned limit,
                       int (*fn)(const RolloutRecord *r, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s,
                              "SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE service_id = ? AND id > ? "
                              "ORDER BY id LIMIT ?",
                              &st, "iii", service_id, after, (int64_t) limit);

        return k < 0 ? k : rollout_rows(s, st, fn, userdata);
}

int store_rollout_list_active(Store *s, int (*fn)(const RolloutRecord *r, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int k = store_prepare(s, "SELECT " ROLLOUT_COLUMNS " FROM rollouts WHERE phase IN ('Progressing', 'Paused') ORDER BY id",
                              &st, "");

        return k < 0 ? k : rollout_rows(s, st, fn, userdata);
}
