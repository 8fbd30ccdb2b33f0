/* libmicrohttpd on sd-event. Each listener is an MHD daemon in external-epoll mode: its
 * epoll fd is an sd-event I/O source and its timeout an sd-event timer. The access handler
 * routes on the first call (so a wrong route, size or type is refused before any body is
 * read), collects or streams the body, then hands the request to dispatch. Every
 * connection is tracked from accept to close so that one sending its request too slowly is
 * cut off (request_timeout), which MHD's idle timeout alone cannot do. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "random.h"
#include "requestid.h"
#include "digest.h"
#include "dispatch.h"
#include "reply.h"
#include "jsonspec.h"
#include "log.h"
#include "blobfiles.h"
#include "settings.h"
#include "store.h"
#include "names.h"
#include <openssl/crypto.h>
#include "route.h"
#include "server.h"
#include "telemetry.h"
#include "timeutil.h"

#define MAX_LISTENERS 8

typedef struct Waiter Waiter;
typedef struct Follower Follower;

typedef struct Listener {
        HttpServer *server;
        struct MHD_Daemon *mhd;
        sd_event_source *io, *timer;
        bool unix_socket;
        bool metrics_only;         /* metrics_listen: GET /metrics alone */
        const char *metrics_token; /* its bearer token, or NULL */
        unsigned closed; /* connections MHD closed during the current listener_run() */
        /* Its own long polls, one slot per connection it may have (connection_limit): the
         * callers of one listener cannot use up another's, and a connection never waits for a
         * slot. */
        Waiter *waiters;
        unsigned n_waiters;
        unsigned n_followers; /* event streams open: at most max_followers() */
        /* Out of descriptors at its first connection, libmicrohttpd retries accept() at every
         * round ("busy waiting", its words) with a log line each time: the listener then pauses
         * ACCEPT_RETRY_USEC instead (mhd_logger() sees the message, listener_run() pauses). */
        bool accept_starved;
        sd_event_source *accept_retry;
        /* mhd_logger(): a message said again within MHD_LOG_REPEAT_USEC is counted, not logged
         * (a failing accept makes two, alternating). */
        struct {
                char text[160];
                uint64_t usec;
                unsigned repeated;
        } said[4];
} Listener;

#define ACCEPT_RETRY_USEC (250 * 1000ULL)
#define MHD_LOG_REPEAT_USEC (10 * 1000000ULL)

/* A suspended long poll: its connection, the timer that resumes it, and a watch on its socket.
 * libmicrohttpd neither reads nor times out a suspended connection, so without the watch a
 * client that went away would keep its slot (and its connection) until the wait's deadline. */
struct Waiter {
        Request *request;
        Listener *listener;
        sd_event_source *wake;
        sd_event_source *hangup; /* EPOLLRDHUP on the connection's socket */
};

/* One client connection, from accept to close (MHD's socket context). Its current request
 * must have arrived by its deadline: SINCE (accepted, or the previous answer sent) plus
 * request_timeout, plus a second per upload_min_rate bytes of body received so far. */
typedef struct Conn {
        struct Conn *prev, *next;
        Listener *listener;
        struct MHD_Connection *connection;
        uint64_t since;      /* CLOCK_MONOTONIC µs */
        uint64_t body_bytes; /* of the current request */
        bool receiving;      /* the current request is still arriving */
} Conn;

/* An event stream (a RequestStream reply) being sent: what FILL gave that is not sent yet, and
 * while there is nothing to send, the suspended connection with a heartbeat timer and a
 * watch on its socket (MHD neither reads nor notices a suspended connection's close). */
struct Follower {
        Follower *prev, *next;
        Listener *listener;
        struct MHD_Connection *connection;
        RequestStream stream;
        char *text;
        size_t size, sent;
        bool suspended, gone;
        uint64_t last_sent; /* monotonic */
        sd_event_source *heartbeat, *hangup;
};

struct HttpServer {
        const ApiContext *ctx;
        Listener listeners[MAX_LISTENERS];
        unsigned n_listeners;
        Follower *followers;
        sd_event_source *wake; /* deferred: resumes long polls and streams after a commit */
        Conn *conns;                     /* every open connection of every listener */
        sd_event_source *deadline_timer; /* at the earliest deadline of a receiving one */
};

/* What on_uri() returns for a request whose query arguments it cut (MAX_QUERY_ARGS): the
 * request's first *req_cls, which on_access() turns into a Request. */
static char too_many_query_args;

static void listener_schedule(Listener *l);

/* One MHD round, and a second one when the first closed connections: at connection_limit MHD
 * takes its listening socket out of its epoll set, and puts it back only at the start of a
 * round after a connection is gone. Without that round a listener whose connections all
 * closed would have no event and no timeout left, and would never accept again. */
static void listener_run(Listener *l) {
        l->closed = 0;
        MHD_run(l->mhd);
        if (l->closed > 0)
                MHD_run(l->mhd);
        if (l->accept_starved) {
                /* Only its listening socket is in MHD's epoll set then (no connection yet): off
                 * until the timer, which runs the listener again. */
                l->accept_starved = false;
                sd_event_source_set_enabled(l->io, SD_EVENT_OFF);
                sd_event_source_set_time_relative(l->accept_retry, ACCEPT_RETRY_USEC);
                sd_event_source_set_enabled(l->accept_retry, SD_EVENT_ONESHOT);
        }
        listener_schedule(l);
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Listener *l = userdata;

        sd_event_source_set_enabled(l->io, SD_EVENT_ON);
        listener_run(l);
        return 0;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        listener_run(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        listener_run(userdata);
        return 0;
}

/* Arms the timer for MHD's next timeout (idle connections, resumed requests). */
static void listener_schedule(Listener *l) {
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t now;

        if (MHD_get_timeout(l->mhd, &ms) != MHD_YES) {
                sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                return;
        }
        sd_event_now(sd_event_source_get_event(l->timer), CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(l->timer, now + ms * 1000ULL);
        sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        Listener *l = cls;
        char buf[512];
        uint64_t now = 0;
        size_t n;

        vsnprintf(buf, sizeof buf, fmt, ap);
        n = strlen(buf);
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = 0;
        if (strstr(buf, "resource limit at FIRST connection"))
                l->accept_starved = true;
        /* A message that repeats (a failing accept) is said once per MHD_LOG_REPEAT_USEC. */
        sd_event_now(l->server->ctx->event, CLOCK_MONOTONIC, &now);
        unsigned slot = 0;
        bool known = false;
        for (unsigned i = 0; i < ELEMENTSOF(l->said) && !known; i++)
                if (strncmp(buf, l->said[i].text, sizeof l->said[i].text - 1) == 0)
                        slot = i, known = true;
                else if (l->said[i].usec < l->said[slot].usec)
                        slot = i; /* the least recent, to reuse */
        if (known && now - l->said[slot].usec < MHD_LOG_REPEAT_USEC) {
                l->said[slot].repeated++;
                return;
        }
        if (l->said[slot].repeated > 0)
                log_warning("HTTP: %s (%u more times)", l->said[slot].text, l->said[slot].repeated);
        snprintf(l->said[slot].text, sizeof l->said[slot].text, "%s", buf);
        l->said[slot].usec = now;
        l->said[slot].repeated = 0;
        log_warning("HTTP: %s", buf);
}

/* ---- connections and their deadlines ---- */

static uint64_t now_usec(HttpServer *srv) {
        uint64_t now = 0;

        sd_event_now(srv->ctx->event, CLOCK_MONOTONIC, &now);
        return now;
}

static uint64_t conn_deadline(const Conn *k, const Settings *cfg) {
        uint64_t d = k->since + cfg->request_timeout_sec * 1000000ULL;

        if (cfg->upload_min_rate)
                d += k->body_bytes * 1000000ULL / cfg->upload_min_rate;
        return d;
}

/* Moves the deadline timer earlier when DEADLINE comes before it (or it is off). */
static void deadline_timer_arm(HttpServer *srv, uint64_t deadline) {
        uint64_t current;
        int enabled = SD_EVENT_OFF;

        if (!srv->deadline_timer)
                return;
        sd_event_source_get_enabled(srv->deadline_timer, &enabled);
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(srv->deadline_timer, &current) >= 0 &&
            current <= deadline)
                return;
        sd_event_source_set_time(srv->deadline_timer, deadline);
        sd_event_source_set_enabled(srv->deadline_timer, SD_EVENT_ONESHOT);
}

static Conn *conn_of(struct MHD_Connection *c) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return info ? info->socket_context : NULL;
}

/* A new request may start arriving on K now (the connection is new, or kept alive). */
static void conn_await_request(Conn *k) {
        HttpServer *srv = k->listener->server;

        k->since = now_usec(srv);
        k->body_bytes = 0;
        k->receiving = true;
        deadline_timer_arm(srv, conn_deadline(k, srv->ctx->settings));
}

/* The request on C is in (or answered): what follows is ours to send, not the client's. */
static void conn_request_received(struct MHD_Connection *c) {
        Conn *k = conn_of(c);

        if (k)
                k->receiving = false;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
        Listener *l = cls;
        HttpServer *srv = l->server;
        Conn *k = *socket_context;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                k = calloc(1, sizeof *k);
                if (!k) {
                        /* Untracked, it would escape the deadline: refuse it instead. */
                        const union MHD_ConnectionInfo *info =
                                MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
                        log_error("Out of memory for a new API connection; closing it.");
                        if (info)
                                shutdown(info->connect_fd, SHUT_RDWR);
                        return;
                }
                k->listener = l;
                k->connection = c;
                k->next = srv->conns;
                if (srv->conns)
                        srv->conns->prev = k;
                srv->conns = k;
                *socket_context = k;
                telemetry_api_connection(+1);
                conn_await_request(k);
                return;
        }
        l->closed++;
        if (!k)
                return;
        if (k->prev)
                k->prev->next = k->next;
        else
                srv->conns = k->next;
        if (k->next)
                k->next->prev = k->prev;
        *socket_context = NULL;
        free(k);
        telemetry_api_connection(-1);
}

/* Cuts off every connection whose request has not arrived by its deadline. MHD cannot queue
 * an answer before a request's headers are in (nor while its body is arriving), so the
 * socket is shut down: MHD then reads end-of-file and closes the connection itself, which
 * keeps the descriptor MHD's until then. */
static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpServer *srv = userdata;
        const Settings *cfg = srv->ctx->settings;
        uint64_t now = now_usec(srv), next = UINT64_MAX;
        bool cut[MAX_LISTENERS] = {};

        for (Conn *k = srv->conns; k; k = k->next) {
                uint64_t d = conn_deadline(k, cfg);
                const union MHD_ConnectionInfo *info;

                if (!k->receiving)
                        continue;
                if (d > now) {
                        next = d < next ? d : next;
                        continue;
                }
                k->receiving = false;
                info = MHD_get_connection_info(k->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
                if (info)
                        shutdown(info->connect_fd, SHUT_RDWR);
                cut[k->listener - srv->listeners] = true;
                log_info("Closed an API connection whose request did not arrive within %u s (%" PRIu64
                         " body bytes received).",
                         cfg->request_timeout_sec, k->body_bytes);
        }
        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (next != UINT64_MAX)
                deadline_timer_arm(srv, next);
        /* Let MHD see the end-of-file now; this may free the Conns cut above. */
        for (unsigned i = 0; i < srv->n_listeners; i++)
                if (cut[i])
                        listener_run(&srv->listeners[i]);
        return 0;
}

/* ---- the request object ---- */

static void waiter_release(Waiter *w) {
        if (!w)
                return;
        w->wake = sd_event_source_disable_unref(w->wake);
        w->hangup = sd_event_source_disable_unref(w->hangup);
        if (w->request)
                w->request->waiter = NULL;
        w->request = NULL;
}

static void request_free(Request *r) {
        if (!r)
                return;
        for (unsigned i = 0; i < r->n_kept; i++)
                free(r->kept[i].decoded);
        waiter_release(r->waiter);
        if (r->stream.free)
                r->stream.free(r->stream.state); /* a stream that never started */
        for (unsigned i = 0; i < r->n_params; i++)
                free(r->params[i]);
        free(r->path);
        free(r->body);
        blob_upload_free(r->upload);
        json_decref(r->reply);
        free(r->reply_text);
        free(r->reply_json_text);
        json_decref(r->event_detail);
        if (r->reply_fd >= 0)
                close(r->reply_fd);
        free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
        Conn *k = conn_of(c);

        if (*req_cls != &too_many_query_args) /* a request on_uri() cut that never reached on_access() */
                request_free(*req_cls);
        *req_cls = NULL;
        /* Kept alive, the connection waits for its next request: a new deadline. */
        if (k && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                conn_await_request(k);
}

void request_retry_later(Request *r, uint64_t usec) {
        r->retry_usec = usec ? usec : 1;
}

static int on_waiter_wake(sd_event_source *s, uint64_t usec, void *userdata) {
        Waiter *w = userdata;
        Request *r = w->request;
        Listener *l = w->listener;

        waiter_release(w);
        if (r) {
                MHD_resume_connection(r->connection);
                listener_run(l); /* runs the resumed request's handler again */
        }
        return 0;
}

/* The client of a suspended long poll closed its side: nothing will read the answer. Its slot
 * goes now; resumed, the request finds client_gone and on_access() has MHD close it. A client
 * that only half-closes while it waits is taken for gone too, as by most servers. */
static int on_hangup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Waiter *w = userdata;
        Request *r = w->request;
        Listener *l = w->listener;

        waiter_release(w);
        if (r) {
                r->client_gone = true;
                MHD_resume_connection(r->connection);
                listener_run(l);
        }
        return 0;
}

static enum MHD_Result send_error(Request *r, AviaryError code, const char *message, unsigned allow);

/* Parks R until its retry time: the connection is suspended, a timer resumes it. */
static enum MHD_Result request_suspend(Request *r, Listener *l) {
        sd_event *event = l->server->ctx->event;
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        uint64_t usec = r->retry_usec;
        Waiter *w = NULL;

        r->retry_usec = 0;
        for (unsigned i = 0; i < l->n_waiters && !w; i++)
                if (!l->waiters[i].request)
                        w = &l->waiters[i];
        if (!w) /* cannot happen: a slot per connection */
                return send_error(r, AVIARY_E_TOO_MANY_REQUESTS, "too many waiting requests; poll instead", 0);
        if (!info || sd_event_add_time_relative(event, &w->wake, CLOCK_MONOTONIC, usec, 1000, on_waiter_wake, w) < 0 ||
            sd_event_add_io(event, &w->hangup, info->connect_fd, EPOLLRDHUP, on_hangup, w) < 0) {
                waiter_release(w);
                return send_error(r, AVIARY_E_INTERNAL, "cannot wait: no timer or socket watch", 0);
        }
        w->request = r;
        w->listener = l;
        r->waiter = w;
        MHD_suspend_connection(r->connection);
        return MHD_YES;
}


/* ---- event streams ---- */

/* Each listener lets half its connections follow, so the other half can still ask anything. */
static unsigned max_followers(const Listener *l) {
        unsigned n = l->server->ctx->settings->connection_limit / 2;

        return n ? n : 1;
}

static void follower_resume(Follower *f) {
        if (!f->suspended)
                return;
        f->suspended = false;
        f->heartbeat = sd_event_source_disable_unref(f->heartbeat);
        f->hangup = sd_event_source_disable_unref(f->hangup);
        MHD_resume_connection(f->connection);
}

static int on_follower_heartbeat(sd_event_source *s, uint64_t usec, void *userdata) {
        Follower *f = userdata;
        Listener *l = f->listener;

        follower_resume(f);
        listener_run(l);
        return 0;
}

static int on_follower_hangup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Follower *f = userdata;
        Listener *l = f->listener;

        f->gone = true;
        follower_resume(f);
        listener_run(l);
        return 0;
}

/* MHD's content reader: what FILL has, else a heartbeat when one is due, else suspend until a
 * commit (http_server_wake) or the heartbeat. */
static ssize_t follower_read(void *cls, uint64_t pos, char *buf, size_t max) {
        Follower *f = cls;
        HttpServer *srv = f->listener->server;
        uint64_t now = now_monotonic(), every = srv->ctx->settings->event_heartbeat_sec * 1000000ULL;
        const union MHD_ConnectionInfo *info;

        if (f->gone)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        if (f->sent == f->size) {
                char *text = NULL;
                free(f->text);
                f->text = NULL;
                f->size = f->sent = 0;
                if (f->stream.fill(f->stream.state, &text) < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                if (!text && now - f->last_sent >= every)
                        text = strdup(": heartbeat\n\n");
                if (text) {
                        f->text = text;
                        f->size = strlen(text);
                }
        }
        if (f->sent < f->size) {
                size_t n = f->size - f->sent < max ? f->size - f->sent : max;
                memcpy(buf, f->text + f->sent, n);
                f->sent += n;
                f->last_sent = now;
                return (ssize_t) n;
        }
        /* Nothing to send: wait, suspended, for a commit or the next heartbeat. */
        info = MHD_get_connection_info(f->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!info ||
            sd_event_add_time_relative(srv->ctx->event, &f->heartbeat, CLOCK_MONOTONIC,
                                       f->last_sent + every > now ? f->last_sent + every - now : 1, 1000,
                                       on_follower_heartbeat, f) < 0 ||
            sd_event_add_io(srv->ctx->event, &f->hangup, info->connect_fd, EPOLLRDHUP, on_follower_hangup, f) < 0) {
                f->heartbeat = sd_event_source_disable_unref(f->heartbeat);
                f->hangup = sd_event_source_disable_unref(f->hangup);
                return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        f->suspended = true;
        MHD_suspend_connection(f->connection);
        return 0;
}

static void follower_free(void *cls) {
        Follower *f = cls;
        HttpServer *srv = f->listener->server;

        f->heartbeat = sd_event_source_disable_unref(f->heartbeat);
        f->hangup = sd_event_source_disable_unref(f->hangup);
        if (f->prev)
                f->prev->next = f->next;
        else
                srv->followers = f->next;
        if (f->next)
                f->next->prev = f->prev;
        f->listener->n_followers--;
        telemetry_event_follower(-1);
        if (f->stream.free)
                f->stream.free(f->stream.state);
        free(f->text);
        free(f);
}

/* After a commit, on the next loop iteration: every suspended stream and long poll looks again
 * (a long poll's handler runs again and waits on when its answer is not there yet). */
static int on_wake(sd_event_source *s, void *userdata) {
        HttpServer *srv = userdata;
        bool run[MAX_LISTENERS] = {};

        for (Follower *f = srv->followers; f; f = f->next)
                if (f->suspended) {
                        follower_resume(f);
                        run[f->listener - srv->listeners] = true;
                }
        for (unsigned i = 0; i < srv->n_listeners; i++)
                for (unsigned k = 0; k < srv->listeners[i].n_waiters; k++) {
                        Waiter *w = &srv->listeners[i].waiters[k];
                        if (w->request) {
                                struct MHD_Connection *c = w->request->connection;
                                waiter_release(w);
                                MHD_resume_connection(c);
                                run[i] = true;
                        }
                }
        for (unsigned i = 0; i < srv->n_listeners; i++)
                if (run[i])
                        listener_run(&srv->listeners[i]);
        return 0;
}

void http_server_wake(void *userdata) {
        HttpServer *srv = userdata;

        if (srv && srv->wake)
                sd_event_source_set_enabled(srv->wake, SD_EVENT_ONESHOT);
}

/* Starts R's stream on its connection: a chunked text/event-stream answer fed by follower_read. */
static enum MHD_Result send_error(Request *r, AviaryError code, const char *message, unsigned allow);
static enum MHD_Result queue(Request *r, unsigned status, struct MHD_Response *resp, const char *content_type);

static enum MHD_Result stream_start(Request *r) {
        Conn *k = conn_of(r->connection);
        struct MHD_Response *resp;
        Follower *f;

        if (!k || k->listener->n_followers >= max_followers(k->listener)) {
                char msg[200];
                snprintf(msg, sizeof msg,
                         "this listener has %u event-stream followers, its limit (half of connection_limit); "
                         "poll GET /v1/events?after=ID instead, or try again later",
                         k ? k->listener->n_followers : 0);
                return send_error(r, AVIARY_E_TOO_MANY_REQUESTS, msg, 0);
        }
        f = calloc(1, sizeof *f);
        if (!f)
                return send_error(r, AVIARY_E_INTERNAL, "out of memory for an event stream", 0);
        f->listener = k->listener;
        f->connection = r->connection;
        f->stream = r->stream;
        f->last_sent = now_monotonic();
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, follower_read, f, follower_free);
        if (!resp) {
                free(f);
                return send_error(r, AVIARY_E_INTERNAL, "cannot start an event stream", 0);
        }
        r->stream = (RequestStream) {}; /* the Follower's now, freed with the response */
        f->next = k->listener->server->followers;
        if (f->next)
                f->next->prev = f;
        k->listener->server->followers = f;
        k->listener->n_followers++;
        telemetry_event_follower(+1);
        MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* proxies: do not buffer the stream */
        return queue(r, 200, resp, "text/event-stream; charset=utf-8");
}

/* ---- sending ---- */

static enum MHD_Result queue(Request *r, unsigned status, struct MHD_Response *resp, const char *content_type) {
        enum MHD_Result ret;

        if (!resp)
                return MHD_NO;
        if (content_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(resp, "X-Request-Id", r->request_id);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (r->etag[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, r->etag);
        if (r->location[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
        if (r->replayed)
                MHD_add_response_header(resp, "Idempotent-Replayed", "true");
        ret = MHD_queue_response(r->connection, status, resp);
        MHD_destroy_response(resp);
        r->replied = true;
        /* A 405 names a route of the path with another method: counted as unmatched. */
        telemetry_api_request(r->route && r->route->method == r->method ? (int) (r->route - routes) : -1, status,
                              now_monotonic() - r->started_usec);
        /* MHD reads no more of a request once an answer is queued. */
        conn_request_received(r->connection);
        return ret;
}

static enum MHD_Result send_text(Request *r, unsigned status, char *text) {
        struct MHD_Response *resp;

        if (!text)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp)
                free(text);
        return queue(r, status, resp, "application/json");
}

static enum MHD_Result send_error(Request *r, AviaryError code, const char *message, unsigned allow) {
        struct MHD_Response *resp;
        char safe[1024], allow_header[64] = "", *text;

        /* A message may quote the request (a decoded path such as "/v1/%ff" or "/v1/%0a"): JSON
         * needs UTF-8, and whoever prints the message must not get control characters. */
        snprintf(safe, sizeof safe, "%s", message);
        api_message_escape(safe, sizeof safe);
        message = safe;
        text = error_envelope(code, message, r->request_id);

        if (!text)
                return MHD_NO;
        log_full_errno(aviary_error_status(code) >= 500 && code != AVIARY_E_WAIT_TIMEOUT ? LOG_ERR : LOG_INFO, 0, "%s %s → %u %s: %s [%s %s]",
                       r->method_name, r->path, aviary_error_status(code), aviary_error_code(code), message,
                       r->actor, r->request_id);
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        for (unsigned m = 1; allow && m <= HTTP_DELETE; m <<= 1)
                if (allow & m) {
                        if (allow_header[0])
                                strcat(allow_header, ", ");
                        strcat(allow_header, http_method_name((HttpMethod) m));
                }
        if (allow_header[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow_header);
        if (code == AVIARY_E_UNAUTHORIZED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"aviary\"");
        return queue(r, aviary_error_status(code), resp, "application/json");
}

/* Sends what a handler produced: r->error for a positive result, 500/503/507 for errno. */
static enum MHD_Result send_result(Request *r, int result) {
        if (result > 0)
                return send_error(r, (AviaryError) result, r->error.message, r->deferred_allow);
        if (result == -ENOSPC || result == -EDQUOT)
                return send_error(r, AVIARY_E_STORAGE_FULL, "the state directory's file system is full; nothing was changed", 0);
        if (result == -EBUSY)
                return send_error(r, AVIARY_E_UNAVAILABLE, "the database is busy; try again", 0);
        if (result < 0) {
                char msg[256];
                /* What the store said goes to the log with the request id, not to the client. */
                if (store_last_error()[0])
                        log_error("Request %s: %s", r->request_id, store_last_error());
                store_clear_error();
                snprintf(msg, sizeof msg, "internal error (%s); see the daemon log for request %s", strerror(-result),
                         r->request_id);
                return send_error(r, AVIARY_E_INTERNAL, msg, 0);
        }
        if (r->stream.fill)
                return stream_start(r);
        if (r->reply_fd >= 0) {
                struct MHD_Response *resp = MHD_create_response_from_fd64(r->reply_fd_size, r->reply_fd);
                if (resp)
                        r->reply_fd = -1; /* MHD owns it now */
                return queue(r, r->status ? r->status : 200, resp, "application/octet-stream");
        }
        if (r->reply_text) {
                char *text = TAKE_PTR(r->reply_text);
                struct MHD_Response *resp = MHD_create_response_from_buffer(r->reply_text_size, text,
                                                                            MHD_RESPMEM_MUST_FREE);
                if (!resp)
                        free(text);
                return queue(r, r->status ? r->status : 200, resp,
                             r->reply_content_type ? r->reply_content_type : "text/plain; charset=utf-8");
        }
        if (r->reply_json_text)
                return send_text(r, r->status ? r->status : 200, TAKE_PTR(r->reply_json_text));
        if (!r->reply)
                return queue(r, r->status ? r->status : 204,
                             MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT), NULL);
        return send_text(r, r->status ? r->status : 200, reply_dump(r->reply));
}

/* ---- identity ---- */

/* The caller's address, for actors and logs: "127.0.0.1", or "?" when unknown. */
static void peer_address(Request *r, char *out, size_t size) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = info ? info->client_addr : NULL;

        snprintf(out, size, "?");
        if (sa && sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, out, (socklen_t) size);
        else if (sa && sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, out, (socklen_t) size);
}

static bool id_listed(unsigned id, const unsigned *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (list[i] == id)
                        return true;
        return false;
}

/* Unix socket: the peer's uid/gid (SO_PEERCRED) against the allow-list; root always passes, and
 * with no list configured the socket's mode and group are the only gate. */
static AviaryError authenticate_peer(Request *r, char *why, size_t size) {
        const Settings *set = r->ctx->settings;
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct ucred cred;
        socklen_t len = sizeof cred;

        if (!info || getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                snprintf(r->actor, sizeof r->actor, "uid:unknown");
                snprintf(why, size, "cannot tell who is calling on the unix socket (SO_PEERCRED)");
                return AVIARY_E_FORBIDDEN;
        }
        snprintf(r->actor, sizeof r->actor, "uid:%u gid:%u", (unsigned) cred.uid, (unsigned) cred.gid);
        snprintf(r->principal, sizeof r->principal, "uid:%u", (unsigned) cred.uid);
        if (cred.uid != 0 && (set->n_allow_uids || set->n_allow_gids) &&
            !id_listed((unsigned) cred.uid, set->allow_uids, set->n_allow_uids) &&
            !id_listed((unsigned) cred.gid, set->allow_gids, set->n_allow_gids)) {
                snprintf(why, size, "uid %u (gid %u) is not allowed on this socket (allow_uids, allow_gids)",
                         (unsigned) cred.uid, (unsigned) cred.gid);
                return AVIARY_E_FORBIDDEN;
        }
        r->scope = SCOPE_ADMIN;
        return AVIARY_E_OK;
}

/* TCP: "Authorization: Bearer SECRET", either the bootstrap token (token_file, admin, compared
 * in constant time) or an API token, found by the SHA-256 of the secret (only hashes are
 * stored, so the lookup reveals nothing about a secret). The secret is never logged or stored. */
static AviaryError authenticate_token(Request *r, char *why, size_t size) {
        const char *auth = request_header(r, MHD_HTTP_HEADER_AUTHORIZATION), *boot = r->ctx->token;
        char addr[INET6_ADDRSTRLEN], digest[DIGEST_STR_LEN + 1];
        TokenRecord t = {};
        size_t n;
        int k;

        peer_address(r, addr, sizeof addr);
        snprintf(r->actor, sizeof r->actor, "tcp:%s", addr);
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
                snprintf(why, size, "a bearer token is required on this listener (Authorization: Bearer TOKEN)");
                return AVIARY_E_UNAUTHORIZED;
        }
        auth += 7;
        n = strlen(auth);
        if (boot && n == strlen(boot) && CRYPTO_memcmp(auth, boot, n) == 0) {
                snprintf(r->actor, sizeof r->actor, "token:bootstrap@%s", addr);
                snprintf(r->principal, sizeof r->principal, "bootstrap");
                r->scope = SCOPE_ADMIN;
                return AVIARY_E_OK;
        }
        k = n == 0 || n > 256 ? AVIARY_E_UNAUTHORIZED : digest_buffer(auth, n, digest);
        if (k == 0)
                k = store_token_get_by_hash(r->ctx->store, digest + 7, &t);
        if (k < 0) {
                snprintf(why, size, "cannot check the bearer token now; try again");
                return AVIARY_E_UNAVAILABLE;
        }
        if (k != 0) {
                snprintf(why, size, "the bearer token is not valid (unknown or revoked)");
                return AVIARY_E_UNAUTHORIZED;
        }
        snprintf(r->actor, sizeof r->actor, "token:%.40s@%.46s", t.name, addr);
        snprintf(r->principal, sizeof r->principal, "token:%lld", (long long) t.id);
        r->scope = scope_from_string(t.scope);
        /* Last use, to the minute: not a database write per request. */
        if (now_realtime() - t.last_used_at > 60 * USEC_PER_SEC)
                (void) store_token_touch(r->ctx->store, t.id, now_realtime());
        return AVIARY_E_OK;
}

/* metrics_listen: its metrics_token when one is set (constant time), else anyone; scope read. */
static AviaryError authenticate_scraper(Request *r, Listener *l, char *why, size_t size) {
        const char *auth = request_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
        char addr[INET6_ADDRSTRLEN];

        peer_address(r, addr, sizeof addr);
        snprintf(r->actor, sizeof r->actor, "metrics:%s", addr);
        snprintf(r->principal, sizeof r->principal, "metrics");
        if (l->metrics_token) {
                size_t n = strlen(l->metrics_token);
                if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) != n ||
                    CRYPTO_memcmp(auth + 7, l->metrics_token, n) != 0) {
                        snprintf(why, size, "this listener wants its metrics_token (Authorization: Bearer TOKEN)");
                        return AVIARY_E_UNAUTHORIZED;
                }
        }
        r->scope = SCOPE_READ;
        return AVIARY_E_OK;
}

/* The caller's X-Request-Id, or 12 random bytes in hex. -errno when the kernel gives no random
 * bytes: the id then says so ("unavailable"), never a guessable one. */
static int request_id_init(Request *r) {
        const char *given = request_header(r, "X-Request-Id");
        int k;

        if (given && request_id_is_valid(given)) {
                snprintf(r->request_id, sizeof r->request_id, "%s", given);
                return 0;
        }
        k = request_id_new(r->request_id, 12);
        if (k < 0) {
                snprintf(r->request_id, sizeof r->request_id, "unavailable");
                return log_error_errno(k, "Cannot draw a request id");
        }
        return 0;
}

/* TCP callers must present the bearer token when one is configured. */

/* ---- the first call: route and check headers ---- */

static bool content_type_is(Request *r, const char *want) {
        const char *ct = request_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        size_t n = strlen(want);

        return ct && strncasecmp(ct, want, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Refuses a request at its headers. With a body still coming, the answer waits until the
 * body has been read and dropped: answering at once would make libmicrohttpd close the
 * connection under a client that is still sending. Oversized and unauthenticated bodies
 * are not worth reading: those answers go at once, and the connection closes. */
static enum MHD_Result refuse(Request *r, bool has_body, AviaryError code, const char *message, unsigned allow) {
        if (!has_body || code == AVIARY_E_PAYLOAD_TOO_LARGE || code == AVIARY_E_UNAUTHORIZED)
                return send_error(r, code, message, allow);
        r->deferred = reply_error(r, code, "%s", message);
        r->deferred_allow = allow;
        r->drain = true;
        return MHD_YES;
}

static enum MHD_Result request_begin(Request *r, Listener *l) {
        const char *length = request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *chunked = request_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        bool has_body = (length && strcmp(length, "0") != 0) || chunked;
        unsigned allow = 0;
        int m;

        char why[200];
        AviaryError auth;

        auth = l->metrics_only ? authenticate_scraper(r, l, why, sizeof why)
               : l->unix_socket ? authenticate_peer(r, why, sizeof why)
                                : authenticate_token(r, why, sizeof why);
        if (request_id_init(r) < 0)
                return refuse(r, has_body, AVIARY_E_UNAVAILABLE, "aviaryd cannot draw a request id right now", 0);
        /* An unknown method (OPTIONS...) still learns which methods the path takes. */
        m = router_match(r, r->method, r->path, &allow);
        if (auth != AVIARY_E_OK) {
                if (m != 0 || !r->route->open || l->metrics_only)
                        return refuse(r, has_body, auth, why, 0);
                snprintf(r->actor, sizeof r->actor, "anonymous");
                r->scope = SCOPE_NONE;
        }
        if (m < 0)
                return send_result(r, m);
        if (l->metrics_only && m != AVIARY_E_NOT_FOUND && strcmp(r->route->pattern, "/metrics") != 0)
                m = AVIARY_E_NOT_FOUND; /* this listener serves /metrics alone */
        if (m == AVIARY_E_NOT_FOUND) {
                char msg[600];
                snprintf(msg, sizeof msg, "no such API route: %s", r->path);
                return refuse(r, has_body, AVIARY_E_NOT_FOUND, msg, 0);
        }
        if (m == AVIARY_E_METHOD_NOT_ALLOWED) {
                char msg[600];
                if (r->route->wrong_method_message)
                        snprintf(msg, sizeof msg, "%s", r->route->wrong_method_message);
                else
                        snprintf(msg, sizeof msg, "%s is not allowed on %s", r->method_name, r->path);
                return refuse(r, has_body, r->route->wrong_method ? r->route->wrong_method : AVIARY_E_METHOD_NOT_ALLOWED,
                              msg, allow);
        }

        if ((int) route_scope(r->route) > r->scope) {
                char msg[300];
                snprintf(msg, sizeof msg, "%s has scope %s; %s %s needs %s", r->actor, scope_to_string((Scope) r->scope),
                         r->method_name, r->route->pattern, scope_to_string(route_scope(r->route)));
                return refuse(r, has_body, AVIARY_E_FORBIDDEN, msg, 0);
        }

        /* Blobs have their own limit; JSON routes take the smaller of theirs and max_json_body. */
        if (r->route->body == BODY_STREAM)
                r->body_max = r->ctx->settings->max_blob_size;
        else {
                r->body_max = r->ctx->settings->max_json_body;
                if (r->route->max_body && r->route->max_body < r->body_max)
                        r->body_max = r->route->max_body;
        }
        if (r->route->body == BODY_NONE && has_body)
                return refuse(r, has_body, AVIARY_E_BAD_REQUEST, "this route takes no request body", 0);
        if (length) {
                char *end;
                unsigned long long n;
                errno = 0;
                n = strtoull(length, &end, 10);
                if (errno || *end)
                        return send_error(r, AVIARY_E_BAD_REQUEST, "bad Content-Length", 0);
                if (n > r->body_max) {
                        char msg[160];
                        snprintf(msg, sizeof msg, "request body of %llu bytes is over this route's limit of %zu bytes", n,
                                 r->body_max);
                        return send_error(r, AVIARY_E_PAYLOAD_TOO_LARGE, msg, 0);
                }
        }
        if (r->route->body == BODY_JSON && has_body && !content_type_is(r, "application/json"))
                return refuse(r, has_body, AVIARY_E_UNSUPPORTED_MEDIA_TYPE,
                              "request body must be JSON: send 'Content-Type: application/json'", 0);
        if (r->route->body == BODY_STREAM) {
                int ret;
                if (has_body && !content_type_is(r, "application/octet-stream"))
                        return refuse(r, has_body, AVIARY_E_UNSUPPORTED_MEDIA_TYPE,
                                      "blob uploads must be 'Content-Type: application/octet-stream'", 0);
                ret = r->route->stream_begin(r);
                if (ret != 0 || r->status) {
                        if (!has_body || ret < 0)
                                return send_result(r, ret);
                        /* Answered already (the blob is here): drop the body, then answer. */
                        r->deferred = ret;
                        r->drain = true;
                }
        }
        return MHD_YES;
}

/* MHD cannot queue a response while a body is arriving, so a problem found mid-body is kept
 * in r->deferred and answered once the body ends; the rest of the body is discarded. A client
 * that keeps sending far past the limit is cut off. */
static enum MHD_Result request_data(Request *r, const char *data, size_t size) {
        r->body_size += size;
        if (r->drain)
                return r->body_size > 2 * r->body_max + (1u << 20) ? MHD_NO : MHD_YES;
        if (r->body_size > r->body_max) {
                r->deferred = reply_error(r, AVIARY_E_PAYLOAD_TOO_LARGE,
                                          "request body is over this route's limit of %zu bytes", r->body_max);
                r->drain = true;
                return MHD_YES;
        }
        if (r->route->body == BODY_STREAM) {
                r->deferred = r->route->stream_data(r, data, size);
                r->drain = r->deferred != 0;
                return MHD_YES;
        }
        if (r->body_size + 1 > r->body_allocated) {
                size_t want = (r->body_size + 1) * 2;
                char *p;
                if (want > r->body_max + 1)
                        want = r->body_max + 1;
                p = realloc(r->body, want);
                if (!p) {
                        r->deferred = -ENOMEM;
                        r->drain = true;
                        return MHD_YES;
                }
                r->body = p;
                r->body_allocated = want;
        }
        memcpy(r->body + r->body_size - size, data, size);
        r->body[r->body_size] = 0;
        return MHD_YES;
}

/* More header fields than any client of ours sends; each costs MHD a record in the
 * connection's memory, so without a count a head of many tiny fields would exhaust it. */
#define MAX_HEADER_FIELDS 100

/* The same for query arguments, which MHD parses into records before any callback of ours can
 * answer. When they exhaust the connection's memory, libmicrohttpd 0.9.75 logs a 431 that it
 * never sends (parse_initial_message_line() queues it, then its caller overwrites the state)
 * and the client waits for request_timeout. So on_uri() cuts the arguments of such a request
 * before MHD parses them, and request_head_refused() answers it. */
#define MAX_QUERY_ARGS 100

/* MHD_OPTION_URI_LOG_CALLBACK: sees the request target before MHD parses its arguments. URI is
 * MHD's own buffer, NUL-terminated, handed over as const: writing a NUL after the '?' leaves
 * MHD no arguments to parse (it parses from there once this returns). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
        char *q = strchr(uri, '?');
        unsigned n = 1;

        if (!q || !q[1])
                return NULL;
        for (const char *p = q + 1; *p; p++)
                n += *p == '&';
        if (n <= MAX_QUERY_ARGS)
                return NULL;
        q[1] = 0;
        return &too_many_query_args;
}

/* Refuses with 431 a request whose head (request line and header fields, with their CRLFs,
 * as MHD counts them) is over max_header_size, or has too many fields. Heads too big for the
 * connection's memory never get here: MHD answers those itself (docs/api.md, Limits). */
static bool request_head_refused(Request *r, Listener *l, enum MHD_Result *ret) {
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        size_t size = info ? info->header_size : 0;
        int fields = MHD_get_connection_values(r->connection, MHD_HEADER_KIND, NULL, NULL);
        char msg[160];

        if (r->too_many_query_args)
                snprintf(msg, sizeof msg, "the request target has more than %d query arguments", MAX_QUERY_ARGS);
        else if (size > r->ctx->settings->max_header_size)
                snprintf(msg, sizeof msg,
                         "the request line and headers are %zu bytes, over the limit of %" PRIu64 " bytes", size,
                         r->ctx->settings->max_header_size);
        else if (fields > MAX_HEADER_FIELDS)
                snprintf(msg, sizeof msg, "the request has %d header fields, over the limit of %d", fields,
                         MAX_HEADER_FIELDS);
        else
                return false;
        /* Who, for the log line: the peer's uid/gid or address (no token lookup for a refusal). */
        if (l->unix_socket) {
                char why[200];
                (void) authenticate_peer(r, why, sizeof why);
        } else {
                char addr[INET6_ADDRSTRLEN];
                peer_address(r, addr, sizeof addr);
                snprintf(r->actor, sizeof r->actor, "tcp:%s", addr);
        }
        (void) request_id_init(r);
        /* Not worth reading a body after: answered at once, and the connection closes. */
        *ret = send_error(r, AVIARY_E_HEADERS_TOO_LARGE, msg, 0);
        return true;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **req_cls) {
        Listener *l = cls;
        Request *r = *req_cls;
        enum MHD_Result ret;

        if (!r || r == (Request *) &too_many_query_args) {
                bool cut = r != NULL;

                r = calloc(1, sizeof *r);
                if (!r)
                        return MHD_NO;
                *req_cls = r;
                r->too_many_query_args = cut;
                r->ctx = l->server->ctx;
                r->connection = connection;
                r->reply_fd = -1;
                r->method_name = method;
                r->method = http_method_from_name(method);
                r->path = strdup(url);
                if (!r->path)
                        return MHD_NO;
                r->started = true;
                r->started_usec = now_monotonic();
                if (request_head_refused(r, l, &ret))
                        return ret;
                return request_begin(r, l);
        }
        if (r->client_gone)
                return MHD_NO; /* a long poll whose client left (on_hangup): close, answer nothing */
        if (r->replied) {
                /* Answered early (413, 415...): drop whatever else the client sends. */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                Conn *k = conn_of(connection);
                if (k)
                        k->body_bytes += *upload_data_size;
                ret = request_data(r, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return ret;
        }
        conn_request_received(connection);
        if (r->drain)
                return send_result(r, r->deferred);
        if (r->route->body == BODY_JSON && r->body_size > 0 &&
            json_check_depth(r->body, r->body_size, JSON_MAX_DEPTH, &r->error) != 0)
                return send_result(r, (int) r->error.code);
        {
                int k = dispatch_request(r);
                if (k == 0 && r->retry_usec && !r->reply)
                        return request_suspend(r, l);
                return send_result(r, k);
        }
}

/* Percent-decoding of paths and query values, as libmicrohttpd's own, except that "%00" and
 * "%2F" stay encoded. A NUL would cut "web%00x" to "web" and act on another resource; a slash
 * would be a path separator, and "images/web%2Fversions%2F1.0" would route to version 1.0 of
 * web. Left encoded, either fails the name checks or matches no route. "%25" stays encoded too,
 * so that every '%' left is an escape left (a decoded "%252F" is not "%2F"). libmicrohttpd uses
 * this for query values too: request_query() decodes "%2F" and "%25" there, where they are data. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
        char *out = s;

        for (char *p = s; *p; p++) {
                unsigned v;
                if (p[0] == '%' && isxdigit((unsigned char) p[1]) && isxdigit((unsigned char) p[2]) &&
                    sscanf(p + 1, "%2x", &v) == 1 && v != 0 && v != '/' && v != '%') {
                        *out++ = (char) v;
                        p += 2;
                } else
                        *out++ = *p;
        }
        *out = 0;
        return (size_t) (out - s);
}

/* ---- listeners ---- */

int http_server_new(const ApiContext *ctx, HttpServer **ret) {
        HttpServer *s = calloc(1, sizeof *s);
        int r;

        if (!s)
                return -ENOMEM;
        s->ctx = ctx;
        r = sd_event_add_time(ctx->event, &s->deadline_timer, CLOCK_MONOTONIC, 0, 1000, on_deadline, s);
        if (r < 0) {
                free(s);
                return log_error_errno(r, "Cannot add the request deadline timer");
        }
        sd_event_source_set_enabled(s->deadline_timer, SD_EVENT_OFF);
        r = sd_event_add_defer(ctx->event, &s->wake, on_wake, s);
        if (r < 0) {
                sd_event_source_disable_unref(s->deadline_timer);
                free(s);
                return log_error_errno(r, "Cannot add the commit wake-up");
        }
        sd_event_source_set_enabled(s->wake, SD_EVENT_OFF);
        *ret = s;
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        /* Suspended connections must be resumed before their daemon stops. */
        for (unsigned i = 0; i < s->n_listeners; i++)
                for (unsigned k = 0; k < s->listeners[i].n_waiters; k++) {
                        Waiter *w = &s->listeners[i].waiters[k];
                        if (w->request) {
                                struct MHD_Connection *c = w->request->connection;
                                waiter_release(w);
                                MHD_resume_connection(c);
                        }
                }
        for (Follower *f = s->followers; f; f = f->next) {
                f->gone = true;
                follower_resume(f);
        }
        s->wake = sd_event_source_disable_unref(s->wake);
        s->deadline_timer = sd_event_source_disable_unref(s->deadline_timer);
        for (unsigned i = 0; i < s->n_listeners; i++) {
                sd_event_source_disable_unref(s->listeners[i].io);
                sd_event_source_disable_unref(s->listeners[i].timer);
                sd_event_source_disable_unref(s->listeners[i].accept_retry);
                MHD_stop_daemon(s->listeners[i].mhd); /* closes its connections: their Conns go */
                free(s->listeners[i].waiters);
        }
        free(s);
        return NULL;
}

/* Each connection's memory in MHD: its request head and header records live there, then
 * the read buffer for bodies and the answer's head. Twice max_header_size, so that a head
 * somewhat over the limit still fits and gets our JSON 431; past this MHD answers itself. */
static size_t connection_memory(const Settings *cfg) {
        return (size_t) (2 * cfg->max_header_size + 16 * 1024);
}

int http_server_add_listener(HttpServer *s, int fd, bool unix_socket) {
        const Settings *cfg = s->ctx->settings;
        const union MHD_DaemonInfo *info;
        Listener *l;
        int r;

        if (s->n_listeners >= MAX_LISTENERS)
                return -E2BIG;
        l = &s->listeners[s->n_listeners];
        *l = (Listener) { .server = s, .unix_socket = unix_socket, .n_waiters = cfg->connection_limit };
        l->waiters = calloc(l->n_waiters, sizeof *l->waiters);
        if (!l->waiters)
                return log_oom();
        /* HTTPS on TCP when a certificate is configured (libmicrohttpd with GnuTLS), with our
         * priority string: libmicrohttpd's default ("NORMAL") still speaks TLS 1.0 and 1.1. */
        bool tls = !unix_socket && s->ctx->tls_cert;
        struct MHD_OptionItem tls_options[] = {
                { MHD_OPTION_HTTPS_MEM_KEY, 0, tls ? (void *) s->ctx->tls_key : NULL },
                { MHD_OPTION_HTTPS_MEM_CERT, 0, tls ? (void *) s->ctx->tls_cert : NULL },
                { MHD_OPTION_HTTPS_PRIORITIES, 0, tls ? cfg->tls_priorities : NULL },
                { MHD_OPTION_END, 0, NULL },
        };
        l->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0),
                                  0, NULL, NULL,
                                  on_access, l, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, l,
                                  MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                                  MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
                                  cfg->connection_timeout_sec,
                                  /* Unix-socket peers all share one (empty) address: no per-peer limit. */
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                  unix_socket ? 0u : cfg->connection_limit_per_peer,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory(cfg),
                                  MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                                  MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
                                  MHD_OPTION_ARRAY, tls ? tls_options : tls_options + 3, MHD_OPTION_END);
        if (!l->mhd) {
                free(l->waiters);
                l->waiters = NULL;
                return log_error_errno(EINVAL, "Cannot start the HTTP server on fd %d%s", fd,
                                       tls ? " (is tls_priorities a valid GnuTLS priority string?)" : "");
        }
        info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                MHD_stop_daemon(l->mhd);
                free(l->waiters);
                l->waiters = NULL;
                return log_error_errno(EINVAL, "HTTP server has no epoll descriptor");
        }
        r = sd_event_add_io(s->ctx->event, &l->io, info->epoll_fd, EPOLLIN, on_io, l);
        if (r >= 0)
                /* Accuracy 1 µs: sd-event's default (250 ms) would delay every MHD round. */
                r = sd_event_add_time(s->ctx->event, &l->timer, CLOCK_MONOTONIC, 0, 1, on_timer, l);
        if (r >= 0)
                r = sd_event_add_time(s->ctx->event, &l->accept_retry, CLOCK_MONOTONIC, 0, 1000,
                                      on_accept_retry, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->accept_retry, SD_EVENT_OFF);
        if (r < 0) {
                sd_event_source_disable_unref(l->io);
                sd_event_source_disable_unref(l->timer);
                sd_event_source_disable_unref(l->accept_retry);
                MHD_stop_daemon(l->mhd);
                free(l->waiters);
                l->waiters = NULL;
                return log_error_errno(r, "Cannot watch the HTTP server");
        }
        sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        s->n_listeners++;
        listener_schedule(l);
        return 0;
}

unsigned http_server_listener_count(HttpServer *s) {
        return s->n_listeners;
}

int http_server_add_metrics_listener(HttpServer *s, int fd, const char *token) {
        int r = http_server_add_listener(s, fd, false);

        if (r < 0)
                return r;
        s->listeners[s->n_listeners - 1].metrics_only = true;
        s->listeners[s->n_listeners - 1].metrics_token = token;
        return 0;
}
