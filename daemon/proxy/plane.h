/* The data plane: the service proxies on worker threads of their own (proxy_threads, default
 * one per CPU), apart from the control loop, so nothing the control plane does (a domain start,
 * an fsync, a slow query) delays a forwarded request.
 *
 * Each worker thread has its own sd-event loop and proxy loop (loop.h), and per service its own
 * Proxy (client state machines, upstream keep-alive pool), RouteCursor (round-robin state) and
 * counters. Routing tables come from the control side by pointer swap (route-table.h); the
 * workers send what control must know (an ejection candidate, in-flight counts) through one
 * queue whose eventfd wakes the control loop; control sends them commands through a queue per
 * worker, each with its own eventfd.
 *
 * Listening: one socket per listen address (the one kept in systemd's fd store across
 * restarts), accepted by one worker, which hands each new connection to the next worker in
 * turn. See docs/design/traffic.md for why that and not SO_REUSEPORT. Several services may share
 * a listener: each request goes to the one whose match (route-table.h, util/match.h) is the most
 * specific, and one that matches none gets a JSON 404.
 *
 * Threads: every call here is for the control thread, except where said. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "metrics.h"
#include "route-table.h"

typedef struct ProxyPlane ProxyPlane;
typedef struct PlaneService PlaneService;
typedef struct PlaneListener PlaneListener;

typedef enum PlaneEventKind {
        PLANE_EVENT_EJECT,    /* BACKEND in GROUP failed ROUTE_EJECT_AFTER_FAILURES requests in a row on a worker */
        PLANE_EVENT_INFLIGHT, /* a worker's answer to proxy_plane_inflight_query(): COUNT requests to BACKEND */
        PLANE_EVENT_WAKE,     /* a worker holds a request for SERVICE, whose table says hold: wake it */
} PlaneEventKind;

typedef struct PlaneEvent {
        PlaneEventKind kind;
        PlaneService *service; /* EJECT, WAKE: whose table; valid during the call */
        unsigned worker;
        int group;
        struct sockaddr_in backend;
        unsigned count;
        uint64_t cookie; /* INFLIGHT: the query's */
} PlaneEvent;

/* Called on the control loop for each event the workers sent. */
typedef void (*PlaneEventFn)(void *userdata, const PlaneEvent *e);

/* Starts THREADS workers (0: one per CPU). CONTROL is the loop PlaneEventFn runs on. */
int proxy_plane_new(sd_event *control, unsigned threads, PlaneEventFn fn, void *userdata, ProxyPlane **ret);
/* Stops the workers (joining them) and frees every service's proxies. Accepts NULL. */
ProxyPlane *proxy_plane_free(ProxyPlane *p);
unsigned proxy_plane_threads(const ProxyPlane *p);

/* Serves listening socket FD (taken, also on failure) for the services that join it. */
int proxy_plane_listener_add(ProxyPlane *p, int fd, PlaneListener **ret);
/* Stops serving it: the socket and its connections close on every worker (asynchronously).
 * Remove the services that joined it first. */
void proxy_plane_listener_remove(PlaneListener *l);
unsigned proxy_plane_listener_port(const PlaneListener *l);
int proxy_plane_listener_fd(const PlaneListener *l);
/* Serves service NAME on listener L (with the others that joined it), routing by the tables
 * published to the returned service (none yet: 503). USERDATA is the caller's, kept with it. */
int proxy_plane_service_join(ProxyPlane *p, const char *name, PlaneListener *l, void *userdata, PlaneService **ret);
/* A listener of its own for the service: listening socket FD (taken, also on failure). */
int proxy_plane_service_add(ProxyPlane *p, const char *name, int fd, void *userdata, PlaneService **ret);
/* Stops serving the service on every worker (asynchronously; requests it holds are answered
 * 503), and its own listener with it (proxy_plane_service_add); the service's memory goes with
 * the last worker's reference. */
void proxy_plane_service_remove(PlaneService *s);
void *proxy_plane_service_userdata(const PlaneService *s);
const char *proxy_plane_service_name(const PlaneService *s);
unsigned proxy_plane_service_port(const PlaneService *s);
int proxy_plane_service_fd(const PlaneService *s);

/* Publishes T (the caller's reference is taken): every worker routes with it from its next
 * pick on. */
void proxy_plane_publish(PlaneService *s, RouteTable *t);
/* Holding requests while a service wakes (a table with hold set and no usable guest): at most
 * LIMIT held per service over every worker, each at most TIMEOUT_USEC (proxy_set_hold). For
 * listeners and services added from now on (the workers never read it); without it a held
 * request is answered 503 at once. */
void proxy_plane_set_hold(ProxyPlane *p, unsigned limit, uint64_t timeout_usec);
/* The service's held requests go to a new pick on every worker, after taking the newest table
 * (FAILURE NULL: it woke), or are answered 503 naming FAILURE. A worker asks to wake the service
 * again (PLANE_EVENT_WAKE) at the next request it holds. */
void proxy_plane_release(PlaneService *s, const char *failure);
/* When the last request of the service was picked or ended, on any worker: proxy_now()'s
 * clock (monotonic µs), 0 when none yet. Each worker writes its own; this merges. */
uint64_t proxy_plane_last_request(PlaneService *s);
/* Requests the service holds now, over every worker. */
unsigned proxy_plane_held(PlaneService *s);
/* The service's counters, every worker's merged, into *RET (overwritten). */
void proxy_plane_metrics(PlaneService *s, ProxyMetrics *ret);
/* The service's connection and byte counters, every worker's summed (relaxed reads: each is
 * exact as of some moment during the call). They are its listener's: services that share one
 * report the same. */
typedef struct PlaneStats {
        uint64_t connections_open, connections_accepted;
        uint64_t bytes_received, bytes_sent;
} PlaneStats;
void proxy_plane_stats(PlaneService *s, PlaneStats *ret);
/* One worker's counters only (tests: the split per thread). */
void proxy_plane_worker_metrics(PlaneService *s, unsigned worker, ProxyMetrics *ret);
/* Requests answered by each worker (ProxyStats.requests), for tests and benches. */
uint64_t proxy_plane_worker_requests(PlaneService *s, unsigned worker);

/* Asks every worker how many requests are in flight to BACKEND (port 0: any port of its
 * address): each answers with a PLANE_EVENT_INFLIGHT carrying COOKIE, after taking the newest
 * routing tables (so a backend left out of them gets nothing new once its answers are in). */
void proxy_plane_inflight_query(ProxyPlane *p, const struct sockaddr_in *backend, uint64_t cookie);
/* BACKEND is gone: every worker runs proxy_backend_down() on every service (asynchronously). */
void proxy_plane_backend_down(ProxyPlane *p, const struct sockaddr_in *backend);
/* For tests: the connect and response-head timeouts of proxies made from now on. */
void proxy_plane_set_timeouts(ProxyPlane *p, uint64_t connect_usec, uint64_t response_head_usec);
