/* Traffic: turns what SQLite says about each service (its listener, its ready guests by version
 * group, its rollout's weight and stickiness, its health check) into a RouteSpec for
 * proxy/routing.c, which owns the routing state and the data plane. A blue/green rollout in
 * progress adds a second RouteSpec, its preview listener ("NAME/preview") with every ready guest
 * of the new version, while the service's own table holds the stable version alone. The
 * controller calls traffic_sync() after every change it makes. */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

#include "proxy/metrics.h"
#include "proxy/routing.h"
#include "promtext.h"
#include "store.h"

typedef struct Traffic Traffic;

/* THREADS proxy worker threads (0: one per CPU) serving from loop E's control side; FDS are the
 * fd-store operations (may be NULL). STORE is read at every sync; the caller keeps it open. */
int traffic_new(Store *store, sd_event *e, unsigned threads, const RoutingFdStore *fds, Traffic **ret);
Traffic *traffic_free(Traffic *t);
/* Matches listeners and backends to SQLite: every service with a listen address gets a proxy to
 * its ready guests. Cheap; called after every change the controller makes. */
void traffic_sync(Traffic *t);
/* The same for the N services NAMES alone (a change the API made to them): each one's tables
 * (its preview's too) are built again, or dropped when it is gone; the others are left as they
 * are. */
void traffic_sync_services(Traffic *t, const char (*names)[64], size_t n);
/* Analysis windows: *RET (may be NULL) gets the service's counters since the last call, and a
 * new window starts. -ENOENT when the service has no running proxy (nothing can be measured). */
int traffic_window_take(Traffic *t, const char *service, ProxyMetrics *ret);
/* The same for the preview listener of SERVICE's blue/green rollout (its new version's
 * requests count as the canary group's); -ENOENT when no preview runs. */
int traffic_preview_window_take(Traffic *t, const char *service, ProxyMetrics *ret);
/* Active health checks and ejection expiry (routing_health_tick). Called by the controller's tick. */
void traffic_health_tick(Traffic *t);
/* 1 with WHY filled when SERVICE has canary guests and all of them fail their active health
 * checks (passive ejection never takes a group's last guest); 0 otherwise. */
int traffic_canary_unhealthy(Traffic *t, const char *service, char *why, size_t size);
/* Requests in flight to guest IP, over every worker (draining waits for 0): the last complete
 * answer of the workers, UINT_MAX while none is in, and again after a second without a call
 * (routing_inflight). */
unsigned traffic_inflight(Traffic *t, const char *ip);
/* The guest at IP is gone (it died, or was destroyed): every worker drops its connections to it
 * and sends the idempotent requests waiting on it elsewhere (proxy_backend_down). Call it after
 * traffic_sync() took the guest out of the tables. */
void traffic_backend_gone(Traffic *t, const char *ip);
/* Scale to zero (routing_set_wake): FN is told when a sleeping service gets a request. */
void traffic_set_wake(Traffic *t, unsigned limit, uint64_t timeout_usec, RoutingWakeFn fn, void *userdata);
/* SERVICE's wake failed: its held requests get a 503 naming WHY. */
void traffic_wake_failed(Traffic *t, const char *service, const char *why);
/* When SERVICE's proxy last saw a request (realtime), 0 none since aviaryd started. */
usec_t traffic_last_request(Traffic *t, const char *service);
/* The proxies' Prometheus families (aviary_proxy_*), every service's, into P. T may be NULL
 * (runtime off): the families without samples. */
void traffic_write_metrics(Traffic *t, PromText *p);
/* {"service","listen","listening","holding","held","last_request_at","weights","versions":{...},
 *  "generation", "preview": the same for a blue/green rollout's preview listener, or null}, new ref. */
json_t *traffic_service_json(Traffic *t, const char *service);
