/* The data plane's worker threads (plane.h). A worker owns everything it touches on the request
 * path: its loops, its proxies (one per listener), its cursors (one per service), its counters. What crosses threads goes through
 * three doors only: the routing table pointer (route-table.h), a command queue per worker
 * (control → worker, and acceptor → worker for handed-off connections), and the event queue to
 * control. Each queue is a mutex-guarded list with an eventfd; a poster writes the eventfd only
 * when the list was empty, so a burst costs one wakeup. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "plane.h"
#include "proxy.h"

typedef struct Worker Worker;
typedef struct WorkerService WorkerService;
typedef struct WorkerListener WorkerListener;

/* Services one worker serves at once; a service's index among them is its key in the worker's
 * requests (the pick's group tag and the hold key), so it stays put while the service is served. */
#define WORKER_SLOTS 256
/* Services sharing one listener. */
#define LISTENER_MAX_SERVICES 64

typedef enum CommandKind {
        CMD_LISTENER_ADD,
        CMD_LISTENER_REMOVE,
        CMD_SERVICE_ADD,
        CMD_SERVICE_REMOVE,
        CMD_ADOPT,
        CMD_INFLIGHT,
        CMD_BACKEND_DOWN,
        CMD_RELEASE,
        CMD_STOP,
} CommandKind;

typedef struct Command {
        CommandKind kind;
        PlaneService *service;   /* holds a reference (SERVICE_*, RELEASE) */
        PlaneListener *listener; /* holds a reference (LISTENER_*, ADOPT) */
        int fd;                  /* ADOPT */
        struct sockaddr_in addr; /* ADOPT: the peer; INFLIGHT, BACKEND_DOWN: the backend */
        uint64_t cookie;
        char *failure; /* RELEASE: why the wake failed; NULL it woke */
        struct Command *next;
} Command;

/* One service as one worker serves it. Only that worker touches CURSOR; METRICS and
 * LAST_REQUEST are written by it and read by control. */
struct WorkerService {
        PlaneService *service;
        Worker *worker;
        WorkerListener *listener; /* the worker's side of the service's listener, while served */
        int slot;                 /* in the worker's slot table; -1 when not served */
        RouteCursor cursor;
        LiveMetrics metrics;
        _Atomic uint64_t last_request; /* proxy_now() of the last pick or outcome; written by the worker */
        uint64_t wake_asked;           /* the worker's: the table generation it asked a wake for (0 none) */
};

/* One listener as one worker serves it: its Proxy (the client state machines of every service on
 * the listener) and the services it routes to. Only that worker touches it. */
struct WorkerListener {
        PlaneListener *listener;
        Worker *worker;
        Proxy *proxy; /* NULL until the worker added it, and after it removed it */
        /* The proxy's counters (proxy_set_stats): kept here, where control reads them. Connections
         * and bytes are the listener's, shared by the services on it. */
        ProxyStats stats;
        WorkerService *services[LISTENER_MAX_SERVICES];
        size_t n_services;
        WorkerListener *next_active; /* the worker's list of listeners it serves */
};

struct PlaneListener {
        ProxyPlane *plane;
        atomic_uint n_ref;
        int fd;
        unsigned port;
        unsigned acceptor;    /* the worker that accepts */
        unsigned next_target; /* the acceptor's: who gets the next connection */
        uint64_t hold_timeout_usec; /* the plane's when it was added; 0: no holding */
        WorkerListener *wl;   /* one per worker */
};

struct PlaneService {
        ProxyPlane *plane;
        atomic_uint n_ref;
        char *name;
        PlaneListener *listener; /* a reference */
        bool own_listener;       /* made for it by proxy_plane_service_add(): removed with it */
        void *userdata;
        bool removed; /* control's: proxy_plane_service_remove() was called (events for it are dropped) */
        RouteSlot slot;
        WorkerService *ws; /* one per worker */
        _Atomic unsigned held; /* requests held over every worker... */
        unsigned hold_limit;   /* ...at most (wake_queue; the plane's when it joined) */
};

struct Worker {
        ProxyPlane *plane;
        unsigned index;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        int inbox_fd;
        Command *inbox, **inbox_tail;
        sd_event *event;
        ProxyLoop *loop;
        WorkerListener *listeners;
        WorkerService *slots[WORKER_SLOTS];
        bool stop;
};

typedef struct EventItem {
        PlaneEvent event;
        struct EventItem *next;
} EventItem;

struct ProxyPlane {
        unsigned n_workers;
        Worker *workers;
        unsigned next_acceptor;
        uint64_t connect_timeout_usec, response_head_timeout_usec;
        unsigned hold_limit; /* 0: no holding */
        uint64_t hold_timeout_usec;
        PlaneEventFn fn;
        void *userdata;
        /* worker → control */
        pthread_mutex_t events_lock;
        int events_fd;
        EventItem *events, **events_tail;
        sd_event_source *events_source;
};

static void eventfd_wake(int fd) {
        uint64_t one = 1;

        /* Fails only when the counter is saturated: still awake. */
        (void) !write(fd, &one, sizeof one);
}

static void eventfd_drain(int fd) {
        uint64_t n;

        (void) !read(fd, &n, sizeof n);
}

/* ---- services and their references ---- */

static PlaneService *service_ref(PlaneService *s) {
        atomic_fetch_add_explicit(&s->n_ref, 1, memory_order_relaxed);
        return s;
}

static PlaneListener *listener_ref(PlaneListener *l) {
        atomic_fetch_add_explicit(&l->n_ref, 1, memory_order_relaxed);
        return l;
}

static void listener_unref(PlaneListener *l) {
        if (!l || atomic_fetch_sub_explicit(&l->n_ref, 1, memory_order_acq_rel) != 1)
                return;
        free(l->wl);
        free(l);
}

static void service_unref(PlaneService *s) {
        if (!s || atomic_fetch_sub_explicit(&s->n_ref, 1, memory_order_acq_rel) != 1)
                return;
        route_slot_done(&s->slot);
        listener_unref(s->listener);
        free(s->ws);
        free(s->name);
        free(s);
}

/* ---- commands (to a worker) ---- */

static void worker_post(Worker *w, Command *c) {
        bool was_empty;

        c->next = NULL;
        pthread_mutex_lock(&w->lock);
        was_empty = !w->inbox;
        *w->inbox_tail = c;
        w->inbox_tail = &c->next;
        pthread_mutex_unlock(&w->lock);
        if (was_empty)
                eventfd_wake(w->inbox_fd);
}

static int command_post(Worker *w, CommandKind kind, PlaneService *s, PlaneListener *l, int fd,
                        const struct sockaddr_in *addr, uint64_t cookie) {
        Command *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->kind = kind;
        c->service = s ? service_ref(s) : NULL;
        c->listener = l ? listener_ref(l) : NULL;
        c->fd = fd;
        if (addr)
                c->addr = *addr;
        c->cookie = cookie;
        worker_post(w, c);
        return 0;
}

/* ---- events (to control) ---- */

static void event_post(ProxyPlane *p, const PlaneEvent *e) {
        EventItem *item = malloc(sizeof *item);
        bool was_empty;

        if (!item)
                return; /* an ejection or an answer lost: control asks again, or ejects later */
        item->event = *e;
        if (e->service)
                service_ref(e->service);
        item->next = NULL;
        pthread_mutex_lock(&p->events_lock);
        was_empty = !p->events;
        *p->events_tail = item;
        p->events_tail = &item->next;
        pthread_mutex_unlock(&p->events_lock);
        if (was_empty)
                eventfd_wake(p->events_fd);
}

static int on_events(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        ProxyPlane *p = userdata;
        EventItem *list;

        eventfd_drain(fd);
        pthread_mutex_lock(&p->events_lock);
        list = p->events;
        p->events = NULL;
        p->events_tail = &p->events;
        pthread_mutex_unlock(&p->events_lock);
        while (list) {
                EventItem *next = list->next;
                if (p->fn && !(list->event.service && list->event.service->removed))
                        p->fn(p->userdata, &list->event);
                service_unref(list->event.service);
                free(list);
                list = next;
        }
        return 0;
}

/* ---- the request path (worker threads) ---- */

/* One more on a counter only this worker writes: a plain add made visible with a relaxed store. */
static void stat_add_relaxed(_Atomic uint64_t *c) {
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* A relaxed store of the worker's own value: no locked instruction on the request path. */
static void note_request(WorkerService *ws) {
        atomic_store_explicit(&ws->last_request, proxy_now(), memory_order_relaxed);
}

/* The pick's group tag: the service's slot and the version group. */
static int group_tag(const WorkerService *ws, int group) {
        return ws->slot * _SPLIT_GROUP_MAX + group;
}

static WorkerService *slot_service(Worker *w, int slot) {
        return slot >= 0 && slot < WORKER_SLOTS ? w->slots[slot] : NULL;
}

/* The service of WL that REQ is for: the most specific match (util/match.h), first added on a
 * tie (the API refuses ties). NULL: none matches. */
static WorkerService *listener_route(WorkerListener *wl, const ProxyRequest *req) {
        WorkerService *best = NULL;
        long best_score = -1;

        for (size_t i = 0; i < wl->n_services; i++) {
                WorkerService *ws = wl->services[i];
                long score;

                route_cursor_sync(&ws->cursor, &ws->service->slot);
                /* No table yet: it takes what nothing else claims (and answers 503). */
                score = ws->cursor.table ? route_table_match(ws->cursor.table, req) : 0;
                if (score > best_score) {
                        best = ws;
                        best_score = score;
                }
        }
        return best;
}

static int on_pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        WorkerListener *wl = userdata;
        WorkerService *ws = listener_route(wl, req);
        const RouteTable *t;
        int r, group = -1;

        if (!ws)
                return wl->n_services > 0 ? -ENOENT : -EHOSTUNREACH;
        note_request(ws);
        r = route_pick(&ws->cursor, req, ret_backend, &group);
        if (r == 0)
                *ret_group = group_tag(ws, group);
        if (r == 0 && ws->cursor.header_routed)
                atomic_store_explicit(&ws->metrics.header_routed,
                                      atomic_load_explicit(&ws->metrics.header_routed, memory_order_relaxed) + 1,
                                      memory_order_relaxed); /* this worker alone writes it */
        t = ws->cursor.table;
        if (r != -EHOSTUNREACH || !t || !t->hold)
                return r;
        /* Asleep or waking: the request waits, and control hears of it once per table (and
         * again after each release). */
        if (ws->wake_asked != t->generation) {
                PlaneEvent e = {.kind = PLANE_EVENT_WAKE, .service = ws->service, .worker = ws->worker->index};
                ws->wake_asked = t->generation;
                event_post(ws->worker->plane, &e);
        }
        *ret_group = ws->slot; /* the hold's key */
        return -EAGAIN;
}

static void on_done(void *userdata, int tag, const struct sockaddr_in *backend, int status, uint64_t latency_usec) {
        WorkerListener *wl = userdata;
        WorkerService *ws = tag >= 0 ? slot_service(wl->worker, tag / _SPLIT_GROUP_MAX) : NULL;
        int group = tag % _SPLIT_GROUP_MAX;
        bool failed = status == 0 || status >= 500;

        if (!ws)
                return; /* no service was picked (503, 404), or it is gone since */
        note_request(ws);
        live_metrics_record(&ws->metrics, (SplitGroup) group, status, latency_usec);
        if (route_outcome(&ws->cursor, group, backend, failed)) {
                PlaneEvent e = {.kind = PLANE_EVENT_EJECT, .service = ws->service, .worker = ws->worker->index,
                                .group = group, .backend = *backend};
                event_post(ws->worker->plane, &e);
        }
}

/* Shadow traffic: whether the request the pick tagged TAG gets a copy, and for which canary
 * guest (route_mirror_pick). A copy owed with no canary guest to take it is dropped here. */
static bool on_mirror(void *userdata, int tag, struct sockaddr_in *ret_backend, int *ret_tag) {
        WorkerListener *wl = userdata;
        WorkerService *ws = tag >= 0 ? slot_service(wl->worker, tag / _SPLIT_GROUP_MAX) : NULL;
        int r;

        if (!ws)
                return false;
        r = route_mirror_pick(&ws->cursor, tag % _SPLIT_GROUP_MAX, ret_backend);
        if (r < 0)
                stat_add_relaxed(&ws->metrics.mirror_dropped);
        if (r <= 0)
                return false;
        *ret_tag = group_tag(ws, SPLIT_CANARY);
        return true;
}

/* A copy's answer is the canary's, measured apart from its clients' (metrics.h); it feeds no
 * passive ejection: ejection protects clients, and no client got this answer. */
static void on_mirror_done(void *userdata, int tag, int status, uint64_t latency_usec) {
        WorkerListener *wl = userdata;
        WorkerService *ws = tag >= 0 ? slot_service(wl->worker, tag / _SPLIT_GROUP_MAX) : NULL;

        if (!ws)
                return;
        if (status == PROXY_MIRROR_DROPPED) {
                stat_add_relaxed(&ws->metrics.mirror_dropped);
                return;
        }
        stat_add_relaxed(&ws->metrics.mirror_sent);
        live_metrics_record_mirror(&ws->metrics, status, latency_usec);
}

/* The bound of held requests, per service over every worker: one atomic counter, touched only
 * when a request is held or leaves the hold. */
static bool on_hold(void *userdata, int key, bool enter) {
        WorkerListener *wl = userdata;
        WorkerService *ws = slot_service(wl->worker, key);
        PlaneService *s = ws ? ws->service : NULL;

        if (!s)
                return false;
        if (!enter) {
                atomic_fetch_sub_explicit(&s->held, 1, memory_order_relaxed);
                return true;
        }
        if (atomic_fetch_add_explicit(&s->held, 1, memory_order_relaxed) < s->hold_limit)
                return true;
        atomic_fetch_sub_explicit(&s->held, 1, memory_order_relaxed);
        return false;
}

/* The acceptor: every connection goes to the workers in turn, this one included. */
static bool on_accept_hand_off(void *userdata, int fd, const struct sockaddr_in *peer) {
        WorkerListener *wl = userdata;
        PlaneListener *l = wl->listener;
        ProxyPlane *p = l->plane;
        unsigned target = l->next_target++ % p->n_workers;

        if (target == wl->worker->index)
                return false;
        if (command_post(&p->workers[target], CMD_ADOPT, NULL, l, fd, peer, 0) < 0)
                return false; /* serve it here rather than drop it */
        return true;
}

/* ---- commands, on the worker ---- */

static void worker_listener_add(Worker *w, PlaneListener *l) {
        WorkerListener *wl = &l->wl[w->index];
        ProxyPlane *p = w->plane;
        bool acceptor = l->acceptor == w->index;
        int r;

        r = proxy_new_on_loop(w->loop, acceptor ? l->fd : -1, on_pick, on_done, wl, &wl->proxy);
        if (r < 0) {
                log_error_errno(r, "Proxy worker %u cannot serve the listener on port %u", w->index, l->port);
                return;
        }
        proxy_set_stats(wl->proxy, &wl->stats);
        proxy_set_mirror(wl->proxy, on_mirror, on_mirror_done);
        proxy_set_timeouts(wl->proxy, p->connect_timeout_usec, p->response_head_timeout_usec);
        if (l->hold_timeout_usec > 0)
                proxy_set_hold(wl->proxy, l->hold_timeout_usec, on_hold);
        if (acceptor && p->n_workers > 1)
                proxy_set_accept_hook(wl->proxy, on_accept_hand_off);
        wl->next_active = w->listeners;
        w->listeners = wl;
        listener_ref(l); /* the worker's own, dropped at CMD_LISTENER_REMOVE or the stop */
}

static void worker_listener_drop(Worker *w, WorkerListener *wl) {
        for (WorkerListener **q = &w->listeners; *q; q = &(*q)->next_active)
                if (*q == wl) {
                        *q = wl->next_active;
                        break;
                }
        wl->proxy = proxy_free(wl->proxy);
        listener_unref(wl->listener);
}

static void worker_service_add(Worker *w, PlaneService *s) {
        WorkerService *ws = &s->ws[w->index];
        WorkerListener *wl = &s->listener->wl[w->index];
        int slot = -1;

        if (!wl->proxy || wl->n_services == LISTENER_MAX_SERVICES) {
                log_error("Service %s: proxy worker %u cannot serve it (its listener is not served here, or full)",
                          s->name, w->index);
                return;
        }
        for (int i = 0; i < WORKER_SLOTS && slot < 0; i++)
                if (!w->slots[i])
                        slot = i;
        if (slot < 0) {
                log_error("Service %s: proxy worker %u serves %d services already", s->name, w->index, WORKER_SLOTS);
                return;
        }
        route_cursor_init(&ws->cursor);
        ws->slot = slot;
        ws->listener = wl;
        w->slots[slot] = ws;
        wl->services[wl->n_services++] = ws;
        service_ref(s); /* the worker's own, dropped at CMD_SERVICE_REMOVE or the stop */
}

static void worker_service_drop(Worker *w, WorkerService *ws) {
        WorkerListener *wl = ws->listener;

        /* What it holds is answered now: its hold counter goes with it. */
        proxy_release_held(wl->proxy, ws->slot, "The service was removed.");
        for (size_t i = 0; i < wl->n_services; i++)
                if (wl->services[i] == ws) {
                        memmove(wl->services + i, wl->services + i + 1, (wl->n_services - i - 1) * sizeof *wl->services);
                        wl->n_services--;
                        break;
                }
        w->slots[ws->slot] = NULL;
        ws->slot = -1;
        ws->listener = NULL;
        route_cursor_done(&ws->cursor);
        service_unref(ws->service);
}

static void worker_inflight(Worker *w, const struct sockaddr_in *backend, uint64_t cookie) {
        PlaneEvent e = {.kind = PLANE_EVENT_INFLIGHT, .worker = w->index, .backend = *backend, .cookie = cookie};

        /* The newest tables first: what they leave out gets nothing new from here on. */
        for (int i = 0; i < WORKER_SLOTS; i++)
                if (w->slots[i])
                        route_cursor_sync(&w->slots[i]->cursor, &w->slots[i]->service->slot);
        for (WorkerListener *wl = w->listeners; wl; wl = wl->next_active)
                e.count += proxy_backend_inflight(wl->proxy, backend);
        event_post(w->plane, &e);
}

static void worker_command(Worker *w, Command *c) {
        WorkerService *ws = c->service ? &c->service->ws[w->index] : NULL;
        WorkerListener *wl = c->listener ? &c->listener->wl[w->index] : NULL;

        switch (c->kind) {
        case CMD_LISTENER_ADD:
                worker_listener_add(w, c->listener);
                break;
        case CMD_LISTENER_REMOVE:
                if (wl->proxy)
                        worker_listener_drop(w, wl);
                break;
        case CMD_SERVICE_ADD:
                worker_service_add(w, c->service);
                break;
        case CMD_SERVICE_REMOVE:
                if (ws->listener)
                        worker_service_drop(w, ws);
                break;
        case CMD_ADOPT:
                if (wl->proxy)
                        (void) proxy_add_client(wl->proxy, c->fd, &c->addr);
                else
                        close(c->fd); /* the listener went meanwhile */
                break;
        case CMD_INFLIGHT:
                worker_inflight(w, &c->addr, c->cookie);
                break;
        case CMD_BACKEND_DOWN:
                for (int i = 0; i < WORKER_SLOTS; i++)
                        if (w->slots[i])
                                route_cursor_sync(&w->slots[i]->cursor, &w->slots[i]->service->slot);
                for (WorkerListener *a = w->listeners; a; a = a->next_active)
                        proxy_backend_down(a->proxy, &c->addr);
                break;
        case CMD_RELEASE:
                if (ws->listener) {
                        ws->wake_asked = 0; /* the next held request asks again */
                        route_cursor_sync(&ws->cursor, &c->service->slot);
                        proxy_release_held(ws->listener->proxy, ws->slot, c->failure);
                }
                break;
        case CMD_STOP:
                w->stop = true;
                break;
        }
        if (c->service)
                service_unref(c->service);
        listener_unref(c->listener);
        free(c->failure);
        free(c);
}

static int on_inbox(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        Command *list;

        eventfd_drain(fd);
        pthread_mutex_lock(&w->lock);
        list = w->inbox;
        w->inbox = NULL;
        w->inbox_tail = &w->inbox;
        pthread_mutex_unlock(&w->lock);
        while (list) {
                Command *next = list->next;
                worker_command(w, list);
                list = next;
        }
        return 0;
}

/* The worker's loop: one epoll_wait per wakeup over every socket of its proxies plus sd-event's
 * own fd (its listener, its inbox, its few timers), which is run only when that fd is ready. */
static void *worker_main(void *arg) {
        Worker *w = arg;
        sigset_t all;
        int r, sd_fd;

        /* Signals are the control loop's. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        r = sd_event_new(&w->event);
        if (r >= 0)
                r = proxy_loop_new(w->event, false, &w->loop);
        if (r >= 0)
                r = sd_event_add_io(w->event, NULL, w->inbox_fd, EPOLLIN, on_inbox, w);
        if (r < 0) {
                log_error_errno(r, "Proxy worker %u cannot start", w->index);
                return NULL;
        }
        sd_fd = sd_event_get_fd(w->event);
        while (sd_event_run(w->event, 0) > 0) /* also arms sd-event's timers */
                ;
        while (!w->stop) {
                bool sd_ready = false;

                r = proxy_loop_run(w->loop, -1, sd_fd, &sd_ready);
                if (r < 0) {
                        log_error_errno(r, "Proxy worker %u: epoll failed", w->index);
                        break;
                }
                if (sd_ready)
                        while (!w->stop && sd_event_run(w->event, 0) > 0)
                                ;
        }
        for (int i = 0; i < WORKER_SLOTS; i++)
                if (w->slots[i])
                        worker_service_drop(w, w->slots[i]);
        while (w->listeners)
                worker_listener_drop(w, w->listeners);
        w->loop = proxy_loop_unref(w->loop);
        w->event = sd_event_unref(w->event);
        return NULL;
}

/* ---- the plane (control thread) ---- */

int proxy_plane_new(sd_event *control, unsigned threads, PlaneEventFn fn, void *userdata, ProxyPlane **ret) {
        ProxyPlane *p;
        int r;

        if (threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                threads = n > 0 ? (unsigned) n : 1;
        }
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->fn = fn;
        p->userdata = userdata;
        pthread_mutex_init(&p->events_lock, NULL);
        p->events_tail = &p->events;
        p->events_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        p->workers = calloc(threads, sizeof *p->workers);
        if (p->events_fd < 0 || !p->workers) {
                r = p->events_fd < 0 ? -errno : -ENOMEM;
                goto fail;
        }
        r = sd_event_add_io(control, &p->events_source, p->events_fd, EPOLLIN, on_events, p);
        if (r < 0)
                goto fail;
        for (unsigned i = 0; i < threads; i++) {
                Worker *w = &p->workers[i];

                w->plane = p;
                w->index = i;
                pthread_mutex_init(&w->lock, NULL);
                w->inbox_tail = &w->inbox;
                w->inbox_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (w->inbox_fd < 0) {
                        r = -errno;
                        goto fail;
                }
                p->n_workers++;
                r = -pthread_create(&w->thread, NULL, worker_main, w);
                if (r < 0)
                        goto fail;
                w->started = true;
                {
                        char name[16]; /* the kernel's limit: 15 characters */
                        snprintf(name, sizeof name, "aviary-proxy%u", i % 1000);
                        (void) pthread_setname_np(w->thread, name);
                }
        }
        *ret = p;
        return 0;
fail:
        proxy_plane_free(p);
        return r;
}

ProxyPlane *proxy_plane_free(ProxyPlane *p) {
        if (!p)
                return NULL;
        for (unsigned i = 0; i < p->n_workers; i++)
                if (p->workers[i].started)
                        (void) command_post(&p->workers[i], CMD_STOP, NULL, NULL, -1, NULL, 0);
        for (unsigned i = 0; i < p->n_workers; i++) {
                Worker *w = &p->workers[i];
                if (w->started)
                        pthread_join(w->thread, NULL);
                while (w->inbox) { /* handed-off clients nobody took */
                        Command *c = w->inbox;
                        w->inbox = c->next;
                        if (c->kind == CMD_ADOPT)
                                close(c->fd);
                        if (c->service)
                                service_unref(c->service);
                        listener_unref(c->listener);
                        free(c->failure);
                        free(c);
                }
                if (w->inbox_fd >= 0)
                        close(w->inbox_fd);
                pthread_mutex_destroy(&w->lock);
        }
        sd_event_source_disable_unref(p->events_source);
        while (p->events) {
                EventItem *e = p->events;
                p->events = e->next;
                service_unref(e->event.service);
                free(e);
        }
        if (p->events_fd >= 0)
                close(p->events_fd);
        pthread_mutex_destroy(&p->events_lock);
        free(p->workers);
        free(p);
        return NULL;
}

unsigned proxy_plane_threads(const ProxyPlane *p) {
        return p->n_workers;
}

int proxy_plane_listener_add(ProxyPlane *p, int fd, PlaneListener **ret) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        PlaneListener *l = calloc(1, sizeof *l);

        if (!l || !(l->wl = calloc(p->n_workers, sizeof *l->wl))) {
                free(l);
                close(fd);
                return -ENOMEM;
        }
        l->plane = p;
        atomic_init(&l->n_ref, 1);
        l->fd = fd;
        l->hold_timeout_usec = p->hold_limit > 0 ? p->hold_timeout_usec : 0;
        if (getsockname(fd, (struct sockaddr *) &sa, &len) == 0 && sa.sin_family == AF_INET)
                l->port = ntohs(sa.sin_port);
        for (unsigned i = 0; i < p->n_workers; i++) {
                l->wl[i].listener = l;
                l->wl[i].worker = &p->workers[i];
        }
        /* Listeners spread their accepting over the workers. The acceptor is told last, so a
         * connection it hands over never reaches a worker before that worker has the listener. */
        l->acceptor = p->next_acceptor++ % p->n_workers;
        for (unsigned k = 1; k <= p->n_workers; k++) {
                unsigned i = (l->acceptor + k) % p->n_workers;
                if (command_post(&p->workers[i], CMD_LISTENER_ADD, NULL, l, -1, NULL, 0) < 0)
                        log_oom(); /* that worker does not serve it; the others do */
        }
        *ret = l;
        return 0;
}

void proxy_plane_listener_remove(PlaneListener *l) {
        ProxyPlane *p;

        if (!l)
                return;
        p = l->plane;
        for (unsigned i = 0; i < p->n_workers; i++)
                (void) command_post(&p->workers[i], CMD_LISTENER_REMOVE, NULL, l, -1, NULL, 0);
        listener_unref(l);
}

unsigned proxy_plane_listener_port(const PlaneListener *l) {
        return l->port;
}

int proxy_plane_listener_fd(const PlaneListener *l) {
        return l->fd;
}

int proxy_plane_service_join(ProxyPlane *p, const char *name, PlaneListener *l, void *userdata, PlaneService **ret) {
        PlaneService *s = calloc(1, sizeof *s);

        if (!s || !(s->name = strdup(name)) || !(s->ws = calloc(p->n_workers, sizeof *s->ws))) {
                if (s)
                        free(s->name);
                free(s);
                return -ENOMEM;
        }
        s->plane = p;
        atomic_init(&s->n_ref, 1);
        s->listener = listener_ref(l);
        s->userdata = userdata;
        s->hold_limit = p->hold_limit;
        route_slot_init(&s->slot);
        for (unsigned i = 0; i < p->n_workers; i++) {
                s->ws[i].service = s;
                s->ws[i].worker = &p->workers[i];
                s->ws[i].slot = -1;
        }
        /* After the listener's own commands on every worker's queue, so it is there first. */
        for (unsigned i = 0; i < p->n_workers; i++)
                if (command_post(&p->workers[i], CMD_SERVICE_ADD, s, NULL, -1, NULL, 0) < 0)
                        log_oom(); /* that worker does not serve it; the others do */
        *ret = s;
        return 0;
}

int proxy_plane_service_add(ProxyPlane *p, const char *name, int fd, void *userdata, PlaneService **ret) {
        PlaneListener *l;
        int r = proxy_plane_listener_add(p, fd, &l);

        if (r < 0)
                return r;
        r = proxy_plane_service_join(p, name, l, userdata, ret);
        if (r < 0) {
                proxy_plane_listener_remove(l);
                return r;
        }
        (*ret)->own_listener = true;
        listener_unref(l); /* the service holds it */
        return 0;
}

void proxy_plane_service_remove(PlaneService *s) {
        ProxyPlane *p;

        if (!s)
                return;
        p = s->plane;
        s->removed = true;
        for (unsigned i = 0; i < p->n_workers; i++)
                (void) command_post(&p->workers[i], CMD_SERVICE_REMOVE, s, NULL, -1, NULL, 0);
        if (s->own_listener)
                for (unsigned i = 0; i < p->n_workers; i++)
                        (void) command_post(&p->workers[i], CMD_LISTENER_REMOVE, NULL, s->listener, -1, NULL, 0);
        service_unref(s);
}

void *proxy_plane_service_userdata(const PlaneService *s) {
        return s->userdata;
}

const char *proxy_plane_service_name(const PlaneService *s) {
        return s->name;
}

unsigned proxy_plane_service_port(const PlaneService *s) {
        return s->listener->port;
}

int proxy_plane_service_fd(const PlaneService *s) {
        return s->listener->fd;
}

void proxy_plane_publish(PlaneService *s, RouteTable *t) {
        route_slot_publish(&s->slot, t);
}

void proxy_plane_set_hold(ProxyPlane *p, unsigned limit, uint64_t timeout_usec) {
        p->hold_limit = limit;
        p->hold_timeout_usec = timeout_usec;
}

void proxy_plane_release(PlaneService *s, const char *failure) {
        ProxyPlane *p = s->plane;

        for (unsigned i = 0; i < p->n_workers; i++) {
                Command *c = calloc(1, sizeof *c);
                if (!c || (failure && !(c->failure = strdup(failure)))) {
                        free(c);
                        log_oom(); /* that worker's held requests wait out their timeout */
                        continue;
                }
                c->kind = CMD_RELEASE;
                c->service = service_ref(s);
                c->fd = -1;
                worker_post(&p->workers[i], c);
        }
}

uint64_t proxy_plane_last_request(PlaneService *s) {
        uint64_t last = 0;

        for (unsigned i = 0; i < s->plane->n_workers; i++) {
                uint64_t t = atomic_load_explicit(&s->ws[i].last_request, memory_order_relaxed);
                if (t > last)
                        last = t;
        }
        return last;
}

unsigned proxy_plane_held(PlaneService *s) {
        return atomic_load_explicit(&s->held, memory_order_relaxed);
}

void proxy_plane_metrics(PlaneService *s, ProxyMetrics *ret) {
        memset(ret, 0, sizeof *ret);
        for (unsigned i = 0; i < s->plane->n_workers; i++)
                live_metrics_add_to(&s->ws[i].metrics, ret);
}

void proxy_plane_worker_metrics(PlaneService *s, unsigned worker, ProxyMetrics *ret) {
        memset(ret, 0, sizeof *ret);
        if (worker < s->plane->n_workers)
                live_metrics_add_to(&s->ws[worker].metrics, ret);
}

void proxy_plane_stats(PlaneService *s, PlaneStats *ret) {
        *ret = (PlaneStats) {};
        for (unsigned i = 0; i < s->plane->n_workers; i++) {
                const ProxyStats *st = &s->listener->wl[i].stats;
                uint64_t accepted = atomic_load_explicit(&st->clients_accepted, memory_order_relaxed);
                uint64_t closed = atomic_load_explicit(&st->clients_closed, memory_order_relaxed);
                ret->connections_open += accepted > closed ? accepted - closed : 0;
                ret->connections_accepted += accepted;
                ret->bytes_received += atomic_load_explicit(&st->bytes_received, memory_order_relaxed);
                ret->bytes_sent += atomic_load_explicit(&st->bytes_sent, memory_order_relaxed);
        }
}

uint64_t proxy_plane_worker_requests(PlaneService *s, unsigned worker) {
        ProxyMetrics m;
        uint64_t n = 0;

        proxy_plane_worker_metrics(s, worker, &m);
        for (int g = 0; g < _SPLIT_GROUP_MAX; g++)
                n += metrics_total(&m.group[g]);
        return n;
}

void proxy_plane_inflight_query(ProxyPlane *p, const struct sockaddr_in *backend, uint64_t cookie) {
        for (unsigned i = 0; i < p->n_workers; i++)
                (void) command_post(&p->workers[i], CMD_INFLIGHT, NULL, NULL, -1, backend, cookie);
}

void proxy_plane_backend_down(ProxyPlane *p, const struct sockaddr_in *backend) {
        for (unsigned i = 0; i < p->n_workers; i++)
                (void) command_post(&p->workers[i], CMD_BACKEND_DOWN, NULL, NULL, -1, backend, 0);
}

void proxy_plane_set_timeouts(ProxyPlane *p, uint64_t connect_usec, uint64_t response_head_usec) {
        p->connect_timeout_usec = connect_usec;
        p->response_head_timeout_usec = response_head_usec;
}
