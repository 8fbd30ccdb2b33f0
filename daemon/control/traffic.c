/* Traffic: one proxy per service with a listen address, routing to the service's ready
 * guests. The controller calls traffic_sync() after every change it makes; the proxy's pick
 * callback reads the table built here. Until rollouts arrive every request goes to the stable
 * group (canary weight 0), through the same split the rollouts will steer. */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "manager.h"
#include "rollout.h"
#include "proxy/metrics.h"
#include "proxy/proxy.h"
#include "proxy/select.h"
#include "probe.h"
#include "traffic.h"

#define MAX_SERVICES 256

typedef struct ServiceTraffic {
        Traffic *traffic;
        char name[64];
        char listen[80];
        bool listen_failed;                      /* logged once per listen address */
        Proxy *proxy;
        VersionSplit split;
        BackendSet set[_SPLIT_GROUP_MAX];
        struct sockaddr_in addr[_SPLIT_GROUP_MAX][BACKEND_SET_MAX];
        char ids[_SPLIT_GROUP_MAX][BACKEND_SET_MAX][64];
        size_t n[_SPLIT_GROUP_MAX];
        unsigned failures[_SPLIT_GROUP_MAX][BACKEND_SET_MAX];   /* in a row, for passive ejection */
        usec_t ejected_until[_SPLIT_GROUP_MAX][BACKEND_SET_MAX]; /* monotonic; 0 when not ejected */
        uint64_t ejections;
        /* Active health checks of every guest in the table, by instance id. */
        struct {
                char id[64];                     /* "" free */
                struct sockaddr_in addr;
                bool healthy, probing, seen;
                unsigned fails, passes;
                usec_t next;                     /* monotonic */
        } health[2 * BACKEND_SET_MAX];
        char hc_path[257];
        usec_t hc_interval, hc_timeout;
        unsigned hc_rise, hc_fall;
        ProxyMetrics metrics;
        ProxyMetrics window_start;               /* analysis: the counters when the window opened */
        int64_t rollout_id;                      /* the rollout in progress (0 none) */
        uint64_t salt;                           /* its stickiness salt */
        char sticky_header[64], sticky_cookie[64];
        bool tester_header;
        bool seen;
} ServiceTraffic;

struct Traffic {
        Manager *m;
        ServiceTraffic *services[MAX_SERVICES];
};

/* Passive ejection: a guest that fails this many requests in a row (5xx or no valid answer)
 * gets no requests for EJECT_USEC. A group always keeps one usable guest: ejecting the last
 * would hide a bad canary's errors from analysis (its share would fall back to stable) and
 * leave a stable group with nothing to serve. */
#define EJECT_AFTER_FAILURES 5
#define EJECT_USEC (10 * USEC_PER_SEC)

static void eject_expire(ServiceTraffic *st, SplitGroup g, usec_t now) {
        for (size_t i = 0; i < st->n[g]; i++)
                if (st->ejected_until[g][i] && now >= st->ejected_until[g][i]) {
                        st->ejected_until[g][i] = 0;
                        st->failures[g][i] = 0;
                        backend_set_ejected(&st->set[g], i, false);
                        log_info("Service %s: guest %s is taken back after its ejection.", st->name, st->ids[g][i]);
                }
}

/* The group a request goes to: the tester header when allowed, else the sticky bucket of the
 * client's key when the rollout has stickiness and the request carries the key, else the
 * weighted round-robin. */
static SplitGroup pick_group(ServiceTraffic *st, const ProxyRequest *req) {
        const char *v;
        size_t len;

        if (st->rollout_id && st->tester_header && (v = proxy_request_header(req, "X-Aviary-Version", &len))) {
                if (len == 6 && strncasecmp(v, "canary", 6) == 0)
                        return SPLIT_CANARY;
                if (len == 6 && strncasecmp(v, "stable", 6) == 0)
                        return SPLIT_STABLE;
        }
        if (st->rollout_id && (st->sticky_header[0] || st->sticky_cookie[0])) {
                v = st->sticky_header[0] ? proxy_request_header(req, st->sticky_header, &len)
                                         : proxy_request_cookie(req, st->sticky_cookie, &len);
                if (v && len > 0)
                        return sticky_pick(sticky_bucket(v, len, st->salt), st->split.canary_bp);
        }
        return split_pick(&st->split);
}

static int on_pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        ServiceTraffic *st = userdata;
        SplitGroup g = pick_group(st, req);
        usec_t now = now_monotonic();
        int i;

        eject_expire(st, g, now);
        i = backend_pick(&st->set[g]);
        if (i < 0 && g == SPLIT_CANARY) { /* no canary guest (yet, or ejected): serve from stable */
                g = SPLIT_STABLE;
                eject_expire(st, g, now);
                i = backend_pick(&st->set[g]);
        }
        if (i < 0)
                return -EHOSTUNREACH;
        *ret_backend = st->addr[g][i];
        *ret_group = (int) g;
        return 0;
}

static unsigned usable(const ServiceTraffic *st, SplitGroup g) {
        unsigned n = 0;

        for (size_t i = 0; i < st->n[g]; i++)
                n += backend_usable(&st->set[g], i);
        return n;
}

static void on_done(void *userdata, int group, const struct sockaddr_in *backend, int status, uint64_t latency_usec) {
        ServiceTraffic *st = userdata;
        SplitGroup g = (SplitGroup) group;
        bool failed = status == 0 || status >= 500;

        if (group < 0 || group >= _SPLIT_GROUP_MAX)
                return;
        if (status == 0)
                metrics_record_connect_error(&st->metrics, g);
        else
                metrics_record_response(&st->metrics, g, status, latency_usec);
        for (size_t i = 0; backend && i < st->n[g]; i++) {
                if (st->addr[g][i].sin_addr.s_addr != backend->sin_addr.s_addr ||
                    st->addr[g][i].sin_port != backend->sin_port)
                        continue;
                st->failures[g][i] = failed ? st->failures[g][i] + 1 : 0;
                if (st->failures[g][i] >= EJECT_AFTER_FAILURES && !st->ejected_until[g][i] && usable(st, g) > 1) {
                        st->ejected_until[g][i] = now_monotonic() + EJECT_USEC;
                        backend_set_ejected(&st->set[g], i, true);
                        st->ejections++;
                        log_notice("Service %s: ejecting %s guest %s for 10s after %u failed requests in a row.", st->name,
                                   split_group_to_string(g), st->ids[g][i], st->failures[g][i]);
                }
                break;
        }
}

static ServiceTraffic *service_find(Traffic *t, const char *name, bool create) {
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (t->services[i] && streq(t->services[i]->name, name))
                        return t->services[i];
        if (!create)
                return NULL;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (!t->services[i]) {
                        ServiceTraffic *st = calloc(1, sizeof *st);
                        if (!st)
                                return NULL;
                        st->traffic = t;
                        snprintf(st->name, sizeof st->name, "%s", name);
                        split_init(&st->split, 0);
                        t->services[i] = st;
                        return st;
                }
        return NULL;
}

/* FORGET: the service is gone, so systemd need not keep its listener either (at shutdown the
 * listeners stay in the fd store for the next aviaryd). */
static void service_free(ServiceTraffic *st, bool forget) {
        if (st) {
                if (st->proxy && forget)
                        manager_keep_proxy_fd(st->traffic->m, st->listen, -1);
                proxy_free(st->proxy);
                free(st);
        }
}

/* Opens, moves or closes the proxy's listener to match LISTEN. */
static void service_listen(ServiceTraffic *st, const char *listen) {
        const char *want = listen ? listen : "";
        int k;

        if (streq(st->listen, want) && (st->proxy || st->listen_failed || !*want))
                return;
        if (st->proxy)
                manager_keep_proxy_fd(st->traffic->m, st->listen, -1);
        st->proxy = proxy_free(st->proxy);
        st->listen_failed = false;
        snprintf(st->listen, sizeof st->listen, "%s", want);
        if (!*want)
                return;
        /* A listener systemd kept for us across a restart: clients queued in its backlog meanwhile. */
        int fd = manager_take_proxy_fd(st->traffic->m, want);
        if (fd >= 0) {
                k = proxy_new_from_fd(st->traffic->m->event, fd, on_pick, on_done, st, &st->proxy);
                if (k == 0)
                        log_info("Service %s: proxy listening on %s (kept across the restart).", st->name, want);
        } else {
                k = proxy_new(st->traffic->m->event, want, on_pick, on_done, st, &st->proxy);
                if (k == 0) {
                        manager_keep_proxy_fd(st->traffic->m, want, proxy_get_fd(st->proxy));
                        log_info("Service %s: proxy listening on %s.", st->name, want);
                }
        }
        if (k < 0) {
                st->listen_failed = true;
                log_warning_errno(k, "Service %s: cannot serve traffic on %s", st->name, want);
        }
}

typedef struct Collect {
        ServiceTraffic *st;
        int64_t stable_version_id;
        int64_t canary_version_id;               /* 0: no rollout in progress */
        int port;
        char ids[_SPLIT_GROUP_MAX][BACKEND_SET_MAX][64];
        struct sockaddr_in addr[_SPLIT_GROUP_MAX][BACKEND_SET_MAX];
        size_t n[_SPLIT_GROUP_MAX];
} Collect;

static int collect_ready(const InstanceRecord *r, void *userdata) {
        Collect *c = userdata;
        SplitGroup g;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) c->port) };

        /* Only the stable version and a rollout's canary serve; other versions are on their way
         * out (or kept after an abort for inspection, without traffic). */
        if (r->version_id == c->stable_version_id)
                g = SPLIT_STABLE;
        else if (c->canary_version_id && r->version_id == c->canary_version_id)
                g = SPLIT_CANARY;
        else
                return 0;
        if (!streq(r->state, "ready") || c->n[g] >= BACKEND_SET_MAX || inet_pton(AF_INET, r->ip, &sa.sin_addr) != 1)
                return 0;
        snprintf(c->ids[g][c->n[g]], sizeof c->ids[g][0], "%s", r->id);
        c->addr[g][c->n[g]++] = sa;
        return 0;
}

/* ---- active health checks ---- */

static int health_find(ServiceTraffic *st, const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(st->health); i++)
                if (st->health[i].id[0] && streq(st->health[i].id, id))
                        return (int) i;
        return -1;
}

/* Whether guest ID passes its checks; one not checked yet counts as healthy (it has just
 * passed its readiness probe). */
static bool health_of(ServiceTraffic *st, const char *id) {
        int i = health_find(st, id);
        return i < 0 || st->health[i].healthy;
}

/* Keeps an entry for every guest in the table (new ones healthy), drops the others. */
static void health_track(ServiceTraffic *st, const Collect *c) {
        for (size_t i = 0; i < ELEMENTSOF(st->health); i++)
                st->health[i].seen = false;
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                for (size_t j = 0; j < c->n[g]; j++) {
                        int i = health_find(st, c->ids[g][j]);
                        for (size_t k = 0; i < 0 && k < ELEMENTSOF(st->health); k++)
                                if (!st->health[k].id[0]) {
                                        i = (int) k;
                                        snprintf(st->health[i].id, sizeof st->health[i].id, "%s", c->ids[g][j]);
                                        st->health[i].healthy = true;
                                        st->health[i].fails = st->health[i].passes = 0;
                                        st->health[i].probing = false;
                                        st->health[i].next = now_monotonic() + st->hc_interval;
                                }
                        if (i >= 0) {
                                st->health[i].addr = c->addr[g][j];
                                st->health[i].seen = true;
                        }
                }
        for (size_t i = 0; i < ELEMENTSOF(st->health); i++)
                if (!st->health[i].seen && !st->health[i].probing)
                        st->health[i].id[0] = 0;
}

/* Applies a health change of guest ID to the group tables. */
static void health_apply(ServiceTraffic *st, const char *id, bool healthy) {
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                for (size_t i = 0; i < st->n[g]; i++)
                        if (streq(st->ids[g][i], id))
                                backend_set_ready(&st->set[g], i, healthy);
}

static void on_health(const char *id, bool ok, const char *error, void *userdata) {
        Traffic *t = userdata;

        for (size_t s = 0; s < MAX_SERVICES; s++) {
                ServiceTraffic *st = t->services[s];
                int i = st ? health_find(st, id) : -1;
                if (i < 0)
                        continue;
                st->health[i].probing = false;
                if (!st->health[i].seen) { /* left the table meanwhile */
                        st->health[i].id[0] = 0;
                        return;
                }
                st->health[i].fails = ok ? 0 : st->health[i].fails + 1;
                st->health[i].passes = ok ? st->health[i].passes + 1 : 0;
                if (st->health[i].healthy && st->health[i].fails >= st->hc_fall) {
                        st->health[i].healthy = false;
                        health_apply(st, id, false);
                        log_notice("Service %s: guest %s fails its health check (GET %s: %s; %u in a row): no traffic "
                                   "until it passes %u.", st->name, id, st->hc_path, error ? error : "failed",
                                   st->health[i].fails, st->hc_rise);
                } else if (!st->health[i].healthy && st->health[i].passes >= st->hc_rise) {
                        st->health[i].healthy = true;
                        health_apply(st, id, true);
                        log_info("Service %s: guest %s passes its health check again.", st->name, id);
                }
                return;
        }
}

void traffic_health_tick(Traffic *t) {
        usec_t now = now_monotonic();
        char ip[INET_ADDRSTRLEN];

        for (size_t s = 0; t && s < MAX_SERVICES; s++) {
                ServiceTraffic *st = t->services[s];
                for (size_t i = 0; st && i < ELEMENTSOF(st->health); i++) {
                        if (!st->health[i].id[0] || !st->health[i].seen || st->health[i].probing || now < st->health[i].next)
                                continue;
                        st->health[i].next = now + st->hc_interval;
                        inet_ntop(AF_INET, &st->health[i].addr.sin_addr, ip, sizeof ip);
                        if (probe_http(t->m->event, st->health[i].id, ip, ntohs(st->health[i].addr.sin_port), st->hc_path,
                                       st->hc_timeout, on_health, t) >= 0)
                                st->health[i].probing = true;
                }
        }
}

int traffic_canary_unhealthy(Traffic *t, const char *service, char *why, size_t size) {
        ServiceTraffic *st = t ? service_find(t, service, false) : NULL;

        if (!st || st->n[SPLIT_CANARY] == 0 || usable(st, SPLIT_CANARY) > 0)
                return 0;
        snprintf(why, size, "canary guests unhealthy: all %zu fail their health check (%s)", st->n[SPLIT_CANARY],
                 st->hc_path);
        return 1;
}

/* Replaces a group's backends when its membership changed (keeping the rotation otherwise). */
static void group_update(ServiceTraffic *st, SplitGroup g, const Collect *c) {
        bool same = st->n[g] == c->n[g];

        for (size_t i = 0; same && i < c->n[g]; i++)
                same = streq(st->ids[g][i], c->ids[g][i]);
        if (same)
                return;
        memcpy(st->ids[g], c->ids[g], sizeof st->ids[g]);
        memcpy(st->addr[g], c->addr[g], sizeof st->addr[g]);
        st->n[g] = c->n[g];
        memset(st->failures[g], 0, sizeof st->failures[g]);
        memset(st->ejected_until[g], 0, sizeof st->ejected_until[g]);
        backend_set_init(&st->set[g], c->n[g]);
        for (size_t i = 0; i < c->n[g]; i++)
                backend_set_ready(&st->set[g], i, health_of(st, c->ids[g][i]));
}

/* The weight, canary version and stickiness of SV's rollout in progress (none: all stable). */
static int rollout_apply(ServiceTraffic *st, Store *store, const ServiceRecord *sv, Collect *c) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        Strategy strategy;
        int k = store_rollout_get_active(store, sv->id, &ro);

        if (k == 0 && ro.to_version_id == sv->stable_version_id)
                k = AVIARY_E_ROLLOUT_NOT_FOUND; /* a first deploy: its version is the stable one, no split */
        if (k == AVIARY_E_ROLLOUT_NOT_FOUND) {
                st->rollout_id = 0;
                split_set_weight(&st->split, 0);
                return 0;
        }
        if (k != 0)
                return k < 0 ? k : -EIO; /* unreadable now: the caller keeps the table as it is */
        /* The canary guests and the weight come from the row; only stickiness needs the strategy. */
        c->canary_version_id = ro.to_version_id;
        split_set_weight(&st->split, (unsigned) ro.canary_weight);
        if (rollout_strategy(&ro, &strategy) < 0)
                return 0;
        st->rollout_id = ro.id;
        st->salt = (uint64_t) ro.salt;
        snprintf(st->sticky_header, sizeof st->sticky_header, "%s", strategy.sticky_header);
        snprintf(st->sticky_cookie, sizeof st->sticky_cookie, "%s", strategy.sticky_cookie);
        st->tester_header = strategy.tester_header;
        return 0;
}

static int sync_service(const ServiceRecord *sv, void *userdata) {
        Traffic *t = userdata;
        ServiceTraffic *st = service_find(t, sv->name, true);
        _cleanup_(version_record_done) VersionRecord v = {};
        Collect *c;

        if (!st)
                return 0;
        st->seen = true;
        service_listen(st, sv->listen);
        c = calloc(1, sizeof *c);
        if (!c)
                return 0; /* keep its current table; the next sync tries again */
        c->st = st;
        c->stable_version_id = sv->stable_version_id;
        if (rollout_apply(st, t->m->store, sv, c) < 0) {
                free(c);
                return 0; /* keep its current table; the next sync tries again */
        }
        if (sv->stable_version_id && store_version_get_by_id(t->m->store, sv->stable_version_id, &v) == 0) {
                c->port = (int) (sv->port ? sv->port : v.port);
                store_instance_list_active(t->m->store, sv->id, collect_ready, c);
        }
        snprintf(st->hc_path, sizeof st->hc_path, "%s", sv->hc_path);
        st->hc_interval = (usec_t) sv->hc_interval_ms * USEC_PER_MSEC;
        st->hc_timeout = (usec_t) sv->hc_timeout_ms * USEC_PER_MSEC;
        st->hc_rise = (unsigned) sv->hc_rise;
        st->hc_fall = (unsigned) sv->hc_fall;
        health_track(st, c);
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                group_update(st, (SplitGroup) g, c);
        free(c);
        return 0;
}

void traffic_sync(Traffic *t) {
        if (!t)
                return;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (t->services[i])
                        t->services[i]->seen = false;
        /* A failed read must not look like "every service is gone": keep what runs. */
        if (store_service_list(t->m->store, NULL, MAX_SERVICES, sync_service, t) < 0)
                return;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (t->services[i] && !t->services[i]->seen) {
                        service_free(t->services[i], true);
                        t->services[i] = NULL;
                }
}

static json_t *group_json(const ServiceTraffic *st, SplitGroup g) {
        const GroupMetrics *gm = &st->metrics.group[g];
        json_t *classes = json_object(), *backends = json_array();
        uint64_t p50 = 0, p99 = 0;
        double rate = 0;
        bool have = metrics_total(gm) > 0;

        for (int c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                json_object_set_new(classes, metrics_status_class_to_string((MetricsStatusClass) c),
                                    json_integer((json_int_t) gm->status[c]));
        for (size_t i = 0; i < st->n[g]; i++) {
                char ip[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &st->addr[g][i].sin_addr, ip, sizeof ip);
                json_array_append_new(backends, json_pack("{s:s, s:s, s:i, s:b, s:b}", "instance", st->ids[g][i], "ip",
                                                          ip, "port", ntohs(st->addr[g][i].sin_port), "healthy",
                                                          st->set[g].slot[i].ready, "ejected",
                                                          st->set[g].slot[i].ejected));
        }
        if (have) {
                metrics_success_rate(gm, &rate);
                metrics_latency_quantile(gm, 0.5, &p50);
                metrics_latency_quantile(gm, 0.99, &p99);
        }
        return json_pack("{s:o, s:I, s:o, s:o, s:o, s:o}", "backends", backends, "requests",
                         (json_int_t) metrics_total(gm), "by_status", classes, "success_rate",
                         have ? json_real(rate) : json_null(), "p50_ms", have ? json_real((double) p50 / 1000) : json_null(),
                         "p99_ms", have ? json_real((double) p99 / 1000) : json_null());
}

json_t *traffic_service_json(Traffic *t, const char *service) {
        ServiceTraffic *st = t ? service_find(t, service, false) : NULL;

        if (!st)
                return json_pack("{s:s, s:n, s:b, s:{s:i, s:i}, s:{}}", "service", service, "listen", "listening",
                                 false, "weights", "stable", (int) SPLIT_BASIS_POINTS, "canary", 0, "versions");
        return json_pack("{s:s, s:s?, s:b, s:{s:i, s:i}, s:{s:o, s:o}}", "service", st->name, "listen",
                         st->listen[0] ? st->listen : NULL, "listening", st->proxy != NULL, "weights", "stable",
                         (int) (SPLIT_BASIS_POINTS - st->split.canary_bp), "canary", (int) st->split.canary_bp,
                         "versions", "stable", group_json(st, SPLIT_STABLE), "canary", group_json(st, SPLIT_CANARY));
}

int traffic_window_take(Traffic *t, const char *service, ProxyMetrics *ret) {
        ServiceTraffic *st = t ? service_find(t, service, false) : NULL;

        if (!st || !st->proxy)
                return -ENOENT;
        if (ret)
                metrics_diff(&st->metrics, &st->window_start, ret);
        metrics_snapshot(&st->metrics, &st->window_start);
        return 0;
}

unsigned traffic_inflight(Traffic *t, const char *ip) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        unsigned n = 0;

        if (!t || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return 0;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (t->services[i] && t->services[i]->proxy)
                        n += proxy_backend_inflight(t->services[i]->proxy, &sa);
        return n;
}

void traffic_backend_gone(Traffic *t, const char *ip) {
        struct sockaddr_in sa = { .sin_family = AF_INET }; /* port 0: every port of the guest */

        if (!t || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (t->services[i] && t->services[i]->proxy)
                        proxy_backend_down(t->services[i]->proxy, &sa);
}

int traffic_new(Manager *m, Traffic **ret) {
        Traffic *t = calloc(1, sizeof *t);

        if (!t)
                return -ENOMEM;
        t->m = m;
        *ret = t;
        return 0;
}

Traffic *traffic_free(Traffic *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                service_free(t->services[i], false);
        free(t);
        return NULL;
}
