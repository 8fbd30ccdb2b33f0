/* The CLI's HTTP client (libcurl): talks to aviaryd over its unix socket or a TCP URL,
 * sends JSON and parses JSON replies (or keeps text ones as they are), streams blob
 * uploads from a file, and reports transport and API errors once, in the `aviary: ...` form. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

typedef struct HttpClient HttpClient;

/* How request bodies write reals: 15 significant digits, not jansson's 17, so a 0.1 typed by
 * a user goes out as "0.1", not "0.10000000000000001". */
#define HTTP_JSON_REAL_PRECISION JSON_REAL_PRECISION(15)

/* Where to connect: exactly one of socket_path and url is non-NULL. token may be NULL.
 * The strings are copied. */
int http_client_new(const char *socket_path, const char *url, const char *token, HttpClient **ret);
HttpClient *http_client_free(HttpClient *c);
/* Gives up on a request (each attempt) after TIMEOUT_MS; 0: never (the default). */
void http_client_set_timeout(HttpClient *c, long timeout_ms);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpClient *, http_client_free);

typedef struct HttpRequest {
        const char *method; /* "GET", "HEAD", "POST", "PATCH", "PUT", "DELETE" */
        const char *path;   /* "/v1/...", segments already escaped (see http_path) */
        json_t *body;       /* JSON body, or NULL */
        const char *if_match;
        FILE *upload;         /* PUT: body streamed from here (from its start) */
        uint64_t upload_size; /* its length, sent as Content-Length */
        const char *progress; /* non-NULL: show upload progress under this label on a TTY */
        bool text;            /* a 2xx reply is text (the console), kept in HttpReply.text */
} HttpRequest;

typedef struct HttpReply {
        long status;
        json_t *body; /* owned; NULL when the reply had no body */
        char *etag;   /* owned; NULL when the reply had none */
        char *text;   /* owned; with HttpRequest.text, a 2xx reply's bytes (NUL added), else NULL */
        size_t text_size;
} HttpReply;

void http_reply_done(HttpReply *r);

/* Sends one request (POSTs get a fresh Idempotency-Key; transient transport failures are
 * retried). Returns 0 when any HTTP reply arrived, whatever its status; a negative errno,
 * already reported, when none did or a 2xx reply was not JSON (unless req->text). */
int http_request(HttpClient *c, const HttpRequest *req, HttpReply *ret);

/* The documented error of a reply: AVIARY_E_OK for 2xx, else the code in its body (or
 * the closest by status). Prints "aviary: <message> (<code>)" for an error. */
int http_reply_check(const HttpReply *r);

/* http_request() + http_reply_check(): 0 and the whole reply on 2xx; else the error,
 * reported and returned (positive AviaryError or -errno). */
int http_exchange(HttpClient *c, const HttpRequest *req, HttpReply *ret);

/* http_exchange() for a JSON request: 0 and the reply's body (owned by the caller, may
 * be NULL) on 2xx; else the error reported and returned (positive AviaryError or -errno). */
int http_call(HttpClient *c, const char *method, const char *path, json_t *body, json_t **ret_body);

/* GET a paged list from cursor AFTER (NULL: the start) and follow its `next` cursors, up to
 * max_items (0: all). *ret is {"items": [...], "next": where it stopped, or null}. */
int http_get_all(HttpClient *c, const char *path, const char *after, unsigned max_items, json_t **ret);

/* One page of a list: path plus ?after=&limit= (after NULL or limit 0: not sent). */
int http_get_page(HttpClient *c, const char *path, const char *after, unsigned limit, json_t **ret);
/* GET PATH as a stream (Accept: text/event-stream, no timeout; LAST_EVENT_ID sent when not
 * NULL): ON_DATA gets the body in pieces as they arrive (a non-zero result stops). Returns 0
 * when the server ended the stream, 1 when the answer was not a 200 text/event-stream (the
 * caller may poll instead), or a negative errno for a transport failure (already reported). */
int http_stream(HttpClient *c, const char *path, const char *last_event_id,
                int (*on_data)(const char *data, size_t size, void *userdata), void *userdata);

/* The `next` cursor of a list page as text (string or number), or NULL when there is none. */
int http_page_next(json_t *page, char **ret);

/* Builds "/seg1/seg2/..." from a NULL-terminated list, escaping each segment so user input
 * never changes the path's shape. */
int http_path(char **ret, const char *segment, ...) __attribute__((sentinel));

/* Appends "?key=value" (or "&key=value") with value escaped. */
int http_path_query(char **path, const char *key, const char *value);
