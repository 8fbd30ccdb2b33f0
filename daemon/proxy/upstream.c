/* Connections to backends and their keep-alive pool, one pool per backend address and per
 * proxy (so per worker thread: a pooled connection is only ever used by the thread whose loop
 * watches it). An idle connection sits in the loop's set too: any event on it means the backend
 * closed it or sent something unasked, and it goes. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "engine.h"

static bool same_address(const struct sockaddr_in *a, const struct sockaddr_in *b) {
        return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

Pool *pool_get(Proxy *p, const struct sockaddr_in *addr) {
        for (Pool *pool = p->pools; pool; pool = pool->next)
                if (same_address(&pool->addr, addr))
                        return pool;
        Pool *pool = calloc(1, sizeof *pool);
        if (!pool)
                return NULL;
        pool->addr = *addr;
        pool->next = p->pools;
        p->pools = pool;
        return pool;
}

static void pool_unlink(Upstream *u) {
        if (u->idle_prev)
                u->idle_prev->idle_next = u->idle_next;
        else if (u->pool->idle == u)
                u->pool->idle = u->idle_next;
        else
                return; /* not in the pool */
        if (u->idle_next)
                u->idle_next->idle_prev = u->idle_prev;
        u->idle_next = u->idle_prev = NULL;
        u->pool->n_idle--;
}

void upstream_free(Upstream *u) {
        if (!u)
                return;
        if (!u->client)
                pool_unlink(u);
        if (u->fd >= 0) {
                /* Out of the epoll set first: see client_free(). */
                proxy_loop_remove(u->proxy->loop, u->fd);
                close(u->fd);
        }
        proxy_loop_release(u->proxy->loop, &u->watch);
}

static void on_upstream_io(IoWatch *w, uint32_t revents) {
        Upstream *u = (Upstream *) w;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                u->readable = true;
        if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                u->writable = true;
        if (u->mirror) {
                mirror_upstream_event(u->mirror, revents);
                return;
        }
        if (!u->client) {
                /* Idle in the pool: the backend closed it or sent something unasked. */
                if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                        upstream_free(u);
                return;
        }
        u->proxy->upstream_event(u->client, u, revents);
}

int upstream_connect(Proxy *p, Pool *pool, Upstream **ret) {
        _cleanup_close_ int fd = -1;
        Upstream *u;
        int one = 1, r;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *) &pool->addr, sizeof pool->addr) < 0 && errno != EINPROGRESS)
                return -errno;
        u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->watch.fn = on_upstream_io;
        u->proxy = p;
        u->pool = pool;
        u->fd = TAKE_FD(fd);
        u->connecting = true;
        r = proxy_loop_add(p->loop, u->fd, &u->watch);
        if (r < 0) {
                upstream_free(u); /* never pooled: nothing to unlink */
                return r;
        }
        u->deadline = proxy_now() + p->connect_timeout_usec;
        proxy_want_deadline(p, u->deadline);
        stat_add(&p->stats->upstream_connects, 1);
        *ret = u;
        return 0;
}

Upstream *pool_take(Pool *pool) {
        Upstream *u = pool->idle;

        if (!u)
                return NULL;
        pool_unlink(u);
        u->reused = true;
        return u;
}

void pool_put(Upstream *u) {
        Pool *pool = u->pool;

        u->client = NULL;
        u->mirror = NULL;
        /* Bytes left, or an event already seen (the backend closed it): not reusable. */
        if (pool->n_idle >= PROXY_IDLE_PER_BACKEND || in_len(&u->in) > 0 || u->readable || u->eof) {
                upstream_free(u);
                return;
        }
        u->in.start = u->in.end = 0;
        u->deadline = proxy_now() + PROXY_UPSTREAM_IDLE_USEC;
        proxy_want_deadline(u->proxy, u->deadline);
        u->idle_prev = NULL;
        u->idle_next = pool->idle;
        if (pool->idle)
                pool->idle->idle_prev = u;
        pool->idle = u;
        pool->n_idle++;
}

int upstream_connect_done(Upstream *u, uint32_t revents) {
        int error = 0;
        socklen_t len = sizeof error;

        if (!(revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return 1;
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        if (error == 0 && (revents & (EPOLLERR | EPOLLHUP)))
                error = ECONNREFUSED;
        if (error != 0)
                return -error;
        u->connecting = false;
        return 0;
}

bool upstream_read(Upstream *u) {
        bool got = false;

        while (u->readable && !u->eof) {
                size_t room = in_room(&u->in);
                ssize_t n;

                if (room == 0)
                        break;
                n = recv(u->fd, u->in.data + u->in.end, room, 0);
                if (n > 0) {
                        u->in.end += (size_t) n;
                        got = true;
                        if ((size_t) n < room)
                                u->readable = false; /* drained: the next bytes bring a new edge */
                } else if (n == 0) {
                        u->eof = true; /* client_pump() decides once the buffered bytes are parsed */
                        u->error = -ECONNRESET;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK)
                        u->readable = false;
                else if (errno != EINTR) {
                        u->eof = true;
                        u->error = -errno;
                }
        }
        return got;
}

void upstream_expire(Upstream *u, uint64_t now) {
        Client *c = u->client;

        if (!u->deadline || u->deadline > now)
                return;
        u->deadline = 0;
        if (!c) {
                upstream_free(u); /* idle too long */
                return;
        }
        u->proxy->upstream_timeout(c);
}

void pools_free(Proxy *p) {
        while (p->pools) {
                Pool *pool = p->pools;
                while (pool->idle)
                        upstream_free(pool->idle);
                p->pools = pool->next;
                free(pool);
        }
}
