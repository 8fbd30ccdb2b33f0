/* libvirt's event loop contract (handles and timeouts) on top of sd-event.
 * libvirt calls these hooks from any of its threads (a QEMU monitor thread queues a domain
 * event and arms a 0 ms timer), but sd-event is single-threaded. So a hook only edits a
 * record under a lock and wakes the loop through an eventfd; the loop thread alone touches
 * sd-event sources, and calls a record's free callback there, outside any libvirt callback. */
#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "log.h"
#include "timeutil.h"
#include "virt.h"

typedef struct Watch {
        int id;
        bool is_timer;
        int fd;
        int events;   /* handle: VIR_EVENT_HANDLE_* (0 = paused); timer: period in ms, -1 = off */
        bool changed; /* the sd-event source does not reflect `events` yet */
        bool removed; /* never call back again; free on the loop thread */
        virEventHandleCallback handle_cb;
        virEventTimeoutCallback timeout_cb;
        void *opaque;
        virFreeCallback ff;
        sd_event_source *source;
        struct Watch *next;
} Watch;

static struct {
        pthread_mutex_t lock;
        sd_event *loop;
        int wake_fd;
        sd_event_source *wake_source;
        /* Oldest first, so a removal is applied before a later add on the same fd number. */
        Watch *watches;
        int last_id;
} ev = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake_fd = -1};

static void wake(void) {
        uint64_t one = 1;

        /* Only fails when the counter is saturated, which still means "awake". */
        (void) !write(ev.wake_fd, &one, sizeof one);
}

/* Runs under ev.lock. */
static Watch *watch_find(int id) {
        for (Watch *w = ev.watches; w; w = w->next)
                if (w->id == id && !w->removed)
                        return w;
        return NULL;
}

static uint32_t epoll_from_virt(int events) {
        return (events & VIR_EVENT_HANDLE_READABLE ? EPOLLIN : 0) |
               (events & VIR_EVENT_HANDLE_WRITABLE ? EPOLLOUT : 0) |
               (events & VIR_EVENT_HANDLE_ERROR ? EPOLLERR : 0) |
               (events & VIR_EVENT_HANDLE_HANGUP ? EPOLLHUP : 0);
}

static int virt_from_epoll(uint32_t revents) {
        return (revents & EPOLLIN ? VIR_EVENT_HANDLE_READABLE : 0) |
               (revents & EPOLLOUT ? VIR_EVENT_HANDLE_WRITABLE : 0) |
               (revents & EPOLLERR ? VIR_EVENT_HANDLE_ERROR : 0) |
               (revents & EPOLLHUP ? VIR_EVENT_HANDLE_HANGUP : 0);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Watch *w = userdata;
        virEventHandleCallback cb;
        void *opaque;
        int id;

        pthread_mutex_lock(&ev.lock);
        if (w->removed || w->changed) {
                /* A pending change may have paused this handle; on_wake re-arms it. */
                pthread_mutex_unlock(&ev.lock);
                return 0;
        }
        cb = w->handle_cb, opaque = w->opaque, id = w->id;
        pthread_mutex_unlock(&ev.lock);

        cb(id, fd, virt_from_epoll(revents), opaque);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Watch *w = userdata;
        virEventTimeoutCallback cb;
        void *opaque;
        int id;

        pthread_mutex_lock(&ev.lock);
        if (w->removed || w->changed || w->events < 0) {
                pthread_mutex_unlock(&ev.lock);
                return 0;
        }
        /* Period 0 means "every loop iteration": an expired time fires again next round,
         * after the other pending sources had their turn. */
        (void) sd_event_source_set_time(s,
                                        w->events == 0 ? usec : now_monotonic() + w->events * USEC_PER_MSEC);
        cb = w->timeout_cb, opaque = w->opaque, id = w->id;
        pthread_mutex_unlock(&ev.lock);

        cb(id, opaque);
        return 0;
}

/* Loop thread, under ev.lock: make the sd-event source match the record. */
static int watch_apply(Watch *w) {
        int r;

        if (w->is_timer) {
                if (!w->source) {
                        /* Accuracy 1 µs: with sd-event's default of 250 ms, every libvirt event
                         * flush (a 0 ms timer) could wait that long. */
                        r = sd_event_add_time(ev.loop, &w->source, CLOCK_MONOTONIC, 0, 1, on_timer, w);
                        if (r < 0)
                                return r;
                }
                if (w->events >= 0)
                        (void) sd_event_source_set_time(w->source,
                                                        now_monotonic() + w->events * USEC_PER_MSEC);
        } else {
                if (!w->source)
                        r = sd_event_add_io(ev.loop, &w->source, w->fd, epoll_from_virt(w->events), on_io,
                                            w);
                else
                        r = sd_event_source_set_io_events(w->source, epoll_from_virt(w->events));
                if (r < 0)
                        return r;
        }
        /* An fd watched for no events would still report EPOLLHUP: take it out of epoll. */
        bool on = w->is_timer ? w->events >= 0 : w->events != 0;
        return sd_event_source_set_enabled(w->source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Watch *dead = NULL;
        uint64_t n;
        int r;

        (void) !read(fd, &n, sizeof n);

        pthread_mutex_lock(&ev.lock);
        for (Watch **p = &ev.watches; *p;) {
                Watch *w = *p;

                if (w->removed) {
                        *p = w->next;
                        w->source = sd_event_source_disable_unref(w->source);
                        w->next = dead;
                        dead = w;
                        continue;
                }
                if (w->changed) {
                        w->changed = false;
                        r = watch_apply(w);
                        if (r < 0)
                                log_error_errno(r, "Cannot watch libvirt %s %d",
                                                w->is_timer ? "timer" : "fd", w->is_timer ? w->id : w->fd);
                }
                p = &w->next;
        }
        pthread_mutex_unlock(&ev.lock);

        /* A free callback may re-enter libvirt, which may call our hooks: not under the lock. */
        while (dead) {
                Watch *w = dead;

                dead = w->next;
                if (w->ff)
                        w->ff(w->opaque);
                free(w);
        }
        return 0;
}

static int watch_add(Watch *w) {
        Watch **p;
        int id;

        pthread_mutex_lock(&ev.lock);
        id = w->id = ++ev.last_id;
        w->changed = true;
        for (p = &ev.watches; *p; p = &(*p)->next)
                ;
        *p = w;
        pthread_mutex_unlock(&ev.lock);
        /* From here another thread may remove and the loop free W: use the copy. */
        wake();
        return id;
}

static void watch_update(int id, int events) {
        Watch *w;

        pthread_mutex_lock(&ev.lock);
        w = watch_find(id);
        if (w) {
                w->events = events;
                w->changed = true;
        }
        pthread_mutex_unlock(&ev.lock);
        if (w)
                wake();
}

static int watch_remove(int id) {
        Watch *w;

        pthread_mutex_lock(&ev.lock);
        w = watch_find(id);
        if (w)
                w->removed = true;
        pthread_mutex_unlock(&ev.lock);
        if (!w)
                return -1;
        wake();
        return 0;
}

static int add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff) {
        Watch *w = calloc(1, sizeof *w);

        if (!w)
                return -1;
        *w = (Watch){.fd = fd, .events = events, .handle_cb = cb, .opaque = opaque, .ff = ff};
        return watch_add(w);
}

static int add_timeout(int period_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff) {
        Watch *w = calloc(1, sizeof *w);

        if (!w)
                return -1;
        *w = (Watch){.is_timer = true,
                     .fd = -1,
                     .events = period_ms,
                     .timeout_cb = cb,
                     .opaque = opaque,
                     .ff = ff};
        return watch_add(w);
}

int virt_event_loop_attach(sd_event *e) {
        int r;

        if (ev.loop)
                return -EBUSY;
        ev.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ev.wake_fd < 0)
                return -errno;
        r = sd_event_add_io(e, &ev.wake_source, ev.wake_fd, EPOLLIN, on_wake, NULL);
        if (r < 0) {
                close(ev.wake_fd);
                ev.wake_fd = -1;
                return r;
        }
        ev.loop = sd_event_ref(e);
        virEventRegisterImpl(add_handle, watch_update, watch_remove, add_timeout, watch_update,
                             watch_remove);
        return 0;
}
