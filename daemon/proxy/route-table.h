/* One service's routing table: which guests serve which version group, the canary weight, the
 * stickiness rule. Built by the control side (routing.c) and never changed once published: a
 * change is a new table, put in place with one atomic pointer swap (RouteSlot). Each worker
 * thread keeps a reference to the table it routes with and its own RouteCursor (where its
 * round-robins stand), so a pick takes no lock and writes nothing another thread reads. */
#pragma once

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "match.h"
#include "proxy.h"
#include "select.h"

typedef struct RouteBackend {
        struct sockaddr_in addr;
        char id[64];  /* instance id */
        bool usable;  /* healthy and not ejected: may get requests */
        bool healthy; /* passes its active health checks (shown in the traffic view) */
        bool ejected; /* passively ejected */
} RouteBackend;

typedef struct RouteGroup {
        size_t n;
        RouteBackend *backend; /* N of them */
} RouteGroup;

typedef struct RouteTable {
        atomic_uint n_ref;
        uint64_t generation; /* increases with every table published for the service */
        unsigned canary_bp;
        int64_t rollout_id; /* 0: no rollout in progress (no stickiness, no tester header) */
        uint64_t salt;
        char sticky_header[64], sticky_cookie[64];
        bool tester_header;
        HeaderRule rules[HEADER_RULES_MAX]; /* the rollout's header route ("" none) */
        size_t n_rules;
        unsigned mirror_bp; /* share of stable's requests copied to the canary (mirror step); 0 none */
        /* The service is asleep or waking (scale to zero): a request no guest can take waits
         * for one (proxy_set_hold) instead of a 503, and asks control to wake the service. */
        bool hold;
        /* On a shared listener, the requests that are this service's (util/match.h): no host and
         * no prefix match every request. Its strings live in MATCH_TEXT, the table's own. */
        Match match;
        char *match_text;
        RouteGroup group[_SPLIT_GROUP_MAX];
} RouteTable;

/* An empty table (no backend: every request gets 503) with one reference; NULL on ENOMEM. The
 * builder fills it in before publishing it, and never touches it after. */
RouteTable *route_table_new(size_t n_stable, size_t n_canary);
RouteTable *route_table_ref(RouteTable *t);
/* Sets T's match to a copy of N_HOSTS HOSTS and PATH_PREFIX (NULL: any); -ENOMEM. */
int route_table_set_match(RouteTable *t, const char *const *hosts, size_t n_hosts, const char *path_prefix);
/* How well REQ (its Host header and target) matches T's service: -1 not, else a score where more
 * is more specific (match_score). */
long route_table_match(const RouteTable *t, const ProxyRequest *req);
/* Any thread; the last reference frees it. Accepts NULL. */
void route_table_unref(RouteTable *t);

/* Where a service's current table is published. */
typedef struct RouteSlot {
        _Atomic(RouteTable *) current;
        pthread_mutex_t lock; /* held only to take a reference on a changed table, and to swap */
} RouteSlot;

void route_slot_init(RouteSlot *s);
/* Drops the slot's table. */
void route_slot_done(RouteSlot *s);
/* Puts T in place (taking the caller's reference) and drops the one it replaces. */
void route_slot_publish(RouteSlot *s, RouteTable *t);
/* The current table with a new reference, or NULL when none was published. */
RouteTable *route_slot_get(RouteSlot *s);

/* A worker's view of one service: the table it holds and its own round-robin state. */
typedef struct RouteCursor {
        RouteTable *table; /* a reference; NULL before the first */
        VersionSplit split;
        BackendSet set[_SPLIT_GROUP_MAX];
        unsigned failures[_SPLIT_GROUP_MAX][BACKEND_SET_MAX]; /* in a row, on this thread */
        bool header_routed; /* the last pick went to the canary by a header route */
        unsigned mirror_credit; /* basis points owed to mirroring (route_mirror_pick) */
} RouteCursor;

void route_cursor_init(RouteCursor *c);
void route_cursor_done(RouteCursor *c);
/* Follows the slot: when another table was published since, takes it (keeping the rotation
 * where membership and weight did not change). A pointer compare when nothing changed. True
 * when the table changed. */
bool route_cursor_sync(RouteCursor *c, RouteSlot *s);

/* The pick for one request with the cursor's table: the tester header when the rollout allows
 * it, else the sticky bucket of the client's key, else the weighted round-robin; then the next
 * usable guest of that group (stable when the canary has none). 0 with the backend, its group
 * and its index in the group; -EHOSTUNREACH when nothing can serve. */
int route_pick(RouteCursor *c, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group);

/* Shadow traffic, for a request the last pick sent to GROUP: 1 with the canary guest its copy
 * goes to, 0 when it gets no copy, -EHOSTUNREACH when it should and no canary guest is usable
 * (a dropped copy). Only stable's requests are copied, mirror_bp of them: each adds mirror_bp
 * to the cursor's credit, and a request that brings it to 10000 is copied (and pays 10000), so
 * of n requests on one cursor exactly floor(n x mirror_bp / 10000) are copied (the credit
 * starts over with each new share). The canary guest is the next of its round-robin. */
int route_mirror_pick(RouteCursor *c, int group, struct sockaddr_in *ret_backend);

/* A request to BACKEND in GROUP ended: FAILED (a 5xx, or no valid answer) counts toward passive
 * ejection. True when BACKEND just failed EJECT_AFTER in a row on this thread: the caller asks
 * the control side to eject it. */
#define ROUTE_EJECT_AFTER_FAILURES 5
bool route_outcome(RouteCursor *c, int group, const struct sockaddr_in *backend, bool failed);
