/* The SQLite store: the only code that includes sqlite3. Every statement binds its
 * parameters. Writes run inside store_begin()/store_commit(), which nest (the outermost is
 * BEGIN IMMEDIATE, inner ones are savepoints), so a request, its audit event and its
 * idempotency record commit together or not at all.
 *
 * Return values: 0 ok (or a count where stated), negative errno for the unexpected, a
 * positive AVIARY_E_* for a documented outcome (not found, conflict...). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "errors.h"
#include "macro.h"
#include "names.h"
#include "timeutil.h"

#define AVIARY_APPLICATION_ID 0x41565259 /* "AVRY" */

typedef struct Store Store;

/* Opens (creating if needed) the database at PATH and applies pending migrations, each in
 * its own transaction. ":memory:" works for tests. */
int store_open(const char *path, Store **ret);
Store *store_close(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_close);

/* Applies migrations up to and including TARGET only (tests build old databases). */
int store_open_at_version(const char *path, unsigned target, Store **ret);
int store_schema_version(Store *s);
/* Runs PRAGMA quick_check; 0 when the database is sound. */
int store_check(Store *s);
const char *store_sqlite_version(void);

/* What went wrong in the last failing store call on this thread, in words ("SQLite: step:
 * database or disk is full (13)"); "" when nothing did since store_clear_error(). The store
 * logs nothing itself: the caller that decides what a failure means logs it, once. */
const char *store_last_error(void);
void store_clear_error(void);

/* Moves with every row this store changed (aviaryd is the database's only writer): an answer
 * read at one generation holds while the generation is the same. */
int64_t store_generation(Store *s);

int store_begin(Store *s);
/* A transaction whose commit is not flushed to disk before it returns (synchronous = NORMAL):
 * it survives a crash of aviaryd (it is in the WAL, in the kernel's page cache), a crash of
 * the host may lose it, and the next store_begin() transaction's commit flushes it with its
 * own. Only for what the controller derives again from flushed rows or what a host crash
 * makes moot: the rows of guests (pending, booting, their addresses, readiness), never an
 * answer the API acknowledges. Inside another transaction it is a savepoint of that one. */
int store_begin_relaxed(Store *s);
int store_commit(Store *s);
/* FN runs after every outermost COMMIT, whoever wrote (API, controller, driver): what waits
 * for a change (long polls, the event stream) looks again. FN must not write to the store. */
void store_on_commit(Store *s, void (*fn)(void *userdata), void *userdata);
int store_rollback(Store *s);
/* Use as: _cleanup_(store_rollbackp) Store *tx = s; ... store_commit(TAKE_PTR(tx)); */
static inline void store_rollbackp(Store **s) {
        if (*s)
                store_rollback(*s);
}

/* ---- blobs ---- */

typedef struct BlobRecord {
        char digest[DIGEST_STR_LEN + 1];
        int64_t size;
        usec_t created_at;
} BlobRecord;

int store_blob_get(Store *s, const char *digest, BlobRecord *ret);            /* AVIARY_E_BLOB_NOT_FOUND */
/* Records a blob; returns 1 when it was new, 0 when it was already recorded. */
int store_blob_add(Store *s, const char *digest, int64_t size);
int store_blob_delete(Store *s, const char *digest);                          /* _NOT_FOUND, _BLOB_IN_USE */
/* Calls fn for each blob after AFTER (a digest, or NULL), at most LIMIT. */
int store_blob_list(Store *s, const char *after, unsigned limit,
                    int (*fn)(const BlobRecord *b, void *userdata), void *userdata);

/* ---- images and versions ---- */

typedef struct ImageRecord {
        int64_t id;
        char *name;
        usec_t created_at;
        int64_t version_count;
} ImageRecord;

void image_record_done(ImageRecord *r);

typedef struct VersionRecord {
        int64_t id;
        char *image;
        char *tag;
        char digest[DIGEST_STR_LEN + 1];
        char kernel[DIGEST_STR_LEN + 1];
        char initrd[DIGEST_STR_LEN + 1]; /* "" when none */
        char *cmdline;
        int64_t memory_mib, vcpus, port;
        char *labels;                    /* JSON object text */
        char *manifest;                  /* canonical JSON the digest covers */
        bool revoked;
        usec_t revoked_at;
        char *revoke_reason;
        usec_t created_at;
} VersionRecord;

void version_record_done(VersionRecord *r);

/* Creates the image; returns 1 if new, 0 if it existed. *ret_id gets its id either way. */
int store_image_ensure(Store *s, const char *name, int64_t *ret_id);
int store_image_create(Store *s, const char *name);                           /* AVIARY_E_IMAGE_EXISTS */
int store_image_get(Store *s, const char *name, ImageRecord *ret);            /* AVIARY_E_IMAGE_NOT_FOUND */
int store_image_list(Store *s, const char *after, unsigned limit,
                     int (*fn)(const ImageRecord *r, void *userdata), void *userdata);
/* Deletes an image and its versions; AVIARY_E_VERSION_IN_USE if a service uses one. */
int store_image_delete(Store *s, const char *name);

/* Inserts V (image must exist; id, revoked*, created_at are filled in). */
int store_version_insert(Store *s, int64_t image_id, VersionRecord *v);
/* REF is a tag or a "sha256:" digest. AVIARY_E_VERSION_NOT_FOUND. */
int store_version_get(Store *s, const char *image, const char *ref, VersionRecord *ret);
int store_version_get_by_id(Store *s, int64_t id, VersionRecord *ret);
int store_version_list(Store *s, const char *image, int64_t after_id, unsigned limit,
                       int (*fn)(const VersionRecord *r, void *userdata), void *userdata);
/* Returns 1 when newly revoked, 0 when it already was. */
int store_version_revoke(Store *s, int64_t id, const char *reason);
int store_version_delete(Store *s, int64_t id);                               /* AVIARY_E_VERSION_IN_USE */
/* Number of services naming version ID as stable (and, later, rollouts). */
int store_version_users(Store *s, int64_t id, int64_t *ret_count);

/* ---- services ---- */

typedef struct ServiceRecord {
        int64_t id;
        char *name;
        char *listen;                    /* NULL: no proxy listener */
        int64_t port;                    /* 0: the version's port */
        int64_t replicas;
        char *restart_policy;
        char *hc_path;
        int64_t hc_interval_ms, hc_timeout_ms, hc_rise, hc_fall;
        int64_t stable_version_id;       /* 0: none */
        int64_t boot_timeout_ms;         /* 0: the daemon's boot_timeout */
        char *match_hosts;               /* JSON array of host patterns on a shared listener; NULL: any */
        char *match_path_prefix;         /* NULL: any ("/") */
        char *notify;                    /* JSON [{"url", "secret"?}] of rollout notifications; NULL: none */
        int64_t idle_ms;                 /* scale to zero after this long without a request; 0: never */
        char wake[16];                   /* "boot" or "snapshot" */
        int64_t generation;
        usec_t created_at, updated_at;
} ServiceRecord;

void service_record_done(ServiceRecord *r);

/* Inserts R (id, generation and times are filled in). _SERVICE_EXISTS, _LISTEN_IN_USE. */
int store_service_insert(Store *s, ServiceRecord *r);
int store_service_get(Store *s, const char *name, ServiceRecord *ret);        /* _SERVICE_NOT_FOUND */
int store_service_get_by_id(Store *s, int64_t id, ServiceRecord *ret);       /* _SERVICE_NOT_FOUND */
/* Writes every field of R over the row with R->id, bumping generation; R is updated. */
int store_service_update(Store *s, ServiceRecord *r);                         /* _LISTEN_IN_USE */
int store_service_delete(Store *s, int64_t id);
int store_service_list(Store *s, const char *after, unsigned limit,
                       int (*fn)(const ServiceRecord *r, void *userdata), void *userdata);

/* ---- events ---- */

typedef struct EventRecord {
        int64_t id;
        usec_t time;
        const char *actor, *action, *resource, *result, *request_id;
        int status;
        const char *detail;              /* JSON text or NULL */
        const json_t *detail_json;       /* ...or the JSON itself (borrowed), written in the one event form */
} EventRecord;

/* Appends an event; E->id and E->time are filled in. */
int store_event_append(Store *s, EventRecord *e);
/* Events with id > AFTER, oldest first; RESOURCE, when not NULL, keeps those of that resource
 * and of every resource under it ("image/web" keeps "image/web/version/1.0"), found through the
 * events_resource index: the cost follows the events that match, not the table. */
int store_event_list(Store *s, int64_t after, unsigned limit, const char *resource,
                     int (*fn)(const EventRecord *e, void *userdata), void *userdata);
/* The newest event's id (0 when there is none). */
int store_event_last_id(Store *s, int64_t *ret);
/* Deletes up to BATCH of the oldest events that are older than BEFORE (0: no age limit) or past
 * the newest KEEP (0: no count limit), in the caller's transaction, if any. Returns how many it
 * deleted: fewer than BATCH means nothing more is due. Oldest means lowest id: an event logged
 * while the clock ran backwards goes with its neighbours, not by its own time. */
int store_event_prune(Store *s, usec_t before, uint64_t keep, unsigned batch);

/* ---- idempotency keys ---- */

typedef struct IdempotencyRecord {
        char *method, *path, *request_hash;
        int status;
        char *response;
        char *etag, *location;           /* the answer's headers, NULL when it had none */
} IdempotencyRecord;

void idempotency_record_done(IdempotencyRecord *r);
/* Keys belong to a PRINCIPAL, the caller's stable identity: "uid:U" (unix socket), "token:ID" (an
 * API token's row id) or "bootstrap" (token_file); never a name or an address. */
int store_idempotency_get(Store *s, const char *principal, const char *key, IdempotencyRecord *ret); /* 1 found, 0 not */
int store_idempotency_put(Store *s, const char *principal, const char *key, const IdempotencyRecord *r);
/* Keys are kept this long (docs/api.md): an older one is forgotten, whether or not the
 * housekeeping has deleted it yet. */
#define IDEMPOTENCY_KEEP_USEC (24ULL * 3600 * USEC_PER_SEC)
/* Forgets PRINCIPAL's KEY if it was stored before BEFORE; 1 when it did, 0 when not. */
int store_idempotency_forget_older(Store *s, const char *principal, const char *key, usec_t before);
/* Forgets keys older than BEFORE; returns how many. */
int store_idempotency_expire(Store *s, usec_t before);

/* ---- instances (one guest each) ---- */

typedef struct InstanceRecord {
        char id[64];
        int64_t service_id;
        int64_t version_id;
        char state[16];                  /* pending booting ready draining stopped failed crash-loop asleep */
        char ip[16];                     /* "" until leased */
        char mac[18];
        char domain_uuid[37];            /* "" when no domain */
        int64_t qemu_pid;
        usec_t created_at, running_at, ready_at, stopped_at;
        char *stop_reason;
        int64_t restarts;
        usec_t next_start_at;            /* backoff: not before */
        usec_t drain_until;              /* draining: the guest stops by then at the latest */
        char accel[4];                   /* "kvm" or "tcg": how its guest runs or ran; "" before a boot */
        /* Asleep with wake: snapshot: the guest's saved memory (a file in the state directory),
         * and the version and accelerator it was taken with. NULL, 0, "" when none. */
        char *snapshot;
        int64_t snapshot_version;
        char snapshot_accel[4];
} InstanceRecord;

void instance_record_done(InstanceRecord *r);

int store_instance_insert(Store *s, InstanceRecord *r);
int store_instance_get(Store *s, const char *id, InstanceRecord *ret);         /* _INSTANCE_NOT_FOUND */
/* Writes every mutable field of R (state, ip, domain, pid, times, reason, restarts). */
int store_instance_update(Store *s, const InstanceRecord *r);
int store_instance_delete(Store *s, const char *id);
/* Instances of SERVICE_ID (0: all), oldest first, after id AFTER (NULL: from the start). */
int store_instance_list(Store *s, int64_t service_id, const char *after, unsigned limit,
                        int (*fn)(const InstanceRecord *r, void *userdata), void *userdata);

/* Every instance of SERVICE_ID (0: all) not stopped or failed, oldest id first. */
/* FN(service name, state, count) for every service and state with instances (GET /metrics). */
int store_instance_count_by_state(Store *s, int (*fn)(const char *service, const char *state, int64_t n, void *userdata),
                                  void *userdata);
int store_instance_list_active(Store *s, int64_t service_id, int (*fn)(const InstanceRecord *r, void *userdata),
                               void *userdata);

/* How many instances of SERVICE_ID are asleep (scale to zero). */
int store_instance_count_asleep(Store *s, int64_t service_id);

/* Deletes stopped and failed instances that stopped before BEFORE; returns how many. */
int store_instance_prune(Store *s, usec_t before);

/* ---- rollouts ---- */

/* A rollout's phase: one enum, one string table (the strings are the API's and the column's). */
typedef enum RolloutPhase {
        ROLLOUT_PROGRESSING,
        ROLLOUT_PAUSED,
        ROLLOUT_HEALTHY,
        ROLLOUT_DEGRADED,
        _ROLLOUT_PHASE_MAX,
        _ROLLOUT_PHASE_INVALID = -1,
} RolloutPhase;

const char *rollout_phase_to_string(RolloutPhase p);   /* "Progressing"...; NULL when invalid */
RolloutPhase rollout_phase_from_string(const char *s); /* _ROLLOUT_PHASE_INVALID when unknown */

/* What ended an aborted rollout, for a CI job to act on (abortReason.kind; the exit status of
 * `aviary deploy --wait`). */
typedef enum RolloutAbortKind {
        ROLLOUT_ABORT_NONE,             /* not aborted */
        ROLLOUT_ABORT_ANALYSIS,         /* analysis windows failed */
        ROLLOUT_ABORT_CHECK,            /* a check step's request failed */
        ROLLOUT_ABORT_WEBHOOK,          /* a webhook step said no or did not answer */
        ROLLOUT_ABORT_UNHEALTHY,        /* canary guests died, crash-looped, missed their boot deadline */
        ROLLOUT_ABORT_DEADLINE,         /* the progress deadline passed */
        ROLLOUT_ABORT_MANUAL,           /* an operator aborted it (or revoked its version) */
        ROLLOUT_ABORT_SUPERSEDED,       /* a newer rollout of the service replaced it */
        _ROLLOUT_ABORT_KIND_MAX,
        _ROLLOUT_ABORT_KIND_INVALID = -1,
} RolloutAbortKind;

const char *rollout_abort_kind_to_string(RolloutAbortKind k);    /* "analysis"...; NULL for NONE and invalid */
RolloutAbortKind rollout_abort_kind_from_string(const char *s);  /* NONE for NULL, _INVALID when unknown */

typedef struct RolloutRecord {
        int64_t id;
        int64_t service_id;
        int64_t from_version_id;         /* 0: none (first deploy) or deleted since */
        int64_t to_version_id;           /* 0: deleted since (only once finished) */
        char *from_label, *to_label;     /* "image:tag" at creation; from_label NULL when none */
        char *strategy;                  /* expanded strategy JSON */
        RolloutPhase phase;
        int64_t step_index;
        usec_t step_started_at;
        int64_t canary_weight;           /* basis points */
        bool paused;                     /* by the pause action */
        usec_t pause_until;              /* a timed pause step ends then; 0 none */
        int64_t salt;
        char *analysis;                  /* JSON: counters and the last window */
        char *message;
        char *abort_reason;              /* NULL unless aborted */
        RolloutAbortKind abort_kind;     /* NONE unless aborted */
        usec_t created_at, updated_at, finished_at;
} RolloutRecord;

void rollout_record_done(RolloutRecord *r);
bool rollout_is_active(const RolloutRecord *r); /* Progressing or Paused */

/* Inserts R (id and times are filled in). */
int store_rollout_insert(Store *s, RolloutRecord *r);
int store_rollout_get(Store *s, int64_t service_id, int64_t id, RolloutRecord *ret);  /* _ROLLOUT_NOT_FOUND */
/* The service's rollout in progress; AVIARY_E_ROLLOUT_NOT_FOUND when none. */
int store_rollout_get_active(Store *s, int64_t service_id, RolloutRecord *ret);
/* The service's newest rollout; AVIARY_E_ROLLOUT_NOT_FOUND when none. */
int store_rollout_get_latest(Store *s, int64_t service_id, RolloutRecord *ret);
/* Writes every mutable field of R; updated_at is set. */
int store_rollout_update(Store *s, RolloutRecord *r);
/* The service's rollouts with id > AFTER, oldest first. */
/* By its id alone; AVIARY_E_ROLLOUT_NOT_FOUND. */
int store_rollout_get_by_id(Store *s, int64_t id, RolloutRecord *ret);
int store_rollout_list(Store *s, int64_t service_id, int64_t after, unsigned limit,
                       int (*fn)(const RolloutRecord *r, void *userdata), void *userdata);
/* Every rollout in progress, of every service. */
int store_rollout_list_active(Store *s, int (*fn)(const RolloutRecord *r, void *userdata), void *userdata);

/* ---- API tokens ---- */

typedef struct TokenRecord {
        int64_t id;
        char name[64];
        char scope[8];                   /* read deploy admin */
        char hash[65];                   /* hex SHA-256 of the secret */
        char prefix[16];
        char created_by[112];
        usec_t created_at, last_used_at;
} TokenRecord;

/* Inserts R (id and created_at filled in); AVIARY_E_TOKEN_EXISTS when the name is taken. */
int store_token_insert(Store *s, TokenRecord *r);
/* The token whose secret hashes to HASH; AVIARY_E_UNAUTHORIZED when none. */
int store_token_get_by_hash(Store *s, const char *hash, TokenRecord *ret);
int store_token_touch(Store *s, int64_t id, usec_t when);
/* Deletes the token and its idempotency keys (a later token may get the same row id). */
int store_token_delete(Store *s, const char *name);                             /* _TOKEN_NOT_FOUND */
int store_token_list(Store *s, const char *after, unsigned limit, int (*fn)(const TokenRecord *r, void *userdata),
                     void *userdata);

/* ---- address leases ---- */

/* The address leased to INSTANCE into ip (16 bytes); 0 found, AVIARY_E_NOT_FOUND not. */
int store_lease_get(Store *s, const char *instance, char *ip);
/* Calls FN(ip) for every address leased; stops at FN's first nonzero return, which it returns. */
int store_lease_list(Store *s, int (*fn)(const char *ip, void *userdata), void *userdata);
int store_lease_insert(Store *s, const char *ip, const char *instance);
int store_lease_delete(Store *s, const char *instance);
