/* GET /v1/events: the audit log, oldest first, paged by event id. Token details are for admins
 * only, as /v1/tokens is: for other callers a token event names no token and has no detail. */
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "settings.h"
#include "blobfiles.h"
#include "route.h"

typedef struct EventList {
        json_t *items;
        bool redact; /* the caller is not an admin */
} EventList;

static bool is_token_event(const EventRecord *e) {
        return strncmp(e->action, "token.", 6) == 0;
}

static int event_list_one(const EventRecord *e, void *userdata) {
        EventList *l = userdata;
        bool redact = l->redact && is_token_event(e);
        json_error_t jerr;
        json_t *j = json_pack("{s:I, s:o, s:s, s:s, s:s, s:s, s:i, s:s?, s:o}", "id", (json_int_t) e->id, "time",
                              json_time(e->time), "actor", e->actor, "action", e->action, "resource",
                              redact ? "token" : e->resource, "result", e->result, "status", e->status,
                              "request_id", e->request_id, "detail",
                              e->detail && !redact ? json_loads(e->detail, 0, &jerr) : json_null());

        return json_array_append_new(l->items, j) < 0 ? -ENOMEM : 0;
}

int event_list(Request *r) {
        EventList l = { .redact = r->scope < SCOPE_ADMIN };
        const char *after, *resource = request_query(r, "resource");
        unsigned limit;
        int64_t after_id = 0;
        int k;

        k = request_page(r, &limit, &after);
        if (k != 0)
                return k;
        if (after && cursor_id_parse(after, &after_id) < 0)
                return reply_error(r, AVIARY_E_INVALID_QUERY, "after must be an event id");
        if (resource && (!*resource || strlen(resource) > 300))
                return reply_error(r, AVIARY_E_INVALID_QUERY, "resource must be like image/web or service/web");
        /* Asking for one token's events would tell a token name exists. */
        if (resource && l.redact && strncmp(resource, "token/", 6) == 0)
                return reply_error(r, AVIARY_E_FORBIDDEN, "the events of a token by name need an admin token; "
                                                          "resource=token lists token events without names");
        l.items = json_array();
        k = store_event_list(r->ctx->store, after_id, limit, resource, event_list_one, &l);
        return reply_page(r, k, l.items, limit, "id");
}
