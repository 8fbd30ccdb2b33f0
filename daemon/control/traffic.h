/* Per-service HTTP proxies and their routing table (ready guests by version group). */
#pragma once

#include <jansson.h>

typedef struct Manager Manager;
typedef struct Traffic Traffic;

int traffic_new(Manager *m, Traffic **ret);
Traffic *traffic_free(Traffic *t);
/* Matches listeners and backends to SQLite: every service with a listen address gets a proxy to
 * its ready guests. Cheap; called after every change the controller makes. */
void traffic_sync(Traffic *t);
/* {"service","listen","listening","weights","versions":{"stable":{...},"canary":{...}}}, new ref. */
json_t *traffic_service_json(Traffic *t, const char *service);
