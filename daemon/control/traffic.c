/* Traffic (traffic.h): SQLite to RouteSpecs. Only the stable version and a rollout's canary
 * serve; guests of any other version get nothing (a guest leaves the table when it starts
 * draining, and a Degraded canary kept for inspection is not in it). */
#include <arpa/inet.h>
#include <string.h>

#include "log.h"
#include "rollout.h"
#include "traffic.h"

#define MAX_SERVICES 256

struct Traffic {
        Store *store;
        Routing *routing;
        RouteSpec spec; /* scratch for one service at a time (it is large) */
};

typedef struct Collect {
        RouteSpec *spec;
        int64_t stable_version_id;
        int64_t canary_version_id; /* 0: no rollout in progress */
        int port;
} Collect;

static int collect_ready(const InstanceRecord *r, void *userdata) {
        Collect *c = userdata;
        RouteSpec *spec = c->spec;
        SplitGroup g;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) c->port)};

        if (r->version_id == c->stable_version_id)
                g = SPLIT_STABLE;
        else if (c->canary_version_id && r->version_id == c->canary_version_id)
                g = SPLIT_CANARY;
        else
                return 0;
        if (!streq(r->state, "ready") || spec->n[g] >= BACKEND_SET_MAX || inet_pton(AF_INET, r->ip, &sa.sin_addr) != 1)
                return 0;
        spec->backend[g][spec->n[g]].addr = sa;
        snprintf(spec->backend[g][spec->n[g]].id, sizeof spec->backend[g][0].id, "%s", r->id);
        spec->n[g]++;
        return 0;
}

/* The weight, canary version and stickiness of SV's rollout in progress (none: all stable).
 * <0 when unreadable now: the caller keeps the service's table as it is. */
static int rollout_spec(Traffic *t, const ServiceRecord *sv, Collect *c) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        RouteSpec *spec = c->spec;
        Strategy strategy;
        int k = store_rollout_get_active(t->store, sv->id, &ro);

        if (k == 0 && ro.to_version_id == sv->stable_version_id)
                k = AVIARY_E_ROLLOUT_NOT_FOUND; /* a first deploy: its version is the stable one, no split */
        if (k == AVIARY_E_ROLLOUT_NOT_FOUND)
                return 0;
        if (k != 0)
                return k < 0 ? k : -EIO;
        /* The canary guests and the weight come from the row; only stickiness needs the strategy. */
        c->canary_version_id = ro.to_version_id;
        spec->canary_bp = (unsigned) ro.canary_weight;
        if (rollout_strategy(&ro, &strategy) < 0)
                return 0;
        spec->rollout_id = ro.id;
        spec->salt = (uint64_t) ro.salt;
        snprintf(spec->sticky_header, sizeof spec->sticky_header, "%s", strategy.sticky_header);
        snprintf(spec->sticky_cookie, sizeof spec->sticky_cookie, "%s", strategy.sticky_cookie);
        spec->tester_header = strategy.tester_header;
        return 0;
}

static int sync_service(const ServiceRecord *sv, void *userdata) {
        Traffic *t = userdata;
        RouteSpec *spec = &t->spec;
        _cleanup_(version_record_done) VersionRecord v = {};
        Collect c = {.spec = spec, .stable_version_id = sv->stable_version_id};

        memset(spec, 0, sizeof *spec);
        spec->name = sv->name;
        spec->listen = sv->listen;
        if (rollout_spec(t, sv, &c) < 0) {
                /* Unreadable now: keep its current table (applying nothing would drop it). */
                routing_keep(t->routing, sv->name);
                return 0;
        }
        if (sv->stable_version_id && store_version_get_by_id(t->store, sv->stable_version_id, &v) == 0) {
                c.port = (int) (sv->port ? sv->port : v.port);
                if (store_instance_list_active(t->store, sv->id, collect_ready, &c) < 0) {
                        routing_keep(t->routing, sv->name);
                        return 0;
                }
        }
        /* On a shared listener: the requests that are this service's. */
        if (sv->match_hosts) {
                json_t *hosts = json_loads(sv->match_hosts, 0, NULL), *host;
                size_t i;
                json_array_foreach(hosts, i, host)
                        if (json_is_string(host) && spec->n_match_hosts < MATCH_MAX_HOSTS)
                                snprintf(spec->match_hosts[spec->n_match_hosts++], sizeof spec->match_hosts[0], "%s",
                                         json_string_value(host));
                json_decref(hosts);
        }
        snprintf(spec->match_path_prefix, sizeof spec->match_path_prefix, "%s",
                 sv->match_path_prefix ? sv->match_path_prefix : "");
        /* Scale to zero: with no ready guest (asleep, or waking) requests wait for one. */
        spec->hold = sv->idle_ms > 0 && sv->stable_version_id && spec->n[SPLIT_STABLE] == 0 && spec->n[SPLIT_CANARY] == 0;
        snprintf(spec->hc_path, sizeof spec->hc_path, "%s", sv->hc_path);
        spec->hc_interval_usec = (usec_t) sv->hc_interval_ms * USEC_PER_MSEC;
        spec->hc_timeout_usec = (usec_t) sv->hc_timeout_ms * USEC_PER_MSEC;
        spec->hc_rise = (unsigned) sv->hc_rise;
        spec->hc_fall = (unsigned) sv->hc_fall;
        routing_apply(t->routing, spec);
        return 0;
}

void traffic_sync(Traffic *t) {
        if (!t)
                return;
        routing_begin(t->routing);
        /* A failed read must not look like "every service is gone": keep what runs. */
        if (store_service_list(t->store, NULL, MAX_SERVICES, sync_service, t) < 0)
                return;
        routing_end(t->routing);
}

int traffic_window_take(Traffic *t, const char *service, ProxyMetrics *ret) {
        return t ? routing_window_take(t->routing, service, ret) : -ENOENT;
}

void traffic_health_tick(Traffic *t) {
        if (t)
                routing_health_tick(t->routing);
}

int traffic_canary_unhealthy(Traffic *t, const char *service, char *why, size_t size) {
        return t ? routing_canary_unhealthy(t->routing, service, why, size) : 0;
}

unsigned traffic_inflight(Traffic *t, const char *ip) {
        return t ? routing_inflight(t->routing, ip) : 0;
}

void traffic_backend_gone(Traffic *t, const char *ip) {
        if (t)
                routing_backend_gone(t->routing, ip);
}

void traffic_set_wake(Traffic *t, unsigned limit, uint64_t timeout_usec, RoutingWakeFn fn, void *userdata) {
        routing_set_wake(t->routing, limit, timeout_usec, fn, userdata);
}

void traffic_wake_failed(Traffic *t, const char *service, const char *why) {
        if (t)
                routing_wake_failed(t->routing, service, why);
}

usec_t traffic_last_request(Traffic *t, const char *service) {
        return t ? routing_last_request(t->routing, service) : 0;
}

json_t *traffic_service_json(Traffic *t, const char *service) {
        return routing_service_json(t ? t->routing : NULL, service);
}

int traffic_new(Store *store, sd_event *e, unsigned threads, const RoutingFdStore *fds, Traffic **ret) {
        Traffic *t = calloc(1, sizeof *t);
        int k;

        if (!t)
                return -ENOMEM;
        t->store = store;
        k = routing_new(e, threads, fds, &t->routing);
        if (k < 0) {
                free(t);
                return k;
        }
        *ret = t;
        return 0;
}

Traffic *traffic_free(Traffic *t) {
        if (!t)
                return NULL;
        routing_free(t->routing);
        free(t);
        return NULL;
}
