/* The owner of every service's routing, on the control loop: it is told what each service wants
 * (RouteSpec: its listener, its ready guests by version group, the weight and stickiness of its
 * rollout, its health check), adds what it alone knows (active health checks with rise/fall,
 * passive ejections reported by the workers), builds an immutable RouteTable from both and
 * publishes it to the data plane (plane.h) when anything changed. control/traffic.c reads
 * SQLite to make the specs; it never sees a table.
 *
 * Listeners come from and go to systemd's fd store through callbacks the caller passes in
 * (RoutingFdStore), so this layer knows nothing of the manager. */
#pragma once

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "match.h"
#include "metrics.h"
#include "plane.h"
#include "select.h"
#include "timeutil.h"

typedef struct Routing Routing;

typedef struct RouteSpecBackend {
        struct sockaddr_in addr;
        char id[64]; /* instance id */
} RouteSpecBackend;

typedef struct RouteSpec {
        const char *name;
        const char *listen; /* "IP:PORT", or NULL: no proxy */
        size_t n[_SPLIT_GROUP_MAX];
        RouteSpecBackend backend[_SPLIT_GROUP_MAX][BACKEND_SET_MAX];
        unsigned canary_bp;
        int64_t rollout_id; /* 0: none in progress */
        uint64_t salt;
        char sticky_header[64], sticky_cookie[64];
        bool tester_header;
        HeaderRule rules[HEADER_RULES_MAX]; /* the rollout's header route: to the canary first */
        size_t n_rules;
        unsigned mirror_bp; /* the rollout's mirror: share of stable's GET/HEAD copied to the canary */
        char hc_path[257];
        uint64_t hc_interval_usec, hc_timeout_usec;
        unsigned hc_rise, hc_fall;
        /* Scale to zero: the service may sleep, and has no ready guest now (asleep, or waking).
         * Its requests are held and a wake is asked for (RoutingWakeFn) rather than answered 503. */
        bool hold;
        /* On a shared listen address, which requests are this service's (util/match.h): no hosts
         * and an empty prefix match every request. */
        char match_hosts[MATCH_MAX_HOSTS][256];
        size_t n_match_hosts;
        char match_path_prefix[257];
} RouteSpec;

/* A worker holds a request for SERVICE, which is asleep or waking: control wakes it (or says
 * why it cannot, with routing_wake_failed()). Called on the control loop, once per table the
 * workers hold with, and again after each release. */
typedef void (*RoutingWakeFn)(void *userdata, const char *service);

/* Systemd's fd store, as the manager offers it. TAKE returns the listener kept for ADDRESS
 * ("IP:PORT") across a restart, or -1 (the caller owns it from then on); KEEP hands FD to the
 * store for ADDRESS, or (FD -1) removes it. Either may be NULL. */
typedef struct RoutingFdStore {
        int (*take)(void *userdata, const char *address);
        void (*keep)(void *userdata, const char *address, int fd);
        void *userdata;
} RoutingFdStore;

/* THREADS proxy workers (0: one per CPU); EVENT is the control loop. */
int routing_new(sd_event *event, unsigned threads, const RoutingFdStore *fds, Routing **ret);
/* Stops the workers. Listeners stay in the fd store for the next aviaryd. Accepts NULL. */
Routing *routing_free(Routing *r);
unsigned routing_threads(const Routing *r);
/* Scale to zero: FN hears of requests held for a sleeping service; at most LIMIT are held per
 * service, each at most TIMEOUT_USEC (503 with Retry-After past either). Call before the first
 * routing_apply(). */
void routing_set_wake(Routing *r, unsigned limit, uint64_t timeout_usec, RoutingWakeFn fn, void *userdata);
/* SERVICE could not be woken: its held requests are answered a JSON 503 whose message is WHY. */
void routing_wake_failed(Routing *r, const char *service, const char *why);
/* When SERVICE's proxy last saw a request (picked or ended), on now_realtime()'s clock; 0 when
 * none since it started listening. */
usec_t routing_last_request(Routing *r, const char *service);

/* A full update: routing_begin(), routing_apply() for every service there is, routing_end()
 * (which removes the services not applied since, and their listeners from the fd store). Services
 * with the same listen address share one listener, told apart by their match. */
void routing_begin(Routing *r);
void routing_apply(Routing *r, const RouteSpec *spec);
void routing_end(Routing *r);
/* Counts SERVICE as applied without changing it (its state could not be read just now). */
void routing_keep(Routing *r, const char *service);
/* Outside a full update: SERVICE is gone (deleted, a preview closed): its table and, unless
 * another service shares it, its listener go, as routing_end() would do. */
void routing_drop(Routing *r, const char *service);
/* The address a service is listening on (its port, once open), or 0. */
unsigned routing_port(Routing *r, const char *service);

/* Active health checks: probes each guest in the tables whose interval passed; ends ejections
 * whose time is up. Call it from a tick (the controller's 250 ms). */
void routing_health_tick(Routing *r);
/* 1 with WHY filled when SERVICE has canary guests and none is usable because all fail their
 * active health checks (passive ejection never takes a group's last guest); 0 otherwise. */
int routing_canary_unhealthy(Routing *r, const char *service, char *why, size_t size);
/* Analysis windows: *RET (may be NULL) gets the service's counters since the last call, and a
 * new window starts. -ENOENT when the service has no running proxy. */
int routing_window_take(Routing *r, const char *service, ProxyMetrics *ret);
/* Everything counted for SERVICE's proxy, for GET /metrics: requests by group (every worker's
 * merged), connections and bytes, passive ejections, and SERIAL, which changes whenever the
 * counters started again from 0 (a new listener). -ENOENT when it has no running proxy. */
typedef struct RoutingMetrics {
        ProxyMetrics by_group;
        PlaneStats stats;
        uint64_t ejections;
        uint64_t serial;
} RoutingMetrics;
int routing_metrics(Routing *r, const char *service, RoutingMetrics *ret);
/* Requests in flight to the guest at IP over every worker: the answer to the previous call's
 * question (asked again now), or UINT_MAX while no complete answer is in, which is also the
 * first answer after IP was not asked about for a second (a drain before, or another guest that
 * had the address, is not now). */
unsigned routing_inflight(Routing *r, const char *ip);
/* The guest at IP is gone: requests waiting on it go elsewhere now (proxy_backend_down). */
void routing_backend_gone(Routing *r, const char *ip);
/* {"service","listen","listening","holding","held","last_request_at","weights",
 *  "versions":{"stable":{...},"canary":{...}},"header_routes","header_routed","generation"}, new ref. */
json_t *routing_service_json(Routing *r, const char *service);
