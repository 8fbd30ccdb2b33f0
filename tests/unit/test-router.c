/* The router against THE route table: parameters, 404, 405 with Allow, HEAD as GET. */
#include <stdlib.h>

#include "route.h"
#include "tap.h"

static void request_reset(Request *r) {
        for (unsigned i = 0; i < r->n_params; i++)
                free(r->params[i]);
        *r = (Request) {};
}

int main(void) {
        Request r = {};
        unsigned allow = 0;

        is_int(router_match(&r, HTTP_GET, "/v1/health", &allow), 0, "GET /v1/health routes");
        ok(r.route && r.route->handler, "it has a handler");
        is_int(r.n_params, 0, "no parameters");
        request_reset(&r);

        is_int(router_match(&r, HTTP_GET, "/v1/images/web/versions/1.0", &allow), 0, "version route");
        is_int(r.n_params, 2, "two parameters");
        is_str(request_param(&r, 0), "web", "image parameter");
        is_str(request_param(&r, 1), "1.0", "ref parameter");
        ok(request_param(&r, 2) == NULL, "no third parameter");
        request_reset(&r);

        is_int(router_match(&r, HTTP_POST, "/v1/images/web/versions/1.0/revoke", &allow), 0, "revoke route");
        is_str(r.route->action, "version.revoke", "revoke is audited");
        request_reset(&r);

        is_int(router_match(&r, HTTP_GET, "/v1/nothing", &allow), AVIARY_E_NOT_FOUND, "unknown path is 404");
        request_reset(&r);
        is_int(router_match(&r, HTTP_GET, "/v1/images//versions", &allow), AVIARY_E_NOT_FOUND,
               "empty segment does not match a parameter");
        request_reset(&r);
        is_int(router_match(&r, HTTP_GET, "/v1/health/", &allow), AVIARY_E_NOT_FOUND, "trailing slash is 404");
        request_reset(&r);

        allow = 0;
        is_int(router_match(&r, HTTP_PUT, "/v1/images/web/versions/1.0", &allow), AVIARY_E_METHOD_NOT_ALLOWED,
               "PUT on a version is 405");
        is_int(allow, HTTP_GET | HTTP_HEAD | HTTP_DELETE, "Allow is GET, HEAD, DELETE");
        is_int(r.route->wrong_method, AVIARY_E_VERSION_IMMUTABLE, "with the version-immutable code");
        request_reset(&r);

        is_int(router_match(&r, HTTP_HEAD, "/v1/blobs/sha256:00", &allow), 0, "HEAD on a blob routes");
        ok(r.route->method == HTTP_GET, "to the GET handler");
        request_reset(&r);

        allow = 0;
        is_int(router_match(&r, HTTP_POST, "/v1/events", &allow), AVIARY_E_METHOD_NOT_ALLOWED, "POST events is 405");
        is_int(allow, HTTP_GET | HTTP_HEAD, "Allow is GET, HEAD");
        request_reset(&r);

        for (size_t i = 0; i < routes_count; i++)
                ok((routes[i].action != NULL) == (routes[i].method != HTTP_GET), "%s %s: audited iff it changes state",
                   http_method_name(routes[i].method), routes[i].pattern);
        return tap_done();
}
