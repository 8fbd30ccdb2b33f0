/* Scale to zero in the data plane: a service whose table says hold keeps its requests waiting
 * on their connections (and asks control to wake it), within its bounds: wake_queue (one more is
 * a 503 with Retry-After at once), wake_timeout (a 503 with Retry-After when it runs out). A
 * release after the wake sends every held request to the new table; a release with a failure
 * answers them 503 naming it, and the next request asks for a wake again.
 *
 * Two worker threads, a loopback backend, clients on threads of their own; nothing is timed:
 * the test waits for states (requests held, answers in) with generous limits. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plane.h"
#include "route-table.h"
#include "tap.h"

#define WORKERS 2
#define QUEUE 3

/* ---- a backend answering "B" ---- */

static void *backend_conn(void *arg) {
        int fd = (int) (intptr_t) arg;
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB";
        char buf[8192];
        size_t len = 0;

        for (;;) {
                char *end;
                ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (k <= 0)
                        break;
                len += (size_t) k;
                buf[len] = 0;
                while ((end = strstr(buf, "\r\n\r\n"))) {
                        size_t used = (size_t) (end + 4 - buf);
                        if (send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL) < 0)
                                goto out;
                        memmove(buf, buf + used, len - used + 1);
                        len -= used;
                }
        }
out:
        close(fd);
        return NULL;
}

static void *backend_main(void *arg) {
        int lfd = (int) (intptr_t) arg;

        for (;;) {
                pthread_t t;
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        return NULL;
                pthread_create(&t, NULL, backend_conn, (void *) (intptr_t) fd);
                pthread_detach(t);
        }
}

static int listen_loopback(unsigned *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -1;
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

/* ---- clients: one request each, the whole answer kept ---- */

typedef struct Fetch {
        unsigned port;
        pthread_t thread;
        char answer[4096];
        atomic_bool done;
} Fetch;

static void *fetch_main(void *arg) {
        Fetch *f = arg;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) f->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        static const char get[] = "GET / HTTP/1.1\r\nHost: hold\r\n\r\n";
        struct timeval tv = {.tv_sec = 60};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        size_t len = 0;

        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0 &&
            send(fd, get, sizeof get - 1, MSG_NOSIGNAL) == (ssize_t) (sizeof get - 1)) {
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                for (;;) {
                        char *end;
                        ssize_t k = recv(fd, f->answer + len, sizeof f->answer - 1 - len, 0);
                        if (k <= 0)
                                break;
                        len += (size_t) k;
                        f->answer[len] = 0;
                        /* Our backend's answers and the proxy's own are short: a head and its body. */
                        end = strstr(f->answer, "\r\n\r\n");
                        if (end && (strstr(f->answer, "Content-Length: 1\r\n") ? strlen(end + 4) >= 1
                                                                               : strchr(end + 4, '\n') != NULL))
                                break;
                }
        }
        if (fd >= 0)
                close(fd);
        atomic_store(&f->done, true);
        return NULL;
}

static void fetch_start(Fetch *f, unsigned port) {
        memset(f, 0, sizeof *f);
        f->port = port;
        pthread_create(&f->thread, NULL, fetch_main, f);
}

static void fetch_join(Fetch *f) {
        pthread_join(f->thread, NULL);
}

/* ---- the control loop ---- */

static unsigned wakes;
static PlaneService *woken;

static void on_event(void *userdata, const PlaneEvent *e) {
        if (e->kind == PLANE_EVENT_WAKE) {
                wakes++;
                woken = e->service;
        }
}

/* Runs the control loop until COND holds (at most about 60 s). */
#define PUMP_UNTIL(e, cond)                                                        \
        do {                                                                       \
                for (int _i = 0; _i < 6000 && !(cond); _i++)                       \
                        sd_event_run((e), 10 * 1000);                              \
        } while (0)

static RouteTable *hold_table(uint64_t generation) {
        RouteTable *t = route_table_new(0, 0);

        t->hold = true;
        t->generation = generation;
        return t;
}

static RouteTable *backend_table(unsigned port, uint64_t generation) {
        RouteTable *t = route_table_new(1, 0);
        RouteBackend *b = &t->group[SPLIT_STABLE].backend[0];

        b->addr = (struct sockaddr_in) {.sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        snprintf(b->id, sizeof b->id, "B");
        b->usable = b->healthy = true;
        t->generation = generation;
        return t;
}

static bool status_is(const Fetch *f, const char *status) {
        return strncmp(f->answer, status, strlen(status)) == 0;
}

int main(void) {
        sd_event *e = NULL;
        ProxyPlane *plane = NULL;
        PlaneService *svc = NULL, *quick = NULL, *failing = NULL;
        unsigned backend_port = 0, port = 0, quick_port = 0, failing_port = 0;
        Fetch held[QUEUE], extra, late, doomed, again;
        pthread_t bt;
        int bfd, fd;
        bool none_answered = true, all_ok = true;

        alarm(180);
        bfd = listen_loopback(&backend_port);
        ok(bfd >= 0, "a loopback backend");
        pthread_create(&bt, NULL, backend_main, (void *) (intptr_t) bfd);
        pthread_detach(bt);
        ok(sd_event_new(&e) >= 0, "a control loop");
        is_int(proxy_plane_new(e, WORKERS, on_event, NULL, &plane), 0, "a data plane with %d workers", WORKERS);

        /* Two services holding up to QUEUE requests for a minute each... */
        proxy_plane_set_hold(plane, QUEUE, 60 * 1000000ULL);
        fd = listen_loopback(&port);
        is_int(proxy_plane_service_add(plane, "sleepy", fd, NULL, &svc), 0, "service sleepy on :%u", port);
        fd = listen_loopback(&failing_port);
        is_int(proxy_plane_service_add(plane, "failing", fd, NULL, &failing), 0, "service failing on :%u",
               failing_port);
        /* ...and one whose requests wait 300 ms at most. */
        proxy_plane_set_hold(plane, QUEUE, 300 * 1000ULL);
        fd = listen_loopback(&quick_port);
        is_int(proxy_plane_service_add(plane, "quick", fd, NULL, &quick), 0, "service quick on :%u", quick_port);
        proxy_plane_publish(svc, hold_table(1));
        proxy_plane_publish(failing, hold_table(1));
        proxy_plane_publish(quick, hold_table(1));

        /* Held, and a wake asked for. */
        for (int i = 0; i < QUEUE; i++)
                fetch_start(&held[i], port);
        PUMP_UNTIL(e, proxy_plane_held(svc) == QUEUE && wakes > 0);
        is_int((int) proxy_plane_held(svc), QUEUE, "the %d requests to the sleeping service are held", QUEUE);
        ok(wakes >= 1 && wakes <= WORKERS && woken == svc,
           "control is asked to wake it, once per worker that holds a request at most (%u)", wakes);
        for (int i = 0; i < QUEUE; i++)
                none_answered = none_answered && !atomic_load(&held[i].done);
        ok(none_answered, "none of them is answered while the service sleeps");

        /* One more than the queue takes: 503 with Retry-After, at once. */
        fetch_start(&extra, port);
        fetch_join(&extra);
        ok(status_is(&extra, "HTTP/1.1 503"), "a request beyond wake_queue gets 503");
        ok(strstr(extra.answer, "\r\nRetry-After: ") != NULL, "with Retry-After");
        ok(strstr(extra.answer, "\"code\":\"wake_queue_full\"") != NULL, "and a JSON error naming the bound");
        is_int((int) proxy_plane_held(svc), QUEUE, "the held requests are still held");

        /* Awake: a table with a guest, then the release. Every held request gets the guest's answer. */
        proxy_plane_publish(svc, backend_table(backend_port, 2));
        proxy_plane_release(svc, NULL);
        for (int i = 0; i < QUEUE; i++) {
                fetch_join(&held[i]);
                all_ok = all_ok && status_is(&held[i], "HTTP/1.1 200") && strstr(held[i].answer, "\r\n\r\nB");
        }
        ok(all_ok, "once it woke, every held request is answered by its guest");
        is_int((int) proxy_plane_held(svc), 0, "nothing is held any more");
        fetch_start(&extra, port);
        fetch_join(&extra);
        ok(status_is(&extra, "HTTP/1.1 200"), "a request after the wake goes straight to the guest");
        ok(proxy_plane_last_request(svc) > 0, "the service's last request time is known");

        /* wake_timeout: the wait ends with 503 and Retry-After. */
        fetch_start(&late, quick_port);
        fetch_join(&late);
        ok(status_is(&late, "HTTP/1.1 503") && strstr(late.answer, "\"code\":\"wake_timeout\""),
           "a request held past wake_timeout gets 503 wake_timeout");
        ok(strstr(late.answer, "\r\nRetry-After: ") != NULL, "with Retry-After");
        is_int((int) proxy_plane_held(quick), 0, "and leaves the queue");

        /* A failed wake: 503 naming the reason; the next request asks again. */
        wakes = 0;
        fetch_start(&doomed, failing_port);
        PUMP_UNTIL(e, proxy_plane_held(failing) == 1 && wakes > 0);
        is_int((int) proxy_plane_held(failing), 1, "a request to the other sleeping service is held");
        proxy_plane_release(failing, "boot failed: the kernel blob is missing");
        fetch_join(&doomed);
        ok(status_is(&doomed, "HTTP/1.1 503") && strstr(doomed.answer, "\"code\":\"wake_failed\"") &&
                   strstr(doomed.answer, "boot failed: the kernel blob is missing"),
           "a failed wake answers its held requests 503 naming the reason");
        wakes = 0;
        fetch_start(&again, failing_port);
        PUMP_UNTIL(e, wakes > 0);
        ok(wakes > 0 && woken == failing, "the next request held asks for a wake again");
        proxy_plane_release(failing, "still broken");
        fetch_join(&again);
        ok(status_is(&again, "HTTP/1.1 503"), "and is answered when that wake fails too");

        proxy_plane_service_remove(svc);
        proxy_plane_service_remove(quick);
        proxy_plane_service_remove(failing);
        proxy_plane_free(plane);
        sd_event_unref(e);
        return tap_done();
}
