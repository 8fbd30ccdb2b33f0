/* GET /v1/health and GET /v1/version. */
#include <microhttpd.h>
#include <string.h>

#include "config.h"
#include "controller.h"
#include "handlers.h"
#include "settings.h"
#include "blobfiles.h"

/* OBJ with how guests run merged in (accel, kvm, kvm_unusable). */
static json_t *with_accel(Request *r, json_t *obj) {
        json_auto_t *accel = controller_accel_json(r->ctx->controller);

        if (obj && accel && json_object_update(obj, accel) < 0)
                return json_decref(obj), NULL;
        return obj;
}

/* Monitors poll it: a healthy answer is rendered once per change of the database or of how
 * guests run, not once per request (it cost as much as the rest of the request). */
int health_get(Request *r) {
        static ReplyCache cache;
        int db = store_check(r->ctx->store), k;
        char key[80];

        memcpy(key, "health ", 7);
        controller_accel_key(r->ctx->controller, key + 7);
        if (db == 0 && reply_cache_hit(r, &cache, key))
                return 0;
        k = reply_json(r, db == 0 ? 200 : 503,
                       with_accel(r, json_pack("{s:s, s:s}", "status", db == 0 ? "ok" : "degraded", "database",
                                               db == 0 ? "ok" : "failed integrity check")));
        if (k == 0)
                reply_cache_keep(r, &cache, key);
        return k;
}

int version_info_get(Request *r) {
        return reply_json(r, 200,
                          with_accel(r, json_pack("{s:s, s:s, s:i, s:s, s:s}", "version", AVIARY_VERSION, "api",
                                                  AVIARY_API_VERSION, "schema_version",
                                                  store_schema_version(r->ctx->store), "sqlite",
                                                  store_sqlite_version(), "libmicrohttpd", MHD_get_version())));
}
