/* Shadow traffic (a rollout's mirror step): a copy of a client's request, sent to a second
 * backend (the canary) whose answer is parsed, measured and dropped. A copy belongs to no
 * client: it holds none of the client's buffers, its connection or its deadlines, and a client
 * that leaves does not end it. What it may cost is bounded up front: a copy that cannot be sent
 * at once (too many copies in flight to the backend or in this proxy, its request does not fit
 * the socket in one send) is dropped and counted, never queued (docs/design/traffic.md). */
#include <errno.h>
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine.h"
#include "macro.h"

static const http_parser_settings mirror_settings;

static void mirror_unlink(Mirror *m) {
        Proxy *p = m->proxy;

        if (m->prev)
                m->prev->next = m->next;
        else
                p->mirrors = m->next;
        if (m->next)
                m->next->prev = m->prev;
        p->n_mirrors--;
}

/* Ends M: STATUS is the answer's (100..599), 0 for none (refused, reset, timed out, invalid),
 * PROXY_MIRROR_DROPPED for a copy never sent; REPORT false ends it silently (the proxy goes). */
static void mirror_end(Mirror *m, int status, bool report) {
        Proxy *p = m->proxy;
        Upstream *u = m->up;

        if (u) {
                u->mirror = NULL;
                /* Back to the pool only after a whole answer and nothing more on the wire. */
                if (status > 0 && m->reusable && in_len(&u->in) == 0 && !u->eof)
                        pool_put(u);
                else
                        upstream_free(u);
        }
        m->pool->mirror_inflight--;
        mirror_unlink(m);
        if (report && p->mirror_done)
                p->mirror_done(p->userdata, m->tag, status, status == PROXY_MIRROR_DROPPED ? 0 : proxy_now() - m->start_usec);
        free(m);
}

/* The copy goes out in one send, or not at all: a copy that would wait for room in the socket
 * waits for a slow canary, which is exactly what it must never do. */
static void mirror_send(Mirror *m) {
        Upstream *u = m->up;
        ssize_t n;

        do
                n = send(u->fd, m->request, m->len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t) m->len) {
                m->sent = true;
                u->deadline = m->start_usec + m->proxy->response_head_timeout_usec;
                proxy_want_deadline(m->proxy, u->deadline);
                return;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && !u->reused) {
                mirror_end(m, 0, true); /* a fresh connection the canary reset: its failure */
                return;
        }
        /* Full socket, a part sent (the rest would wait), or a pooled connection the backend had
         * closed meanwhile (not the canary's fault): dropped, the connection closed. */
        mirror_end(m, PROXY_MIRROR_DROPPED, true);
}

/* Parses what came; the body is counted by the parser and dropped. */
static void mirror_read(Mirror *m) {
        Upstream *u = m->up;

        while (!m->complete && (in_len(&u->in) > 0 || (u->readable && !u->eof))) {
                if (in_len(&u->in) == 0 && !upstream_read(u))
                        break;
                size_t n = in_len(&u->in);
                size_t parsed = http_parser_execute(&m->resp, &mirror_settings, u->in.data + u->in.start, n);
                u->in.start += parsed;
                if (u->in.start == u->in.end)
                        u->in.start = u->in.end = 0;
                if (HTTP_PARSER_ERRNO(&m->resp) != HPE_OK && HTTP_PARSER_ERRNO(&m->resp) != HPE_PAUSED) {
                        mirror_end(m, 0, true);
                        return;
                }
                if (parsed < n && !m->complete) { /* an upgrade, or bytes after the answer */
                        mirror_end(m, 0, true);
                        return;
                }
        }
        if (!m->complete && u->eof) {
                /* A body delimited by the close ends here; anything else was cut short. */
                if (m->status)
                        (void) http_parser_execute(&m->resp, &mirror_settings, NULL, 0);
                if (!m->complete) {
                        mirror_end(m, 0, true);
                        return;
                }
                m->reusable = false;
        }
        if (m->complete)
                mirror_end(m, m->status, true);
}

void mirror_upstream_event(Mirror *m, uint32_t revents) {
        Upstream *u = m->up;

        if (u->connecting) {
                int k = upstream_connect_done(u, revents);

                if (k > 0)
                        return;
                if (k < 0) {
                        mirror_end(m, 0, true); /* the canary could not be reached */
                        return;
                }
        }
        if (!m->sent) {
                mirror_send(m);
                return;
        }
        mirror_read(m);
}

static void mirror_expire(Mirror *m, uint64_t now) {
        if (m->up && m->up->deadline && m->up->deadline <= now)
                mirror_end(m, 0, true); /* no whole answer in time: the canary's failure */
}

void mirror_start(Proxy *p, const char *head, size_t len, bool is_head, int tag, const struct sockaddr_in *backend) {
        static const char mark[] = "X-Aviary-Mirror: 1\r\n\r\n";
        Pool *pool;
        Mirror *m;
        Upstream *u;
        int r;

        if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)
                return; /* not a rendered head: nothing to copy */
        pool = p->n_mirrors < PROXY_MIRROR_MAX ? pool_get(p, backend) : NULL;
        if (!pool || pool->mirror_inflight >= PROXY_MIRROR_PER_BACKEND ||
            !(m = malloc(sizeof *m + len - 2 + sizeof mark - 1))) {
                if (p->mirror_done)
                        p->mirror_done(p->userdata, tag, PROXY_MIRROR_DROPPED, 0);
                return;
        }
        *m = (Mirror) {.proxy = p, .pool = pool, .tag = tag, .is_head = is_head, .start_usec = proxy_now()};
        /* The client's head as rendered for its backend, marked so the canary can tell a copy. */
        memcpy(m->request, head, len - 2);
        memcpy(m->request + len - 2, mark, sizeof mark - 1);
        m->len = len - 2 + sizeof mark - 1;
        http_parser_init(&m->resp, HTTP_RESPONSE);
        m->resp.data = m;
        pool->mirror_inflight++;
        m->next = p->mirrors;
        if (p->mirrors)
                p->mirrors->prev = m;
        p->mirrors = m;
        p->n_mirrors++;

        u = pool_take(pool);
        if (u) {
                u->mirror = m;
                u->in.start = u->in.end = 0;
                m->up = u;
                mirror_send(m);
                return;
        }
        r = upstream_connect(p, pool, &u);
        if (r < 0) {
                mirror_end(m, r == -ENOMEM || r == -EMFILE || r == -ENFILE ? PROXY_MIRROR_DROPPED : 0, true);
                return;
        }
        u->mirror = m;
        m->up = u; /* sent when the connect completes (mirror_upstream_event) */
}

void mirrors_backend_down(Proxy *p, const struct sockaddr_in *backend) {
        for (Mirror *m = p->mirrors, *next; m; m = next) {
                next = m->next;
                if (m->pool->addr.sin_addr.s_addr == backend->sin_addr.s_addr &&
                    (!backend->sin_port || m->pool->addr.sin_port == backend->sin_port))
                        mirror_end(m, 0, true); /* its guest is gone: no answer will come */
        }
}

uint64_t mirrors_expire(Proxy *p, uint64_t now) {
        uint64_t next = UINT64_MAX;

        for (Mirror *m = p->mirrors, *after; m; m = after) {
                after = m->next;
                mirror_expire(m, now);
        }
        for (Mirror *m = p->mirrors; m; m = m->next)
                if (m->up && m->up->deadline && m->up->deadline < next)
                        next = m->up->deadline;
        return next;
}

void mirrors_free(Proxy *p) {
        while (p->mirrors)
                mirror_end(p->mirrors, PROXY_MIRROR_DROPPED, false);
}

/* ---- response parser callbacks ---- */

/* A HEAD's answer, a 204 and a 304 have no body whatever they say (client.c does the same). */
static int mirror_headers_complete(http_parser *p) {
        Mirror *m = p->data;

        if (p->status_code / 100 == 1)
                return 0; /* interim: the real answer follows */
        m->status = p->status_code >= 100 && p->status_code <= 599 ? (int) p->status_code : 0;
        return m->is_head || p->status_code == 204 || p->status_code == 304 ? 1 : 0;
}

static int mirror_message_complete(http_parser *p) {
        Mirror *m = p->data;

        if (p->status_code / 100 == 1)
                return 0;
        m->complete = true;
        m->reusable = http_should_keep_alive(p);
        http_parser_pause(p, 1);
        return 0;
}

static const http_parser_settings mirror_settings = {
        .on_headers_complete = mirror_headers_complete,
        .on_message_complete = mirror_message_complete,
};
