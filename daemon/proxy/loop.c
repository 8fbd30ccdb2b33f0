/* The proxy's I/O loop (loop.h): a private epoll set drained in batches, and deadlines kept as
 * numbers with one wakeup armed at the earliest. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "macro.h"

#define LOOP_BATCH 256

struct ProxyLoop {
        unsigned n_ref;
        sd_event *event;
        int epfd;
        int extra_fd; /* registered level-triggered with a NULL watch (driven mode) */
        sd_event_source *io, *timer; /* attached mode only */
        uint64_t wake_at;            /* the earliest deadline asked for; UINT64_MAX none */
        unsigned dispatching;        /* inside a batch: released watches wait in RELEASED */
        IoWatch *released;
        DeadlineOwner *owners;
};

uint64_t proxy_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* One epoll_wait hands over events of many sockets; handling one may close and free another
 * whose event comes later in the same batch (a client freeing its upstream): such objects are
 * released, not freed, until the batch is done. */
static void loop_dispatch(ProxyLoop *l, const struct epoll_event *ev, int n, bool *ret_extra_ready) {
        l->dispatching++;
        for (int i = 0; i < n; i++) {
                IoWatch *w = ev[i].data.ptr;
                if (!w) {
                        if (ret_extra_ready)
                                *ret_extra_ready = true;
                        continue;
                }
                if (w->fn)
                        w->fn(w, ev[i].events);
        }
        if (--l->dispatching == 0)
                while (l->released) {
                        IoWatch *w = l->released;
                        l->released = w->next_released;
                        free(w);
                }
}

void proxy_loop_release(ProxyLoop *l, IoWatch *w) {
        if (!w)
                return;
        w->fn = NULL;
        if (!l || !l->dispatching) {
                free(w);
                return;
        }
        w->next_released = l->released;
        l->released = w;
}

static void loop_expire(ProxyLoop *l) {
        uint64_t now = proxy_now(), next = UINT64_MAX;

        if (l->wake_at > now)
                return;
        l->wake_at = UINT64_MAX;
        for (DeadlineOwner *o = l->owners, *after; o; o = after) {
                after = o->next; /* EXPIRE may not remove another owner, but may remove O */
                uint64_t d = o->expire(o, now);
                if (d < next)
                        next = d;
        }
        /* Owners may have asked for earlier wakeups while expiring: keep the earliest. */
        if (next < l->wake_at)
                proxy_loop_want(l, next);
}

static int on_epoll(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ProxyLoop *l = userdata;
        struct epoll_event ev[LOOP_BATCH];
        int n = epoll_wait(l->epfd, ev, LOOP_BATCH, 0);

        proxy_loop_ref(l);
        if (n > 0)
                loop_dispatch(l, ev, n, NULL);
        loop_expire(l);
        proxy_loop_unref(l);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ProxyLoop *l = userdata;

        proxy_loop_ref(l);
        loop_expire(l);
        proxy_loop_unref(l);
        return 0;
}

int proxy_loop_new(sd_event *e, bool attach, ProxyLoop **ret) {
        ProxyLoop *l = calloc(1, sizeof *l);
        int r;

        if (!l)
                return -ENOMEM;
        l->n_ref = 1;
        l->extra_fd = -1;
        l->wake_at = UINT64_MAX;
        l->event = sd_event_ref(e);
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0) {
                r = -errno;
                goto fail;
        }
        if (attach) {
                r = sd_event_add_io(e, &l->io, l->epfd, EPOLLIN, on_epoll, l);
                /* Accuracy 1 µs: deadlines such as a 200 ms connect timeout are meant as said. */
                if (r >= 0)
                        r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, l);
                if (r >= 0)
                        r = sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                if (r < 0)
                        goto fail;
        }
        *ret = l;
        return 0;
fail:
        proxy_loop_unref(l);
        return r;
}

ProxyLoop *proxy_loop_ref(ProxyLoop *l) {
        if (l)
                l->n_ref++;
        return l;
}

ProxyLoop *proxy_loop_unref(ProxyLoop *l) {
        if (!l || --l->n_ref > 0)
                return NULL;
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        if (l->epfd >= 0)
                close(l->epfd);
        sd_event_unref(l->event);
        free(l);
        return NULL;
}

sd_event *proxy_loop_event(ProxyLoop *l) {
        return l->event;
}

int proxy_loop_add(ProxyLoop *l, int fd, IoWatch *w) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = w};

        return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void proxy_loop_remove(ProxyLoop *l, int fd) {
        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void proxy_loop_add_owner(ProxyLoop *l, DeadlineOwner *o) {
        o->prev = NULL;
        o->next = l->owners;
        if (l->owners)
                l->owners->prev = o;
        l->owners = o;
}

void proxy_loop_remove_owner(ProxyLoop *l, DeadlineOwner *o) {
        if (o->prev)
                o->prev->next = o->next;
        else if (l->owners == o)
                l->owners = o->next;
        if (o->next)
                o->next->prev = o->prev;
        o->next = o->prev = NULL;
}

void proxy_loop_want(ProxyLoop *l, uint64_t usec) {
        if (usec >= l->wake_at)
                return;
        l->wake_at = usec;
        if (l->timer) {
                (void) sd_event_source_set_time(l->timer, usec);
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        }
}

int proxy_loop_run(ProxyLoop *l, int timeout_msec, int extra_fd, bool *ret_extra_ready) {
        struct epoll_event ev[LOOP_BATCH];
        int n;

        if (ret_extra_ready)
                *ret_extra_ready = false;
        if (extra_fd >= 0 && l->extra_fd != extra_fd) {
                struct epoll_event x = {.events = EPOLLIN, .data.ptr = NULL};
                if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, extra_fd, &x) < 0)
                        return -errno;
                l->extra_fd = extra_fd;
        }
        if (l->wake_at != UINT64_MAX) {
                uint64_t now = proxy_now();
                int until = l->wake_at <= now ? 0 : (int) ((l->wake_at - now + 999) / 1000);
                if (timeout_msec < 0 || until < timeout_msec)
                        timeout_msec = until;
        }
        n = epoll_wait(l->epfd, ev, LOOP_BATCH, timeout_msec);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        proxy_loop_ref(l);
        loop_dispatch(l, ev, n, ret_extra_ready);
        loop_expire(l);
        proxy_loop_unref(l);
        return n;
}
