/* The API server: libmicrohttpd daemons (one per listening socket) driven by sd-event
 * through their epoll descriptors, so handlers run on the manager's single loop thread. */
#pragma once

#include <stdbool.h>

#include "request.h"

typedef struct HttpServer HttpServer;

/* CTX stays the caller's and must outlive the server; its parts may be filled in later, before
 * the loop runs. */
int http_server_new(const ApiContext *ctx, HttpServer **ret);
HttpServer *http_server_free(HttpServer *s);

/* Serves on listening socket FD (taken over). UNIX_SOCKET: callers are identified by
 * SO_PEERCRED; otherwise by address, and the bearer token applies. */
int http_server_add_listener(HttpServer *s, int fd, bool unix_socket);
unsigned http_server_listener_count(HttpServer *s);
/* The store committed (store_on_commit's callback, USERDATA the HttpServer): on the next loop
 * iteration every long poll and event stream waiting looks again. */
void http_server_wake(void *userdata);
/* Serves GET /metrics alone on TCP listening socket FD (taken over): every other path is 404.
 * TOKEN (kept by the caller; may be NULL: anyone may scrape) is the bearer token it asks for. */
int http_server_add_metrics_listener(HttpServer *s, int fd, const char *token);
