/* Opening the database, migrations, transactions and the statement cache. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <string.h>

#include "migrations.h"
#include "store-internal.h"
#include "telemetry.h"

/* The store logs nothing: a failure is logged once, by whoever decides what it means. What
 * SQLite said is kept here for that caller (store_last_error()). */
static _Thread_local char last_error[512];

static void set_error(const char *fmt, ...) _printf_(1, 2);
static void set_error(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(last_error, sizeof last_error, fmt, ap);
        va_end(ap);
}

const char *store_last_error(void) {
        return last_error;
}

void store_clear_error(void) {
        last_error[0] = 0;
}

int store_error(Store *s, int rc, const char *what) {
        int err;

        switch (rc & 0xff) {
        case SQLITE_FULL:
                err = ENOSPC;
                break;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                err = EBUSY;
                break;
        case SQLITE_NOMEM:
                err = ENOMEM;
                break;
        case SQLITE_READONLY:
        case SQLITE_PERM:
                err = EROFS;
                break;
        case SQLITE_CONSTRAINT:
                err = EEXIST;
                break;
        default:
                err = EIO;
        }
        set_error("SQLite: %s: %s (%d)", what, s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), rc);
        return -err;
}

static int bind_args(sqlite3_stmt *st, const char *fmt, va_list ap) {
        int idx = 1, rc = SQLITE_OK;

        for (const char *f = fmt; f && *f && rc == SQLITE_OK; f++, idx++) {
                switch (*f) {
                case 't': {
                        const char *v = va_arg(ap, const char *);
                        rc = v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, idx);
                        break;
                }
                case 'i':
                        rc = sqlite3_bind_int64(st, idx, va_arg(ap, int64_t));
                        break;
                case 'I': {
                        int64_t v = va_arg(ap, int64_t);
                        rc = v ? sqlite3_bind_int64(st, idx, v) : sqlite3_bind_null(st, idx);
                        break;
                }
                default:
                        return SQLITE_MISUSE;
                }
        }
        return rc;
}

static int prepare_va(Store *s, const char *sql, sqlite3_stmt **ret, const char *fmt, va_list ap) {
        sqlite3_stmt *st = NULL;
        int rc;

        for (unsigned i = 0; i < s->n_cached; i++)
                if (s->cache[i].sql == sql) {
                        st = s->cache[i].stmt;
                        break;
                }
        if (!st) {
                rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
                if (rc != SQLITE_OK)
                        return store_error(s, rc, "prepare");
                if (s->n_cached < STORE_STMT_CACHE_MAX) {
                        s->cache[s->n_cached].sql = sql;
                        s->cache[s->n_cached++].stmt = st;
                } else {
                        /* Cannot happen with our fixed set of statements; refuse rather than leak. */
                        sqlite3_finalize(st);
                        set_error("SQLite statement cache is full");
                        return -ENOBUFS;
                }
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        rc = bind_args(st, fmt, ap);
        if (rc != SQLITE_OK)
                return store_error(s, rc, "bind");
        *ret = st;
        return 0;
}

int store_prepare(Store *s, const char *sql, sqlite3_stmt **ret, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = prepare_va(s, sql, ret, fmt, ap);
        va_end(ap);
        return r;
}

int store_exec(Store *s, const char *sql, const char *fmt, ...) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        va_list ap;
        int r, rc;

        va_start(ap, fmt);
        r = prepare_va(s, sql, &st, fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
                return 0;
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
                return sqlite3_extended_errcode(s->db);
        return store_error(s, rc, "step");
}

char *store_column_strdup(sqlite3_stmt *st, int col) {
        const unsigned char *t = sqlite3_column_text(st, col);
        return t ? strdup((const char *) t) : NULL;
}

void store_column_copy(sqlite3_stmt *st, int col, char *buf, size_t size) {
        const unsigned char *t = sqlite3_column_text(st, col);
        snprintf(buf, size, "%s", t ? (const char *) t : "");
}

static int exec_plain(Store *s, const char *sql) {
        char *msg = NULL;
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);

        if (rc != SQLITE_OK) {
                int k = store_error(NULL, rc, "exec");
                set_error("SQLite: %.120s: %s", sql, msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return k;
        }
        return 0;
}

/* Back to flushed commits (synchronous = FULL) once a relaxed transaction ended. When that
 * fails, s->relaxed stays set and the next store_begin() refuses to begin without it. */
static int relaxed_end(Store *s) {
        if (s->tx_depth == 0 && s->relaxed) {
                int r = exec_plain(s, "PRAGMA synchronous = FULL");
                if (r < 0)
                        return r;
                s->relaxed = false;
        }
        return 0;
}

static int begin(Store *s) {
        bool outermost = s->tx_depth == 0;
        int r = exec_plain(s, outermost ? "BEGIN IMMEDIATE" : "SAVEPOINT nested");
        if (r == 0 && outermost)
                s->tx_started = now_monotonic();
        if (r == 0)
                s->tx_depth++;
        return r;
}

void store_on_commit(Store *s, void (*fn)(void *userdata), void *userdata) {
        s->on_commit = fn;
        s->on_commit_userdata = userdata;
}

int store_begin(Store *s) {
        int r = relaxed_end(s);
        return r < 0 ? r : begin(s);
}

int store_begin_relaxed(Store *s) {
        int r;

        if (s->tx_depth > 0)
                return store_begin(s);
        /* SQLite takes the level when the PRAGMA is prepared, outside a transaction only: a
         * cached statement would not set it again. */
        r = exec_plain(s, "PRAGMA synchronous = NORMAL");
        if (r < 0)
                return r;
        s->relaxed = true;
        r = begin(s);
        if (r < 0)
                (void) relaxed_end(s);
        return r;
}

int store_commit(Store *s) {
        int r;

        if (s->tx_depth == 0)
                return -EINVAL;
        r = exec_plain(s, s->tx_depth == 1 ? "COMMIT" : "RELEASE nested");
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        s->tx_depth--;
        (void) relaxed_end(s);
        if (s->tx_depth == 0) {
                telemetry_store_transaction(now_monotonic() - s->tx_started, 1);
                if (s->on_commit)
                        s->on_commit(s->on_commit_userdata);
        }
        return 0;
}

int store_rollback(Store *s) {
        if (s->tx_depth == 0)
                return -EINVAL;
        /* After SQLITE_FULL (or IOERR, NOMEM) SQLite may have rolled the whole transaction
         * back itself: then there is nothing left to roll back, and no error to log. */
        if (sqlite3_get_autocommit(s->db))
                ;
        else if (s->tx_depth == 1)
                exec_plain(s, "ROLLBACK");
        else
                exec_plain(s, "ROLLBACK TO nested; RELEASE nested");
        s->tx_depth--;
        (void) relaxed_end(s);
        if (s->tx_depth == 0)
                telemetry_store_transaction(now_monotonic() - s->tx_started, 0);
        return 0;
}

static int pragma_int(Store *s, const char *sql, int *ret) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

        if (rc != SQLITE_OK)
                return store_error(s, rc, sql);
        rc = sqlite3_step(st);
        *ret = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : store_error(s, rc, sql);
}

int store_schema_version(Store *s) {
        int v = 0, r = pragma_int(s, "PRAGMA user_version", &v);
        return r < 0 ? r : v;
}

/* 0 when PRAGMA foreign_key_check finds no row that points at nothing, else -EBADMSG. */
static int foreign_keys_intact(Store *s) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, "PRAGMA foreign_key_check", -1, &st, NULL);

        if (rc != SQLITE_OK)
                return store_error(s, rc, "foreign_key_check");
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc == SQLITE_ROW) {
                set_error("a migration left rows whose foreign keys point at nothing");
                return -EBADMSG;
        }
        return rc == SQLITE_DONE ? 0 : store_error(s, rc, "foreign_key_check");
}

static int migrate(Store *s, unsigned target) {
        int current = store_schema_version(s), app_id = 0, r;
        char sql[96];

        if (current < 0)
                return current;
        r = pragma_int(s, "PRAGMA application_id", &app_id);
        if (r < 0)
                return r;
        if (current > 0 && app_id != AVIARY_APPLICATION_ID) {
                set_error("not an aviary database (application_id %#x)", (unsigned) app_id);
                return -EMEDIUMTYPE;
        }
        if ((unsigned) current > migrations_count) {
                set_error("database schema version %d is newer than this aviaryd knows (%u); refusing to touch it",
                          current, migrations_count);
                return -EPROTONOSUPPORT;
        }
        for (unsigned i = (unsigned) current; i < migrations_count && i < target; i++) {
                const Migration *m = &migrations[i];
                /* A migration that rebuilds a table other tables point at (SQLite's "making other
                 * kinds of table schema changes") says so on a line of its own: foreign keys are
                 * off around it, or dropping the old table would cascade into its children, and
                 * foreign_key_check must find nothing before it commits. */
                bool rebuild = strstr(m->sql, "\n-- aviary: rebuilds tables\n") != NULL;

                if (rebuild && (r = exec_plain(s, "PRAGMA foreign_keys = OFF")) < 0)
                        return r;
                r = store_begin(s);
                if (r < 0)
                        return r;
                r = exec_plain(s, m->sql);
                if (r == 0 && rebuild)
                        r = foreign_keys_intact(s);
                if (r == 0) {
                        snprintf(sql, sizeof sql, "PRAGMA user_version = %u; PRAGMA application_id = %d", m->number,
                                 AVIARY_APPLICATION_ID);
                        r = exec_plain(s, sql);
                }
                if (r < 0) {
                        char why[sizeof last_error];
                        snprintf(why, sizeof why, "%s", last_error);
                        store_rollback(s);
                        if (rebuild)
                                (void) exec_plain(s, "PRAGMA foreign_keys = ON");
                        set_error("migration %s failed: %s", m->name, why);
                        return r;
                }
                r = store_commit(s);
                if (rebuild) {
                        int k = exec_plain(s, "PRAGMA foreign_keys = ON");
                        if (r == 0)
                                r = k;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The database holds token hashes, the audit log and who may run what: 0600 whatever the
 * umask. SQLite creates a database 0644 less the umask, and its -wal and -shm files with the
 * database file's mode; so the file is made (or, from an older aviaryd, narrowed) 0600 before
 * SQLite opens it, and leftover -wal/-shm files are narrowed too. */
static int database_file_prepare(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        char side[4096];

        if (fd < 0) {
                set_error("cannot open %s: %m", path);
                return negative_errno();
        }
        if (fchmod(fd, 0600) < 0) {
                set_error("cannot make %s mode 0600: %m", path);
                return negative_errno();
        }
        for (const char *suffix = "-wal"; suffix; suffix = streq(suffix, "-wal") ? "-shm" : NULL) {
                snprintf(side, sizeof side, "%s%s", path, suffix);
                if (chmod(side, 0600) < 0 && errno != ENOENT) {
                        set_error("cannot make %s mode 0600: %m", side);
                        return negative_errno();
                }
        }
        return 0;
}

int store_open_at_version(const char *path, unsigned target, Store **ret) {
        _cleanup_(store_closep) Store *s = NULL;
        int rc, r;

        if (!streq(path, ":memory:")) {
                r = database_file_prepare(path);
                if (r < 0)
                        return r;
        }
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc, path);
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, 5000);
        r = exec_plain(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
                          "PRAGMA trusted_schema = OFF");
        if (r < 0)
                return r;
        r = migrate(s, target);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int store_open(const char *path, Store **ret) {
        return store_open_at_version(path, ~0u, ret);
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        for (unsigned i = 0; i < s->n_cached; i++)
                sqlite3_finalize(s->cache[i].stmt);
        sqlite3_close(s->db);
        free(s);
        return NULL;
}

/* PRAGMA quick_check reads every page: on a health endpoint that monitors poll, its answer is
 * kept for STORE_CHECK_KEEP_USEC (and its statement prepared once). */
#define STORE_CHECK_KEEP_USEC (5 * USEC_PER_SEC)

int store_check(Store *s) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        usec_t now = now_monotonic();
        int rc, r, bad = 0;

        if (s->checked_at && now - s->checked_at < STORE_CHECK_KEEP_USEC)
                return s->check_result;
        r = store_prepare(s, "PRAGMA quick_check", &st, "");
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const unsigned char *t = sqlite3_column_text(st, 0);
                if (!t || strcmp((const char *) t, "ok") != 0)
                        bad = 1;
        }
        s->checked_at = now;
        s->check_result = rc == SQLITE_DONE && !bad ? 0 : -EIO;
        return s->check_result;
}

int64_t store_generation(Store *s) {
        return (int64_t) sqlite3_total_changes64(s->db);
}

const char *store_sqlite_version(void) {
        return sqlite3_libversion();
}
