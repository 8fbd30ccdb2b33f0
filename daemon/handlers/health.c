/* GET /v1/health and GET /v1/version. */
#include <microhttpd.h>

#include "config.h"
#include "handlers.h"
#include "manager.h"

int health_get(Request *r) {
        int db = store_check(r->manager->store);

        return reply_json(r, db == 0 ? 200 : 503,
                          json_pack("{s:s, s:s}", "status", db == 0 ? "ok" : "degraded", "database",
                                    db == 0 ? "ok" : "failed integrity check"));
}

int version_info_get(Request *r) {
        return reply_json(r, 200,
                          json_pack("{s:s, s:s, s:i, s:s, s:s}", "version", AVIARY_VERSION, "api", AVIARY_API_VERSION,
                                    "schema_version", store_schema_version(r->manager->store), "sqlite",
                                    store_sqlite_version(), "libmicrohttpd", MHD_get_version()));
}
