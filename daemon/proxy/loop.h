/* The proxy's I/O loop: one private epoll set per thread that holds every client and upstream
 * socket of that thread's proxies, registered once, edge-triggered (never an epoll_ctl per
 * request), and drained in batches: one epoll_wait hands over all ready sockets at once.
 * Deadlines (connect, response head, idle) are plain numbers on the connections, checked when
 * the earliest one is due, so no timer is touched per request.
 *
 * Two ways to drive it: attached to an sd-event loop (the epoll fd is one sd-event I/O source,
 * the earliest deadline one sd-event timer), as the unit tests and single-loop users do; or by
 * a proxy worker thread (plane.c) that calls proxy_loop_run() itself and has sd-event's own fd
 * in the set, so a wakeup costs one epoll_wait, not sd-event's prepare/wait/dispatch round. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct ProxyLoop ProxyLoop;

/* A socket in the set: FN gets the epoll events that arrived for it. Embed it in the object
 * that owns the socket. */
typedef struct IoWatch IoWatch;
struct IoWatch {
        void (*fn)(IoWatch *w, uint32_t revents); /* NULL once released */
        IoWatch *next_released;
};

/* Something with deadlines (a Proxy): EXPIRE runs when the loop's earliest deadline is due,
 * handles what expired at NOW and returns its next deadline (UINT64_MAX: none). */
typedef struct DeadlineOwner DeadlineOwner;
struct DeadlineOwner {
        uint64_t (*expire)(DeadlineOwner *o, uint64_t now);
        DeadlineOwner *next, *prev;
};

/* ATTACH: register the set and the deadline timer with E (sd-event drives it); otherwise the
 * caller drives it with proxy_loop_run() and E serves only for its other sources. The loop
 * keeps a reference on E. */
int proxy_loop_new(sd_event *e, bool attach, ProxyLoop **ret);
ProxyLoop *proxy_loop_ref(ProxyLoop *l);
ProxyLoop *proxy_loop_unref(ProxyLoop *l);
sd_event *proxy_loop_event(ProxyLoop *l);

/* Adds FD to the set, edge-triggered for input, output and hang-up, with W called for its
 * events. The caller closes FD (which removes it) and keeps W alive until then. */
int proxy_loop_add(ProxyLoop *l, int fd, IoWatch *w);
/* Removes FD before it closes, when W may be freed while FD stays open elsewhere. */
void proxy_loop_remove(ProxyLoop *l, int fd);

/* Frees the object W is the first member of (malloc'd), after its socket was closed. During a
 * batch of events the memory is kept until the batch ends: an event of the same batch may
 * still name it, and finds it released instead of freed. */
void proxy_loop_release(ProxyLoop *l, IoWatch *w);

void proxy_loop_add_owner(ProxyLoop *l, DeadlineOwner *o);
void proxy_loop_remove_owner(ProxyLoop *l, DeadlineOwner *o);
/* Makes sure the loop wakes by USEC (CLOCK_MONOTONIC): cheap when a wakeup is already due
 * earlier, which is the common case (deadlines only move later as requests go on). */
void proxy_loop_want(ProxyLoop *l, uint64_t usec);

/* CLOCK_MONOTONIC in microseconds (vDSO: no system call). */
uint64_t proxy_now(void);

/* Driven mode: waits up to TIMEOUT_MSEC (-1: until the next deadline or event) for the set,
 * handles every ready socket and every due deadline. EXTRA_FD, when >= 0, is also in the set
 * (sd-event's own fd): *RET_EXTRA_READY says it became readable. Returns events handled or
 * -errno. */
int proxy_loop_run(ProxyLoop *l, int timeout_msec, int extra_fd, bool *ret_extra_ready);
