/* Routing tables (route-table.h): immutable once published, swapped by pointer, read by every
 * worker through its own cursor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "route-table.h"

RouteTable *route_table_new(size_t n_stable, size_t n_canary) {
        size_t n[_SPLIT_GROUP_MAX] = {n_stable, n_canary};
        RouteTable *t;

        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                if (n[g] > BACKEND_SET_MAX)
                        n[g] = BACKEND_SET_MAX;
        t = calloc(1, sizeof *t + (n[0] + n[1]) * sizeof(RouteBackend));
        if (!t)
                return NULL;
        atomic_init(&t->n_ref, 1);
        t->group[SPLIT_STABLE] = (RouteGroup) {.n = n[0], .backend = (RouteBackend *) (t + 1)};
        t->group[SPLIT_CANARY] = (RouteGroup) {.n = n[1], .backend = (RouteBackend *) (t + 1) + n[0]};
        return t;
}

RouteTable *route_table_ref(RouteTable *t) {
        if (t)
                atomic_fetch_add_explicit(&t->n_ref, 1, memory_order_relaxed);
        return t;
}

void route_table_unref(RouteTable *t) {
        if (t && atomic_fetch_sub_explicit(&t->n_ref, 1, memory_order_acq_rel) == 1) {
                free(t->match_text);
                free(t);
        }
}

int route_table_set_match(RouteTable *t, const char *const *hosts, size_t n_hosts, const char *path_prefix) {
        size_t size = path_prefix ? strlen(path_prefix) + 1 : 0, at = 0;
        char *text;

        if (n_hosts > MATCH_MAX_HOSTS)
                n_hosts = MATCH_MAX_HOSTS;
        for (size_t i = 0; i < n_hosts; i++)
                size += strlen(hosts[i]) + 1;
        if (size == 0)
                return 0;
        text = malloc(size);
        if (!text)
                return -ENOMEM;
        for (size_t i = 0; i < n_hosts; i++) {
                size_t n = strlen(hosts[i]) + 1;
                memcpy(text + at, hosts[i], n);
                t->match.hosts[i] = text + at;
                at += n;
        }
        t->match.n_hosts = n_hosts;
        if (path_prefix) {
                memcpy(text + at, path_prefix, strlen(path_prefix) + 1);
                t->match.path_prefix = text + at;
        }
        free(t->match_text);
        t->match_text = text;
        return 0;
}

long route_table_match(const RouteTable *t, const ProxyRequest *req) {
        const char *host = NULL, *target;
        char host_buf[256], path[1024];
        size_t len = 0;

        if (t->match.n_hosts == 0 && (!t->match.path_prefix || streq(t->match.path_prefix, "/")))
                return 1; /* any request, least specific */
        if (t->match.n_hosts > 0) {
                host = proxy_request_header(req, "Host", &len);
                if (!host || len >= sizeof host_buf)
                        return -1;
                memcpy(host_buf, host, len);
                host_buf[len] = 0;
                host = host_buf;
        }
        target = proxy_request_target(req, &len);
        if (len >= sizeof path)
                len = sizeof path - 1; /* a prefix is at most 256 bytes: the rest does not matter */
        memcpy(path, target, len);
        path[len] = 0;
        return match_score(&t->match, host, path);
}

void route_slot_init(RouteSlot *s) {
        atomic_init(&s->current, NULL);
        pthread_mutex_init(&s->lock, NULL);
}

void route_slot_done(RouteSlot *s) {
        route_table_unref(atomic_exchange(&s->current, NULL));
        pthread_mutex_destroy(&s->lock);
}

/* The lock makes "read the pointer, take a reference" one step against the swap, so a table
 * is never freed between a worker's load and its reference. Workers take it only when the
 * pointer moved, which is once per published table. */
void route_slot_publish(RouteSlot *s, RouteTable *t) {
        RouteTable *old;

        pthread_mutex_lock(&s->lock);
        old = atomic_exchange_explicit(&s->current, t, memory_order_acq_rel);
        pthread_mutex_unlock(&s->lock);
        route_table_unref(old);
}

RouteTable *route_slot_get(RouteSlot *s) {
        RouteTable *t;

        pthread_mutex_lock(&s->lock);
        t = route_table_ref(atomic_load_explicit(&s->current, memory_order_acquire));
        pthread_mutex_unlock(&s->lock);
        return t;
}

void route_cursor_init(RouteCursor *c) {
        memset(c, 0, sizeof *c);
        split_init(&c->split, 0);
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                backend_set_init(&c->set[g], 0);
}

void route_cursor_done(RouteCursor *c) {
        route_table_unref(c->table);
        c->table = NULL;
}

static bool same_members(const RouteGroup *a, const RouteGroup *b) {
        if (!a || a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++)
                if (a->backend[i].addr.sin_addr.s_addr != b->backend[i].addr.sin_addr.s_addr ||
                    a->backend[i].addr.sin_port != b->backend[i].addr.sin_port)
                        return false;
        return true;
}

/* A new table: the weight's cycle and each group's rotation carry on where nothing changed
 * (split_set_weight and backend_set_ready are no-ops then), and restart where it did. */
static void cursor_adopt(RouteCursor *c, RouteTable *t) {
        RouteTable *old = c->table;

        split_set_weight(&c->split, t->canary_bp);
        if (!old || old->mirror_bp != t->mirror_bp)
                c->mirror_credit = 0;
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++) {
                const RouteGroup *ng = &t->group[g];
                bool same = same_members(old ? &old->group[g] : NULL, ng);
                if (!same) {
                        backend_set_init(&c->set[g], ng->n);
                        memset(c->failures[g], 0, sizeof c->failures[g]);
                }
                for (size_t i = 0; i < ng->n; i++) {
                        /* Taken back after an ejection: its count starts over. */
                        if (same && ng->backend[i].usable && !old->group[g].backend[i].usable)
                                c->failures[g][i] = 0;
                        backend_set_ready(&c->set[g], i, ng->backend[i].usable);
                }
        }
        c->table = t;
        route_table_unref(old);
}

bool route_cursor_sync(RouteCursor *c, RouteSlot *s) {
        RouteTable *t;

        if (atomic_load_explicit(&s->current, memory_order_acquire) == c->table)
                return false;
        t = route_slot_get(s);
        if (!t)
                return false;
        if (t == c->table) { /* swapped and swapped back meanwhile */
                route_table_unref(t);
                return false;
        }
        cursor_adopt(c, t);
        return true;
}

/* Whether REQ matches one of T's header-route rules. */
static bool header_routed(const RouteTable *t, const ProxyRequest *req) {
        for (size_t i = 0; i < t->n_rules; i++) {
                const HeaderRule *r = &t->rules[i];
                const char *v;
                size_t len;

                switch (r->kind) {
                case HEADER_RULE_HEADER:
                case HEADER_RULE_COOKIE:
                        v = r->kind == HEADER_RULE_HEADER ? proxy_request_header(req, r->name, &len)
                                                          : proxy_request_cookie(req, r->name, &len);
                        if (v && len == strlen(r->value) && memcmp(v, r->value, len) == 0)
                                return true;
                        break;
                case HEADER_RULE_SOURCE:
                        if ((proxy_request_peer(req) & r->mask) == r->net)
                                return true;
                        break;
                }
        }
        return false;
}

static SplitGroup pick_group(RouteCursor *c, const ProxyRequest *req) {
        const RouteTable *t = c->table;
        const char *v;
        size_t len;

        c->header_routed = false;
        if (t->rollout_id && t->tester_header && (v = proxy_request_header(req, "X-Aviary-Version", &len))) {
                if (len == 6 && strncasecmp(v, "canary", 6) == 0)
                        return SPLIT_CANARY;
                if (len == 6 && strncasecmp(v, "stable", 6) == 0)
                        return SPLIT_STABLE;
        }
        /* Header routes come before stickiness and weights (docs/rollouts.md). */
        if (t->rollout_id && t->n_rules > 0 && header_routed(t, req)) {
                c->header_routed = true;
                return SPLIT_CANARY;
        }
        if (t->rollout_id && (t->sticky_header[0] || t->sticky_cookie[0])) {
                v = t->sticky_header[0] ? proxy_request_header(req, t->sticky_header, &len)
                                        : proxy_request_cookie(req, t->sticky_cookie, &len);
                if (v && len > 0)
                        return sticky_pick(sticky_bucket(v, len, t->salt), t->canary_bp);
        }
        return split_pick(&c->split);
}

int route_pick(RouteCursor *c, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        SplitGroup g;
        int i;

        if (!c->table)
                return -EHOSTUNREACH;
        g = pick_group(c, req);
        i = backend_pick(&c->set[g]);
        if (i < 0 && g == SPLIT_CANARY) { /* no canary guest (yet, or ejected): serve from stable */
                c->header_routed = false;
                g = SPLIT_STABLE;
                i = backend_pick(&c->set[g]);
        }
        if (i < 0)
                return -EHOSTUNREACH;
        *ret_backend = c->table->group[g].backend[i].addr;
        *ret_group = (int) g;
        return 0;
}

int route_mirror_pick(RouteCursor *c, int group, struct sockaddr_in *ret_backend) {
        const RouteTable *t = c->table;
        int i;

        if (!t || !t->mirror_bp || group != SPLIT_STABLE)
                return 0;
        c->mirror_credit += t->mirror_bp;
        if (c->mirror_credit < SPLIT_BASIS_POINTS)
                return 0;
        c->mirror_credit -= SPLIT_BASIS_POINTS;
        i = backend_pick(&c->set[SPLIT_CANARY]);
        if (i < 0)
                return -EHOSTUNREACH;
        *ret_backend = t->group[SPLIT_CANARY].backend[i].addr;
        return 1;
}

bool route_outcome(RouteCursor *c, int group, const struct sockaddr_in *backend, bool failed) {
        const RouteGroup *rg;

        if (!c->table || !backend || group < 0 || group >= _SPLIT_GROUP_MAX)
                return false;
        rg = &c->table->group[group];
        for (size_t i = 0; i < rg->n; i++) {
                if (rg->backend[i].addr.sin_addr.s_addr != backend->sin_addr.s_addr ||
                    rg->backend[i].addr.sin_port != backend->sin_port)
                        continue;
                c->failures[group][i] = failed ? c->failures[group][i] + 1 : 0;
                return c->failures[group][i] == ROUTE_EJECT_AFTER_FAILURES;
        }
        return false;
}
