/* Per-service HTTP proxies and their routing table (ready guests by version group). */
#pragma once

#include <jansson.h>

#include "proxy/metrics.h"

typedef struct Manager Manager;
typedef struct Traffic Traffic;

int traffic_new(Manager *m, Traffic **ret);
Traffic *traffic_free(Traffic *t);
/* Matches listeners and backends to SQLite: every service with a listen address gets a proxy to
 * its ready guests. Cheap; called after every change the controller makes. */
void traffic_sync(Traffic *t);
/* Analysis windows: *RET (may be NULL) gets the service's counters since the last call, and a
 * new window starts. -ENOENT when the service has no running proxy (nothing can be measured). */
int traffic_window_take(Traffic *t, const char *service, ProxyMetrics *ret);
/* Active health checks: probes each guest in the tables whose interval passed (the service's
 * health_check: GET path, timeout, rise, fall); a guest failing FALL in a row gets no traffic
 * until it passes RISE. Called by the controller's tick. */
void traffic_health_tick(Traffic *t);
/* 1 with WHY filled when SERVICE has canary guests and all of them fail their active health
 * checks (passive ejection never takes a group's last guest); 0 otherwise. */
int traffic_canary_unhealthy(Traffic *t, const char *service, char *why, size_t size);
/* Requests in flight to guest IP, over every service's proxy (draining waits for 0). */
unsigned traffic_inflight(Traffic *t, const char *ip);
/* The guest at IP is gone (it died, or was destroyed): every proxy drops its connections to it
 * and sends the idempotent requests waiting on it elsewhere (proxy_backend_down). Call it after
 * traffic_sync() took the guest out of the tables. */
void traffic_backend_gone(Traffic *t, const char *ip);
/* {"service","listen","listening","weights","versions":{"stable":{...},"canary":{...}}}, new ref. */
json_t *traffic_service_json(Traffic *t, const char *service);
