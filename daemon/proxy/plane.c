/* The data plane's worker threads (plane.h). A worker owns everything it touches on the request
 * path: its loops, its proxies, its cursors, its counters. What crosses threads goes through
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

typedef enum CommandKind {
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
        PlaneService *service; /* holds a reference (ADD, REMOVE, ADOPT) */
        int fd;                /* ADOPT */
        struct sockaddr_in addr; /* ADOPT: the peer; INFLIGHT, BACKEND_DOWN: the backend */
        uint64_t cookie;
        char *failure; /* RELEASE: why the wake failed; NULL it woke */
        struct Command *next;
} Command;

/* One service as one worker serves it. Only that worker touches PROXY and CURSOR; METRICS are
 * written by it and read by control. */
struct WorkerService {
        PlaneService *service;
        Worker *worker;
        Proxy *proxy; /* NULL until the worker added it, and after it removed it */
        RouteCursor cursor;
        LiveMetrics metrics;
        _Atomic uint64_t last_request; /* proxy_now() of the last pick or outcome; written by the worker */
        uint64_t wake_asked;           /* the worker's: the table generation it asked a wake for (0 none) */
        WorkerService *next_active; /* the worker's list of services it serves */
};

struct PlaneService {
        ProxyPlane *plane;
        atomic_uint n_ref;
        char *name;
        int fd;
        unsigned port;
        unsigned acceptor;    /* the worker that accepts */
        unsigned next_target; /* the acceptor's: who gets the next connection */
        void *userdata;
        bool removed; /* control's: proxy_plane_service_remove() was called (events for it are dropped) */
        RouteSlot slot;
        WorkerService *ws; /* one per worker */
        _Atomic unsigned held; /* requests held over every worker (proxy_set_hold) */
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
        WorkerService *active;
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

static void service_unref(PlaneService *s) {
        if (!s || atomic_fetch_sub_explicit(&s->n_ref, 1, memory_order_acq_rel) != 1)
                return;
        route_slot_done(&s->slot);
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

static int command_post(Worker *w, CommandKind kind, PlaneService *s, int fd, const struct sockaddr_in *addr,
                        uint64_t cookie) {
        Command *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->kind = kind;
        c->service = s ? service_ref(s) : NULL;
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

/* A relaxed store of the worker's own value: no locked instruction on the request path. */
static void note_request(WorkerService *ws) {
        atomic_store_explicit(&ws->last_request, proxy_now(), memory_order_relaxed);
}

static int on_pick(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend, int *ret_group) {
        WorkerService *ws = userdata;
        const RouteTable *t;
        int r;

        route_cursor_sync(&ws->cursor, &ws->service->slot);
        note_request(ws);
        r = route_pick(&ws->cursor, req, ret_backend, ret_group);
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
        return -EAGAIN;
}

static void on_done(void *userdata, int group, const struct sockaddr_in *backend, int status, uint64_t latency_usec) {
        WorkerService *ws = userdata;
        bool failed = status == 0 || status >= 500;

        note_request(ws);
        if (group < 0 || group >= _SPLIT_GROUP_MAX)
                return;
        live_metrics_record(&ws->metrics, (SplitGroup) group, status, latency_usec);
        if (route_outcome(&ws->cursor, group, backend, failed)) {
                PlaneEvent e = {.kind = PLANE_EVENT_EJECT, .service = ws->service, .worker = ws->worker->index,
                                .group = group, .backend = *backend};
                event_post(ws->worker->plane, &e);
        }
}

/* The acceptor: every connection goes to the workers in turn, this one included. */
static bool on_accept_hand_off(void *userdata, int fd, const struct sockaddr_in *peer) {
        WorkerService *ws = userdata;
        PlaneService *s = ws->service;
        ProxyPlane *p = s->plane;
        unsigned target = s->next_target++ % p->n_workers;

        if (target == ws->worker->index)
                return false;
        if (command_post(&p->workers[target], CMD_ADOPT, s, fd, peer, 0) < 0)
                return false; /* serve it here rather than drop it */
        return true;
}

/* ---- commands, on the worker ---- */

static void worker_service_add(Worker *w, PlaneService *s) {
        WorkerService *ws = &s->ws[w->index];
        ProxyPlane *p = w->plane;
        bool acceptor = s->acceptor == w->index;
        int r;

        route_cursor_init(&ws->cursor);
        r = proxy_new_on_loop(w->loop, acceptor ? s->fd : -1, on_pick, on_done, ws, &ws->proxy);
        if (r < 0) {
                log_error_errno(r, "Service %s: proxy worker %u cannot serve it", s->name, w->index);
                return;
        }
        proxy_set_timeouts(ws->proxy, p->connect_timeout_usec, p->response_head_timeout_usec);
        if (p->hold_limit > 0)
                proxy_set_hold(ws->proxy, &s->held, p->hold_limit, p->hold_timeout_usec);
        if (acceptor && p->n_workers > 1)
                proxy_set_accept_hook(ws->proxy, on_accept_hand_off);
        ws->next_active = w->active;
        w->active = ws;
        service_ref(s); /* the worker's own, dropped at CMD_SERVICE_REMOVE or the stop */
}

static void worker_service_drop(Worker *w, WorkerService *ws) {
        for (WorkerService **q = &w->active; *q; q = &(*q)->next_active)
                if (*q == ws) {
                        *q = ws->next_active;
                        break;
                }
        ws->proxy = proxy_free(ws->proxy);
        route_cursor_done(&ws->cursor);
        service_unref(ws->service);
}

static void worker_inflight(Worker *w, const struct sockaddr_in *backend, uint64_t cookie) {
        PlaneEvent e = {.kind = PLANE_EVENT_INFLIGHT, .worker = w->index, .backend = *backend, .cookie = cookie};

        for (WorkerService *ws = w->active; ws; ws = ws->next_active) {
                /* The newest tables first: what they leave out gets nothing new from here on. */
                route_cursor_sync(&ws->cursor, &ws->service->slot);
                e.count += proxy_backend_inflight(ws->proxy, backend);
        }
        event_post(w->plane, &e);
}

static void worker_command(Worker *w, Command *c) {
        WorkerService *ws = c->service ? &c->service->ws[w->index] : NULL;

        switch (c->kind) {
        case CMD_SERVICE_ADD:
                worker_service_add(w, c->service);
                break;
        case CMD_SERVICE_REMOVE:
                if (ws->proxy)
                        worker_service_drop(w, ws);
                break;
        case CMD_ADOPT:
                if (ws->proxy)
                        (void) proxy_add_client(ws->proxy, c->fd, &c->addr);
                else
                        close(c->fd); /* the service went meanwhile */
                break;
        case CMD_INFLIGHT:
                worker_inflight(w, &c->addr, c->cookie);
                break;
        case CMD_BACKEND_DOWN:
                for (WorkerService *a = w->active; a; a = a->next_active) {
                        route_cursor_sync(&a->cursor, &a->service->slot);
                        proxy_backend_down(a->proxy, &c->addr);
                }
                break;
        case CMD_RELEASE:
                if (ws->proxy) {
                        ws->wake_asked = 0; /* the next held request asks again */
                        route_cursor_sync(&ws->cursor, &c->service->slot);
                        proxy_release_held(ws->proxy, c->failure);
                }
                break;
        case CMD_STOP:
                w->stop = true;
                break;
        }
        if (c->service)
                service_unref(c->service);
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
        while (w->active)
                worker_service_drop(w, w->active);
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
                        (void) command_post(&p->workers[i], CMD_STOP, NULL, -1, NULL, 0);
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

int proxy_plane_service_add(ProxyPlane *p, const char *name, int fd, void *userdata, PlaneService **ret) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        PlaneService *s;

        s = calloc(1, sizeof *s);
        if (!s || !(s->name = strdup(name)) || !(s->ws = calloc(p->n_workers, sizeof *s->ws))) {
                if (s)
                        free(s->name);
                free(s);
                close(fd);
                return -ENOMEM;
        }
        s->plane = p;
        atomic_init(&s->n_ref, 1);
        s->fd = fd;
        s->userdata = userdata;
        if (getsockname(fd, (struct sockaddr *) &sa, &len) == 0 && sa.sin_family == AF_INET)
                s->port = ntohs(sa.sin_port);
        route_slot_init(&s->slot);
        for (unsigned i = 0; i < p->n_workers; i++) {
                s->ws[i].service = s;
                s->ws[i].worker = &p->workers[i];
        }
        /* Services spread their accepting over the workers. The acceptor is told last, so a
         * connection it hands over never reaches a worker before that worker has the service. */
        s->acceptor = p->next_acceptor++ % p->n_workers;
        for (unsigned k = 1; k <= p->n_workers; k++) {
                unsigned i = (s->acceptor + k) % p->n_workers;
                if (command_post(&p->workers[i], CMD_SERVICE_ADD, s, -1, NULL, 0) < 0)
                        log_oom(); /* that worker does not serve it; the others do */
        }
        *ret = s;
        return 0;
}

void proxy_plane_service_remove(PlaneService *s) {
        ProxyPlane *p;

        if (!s)
                return;
        p = s->plane;
        s->removed = true;
        for (unsigned i = 0; i < p->n_workers; i++)
                (void) command_post(&p->workers[i], CMD_SERVICE_REMOVE, s, -1, NULL, 0);
        service_unref(s);
}

void *proxy_plane_service_userdata(const PlaneService *s) {
        return s->userdata;
}

const char *proxy_plane_service_name(const PlaneService *s) {
        return s->name;
}

unsigned proxy_plane_service_port(const PlaneService *s) {
        return s->port;
}

int proxy_plane_service_fd(const PlaneService *s) {
        return s->fd;
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
                (void) command_post(&p->workers[i], CMD_INFLIGHT, NULL, -1, backend, cookie);
}

void proxy_plane_backend_down(ProxyPlane *p, const struct sockaddr_in *backend) {
        for (unsigned i = 0; i < p->n_workers; i++)
                (void) command_post(&p->workers[i], CMD_BACKEND_DOWN, NULL, -1, backend, 0);
}

void proxy_plane_set_timeouts(ProxyPlane *p, uint64_t connect_usec, uint64_t response_head_usec) {
        p->connect_timeout_usec = connect_usec;
        p->response_head_timeout_usec = response_head_usec;
}
