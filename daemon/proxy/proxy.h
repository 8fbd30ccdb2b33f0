/* HTTP/1.1 reverse proxy engine for one thread's loop: an optional listener, a pick callback
 * that names the backend for each request, requests and responses streamed through fixed
 * buffers, and keep-alive upstream connections pooled per backend address. Nothing in it is
 * shared between threads: the data plane (plane.h) runs one Proxy per service per worker
 * thread. The pieces: client.c (the client state machine), upstream.c (backend connections
 * and their pool), head.c (head parse, checks and render), loop.c (I/O and deadlines). */
#pragma once

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "loop.h"

typedef struct Proxy Proxy;

/* One client request as the pick callback sees it: its head as the proxy captured it, read in
 * place. Only valid during the ProxyPickFn call it is passed to; keep no pointer into it. */
typedef struct ProxyRequest ProxyRequest;

/* The value of the first header field named NAME (case-insensitive), without surrounding
 * whitespace, and its length in *RET_LEN (required): NOT NUL-terminated, it points into the
 * proxy's copy of the request head and is valid only during the pick call. NULL when absent. */
const char *proxy_request_header(const ProxyRequest *req, const char *name, size_t *ret_len);
/* The request target as sent ("/v2/items?x=1"), with the same lifetime and termination as
 * proxy_request_header(); its length in *RET_LEN. */
const char *proxy_request_target(const ProxyRequest *req, size_t *ret_len);
/* The value of the first cookie named exactly NAME (case-sensitive) in the request's Cookie
 * header fields ("a=1; b=2", several fields searched in order), as sent (quotes kept), with the
 * same lifetime and termination as proxy_request_header(). NULL when absent. */
const char *proxy_request_cookie(const ProxyRequest *req, const char *name, size_t *ret_len);
/* The client's IPv4 address (network byte order). */
uint32_t proxy_request_peer(const ProxyRequest *req);

/* Chooses the backend for one request: returns 0 and fills *ret_backend and *ret_group (an
 * opaque tag handed back to ProxyDoneFn), or <0 when nothing can serve, which answers the
 * client 503; -EAGAIN holds the request instead (its service is asleep or waking: see
 * proxy_set_hold; *ret_group is then the hold's key), and -ENOENT answers 404 (no service on a
 * shared listener matches it).
 * REQ is the request (see above). Called again (once) when an idempotent request could not
 * connect, with the same request, still readable, and again for a held request released. */
typedef int (*ProxyPickFn)(void *userdata, const ProxyRequest *req, struct sockaddr_in *ret_backend,
                           int *ret_group);

/* Reports one outcome for metrics, on the loop thread. Once per request with the status sent
 * to the client (backend's status, or 502/504 made here; group -1 and BACKEND NULL for the 503
 * when pick failed), and once per failed connect attempt with status 0 for the group and
 * backend that were picked: a GET whose first backend refused and whose retry succeeded reports
 * (g1, b1, 0) then (g2, b2, 200); a POST that could not connect reports only (g1, b1, 0) and
 * the client gets 502. Not called for a request the client abandoned, nor for one too malformed
 * to parse (400/431/501). BACKEND, when not NULL, is valid during the call only. LATENCY counts
 * from the end of the request head to the end of the response (or the failure). */
typedef void (*ProxyDoneFn)(void *userdata, int group, const struct sockaddr_in *backend, int status,
                            uint64_t latency_usec);

/* Shadow traffic (a rollout's mirror step). Asked once per request whose method is GET or HEAD
 * and which has no body, after its first successful pick (GROUP is the pick's tag): true with
 * *RET_BACKEND and *RET_TAG makes a copy of the request for RET_BACKEND. The client's request
 * does not wait for it: the copy gets its own connection (pooled or new), goes out in one send
 * or is dropped, and its answer is parsed and discarded. On the loop thread. */
typedef bool (*ProxyMirrorFn)(void *userdata, int group, struct sockaddr_in *ret_backend, int *ret_tag);
/* Once per copy FN asked for: the answer's STATUS (100..599) after LATENCY_USEC from the copy's
 * start, 0 when none came (refused, reset, timed out, invalid), or PROXY_MIRROR_DROPPED for a
 * copy never sent (too many in flight to the backend or in the proxy, no room to send it at
 * once, no memory). */
#define PROXY_MIRROR_DROPPED (-1)
typedef void (*ProxyMirrorDoneFn)(void *userdata, int tag, int status, uint64_t latency_usec);

/* A worker thread accepted FD (from PEER) on its listener: return true when the callback took
 * it (handed it to another thread's Proxy, say), false to serve it here. */
typedef bool (*ProxyAcceptFn)(void *userdata, int fd, const struct sockaddr_in *peer);

/* Written by the proxy's own thread only; any thread may read them (relaxed atomics). */
typedef struct ProxyStats {
        _Atomic uint64_t clients_accepted;
        _Atomic uint64_t requests;          /* requests answered, by a backend or locally */
        _Atomic uint64_t upstream_connects; /* fresh connections started to backends */
        _Atomic uint64_t upstream_reuses;   /* requests sent on a pooled connection */
        _Atomic uint64_t upstream_retries;  /* retries after a connect or stale-pool failure */
        _Atomic uint64_t backend_down_failovers; /* requests in flight to a backend declared down */
        _Atomic uint64_t clients_closed;    /* clients_accepted - clients_closed: connections open */
        _Atomic uint64_t bytes_received;    /* from clients (request heads and bodies) */
        _Atomic uint64_t bytes_sent;        /* to clients (response heads and bodies) */
} ProxyStats;

/* ADDRESS is "IPV4:PORT" (port 0 picks a free one: see proxy_get_port()). PICK is required,
 * DONE may be NULL. The proxy keeps a reference on E; *ret is the caller's to proxy_free(). */
int proxy_new(sd_event *e, const char *address, ProxyPickFn pick, ProxyDoneFn done, void *userdata,
              Proxy **ret);
/* The same on a listening IPv4 TCP socket FD (one kept across a restart in systemd's file
 * descriptor store, say). Takes FD, also on failure (it is closed then). */
int proxy_new_from_fd(sd_event *e, int fd, ProxyPickFn pick, ProxyDoneFn done, void *userdata, Proxy **ret);
/* On LOOP (loop.h), serving listening socket FD (taken, made non-blocking), or none (FD -1):
 * such a proxy is handed its clients with proxy_add_client(). */
int proxy_new_on_loop(ProxyLoop *loop, int fd, ProxyPickFn pick, ProxyDoneFn done, void *userdata, Proxy **ret);
/* Every client the listener accepts goes to FN first (accept-and-hand-off, plane.c). */
void proxy_set_accept_hook(Proxy *p, ProxyAcceptFn fn);
/* Serves client FD (connected, non-blocking; taken, also on failure) from PEER. */
int proxy_add_client(Proxy *p, int fd, const struct sockaddr_in *peer);
/* Mirror copies from now on (FN NULL: none); DONE may be NULL. */
void proxy_set_mirror(Proxy *p, ProxyMirrorFn fn, ProxyMirrorDoneFn done);
/* Mirror copies in flight now. */
unsigned proxy_mirrors(const Proxy *p);
/* The listening socket (to hand to systemd's file descriptor store); the proxy keeps owning it. */
int proxy_get_fd(const Proxy *p);
/* Whether one more request may be held under KEY (ENTER), or one held under KEY left the hold
 * (!ENTER; the return value is ignored then). The caller keeps the count and the bound. */
typedef bool (*ProxyHoldFn)(void *userdata, int key, bool enter);
/* Requests whose pick says -EAGAIN wait, on their connection, until proxy_release_held(): each
 * at most TIMEOUT_USEC, and only as many as FN admits. Past either bound the client gets a JSON
 * 503 with Retry-After. Without this call a pick's -EAGAIN answers 503 at once. */
void proxy_set_hold(Proxy *p, uint64_t timeout_usec, ProxyHoldFn fn);
/* Every request held under KEY (KEY < 0: every held request) goes to a new pick now (FAILURE
 * NULL: its service woke), or is answered a JSON 503 whose message is FAILURE (the wake failed). */
void proxy_release_held(Proxy *p, int key, const char *failure);
/* Requests this proxy holds now. */
unsigned proxy_held(const Proxy *p);
/* Closes the listener, every client and every upstream connection. Accepts NULL. */
Proxy *proxy_free(Proxy *p);
/* Overrides the defaults (connect 2 s, response head 30 s) for connections started later;
 * 0 keeps a value. */
void proxy_set_timeouts(Proxy *p, uint64_t connect_usec, uint64_t response_head_usec);
/* The port the listener is bound to, in host order. */
unsigned proxy_get_port(const Proxy *p);
const ProxyStats *proxy_get_stats(const Proxy *p);
/* The proxy counts into STATS (zeroed by the caller, outliving the proxy) from now on instead of
 * its own: a plane keeps a service's counters where the control thread may read them. */
void proxy_set_stats(Proxy *p, ProxyStats *stats);
/* Requests sent or being sent to BACKEND (connecting included) whose response is not yet fully
 * relayed to the client and that have not failed: 0 means a draining guest can be stopped
 * without cutting a request short. Port 0 in BACKEND matches every port of its address.
 * Counted per backend as requests attach and detach. */
unsigned proxy_backend_inflight(const Proxy *p, const struct sockaddr_in *backend);

/* BACKEND (port 0: every port of its address) is gone for good, e.g. its guest died: no
 * packet will come back from it, so nothing waits for a timeout. Its pooled connections close;
 * each request in flight to it that is idempotent and of whose answer nothing has reached the
 * client yet is sent to a new pick (once per request, as after a failed connect); any other
 * fails now with 502 (or its connection is cut when the answer had begun). Call it after the
 * pick callback stopped naming BACKEND. */
void proxy_backend_down(Proxy *p, const struct sockaddr_in *backend);

static inline void proxy_freep(Proxy **p) {
        if (*p)
                proxy_free(*p);
}
