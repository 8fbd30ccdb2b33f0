/* One HTTP request as the handlers see it: route match, path parameters, caller identity,
 * body, and the reply being built. Handlers never touch libmicrohttpd directly except
 * through these accessors. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "apierror.h"

typedef struct Settings Settings;
typedef struct Store Store;
typedef struct BlobFiles BlobFiles;
typedef struct Controller Controller;

/* What the API server and its handlers work with, lent by the manager (which fills it in as it
 * opens each part, before the loop runs). Narrower than the manager: no listeners, no fd store,
 * no housekeeping. */
typedef struct ApiContext {
        sd_event *event;
        const Settings *settings;
        Store *store;
        BlobFiles *blobs;
        Controller *controller;         /* NULL with runtime = off */
        const char *token;              /* the bootstrap bearer token (token_file), or NULL */
        const char *tls_cert, *tls_key; /* PEM text, or NULL: plain HTTP */
        /* After a change committed: desired state may have moved (the manager kicks the
         * controller). SERVICE: the one service the change was about, or NULL when it may be
         * about any. May be NULL. */
        void (*on_committed)(void *userdata, const char *service);
        void *userdata;
} ApiContext;
typedef struct Route Route;
typedef struct BlobUpload BlobUpload;
struct MHD_Connection;

typedef enum HttpMethod {
        HTTP_GET = 1 << 0,
        HTTP_HEAD = 1 << 1,
        HTTP_POST = 1 << 2,
        HTTP_PUT = 1 << 3,
        HTTP_PATCH = 1 << 4,
        HTTP_DELETE = 1 << 5,
} HttpMethod;

#define ROUTE_MAX_PARAMS 4

/* A response that goes on (the event stream): the server calls FILL on the loop whenever there
 * may be more to send, and sends what it returns (a malloc'd string, or NULL: nothing now; the
 * connection then waits, suspended, for the next commit or heartbeat). A negative FILL result
 * ends the stream. FREE releases STATE when the connection closes. */
typedef struct RequestStream {
        int (*fill)(void *state, char **ret_text);
        void (*free)(void *state);
        void *state;
} RequestStream;

typedef struct Request {
        const ApiContext *ctx;
        struct MHD_Connection *connection;
        HttpMethod method;
        const char *method_name;
        char *path;
        const Route *route;
        char *params[ROUTE_MAX_PARAMS];
        unsigned n_params;
        char request_id[65];
        char actor[112];         /* "uid:1000 gid:1000" on the unix socket, "token:NAME@ADDR" on TCP */
        char principal[32];      /* the caller's stable identity, for Idempotency-Key: "uid:1000",
                                  * "token:ID" (the token's row id) or "bootstrap" */
        int scope;               /* the Scope granted to the caller (route.h) */
        bool started;            /* first call seen */
        bool replied;            /* a response was queued */
        bool replayed;           /* answered from a remembered Idempotency-Key */
        bool unchanged;          /* the handler changed nothing: no audit event */
        bool too_many_query_args; /* its arguments were cut before parsing: answered 431 */

        /* body */
        char *body;
        size_t body_size, body_allocated, body_max;
        int deferred;            /* an outcome found early or mid-body, answered when it ends */
        unsigned deferred_allow; /* the Allow header of a deferred 405 */
        bool drain;              /* read and drop the rest of the body, then answer */
        BlobUpload *upload;      /* streamed blob PUTs */
        void *handler_state;     /* a streaming handler's own */

        /* reply, filled by the handler */
        unsigned status;
        json_t *reply;
        int reply_fd;            /* when >= 0, the body is this file (blobs) */
        char *reply_text;        /* when set, a text/plain body... */
        size_t reply_text_size;  /* ...of this many bytes (it may hold NULs) */
        const char *reply_content_type; /* of reply_text, when not text/plain (a static string) */
        RequestStream stream;    /* when its FILL is set: a text/event-stream reply (see above) */
        uint64_t started_usec;   /* monotonic: its first call, for the API latency metric */
        char *reply_json_text;   /* when set, a JSON body already rendered (reply caches) */
        uint64_t reply_fd_size;
        char etag[40];
        char location[512];
        char resource[384];      /* the resource an audit event names */
        json_t *event_detail;    /* optional detail for the audit event */
        const char *reply_secret_field; /* a reply field never stored for Idempotency-Key replays */
        void (*after_commit)(struct Request *r); /* work that must wait for the commit (file removal) */
        void (*after_rollback)(struct Request *r); /* undoes file work when the transaction fails */
        ApiError error;

        /* long polls (?wait=): the handler asked to be called again later */
        uint64_t retry_usec;     /* set by request_retry_later(); 0 once the request runs again */
        uint64_t wait_deadline;  /* the handler's own: monotonic usec, 0 before the first call */
        void *waiter;            /* the server's bookkeeping while suspended */
        bool client_gone;        /* its client closed while it waited: never answered */
        struct {                 /* query values request_query() decoded, freed with the request */
                const char *original;
                char *decoded;
        } kept[8];
        unsigned n_kept;
} Request;

/* Path parameter N (0-based), percent-decoded except "%00", "%2F" and "%25" (see unescape() in
 * server.c), which then fail every name check. */
const char *request_param(Request *r, unsigned n);
const char *request_header(Request *r, const char *name);
/* Query value NAME, percent-decoded once ("%2F" and "%25" too; "%00" stays encoded), valid
 * while R is. */
const char *request_query(Request *r, const char *name);
/* Calls FN for each query argument in the order sent (VALUE NULL for "?flag" without '='), as
 * libmicrohttpd decoded them; stops at FN's first non-zero result and returns it. */
int request_query_foreach(Request *r, int (*fn)(const char *key, const char *value, void *userdata),
                          void *userdata);
/* ?limit=&after= with checks; limit defaults to 100, at most 1000. */
int request_page(Request *r, unsigned *ret_limit, const char **ret_after);

/* A handler with nothing to answer yet (a long poll): return 0 without a reply after this, and
 * the same handler runs again in USEC with the same Request (the connection is suspended
 * meanwhile). Read-only routes only. */
void request_retry_later(Request *r, uint64_t usec);

/* Handler helpers: set the reply. They take ownership of J. */
int reply_json(Request *r, unsigned status, json_t *j);
/* Takes ownership of TEXT (a malloc'd string). */
int reply_text(Request *r, unsigned status, char *text);
/* A text/plain body of SIZE bytes, which may hold any byte (a guest's console); takes BUF. */
int reply_bytes(Request *r, unsigned status, char *buf, size_t size);
int reply_error(Request *r, AviaryError code, const char *fmt, ...) _printf_(3, 4);
void request_set_resource(Request *r, const char *fmt, ...) _printf_(2, 3);
