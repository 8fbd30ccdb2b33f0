/* The reverse proxy: accepts clients, parses each request head with http_parser, rewrites it
 * for the backend the pick callback names, then streams body and response through fixed
 * per-direction buffers, pausing the reading side while the writing side is full. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "head.h"
#include "log.h"
#include "macro.h"
#include "proxy.h"
#include "random.h"
#include "socket.h"

#define PROXY_MAX_CLIENTS 4096
#define PROXY_WINDOW (16 * 1024)  /* body bytes in flight per direction */
/* An output buffer holds the window plus one rewritten head, which may grow a little. */
#define PROXY_OUT_SIZE (PROXY_WINDOW + 2 * PROXY_HEAD_MAX)
#define PROXY_IN_SIZE PROXY_WINDOW
#define PROXY_IDLE_PER_BACKEND 32
#define USEC_PER_SEC_ 1000000ULL
#define PROXY_CONNECT_TIMEOUT_USEC (2 * USEC_PER_SEC_)
#define PROXY_RESPONSE_HEAD_TIMEOUT_USEC (30 * USEC_PER_SEC_)
#define PROXY_UPSTREAM_IDLE_USEC (30 * USEC_PER_SEC_)
#define PROXY_CLIENT_IDLE_USEC (60 * USEC_PER_SEC_)
#define PROXY_DRAIN_USEC (2 * USEC_PER_SEC_)
/* Out of file descriptors: accepting pauses this long (or until a client leaves), and says so
 * at most once per PROXY_ACCEPT_LOG_USEC. */
#define PROXY_ACCEPT_RETRY_USEC (250 * 1000ULL)
#define PROXY_ACCEPT_LOG_USEC (10 * USEC_PER_SEC_)

typedef struct Client Client;
typedef struct Upstream Upstream;
typedef struct Pool Pool;

typedef struct InBuffer {
        size_t len;
        char data[PROXY_IN_SIZE];
} InBuffer;

typedef struct OutBuffer {
        size_t len;
        char data[PROXY_OUT_SIZE];
} OutBuffer;

struct Pool {
        struct sockaddr_in addr;
        Upstream *idle; /* most recently used first */
        unsigned n_idle;
        Pool *next;
};

struct Upstream {
        Proxy *proxy;
        Pool *pool;
        int fd;
        sd_event_source *io, *timer;
        Client *client; /* NULL while idle in the pool */
        Upstream *idle_next, *idle_prev;
        bool connecting, reused;
        bool eof; /* the backend closed its side, or reading failed with error */
        int error;
        InBuffer in;
};

struct Client {
        Proxy *proxy;
        Client *next, *prev;
        int fd;
        sd_event_source *io, *timer;
        char ip[INET_ADDRSTRLEN];
        bool dead, eof;
        bool draining; /* answered and half-closed: reading what the client still sends */

        http_parser req, resp;
        Head head;                             /* the request's while reading it, then the response's */
        char request_head[2 * PROXY_HEAD_MAX]; /* rewritten, kept to replay on a retry */
        size_t request_head_len;
        char request_id[65];
        InBuffer in;
        OutBuffer to_upstream, to_client;
        Upstream *up;

        /* The request in flight. */
        bool busy, head_ready, req_complete, has_body, req_chunked, idempotent, is_head;
        bool keep_alive, local_reply;
        bool retried_connect, retried_pool;
        size_t attempt_written;
        int group;
        bool has_backend; /* BACKEND is the current attempt's; false until a pick succeeded */
        struct sockaddr_in backend;
        uint64_t start_usec;
        RequestForward forward; /* what head_check_request() decided, into head's store */
        /* Its response. */
        bool resp_started, resp_head_queued, resp_complete, resp_chunked_out, resp_interim;
        bool resp_head_ready; /* the response parser paused at a head for client_take_response_head() */
        bool upstream_reusable;
        int status;
};

struct Proxy {
        sd_event *event;
        int fd;
        unsigned port;
        sd_event_source *listen;
        ProxyPickFn pick;
        ProxyDoneFn done;
        void *userdata;
        Client *clients;
        unsigned n_clients;
        Pool *pools;
        ProxyStats stats;
        uint64_t connect_timeout_usec, response_head_timeout_usec;
        /* accept() ran out of descriptors: the listener is off until the timer or a client
         * leaving turns it back on (a readable listener would otherwise spin the loop). */
        sd_event_source *accept_retry;
        bool accept_paused;
        uint64_t accept_logged_usec; /* when it last said so */
        unsigned accept_unlogged;    /* pauses since */
};

/* What a pick callback reads: the request head in the client's Head. It is still the
 * request's at every pick, retries included: the response parser only reuses it once a backend
 * sent bytes, and an attempt that got any is never followed by another pick. */
struct ProxyRequest {
        const Head *head;
};

static const http_parser_settings request_settings, response_settings;

static uint64_t now_usec(Proxy *p) {
        uint64_t t = 0;
        (void) sd_event_now(p->event, CLOCK_MONOTONIC, &t);
        return t;
}

static int out_append(OutBuffer *b, const void *data, size_t n) {
        if (n > sizeof b->data - b->len)
                return -ENOBUFS;
        memcpy(b->data + b->len, data, n);
        b->len += n;
        return 0;
}

static int out_printf(OutBuffer *b, const char *fmt, ...) _printf_(2, 3);
static int out_printf(OutBuffer *b, const char *fmt, ...) {
        va_list ap;
        size_t room = sizeof b->data - b->len;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= room)
                return -ENOBUFS;
        b->len += (size_t) n;
        return 0;
}

static void consume(char *data, size_t *len, size_t n) {
        memmove(data, data + n, *len - n);
        *len -= n;
}

/* Writes what it can; 0 when the buffer is empty or the socket is full, -errno on error. */
static int out_flush(int fd, OutBuffer *b, size_t *written) {
        while (b->len > 0) {
                ssize_t n = send(fd, b->data, b->len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                consume(b->data, &b->len, (size_t) n);
                if (written)
                        *written += (size_t) n;
        }
        return 0;
}

const char *proxy_request_header(const ProxyRequest *req, const char *name, size_t *ret_len) {
        return head_header(req->head, name, ret_len);
}

const char *proxy_request_cookie(const ProxyRequest *req, const char *name, size_t *ret_len) {
        return head_cookie(req->head, name, ret_len);
}


/* ---- upstream connections and the pool ---- */

static bool same_address(const struct sockaddr_in *a, const struct sockaddr_in *b) {
        return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

static Pool *pool_get(Proxy *p, const struct sockaddr_in *addr) {
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

static void upstream_free(Upstream *u) {
        if (!u)
                return;
        if (!u->client)
                pool_unlink(u);
        sd_event_source_disable_unref(u->io);
        sd_event_source_disable_unref(u->timer);
        if (u->fd >= 0)
                close(u->fd);
        free(u);
}

static int on_upstream_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_upstream_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int upstream_connect(Proxy *p, Pool *pool, Upstream **ret) {
        _cleanup_close_ int fd = -1;
        Upstream *u;
        int r, one = 1;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *) &pool->addr, sizeof pool->addr) < 0 && errno != EINPROGRESS)
                return -errno;
        u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->proxy = p;
        u->pool = pool;
        u->fd = TAKE_FD(fd);
        u->connecting = true;
        r = sd_event_add_io(p->event, &u->io, u->fd, EPOLLOUT, on_upstream_io, u);
        if (r >= 0)
                r = sd_event_add_time_relative(p->event, &u->timer, CLOCK_MONOTONIC, p->connect_timeout_usec,
                                               0, on_upstream_timer, u);
        if (r < 0) {
                upstream_free(u);
                return r;
        }
        p->stats.upstream_connects++;
        *ret = u;
        return 0;
}

static Upstream *pool_take(Pool *pool) {
        Upstream *u = pool->idle;

        if (!u)
                return NULL;
        pool_unlink(u);
        u->reused = true;
        return u;
}

static void pool_put(Upstream *u) {
        Pool *pool = u->pool;

        u->client = NULL;
        if (pool->n_idle >= PROXY_IDLE_PER_BACKEND || u->in.len > 0 ||
            sd_event_source_set_io_events(u->io, EPOLLIN) < 0 ||
            sd_event_source_set_enabled(u->io, SD_EVENT_ON) < 0 ||
            sd_event_source_set_time_relative(u->timer, PROXY_UPSTREAM_IDLE_USEC) < 0 ||
            sd_event_source_set_enabled(u->timer, SD_EVENT_ONESHOT) < 0) {
                upstream_free(u);
                return;
        }
        u->idle_prev = NULL;
        u->idle_next = pool->idle;
        if (pool->idle)
                pool->idle->idle_prev = u;
        pool->idle = u;
        pool->n_idle++;
}

/* ---- clients ---- */

static void client_update_events(Client *c);
static void client_pump(Client *c);

static void client_abort(Client *c) {
        c->dead = true;
}

static void client_free(Client *c) {
        Proxy *p = c->proxy;

        if (c->up) {
                c->up->client = c; /* still attached: not in the pool */
                upstream_free(c->up);
        }
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        if (c->fd >= 0)
                close(c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                p->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if ((p->n_clients-- >= PROXY_MAX_CLIENTS || p->accept_paused) && p->listen) {
                /* A descriptor (or a client slot) is free again. */
                p->accept_paused = false;
                (void) sd_event_source_set_enabled(p->listen, SD_EVENT_ON);
        }
        free(c);
}

static void report(Client *c, int group, int status) {
        Proxy *p = c->proxy;

        if (p->done)
                p->done(p->userdata, group, c->has_backend ? &c->backend : NULL, status,
                        now_usec(p) - c->start_usec);
}

static void client_detach_upstream(Client *c) {
        Upstream *u = c->up;

        c->up = NULL;
        upstream_free(u);
}

/* Answers the request from here with a small JSON error and closes afterwards. Only while
 * nothing of a backend's response went to the client; otherwise the connection is cut. The
 * answer to HEAD has the head alone: a client reads no body after it, so body bytes would be
 * its next response. */
static void client_reply_error(Client *c, int status, const char *code, const char *message) {
        _cleanup_free_ char *body = NULL;
        json_t *j;

        if (c->resp_head_queued) {
                client_abort(c);
                return;
        }
        if (c->up)
                client_detach_upstream(c);
        j = json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "message", message, "request_id",
                      c->request_id);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!body) {
                client_abort(c);
                return;
        }
        c->to_client.len = 0;
        if (out_printf(&c->to_client,
                       "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s%s",
                       status, http_status_str((enum http_status) status), strlen(body) + 1,
                       c->is_head ? "" : body, c->is_head ? "" : "\n") < 0) {
                client_abort(c);
                return;
        }
        c->status = status;
        c->resp_head_queued = c->resp_complete = true;
        c->keep_alive = false;
        c->local_reply = true;
}

static bool client_can_replay(Client *c) {
        if (c->attempt_written == 0)
                return true; /* everything sent so far is still in to_upstream */
        if (c->has_body)
                return false;
        c->to_upstream.len = 0;
        return out_append(&c->to_upstream, c->request_head, c->request_head_len) >= 0;
}

/* The response parser starts fresh for each attempt. */
static void client_reset_response(Client *c) {
        http_parser_init(&c->resp, HTTP_RESPONSE);
        c->resp.data = c;
        c->resp_interim = c->resp_head_ready = false;
}

static void client_attach(Client *c, Upstream *u) {
        client_reset_response(c);
        u->client = c;
        c->up = u;
        c->attempt_written = 0;
        c->resp_started = false;
        if (u->reused) {
                c->proxy->stats.upstream_reuses++;
                (void) sd_event_source_set_time_relative(u->timer, c->proxy->response_head_timeout_usec);
                (void) sd_event_source_set_enabled(u->timer, SD_EVENT_ONESHOT);
        }
}

/* Starts one attempt: a pick (or the given backend, to retry a stale pooled connection
 * fresh), then a pooled or new connection. Connect failures here retry as they would later. */
static void client_start_attempt(Client *c, const struct sockaddr_in *fixed) {
        Proxy *p = c->proxy;

        for (;;) {
                ProxyRequest req = {.head = &c->head};
                struct sockaddr_in addr;
                Upstream *u = NULL;
                Pool *pool;
                int group = -1, r;

                if (fixed)
                        addr = *fixed, group = c->group;
                else if (p->pick(p->userdata, &req, &addr, &group) < 0) {
                        c->group = -1;
                        c->has_backend = false;
                        client_reply_error(c, 503, "unavailable",
                                           "No backend is available for this service.");
                        return;
                }
                c->group = group;
                c->backend = addr;
                c->has_backend = true;
                pool = pool_get(p, &addr);
                if (!pool) {
                        client_reply_error(c, 503, "unavailable", "Out of memory.");
                        return;
                }
                if (!fixed)
                        u = pool_take(pool);
                if (u) {
                        client_attach(c, u);
                        return;
                }
                r = upstream_connect(p, pool, &u);
                if (r >= 0) {
                        client_attach(c, u);
                        return;
                }
                /* Refused at once. */
                report(c, group, 0);
                if (c->idempotent && !c->retried_connect && client_can_replay(c)) {
                        c->retried_connect = true;
                        p->stats.upstream_retries++;
                        fixed = NULL;
                        continue;
                }
                client_reply_error(c, 502, "bad_gateway", "The backend could not be reached.");
                c->group = -2; /* already reported */
                return;
        }
}

/* The attempt on c->up failed before a complete response. */
static void client_upstream_failed(Client *c, int error) {
        Upstream *u = c->up;
        bool was_connecting = u->connecting, reused = u->reused;
        struct sockaddr_in addr = u->pool->addr;

        client_detach_upstream(c);
        if (was_connecting) {
                report(c, c->group, 0);
                if (c->idempotent && !c->retried_connect && client_can_replay(c)) {
                        c->retried_connect = true;
                        c->proxy->stats.upstream_retries++;
                        client_start_attempt(c, NULL);
                        return;
                }
                client_reply_error(c, 502, "bad_gateway", "The backend could not be reached.");
                c->group = -2;
                return;
        }
        if (reused && !c->resp_started && c->idempotent && !c->retried_pool && client_can_replay(c)) {
                /* A pooled connection the backend had closed: not the backend's fault. */
                c->retried_pool = true;
                c->proxy->stats.upstream_retries++;
                client_start_attempt(c, &addr);
                return;
        }
        log_debug("proxy: backend connection failed mid-request: %s", strerror(-error));
        client_reply_error(c, 502, "bad_gateway", "The backend closed the connection.");
}

/* The attempt on c->up went to a backend that is known to be gone (its guest died): an
 * idempotent request of which nothing reached the client goes to another pick, once, as
 * after a failed connect; anything else fails now instead of waiting out the timeout. */
static void client_backend_gone(Client *c) {
        bool started = c->resp_started;

        client_detach_upstream(c);
        if (!started && c->idempotent && !c->retried_connect && client_can_replay(c)) {
                report(c, c->group, 0);
                c->retried_connect = true;
                c->proxy->stats.upstream_retries++;
                client_start_attempt(c, NULL);
                return;
        }
        client_reply_error(c, 502, "bad_gateway", "The backend went away.");
}

/* The head the backend gets: framing from what the parser decided (the body is re-chunked when
 * it came chunked), never a field the client sent (head.h). Kept to replay on a retry. */
static int render_request_head(Client *c) {
        OutBuffer *b = &c->to_upstream;
        HeadOut out = {.data = b->data + b->len, .size = sizeof b->data - b->len};
        Framing framing = c->req_chunked                       ? FRAMING_CHUNKED
                          : c->req.flags & F_CONTENTLENGTH ? FRAMING_LENGTH
                                                             : FRAMING_NONE;
        int r;

        if (c->forward.request_id)
                snprintf(c->request_id, sizeof c->request_id, "%.*s", (int) c->forward.request_id_len,
                         c->forward.request_id);
        r = head_render_request(&c->head, http_method_str((enum http_method) c->req.method), &c->forward,
                                framing, c->req.content_length, c->ip, c->request_id, &out);
        if (r < 0 || out.len > sizeof c->request_head)
                return -ENOBUFS;
        b->len += out.len;
        memcpy(c->request_head, out.data, out.len);
        c->request_head_len = out.len;
        return 0;
}

/* The request head is complete and the request parser paused: choose a backend. */
static void client_begin_forward(Client *c) {
        const char *why = NULL;
        int m = c->req.method, status;

        c->head_ready = false;
        c->busy = true;
        c->group = -2; /* nothing to report unless a backend gets chosen (or none can be) */
        c->has_backend = false;
        c->start_usec = now_usec(c->proxy);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        c->req_chunked = c->req.flags & F_CHUNKED;
        c->has_body = c->req_chunked || ((c->req.flags & F_CONTENTLENGTH) && c->req.content_length > 0);
        c->idempotent =
                m == HTTP_GET || m == HTTP_HEAD || m == HTTP_PUT || m == HTTP_DELETE || m == HTTP_OPTIONS;
        c->is_head = m == HTTP_HEAD;
        /* RFC 9112 6.1: HTTP/1.0 with Transfer-Encoding is faulty framing; serve it, then close. */
        c->keep_alive = http_should_keep_alive(&c->req) && !c->req.upgrade &&
                        !(c->req_chunked && c->req.http_major == 1 && c->req.http_minor == 0);
        c->to_upstream.len = 0;

        if (random_hex(c->request_id, 16) < 0) {
                /* No id from the kernel's CSPRNG: say so, rather than hand out a guessable one. */
                log_error("Proxy: the kernel gave no random bytes for a request id; answering 503.");
                client_reply_error(c, 503, "unavailable", "aviaryd cannot draw a request id right now.");
                return;
        }
        if (c->head.overflow) {
                client_reply_error(c, 431, "bad_request", "The request head is too large.");
                return;
        }
        if (m == HTTP_CONNECT) {
                client_reply_error(c, 501, "bad_request", "CONNECT is not supported.");
                return;
        }
        status = head_check_request(&c->head, &c->req, &c->forward, &why);
        if (status != 0) {
                client_reply_error(c, status, status == 505 ? "version_not_supported" : "bad_request", why);
                return;
        }
        if (render_request_head(c) < 0) {
                client_reply_error(c, 431, "bad_request", "The request head is too large.");
                return;
        }
        http_parser_pause(&c->req, 0);
        client_start_attempt(c, NULL);
}

static int client_finish_request(Client *c) {
        Proxy *p = c->proxy;
        Upstream *u = c->up;

        p->stats.requests++;
        if (c->group != -2)
                report(c, c->group, c->status);
        if (!c->req_complete)
                c->keep_alive = false; /* the rest of its body would read as a request */
        if (u) {
                c->up = NULL;
                if (c->upstream_reusable && c->req_complete && c->to_upstream.len == 0 && !u->connecting &&
                    !u->eof)
                        pool_put(u);
                else
                        upstream_free(u);
        }
        if (!c->keep_alive || c->eof) {
                if (c->eof || (!c->local_reply && c->req_complete) || shutdown(c->fd, SHUT_WR) < 0) {
                        client_abort(c);
                        return 0;
                }
                /* The client may still be sending a body we refused: closing now would reset the
                 * connection and could destroy our answer before it reads it. Drain a while. */
                c->draining = true;
                c->busy = false;
                (void) sd_event_source_set_time_relative(c->timer, PROXY_DRAIN_USEC);
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
                return 0;
        }
        c->busy = c->req_complete = c->resp_started = c->resp_head_queued = c->resp_complete = false;
        c->retried_connect = c->retried_pool = c->upstream_reusable = c->local_reply = c->is_head = false;
        c->status = 0;
        c->group = -1;
        http_parser_init(&c->req, HTTP_REQUEST);
        c->req.data = c;
        (void) sd_event_source_set_time_relative(c->timer, PROXY_CLIENT_IDLE_USEC);
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return 1;
}

/* Feeds buffered client bytes to the request parser; 1 if it made progress. */
static int client_feed_request(Client *c) {
        size_t n, room, parsed;

        if (c->in.len == 0 || c->local_reply || HTTP_PARSER_ERRNO(&c->req) == HPE_PAUSED)
                return 0;
        n = c->in.len;
        if (c->busy) {
                if (c->to_upstream.len >= PROXY_WINDOW)
                        return 0;
                room = PROXY_WINDOW - c->to_upstream.len;
                if (n > room)
                        n = room;
        }
        parsed = http_parser_execute(&c->req, &request_settings, c->in.data, n);
        if (!c->busy) /* the parser pauses at the head's end: these bytes are all head */
                head_scan(&c->head, c->in.data, parsed);
        consume(c->in.data, &c->in.len, parsed);
        if (HTTP_PARSER_ERRNO(&c->req) != HPE_OK && HTTP_PARSER_ERRNO(&c->req) != HPE_PAUSED) {
                if (!c->busy) {
                        c->busy = true;
                        c->start_usec = now_usec(c->proxy);
                        c->group = -2; /* nothing to report for a request that never was */
                        client_reply_error(c, 400, "bad_request",
                                           http_errno_description(HTTP_PARSER_ERRNO(&c->req)));
                } else
                        client_abort(c);
                return 1;
        }
        if (c->head_ready)
                client_begin_forward(c);
        return 1;
}

/* The response parser paused at the end of a head: checks it and queues what the client gets
 * of it. Returns 0, or -EBADMSG with *RET_WHY for an answer not to relay (502). */
static int client_take_response_head(Client *c, const char **ret_why) {
        const http_parser *p = &c->resp;
        const Head *h = &c->head;
        OutBuffer *b = &c->to_client;
        HeadOut out = {.data = b->data + b->len, .size = sizeof b->data - b->len};
        bool client_10 = c->req.http_major == 1 && c->req.http_minor == 0;
        bool chunked = p->flags & F_CHUNKED, length = p->flags & F_CONTENTLENGTH;
        bool no_body = c->is_head || p->status_code == 204 || p->status_code == 304;
        Framing framing;
        const char *connection = NULL;

        /* http_parser takes any 1 to 3 digits ("HTTP/1.1 2 OK"): relayed as is, that is no
         * status line, and a status 0 would read as a failed connect in the metrics. */
        if (h->overflow || p->status_code == 101 || p->status_code < 100 || p->status_code > 599) {
                *ret_why = "an oversized head, a status outside 100..599, or 101";
                return -EBADMSG;
        }
        if (head_check_response(h, p, ret_why) < 0)
                return -EBADMSG;
        if (p->status_code / 100 == 1) {
                /* 100 Continue and friends: pass on to HTTP/1.1 clients, then the real one. */
                c->resp_interim = true;
                if (!client_10 && out_printf(b, "HTTP/1.1 %u %.*s\r\n\r\n", p->status_code,
                                             (int) h->first_len, h->store) < 0)
                        goto too_big;
                return 0;
        }
        (void) sd_event_source_set_enabled(c->up->timer, SD_EVENT_OFF);
        c->status = p->status_code;
        c->resp_chunked_out = chunked && !no_body && !client_10;
        /* The framing the client gets is the proxy's: what the parser decided, re-chunked or
         * de-chunked as the client speaks, never a field the backend sent (head.h). A response
         * without a body still tells its length (HEAD, 304), but never as chunks to HTTP/1.0. */
        if (p->status_code == 204)
                framing = FRAMING_NONE;
        else if (chunked)
                framing = client_10 ? FRAMING_NONE : FRAMING_CHUNKED;
        else if (length)
                framing = FRAMING_LENGTH;
        else
                framing = FRAMING_NONE;
        if (!no_body && !chunked && !length)
                c->keep_alive = false; /* delimited by the backend closing */
        if (!no_body && chunked && client_10)
                c->keep_alive = false; /* de-chunked, delimited by our close */
        if (!c->keep_alive)
                connection = "close";
        else if (client_10)
                connection = "keep-alive";
        if (head_render_response(h, p->status_code, framing, p->content_length, connection, &out) < 0)
                goto too_big;
        b->len += out.len;
        c->resp_head_queued = true;
        return 0;
too_big:
        *ret_why = "a head that does not fit the proxy's buffer";
        return -EBADMSG;
}

static int client_feed_response(Client *c) {
        Upstream *u = c->up;
        const char *why = NULL;
        size_t n, parsed;
        bool in_head;

        if (!u || u->in.len == 0 || c->resp_complete || c->to_client.len >= PROXY_WINDOW)
                return 0;
        n = u->in.len;
        if (n > PROXY_WINDOW - c->to_client.len)
                n = PROXY_WINDOW - c->to_client.len;
        in_head = !c->resp_head_queued;
        parsed = http_parser_execute(&c->resp, &response_settings, u->in.data, n);
        if (in_head) /* the parser pauses at each head's end: these bytes are all head */
                head_scan(&c->head, u->in.data, parsed);
        consume(u->in.data, &u->in.len, parsed);
        if (HTTP_PARSER_ERRNO(&c->resp) != HPE_OK && HTTP_PARSER_ERRNO(&c->resp) != HPE_PAUSED)
                why = http_errno_description(HTTP_PARSER_ERRNO(&c->resp));
        else if (c->resp_head_ready) {
                c->resp_head_ready = false;
                if (client_take_response_head(c, &why) == 0)
                        http_parser_pause(&c->resp, 0);
        }
        if (why) {
                log_debug("proxy: bad response from backend: %s", why);
                c->upstream_reusable = false;
                client_reply_error(c, 502, "bad_gateway", "The backend sent an invalid response.");
        }
        return 1;
}

static void set_io(sd_event_source *s, uint32_t events) {
        if (events == 0) {
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_io_events(s, events);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static void client_pump(Client *c) {
        if (c->draining) {
                set_io(c->io, EPOLLIN);
                return;
        }
        for (bool progress = true; progress && !c->dead;) {
                size_t before;
                int r;

                progress = false;
                before = c->to_client.len;
                r = out_flush(c->fd, &c->to_client, NULL);
                if (r < 0) {
                        client_abort(c);
                        return;
                }
                progress |= c->to_client.len != before;

                if (c->up && !c->up->connecting && c->to_upstream.len > 0) {
                        before = c->to_upstream.len;
                        r = out_flush(c->up->fd, &c->to_upstream, &c->attempt_written);
                        if (r < 0) {
                                client_upstream_failed(c, r);
                                progress = true;
                                continue;
                        }
                        if (c->to_upstream.len != before) {
                                progress = true;
                                /* A long upload is not a slow answer: the wait for the
                                 * response head counts from the last byte sent. */
                                if (!c->resp_head_queued)
                                        (void) sd_event_source_set_time_relative(
                                                c->up->timer, c->proxy->response_head_timeout_usec);
                        }
                }
                progress |= client_feed_request(c) > 0;
                if (c->dead)
                        return;
                progress |= client_feed_response(c) > 0;
                if (c->dead)
                        return;
                if (c->up && c->up->eof && c->up->in.len == 0 && !c->resp_complete) {
                        /* A body delimited by close ends here; anything else is cut short. */
                        if (c->resp_head_queued)
                                (void) http_parser_execute(&c->resp, &response_settings, NULL, 0);
                        if (!c->resp_complete)
                                client_upstream_failed(c, c->up->error);
                        progress = true;
                        continue;
                }
                if (c->busy && c->resp_complete && c->to_client.len == 0)
                        progress |= client_finish_request(c) > 0;
                if (c->eof && !c->busy && c->in.len == 0)
                        client_abort(c);
                if (c->eof && c->busy && !c->req_complete && c->in.len == 0 && !c->local_reply)
                        client_abort(c); /* gone in the middle of sending its request */
        }
        client_update_events(c);
}

static void client_update_events(Client *c) {
        uint32_t events = 0;

        if (c->dead)
                return;
        if (!c->eof && c->in.len < sizeof c->in.data && !c->local_reply)
                events |= EPOLLIN;
        if (c->to_client.len > 0)
                events |= EPOLLOUT;
        set_io(c->io, events);

        if (c->up) {
                Upstream *u = c->up;
                events = 0;
                if (u->connecting)
                        events = EPOLLOUT;
                else {
                        if (u->in.len < sizeof u->in.data && !c->resp_complete && !u->eof)
                                events |= EPOLLIN;
                        if (c->to_upstream.len > 0)
                                events |= EPOLLOUT;
                }
                set_io(u->io, events);
        }
}

static void client_run(Client *c) {
        client_pump(c);
        if (c->dead)
                client_free(c);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *c = userdata;

        if (c->draining) {
                char scratch[4096];
                ssize_t n = recv(fd, scratch, sizeof scratch, 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        client_abort(c);
        } else if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->eof && c->in.len < sizeof c->in.data) {
                ssize_t n = recv(fd, c->in.data + c->in.len, sizeof c->in.data - c->in.len, 0);
                if (n > 0)
                        c->in.len += (size_t) n;
                else if (n == 0)
                        c->eof = true;
                else if (errno != EAGAIN && errno != EINTR)
                        client_abort(c);
        } else if (revents & (EPOLLHUP | EPOLLERR))
                client_abort(c);
        client_run(c);
        return 0;
}

static int on_client_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Client *c = userdata;

        if (!c->busy)
                client_abort(c);
        client_run(c);
        return 0;
}

static int on_upstream_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Upstream *u = userdata;
        Client *c = u->client;

        if (!c) {
                /* Idle in the pool: the backend closed it or sent something unasked. */
                upstream_free(u);
                return 0;
        }
        if (u->connecting) {
                int error = 0;
                socklen_t len = sizeof error;

                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error == 0 && (revents & (EPOLLERR | EPOLLHUP)))
                        error = ECONNREFUSED;
                if (error != 0) {
                        client_upstream_failed(c, -error);
                        client_run(c);
                        return 0;
                }
                u->connecting = false;
                (void) sd_event_source_set_time_relative(u->timer, u->proxy->response_head_timeout_usec);
                (void) sd_event_source_set_enabled(u->timer, SD_EVENT_ONESHOT);
        } else if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && u->in.len < sizeof u->in.data) {
                ssize_t n = recv(fd, u->in.data + u->in.len, sizeof u->in.data - u->in.len, 0);
                if (n > 0) {
                        u->in.len += (size_t) n;
                        c->resp_started = true;
                } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                        u->eof = true; /* client_pump() decides once the buffered bytes are parsed */
                        u->error = n == 0 ? -ECONNRESET : -errno;
                }
        }
        client_run(c);
        return 0;
}

static int on_upstream_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Upstream *u = userdata;
        Client *c = u->client;

        if (!c) {
                upstream_free(u); /* idle too long */
                return 0;
        }
        if (u->connecting)
                client_upstream_failed(c, -ETIMEDOUT);
        else if (!c->resp_head_queued)
                client_reply_error(c, 504, "gateway_timeout", "The backend did not answer in time.");
        client_run(c);
        return 0;
}

/* ---- request parser callbacks ---- */

static int req_message_begin(http_parser *p) {
        Client *c = p->data;
        head_reset(&c->head);
        return 0;
}

static int req_url(http_parser *p, const char *at, size_t n) {
        head_add(&((Client *) p->data)->head, HEAD_FIRST, at, n);
        return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
        head_add(&((Client *) p->data)->head, HEAD_NAME, at, n);
        return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
        head_add(&((Client *) p->data)->head, HEAD_VALUE, at, n);
        return 0;
}

/* Fields after the request head are the trailers of a chunked body: they are not forwarded,
 * and must not land in the Head, which a retry's pick reads and the response reuses. */
static int req_header_field(http_parser *p, const char *at, size_t n) {
        return ((Client *) p->data)->busy ? 0 : on_header_field(p, at, n);
}

static int req_header_value(http_parser *p, const char *at, size_t n) {
        return ((Client *) p->data)->busy ? 0 : on_header_value(p, at, n);
}

static int req_headers_complete(http_parser *p) {
        Client *c = p->data;
        c->head_ready = true;
        http_parser_pause(p, 1);
        return 0;
}

static int append_chunk(OutBuffer *b, const char *at, size_t n) {
        int r = out_printf(b, "%zx\r\n", n);
        if (r >= 0)
                r = out_append(b, at, n);
        if (r >= 0)
                r = out_append(b, "\r\n", 2);
        return r;
}

static int req_body(http_parser *p, const char *at, size_t n) {
        Client *c = p->data;
        int r;

        if (c->local_reply)
                return 0;
        r = c->req_chunked ? append_chunk(&c->to_upstream, at, n) : out_append(&c->to_upstream, at, n);
        return r < 0 ? -1 : 0;
}

static int req_message_complete(http_parser *p) {
        Client *c = p->data;

        if (c->req_chunked && !c->local_reply && out_append(&c->to_upstream, "0\r\n\r\n", 5) < 0)
                return -1;
        c->req_complete = true;
        http_parser_pause(p, 1);
        return 0;
}

static const http_parser_settings request_settings = {
        .on_message_begin = req_message_begin,
        .on_url = req_url,
        .on_header_field = req_header_field,
        .on_header_value = req_header_value,
        .on_headers_complete = req_headers_complete,
        .on_body = req_body,
        .on_message_complete = req_message_complete,
};

/* ---- response parser callbacks ---- */

static int resp_message_begin(http_parser *p) {
        Client *c = p->data;
        head_reset(&c->head);
        return 0;
}

static int resp_status(http_parser *p, const char *at, size_t n) {
        head_add(&((Client *) p->data)->head, HEAD_FIRST, at, n);
        return 0;
}

/* Pauses at every head's end: client_take_response_head() checks it once head_scan() has seen
 * all its bytes. An interim (1xx) response, a response to HEAD, a 204 and a 304 have no body
 * whatever their fields say (RFC 9112 6.3); http_parser would read one by Content-Length, and
 * the client would take those bytes for its next response. Bytes after such a head are parsed
 * as the next response (so an invalid one is a 502), and keep the connection out of the pool. */
static int resp_headers_complete(http_parser *p) {
        Client *c = p->data;

        c->resp_head_ready = true;
        http_parser_pause(p, 1);
        return c->is_head || p->status_code / 100 == 1 || p->status_code == 204 || p->status_code == 304 ? 1 : 0;
}

static int resp_body(http_parser *p, const char *at, size_t n) {
        Client *c = p->data;
        int r = c->resp_chunked_out ? append_chunk(&c->to_client, at, n) : out_append(&c->to_client, at, n);
        return r < 0 ? -1 : 0;
}

static int resp_message_complete(http_parser *p) {
        Client *c = p->data;

        if (c->resp_interim) {
                c->resp_interim = false;
                return 0;
        }
        if (c->resp_chunked_out && out_append(&c->to_client, "0\r\n\r\n", 5) < 0)
                return -1;
        c->resp_complete = true;
        c->upstream_reusable = http_should_keep_alive(p) &&
                               !((p->flags & F_CHUNKED) && p->http_major == 1 && p->http_minor == 0);
        http_parser_pause(p, 1);
        return 0;
}

static const http_parser_settings response_settings = {
        .on_message_begin = resp_message_begin,
        .on_status = resp_status,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = resp_headers_complete,
        .on_body = resp_body,
        .on_message_complete = resp_message_complete,
};

/* ---- listener ---- */

static int client_new(Proxy *p, int fd, const struct sockaddr_in *peer) {
        Client *c;
        int r, one = 1;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->proxy = p;
        c->fd = fd;
        c->group = -1;
        inet_ntop(AF_INET, &peer->sin_addr, c->ip, sizeof c->ip);
        http_parser_init(&c->req, HTTP_REQUEST);
        c->req.data = c;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->next = p->clients;
        if (p->clients)
                p->clients->prev = c;
        p->clients = c;
        p->n_clients++;
        p->stats.clients_accepted++;
        r = sd_event_add_io(p->event, &c->io, fd, EPOLLIN, on_client_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(p->event, &c->timer, CLOCK_MONOTONIC, PROXY_CLIENT_IDLE_USEC,
                                               0, on_client_timer, c);
        if (r < 0) {
                client_free(c);
                return r;
        }
        return 0;
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
        uint64_t now = now_usec(p);

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
                if (client_new(p, cfd, &peer) < 0)
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

int proxy_new_from_fd(sd_event *e, int fd, ProxyPickFn pick, ProxyDoneFn done, void *userdata, Proxy **ret) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        Proxy *p;
        int r, flags;

        if (!e || fd < 0 || !pick || !ret)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(e);
        p->connect_timeout_usec = PROXY_CONNECT_TIMEOUT_USEC;
        p->response_head_timeout_usec = PROXY_RESPONSE_HEAD_TIMEOUT_USEC;
        p->pick = pick;
        p->done = done;
        p->userdata = userdata;
        p->fd = fd;
        flags = fcntl(fd, F_GETFL);
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
        *ret = p;
        return 0;
fail:
        proxy_free(p);
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

int proxy_get_fd(const Proxy *p) {
        return p->fd;
}

Proxy *proxy_free(Proxy *p) {
        if (!p)
                return NULL;
        while (p->clients)
                client_free(p->clients);
        sd_event_source_disable_unref(p->listen);
        p->listen = NULL;
        sd_event_source_disable_unref(p->accept_retry);
        while (p->pools) {
                Pool *pool = p->pools;
                while (pool->idle)
                        upstream_free(pool->idle);
                p->pools = pool->next;
                free(pool);
        }
        if (p->fd >= 0)
                close(p->fd);
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
        return &p->stats;
}

/* ADDR is BACKEND, or one of its ports when BACKEND's port is 0. */
static bool backend_matches(const struct sockaddr_in *addr, const struct sockaddr_in *backend) {
        return addr->sin_addr.s_addr == backend->sin_addr.s_addr &&
               (!backend->sin_port || addr->sin_port == backend->sin_port);
}

/* A client holds an upstream from its attempt's start until the response is relayed or the
 * attempt failed, which is exactly the span that counts. */
unsigned proxy_backend_inflight(const Proxy *p, const struct sockaddr_in *backend) {
        unsigned n = 0;

        for (const Client *c = p->clients; c; c = c->next)
                if (c->up && backend_matches(&c->up->pool->addr, backend))
                        n++;
        return n;
}

void proxy_backend_down(Proxy *p, const struct sockaddr_in *backend) {
        Client *next;

        for (Pool *pool = p->pools; pool; pool = pool->next)
                if (backend_matches(&pool->addr, backend))
                        while (pool->idle)
                                upstream_free(pool->idle);
        for (Client *c = p->clients; c; c = next) {
                next = c->next; /* client_run() may free C, never another client */
                if (!c->up || !backend_matches(&c->up->pool->addr, backend))
                        continue;
                p->stats.backend_down_failovers++;
                client_backend_gone(c);
                client_run(c);
        }
}
