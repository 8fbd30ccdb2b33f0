/* The route table's shape. THE table lives in routes.c; router.c matches requests to it. */
#pragma once

#include <stddef.h>

#include "request.h"

typedef enum BodyKind {
        BODY_NONE,   /* a body is refused with 400 */
        BODY_JSON,   /* application/json, buffered up to the route's limit */
        BODY_STREAM, /* handed to the route's stream callbacks chunk by chunk */
} BodyKind;

/* Handlers return 0 with the reply set, a positive AVIARY_E_* with r->error set (see
 * reply_error), or a negative errno for the unexpected (500). */
typedef int (*RouteHandler)(Request *r);
typedef int (*RouteStreamData)(Request *r, const char *data, size_t size);

/* What a caller may do, in increasing power: read anything; deploy (push images, start and
 * steer rollouts); administer (services, instances, tokens). Unix-socket peers that pass the
 * allow-list are admins; TCP callers get their token's scope. */
typedef enum Scope {
        SCOPE_NONE,
        SCOPE_READ,
        SCOPE_DEPLOY,
        SCOPE_ADMIN,
} Scope;

const char *scope_to_string(Scope s);
Scope scope_from_string(const char *s); /* SCOPE_NONE when unknown */

struct Route {
        HttpMethod method;
        const char *pattern;       /* "/v1/images/{name}"; {x} matches one non-empty segment */
        RouteHandler handler;      /* runs once the whole body is in */
        BodyKind body;
        size_t max_body;           /* 0: the server's default for BODY_JSON */
        const char *action;        /* set for changes: "image.create"; writes an audit event */
        RouteHandler stream_begin; /* BODY_STREAM: headers are in; may reply at once */
        RouteStreamData stream_data;
        AviaryError wrong_method;  /* 405 code for other methods (default method-not-allowed) */
        const char *wrong_method_message;
        Scope scope;               /* SCOPE_NONE: derived (see route_scope) */
        bool open;                 /* no credentials needed: the web view's files, which hold no data */
};

/* The scope a route needs: its own, else read for routes that change nothing, deploy for
 * blobs, images, versions and rollouts, admin for everything else. */
Scope route_scope(const Route *r);

extern const Route routes[];
extern const size_t routes_count;

const char *http_method_name(HttpMethod m);
HttpMethod http_method_from_name(const char *name);

/* Finds the route for METHOD and PATH. On success fills r->route and r->params. On no match
 * returns AVIARY_E_NOT_FOUND, or AVIARY_E_METHOD_NOT_ALLOWED with *ret_allow set to the
 * methods the path does take (and r->route to a route of that path, for its 405 wording). */
int router_match(Request *r, HttpMethod method, const char *path, unsigned *ret_allow);
