/* The proxy engine's own structures, shared by proxy.c (listener, deadlines, the public API),
 * client.c (the client state machine) and upstream.c (backend connections and their pool).
 * Nothing outside those three files includes this. Calls go one way: proxy.c → client.c →
 * upstream.c; an upstream reaches its client through the proxy's two function pointers. */
#pragma once

#include <http_parser.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "head.h"
#include "loop.h"
#include "proxy.h"

#define PROXY_MAX_CLIENTS 4096
#define PROXY_WINDOW (16 * 1024) /* body bytes in flight per direction */
/* An output buffer holds the window plus one rewritten head, which may grow a little. */
#define PROXY_OUT_SIZE (PROXY_WINDOW + 2 * PROXY_HEAD_MAX)
#define PROXY_IN_SIZE PROXY_WINDOW
#define PROXY_IDLE_PER_BACKEND 32
#define PROXY_USEC_PER_SEC 1000000ULL
#define PROXY_CONNECT_TIMEOUT_USEC (2 * PROXY_USEC_PER_SEC)
#define PROXY_RESPONSE_HEAD_TIMEOUT_USEC (30 * PROXY_USEC_PER_SEC)
#define PROXY_UPSTREAM_IDLE_USEC (30 * PROXY_USEC_PER_SEC)
#define PROXY_CLIENT_IDLE_USEC (60 * PROXY_USEC_PER_SEC)
#define PROXY_DRAIN_USEC (2 * PROXY_USEC_PER_SEC)
/* Out of file descriptors: accepting pauses this long (or until a client leaves), and says so
 * at most once per PROXY_ACCEPT_LOG_USEC. */
#define PROXY_ACCEPT_RETRY_USEC (250 * 1000ULL)
#define PROXY_ACCEPT_LOG_USEC (10 * PROXY_USEC_PER_SEC)
/* Mirror copies (mirror.c) in flight at once, per backend and per proxy: past either, a copy
 * is dropped. Each holds one upstream connection and its input buffer, so this is also the
 * bound on what a slow canary can cost a worker in memory and descriptors. */
#define PROXY_MIRROR_PER_BACKEND 16
#define PROXY_MIRROR_MAX 64
/* What a client held for a waking service (proxy_set_hold) is told to wait before it retries,
 * when it is answered 503 (the queue is full, the wait ran out, the wake failed). */
#define PROXY_HOLD_RETRY_AFTER_SEC 5

typedef struct Client Client;
typedef struct Upstream Upstream;
typedef struct Pool Pool;
typedef struct Mirror Mirror;

/* Bytes in DATA[start, end): consumed from the front without moving the rest, compacted only
 * when more room is needed at the end. */
typedef struct InBuffer {
        size_t start, end;
        char data[PROXY_IN_SIZE];
} InBuffer;

typedef struct OutBuffer {
        size_t start, end;
        char data[PROXY_OUT_SIZE];
} OutBuffer;

struct Pool {
        struct sockaddr_in addr;
        Upstream *idle; /* most recently used first */
        unsigned n_idle;
        unsigned inflight; /* attached upstreams (proxy_backend_inflight) */
        unsigned mirror_inflight; /* mirror copies to it not yet ended (not in INFLIGHT) */
        Pool *next;
};

struct Upstream {
        IoWatch watch;
        Proxy *proxy;
        Pool *pool;
        int fd;
        Client *client; /* NULL while idle in the pool, or while a mirror copy has it */
        Mirror *mirror; /* the copy it carries (mirror.c), or NULL */
        Upstream *idle_next, *idle_prev;
        bool connecting, reused;
        bool readable, writable; /* edge-triggered: what the last events said and I/O did not undo */
        bool eof;                /* the backend closed its side, or reading failed with error */
        int error;
        uint64_t deadline; /* connect, response head, or idle in the pool; 0 none */
        InBuffer in;
};

struct Client {
        IoWatch watch;
        Proxy *proxy;
        Client *next, *prev;
        int fd;
        char ip[INET_ADDRSTRLEN];
        struct in_addr peer;
        bool dead, eof;
        bool readable, writable;
        bool draining; /* answered and half-closed: reading what the client still sends */
        bool held;     /* its request waits for the service to wake (proxy_set_hold) */
        int hold_key;  /* ...under this key (the pick's) */
        uint64_t hold_deadline; /* when the wait of its request ends; 0 not held yet */
        bool mirror_asked; /* its request's first pick asked for a mirror copy (once per request) */
        uint64_t deadline; /* idle between requests, or draining; 0 while a request runs */

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
        DeadlineOwner owner; /* first: proxy.c casts back */
        ProxyLoop *loop;
        sd_event *event;
        int fd; /* the listener; -1 for a proxy that is handed its clients (proxy_new_detached) */
        unsigned port;
        sd_event_source *listen;
        ProxyPickFn pick;
        ProxyDoneFn done;
        ProxyAcceptFn accept_hook;
        void *userdata;
        Client *clients;
        unsigned n_clients;
        Pool *pools;
        ProxyStats own_stats;
        ProxyStats *stats; /* own_stats, or the plane's (proxy_set_stats) */
        uint64_t connect_timeout_usec, response_head_timeout_usec;
        /* accept() ran out of descriptors: the listener is off until the timer or a client
         * leaving turns it back on (a readable listener would otherwise spin the loop). */
        sd_event_source *accept_retry;
        bool accept_paused;
        uint64_t accept_logged_usec; /* when it last said so */
        unsigned accept_unlogged;    /* pauses since */
        bool freeing;
        /* Held requests (proxy_set_hold): FN keeps their count, per key. */
        ProxyHoldFn hold_fn;
        uint64_t hold_timeout_usec;
        /* Mirror copies (proxy_set_mirror): in flight, and who decides and hears of them. */
        ProxyMirrorFn mirror_fn;
        ProxyMirrorDoneFn mirror_done;
        Mirror *mirrors;
        unsigned n_mirrors;
        /* client.c's, for upstream.c: an event on, or the deadline of, a client's upstream. */
        void (*upstream_event)(Client *c, Upstream *u, uint32_t revents);
        void (*upstream_timeout)(Client *c);
};

/* What a pick callback reads: the request head in the client's Head. It is still the
 * request's at every pick, retries included: the response parser only reuses it once a backend
 * sent bytes, and an attempt that got any is never followed by another pick. */
struct ProxyRequest {
        const Head *head;
        struct in_addr peer;   /* the client's address */
};

/* A counter only its own thread writes and any thread may read: a plain add (no lock prefix),
 * made visible as one relaxed atomic store. */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n) {
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* buffers */
static inline size_t in_len(const InBuffer *b) {
        return b->end - b->start;
}
static inline size_t out_len(const OutBuffer *b) {
        return b->end - b->start;
}
/* Room at the end, compacting first when the front was consumed. */
static inline size_t in_room(InBuffer *b) {
        if (b->start > 0 && b->end == sizeof b->data) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
        } else if (b->start == b->end)
                b->start = b->end = 0;
        return sizeof b->data - b->end;
}
int out_append(OutBuffer *b, const void *data, size_t n);
void out_reset(OutBuffer *b);
/* Room to render into at the end of B (compacted first); commit with out_commit(). */
char *out_tail(OutBuffer *b, size_t *ret_room);
void out_commit(OutBuffer *b, size_t n);

static inline void proxy_want_deadline(Proxy *p, uint64_t usec) {
        proxy_loop_want(p->loop, usec);
}

/* upstream.c */
Pool *pool_get(Proxy *p, const struct sockaddr_in *addr);
int upstream_connect(Proxy *p, Pool *pool, Upstream **ret);
Upstream *pool_take(Pool *pool);
void pool_put(Upstream *u);
void upstream_free(Upstream *u);
/* Reads what the socket has into u->in (edge-triggered: until EAGAIN or the buffer is full);
 * true when bytes arrived. */
bool upstream_read(Upstream *u);
/* The end of U's non-blocking connect, from an epoll event: 1 while it goes on, 0 once
 * connected (u->connecting cleared), or the negative errno it failed with. */
int upstream_connect_done(Upstream *u, uint32_t revents);
/* Expires U's deadline at NOW: true when U was handled (freed, or its client told). */
void upstream_expire(Upstream *u, uint64_t now);
void pools_free(Proxy *p);

/* mirror.c: one copy of a request, owned by the proxy's list, ended by its answer, a failure,
 * its deadline or the proxy's end. */
struct Mirror {
        Proxy *proxy;
        Mirror *next, *prev;
        Pool *pool;
        Upstream *up; /* its connection: taken from the pool or new; NULL once ended */
        int tag;
        bool is_head, sent, complete, reusable;
        int status;
        uint64_t start_usec;
        http_parser resp;
        size_t len;
        char request[]; /* LEN bytes: the head as sent */
};

/* Copies the rendered request HEAD (LEN bytes, ending in an empty line) to BACKEND, or drops it
 * (reported as PROXY_MIRROR_DROPPED) when a bound says no. Never waits. */
void mirror_start(Proxy *p, const char *head, size_t len, bool is_head, int tag, const struct sockaddr_in *backend);
void mirror_upstream_event(Mirror *m, uint32_t revents);
/* Ends the copies past their deadline; returns the earliest deadline left (UINT64_MAX none). */
uint64_t mirrors_expire(Proxy *p, uint64_t now);
/* Ends the copies to BACKEND (port 0: any port of its address) as failed. */
void mirrors_backend_down(Proxy *p, const struct sockaddr_in *backend);
/* Ends every copy without reporting it (the proxy goes). */
void mirrors_free(Proxy *p);

/* client.c */
int client_new(Proxy *p, int fd, const struct sockaddr_in *peer);
void client_free(Client *c);
void client_run(Client *c);
void client_upstream_event(Client *c, Upstream *u, uint32_t revents);
void client_upstream_timeout(Client *c);
void client_backend_gone(Client *c);
/* Handles C's deadline at NOW (idle or draining: closes). */
void client_expire(Client *c, uint64_t now);
/* C's request is held no more: sent to a new pick, or (FAILURE not NULL) answered 503 naming it. */
void client_release(Client *c, const char *failure);
