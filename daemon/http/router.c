/* Matching a request path against the route table. Paths are split on '/', and a "{x}"
 * pattern segment takes one non-empty segment as a parameter. */
#include <string.h>

#include "route.h"

static const struct {
        HttpMethod method;
        const char *name;
} method_names[] = {
        { HTTP_GET, "GET" },     { HTTP_HEAD, "HEAD" },   { HTTP_POST, "POST" },
        { HTTP_PUT, "PUT" },     { HTTP_PATCH, "PATCH" }, { HTTP_DELETE, "DELETE" },
};

const char *http_method_name(HttpMethod m) {
        for (size_t i = 0; i < ELEMENTSOF(method_names); i++)
                if (method_names[i].method == m)
                        return method_names[i].name;
        return "?";
}

static const char *const scope_names[] = {
        [SCOPE_NONE] = "none",
        [SCOPE_READ] = "read",
        [SCOPE_DEPLOY] = "deploy",
        [SCOPE_ADMIN] = "admin",
};

const char *scope_to_string(Scope s) {
        return (size_t) s < ELEMENTSOF(scope_names) ? scope_names[s] : "?";
}

Scope scope_from_string(const char *s) {
        for (size_t i = SCOPE_READ; s && i < ELEMENTSOF(scope_names); i++)
                if (streq(s, scope_names[i]))
                        return (Scope) i;
        return SCOPE_NONE;
}

Scope route_scope(const Route *r) {
        static const char *const deploy_prefixes[] = { "blob.", "image.", "version.", "rollout." };

        if (r->open)
                return SCOPE_NONE;
        if (r->scope != SCOPE_NONE)
                return r->scope;
        if (!r->action)
                return SCOPE_READ;
        for (size_t i = 0; i < ELEMENTSOF(deploy_prefixes); i++)
                if (strncmp(r->action, deploy_prefixes[i], strlen(deploy_prefixes[i])) == 0)
                        return SCOPE_DEPLOY;
        return SCOPE_ADMIN;
}

HttpMethod http_method_from_name(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(method_names); i++)
                if (streq(method_names[i].name, name))
                        return method_names[i].method;
        return 0;
}

static void params_clear(Request *r) {
        for (unsigned i = 0; i < r->n_params; i++) {
                free(r->params[i]);
                r->params[i] = NULL;
        }
        r->n_params = 0;
}

/* Returns 1 if PATH matches PATTERN, filling r->params; 0 if not; -ENOMEM. */
static int path_match(Request *r, const char *pattern, const char *path) {
        const char *p = pattern, *s = path;

        params_clear(r);
        while (*p && *s) {
                size_t plen = strcspn(p + 1, "/") + 1, slen = strcspn(s + 1, "/") + 1;

                if (*p != '/' || *s != '/')
                        return 0;
                if (p[1] == '{') {
                        if (slen <= 1 || r->n_params >= ROUTE_MAX_PARAMS)
                                return 0;
                        r->params[r->n_params] = strndup(s + 1, slen - 1);
                        if (!r->params[r->n_params])
                                return -ENOMEM;
                        r->n_params++;
                } else if (plen != slen || strncmp(p, s, plen) != 0)
                        return 0;
                p += plen;
                s += slen;
        }
        if (*p || *s) {
                params_clear(r);
                return 0;
        }
        return 1;
}

int router_match(Request *r, HttpMethod method, const char *path, unsigned *ret_allow) {
        const Route *path_route = NULL;
        unsigned allow = 0;
        int m;

        for (size_t i = 0; i < routes_count; i++) {
                m = path_match(r, routes[i].pattern, path);
                if (m < 0)
                        return m;
                if (m == 0)
                        continue;
                allow |= routes[i].method;
                if (routes[i].method == HTTP_GET)
                        allow |= HTTP_HEAD;
                if (!path_route)
                        path_route = &routes[i];
                if (routes[i].method == method) {
                        r->route = &routes[i];
                        return 0;
                }
        }
        /* HEAD is GET without a body unless a route says otherwise. */
        if (method == HTTP_HEAD && (allow & HTTP_GET))
                return router_match(r, HTTP_GET, path, ret_allow);
        params_clear(r);
        if (!allow)
                return AVIARY_E_NOT_FOUND;
        r->route = path_route;
        *ret_allow = allow;
        return AVIARY_E_METHOD_NOT_ALLOWED;
}
