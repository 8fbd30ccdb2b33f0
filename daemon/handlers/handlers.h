/* Every route handler, one file per resource, plus the JSON shapes they share. */
#pragma once

#include <jansson.h>

#include "request.h"
#include "store.h"

/* health.c */
int health_get(Request *r);
int metrics_get(Request *r);
int version_info_get(Request *r);

/* blobs.c */
int blob_list(Request *r);
int blob_get(Request *r);
int blob_put_begin(Request *r);
int blob_put_data(Request *r, const char *data, size_t size);
int blob_put_finish(Request *r);
int blob_delete(Request *r);

/* images.c */
int image_list(Request *r);
int image_create(Request *r);
int image_get(Request *r);
int image_delete(Request *r);
int version_list(Request *r);
int version_create(Request *r);
int version_get(Request *r);
int version_delete(Request *r);
int version_revoke(Request *r);

/* services.c */
int service_list(Request *r);
int service_create(Request *r);
int service_get(Request *r);
int service_update(Request *r);
int service_delete(Request *r);
int service_traffic(Request *r);
int service_sleep(Request *r);
int service_wake(Request *r);
/* Loads the service named in path parameter 0, checking If-Match when asked. */
int service_from_path(Request *r, ServiceRecord *ret, bool check_if_match);
/* Resolves REF ("IMAGE:TAG" / "IMAGE@sha256:...") to a version that may be deployed (not
 * revoked); FIELD names it in messages. */
int deployable_version_resolve(Request *r, const char *field, const char *ref, VersionRecord *ret);

/* rollouts.c */
int rollout_create(Request *r);
int service_rollback(Request *r);
/* The service whose blue/green rollout in progress has its preview listener on LISTEN (normal
 * form), other than service EXCEPT_ID (0: any): 1 with OTHER filled, 0 when none, <0. */
int rollout_preview_user(Store *store, const char *listen, int64_t except_id, char other[static 64]);
int ui_index(Request *r);
int ui_file(Request *r);
/* Whether the version S serves as stable, and the canary of its rollout in progress, were
 * revoked since (the flags of GET /v1/services and of /metrics). */
void service_revoked(Store *store, const ServiceRecord *s, bool *ret_stable, bool *ret_canary);
int rollout_list(Request *r);
int rollout_get(Request *r);
int rollout_promote(Request *r);
int rollout_pause(Request *r);
int rollout_resume(Request *r);
int rollout_abort_request(Request *r);
int rollout_retry(Request *r);

/* tokens.c */
int token_create(Request *r);
int token_list(Request *r);
int token_delete(Request *r);

/* instances.c */
int instance_list(Request *r);
int instance_get(Request *r);
int instance_restart(Request *r);
int instance_console(Request *r);

/* events.c */
int event_list(Request *r);

/* common.c */
json_t *json_time(usec_t t);
json_t *version_to_json(const VersionRecord *v);
/* A page: {"items": ITEMS, "next": NEXT-or-null}. Takes ITEMS. */
json_t *page_json(json_t *items, unsigned limit, const char *next);
/* Ends a list handler: with K != 0 drops ITEMS and returns K; else replies with the page
 * whose cursor is the last item's CURSOR_KEY (a string or an integer). Takes ITEMS. */
int reply_page(Request *r, int k, json_t *items, unsigned limit, const char *cursor_key);
/* A GET answer kept while the database does not change (store_generation()): a list read by
 * pollers is rendered once per change, not once per request. One entry per cache (the last
 * KEY asked); control loop only. */
typedef struct ReplyCache {
        char key[320];
        int64_t generation;
        char *text;
} ReplyCache;
/* True when R got the kept answer for KEY. */
bool reply_cache_hit(Request *r, ReplyCache *c, const char *key);
/* After a successful reply_json(): renders it once, keeps the text for KEY, answers with it. */
void reply_cache_keep(Request *r, ReplyCache *c, const char *key);
/* Parses the request's JSON body, filling R's error on failure. */
int request_json_body(Request *r, json_t **ret);
/* The image name in path parameter N, checked. */
int request_name_param(Request *r, unsigned n, const char *what, const char **ret);
/* A numeric page cursor ("after=" of versions and events): digits only. */
int cursor_id_parse(const char *s, int64_t *ret);
/* Checks If-Match before a change of the resource whose current strong ETag is ETAG (WHAT
 * names it in messages): 0 to go on; 412 precondition-failed when the header is there and
 * none of its tags is ETAG (or "*"); 428 precondition-required when it is missing and
 * require_if_match is on. */
int request_check_if_match(Request *r, const char *etag, const char *what);
/* Splits "IMAGE:TAG" or "IMAGE@sha256:HEX" into its parts (new strings). */
int version_ref_parse(const char *s, char **ret_image, char **ret_ref);
