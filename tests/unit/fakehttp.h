/* Fake guests for unit tests: a thread serving HTTP/1.1 (keep-alive) on listeners the test
 * opens, answering per local address, so one listener on 0.0.0.0 can stand for every guest of
 * a subnet. What each address does is set through its FakeGuest (atomics: the test's thread
 * changes them while the server runs):
 *   GET /health  -> health_status (0: never answer; the connection is held)
 *   GET /slow?ms=N -> status after N ms
 *   GET /drip?ms=N -> the head at once, then a 10-byte body over N ms
 *   anything else -> status, body "<ip>\n" (none to HEAD), header "X-Guest: <ip>"; after
 *                    delay_ms when set. Requests marked "X-Aviary-Mirror: 1" (the proxy's mirror
 *                    copies) are also counted in mirrored.
 * Loopback, or a network namespace of the test's own, only. */
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FAKE_MAX_LISTENERS 16
#define FAKE_MAX_CONNECTIONS 128
#define FAKE_MAX_GUESTS 64

typedef struct FakeGuest {
        char ip[16];
        atomic_int status;        /* GET / and other paths */
        atomic_int health_status; /* GET /health; 0: hang */
        atomic_uint requests, health_requests;
        atomic_int delay_ms;      /* answers to paths other than /health wait this long; 0 none */
        atomic_uint mirrored;     /* requests that carried X-Aviary-Mirror: 1 */
} FakeGuest;

typedef struct FakeConnection {
        int fd;
        char ip[16];              /* the local address it came to */
        char in[4096];
        size_t len;
        long long respond_at_ms;  /* a delayed answer is due (0: none) */
        char pending[512];        /* ...with these bytes */
        int drip_left;            /* /drip: body bytes still to send */
        long long drip_every_ms;
        bool hanging;
} FakeConnection;

typedef struct FakeHttp {
        int listen_fd[FAKE_MAX_LISTENERS];
        size_t n_listen;
        FakeConnection conn[FAKE_MAX_CONNECTIONS];
        FakeGuest guest[FAKE_MAX_GUESTS];
        pthread_mutex_t lock; /* guards guest[] membership (not the atomics) */
        int stop_pipe[2];
        pthread_t thread;
        bool running;
} FakeHttp;

static inline long long fake_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The guest record of IP (made with status 200, health 200 when new). */
static inline FakeGuest *fake_guest(FakeHttp *f, const char *ip) {
        FakeGuest *g = NULL;

        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < FAKE_MAX_GUESTS && !g; i++)
                if (streq(f->guest[i].ip, ip))
                        g = &f->guest[i];
        for (size_t i = 0; i < FAKE_MAX_GUESTS && !g; i++)
                if (!f->guest[i].ip[0]) {
                        g = &f->guest[i];
                        atomic_store(&g->status, 200);
                        atomic_store(&g->health_status, 200);
                        snprintf(g->ip, sizeof g->ip, "%s", ip);
                }
        pthread_mutex_unlock(&f->lock);
        return g;
}

/* Listens on IP:PORT (PORT 0: any free one); returns the port, or -errno. */
static inline int fake_listen(FakeHttp *f, const char *ip, unsigned port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        socklen_t len = sizeof sa;
        int one = 1, fd;

        if (f->n_listen >= FAKE_MAX_LISTENERS || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return -EINVAL;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0) {
                int k = -errno;
                close(fd);
                return k;
        }
        f->listen_fd[f->n_listen++] = fd;
        return ntohs(sa.sin_port);
}

static inline void fake_send(FakeConnection *c, const char *data, size_t n) {
        while (n > 0) {
                ssize_t k = send(c->fd, data, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
                        poll(&p, 1, 100);
                        continue;
                }
                if (k <= 0)
                        return;
                data += k;
                n -= (size_t) k;
        }
}

static inline void fake_answer(FakeHttp *f, FakeConnection *c, const char *head) {
        char method[16] = "", target[512] = "", body[64];
        FakeGuest *g = fake_guest(f, c->ip);
        long long ms = 0;
        const char *q;
        int status;

        sscanf(head, "%15s %511s", method, target);
        q = strstr(target, "?ms=");
        if (q)
                ms = atoll(q + 4);
        if (strncmp(target, "/health", 7) == 0) {
                atomic_fetch_add(&g->health_requests, 1);
                status = atomic_load(&g->health_status);
                if (status == 0) {
                        c->hanging = true;
                        return;
                }
        } else {
                atomic_fetch_add(&g->requests, 1);
                if (strcasestr(head, "\r\nX-Aviary-Mirror: 1\r\n"))
                        atomic_fetch_add(&g->mirrored, 1);
                status = atomic_load(&g->status);
                if (!ms && atomic_load(&g->delay_ms) > 0 && strncmp(target, "/slow", 5) != 0)
                        ms = atomic_load(&g->delay_ms);
        }
        snprintf(body, sizeof body, "%s\n", c->ip);
        if (strncmp(target, "/drip", 5) == 0) {
                snprintf(c->pending, sizeof c->pending,
                         "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Guest: %s\r\n\r\n", c->ip);
                fake_send(c, c->pending, strlen(c->pending));
                c->drip_left = 10;
                c->drip_every_ms = ms / 10;
                c->respond_at_ms = fake_now_ms() + c->drip_every_ms;
                return;
        }
        snprintf(c->pending, sizeof c->pending, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nX-Guest: %s\r\n\r\n%s", status,
                 strlen(body), c->ip, streq(method, "HEAD") ? "" : body);
        if ((strncmp(target, "/slow", 5) == 0 || atomic_load(&g->delay_ms) > 0) && ms > 0) {
                c->respond_at_ms = fake_now_ms() + ms;
                return;
        }
        fake_send(c, c->pending, strlen(c->pending));
}

static inline void fake_close(FakeConnection *c) {
        close(c->fd);
        *c = (FakeConnection) { .fd = -1 };
}

static inline void *fake_run(void *arg) {
        FakeHttp *f = arg;
        struct pollfd p[1 + FAKE_MAX_LISTENERS + FAKE_MAX_CONNECTIONS];

        for (;;) {
                size_t n = 0;
                long long now = fake_now_ms(), next = -1;

                p[n++] = (struct pollfd) { .fd = f->stop_pipe[0], .events = POLLIN };
                for (size_t i = 0; i < f->n_listen; i++)
                        p[n++] = (struct pollfd) { .fd = f->listen_fd[i], .events = POLLIN };
                for (size_t i = 0; i < FAKE_MAX_CONNECTIONS; i++) {
                        FakeConnection *c = &f->conn[i];
                        if (c->fd < 0)
                                continue;
                        p[n++] = (struct pollfd) { .fd = c->fd, .events = POLLIN };
                        if (c->respond_at_ms && (next < 0 || c->respond_at_ms < next))
                                next = c->respond_at_ms;
                }
                if (poll(p, n, next < 0 ? 50 : (int) (next > now ? next - now : 0)) < 0 && errno != EINTR)
                        return NULL;
                if (p[0].revents)
                        return NULL;
                for (size_t i = 0; i < f->n_listen; i++) {
                        if (!(p[1 + i].revents & POLLIN))
                                continue;
                        for (;;) {
                                struct sockaddr_in local;
                                socklen_t len = sizeof local;
                                int fd = accept4(f->listen_fd[i], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                                if (fd < 0)
                                        break;
                                size_t k = 0;
                                while (k < FAKE_MAX_CONNECTIONS && f->conn[k].fd >= 0)
                                        k++;
                                if (k == FAKE_MAX_CONNECTIONS) {
                                        close(fd);
                                        continue;
                                }
                                f->conn[k] = (FakeConnection) { .fd = fd };
                                getsockname(fd, (struct sockaddr *) &local, &len);
                                inet_ntop(AF_INET, &local.sin_addr, f->conn[k].ip, sizeof f->conn[k].ip);
                        }
                }
                now = fake_now_ms();
                for (size_t i = 0; i < FAKE_MAX_CONNECTIONS; i++) {
                        FakeConnection *c = &f->conn[i];
                        if (c->fd < 0)
                                continue;
                        if (c->respond_at_ms && now >= c->respond_at_ms) {
                                if (c->drip_left > 0) {
                                        fake_send(c, c->drip_left == 1 ? "\n" : "d", 1);
                                        c->respond_at_ms = --c->drip_left > 0 ? now + c->drip_every_ms : 0;
                                } else {
                                        fake_send(c, c->pending, strlen(c->pending));
                                        c->respond_at_ms = 0;
                                }
                        }
                        ssize_t k = recv(c->fd, c->in + c->len, sizeof c->in - 1 - c->len, MSG_DONTWAIT);
                        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                                fake_close(c);
                                continue;
                        }
                        if (k > 0)
                                c->len += (size_t) k;
                        c->in[c->len] = 0;
                        char *end;
                        while (!c->respond_at_ms && !c->hanging && (end = strstr(c->in, "\r\n\r\n"))) {
                                size_t used = (size_t) (end + 4 - c->in);
                                char head[4096];
                                memcpy(head, c->in, used);
                                head[used] = 0;
                                memmove(c->in, c->in + used, c->len - used + 1);
                                c->len -= used;
                                fake_answer(f, c, head);
                        }
                }
        }
}

static inline int fake_start(FakeHttp *f) {
        for (size_t i = 0; i < FAKE_MAX_CONNECTIONS; i++)
                f->conn[i].fd = -1;
        pthread_mutex_init(&f->lock, NULL);
        if (pipe2(f->stop_pipe, O_CLOEXEC) < 0)
                return -errno;
        if (pthread_create(&f->thread, NULL, fake_run, f) != 0)
                return -EAGAIN;
        f->running = true;
        return 0;
}

static inline void fake_stop(FakeHttp *f) {
        if (!f->running)
                return;
        (void) !write(f->stop_pipe[1], "x", 1);
        pthread_join(f->thread, NULL);
        for (size_t i = 0; i < FAKE_MAX_CONNECTIONS; i++)
                if (f->conn[i].fd >= 0)
                        close(f->conn[i].fd);
        for (size_t i = 0; i < f->n_listen; i++)
                close(f->listen_fd[i]);
        close(f->stop_pipe[0]);
        close(f->stop_pipe[1]);
        f->running = false;
}
