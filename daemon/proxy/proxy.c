/* The proxy engine's frame: the listener (accepting, pausing at the descriptor limit, handing
 * clients to another thread when asked), the deadlines of its connections, and the public
 * calls of proxy.h. The client state machine is client.c, the upstream pool upstream.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "engine.h"
#include "socket.h"

const char *proxy_request_header(const ProxyRequest *req, const char *name, size_t *ret_len) {
        return head_header(req->head, name, ret_len);
}

const char *proxy_request_target(const ProxyRequest *req, size_t *ret_len) {
        *ret_len = req->head->first_len;
        return req->head->store;
}

uint32_t proxy_request_peer(const ProxyRequest *req) {
        return req->peer.s_addr;
}

const char *proxy_request_cookie(const ProxyRequest *req, const char *name, size_t *ret_len) {
        return head_cookie(req->head, name, ret_len);
}

/* Every connection's deadline at once, when the earliest is due: a walk over this proxy's
 * connections, as rare as deadlines are (they move later with every request, and only the
 * earliest one armed wakes the loop). */
static uint64_t proxy_expire(DeadlineOwner *o, uint64_t now) {
        Proxy *p = (Proxy *) o;
        uint64_t next = UINT64_MAX;
        Client *c, *after;

        for (c = p->clients; c; c = after) {
                after = c->next; /* handling C frees at most C */
                if (c->up && c->up->deadline && c->up->deadline <= now) {
                        upstream_expire(c->up, now);
                        continue; /* C may be gone */
                }
                if (c->deadline && c->deadline <= now)
                        client_expire(c, now);
        }
        for (Pool *pool = p->pools; pool; pool = pool->next)
                for (Upstream *u = pool->idle, *u_after; u; u = u_after) {
                        u_after = u->idle_next;
                        if (u->deadline && u->deadline <= now)
                                upstream_expire(u, now);
                }
        /* What is left, for the next wakeup. */
        for (c = p->clients; c; c = c->next) {
                if (c->deadline && c->deadline < next)
                        next = c->deadline;
                if (c->up && c->up->deadline && c->up->deadline < next)
                        next = c->up->deadline;
        }
        for (Pool *pool = p->pools; pool; pool = pool->next)
                for (Upstream *u = pool->idle; u; u = u->idle_next)
                        if (u->deadline && u->deadline < next)
                                next = u->deadline;
        {
                uint64_t m = mirrors_expire(p, now);
                if (m < next)
                        next = m;
        }
        return next;
}

int proxy_add_client(Proxy *p, int fd, const struct sockaddr_in *peer) {
        return client_new(p, fd, peer);
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Proxy *p = userdata;

        p->accept_paused = false;
        if (p->listen)
                (void) sd_event_source_set_enabled(p->listen, SD_EVENT_ON);
        return 0;
}

/* accept() failed for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM). The connection
 * stays in the backlog and the listener readable: turn it off and try again in a while, or as
 * soon as a client leaves (client_free). One log line per PROXY_ACCEPT_LOG_USEC at most. */
static void accept_pause(Proxy *p, int error) {
        uint64_t now = proxy_now();

        (void) sd_event_source_set_enabled(p->listen, SD_EVENT_OFF);
        p->accept_paused = true;
        (void) sd_event_source_set_time_relative(p->accept_retry, PROXY_ACCEPT_RETRY_USEC);
        (void) sd_event_source_set_enabled(p->accept_retry, SD_EVENT_ONESHOT);
        if (p->accept_logged_usec && now - p->accept_logged_usec < PROXY_ACCEPT_LOG_USEC) {
                p->accept_unlogged++;
                return;
        }
        log_warning_errno(error, "proxy :%u: cannot accept a connection (%u more times since the last report); "
                          "pausing new connections, retrying every %llu ms or when one closes",
                          p->port, p->accept_unlogged, PROXY_ACCEPT_RETRY_USEC / 1000);
        p->accept_logged_usec = now;
        p->accept_unlogged = 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Proxy *p = userdata;

        while (p->n_clients < PROXY_MAX_CLIENTS) {
                struct sockaddr_in peer = {};
                socklen_t len = sizeof peer;
                int cfd = accept4(fd, (struct sockaddr *) &peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                accept_pause(p, errno);
                        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "proxy: accept failed: %m");
                        return 0;
                }
                if (p->accept_hook && p->accept_hook(p->userdata, cfd, &peer))
                        continue;
                if (client_new(p, cfd, &peer) == -ENOMEM)
                        log_oom();
        }
        /* Full: stop accepting until a client leaves (client_free turns it back on). */
        (void) sd_event_source_set_enabled(p->listen, SD_EVENT_OFF);
        return 0;
}

/* IPv4 only for now: guests live on an IPv4 bridge. Port 0 picks one (tests). */
static int parse_listen(const char *address, struct sockaddr_in *ret) {
        struct sockaddr_storage ss;
        socklen_t len;

        if (socket_address_parse(address, &ss, &len) < 0)
                return -EINVAL;
        if (ss.ss_family != AF_INET)
                return -EAFNOSUPPORT;
        memcpy(ret, &ss, sizeof *ret);
        return 0;
}

int proxy_new_on_loop(ProxyLoop *loop, int fd, ProxyPickFn pick, ProxyDoneFn done, void *userdata, Proxy **ret) {
        sd_event *e = loop ? proxy_loop_event(loop) : NULL;
        Proxy *p;
        int r;

        if (!loop || !pick || !ret) {
                if (fd >= 0)
                        close(fd);
                return -EINVAL;
        }
        p = calloc(1, sizeof *p);
        if (!p) {
                if (fd >= 0)
                        close(fd);
                return -ENOMEM;
        }
        p->owner.expire = proxy_expire;
        p->upstream_event = client_upstream_event;
        p->upstream_timeout = client_upstream_timeout;
        p->loop = proxy_loop_ref(loop);
        p->event = sd_event_ref(e);
        p->connect_timeout_usec = PROXY_CONNECT_TIMEOUT_USEC;
        p->response_head_timeout_usec = PROXY_RESPONSE_HEAD_TIMEOUT_USEC;
        p->pick = pick;
        p->done = done;
        p->stats = &p->own_stats;
        p->userdata = userdata;
        p->fd = fd;
        proxy_loop_add_owner(loop, &p->owner);
        if (fd >= 0) {
                struct sockaddr_in sa;
                socklen_t len = sizeof sa;
                int flags = fcntl(fd, F_GETFL);

                if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
                    getsockname(fd, (struct sockaddr *) &sa, &len) < 0) {
                        r = -errno;
                        goto fail;
                }
                if (sa.sin_family != AF_INET) {
                        r = -EAFNOSUPPORT;
                        goto fail;
                }
                p->port = ntohs(sa.sin_port);
                r = sd_event_add_io(e, &p->listen, p->fd, EPOLLIN, on_accept, p);
                if (r < 0)
                        goto fail;
                /* Made now, while there are descriptors: sd-event may need one (a timerfd) for it. */
                r = sd_event_add_time_relative(e, &p->accept_retry, CLOCK_MONOTONIC, PROXY_ACCEPT_RETRY_USEC, 0,
                                               on_accept_retry, p);
                if (r >= 0)
                        r = sd_event_source_set_enabled(p->accept_retry, SD_EVENT_OFF);
                if (r < 0)
                        goto fail;
        }
        *ret = p;
        return 0;
fail:
        proxy_free(p);
        return r;
}

int proxy_new_from_fd(sd_event *e, int fd, ProxyPickFn pick, ProxyDoneFn done, void *userdata, Proxy **ret) {
        ProxyLoop *loop = NULL;
        int r;

        if (!e || fd < 0 || !pick || !ret) {
                if (fd >= 0)
                        close(fd);
                return -EINVAL;
        }
        r = proxy_loop_new(e, true, &loop);
        if (r < 0) {
                close(fd);
                return r;
        }
        r = proxy_new_on_loop(loop, fd, pick, done, userdata, ret);
        proxy_loop_unref(loop); /* the proxy holds its own reference */
        return r;
}

int proxy_new(sd_event *e, const char *address, ProxyPickFn pick, ProxyDoneFn done, void *userdata,
              Proxy **ret) {
        struct sockaddr_in sa;
        int r, fd, one = 1;

        if (!e || !address || !pick || !ret)
                return -EINVAL;
        r = parse_listen(address, &sa);
        if (r < 0)
                return r;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(fd, 512) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return proxy_new_from_fd(e, fd, pick, done, userdata, ret);
}

void proxy_set_accept_hook(Proxy *p, ProxyAcceptFn fn) {
        p->accept_hook = fn;
}

int proxy_get_fd(const Proxy *p) {
        return p->fd;
}

Proxy *proxy_free(Proxy *p) {
        if (!p)
                return NULL;
        p->freeing = true;
        while (p->clients)
                client_free(p->clients);
        sd_event_source_disable_unref(p->listen);
        p->listen = NULL;
        sd_event_source_disable_unref(p->accept_retry);
        mirrors_free(p); /* before the pools: a copy may put its connection back */
        pools_free(p);
        if (p->fd >= 0)
                close(p->fd);
        if (p->loop)
                proxy_loop_remove_owner(p->loop, &p->owner);
        proxy_loop_unref(p->loop);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

void proxy_set_timeouts(Proxy *p, uint64_t connect_usec, uint64_t response_head_usec) {
        if (connect_usec > 0)
                p->connect_timeout_usec = connect_usec;
        if (response_head_usec > 0)
                p->response_head_timeout_usec = response_head_usec;
}

unsigned proxy_get_port(const Proxy *p) {
        return p->port;
}

const ProxyStats *proxy_get_stats(const Proxy *p) {
        return p->stats;
}

void proxy_set_stats(Proxy *p, ProxyStats *stats) {
        p->stats = stats ? stats : &p->own_stats;
}

void proxy_set_mirror(Proxy *p, ProxyMirrorFn fn, ProxyMirrorDoneFn done) {
        p->mirror_fn = fn;
        p->mirror_done = done;
}

unsigned proxy_mirrors(const Proxy *p) {
        return p->n_mirrors;
}

void proxy_set_hold(Proxy *p, uint64_t timeout_usec, ProxyHoldFn fn) {
        p->hold_fn = fn;
        p->hold_timeout_usec = timeout_usec;
}

void proxy_release_held(Proxy *p, int key, const char *failure) {
        Client *next;

        for (Client *c = p->clients; c; c = next) {
                next = c->next; /* client_run() may free C, never another client */
                if (!c->held || (key >= 0 && c->hold_key != key))
                        continue;
                client_release(c, failure);
                client_run(c);
        }
}

unsigned proxy_held(const Proxy *p) {
        unsigned n = 0;

        for (const Client *c = p->clients; c; c = c->next)
                n += c->held;
        return n;
}

/* ADDR is BACKEND, or one of its ports when BACKEND's port is 0. */
static bool backend_matches(const struct sockaddr_in *addr, const struct sockaddr_in *backend) {
        return addr->sin_addr.s_addr == backend->sin_addr.s_addr &&
               (!backend->sin_port || addr->sin_port == backend->sin_port);
}

/* A client holds an upstream from its attempt's start until the response is relayed or the
 * attempt failed, which is exactly the span that counts (Pool.inflight). */
unsigned proxy_backend_inflight(const Proxy *p, const struct sockaddr_in *backend) {
        unsigned n = 0;

        for (const Pool *pool = p->pools; pool; pool = pool->next)
                if (backend_matches(&pool->addr, backend))
                        n += pool->inflight;
        return n;
}

void proxy_backend_down(Proxy *p, const struct sockaddr_in *backend) {
        Client *next;

        for (Pool *pool = p->pools; pool; pool = pool->next)
                if (backend_matches(&pool->addr, backend))
                        while (pool->idle)
                                upstream_free(pool->idle);
        mirrors_backend_down(p, backend);
        for (Client *c = p->clients; c; c = next) {
                next = c->next; /* client_run() may free C, never another client */
                if (!c->up || !backend_matches(&c->up->pool->addr, backend))
                        continue;
                stat_add(&p->stats->backend_down_failovers, 1);
                client_backend_gone(c);
                client_run(c);
        }
}
