/* Routing on the control loop (routing.h): specs in, health and ejections added, immutable
 * tables out to the data plane's workers. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "plane.h"
#include "probe.h"
#include "route-table.h"
#include "routing.h"
#include "socket.h"
#include "timeutil.h"

#define MAX_SERVICES 256
#define MAX_INFLIGHT 64
/* An in-flight answer counts for the calls that follow it within this (routing_inflight). */
#define INFLIGHT_FRESH_USEC USEC_PER_SEC
/* Passive ejection: a guest that failed ROUTE_EJECT_AFTER_FAILURES requests in a row on a
 * worker gets no requests for EJECT_USEC. A group always keeps one usable guest: ejecting the
 * last would hide a bad canary's errors from analysis (its share would fall back to stable)
 * and leave a stable group with nothing to serve. */
#define EJECT_USEC (10 * USEC_PER_SEC)

typedef struct Health {
        char id[64]; /* "" free */
        struct sockaddr_in addr;
        bool healthy, probing, seen;
        unsigned fails, passes;
        usec_t next; /* monotonic */
} Health;

/* One listening socket, shared by the services that name its address. */
typedef struct RoutedListener {
        char address[80]; /* "" free */
        PlaneListener *plane;
        unsigned users;
} RoutedListener;

typedef struct RoutedService {
        Routing *routing;
        char name[96];   /* a service's, or "NAME/preview" for a blue/green rollout's preview */
        char listen[80];
        bool listen_failed; /* logged once per listen address */
        RoutedListener *listener;
        PlaneService *plane;
        uint64_t plane_serial; /* a new one for each PlaneService: its counters start at 0 */
        RouteSpec spec;
        usec_t ejected_until[_SPLIT_GROUP_MAX][BACKEND_SET_MAX]; /* monotonic; 0 when not ejected */
        uint64_t ejections;
        Health health[2 * BACKEND_SET_MAX];
        ProxyMetrics window_start; /* analysis: the counters when the window opened */
        RouteTable *published;     /* what the workers route with (a reference) */
        uint64_t generation;
        bool seen;
} RoutedService;

typedef struct Inflight {
        struct sockaddr_in addr; /* port 0 */
        uint64_t cookie;         /* the question out */
        unsigned answers, sum;   /* to it so far */
        unsigned value;          /* the last complete answer; UINT_MAX none */
        usec_t asked, used;
} Inflight;

struct Routing {
        sd_event *event;
        ProxyPlane *plane;
        RoutingFdStore fds;
        RoutedService *services[MAX_SERVICES];
        RoutedListener listeners[MAX_SERVICES];
        Inflight inflight[MAX_INFLIGHT];
        uint64_t next_cookie;
        RoutingWakeFn wake;
        void *wake_userdata;
        uint64_t next_plane_serial;
};

static RoutedService *service_find(Routing *r, const char *name) {
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (r->services[i] && streq(r->services[i]->name, name))
                        return r->services[i];
        return NULL;
}

static RoutedService *routed_service_new(Routing *r, const char *name) {
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (!r->services[i]) {
                        RoutedService *s = calloc(1, sizeof *s);
                        if (!s)
                                return NULL;
                        s->routing = r;
                        snprintf(s->name, sizeof s->name, "%s", name);
                        r->services[i] = s;
                        return s;
                }
        return NULL;
}

static void fd_keep(Routing *r, const char *address, int fd) {
        if (r->fds.keep)
                r->fds.keep(r->fds.userdata, address, fd);
}

/* The service leaves its listener, which closes when no service uses it any more. FORGET: systemd
 * need not keep the socket either. */
static void service_unlisten(RoutedService *s, bool forget) {
        RoutedListener *l = s->listener;

        if (s->plane)
                proxy_plane_service_remove(s->plane);
        s->plane = NULL;
        s->listener = NULL;
        /* The service's workers on a new listener start with no table: the next publish must not
         * be skipped as "the one they have". */
        route_table_unref(s->published);
        s->published = NULL;
        if (!l || --l->users > 0)
                return;
        if (forget)
                fd_keep(s->routing, l->address, -1);
        proxy_plane_listener_remove(l->plane);
        *l = (RoutedListener) {};
}

/* FORGET: the service is gone, so systemd need not keep its listener either (at shutdown the
 * listeners stay in the fd store for the next aviaryd). */
static void service_free(RoutedService *s, bool forget) {
        if (!s)
                return;
        service_unlisten(s, forget);
        route_table_unref(s->published);
        free(s);
}

static int listen_socket(const char *address, int *ret) {
        struct sockaddr_storage ss;
        socklen_t len;
        int fd, one = 1;

        if (socket_address_parse(address, &ss, &len) < 0)
                return -EINVAL;
        if (ss.ss_family != AF_INET)
                return -EAFNOSUPPORT;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, 512) < 0) {
                int k = -errno;
                close(fd);
                return k;
        }
        *ret = fd;
        return 0;
}

/* The listener on ADDRESS: the one there is, or (opened now, or taken back from systemd's fd
 * store) a new one; NULL with *RET_ERROR set when it cannot be had. */
static RoutedListener *listener_get(Routing *r, const char *address, const char *service, int *ret_error) {
        RoutedListener *free_slot = NULL;
        bool kept;
        int fd = -1, k;

        for (size_t i = 0; i < MAX_SERVICES; i++) {
                if (r->listeners[i].address[0] && streq(r->listeners[i].address, address))
                        return &r->listeners[i];
                if (!r->listeners[i].address[0] && !free_slot)
                        free_slot = &r->listeners[i];
        }
        if (!free_slot) {
                *ret_error = -EMFILE;
                return NULL;
        }
        /* A listener systemd kept for us across a restart: clients queued in its backlog meanwhile. */
        if (r->fds.take)
                fd = r->fds.take(r->fds.userdata, address);
        kept = fd >= 0;
        k = kept ? 0 : listen_socket(address, &fd);
        if (k >= 0)
                k = proxy_plane_listener_add(r->plane, fd, &free_slot->plane);
        if (k < 0) {
                *ret_error = k;
                return NULL;
        }
        snprintf(free_slot->address, sizeof free_slot->address, "%s", address);
        if (!kept)
                fd_keep(r, address, proxy_plane_listener_fd(free_slot->plane));
        log_info("Service %s: proxy listening on %s%s, %u worker thread(s).", service, address,
                 kept ? " (kept across the restart)" : "", proxy_plane_threads(r->plane));
        return free_slot;
}

/* Opens, moves or closes the service's listener to match LISTEN; services with the same
 * address share one. */
static void service_listen(RoutedService *s, const char *listen) {
        Routing *r = s->routing;
        const char *want = listen ? listen : "";
        RoutedListener *l;
        int k = 0;

        if (streq(s->listen, want) && (s->plane || s->listen_failed || !*want))
                return;
        service_unlisten(s, true);
        s->listen_failed = false;
        snprintf(s->listen, sizeof s->listen, "%s", want);
        if (!*want)
                return;
        l = listener_get(r, want, s->name, &k);
        if (l) {
                bool shared = l->users > 0;
                k = proxy_plane_service_join(r->plane, s->name, l->plane, s, &s->plane);
                if (k >= 0) {
                        s->listener = l;
                        s->plane_serial = ++r->next_plane_serial;
                        l->users++;
                        if (shared)
                                log_info("Service %s: shares the proxy listener on %s.", s->name, want);
                        return;
                }
                if (l->users == 0) { /* opened for it alone */
                        fd_keep(r, l->address, -1);
                        proxy_plane_listener_remove(l->plane);
                        *l = (RoutedListener) {};
                }
        }
        s->listen_failed = true;
        log_warning_errno(k, "Service %s: cannot serve traffic on %s", s->name, want);
}

/* ---- health ---- */

static int health_find(RoutedService *s, const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(s->health); i++)
                if (s->health[i].id[0] && streq(s->health[i].id, id))
                        return (int) i;
        return -1;
}

/* Whether guest ID passes its checks; one not checked yet counts as healthy (it has just
 * passed its readiness probe). */
static bool health_of(RoutedService *s, const char *id) {
        int i = health_find(s, id);
        return i < 0 || s->health[i].healthy;
}

/* Keeps an entry for every guest in the spec (new ones healthy), drops the others. */
static void health_track(RoutedService *s) {
        const RouteSpec *spec = &s->spec;

        for (size_t i = 0; i < ELEMENTSOF(s->health); i++)
                s->health[i].seen = false;
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                for (size_t j = 0; j < spec->n[g]; j++) {
                        int i = health_find(s, spec->backend[g][j].id);
                        for (size_t k = 0; i < 0 && k < ELEMENTSOF(s->health); k++)
                                if (!s->health[k].id[0]) {
                                        i = (int) k;
                                        snprintf(s->health[i].id, sizeof s->health[i].id, "%s", spec->backend[g][j].id);
                                        s->health[i].healthy = true;
                                        s->health[i].fails = s->health[i].passes = 0;
                                        s->health[i].probing = false;
                                        s->health[i].next = now_monotonic() + spec->hc_interval_usec;
                                }
                        if (i >= 0) {
                                s->health[i].addr = spec->backend[g][j].addr;
                                s->health[i].seen = true;
                        }
                }
        for (size_t i = 0; i < ELEMENTSOF(s->health); i++)
                if (!s->health[i].seen && !s->health[i].probing)
                        s->health[i].id[0] = 0;
}

static unsigned usable_count(RoutedService *s, int g, usec_t now) {
        unsigned n = 0;

        for (size_t i = 0; i < s->spec.n[g]; i++)
                n += health_of(s, s->spec.backend[g][i].id) && !(s->ejected_until[g][i] > now);
        return n;
}

/* ---- tables ---- */

static bool match_equal(const Match *a, const Match *b) {
        const char *pa = a->path_prefix ? a->path_prefix : "", *pb = b->path_prefix ? b->path_prefix : "";

        if (a->n_hosts != b->n_hosts || !streq(pa, pb))
                return false;
        for (size_t i = 0; i < a->n_hosts; i++)
                if (!streq(a->hosts[i], b->hosts[i]))
                        return false;
        return true;
}

static bool table_equal(const RouteTable *a, const RouteTable *b) {
        if (!a || !match_equal(&a->match, &b->match) || a->canary_bp != b->canary_bp || a->rollout_id != b->rollout_id || a->salt != b->salt ||
            a->tester_header != b->tester_header || a->hold != b->hold || !streq(a->sticky_header, b->sticky_header) ||
            !streq(a->sticky_cookie, b->sticky_cookie) || a->n_rules != b->n_rules || a->mirror_bp != b->mirror_bp)
                return false;
        for (size_t i = 0; i < a->n_rules; i++)
                if (a->rules[i].kind != b->rules[i].kind || !streq(a->rules[i].name, b->rules[i].name) ||
                    !streq(a->rules[i].value, b->rules[i].value) || a->rules[i].net != b->rules[i].net ||
                    a->rules[i].mask != b->rules[i].mask)
                        return false;
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++) {
                if (a->group[g].n != b->group[g].n)
                        return false;
                for (size_t i = 0; i < a->group[g].n; i++) {
                        const RouteBackend *x = &a->group[g].backend[i], *y = &b->group[g].backend[i];
                        if (x->addr.sin_addr.s_addr != y->addr.sin_addr.s_addr || x->addr.sin_port != y->addr.sin_port ||
                            x->usable != y->usable || x->healthy != y->healthy || x->ejected != y->ejected ||
                            !streq(x->id, y->id))
                                return false;
                }
        }
        return true;
}

/* Builds the table the spec, health and ejections make, and publishes it when it differs from
 * the one the workers have. */
static void service_publish(RoutedService *s) {
        const RouteSpec *spec = &s->spec;
        usec_t now = now_monotonic();
        RouteTable *t;

        if (!s->plane)
                return;
        t = route_table_new(spec->n[SPLIT_STABLE], spec->n[SPLIT_CANARY]);
        if (!t) {
                log_oom();
                return; /* the workers keep the table they have; the next change tries again */
        }
        t->canary_bp = spec->canary_bp;
        t->rollout_id = spec->rollout_id;
        t->salt = spec->salt;
        memcpy(t->sticky_header, spec->sticky_header, sizeof t->sticky_header);
        memcpy(t->sticky_cookie, spec->sticky_cookie, sizeof t->sticky_cookie);
        t->n_rules = spec->n_rules < HEADER_RULES_MAX ? spec->n_rules : HEADER_RULES_MAX;
        memcpy(t->rules, spec->rules, t->n_rules * sizeof t->rules[0]);
        t->tester_header = spec->tester_header;
        t->mirror_bp = spec->mirror_bp <= SPLIT_BASIS_POINTS ? spec->mirror_bp : SPLIT_BASIS_POINTS;
        t->hold = spec->hold;
        {
                const char *hosts[MATCH_MAX_HOSTS];
                for (size_t i = 0; i < spec->n_match_hosts && i < MATCH_MAX_HOSTS; i++)
                        hosts[i] = spec->match_hosts[i];
                if (route_table_set_match(t, hosts, spec->n_match_hosts,
                                          spec->match_path_prefix[0] ? spec->match_path_prefix : NULL) < 0) {
                        log_oom();
                        route_table_unref(t);
                        return;
                }
        }
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                for (size_t i = 0; i < t->group[g].n; i++) {
                        RouteBackend *b = &t->group[g].backend[i];
                        b->addr = spec->backend[g][i].addr;
                        memcpy(b->id, spec->backend[g][i].id, sizeof b->id);
                        b->healthy = health_of(s, b->id);
                        b->ejected = s->ejected_until[g][i] > now;
                        b->usable = b->healthy && !b->ejected;
                }
        if (table_equal(s->published, t)) {
                route_table_unref(t);
                return;
        }
        bool woke = s->published && s->published->hold && !t->hold;
        t->generation = ++s->generation;
        route_table_unref(s->published);
        s->published = route_table_ref(t);
        proxy_plane_publish(s->plane, t);
        /* Awake again (a guest is ready, or the service may no longer sleep): what was held goes
         * to a pick with this table. */
        if (woke)
                proxy_plane_release(s->plane, NULL);
}

static bool same_group(const RouteSpec *a, const RouteSpec *b, int g) {
        if (a->n[g] != b->n[g])
                return false;
        for (size_t i = 0; i < a->n[g]; i++)
                if (!streq(a->backend[g][i].id, b->backend[g][i].id))
                        return false;
        return true;
}

void routing_begin(Routing *r) {
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (r->services[i])
                        r->services[i]->seen = false;
}

void routing_apply(Routing *r, const RouteSpec *spec) {
        RoutedService *s = service_find(r, spec->name);

        if (!s)
                s = routed_service_new(r, spec->name);
        if (!s) {
                log_oom();
                return;
        }
        s->seen = true;
        service_listen(s, spec->listen);
        /* Ejections belong to the guests as they were listed: a new membership starts clean. */
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                if (!same_group(&s->spec, spec, g))
                        memset(s->ejected_until[g], 0, sizeof s->ejected_until[g]);
        s->spec = *spec;
        s->spec.name = NULL; /* not kept: s->name */
        s->spec.listen = NULL;
        health_track(s);
        service_publish(s);
}

void routing_end(Routing *r) {
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (r->services[i] && !r->services[i]->seen) {
                        service_free(r->services[i], true);
                        r->services[i] = NULL;
                }
}

void routing_keep(Routing *r, const char *service) {
        RoutedService *s = service_find(r, service);

        if (s)
                s->seen = true;
}

void routing_drop(Routing *r, const char *service) {
        for (size_t i = 0; i < MAX_SERVICES; i++)
                if (r->services[i] && streq(r->services[i]->name, service)) {
                        service_free(r->services[i], true);
                        r->services[i] = NULL;
                        return;
                }
}

unsigned routing_port(Routing *r, const char *service) {
        RoutedService *s = service_find(r, service);
        return s && s->plane ? proxy_plane_service_port(s->plane) : 0;
}

/* ---- active health checks ---- */

static void on_health(const char *id, bool ok, const char *error, void *userdata) {
        Routing *r = userdata;

        for (size_t k = 0; k < MAX_SERVICES; k++) {
                RoutedService *s = r->services[k];
                int i = s ? health_find(s, id) : -1;
                Health *h;

                if (i < 0)
                        continue;
                h = &s->health[i];
                h->probing = false;
                if (!h->seen) { /* left the table meanwhile */
                        h->id[0] = 0;
                        return;
                }
                h->fails = ok ? 0 : h->fails + 1;
                h->passes = ok ? h->passes + 1 : 0;
                if (h->healthy && h->fails >= s->spec.hc_fall) {
                        h->healthy = false;
                        log_notice("Service %s: guest %s fails its health check (GET %s: %s; %u in a row): no traffic "
                                   "until it passes %u.",
                                   s->name, id, s->spec.hc_path, error ? error : "failed", h->fails, s->spec.hc_rise);
                        service_publish(s);
                } else if (!h->healthy && h->passes >= s->spec.hc_rise) {
                        h->healthy = true;
                        log_info("Service %s: guest %s passes its health check again.", s->name, id);
                        service_publish(s);
                }
                return;
        }
}

void routing_health_tick(Routing *r) {
        usec_t now = now_monotonic();
        char ip[INET_ADDRSTRLEN];

        for (size_t k = 0; r && k < MAX_SERVICES; k++) {
                RoutedService *s = r->services[k];
                bool expired = false;

                if (!s)
                        continue;
                for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                        for (size_t i = 0; i < s->spec.n[g]; i++)
                                if (s->ejected_until[g][i] && now >= s->ejected_until[g][i]) {
                                        s->ejected_until[g][i] = 0;
                                        expired = true;
                                        log_info("Service %s: guest %s is taken back after its ejection.", s->name,
                                                 s->spec.backend[g][i].id);
                                }
                if (expired)
                        service_publish(s);
                for (size_t i = 0; i < ELEMENTSOF(s->health); i++) {
                        Health *h = &s->health[i];
                        if (!h->id[0] || !h->seen || h->probing || now < h->next)
                                continue;
                        h->next = now + s->spec.hc_interval_usec;
                        inet_ntop(AF_INET, &h->addr.sin_addr, ip, sizeof ip);
                        if (probe_http(r->event, h->id, ip, ntohs(h->addr.sin_port), s->spec.hc_path,
                                       s->spec.hc_timeout_usec, on_health, r) >= 0)
                                h->probing = true;
                }
        }
}

int routing_canary_unhealthy(Routing *r, const char *service, char *why, size_t size) {
        RoutedService *s = r ? service_find(r, service) : NULL;
        unsigned healthy = 0;

        if (!s || s->spec.n[SPLIT_CANARY] == 0)
                return 0;
        for (size_t i = 0; i < s->spec.n[SPLIT_CANARY]; i++)
                healthy += health_of(s, s->spec.backend[SPLIT_CANARY][i].id);
        if (healthy > 0)
                return 0;
        snprintf(why, size, "canary guests unhealthy: all %zu fail their health check (%s)", s->spec.n[SPLIT_CANARY],
                 s->spec.hc_path);
        return 1;
}

/* ---- what the workers tell ---- */

static void on_eject(Routing *r, RoutedService *s, const PlaneEvent *e) {
        usec_t now = now_monotonic();
        int g = e->group;

        if (g < 0 || g >= _SPLIT_GROUP_MAX)
                return;
        for (size_t i = 0; i < s->spec.n[g]; i++) {
                const RouteSpecBackend *b = &s->spec.backend[g][i];
                if (b->addr.sin_addr.s_addr != e->backend.sin_addr.s_addr || b->addr.sin_port != e->backend.sin_port)
                        continue;
                if (s->ejected_until[g][i] > now || !health_of(s, b->id) || usable_count(s, g, now) <= 1)
                        return;
                s->ejected_until[g][i] = now + EJECT_USEC;
                s->ejections++;
                log_notice("Service %s: ejecting %s guest %s for 10s after %u failed requests in a row.", s->name,
                           split_group_to_string((SplitGroup) g), b->id, ROUTE_EJECT_AFTER_FAILURES);
                service_publish(s);
                return;
        }
}

static void on_inflight_answer(Routing *r, const PlaneEvent *e) {
        for (size_t i = 0; i < MAX_INFLIGHT; i++) {
                Inflight *f = &r->inflight[i];
                if (f->cookie != e->cookie || f->addr.sin_addr.s_addr != e->backend.sin_addr.s_addr)
                        continue;
                f->answers++;
                f->sum += e->count;
                if (f->answers == proxy_plane_threads(r->plane))
                        f->value = f->sum;
                return;
        }
}

static void on_plane_event(void *userdata, const PlaneEvent *e) {
        Routing *r = userdata;

        if (e->kind == PLANE_EVENT_EJECT)
                on_eject(r, proxy_plane_service_userdata(e->service), e);
        else if (e->kind == PLANE_EVENT_INFLIGHT)
                on_inflight_answer(r, e);
        else if (e->kind == PLANE_EVENT_WAKE && r->wake)
                r->wake(r->wake_userdata, ((RoutedService *) proxy_plane_service_userdata(e->service))->name);
}

void routing_set_wake(Routing *r, unsigned limit, uint64_t timeout_usec, RoutingWakeFn fn, void *userdata) {
        proxy_plane_set_hold(r->plane, limit, timeout_usec);
        r->wake = fn;
        r->wake_userdata = userdata;
}

void routing_wake_failed(Routing *r, const char *service, const char *why) {
        RoutedService *s = r ? service_find(r, service) : NULL;

        if (s && s->plane)
                proxy_plane_release(s->plane, why);
}

usec_t routing_last_request(Routing *r, const char *service) {
        RoutedService *s = r ? service_find(r, service) : NULL;
        uint64_t last = s && s->plane ? proxy_plane_last_request(s->plane) : 0, now;

        if (!last)
                return 0;
        now = proxy_now();
        return now_realtime() - (now > last ? now - last : 0);
}

/* The controller asks every tick while a guest drains: each call returns the last complete
 * answer and asks again once that answer is in (or after a second without one). An answer is
 * only for the calls that follow it closely: an address not asked about for a second starts
 * over, since what was in flight then (to another guest that had the address, or before the
 * guest left the tables) says nothing about now. */
unsigned routing_inflight(Routing *r, const char *ip) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        usec_t now = now_monotonic();
        Inflight *f = NULL, *oldest = NULL;
        unsigned value;

        if (!r || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return 0;
        for (size_t i = 0; i < MAX_INFLIGHT; i++) {
                Inflight *x = &r->inflight[i];
                if (x->cookie && x->addr.sin_addr.s_addr == sa.sin_addr.s_addr) {
                        f = x;
                        break;
                }
                if (!oldest || x->used < oldest->used)
                        oldest = x;
        }
        if (!f || now - f->used > INFLIGHT_FRESH_USEC) {
                if (!f)
                        f = oldest;
                *f = (Inflight) {.addr = sa, .value = UINT_MAX};
        }
        f->used = now;
        value = f->value;
        if (!f->cookie || f->answers == proxy_plane_threads(r->plane) || now - f->asked > USEC_PER_SEC) {
                f->cookie = ++r->next_cookie;
                f->answers = f->sum = 0;
                f->asked = now;
                proxy_plane_inflight_query(r->plane, &sa, f->cookie);
        }
        return value;
}

void routing_backend_gone(Routing *r, const char *ip) {
        struct sockaddr_in sa = {.sin_family = AF_INET}; /* port 0: every port of the guest */

        if (!r || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return;
        proxy_plane_backend_down(r->plane, &sa);
}

/* ---- analysis windows and the traffic view ---- */

int routing_window_take(Routing *r, const char *service, ProxyMetrics *ret) {
        RoutedService *s = r ? service_find(r, service) : NULL;
        ProxyMetrics now;

        if (!s || !s->plane)
                return -ENOENT;
        proxy_plane_metrics(s->plane, &now);
        if (ret)
                metrics_diff(&now, &s->window_start, ret);
        s->window_start = now;
        return 0;
}

int routing_metrics(Routing *r, const char *service, RoutingMetrics *ret) {
        RoutedService *s = r ? service_find(r, service) : NULL;

        if (!s || !s->plane)
                return -ENOENT;
        proxy_plane_metrics(s->plane, &ret->by_group);
        proxy_plane_stats(s->plane, &ret->stats);
        ret->ejections = s->ejections;
        ret->serial = s->plane_serial;
        return 0;
}

static json_t *group_json(RoutedService *s, const ProxyMetrics *m, SplitGroup g) {
        const GroupMetrics *gm = &m->group[g];
        json_t *classes = json_object(), *backends = json_array();
        uint64_t p50 = 0, p99 = 0;
        double rate = 0;
        bool have = metrics_total(gm) > 0;
        usec_t now = now_monotonic();

        for (int c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                json_object_set_new(classes, metrics_status_class_to_string((MetricsStatusClass) c),
                                    json_integer((json_int_t) gm->status[c]));
        for (size_t i = 0; i < s->spec.n[g]; i++) {
                const RouteSpecBackend *b = &s->spec.backend[g][i];
                char ip[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &b->addr.sin_addr, ip, sizeof ip);
                json_array_append_new(backends, json_pack("{s:s, s:s, s:i, s:b, s:b}", "instance", b->id, "ip", ip, "port",
                                                          ntohs(b->addr.sin_port), "healthy", health_of(s, b->id),
                                                          "ejected", s->ejected_until[g][i] > now));
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

/* The copies a mirror step sent to the canary: their answers (in no version group: no client
 * got them), the copies sent and dropped, since aviaryd started; the share copied now. */
static json_t *mirror_json(RoutedService *s, const ProxyMetrics *m) {
        const GroupMetrics *gm = &m->mirror;
        json_t *classes = json_object();
        uint64_t p50 = 0, p99 = 0;
        double rate = 0;
        bool have = metrics_total(gm) > 0;

        for (int c = 0; c < _METRICS_STATUS_CLASS_MAX; c++)
                json_object_set_new(classes, metrics_status_class_to_string((MetricsStatusClass) c),
                                    json_integer((json_int_t) gm->status[c]));
        if (have) {
                metrics_success_rate(gm, &rate);
                metrics_latency_quantile(gm, 0.5, &p50);
                metrics_latency_quantile(gm, 0.99, &p99);
        }
        return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "percent", (json_int_t) (s->spec.mirror_bp / 100), "sent",
                         (json_int_t) m->mirror_sent, "dropped", (json_int_t) m->mirror_dropped, "by_status", classes,
                         "success_rate", have ? json_real(rate) : json_null(), "p50_ms",
                         have ? json_real((double) p50 / 1000) : json_null(), "p99_ms",
                         have ? json_real((double) p99 / 1000) : json_null());
}

json_t *routing_service_json(Routing *r, const char *service) {
        RoutedService *s = r ? service_find(r, service) : NULL;
        ProxyMetrics m = {};

        if (!s)
                return json_pack("{s:s, s:n, s:b, s:b, s:i, s:n, s:{s:i, s:i}, s:{}}", "service", service, "listen",
                                 "listening", false, "holding", false, "held", 0, "last_request_at", "weights", "stable", (int) SPLIT_BASIS_POINTS, "canary", 0, "versions");
        if (s->plane)
                proxy_plane_metrics(s->plane, &m);
        usec_t last = routing_last_request(r, service);
        char when[32] = "";
        if (last)
                format_rfc3339(last, when);
        json_t *j = json_pack("{s:s, s:s?, s:b, s:b, s:i, s:s?, s:{s:i, s:i}, s:{s:o, s:o}}", "service", s->name, "listen",
                              s->listen[0] ? s->listen : NULL, "listening", s->plane != NULL, "holding", s->spec.hold,
                              "held", s->plane ? (int) proxy_plane_held(s->plane) : 0, "last_request_at",
                              when[0] ? when : NULL, "weights", "stable",
                              (int) (SPLIT_BASIS_POINTS - s->spec.canary_bp), "canary", (int) s->spec.canary_bp,
                              "versions", "stable", group_json(s, &m, SPLIT_STABLE), "canary",
                              group_json(s, &m, SPLIT_CANARY));
        /* The canary's requests that a header route sent there (counted in its group too), and
         * the rules in force. */
        if (j) {
                json_t *rules = json_array();
                for (size_t i = 0; rules && i < s->spec.n_rules; i++) {
                        const HeaderRule *h = &s->spec.rules[i];
                        char net[INET_ADDRSTRLEN] = "";
                        struct in_addr a = { .s_addr = h->net };
                        inet_ntop(AF_INET, &a, net, sizeof net);
                        json_array_append_new(rules, h->kind == HEADER_RULE_SOURCE
                                                             ? json_pack("{s:s, s:i}", "sourceNet", net, "prefix",
                                                                         __builtin_popcount(h->mask))
                                                             : json_pack("{s:s, s:s}", h->kind == HEADER_RULE_HEADER
                                                                                               ? "header"
                                                                                               : "cookie",
                                                                         h->name, "exact", h->value));
                }
                json_object_set_new(j, "header_routes", rules ? rules : json_array());
                json_object_set_new(j, "header_routed", json_integer((json_int_t) m.header_routed));
                json_object_set_new(j, "mirrored", mirror_json(s, &m));
                /* How many tables the workers were given: a table left alone keeps its number. */
                json_object_set_new(j, "generation", json_integer((json_int_t) s->generation));
        }
        return j;
}

/* ---- setup ---- */

int routing_new(sd_event *event, unsigned threads, const RoutingFdStore *fds, Routing **ret) {
        Routing *r = calloc(1, sizeof *r);
        int k;

        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(event);
        if (fds)
                r->fds = *fds;
        k = proxy_plane_new(event, threads, on_plane_event, r, &r->plane);
        if (k < 0) {
                sd_event_unref(r->event);
                free(r);
                return k;
        }
        *ret = r;
        return 0;
}

Routing *routing_free(Routing *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < MAX_SERVICES; i++)
                service_free(r->services[i], false);
        r->plane = proxy_plane_free(r->plane);
        sd_event_unref(r->event);
        free(r);
        return NULL;
}

unsigned routing_threads(const Routing *r) {
        return proxy_plane_threads(r->plane);
}
