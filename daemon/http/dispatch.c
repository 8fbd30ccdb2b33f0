/* Dispatch: transactions, audit events and idempotency around the handlers. */
#include <errno.h>
#include <string.h>

#include "digest.h"
#include "dispatch.h"
#include "log.h"
#include "settings.h"
#include "blobfiles.h"
#include "reply.h"
#include "route.h"
#include "store.h"

/* Hashes one query argument: "?KEY=VALUE" ("?KEY" without a value), so that "a=1&b=2" and
 * "a=1%26b=2" differ. */
static int fingerprint_query_one(const char *key, const char *value, void *userdata) {
        Digest *d = userdata;
        int k = digest_update(d, "?", 1);

        if (k == 0)
                k = digest_update(d, key, strlen(key) + 1);
        if (k == 0 && value)
                k = digest_update(d, value, strlen(value) + 1);
        return k;
}

/* sha256 over method, path, body and then the query arguments in order: "the same request" for
 * an Idempotency-Key. "promote" and "promote?full=true" are different requests. (Without a
 * query the hash is what it was before queries counted, so keys stored then still match.) */
static int request_fingerprint(Request *r, char out[static DIGEST_STR_LEN + 1]) {
        _cleanup_(digest_freep) Digest *d = NULL;
        int k = digest_new(&d);

        if (k < 0)
                return k;
        if ((k = digest_update(d, r->method_name, strlen(r->method_name) + 1)) < 0 ||
            (k = digest_update(d, r->path, strlen(r->path) + 1)) < 0 ||
            (k = digest_update(d, r->body ? r->body : "", r->body_size)) < 0 ||
            (k = request_query_foreach(r, fingerprint_query_one, d)) < 0)
                return k;
        return digest_final(d, out);
}

/* Answers from a remembered idempotent request, or refuses a different one with that key.
 * Returns 1 when the answer was replayed, 0 to go on, or an error. */
static int idempotency_replay(Request *r, const char *key, const char *fingerprint) {
        _cleanup_(idempotency_record_done) IdempotencyRecord rec = {};
        json_error_t jerr;
        int k;

        /* A key older than 24 hours is gone, also before the hourly housekeeping deletes it. */
        k = store_idempotency_forget_older(r->ctx->store, r->principal, key, now_realtime() - IDEMPOTENCY_KEEP_USEC);
        if (k >= 0)
                k = store_idempotency_get(r->ctx->store, r->principal, key, &rec);
        if (k <= 0)
                return k;
        if (!streq(rec.request_hash, fingerprint))
                return reply_error(r, AVIARY_E_IDEMPOTENCY_KEY_REUSED,
                                   "Idempotency-Key '%s' was already used for a different request (%s %s)", key,
                                   rec.method, rec.path);
        k = reply_json(r, (unsigned) rec.status, json_loads(rec.response, JSON_DECODE_ANY, &jerr));
        if (k < 0)
                return k;
        snprintf(r->etag, sizeof r->etag, "%s", rec.etag ? rec.etag : "");
        snprintf(r->location, sizeof r->location, "%s", rec.location ? rec.location : "");
        r->replayed = true;
        return 1;
}

static int event_append(Request *r) {
        EventRecord e = {
                .actor = r->actor,
                .action = r->route->action,
                .resource = r->resource[0] ? r->resource : r->path,
                .result = "ok",
                .status = (int) (r->status ? r->status : 200),
                .request_id = r->request_id,
                .detail_json = r->event_detail,
        };

        return store_event_append(r->ctx->store, &e);
}

/* The one service a committed change was about: the routes that change a service, its rollouts,
 * its sleep name it as their resource, `service/NAME`. A deletion is left to a full pass (its
 * guests are whatever the next pass finds no row for), and so is any other resource. */
static const char *committed_service(const Request *r) {
        static const char prefix[] = "service/";
        const char *name = r->resource + sizeof prefix - 1;

        if (strncmp(r->resource, prefix, sizeof prefix - 1) != 0 || !*name || r->method == HTTP_DELETE)
                return NULL;
        return name;
}

int dispatch_request(Request *r) {
        Store *store = r->ctx->store;
        const char *key = NULL;
        char fingerprint[DIGEST_STR_LEN + 1];
        int k;

        store_clear_error();
        if (!r->route->action)
                return r->route->handler(r);

        if (r->method == HTTP_POST) {
                key = request_header(r, "Idempotency-Key");
                if (key && !idempotency_key_is_valid(key))
                        return reply_error(r, AVIARY_E_BAD_REQUEST,
                                           "Idempotency-Key must be 1 to 255 printable ASCII characters");
        }

        k = store_begin(store);
        if (k < 0)
                return k;
        if (key) {
                k = request_fingerprint(r, fingerprint);
                if (k == 0)
                        k = idempotency_replay(r, key, fingerprint);
                if (k != 0) {
                        store_rollback(store);
                        return k > 0 && r->replayed ? 0 : k;
                }
        }

        k = r->route->handler(r);
        /* A handler may answer "nothing changed" (same version pushed again): no event. */
        if (k == 0 && !r->unchanged)
                k = event_append(r);
        if (k == 0 && key) {
                _cleanup_free_ char *text = NULL;
                if (r->reply && r->reply_secret_field) {
                        /* The replay says where the secret was, never the secret. */
                        json_auto_t *copy = json_deep_copy(r->reply);
                        json_object_set_new(copy, r->reply_secret_field, json_string("(shown once, when it was created)"));
                        text = reply_dump(copy);
                } else
                        text = r->reply ? reply_dump(r->reply) : strdup("null");
                IdempotencyRecord rec = {
                        .method = (char *) r->method_name,
                        .path = r->path,
                        .request_hash = fingerprint,
                        .status = (int) (r->status ? r->status : 200),
                        .response = text,
                        .etag = r->etag[0] ? r->etag : NULL,
                        .location = r->location[0] ? r->location : NULL,
                };
                k = text ? store_idempotency_put(store, r->principal, key, &rec) : -ENOMEM;
        }
        if (k != 0) {
                store_rollback(store);
                if (r->after_rollback)
                        r->after_rollback(r);
                return k;
        }
        k = store_commit(store); /* rolls back when it fails (a full disk) */
        if (k != 0 && r->after_rollback)
                r->after_rollback(r);
        if (k == 0 && r->after_commit)
                r->after_commit(r);
        if (k == 0 && r->ctx->on_committed)
                r->ctx->on_committed(r->ctx->userdata, committed_service(r)); /* desired state may have changed */
        if (k == 0)
                log_info("%s %s → %u [%s %s]", r->method_name, r->path, r->status ? r->status : 200, r->actor,
                         r->request_id);
        return k;
}
