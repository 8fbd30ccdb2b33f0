/* The request accessors handlers use (request.h): path parameters, header fields, query
 * values, paging, read from libmicrohttpd's connection. */
#include <errno.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "request.h"

const char *request_param(Request *r, unsigned n) {
        return n < r->n_params ? r->params[n] : NULL;
}

const char *request_header(Request *r, const char *name) {
        return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

const char *request_query(Request *r, const char *name) {
        const char *v = MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, name);
        char *copy, *out;

        if (!v || (!strcasestr(v, "%2f") && !strstr(v, "%25")))
                return v;
        /* unescape() left "%2F" (and "%25", so that "%252F" stays the text "%2F") for the router;
         * in a value they are a slash and a percent sign (resource=image%2Fweb). One pass, so
         * nothing is decoded twice. The copy lives as long as the request, one per value. */
        for (unsigned i = 0; i < r->n_kept; i++)
                if (r->kept[i].original == v)
                        return r->kept[i].decoded;
        if (r->n_kept >= ELEMENTSOF(r->kept) || !(copy = strdup(v)))
                return v; /* still an answer, only with the slash encoded */
        out = copy;
        for (const char *p = v; *p; p++)
                if (p[0] == '%' && p[1] == '2' && (p[2] == 'f' || p[2] == 'F' || p[2] == '5')) {
                        *out++ = p[2] == '5' ? '%' : '/';
                        p += 2;
                } else
                        *out++ = *p;
        *out = 0;
        r->kept[r->n_kept].original = v;
        r->kept[r->n_kept++].decoded = copy;
        return copy;
}

typedef struct QueryForeach {
        int (*fn)(const char *key, const char *value, void *userdata);
        void *userdata;
        int result;
} QueryForeach;

static enum MHD_Result query_foreach_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        QueryForeach *q = cls;

        q->result = q->fn(key, value, q->userdata);
        return q->result == 0 ? MHD_YES : MHD_NO;
}

int request_query_foreach(Request *r, int (*fn)(const char *key, const char *value, void *userdata),
                          void *userdata) {
        QueryForeach q = { .fn = fn, .userdata = userdata };

        (void) MHD_get_connection_values(r->connection, MHD_GET_ARGUMENT_KIND, query_foreach_one, &q);
        return q.result;
}

int request_page(Request *r, unsigned *ret_limit, const char **ret_after) {
        const char *limit = request_query(r, "limit"), *after = request_query(r, "after");
        char *end;
        unsigned long v = 100;

        if (limit) {
                errno = 0;
                v = strtoul(limit, &end, 10);
                if (errno || end == limit || *end || v < 1 || v > 1000)
                        return reply_error(r, AVIARY_E_INVALID_QUERY, "limit must be an integer from 1 to 1000");
        }
        if (after && (!*after || strlen(after) > 256))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "after must be a cursor from a previous page");
        *ret_limit = (unsigned) v;
        *ret_after = after;
        return 0;
}
