/* The client state machine: reads a request head with http_parser, has head.c check and
 * rewrite it for the backend the pick callback names, then streams body and response through
 * fixed per-direction buffers, pausing the reading side while the writing side is full.
 * Sockets are edge-triggered (loop.h): a connection remembers that it is readable or writable
 * until a read or write says otherwise, so no epoll_ctl is ever needed to change interest. */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "engine.h"
#include "requestid.h"

static const http_parser_settings request_settings, response_settings;

/* ---- buffers ---- */

static void in_consume(InBuffer *b, size_t n) {
        b->start += n;
        if (b->start == b->end)
                b->start = b->end = 0;
}

static size_t out_room(OutBuffer *b) {
        if (b->start == b->end)
                b->start = b->end = 0;
        else if (b->start > 0 && sizeof b->data - b->end < PROXY_HEAD_MAX) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
        }
        return sizeof b->data - b->end;
}

int out_append(OutBuffer *b, const void *data, size_t n) {
        if (n > out_room(b)) {
                if (b->start > 0) { /* compact fully before giving up */
                        memmove(b->data, b->data + b->start, b->end - b->start);
                        b->end -= b->start;
                        b->start = 0;
                }
                if (n > sizeof b->data - b->end)
                        return -ENOBUFS;
        }
        memcpy(b->data + b->end, data, n);
        b->end += n;
        return 0;
}

void out_reset(OutBuffer *b) {
        b->start = b->end = 0;
}

char *out_tail(OutBuffer *b, size_t *ret_room) {
        if (b->start > 0) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
        }
        *ret_room = sizeof b->data - b->end;
        return b->data + b->end;
}

void out_commit(OutBuffer *b, size_t n) {
        b->end += n;
}

/* Writes what it can; 0 when the buffer is empty or the socket is full (*WRITABLE cleared),
 * -errno on error. */
static int out_flush(int fd, OutBuffer *b, bool *writable, size_t *written) {
        while (out_len(b) > 0 && *writable) {
                size_t want = out_len(b);
                ssize_t n = send(fd, b->data + b->start, want, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                *writable = false;
                                return 0;
                        }
                        return -errno;
                }
                b->start += (size_t) n;
                if (b->start == b->end)
                        b->start = b->end = 0;
                if (written)
                        *written += (size_t) n;
                if ((size_t) n < want)
                        *writable = false; /* the socket buffer is full: wait for the edge */
        }
        return 0;
}

/* "%zx\r\n" without printf. */
static int append_chunk_size(OutBuffer *b, size_t n) {
        char buf[24];
        size_t i = sizeof buf;

        buf[--i] = '\n';
        buf[--i] = '\r';
        do {
                buf[--i] = "0123456789abcdef"[n & 15];
                n >>= 4;
        } while (n);
        return out_append(b, buf + i, sizeof buf - i);
}

/* ---- clients ---- */

static void client_pump(Client *c);
static void client_start_attempt(Client *c, const struct sockaddr_in *fixed);

static void client_abort(Client *c) {
        c->dead = true;
}

static void client_set_deadline(Client *c, uint64_t usec) {
        c->deadline = usec;
        if (usec)
                proxy_want_deadline(c->proxy, usec);
}

static void upstream_set_deadline(Upstream *u, uint64_t usec) {
        u->deadline = usec;
        if (usec)
                proxy_want_deadline(u->proxy, usec);
}

static void client_detach_upstream(Client *c) {
        Upstream *u = c->up;

        c->up = NULL;
        if (u) {
                u->pool->inflight--;
                upstream_free(u);
        }
}

/* A descriptor (or a client slot) is free again: the listener accepts again. */
static void proxy_client_left(Proxy *p) {
        if (p->freeing || !p->listen)
                return;
        if (p->n_clients + 1 >= PROXY_MAX_CLIENTS || p->accept_paused) {
                p->accept_paused = false;
                (void) sd_event_source_set_enabled(p->listen, SD_EVENT_ON);
        }
}

/* C leaves the hold: its place in the service's queue is free. */
static void client_unhold(Client *c) {
        if (!c->held)
                return;
        c->held = false;
        c->deadline = 0;
        c->proxy->hold_fn(c->proxy->userdata, c->hold_key, false);
}

void client_free(Client *c) {
        Proxy *p = c->proxy;

        client_unhold(c);
        if (c->up)
                client_detach_upstream(c); /* still attached: not in the pool */
        /* Out of the epoll set before the close: a close alone leaves it there while another
         * process still holds the socket (a child forked by libvirt before its exec), and its
         * events would reach the freed watch. */
        if (c->fd >= 0) {
                proxy_loop_remove(p->loop, c->fd);
                close(c->fd);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                p->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        p->n_clients--;
        stat_add(&p->stats->clients_closed, 1);
        proxy_loop_release(p->loop, &c->watch);
        proxy_client_left(p);
}

static void report(Client *c, int group, int status) {
        Proxy *p = c->proxy;

        if (p->done)
                p->done(p->userdata, group, c->has_backend ? &c->backend : NULL, status,
                        proxy_now() - c->start_usec);
}

static int out_puts(OutBuffer *b, const char *s) {
        return out_append(b, s, strlen(s));
}

static int out_uint(OutBuffer *b, uint64_t v) {
        char buf[24];
        size_t i = sizeof buf;

        do {
                buf[--i] = (char) ('0' + v % 10);
                v /= 10;
        } while (v);
        return out_append(b, buf + i, sizeof buf - i);
}

/* Answers the request from here with a small JSON error and closes afterwards. Only while
 * nothing of a backend's response went to the client; otherwise the connection is cut. The
 * answer to HEAD has the head alone: a client reads no body after it, so body bytes would be
 * its next response. */
static void client_reply_error_retry(Client *c, int status, const char *code, const char *message,
                                     unsigned retry_after_sec) {
        _cleanup_free_ char *body = NULL;
        OutBuffer *b = &c->to_client;
        json_t *j;
        int r;

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
        out_reset(b);
        r = out_puts(b, "HTTP/1.1 ");
        if (r >= 0)
                r = out_uint(b, (uint64_t) status);
        if (r >= 0)
                r = out_puts(b, " ");
        if (r >= 0)
                r = out_puts(b, http_status_str((enum http_status) status));
        if (r >= 0)
                r = out_puts(b, "\r\nContent-Type: application/json\r\nContent-Length: ");
        if (r >= 0)
                r = out_uint(b, strlen(body) + 1);
        if (r >= 0 && retry_after_sec) {
                r = out_puts(b, "\r\nRetry-After: ");
                if (r >= 0)
                        r = out_uint(b, retry_after_sec);
        }
        if (r >= 0)
                r = out_puts(b, "\r\nConnection: close\r\n\r\n");
        if (r >= 0 && !c->is_head) {
                r = out_puts(b, body);
                if (r >= 0)
                        r = out_puts(b, "\n");
        }
        if (r < 0) {
                client_abort(c);
                return;
        }
        c->status = status;
        c->resp_head_queued = c->resp_complete = true;
        c->keep_alive = false;
        c->local_reply = true;
}

static void client_reply_error(Client *c, int status, const char *code, const char *message) {
        client_reply_error_retry(c, status, code, message, 0);
}

/* The pick said the service is asleep or waking: C's request waits on its connection, within
 * the service's bounds (proxy_set_hold). Its wait counts from its first hold, across releases
 * that hold it again. */
static void client_hold(Client *c, int key) {
        Proxy *p = c->proxy;

        if (!p->hold_fn) {
                client_reply_error_retry(c, 503, "unavailable", "The service is asleep and cannot be woken here.",
                                         PROXY_HOLD_RETRY_AFTER_SEC);
                return;
        }
        if (!p->hold_fn(p->userdata, key, true)) {
                client_reply_error_retry(c, 503, "wake_queue_full",
                                         "The service is waking up and already holds as many requests as it may "
                                         "(wake_queue); retry shortly.",
                                         PROXY_HOLD_RETRY_AFTER_SEC);
                return;
        }
        c->held = true;
        c->hold_key = key;
        if (!c->hold_deadline)
                c->hold_deadline = proxy_now() + p->hold_timeout_usec;
        client_set_deadline(c, c->hold_deadline);
}

void client_release(Client *c, const char *failure) {
        if (!c->held)
                return;
        client_unhold(c);
        if (failure)
                client_reply_error_retry(c, 503, "wake_failed", failure, PROXY_HOLD_RETRY_AFTER_SEC);
        else
                client_start_attempt(c, NULL);
}

static bool client_can_replay(Client *c) {
        if (c->attempt_written == 0)
                return true; /* everything sent so far is still in to_upstream */
        if (c->has_body)
                return false;
        out_reset(&c->to_upstream);
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
        u->pool->inflight++;
        c->up = u;
        c->attempt_written = 0;
        c->resp_started = false;
        if (u->reused) {
                stat_add(&c->proxy->stats->upstream_reuses, 1);
                upstream_set_deadline(u, proxy_now() + c->proxy->response_head_timeout_usec);
        }
}

/* Shadow traffic: once per request, after its first pick went through, a GET or HEAD with no
 * body (all of it is in the head, so the copy is whole at once) may be copied to a second backend
 * (ProxyMirrorFn). The copy is the proxy's, not the client's (mirror.c). */
static void client_mirror(Client *c) {
        Proxy *p = c->proxy;
        struct sockaddr_in backend;
        int tag = -1;

        if (c->mirror_asked || !p->mirror_fn)
                return;
        c->mirror_asked = true;
        if ((c->req.method != HTTP_GET && c->req.method != HTTP_HEAD) || c->has_body)
                return;
        if (p->mirror_fn(p->userdata, c->group, &backend, &tag))
                mirror_start(p, c->request_head, c->request_head_len, c->is_head, tag, &backend);
}

/* Starts one attempt: a pick (or the given backend, to retry a stale pooled connection
 * fresh), then a pooled or new connection. Connect failures here retry as they would later. */
static void client_start_attempt(Client *c, const struct sockaddr_in *fixed) {
        Proxy *p = c->proxy;

        for (;;) {
                ProxyRequest req = {.head = &c->head, .peer = c->peer};
                struct sockaddr_in addr;
                Upstream *u = NULL;
                Pool *pool;
                int group = -1, r;

                if (fixed)
                        addr = *fixed, group = c->group;
                else if ((r = p->pick(p->userdata, &req, &addr, &group)) < 0) {
                        c->group = -1;
                        c->has_backend = false;
                        if (r == -EAGAIN)
                                client_hold(c, group);
                        else if (r == -ENOENT)
                                client_reply_error(c, 404, "not_found",
                                                   "No service on this address matches the request's host and path.");
                        else
                                client_reply_error(c, 503, "unavailable", "No backend is available for this service.");
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
                        client_mirror(c); /* after the client's own attempt is under way */
                        return;
                }
                r = upstream_connect(p, pool, &u);
                if (r >= 0) {
                        client_attach(c, u);
                        client_mirror(c);
                        return;
                }
                /* Refused at once. */
                report(c, group, 0);
                if (c->idempotent && !c->retried_connect && client_can_replay(c)) {
                        c->retried_connect = true;
                        stat_add(&p->stats->upstream_retries, 1);
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
                        stat_add(&c->proxy->stats->upstream_retries, 1);
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
                stat_add(&c->proxy->stats->upstream_retries, 1);
                client_start_attempt(c, &addr);
                return;
        }
        log_debug("proxy: backend connection failed mid-request: %s", strerror(-error));
        client_reply_error(c, 502, "bad_gateway", "The backend closed the connection.");
}

/* The attempt on c->up went to a backend that is known to be gone (its guest died): an
 * idempotent request of which nothing reached the client goes to another pick, once, as
 * after a failed connect; anything else fails now instead of waiting out the timeout. */
void client_backend_gone(Client *c) {
        bool started = c->resp_started;

        client_detach_upstream(c);
        if (!started && c->idempotent && !c->retried_connect && client_can_replay(c)) {
                report(c, c->group, 0);
                c->retried_connect = true;
                stat_add(&c->proxy->stats->upstream_retries, 1);
                client_start_attempt(c, NULL);
                return;
        }
        client_reply_error(c, 502, "bad_gateway", "The backend went away.");
}

/* The head the backend gets: framing from what the parser decided (the body is re-chunked when
 * it came chunked), never a field the client sent (head.h). Kept to replay on a retry. */
static int render_request_head(Client *c) {
        OutBuffer *b = &c->to_upstream;
        HeadOut out;
        Framing framing = c->req_chunked                     ? FRAMING_CHUNKED
                          : c->req.flags & F_CONTENTLENGTH ? FRAMING_LENGTH
                                                           : FRAMING_NONE;
        int r;

        out.data = out_tail(b, &out.size);
        out.len = 0;
        if (c->forward.request_id) {
                memcpy(c->request_id, c->forward.request_id, c->forward.request_id_len);
                c->request_id[c->forward.request_id_len] = 0;
        }
        r = head_render_request(&c->head, http_method_str((enum http_method) c->req.method), &c->forward,
                                framing, c->req.content_length, c->ip, c->request_id, &out);
        if (r < 0 || out.len > sizeof c->request_head)
                return -ENOBUFS;
        out_commit(b, out.len);
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
        c->mirror_asked = false;
        c->start_usec = proxy_now();
        c->deadline = 0; /* the request's own deadlines are the upstream's */
        c->req_chunked = c->req.flags & F_CHUNKED;
        c->has_body = c->req_chunked || ((c->req.flags & F_CONTENTLENGTH) && c->req.content_length > 0);
        c->idempotent =
                m == HTTP_GET || m == HTTP_HEAD || m == HTTP_PUT || m == HTTP_DELETE || m == HTTP_OPTIONS;
        c->is_head = m == HTTP_HEAD;
        /* RFC 9112 6.1: HTTP/1.0 with Transfer-Encoding is faulty framing; serve it, then close. */
        c->keep_alive = http_should_keep_alive(&c->req) && !c->req.upgrade &&
                        !(c->req_chunked && c->req.http_major == 1 && c->req.http_minor == 0);
        out_reset(&c->to_upstream);

        if (request_id_new(c->request_id, 16) < 0) {
                /* No key from the kernel's CSPRNG: say so, rather than hand out a guessable id. */
                log_error("Proxy: the kernel gave no random bytes for request ids; answering 503.");
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

        stat_add(&p->stats->requests, 1);
        if (c->group != -2)
                report(c, c->group, c->status);
        if (!c->req_complete)
                c->keep_alive = false; /* the rest of its body would read as a request */
        if (u) {
                c->up = NULL;
                u->pool->inflight--;
                if (c->upstream_reusable && c->req_complete && out_len(&c->to_upstream) == 0 && !u->connecting &&
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
                client_set_deadline(c, proxy_now() + PROXY_DRAIN_USEC);
                return 0;
        }
        c->busy = c->req_complete = c->resp_started = c->resp_head_queued = c->resp_complete = false;
        c->retried_connect = c->retried_pool = c->upstream_reusable = c->local_reply = c->is_head = false;
        c->hold_deadline = 0;
        c->status = 0;
        c->group = -1;
        http_parser_init(&c->req, HTTP_REQUEST);
        c->req.data = c;
        client_set_deadline(c, proxy_now() + PROXY_CLIENT_IDLE_USEC);
        return 1;
}

/* Reads what the client sent (edge-triggered: until EAGAIN or the buffer is full). */
static bool client_read(Client *c) {
        bool got = false;

        while (c->readable && !c->eof && !c->dead) {
                size_t room = in_room(&c->in);
                ssize_t n;

                if (room == 0)
                        break;
                n = recv(c->fd, c->in.data + c->in.end, room, 0);
                if (n > 0) {
                        c->in.end += (size_t) n;
                        stat_add(&c->proxy->stats->bytes_received, (uint64_t) n);
                        got = true;
                        if ((size_t) n < room)
                                c->readable = false;
                } else if (n == 0)
                        c->eof = true;
                else if (errno == EAGAIN || errno == EWOULDBLOCK)
                        c->readable = false;
                else if (errno != EINTR)
                        client_abort(c);
        }
        return got;
}

/* Feeds buffered client bytes to the request parser; 1 if it made progress. */
static int client_feed_request(Client *c) {
        size_t n, parsed;

        if (in_len(&c->in) == 0 || c->local_reply || HTTP_PARSER_ERRNO(&c->req) == HPE_PAUSED)
                return 0;
        n = in_len(&c->in);
        if (c->busy) {
                if (out_len(&c->to_upstream) >= PROXY_WINDOW)
                        return 0;
                size_t room = PROXY_WINDOW - out_len(&c->to_upstream);
                if (n > room)
                        n = room;
        }
        parsed = http_parser_execute(&c->req, &request_settings, c->in.data + c->in.start, n);
        if (!c->busy) /* the parser pauses at the head's end: these bytes are all head */
                head_scan(&c->head, c->in.data + c->in.start, parsed);
        in_consume(&c->in, parsed);
        if (HTTP_PARSER_ERRNO(&c->req) != HPE_OK && HTTP_PARSER_ERRNO(&c->req) != HPE_PAUSED) {
                if (!c->busy) {
                        c->busy = true;
                        c->start_usec = proxy_now();
                        c->deadline = 0;
                        c->group = -2; /* nothing to report for a request that never was */
                        client_reply_error(c, 400, "bad_request",
                                           http_errno_description(HTTP_PARSER_ERRNO(&c->req)));
                } else
                        client_abort(c);
                return 1;
        }
        if (c->head_ready) {
                client_begin_forward(c);
                /* A body that came with the head goes to the backend with it. */
                if (!c->dead && !c->local_reply && c->busy && in_len(&c->in) > 0)
                        (void) client_feed_request(c);
        }
        return 1;
}

static int out_status_line(OutBuffer *b, unsigned status, const char *reason, size_t reason_len) {
        int r = out_puts(b, "HTTP/1.1 ");
        if (r >= 0)
                r = out_uint(b, status);
        if (r >= 0)
                r = out_puts(b, " ");
        if (r >= 0)
                r = out_append(b, reason, reason_len);
        if (r >= 0)
                r = out_puts(b, "\r\n\r\n");
        return r;
}

/* The response parser paused at the end of a head: checks it and queues what the client gets
 * of it. Returns 0, or -EBADMSG with *RET_WHY for an answer not to relay (502). */
static int client_take_response_head(Client *c, const char **ret_why) {
        const http_parser *p = &c->resp;
        const Head *h = &c->head;
        OutBuffer *b = &c->to_client;
        HeadOut out;
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
                if (!client_10 && out_status_line(b, p->status_code, h->store, h->first_len) < 0)
                        goto too_big;
                return 0;
        }
        c->up->deadline = 0; /* the head is in: the body may take its time */
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
        out.data = out_tail(b, &out.size);
        out.len = 0;
        if (head_render_response(h, p->status_code, framing, p->content_length, connection, &out) < 0)
                goto too_big;
        out_commit(b, out.len);
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

        if (!u || in_len(&u->in) == 0 || c->resp_complete || out_len(&c->to_client) >= PROXY_WINDOW)
                return 0;
        n = in_len(&u->in);
        if (n > PROXY_WINDOW - out_len(&c->to_client))
                n = PROXY_WINDOW - out_len(&c->to_client);
        in_head = !c->resp_head_queued;
        parsed = http_parser_execute(&c->resp, &response_settings, u->in.data + u->in.start, n);
        if (in_head) /* the parser pauses at each head's end: these bytes are all head */
                head_scan(&c->head, u->in.data + u->in.start, parsed);
        in_consume(&u->in, parsed);
        if (HTTP_PARSER_ERRNO(&c->resp) != HPE_OK && HTTP_PARSER_ERRNO(&c->resp) != HPE_PAUSED)
                why = http_errno_description(HTTP_PARSER_ERRNO(&c->resp));
        else if (c->resp_head_ready) {
                c->resp_head_ready = false;
                if (client_take_response_head(c, &why) == 0) {
                        http_parser_pause(&c->resp, 0);
                        /* The body that came with a final head goes out with it, in one send
                         * (an interim head goes out alone first: what follows may be refused). */
                        if (in_len(&u->in) > 0 && !c->resp_complete && !c->resp_interim)
                                (void) client_feed_response(c);
                }
        }
        if (why) {
                log_debug("proxy: bad response from backend: %s", why);
                c->upstream_reusable = false;
                client_reply_error(c, 502, "bad_gateway", "The backend sent an invalid response.");
        }
        return 1;
}

/* Reads and drops what a client still sends after its answer (see client_finish_request). */
static void client_drain(Client *c) {
        char scratch[4096];

        while (c->readable && !c->dead) {
                ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
                if (n > 0)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        c->readable = false;
                else if (n == 0 || errno != EINTR)
                        client_abort(c);
        }
}

static void client_pump(Client *c) {
        if (c->draining) {
                client_drain(c);
                return;
        }
        for (bool progress = true; progress && !c->dead;) {
                size_t before;
                int r;

                progress = false;
                /* Input first, only into room there is (that is the backpressure). */
                if (!c->local_reply && client_read(c))
                        progress = true;
                if (c->dead)
                        return;
                if (c->up && !c->up->connecting && !c->resp_complete && upstream_read(c->up)) {
                        c->resp_started = true;
                        progress = true;
                }

                before = out_len(&c->to_client);
                size_t sent = 0;
                r = out_flush(c->fd, &c->to_client, &c->writable, &sent);
                if (sent > 0)
                        stat_add(&c->proxy->stats->bytes_sent, sent);
                if (r < 0) {
                        client_abort(c);
                        return;
                }
                progress |= out_len(&c->to_client) != before;

                if (c->up && !c->up->connecting && out_len(&c->to_upstream) > 0) {
                        before = out_len(&c->to_upstream);
                        r = out_flush(c->up->fd, &c->to_upstream, &c->up->writable, &c->attempt_written);
                        if (r < 0) {
                                client_upstream_failed(c, r);
                                progress = true;
                                continue;
                        }
                        if (out_len(&c->to_upstream) != before) {
                                progress = true;
                                /* A long upload is not a slow answer: the wait for the
                                 * response head counts from the last byte sent. */
                                if (!c->resp_head_queued)
                                        upstream_set_deadline(c->up, proxy_now() +
                                                                             c->proxy->response_head_timeout_usec);
                        }
                }
                progress |= client_feed_request(c) > 0;
                if (c->dead)
                        return;
                progress |= client_feed_response(c) > 0;
                if (c->dead)
                        return;
                if (c->up && c->up->eof && in_len(&c->up->in) == 0 && !c->resp_complete) {
                        /* A body delimited by close ends here; anything else is cut short. */
                        if (c->resp_head_queued)
                                (void) http_parser_execute(&c->resp, &response_settings, NULL, 0);
                        if (!c->resp_complete)
                                client_upstream_failed(c, c->up->error);
                        progress = true;
                        continue;
                }
                if (c->busy && c->resp_complete && out_len(&c->to_client) == 0)
                        progress |= client_finish_request(c) > 0;
                if (c->draining) {
                        client_drain(c);
                        return;
                }
                if (c->eof && !c->busy && in_len(&c->in) == 0)
                        client_abort(c);
                if (c->eof && c->busy && !c->req_complete && in_len(&c->in) == 0 && !c->local_reply)
                        client_abort(c); /* gone in the middle of sending its request */
        }
}

void client_run(Client *c) {
        client_pump(c);
        if (c->dead)
                client_free(c);
}

static void on_client_io(IoWatch *w, uint32_t revents) {
        Client *c = (Client *) w;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                c->readable = true;
        if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                c->writable = true;
        /* Reset by the peer while we wait on nothing we could read or write: gone. */
        if ((revents & EPOLLERR) && (c->eof || c->local_reply))
                client_abort(c);
        client_run(c);
}

/* An event on C's upstream U (u->readable/writable already updated). */
void client_upstream_event(Client *c, Upstream *u, uint32_t revents) {
        if (u->connecting) {
                int k = upstream_connect_done(u, revents);

                if (k > 0)
                        return;
                if (k < 0) {
                        client_upstream_failed(c, k);
                        client_run(c);
                        return;
                }
                upstream_set_deadline(u, proxy_now() + u->proxy->response_head_timeout_usec);
        }
        client_run(c);
}

void client_upstream_timeout(Client *c) {
        if (c->up->connecting)
                client_upstream_failed(c, -ETIMEDOUT);
        else if (!c->resp_head_queued)
                client_reply_error(c, 504, "gateway_timeout", "The backend did not answer in time.");
        client_run(c);
}

void client_expire(Client *c, uint64_t now) {
        if (!c->deadline || c->deadline > now)
                return;
        c->deadline = 0;
        if (c->held) {
                client_unhold(c);
                client_reply_error_retry(c, 503, "wake_timeout",
                                         "The service did not wake in time (wake_timeout); retry shortly.",
                                         PROXY_HOLD_RETRY_AFTER_SEC);
        } else if (!c->busy)
                client_abort(c);
        client_run(c);
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
        int r = append_chunk_size(b, n);
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

/* ---- new clients ---- */

int client_new(Proxy *p, int fd, const struct sockaddr_in *peer) {
        Client *c;
        int r, one = 1;

        c = calloc(1, sizeof *c); /* per connection, never per request */
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->watch.fn = on_client_io;
        c->proxy = p;
        c->fd = fd;
        c->group = -1;
        inet_ntop(AF_INET, &peer->sin_addr, c->ip, sizeof c->ip);
        c->peer = peer->sin_addr;
        http_parser_init(&c->req, HTTP_REQUEST);
        c->req.data = c;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->next = p->clients;
        if (p->clients)
                p->clients->prev = c;
        p->clients = c;
        p->n_clients++;
        stat_add(&p->stats->clients_accepted, 1);
        client_set_deadline(c, proxy_now() + PROXY_CLIENT_IDLE_USEC);
        r = proxy_loop_add(p->loop, fd, &c->watch);
        if (r < 0) {
                client_free(c);
                return r;
        }
        /* Not read here, even when the request came with the connection: adding a ready socket to
         * the set queues its event behind those already there, so a pooled upstream's close that
         * arrived first is seen first, and the request never goes out on a dead connection. */
        return 0;
}
