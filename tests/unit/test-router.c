/* The router against THE route table: parameters, 404, 405 with Allow, HEAD as GET; and
 * route_scope(): its rule, and the scope of every route in the table as docs/api.md states it. */
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "tap.h"

static void request_reset(Request *r) {
        for (unsigned i = 0; i < r->n_params; i++)
                free(r->params[i]);
        *r = (Request) {};
}

/* docs/api.md: "read for every GET, deploy for blobs, images, versions and rollouts (a rollback
 * included), admin for services, instances and tokens" (and docs/security.md: which tokens exist
 * is for admins). */
static Scope documented_scope(HttpMethod method, const char *pattern) {
        if (strncmp(pattern, "/ui/", 4) == 0)
                return SCOPE_NONE; /* the web view's files: open, they hold no data */
        if (streq(pattern, "/v1/tokens") || strncmp(pattern, "/v1/tokens/", 11) == 0)
                return SCOPE_ADMIN; /* listing them too */
        if (method == HTTP_GET || method == HTTP_HEAD)
                return SCOPE_READ;
        if (strncmp(pattern, "/v1/blobs", 9) == 0 || strncmp(pattern, "/v1/images", 10) == 0 ||
            strstr(pattern, "/rollouts") || streq(pattern, "/v1/services/{name}/rollback"))
                return SCOPE_DEPLOY;
        return SCOPE_ADMIN;
}

static void test_route_scope(void) {
        static const struct {
                const char *action;
                Scope own, want;
        } cases[] = {
                { NULL, SCOPE_NONE, SCOPE_READ },                 /* changes nothing */
                { "blob.upload", SCOPE_NONE, SCOPE_DEPLOY },
                { "image.delete", SCOPE_NONE, SCOPE_DEPLOY },
                { "version.revoke", SCOPE_NONE, SCOPE_DEPLOY },
                { "rollout.abort", SCOPE_NONE, SCOPE_DEPLOY },
                { "service.update", SCOPE_NONE, SCOPE_ADMIN },
                { "instance.restart", SCOPE_NONE, SCOPE_ADMIN },
                { "token.create", SCOPE_NONE, SCOPE_ADMIN },
                { "rollouts.abort", SCOPE_NONE, SCOPE_ADMIN },    /* a prefix is a whole word */
                { "rollout", SCOPE_NONE, SCOPE_ADMIN },
                { "imagery.x", SCOPE_NONE, SCOPE_ADMIN },
                { "", SCOPE_NONE, SCOPE_ADMIN },
                { NULL, SCOPE_ADMIN, SCOPE_ADMIN },               /* its own scope wins */
                { "image.create", SCOPE_ADMIN, SCOPE_ADMIN },
                { "service.delete", SCOPE_READ, SCOPE_READ },
        };
        unsigned bad = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Route route = { .method = HTTP_POST, .pattern = "/x", .action = cases[i].action, .scope = cases[i].own };
                is_str(scope_to_string(route_scope(&route)), scope_to_string(cases[i].want),
                       "route_scope: action %s%s%s, own scope %s", cases[i].action ? "'" : "",
                       cases[i].action ? cases[i].action : "none", cases[i].action ? "'" : "",
                       scope_to_string(cases[i].own));
        }
        for (size_t i = 0; i < routes_count; i++) {
                Scope want = documented_scope(routes[i].method, routes[i].pattern);
                if (route_scope(&routes[i]) != want) {
                        bad++;
                        printf("# %s %s: scope %s, documented %s\n", http_method_name(routes[i].method),
                               routes[i].pattern, scope_to_string(route_scope(&routes[i])), scope_to_string(want));
                }
        }
        is_int(bad, 0, "every one of the %zu routes has the scope docs/api.md gives it", routes_count);
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
        test_route_scope();
        return tap_done();
}
