/* Traffic (traffic.h): SQLite to RouteSpecs. Only the stable version and a rollout's canary
 * serve; guests of any other version get nothing (a guest leaves the table when it starts
 * draining, and a Degraded canary kept for inspection is not in it). */
#include <arpa/inet.h>
#include <string.h>

#include "log.h"
#include "rollout.h"
#include "traffic.h"

#define MAX_SERVICES 256
#define PAST_SERIES 8
#define VERSION_LABEL 96

/* Prometheus counters per version: the workers count by group (stable, canary), and which
 * version a group is changes at a promotion or a new rollout. So each service keeps, per
 * group, the version it serves now and the group's counters when that began (BASE); what a
 * version got in a group before is folded into PAST when the group's version changes. A
 * series then only grows. The change is seen when the controller publishes the new table:
 * a request picked just before and answered just after counts for the new version. */
typedef struct Counts {
        uint64_t status[_METRICS_STATUS_CLASS_MAX];
        uint64_t duration[METRICS_DURATION_BOUNDS + 1];
        uint64_t duration_sum_us;
} Counts;

typedef struct Series {
        char version[VERSION_LABEL]; /* "" free */
        int group;
        Counts counted;
} Series;

typedef struct Account {
        char name[64];           /* "" free */
        uint64_t serial;         /* routing_metrics(): counters of another listener start from 0 */
        bool seen;
        char version[_SPLIT_GROUP_MAX][VERSION_LABEL];
        Counts base[_SPLIT_GROUP_MAX];
        Series past[PAST_SERIES]; /* oldest dropped first when full */
        unsigned next_past;
} Account;

struct Traffic {
        Store *store;
        Routing *routing;
        RouteSpec spec; /* scratch for one service at a time (it is large) */
        Account *accounts; /* MAX_SERVICES */
        RoutingMetrics scratch;
        bool preview_synced; /* sync_service() applied (or kept) the service's preview */
};

/* "NAME/preview": a service name has no '/', so it never meets a service's. */
#define PREVIEW_SUFFIX "/preview"
#define ROUTED_NAME_MAX (64 + sizeof PREVIEW_SUFFIX)

static void preview_name(const char *service, char out[static ROUTED_NAME_MAX]) {
        snprintf(out, ROUTED_NAME_MAX, "%s" PREVIEW_SUFFIX, service);
}

typedef struct Collect {
        RouteSpec *spec;
        int64_t stable_version_id;
        int64_t canary_version_id; /* 0: no rollout in progress (or a blue/green one: not public) */
        int port;
        char canary_label[VERSION_LABEL];
        /* A blue/green rollout in progress: its new version and preview listener. */
        int64_t preview_version_id;
        int64_t preview_rollout_id;
        char preview_listen[80];
} Collect;

/* The one way a ready guest joins a table: group G of SPEC, on PORT. */
static void backend_add(RouteSpec *spec, SplitGroup g, const InstanceRecord *r, int port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};

        if (!streq(r->state, "ready") || spec->n[g] >= BACKEND_SET_MAX || inet_pton(AF_INET, r->ip, &sa.sin_addr) != 1)
                return;
        spec->backend[g][spec->n[g]].addr = sa;
        snprintf(spec->backend[g][spec->n[g]].id, sizeof spec->backend[g][0].id, "%s", r->id);
        spec->n[g]++;
}

/* A blue/green preview's table: every ready guest of the new version, in the canary group at
 * 100%, so its analysis windows read as the canary's. */
static int collect_preview(const InstanceRecord *r, void *userdata) {
        Collect *c = userdata;

        if (r->version_id == c->preview_version_id)
                backend_add(c->spec, SPLIT_CANARY, r, c->port);
        return 0;
}

static int collect_ready(const InstanceRecord *r, void *userdata) {
        Collect *c = userdata;
        SplitGroup g;

        if (r->version_id == c->stable_version_id)
                g = SPLIT_STABLE;
        else if (c->canary_version_id && r->version_id == c->canary_version_id)
                g = SPLIT_CANARY;
        else
                return 0;
        backend_add(c->spec, g, r, c->port);
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
        if (rollout_strategy(&ro, &strategy) < 0)
                strategy.kind = STRATEGY_CANARY; /* unreadable: as before there were kinds */
        if (strategy.kind == STRATEGY_BLUE_GREEN) {
                /* The public table is left as the stable version alone: the new version is only
                 * behind the preview until promotion makes it the stable one. */
                c->preview_version_id = ro.to_version_id;
                c->preview_rollout_id = ro.id;
                snprintf(c->preview_listen, sizeof c->preview_listen, "%s", strategy.preview_listen);
                return 0;
        }
        /* The canary guests and the weight come from the row; only stickiness needs the strategy. */
        c->canary_version_id = ro.to_version_id;
        snprintf(c->canary_label, sizeof c->canary_label, "%s", ro.to_label ? ro.to_label : "");
        spec->canary_bp = (unsigned) ro.canary_weight;
        if (rollout_strategy(&ro, &strategy) < 0)
                return 0;
        spec->rollout_id = ro.id;
        spec->salt = (uint64_t) ro.salt;
        snprintf(spec->sticky_header, sizeof spec->sticky_header, "%s", strategy.sticky_header);
        snprintf(spec->sticky_cookie, sizeof spec->sticky_cookie, "%s", strategy.sticky_cookie);
        spec->tester_header = strategy.tester_header;
        {
                const HeaderRoute *h = rollout_header_route(&ro, &strategy);
                spec->n_rules = h ? h->n : 0;
                if (h)
                        memcpy(spec->rules, h->rule, h->n * sizeof spec->rules[0]);
        }
        {
                const MirrorSpec *mirror = rollout_mirror(&ro, &strategy);
                spec->mirror_bp = mirror ? mirror->percent * 100 : 0;
        }
        return 0;
}

static void counts_of(const GroupMetrics *g, Counts *ret) {
        memcpy(ret->status, g->status, sizeof ret->status);
        memcpy(ret->duration, g->duration, sizeof ret->duration);
        ret->duration_sum_us = g->duration_sum_us;
}

static void counts_add(Counts *to, const Counts *a, const Counts *minus) {
        for (unsigned c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                to->status[c] += a->status[c] - (minus ? minus->status[c] : 0);
        for (unsigned b = 0; b <= METRICS_DURATION_BOUNDS; b++)
                to->duration[b] += a->duration[b] - (minus ? minus->duration[b] : 0);
        to->duration_sum_us += a->duration_sum_us - (minus ? minus->duration_sum_us : 0);
}

static Account *account_get(Traffic *t, const char *name, bool create) {
        Account *free_slot = NULL;

        if (!t->accounts)
                return NULL;
        for (size_t i = 0; i < MAX_SERVICES; i++) {
                if (streq(t->accounts[i].name, name))
                        return &t->accounts[i];
                if (!free_slot && !t->accounts[i].name[0])
                        free_slot = &t->accounts[i];
        }
        if (!create || !free_slot)
                return NULL;
        memset(free_slot, 0, sizeof *free_slot);
        snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
        return free_slot;
}

static Series *series_get(Account *a, const char *version, int group, bool create) {
        Series *x;

        for (unsigned i = 0; i < PAST_SERIES; i++)
                if (a->past[i].version[0] && a->past[i].group == group && streq(a->past[i].version, version))
                        return &a->past[i];
        if (!create)
                return NULL;
        x = &a->past[a->next_past++ % PAST_SERIES];
        memset(x, 0, sizeof *x);
        snprintf(x->version, sizeof x->version, "%s", version);
        x->group = group;
        return x;
}

/* Follows the proxy of service NAME: its counters started again (a new listener) or a group
 * now serves another version (fold what the old one got into PAST). */
static void account_versions(Traffic *t, const char *name, const char *stable, const char *canary) {
        const char *want[_SPLIT_GROUP_MAX] = { [SPLIT_STABLE] = stable, [SPLIT_CANARY] = canary };
        RoutingMetrics *m = &t->scratch;
        Account *a = account_get(t, name, true);

        if (!a)
                return;
        a->seen = true;
        if (routing_metrics(t->routing, name, m) < 0) {
                *a = (Account) {};
                snprintf(a->name, sizeof a->name, "%s", name);
                a->seen = true;
                return;
        }
        if (m->serial != a->serial) {
                memset(a->base, 0, sizeof a->base);
                memset(a->version, 0, sizeof a->version);
                a->serial = m->serial;
        }
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++) {
                if (streq(a->version[g], want[g]))
                        continue;
                Counts now;
                counts_of(&m->by_group.group[g], &now);
                if (a->version[g][0]) {
                        Series *x = series_get(a, a->version[g], g, true);
                        counts_add(&x->counted, &now, &a->base[g]);
                }
                a->base[g] = now;
                snprintf(a->version[g], sizeof a->version[g], "%s", want[g]);
        }
}

/* The preview listener of SV's blue/green rollout (C: what rollout_spec() found), after the
 * service's own table: the scratch spec is free again. A preview not applied in a sync (the
 * rollout ended) is closed by routing_end(), and its address leaves the fd store. */
/* The service's active health check, for its table and its preview's alike. */
static void spec_health_check(RouteSpec *spec, const ServiceRecord *sv) {
        snprintf(spec->hc_path, sizeof spec->hc_path, "%s", sv->hc_path);
        spec->hc_interval_usec = (usec_t) sv->hc_interval_ms * USEC_PER_MSEC;
        spec->hc_timeout_usec = (usec_t) sv->hc_timeout_ms * USEC_PER_MSEC;
        spec->hc_rise = (unsigned) sv->hc_rise;
        spec->hc_fall = (unsigned) sv->hc_fall;
}

static void sync_preview(Traffic *t, const ServiceRecord *sv, Collect *c) {
        _cleanup_(version_record_done) VersionRecord v = {};
        RouteSpec *spec = &t->spec;
        char name[ROUTED_NAME_MAX];

        preview_name(sv->name, name);
        t->preview_synced = true;
        memset(spec, 0, sizeof *spec);
        c->spec = spec;
        spec->name = name;
        spec->listen = c->preview_listen[0] ? c->preview_listen : NULL;
        spec->canary_bp = SPLIT_BASIS_POINTS;
        spec->rollout_id = c->preview_rollout_id;
        if (store_version_get_by_id(t->store, c->preview_version_id, &v) != 0) {
                routing_keep(t->routing, name);
                return;
        }
        c->port = (int) (sv->port ? sv->port : v.port);
        if (store_instance_list_active(t->store, sv->id, collect_preview, c) < 0) {
                routing_keep(t->routing, name);
                return;
        }
        spec_health_check(spec, sv);
        routing_apply(t->routing, spec);
}

static int sync_service(const ServiceRecord *sv, void *userdata) {
        Traffic *t = userdata;
        RouteSpec *spec = &t->spec;
        _cleanup_(version_record_done) VersionRecord v = {};
        Collect c = {.spec = spec, .stable_version_id = sv->stable_version_id};
        Account *a = account_get(t, sv->name, false);

        if (a)
                a->seen = true; /* also when its state cannot be read now */
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
        spec_health_check(spec, sv);
        routing_apply(t->routing, spec);
        {
                char stable[VERSION_LABEL] = "";
                if (v.image && v.tag)
                        snprintf(stable, sizeof stable, "%s:%s", v.image, v.tag);
                account_versions(t, sv->name, stable, c.canary_label);
        }
        if (c.preview_version_id)
                sync_preview(t, sv, &c);
        return 0;
}

void traffic_sync(Traffic *t) {
        if (!t)
                return;
        routing_begin(t->routing);
        for (size_t i = 0; t->accounts && i < MAX_SERVICES; i++)
                t->accounts[i].seen = false;
        /* A failed read must not look like "every service is gone": keep what runs. */
        if (store_service_list(t->store, NULL, MAX_SERVICES, sync_service, t) < 0)
                return;
        routing_end(t->routing);
        for (size_t i = 0; t->accounts && i < MAX_SERVICES; i++)
                if (!t->accounts[i].seen)
                        t->accounts[i].name[0] = 0;
}

static void sync_one(Traffic *t, const char *name) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        char preview[ROUTED_NAME_MAX];
        int k = store_service_get(t->store, name, &sv);

        preview_name(name, preview);
        if (k == AVIARY_E_SERVICE_NOT_FOUND) {
                Account *a = account_get(t, name, false);
                if (a)
                        a->name[0] = 0;
                routing_drop(t->routing, name);
                routing_drop(t->routing, preview);
                return;
        }
        if (k != 0)
                return; /* unreadable now: its tables stay; the next full pass looks again */
        t->preview_synced = false;
        sync_service(&sv, t);
        if (!t->preview_synced)
                routing_drop(t->routing, preview); /* no blue/green rollout runs (any more) */
}

void traffic_sync_services(Traffic *t, const char (*names)[64], size_t n) {
        for (size_t i = 0; t && i < n; i++)
                sync_one(t, names[i]);
}

int traffic_window_take(Traffic *t, const char *service, ProxyMetrics *ret) {
        return t ? routing_window_take(t->routing, service, ret) : -ENOENT;
}

int traffic_preview_window_take(Traffic *t, const char *service, ProxyMetrics *ret) {
        char name[ROUTED_NAME_MAX];

        preview_name(service, name);
        return t ? routing_window_take(t->routing, name, ret) : -ENOENT;
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

/* ---- GET /metrics ---- */

typedef struct ServiceView {
        const char *name;
        PlaneStats stats;
        uint64_t ejections;
        struct {
                uint64_t sent, dropped;
                uint64_t status[_METRICS_STATUS_CLASS_MAX];
        } mirror;
        unsigned n;
        struct {
                const char *version;
                int group;
                Counts counts;
        } series[PAST_SERIES + _SPLIT_GROUP_MAX];
} ServiceView;

static void view_add(ServiceView *v, const char *version, int group, const Counts *c) {
        for (unsigned i = 0; i < v->n; i++)
                if (v->series[i].group == group && streq(v->series[i].version, version)) {
                        counts_add(&v->series[i].counts, c, NULL);
                        return;
                }
        if (v->n >= ELEMENTSOF(v->series))
                return;
        v->series[v->n].version = version;
        v->series[v->n].group = group;
        v->series[v->n].counts = *c;
        v->n++;
}

static const char *group_name(int g) {
        return g == SPLIT_CANARY ? "canary" : "stable";
}

void traffic_write_metrics(Traffic *t, PromText *p) {
        static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
        _cleanup_free_ ServiceView *views = t && t->accounts ? calloc(MAX_SERVICES, sizeof *views) : NULL;
        size_t n = 0;
        double bounds[METRICS_DURATION_BOUNDS];

        for (unsigned i = 0; i < METRICS_DURATION_BOUNDS; i++)
                bounds[i] = (double) metrics_duration_bounds_us[i] / 1e6;
        for (size_t i = 0; views && i < MAX_SERVICES; i++) {
                Account *a = &t->accounts[i];
                ServiceView *v = &views[n];
                if (!a->name[0] || routing_metrics(t->routing, a->name, &t->scratch) < 0 || t->scratch.serial != a->serial)
                        continue;
                v->name = a->name;
                v->stats = t->scratch.stats;
                v->ejections = t->scratch.ejections;
                v->mirror.sent = t->scratch.by_group.mirror_sent;
                v->mirror.dropped = t->scratch.by_group.mirror_dropped;
                memcpy(v->mirror.status, t->scratch.by_group.mirror.status, sizeof v->mirror.status);
                for (unsigned k = 0; k < PAST_SERIES; k++)
                        if (a->past[k].version[0])
                                view_add(v, a->past[k].version, a->past[k].group, &a->past[k].counted);
                for (int g = 0; g < _SPLIT_GROUP_MAX; g++) {
                        Counts now, since = {};
                        counts_of(&t->scratch.by_group.group[g], &now);
                        counts_add(&since, &now, &a->base[g]);
                        if (a->version[g][0])
                                view_add(v, a->version[g], g, &since);
                }
                n++;
        }

        promtext_family(p, "aviary_proxy_requests_total", "counter",
                        "Requests the service proxy answered, by version, group (stable or canary) and status "
                        "class; 502 and 504 made by the proxy count as 5xx.");
        for (size_t i = 0; i < n; i++)
                for (unsigned k = 0; k < views[i].n; k++)
                        for (unsigned c = METRICS_1XX; c <= METRICS_5XX; c++)
                                promtext_sample_u64(p, "aviary_proxy_requests_total",
                                                    (const char *const[]) { "service", views[i].name, "version",
                                                                            views[i].series[k].version, "group",
                                                                            group_name(views[i].series[k].group), "code",
                                                                            classes[c], NULL },
                                                    views[i].series[k].counts.status[c]);
        promtext_family(p, "aviary_proxy_request_duration_seconds", "histogram",
                        "Time from a request's head in to the end of its response, by version and group.");
        for (size_t i = 0; i < n; i++)
                for (unsigned k = 0; k < views[i].n; k++)
                        promtext_histogram(p, "aviary_proxy_request_duration_seconds",
                                           (const char *const[]) { "service", views[i].name, "version",
                                                                   views[i].series[k].version, "group",
                                                                   group_name(views[i].series[k].group), NULL },
                                           bounds, views[i].series[k].counts.duration, METRICS_DURATION_BOUNDS,
                                           (double) views[i].series[k].counts.duration_sum_us / 1e6);
        promtext_family(p, "aviary_proxy_upstream_connect_failures_total", "counter",
                        "Attempts to reach a guest that got no valid answer (refused, reset, timed out), by version "
                        "and group; an idempotent request may try a second guest.");
        for (size_t i = 0; i < n; i++)
                for (unsigned k = 0; k < views[i].n; k++)
                        promtext_sample_u64(p, "aviary_proxy_upstream_connect_failures_total",
                                            (const char *const[]) { "service", views[i].name, "version",
                                                                    views[i].series[k].version, "group",
                                                                    group_name(views[i].series[k].group), NULL },
                                            views[i].series[k].counts.status[METRICS_CONNECT_ERROR]);

#define PER_SERVICE(metric, type, help, field)                                                                    \
        promtext_family(p, metric, type, help);                                                                   \
        for (size_t i = 0; i < n; i++)                                                                            \
                promtext_sample_u64(p, metric, (const char *const[]) { "service", views[i].name, NULL }, field);
        PER_SERVICE("aviary_proxy_received_bytes_total", "counter", "Bytes received from clients (heads and bodies).",
                    views[i].stats.bytes_received)
        PER_SERVICE("aviary_proxy_sent_bytes_total", "counter", "Bytes sent to clients (heads and bodies).",
                    views[i].stats.bytes_sent)
        PER_SERVICE("aviary_proxy_connections", "gauge", "Client connections open now.", views[i].stats.connections_open)
        PER_SERVICE("aviary_proxy_connections_total", "counter", "Client connections accepted.",
                    views[i].stats.connections_accepted)
        PER_SERVICE("aviary_proxy_ejections_total", "counter",
                    "Guests passively ejected after failing requests in a row.", views[i].ejections)
        PER_SERVICE("aviary_proxy_mirror_sent_total", "counter",
                    "Copies of stable's requests a rollout's mirror step sent to the canary (answered or failed).",
                    views[i].mirror.sent)
        PER_SERVICE("aviary_proxy_mirror_dropped_total", "counter",
                    "Mirror copies dropped unsent: too many in flight, no room to send at once, no canary guest.",
                    views[i].mirror.dropped)
#undef PER_SERVICE
        promtext_family(p, "aviary_proxy_mirror_responses_total", "counter",
                        "Answers of the canary to mirror copies, by status class (connect-error: none came); "
                        "measured, then dropped.");
        for (size_t i = 0; i < n; i++)
                for (unsigned c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                        promtext_sample_u64(p, "aviary_proxy_mirror_responses_total",
                                            (const char *const[]) { "service", views[i].name, "code",
                                                                    metrics_status_class_to_string((MetricsStatusClass) c),
                                                                    NULL },
                                            views[i].mirror.status[c]);
}

json_t *traffic_service_json(Traffic *t, const char *service) {
        json_t *j = routing_service_json(t ? t->routing : NULL, service);
        char name[ROUTED_NAME_MAX];

        preview_name(service, name);
        /* The preview only while a blue/green rollout runs (routing knows it only then; an
         * unknown name comes back without a listen address). */
        json_t *preview = t ? routing_service_json(t->routing, name) : NULL;
        if (preview && json_is_null(json_object_get(preview, "listen")))
                preview = (json_decref(preview), NULL);
        if (preview)
                json_object_set_new(preview, "service", json_string(service));
        if (j)
                json_object_set_new(j, "preview", preview ? preview : json_null());
        else
                json_decref(preview);
        return j;
}

int traffic_new(Store *store, sd_event *e, unsigned threads, const RoutingFdStore *fds, Traffic **ret) {
        Traffic *t = calloc(1, sizeof *t);
        int k;

        if (!t)
                return -ENOMEM;
        t->store = store;
        t->accounts = calloc(MAX_SERVICES, sizeof *t->accounts);
        k = t->accounts ? routing_new(e, threads, fds, &t->routing) : -ENOMEM;
        if (k < 0) {
                free(t->accounts);
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
        free(t->accounts);
        free(t);
        return NULL;
}
